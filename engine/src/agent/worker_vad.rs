//! The voice detector of `--vad silero`, on the inference worker: too slow for a media core, so
//! the shard sends each uplink frame here (it does anyway, for the agent), this runs the session's
//! detector and sends the probability back through the downlink ring, where the session's turn
//! detector picks it up in frame order.

use std::collections::HashMap;

use super::AgentOutput;
use crate::core::media::frame::ModelRate;
use crate::core::ring_msg::{DownlinkMsg, UplinkMsg};
use crate::core::session_id::SessionKey;
use crate::core::turn::vad::{FrameVad, VadBackend};

pub struct WorkerVad {
    backend: VadBackend,
    streams: HashMap<SessionKey, Option<FrameVad>>,
}

impl WorkerVad {
    /// `None` when the backend runs on the media core instead.
    pub fn new(backend: VadBackend) -> Option<Self> {
        backend.runs_on_worker().then(|| WorkerVad {
            backend,
            streams: HashMap::new(),
        })
    }

    /// Sees every uplink message before the agent does.
    pub fn on_message(&mut self, msg: &UplinkMsg, out: &mut dyn AgentOutput) {
        match msg {
            UplinkMsg::Start { key, rate_hz, .. } => {
                let rate = ModelRate::from_hz(*rate_hz).unwrap_or(ModelRate::Hz16000);
                let vad = match self.backend.detector() {
                    Ok(d) => Some(FrameVad::new(d, rate)),
                    Err(e) => {
                        tracing::error!(
                            "voice detector unavailable, the session hears silence: {e}"
                        );
                        None
                    }
                };
                self.streams.insert(*key, vad);
            }
            UplinkMsg::Audio {
                key, index, frame, ..
            } => {
                let probability = match self.streams.get_mut(key) {
                    Some(Some(v)) => v.frame_probability(frame),
                    _ => 0.0,
                };
                // A full ring drops the answer; the session then takes the frame as silence.
                let _ = out.send(DownlinkMsg::Vad {
                    key: *key,
                    index: *index,
                    probability,
                });
            }
            UplinkMsg::End { key } => {
                self.streams.remove(key);
            }
            _ => {}
        }
    }
}

#[cfg(all(test, feature = "silero"))]
mod tests {
    use super::*;
    use crate::core::media::frame::PcmFrame;
    use crate::core::session_id::SessionId;
    use std::time::Instant;

    #[test]
    fn answers_every_frame_in_order_and_hears_speech() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
        let (_, pcm) = tern_testkit::peer::load_wav(&format!("{dir}hello-24k.wav"));
        let key = SessionKey {
            shard: 0,
            slot: 1,
            generation: 1,
        };
        let mut w = WorkerVad::new(VadBackend::Silero).expect("runs on the worker");
        assert!(WorkerVad::new(VadBackend::Earshot).is_none());
        let mut out = Vec::<DownlinkMsg>::new();
        let tag = SessionId {
            node: 0,
            shard: 0,
            slot: 1,
            generation: 1,
            secret: 7,
        };
        w.on_message(
            &UplinkMsg::Start {
                key,
                tag,
                rate_hz: 24_000,
            },
            &mut out,
        );
        for (i, c) in pcm.chunks_exact(480).enumerate() {
            let msg = UplinkMsg::Audio {
                key,
                index: i as u64,
                frame: PcmFrame::from_slice(c),
                received_at: Instant::now(),
                for_turn_model: false,
            };
            w.on_message(&msg, &mut out);
        }
        let probs: Vec<(u64, f32)> = out
            .iter()
            .filter_map(|m| match m {
                DownlinkMsg::Vad {
                    index, probability, ..
                } => Some((*index, *probability)),
                _ => None,
            })
            .collect();
        assert_eq!(probs.len(), pcm.len() / 480);
        assert!(probs.iter().enumerate().all(|(i, (n, _))| *n == i as u64));
        assert!(probs.iter().any(|(_, p)| *p > 0.9), "speech heard");
        w.on_message(&UplinkMsg::End { key }, &mut out);
        assert!(w.streams.is_empty());
    }
}
