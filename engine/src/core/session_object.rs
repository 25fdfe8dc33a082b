//! The session object in OpenAI's Realtime shape: what `client_secrets` returns and what
//! `session.created` / `session.updated` carry.
//!
//! Tern owns the audio formats and turn detection; everything else the app asks for
//! (instructions, voice, model, tools, transcription, ...) belongs to the agent behind Tern. Those
//! "app fields" are kept per session, merged on every `session.update`, forwarded to a bridged
//! backend, and shown back in the effective session so an app sees what it set.

use serde_json::{json, Map, Value};

use super::events::EventError;
use super::media::denoise::NoiseReduction;
use super::recording::RecordFormat;
use super::turn::detector::ServerVadSettings;

/// Fields of a session (GA and beta shapes) that Tern decides itself.
const TERN_OWNED_TOP: [&str; 4] = [
    // Tern's own settings (`tern.record`), set by servers, never forwarded to a model.
    "tern",
    "turn_detection",
    "input_audio_format",
    "output_audio_format",
];

/// The app fields of a `session` object from a token, a form or a `session.update`: the session
/// minus what Tern owns. A session type other than `realtime` is refused: Tern has no
/// transcription-only sessions.
pub fn app_fields(session: &Value) -> Result<Map<String, Value>, EventError> {
    let Value::Object(s) = session else {
        return Err(EventError::Invalid {
            field: "session",
            reason: "must be a JSON object".into(),
        });
    };
    match s.get("type") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "realtime" => {}
        Some(Value::String(t)) if t == "transcription" => {
            return Err(EventError::Invalid {
                field: "session.type",
                reason: "transcription sessions are not supported by this server; use \"realtime\""
                    .into(),
            })
        }
        Some(other) => {
            return Err(EventError::Invalid {
                field: "session.type",
                reason: format!("unknown session type {other}; use \"realtime\""),
            })
        }
    }
    let mut app = s.clone();
    app.remove("type");
    for k in TERN_OWNED_TOP {
        app.remove(k);
    }
    if let Some(Value::Object(audio)) = app.get_mut("audio") {
        for dir in ["input", "output"] {
            if let Some(Value::Object(d)) = audio.get_mut(dir) {
                d.remove("format");
                d.remove("turn_detection");
                if d.is_empty() {
                    audio.remove(dir);
                }
            }
        }
        if audio.is_empty() {
            app.remove("audio");
        }
    }
    Ok(app)
}

/// `session.tern.record` (`true`, `false`, `"ogg"`, `"wav"`): whether to record this call.
/// `node_format`: `--record-format` when this node records (`--record-dir`), else `None`, and a
/// session that asks to be recorded is refused. `Ok(None)`: the session does not say.
pub fn record_request(
    session: &Value,
    node_format: Option<RecordFormat>,
) -> Result<Option<Option<RecordFormat>>, EventError> {
    let invalid = |reason: String| EventError::Invalid {
        field: "session.tern.record",
        reason,
    };
    let Some(tern) = session.get("tern") else {
        return Ok(None);
    };
    let Some(asked) = tern.get("record") else {
        return match tern {
            Value::Object(_) | Value::Null => Ok(None),
            _ => Err(EventError::Invalid {
                field: "session.tern",
                reason: "must be an object".into(),
            }),
        };
    };
    let format = match asked {
        Value::Null | Value::Bool(false) => return Ok(Some(None)),
        Value::Bool(true) => None,
        Value::String(s) => Some(RecordFormat::parse(s).ok_or_else(|| {
            invalid(format!(
                "{s:?} is not a format; use true, false, \"ogg\" or \"wav\""
            ))
        })?),
        other => {
            return Err(invalid(format!(
                "must be true, false, \"ogg\" or \"wav\", not {other}"
            )))
        }
    };
    let Some(node) = node_format else {
        return Err(invalid(
            "this server does not record calls (start it with --record-dir)".into(),
        ));
    };
    Ok(Some(Some(format.unwrap_or(node))))
}

/// Merges `update` into `into`: objects field by field, anything else replaced (as OpenAI applies
/// a partial `session.update`).
pub fn merge(into: &mut Map<String, Value>, update: Map<String, Value>) {
    for (k, v) in update {
        match (into.get_mut(&k), v) {
            (Some(Value::Object(old)), Value::Object(new)) => merge(old, new),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// `audio.input.noise_reduction` (GA) or `input_audio_noise_reduction` (beta) of a session or of
/// its app fields: `None` when absent, `Some(None)` when null (off), else the kind.
pub fn noise_reduction(
    s: &Map<String, Value>,
) -> Result<Option<Option<NoiseReduction>>, EventError> {
    let v = s
        .get("audio")
        .and_then(|a| a.get("input"))
        .and_then(|i| i.get("noise_reduction"))
        .or_else(|| s.get("input_audio_noise_reduction"));
    match v {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(o) => o
            .get("type")
            .and_then(Value::as_str)
            .and_then(NoiseReduction::parse)
            .map(|k| Some(Some(k)))
            .ok_or(EventError::Invalid {
                field: "audio.input.noise_reduction",
                reason: "must be null or {\"type\": \"near_field\" | \"far_field\"}".into(),
            }),
    }
}

/// `{"audio": {"input": {"noise_reduction": ...}}}` for `kind` (`None`: null), to merge into a
/// session.
pub fn noise_reduction_patch(kind: Option<NoiseReduction>) -> Map<String, Value> {
    let v = kind.map_or(Value::Null, |k| json!({ "type": k.label() }));
    match json!({ "audio": { "input": { "noise_reduction": v } } }) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Lays what Tern owns over a session: type `realtime`, PCM16 at `rate` both ways, and
/// `turn_detection` (Tern's effective settings for a client; `null` for a bridged backend, whose
/// turns Tern decides).
pub fn overlay_tern(session: &mut Map<String, Value>, rate: u32, turn_detection: Value) {
    let format = json!({ "type": "audio/pcm", "rate": rate });
    let owned = json!({
        "type": "realtime",
        "audio": {
            "input": { "format": format, "turn_detection": turn_detection },
            "output": { "format": format }
        }
    });
    if let Value::Object(m) = owned {
        merge(session, m);
    }
}

/// The effective session: OpenAI's defaults, the app's fields over them, Tern's formats and turn
/// detection over both.
pub fn effective(
    id: &str,
    turn: Option<ServerVadSettings>,
    rate: u32,
    app: &Map<String, Value>,
) -> Value {
    let mut s = match json!({
        "type": "realtime",
        "object": "realtime.session",
        "id": id,
        "model": "tern",
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": null,
        "prompt": null,
        "include": null,
        "expires_at": 0,
        "audio": {
            "input": { "transcription": null, "noise_reduction": null },
            "output": { "voice": "alloy", "speed": 1.0 }
        }
    }) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    merge(&mut s, app.clone());
    overlay_tern(&mut s, rate, turn_detection_json(turn));
    s.insert("object".into(), "realtime.session".into());
    s.insert("id".into(), id.into());
    Value::Object(s)
}

fn turn_detection_json(turn: Option<ServerVadSettings>) -> Value {
    match turn {
        None => Value::Null,
        Some(t) => match t.eagerness {
            Some(e) => json!({
                "type": "semantic_vad",
                "eagerness": e.label(),
                "create_response": t.create_response,
                "interrupt_response": t.interrupt_response,
            }),
            None => json!({
                "type": "server_vad",
                "threshold": t.threshold,
                "prefix_padding_ms": t.prefix_padding_ms,
                "silence_duration_ms": t.silence_duration_ms,
                "idle_timeout_ms": t.idle_timeout_ms,
                "create_response": t.create_response,
                "interrupt_response": t.interrupt_response,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_reduction_reads_both_shapes_and_refuses_unknown_kinds() {
        let m = |v: Value| match v {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let nr = |v: Value| noise_reduction(&m(v));
        assert_eq!(nr(json!({})), Ok(None));
        assert_eq!(
            nr(json!({"audio": {"input": {"noise_reduction": null}}})),
            Ok(Some(None))
        );
        assert_eq!(
            nr(json!({"audio": {"input": {"noise_reduction": {"type": "far_field"}}}})),
            Ok(Some(Some(NoiseReduction::FarField)))
        );
        assert_eq!(
            nr(json!({"input_audio_noise_reduction": {"type": "near_field"}})),
            Ok(Some(Some(NoiseReduction::NearField)))
        );
        assert!(nr(json!({"audio": {"input": {"noise_reduction": {"type": "loud"}}}})).is_err());
        assert!(nr(json!({"audio": {"input": {"noise_reduction": "near_field"}}})).is_err());
    }

    #[test]
    fn app_fields_drop_what_tern_owns_and_keep_the_rest() {
        let s = json!({
            "type": "realtime", "instructions": "be brief", "model": "gpt-realtime",
            "turn_detection": {"type": "server_vad"},
            "audio": {"input": {"format": {"type": "audio/pcmu"}, "transcription": {"model": "whisper-1"},
                                 "turn_detection": null},
                      "output": {"voice": "marin", "format": {"type": "audio/pcm"}}}
        });
        let app = app_fields(&s).unwrap();
        assert_eq!(
            Value::Object(app),
            json!({"instructions": "be brief", "model": "gpt-realtime",
                   "audio": {"input": {"transcription": {"model": "whisper-1"}}, "output": {"voice": "marin"}}})
        );
    }

    #[test]
    fn transcription_and_unknown_types_are_refused_with_a_reason() {
        let e = app_fields(&json!({"type": "transcription"})).unwrap_err();
        assert!(
            e.to_string()
                .contains("transcription sessions are not supported"),
            "{e}"
        );
        assert!(app_fields(&json!({"type": 3})).is_err());
        assert!(app_fields(&json!("realtime")).is_err());
    }

    #[test]
    fn effective_session_layers_defaults_app_and_tern() {
        let mut app =
            app_fields(&json!({"instructions": "hi", "audio": {"output": {"voice": "marin"}}}))
                .unwrap();
        merge(
            &mut app,
            app_fields(&json!({"audio": {"output": {"speed": 1.2}}})).unwrap(),
        );
        let s = effective("rtc_x", Some(ServerVadSettings::default()), 24_000, &app);
        assert_eq!(s["object"], "realtime.session");
        assert_eq!(s["id"], "rtc_x");
        assert_eq!(s["instructions"], "hi");
        assert_eq!(s["audio"]["output"]["voice"], "marin");
        assert_eq!(s["audio"]["output"]["speed"], 1.2);
        assert_eq!(s["audio"]["output"]["format"]["rate"], 24_000);
        assert_eq!(s["audio"]["input"]["turn_detection"]["type"], "server_vad");
        assert_eq!(s["tool_choice"], "auto", "defaults fill what nobody set");
        let off = effective("rtc_x", None, 24_000, &Map::new());
        assert!(off["audio"]["input"]["turn_detection"].is_null());
    }

    #[test]
    fn record_request_is_read_and_checked() {
        let ask = |v: serde_json::Value, node| record_request(&v, node);
        let node = Some(RecordFormat::Ogg);
        assert_eq!(ask(json!({}), node), Ok(None));
        assert_eq!(ask(json!({"tern": {}}), node), Ok(None));
        assert_eq!(
            ask(json!({"tern": {"record": true}}), node),
            Ok(Some(Some(RecordFormat::Ogg)))
        );
        assert_eq!(
            ask(json!({"tern": {"record": "wav"}}), node),
            Ok(Some(Some(RecordFormat::Wav)))
        );
        assert_eq!(
            ask(json!({"tern": {"record": false}}), node),
            Ok(Some(None))
        );
        assert_eq!(
            ask(json!({"tern": {"record": false}}), None),
            Ok(Some(None))
        );
        assert!(ask(json!({"tern": {"record": true}}), None)
            .unwrap_err()
            .to_string()
            .contains("--record-dir"));
        assert!(ask(json!({"tern": {"record": "mp3"}}), node).is_err());
        assert!(ask(json!({"tern": 5}), node).is_err());
        // Never forwarded to the model.
        let app = app_fields(&json!({"tern": {"record": true}, "instructions": "hi"})).unwrap();
        assert!(!app.contains_key("tern"));
    }
}
