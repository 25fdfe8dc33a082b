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

/// Frames of digital silence in a row (DTX fills, a muted sender) that still go through the
/// detector, so that its context and recurrent state see the pause after speech; after them the
/// detector rests, reports 0 (digital silence is no speech, whatever a lagging detector would still
/// say) at no cost, and starts afresh with the next frame that carries sound. 100 ms: earshot's
/// context is 48 ms and by then its output on zeros sits at its floor (about 0.2, under any
/// threshold; tests below). With browsers' DTX most of a listening user's frames are such fills,
/// so this is most of the VAD's cost while the user is silent.
pub const SILENT_FRAMES_BEFORE_REST: u32 = 5;

/// Adapts a `VoiceDetector` to 20 ms model-rate frames.
pub struct FrameVad {
    det: Box<dyn VoiceDetector>,
    resampler: Resampler,
    buf: Vec<i16>,
    last: f32,
    /// Digital-silence frames in a row; the detector rests past `rest_after` of them.
    silent_run: u32,
    rest_after: u32,
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
            silent_run: 0,
            rest_after: SILENT_FRAMES_BEFORE_REST,
        }
    }

    /// Whether the detector is resting through a run of digital silence.
    pub fn resting(&self) -> bool {
        self.silent_run > self.rest_after
    }

    /// Speech probability for this frame.
    pub fn frame_probability(&mut self, frame: &PcmFrame) -> f32 {
        if frame.is_digital_silence() {
            self.silent_run = self.silent_run.saturating_add(1);
            if self.resting() {
                self.last = 0.0;
                return 0.0;
            }
        } else {
            if self.resting() {
                self.det.reset();
                self.resampler.reset();
                self.buf.clear();
            }
            self.silent_run = 0;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const THRESHOLD: f32 = 0.5;

    fn speech() -> Vec<PcmFrame> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/hello-24k.wav");
        let (_, pcm) = tern_testkit::peer::load_wav(path);
        pcm.chunks_exact(480).map(PcmFrame::from_slice).collect()
    }

    /// Speech, `gap` frames of digital silence, the same speech again.
    fn call(gap: usize) -> Vec<PcmFrame> {
        let s = speech();
        let mut v = s.clone();
        v.extend(std::iter::repeat_n(PcmFrame::silence(480), gap));
        v.extend(s);
        v
    }

    fn probabilities(frames: &[PcmFrame], rest_after: u32) -> Vec<f32> {
        let mut v = FrameVad::new(Box::new(EarshotVad::default()), ModelRate::Hz24000);
        v.rest_after = rest_after;
        frames.iter().map(|f| v.frame_probability(f)).collect()
    }

    #[test]
    fn idle_detector_output_on_silence_has_settled_before_it_rests() {
        let n = speech().len();
        let gap = 50;
        let always = probabilities(&call(gap), u32::MAX);
        // What a detector that never rests says once the pause is SILENT_FRAMES_BEFORE_REST old.
        let rest = n + SILENT_FRAMES_BEFORE_REST as usize;
        let settled = &always[rest..n + gap];
        let top = settled.iter().cloned().fold(0.0, f32::max);
        let low = settled.iter().cloned().fold(1.0, f32::min);
        assert!(
            top < THRESHOLD - 0.2 && top - low < 0.05,
            "earshot on zeros after the rest point: {low}..{top}"
        );
        let resting = probabilities(&call(gap), SILENT_FRAMES_BEFORE_REST);
        assert!(resting[rest..n + gap].iter().all(|&p| p == 0.0));
        // Up to the rest point both are the same detector.
        assert_eq!(always[..rest], resting[..rest]);
    }

    #[test]
    fn speech_after_a_rest_is_judged_as_after_a_silent_pause() {
        let n = speech().len();
        for gap in [10, 25, 100] {
            let always = probabilities(&call(gap), u32::MAX);
            let resting = probabilities(&call(gap), SILENT_FRAMES_BEFORE_REST);
            let voiced = |p: &[f32]| p.iter().map(|&x| x >= THRESHOLD).collect::<Vec<_>>();
            let (a, r) = (voiced(&always[n + gap..]), voiced(&resting[n + gap..]));
            // The detector that rested starts as at the start of a call: onset within a frame.
            let onset = |v: &[bool]| v.iter().position(|&x| x).unwrap();
            assert!(
                onset(&a).abs_diff(onset(&r)) <= 1,
                "gap {gap}: speech onset at frame {} against {}",
                onset(&r),
                onset(&a)
            );
            let differ = a.iter().zip(&r).filter(|(x, y)| x != y).count();
            assert!(
                differ * 50 <= a.len(),
                "gap {gap}: {differ} of {} second-turn frames judged otherwise",
                a.len()
            );
        }
    }

    #[test]
    fn a_frame_with_any_sound_wakes_the_detector() {
        let mut v = FrameVad::new(Box::new(EarshotVad::default()), ModelRate::Hz24000);
        for _ in 0..20 {
            v.frame_probability(&PcmFrame::silence(480));
        }
        assert!(v.resting());
        let mut f = PcmFrame::silence(480);
        f.samples_mut()[100] = 1;
        v.frame_probability(&f);
        assert!(!v.resting());
    }
}
