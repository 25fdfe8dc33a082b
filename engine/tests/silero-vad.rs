//! `--vad silero` end to end: the Silero model runs on the inference worker, its probabilities come
//! back through the downlink ring, and the session's turn detector ends the turn from them, with
//! semantic_vad on top (its default turn model, Smart Turn, on the same worker). A real client on
//! loopback speaks one turn and hears the echo.

#![cfg(feature = "silero")]

use crate::common;

use std::time::Duration;

use common::udp_client::UdpClient;
use common::{http, load_wav, metric};
use tern_engine::agent::AgentKind;
use tern_engine::core::turn::semantic::Eagerness;
use tern_engine::core::turn::vad::VadBackend;

#[test]
fn silero_on_the_worker_ends_the_turn() {
    let engine = common::engine::start_with(1, 4, AgentKind::Echo, |cfg| {
        cfg.shard.session.vad = VadBackend::Silero;
        if let Some(t) = cfg.shard.session.turn.as_mut() {
            // High: the eagerness whose fitted rule asks the turn model.
            t.eagerness = Some(Eagerness::High);
        }
    });
    let (_, speech) = load_wav("hello-24k.wav");
    let mut c = UdpClient::connect(engine.http, speech);
    let done = c.run_until(Duration::from_secs(20), |cl| {
        cl.event_types()
            .iter()
            .any(|t| t == "output_audio_buffer.stopped")
    });
    let types = c.client.event_types();
    assert!(done, "turn detected and echoed; events: {types:?}");
    let start = types
        .iter()
        .position(|t| t == "input_audio_buffer.speech_started");
    let stop = types
        .iter()
        .position(|t| t == "input_audio_buffer.speech_stopped");
    assert!(start.is_some() && start < stop, "{types:?}");
    assert!(c.client.audible_frames() > 50, "heard the echo");
    let (_, session) = c
        .client
        .events
        .iter()
        .find(|(_, e)| e["type"] == "session.created")
        .unwrap();
    assert_eq!(
        session["session"]["audio"]["input"]["turn_detection"]["type"],
        "semantic_vad"
    );
    let (_, _, m) = http(engine.http, "GET", "/metrics", None, b"");
    let m = String::from_utf8_lossy(&m);
    assert!(
        metric(&m, "tern_uplink_frames_total", "decoded") > 50.0,
        "{m}"
    );
    // semantic_vad's default turn model answered from the same worker, its cost in /metrics.
    assert!(
        metric(&m, "tern_turn_model_answers_total", "scored") >= 1.0,
        "{m}"
    );
    assert!(
        metric(&m, "tern_turn_model_cpu_seconds_count", "") >= 1.0,
        "{m}"
    );
    assert!(
        metric(&m, "tern_turn_model_cpu_seconds", "0.5") > 0.0,
        "{m}"
    );
}
