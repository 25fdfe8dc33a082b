#!/usr/bin/env bash
# The server's signing key parsed once per process instead of per handshake (vendor/dimpl Tern
# patch): setup storms alternated, /tmp/tern-pinned (before) and /tmp/tern-keycache (after),
# release builds, engine on CPU 0.
set -euo pipefail
B=target/release/tern-bench; D=perf-reports/2026-11-29-release/key-cache
i=0
for v in pinned keycache keycache pinned pinned keycache; do
  i=$((i + 1))
  $B --mode setup-storm --target tern --seconds 15 --window 16 --tern /tmp/tern-$v --report-dir $D/storm-$i-$v
done
grep -H "CPU µs per handshake" $D/storm-*/report.md
