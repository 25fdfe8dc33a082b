//! The false-barge-in guard: while the agent talks, a detected start of speech interrupts the
//! reply only once `min_ms` of voiced audio has followed it. Shorter bursts (a cough, a
//! backchannel, a click of echo leaking through the client) end before that and are dropped
//! together with their turn events, so the reply goes on and the agent never sees them.

use super::detector::TurnEvent;
use crate::core::media::frame::FRAME_MS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Forward the event as usual.
    Pass(TurnEvent),
    /// Held: a possible barge-in is being confirmed.
    Hold,
    /// A held start of speech ended too soon: drop it and this stop (a rejected barge-in).
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Sustained speech over the reply: interrupt it, then forward the held start.
    BargeIn(TurnEvent),
    /// The reply ended while the start was held: forward it, nothing to interrupt.
    Plain(TurnEvent),
}

#[derive(Debug, Clone)]
pub struct BargeInGuard {
    min_ms: u32,
    held: Option<(TurnEvent, u32)>,
}

impl BargeInGuard {
    pub fn new(min_ms: u32) -> Self {
        BargeInGuard { min_ms, held: None }
    }

    pub fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// A turn event from the detector; `agent_talking`: reply audio is playing or queued.
    pub fn on_turn(&mut self, ev: TurnEvent, agent_talking: bool) -> Gate {
        match ev {
            TurnEvent::SpeechStarted { .. } if agent_talking && self.min_ms > 0 => {
                self.held = Some((ev, 0));
                Gate::Hold
            }
            TurnEvent::SpeechStopped { .. } if self.held.take().is_some() => Gate::Rejected,
            _ => Gate::Pass(ev),
        }
    }

    /// One 20 ms frame; `voiced` by the turn detector's threshold.
    pub fn on_frame(&mut self, voiced: bool, agent_talking: bool) -> Option<Release> {
        let (start, ms) = self.held.as_mut()?;
        let start = *start;
        if !agent_talking {
            self.held = None;
            return Some(Release::Plain(start));
        }
        if voiced {
            *ms += FRAME_MS as u32;
        }
        if *ms >= self.min_ms {
            self.held = None;
            return Some(Release::BargeIn(start));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: TurnEvent = TurnEvent::SpeechStarted {
        audio_start_ms: 1000,
    };
    const STOP: TurnEvent = TurnEvent::SpeechStopped { audio_end_ms: 1800 };

    #[test]
    fn sustained_speech_over_a_reply_interrupts_after_min_ms() {
        let mut g = BargeInGuard::new(200);
        assert_eq!(g.on_turn(START, true), Gate::Hold);
        for _ in 0..9 {
            assert_eq!(g.on_frame(true, true), None);
        }
        // Unvoiced frames do not count.
        assert_eq!(g.on_frame(false, true), None);
        assert_eq!(g.on_frame(true, true), Some(Release::BargeIn(START)));
        assert!(!g.is_holding());
    }

    #[test]
    fn a_short_burst_is_rejected_with_its_turn() {
        let mut g = BargeInGuard::new(200);
        assert_eq!(g.on_turn(START, true), Gate::Hold);
        for _ in 0..5 {
            assert_eq!(g.on_frame(true, true), None);
        }
        assert_eq!(g.on_turn(STOP, true), Gate::Rejected);
        // The next stop (of a real turn later) passes.
        assert_eq!(g.on_turn(STOP, false), Gate::Pass(STOP));
    }

    #[test]
    fn no_reply_no_guard_and_a_reply_ending_releases_the_start() {
        let mut g = BargeInGuard::new(200);
        assert_eq!(g.on_turn(START, false), Gate::Pass(START));
        assert_eq!(g.on_turn(START, true), Gate::Hold);
        assert_eq!(g.on_frame(true, false), Some(Release::Plain(START)));
        let mut off = BargeInGuard::new(0);
        assert_eq!(off.on_turn(START, true), Gate::Pass(START));
    }
}
