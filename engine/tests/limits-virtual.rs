//! Session limits in virtual time: data-channel event size and rate, the idle-session timeout and
//! ICE consent expiry. Each refusal is answered and counted; expired sessions are closed, counted
//! by reason and freed (admission, table slot, deadline). The signaling limits (per-address rate,
//! a full shard) are the HTTP shell's and stay on real sockets (`limits.rs`).

use crate::common;

use std::time::Duration;

use common::load_wav;
use common::scene::Scene;
use tern_engine::core::session::SessionConfig;
use tern_engine::core::session_limits::{EventRejected, SessionLimits};

fn scene(limits: SessionLimits) -> Scene {
    let session = SessionConfig {
        limits,
        ..Default::default()
    };
    let mut s = Scene::with_session(load_wav("hello-24k.wav").1, session);
    assert!(s.run_until(3000, |c| c.channel_open), "connected");
    s
}

/// The scene's session ended by `reason` and left nothing behind.
fn assert_ended_and_freed(s: &Scene, reason: &str) {
    let core = &s.server.core;
    assert_eq!(
        core.counters.ended_by.get(reason),
        Some(&1),
        "{:?}",
        core.counters.ended_by
    );
    assert_eq!(s.server.io.ended, 1, "ended once");
    assert_eq!(core.live_sessions(), 0);
    assert_eq!(core.occupied_slots(), 0, "table slot freed");
    assert_eq!(core.armed_deadlines(), 0, "no timer left behind");
    assert_eq!(core.settings().admission.admitted(), 0, "admission freed");
}

#[test]
fn oversized_and_flooding_events_are_refused() {
    let mut s = scene(SessionLimits {
        max_event_bytes: 1024,
        events_per_sec: 5,
        ..Default::default()
    });
    let big = format!(
        r#"{{"type":"conversation.item.create","pad":"{}"}}"#,
        "x".repeat(2000)
    );
    assert!(s.client.send_event(&big));
    for _ in 0..30 {
        s.client
            .send_event(r#"{"type":"conversation.item.create"}"#);
    }
    assert!(s.run_until(1000, |c| c.events_of("error").len() >= 2));
    let codes: Vec<&str> = s
        .client
        .events_of("error")
        .iter()
        .map(|v| v["error"]["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"event_too_large"), "{codes:?}");
    assert!(codes.contains(&"rate_limit_exceeded"), "{codes:?}");
    let rejected = &s.server.io.events_rejected;
    let count = |r: EventRejected| rejected.iter().filter(|x| **x == r).count();
    assert_eq!(count(EventRejected::TooLarge), 1);
    // A burst of 10 (twice the rate) is admitted, the other 20 refused; the errors about them
    // are themselves limited (the first and every 50th).
    assert_eq!(count(EventRejected::RateLimited), 20);
    assert_eq!(
        codes
            .iter()
            .filter(|c| **c == "rate_limit_exceeded")
            .count(),
        1
    );
    // The session itself is fine.
    assert_eq!(s.server.core.live_sessions(), 1);
}

#[test]
fn a_vanished_peer_is_closed_when_idle() {
    let mut s = scene(SessionLimits {
        idle_timeout: Duration::from_secs(1),
        ..Default::default()
    });
    s.up.blackhole = true;
    s.run(900);
    assert_eq!(s.server.core.live_sessions(), 1, "not before its timeout");
    s.run(300);
    assert_ended_and_freed(&s, "idle");
}

#[test]
fn consent_expires_without_stun_checks() {
    let mut s = scene(SessionLimits {
        consent_timeout: Duration::from_secs(5),
        ..Default::default()
    });
    // The client's checks renew consent: the session outlives the timeout while they arrive.
    s.run(8000);
    assert_eq!(
        s.server.core.live_sessions(),
        1,
        "consent renewed by checks"
    );
    // Media keeps flowing, consent checks stop.
    s.up.drop_stun = true;
    let frames = s.server.io.uplink_origins[0];
    s.run(6000);
    assert!(s.server.io.uplink_origins[0] > frames + 40, "media flowed");
    assert_ended_and_freed(&s, "consent_expired");
}
