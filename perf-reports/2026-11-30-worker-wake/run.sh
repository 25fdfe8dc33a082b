#!/usr/bin/env bash
# The worker is woken only for what someone waits on (UplinkMsg::is_urgent): before = ecf6f07,
# after = the commit that adds this report. Release builds, engine on CPU 0, load on CPU 1, runs
# alternated (after, before, before, after) so drift shows in the ratios.
#   after:  cargo build --release -p tern-engine -p tern-bench && cp target/release/tern /tmp/tern-wake
#   before: git stash / checkout ecf6f07, cargo build --release -p tern-engine,
#           cp target/release/tern /tmp/tern-ecf6f07
set -euo pipefail
cd "$(dirname "$0")/../.."
out=perf-reports/2026-11-30-worker-wake
bench=target/release/tern-bench
bin() { case $1 in a*) echo /tmp/tern-wake ;; *) echo /tmp/tern-ecf6f07 ;; esac; }
for r in a1 b1 b2 a2; do
  "$bench" --mode setup-storm --target tern --tern "$(bin $r)" --seconds 15 --window 16 --report-dir "$out/storm-$r"
done
for r in a1 b1 b2 a2; do
  "$bench" --mode steady --target tern --tern "$(bin $r)" --sessions 100 --seconds 20 --report-dir "$out/steady-$r"
done
for r in a b; do
  "$bench" --mode ramp --target tern --tern "$(bin $r)" --sessions 40 --step 40 --step-s 8 --report-dir "$out/ramp-$r"
done
for r in a20 b20; do
  "$bench" --mode ramp --target tern --tern "$(bin $r)" --sessions 200 --step 20 --step-s 8 --report-dir "$out/ramp-$r"
done
