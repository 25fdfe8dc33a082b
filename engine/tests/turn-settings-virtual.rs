//! Turn-taking settings in virtual time (Tern's core and the echo agent, no sockets): the idle
//! timeout after a reply, manual turns with `turn_detection: null` and `input_audio_buffer.commit`,
//! `create_response: false`, `interrupt_response: false`, and a backchannel over a reply.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::virtual_server::VirtualServer;
use common::{load_wav, Client, Link};
use tern_engine::core::turn::barge_in::BargeInOutcome;

struct Scene {
    server: VirtualServer,
    client: Client,
    up: Link,
    down: Link,
    now: Instant,
}

impl Scene {
    fn new(speech: Vec<i16>) -> Self {
        let now = Instant::now();
        let mut server = VirtualServer::new();
        let (mut client, offer) = Client::new(now, "10.0.0.2:50000".parse().unwrap(), speech);
        server.connect(now, &mut client, &offer);
        Scene {
            server,
            client,
            up: Link::new(0.0, Duration::from_millis(10), 1),
            down: Link::new(0.0, Duration::from_millis(10), 2),
            now,
        }
    }

    fn run(&mut self, ms: u64) {
        self.now = self.server.run(
            self.now,
            Duration::from_millis(ms),
            &mut self.client,
            &mut self.up,
            &mut self.down,
        );
    }

    /// Runs until `done` or `max_ms` of virtual time.
    fn run_until(&mut self, max_ms: u64, done: impl Fn(&Client) -> bool) -> bool {
        for _ in 0..max_ms / 20 {
            if done(&self.client) {
                return true;
            }
            self.run(20);
        }
        done(&self.client)
    }

    fn has(&self, kind: &str) -> bool {
        self.client.event_types().iter().any(|t| t == kind)
    }

    fn update(&mut self, turn_detection: &str) {
        assert!(self.run_until(2000, |c| c.channel_open));
        let ev = format!(
            r#"{{"type":"session.update","session":{{"turn_detection":{turn_detection}}}}}"#
        );
        assert!(self.client.send_event(&ev));
        assert!(self.run_until(1000, |c| !c.events_of("session.updated").is_empty()));
    }
}

/// The fixture after `lead_ms` of silence.
fn speech_after(lead_ms: usize) -> Vec<i16> {
    let mut v = vec![0i16; lead_ms * 24];
    v.extend(load_wav("hello-24k.wav").1);
    v
}

#[test]
fn idle_timeout_after_a_reply_commits_an_empty_turn() {
    let mut s = Scene::new(speech_after(0));
    s.update(r#"{"type":"server_vad","idle_timeout_ms":5000}"#);
    assert!(
        s.run_until(15_000, |c| c.events_of("output_audio_buffer.stopped").len()
            == 1)
    );
    let stopped_at = s.client.event_time("output_audio_buffer.stopped").unwrap();
    assert!(s.run_until(8000, |c| !c
        .events_of("input_audio_buffer.timeout_triggered")
        .is_empty()));
    let t = s.client.events_of("input_audio_buffer.timeout_triggered")[0].clone();
    let waited = s
        .client
        .event_time("input_audio_buffer.timeout_triggered")
        .unwrap()
        - stopped_at;
    assert!(
        (Duration::from_millis(4900)..Duration::from_millis(5500)).contains(&waited),
        "timeout after {waited:?}"
    );
    let span = t["audio_end_ms"].as_u64().unwrap() - t["audio_start_ms"].as_u64().unwrap();
    assert!((5000..5100).contains(&span), "{t}");
    // It fires once per reply, not again and again.
    s.run(7000);
    assert_eq!(
        s.client
            .events_of("input_audio_buffer.timeout_triggered")
            .len(),
        1
    );
}

#[test]
fn manual_turns_with_commit() {
    let mut s = Scene::new(speech_after(1500));
    s.update("null");
    // The whole fixture is spoken; with detection off nothing happens on its own.
    s.run(6000);
    assert!(
        !s.has("input_audio_buffer.speech_started"),
        "{:?}",
        s.client.event_types()
    );
    assert!(!s.has("output_audio_buffer.started"));
    // The client commits: the turn ends and the echo plays the buffer back.
    assert!(s
        .client
        .send_event(r#"{"type":"input_audio_buffer.commit"}"#));
    assert!(
        s.run_until(12_000, |c| c.events_of("output_audio_buffer.stopped").len()
            == 1)
    );
    assert!(s.has("input_audio_buffer.committed"));
    assert!(
        s.client.audible_frames() > 100,
        "heard {}",
        s.client.audible_frames()
    );

    // Clear drops what was said since: a commit after it replies with silence only.
    let heard = s.client.audible_frames();
    s.client.speak(load_wav("hello-24k.wav").1);
    s.run(4000);
    assert!(s
        .client
        .send_event(r#"{"type":"input_audio_buffer.clear"}"#));
    s.run(500);
    assert!(s.has("input_audio_buffer.cleared"));
    assert!(s
        .client
        .send_event(r#"{"type":"input_audio_buffer.commit"}"#));
    s.run(3000);
    assert!(
        s.client.audible_frames() <= heard + 5,
        "cleared audio was not replayed"
    );
}

#[test]
fn create_response_false_hears_but_does_not_reply() {
    let mut s = Scene::new(speech_after(500));
    s.update(r#"{"type":"server_vad","create_response":false}"#);
    assert!(s.run_until(10_000, |c| c
        .event_types()
        .iter()
        .any(|t| t == "input_audio_buffer.committed")));
    s.run(4000);
    assert!(
        !s.has("output_audio_buffer.started"),
        "{:?}",
        s.client.event_types()
    );
}

#[test]
fn interrupt_response_false_lets_the_reply_finish() {
    let mut s = Scene::new(speech_after(500));
    s.update(r#"{"type":"server_vad","interrupt_response":false}"#);
    assert!(s.run_until(12_000, |c| c.audible_frames() > 40));
    // The user talks over the reply: it is not cut.
    s.client.speak(load_wav("hello-24k.wav").1);
    assert!(s.run_until(8000, |c| c
        .events_of("input_audio_buffer.speech_started")
        .len()
        == 2));
    assert!(s.run_until(8000, |c| !c
        .events_of("output_audio_buffer.stopped")
        .is_empty()));
    assert!(
        !s.has("output_audio_buffer.cleared"),
        "{:?}",
        s.client.event_types()
    );
}

#[test]
fn a_backchannel_pauses_the_reply_which_then_plays_on() {
    let mut s = Scene::new(speech_after(500));
    assert!(s.run_until(12_000, |c| c.audible_frames() > 40));
    let before = s.client.audible_frames();
    // "Mm-hmm": the first 450 ms of speech of the fixture, then silence.
    let speech = load_wav("hello-24k.wav").1;
    let onset = speech.iter().position(|v| v.abs() > 1000).unwrap();
    s.client.speak(speech[onset..onset + 450 * 24].to_vec());
    assert!(s.run_until(10_000, |c| !c
        .events_of("output_audio_buffer.stopped")
        .is_empty()));
    assert_eq!(
        s.server.io.barge_ins,
        vec![BargeInOutcome::Resumed],
        "paused, then resumed"
    );
    assert!(
        !s.has("output_audio_buffer.cleared"),
        "{:?}",
        s.client.event_types()
    );
    assert_eq!(
        s.client
            .events_of("input_audio_buffer.speech_started")
            .len(),
        1,
        "the backchannel is no turn: {:?}",
        s.client.event_types()
    );
    // Nothing of the reply was dropped: it played on after the pause.
    let spoken = speech.len() / 480;
    assert!(
        s.client.audible_frames() >= before + spoken / 3,
        "{} audible frames before, {} after",
        before,
        s.client.audible_frames()
    );
}
