//! The `echo` agent: records each user turn (from `audio_start_ms`, prefix padding included, to
//! `audio_end_ms`) and plays it back when the turn ends, streamed at real time with a small lead,
//! as a text-to-speech model would. Speech during a reply interrupts it (barge-in).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::{Agent, AgentOutput};
use crate::core::media::frame::{PcmFrame, FRAME_MS};
use crate::core::ring_msg::{DownlinkMsg, UplinkMsg};
use crate::core::session_id::SessionKey;
use crate::core::turn::detector::TurnEvent;

/// Frames of history kept for the prefix padding (1 s).
const HISTORY_FRAMES: usize = 50;
/// Longest turn recorded (30 s); the rest is cut.
const MAX_TURN_FRAMES: usize = 1500;
/// How far ahead of real time reply frames are pushed (100 ms).
const LEAD_FRAMES: u64 = 5;
const FRAME: Duration = Duration::from_millis(FRAME_MS);

#[derive(Debug, Default)]
struct EchoSession {
    history: VecDeque<(u64, PcmFrame)>,
    recording_from: Option<u64>,
    turn: Vec<PcmFrame>,
    reply: Vec<PcmFrame>,
    reply_sent: usize,
    reply_started: Option<Instant>,
    response: u32,
}

#[derive(Debug, Default)]
pub struct EchoAgent {
    sessions: HashMap<SessionKey, EchoSession>,
    replying: Vec<SessionKey>,
}

impl EchoAgent {
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Stops a reply in progress (barge-in or `response.cancel`) and tells the shard to flush.
    fn stop_reply(&mut self, key: SessionKey, out: &mut dyn AgentOutput) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if s.reply_started.take().is_some() {
            self.replying.retain(|k| *k != key);
            let _ = out.send(DownlinkMsg::Clear { key });
        }
    }
}

impl Agent for EchoAgent {
    fn on_message(&mut self, now: Instant, msg: UplinkMsg, out: &mut dyn AgentOutput) {
        match msg {
            UplinkMsg::Start { key, .. } => {
                self.sessions.insert(key, EchoSession::default());
            }
            UplinkMsg::End { key } => {
                self.sessions.remove(&key);
                self.replying.retain(|k| *k != key);
            }
            UplinkMsg::Audio {
                key, index, frame, ..
            } => {
                let Some(s) = self.sessions.get_mut(&key) else {
                    return;
                };
                if s.history.len() >= HISTORY_FRAMES {
                    s.history.pop_front();
                }
                s.history.push_back((index, frame));
                if s.recording_from.is_some_and(|from| index >= from)
                    && s.turn.len() < MAX_TURN_FRAMES
                {
                    s.turn.push(frame);
                }
            }
            UplinkMsg::Turn {
                key,
                event: TurnEvent::SpeechStarted { audio_start_ms },
                ..
            } => {
                // A new turn starts recording; the reply in progress goes on (the shard decides
                // barge-in and sends Cancel).
                let Some(s) = self.sessions.get_mut(&key) else {
                    return;
                };
                let from = audio_start_ms / FRAME_MS;
                s.recording_from = Some(from);
                s.turn.clear();
                s.turn.extend(
                    s.history
                        .iter()
                        .filter(|(i, _)| *i >= from)
                        .map(|(_, f)| *f),
                );
            }
            UplinkMsg::Turn {
                key,
                event: TurnEvent::SpeechStopped { audio_end_ms },
                respond,
            } => {
                let Some(s) = self.sessions.get_mut(&key) else {
                    return;
                };
                let Some(from) = s.recording_from.take() else {
                    return;
                };
                if !respond {
                    s.turn.clear(); // create_response is off: the turn is heard, not answered
                    return;
                }
                let frames = (audio_end_ms / FRAME_MS).saturating_sub(from) as usize;
                s.turn.truncate(frames);
                std::mem::swap(&mut s.turn, &mut s.reply);
                s.turn.clear();
                s.reply_sent = 0;
                s.reply_started = Some(now);
                s.response += 1;
                if !self.replying.contains(&key) {
                    self.replying.push(key);
                }
            }
            UplinkMsg::Cancel { key, .. } => self.stop_reply(key, out),
            UplinkMsg::ClientEvent { .. } | UplinkMsg::ScoreTurn { .. } => {}
        }
    }

    fn poll(&mut self, now: Instant, out: &mut dyn AgentOutput) -> Option<Instant> {
        let mut i = 0;
        while i < self.replying.len() {
            let key = self.replying[i];
            let Some(s) = self.sessions.get_mut(&key) else {
                self.replying.swap_remove(i);
                continue;
            };
            let Some(started) = s.reply_started else {
                self.replying.swap_remove(i);
                continue;
            };
            let due = (now.saturating_duration_since(started).as_millis() as u64 / FRAME_MS
                + LEAD_FRAMES) as usize;
            let mut blocked = false;
            while s.reply_sent < s.reply.len().min(due) {
                let msg = DownlinkMsg::Audio {
                    key,
                    response: s.response,
                    frame: s.reply[s.reply_sent],
                };
                if out.send(msg).is_err() {
                    blocked = true;
                    break;
                }
                s.reply_sent += 1;
            }
            if !blocked
                && s.reply_sent >= s.reply.len()
                && out
                    .send(DownlinkMsg::ResponseDone {
                        key,
                        response: s.response,
                    })
                    .is_ok()
            {
                s.reply_started = None;
                self.replying.swap_remove(i);
                continue;
            }
            i += 1;
        }
        (!self.replying.is_empty()).then(|| now + FRAME / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_the_turn_at_real_time() {
        let t0 = Instant::now();
        let key = SessionKey {
            shard: 0,
            slot: 1,
            generation: 0,
        };
        let mut a = EchoAgent::default();
        let mut out = Vec::<DownlinkMsg>::new();
        a.on_message(
            t0,
            UplinkMsg::Start {
                key,
                tag: crate::core::session_id::SessionId {
                    node: 0,
                    shard: 0,
                    slot: 1,
                    generation: 0,
                    secret: 1,
                },
                rate_hz: 24000,
            },
            &mut out,
        );
        for i in 0..100u64 {
            let mut f = PcmFrame::silence(480);
            f.samples_mut()[0] = i as i16;
            a.on_message(
                t0,
                UplinkMsg::Audio {
                    key,
                    index: i,
                    frame: f,
                    received_at: t0,
                    for_turn_model: false,
                },
                &mut out,
            );
            if i == 30 {
                a.on_message(
                    t0,
                    UplinkMsg::Turn {
                        key,
                        event: TurnEvent::SpeechStarted {
                            audio_start_ms: 400,
                        },
                        respond: true,
                    },
                    &mut out,
                );
            }
        }
        a.on_message(
            t0,
            UplinkMsg::Turn {
                key,
                event: TurnEvent::SpeechStopped { audio_end_ms: 1600 },
                respond: true,
            },
            &mut out,
        );
        assert_eq!(a.poll(t0, &mut out), Some(t0 + Duration::from_millis(10)));
        assert_eq!(out.len(), LEAD_FRAMES as usize);
        let mut t = t0;
        for _ in 0..200 {
            t += Duration::from_millis(10);
            a.poll(t, &mut out);
        }
        let frames: Vec<i16> = out
            .iter()
            .filter_map(|m| match m {
                DownlinkMsg::Audio { frame, .. } => Some(frame.samples()[0]),
                _ => None,
            })
            .collect();
        assert_eq!(
            frames,
            (20..80).collect::<Vec<i16>>(),
            "frames 400..1600 ms, in order"
        );
        assert!(matches!(
            out.last(),
            Some(DownlinkMsg::ResponseDone { response: 1, .. })
        ));
    }
}
