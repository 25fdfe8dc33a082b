//! Echo guard: is what the user's microphone hears just our own reply leaking back?
//!
//! Browsers cancel most echo, but some leaks through (speakers, a bad headset, a phone on a
//! table), and a VAD cannot tell it from the user. Echo follows the reply's loudness contour at a
//! fixed delay, so the guard keeps the reply's envelope (log energy per 5 ms block) and the
//! uplink's, on the uplink's frame clock, and looks for the delay (0-400 ms) at which the last
//! 300 ms of uplink correlates with the reply. High correlation at a delay that stays put means
//! echo: that speech does not count towards a barge-in. Independent speech lines up only by
//! chance and at wandering delays. About 5,000 multiply-adds per frame while a reply plays,
//! nothing otherwise; no allocation.

use super::prosody::dot;

/// Envelope blocks per 20 ms frame (5 ms each).
const BLOCKS_PER_FRAME: usize = 4;
/// Uplink window compared: 300 ms.
const NEAR: usize = 60;
/// Echo delays searched: up to 400 ms.
const MAX_LAG: usize = 80;
/// Reply envelope kept: the window plus every lag.
const FAR: usize = NEAR + MAX_LAG;
/// Correlation above which the uplink is taken for echo...
pub const ECHO_CORRELATION: f32 = 0.75;
/// ...at a delay that has held (within 5 ms) for this many frames: an echo path's delay is fixed,
/// while two unrelated talkers only line up now and then, at any delay.
const STABLE_FRAMES: u32 = 3;
/// Envelope variance below which a window is too flat to judge (steady noise, silence).
const MIN_VARIANCE: f32 = 4.0;

/// A reply frame's loudness envelope.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplyEnvelope([f32; BLOCKS_PER_FRAME]);

#[derive(Debug, Clone)]
pub struct EchoGuard {
    far: Envelope<FAR>,
    near: Envelope<NEAR>,
    /// The reply frame sent since the last uplink frame, as envelope blocks.
    pending_far: Option<[f32; BLOCKS_PER_FRAME]>,
    /// Frames since any reply audio went out (reply envelope is all silence beyond this).
    quiet_frames: usize,
    last: f32,
    best_lag: usize,
    stable: u32,
}

impl Default for EchoGuard {
    fn default() -> Self {
        EchoGuard {
            far: Envelope::default(),
            near: Envelope::default(),
            pending_far: None,
            quiet_frames: usize::MAX,
            last: 0.0,
            best_lag: 0,
            stable: 0,
        }
    }
}

const SILENCE_DB: f32 = -60.0;

/// Block log energies (dBFS, floored at -60) of one frame.
fn envelope(pcm: &[i16]) -> [f32; BLOCKS_PER_FRAME] {
    let mut out = [SILENCE_DB; BLOCKS_PER_FRAME];
    let n = pcm.len() / BLOCKS_PER_FRAME;
    if n == 0 {
        return out;
    }
    for (b, o) in out.iter_mut().enumerate() {
        let e: f64 = pcm[b * n..(b + 1) * n]
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum::<f64>()
            / n as f64;
        *o = if e < 1.0 {
            SILENCE_DB
        } else {
            ((10.0 * (e / (32768.0 * 32768.0)).log10()) as f32).max(SILENCE_DB)
        };
    }
    out
}

impl EchoGuard {
    /// A reply frame just went out to the client.
    pub fn on_reply_frame(&mut self, pcm: &[i16]) {
        self.pending_far = Some(envelope(pcm));
    }

    /// The same, for a frame whose envelope was taken earlier (`reply_envelope`).
    pub fn on_reply_envelope(&mut self, env: ReplyEnvelope) {
        self.pending_far = Some(env.0);
    }

    /// A reply frame's envelope, taken when it is encoded ahead of its send.
    pub fn reply_envelope(pcm: &[i16]) -> ReplyEnvelope {
        ReplyEnvelope(envelope(pcm))
    }

    /// An uplink frame arrived; returns the echo correlation of the last 300 ms (0 when no reply
    /// played in the last 600 ms or the window is too flat to judge).
    pub fn on_uplink_frame(&mut self, pcm: &[i16]) -> f32 {
        let far = self.pending_far.take();
        self.quiet_frames = match far {
            Some(_) => 0,
            None => self.quiet_frames.saturating_add(1),
        };
        for v in far.unwrap_or([SILENCE_DB; BLOCKS_PER_FRAME]) {
            self.far.push(v);
        }
        for v in envelope(pcm) {
            self.near.push(v);
        }
        let (corr, lag) = if self.quiet_frames > FAR / BLOCKS_PER_FRAME {
            (0.0, usize::MAX)
        } else {
            self.best_correlation()
        };
        self.stable = if lag != usize::MAX && lag.abs_diff(self.best_lag) <= 1 {
            self.stable + 1
        } else {
            0
        };
        self.best_lag = lag;
        self.last = corr;
        self.last
    }

    pub fn is_echo(&self) -> bool {
        self.last >= ECHO_CORRELATION && self.stable >= STABLE_FRAMES
    }

    /// The best loudness correlation over all delays, and that delay in blocks. The rings are
    /// laid out flat first, the uplink's statistics computed once and the reply's slid along, so
    /// each delay costs one `NEAR`-long dot product (about 5,000 multiply-adds per frame).
    fn best_correlation(&self) -> (f32, usize) {
        let mut near = [0.0f32; NEAR];
        for (i, v) in near.iter_mut().enumerate() {
            *v = self.near.level(i);
        }
        // far[j]: oldest first; delay `lag` aligns near[i] with far[FAR - NEAR - lag + i].
        let mut far = [0.0f32; FAR];
        for (j, v) in far.iter_mut().enumerate() {
            *v = self.far.level_at(j, FAR - NEAR);
        }
        let n = NEAR as f32;
        let (sn, snn) = near
            .iter()
            .fold((0.0, 0.0), |(s, q), &x| (s + x, q + x * x));
        let var_n = snn / n - (sn / n).powi(2);
        if var_n < MIN_VARIANCE {
            return (0.0, usize::MAX);
        }
        let mut best = (0.0f32, usize::MAX);
        // The reply window's sum and energy, slid from delay to delay.
        let first = &far[FAR - NEAR..];
        let (mut sf, mut sff) = (first.iter().sum::<f32>(), dot(first, first));
        for lag in 0..=MAX_LAG {
            let w = &far[FAR - NEAR - lag..FAR - lag];
            if lag > 0 {
                let (enter, leave) = (far[FAR - NEAR - lag], far[FAR - lag]);
                sf += enter - leave;
                sff += enter * enter - leave * leave;
            }
            let snf = dot(&near, w);
            let var_f = sff / n - (sf / n).powi(2);
            if var_f < MIN_VARIANCE {
                continue;
            }
            let r = (snf / n - (sn / n) * (sf / n)) / (var_n * var_f).sqrt();
            if r > best.0 {
                best = (r, lag);
            }
        }
        best
    }
}

/// A ring of block log energies.
#[derive(Debug, Clone)]
struct Envelope<const N: usize> {
    db: [f32; N],
    at: usize,
}

impl<const N: usize> Default for Envelope<N> {
    fn default() -> Self {
        Envelope {
            db: [SILENCE_DB; N],
            at: 0,
        }
    }
}

impl<const N: usize> Envelope<N> {
    fn push(&mut self, v: f32) {
        self.db[self.at] = v;
        self.at = (self.at + 1) % N;
    }

    /// Block `i` of the newest `NEAR`, oldest first.
    fn level(&self, i: usize) -> f32 {
        self.level_at(i, 0)
    }

    /// The same, `lag` blocks further back.
    fn level_at(&self, i: usize, lag: usize) -> f32 {
        self.db[(self.at + 2 * N - NEAR - lag + i) % N]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Speech-like frames: a tone whose loudness follows syllables, `seed` picks the rhythm.
    fn talker(frames: usize, seed: u32) -> Vec<Vec<i16>> {
        let mut x = seed;
        let mut phase = 0.0f32;
        let mut env = 0.0f32;
        (0..frames)
            .map(|_| {
                (0..320)
                    .map(|i| {
                        if i % 40 == 0 {
                            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                            let target = if (x >> 28) > 6 { 1.0 } else { 0.05 };
                            env += (target - env) * 0.5;
                        }
                        phase += 0.05;
                        (phase.sin() * 9000.0 * env) as i16
                    })
                    .collect()
            })
            .collect()
    }

    fn noise(seed: u32, level: i32) -> Vec<i16> {
        let mut x = seed;
        (0..320)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((x >> 16) as i32 % level) as i16
            })
            .collect()
    }

    #[test]
    fn leaked_reply_is_echo_and_the_user_is_not() {
        let reply = talker(150, 1);
        let user = talker(150, 99);
        let delay = 7; // 140 ms echo path
        let mut echo = EchoGuard::default();
        let mut barge = EchoGuard::default();
        let (mut echo_hits, mut user_hits) = (0, 0);
        for (i, frame) in reply.iter().enumerate() {
            echo.on_reply_frame(frame);
            barge.on_reply_frame(frame);
            // The microphone hears the reply 140 ms later at -12 dB, plus room noise.
            let leaked: Vec<i16> = match i.checked_sub(delay) {
                Some(j) => reply[j]
                    .iter()
                    .zip(noise(i as u32, 200))
                    .map(|(&s, n)| s / 4 + n)
                    .collect(),
                None => noise(i as u32, 200),
            };
            echo.on_uplink_frame(&leaked);
            barge.on_uplink_frame(&user[i]);
            if i > 20 {
                echo_hits += usize::from(echo.is_echo());
                user_hits += usize::from(barge.is_echo());
            }
        }
        assert!(
            echo_hits > 110,
            "echo recognised in {echo_hits} of 129 frames"
        );
        assert!(
            user_hits < 10,
            "the user taken for echo in {user_hits} frames"
        );
    }

    #[test]
    fn no_reply_no_echo() {
        let mut g = EchoGuard::default();
        for f in talker(50, 3) {
            assert_eq!(g.on_uplink_frame(&f), 0.0);
        }
    }
}
