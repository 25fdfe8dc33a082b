//! The `pcm-ws` protocol (`--agent pcm-ws=<url>`): a small protocol for custom pipelines.
//!
//! Tern -> worker: binary messages are 20 ms frames of the user's audio (PCM16 little-endian,
//! mono, at `sample_rate`); text messages are JSON: `{"type":"start","call_id","sample_rate",
//! "frame_ms"}` once per connection, `{"type":"speech_started","audio_start_ms"}`,
//! `{"type":"speech_stopped","audio_end_ms","respond"}` (the turn ended: reply now unless
//! `respond` is false),
//! `{"type":"interrupt","played_ms"}` (the user barged in after hearing `played_ms` of the reply),
//! `{"type":"client_event","event":{...}}` (data-channel events from the client).
//!
//! Worker -> Tern: binary messages are reply audio in the same format, any length (Tern cuts and
//! paces it); text: `{"type":"response.done"}` ends the reply, `{"type":"clear"}` stops playback,
//! `{"type":"event","event":{...}}` goes to the client's data channel,
//! `{"type":"error","message"}` becomes an `error` event. After an `interrupt`, reply audio is
//! ignored until the worker acknowledges with `response.done` or `clear`.

use serde_json::{json, Value};

use super::protocol::{
    error_event, pcm_from_le_bytes, pcm_to_le_bytes, BackendEvent, Protocol, WsMsg,
};
use crate::core::media::frame::{PcmFrame, FRAME_MS};
use crate::core::turn::detector::TurnEvent;

#[derive(Debug, Default)]
pub struct PcmWsProtocol {
    /// Waiting for the worker to acknowledge an interrupt.
    interrupted: bool,
}

impl Protocol for PcmWsProtocol {
    fn on_connect(&mut self, call_id: &str, rate_hz: u32, out: &mut Vec<WsMsg>) {
        self.interrupted = false;
        let v = json!({"type": "start", "call_id": call_id, "sample_rate": rate_hz, "frame_ms": FRAME_MS});
        out.push(WsMsg::Text(v.to_string()));
    }

    fn on_audio(&mut self, frame: &PcmFrame, out: &mut Vec<WsMsg>) {
        let mut bytes = Vec::with_capacity(frame.len() * 2);
        pcm_to_le_bytes(frame.samples(), &mut bytes);
        out.push(WsMsg::Binary(bytes));
    }

    fn on_turn(&mut self, event: TurnEvent, respond: bool, out: &mut Vec<WsMsg>) {
        let v = match event {
            TurnEvent::SpeechStarted { audio_start_ms } => {
                json!({"type": "speech_started", "audio_start_ms": audio_start_ms})
            }
            TurnEvent::SpeechStopped { audio_end_ms } => {
                json!({"type": "speech_stopped", "audio_end_ms": audio_end_ms, "respond": respond})
            }
        };
        out.push(WsMsg::Text(v.to_string()));
    }

    fn on_interrupt(&mut self, played_ms: u64, out: &mut Vec<WsMsg>) {
        self.interrupted = true;
        let v = json!({"type": "interrupt", "played_ms": played_ms});
        out.push(WsMsg::Text(v.to_string()));
    }

    fn on_client_event(&mut self, json: &str, out: &mut Vec<WsMsg>) {
        if let Ok(event) = serde_json::from_str::<Value>(json) {
            let v = json!({"type": "client_event", "event": event});
            out.push(WsMsg::Text(v.to_string()));
        }
    }

    fn on_backend(&mut self, msg: WsMsg, events: &mut Vec<BackendEvent>) {
        let text = match msg {
            WsMsg::Binary(bytes) => {
                if !self.interrupted {
                    let pcm = pcm_from_le_bytes(&bytes);
                    events.push(BackendEvent::Audio { reply: None, pcm });
                }
                return;
            }
            WsMsg::Text(t) => t,
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            events.push(BackendEvent::Error(error_event(
                "backend_protocol",
                "worker sent a text message that is not JSON",
            )));
            return;
        };
        match v["type"].as_str().unwrap_or("") {
            "response.done" => {
                if !std::mem::take(&mut self.interrupted) {
                    events.push(BackendEvent::ReplyDone);
                }
            }
            "clear" => {
                self.interrupted = false;
                events.push(BackendEvent::Clear);
            }
            "event" if v["event"].is_object() => {
                events.push(BackendEvent::Event(v["event"].to_string()))
            }
            "error" => {
                let msg = v["message"].as_str().unwrap_or("worker error");
                events.push(BackendEvent::Error(error_event("backend_error", msg)));
            }
            other => events.push(BackendEvent::Error(error_event(
                "backend_protocol",
                &format!("unknown worker message type {other:?}"),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_turns_and_interrupt_acknowledgement() {
        let mut p = PcmWsProtocol::default();
        let mut out = Vec::new();
        p.on_connect("rtc_9", 16_000, &mut out);
        p.on_audio(&PcmFrame::silence(320), &mut out);
        p.on_turn(
            TurnEvent::SpeechStopped { audio_end_ms: 1200 },
            true,
            &mut out,
        );
        assert!(matches!(&out[0], WsMsg::Text(t) if t.contains("\"sample_rate\":16000")));
        assert!(matches!(&out[1], WsMsg::Binary(b) if b.len() == 640));
        assert!(matches!(&out[2], WsMsg::Text(t) if t.contains("speech_stopped")));

        let mut ev = Vec::new();
        p.on_backend(WsMsg::Binary(vec![1, 0, 255, 255]), &mut ev);
        assert_eq!(
            ev,
            vec![BackendEvent::Audio {
                reply: None,
                pcm: vec![1, -1]
            }]
        );

        // After an interrupt, audio still in flight is ignored until the worker acknowledges.
        out.clear();
        ev.clear();
        p.on_interrupt(420, &mut out);
        assert!(matches!(&out[0], WsMsg::Text(t) if t.contains("\"played_ms\":420")));
        p.on_backend(WsMsg::Binary(vec![1, 0]), &mut ev);
        p.on_backend(WsMsg::Text(r#"{"type":"response.done"}"#.into()), &mut ev);
        assert!(ev.is_empty(), "{ev:?}");
        p.on_backend(WsMsg::Binary(vec![1, 0]), &mut ev);
        p.on_backend(WsMsg::Text(r#"{"type":"response.done"}"#.into()), &mut ev);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1], BackendEvent::ReplyDone);
    }

    #[test]
    fn events_errors_and_bad_messages() {
        let mut p = PcmWsProtocol::default();
        let mut ev = Vec::new();
        p.on_backend(
            WsMsg::Text(r#"{"type":"event","event":{"type":"x.y"}}"#.into()),
            &mut ev,
        );
        p.on_backend(
            WsMsg::Text(r#"{"type":"error","message":"tts down"}"#.into()),
            &mut ev,
        );
        p.on_backend(WsMsg::Text("{".into()), &mut ev);
        p.on_backend(WsMsg::Text(r#"{"type":"nope"}"#.into()), &mut ev);
        assert_eq!(ev[0], BackendEvent::Event(r#"{"type":"x.y"}"#.into()));
        assert!(matches!(&ev[1], BackendEvent::Error(t) if t.contains("tts down")));
        assert!(matches!(&ev[2], BackendEvent::Error(t) if t.contains("backend_protocol")));
        assert!(matches!(&ev[3], BackendEvent::Error(t) if t.contains("nope")));
    }
}
