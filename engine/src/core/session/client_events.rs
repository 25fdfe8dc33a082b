//! What the client says on the events channel: each event is admitted by size and rate, then
//! parsed; Tern acts on the session, buffer and response events it owns and forwards the rest to
//! the agent.

use std::time::Instant;

use super::super::events::ClientEvent;
use super::super::output::{Outputs, ShardEvent};
use super::super::ring_msg::UplinkMsg;
use super::super::session_limits::EventRejected;
use super::super::session_object;
use super::Session;

impl Session {
    pub(super) fn on_client_event(&mut self, now: Instant, data: &[u8], out: &mut Outputs) {
        if self.config.fault_injection && data == br#"{"type":"tern.test.panic"}"# {
            panic!("injected fault in session {}", self.tag);
        }
        if let Err(r) = self.event_gate.admit(now, data.len(), &self.config.limits) {
            out.event(ShardEvent::EventRejected(r));
            self.refuse_event(r, data.len());
            return;
        }
        let ms = self.audio_ms();
        match ClientEvent::parse(data, self.conversation.settings()) {
            Ok(ClientEvent::SessionUpdate {
                turn_detection,
                app,
            }) => {
                if let Some(td) = turn_detection {
                    self.conversation.set_turn_detection(td, ms);
                    self.run_conversation(now, out);
                }
                if let Ok(Some(nr)) = session_object::noise_reduction(&app) {
                    self.noise_reduction = nr;
                    if nr.is_none() {
                        self.denoiser = None;
                    }
                }
                if !app.is_empty() {
                    self.forward_app_session(&app, out);
                    session_object::merge(&mut self.config.app, app);
                }
                let e = self.writer.session_updated(
                    &self.tag.call_id(),
                    self.conversation.turn_detection(),
                    self.config.model_rate.hz(),
                    &self.config.app,
                );
                self.send_event(e);
            }
            Ok(ClientEvent::Commit) => {
                self.conversation.commit(now, ms);
                self.run_conversation(now, out);
            }
            Ok(ClientEvent::Clear) => {
                self.conversation.clear(ms);
                self.run_conversation(now, out);
            }
            Ok(ClientEvent::ResponseCancel) | Ok(ClientEvent::OutputClear) => self.interrupt(out),
            Ok(ClientEvent::Other { .. }) => {
                if let Ok(s) = std::str::from_utf8(data) {
                    let msg = UplinkMsg::ClientEvent {
                        key: self.key,
                        json: s.into(),
                    };
                    self.tell_agent(msg, out);
                }
            }
            Err(e) => {
                let ev =
                    self.writer
                        .error("invalid_request_error", "invalid_event", &e.to_string());
                self.send_event(ev);
            }
        }
    }

    /// Tells the client why its event was refused. Rate-limit errors are themselves limited: the
    /// first and every 50th.
    fn refuse_event(&mut self, r: EventRejected, len: usize) {
        let limits = &self.config.limits;
        let (code, msg) = match r {
            EventRejected::TooLarge => (
                "event_too_large",
                format!(
                    "event of {len} bytes is over the {} byte limit",
                    limits.max_event_bytes
                ),
            ),
            EventRejected::RateLimited => {
                self.stats.events_rate_limited += 1;
                if self.stats.events_rate_limited % 50 != 1 {
                    return;
                }
                (
                    "rate_limit_exceeded",
                    format!("more than {} events per second", limits.events_per_sec),
                )
            }
        };
        let e = self.writer.error("invalid_request_error", code, &msg);
        self.send_event(e);
    }

    /// Hands the app's session fields to the agent as a `session.update` (a bridge passes them to
    /// its backend model; Tern's own fields were taken out by `session_object::app_fields`).
    pub(super) fn forward_app_session(
        &mut self,
        app: &serde_json::Map<String, serde_json::Value>,
        out: &mut Outputs,
    ) {
        if !self.agent_started {
            return;
        }
        let json = serde_json::json!({ "type": "session.update", "session": app }).to_string();
        let msg = UplinkMsg::ClientEvent {
            key: self.key,
            json: json.into(),
        };
        self.tell_agent(msg, out);
    }
}
