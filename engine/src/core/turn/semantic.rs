//! `semantic_vad`: how long a pause must last before the turn ends, chosen when the pause begins
//! from how finished the last words sounded.
//!
//! The prosodic cues (`prosody::TurnEndCues`) are combined into a score in 0..1 (1: sounds like the
//! end of a statement). The wait runs from `finished` ms at score 1 to `unfinished` ms at score 0,
//! geometrically (a score of 0.5 waits the geometric mean), with OpenAI's ceilings: 8, 4 and 2 s for
//! eagerness low, medium and high. `auto` is medium. The weights were fitted on the labeled set
//! that `tools/turn-eval` generates (see perf-reports/*-turn-eval).

use super::prosody::TurnEndCues;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eagerness {
    Low,
    Medium,
    High,
    Auto,
}

/// Weights of the end-of-turn score, on cues scaled to about one unit each.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CueWeights {
    pub bias: f32,
    /// Per (-5 semitones/s) of pitch slope: falling pitch sounds final.
    pub f0_fall: f32,
    /// Per (-2 semitones) of final pitch below the speaker's usual: ending low sounds final.
    pub f0_low: f32,
    /// Per (-20 dB/s) of energy slope: fading out sounds final.
    pub energy_fall: f32,
}

pub const WEIGHTS: CueWeights = CueWeights {
    bias: -0.3,
    f0_fall: 1.0,
    f0_low: 0.5,
    energy_fall: 0.2,
};

/// Scores at or below `SURE_UNFINISHED` wait the longest; at or above `SURE_FINISHED` the
/// shortest; in between the wait falls geometrically.
pub const SURE_UNFINISHED: f32 = 0.6;
pub const SURE_FINISHED: f32 = 0.9;
/// The VAD reports a pause a few frames after the voice went; up to this many frames of that
/// lag count towards the wait.
pub const MAX_CREDIT_FRAMES: u32 = 8;
pub const MIN_AFTER_VAD_MS: u32 = 60;

/// Pitched frames needed before the pitch cues are trusted.
const MIN_PITCHED: u32 = 4;

impl Eagerness {
    pub const ALL: [Eagerness; 4] = [
        Eagerness::Low,
        Eagerness::Medium,
        Eagerness::High,
        Eagerness::Auto,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Eagerness::Low => "low",
            Eagerness::Medium => "medium",
            Eagerness::High => "high",
            Eagerness::Auto => "auto",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.label() == s)
    }

    /// (wait after a finished-sounding end, wait after an unfinished-sounding pause), in ms.
    pub fn waits_ms(self) -> (u32, u32) {
        match self {
            Eagerness::Low => (300, 8_000),
            Eagerness::Medium | Eagerness::Auto => (160, 4_000),
            Eagerness::High => (100, 2_000),
        }
    }

    /// The silence that ends the turn after a pause with these cues, counted from the end of
    /// the voice (see `credit_ms`).
    pub fn wait_ms(self, cues: &TurnEndCues) -> u32 {
        self.wait_for_score(finished_score(cues, &WEIGHTS))
    }

    /// How much of the wait has already passed when the VAD reports the pause.
    /// At least `MIN_AFTER_VAD_MS` is always left, so a short dip of the VAD inside a phrase
    /// never ends the turn on its own.
    pub fn credit_ms(self, cues: &TurnEndCues) -> u32 {
        let credit = cues.unpitched_for.min(MAX_CREDIT_FRAMES) * 20;
        credit.min(self.wait_ms(cues).saturating_sub(MIN_AFTER_VAD_MS))
    }

    pub fn wait_for_score(self, score: f32) -> u32 {
        let (f, u) = self.waits_ms();
        let (lf, lu) = ((f as f32).ln(), (u as f32).ln());
        let s = ((score - SURE_UNFINISHED) / (SURE_FINISHED - SURE_UNFINISHED)).clamp(0.0, 1.0);
        let w = (lf + (1.0 - s) * (lu - lf)).exp();
        // Whole frames, as the detector counts them.
        (w / 20.0).round() as u32 * 20
    }
}

/// How finished the turn sounds, 0..1.
pub fn finished_score(c: &TurnEndCues, w: &CueWeights) -> f32 {
    let mut z = w.bias + w.energy_fall * (-c.energy_slope / 20.0).clamp(-2.0, 2.0);
    if c.pitched >= MIN_PITCHED {
        z += w.f0_fall * (-c.f0_slope / 5.0).clamp(-2.0, 2.0);
        z += w.f0_low * (-c.f0_final / 2.0).clamp(-2.0, 2.0);
    }
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cues(f0_slope: f32, f0_final: f32, energy_slope: f32) -> TurnEndCues {
        TurnEndCues {
            f0_slope,
            f0_final,
            energy_slope,
            pitched: 15,
            unpitched_for: 0,
        }
    }

    #[test]
    fn waits_span_the_eagerness_range() {
        for e in Eagerness::ALL {
            let (f, u) = e.waits_ms();
            assert_eq!(e.wait_for_score(1.0), f);
            assert_eq!(e.wait_for_score(0.0), u);
            let mid = e.wait_for_score((SURE_FINISHED + SURE_UNFINISHED) / 2.0);
            assert!(mid > f && mid < u);
            assert_eq!(Eagerness::parse(e.label()), Some(e));
        }
        assert_eq!(Eagerness::Low.waits_ms().1, 8_000);
        assert_eq!(Eagerness::Medium.waits_ms().1, 4_000);
        assert_eq!(Eagerness::High.waits_ms().1, 2_000);
        assert_eq!(Eagerness::parse("eager"), None);
    }

    #[test]
    fn falling_end_releases_sooner_than_a_rising_pause() {
        let fall = cues(-12.0, -4.0, -30.0);
        let rise = cues(6.0, 2.0, 5.0);
        let e = Eagerness::Medium;
        assert!(e.wait_ms(&fall) <= 400, "{}", e.wait_ms(&fall));
        assert!(e.wait_ms(&rise) >= 2_000, "{}", e.wait_ms(&rise));
        // No pitch: only energy and length speak.
        let unpitched = TurnEndCues { pitched: 0, ..fall };
        assert!(e.wait_ms(&unpitched) > e.wait_ms(&fall));
    }
}
