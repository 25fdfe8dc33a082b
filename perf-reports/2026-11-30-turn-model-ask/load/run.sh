#!/usr/bin/env bash
# Load run: 40 talking sessions, semantic_vad medium (now asks the model) vs server_vad 800 ms.
set -euo pipefail
cd /work/main
out=perf-reports/2026-11-30-turn-model-ask/load
mkdir -p $out
scrape() { # name
  sleep 55; curl -s http://127.0.0.1:18080/metrics | grep -E "tern_turn|tern_turns_total" > $out/$1.metrics.txt || true
}
run() { # name, extra args
  local name=$1; shift
  scrape $name &
  target/release/tern-bench --mode steady --target tern --tern target/release/tern --sessions 40 --seconds 60 "$@" --report-dir /tmp/bench-$name > /tmp/bench-$name.log 2>&1
  wait
  cp /tmp/bench-$name/report.md $out/$name.md
}
run medium-smart-turn --tern-arg --turn-detection --tern-arg semantic_vad --tern-arg --eagerness --tern-arg medium
run timer-800 --tern-arg --silence-duration-ms --tern-arg 800
