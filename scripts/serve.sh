#!/usr/bin/env bash
# The README's run command: installs dependencies, builds in release mode and starts `tern serve`
# with the built-in echo agent (HTTP on 127.0.0.1:8080, media on UDP 3478). Extra flags pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --bin tern
exec ./target/release/tern serve "$@"
