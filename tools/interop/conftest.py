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


class Tern:
    """A `tern serve` child process with the echo agent, HTTP and UDP on loopback."""

    def __init__(self, binary, log_path, extra_args=()):
        self.http_port = free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [
                str(binary), "serve",
                "--cores", "0",
                "--http", f"127.0.0.1:{self.http_port}",
                "--udp-bind", "127.0.0.1",
                "--udp-port", str(self.udp_port),
                "--public-ip", "127.0.0.1",
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


def report(name, **figures):
    """Prints a result line and appends it to target/interop/results.jsonl for the closing note."""
    line = {"client": name, **figures}
    print(f"\nINTEROP {json.dumps(line)}")
    with open(OUT / "results.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
