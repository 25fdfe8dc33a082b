//! A small rational polyphase resampler (windowed-sinc FIR), used to bring model-rate frames to the
//! 16 kHz that the voice detector wants. 24 kHz -> 16 kHz is up 2, down 3: 480 samples in give
//! exactly 320 out, so the filter phase lines up at every 20 ms frame. The filter adds
//! `taps_per_phase / 2` input samples of delay (about 0.3 ms), negligible against a 20 ms frame.

const TAPS_PER_PHASE: usize = 16;
/// Partial sums kept apart in the dot product, so the compiler can use vector lanes (a single
/// running sum of floats must be added in order).
const LANES: usize = 8;

#[derive(Debug, Clone)]
pub struct Resampler {
    up: usize,
    down: usize,
    /// The prototype filter (`up * TAPS_PER_PHASE` taps at the upsampled rate) cut into its `up`
    /// phases, each reversed, so that one output is one contiguous dot product with the input.
    phases: Vec<[f32; TAPS_PER_PHASE]>,
    /// The last `TAPS_PER_PHASE` input samples followed by the current block.
    hist: Vec<f32>,
    /// Position of the next output in upsampled units, relative to the start of `hist`'s block.
    phase: usize,
}

impl Resampler {
    /// A resampler from `from_hz` to `to_hz` (integer ratio after reduction, small factors).
    pub fn new(from_hz: u32, to_hz: u32) -> Self {
        let g = gcd(from_hz, to_hz);
        let up = (to_hz / g) as usize;
        let down = (from_hz / g) as usize;
        let n = up * TAPS_PER_PHASE;
        // Cut-off just under the lower Nyquist, in cycles per upsampled sample.
        let fc = 0.45 / up.max(down) as f64;
        let mid = (n as f64 - 1.0) / 2.0;
        let h: Vec<f32> = (0..n)
            .map(|i| {
                let x = i as f64 - mid;
                let sinc = if x == 0.0 {
                    2.0 * fc
                } else {
                    (2.0 * std::f64::consts::PI * fc * x).sin() / (std::f64::consts::PI * x)
                };
                let w =
                    0.54 - 0.46 * (2.0 * std::f64::consts::PI * i as f64 / (n as f64 - 1.0)).cos();
                (sinc * w * up as f64) as f32
            })
            .collect();
        // Output at upsampled time t uses taps t % up + j * up on input sample t / up - j (j up to
        // TAPS_PER_PHASE - 1); reversed, tap m of a phase meets input sample t / up - (TAPS - 1) + m.
        let phases = (0..up)
            .map(|p| {
                let mut taps = [0.0; TAPS_PER_PHASE];
                for (m, tap) in taps.iter_mut().enumerate() {
                    *tap = h[p + (TAPS_PER_PHASE - 1 - m) * up];
                }
                taps
            })
            .collect();
        Resampler {
            up,
            down,
            phases,
            hist: vec![0.0; TAPS_PER_PHASE],
            phase: 0,
        }
    }

    /// True when input and output rates are the same (the caller may skip the call).
    pub fn is_identity(&self) -> bool {
        self.up == 1 && self.down == 1
    }

    /// Forgets the input history, as a new resampler would (the next output starts from silence).
    pub fn reset(&mut self) {
        self.hist.clear();
        self.hist.resize(TAPS_PER_PHASE, 0.0);
        self.phase = 0;
    }

    /// Resamples `input`, appending to `out`. Keeps state across calls.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        if self.is_identity() {
            out.extend_from_slice(input);
            return;
        }
        // Between calls `hist` holds just the last TAPS_PER_PHASE samples.
        self.hist.extend(input.iter().map(|&s| f32::from(s)));
        // The next output sits at upsampled time newest * up + p (relative to the block): phase
        // p, newest input sample `newest` of the block, which is hist[newest + TAPS_PER_PHASE].
        let (mut p, mut newest) = (self.phase % self.up, self.phase / self.up);
        out.reserve(
            (input.len() * self.up)
                .saturating_sub(self.phase)
                .div_ceil(self.down),
        );
        while newest < input.len() {
            let window = &self.hist[newest + 1..newest + 1 + TAPS_PER_PHASE];
            out.push(to_sample(dot(&self.phases[p], window)));
            p += self.down;
            while p >= self.up {
                p -= self.up;
                newest += 1;
            }
        }
        self.phase = (newest - input.len()) * self.up + p;
        let keep_from = self.hist.len() - TAPS_PER_PHASE;
        self.hist.copy_within(keep_from.., 0);
        self.hist.truncate(TAPS_PER_PHASE);
    }
}

fn dot(taps: &[f32; TAPS_PER_PHASE], window: &[f32]) -> f32 {
    let mut sums = [0.0f32; LANES];
    for (k, (a, b)) in taps.iter().zip(window).enumerate() {
        sums[k % LANES] += a * b;
    }
    sums.iter().sum()
}

/// Rounds half away from zero and saturates, as `f32::round` then a clamp would, without the
/// libm call `round` becomes on baseline x86-64.
fn to_sample(x: f32) -> i16 {
    (x + 0.5f32.copysign(x)) as i16
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, rate: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| ((2.0 * std::f64::consts::PI * hz * i as f64 / rate).sin() * 10000.0) as i16)
            .collect()
    }

    #[test]
    fn frame_sizes_line_up() {
        let mut r = Resampler::new(24_000, 16_000);
        let mut out = Vec::new();
        for _ in 0..10 {
            out.clear();
            r.process(&[0; 480], &mut out);
            assert_eq!(out.len(), 320);
        }
    }

    #[test]
    fn keeps_in_band_tone_and_removes_alias() {
        let mut r = Resampler::new(24_000, 16_000);
        let mut out = Vec::new();
        let x = tone(1000.0, 24_000.0, 4800);
        for c in x.chunks(480) {
            r.process(c, &mut out);
        }
        let rms = |v: &[i16]| {
            (v.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
        };
        let pass = rms(&out[320..]);
        assert!(
            (pass / (10000.0 / 2f64.sqrt()) - 1.0).abs() < 0.1,
            "1 kHz kept: {pass}"
        );

        let mut r = Resampler::new(24_000, 16_000);
        let mut out = Vec::new();
        for c in tone(11_000.0, 24_000.0, 4800).chunks(480) {
            r.process(c, &mut out);
        }
        assert!(
            rms(&out[320..]) < 700.0,
            "11 kHz (above 8 kHz) removed: {}",
            rms(&out[320..])
        );
    }

    /// The streaming resampler, fed blocks of uneven sizes, against the filter applied to the
    /// whole signal at once from its definition: output n sits at upsampled time n * down and
    /// takes tap (n * down) % up + j * up times input sample (n * down) / up - j.
    #[test]
    fn streaming_matches_the_filter_applied_at_once() {
        for (from, to) in [
            (24_000, 16_000),
            (8_000, 24_000),
            (48_000, 24_000),
            (16_000, 48_000),
        ] {
            let mut r = Resampler::new(from, to);
            let (up, down) = (r.up, r.down);
            let tap = |k: usize| r.phases[k % up][TAPS_PER_PHASE - 1 - k / up];
            let x: Vec<i16> = (0..4_000u32)
                .map(|i| ((i.wrapping_mul(2_654_435_761) >> 16) as i16) / 4)
                .collect();
            let expected: Vec<i16> = (0..(x.len() * up).div_ceil(down))
                .map(|n| {
                    let (t, mut acc) = (n * down, 0.0f64);
                    for j in 0..TAPS_PER_PHASE {
                        if let Some(i) = (t / up).checked_sub(j) {
                            acc += f64::from(tap(t % up + j * up)) * f64::from(x[i]);
                        }
                    }
                    acc.round().clamp(-32768.0, 32767.0) as i16
                })
                .collect();
            let mut out = Vec::new();
            let mut rest = &x[..];
            for size in [1, 7, 480, 160, 3, 999].iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (block, tail) = rest.split_at((*size).min(rest.len()));
                r.process(block, &mut out);
                rest = tail;
            }
            assert_eq!(out.len(), expected.len(), "{from} -> {to}");
            let worst = out
                .iter()
                .zip(&expected)
                .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
                .max();
            assert!(worst <= Some(1), "{from} -> {to}: off by {worst:?}");
        }
    }

    #[test]
    fn rounds_half_away_from_zero_and_saturates() {
        assert_eq!(to_sample(2.5), 3);
        assert_eq!(to_sample(-2.5), -3);
        assert_eq!(to_sample(2.49), 2);
        assert_eq!(to_sample(1e9), i16::MAX);
        assert_eq!(to_sample(-1e9), i16::MIN);
    }

    #[test]
    fn identity_passes_through() {
        let mut r = Resampler::new(16_000, 16_000);
        let mut out = Vec::new();
        r.process(&[1, 2, 3], &mut out);
        assert_eq!(out, vec![1, 2, 3]);
    }
}
