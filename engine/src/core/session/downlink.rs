//! The downlink: agent frames wait in the `PlayoutQueue`; each 20 ms tick of the `Pacer` sends one,
//! encoded ahead or now, through one send path to str0m; interrupts and clears empty the queue.

use std::time::Instant;

use str0m::media::MediaTime;
use str0m::Input;

use super::super::media::codec::AudioCodec;
use super::super::media::frame::FRAME_MS;
use super::super::media::playout::PlayoutItem;
use super::super::output::{Outputs, ShardEvent};
use super::super::recording::{Direction, RecordEvent};
use super::super::ring_msg::UplinkMsg;
use super::super::turn::echo_guard::{EchoGuard, ReplyEnvelope};
use super::{item_id, response_id, Session};
use crate::heap::in_dependency;

impl Session {
    /// Sends the reply frame due at this tick, if any.
    pub(super) fn pace(&mut self, now: Instant, out: &mut Outputs) {
        if !self.pacer.is_due(now) {
            return;
        }
        // The frame encoded ahead, else the next one in the queue, encoded now.
        let next = match self.ahead.take() {
            Some((response, envelope)) => Some((response, Some(envelope))),
            None => self.next_frame(),
        };
        let Some((response, envelope)) = next else {
            self.pacer.idle();
            self.drive(now, out);
            return;
        };
        self.start_response(now, response, out);
        let send = self.pacer.on_send(now);
        if let Some(late) = send.late_by {
            out.event(ShardEvent::Paced { late_by: late });
        }
        if let Some(envelope) = envelope {
            self.echo
                .get_or_insert_default()
                .on_reply_envelope(envelope);
            self.write_payload(now, send.rtp_time, send.marker, out);
        }
        self.drive(now, out);
        out.event(ShardEvent::DownlinkSent { taken_at: now });
        self.played_frames += 1;
        self.stats.frames_out += 1;
    }

    /// Takes queue items up to the next frame and encodes it into `payload`; ends of replies on
    /// the way are announced. `None`: the queue is empty. A frame that could not be encoded (not
    /// connected yet, encoder error) keeps its tick but sends nothing (`envelope` is `None`).
    fn next_frame(&mut self) -> Option<(u32, Option<ReplyEnvelope>)> {
        loop {
            match self.playout.pop()? {
                PlayoutItem::End { response } => self.reply_ended(response),
                PlayoutItem::Frame { response, frame } => {
                    let envelope = self
                        .encode(&frame)
                        .then(|| EchoGuard::reply_envelope(frame.samples()));
                    return Some((response, envelope));
                }
            }
        }
    }

    /// Encodes the next queued reply frame now, so that its tick only has to send it. The shard
    /// calls this after it has sent every frame due in a step: a step with many sessions due then
    /// sends all of them before it spends time encoding.
    pub fn encode_ahead(&mut self) {
        if self.ahead.is_some() || self.paused || !self.connected || self.playing.is_none() {
            return;
        }
        let Some((response, frame)) = self.playout.pop_frame() else {
            return;
        };
        if self.encode(&frame) {
            self.ahead = Some((response, EchoGuard::reply_envelope(frame.samples())));
        }
    }

    /// Encodes `frame` into `payload` (reused); false if there is nothing to send.
    fn encode(&mut self, frame: &super::super::media::frame::PcmFrame) -> bool {
        if !self.connected {
            return false;
        }
        self.encoder.encode_into(frame, &mut self.payload).is_ok()
    }

    /// The last frame of `response` has gone out.
    fn reply_ended(&mut self, response: u32) {
        if self.playing == Some(response) {
            self.playing = None;
            let e = self.writer.output_stopped(&response_id(response));
            self.send_event(e);
            let ms = self.audio_ms();
            self.conversation.reply_finished(ms);
        }
    }

    /// The first frame of `response` goes out: `output_audio_buffer.started`, then the turn's
    /// latency breakdown when this reply answers a turn.
    fn start_response(&mut self, now: Instant, response: u32, out: &mut Outputs) {
        if self.playing == Some(response) {
            return;
        }
        self.playing = Some(response);
        self.played_frames = 0;
        let e = self.writer.output_started(&response_id(response));
        self.send_event(e);
        if let Some(l) = self.conversation.timeline.reply_sent(now, response) {
            out.event(ShardEvent::TurnLatency(l));
            let item = item_id(self.conversation.item_seq());
            let e = self.writer.turn_latency(&l, &item, &response_id(response));
            self.send_event(e);
        }
    }

    /// Hands the packet in `payload` to str0m.
    fn write_payload(&mut self, now: Instant, rtp_time: u64, marker: bool, out: &mut Outputs) {
        let Some((mid, Some((pt, codec)))) = self.audio else {
            return;
        };
        if !self.connected {
            return;
        }
        let t = MediaTime::new(codec.from_48k(rtp_time), codec.rtp_frequency());
        let (rtc, payload) = (&mut self.rtc, &self.payload[..]);
        let written = in_dependency(|| {
            rtc.writer(mid)
                .map(|w| w.start_of_talkspurt(marker).write(pt, now, t, payload))
        });
        let Some(written) = written else {
            return;
        };
        if let Err(e) = written {
            tracing::debug!(call = %self.tag, "write: {e}");
        } else {
            self.record_packet(now, Direction::Sent, rtp_time, codec, &self.payload, out);
        }
        // Writes are packetized on the next timeout.
        let rtc = &mut self.rtc;
        if let Err(e) = in_dependency(|| rtc.handle_input(Input::Timeout(now))) {
            tracing::debug!(call = %self.tag, "packetize: {e}");
        }
    }

    /// Hands a packet as received or sent to the recording, if this call records.
    pub(super) fn record_packet(
        &self,
        now: Instant,
        dir: Direction,
        rtp48: u64,
        codec: AudioCodec,
        payload: &[u8],
        out: &mut Outputs,
    ) {
        if self.config.record.is_some() {
            let ev = RecordEvent::Packet {
                dir,
                rtp48,
                codec,
                payload,
            };
            out.record(self.tag, now, ev);
        }
    }

    /// The agent cleared its reply (`output_audio_buffer.clear` on its side).
    pub(super) fn clear_reply(&mut self) {
        self.playout.clear();
        self.ahead = None;
        if let Some(r) = self.playing.take() {
            let ev = self.writer.output_cleared(&response_id(r));
            self.send_event(ev);
        }
        self.pacer.idle();
        self.paused = false;
    }

    /// Stops the reply now: flushes the playout queue, tells the client (`output_audio_buffer.cleared`)
    /// and the agent (`Cancel` with the played-out position).
    pub(super) fn interrupt(&mut self, out: &mut Outputs) {
        let played_ms = if self.playing.is_some() {
            self.played_frames * FRAME_MS
        } else {
            0
        };
        let response = self
            .playing
            .take()
            .or(self.ahead.map(|a| a.0))
            .or(self.playout.front_response());
        self.playout.clear();
        self.ahead = None;
        self.pacer.idle();
        self.paused = false;
        if let Some(r) = response {
            self.cancelled_upto = self.cancelled_upto.max(r);
            let ev = self.writer.output_cleared(&response_id(r));
            self.send_event(ev);
        }
        let msg = UplinkMsg::Cancel {
            key: self.key,
            response,
            played_ms,
        };
        self.tell_agent(msg, out);
    }
}
