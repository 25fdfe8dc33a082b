#!/usr/bin/env bash
# Reproduces the committed tern-bench reports on this machine: engine on CPU 0, the load
# generator on the others. Janus (Debian's package) is installed for the side-by-side runs.
# Usage: scripts/bench.sh steady|ramp|storm|steering|recv-batch|idle|soak|all
# Reports go to perf-reports/<date>-<name>/ (report.md, report.json, SVG plots).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
command -v janus >/dev/null || { apt-get update -qq && apt-get install -y -qq janus; }
cargo build --release -p tern-engine -p tern-bench
day="$(date +%F)"
bench=./target/release/tern-bench
all_targets=tern,janus-echotest,janus-audiobridge
legacy() {
  # soak and idle write one markdown file.
  local mode="$1" name="$2"; shift 2
  mkdir -p "perf-reports/$day-$name"
  "$bench" "$@" --server-core 0 --out "perf-reports/$day-$name/report.md"
  echo -e "\nMachine: $(nproc) cores, $(uname -sr); commit $(git rev-parse --short HEAD); reproduce with \`scripts/bench.sh $mode\`." \
    >>"perf-reports/$day-$name/report.md"
}
case "${1:-all}" in
  steady) "$bench" --mode steady --target "$all_targets" --sessions 100 --seconds 20 --name steady-100 ;;
  ramp) "$bench" --mode ramp --target "$all_targets" --sessions 40 --step 40 --step-s 10 --name ramp-1core ;;
  storm) "$bench" --mode setup-storm --target "$all_targets" --seconds 15 --window 16 --name setup-storm ;;
  steering)
    # Two engine shards sharing the machine with the load: the forwarded fraction per steering.
    for s in hash cpu; do
      "$bench" --mode steady --engine-cores 0-1 --load-cores 0-1 --steering "$s" --sessions 100 --seconds 20 --name "steering-$s"
    done ;;
  recv-batch)
    # Same load, one datagram per receive vs recvmmsg batches.
    for b in 1 32; do
      "$bench" --mode steady --sessions 120 --seconds 30 --tern-arg --recv-batch --tern-arg "$b" --name "recv-batch-$b"
    done ;;
  idle) legacy idle idle-1000 --mode idle --sessions 1000 --seconds 30 ;;
  soak) legacy soak soak-1h --mode soak --sessions 170 --seconds 3600 --lifetime-s 40 --sample-s 60 ;;
  all) for m in steady ramp storm steering recv-batch idle soak; do "$0" "$m"; done ;;
  *) echo "usage: $0 steady|ramp|storm|steering|recv-batch|idle|soak|all" >&2; exit 2 ;;
esac
