"""Shared fixtures for the interop tests: a real `tern serve` on loopback and a speech WAV."""

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "target" / "interop"


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_media_port(http_port):
    """A port free for UDP and TCP both: `--udp-port`, and ICE-TCP on the same number by default
    (a UDP-only pick once collided with another test's TCP listener). Never the HTTP port, which
    is free again once its probe closed: in CI and here the two came out equal and ICE-TCP took the
    signaling connections (tern now refuses to start that way)."""
    while True:
        port = free_port(socket.SOCK_DGRAM)
        if port == http_port:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue


class Tern:
    """A `tern serve` child process with the echo agent, HTTP and UDP on loopback."""

    def __init__(self, binary, log_path, extra_args=(), bind="127.0.0.1", public_ip="127.0.0.1"):
        """`bind=None` / `public_ip=None` leave those flags at `tern serve`'s defaults (the
        wildcard; the host's primary address)."""
        self.http_port = free_port()
        self.udp_port = free_media_port(self.http_port)
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [
                str(binary), "serve",
                "--cores", "0",
                "--http", f"127.0.0.1:{self.http_port}",
                "--udp-port", str(self.udp_port),
                *(["--udp-bind", bind] if bind else []),
                *(["--public-ip", public_ip] if public_ip else []),
                *extra_args,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")},
        )
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"tern did not start; see {log_path}")
            time.sleep(0.1)

    def metric(self, name):
        """Sum of all samples of a Prometheus metric from /metrics."""
        with urllib.request.urlopen(self.base + "/metrics", timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            key = line.split(" ")[0].split("{")[0]
            if key == name:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def metric_where(self, name, label):
        """Sum of the samples of `name` whose labels contain `label` (`reason="silence"`)."""
        with urllib.request.urlopen(self.base + "/metrics", timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") and label in line.split("}")[0]:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="session")
def out_dir():
    OUT.mkdir(parents=True, exist_ok=True)
    return OUT


def tern_binary():
    return Path(os.environ.get("TERN_BIN", ROOT / "target" / "debug" / "tern"))


@pytest.fixture()
def tern(out_dir, request):
    server = Tern(tern_binary(), out_dir / f"tern-{request.node.name}.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def speech_wav(out_dir):
    """The speech fixture as 48 kHz mono with 1.5 s of silence before and 4 s after (browsers
    start their fake microphones at getUserMedia, before the call is connected)."""
    src = ROOT / "engine" / "tests" / "data" / "hello-24k.wav"
    dst = out_dir / "speech-48k.wav"
    if shutil.which("sox") is None:
        pytest.fail("sox is needed (scripts/setup.sh installs it)")
    subprocess.run(
        ["sox", str(src), "-r", "48000", "-c", "1", "-b", "16", str(dst), "pad", "1.5", "4"],
        check=True,
    )
    return dst


# The events of one full turn, in the order they must arrive.
TURN_ORDER = [
    "session.created",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "output_audio_buffer.started",
    "output_audio_buffer.stopped",
]


def assert_turn_order(events):
    """Every event of a full turn arrived, in order."""
    missing = [e for e in TURN_ORDER if e not in events]
    assert not missing, f"missing {missing}: {events}"
    positions = [events.index(e) for e in TURN_ORDER]
    assert positions == sorted(positions), events


def run_client(args, timeout=90):
    """Runs a client program that prints its figures as one JSON line; fails with its stderr."""
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-4000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert_turn_order(r["events"])
    assert r["hangup_status"] == 204, r
    return r


def report(name, **figures):
    """Prints a result line and appends it to target/interop/results.jsonl for the closing note."""
    line = {"client": name, **figures}
    print(f"\nINTEROP {json.dumps(line)}")
    with open(OUT / "results.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


@pytest.fixture()
def tern_wildcard(out_dir, request):
    """Tern as `tern serve` runs by default, bound to the wildcard, advertising 127.0.0.1: replies
    must leave from 127.0.0.1 even when a client sends from the host's other address."""
    server = Tern(tern_binary(), out_dir / f"tern-{request.node.name}.log", bind="0.0.0.0")
    yield server
    server.stop()


@pytest.fixture()
def tern_default(out_dir, request):
    """Tern with its default media addresses: bound to the wildcard, advertising the host's
    primary address (the source of the default route), as an operator starts it."""
    server = Tern(tern_binary(), out_dir / f"tern-{request.node.name}.log", bind=None, public_ip=None)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def speech_ogg(out_dir, speech_wav):
    """The speech fixture as Ogg Opus in 20 ms packets (for clients without an Opus encoder)."""
    dst = out_dir / "speech.opus"
    subprocess.run(
        ["opusenc", "--quiet", "--bitrate", "32", "--framesize", "20", str(speech_wav), str(dst)],
        check=True,
    )
    return dst
