//! The uplink after str0m: reorder and decode (`UplinkPath`), noise suppression, the frame to the
//! agent, the echo guard and the voice decision, inline (earshot) or answered by the worker
//! (Silero), handed to the conversation one frame at a time, in order.

use std::collections::VecDeque;
use std::time::Instant;

use super::super::media::decoder::FrameOrigin;
use super::super::media::denoise::Denoiser;
use super::super::media::frame::PcmFrame;
use super::super::media::uplink::{UplinkPath, UplinkStats};
use super::super::output::{Outputs, ShardEvent};
use super::super::ring_msg::UplinkMsg;
use super::super::turn::latency::SPEECH_FLOOR_DBFS;
use super::super::turn::vad::{EarshotVad, FrameVad};
use super::conversation::VoiceFrame;
use super::Session;

/// Frames of a worker-side VAD awaiting an answer before the oldest is taken as silence (1 s).
const MAX_PENDING_VAD: usize = 50;

/// Where a session's voice probabilities come from.
pub(super) enum VadPath {
    /// Computed on the media core as each frame arrives (earshot). The detector (about 9 KiB with
    /// its buffers) is made with the first frame: a session that never sends audio holds none.
    Inline(Option<FrameVad>),
    /// Computed on the worker (`--vad silero`); frames wait here, in order, for their answer.
    Remote(VecDeque<PendingVad>),
}

impl VadPath {
    pub fn remote() -> Self {
        VadPath::Remote(VecDeque::new())
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct PendingVad {
    frame: VoiceFrame,
    /// `None` until the worker answers.
    probability: Option<f32>,
}

impl Session {
    /// Runs one packet (or, with `None`, an expired gap wait) through the reorder buffer and
    /// decoder, and each frame that comes out through the rest of the uplink.
    pub(super) fn feed_uplink(
        &mut self,
        now: Instant,
        packet: Option<(u64, u64, &[u8])>,
        out: &mut Outputs,
    ) {
        let Some(mut up) = self.uplink.take() else {
            return;
        };
        let mut on = |f: &PcmFrame, origin: FrameOrigin, arrived: Instant| {
            out.event(ShardEvent::UplinkFrame {
                origin,
                hold: now.saturating_duration_since(arrived),
            });
            self.on_frame(f, arrived, now, out);
        };
        match packet {
            Some((seq, ts, payload)) => {
                if !up.on_packet(now, seq, ts, payload, &mut on) {
                    out.event(ShardEvent::UplinkLate);
                }
            }
            None => up.poll(now, &mut on),
        }
        self.uplink = Some(up);
    }

    /// The reorder buffer and decoder, made when the first audio packet arrives (the codec is
    /// known then). Not while `feed_uplink` has it out: only called before it.
    pub(super) fn uplink_path(&mut self) -> &mut UplinkPath {
        let (rate, grid) = (self.config.model_rate, self.config.fill_grid);
        self.uplink.get_or_insert_with(|| {
            let mut up = UplinkPath::new(rate);
            up.set_fill_grid(grid);
            Box::new(up)
        })
    }

    /// Uplink repair figures of this session (concealed, FEC-recovered, late, hold times).
    pub fn uplink_stats(&self) -> UplinkStats {
        self.uplink.as_ref().map(|u| u.stats()).unwrap_or_default()
    }

    fn on_frame(
        &mut self,
        frame: &PcmFrame,
        received_at: Instant,
        now: Instant,
        out: &mut Outputs,
    ) {
        // Noise suppression first: the VAD, the turn detector, the echo guard and the model all
        // hear the cleaned frame. Digital silence (DTX fills) has nothing to clean.
        let cleaned;
        let frame = match self.noise_reduction {
            Some(_) if !frame.is_digital_silence() => {
                let rate = self.config.model_rate.hz();
                let d = self
                    .denoiser
                    .get_or_insert_with(|| Box::new(Denoiser::new(rate)));
                let mut f = *frame;
                d.process(&mut f);
                cleaned = f;
                &cleaned
            }
            _ => frame,
        };
        let index = self.frame_index;
        self.frame_index += 1;
        self.stats.frames_in += 1;
        let echo = self.echo.get_or_insert_default();
        echo.on_uplink_frame(frame.samples());
        let is_echo = echo.is_echo();
        let voice = VoiceFrame {
            index,
            probability: 0.0,
            echo: is_echo,
            loud_at: (frame.level_dbfs() >= SPEECH_FLOOR_DBFS).then_some(received_at),
        };
        self.conversation
            .observe(index, frame.samples(), self.config.model_rate.hz());
        let sent = self.agent_started;
        if sent {
            let msg = UplinkMsg::Audio {
                key: self.key,
                index,
                frame: *frame,
                received_at,
                for_turn_model: self.conversation.asks_turn_model(),
            };
            out.for_worker(self.worker, msg);
        }
        let rate = self.config.model_rate;
        match &mut self.vad {
            VadPath::Inline(vad) => {
                let v =
                    vad.get_or_insert_with(|| FrameVad::new(Box::new(EarshotVad::default()), rate));
                // Inserted silence (DTX) goes through the VAD too: its state must see the pause,
                // or the next real frame is judged on the speech before it. After 100 ms of it
                // the detector rests until sound returns (`SILENT_FRAMES_BEFORE_REST`).
                let probability = v.frame_probability(frame);
                self.decide(
                    now,
                    VoiceFrame {
                        probability,
                        ..voice
                    },
                    out,
                );
            }
            VadPath::Remote(q) => {
                // A frame the worker never got has no answer coming: it counts as silence.
                q.push_back(PendingVad {
                    frame: voice,
                    probability: (!sent).then_some(0.0),
                });
                self.drain_vad(now, out);
            }
        }
    }

    /// The worker's ring had no room for frame `index`: it counts as dropped, and as silence for
    /// a VAD that runs on the worker (no answer is coming).
    pub(super) fn on_audio_refused(&mut self, now: Instant, index: u64, out: &mut Outputs) {
        self.stats.uplink_dropped += 1;
        if let VadPath::Remote(q) = &mut self.vad {
            if let Some(f) = q.iter_mut().find(|f| f.frame.index == index) {
                f.probability.get_or_insert(0.0);
            }
        }
        self.drain_vad(now, out);
    }

    /// The worker's VAD answered for frame `index` (`--vad silero`).
    pub(super) fn on_vad(&mut self, now: Instant, index: u64, probability: f32, out: &mut Outputs) {
        if let VadPath::Remote(q) = &mut self.vad {
            if let Some(f) = q.iter_mut().find(|f| f.frame.index == index) {
                f.probability = Some(probability);
            }
        }
        self.drain_vad(now, out);
    }

    /// Decides the frames whose probability is known, in order. A worker that falls more than
    /// `MAX_PENDING_VAD` frames behind has its oldest frames taken as silence.
    fn drain_vad(&mut self, now: Instant, out: &mut Outputs) {
        loop {
            let VadPath::Remote(q) = &mut self.vad else {
                return;
            };
            let overdue = q.len() > MAX_PENDING_VAD;
            let Some(front) = q.front().copied() else {
                return;
            };
            let probability = match (front.probability, overdue) {
                (Some(p), _) => p,
                (None, true) => 0.0,
                (None, false) => return,
            };
            q.pop_front();
            self.decide(
                now,
                VoiceFrame {
                    probability,
                    ..front.frame
                },
                out,
            );
        }
    }

    /// One frame's voice decision to the conversation, and what it decides carried out.
    fn decide(&mut self, now: Instant, frame: VoiceFrame, out: &mut Outputs) {
        let reply_active = self.reply_active();
        let ms = self.audio_ms();
        self.conversation.on_voice(now, frame, reply_active, ms);
        self.run_conversation(now, out);
    }
}
