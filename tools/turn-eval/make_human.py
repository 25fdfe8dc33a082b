#!/usr/bin/env python3
"""Builds the held-out set of human speech: recorded prompts of two people no detector was fitted
on, from Debian's asterisk-core-sounds-fr-wav (June, Canadian French) and
asterisk-core-sounds-it-wav (Carlo, Italian). Smart Turn v3.2 is multilingual; the prosodic rule
and earshot are language-blind. (The Spanish prompts are Allison's, the fit split's speaker, so
they are left out.)

A turn is one prompt of at least 2 s (most are full sentences, many with a clause or sentence
break inside): lead-in silence, the prompt, 9 s of silence. The prompts are 8 kHz telephone
recordings, resampled to 16 kHz. Each comes clean and with pink noise at 10 dB SNR. No pauses are
labeled inside a prompt, so the figures are the end-of-turn delay after its true end and the turns
a detector released before their end (`turns cut before their end`, where a pause inside the
prompt was taken for the end); false cut-ins per labeled pause do not apply.

One set per speaker (OUT_DIR/<source>/labels.json, make_set.py's format) and OUT_DIR/all.
Usage: make_human.py OUT_DIR   (needs: apt-get install asterisk-core-sounds-fr-wav
asterisk-core-sounds-it-wav sox)
"""
import os
import random
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_set import (RATE, build_turn, mix, read_wav16, trim, write_all,  # noqa: E402
                      write_source, write_wav)

# (source label, prompt directory)
SPEAKERS = [("human-fr-june", "/usr/share/asterisk/sounds/fr_CA_f_June"),
            ("human-it-carlo", "/usr/share/asterisk/sounds/it_IT_m_Carlo")]
PER_SPEAKER = 40
MIN_MS = 2000
VERSIONS = [("clean", None), ("10db", 10)]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_root = sys.argv[1]
    rng = random.Random(20261129)
    every = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, root in SPEAKERS:
            if not os.path.isdir(root):
                sys.exit(f"no prompts in {root}: apt-get install asterisk-core-sounds-fr-wav "
                         "asterisk-core-sounds-it-wav")
            names = sorted(f for f in os.listdir(root) if f.endswith(".wav"))
            prompts = []
            for name in names:
                samples = trim(read_wav16(os.path.join(root, name), tmp))
                if len(samples) * 1000 // RATE >= MIN_MS:
                    prompts.append((name, samples))
            picked = rng.sample(prompts, min(PER_SPEAKER, len(prompts)))
            out_dir = os.path.join(out_root, label)
            os.makedirs(out_dir, exist_ok=True)
            labels = []
            for k, (name, samples) in enumerate(picked):
                clip, segments, pauses = build_turn([samples], [], rng.choice([400, 600, 800]))
                for vlabel, snr in VERSIONS:
                    audio = clip if snr is None else mix(clip, segments, snr, k * 7 + snr, tmp)
                    file = f"{k:03d}-prompt-{vlabel}.wav"
                    write_wav(os.path.join(out_dir, file), audio)
                    labels.append({
                        "file": file, "kind": "prompt", "text": name, "source": label,
                        "voice": label, "snr_db": snr, "condition": vlabel,
                        "turn_type": "prompt", "segments_ms": segments, "pauses_ms": pauses,
                        "true_end_ms": segments[-1][1], "duration_ms": len(clip) * 1000 // RATE,
                    })
            print(f"{label}: {len(picked)} of {len(prompts)} prompts of 2 s or more")
            every.extend(write_source(out_root, label, "human", labels))
    write_all(out_root, "human", every)


if __name__ == "__main__":
    main()
