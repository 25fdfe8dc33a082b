//! Turn-taking settings in virtual time (Tern's core and the echo agent, no sockets): the idle
//! timeout after a reply, manual turns with `turn_detection: null` and `input_audio_buffer.commit`,
//! `create_response: false`, `interrupt_response: false`, and a backchannel over a reply.

use crate::common;

use std::time::Duration;

use common::load_wav;
use common::scene::Scene;
use tern_engine::core::turn::barge_in::BargeInOutcome;

/// `session.update` with `turn_detection`; it must be accepted.
fn update(s: &mut Scene, turn_detection: &str) {
    let e = s.session_update(&format!(r#"{{"turn_detection":{turn_detection}}}"#));
    assert_eq!(e["type"], "session.updated", "{e}");
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
    update(&mut s, r#"{"type":"server_vad","idle_timeout_ms":5000}"#);
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
    update(&mut s, "null");
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
    update(&mut s, r#"{"type":"server_vad","create_response":false}"#);
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
    update(
        &mut s,
        r#"{"type":"server_vad","interrupt_response":false}"#,
    );
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
