#!/usr/bin/env bash
# Before/after for the lazily made media state (issue 18, memory). Run from the repository root
# with /tmp/tern-before (c8c240a) and /tmp/tern-after (this commit) built in the dev profile.
set -euo pipefail
B=target/debug/tern-bench; D=perf-reports/2026-11-29-lazy-media
for v in before after; do
  $B --mode idle --sessions 1000 --seconds 30 --tern /tmp/tern-$v --out $D/idle-$v.md
done
for v in before after; do
  $B --mode steady --target tern --sessions 100 --seconds 20 --tern /tmp/tern-$v --report-dir $D/steady-$v
done
# Order alternated: a second pair, after first.
$B --mode steady --target tern --sessions 100 --seconds 20 --tern /tmp/tern-after --report-dir $D/steady-after-2
$B --mode steady --target tern --sessions 100 --seconds 20 --tern /tmp/tern-before --report-dir $D/steady-before-2
target/debug/tern-heap 500 $D/heap-breakdown.md
