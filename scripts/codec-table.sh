#!/usr/bin/env bash
# Opus encode complexity 0-10 and decoder output rate against CPU per frame and PESQ (wideband),
# on about half a minute of speech from three synthesizers (espeak-ng, flite, festival: 16 kHz or
# more, so wideband PESQ applies) plus the engine's speech fixture, at the 24 kHz model rate.
# Usage: scripts/codec-table.sh [OUT_DIR]   (default perf-reports/<date>-codec)
# CODEC_TABLE_BIN: a tern-codec-table built against another libopus (scripts/opus-versions.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-perf-reports/$(date +%F)-codec}
work=${CODEC_TABLE_WORK:-target/codec-table}
bin=${CODEC_TABLE_BIN:-./target/debug/tern-codec-table}
mkdir -p "$out" "$work"
./scripts/setup.sh espeak-ng flite festival sox python3-venv
venv=target/interop-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check numpy pesq
cargo build --quiet -p tern-bench --bin tern-codec-table

sentences=(
  "Could you book a table for four at seven thirty tomorrow evening?"
  "My account number is four five nine, two two one, and the code is eighty eight."
  "I was thinking, maybe we should, um, move the meeting to Friday instead."
  "The weather in Lisbon is sunny today, with a high of twenty three degrees."
  "Please read me the last three messages, starting with the newest one."
  "No, that is not what I asked for. I wanted the blue one, not the green one."
)
parts=()
i=0
for s in "${sentences[@]}"; do
  espeak-ng -v en-us -s 165 -w "$work/e$i.wav" "$s"
  flite -voice slt -t "$s" -o "$work/f$i.wav"
  echo "$s" | text2wave -o "$work/v$i.wav"
  for k in e f v; do
    sox "$work/$k$i.wav" -r 24000 -c 1 -b 16 "$work/${k}${i}-24k.wav" pad 0 0.3
    parts+=("$work/${k}${i}-24k.wav")
  done
  i=$((i + 1))
done
parts+=(engine/tests/data/hello-24k.wav)
sox "${parts[@]}" "$work/speech-24k.wav"
$bin "$work" "$work/speech-24k.wav"
"$venv/bin/python" tools/codec_pesq.py "$work"
{
  echo "# Opus complexity and decoder rate: CPU per frame and PESQ"
  echo
  echo "Command: \`scripts/codec-table.sh\` on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(uname -sr), commit $(git rev-parse --short HEAD);"
  echo "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["libopus"])' "$work/cpu.json") (\`$bin\`), the dev profile."
  echo "Speech: $(soxi -D "$work/speech-24k.wav" | cut -c1-5) s, six sentences from espeak-ng (en-us), flite (slt) and festival"
  echo "(each at 16 kHz or more, resampled to the 24 kHz model rate) plus the engine's fixture. The"
  echo "encoder is the engine's (VOIP, in-band FEC for 5% loss, automatic bitrate), fed 20 ms frames;"
  echo "PESQ is ITU-T P.862.2 wideband (the \`pesq\` package from PyPI) on the decoded audio at 16 kHz"
  echo "against the original. Synthesized speech only: no human recordings at 16 kHz or more ship in"
  echo "Debian or PyPI packages this machine can install (Asterisk's prompts are 8 kHz)."
  echo
  cat "$work/table.md"
} > "$out/README.md"
cp "$work/table.json" "$out/table.json"
cat "$out/README.md"
