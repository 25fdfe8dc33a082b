"""The reference pcm-ws worker (tools/pcm-ws-worker) behind `tern serve --agent pcm-ws=...`: an
aiortc client speaks a turn and hears the worker's synthesized reply (espeak-ng speech)."""

import asyncio
import subprocess
import sys
import time
import urllib.request

import pytest

from aiortc_client import one_turn
from conftest import ROOT, Tern, free_port, report, tern_binary


@pytest.fixture()
def worker(out_dir):
    port = free_port()
    log = open(out_dir / "pcm-ws-worker.log", "w")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tools" / "pcm-ws-worker" / "worker.py"), "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 15
    while True:
        try:
            # Any HTTP answer (426 Upgrade Required) means it listens.
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
        except urllib.error.HTTPError:
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"worker did not start; see {out_dir / 'pcm-ws-worker.log'}")
            time.sleep(0.1)
            continue
        break
    yield port
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def test_pcm_ws_reference_worker_answers_a_turn(worker, out_dir, speech_wav):
    tern = Tern(tern_binary(), out_dir / "tern-pcm-ws.log",
                extra_args=["--agent", f"pcm-ws=ws://127.0.0.1:{worker}"])
    try:
        connect_ms, events, stamps, received, full = asyncio.run(one_turn(tern.base, speech_wav))
        assert tern.metric("tern_bridge_connects_total") >= 1
    finally:
        tern.stop()
    transcripts = [e for e in full if e["type"] == "response.output_audio_transcript.done"]
    assert transcripts and "I heard you speak for" in transcripts[0]["transcript"], full
    heard = [e for e in full if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert heard, full
    order = ["input_audio_buffer.speech_stopped", "output_audio_buffer.started",
             "output_audio_buffer.stopped"]
    positions = [events.index(e) for e in order]
    assert positions == sorted(positions), events
    # espeak-ng says the sentence in about two seconds: most of it is audible.
    assert received["loud"] > 50, received
    report(
        "pcm-ws-worker",
        connect_ms=round(connect_ms),
        reply_after_speech_stopped_ms=round(
            (received["first"] - stamps["input_audio_buffer.speech_stopped"]) * 1000
        ),
        audible_frames=received["loud"],
    )
