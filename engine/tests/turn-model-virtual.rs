//! `--turn-model smart-turn` in virtual time: Tern's core with the echo agent and the worker's
//! Smart Turn v3.2 (the real model on its scorer thread; virtual time waits for each answer, which
//! reaches the core 240 ms after the question, about what a decision takes in release).

use crate::common;

use std::time::Duration;

use common::load_wav;
use common::scene::Scene;
use tern_engine::core::session::SessionConfig;
use tern_engine::core::turn::detector::ServerVadSettings;
use tern_engine::core::turn::latency::EndRule;
use tern_engine::core::turn::semantic::Eagerness;
use tern_engine::core::turn::turn_model::{TurnAnswer, TurnModel};

const DELAY_MS: u32 = 240;

fn speech() -> Vec<i16> {
    let mut v = vec![0i16; 500 * 24];
    v.extend(load_wav("hello-24k.wav").1);
    v
}

/// The first `speech_stopped`'s `audio_end_ms`, once the echo of the turn has played.
fn first_stop(s: &mut Scene) -> u64 {
    assert!(
        s.run_until(15_000, |c| c.events_of("output_audio_buffer.stopped").len()
            == 1),
        "{:?}",
        s.client.event_types()
    );
    s.client.events_of("input_audio_buffer.speech_stopped")[0]["audio_end_ms"]
        .as_u64()
        .expect("audio_end_ms")
}

#[test]
fn the_model_chooses_the_wait_and_the_timer_is_its_fallback() {
    // High and medium are the eagernesses whose fitted rules ask the model (at 200 and 400 ms).
    for eagerness in [Eagerness::High, Eagerness::Medium] {
        model_chooses_the_wait(eagerness);
    }
}

fn model_chooses_the_wait(eagerness: Eagerness) {
    let rule = eagerness.model_rule();
    assert!(rule.listens(), "{eagerness:?}");
    // The timer the model's unsure window equals, on the same speech.
    let mut timer = Scene::with_session(
        speech(),
        SessionConfig {
            turn: Some(ServerVadSettings {
                silence_duration_ms: rule.unsure_ms,
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    let timer_end = first_stop(&mut timer);

    let session = SessionConfig {
        turn: Some(ServerVadSettings {
            eagerness: Some(eagerness),
            ..Default::default()
        }),
        turn_model: TurnModel::SmartTurn,
        ..Default::default()
    };
    let mut s = Scene::with_turn_model(speech(), session, Duration::from_millis(DELAY_MS.into()));
    let end = first_stop(&mut s);
    let io = &s.server.io;
    // Every pause got its answer from the model, counted by the shard.
    let scored: Vec<f32> = io
        .turn_model_answers
        .iter()
        .map(|a| match a {
            TurnAnswer::Scored { probability, .. } => *probability,
            other => panic!("unanswered: {other:?}"),
        })
        .collect();
    assert!(!scored.is_empty());
    assert_eq!(io.turn_latencies[0].rule, EndRule::TurnModel);
    // The turn ended where the rule puts it for the answer about its last pause: the silence it
    // waited is the rule's wait, or the answer's arrival if that came later.
    let p = *scored.last().expect("an answer");
    let waited = rule.wait_ms(p).max(rule.ask_after_ms + DELAY_MS);
    let expected = timer_end as i64 + i64::from(waited) - i64::from(rule.unsure_ms);
    println!(
        "{eagerness:?}: answers {scored:?}: ended at {end} ms, the {} ms timer at {timer_end} ms",
        rule.unsure_ms
    );
    assert!(
        (end as i64 - expected).abs() <= 20,
        "{eagerness:?}, p = {p}: ended at {end} ms, the timer at {timer_end}, expected {expected}"
    );
    // The echo agent replied as usual.
    assert!(s.has("output_audio_buffer.started"));
}
