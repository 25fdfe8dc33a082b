#!/usr/bin/env bash
# Reproduces the committed tern-bench reports on a 2-core machine (engine on CPU 0, load on CPU 1).
# Usage: scripts/bench.sh steady|soak|idle|all   (reports go to perf-reports/<date>-<mode>/)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release -p tern-engine -p tern-bench
day="$(date +%F)"
run() {
  local mode="$1" name="$2"; shift 2
  mkdir -p "perf-reports/$day-$name"
  ./target/release/tern-bench "$@" --server-core 0 --out "perf-reports/$day-$name/report.md"
  {
    echo
    echo "Machine: $(nproc) cores, $(uname -sr); commit $(git rev-parse --short HEAD); reproduce with \`scripts/bench.sh $mode\`."
  } >>"perf-reports/$day-$name/report.md"
}
case "${1:-all}" in
  steady) run steady steady-100 --mode steady --sessions 100 --seconds 20 ;;
  soak) run soak soak-1h --mode soak --sessions 170 --seconds 3600 --lifetime-s 40 --sample-s 60 ;;
  idle) run idle idle-1000 --mode idle --sessions 1000 --seconds 30 ;;
  all)
    "$0" steady
    "$0" idle
    "$0" soak
    ;;
  *) echo "usage: $0 steady|soak|idle|all" >&2; exit 2 ;;
esac
