"""What encoding quiet reply frames at a lower Opus complexity costs in quality and saves in CPU.

The engine encodes a reply frame whose loudest sample is at or under a threshold at the quiet
complexity and every other frame at the speech complexity (5). This replays that choice, frame by
frame, with the libopus the engine links (built as a shared library from the same sources), on
the sets given, and scores the decoded audio with PESQ against the original: wideband for speech
at 16 kHz or more, narrowband for 8 kHz recordings. The threshold and quiet complexity were
chosen on the first set (the codec table's speech); the others are held out from that choice.

Usage: quiet_complexity.py OUT_DIR LIB.so NAME=WAV_24K[:nb] ..."""

import ctypes
import json
import sys
import time
import wave
from pathlib import Path

import numpy as np
from pesq import pesq

from opus_versions import open_lib, resample

RATE, FRAME = 24000, 480
SET_COMPLEXITY, SET_INBAND_FEC, SET_PACKET_LOSS_PERC = 4010, 4012, 4014
# (threshold, quiet complexity); (0, 5) is every frame at 5, the engine before.
CHOICES = [(0, 5), (64, 2), (64, 0), (256, 2)]


def encode(lib, frames, threshold, quiet):
    err = ctypes.c_int()
    enc = lib.opus_encoder_create(RATE, 1, 2048, ctypes.byref(err))
    lib.opus_encoder_ctl(enc, SET_INBAND_FEC, 1)
    lib.opus_encoder_ctl(enc, SET_PACKET_LOSS_PERC, 5)
    lib.opus_encoder_ctl(enc, SET_COMPLEXITY, 5)
    dec = lib.opus_decoder_create(RATE, 1, ctypes.byref(err))
    packet, pcm = ctypes.create_string_buffer(1500), np.zeros(FRAME, dtype=np.int16)
    out = np.zeros(len(frames) * FRAME, dtype=np.int16)
    current, ns, n_quiet = 5, 0, 0
    for i, f in enumerate(frames):
        t0 = time.perf_counter_ns()
        want = quiet if int(np.abs(f.astype(np.int32)).max()) <= threshold else 5
        if want != current:
            lib.opus_encoder_ctl(enc, SET_COMPLEXITY, want)
            current = want
        n = lib.opus_encode(enc, f.ctypes.data, FRAME, packet, 1500)
        ns += time.perf_counter_ns() - t0
        n_quiet += want != 5
        lib.opus_decode(dec, packet, n, pcm.ctypes.data, FRAME, 0)
        out[i * FRAME:(i + 1) * FRAME] = pcm
    lib.opus_encoder_destroy(enc)
    lib.opus_decoder_destroy(dec)
    return ns / len(frames) / 1000, n_quiet / len(frames), out


def main(out_dir, lib_path, *sets):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lib = open_lib(lib_path)
    results = []
    for spec in sets:
        name, path = spec.split("=", 1)
        narrow = path.endswith(":nb")
        path = path.removesuffix(":nb")
        with wave.open(path) as w:
            assert w.getframerate() == RATE
            x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        frames = [np.ascontiguousarray(x[i * FRAME:(i + 1) * FRAME]) for i in range(len(x) // FRAME)]
        rate, mode = (8000, "nb") if narrow else (16000, "wb")
        ref = resample(x[:len(frames) * FRAME], rate)
        for threshold, quiet in CHOICES:
            us, share, decoded = encode(lib, frames, threshold, quiet)
            score = pesq(rate, ref, resample(decoded, rate), mode)
            r = {"set": name, "seconds": len(x) / RATE, "pesq_mode": mode, "threshold": threshold,
                 "quiet_complexity": quiet, "quiet_share": share, "encode_us": us, "pesq": score}
            results.append(r)
            print(json.dumps(r), flush=True)
    base = {r["set"]: r for r in results if r["threshold"] == 0}
    lines = ["| set | PESQ | quiet frames at (peak, complexity) | share of frames | encode µs per frame | vs all at 5 | PESQ | vs all at 5 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if r["threshold"] == 0:
            continue
        b = base[r["set"]]
        lines.append(f"| {r['set']} ({r['seconds']:.0f} s) | {r['pesq_mode'].upper()} | <= {r['threshold']}, c{r['quiet_complexity']} | "
                     f"{100 * r['quiet_share']:.1f}% | {r['encode_us']:.1f} (all at 5: {b['encode_us']:.1f}) | "
                     f"{r['encode_us'] / b['encode_us']:.3f}x | {r['pesq']:.3f} (all at 5: {b['pesq']:.3f}) | {r['pesq'] - b['pesq']:+.3f} |")
    table = f"libopus: {lib.opus_get_version_string().decode()}\n\n" + "\n".join(lines) + "\n"
    (out / "quiet.json").write_text(json.dumps(results, indent=2))
    (out / "quiet.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main(*sys.argv[1:])
