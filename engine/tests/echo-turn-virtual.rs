//! Scenario: a client connects to Tern's core in virtual time, speaks one turn, and hears it echoed
//! back, with the data-channel events in the right order.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::virtual_server::VirtualServer;
use common::{load_wav, Client, Link};

#[test]
fn one_turn_is_echoed_with_events_in_order() {
    let (rate, speech) = load_wav("hello-24k.wav");
    assert_eq!(rate, 24_000);
    let speech_frames = speech.len() / 480;
    let t0 = Instant::now();
    let mut server = VirtualServer::new();
    let (mut client, offer) = Client::new(t0, "10.0.0.2:50000".parse().unwrap(), speech);
    server.connect(t0, &mut client, &offer);
    let mut up = Link::new(0.0, Duration::from_millis(10), 1);
    let mut down = Link::new(0.0, Duration::from_millis(10), 2);
    server.run(t0, Duration::from_secs(12), &mut client, &mut up, &mut down);

    assert!(client.connected_at.is_some(), "client connected");
    assert_eq!(server.io.setups.len(), 1, "server measured setup once");
    assert_eq!(server.unrouted, 0, "every datagram routed");
    let types = client.event_types();
    let expected = [
        "session.created",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
    ];
    let mut it = types.iter();
    for e in expected {
        assert!(it.any(|t| t == e), "missing {e} in order; got {types:?}");
    }
    // The echo is the whole turn: speech plus padding and the silence window.
    let audible = client.audible_frames();
    assert!(
        audible >= speech_frames * 6 / 10,
        "heard {audible} audible reply frames of {speech_frames} spoken"
    );
    let stopped = client
        .event_time("input_audio_buffer.speech_stopped")
        .unwrap();
    let first_reply = client.received.first().expect("reply audio").0;
    assert!(first_reply >= stopped, "reply starts after the turn ends");
    let started_ev = &client
        .events
        .iter()
        .find(|(_, v)| v["type"] == "input_audio_buffer.speech_started")
        .unwrap()
        .1;
    assert!(
        started_ev["audio_start_ms"].as_u64().unwrap() <= 300,
        "speech starts near the beginning (300 ms lead-in, minus padding)"
    );
    println!(
        "virtual turn: {} reply frames ({} audible), end-of-turn -> first reply packet {:?}",
        client.received.len(),
        audible,
        first_reply - stopped
    );
}
