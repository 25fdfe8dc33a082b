//! Voice activity: a backend trait and the per-frame adapter that feeds it.
//!
//! Backends differ in rate and chunk size (earshot: 256 samples at 16 kHz); the adapter resamples
//! model-rate frames to the backend's rate, cuts chunks and reports, per 20 ms frame, the highest
//! speech probability of the chunks completed in it.

use super::super::media::frame::{ModelRate, PcmFrame};
use super::super::media::resample::Resampler;

/// `--vad`: which voice detector a session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VadBackend {
    /// earshot, on the media core (about 6 µs per 16 ms chunk).
    #[default]
    Earshot,
    /// Silero v6 through tract-onnx, on the inference worker (tens of µs per 32 ms chunk); the
    /// probability comes back through the downlink ring.
    Silero,
}

impl VadBackend {
    /// Builds a detector of this backend for one stream (on the thread that will run it).
    pub fn detector(self) -> Result<Box<dyn VoiceDetector>, String> {
        match self {
            VadBackend::Earshot => Ok(Box::new(EarshotVad::default())),
            #[cfg(feature = "silero")]
            VadBackend::Silero => super::silero::SileroVad::new()
                .map(|v| Box::new(v) as Box<dyn VoiceDetector>)
                .map_err(|e| e.to_string()),
            #[cfg(not(feature = "silero"))]
            VadBackend::Silero => Err("this build has no Silero (feature \"silero\")".into()),
        }
    }

    /// Too slow for a media core: runs on the worker.
    pub fn runs_on_worker(self) -> bool {
        self == VadBackend::Silero
    }
}

/// A streaming voice detector. Cheap backends run on the media core; see `--vad`.
pub trait VoiceDetector: Send {
    /// Sample rate the backend expects.
    fn sample_rate(&self) -> u32;
    /// Samples per chunk.
    fn chunk_samples(&self) -> usize;
    /// Speech probability (0..1) of one chunk of exactly `chunk_samples()` samples.
    fn probability(&mut self, chunk: &[i16]) -> f32;
    fn reset(&mut self);
}

/// earshot: a small neural VAD compiled into the binary, about 6 µs per 16 ms chunk.
pub struct EarshotVad(Box<earshot::Detector>);

impl Default for EarshotVad {
    fn default() -> Self {
        EarshotVad(earshot::Detector::default_boxed())
    }
}

impl VoiceDetector for EarshotVad {
    fn sample_rate(&self) -> u32 {
        16_000
    }
    fn chunk_samples(&self) -> usize {
        256
    }
    fn probability(&mut self, chunk: &[i16]) -> f32 {
        self.0.predict_i16(chunk)
    }
    fn reset(&mut self) {
        self.0.reset();
    }
}

/// Adapts a `VoiceDetector` to 20 ms model-rate frames.
pub struct FrameVad {
    det: Box<dyn VoiceDetector>,
    resampler: Resampler,
    buf: Vec<i16>,
    last: f32,
}

impl std::fmt::Debug for FrameVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameVad")
            .field("last", &self.last)
            .finish()
    }
}

impl FrameVad {
    pub fn new(det: Box<dyn VoiceDetector>, rate: ModelRate) -> Self {
        let resampler = Resampler::new(rate.hz(), det.sample_rate());
        let cap = det.chunk_samples() * 3;
        FrameVad {
            det,
            resampler,
            buf: Vec::with_capacity(cap),
            last: 0.0,
        }
    }

    /// Speech probability for this frame.
    pub fn frame_probability(&mut self, frame: &PcmFrame) -> f32 {
        self.resampler.process(frame.samples(), &mut self.buf);
        let n = self.det.chunk_samples();
        let mut best: Option<f32> = None;
        let mut at = 0;
        while self.buf.len() - at >= n {
            let p = self.det.probability(&self.buf[at..at + n]);
            best = Some(best.map_or(p, |b: f32| b.max(p)));
            at += n;
        }
        self.buf.drain(..at);
        if let Some(b) = best {
            self.last = b;
        }
        self.last
    }
}
