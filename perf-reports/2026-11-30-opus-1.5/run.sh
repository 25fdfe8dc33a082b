#!/usr/bin/env bash
# libopus 1.5.2 built from source (vendor/audiopus_sys + opusic-sys, this report's commit, "after")
# against Debian's libopus 1.3.1 (df640d7, the commit before, "before"): the same engine code, only
# the codec library differs. Release builds, engine on CPU 0, load on CPU 1, runs alternated
# (after, before, before, after) so drift shows in the ratios; Janus EchoTest in the same bench runs.
#   before: (at df640d7) cargo build --release -p tern-engine && cp target/release/tern /tmp/tern-before
#   after:  cargo build --release -p tern-engine -p tern-bench && cp target/release/tern /tmp/tern-opus15
# Part 2 (`run.sh quiet`): --opus-quiet-complexity 2 (95fa8cf, "quiet", on top of libopus 1.5.2)
# against df640d7 again, alternated (quiet, before, before, quiet).
#   quiet:  (at 95fa8cf) cargo build --release -p tern-engine && cp target/release/tern /tmp/tern-quiet
# The codec alone, per frame and PESQ: scripts/opus-versions.sh and scripts/quiet-complexity.sh
# (codec/, versions.md, quiet.md here).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=perf-reports/2026-11-30-opus-1.5
bench=target/release/tern-bench
bin() { case $1 in a*) echo /tmp/tern-opus15 ;; q*) echo /tmp/tern-quiet ;; *) echo /tmp/tern-before ;; esac; }
if [ "${1:-}" = quiet ]; then
  for r in q1 b3 b4 q2; do
    "$bench" --mode steady --target tern --tern "$(bin $r)" --sessions 100 --seconds 20 --report-dir "$out/steady-$r"
  done
  for r in q1 b3 b4 q2; do
    "$bench" --mode ramp --target tern --tern "$(bin $r)" --sessions 200 --step 20 --step-s 8 --report-dir "$out/ramp-$r"
  done
  exit 0
fi
"$bench" --mode steady --target tern,janus-echotest --tern "$(bin a1)" --sessions 100 --seconds 20 --report-dir "$out/steady-a1"
for r in b1 b2 a2; do
  "$bench" --mode steady --target tern --tern "$(bin $r)" --sessions 100 --seconds 20 --report-dir "$out/steady-$r"
done
for r in a1 b1 b2 a2; do
  "$bench" --mode ramp --target tern --tern "$(bin $r)" --sessions 200 --step 20 --step-s 8 --report-dir "$out/ramp-$r"
done
"$bench" --mode ramp --target janus-echotest --sessions 200 --step 20 --step-s 8 --report-dir "$out/ramp-janus-echotest"
for r in a1 b1; do
  "$bench" --mode setup-storm --target tern --tern "$(bin $r)" --seconds 15 --window 16 --report-dir "$out/storm-$r"
done
