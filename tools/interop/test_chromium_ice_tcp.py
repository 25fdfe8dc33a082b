"""ICE-TCP with a real browser: Chromium under the enterprise policy that forbids non-proxied UDP
(`WebRtcIPHandlingPolicy` = `disable_non_proxied_udp`, as on networks that block UDP) can only use
TCP candidates. It calls the demo page, connects to Tern's passive TCP candidate, and completes a
turn; Tern's metrics show the TCP connection carried it."""

import urllib.request

import pytest

from browser import headless_chromium, report_turn, run_echo_turn


@pytest.fixture()
def chromium_tcp_only(speech_wav):
    flags = [
        "--webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--allow-loopback-in-peer-connection",
    ]
    with headless_chromium(speech_wav, flags) as driver:
        yield driver


def labelled(base, name, label):
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and f'reason="{label}"' in line
    )


def test_chromium_over_ice_tcp(tern, chromium_tcp_only):
    connect_ms, state = run_echo_turn(chromium_tcp_only, tern.base)
    assert labelled(tern.base, "tern_ice_tcp_total", "accepted") >= 1
    report_turn("chromium-ice-tcp", connect_ms, state)
