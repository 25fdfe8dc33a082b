#!/usr/bin/env python3
"""Builds the held-out turn-taking sets: other synthesizers and voices than the fit set
(make_set.py, espeak-ng), new texts, several speaking rates, and the hesitations people make:
filled pauses ("um", "uh"), restarts, lists, numbers read out, pauses mid-clause after "and"/"so".
Nothing here was used to fit any detector parameter.

One set per source (a synthesizer voice): OUT_DIR/<source>/labels.json in make_set.py's format,
and OUT_DIR/all, every source together (links to the same files), which tern-turn-eval reports
whole and by source, condition and turn type. Each turn comes clean, with pink noise at
20, 10 and 5 dB SNR, and as 8 kHz telephone band (300-3400 Hz) clean and at 10 dB (the labels'
"condition"); what kind of hesitation or sentence a turn is sits in its "turn_type".

The only human speech installable here (Asterisk's prompts) is in the fit set, so no source here
is a person: say so wherever these figures are quoted.

--continuous: each paused turn is said as one sentence and cut where each phrase ends (flite's
phone times, festival's word times), so the words before a pause keep the sentence's running
prosody instead of ending like a finished utterance; in every other paused turn the last
syllable before each pause is drawn out (make_set.cut_phrases). Same texts, pauses and noise.

Usage: make_heldout.py OUT_DIR [--sources a,b] [--versions clean,10db,...] [--continuous]
(needs: apt-get install flite festival sox). --sources and --versions make a subset whose clips
are the same files the whole set has (the CI evaluation takes two flite voices: flite alone).
"""
import array
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_set import (RATE, REF_SPEECH_RMS, build_turn, cut_phrases, mix,  # noqa: E402
                      pink_noise, read_wav16, rms, run, trim, write_all, write_source, write_wav)

# (source label, how to synthesize).
SOURCES = [("flite-slt", "slt"), ("flite-rms", "rms"), ("flite-awb", "awb"),
           ("flite-kal16", "kal16"), ("festival-kal", None)]
STRETCH = [0.85, 1.0, 1.2]
PAUSES_MS = [300, 450, 600, 800, 1000, 1200]

# (pause type, phrases): the turn continues after each pause.
PAUSED = [
    ("filler", ["I'd like to order, um,", "a large pepperoni pizza."]),
    ("filler", ["Could you check, uh,", "whether my parcel has shipped?"]),
    ("list", ["I need eggs,", "milk,", "and two loaves of bread."]),
    ("list", ["The colours are red,", "green,", "and a sort of dark blue."]),
    ("number", ["My phone number is five five five,", "three eight one two."]),
    ("number", ["The code is nine four,", "seven seven,", "one."]),
    ("restart", ["I want to, I mean,", "can I change my seat instead?"]),
    ("restart", ["We went to the, no wait,", "it was the other restaurant."]),
    ("clause", ["I called the bank and", "they said the card was blocked."]),
    ("clause", ["It was late so", "we decided to stay at a hotel."]),
]
PLAIN = [
    ("statement", "The meeting has been moved to Friday afternoon."),
    ("question", "Is there a vegetarian option on the menu?"),
    ("statement", "I would like a refund for the broken kettle."),
    ("question", "How far is the nearest train station from here?"),
]
# Said over the agent's reply: must not drop it (the barge-in table).
BACKCHANNELS = ["Mm-hmm.", "Yeah.", "Okay.", "Right, right."]
# (label, SNR or None, telephone band)
VERSIONS = [("clean", None, False), ("20db", 20, False), ("10db", 10, False), ("5db", 5, False),
            ("tel-clean", None, True), ("tel-10db", 10, True)]


def speak(text, source, stretch, tmp):
    raw = os.path.join(tmp, "tts.wav")
    if source is None:
        txt = os.path.join(tmp, "t.txt")
        with open(txt, "w") as f:
            f.write(text)
        run(["text2wave", "-eval", f"(Parameter.set 'Duration_Stretch {stretch})", "-o", raw, txt])
    else:
        run(["flite", "-voice", source, "--setf", f"duration_stretch={stretch}", "-t", text,
             "-o", raw])
    return trim(read_wav16(raw, tmp))


def output(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def flite_phone_ends(text, source, stretch):
    """flite's phones for `text` with their end times (s), pauses ("pau") included."""
    out = output(["flite", "-voice", source, "--setf", f"duration_stretch={stretch}", "-psdur",
                  "-t", text, "none"])
    return [(ph, float(t)) for ph, t in (x.rsplit(":", 1) for x in out.split())]


def festival_words(text, stretch, tmp, wav=None):
    """festival's words for `text` with their end times (s); writes the audio to `wav`."""
    scm = os.path.join(tmp, "words.scm")
    quoted = text.replace("\\", "").replace('"', '\\"')
    with open(scm, "w") as f:
        f.write(f"(Parameter.set 'Duration_Stretch {stretch})\n"
                f'(set! utt (utt.synth (Utterance Text "{quoted}")))\n'
                + (f'(utt.save.wave utt "{wav}" \'riff)\n' if wav else "")
                + "(mapcar (lambda (w) (format t \"W %s %f\\n\" (item.name w) "
                  "(item.feat w \"word_end\"))) (utt.relation.items utt 'Word))\n")
    return [float(line.split()[2]) for line in output(["festival", "-b", scm]).splitlines()
            if line.startswith("W ")]


def speak_continuous(texts, source, stretch, lengthen, tmp):
    """The phrases said as one sentence, then cut where each phrase ends: unlike phrases said
    one at a time, the words before each pause keep the sentence's running (non-final) prosody,
    as a speaker's hesitation does. `lengthen`: the last syllable before each pause drawn out."""
    text = " ".join(texts)
    raw = os.path.join(tmp, "tts.wav")
    cuts = []
    if source is None:
        ends = festival_words(text, stretch, tmp, wav=raw)
        for j in range(1, len(texts)):
            words = len(festival_words(" ".join(texts[:j]), stretch, tmp))
            cuts.append(ends[words - 1])
    else:
        run(["flite", "-voice", source, "--setf", f"duration_stretch={stretch}", "-t", text,
             "-o", raw])
        phones = [(ph, t) for ph, t in flite_phone_ends(text, source, stretch) if ph != "pau"]
        for j in range(1, len(texts)):
            prefix = flite_phone_ends(" ".join(texts[:j]), source, stretch)
            n = sum(1 for ph, _ in prefix if ph != "pau")
            cuts.append(phones[n - 1][1])
    return cut_phrases(read_wav16(raw, tmp), [int(c * RATE) for c in cuts], lengthen, tmp)


def telephone(clip, tmp):
    """Band-limits to 300-3400 Hz at 8 kHz and back to 16 kHz (what a phone call carries)."""
    src, dst = os.path.join(tmp, "w.wav"), os.path.join(tmp, "tel.wav")
    write_wav(src, clip)
    run(["sox", "-R", src, "-r", "8000", dst, "sinc", "300-3400"])
    return read_wav16(dst, tmp)[:len(clip)]


def flag(name, choices):
    if name not in sys.argv:
        return choices
    picked = sys.argv[sys.argv.index(name) + 1].split(",")
    unknown = [p for p in picked if p not in choices]
    if unknown:
        sys.exit(f"{name}: unknown {', '.join(unknown)} (have {', '.join(choices)})")
    return picked


def main():
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    sources = flag("--sources", [label for label, _ in SOURCES])
    versions = flag("--versions", [v for v, _, _ in VERSIONS])
    continuous = "--continuous" in sys.argv
    tools = ["flite", "sox"] + (["text2wave"] if any(s.startswith("festival") for s in sources)
                                else [])
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: apt-get install flite festival sox")
    out_root = sys.argv[1]
    rng = random.Random(20261129)
    every = []
    with tempfile.TemporaryDirectory() as tmp:
        for s, (label, source) in enumerate(SOURCES):
            if label not in sources:
                # The draws this source would take, so the next ones get the whole set's clips.
                for _, texts in PAUSED:
                    [rng.choice(PAUSES_MS) for _ in texts[1:]]
                for _ in range(len(PAUSED) + len(PLAIN) + len(BACKCHANNELS)):
                    rng.choice([400, 600, 800])
                continue
            out_dir = os.path.join(out_root, label)
            os.makedirs(out_dir, exist_ok=True)
            turns = []
            for i, (ptype, texts) in enumerate(PAUSED):
                stretch = STRETCH[(i + s) % len(STRETCH)]
                if continuous:
                    parts = speak_continuous(texts, source, stretch, i % 2 == 1, tmp)
                else:
                    parts = [speak(t, source, stretch, tmp) for t in texts]
                gaps = [rng.choice(PAUSES_MS) for _ in parts[1:]]
                turns.append(("paused", ptype, " | ".join(texts), stretch, parts, gaps))
            for i, (ptype, text) in enumerate(PLAIN):
                stretch = STRETCH[(i + s + 1) % len(STRETCH)]
                turns.append(("plain", ptype, text, stretch, [speak(text, source, stretch, tmp)],
                              []))
            for i, text in enumerate(BACKCHANNELS):
                stretch = STRETCH[(i + s) % len(STRETCH)]
                turns.append(("backchannel", "backchannel", text, stretch,
                              [speak(text, source, stretch, tmp)], []))
            labels = []
            for k, (kind, ptype, text, stretch, parts, gaps) in enumerate(turns):
                clip, segments, pauses = build_turn(parts, gaps, rng.choice([400, 600, 800]))
                for vlabel, snr, tel in VERSIONS:
                    if vlabel not in versions:
                        continue
                    audio = clip if snr is None else mix(clip, segments, snr, k * 7 + snr, tmp)
                    if tel:
                        audio = telephone(audio, tmp)
                    name = f"{k:03d}-{kind}-{vlabel}.wav"
                    write_wav(os.path.join(out_dir, name), audio)
                    labels.append({
                        "file": name, "kind": kind, "text": text, "source": label,
                        "voice": f"{label} x{stretch}", "snr_db": snr, "condition": vlabel,
                        "turn_type": ptype, "segments_ms": segments,
                        "pauses_ms": pauses, "true_end_ms": segments[-1][1],
                        "duration_ms": len(clip) * 1000 // RATE,
                    })
            # Noise alone, for the barge-in table (and as the room the reply's echo leaks into).
            for snr in [20, 10, 5]:
                noise = pink_noise(RATE * 6, snr + s, tmp)
                gain = REF_SPEECH_RMS / (rms(noise) * 10 ** (snr / 20))
                name = f"noise-{snr}db.wav"
                write_wav(os.path.join(out_dir, name),
                          array.array("h", (max(-32768, min(32767, int(x * gain))) for x in noise)))
                labels.append({
                    "file": name, "kind": "noise", "text": "", "source": label, "voice": "",
                    "snr_db": snr, "condition": f"{snr}db", "turn_type": "noise",
                    "segments_ms": [], "pauses_ms": [], "true_end_ms": 0, "duration_ms": 6000,
                })
            every.extend(write_source(out_root, label, "heldout", labels))
    write_all(out_root, "heldout", every)


if __name__ == "__main__":
    main()
