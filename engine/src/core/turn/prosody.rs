//! Prosody of the user's speech, per 20 ms frame: energy and a cheap F0 (pitch) track, and from
//! the last voiced stretch before a pause, how finished the turn sounds.
//!
//! People mark the end of a statement with falling pitch that ends low in their range and falling
//! energy; a pause mid-sentence keeps pitch level or rising and energy up. `semantic_vad` uses
//! this to release sooner or wait longer. (Final lengthening was tried as a cue and carried no
//! weight on the evaluation set, so it is not computed.)
//!
//! Frames are analysed as they arrive (`push`); the VAD's verdict may come later (`set_voiced`,
//! e.g. from Silero on a worker), and only pitch of frames the VAD calls speech is used: noise
//! (pink noise above all) correlates like a voice at short lags.
//!
//! F0: the frame is decimated to 4 kHz (box filter) and the normalized cross-correlation searched
//! over lags for 60-400 Hz, with parabolic refinement and a check for octave errors. About 2 µs
//! per voiced frame; nothing is allocated.

/// Analysis rate of the pitch tracker.
const PITCH_HZ: usize = 4000;
/// 20 ms at 4 kHz.
const N: usize = PITCH_HZ / 50;
const MIN_LAG: usize = PITCH_HZ / 400;
const MAX_LAG: usize = PITCH_HZ / 60;
/// NCCF needed for a frame to count as pitched.
const VOICING: f32 = 0.55;
/// Frames of history kept (1 s).
const HISTORY: usize = 50;
/// The final stretch looked at when a pause starts (400 ms of voiced frames).
const TAIL: usize = 15;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FrameProsody {
    /// Which frame this is (slots of the history ring are reused).
    pub index: u64,
    /// Pitch found in the frame, before the VAD's verdict.
    pub raw_f0: Option<f32>,
    /// Frame energy in dBFS.
    pub energy_db: f32,
    /// Pitch in semitones relative to 100 Hz, when the frame is pitched speech.
    pub f0_st: Option<f32>,
}

/// What the last voiced stretch sounded like.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TurnEndCues {
    /// Pitch slope over the final stretch, semitones per second (negative: falling).
    pub f0_slope: f32,
    /// Final pitch relative to the speaker's usual pitch, semitones (negative: low).
    pub f0_final: f32,
    /// Energy slope over the final stretch, dB per second.
    pub energy_slope: f32,
    /// Pitched frames the cues come from.
    pub pitched: u32,
    /// Frames since the last pitched one: how long the voice has already been gone when the VAD
    /// (which lags by a few frames) reports the pause.
    pub unpitched_for: u32,
}

#[derive(Debug, Clone)]
pub struct ProsodyTracker {
    /// Previous frame at 4 kHz (the lag window reaches back into it).
    prev: [f32; N],
    frames: [FrameProsody; HISTORY],
    /// Running mean of pitch over the session (semitones), the speaker's usual pitch.
    f0_mean: Option<f32>,
    /// Decaying peak frame energy (dBFS), the reference for "loud enough to pitch-track".
    peak_db: f32,
    pitched_total: u32,
}

impl Default for ProsodyTracker {
    fn default() -> Self {
        ProsodyTracker {
            prev: [0.0; N],
            frames: [FrameProsody {
                index: u64::MAX,
                ..FrameProsody::default()
            }; HISTORY],
            f0_mean: None,
            peak_db: -100.0,
            pitched_total: 0,
        }
    }
}

impl ProsodyTracker {
    /// Analyses frame `index` (20 ms at `rate` Hz) as it arrives.
    pub fn push(&mut self, index: u64, pcm: &[i16], rate: u32) -> FrameProsody {
        let step = (rate as usize / PITCH_HZ).max(1);
        let mut cur = [0.0f32; N];
        let mut energy = 0.0f64;
        for (i, c) in cur.iter_mut().enumerate() {
            let chunk = pcm.get(i * step..(i + 1) * step).unwrap_or(&[]);
            let sum: i32 = chunk.iter().map(|&s| i32::from(s)).sum();
            *c = sum as f32 / step as f32 / 32768.0;
        }
        for &s in pcm {
            energy += f64::from(s) * f64::from(s);
        }
        let energy_db = if pcm.is_empty() || energy == 0.0 {
            -100.0
        } else {
            (10.0 * (energy / pcm.len() as f64 / (32768.0 * 32768.0)).log10()) as f32
        };
        self.peak_db = (self.peak_db - 0.05).max(energy_db);
        // Pitch only where the frame is loud enough to be a vowel.
        let loud = energy_db > self.peak_db - 30.0;
        let raw_f0 = if loud { self.pitch(&cur) } else { None };
        self.prev = cur;
        let fp = FrameProsody {
            index,
            raw_f0,
            energy_db,
            f0_st: None,
        };
        self.frames[(index % HISTORY as u64) as usize] = fp;
        fp
    }

    /// The VAD's verdict on frame `index`. The pitch of speech frames counts, unless it jumps far
    /// from the speaker's usual pitch (fricatives and breath fool the correlation).
    pub fn set_voiced(&mut self, index: u64, voiced: bool) {
        let slot = &mut self.frames[(index % HISTORY as u64) as usize];
        if slot.index != index || !voiced {
            return;
        }
        let f0 = match (slot.raw_f0, self.f0_mean) {
            (Some(f), Some(m)) if self.pitched_total >= 10 && (f - m).abs() > 7.0 => None,
            (f, _) => f,
        };
        slot.f0_st = f0;
        if let Some(f) = f0 {
            self.pitched_total += 1;
            self.f0_mean = Some(match self.f0_mean {
                Some(m) => m + (f - m) * 0.02,
                None => f,
            });
        }
    }

    /// Frame `index` of the history, if still held.
    fn frame(&self, index: u64) -> Option<&FrameProsody> {
        let f = &self.frames[(index % HISTORY as u64) as usize];
        (f.index == index).then_some(f)
    }

    /// The cues of the final voiced stretch when a pause starts at frame `at`: the last `TAIL`
    /// pitched speech frames of the second before, wherever the VAD's hangover put the pause.
    pub fn cues(&self, at: u64) -> TurnEndCues {
        let mut pitch = [(0.0f32, 0.0f32); TAIL];
        let mut energy = [(0.0f32, 0.0f32); TAIL];
        let mut n = 0;
        let back = |k: usize| at.checked_sub(k as u64).and_then(|i| self.frame(i));
        for k in 0..HISTORY {
            let Some(f) = back(k) else { continue };
            if let Some(p) = f.f0_st {
                let t = -(k as f32) * 0.02;
                pitch[n] = (t, p);
                energy[n] = (t, f.energy_db);
                n += 1;
                if n == TAIL {
                    break;
                }
            }
        }
        let (pitch, energy) = (&mut pitch[..n], &energy[..n]);
        let f0_slope = theil_sen(pitch);
        // pitch[] runs newest first: the final pitch is the median of the newest three.
        let f0_last = match n {
            0 => None,
            1 | 2 => Some(pitch[0].1),
            _ => {
                let mut v = [pitch[0].1, pitch[1].1, pitch[2].1];
                v.sort_by(f32::total_cmp);
                Some(v[1])
            }
        };
        TurnEndCues {
            f0_slope,
            f0_final: match (f0_last, self.f0_mean) {
                (Some(l), Some(m)) => l - m,
                _ => 0.0,
            },
            energy_slope: theil_sen(energy),
            pitched: n as u32,
            unpitched_for: (0..HISTORY)
                .find(|&k| back(k).is_some_and(|f| f.f0_st.is_some()))
                .map_or(HISTORY as u32, |k| k as u32),
        }
    }

    /// F0 of the analysis window ending with `cur`, in semitones re 100 Hz.
    fn pitch(&self, cur: &[f32; N]) -> Option<f32> {
        // x: the previous frame then this one; correlate cur against x shifted back by lag.
        let mut x = [0.0f32; 2 * N];
        x[..N].copy_from_slice(&self.prev);
        x[N..].copy_from_slice(cur);
        let e0 = dot(cur, cur);
        if e0 < 1e-7 {
            return None;
        }
        let mut nccf = [0.0f32; MAX_LAG + 2];
        let mut best = (0usize, 0.0f32);
        // Energy of the shifted window, slid from lag to lag.
        let mut yy = dot(
            &x[N - MIN_LAG..2 * N - MIN_LAG],
            &x[N - MIN_LAG..2 * N - MIN_LAG],
        );
        for lag in MIN_LAG..=MAX_LAG {
            let y = &x[N - lag..2 * N - lag];
            if lag > MIN_LAG {
                yy += x[N - lag] * x[N - lag] - x[2 * N - lag] * x[2 * N - lag];
            }
            let xy = dot(cur, y);
            let r = if yy > 0.0 { xy / (e0 * yy).sqrt() } else { 0.0 };
            nccf[lag] = r;
            if r > best.1 {
                best = (lag, r);
            }
        }
        let (_, r) = best;
        if r < VOICING {
            return None;
        }
        // Multiples of the period correlate as well as the period itself: take the first local
        // peak that comes close to the best one (guards against octave-down errors).
        let lag = (MIN_LAG..=MAX_LAG)
            .find(|&l| {
                nccf[l] >= 0.9 * r
                    && nccf[l] >= nccf[l + 1]
                    && (l == MIN_LAG || nccf[l] >= nccf[l - 1])
            })
            .unwrap_or(best.0);
        let refined = if lag > MIN_LAG && lag < MAX_LAG {
            let (a, b, c) = (nccf[lag - 1], nccf[lag], nccf[lag + 1]);
            let d = a - 2.0 * b + c;
            if d < 0.0 {
                lag as f32 + 0.5 * (a - c) / d
            } else {
                lag as f32
            }
        } else {
            lag as f32
        };
        let hz = PITCH_HZ as f32 / refined;
        Some(12.0 * (hz / 100.0).log2())
    }
}

/// Dot product in eight lanes, so the compiler can vectorize it (f32 sums are not reassociated
/// otherwise).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Robust slope (per second) of `(t, v)` points: the median of pairwise slopes (Theil-Sen), so a
/// stray octave error or a plosive does not swing it. At most `TAIL` points.
fn theil_sen(points: &[(f32, f32)]) -> f32 {
    let mut slopes = [0.0f32; TAIL * (TAIL - 1) / 2];
    let mut m = 0;
    for i in 0..points.len() {
        for j in i + 1..points.len() {
            let dt = points[j].0 - points[i].0;
            if dt.abs() > 1e-6 && m < slopes.len() {
                slopes[m] = (points[j].1 - points[i].1) / dt;
                m += 1;
            }
        }
    }
    if points.len() < 3 || m == 0 {
        return 0.0;
    }
    let s = &mut slopes[..m];
    s.sort_unstable_by(f32::total_cmp);
    s[m / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A voiced 20 ms frame: pulse-train-like harmonics at `hz`, continuous phase.
    fn tone(hz: f32, phase: &mut f32, rate: u32, gain: f32) -> Vec<i16> {
        (0..rate / 50)
            .map(|_| {
                *phase += hz / rate as f32;
                let p = *phase * std::f32::consts::TAU;
                let v = p.sin() + 0.5 * (2.0 * p).sin() + 0.3 * (3.0 * p).sin();
                (v * 6000.0 * gain) as i16
            })
            .collect()
    }

    #[test]
    fn tracks_pitch_within_a_semitone() {
        for rate in [16_000, 24_000] {
            for hz in [90.0f32, 140.0, 220.0, 310.0] {
                let mut t = ProsodyTracker::default();
                let mut ph = 0.0;
                let mut got = None;
                for i in 0..5 {
                    got = t.push(i, &tone(hz, &mut ph, rate, 1.0), rate).raw_f0;
                }
                let want = 12.0 * (hz / 100.0).log2();
                let got = got.expect("pitched");
                assert!(
                    (got - want).abs() < 1.0,
                    "{rate} Hz: {hz} Hz -> {got} st, want {want}"
                );
            }
        }
    }

    #[test]
    fn noise_and_silence_have_no_pitch() {
        let mut t = ProsodyTracker::default();
        let mut seed = 1u32;
        let noise: Vec<i16> = (0..320)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 16) as i16
            })
            .collect();
        t.push(0, &noise, 16_000);
        assert_eq!(t.push(1, &noise, 16_000).raw_f0, None);
        assert_eq!(t.push(2, &[0; 320], 16_000).raw_f0, None);
    }

    /// A phrase of 30 frames whose pitch moves from `from` to `to` Hz and energy by `gain_to`.
    fn phrase(
        t: &mut ProsodyTracker,
        at: &mut u64,
        from: f32,
        to: f32,
        gain_to: f32,
    ) -> TurnEndCues {
        let mut ph = 0.0;
        for i in 0..30 {
            let k = i as f32 / 29.0;
            let hz = from + (to - from) * k;
            let g = 1.0 + (gain_to - 1.0) * k;
            t.push(*at, &tone(hz, &mut ph, 16_000, g), 16_000);
            t.set_voiced(*at, true);
            *at += 1;
        }
        t.push(*at, &[0; 320], 16_000);
        t.set_voiced(*at, false);
        *at += 1;
        t.cues(*at - 1)
    }

    #[test]
    fn falling_statement_and_rising_continuation_differ() {
        let mut t = ProsodyTracker::default();
        let mut at = 0;
        phrase(&mut t, &mut at, 150.0, 150.0, 1.0); // the speaker's usual pitch
        let fall = phrase(&mut t, &mut at, 150.0, 105.0, 0.3);
        let rise = phrase(&mut t, &mut at, 150.0, 185.0, 1.0);
        assert!(fall.f0_slope < -5.0, "{fall:?}");
        assert!(fall.f0_final < -3.0, "{fall:?}");
        assert!(fall.energy_slope < -10.0, "{fall:?}");
        assert!(rise.f0_slope > 3.0, "{rise:?}");
        assert!(rise.f0_final > 1.0, "{rise:?}");
        assert!(rise.pitched >= 15);
    }
}
