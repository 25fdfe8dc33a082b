#!/usr/bin/env bash
# --opus-quiet-complexity: CPU per reply frame and PESQ when frames at or under a peak are encoded
# at a lower complexity (tools/quiet_complexity.py). The choice (peak 64, complexity 2) was made on
# the codec table's speech (espeak-ng en-us, flite slt, festival kal, the fixture); reported also
# on speech held out from it: other voices of the same synthesizers with other sentences, and
# people's recorded prompts (Asterisk's English prompts, 8 kHz, narrowband PESQ; the first 20 of
# them, about a minute and a half: the scorer crashes on the three minutes of 40).
# Run after scripts/opus-versions.sh (it builds the shared libopus and the codec speech).
# Usage: scripts/quiet-complexity.sh OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1
work=target/opus-versions
lib=$work/build/libopus.so.0
[ -f "$lib" ] && [ -f "$work/codec/speech-24k.wav" ] || { echo "run scripts/opus-versions.sh first" >&2; exit 1; }
./scripts/setup.sh espeak-ng flite sox asterisk-core-sounds-en-wav
h=$work/heldout
mkdir -p "$h"
sentences=(
  "The train to Manchester leaves from platform nine at a quarter past six."
  "Well, I suppose we could try again next week, if that works for you."
  "Add milk, eggs, two loaves of bread and a bag of apples to the list."
  "Can you tell me why my last bill was forty two dollars higher than usual?"
)
parts=()
i=0
for s in "${sentences[@]}"; do
  espeak-ng -v en-gb-x-rp -s 150 -w "$h/g$i.wav" "$s"
  espeak-ng -v en-us+f3 -s 185 -w "$h/u$i.wav" "$s"
  flite -voice awb -t "$s" -o "$h/a$i.wav"
  flite -voice rms -t "$s" -o "$h/r$i.wav"
  for k in g u a r; do
    sox "$h/$k$i.wav" -r 24000 -c 1 -b 16 "$h/${k}${i}-24k.wav" pad 0 0.4
    parts+=("$h/${k}${i}-24k.wav")
  done
  i=$((i + 1))
done
sox "${parts[@]}" "$h/synth-24k.wav"
# People: the first 20 of Asterisk's English prompts, in file-name order.
mapfile -t prompts < <(ls /usr/share/asterisk/sounds/en/*.wav | head -20)
sox "${prompts[@]}" -r 24000 -c 1 -b 16 "$h/people-24k.wav"
taskset -c "$(($(nproc) - 1))" target/interop-venv/bin/python tools/quiet_complexity.py "$out" "$lib" \
  "fit (codec table speech)=$work/codec/speech-24k.wav" \
  "held out: other synthetic voices=$h/synth-24k.wav" \
  "held out: people (Asterisk prompts)=$h/people-24k.wav:nb"
