//! Limits over real sockets: per-address signaling rate, data-channel event size and rate, the
//! idle-session timeout and ICE consent expiry. Each refusal is answered and counted; expired
//! sessions are closed and freed.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::udp_client::UdpClient;
use common::{http, load_wav, metric};
use tern_engine::agent::AgentKind;
use tern_engine::shell::runtime::{Engine, EngineConfig};

fn engine(tweak: impl FnOnce(&mut EngineConfig)) -> Engine {
    common::engine::start_with(1, 8, AgentKind::Echo, tweak)
}

fn metrics(e: &Engine) -> String {
    String::from_utf8(http(e.http, "GET", "/metrics", None, b"").2).unwrap()
}

fn connected(e: &Engine) -> UdpClient {
    let mut c = UdpClient::connect(e.http, load_wav("hello-24k.wav").1);
    assert!(c.run_until(Duration::from_secs(10), |cl| cl.channel_open));
    c
}

#[test]
fn signaling_rate_per_address() {
    let e = engine(|c| c.offers_per_ip = 2);
    // A burst of 4 (twice the rate) is allowed, then 429 with Retry-After.
    let statuses: Vec<u16> = (0..6)
        .map(|_| {
            http(
                e.http,
                "POST",
                "/v1/realtime/calls",
                Some("application/sdp"),
                b"x",
            )
            .0
        })
        .collect();
    assert_eq!(&statuses[..4], &[400, 400, 400, 400], "{statuses:?}");
    let (s, headers, body) = http(
        e.http,
        "POST",
        "/v1/realtime/calls",
        Some("application/sdp"),
        b"x",
    );
    assert_eq!(s, 429);
    assert!(String::from_utf8_lossy(&body).contains("rate_limit_exceeded"));
    assert!(headers.iter().any(|(k, v)| k == "retry-after" && v == "1"));
    // Reads are not limited.
    assert_eq!(http(e.http, "GET", "/healthz", None, b"").0, 200);
}

#[test]
fn oversized_and_flooding_events_are_refused() {
    let e = engine(|c| {
        c.shard.session.limits.max_event_bytes = 1024;
        c.shard.session.limits.events_per_sec = 5;
    });
    let mut c = connected(&e);
    let big = format!(
        r#"{{"type":"conversation.item.create","pad":"{}"}}"#,
        "x".repeat(2000)
    );
    assert!(c.client.send_event(&big));
    for _ in 0..30 {
        c.client
            .send_event(r#"{"type":"conversation.item.create"}"#);
    }
    assert!(
        c.run_until(Duration::from_secs(5), |cl| cl.events_of("error").len()
            >= 2)
    );
    let codes: Vec<String> = c
        .client
        .events_of("error")
        .iter()
        .map(|v| v["error"]["code"].as_str().unwrap().to_string())
        .collect();
    assert!(codes.contains(&"event_too_large".to_string()), "{codes:?}");
    assert!(
        codes.contains(&"rate_limit_exceeded".to_string()),
        "{codes:?}"
    );
    let m = metrics(&e);
    assert_eq!(
        metric(&m, "tern_client_events_rejected_total", "too_large"),
        1.0,
        "{m}"
    );
    // Burst of 10 admitted, the other 20 refused.
    assert_eq!(
        metric(&m, "tern_client_events_rejected_total", "rate_limited"),
        20.0
    );
    // The session itself is fine.
    assert_eq!(metric(&m, "tern_sessions", ""), 1.0);
}

#[test]
fn a_vanished_peer_is_closed_when_idle() {
    let e = engine(|c| c.shard.session.limits.idle_timeout = Duration::from_secs(1));
    let mut c = connected(&e);
    c.mute = true;
    c.run_until(Duration::from_millis(2500), |_| false);
    let m = metrics(&e);
    assert_eq!(
        metric(&m, "tern_sessions_ended_by_total", "idle"),
        1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "tern_sessions", ""), 0.0);
    assert_eq!(
        metric(&m, "tern_sessions_admitted", ""),
        0.0,
        "admission slot freed"
    );
    assert_eq!(
        metric(&m, "tern_deadlines_armed", ""),
        0.0,
        "no timer left behind"
    );
}

#[test]
fn consent_expires_without_stun_checks() {
    let e = engine(|c| c.shard.session.limits.consent_timeout = Duration::from_secs(1));
    let mut c = connected(&e);
    // Media keeps flowing, consent checks stop.
    c.drop_stun = true;
    c.run_until(Duration::from_millis(2500), |_| false);
    let m = metrics(&e);
    assert_eq!(
        metric(&m, "tern_sessions_ended_by_total", "consent_expired"),
        1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "tern_sessions", ""), 0.0);
}

#[test]
fn a_full_shard_answers_503() {
    let e = engine(|c| c.shard.max_sessions_per_shard = 2);
    let offer = || {
        common::Client::new(
            std::time::Instant::now(),
            "127.0.0.1:9".parse().unwrap(),
            Vec::new(),
        )
        .1
    };
    let post = |o: String| {
        http(
            e.http,
            "POST",
            "/v1/realtime/calls",
            Some("application/sdp"),
            o.as_bytes(),
        )
    };
    assert_eq!(post(offer()).0, 201);
    assert_eq!(post(offer()).0, 201);
    let (s, headers, body) = post(offer());
    assert_eq!(s, 503, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("shard_session_limit"));
    assert!(headers.iter().any(|(k, _)| k == "retry-after"));
    let m = metrics(&e);
    assert_eq!(
        metric(&m, "tern_sessions_admitted", ""),
        2.0,
        "the refused offer released its admission"
    );
}
