"""Scores `tern-codec-table`'s decoded audio with PESQ (ITU-T P.862.2, wideband, 16 kHz) against
the original speech, and writes the complexity table (markdown) next to the CPU figures."""

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
from pesq import pesq


def read16(path, tmp):
    """The file as 16 kHz mono int16 (sox resamples when needed)."""
    with wave.open(str(path)) as w:
        rate = w.getframerate()
    if rate != 16000:
        out = tmp / (Path(path).stem + "-16k.wav")
        subprocess.run(["sox", str(path), "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True)
        path = out
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32)


def main(out_dir):
    out = Path(out_dir)
    cpu = json.loads((out / "cpu.json").read_text())
    ref = read16(cpu["speech"], out)
    score = lambda wav: pesq(16000, ref, read16(out / wav, out), "wb")
    lines = [
        "| complexity | encode µs per 20 ms frame, mean / p99 | bitrate kbit/s | PESQ WB (MOS-LQO) |",
        "|---|---|---|---|",
    ]
    for r in cpu["encode"]:
        r["pesq_wb"] = score(r["wav"])
        lines.append(
            f"| {r['complexity']} | {r['encode_us_mean']:.1f} / {r['encode_us_p99']:.1f} | {r['kbps']:.1f} | {r['pesq_wb']:.2f} |"
        )
    lines += ["", "| decoder output rate (complexity 5 packets) | decode µs per frame | PESQ WB (resampled to 16 kHz) |", "|---|---|---|"]
    for r in cpu["decode_complexity5"]:
        r["pesq_wb"] = score(r["wav"])
        lines.append(f"| {r['rate']} Hz | {r['decode_us_mean']:.1f} | {r['pesq_wb']:.2f} |")
    (out / "table.json").write_text(json.dumps(cpu, indent=2))
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main(sys.argv[1])
