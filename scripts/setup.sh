#!/usr/bin/env bash
# Installs what Tern needs on a fresh Debian machine (idempotent): cmake, with which the build
# compiles libopus 1.5.2 from the sources of the opusic-sys crate (vendor/README.md), pkg-config, espeak-ng, sox and asterisk-core-sounds-en-wav for speech fixtures and the turn-taking
# fit set, flite and asterisk-core-sounds-fr-wav/-it-wav for the held-out turn-taking sets the CI
# evaluation asserts on (synthetic voices, and two people's recorded prompts), redis-server for the fleet tests (each starts its own on a free port), plus any
# packages given as arguments (the interop tests add browsers). Uses sudo when not root.
set -euo pipefail
need=()
for p in cmake pkg-config espeak-ng sox flite asterisk-core-sounds-en-wav \
  asterisk-core-sounds-fr-wav asterisk-core-sounds-it-wav redis-server "$@"; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
