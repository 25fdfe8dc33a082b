#!/usr/bin/env bash
# Release re-run of issue 18's four benches, before and after, with Janus beside. Run from the
# repository root on a quiet machine (engine on CPU 0, load on the rest), with
#   /tmp/tern-before  release build of 47367c1 (the commit before issue 18's first change)
#   /tmp/tern-head    release build of this commit
#   target/release/tern-bench (this commit's load generator, for both)
# The before/after pairs run back to back, alternated (before, after, after, before) where the
# figure is noisy.
set -euo pipefail
B=target/release/tern-bench; D=perf-reports/2026-11-29-release
J=tern,janus-echotest,janus-audiobridge
t0=$SECONDS
step() { echo "== $1 ($((SECONDS - t0)) s)"; }
step steady
$B --mode steady --target tern --sessions 100 --seconds 20 --tern /tmp/tern-before --report-dir $D/steady-before
$B --mode steady --target $J --sessions 100 --seconds 20 --tern /tmp/tern-head --report-dir $D/steady-after
$B --mode steady --target tern --sessions 100 --seconds 20 --tern /tmp/tern-head --report-dir $D/steady-after-2
$B --mode steady --target tern --sessions 100 --seconds 20 --tern /tmp/tern-before --report-dir $D/steady-before-2
step ramp
$B --mode ramp --target tern --sessions 40 --step 40 --step-s 10 --tern /tmp/tern-before --report-dir $D/ramp-before
$B --mode ramp --target $J --sessions 40 --step 40 --step-s 10 --tern /tmp/tern-head --report-dir $D/ramp-after
step storm
$B --mode setup-storm --target tern --seconds 15 --window 16 --tern /tmp/tern-before --report-dir $D/storm-before
$B --mode setup-storm --target tern,janus-echotest --seconds 15 --window 16 --tern /tmp/tern-head --report-dir $D/storm-after
step idle
$B --mode idle --sessions 1000 --seconds 30 --tern /tmp/tern-before --out $D/idle-before.md
$B --mode idle --sessions 1000 --seconds 30 --tern /tmp/tern-head --out $D/idle-after.md
step done
