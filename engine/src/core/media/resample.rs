//! A small rational polyphase resampler (windowed-sinc FIR), used to bring model-rate frames to the
//! 16 kHz that the voice detector wants. 24 kHz -> 16 kHz is up 2, down 3: 480 samples in give
//! exactly 320 out, so the filter phase lines up at every 20 ms frame. The filter adds
//! `taps_per_phase / 2` input samples of delay (about 0.3 ms), negligible against a 20 ms frame.

const TAPS_PER_PHASE: usize = 16;

#[derive(Debug, Clone)]
pub struct Resampler {
    up: usize,
    down: usize,
    /// Prototype filter, `up * TAPS_PER_PHASE` taps at the upsampled rate.
    h: Vec<f32>,
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
        let h = (0..n)
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
        Resampler {
            up,
            down,
            h,
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
        let base = self.hist.len() - TAPS_PER_PHASE;
        self.hist.truncate(base + TAPS_PER_PHASE);
        self.hist.extend(input.iter().map(|&s| f32::from(s)));
        let total_up = (self.hist.len() - TAPS_PER_PHASE) * self.up;
        let mut t = self.phase;
        while t < total_up {
            // Output at upsampled time t (relative to the block); input sample i sits at i * up.
            let mut acc = 0.0f32;
            let mut k = t % self.up;
            let mut i = (t / self.up + TAPS_PER_PHASE) as isize;
            while k < self.h.len() && i >= 0 {
                acc += self.h[k] * self.hist[i as usize];
                k += self.up;
                i -= 1;
            }
            out.push(acc.round().clamp(-32768.0, 32767.0) as i16);
            t += self.down;
        }
        self.phase = t - total_up;
        let keep_from = self.hist.len() - TAPS_PER_PHASE;
        self.hist.copy_within(keep_from.., 0);
        self.hist.truncate(TAPS_PER_PHASE);
    }
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

    #[test]
    fn identity_passes_through() {
        let mut r = Resampler::new(16_000, 16_000);
        let mut out = Vec::new();
        r.process(&[1, 2, 3], &mut out);
        assert_eq!(out, vec![1, 2, 3]);
    }
}
