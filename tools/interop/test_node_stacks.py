"""Node.js WebRTC stacks against Tern, each with its default settings (Tern binds the wildcard
and advertises 127.0.0.1; the clients gather their default host candidates, no loopback
additions): werift (TypeScript) and libdatachannel (C++, through node-datachannel)."""

import subprocess

import pytest

from conftest import ROOT, report, run_client

SRC = ROOT / "tools" / "interop" / "node"

@pytest.fixture(scope="session")
def node_clients():
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=SRC, check=True)
    return SRC


@pytest.mark.parametrize("stack", ["werift", "libdatachannel"])
def test_node_stack_default_settings(stack, tern_wildcard, node_clients, speech_ogg):
    r = run_client(["node", str(node_clients / f"{stack}-client.js"), tern_wildcard.base,
                    str(speech_ogg)])
    assert r["voiced_packets"] > 100, r
    report(stack, connect_ms=round(r["connect_ms"]),
           after_speech_stopped_ms=r["after_speech_stopped_ms"],
           voiced_packets=r["voiced_packets"])
