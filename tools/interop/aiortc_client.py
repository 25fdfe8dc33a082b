"""aiortc (an independent Python WebRTC stack) as a scripted client: offer over HTTP, ICE, DTLS,
SRTP, the `oai-events` data channel, a speech WAV sent as the microphone, the reply received."""

import asyncio
import json
import time
import urllib.request

import aioice.ice
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer



_host_addresses = aioice.ice.get_host_addresses


def with_loopback(use_ipv4, use_ipv6):
    """aioice skips loopback when gathering; on a loopback-only machine (CI containers, `unshare
    -n`) it would then gather nothing. Like Chromium's --allow-loopback-in-peer-connection, this
    changes the client, not Tern."""
    addresses = _host_addresses(use_ipv4, use_ipv6)
    return addresses + (["127.0.0.1"] if use_ipv4 else [])


aioice.ice.get_host_addresses = with_loopback


def rms(frame):
    pcm = frame.to_ndarray().astype(np.float64) / 32768.0
    return float(np.sqrt(np.mean(pcm * pcm)))


class Microphone(MediaStreamTrack):
    """Passes the WAV player's frames through and notes when the last voiced one went out."""

    kind = "audio"

    def __init__(self, source):
        super().__init__()
        self.source = source
        self.last_voice = None

    async def recv(self):
        frame = await self.source.recv()
        if rms(frame) > 0.02:
            self.last_voice = time.monotonic()
        return frame


def post_offer(url, sdp):
    req = urllib.request.Request(
        url, data=sdp.encode(), method="POST", headers={"Content-Type": "application/sdp"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 201, r.status
        return r.read().decode(), r.headers["Location"]


async def one_turn(base, wav, post=None, hello=None, codecs=None):
    """Speaks `wav` and waits for the reply to finish playing (`output_audio_buffer.stopped`).
    `post(sdp)` sends the offer and returns (answer, Location) (default: plain HTTP with
    `application/sdp`); `hello`, if given, is sent on the data channel when it opens; `codecs`
    (mime types such as "audio/PCMU") limits what the offer carries, as a gateway without Opus.

    Returns (connect_ms, event types, first arrival per type, received audio figures, events)."""
    if post is None:
        def post(sdp):
            return post_offer(base + "/v1/realtime/calls", sdp)
    pc = RTCPeerConnection()
    events, stamps, full = [], {}, []
    received = {"frames": 0, "loud": 0, "first": None, "first_loud": None}
    connected = asyncio.Event()
    reply_done = asyncio.Event()

    player = MediaPlayer(str(wav))
    mic = Microphone(player.audio)
    pc.addTrack(mic)
    if codecs is not None:
        available = RTCRtpSender.getCapabilities("audio").codecs
        pc.getTransceivers()[0].setCodecPreferences(
            [c for c in available if c.mimeType in codecs]
        )
    dc = pc.createDataChannel("oai-events")

    if hello is not None:
        @dc.on("open")
        def on_open():
            dc.send(json.dumps(hello))

    @dc.on("message")
    def on_message(msg):
        ev = json.loads(msg)
        full.append(ev)
        events.append(ev["type"])
        stamps.setdefault(ev["type"], time.monotonic())
        if ev["type"] == "output_audio_buffer.stopped":
            reply_done.set()

    @pc.on("connectionstatechange")
    def on_state():
        if pc.connectionState == "connected":
            connected.set()

    @pc.on("track")
    def on_track(track):
        async def drain():
            while True:
                try:
                    frame = await track.recv()
                except Exception:
                    return
                received["frames"] += 1
                if received["first"] is None:
                    received["first"] = time.monotonic()
                if rms(frame) > 0.01:
                    received["loud"] += 1
                    if received["first_loud"] is None:
                        received["first_loud"] = time.monotonic()

        asyncio.ensure_future(drain())

    t0 = time.monotonic()
    await pc.setLocalDescription(await pc.createOffer())
    answer, location = await asyncio.get_running_loop().run_in_executor(
        None, post, pc.localDescription.sdp
    )
    assert location.startswith("/v1/realtime/calls/rtc_"), location
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await asyncio.wait_for(connected.wait(), 20)
    connect_ms = (time.monotonic() - t0) * 1000
    await asyncio.wait_for(reply_done.wait(), 30)
    await pc.close()
    player.audio.stop()
    received["end_of_speech"] = mic.last_voice
    received["answer"] = answer
    return connect_ms, events, stamps, received, full


