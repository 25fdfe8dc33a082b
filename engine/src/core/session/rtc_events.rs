//! Driving str0m: its transmits go to the `SessionIo`, its events become session state (connected,
//! the audio m-line and codec, uplink packets, the events channel).

use std::time::Instant;

use aws_lc_rs::hmac;
use str0m::ice::StunMessage;
use str0m::media::MediaKind;
use str0m::{Event, IceConnectionState, Output};

use super::super::media::codec::AudioCodec;
use super::super::output::{Outputs, ShardEvent};
use super::super::peer_addr::Peer;
use super::super::recording::{Direction, RecordEvent};
use super::super::ring_msg::UplinkMsg;
use super::super::session_limits::EndReason;
use super::{Session, EVENTS_CHANNEL, IDLE_POLL};
use crate::heap::in_dependency;

impl Session {
    /// Polls str0m until it asks for a timeout.
    pub(super) fn drive(&mut self, now: Instant, out: &mut Outputs) {
        loop {
            let rtc = &mut self.rtc;
            match in_dependency(|| rtc.poll_output()) {
                Ok(Output::Timeout(t)) => {
                    self.rtc_deadline = t.min(now + IDLE_POLL);
                    break;
                }
                Ok(Output::Transmit(t)) => out.transmit(
                    Peer {
                        addr: t.destination,
                        proto: t.proto,
                    },
                    t.source,
                    &t.contents,
                ),
                Ok(Output::Event(e)) => self.on_event(now, e, out),
                Err(e) => {
                    tracing::debug!(call = %self.tag, "rtc error: {e}");
                    self.note_failure(&e.to_string());
                    self.rtc_deadline = now + IDLE_POLL;
                    break;
                }
            }
        }
        self.note_events_sent(now);
    }

    fn on_event(&mut self, now: Instant, e: Event, out: &mut Outputs) {
        match e {
            Event::Connected => self.on_connected(now, out),
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.end_reason = Some(if self.connected {
                    EndReason::IceDisconnected
                } else {
                    EndReason::setup_failure(self.ice_checked)
                });
                self.close(out);
            }
            Event::MediaAdded(m) if m.kind == MediaKind::Audio => {
                self.audio = Some((m.mid, None));
            }
            Event::MediaData(d) => {
                let Some(codec) = AudioCodec::from_str0m(d.params.spec().codec) else {
                    return;
                };
                if let Some((mid, sending)) = &mut self.audio {
                    if *mid == d.mid && sending.is_none_or(|(pt, _)| pt != d.pt) {
                        *sending = Some((d.pt, codec));
                        self.encoder.set_codec(codec);
                        self.uplink_path().set_codec(codec);
                    }
                }
                let seq = **d.seq_range.start();
                let ts = codec.to_48k(d.time.numer());
                self.record_packet(now, Direction::Received, ts, codec, &d.data, out);
                self.feed_uplink(now, Some((seq, ts, &d.data)), out);
            }
            Event::ChannelOpen(id, label) if label == EVENTS_CHANNEL => {
                let ev = self.writer.session_created(
                    &self.tag.call_id(),
                    self.conversation.turn_detection(),
                    self.config.model_rate.hz(),
                    &self.config.app,
                );
                self.events.open(id, ev, &mut self.rtc);
            }
            Event::ChannelData(d) if Some(d.id) == self.events.id() => {
                self.on_client_event(now, &d.data, out)
            }
            Event::ChannelClose(id) => self.events.closed(id),
            _ => {}
        }
    }

    /// DTLS is up: the agent hears of the session, with the app's session fields.
    fn on_connected(&mut self, now: Instant, out: &mut Outputs) {
        self.connected = true;
        out.event(ShardEvent::Connected {
            setup: now.saturating_duration_since(self.offered_at),
        });
        if let Some(format) = self.config.record {
            out.record(self.tag, now, RecordEvent::Open { format });
        }
        let msg = UplinkMsg::Start {
            key: self.key,
            tag: self.tag,
            rate_hz: self.config.model_rate.hz(),
        };
        out.for_worker(self.worker, msg);
        self.agent_started = true;
        if !self.config.app.is_empty() {
            let app = self.config.app.clone();
            self.forward_app_session(&app, out);
        }
        let ms = self.audio_ms();
        self.conversation.start(ms);
        self.run_conversation(now, out);
    }
}

impl Session {
    /// Whether a STUN binding request carries a MESSAGE-INTEGRITY made with our ICE password
    /// (RFC 8445 §7.3). The shard checks it itself rather than inferring it from str0m's answer.
    pub fn authenticates(&self, request: &[u8]) -> bool {
        match in_dependency(|| StunMessage::parse(request)) {
            Ok(msg) => msg.verify(self.ice_pass.as_bytes(), hmac_sha1),
            Err(_) => false,
        }
    }
}

fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let mut ctx = hmac::Context::with_key(&key);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 20];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}
