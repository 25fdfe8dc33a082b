#!/usr/bin/env bash
# Debian's libopus (1.3.1) against a current libopus (1.5.2) built from source with its x86 SIMD
# paths (SSE4.1, AVX2 and FMA, chosen at run time by CPU detection), in one run: the same
# tern-codec-table (the engine's encoder settings) built twice, once linked to each, on the same
# speech, scored with the same PESQ, and run in the order Debian, source, source, Debian so that
# drift on a shared machine shows. The 1.5.2 sources come from crates.io: the opusic-sys crate
# bundles them (its patch touches only MSVC build settings).
# Usage: scripts/opus-versions.sh [OUT_DIR]   (default perf-reports/<date>-opus-versions)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-perf-reports/$(date +%F)-opus-versions}
./scripts/setup.sh cmake
src=target/opus-1.5.2
if [ ! -f "$src/lib/libopus.a" ]; then
  mkdir -p "$src/fetch/src"
  cat > "$src/fetch/Cargo.toml" <<'TOML'
[package]
name = "opus-source-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
opusic-sys = { version = "=0.5.8", default-features = false }

[workspace]
TOML
  echo 'fn main() {}' > "$src/fetch/src/main.rs"
  (cd "$src/fetch" && cargo vendor --quiet vendor > /dev/null)
  grep -q 'PACKAGE_VERSION="1.5.2"' "$src/fetch/vendor/opusic-sys/opus/package_version"
  cmake -S "$src/fetch/vendor/opusic-sys/opus" -B "$src/build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$PWD/$src" -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
    -DOPUS_BUILD_TESTING=OFF -DOPUS_BUILD_PROGRAMS=OFF > "$src/cmake.log"
  cmake --build "$src/build" -j"$(nproc)" > /dev/null
  cmake --install "$src/build" > /dev/null
fi
# audiopus_sys links the static library under $LIBOPUS_LIB_DIR/lib when told to skip pkg-config.
LIBOPUS_LIB_DIR="$PWD/$src" LIBOPUS_STATIC=1 LIBOPUS_NO_PKG=1 CARGO_TARGET_DIR=target/opus-source \
  cargo build --quiet -p tern-bench --bin tern-codec-table
debian=./target/debug/tern-codec-table
source=./target/opus-source/debug/tern-codec-table
CODEC_TABLE_WORK=target/codec-table-debian ./scripts/codec-table.sh "$out/debian-run1"
CODEC_TABLE_WORK=target/codec-table-source CODEC_TABLE_BIN=$source ./scripts/codec-table.sh "$out/source-run1"
CODEC_TABLE_WORK=target/codec-table-source CODEC_TABLE_BIN=$source ./scripts/codec-table.sh "$out/source-run2"
CODEC_TABLE_WORK=target/codec-table-debian CODEC_TABLE_BIN=$debian ./scripts/codec-table.sh "$out/debian-run2"
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
runs = {k: json.loads((out / k / "table.json").read_text()) for k in
        ["debian-run1", "source-run1", "source-run2", "debian-run2"]}
def enc(r, c): return next(x for x in r["encode"] if x["complexity"] == c)
def dec(r, hz): return next(x for x in r["decode_complexity5"] if x["rate"] == hz)
lines = ["| | " + " | ".join(f"{k} ({runs[k]['libopus']})" for k in runs) + " |",
         "|---|" + "---|" * len(runs)]
for c in (0, 3, 5, 6, 10):
    lines.append(f"| encode c{c} µs mean / PESQ | " + " | ".join(
        f"{enc(r, c)['encode_us_mean']:.1f} / {enc(r, c)['pesq_wb']:.2f}" for r in runs.values()) + " |")
for hz in (16000, 24000):
    lines.append(f"| decode to {hz} Hz µs / PESQ | " + " | ".join(
        f"{dec(r, hz)['decode_us_mean']:.1f} / {dec(r, hz)['pesq_wb']:.2f}" for r in runs.values()) + " |")
d = [runs["debian-run1"], runs["debian-run2"]]; s = [runs["source-run1"], runs["source-run2"]]
mean = lambda rs, f: sum(f(r) for r in rs) / len(rs)
e5 = mean(s, lambda r: enc(r, 5)["encode_us_mean"]) / mean(d, lambda r: enc(r, 5)["encode_us_mean"])
d24 = mean(s, lambda r: dec(r, 24000)["decode_us_mean"]) / mean(d, lambda r: dec(r, 24000)["decode_us_mean"])
lines += ["", f"Source build / Debian, means of both runs: encode at complexity 5 {e5:.2f}x, decode to 24 kHz {d24:.2f}x."]
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
