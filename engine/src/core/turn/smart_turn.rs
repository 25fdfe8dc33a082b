//! Smart Turn v3.2 (BSD-2-Clause, Daily; github.com/pipecat-ai/smart-turn): a learned end-of-turn
//! model, run through tract-onnx in pure Rust.
//!
//! The model ships inside the binary (`engine/models/smart_turn_v3_2.onnx`, 8.7 MB, taken as it is
//! from the pipecat-ai wheel by `tools/smart_turn/prepare_model.py`): a Whisper-tiny encoder with a
//! classifier head, int8 weights in QDQ form. It reads the Whisper log-mel features of the last
//! 8 s of 16 kHz audio (zero-padded at the front) and gives the probability that the turn is
//! complete. `WhisperFeatures` computes those features exactly as Pipecat's vendored copy of the
//! Hugging Face extractor does (waveform normalised, reflect-padded 400-point periodic-Hann STFT
//! every 160 samples, 80 Slaney mel bands, log10, floored 8 below the peak, scaled); the test
//! compares both against onnxruntime's figures. A decision costs about 0.2 s of one core under
//! tract with its vectorized exponential in the softmaxes (`onnx_plan::Exp::Fast`; 0.9-1.3 s with
//! libc's), so it runs on an inference worker's scorer thread (`agent::worker_turn`), never on a
//! media core, once per pause of the sessions that ask (`turn_model`).

use std::sync::{Arc, OnceLock};

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};
use tract_onnx::prelude::*;

use super::onnx_plan::{self, Plan};

const MODEL: &[u8] = include_bytes!("../../../models/smart_turn_v3_2.onnx");

/// The model's sample rate.
pub const RATE: u32 = 16_000;
/// Audio the model reads: the last 8 s.
pub const WINDOW_SAMPLES: usize = 8 * RATE as usize;
const N_FFT: usize = 400;
const HOP: usize = 160;
const BINS: usize = N_FFT / 2 + 1;
pub const N_MELS: usize = 80;
/// Feature frames per window (the STFT's 801 less the last, as Whisper drops it).
pub const FRAMES: usize = WINDOW_SAMPLES / HOP;
/// Floats of one window's features, `[mel][frame]`.
pub const FEATURES_LEN: usize = N_MELS * FRAMES;

#[derive(Debug, thiserror::Error)]
#[error("smart turn model: {0}")]
pub struct SmartTurnError(#[from] onnx_plan::ModelError);

impl From<TractError> for SmartTurnError {
    fn from(e: TractError) -> Self {
        SmartTurnError(e.into())
    }
}

/// The optimized model for one window, built once per process.
fn plan() -> Result<Plan, SmartTurnError> {
    static PLAN: OnceLock<Result<Plan, onnx_plan::ModelError>> = OnceLock::new();
    PLAN.get_or_init(|| build(onnx_plan::Exp::Fast))
        .clone()
        .map_err(SmartTurnError::from)
}

fn build(exp: onnx_plan::Exp) -> Result<Plan, onnx_plan::ModelError> {
    onnx_plan::build(MODEL, exp, |m| {
        let batch = m.sym("s6");
        m.concretize_dims(&SymbolValues::default().with(&batch, 1))
    })
}

/// Whisper log-mel features of 8 s windows, with its FFT plan and buffers made once.
pub struct WhisperFeatures {
    fft: Arc<dyn RealToComplex<f64>>,
    window: [f64; N_FFT],
    /// `[mel][bin]`, Slaney-normalised triangles.
    filters: Vec<[f64; BINS]>,
    signal: Vec<f32>,
    frame: Vec<f64>,
    spectrum: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
    power: [f64; BINS],
}

impl Default for WhisperFeatures {
    fn default() -> Self {
        Self::new()
    }
}

impl WhisperFeatures {
    pub fn new() -> Self {
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT);
        let spectrum = fft.make_output_vec();
        let scratch = fft.make_scratch_vec();
        let mut window = [0.0; N_FFT];
        for (n, w) in window.iter_mut().enumerate() {
            // Periodic Hann (torch.hann_window, numpy's hanning(N + 1)[:-1]).
            *w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos();
        }
        WhisperFeatures {
            fft,
            window,
            filters: mel_filters(),
            signal: Vec::with_capacity(WINDOW_SAMPLES + N_FFT),
            frame: vec![0.0; N_FFT],
            spectrum,
            scratch,
            power: [0.0; BINS],
        }
    }

    /// Features of `audio` (16 kHz, -1..1; its last 8 s, zero-padded at the front) into `out`
    /// (`FEATURES_LEN` floats, `[mel][frame]`).
    pub fn compute(&mut self, audio: &[f32], out: &mut [f32]) {
        debug_assert_eq!(out.len(), FEATURES_LEN);
        let tail = &audio[audio.len().saturating_sub(WINDOW_SAMPLES)..];
        // Zero-mean, unit-variance waveform, as the extractor's `do_normalize`.
        let n = WINDOW_SAMPLES as f64;
        let mean = tail.iter().map(|&s| f64::from(s)).sum::<f64>() / n;
        let var = tail
            .iter()
            .map(|&s| (f64::from(s) - mean).powi(2))
            .sum::<f64>()
            / n
            + (WINDOW_SAMPLES - tail.len()) as f64 * mean * mean / n;
        let scale = 1.0 / (var + 1e-7).sqrt();
        let pad = N_FFT / 2;
        let norm = |s: f32| ((f64::from(s) - mean) * scale) as f32;
        let sample = |i: usize| {
            let front = WINDOW_SAMPLES - tail.len();
            if i < front {
                norm(0.0)
            } else {
                norm(tail[i - front])
            }
        };
        // Reflect padding by 200 on both sides (numpy's "reflect": the edge is not repeated).
        self.signal.clear();
        self.signal.extend((1..=pad).rev().map(sample));
        self.signal.extend((0..WINDOW_SAMPLES).map(sample));
        self.signal
            .extend((1..=pad).map(|k| sample(WINDOW_SAMPLES - 1 - k)));
        let mut peak = f32::MIN;
        for f in 0..FRAMES {
            let start = f * HOP;
            for (k, v) in self.frame.iter_mut().enumerate() {
                *v = f64::from(self.signal[start + k]) * self.window[k];
            }
            // The buffers have the plan's lengths, so the transform cannot fail.
            let _ = self.fft.process_with_scratch(
                &mut self.frame,
                &mut self.spectrum,
                &mut self.scratch,
            );
            for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
                *p = c.norm_sqr();
            }
            for (m, filter) in self.filters.iter().enumerate() {
                let e: f64 = filter.iter().zip(&self.power).map(|(a, b)| a * b).sum();
                let v = e.max(1e-10).log10() as f32;
                out[m * FRAMES + f] = v;
                peak = peak.max(v);
            }
        }
        let floor = peak - 8.0;
        for v in out.iter_mut() {
            *v = (v.max(floor) + 4.0) / 4.0;
        }
    }
}

/// Slaney mel scale (linear below 1 kHz, logarithmic above).
fn hz_to_mel(f: f64) -> f64 {
    if f >= 1000.0 {
        15.0 + (f / 1000.0).ln() * (27.0 / 6.4f64.ln())
    } else {
        3.0 * f / 200.0
    }
}

fn mel_to_hz(m: f64) -> f64 {
    if m >= 15.0 {
        1000.0 * (6.4f64.ln() / 27.0 * (m - 15.0)).exp()
    } else {
        200.0 * m / 3.0
    }
}

/// 80 triangular filters from 0 to 8 kHz over the 201 FFT bins, area-normalised (Slaney).
fn mel_filters() -> Vec<[f64; BINS]> {
    let top = hz_to_mel(f64::from(RATE) / 2.0);
    let edges: Vec<f64> = (0..N_MELS + 2)
        .map(|i| mel_to_hz(top * i as f64 / (N_MELS + 1) as f64))
        .collect();
    (0..N_MELS)
        .map(|m| {
            let mut f = [0.0; BINS];
            let norm = 2.0 / (edges[m + 2] - edges[m]);
            for (b, v) in f.iter_mut().enumerate() {
                let hz = f64::from(RATE) / 2.0 * b as f64 / (BINS - 1) as f64;
                let down = (hz - edges[m]) / (edges[m + 1] - edges[m]);
                let up = (edges[m + 2] - hz) / (edges[m + 2] - edges[m + 1]);
                *v = down.min(up).max(0.0) * norm;
            }
            f
        })
        .collect()
}

/// The model: scores windows of features, one or several at once.
pub struct SmartTurn {
    plan: Plan,
}

impl SmartTurn {
    pub fn new() -> Result<Self, SmartTurnError> {
        Ok(SmartTurn { plan: plan()? })
    }

    /// Probabilities that each turn is complete, for `features` holding `n` windows back to back
    /// (`n * FEATURES_LEN` floats), one model run each (the plan is made for one window: tract
    /// plans a symbolic batch size 2-3x slower).
    pub fn score(&self, features: &[f32], out: &mut Vec<f32>) -> Result<(), SmartTurnError> {
        let err = SmartTurnError::from;
        out.clear();
        for window in features.chunks_exact(FEATURES_LEN) {
            let input = tract_ndarray::Array3::from_shape_vec((1, N_MELS, FRAMES), window.to_vec())
                .map_err(|e| SmartTurnError(e.into()))?;
            let result = self
                .plan
                .run(tvec!(input.into_tensor().into()))
                .map_err(err)?;
            let p = result[0].to_array_view::<f32>().map_err(err)?;
            out.push(p.iter().copied().next().unwrap_or(0.0));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/smart-turn-ref.json"
        );
        serde_json::from_slice(&std::fs::read(path).expect("reference")).expect("json")
    }

    fn clip(pcm: &[i16], c: &serde_json::Value) -> Vec<f32> {
        let (a, b) = (
            c["start"].as_u64().unwrap() as usize,
            c["end"].as_u64().unwrap() as usize,
        );
        pcm[a..b].iter().map(|&s| f32::from(s) / 32768.0).collect()
    }

    #[test]
    fn features_and_probabilities_match_onnxruntime() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
        let (rate, pcm) = tern_testkit::peer::load_wav(&format!("{dir}hello-16k.wav"));
        assert_eq!(rate, RATE);
        let r = reference();
        let clips = r["clips"].as_array().unwrap();
        let mut fx = WhisperFeatures::new();
        let model = SmartTurn::new().expect("tract loads the model");
        let exact = SmartTurn {
            plan: build(onnx_plan::Exp::Exact).expect("tract loads the model"),
        };
        let mut batch = Vec::new();
        let mut singles = Vec::new();
        for c in clips {
            let mut out = vec![0.0; FEATURES_LEN];
            let t = std::time::Instant::now();
            fx.compute(&clip(&pcm, c), &mut out);
            let features_us = t.elapsed().as_micros();
            let mean = out.iter().map(|&v| f64::from(v)).sum::<f64>() / FEATURES_LEN as f64;
            assert!(
                (mean - c["mean"].as_f64().unwrap()).abs() < 1e-3,
                "{}: mean {mean}",
                c["name"]
            );
            for p in c["points"].as_array().unwrap() {
                let (m, f, want) = (
                    p[0].as_u64().unwrap() as usize,
                    p[1].as_u64().unwrap() as usize,
                    p[2].as_f64().unwrap(),
                );
                let got = f64::from(out[m * FRAMES + f]);
                assert!(
                    (got - want).abs() < 2e-3,
                    "{} mel {m} frame {f}: {got} vs {want}",
                    c["name"]
                );
            }
            let t = std::time::Instant::now();
            let mut p = Vec::new();
            model.score(&out, &mut p).unwrap();
            println!(
                "SMART_TURN {} p={:.4} (onnxruntime {:.4}, as Pipecat runs it {:.4}) features {features_us} us, model {} us",
                c["name"], p[0], c["probability"].as_f64().unwrap(),
                c["pipecat_probability"].as_f64().unwrap(), t.elapsed().as_micros()
            );
            let want = c["probability"].as_f64().unwrap();
            // libc's exponential in the softmaxes: onnxruntime's answer.
            let mut e = Vec::new();
            exact.score(&out, &mut e).unwrap();
            assert!(
                (f64::from(e[0]) - want).abs() < 0.005,
                "{}: exact {} vs {want}",
                c["name"],
                e[0]
            );
            // The fast exponential the engine runs: within 0.15 in log-odds (0.012 at most in
            // probability on these clips; onnxruntime's own settings move them by 1.2), on the
            // same side of 0.5.
            let logit = |p: f32| (p / (1.0 - p)).ln();
            assert!(
                (logit(p[0]) - logit(e[0])).abs() < 0.15 && (p[0] >= 0.5) == (e[0] >= 0.5),
                "{}: fast {} vs exact {}",
                c["name"],
                p[0],
                e[0]
            );
            singles.push(p[0]);
            batch.extend_from_slice(&out);
        }
        // The finished greeting scores as complete, the cut after its first word as not.
        assert!(singles[0] > 0.5 && singles[1] < 0.5, "{singles:?}");
        // Several windows at once give the same answers, in order.
        let mut p = Vec::new();
        model.score(&batch, &mut p).unwrap();
        assert_eq!(p, singles);
    }
}
