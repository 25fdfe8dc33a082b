#!/usr/bin/env python3
"""Builds the labeled turn-taking evaluation set, reproducibly (fixed seed, Debian tools only).

Each clip is 16 kHz mono PCM16: lead-in silence, one user turn, then 9 s of silence (longer than
the longest semantic_vad wait, so every detector gets its chance to release). A turn is:
- "paused": 2-3 espeak-ng phrases with mid-sentence pauses of 300-1200 ms; the phrases before a
  pause end in a comma or a filler, so they carry continuation prosody, as people's do;
- "plain": one complete espeak-ng sentence (statements and some questions);
- "prompt": a recorded human prompt from Debian's asterisk-core-sounds-en-wav.
Two more kinds exist for the barge-in figures only (they are not turns): "backchannel" (a short
"mm-hmm", "yeah", "okay" said over the agent) and "noise" (pink noise alone, at the level of the
5/10/20 dB mixes).
Every clip is also mixed with pink noise (sox) at 20, 10 and 5 dB SNR over the speech.
labels.json records, per clip, where speech really is, the mid-sentence pauses and the true end of
the turn (ground truth from the samples themselves, not from the text).

Usage: make_set.py OUT_DIR [--size ci|full|fit] [--continuous]
(fit: three times full's turns, for fitting the turn model's rule: tern-turn-eval --fit-model)
--continuous: each paused turn is said as one sentence (espeak-ng's library, for its word times)
and cut where the next phrase starts, so the words before a pause keep the sentence's running
prosody; in every other paused turn the last syllable before each pause is drawn out (sox tempo,
1.6x over its last 200 ms). The other kinds, the pauses' lengths and the noise are the same.
"""
import array
import ctypes
import json
import os
import random
import subprocess
import sys
import tempfile
import wave

RATE = 16000
TRAIL_MS = 9000
VOICES = ["en-us+m3", "en-us+f2", "en+m1", "en-us+f4", "en-gb-x-rp+m7", "en-us+m5"]
SPEEDS = [140, 165, 190]
PAUSES_MS = [300, 450, 600, 800, 1000, 1200]
SNRS = [None, 20, 10, 5]

# Phrases before a pause end with continuation: a comma, or a filler.
PAUSED = [
    ["I would like to book a table,", "for two people tomorrow evening."],
    ["So the thing is,", "um,", "I need to change my delivery address."],
    ["Can you tell me,", "what time the pharmacy closes on Sundays?"],
    ["My account number is four seven two,", "nine nine one."],
    ["I was thinking about,", "uh,", "maybe going to the coast this weekend."],
    ["The problem started last Tuesday,", "when the heating stopped working."],
    ["Please send the report to Anna,", "and copy the whole finance team."],
    ["If it rains tomorrow,", "we should move the meeting indoors."],
    ["What I really want to know is,", "whether the warranty covers water damage."],
    ["Let me think,", "the flight leaves at half past seven."],
    ["I have a question about my bill,", "there is a charge I do not recognise."],
    ["We could take the train,", "or we could rent a car for the day."],
    ["First you open the settings,", "then you choose the network tab."],
    ["The best part of the trip was,", "hmm,", "probably the mountain hike."],
    ["I ordered the blue jacket,", "but you sent me a red one."],
    ["Tell the doctor that,", "the pain is worse in the morning."],
]
PLAIN = [
    "I need a taxi to the airport.",
    "What is the weather like in Paris today?",
    "Please cancel my subscription.",
    "Thank you, that is all I needed.",
    "Can you repeat the last number?",
    "My name is John Smith.",
    "I would like to speak to a manager.",
    "Set an alarm for six thirty.",
    "How long will the delivery take?",
    "That sounds perfect, book it.",
    "No, I said Tuesday, not Thursday.",
    "Turn off the lights in the kitchen.",
]
BACKCHANNELS = ["Mm-hmm.", "Yeah.", "Okay.", "Right.", "Uh-huh.", "I see."]
PROMPT_DIR = "/usr/share/asterisk/sounds/en"
# Speech RMS the noise-only clips are scaled against (a typical espeak-ng phrase).
REF_SPEECH_RMS = 3000.0


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def read_wav16(path, tmp):
    """Any WAV -> 16 kHz mono int16 samples, through sox."""
    out = os.path.join(tmp, "conv.wav")
    run(["sox", "-R", path, "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer", out])
    with wave.open(out, "rb") as w:
        a = array.array("h", w.readframes(w.getnframes()))
    return a


def trim(a, thresh=200):
    """Cuts leading and trailing near-silence so speech bounds are exact."""
    idx = [i for i in range(0, len(a), 16) if abs(a[i]) > thresh]
    if not idx:
        return array.array("h")
    return a[max(0, idx[0] - 160):min(len(a), idx[-1] + 160)]


def speak(text, voice, speed, tmp):
    raw = os.path.join(tmp, "tts.wav")
    run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", raw, text])
    return trim(read_wav16(raw, tmp))


def lengthened(part, tmp, ms=200, factor=1.6):
    """The last `ms` of `part` said `factor` times slower at the same pitch (sox tempo): the
    drawn-out last syllable of someone who is not done."""
    n = RATE * ms // 1000
    head, tail = part[:-n], part[-n:]
    src, dst = os.path.join(tmp, "tail.wav"), os.path.join(tmp, "slow.wav")
    write_wav(src, tail)
    run(["sox", "-R", src, dst, "tempo", "-s", f"{1 / factor:.3f}"])
    return head + read_wav16(dst, tmp)


class _EspeakEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_void_p)]


_ESPEAK = {}


def espeak_words(text, voice, speed):
    """espeak-ng (its library, synchronous) says `text`: its samples, its rate, and where each
    word starts ((character offset, 1-based), ms): the CLI does not tell word times."""
    if not _ESPEAK:
        lib = ctypes.CDLL("libespeak-ng.so.1")
        # AUDIO_OUTPUT_SYNCHRONOUS, espeakINITIALIZE_DONT_EXIT
        _ESPEAK["rate"] = lib.espeak_Initialize(2, 0, None, 0x8000)
        _ESPEAK["lib"], _ESPEAK["out"] = lib, (array.array("h"), [])
        callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                    ctypes.POINTER(_EspeakEvent))

        def collect(wav, n, events):
            samples, words = _ESPEAK["out"]
            if n > 0:
                samples.extend(wav[:n])
            i = 0
            while events[i].type != 0:  # espeakEVENT_LIST_TERMINATED
                if events[i].type == 1:  # espeakEVENT_WORD
                    words.append((events[i].text_position, events[i].audio_position))
                i += 1
            return 0

        _ESPEAK["callback"] = callback(collect)
        lib.espeak_SetSynthCallback(_ESPEAK["callback"])
    lib = _ESPEAK["lib"]
    _ESPEAK["out"] = (array.array("h"), [])
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        sys.exit(f"espeak-ng has no voice {voice}")
    lib.espeak_SetParameter(1, speed, 0)  # espeakRATE, words per minute
    data = text.encode()
    # POS_CHARACTER, espeakCHARS_UTF8
    lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 1, None, None)
    lib.espeak_Synchronize()
    samples, words = _ESPEAK["out"]
    return samples, _ESPEAK["rate"], words


def speak_continuous(texts, voice, speed, lengthen, tmp):
    """The phrases said as one sentence, then cut where each next phrase starts: the words before
    each pause keep the sentence's running prosody, as a speaker's hesitation does (phrases said
    one at a time each end like a finished utterance). `lengthen`: the last syllable before each
    pause drawn out."""
    text = " ".join(texts)
    samples, rate, words = espeak_words(text, voice, speed)
    raw = os.path.join(tmp, "tts.wav")
    with wave.open(raw, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    audio = read_wav16(raw, tmp)
    cuts, offset = [], 0
    for t in texts[:-1]:
        offset += len(t.encode()) + 1
        start_ms = next(ms for pos, ms in words if pos > offset)
        cuts.append(start_ms * RATE // 1000)
    return cut_phrases(audio, cuts, lengthen, tmp)


def cut_phrases(audio, cuts, lengthen, tmp):
    """One sentence's audio cut at `cuts` (sample indices) into its phrases, each trimmed;
    `lengthen`: the last syllable before each cut drawn out."""
    bounds = [0] + cuts + [len(audio)]
    parts = [trim(audio[a:b]) for a, b in zip(bounds, bounds[1:])]
    if lengthen:
        parts = [lengthened(p, tmp) for p in parts[:-1]] + parts[-1:]
    return parts


def pink_noise(n, seed, tmp):
    out = os.path.join(tmp, "noise.wav")
    secs = n / RATE + 0.1
    run(["sox", "-R", "-n", "-r", str(RATE), "-c", "1", "-b", "16", out, "synth", f"{secs:.3f}",
         "pinknoise", "vol", "0.5"])
    with wave.open(out, "rb") as w:
        a = array.array("h", w.readframes(w.getnframes()))
    # sox -R is deterministic; rotate by the seed so clips get different noise.
    k = seed % max(1, len(a))
    a = a[k:] + a[:k]
    return a[:n]


def rms(samples):
    if not samples:
        return 0.0
    return (sum(x * x for x in samples) / len(samples)) ** 0.5


def mix(clip, segments, snr_db, seed, tmp):
    speech = array.array("h")
    for s, e in segments:
        speech.extend(clip[s * RATE // 1000:e * RATE // 1000])
    noise = pink_noise(len(clip), seed, tmp)
    gain = rms(speech) / (rms(noise) * 10 ** (snr_db / 20))
    out = array.array("h", (max(-32768, min(32767, int(c + n * gain))) for c, n in zip(clip, noise)))
    return out


def write_wav(path, a):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(a.tobytes())


def silence(ms):
    return array.array("h", bytes(2 * RATE * ms // 1000))


def build_turn(parts, gaps, lead_ms):
    """Concatenates phrases with gaps; returns samples, speech segments, pauses (all in ms)."""
    clip = silence(lead_ms)
    segments, pauses = [], []
    for i, p in enumerate(parts):
        start = len(clip) * 1000 // RATE
        clip.extend(p)
        end = len(clip) * 1000 // RATE
        segments.append((start, end))
        if i < len(gaps):
            clip.extend(silence(gaps[i]))
            pauses.append((end, end + gaps[i]))
    clip.extend(silence(TRAIL_MS))
    return clip, segments, pauses


def write_source(out_root, label, size, labels):
    """One source's set: OUT_ROOT/<label>/labels.json (its clips are already written there)."""
    out_dir = os.path.join(out_root, label)
    with open(os.path.join(out_dir, "labels.json"), "w") as f:
        json.dump({"rate": RATE, "size": size, "source": label, "clips": labels}, f, indent=1)
    print(f"{len(labels)} clips in {out_dir}")
    return [dict(c, file=f"{label}-{c['file']}") for c in labels]


def write_all(out_root, size, every):
    """OUT_ROOT/all: every source's clips together (links to the same files), one labels.json."""
    all_dir = os.path.join(out_root, "all")
    os.makedirs(all_dir, exist_ok=True)
    for c in every:
        link = os.path.join(all_dir, c["file"])
        if not os.path.lexists(link):
            source_file = c["file"][len(c["source"]) + 1:]
            os.symlink(os.path.abspath(os.path.join(out_root, c["source"], source_file)), link)
    with open(os.path.join(all_dir, "labels.json"), "w") as f:
        json.dump({"rate": RATE, "size": size, "clips": every}, f, indent=1)
    print(f"{len(every)} clips in {all_dir}")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    size = "full"
    if "--size" in sys.argv:
        size = sys.argv[sys.argv.index("--size") + 1]
        if size not in ("ci", "full", "fit"):
            sys.exit("--size must be ci, full or fit")
    continuous = "--continuous" in sys.argv
    rng = random.Random(20261125)
    os.makedirs(out_dir, exist_ok=True)
    n_paused, n_plain, n_prompt = {"full": (16, 12, 12), "fit": (48, 36, 36), "ci": (8, 4, 4)}[size]
    snrs = [None, 10] if size == "ci" else SNRS
    prompts = sorted(f for f in os.listdir(PROMPT_DIR) if f.endswith(".wav")) if os.path.isdir(PROMPT_DIR) else []
    if not prompts:
        sys.exit(f"no prompts in {PROMPT_DIR}: apt-get install asterisk-core-sounds-en-wav")
    labels = []
    with tempfile.TemporaryDirectory() as tmp:
        turns = []
        for i in range(n_paused):
            texts = PAUSED[i % len(PAUSED)]
            voice, speed = VOICES[i % len(VOICES)], SPEEDS[i % len(SPEEDS)]
            if continuous:
                parts = speak_continuous(texts, voice, speed, i % 2 == 1, tmp)
            else:
                parts = [speak(t, voice, speed, tmp) for t in texts]
            gaps = [rng.choice(PAUSES_MS) for _ in parts[1:]]
            turns.append(("paused", " | ".join(texts), f"{voice} s{speed}", parts, gaps))
        for i in range(n_plain):
            voice, speed = VOICES[(i + 2) % len(VOICES)], SPEEDS[(i + 1) % len(SPEEDS)]
            text = PLAIN[i % len(PLAIN)]
            turns.append(("plain", text, f"{voice} s{speed}", [speak(text, voice, speed, tmp)], []))
        for name in rng.sample(prompts, n_prompt):
            samples = trim(read_wav16(os.path.join(PROMPT_DIR, name), tmp))
            turns.append(("prompt", name, "asterisk en (Allison)", [samples], []))
        for i in range(3 if size == "ci" else len(BACKCHANNELS)):
            voice, speed = VOICES[i % len(VOICES)], SPEEDS[i % len(SPEEDS)]
            text = BACKCHANNELS[i]
            turns.append(("backchannel", text, f"{voice} s{speed}", [speak(text, voice, speed, tmp)], []))
        for k, (kind, text, voice, parts, gaps) in enumerate(turns):
            lead = rng.choice([400, 600, 800])
            clip, segments, pauses = build_turn(parts, gaps, lead)
            for snr in snrs:
                name = f"{k:03d}-{kind}-{'clean' if snr is None else f'{snr}db'}.wav"
                audio = clip if snr is None else mix(clip, segments, snr, k * 7 + snr, tmp)
                write_wav(os.path.join(out_dir, name), audio)
                labels.append({
                    "file": name, "kind": kind, "text": text, "voice": voice,
                    "snr_db": snr, "segments_ms": segments, "pauses_ms": pauses,
                    "true_end_ms": segments[-1][1], "duration_ms": len(clip) * 1000 // RATE,
                })
        for snr in [20, 10, 5]:
            n = RATE * 6
            noise = pink_noise(n, snr, tmp)
            gain = REF_SPEECH_RMS / (rms(noise) * 10 ** (snr / 20))
            name = f"noise-{snr}db.wav"
            write_wav(os.path.join(out_dir, name),
                      array.array("h", (max(-32768, min(32767, int(x * gain))) for x in noise)))
            labels.append({
                "file": name, "kind": "noise", "text": "", "voice": "", "snr_db": snr,
                "segments_ms": [], "pauses_ms": [], "true_end_ms": 0, "duration_ms": 6000,
            })
    with open(os.path.join(out_dir, "labels.json"), "w") as f:
        json.dump({"rate": RATE, "size": size, "clips": labels}, f, indent=1)
    print(f"{len(labels)} clips in {out_dir}")


if __name__ == "__main__":
    main()
