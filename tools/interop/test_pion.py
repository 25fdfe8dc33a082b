"""Pion (Go, github.com/pion/webrtc v3 from Debian's sources) against Tern with default settings
on both sides but the addresses: Tern binds the wildcard and advertises 127.0.0.1, Pion gathers
only its non-loopback host candidates (its default), so its checks go from the host's address to
127.0.0.1. Pion drops any reply that does not come from the address it sent to: this call only
connects if Tern answers from the advertised address."""

import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, report, run_client

SRC = ROOT / "tools" / "interop" / "pion"
# Import paths with a major version that Debian's gocode tree lacks (it ships them unversioned).
VERSIONED = ["sdp/v3", "transport/v2", "udp/v2", "webrtc/v3"]


@pytest.fixture(scope="session")
def pion_client(out_dir):
    gopath = out_dir / "gopath"
    pion = gopath / "src" / "github.com" / "pion"
    for m in VERSIONED:
        link = pion / m
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(Path("/usr/share/gocode/src/github.com/pion") / m.split("/")[0])
    pkg = gopath / "src" / "ternpion"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "main.go").write_text((SRC / "main.go").read_text())
    binary = out_dir / "pion-client"
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{gopath}:/usr/share/gocode",
        "GOCACHE": str(out_dir / "gocache"),
        "GOFLAGS": "",
    }
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=pkg, env=env, check=True)
    return binary




def test_pion_default_settings(tern_wildcard, pion_client, speech_ogg):
    r = run_client([str(pion_client), "-base", tern_wildcard.base, "-ogg", str(speech_ogg)])
    assert r["voiced_packets"] > 100, r
    report(
        "pion",
        connect_ms=round(r["connect_ms"]),
        after_speech_stopped_ms=round(r["after_speech_stopped_ms"]),
        voiced_packets=r["voiced_packets"],
    )
