#!/usr/bin/env bash
# Multi-core capacity search: tern-bench ramps and setup storms with the engine on 1, 4 and 8
# cores and the load generator on the CPUs above them, to check that per-core capacity scales with
# shards. Needs a machine of at least 16 CPUs (the 16-core device); run from the repository root.
#   scripts/capacity-cores.sh [coarse|fine]
#   coarse: ramps on 1, 4 and 8 cores in steps of 40 sessions per core, storms on 1 and 8 cores;
#   fine: ramps on 1 and 8 cores in steps of 20 sessions per core, the 8-core one with each steering;
#   steady: 120 sessions per engine core for 20 s on 1, 4 and 8 cores (CPU per session-second).
#   BIN_DIR   where tern and tern-bench are (default target/release)
#   RESULTS   where the reports go (default perf-reports/<date>-capacity-cores)
# Each phase is bounded by `timeout`, so a stuck phase costs its own time only.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN_DIR="${BIN_DIR:-target/release}"
RESULTS="${RESULTS:-perf-reports/$(date +%F)-capacity-cores}"
mkdir -p "$RESULTS"
cpus=$(nproc)
[ "$cpus" -ge 16 ] || { echo "capacity-cores.sh: needs 16 CPUs, this machine has $cpus" >&2; exit 2; }
ulimit -n 1048576 2>/dev/null || ulimit -n 65536
ulimit -l unlimited 2>/dev/null || true
bench="$BIN_DIR/tern-bench"
log="$RESULTS/run.log"
{
  echo "machine: $cpus CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(uname -sr)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} | tee "$log"
phase() {
  local name="$1" limit="$2"; shift 2
  local t0=$SECONDS
  echo "== $name: tern-bench $*" | tee -a "$log"
  timeout "$limit" "$bench" "$@" --tern "$BIN_DIR/tern" --report-dir "$RESULTS/$name" 2>&1 \
    | grep -v '^\s*$' | tail -40 | tee -a "$log"
  echo "== $name: rc ${PIPESTATUS[0]}, $((SECONDS - t0)) s" | tee -a "$log"
}
# Load on CPUs 8-15 for every engine size, so only the engine's share changes.
if [ "${1:-coarse}" = fine ]; then
  phase ramp-1core-fine 130 --mode ramp --target tern --engine-cores 0 --load-cores 8-15 \
    --sessions 100 --step 20 --step-s 8 --max-sessions 240
  for steering in hash cpu; do
    phase "ramp-8core-$steering" 130 --mode ramp --target tern --engine-cores 0-7 --load-cores 8-15 \
      --sessions 640 --step 160 --step-s 8 --max-sessions 1600 --steering "$steering"
  done
  exit 0
fi
if [ "${1:-coarse}" = steady ]; then
  # CPU per session-second at 120 sessions per engine core, 20 s windows.
  for c in 1 4 8; do
    phase "steady-${c}core" 60 --mode steady --target tern --engine-cores "0-$((c - 1))" \
      --load-cores 8-15 --sessions $((120 * c)) --seconds 20
  done
  exit 0
fi
phase ramp-1core 120 --mode ramp --target tern --engine-cores 0 --load-cores 8-15 \
  --sessions 120 --step 40 --step-s 6 --max-sessions 480
phase ramp-4core 150 --mode ramp --target tern --engine-cores 0-3 --load-cores 8-15 \
  --sessions 480 --step 160 --step-s 6 --max-sessions 1920
phase ramp-8core 180 --mode ramp --target tern --engine-cores 0-7 --load-cores 8-15 \
  --sessions 960 --step 320 --step-s 6 --max-sessions 3840
phase storm-1core 35 --mode setup-storm --target tern --engine-cores 0 --load-cores 8-15 \
  --seconds 10 --window 32
phase storm-8core 35 --mode setup-storm --target tern --engine-cores 0-7 --load-cores 8-15 \
  --seconds 10 --window 128 --signalers 8
