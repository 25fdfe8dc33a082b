#!/usr/bin/env python3
"""Reference worker for Tern's `pcm-ws` protocol: a speech-to-text -> LLM -> text-to-speech
pipeline skeleton that anyone can start and replace piece by piece.

    python3 tools/pcm-ws-worker/worker.py --port 9000
    tern serve --agent pcm-ws=ws://127.0.0.1:9000

Protocol (see the README's "Inference bridges"): Tern sends binary 20 ms PCM16LE mono frames at
`sample_rate` and JSON text messages `start`, `speech_started`, `speech_stopped`, `interrupt`,
`client_event`; the worker answers with binary reply audio (any length, same format) and JSON
`response.done`, `clear`, `event` and `error`.

The three stages are plain functions so they are easy to swap for real models:
- `transcribe(pcm, rate)`: here a stand-in that measures the turn (no model needed);
- `respond(text)`: here a template; put your LLM call here;
- `synthesize(text, rate)`: here espeak-ng + sox (Debian packages), so the reply is real speech.
"""

import argparse
import asyncio
import json
import logging
import shutil
import subprocess
import tempfile
import wave
from array import array

import websockets

log = logging.getLogger("pcm-ws-worker")
CHUNK_MS = 100


def transcribe(pcm: array, rate: int) -> str:
    """Speech-to-text stand-in: describes the turn. Replace with Whisper, a hosted STT, etc."""
    seconds = len(pcm) / rate
    peak = max((abs(s) for s in pcm), default=0)
    return f"<{seconds:.1f} seconds of speech, peak {peak}>"


def respond(transcript: str) -> str:
    """The LLM stage. Replace with a call to your model."""
    seconds = transcript.split(" ", 1)[0].lstrip("<")
    return f"I heard you speak for {seconds} seconds."


def synthesize(text: str, rate: int) -> bytes:
    """Text-to-speech with espeak-ng, resampled by sox to the session's rate: PCM16LE mono."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        raise RuntimeError("espeak-ng and sox are needed (apt install espeak-ng sox)")
    with tempfile.NamedTemporaryFile(suffix=".wav") as raw, tempfile.NamedTemporaryFile(
        suffix=".wav"
    ) as out:
        subprocess.run(["espeak-ng", "-w", raw.name, text], check=True)
        subprocess.run(
            ["sox", raw.name, "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed", out.name],
            check=True,
        )
        with wave.open(out.name, "rb") as w:
            return w.readframes(w.getnframes())


class Session:
    """One Tern session: collects the user's turn, replies when it ends."""

    def __init__(self, ws):
        self.ws = ws
        self.rate = 24000
        self.call_id = None
        self.turn = array("h")
        self.recording = False
        self.history = array("h")  # the last second, for the start of the turn
        self.reply = None

    async def run(self):
        async for msg in self.ws:
            if isinstance(msg, bytes):
                self.on_audio(msg)
            else:
                await self.on_control(json.loads(msg))
        if self.reply:
            self.reply.cancel()

    def on_audio(self, frame: bytes):
        samples = array("h")
        samples.frombytes(frame)
        self.history.extend(samples)
        del self.history[: max(0, len(self.history) - self.rate)]
        if self.recording:
            self.turn.extend(samples)

    async def on_control(self, m):
        kind = m.get("type")
        if kind == "start":
            self.rate = int(m["sample_rate"])
            self.call_id = m.get("call_id")
            log.info("session %s at %d Hz", self.call_id, self.rate)
        elif kind == "speech_started":
            self.recording = True
            self.turn = array("h", self.history[-self.rate // 2 :])
        elif kind == "speech_stopped":
            self.recording = False
            turn, self.turn = self.turn, array("h")
            if self.reply:
                self.reply.cancel()
            self.reply = asyncio.ensure_future(self.answer(turn))
        elif kind == "interrupt":
            # Stop talking, then acknowledge so Tern accepts audio again.
            if self.reply:
                self.reply.cancel()
                self.reply = None
            log.info("interrupted after %s ms heard", m.get("played_ms"))
            await self.ws.send(json.dumps({"type": "response.done"}))
        elif kind == "client_event":
            log.info("client event %s", m.get("event", {}).get("type"))

    async def answer(self, turn: array):
        try:
            transcript = transcribe(turn, self.rate)
            text = respond(transcript)
            await self.event({"type": "conversation.item.input_audio_transcription.completed",
                              "transcript": transcript})
            pcm = await asyncio.get_running_loop().run_in_executor(
                None, synthesize, text, self.rate
            )
            step = self.rate * 2 * CHUNK_MS // 1000
            for i in range(0, len(pcm), step):
                # Tern paces playback; sending ahead is fine, its flow control holds us back.
                await self.ws.send(pcm[i : i + step])
            await self.event({"type": "response.output_audio_transcript.done", "transcript": text})
            await self.ws.send(json.dumps({"type": "response.done"}))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # report, keep the session
            log.exception("reply failed")
            await self.ws.send(json.dumps({"type": "error", "message": str(e)}))

    async def event(self, ev):
        await self.ws.send(json.dumps({"type": "event", "event": ev}))


async def main(host: str, port: int):
    async def handler(ws):
        await Session(ws).run()

    async with websockets.serve(handler, host, port, max_size=1 << 22):
        log.info("pcm-ws worker on ws://%s:%d", host, port)
        await asyncio.Future()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main(args.host, args.port))
