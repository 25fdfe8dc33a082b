"""aiortc against the echo agent: offer, connect, send a WAV, receive the echo, check the events."""

import asyncio

from aiortc_client import one_turn
from conftest import assert_turn_order, report

def test_aiortc_echo_turn(tern, speech_wav):
    connect_ms, events, stamps, received, _ = asyncio.run(one_turn(tern.base, speech_wav))
    assert_turn_order(events)
    # The fixture has about 3.8 s of speech: the echo brings most of it back as audible frames.
    assert received["loud"] > 100, received
    # Tern sends nothing between talkspurts, so the first frame received is the reply's first.
    end = received["end_of_speech"]
    report(
        "aiortc",
        connect_ms=round(connect_ms),
        turn_latency_ms=round((received["first"] - end) * 1000),
        audible_ms=round((received["first_loud"] - end) * 1000),
        after_speech_stopped_ms=round(
            (received["first"] - stamps["input_audio_buffer.speech_stopped"]) * 1000
        ),
        frames_received=received["frames"],
        audible_frames=received["loud"],
    )
