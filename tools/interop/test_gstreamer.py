"""GStreamer webrtcbin against Tern, both with default settings (but webrtcbin's bundle policy,
see gst_client.py): Tern binds the wildcard and advertises the host's primary address, libnice
gathers the host's addresses, and webrtcbin's DTLS presents an RSA-2048 certificate, which
Tern's DTLS must accept. (libnice does not pair its host candidates with a remote 127.0.0.1
candidate, so this test uses Tern's default advertised address rather than loopback.)"""

from conftest import ROOT, report, run_client


def test_gstreamer_webrtcbin(tern_default, speech_wav):
    r = run_client(["/usr/bin/python3", str(ROOT / "tools" / "interop" / "gst_client.py"),
                    tern_default.base, str(speech_wav)])
    assert r["packets"] > 100, r
    report("gstreamer-webrtcbin", connect_ms=round(r["connect_ms"]), packets=r["packets"])
