#!/usr/bin/env bash
# Regenerates the speech fixtures used by tests: espeak-ng speech, resampled with sox to 24 kHz
# mono 16-bit, with 300 ms of leading silence. Needs espeak-ng and sox (Debian packages).
set -euo pipefail
out="$(cd "$(dirname "$0")/.." && pwd)/engine/tests/data"
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
espeak-ng -v en-us -s 160 -w "$tmp/raw.wav" "Hello Tern, please repeat this sentence back to me."
sox "$tmp/raw.wav" -r 24000 -c 1 -b 16 "$out/hello-24k.wav" pad 0.3 0 norm -3
soxi "$out/hello-24k.wav"
