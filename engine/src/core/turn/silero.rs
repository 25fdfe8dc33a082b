//! Silero VAD v6 (MIT, github.com/snakers4/silero-vad) through tract-onnx, pure Rust.
//!
//! The model ships inside the binary (`engine/models/silero_vad_v6_16k.onnx`, 1.2 MB, made from the
//! PyPI wheel by `tools/silero/prepare_model.py`: sample rate pinned to 16 kHz, shapes fixed). Each
//! call takes 512 new samples plus the 64 before them and carries a [2, 1, 128] recurrent state, as
//! Silero's own wrapper does. It costs tens of microseconds per chunk, so it never runs on a media
//! core: `--vad silero` runs it on the inference workers (see `shell::worker`).

use std::sync::OnceLock;

use tract_onnx::prelude::*;

use super::onnx_plan::{self, Plan};
use super::vad::VoiceDetector;

const MODEL: &[u8] = include_bytes!("../../../models/silero_vad_v6_16k.onnx");
const CHUNK: usize = 512;
const CONTEXT: usize = 64;

#[derive(Debug, thiserror::Error)]
#[error("silero model: {0}")]
pub struct SileroError(#[from] onnx_plan::ModelError);

impl From<TractError> for SileroError {
    fn from(e: TractError) -> Self {
        SileroError(e.into())
    }
}

/// The optimized model, built once per process and shared by every session's detector.
fn plan() -> Result<Plan, SileroError> {
    static PLAN: OnceLock<Result<Plan, onnx_plan::ModelError>> = OnceLock::new();
    PLAN.get_or_init(|| onnx_plan::build(MODEL, onnx_plan::Exp::Fast, Ok))
        .clone()
        .map_err(SileroError::from)
}

/// One stream's Silero detector: the shared model plus this stream's state and context.
pub struct SileroVad {
    plan: Plan,
    state: Tensor,
    context: [f32; CONTEXT],
    input: Vec<f32>,
}

impl SileroVad {
    pub fn new() -> Result<Self, SileroError> {
        Ok(SileroVad {
            plan: plan()?,
            state: Tensor::zero::<f32>(&[2, 1, 128]).map_err(|e| SileroError(e.into()))?,
            context: [0.0; CONTEXT],
            input: Vec::with_capacity(CONTEXT + CHUNK),
        })
    }

    fn infer(&mut self, chunk: &[i16]) -> Result<f32, SileroError> {
        let err = SileroError::from;
        self.input.clear();
        self.input.extend_from_slice(&self.context);
        self.input
            .extend(chunk.iter().map(|&s| f32::from(s) / 32768.0));
        let x = Tensor::from_shape(&[1, CONTEXT + CHUNK], &self.input).map_err(err)?;
        let state = std::mem::replace(&mut self.state, Tensor::zero::<f32>(&[0]).map_err(err)?);
        let mut out = self.plan.run(tvec!(x.into(), state.into())).map_err(err)?;
        let p = out[0]
            .as_slice::<f32>()
            .map_err(err)?
            .first()
            .copied()
            .unwrap_or(0.0);
        self.state = out.remove(1).into_tensor();
        let tail = &self.input[CHUNK..];
        self.context.copy_from_slice(tail);
        Ok(p)
    }
}

impl VoiceDetector for SileroVad {
    fn sample_rate(&self) -> u32 {
        16_000
    }
    fn chunk_samples(&self) -> usize {
        CHUNK
    }
    fn probability(&mut self, chunk: &[i16]) -> f32 {
        match self.infer(chunk) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("silero inference failed: {e}");
                self.reset();
                0.0
            }
        }
    }
    fn reset(&mut self) {
        if let Ok(z) = Tensor::zero::<f32>(&[2, 1, 128]) {
            self.state = z;
        }
        self.context = [0.0; CONTEXT];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Matches onnxruntime (Silero's reference runtime) on the same audio and model, chunk by
    /// chunk, with state and context carried over.
    #[test]
    fn matches_onnxruntime_reference() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
        let (rate, pcm) = tern_testkit::peer::load_wav(&format!("{dir}hello-16k.wav"));
        assert_eq!(rate, 16_000);
        let reference: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{dir}silero-ref-hello-16k.json")).expect("ref"),
        )
        .expect("json");
        let want: Vec<f64> = reference["probabilities"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|v| v.as_f64())
            .collect();
        let mut vad = SileroVad::new().expect("model loads");
        let got: Vec<f32> = pcm
            .chunks_exact(CHUNK)
            .map(|c| vad.probability(c))
            .collect();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() < 1e-3,
                "chunk {i}: tract {g} vs onnxruntime {w}"
            );
        }
        // It hears the speech and the silence around it.
        assert!(got.iter().any(|&p| p > 0.9) && got[..5].iter().all(|&p| p < 0.2));
    }
}
