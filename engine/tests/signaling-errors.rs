//! Signaling over real HTTP: every bad request gets the right status and a JSON error naming the
//! problem; the session limit answers 503.

use crate::common;

use std::time::Instant;

use common::{http, Client};

fn err(body: &[u8]) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(body).expect("JSON error body");
    assert!(
        v["error"]["type"].is_string() && v["error"]["code"].is_string(),
        "{v}"
    );
    v["error"].clone()
}

#[test]
fn signaling_errors() {
    let engine = common::engine::start(1, 1);
    let url = "/v1/realtime/calls";

    // Wrong content type -> 415.
    let (s, _, b) = http(engine.http, "POST", url, Some("text/plain"), b"v=0");
    assert_eq!(s, 415);
    assert!(err(&b)["message"]
        .as_str()
        .unwrap()
        .contains("application/sdp"));

    // Not an SDP offer -> 400 naming the problem.
    let (s, _, b) = http(engine.http, "POST", url, Some("application/sdp"), b"hello");
    assert_eq!(s, 400);
    assert_eq!(err(&b)["code"], "invalid_offer");
    let (s, _, b) = http(
        engine.http,
        "POST",
        url,
        Some("application/sdp"),
        &[0xff, 0xfe, 0x00],
    );
    assert_eq!(s, 400);
    assert!(err(&b)["message"].as_str().unwrap().contains("UTF-8"));

    // No audio m-line -> 400.
    let no_audio = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n";
    let (s, _, b) = http(
        engine.http,
        "POST",
        url,
        Some("application/sdp"),
        no_audio.as_bytes(),
    );
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&b));
    assert_eq!(err(&b)["code"], "no_audio");

    // Over the size limit -> 413.
    let big = vec![b'v'; 20 * 1024];
    let (s, _, b) = http(engine.http, "POST", url, Some("application/sdp"), &big);
    assert_eq!(s, 413);
    assert_eq!(err(&b)["code"], "body_too_large");

    // A good offer -> 201; the next one exceeds --max-sessions 1 -> 503 (and /readyz says full).
    assert_eq!(http(engine.http, "GET", "/readyz", None, b"").0, 200);
    let (_, offer) = Client::new(Instant::now(), "127.0.0.1:40000".parse().unwrap(), vec![]);
    let (s, h, _) = http(
        engine.http,
        "POST",
        url,
        Some("application/sdp; charset=utf-8"),
        offer.as_bytes(),
    );
    assert_eq!(s, 201);
    assert!(h
        .iter()
        .any(|(k, v)| k == "content-type" && v == "application/sdp"));
    let (_, offer2) = Client::new(Instant::now(), "127.0.0.1:40001".parse().unwrap(), vec![]);
    let (s, _, b) = http(
        engine.http,
        "POST",
        url,
        Some("application/sdp"),
        offer2.as_bytes(),
    );
    assert_eq!(s, 503);
    assert_eq!(err(&b)["code"], "session_limit");
    let (s, _, b) = http(engine.http, "GET", "/readyz", None, b"");
    assert_eq!(
        (s, String::from_utf8_lossy(&b).contains("full")),
        (503, true)
    );
    assert_eq!(
        http(engine.http, "GET", "/healthz", None, b"").0,
        200,
        "alive all the same"
    );

    // Unknown calls -> 404; unknown routes -> 404; wrong method -> 405.
    let (s, _, b) = http(
        engine.http,
        "DELETE",
        "/v1/realtime/calls/rtc_nope",
        None,
        b"",
    );
    assert_eq!(s, 404);
    assert_eq!(err(&b)["code"], "call_not_found");
    let fake = format!("/v1/realtime/calls/rtc_{}", "0".repeat(36));
    assert_eq!(
        http(engine.http, "POST", &format!("{fake}/hangup"), None, b"").0,
        404
    );
    assert_eq!(http(engine.http, "GET", "/nope", None, b"").0, 404);
    assert_eq!(http(engine.http, "GET", url, None, b"").0, 405);
    assert_eq!(http(engine.http, "GET", "/healthz", None, b"").0, 200);
    engine.stop();
    engine.join();
}
