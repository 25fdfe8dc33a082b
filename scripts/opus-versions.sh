#!/usr/bin/env bash
# The libopus the engine links (1.5.2, built from the opusic-sys crate's sources by CMake in
# Release, x86 SIMD chosen at run time; vendor/README.md) against Debian's libopus 1.3.1, the one
# it linked before: the same speech, the engine's encoder settings, CPU per frame and wideband PESQ.
# 1.5.2 is built here a second time as a shared library from the very sources the engine's build
# uses, so that both load into one harness (tools/opus_versions.py, ctypes) and nothing else
# differs; runs alternate Debian, source, source, Debian. Also writes the shipped library's full
# complexity table (scripts/codec-table.sh) under codec/.
# Usage: scripts/opus-versions.sh [OUT_DIR]   (default perf-reports/<date>-opus-versions)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-perf-reports/$(date +%F)-opus-versions}
work=target/opus-versions
mkdir -p "$out" "$work"
./scripts/setup.sh cmake libopus0
debian=$(/sbin/ldconfig -p | awk '/libopus\.so\.0 .*x86-64/ {print $NF; exit}')
[ -n "$debian" ] || { echo "opus-versions: Debian's libopus.so.0 not found" >&2; exit 1; }
# The opusic-sys sources cargo fetched for the engine's build (Cargo.lock's version).
src=$(cargo metadata --format-version 1 --locked | python3 -c '
import json, sys, os
m = json.load(sys.stdin)
p = next(p for p in m["packages"] if p["name"] == "opusic-sys")
print(os.path.join(os.path.dirname(p["manifest_path"]), "opus"))')
if [ ! -f "$work/build/libopus.so.0" ]; then
  cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    -DOPUS_BUILD_TESTING=OFF -DOPUS_BUILD_PROGRAMS=OFF > "$work/cmake.log"
  cmake --build "$work/build" -j"$(nproc)" > /dev/null
fi
CODEC_TABLE_WORK="$work/codec" ./scripts/codec-table.sh "$out/codec"
taskset -c "$(($(nproc) - 1))" target/interop-venv/bin/python tools/opus_versions.py "$out" \
  "$work/codec/speech-24k.wav" "debian=$debian" "source=$work/build/libopus.so.0"
