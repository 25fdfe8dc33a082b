//! Noise suppression on the uplink, before the VAD, the turn detector and the model
//! (`audio.input.noise_reduction`, as OpenAI's Realtime API names it): RNNoise, through
//! `nnnoiseless` (a pure-Rust port of Xiph's RNNoise, BSD-3-Clause).
//!
//! RNNoise works on 10 ms frames at 48 kHz, so each 20 ms model-rate frame is brought up to
//! 48 kHz, denoised as two halves and brought back. Its output lags its input by one 10 ms frame,
//! which delays every uplink decision by 10 ms while it is on. All buffers are made when the
//! denoiser is, none per frame. `near_field` and `far_field` run the same model (RNNoise has one);
//! the setting is kept and echoed as the client sent it.

use nnnoiseless::DenoiseState;

use super::frame::PcmFrame;
use super::resample::Resampler;

const RATE: u32 = 48_000;
const HALF: usize = DenoiseState::FRAME_SIZE;

/// `audio.input.noise_reduction.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseReduction {
    NearField,
    FarField,
}

impl NoiseReduction {
    pub fn label(self) -> &'static str {
        match self {
            NoiseReduction::NearField => "near_field",
            NoiseReduction::FarField => "far_field",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "near_field" => Some(NoiseReduction::NearField),
            "far_field" => Some(NoiseReduction::FarField),
            _ => None,
        }
    }
}

pub struct Denoiser {
    state: Box<DenoiseState<'static>>,
    up: Resampler,
    down: Resampler,
    at48: Vec<i16>,
    input: [f32; HALF],
    output: [f32; HALF],
    cleaned: Vec<i16>,
    back: Vec<i16>,
    /// RNNoise's speech probability of the last half frame (for tests and tuning).
    pub last_vad: f32,
}

impl std::fmt::Debug for Denoiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Denoiser")
    }
}

impl Denoiser {
    /// A denoiser for frames at `model_hz` (16 or 24 kHz: 20 ms is 960 samples at 48 kHz).
    pub fn new(model_hz: u32) -> Self {
        Denoiser {
            state: DenoiseState::new(),
            up: Resampler::new(model_hz, RATE),
            down: Resampler::new(RATE, model_hz),
            at48: Vec::with_capacity(4 * HALF),
            input: [0.0; HALF],
            output: [0.0; HALF],
            cleaned: Vec::with_capacity(4 * HALF),
            back: Vec::with_capacity(4 * HALF),
            last_vad: 0.0,
        }
    }

    /// Denoises `frame` in place.
    pub fn process(&mut self, frame: &mut PcmFrame) {
        self.at48.clear();
        self.up.process(frame.samples(), &mut self.at48);
        self.cleaned.clear();
        for half in self.at48.chunks(HALF) {
            // RNNoise takes f32 samples on the i16 scale.
            for (d, s) in self
                .input
                .iter_mut()
                .zip(half.iter().chain(std::iter::repeat(&0)))
            {
                *d = f32::from(*s);
            }
            self.last_vad = self.state.process_frame(&mut self.output, &self.input);
            self.cleaned.extend(
                self.output[..half.len()]
                    .iter()
                    .map(|v| v.clamp(-32768.0, 32767.0) as i16),
            );
        }
        self.back.clear();
        self.down.process(&self.cleaned, &mut self.back);
        let out = frame.samples_mut();
        let n = out.len().min(self.back.len());
        out[..n].copy_from_slice(&self.back[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// Deterministic white-ish noise.
    fn noise(n: usize, amp: f64, seed: &mut u64) -> Vec<i16> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (((*seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 2.0 * amp) as i16
            })
            .collect()
    }

    #[test]
    fn steady_noise_is_attenuated_and_frames_keep_their_length() {
        for hz in [16_000u32, 24_000] {
            let mut d = Denoiser::new(hz);
            let n = hz as usize / 50;
            let mut seed = 7;
            let (mut before, mut after) = (0.0, 0.0);
            for i in 0..150 {
                let x = noise(n, 3000.0, &mut seed);
                let mut f = PcmFrame::from_slice(&x);
                d.process(&mut f);
                assert_eq!(f.len(), n);
                if i >= 50 {
                    before += rms(&x);
                    after += rms(f.samples());
                }
            }
            assert!(
                after < before * 0.5,
                "{hz} Hz: noise {before:.0} -> {after:.0} (sum of frame RMS)"
            );
        }
    }

    #[test]
    fn a_voice_like_tone_passes_far_louder_than_noise() {
        let mut d = Denoiser::new(24_000);
        let mut seed = 3;
        let mut voiced = 0.0;
        let mut t = 0usize;
        for i in 0..150 {
            // A 150 Hz buzz with harmonics (a crude vowel) over light noise.
            let x: Vec<i16> = noise(480, 300.0, &mut seed)
                .iter()
                .map(|&n| {
                    t += 1;
                    let ph = t as f64 * 150.0 / 24_000.0 * std::f64::consts::TAU;
                    let v: f64 = (1..8).map(|k| (ph * k as f64).sin() / k as f64).sum();
                    (v * 4000.0) as i16 + n
                })
                .collect();
            let mut f = PcmFrame::from_slice(&x);
            d.process(&mut f);
            if i >= 50 {
                voiced += rms(f.samples());
            }
        }
        let mut d2 = Denoiser::new(24_000);
        let mut noise_only = 0.0;
        for i in 0..150 {
            let x = noise(480, 300.0, &mut seed);
            let mut f = PcmFrame::from_slice(&x);
            d2.process(&mut f);
            if i >= 50 {
                noise_only += rms(f.samples());
            }
        }
        assert!(voiced > noise_only * 10.0, "{voiced:.0} vs {noise_only:.0}");
    }
}
