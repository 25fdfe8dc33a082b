//! A worker ring that is full, in virtual time: what the shell could not queue goes back to the
//! shard core (`worker_full`), which settles it in the session.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::virtual_server::VirtualServer;
use common::{load_wav, Client, Link};

fn links() -> (Link, Link) {
    (
        Link::new(0.0, Duration::from_millis(15), 1),
        Link::new(0.0, Duration::from_millis(15), 2),
    )
}

/// Talks once for 12 s; the worker's ring is full while `full(elapsed)` says so.
fn talk(full: impl Fn(Duration) -> bool) -> (VirtualServer, Client) {
    let (_, speech) = load_wav("hello-24k.wav");
    let t0 = Instant::now();
    let mut server = VirtualServer::new();
    let addr: SocketAddr = "10.0.0.2:50000".parse().unwrap();
    let (mut client, offer) = Client::new(t0, addr, speech);
    server.connect(t0, &mut client, &offer);
    let (mut up, mut down) = links();
    server.run_with(
        t0,
        Duration::from_secs(12),
        &mut [(&mut client, &mut up, &mut down)],
        |server, now, _| server.io.worker_ring_full = full(now - t0),
    );
    (server, client)
}

#[test]
fn a_refused_start_means_the_agent_is_never_sent_anything() {
    let (server, client) = talk(|_| true);
    assert_eq!(
        server.io.worker_refused, 1,
        "only the start was offered to the worker"
    );
    assert_eq!(server.core.live_sessions(), 1, "the call goes on");
    assert!(
        client
            .event_time("input_audio_buffer.speech_stopped")
            .is_some(),
        "turns are still detected: {:?}",
        client.event_types()
    );
    assert!(client.event_time("output_audio_buffer.started").is_none());
}

#[test]
fn audio_refused_mid_speech_is_dropped_and_the_agent_hears_the_rest() {
    let (base, base_client) = talk(|_| false);
    let window = Duration::from_millis(1000)..Duration::from_millis(1500);
    let (server, client) = talk(|t| window.contains(&t));
    assert_eq!(base.io.worker_refused, 0);
    // 500 ms of 20 ms frames, give or take the step the window starts and ends in.
    let refused = server.io.worker_refused;
    assert!((24..=26).contains(&refused), "{refused} frames refused");
    assert!(
        client.event_time("output_audio_buffer.started").is_some(),
        "the agent still answered: {:?}",
        client.event_types()
    );
    // The echo agent plays back what it heard: less, by no more than the refused frames.
    let (heard, full) = (client.audible_frames(), base_client.audible_frames());
    assert!(
        heard < full && heard + refused >= full,
        "echoed {heard} frames against {full}"
    );
}
