"""aiortc through a fleet: a real redis-server, three `tern serve` nodes behind one `tern relay`
(`--advertise-relay`), two aiortc clients offered to different nodes at once. Each answer's only
candidate is the relay's public address; both clients hear their echo through it, with aiortc's
default settings."""

import asyncio
import socket
import subprocess
import time
import urllib.request

import pytest

from aiortc_client import one_turn
from conftest import Tern, assert_turn_order, free_port, report, tern_binary

SECRET = "interop-fleet-secret"


def wait_http(url, proc, what, timeout=20):
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return r.read().decode()
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.1)


def metric(text, name):
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.split(" ")[0].split("{")[0] == name
    )


@pytest.fixture()
def fleet(out_dir):
    redis_port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{redis_port}/0"
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", redis_port), timeout=1).close()
            break
        except OSError:
            assert time.time() < deadline, "redis did not start"
            time.sleep(0.05)
    relay_port, relay_http = free_port(socket.SOCK_DGRAM), free_port()
    relay_log = open(out_dir / "relay.log", "w")
    relay = subprocess.Popen(
        [
            str(tern_binary()), "relay", "--cores", "0", "--udp-bind", "127.0.0.1",
            "--udp-port", str(relay_port), "--internal-addr", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
            "--http", f"127.0.0.1:{relay_http}", "--fleet", url, "--fleet-secret", SECRET,
        ],
        stdout=relay_log,
        stderr=subprocess.STDOUT,
    )
    relay_metrics = f"http://127.0.0.1:{relay_http}/metrics"
    wait_http(relay_metrics, relay, "tern relay")
    nodes = [
        Tern(
            tern_binary(),
            out_dir / f"tern-fleet-node-{i}.log",
            extra_args=[
                "--fleet", url, "--fleet-secret", SECRET, "--node-id", str(i),
                "--advertise-relay", f"127.0.0.1:{relay_port}",
                "--relay-ingress-port", str(free_port(socket.SOCK_DGRAM)),
            ],
        )
        for i in (1, 2, 3)
    ]
    deadline = time.time() + 10
    while metric(wait_http(relay_metrics, relay, "tern relay"), "tern_relay_nodes") != 3:
        assert time.time() < deadline, "the relay did not list three nodes"
        time.sleep(0.2)
    time.sleep(0.3)  # shards take the table on their next tick
    yield nodes, relay_port, relay_metrics
    for n in nodes:
        n.stop()
    for p in (relay, redis):
        p.terminate()
        p.wait(timeout=10)
    relay_log.close()


def candidate_ports(sdp):
    return {int(l.split()[5]) for l in sdp.splitlines() if l.startswith("a=candidate")}


def test_aiortc_through_the_relay(fleet, speech_wav):
    nodes, relay_port, relay_metrics = fleet

    async def both():
        return await asyncio.gather(
            one_turn(nodes[0].base, speech_wav), one_turn(nodes[2].base, speech_wav)
        )

    results = asyncio.run(both())
    for node_id, (connect_ms, events, stamps, received, _) in zip((1, 3), results):
        answer = received["answer"]
        assert candidate_ports(answer) == {relay_port}, answer
        # The ufrag is the route tag: its first four hex digits name the node that answered.
        ufrag = next(l.split(":", 1)[1] for l in answer.splitlines() if l.startswith("a=ice-ufrag:"))
        assert int(ufrag[:4], 16) == node_id, ufrag
        assert_turn_order(events)
        assert received["loud"] > 100, received
    text = urllib.request.urlopen(relay_metrics, timeout=5).read().decode()
    assert metric(text, "tern_relay_flows_created_total") >= 2, text
    assert metric(text, "tern_relay_to_client_total") > 200, text
    connect_ms, _, _, received, _ = results[0]
    report(
        "aiortc via tern relay",
        connect_ms=round(connect_ms),
        turn_latency_ms=round((received["first"] - received["end_of_speech"]) * 1000),
        audible_frames=received["loud"],
        relay_to_node=metric(text, "tern_relay_to_node_total"),
        relay_to_client=metric(text, "tern_relay_to_client_total"),
    )
