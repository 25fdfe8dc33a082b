//! A panic inside one session's processing closes that session and is counted; the shard and
//! its other sessions go on. The panic is injected through a test-only hook.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::udp_client::UdpClient;
use common::{http, load_wav, metric};
use tern_engine::agent::AgentKind;

#[test]
fn a_panicking_session_is_closed_and_the_others_go_on() {
    let e = common::engine::start_with(1, 8, AgentKind::Echo, |c| {
        c.shard.session.fault_injection = true;
    });
    let speech = load_wav("hello-24k.wav").1;
    let mut victim = UdpClient::connect(e.http, Vec::new());
    let mut other = UdpClient::connect(e.http, speech);
    assert!(victim.run_until(Duration::from_secs(10), |c| c.channel_open));
    assert!(other.run_until(Duration::from_secs(10), |c| c.channel_open));

    assert!(victim.client.send_event(r#"{"type":"tern.test.panic"}"#));
    victim.run_until(Duration::from_millis(300), |_| false);
    let m = String::from_utf8(http(e.http, "GET", "/metrics", None, b"").2).unwrap();
    assert_eq!(
        metric(&m, "tern_sessions_ended_by_total", "panic"),
        1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "tern_sessions", ""), 1.0);

    // The other session on the same shard completes its turn and hears the echo.
    assert!(other.run_until(Duration::from_secs(20), |c| {
        c.event_types()
            .iter()
            .any(|t| t == "output_audio_buffer.stopped")
    }));
    assert!(other.client.audible_frames() > 50);
    // And the shard still takes new calls.
    let mut late = UdpClient::connect(e.http, Vec::new());
    assert!(late.run_until(Duration::from_secs(10), |c| c.channel_open));
}
