#!/usr/bin/env bash
# Inference workers kept off the media cores: /tmp/tern-head (workers unpinned, the release
# re-run's "after") against /tmp/tern-pinned (this change), same load, alternated.
set -euo pipefail
B=target/release/tern-bench; D=perf-reports/2026-11-29-release/pinned
for v in head pinned pinned head; do
  n=$v; [ -d $D/steady-$v ] && n=$v-2
  $B --mode steady --target tern --sessions 100 --seconds 20 --tern /tmp/tern-$v --report-dir $D/steady-$n
done
for v in head pinned; do
  $B --mode ramp --target tern --sessions 40 --step 20 --step-s 10 --tern /tmp/tern-$v --report-dir $D/ramp-$v
done
