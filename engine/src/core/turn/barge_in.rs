//! The false-barge-in guard: while the agent talks, a detected start of speech interrupts the
//! reply only once `min_ms` of voiced audio has followed it. Shorter bursts (a cough, a
//! backchannel, a click of echo leaking through the client) end before that and are dropped
//! together with their turn events, so the reply goes on and the agent never sees them. Frames the
//! echo guard takes for our own reply leaking back do not count; a start heard only as echo is
//! dropped even when the reply ends under it.
//!
//! Backchannels ("mm-hmm", "yeah", "okay") often last longer than `min_ms`. So with a `confirm_ms`
//! set, reaching `min_ms` only pauses the reply (the audio stops at once, nothing is dropped); the
//! interruption is confirmed once the user has spoken `confirm_ms` in all, and the reply resumes
//! where it paused if the user falls silent for `RESUME_SILENCE_MS` before that.

use super::detector::TurnEvent;
use crate::core::media::frame::FRAME_MS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Forward the event as usual.
    Pass(TurnEvent),
    /// Held: a possible barge-in is being confirmed.
    Hold,
    /// A held start of speech ended too soon: drop it and this stop (a rejected barge-in);
    /// `echo`: all of it was the reply's own echo.
    Rejected { echo: bool },
    /// The speech that paused the reply ended before confirmation: resume the reply.
    Resume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Sustained speech over the reply: interrupt it, then forward the held start.
    BargeIn(TurnEvent),
    /// The reply ended while the start was held: forward it, nothing to interrupt.
    Plain(TurnEvent),
    /// The reply ended while the start was held, and all of it was echo: drop it and its turn.
    Echo,
    /// Speech passed `min_ms`: stop the reply's audio now, keep its queue, await confirmation.
    Pause,
    /// The speech that paused the reply stopped short of `confirm_ms` (a backchannel): drop its
    /// turn and play the reply on from where it paused.
    Resume,
}

/// Silence that ends a backchannel while the reply is paused.
pub const RESUME_SILENCE_MS: u32 = 300;

/// What became of speech over a playing reply (counted by the shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BargeInOutcome {
    Interrupted,
    /// Too short for `--barge-in-min-ms` (a cough, a backchannel).
    Rejected,
    /// The reply's own echo.
    Echo,
    /// Paused the reply, then fell silent before `confirm_ms`: the reply resumed.
    Resumed,
}

impl BargeInOutcome {
    pub fn label(self) -> &'static str {
        match self {
            BargeInOutcome::Interrupted => "interrupted",
            BargeInOutcome::Rejected => "rejected",
            BargeInOutcome::Echo => "echo",
            BargeInOutcome::Resumed => "resumed",
        }
    }
}

/// A start of speech being confirmed: voiced ms of the user so far, frames judged echo.
#[derive(Debug, Clone, Copy)]
struct Held {
    start: TurnEvent,
    user_ms: u32,
    echo_frames: u32,
    /// `Some(silent ms)` once the reply is paused.
    paused: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct BargeInGuard {
    min_ms: u32,
    /// 0: interrupt at `min_ms` without pausing first.
    confirm_ms: u32,
    held: Option<Held>,
}

impl BargeInGuard {
    /// Interrupts at `min_ms` of speech.
    pub fn new(min_ms: u32) -> Self {
        Self::with_confirm(min_ms, 0)
    }

    /// Pauses at `min_ms`, interrupts at `confirm_ms` of speech (if above `min_ms`).
    pub fn with_confirm(min_ms: u32, confirm_ms: u32) -> Self {
        BargeInGuard {
            min_ms,
            confirm_ms: if confirm_ms > min_ms { confirm_ms } else { 0 },
            held: None,
        }
    }

    /// The reply is paused awaiting confirmation.
    pub fn is_paused(&self) -> bool {
        self.held.is_some_and(|h| h.paused.is_some())
    }

    pub fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// A turn event from the detector; `agent_talking`: reply audio is playing or queued.
    pub fn on_turn(&mut self, ev: TurnEvent, agent_talking: bool) -> Gate {
        match ev {
            TurnEvent::SpeechStarted { .. } if agent_talking && self.min_ms > 0 => {
                self.held = Some(Held {
                    start: ev,
                    user_ms: 0,
                    echo_frames: 0,
                    paused: None,
                });
                Gate::Hold
            }
            TurnEvent::SpeechStopped { .. } if self.held.is_some() => {
                let echo = self.held_is_echo();
                let paused = self.is_paused();
                self.held = None;
                if paused {
                    Gate::Resume
                } else {
                    Gate::Rejected { echo }
                }
            }
            _ => Gate::Pass(ev),
        }
    }

    /// One 20 ms frame; `voiced` by the turn detector's threshold, `echo` by the echo guard.
    pub fn on_frame(&mut self, voiced: bool, echo: bool, agent_talking: bool) -> Option<Release> {
        let h = self.held.as_mut()?;
        let start = h.start;
        if !agent_talking {
            let only_echo = h.user_ms == 0 && h.echo_frames > 0;
            self.held = None;
            return Some(if only_echo {
                Release::Echo
            } else {
                Release::Plain(start)
            });
        }
        let user = voiced && !echo;
        match (voiced, echo) {
            (true, false) => h.user_ms += FRAME_MS as u32,
            (true, true) => h.echo_frames += 1,
            _ => {}
        }
        if let Some(silent) = h.paused.as_mut() {
            *silent = if user { 0 } else { *silent + FRAME_MS as u32 };
            if h.user_ms >= self.confirm_ms {
                self.held = None;
                return Some(Release::BargeIn(start));
            }
            if *silent >= RESUME_SILENCE_MS {
                self.held = None;
                return Some(Release::Resume);
            }
            return None;
        }
        if h.user_ms >= self.min_ms {
            if self.confirm_ms > 0 {
                h.paused = Some(0);
                return Some(Release::Pause);
            }
            self.held = None;
            return Some(Release::BargeIn(start));
        }
        None
    }

    /// Whether the held start has so far been heard only as echo.
    pub fn held_is_echo(&self) -> bool {
        self.held
            .is_some_and(|h| h.user_ms == 0 && h.echo_frames > 0)
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
            assert_eq!(g.on_frame(true, false, true), None);
        }
        // Unvoiced frames do not count.
        assert_eq!(g.on_frame(false, false, true), None);
        assert_eq!(g.on_frame(true, false, true), Some(Release::BargeIn(START)));
        assert!(!g.is_holding());
    }

    #[test]
    fn pause_then_confirm_or_resume() {
        // A real interruption: paused at 200 ms, confirmed at 600 ms of speech.
        let mut g = BargeInGuard::with_confirm(200, 600);
        assert_eq!(g.on_turn(START, true), Gate::Hold);
        let mut got = Vec::new();
        for _ in 0..30 {
            if let Some(r) = g.on_frame(true, false, true) {
                got.push(r);
            }
        }
        assert_eq!(got, vec![Release::Pause, Release::BargeIn(START)]);
        // A backchannel: paused, then 300 ms of silence resumes the reply.
        let mut b = BargeInGuard::with_confirm(200, 600);
        assert_eq!(b.on_turn(START, true), Gate::Hold);
        let mut got = Vec::new();
        for i in 0..40 {
            if let Some(r) = b.on_frame(i < 20, false, true) {
                got.push((i, r));
            }
        }
        assert_eq!(got, vec![(9, Release::Pause), (34, Release::Resume)]);
        // The detector ending the turn while paused also resumes.
        let mut c = BargeInGuard::with_confirm(200, 600);
        c.on_turn(START, true);
        for _ in 0..10 {
            c.on_frame(true, false, true);
        }
        assert!(c.is_paused());
        assert_eq!(c.on_turn(STOP, true), Gate::Resume);
        // confirm_ms at or below min_ms: no pause, the old behaviour.
        let mut d = BargeInGuard::with_confirm(200, 100);
        d.on_turn(START, true);
        let r: Vec<_> = (0..10)
            .filter_map(|_| d.on_frame(true, false, true))
            .collect();
        assert_eq!(r, vec![Release::BargeIn(START)]);
    }

    #[test]
    fn a_short_burst_is_rejected_with_its_turn() {
        let mut g = BargeInGuard::new(200);
        assert_eq!(g.on_turn(START, true), Gate::Hold);
        for _ in 0..5 {
            assert_eq!(g.on_frame(true, false, true), None);
        }
        assert_eq!(g.on_turn(STOP, true), Gate::Rejected { echo: false });
        // The next stop (of a real turn later) passes.
        assert_eq!(g.on_turn(STOP, false), Gate::Pass(STOP));
    }

    #[test]
    fn no_reply_no_guard_and_a_reply_ending_releases_the_start() {
        let mut g = BargeInGuard::new(200);
        assert_eq!(g.on_turn(START, false), Gate::Pass(START));
        assert_eq!(g.on_turn(START, true), Gate::Hold);
        assert_eq!(g.on_frame(true, false, false), Some(Release::Plain(START)));
        // Echo alone never interrupts, and is dropped when the reply ends under it.
        let mut e = BargeInGuard::new(200);
        assert_eq!(e.on_turn(START, true), Gate::Hold);
        for _ in 0..30 {
            assert_eq!(e.on_frame(true, true, true), None);
        }
        assert!(e.held_is_echo());
        assert_eq!(e.on_frame(true, true, false), Some(Release::Echo));
        let mut off = BargeInGuard::new(0);
        assert_eq!(off.on_turn(START, true), Gate::Pass(START));
    }
}
