//! OpenAI's HTTP shapes on a real engine: CORS for apps on another origin (preflight, allowed
//! origin, `Location` exposed), `multipart/form-data` offers with a `session` part, the full
//! effective session from `client_secrets`, SIP-only call controls refused in OpenAI's error shape,
//! and a 413 that a client sending its whole oversized body still reads.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{http, http_with, Client};

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn offer() -> String {
    let addr = "127.0.0.1:9".parse().unwrap();
    Client::new(Instant::now(), addr, vec![0; 480]).1
}

fn form(boundary: &str, sdp: &str, session: Option<&str>) -> Vec<u8> {
    let mut b = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"sdp\"\r\nContent-Type: application/sdp\r\n\r\n{sdp}\r\n"
    );
    if let Some(s) = session {
        b.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"session\"\r\nContent-Type: application/json\r\n\r\n{s}\r\n"
        ));
    }
    b.push_str(&format!("--{boundary}--\r\n"));
    b.into_bytes()
}

#[test]
fn cors_preflight_and_exposed_location() {
    let engine = common::engine::start(1, 4);
    let origin = "http://app.localhost:5173";
    for path in ["/v1/realtime/calls", "/v1/realtime/client_secrets"] {
        let (s, h, _) = http_with(
            engine.http,
            "OPTIONS",
            path,
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization,content-type,x-openai-agents-sdk",
                ),
            ],
            b"",
        );
        assert_eq!(s, 204, "{path}");
        assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
        assert!(header(&h, "access-control-allow-headers")
            .unwrap()
            .contains("x-openai-agents-sdk"));
        assert!(header(&h, "access-control-allow-methods")
            .unwrap()
            .contains("POST"));
    }
    let sdp = offer();
    let (s, h, b) = http_with(
        engine.http,
        "POST",
        "/v1/realtime/calls",
        &[("Content-Type", "application/sdp"), ("Origin", origin)],
        sdp.as_bytes(),
    );
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
    assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
    assert_eq!(
        header(&h, "access-control-expose-headers"),
        Some("Location")
    );
    assert!(header(&h, "location").is_some());
}

#[test]
fn cors_with_keys_allows_only_the_listed_origins() {
    let engine = common::engine::start_with(1, 4, tern_engine::agent::AgentKind::Echo, |c| {
        c.api_keys = vec!["sk-test".into()];
        c.cors_origins = Some(vec!["https://app.example".into()]);
    });
    let pre = |origin| {
        http_with(
            engine.http,
            "OPTIONS",
            "/v1/realtime/calls",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
            ],
            b"",
        )
    };
    let (s, h, _) = pre("https://app.example");
    assert_eq!(s, 204);
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://app.example")
    );
    let (s, h, b) = pre("https://evil.example");
    assert_eq!(s, 403, "{}", String::from_utf8_lossy(&b));
    assert!(header(&h, "access-control-allow-origin").is_none());
    // An error response to an allowed origin carries CORS headers too, so the page can read it.
    let (s, h, _) = http_with(
        engine.http,
        "POST",
        "/v1/realtime/calls",
        &[("Origin", "https://app.example")],
        b"v=0",
    );
    assert_eq!(s, 401);
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://app.example")
    );
}

#[test]
fn multipart_offer_with_session_part() {
    let engine = common::engine::start(1, 4);
    let sdp = offer();
    let session = r#"{"type":"realtime","instructions":"be brief","audio":{"input":{"turn_detection":{"type":"server_vad","silence_duration_ms":700}}}}"#;
    let ct = "multipart/form-data; boundary=tern-test-boundary";
    let (s, h, b) = http(
        engine.http,
        "POST",
        "/v1/realtime/calls",
        Some(ct),
        &form("tern-test-boundary", &sdp, Some(session)),
    );
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&b).starts_with("v=0"));
    assert!(header(&h, "location")
        .unwrap()
        .starts_with("/v1/realtime/calls/rtc_"));

    // Only the sdp part.
    let (s, _, b) = http(
        engine.http,
        "POST",
        "/v1/realtime/calls",
        Some(ct),
        &form("tern-test-boundary", &sdp, None),
    );
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));

    // A transcription session is refused with a reason; a bad form says what is wrong.
    let (s, _, b) = http(
        engine.http,
        "POST",
        "/v1/realtime/calls",
        Some(ct),
        &form(
            "tern-test-boundary",
            &sdp,
            Some(r#"{"type":"transcription"}"#),
        ),
    );
    assert_eq!(s, 400);
    let e: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(e["error"]["code"], "invalid_session");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("transcription"));
    let (s, _, b) = http(
        engine.http,
        "POST",
        "/v1/realtime/calls",
        Some("multipart/form-data"),
        b"x",
    );
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&b).contains("boundary"));
}

#[test]
fn client_secret_returns_the_effective_session() {
    let engine = common::engine::start(1, 4);
    let req = br#"{"session":{"type":"realtime","model":"gpt-realtime","instructions":"hi","audio":{"output":{"voice":"marin"}}}}"#;
    let (s, _, b) = http(
        engine.http,
        "POST",
        "/v1/realtime/client_secrets",
        Some("application/json"),
        req,
    );
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let sess = &v["session"];
    assert_eq!(sess["object"], "realtime.session");
    assert_eq!(sess["type"], "realtime");
    assert!(sess["id"].as_str().unwrap().starts_with("sess_"));
    assert_eq!(sess["model"], "gpt-realtime");
    assert_eq!(sess["instructions"], "hi");
    assert_eq!(sess["audio"]["output"]["voice"], "marin");
    assert_eq!(
        sess["audio"]["input"]["turn_detection"]["type"],
        "server_vad"
    );
    assert_eq!(sess["expires_at"], v["expires_at"]);
    assert!(v["value"].as_str().unwrap().starts_with("ek_"));

    // No session in the request: the server's defaults, never null.
    let (s, _, b) = http(
        engine.http,
        "POST",
        "/v1/realtime/client_secrets",
        Some("application/json"),
        b"{}",
    );
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["session"]["object"], "realtime.session");

    let (s, _, b) = http(
        engine.http,
        "POST",
        "/v1/realtime/client_secrets",
        Some("application/json"),
        br#"{"session":{"type":"transcription"}}"#,
    );
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&b));
}

#[test]
fn sip_call_controls_are_refused_for_webrtc_calls() {
    let engine = common::engine::start(1, 4);
    for action in ["accept", "reject", "refer"] {
        let path = format!("/v1/realtime/calls/rtc_whatever/{action}");
        let (s, _, b) = http(engine.http, "POST", &path, Some("application/json"), b"{}");
        assert_eq!(s, 400, "{action}");
        let e: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(e["error"]["code"], "unsupported_for_webrtc");
    }
}

/// A client that writes its whole body before reading (Python's http.client, requests) reads
/// the 413 instead of a reset connection.
#[test]
fn oversized_offer_answered_after_the_whole_body() {
    let engine = common::engine::start(1, 4);
    let body = vec![b'a'; 200 * 1024];
    let mut s = TcpStream::connect(engine.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /v1/realtime/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).expect("the server reads the whole body");
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("body_too_large"), "{text}");
}
