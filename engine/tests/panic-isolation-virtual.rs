//! A panic inside one session's processing closes that session and is counted; the shard core and
//! its other sessions go on. Virtual time, two clients on one shard core; the panic is injected
//! through the test-only `tern.test.panic` event.

use crate::common;

use std::time::{Duration, Instant};

use common::virtual_server::VirtualServer;
use common::{load_wav, Client, Link};
use tern_engine::core::session::SessionConfig;

#[test]
fn a_panicking_session_is_closed_and_the_others_go_on() {
    let mut server = VirtualServer::with_session(SessionConfig {
        fault_injection: true,
        ..Default::default()
    });
    let t0 = Instant::now();
    let (mut victim, offer) = Client::new(t0, "10.0.0.2:50000".parse().unwrap(), Vec::new());
    server.connect(t0, &mut victim, &offer);
    let speech = load_wav("hello-24k.wav").1;
    let (mut other, offer) = Client::new(t0, "10.0.0.3:50000".parse().unwrap(), speech);
    server.connect(t0, &mut other, &offer);
    let link = |seed| Link::new(0.0, Duration::from_millis(10), seed);
    let (mut up1, mut down1, mut up2, mut down2) = (link(1), link(2), link(3), link(4));
    let mut now = t0;
    let mut step = |server: &mut VirtualServer, victim: &mut Client, other: &mut Client, ms| {
        now = server.run_many(
            now,
            Duration::from_millis(ms),
            &mut [
                (victim, &mut up1, &mut down1),
                (other, &mut up2, &mut down2),
            ],
        );
    };
    step(&mut server, &mut victim, &mut other, 1000);
    assert!(victim.channel_open && other.channel_open);
    assert_eq!(server.core.live_sessions(), 2);

    assert!(victim.send_event(r#"{"type":"tern.test.panic"}"#));
    step(&mut server, &mut victim, &mut other, 300);
    let c = &server.core.counters;
    assert_eq!(c.session_panics, 1);
    assert_eq!(c.ended_by.get("panic"), Some(&1), "{:?}", c.ended_by);
    assert_eq!(server.core.live_sessions(), 1);
    assert_eq!(server.io.ended, 1, "ended once");
    assert_eq!(
        server.core.settings().admission.admitted(),
        1,
        "its place given back"
    );

    // The other session on the same core completes its turn and hears the echo.
    step(&mut server, &mut victim, &mut other, 12_000);
    assert!(
        other
            .event_types()
            .iter()
            .any(|t| t == "output_audio_buffer.stopped"),
        "{:?}",
        other.event_types()
    );
    assert!(other.audible_frames() > 50, "{}", other.audible_frames());
}
