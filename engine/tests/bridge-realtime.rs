//! `--agent realtime-ws`: a WebRTC client talks through a real engine to a local server speaking
//! the OpenAI Realtime WebSocket protocol, and hears its audio. Also barge-in (truncation at the
//! played-out position), a backend down at start, a backend dying mid-reply, and a slow backend.

use crate::common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::realtime_server::{Mode, RealtimeServer};
use common::udp_client::UdpClient;
use common::{http, load_wav, metric};
use tern_engine::agent::bridge::conn::BackendTarget;
use tern_engine::agent::bridge::BridgeProtocol;
use tern_engine::agent::AgentKind;
use tern_engine::shell::runtime::{Engine, EngineConfig};

fn engine_for(url: String) -> Engine {
    engine_with(url, |_| {})
}

fn engine_with(url: String, tweak: impl FnOnce(&mut EngineConfig)) -> Engine {
    let target = Arc::new(BackendTarget {
        url,
        api_key: Some("sk-test".into()),
    });
    let agent = AgentKind::Bridge(BridgeProtocol::RealtimeWs, target);
    common::engine::start_with(1, 4, agent, tweak)
}

fn metrics(engine: &Engine) -> String {
    let (_, _, body) = http(engine.http, "GET", "/metrics", None, b"");
    String::from_utf8(body).unwrap()
}

fn speech() -> Vec<i16> {
    load_wav("hello-24k.wav").1
}

/// Reply frames with audible energy (the tone is loud; silence and concealment are not).
fn audible(c: &UdpClient) -> usize {
    c.client.audible_frames()
}

#[test]
fn full_turn_through_the_realtime_backend() {
    let server = RealtimeServer::start(Mode::Normal, 1500);
    let engine = engine_for(server.url());
    let mut c = UdpClient::connect(engine.http, speech());
    let heard = c.run_until(Duration::from_secs(20), |cl| {
        cl.event_types()
            .iter()
            .any(|t| t == "output_audio_buffer.stopped")
    });
    assert!(
        heard,
        "reply played to the end; events {:?}",
        c.client.event_types()
    );

    // The backend session was opened with Tern's turn detection, credentials and 24 kHz PCM.
    let upd = server.seen.of_type("session.update");
    assert_eq!(upd.len(), 1);
    assert!(upd[0]["session"]["audio"]["input"]["turn_detection"].is_null());
    assert_eq!(
        server.seen.authorization.lock().unwrap()[0].as_deref(),
        Some("Bearer sk-test")
    );
    assert!(
        server.seen.appends.load(Ordering::SeqCst) > 100,
        "user audio appended"
    );
    assert_eq!(server.seen.of_type("input_audio_buffer.commit").len(), 1);
    assert_eq!(server.seen.of_type("response.create").len(), 1);

    // The client heard the generated 1.5 s reply and saw the backend's events pass through.
    let n = audible(&c);
    assert!(
        (65..=80).contains(&n),
        "about 75 reply frames heard, got {n}"
    );
    let types = c.client.event_types();
    for t in [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "response.created",
        "response.output_audio_transcript.delta",
        "output_audio_buffer.started",
        "response.done",
        "output_audio_buffer.stopped",
    ] {
        assert!(types.iter().any(|x| x == t), "{t} missing from {types:?}");
    }
    assert_eq!(
        c.client.events_of("session.created").len(),
        1,
        "backend's own is not forwarded"
    );
    assert!(
        !types.iter().any(|t| t == "response.output_audio.delta"),
        "audio goes as RTP, not JSON"
    );
}

/// The app's session (from the offer's form, then a `session.update` on the data channel) reaches
/// the backend model, with Tern's formats and turn detection kept; `session.created` and
/// `session.updated` show it to the client.
#[test]
fn the_apps_session_reaches_the_backend() {
    let server = RealtimeServer::start(Mode::Normal, 500);
    let engine = engine_for(server.url());
    let form =
        r#"{"type":"realtime","instructions":"be brief","audio":{"output":{"voice":"marin"}}}"#;
    let mut c = UdpClient::connect_with_session(engine.http, speech(), Some(form));
    assert!(c.run_until(Duration::from_secs(10), |cl| cl.channel_open
        && !cl.events_of("session.created").is_empty()));
    let created = c.client.events_of("session.created")[0].clone();
    assert_eq!(created["session"]["instructions"], "be brief");
    assert_eq!(created["session"]["audio"]["output"]["voice"], "marin");
    let update = r#"{"type":"session.update","session":{"tools":[{"type":"function","name":"lookup"}],"audio":{"input":{"turn_detection":{"type":"server_vad","silence_duration_ms":600}}}}}"#;
    assert!(c.client.send_event(update));
    assert!(c.run_until(Duration::from_secs(10), |cl| {
        !cl.events_of("session.updated").is_empty()
    }));
    let updated = c.client.events_of("session.updated")[0].clone();
    assert_eq!(updated["session"]["tools"][0]["name"], "lookup");
    assert_eq!(
        updated["session"]["instructions"], "be brief",
        "merged, not replaced"
    );
    let td = &updated["session"]["audio"]["input"]["turn_detection"];
    assert_eq!(
        td["silence_duration_ms"], 600,
        "Tern applied the turn settings"
    );
    // The backend got the form's fields (in the session.update that opens its connection, or
    // right after it) and then the update's, always with Tern's formats and turn detection.
    let seen = |f: &dyn Fn(&serde_json::Value) -> bool| {
        server
            .seen
            .of_type("session.update")
            .iter()
            .any(|u| f(&u["session"]))
    };
    let form_seen = |s: &serde_json::Value| {
        s["instructions"] == "be brief" && s["audio"]["output"]["voice"] == "marin"
    };
    let tools_seen = |s: &serde_json::Value| s["tools"][0]["name"] == "lookup";
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !(seen(&form_seen) && seen(&tools_seen)) && std::time::Instant::now() < deadline {
        c.run_until(Duration::from_millis(50), |_| false);
    }
    let upd = server.seen.of_type("session.update");
    let all = serde_json::to_string(&upd).unwrap();
    assert!(seen(&form_seen), "form's session not forwarded: {all}");
    assert!(seen(&tools_seen), "session.update not forwarded: {all}");
    for u in &upd {
        assert!(
            u["session"]["audio"]["input"]["turn_detection"].is_null(),
            "{u}"
        );
        assert_eq!(u["session"]["audio"]["input"]["format"]["rate"], 24_000);
    }
}

#[test]
fn barge_in_cancels_and_truncates_at_the_played_position() {
    let server = RealtimeServer::start(Mode::Normal, 8000);
    let engine = engine_for(server.url());
    let mut c = UdpClient::connect(engine.http, speech());
    assert!(c.run_until(Duration::from_secs(20), |cl| cl.audible_frames() >= 40));
    // About 0.8 s of the reply heard: the user talks over it.
    c.client.speak(speech());
    let cleared = c.run_until(Duration::from_secs(10), |cl| {
        cl.event_types()
            .iter()
            .any(|t| t == "output_audio_buffer.cleared")
    });
    assert!(cleared, "events {:?}", c.client.event_types());
    let heard_ms = audible(&c) as u64 * 20;
    // Let the cancel and truncate reach the backend.
    c.run_until(Duration::from_millis(500), |_| false);

    assert_eq!(server.seen.of_type("response.cancel").len(), 1);
    let tr = server.seen.of_type("conversation.item.truncate");
    assert_eq!(tr.len(), 1, "{tr:?}");
    assert_eq!(tr[0]["item_id"], "item_1");
    let at = tr[0]["audio_end_ms"].as_u64().unwrap();
    // The truncation point is what the client actually heard, within a few frames in flight.
    assert!(
        at.abs_diff(heard_ms) <= 100,
        "truncated at {at} ms, client heard {heard_ms} ms"
    );
    // Playback stopped at once: nothing of the cancelled reply arrives after the clear.
    let after = audible(&c);
    c.run_until(Duration::from_millis(600), |_| false);
    assert!(
        audible(&c) <= after + 3,
        "reply kept playing after barge-in"
    );
}

#[test]
fn backend_down_at_start_gives_an_error_event_and_the_call_stays_up() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let engine = engine_for(format!("ws://127.0.0.1:{port}/v1/realtime"));
    let mut c = UdpClient::connect(engine.http, speech());
    let got = c.run_until(Duration::from_secs(10), |cl| {
        !cl.events_of("error").is_empty()
    });
    assert!(got, "events {:?}", c.client.event_types());
    let err = c.client.events_of("error")[0].clone();
    assert_eq!(err["error"]["code"], "backend_unavailable", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{err}"
    );
    // The WebRTC session lives on: turns are still detected, audio is dropped and counted.
    assert!(c.run_until(Duration::from_secs(10), |cl| {
        cl.event_types()
            .iter()
            .any(|t| t == "input_audio_buffer.speech_stopped")
    }));
    let m = metrics(&engine);
    assert!(
        metric(&m, "tern_bridge_connect_failures_total", "") >= 1.0,
        "{m}"
    );
    assert!(metric(&m, "tern_bridge_uplink_dropped_total", "disconnected") > 0.0);
    assert_eq!(metric(&m, "tern_sessions", ""), 1.0);
}

#[test]
fn backend_dying_mid_reply_ends_the_reply_and_reconnects() {
    let server = RealtimeServer::start(Mode::DieMidReply, 3000);
    let engine = engine_for(server.url());
    let mut c = UdpClient::connect(engine.http, speech());
    let done = c.run_until(Duration::from_secs(20), |cl| {
        !cl.events_of("error").is_empty()
            && cl
                .event_types()
                .iter()
                .any(|t| t == "output_audio_buffer.stopped")
    });
    assert!(done, "events {:?}", c.client.event_types());
    let err = c.client.events_of("error")[0].clone();
    assert_eq!(err["error"]["code"], "backend_unavailable", "{err}");
    // Only the audio sent before the backend died was played (500 ms).
    let n = audible(&c);
    assert!(
        (20..=30).contains(&n),
        "about 25 frames before the drop, got {n}"
    );
    // Tern reconnects and opens a fresh backend session; the next turn is answered.
    assert!(c.run_until(Duration::from_secs(5), |_| {
        server.seen.connections.load(Ordering::SeqCst) >= 2
            && server.seen.of_type("session.update").len() >= 2
    }));
    let before = c.client.events_of("output_audio_buffer.stopped").len();
    c.client.speak(speech());
    let again = c.run_until(Duration::from_secs(20), |cl| {
        cl.events_of("output_audio_buffer.stopped").len() > before
    });
    assert!(again, "second turn answered after the reconnect");
    assert!(audible(&c) >= n + 140, "full 3 s second reply heard");
}

#[test]
fn slow_backend_is_held_back_not_buffered() {
    let server = RealtimeServer::start(Mode::Slow, 20_000);
    let engine = engine_for(server.url());
    let mut c = UdpClient::connect(engine.http, speech());
    // The backend reads 10 messages/s while Tern sends 50 frames/s: Tern's send queue fills and
    // the excess is dropped and counted, never queued without bound.
    c.run_until(Duration::from_secs(6), |_| false);
    let m = metrics(&engine);
    let dropped = metric(&m, "tern_bridge_uplink_dropped_total", "backpressure");
    assert!(dropped > 50.0, "uplink drops counted: {dropped}\n{m}");
    assert_eq!(metric(&m, "tern_sessions", ""), 1.0);
    assert!(c.client.connected_at.is_some());
}

#[test]
fn fast_backend_is_paced_to_real_time() {
    // The server streams a 20 s reply as fast as the socket takes it.
    let server = RealtimeServer::start(Mode::Normal, 20_000);
    let engine = engine_for(server.url());
    let mut c = UdpClient::connect(engine.http, speech());
    assert!(c.run_until(Duration::from_secs(20), |cl| cl.audible_frames() >= 100));
    let sent = server.seen.deltas_sent.load(Ordering::SeqCst);
    // 2 s heard; Tern holds at most about a second queued plus small socket buffers, so most of
    // the 200 deltas (100 ms each) are still waiting at the server.
    eprintln!("deltas taken after 2 s played: {sent}");
    assert!(
        sent < 100,
        "{sent} of 200 deltas taken while 2 s were played"
    );
    let m = metrics(&engine);
    assert_eq!(metric(&m, "tern_bridge_downlink_dropped_total", ""), 0.0);
}

#[test]
fn a_short_burst_over_the_reply_does_not_interrupt_it() {
    let server = RealtimeServer::start(Mode::Normal, 8000);
    let engine = engine_with(server.url(), |c| c.shard.session.barge_in_min_ms = 600);
    let mut c = UdpClient::connect(engine.http, speech());
    assert!(c.run_until(Duration::from_secs(20), |cl| cl.audible_frames() >= 40));
    // 300 ms of speech from the middle of the fixture: a backchannel, not a barge-in.
    let s = speech();
    c.client.speak(s[24_000..31_200].to_vec());
    c.run_until(Duration::from_millis(2000), |_| false);
    let m = metrics(&engine);
    assert_eq!(metric(&m, "tern_barge_ins_total", "rejected"), 1.0, "{m}");
    assert_eq!(metric(&m, "tern_barge_ins_total", "interrupted"), 0.0);
    assert!(
        !c.has("output_audio_buffer.cleared"),
        "{:?}",
        c.client.event_types()
    );
    assert!(server.seen.of_type("response.cancel").is_empty());
    // The agent never saw the burst as a turn.
    assert_eq!(server.seen.of_type("input_audio_buffer.commit").len(), 1);
}
