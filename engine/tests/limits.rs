//! Signaling limits over real sockets: the per-address offer rate and a full shard, each answered
//! with its status and counted. The session limits (event size and rate, idle timeout, consent
//! expiry) run in virtual time (`limits-virtual.rs`).

use crate::common;

use common::{http, metric};
use tern_engine::agent::AgentKind;
use tern_engine::shell::runtime::{Engine, EngineConfig};

fn engine(tweak: impl FnOnce(&mut EngineConfig)) -> Engine {
    common::engine::start_with(1, 8, AgentKind::Echo, tweak)
}

fn metrics(e: &Engine) -> String {
    String::from_utf8(http(e.http, "GET", "/metrics", None, b"").2).unwrap()
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
