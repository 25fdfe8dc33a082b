#!/usr/bin/env bash
# Issue 18's figures on this session's machine (2 CPUs, AMD EPYC): the current commit ("after")
# against 47367c1 (the last commit before issue 18's first change, "before"), Janus EchoTest in the
# same bench runs. Release builds; engine on CPU 0, load generator on CPU 1.
#   after:  cargo build --release -p tern-engine -p tern-bench
#   before: git worktree add /tmp/before-wt 47367c1 &&
#           (cd /tmp/before-wt && CARGO_TARGET_DIR=/tmp/before-target cargo build --release -p tern-engine)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=perf-reports/2026-11-30-amd
bench=target/release/tern-bench
after=target/release/tern
before=/tmp/before-target/release/tern
storm() { # name binary targets
  "$bench" --mode setup-storm --target "$3" --tern "$2" --seconds 15 --window 16 --report-dir "$out/$1"
}
storm storm-after-1 "$after" tern,janus-echotest
storm storm-before-1 "$before" tern
storm storm-before-2 "$before" tern
storm storm-after-2 "$after" tern
"$bench" --mode steady --target tern,janus-echotest --tern "$after" --sessions 100 --seconds 20 --report-dir "$out/steady-after"
"$bench" --mode steady --target tern --tern "$before" --sessions 100 --seconds 20 --report-dir "$out/steady-before"
"$bench" --mode ramp --target tern --tern "$after" --sessions 40 --step 40 --step-s 8 --report-dir "$out/ramp-after"
"$bench" --mode ramp --target tern --tern "$before" --sessions 40 --step 40 --step-s 8 --report-dir "$out/ramp-before"
"$bench" --mode ramp --target janus-echotest --sessions 80 --step 40 --step-s 8 --report-dir "$out/ramp-janus-echotest"
