#!/usr/bin/env bash
# The README's test command: installs dependencies, checks formatting and lints, runs every test.
# Prints the wall time of each phase (CI's budget is tight: keep the whole well under 40 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
phase() {
  local name="$1"; shift
  local t=$SECONDS
  "$@"
  echo "phase ${name}: $((SECONDS - t)) s (total $((SECONDS - start)) s)"
}
phase setup ./scripts/setup.sh
phase fmt cargo fmt --all -- --check
phase clippy cargo clippy --all-targets -- -D warnings
if command -v cargo-nextest >/dev/null; then
  phase tests cargo nextest run --workspace --no-fail-fast
else
  # The engine's scenarios share one test binary; nextest gives each test a process of its own,
  # plain cargo test would run them as threads of one process (in-process engines, metrics), so
  # one at a time here.
  phase tests cargo test --workspace --no-fail-fast -- --test-threads=1
fi
# The host tuning script's dry run must keep working (it changes nothing).
phase tune-host ./scripts/tune-host.sh
# Real clients: browsers, SDKs and other WebRTC stacks against a real `tern serve`.
phase interop ./scripts/interop.sh
