//! The OpenAI Realtime WebSocket protocol (`--agent realtime-ws=<url>`).
//!
//! Tern keeps turn detection: the backend session is opened with `turn_detection: null`, the user's
//! audio is appended as base64 PCM16 at 24 kHz, and each end of turn becomes
//! `input_audio_buffer.commit` + `response.create`. A barge-in becomes `response.cancel` plus
//! `conversation.item.truncate` at the played-out position. Reply audio arrives as
//! `response.output_audio.delta` (GA) or `response.audio.delta` (beta); every other server event
//! except `session.*` passes through to the data channel.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::protocol::{
    error_event, pcm_from_le_bytes, pcm_to_le_bytes, BackendEvent, Protocol, WsMsg,
};
use crate::core::media::frame::PcmFrame;
use crate::core::session_object;
use crate::core::turn::detector::TurnEvent;

/// Client events that Tern itself turns into backend commands (so they are not forwarded twice).
const OWNED_CLIENT_EVENTS: [&str; 4] = [
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "response.cancel",
    "conversation.item.truncate",
];

#[derive(Debug, Default)]
pub struct RealtimeProtocol {
    rate_hz: u32,
    /// The app's session fields so far: sent again whole on every (re)connect, so a backend that
    /// came up late, or a new connection after a failure, gets what the app asked for.
    app: Map<String, Value>,
    /// The assistant item whose audio is playing (for truncation).
    audio_item: Option<String>,
    /// Whether a response is in progress on the backend (for `response.cancel`).
    responding: bool,
    bytes: Vec<u8>,
}

impl RealtimeProtocol {
    fn send(out: &mut Vec<WsMsg>, v: Value) {
        out.push(WsMsg::Text(v.to_string()));
    }

    /// A backend `session.update` with the app's fields and what Tern fixes: PCM16 at the model
    /// rate both ways, and no server turn detection (Tern decides turns).
    fn session_update(&self, mut app: Map<String, Value>) -> Value {
        session_object::overlay_tern(&mut app, self.rate_hz, Value::Null);
        // Tern suppresses noise before the audio reaches the backend (`--noise-reduction`).
        session_object::merge(&mut app, session_object::noise_reduction_patch(None));
        json!({ "type": "session.update", "session": app })
    }
}

impl Protocol for RealtimeProtocol {
    fn on_connect(&mut self, _call_id: &str, rate_hz: u32, out: &mut Vec<WsMsg>) {
        self.audio_item = None;
        self.responding = false;
        self.rate_hz = rate_hz;
        Self::send(out, self.session_update(self.app.clone()));
    }

    fn on_audio(&mut self, frame: &PcmFrame, out: &mut Vec<WsMsg>) {
        self.bytes.clear();
        pcm_to_le_bytes(frame.samples(), &mut self.bytes);
        let audio = B64.encode(&self.bytes);
        out.push(WsMsg::Text(format!(
            r#"{{"type":"input_audio_buffer.append","audio":"{audio}"}}"#
        )));
    }

    fn on_turn(&mut self, event: TurnEvent, respond: bool, out: &mut Vec<WsMsg>) {
        if let TurnEvent::SpeechStopped { .. } = event {
            Self::send(out, json!({ "type": "input_audio_buffer.commit" }));
            if respond {
                Self::send(out, json!({ "type": "response.create" }));
                self.responding = true;
            }
        }
    }

    fn on_interrupt(&mut self, played_ms: u64, out: &mut Vec<WsMsg>) {
        if self.responding {
            Self::send(out, json!({ "type": "response.cancel" }));
            self.responding = false;
        }
        if let Some(item) = self.audio_item.take() {
            Self::send(
                out,
                json!({
                    "type": "conversation.item.truncate",
                    "item_id": item,
                    "content_index": 0,
                    "audio_end_ms": played_ms
                }),
            );
        }
    }

    fn on_client_event(&mut self, json: &str, out: &mut Vec<WsMsg>) {
        let v = serde_json::from_str::<Value>(json).ok();
        let kind = v
            .as_ref()
            .and_then(|v| v["type"].as_str().map(String::from));
        match kind.as_deref() {
            Some(k) if OWNED_CLIENT_EVENTS.contains(&k) => {}
            // The session forwards only the app's fields (see `session_object`): add Tern's.
            Some("session.update") => {
                let app = match v.and_then(|mut v| v.get_mut("session").map(Value::take)) {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                session_object::merge(&mut self.app, app.clone());
                Self::send(out, self.session_update(app));
            }
            Some("response.create") => {
                self.responding = true;
                out.push(WsMsg::Text(json.to_string()));
            }
            Some(_) => out.push(WsMsg::Text(json.to_string())),
            None => {}
        }
    }

    fn on_backend(&mut self, msg: WsMsg, events: &mut Vec<BackendEvent>) {
        let WsMsg::Text(text) = msg else {
            return; // the protocol is JSON only
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            events.push(BackendEvent::Error(error_event(
                "backend_protocol",
                "backend sent a message that is not JSON",
            )));
            return;
        };
        let kind = v["type"].as_str().unwrap_or("");
        match kind {
            "response.output_audio.delta" | "response.audio.delta" => {
                let Some(b64) = v["delta"].as_str() else {
                    return;
                };
                let Ok(bytes) = B64.decode(b64) else {
                    events.push(BackendEvent::Error(error_event(
                        "backend_protocol",
                        "audio delta is not base64",
                    )));
                    return;
                };
                if let Some(item) = v["item_id"].as_str() {
                    if self.audio_item.as_deref() != Some(item) {
                        self.audio_item = Some(item.to_string());
                    }
                }
                events.push(BackendEvent::Audio {
                    reply: v["response_id"].as_str().map(String::from),
                    pcm: pcm_from_le_bytes(&bytes),
                });
            }
            "response.done" => {
                self.responding = false;
                events.push(BackendEvent::ReplyDone);
                events.push(BackendEvent::Event(text));
            }
            "error" => events.push(BackendEvent::Error(text)),
            k if k.starts_with("session.") => {}
            "" => {}
            _ => events.push(BackendEvent::Event(text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(out: &[WsMsg]) -> Vec<Value> {
        out.iter()
            .map(|m| match m {
                WsMsg::Text(t) => serde_json::from_str(t).unwrap(),
                WsMsg::Binary(_) => panic!("binary in realtime protocol"),
            })
            .collect()
    }

    #[test]
    fn session_update_turn_commit_and_truncate() {
        let mut p = RealtimeProtocol::default();
        let mut out = Vec::new();
        p.on_connect("rtc_1", 24_000, &mut out);
        let v = texts(&out);
        assert_eq!(v[0]["type"], "session.update");
        assert!(v[0]["session"]["audio"]["input"]["turn_detection"].is_null());
        assert_eq!(v[0]["session"]["audio"]["output"]["format"]["rate"], 24_000);

        out.clear();
        let mut frame = PcmFrame::silence(480);
        frame.samples_mut()[0] = 0x0102;
        p.on_audio(&frame, &mut out);
        let v = texts(&out);
        assert_eq!(v[0]["type"], "input_audio_buffer.append");
        let bytes = B64.decode(v[0]["audio"].as_str().unwrap()).unwrap();
        assert_eq!(bytes.len(), 960);
        assert_eq!(&bytes[..2], &[0x02, 0x01]);

        out.clear();
        p.on_turn(
            TurnEvent::SpeechStopped { audio_end_ms: 900 },
            true,
            &mut out,
        );
        let kinds: Vec<_> = texts(&out).iter().map(|v| v["type"].clone()).collect();
        assert_eq!(kinds, ["input_audio_buffer.commit", "response.create"]);

        let mut ev = Vec::new();
        let delta = json!({"type":"response.output_audio.delta","response_id":"resp_1","item_id":"item_7","delta":B64.encode([1u8,0,2,0])});
        p.on_backend(WsMsg::Text(delta.to_string()), &mut ev);
        assert_eq!(
            ev,
            vec![BackendEvent::Audio {
                reply: Some("resp_1".into()),
                pcm: vec![1, 2]
            }]
        );

        out.clear();
        p.on_interrupt(740, &mut out);
        let v = texts(&out);
        assert_eq!(v[0]["type"], "response.cancel");
        assert_eq!(v[1]["type"], "conversation.item.truncate");
        assert_eq!(v[1]["item_id"], "item_7");
        assert_eq!(v[1]["audio_end_ms"], 740);
    }

    #[test]
    fn app_session_update_reaches_the_backend_with_terns_formats() {
        let mut p = RealtimeProtocol::default();
        let mut out = Vec::new();
        p.on_connect("rtc_1", 24_000, &mut out);
        out.clear();
        let app = r#"{"type":"session.update","session":{"instructions":"be brief","audio":{"output":{"voice":"marin"}},"tools":[{"type":"function","name":"f"}]}}"#;
        p.on_client_event(app, &mut out);
        let v = texts(&out);
        assert_eq!(v.len(), 1);
        let s = &v[0]["session"];
        assert_eq!(s["instructions"], "be brief");
        assert_eq!(s["audio"]["output"]["voice"], "marin");
        assert_eq!(s["tools"][0]["name"], "f");
        assert_eq!(s["type"], "realtime");
        assert!(
            s["audio"]["input"]["turn_detection"].is_null(),
            "Tern keeps turns"
        );
        assert_eq!(s["audio"]["input"]["format"]["rate"], 24_000);
        // A reconnect sends everything the app set so far.
        out.clear();
        let kind = r#"{"type":"session.update","session":{"instructions":"be kind"}}"#;
        p.on_client_event(kind, &mut out);
        out.clear();
        p.on_connect("rtc_1", 24_000, &mut out);
        let s = &texts(&out)[0]["session"];
        assert_eq!(s["instructions"], "be kind");
        assert_eq!(s["audio"]["output"]["voice"], "marin");
        assert!(s["audio"]["input"]["turn_detection"].is_null());
    }

    #[test]
    fn backend_events_pass_through_except_session_and_audio() {
        let mut p = RealtimeProtocol::default();
        let mut ev = Vec::new();
        for m in [
            r#"{"type":"session.created","session":{}}"#,
            r#"{"type":"response.output_audio_transcript.delta","delta":"hi"}"#,
            r#"{"type":"response.done","response":{}}"#,
            r#"{"type":"error","error":{"message":"x"}}"#,
            "not json",
        ] {
            p.on_backend(WsMsg::Text(m.into()), &mut ev);
        }
        assert!(matches!(&ev[0], BackendEvent::Event(t) if t.contains("transcript")));
        assert_eq!(ev[1], BackendEvent::ReplyDone);
        assert!(matches!(&ev[2], BackendEvent::Event(t) if t.contains("response.done")));
        assert!(matches!(&ev[3], BackendEvent::Error(t) if t.contains("\"x\"")));
        assert!(matches!(&ev[4], BackendEvent::Error(t) if t.contains("backend_protocol")));
        assert_eq!(ev.len(), 5);
    }

    #[test]
    fn client_events_forwarded_unless_tern_owns_them() {
        let mut p = RealtimeProtocol::default();
        let mut out = Vec::new();
        p.on_client_event(r#"{"type":"conversation.item.create","item":{}}"#, &mut out);
        p.on_client_event(
            r#"{"type":"input_audio_buffer.append","audio":""}"#,
            &mut out,
        );
        p.on_client_event("garbage", &mut out);
        assert_eq!(out.len(), 1);
    }
}
