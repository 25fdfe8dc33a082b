//! Scenario: a client connects to Tern's core in virtual time, speaks one turn, and hears it echoed
//! back, with the data-channel events in the right order.

use crate::common;

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

/// The per-turn latency event: stages in order, summing to the total, and the total equal to what
/// the client measured (its last voiced packet sent to the first reply packet received) less the
/// two link delays.
#[test]
fn turn_latency_event_adds_up_to_what_the_client_measured() {
    let (_, speech) = load_wav("hello-24k.wav");
    let t0 = Instant::now();
    let mut server = VirtualServer::new();
    let (mut client, offer) = Client::new(t0, "10.0.0.2:50000".parse().unwrap(), speech);
    server.connect(t0, &mut client, &offer);
    let one_way = Duration::from_millis(15);
    let mut up = Link::new(0.0, one_way, 1);
    let mut down = Link::new(0.0, one_way, 2);
    server.run(t0, Duration::from_secs(12), &mut client, &mut up, &mut down);

    let events = client.events_of("tern.turn.latency");
    assert_eq!(
        events.len(),
        1,
        "one turn, one breakdown: {:?}",
        client.event_types()
    );
    let e = events[0];
    assert_eq!(e["end_rule"], "silence_timer");
    assert_eq!(e["response_id"], "resp_000001");
    let stages: Vec<u64> = tern_engine::core::turn::latency::STAGES
        .iter()
        .map(|s| e["stages_us"][s].as_u64().expect("every stage"))
        .collect();
    let total = e["total_us"].as_u64().unwrap();
    assert_eq!(stages.iter().sum::<u64>(), total, "{e}");
    // After the reply started, and after the events it breaks down.
    let types = client.event_types();
    let pos = |t: &str| types.iter().position(|x| x == t).unwrap();
    assert!(pos("input_audio_buffer.speech_stopped") < pos("tern.turn.latency"));
    assert!(pos("output_audio_buffer.started") < pos("tern.turn.latency"));
    // Waiting out the silence window (after the VAD's hangover) dominates; the rest is the
    // shard's and the agent's work.
    let silence_us = 500_000;
    assert!(
        (silence_us..silence_us + 200_000).contains(&stages[0]),
        "end of speech {stages:?}"
    );

    let client_measured = client.received.first().unwrap().0 - client.last_voiced_sent.unwrap();
    let server_total = Duration::from_micros(total);
    let transport = 2 * one_way;
    let diff =
        (client_measured.as_micros() as i64) - ((server_total + transport).as_micros() as i64);
    // The client judges voice by level, the server by its VAD: they may disagree on the last
    // voiced frame by a frame or two; the 1 ms virtual step adds a millisecond each way.
    assert!(
        diff.abs() <= 45_000,
        "client measured {client_measured:?}, server {server_total:?} + {transport:?} transport"
    );
    assert_eq!(
        server.io.turn_latencies.len(),
        1,
        "and the same for /metrics"
    );
    assert_eq!(
        server.io.turn_latencies[0].total(),
        server_total,
        "the event and the metrics carry one figure"
    );
    println!(
        "turn latency: stages {stages:?} µs, total {server_total:?}; client measured {client_measured:?} (diff {diff} µs)"
    );
}
