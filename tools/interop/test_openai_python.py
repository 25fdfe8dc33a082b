"""The official `openai` Python SDK against Tern, with only its base URL changed: mint an ephemeral
token with a session (`client_secrets.create`), create the call with the SDK (`calls.create` with
`sdp` and `session`, sent as multipart/form-data), speak a turn over aiortc, check that the
session the SDK asked for is the one `session.created` shows, and hang up with the SDK."""

import asyncio
import time

import openai

from aiortc_client import one_turn
from conftest import report

SESSION = {
    "type": "realtime",
    "model": "gpt-realtime",
    "instructions": "Answer in one short sentence.",
    "audio": {
        "input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 500}},
        "output": {"voice": "marin"},
    },
}


def test_openai_python_sdk(tern, speech_wav):
    client = openai.OpenAI(base_url=tern.base + "/v1", api_key="sk-unused")

    secret = client.realtime.client_secrets.create(session=SESSION)
    assert secret.value.startswith("ek_"), secret
    assert secret.session.type == "realtime"
    assert secret.session.id.startswith("sess_")
    assert secret.session.instructions == SESSION["instructions"]
    assert secret.session.audio.output.voice == "marin"
    # A session type Tern does not have is refused with a 4xx, not silently accepted.
    try:
        client.realtime.client_secrets.create(session={"type": "transcription"})
        raise AssertionError("a transcription session was accepted")
    except openai.BadRequestError as e:
        assert "transcription" in str(e)

    # The browser side would use the token; here the SDK creates the call itself.
    calls = {}

    def post(sdp):
        t = time.monotonic()
        resp = client.realtime.calls.create(sdp=sdp, session=SESSION)
        calls["create_ms"] = (time.monotonic() - t) * 1000
        location = resp.response.headers["Location"]
        return resp.text, location

    connect_ms, events, _, received, full = asyncio.run(one_turn(tern.base, speech_wav, post=post))
    created = next(e for e in full if e["type"] == "session.created")["session"]
    assert created["instructions"] == SESSION["instructions"], created
    assert created["audio"]["output"]["voice"] == "marin", created
    assert created["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 500, created
    assert "output_audio_buffer.stopped" in events, events
    assert received["loud"] > 100, received

    # SIP-only controls get OpenAI's error shape; an unknown call is 404 on hangup.
    try:
        client.realtime.calls.accept("rtc_unknown", type="realtime")
        raise AssertionError("accept succeeded on a WebRTC server")
    except openai.BadRequestError as e:
        assert e.code == "unsupported_for_webrtc", e
    try:
        client.realtime.calls.hangup("rtc_unknown")
        raise AssertionError("hangup of an unknown call succeeded")
    except openai.NotFoundError:
        pass
    report(
        "openai-python",
        connect_ms=round(connect_ms),
        calls_create_ms=round(calls["create_ms"]),
        audible_frames=received["loud"],
    )


def test_openai_python_sdk_hangup(tern):
    """calls.create with a session, then calls.hangup on the call id from Location."""
    import aiortc

    client = openai.OpenAI(base_url=tern.base + "/v1", api_key="sk-unused")

    async def offer():
        pc = aiortc.RTCPeerConnection()
        pc.addTransceiver("audio")
        pc.createDataChannel("oai-events")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    resp = client.realtime.calls.create(sdp=asyncio.run(offer()), session=SESSION)
    call_id = resp.response.headers["Location"].rsplit("/", 1)[1]
    assert call_id.startswith("rtc_"), call_id
    client.realtime.calls.hangup(call_id)
    try:
        client.realtime.calls.hangup(call_id)
        raise AssertionError("a second hangup found the call")
    except openai.NotFoundError:
        pass
