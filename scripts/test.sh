#!/usr/bin/env bash
# The README's test command: installs dependencies, checks formatting and lints, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
if command -v cargo-nextest >/dev/null; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
# Real clients: headless Chromium and Firefox ESR on the demo page, aiortc as a scripted client.
./scripts/interop.sh
