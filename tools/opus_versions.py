"""Two libopus builds, the same speech, the engine's encoder settings: CPU per 20 ms frame
(encode, and decode at the 24 kHz model rate) and wideband PESQ, measured through ctypes so that
nothing but the library differs. Runs alternate A, B, B, A so that drift on a shared machine shows.

Usage: opus_versions.py OUT_DIR SPEECH_24K_WAV NAME=LIB.so NAME=LIB.so [COMPLEXITIES]"""

import ctypes
import json
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
from pesq import pesq

OPUS_APPLICATION_VOIP = 2048
SET_COMPLEXITY, SET_INBAND_FEC, SET_PACKET_LOSS_PERC = 4010, 4012, 4014
RATE, FRAME = 24000, 480


def open_lib(path):
    lib = ctypes.CDLL(path)
    lib.opus_encoder_create.restype = ctypes.c_void_p
    lib.opus_decoder_create.restype = ctypes.c_void_p
    lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_encode.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    lib.opus_decode.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.opus_encoder_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.opus_get_version_string.restype = ctypes.c_char_p
    return lib


def to16k(pcm):
    """24 kHz int16 -> 16 kHz float (sox, as tools/codec_pesq.py resamples)."""
    return resample(pcm, 16000)


def resample(pcm, rate):
    """24 kHz int16 -> `rate` float, by sox."""
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "a.wav", Path(d) / "b.wav"
        with wave.open(str(src), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(RATE)
            w.writeframes(pcm.astype(np.int16).tobytes())
        subprocess.run(["sox", str(src), "-r", str(rate), str(dst)], check=True)
        with wave.open(str(dst)) as r:
            return np.frombuffer(r.readframes(r.getnframes()), dtype=np.int16).astype(np.float32)


def run(lib, frames, complexity):
    """The engine's encoder (VOIP, in-band FEC for 5% loss, automatic bitrate) and decoder."""
    err = ctypes.c_int()
    enc = lib.opus_encoder_create(RATE, 1, OPUS_APPLICATION_VOIP, ctypes.byref(err))
    lib.opus_encoder_ctl(enc, SET_INBAND_FEC, 1)
    lib.opus_encoder_ctl(enc, SET_PACKET_LOSS_PERC, 5)
    lib.opus_encoder_ctl(enc, SET_COMPLEXITY, complexity)
    dec = lib.opus_decoder_create(RATE, 1, ctypes.byref(err))
    packet = ctypes.create_string_buffer(1500)
    pcm = np.zeros(FRAME, dtype=np.int16)
    out = np.zeros(len(frames) * FRAME, dtype=np.int16)
    enc_ns = dec_ns = nbytes = 0
    for i, f in enumerate(frames):
        t0 = time.perf_counter_ns()
        n = lib.opus_encode(enc, f.ctypes.data, FRAME, packet, 1500)
        t1 = time.perf_counter_ns()
        lib.opus_decode(dec, packet, n, pcm.ctypes.data, FRAME, 0)
        t2 = time.perf_counter_ns()
        enc_ns, dec_ns, nbytes = enc_ns + t1 - t0, dec_ns + t2 - t1, nbytes + n
        out[i * FRAME:(i + 1) * FRAME] = pcm
    lib.opus_encoder_destroy(enc)
    lib.opus_decoder_destroy(dec)
    n = len(frames)
    return {"encode_us": enc_ns / n / 1000, "decode_us": dec_ns / n / 1000, "kbps": nbytes * 8 / n / 20}, out


def main(out_dir, speech, a, b, complexities="0,3,4,5,6,10"):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with wave.open(speech) as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1
        x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    frames = [np.ascontiguousarray(x[i * FRAME:(i + 1) * FRAME]) for i in range(len(x) // FRAME)]
    ref = to16k(x[:len(frames) * FRAME])
    libs = dict(kv.split("=", 1) for kv in (a, b))
    names = list(libs)
    cs = [int(c) for c in complexities.split(",")]
    runs = []
    for name in [names[0], names[1], names[1], names[0]]:
        lib = open_lib(libs[name])
        version = lib.opus_get_version_string().decode()
        rows = []
        for c in cs:
            r, decoded = run(lib, frames, c)
            r["complexity"], r["pesq_wb"] = c, pesq(16000, ref, to16k(decoded), "wb")
            rows.append(r)
            print(f"{name} ({version}) c{c}: encode {r['encode_us']:.1f} us, decode {r['decode_us']:.1f} us, "
                  f"{r['kbps']:.1f} kbit/s, PESQ {r['pesq_wb']:.3f}", flush=True)
        runs.append({"name": name, "lib": libs[name], "version": version, "rows": rows})
    (out / "versions.json").write_text(json.dumps({"speech": speech, "seconds": len(x) / RATE, "runs": runs}, indent=2))

    def mean(name, c, key):
        v = [next(r for r in run["rows"] if r["complexity"] == c)[key] for run in runs if run["name"] == name]
        return sum(v) / len(v)

    lines = [f"| complexity | {names[0]} encode µs | {names[1]} encode µs | ratio | {names[0]} PESQ | {names[1]} PESQ | "
             f"{names[0]} decode µs | {names[1]} decode µs | ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for c in cs:
        e0, e1 = mean(names[0], c, "encode_us"), mean(names[1], c, "encode_us")
        d0, d1 = mean(names[0], c, "decode_us"), mean(names[1], c, "decode_us")
        lines.append(f"| {c} | {e0:.1f} | {e1:.1f} | {e1 / e0:.3f} | {mean(names[0], c, 'pesq_wb'):.3f} | "
                     f"{mean(names[1], c, 'pesq_wb'):.3f} | {d0:.1f} | {d1:.1f} | {d1 / d0:.3f} |")
    table = "\n".join(lines) + "\n"
    (out / "versions.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main(*sys.argv[1:])
