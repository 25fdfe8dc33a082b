//! Driving str0m: its transmits go to the `SessionIo`, its events become session state (connected,
//! the audio m-line and codec, uplink packets, the events channel).

use std::time::Instant;

use str0m::media::MediaKind;
use str0m::{Event, IceConnectionState, Output};

use super::super::media::codec::AudioCodec;
use super::super::peer_addr::Peer;
use super::super::recording::{Direction, RecordEvent};
use super::super::ring_msg::UplinkMsg;
use super::super::session_limits::EndReason;
use super::{Session, SessionIo, EVENTS_CHANNEL, IDLE_POLL};
use crate::heap::in_dependency;

impl Session {
    /// Polls str0m until it asks for a timeout.
    pub(super) fn drive(&mut self, now: Instant, io: &mut dyn SessionIo) {
        loop {
            let rtc = &mut self.rtc;
            match in_dependency(|| rtc.poll_output()) {
                Ok(Output::Timeout(t)) => {
                    self.rtc_deadline = t.min(now + IDLE_POLL);
                    break;
                }
                Ok(Output::Transmit(t)) => io.transmit(
                    Peer {
                        addr: t.destination,
                        proto: t.proto,
                    },
                    t.source,
                    &t.contents,
                ),
                Ok(Output::Event(e)) => self.on_event(now, e, io),
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

    fn on_event(&mut self, now: Instant, e: Event, io: &mut dyn SessionIo) {
        match e {
            Event::Connected => self.on_connected(now, io),
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.end_reason = Some(if self.connected {
                    EndReason::IceDisconnected
                } else {
                    EndReason::setup_failure(self.ice_checked)
                });
                self.close(io);
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
                        if let Some(up) = self.uplink.as_mut() {
                            up.set_codec(codec);
                        }
                    }
                }
                let seq = **d.seq_range.start();
                let ts = codec.to_48k(d.time.numer());
                self.record_packet(now, Direction::Received, ts, codec, &d.data, io);
                self.feed_uplink(now, Some((seq, ts, &d.data)), io);
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
                self.on_client_event(now, &d.data, io)
            }
            Event::ChannelClose(id) => self.events.closed(id),
            _ => {}
        }
    }

    /// DTLS is up: the agent hears of the session, with the app's session fields.
    fn on_connected(&mut self, now: Instant, io: &mut dyn SessionIo) {
        self.connected = true;
        io.connected(now.saturating_duration_since(self.offered_at));
        if let Some(format) = self.config.record {
            io.record(self.tag, now, RecordEvent::Open { format });
        }
        let msg = UplinkMsg::Start {
            key: self.key,
            tag: self.tag,
            rate_hz: self.config.model_rate.hz(),
        };
        self.agent_started = io.to_agent(self.worker, msg);
        if !self.config.app.is_empty() {
            let app = self.config.app.clone();
            self.forward_app_session(&app, io);
        }
        let ms = self.audio_ms();
        self.conversation.start(ms);
        self.run_conversation(now, io);
    }
}
