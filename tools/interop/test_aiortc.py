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


def test_aiortc_semantic_vad_asks_the_turn_model(tern, speech_wav):
    """The default eagerness of `semantic_vad`, set by the client as OpenAI's GA shape has it:
    the real `tern serve` asks Smart Turn on its inference worker about the pause after the turn
    (400 ms into it), and the answer ends the turn or lets the 800 ms window do so."""
    update = {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}},
        },
    }
    connect_ms, events, stamps, received, full = asyncio.run(
        one_turn(tern.base, speech_wav, hello=update)
    )
    assert "session.updated" in events, events
    updated = next(e for e in full if e["type"] == "session.updated")
    assert updated["session"]["audio"]["input"]["turn_detection"]["type"] == "semantic_vad", updated
    assert_turn_order(events)
    assert received["loud"] > 100, received
    scored = tern.metric_where("tern_turn_model_answers_total", 'outcome="scored"')
    assert scored >= 1, "the worker's model answered no question"
    assert tern.metric_where("tern_turns_total", 'rule="turn_model"') == 1
    report(
        "aiortc-semantic-vad",
        connect_ms=round(connect_ms),
        voice_end_to_speech_stopped_ms=round(
            (stamps["input_audio_buffer.speech_stopped"] - received["end_of_speech"]) * 1000
        ),
        turn_model_answers=int(scored),
        audible_frames=received["loud"],
    )
