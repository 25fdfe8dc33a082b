"""GStreamer webrtcbin (Debian's gstreamer1.0-plugins-bad, libnice) as a Tern client with default
settings: a speech WAV through opusenc into webrtcbin, the oai-events data channel, the offer POSTed
over HTTP, the echo reply counted. webrtcbin's DTLS always uses an RSA-2048 certificate.
Run with the system python3 (python3-gi); prints one JSON line, exits non-zero on failure."""

import json
import sys
import threading
import time
import urllib.error
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402


def main(base, wav):
    Gst.init(None)
    pipe = Gst.parse_launch(
        f"filesrc location={wav} ! wavparse ! audioconvert ! audioresample ! "
        "audio/x-raw,rate=48000,channels=1 ! opusenc frame-size=20 ! rtpopuspay pt=111 ! "
        "application/x-rtp,media=audio,encoding-name=OPUS,payload=111 ! webrtcbin name=rtc"
    )
    rtc = pipe.get_by_name("rtc")
    # The one setting changed from webrtcbin's defaults, and why: its default bundle-policy
    # "none" offers every m-line its own ICE/DTLS transport without a=group:BUNDLE. Tern (str0m),
    # like Janus, LiveKit and mediasoup, runs one transport per peer and needs BUNDLE, so every
    # webrtcbin app that talks to such servers sets max-bundle (GStreamer's own webrtc examples do).
    rtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
    loop = GLib.MainLoop()
    t0 = time.monotonic()
    res = {"events": [], "packets": 0, "bytes": 0}
    state = {"location": None, "error": None}

    def fail(msg):
        state["error"] = msg
        loop.quit()

    def on_message(_ch, text):
        ev = json.loads(text)
        res["events"].append(ev["type"])
        if ev["type"] == "output_audio_buffer.stopped":
            loop.quit()

    # webrtcbin creates data channels once it is at least READY (as its own examples do).
    pipe.set_state(Gst.State.READY)
    channel = rtc.emit("create-data-channel", "oai-events", None)
    if channel is None:
        print("gst client: webrtcbin refused the data channel", file=sys.stderr)
        return 1
    channel.connect("on-message-string", on_message)

    def on_handoff(_sink, buf, _pad):
        res["packets"] += 1
        res["bytes"] += buf.get_size()

    def on_pad(_rtc, pad):
        if pad.direction != Gst.PadDirection.SRC:
            return
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("signal-handoffs", True)
        sink.connect("handoff", on_handoff)
        pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

    rtc.connect("pad-added", on_pad)

    def on_state(_rtc, _pspec):
        s = rtc.get_property("connection-state")
        if s == GstWebRTC.WebRTCPeerConnectionState.CONNECTED and "connect_ms" not in res:
            res["connect_ms"] = (time.monotonic() - t0) * 1000
        elif s == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            fail("peer connection failed")

    rtc.connect("notify::connection-state", on_state)

    def post_offer():
        sdp = rtc.get_property("local-description").sdp.as_text()
        req = urllib.request.Request(
            base + "/v1/realtime/calls", data=sdp.encode(), method="POST",
            headers={"Content-Type": "application/sdp"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                answer, state["location"] = r.read().decode(), r.headers["Location"]
        except urllib.error.HTTPError as e:
            return fail(f"offer: {e}: {e.read().decode(errors='replace')}\n{sdp}")
        except Exception as e:  # noqa: BLE001 - reported as the failure
            return fail(f"offer: {e}")
        _, msg = GstSdp.SDPMessage.new_from_text(answer)
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        rtc.emit("set-remote-description", desc, Gst.Promise.new())

    def on_gathering(_rtc, _pspec):
        if rtc.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(post_offer)

    rtc.connect("notify::ice-gathering-state", on_gathering)

    def on_offer(promise, _data):
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        rtc.emit("set-local-description", offer, Gst.Promise.new())

    def on_negotiation(_rtc):
        rtc.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, None))

    rtc.connect("on-negotiation-needed", on_negotiation)
    GLib.timeout_add_seconds(40, lambda: fail(f"timed out; events {res['events']}"))
    pipe.set_state(Gst.State.PLAYING)
    loop.run()
    pipe.set_state(Gst.State.NULL)
    if state["location"]:
        req = urllib.request.Request(base + state["location"], method="DELETE")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                res["hangup_status"] = r.status
        except Exception as e:  # noqa: BLE001
            res["hangup_status"] = str(e)
    if state["error"]:
        print(json.dumps(res), file=sys.stderr)
        print("gst client:", state["error"], file=sys.stderr)
        return 1
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
