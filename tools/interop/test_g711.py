"""G.711 for gateways and clients that offer no Opus: aiortc offering only PCMU, then only PCMA.
Tern answers in that codec, decodes it to the model rate, detects the turn and sends the echo
back in G.711 (aiortc decodes it and hears it)."""

import asyncio

import pytest

from aiortc_client import one_turn
from conftest import assert_turn_order, report


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_g711_only_client(tern, speech_wav, codec):
    connect_ms, events, _, received, _ = asyncio.run(
        one_turn(tern.base, speech_wav, codecs=[f"audio/{codec}"])
    )
    audio = [l for l in received["answer"].splitlines() if l.startswith("a=rtpmap:")]
    assert audio and all(codec in l for l in audio if "/8000" in l or "/48000" in l), audio
    assert not any("opus" in l.lower() for l in audio), audio
    assert_turn_order(events)
    assert received["loud"] > 100, received
    report(
        f"aiortc-{codec.lower()}",
        connect_ms=round(connect_ms),
        turn_latency_ms=round((received["first"] - received["end_of_speech"]) * 1000),
        audible_frames=received["loud"],
    )
