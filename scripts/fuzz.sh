#!/usr/bin/env bash
# Coverage-guided fuzzing of every target in engine/fuzz for SECS seconds each (default 90), with
# cargo-fuzz on nightly Rust (`cargo install cargo-fuzz`; `rustup toolchain install nightly`).
# Writes a markdown report with exec counts and crashes to OUT (default: stdout).
# Usage: scripts/fuzz.sh [SECS] [OUT]
set -euo pipefail
cd "$(dirname "$0")/../engine/fuzz"
secs="${1:-90}"
out="${2:-/dev/stdout}"
logs="$(mktemp -d)"
targets=(datagram stun_ufrag offer uplink client_event http_request)
for t in "${targets[@]}"; do
  cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=4096 >"$logs/$t.log" 2>&1 || true
done
{
  echo "# Fuzzing: ${secs} s per target"
  echo
  echo "- command: \`scripts/fuzz.sh $secs\` (cargo-fuzz $(cargo fuzz --version 2>/dev/null | awk '{print $2}'), $(rustc +nightly --version))"
  echo "- machine: $(nproc) cores, $(uname -sr)"
  echo "- commit: $(git rev-parse --short HEAD)"
  echo
  echo "| target | runs | seconds | execs/s | coverage (edges) | corpus | crashes |"
  echo "|---|---|---|---|---|---|---|"
  for t in "${targets[@]}"; do
    done_line="$(grep -E '^Done [0-9]+ runs' "$logs/$t.log" | tail -1)"
    runs="$(awk '{print $2}' <<<"$done_line")"
    took="$(awk '{print $5}' <<<"$done_line")"
    last="$(grep -E '^#[0-9]+' "$logs/$t.log" | tail -1)"
    cov="$(grep -oE 'cov: [0-9]+' <<<"$last" | awk '{print $2}')"
    corp="$(grep -oE 'corp: [0-9]+/[0-9a-zA-Z]+' <<<"$last" | awk '{print $2}')"
    crashes="$(ls artifacts/"$t" 2>/dev/null | grep -c '^crash-' || true)"
    eps=$(( ${runs:-0} / ${took:-1} ))
    echo "| $t | ${runs:-?} | ${took:-?} | $eps | ${cov:-?} | ${corp:-?} | ${crashes:-0} |"
  done
} >"$out"
