#!/usr/bin/env python3
"""Reference figures for Tern's Smart Turn test, computed the way Pipecat computes them.

Runs Pipecat's own feature code (`_whisper_features.py`, from the pipecat-ai wheel) and
onnxruntime for a few clips cut from engine/tests/data/hello-16k.wav, and writes to
engine/tests/data/smart-turn-ref.json, which `core::turn::smart_turn`'s tests compare against:
sampled log-mel values; `probability`, the committed model (engine/models/smart_turn_v3_2.onnx) run
by onnxruntime without graph optimizations, i.e. each ONNX operator's own arithmetic, which tract
must reproduce; and `pipecat_probability`, the wheel's original model run as Pipecat runs it
(ORT_ENABLE_ALL), whose fused int8 kernels round differently and can land on the other side of
0.5 on a borderline clip.

Usage: reference.py   (needs: pip install onnxruntime numpy; downloads pipecat-ai==1.14.0)
"""
import glob
import json
import os
import subprocess
import sys
import tempfile
import wave
import zipfile

import numpy as np
import onnxruntime as ort

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
MODEL = os.path.join(ROOT, "engine", "models", "smart_turn_v3_2.onnx")
WAV = os.path.join(ROOT, "engine", "tests", "data", "hello-16k.wav")
OUT = os.path.join(ROOT, "engine", "tests", "data", "smart-turn-ref.json")
FEATURES = "pipecat/audio/turn/smart_turn/_whisper_features.py"
ORIGINAL = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
# (mel bin, frame) points compared one by one.
POINTS = [(m, f) for m in (0, 7, 20, 41, 63, 79) for f in (0, 250, 500, 640, 700, 760, 799)]


def load_features_module(tmp):
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
                    "pipecat-ai==1.14.0"], check=True)
    wheel = glob.glob(os.path.join(tmp, "pipecat_ai-*.whl"))[0]
    path = os.path.join(tmp, "whisper_features.py")
    with zipfile.ZipFile(wheel) as z, open(path, "wb") as f:
        f.write(z.read(FEATURES))
        with open(os.path.join(tmp, "original.onnx"), "wb") as o:
            o.write(z.read(ORIGINAL))
    sys.path.insert(0, tmp)
    import whisper_features
    return whisper_features


def last_8s(audio):
    n = 8 * 16000
    if len(audio) >= n:
        return audio[-n:]
    return np.pad(audio, (n - len(audio), 0))


def main():
    with wave.open(WAV) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    audio = pcm.astype(np.float32) / 32768.0
    # The whole greeting (a finished turn), and two cuts inside it that the model scores low.
    clips = {
        "whole": (0, len(audio)),
        "cut_30": (0, int(len(audio) * 0.30)),
        "cut_75": (0, int(len(audio) * 0.75)),
    }
    exact = ort.SessionOptions()
    exact.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(MODEL, exact)
    with tempfile.TemporaryDirectory() as tmp:
        feats = load_features_module(tmp)
        fused = ort.SessionOptions()
        fused.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        pipecat = ort.InferenceSession(os.path.join(tmp, "original.onnx"), fused)
        out = {"model": os.path.basename(MODEL), "wav": os.path.basename(WAV), "clips": []}
        for name, (a, b) in clips.items():
            x = last_8s(audio[a:b])
            mel = feats.compute_whisper_log_mel_features(x, do_normalize=True)
            p = session.run(None, {"input_features": mel[None, :, :]})[0][0].item()
            q = pipecat.run(None, {"input_features": mel[None, :, :]})[0][0].item()
            out["clips"].append({
                "name": name, "start": a, "end": b, "probability": p, "pipecat_probability": q,
                "mean": float(mel.mean()),
                "points": [[m, f, float(mel[m, f])] for m, f in POINTS],
            })
            print(f"{name}: samples {a}..{b}, probability {p:.4f} (as Pipecat runs it: {q:.4f})")
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
