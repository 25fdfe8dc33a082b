//! The `oai-events` data channel: server events we send and client events we accept, in the shapes
//! of OpenAI's Realtime API. Events are control traffic (a few per turn), so they are built with
//! serde_json; audio never goes through here.

use serde_json::{json, Map, Value};

use super::session_object;

use super::turn::detector::ServerVadSettings;
use super::turn::latency::{TurnLatency, STAGES};
use super::turn::semantic::Eagerness;

/// Builds server events with increasing `event_id`s.
#[derive(Debug, Default)]
pub struct EventWriter {
    next_id: u64,
}

impl EventWriter {
    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("event_{:08}", self.next_id)
    }

    fn event(&mut self, kind: &str, mut body: Value) -> String {
        if let Value::Object(m) = &mut body {
            m.insert("type".into(), Value::from(kind));
            m.insert("event_id".into(), Value::from(self.id()));
        }
        body.to_string()
    }

    pub fn session_created(
        &mut self,
        session_id: &str,
        turn: Option<ServerVadSettings>,
        rate: u32,
        app: &Map<String, Value>,
    ) -> String {
        let body = json!({ "session": session_object::effective(session_id, turn, rate, app) });
        self.event("session.created", body)
    }

    pub fn session_updated(
        &mut self,
        session_id: &str,
        turn: Option<ServerVadSettings>,
        rate: u32,
        app: &Map<String, Value>,
    ) -> String {
        let body = json!({ "session": session_object::effective(session_id, turn, rate, app) });
        self.event("session.updated", body)
    }

    pub fn speech_started(&mut self, audio_start_ms: u64, item_id: &str) -> String {
        self.event(
            "input_audio_buffer.speech_started",
            json!({ "audio_start_ms": audio_start_ms, "item_id": item_id }),
        )
    }

    pub fn speech_stopped(&mut self, audio_end_ms: u64, item_id: &str) -> String {
        self.event(
            "input_audio_buffer.speech_stopped",
            json!({ "audio_end_ms": audio_end_ms, "item_id": item_id }),
        )
    }

    pub fn timeout_triggered(
        &mut self,
        audio_start_ms: u64,
        audio_end_ms: u64,
        item_id: &str,
    ) -> String {
        self.event(
            "input_audio_buffer.timeout_triggered",
            json!({ "audio_start_ms": audio_start_ms, "audio_end_ms": audio_end_ms, "item_id": item_id }),
        )
    }

    pub fn committed(&mut self, item_id: &str, previous: Option<&str>) -> String {
        self.event(
            "input_audio_buffer.committed",
            json!({ "item_id": item_id, "previous_item_id": previous }),
        )
    }

    pub fn output_started(&mut self, response_id: &str) -> String {
        self.event(
            "output_audio_buffer.started",
            json!({ "response_id": response_id }),
        )
    }

    pub fn output_stopped(&mut self, response_id: &str) -> String {
        self.event(
            "output_audio_buffer.stopped",
            json!({ "response_id": response_id }),
        )
    }

    pub fn output_cleared(&mut self, response_id: &str) -> String {
        self.event(
            "output_audio_buffer.cleared",
            json!({ "response_id": response_id }),
        )
    }

    /// `tern.turn.latency`: a turn's breakdown on the server's clock, in microseconds (integers, so
    /// the stages sum exactly to `total_us`). Namespaced: OpenAI's clients ignore unknown types.
    pub fn turn_latency(&mut self, l: &TurnLatency, item_id: &str, response_id: &str) -> String {
        let us = l.stages.map(|d| d.as_micros() as u64);
        let stages: Map<String, Value> = STAGES
            .iter()
            .zip(us)
            .map(|(name, v)| (name.to_string(), Value::from(v)))
            .collect();
        self.event(
            "tern.turn.latency",
            json!({
                "item_id": item_id,
                "response_id": response_id,
                "end_rule": l.rule.label(),
                "stages_us": stages,
                // The sum of the whole microseconds above, so the figures add up exactly.
                "total_us": us.iter().sum::<u64>(),
            }),
        )
    }

    /// An event with no fields besides `type` and `event_id`.
    pub fn event_simple(&mut self, kind: &str) -> String {
        self.event(kind, json!({}))
    }

    pub fn error(&mut self, kind: &str, code: &str, message: &str) -> String {
        self.event(
            "error",
            json!({ "error": { "type": kind, "code": code, "message": message } }),
        )
    }
}

/// A client event we act on; anything else goes to the agent untouched.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// `session.update`: turn detection (`Some(None)` turns detection off) and the app's other
    /// fields (for the agent; see `session_object`).
    SessionUpdate {
        turn_detection: Option<Option<ServerVadSettings>>,
        app: Map<String, Value>,
    },
    Commit,
    Clear,
    ResponseCancel,
    OutputClear,
    Other {
        kind: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event is not a JSON object: {0}")]
    NotJson(String),
    #[error("event has no string field \"type\"")]
    NoType,
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl ClientEvent {
    /// Parses a client event; `base` fills the settings a partial `session.update` leaves out.
    pub fn parse(data: &[u8], base: ServerVadSettings) -> Result<Self, EventError> {
        let v: Value =
            serde_json::from_slice(data).map_err(|e| EventError::NotJson(e.to_string()))?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .ok_or(EventError::NoType)?;
        Ok(match kind {
            "session.update" => {
                let session = v.get("session");
                // GA shape first, then the beta shape.
                let td = session
                    .and_then(|s| s.pointer("/audio/input/turn_detection"))
                    .or_else(|| session.and_then(|s| s.get("turn_detection")));
                let turn_detection = match td {
                    None => None,
                    Some(Value::Null) => Some(None),
                    Some(t) => Some(Some(parse_turn_detection(t, base)?)),
                };
                let app = match session {
                    None | Some(Value::Null) => Map::new(),
                    Some(s) => session_object::app_fields(s)?,
                };
                // Checked here so that a bad value is refused before anything changes.
                session_object::noise_reduction(&app)?;
                ClientEvent::SessionUpdate {
                    turn_detection,
                    app,
                }
            }
            "input_audio_buffer.commit" => ClientEvent::Commit,
            "input_audio_buffer.clear" => ClientEvent::Clear,
            "response.cancel" => ClientEvent::ResponseCancel,
            "output_audio_buffer.clear" => ClientEvent::OutputClear,
            other => ClientEvent::Other {
                kind: other.to_string(),
            },
        })
    }
}

fn parse_turn_detection(
    t: &Value,
    base: ServerVadSettings,
) -> Result<ServerVadSettings, EventError> {
    let mut s = base;
    if let Some(kind) = t.get("type").and_then(Value::as_str) {
        match kind {
            "server_vad" => s.eagerness = None,
            "semantic_vad" => s.eagerness = Some(s.eagerness.unwrap_or(Eagerness::Auto)),
            _ => {
                return Err(EventError::Invalid {
                    field: "turn_detection.type",
                    reason: format!("unknown type {kind:?}"),
                })
            }
        }
    }
    if let Some(x) = t.get("eagerness") {
        let e = x.as_str().and_then(Eagerness::parse);
        let e = e.ok_or(EventError::Invalid {
            field: "eagerness",
            reason: "must be low, medium, high or auto".into(),
        })?;
        if s.eagerness.is_none() {
            return Err(EventError::Invalid {
                field: "eagerness",
                reason: "applies to type semantic_vad only".into(),
            });
        }
        s.eagerness = Some(e);
    }
    if let Some(x) = t.get("threshold") {
        let f = x.as_f64().filter(|f| (0.0..=1.0).contains(f));
        s.threshold = f.ok_or(EventError::Invalid {
            field: "threshold",
            reason: "must be a number in 0..1".into(),
        })? as f32;
    }
    let ms = |name: &'static str, max: u64| -> Result<Option<u32>, EventError> {
        match t.get(name) {
            None => Ok(None),
            Some(x) => x
                .as_u64()
                .filter(|v| *v <= max)
                .map(|v| Some(v as u32))
                .ok_or(EventError::Invalid {
                    field: name,
                    reason: format!("must be an integer in 0..={max}"),
                }),
        }
    };
    if let Some(v) = ms("prefix_padding_ms", 5_000)? {
        s.prefix_padding_ms = v;
    }
    if let Some(v) = ms("silence_duration_ms", 10_000)? {
        s.silence_duration_ms = v.max(20);
    }
    match t.get("idle_timeout_ms") {
        None => {}
        Some(Value::Null) => s.idle_timeout_ms = None,
        Some(x) => {
            let v = x.as_u64().filter(|v| (5_000..=30_000).contains(v));
            s.idle_timeout_ms = Some(v.ok_or(EventError::Invalid {
                field: "idle_timeout_ms",
                reason: "must be null or an integer in 5000..=30000".into(),
            })? as u32);
        }
    }
    for (name, slot) in [
        ("create_response", &mut s.create_response),
        ("interrupt_response", &mut s.interrupt_response),
    ] {
        if let Some(x) = t.get(name) {
            *slot = x.as_bool().ok_or(EventError::Invalid {
                field: name,
                reason: "must be true or false".into(),
            })?;
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_latency_figures_add_up_exactly() {
        use crate::core::turn::latency::EndRule;
        use std::time::Duration;
        let l = TurnLatency {
            rule: EndRule::Prosody,
            response: 4,
            // Sub-microsecond parts that whole microseconds would round differently one by one
            // than summed.
            stages: [
                Duration::from_nanos(544_165_600),
                Duration::from_nanos(700),
                Duration::from_nanos(3_890_900),
                Duration::from_nanos(999),
            ],
        };
        let e: Value =
            serde_json::from_str(&EventWriter::default().turn_latency(&l, "item_1", "resp_4"))
                .unwrap();
        let sum: u64 = STAGES
            .iter()
            .map(|s| e["stages_us"][s].as_u64().unwrap())
            .sum();
        assert_eq!(e["total_us"].as_u64(), Some(sum));
        assert_eq!(e["type"], "tern.turn.latency");
        assert_eq!(e["end_rule"], "prosody");
    }

    #[test]
    fn server_events_have_type_and_id() {
        let mut w = EventWriter::default();
        let e: Value = serde_json::from_str(&w.speech_started(700, "item_1")).unwrap();
        assert_eq!(e["type"], "input_audio_buffer.speech_started");
        assert_eq!(e["audio_start_ms"], 700);
        let e2: Value = serde_json::from_str(&w.output_stopped("resp_1")).unwrap();
        assert_ne!(e["event_id"], e2["event_id"]);
    }

    #[test]
    fn session_update_both_shapes() {
        let base = ServerVadSettings::default();
        let ga = br#"{"type":"session.update","session":{"audio":{"input":{"turn_detection":{"type":"server_vad","silence_duration_ms":300}}}}}"#;
        let beta = br#"{"type":"session.update","session":{"turn_detection":{"threshold":0.7}}}"#;
        let off = br#"{"type":"session.update","session":{"turn_detection":null}}"#;
        assert_eq!(
            ClientEvent::parse(ga, base).unwrap(),
            ClientEvent::SessionUpdate {
                turn_detection: Some(Some(ServerVadSettings {
                    silence_duration_ms: 300,
                    ..base
                })),
                app: Map::new(),
            }
        );
        assert_eq!(
            ClientEvent::parse(beta, base).unwrap(),
            ClientEvent::SessionUpdate {
                turn_detection: Some(Some(ServerVadSettings {
                    threshold: 0.7,
                    ..base
                })),
                app: Map::new(),
            }
        );
        assert_eq!(
            ClientEvent::parse(off, base).unwrap(),
            ClientEvent::SessionUpdate {
                turn_detection: Some(None),
                app: Map::new(),
            }
        );
    }

    #[test]
    fn server_vad_response_settings() {
        let base = ServerVadSettings::default();
        let ev = br#"{"type":"session.update","session":{"turn_detection":{"type":"server_vad","idle_timeout_ms":6000,"create_response":false,"interrupt_response":false}}}"#;
        let Ok(ClientEvent::SessionUpdate {
            turn_detection: Some(Some(s)),
            ..
        }) = ClientEvent::parse(ev, base)
        else {
            panic!("parsed");
        };
        assert_eq!(s.idle_timeout_ms, Some(6000));
        assert!(!s.create_response && !s.interrupt_response);
        let bad =
            br#"{"type":"session.update","session":{"turn_detection":{"idle_timeout_ms":100}}}"#;
        assert!(ClientEvent::parse(bad, base).is_err());
        let bad =
            br#"{"type":"session.update","session":{"turn_detection":{"create_response":"yes"}}}"#;
        assert!(ClientEvent::parse(bad, base).is_err());
    }

    /// The turn settings a session.update event carries (panics if it carries none).
    fn updated_turn(ev: &[u8], base: ServerVadSettings) -> ServerVadSettings {
        match ClientEvent::parse(ev, base) {
            Ok(ClientEvent::SessionUpdate {
                turn_detection: Some(Some(s)),
                ..
            }) => s,
            other => panic!("not a turn update: {other:?}"),
        }
    }

    #[test]
    fn semantic_vad_with_eagerness() {
        let base = ServerVadSettings::default();
        let ev = br#"{"type":"session.update","session":{"audio":{"input":{"turn_detection":{"type":"semantic_vad","eagerness":"high"}}}}}"#;
        let s = updated_turn(ev, base);
        assert_eq!(s.eagerness, Some(Eagerness::High));
        let json: Value = serde_json::from_str(&EventWriter::default().session_updated(
            "c",
            Some(s),
            24_000,
            &Map::new(),
        ))
        .unwrap();
        let td = &json["session"]["audio"]["input"]["turn_detection"];
        assert_eq!(td["type"], "semantic_vad");
        assert_eq!(td["eagerness"], "high");
        // Without an eagerness semantic_vad is auto; switching back drops it.
        let auto =
            br#"{"type":"session.update","session":{"turn_detection":{"type":"semantic_vad"}}}"#;
        let a = updated_turn(auto, base);
        assert_eq!(a.eagerness, Some(Eagerness::Auto));
        let back =
            br#"{"type":"session.update","session":{"turn_detection":{"type":"server_vad"}}}"#;
        assert_eq!(updated_turn(back, a).eagerness, None);
        let bad = br#"{"type":"session.update","session":{"turn_detection":{"type":"semantic_vad","eagerness":"eager"}}}"#;
        assert!(ClientEvent::parse(bad, base).is_err());
        let bad = br#"{"type":"session.update","session":{"turn_detection":{"type":"server_vad","eagerness":"low"}}}"#;
        assert!(ClientEvent::parse(bad, base).is_err());
    }

    #[test]
    fn bad_events_are_errors() {
        let base = ServerVadSettings::default();
        assert!(matches!(
            ClientEvent::parse(b"\xff", base),
            Err(EventError::NotJson(_))
        ));
        assert_eq!(ClientEvent::parse(b"{}", base), Err(EventError::NoType));
        let bad = br#"{"type":"session.update","session":{"turn_detection":{"threshold":7}}}"#;
        assert!(matches!(
            ClientEvent::parse(bad, base),
            Err(EventError::Invalid {
                field: "threshold",
                ..
            })
        ));
        assert_eq!(
            ClientEvent::parse(br#"{"type":"response.create"}"#, base).unwrap(),
            ClientEvent::Other {
                kind: "response.create".into()
            }
        );
    }
}
