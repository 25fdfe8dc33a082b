//! A complete in-process agent to copy: it answers every user turn with a two-note chime whose
//! length follows the turn's, and tells the client on the data channel how long the turn was.
//! It shows the whole `Agent` contract: per-session state from `Start`/`End`, reacting to turn
//! events, streaming reply frames at real time, `ResponseDone`, `Cancel` on barge-in, and events.
//!
//! Run: `cargo run --release --example chime_agent`, then open http://127.0.0.1:8080/ and talk.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_engine::agent::{Agent, AgentFactory, AgentKind, AgentOutput};
use tern_engine::core::media::frame::{PcmFrame, FRAME_MS};
use tern_engine::core::ring_msg::{DownlinkMsg, UplinkMsg};
use tern_engine::core::session_id::SessionKey;
use tern_engine::core::turn::detector::TurnEvent;
use tern_engine::shell::runtime::{self, EngineConfig};

const FRAME: Duration = Duration::from_millis(FRAME_MS);
/// Frames pushed ahead of real time (the shard paces playback exactly).
const LEAD: u64 = 3;

#[derive(Default)]
struct Chime {
    rate_hz: u32,
    turn_start_ms: u64,
    /// The reply being played: (response id, frames total, frames sent, started at).
    reply: Option<(u32, u64, u64, Instant)>,
    response: u32,
}

#[derive(Default)]
pub struct ChimeAgent {
    sessions: HashMap<SessionKey, Chime>,
}

impl ChimeAgent {
    /// Frame `n` of the chime: 660 Hz, then 880 Hz, with a soft fade at each end.
    fn frame(rate_hz: u32, n: u64, total: u64) -> PcmFrame {
        let len = rate_hz as usize / 50;
        let mut f = PcmFrame::silence(len);
        let hz = if n < total / 2 { 660.0 } else { 880.0 };
        let edge = (n.min(total - 1 - n) as f32 / 5.0).min(1.0);
        for (i, s) in f.samples_mut().iter_mut().enumerate() {
            let t = (n as usize * len + i) as f32 / rate_hz as f32;
            *s = (6000.0 * edge * (2.0 * std::f32::consts::PI * hz * t).sin()) as i16;
        }
        f
    }
}

impl Agent for ChimeAgent {
    fn on_message(&mut self, now: Instant, msg: UplinkMsg, out: &mut dyn AgentOutput) {
        match msg {
            UplinkMsg::Start { key, rate_hz, .. } => {
                self.sessions.insert(
                    key,
                    Chime {
                        rate_hz,
                        ..Default::default()
                    },
                );
            }
            UplinkMsg::End { key } => {
                self.sessions.remove(&key);
            }
            UplinkMsg::Turn { key, event, .. } => {
                let Some(s) = self.sessions.get_mut(&key) else {
                    return;
                };
                match event {
                    TurnEvent::SpeechStarted { audio_start_ms } => s.turn_start_ms = audio_start_ms,
                    TurnEvent::SpeechStopped { audio_end_ms } => {
                        let turn_ms = audio_end_ms.saturating_sub(s.turn_start_ms);
                        let json = format!(r#"{{"type":"chime.turn","turn_ms":{turn_ms}}}"#);
                        let _ = out.send(DownlinkMsg::Event {
                            key,
                            json: json.into(),
                        });
                        // Half a second of chime per two seconds of speech, at least 300 ms.
                        let frames = (turn_ms / 4 / FRAME_MS).max(15);
                        s.response += 1;
                        s.reply = Some((s.response, frames, 0, now));
                    }
                }
            }
            // The shard already stopped playback; just stop producing.
            UplinkMsg::Cancel { key, .. } => {
                if let Some(s) = self.sessions.get_mut(&key) {
                    s.reply = None;
                }
            }
            UplinkMsg::Audio { .. }
            | UplinkMsg::ClientEvent { .. }
            | UplinkMsg::ScoreTurn { .. } => {}
        }
    }

    fn poll(&mut self, now: Instant, out: &mut dyn AgentOutput) -> Option<Instant> {
        let mut busy = false;
        for (&key, s) in self.sessions.iter_mut() {
            let Some((response, total, sent, started)) = s.reply.as_mut() else {
                continue;
            };
            let due = (now.saturating_duration_since(*started).as_millis() as u64 / FRAME_MS
                + LEAD)
                .min(*total);
            while *sent < due {
                let frame = Self::frame(s.rate_hz, *sent, *total);
                let msg = DownlinkMsg::Audio {
                    key,
                    response: *response,
                    frame,
                };
                if out.send(msg).is_err() {
                    break; // ring full: retry on the next poll
                }
                *sent += 1;
            }
            if *sent == *total {
                if out
                    .send(DownlinkMsg::ResponseDone {
                        key,
                        response: *response,
                    })
                    .is_ok()
                {
                    s.reply = None;
                }
            } else {
                busy = true;
            }
        }
        busy.then(|| now + FRAME / 2)
    }
}

fn main() -> anyhow::Result<()> {
    let factory = AgentFactory(Arc::new(|_worker| {
        Ok(Box::new(ChimeAgent::default()) as Box<dyn Agent>)
    }));
    let cfg = EngineConfig::new(
        vec![0],
        "127.0.0.1:8080".parse()?,
        "127.0.0.1:3478".parse()?,
        AgentKind::Custom(factory),
    );
    let engine = runtime::start(cfg)?;
    eprintln!("chime agent: open http://{}/ and talk", engine.http);
    engine.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_engine::core::session_id::SessionId;

    struct Sink(Vec<DownlinkMsg>);
    impl AgentOutput for Sink {
        fn send(&mut self, msg: DownlinkMsg) -> Result<(), DownlinkMsg> {
            self.0.push(msg);
            Ok(())
        }
    }

    #[test]
    fn answers_a_turn_with_a_paced_chime() {
        let mut a = ChimeAgent::default();
        let mut out = Sink(Vec::new());
        let key = SessionKey {
            shard: 0,
            slot: 1,
            generation: 1,
        };
        let t0 = Instant::now();
        let tag = SessionId {
            node: 0,
            shard: 0,
            slot: 1,
            generation: 1,
            secret: 7,
        };
        a.on_message(
            t0,
            UplinkMsg::Start {
                key,
                tag,
                rate_hz: 24_000,
            },
            &mut out,
        );
        let turn = |event| UplinkMsg::Turn {
            key,
            event,
            respond: true,
        };
        a.on_message(
            t0,
            turn(TurnEvent::SpeechStarted {
                audio_start_ms: 1000,
            }),
            &mut out,
        );
        a.on_message(
            t0,
            turn(TurnEvent::SpeechStopped { audio_end_ms: 3000 }),
            &mut out,
        );
        // 2 s turn: 500 ms chime = 25 frames, streamed over half a second.
        a.poll(t0, &mut out);
        let frames = |o: &Sink| {
            o.0.iter()
                .filter(|m| matches!(m, DownlinkMsg::Audio { .. }))
                .count()
        };
        assert_eq!(frames(&out), LEAD as usize, "only the lead is sent at once");
        a.poll(t0 + Duration::from_millis(600), &mut out);
        assert_eq!(frames(&out), 25);
        assert!(matches!(
            out.0.last(),
            Some(DownlinkMsg::ResponseDone { response: 1, .. })
        ));
        assert!(
            matches!(&out.0[0], DownlinkMsg::Event { json, .. } if json.contains("\"turn_ms\":2000"))
        );
    }
}
