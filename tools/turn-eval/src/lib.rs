//! The turn-taking evaluation: every clip of a labeled set (`make_set.py`) goes through a VAD
//! backend and a turn detector frame by frame, in virtual time, exactly as a session runs them, and
//! the releases are scored against the ground truth.
//!
//! Per detector: end-of-turn delay after the true end (p50, p90), false cut-ins (releases inside a
//! mid-sentence pause, per pause), missed turns (no release after the true end). Per barge-in guard:
//! reaction time from the start of speech over a playing reply, and false barge-ins on clips that
//! must not interrupt (backchannels, noise alone, the reply's own echo).

use std::path::Path;

use anyhow::Context;
use serde_json::Value;
use tern_engine::core::media::frame::{ModelRate, PcmFrame, FRAME_MS};
use tern_engine::core::turn::barge_in::{BargeInGuard, Gate, Release};
use tern_engine::core::turn::detector::{ServerVadSettings, TurnDetector, TurnEvent};
use tern_engine::core::turn::prosody::{ProsodyTracker, TurnEndCues};
use tern_engine::core::turn::semantic::Eagerness;
use tern_engine::core::turn::vad::{EarshotVad, FrameVad, VoiceDetector};

/// The set's sample rate (16 kHz, a model rate the engine supports).
pub const RATE: ModelRate = ModelRate::Hz16000;

#[derive(Debug, Clone)]
pub struct Clip {
    pub file: String,
    pub kind: String,
    pub snr_db: Option<i64>,
    pub segments_ms: Vec<(u64, u64)>,
    pub pauses_ms: Vec<(u64, u64)>,
    pub true_end_ms: u64,
    pub samples: Vec<i16>,
}

impl Clip {
    /// A user turn (scored for end of turn), as opposed to a backchannel or noise alone.
    pub fn is_turn(&self) -> bool {
        matches!(self.kind.as_str(), "paused" | "plain" | "prompt")
    }
}

/// Loads `labels.json` and every clip of a set directory.
pub fn load_set(dir: &Path) -> anyhow::Result<Vec<Clip>> {
    let labels = std::fs::read_to_string(dir.join("labels.json")).with_context(|| {
        format!(
            "{}/labels.json (make the set with make_set.py)",
            dir.display()
        )
    })?;
    let v: Value = serde_json::from_str(&labels).context("labels.json")?;
    let pairs = |x: &Value| -> Vec<(u64, u64)> {
        x.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| Some((p.get(0)?.as_u64()?, p.get(1)?.as_u64()?)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let clips = v["clips"].as_array().context("labels.json: clips")?;
    clips
        .iter()
        .map(|c| {
            let file = c["file"].as_str().context("clip file")?.to_string();
            let (rate, samples) =
                tern_engine::peer::load_wav(&dir.join(&file).display().to_string());
            anyhow::ensure!(rate == RATE.hz(), "{file}: {rate} Hz, want {}", RATE.hz());
            Ok(Clip {
                kind: c["kind"].as_str().unwrap_or("").to_string(),
                snr_db: c["snr_db"].as_i64(),
                segments_ms: pairs(&c["segments_ms"]),
                pauses_ms: pairs(&c["pauses_ms"]),
                true_end_ms: c["true_end_ms"].as_u64().unwrap_or(0),
                file,
                samples,
            })
        })
        .collect()
}

/// A VAD backend by name (`--vad`).
pub fn vad_backend(name: &str) -> Option<Box<dyn VoiceDetector>> {
    match name {
        "earshot" => Some(Box::new(EarshotVad::default())),
        _ => None,
    }
}

/// A turn detector configuration to evaluate.
#[derive(Debug, Clone, Copy)]
pub enum DetectorConfig {
    /// server_vad: a fixed silence timer of this many ms.
    Silence(u32),
    Semantic(Eagerness),
}

impl DetectorConfig {
    pub fn label(&self) -> String {
        match self {
            DetectorConfig::Silence(ms) => format!("server_vad silence {ms} ms"),
            DetectorConfig::Semantic(e) => format!("semantic_vad {}", e.label()),
        }
    }

    fn settings(&self) -> ServerVadSettings {
        match *self {
            DetectorConfig::Silence(ms) => ServerVadSettings {
                silence_duration_ms: ms,
                ..Default::default()
            },
            DetectorConfig::Semantic(e) => ServerVadSettings {
                eagerness: Some(e),
                ..Default::default()
            },
        }
    }
}

/// The configurations the report compares.
pub fn detector_configs() -> Vec<DetectorConfig> {
    vec![
        DetectorConfig::Silence(500),
        DetectorConfig::Silence(800),
        DetectorConfig::Silence(1200),
        DetectorConfig::Semantic(Eagerness::High),
        DetectorConfig::Semantic(Eagerness::Medium),
        DetectorConfig::Semantic(Eagerness::Low),
    ]
}

/// Per-frame VAD probabilities of a clip (the same for every detector).
pub fn probabilities(vad: &str, clip: &Clip) -> anyhow::Result<Vec<f32>> {
    let det = vad_backend(vad).with_context(|| format!("unknown VAD backend {vad}"))?;
    let mut fv = FrameVad::new(det, RATE);
    let n = RATE.frame_samples();
    Ok(clip
        .samples
        .chunks_exact(n)
        .map(|c| fv.frame_probability(&PcmFrame::from_slice(c)))
        .collect())
}

/// When a detector released turns in one clip (ms of clip time at each speech_stopped).
pub fn releases(cfg: DetectorConfig, clip: &Clip, probs: &[f32]) -> Vec<u64> {
    let mut d = TurnDetector::new(cfg.settings());
    let n = RATE.frame_samples();
    let mut out = Vec::new();
    for (i, (c, &p)) in clip.samples.chunks_exact(n).zip(probs).enumerate() {
        if let Some(TurnEvent::SpeechStopped { .. }) = d.push_frame(i as u64, p, c, RATE.hz()) {
            out.push((i as u64 + 1) * FRAME_MS);
        }
    }
    out
}

/// The prosodic cues at each pause onset a detector sees in a turn, labeled `true` where the turn
/// really ended and `false` inside a mid-sentence pause (for fitting `semantic::WEIGHTS`).
pub fn cue_samples(clip: &Clip, probs: &[f32]) -> Vec<(TurnEndCues, bool, i64)> {
    let settings = ServerVadSettings::default();
    let mut d = TurnDetector::new(settings);
    let mut prosody = ProsodyTracker::default();
    let n = RATE.frame_samples();
    let mut out = Vec::new();
    let mut was_voiced = false;
    for (i, (c, &p)) in clip.samples.chunks_exact(n).zip(probs).enumerate() {
        let voiced = p >= settings.threshold;
        prosody.push(c, RATE.hz(), voiced);
        let speaking = d.is_speaking();
        d.push(i as u64, p);
        if speaking && was_voiced && !voiced {
            let t = i as u64 * FRAME_MS;
            // With the time since the true end, or the silence left in the pause.
            if t + 100 >= clip.true_end_ms && t <= clip.true_end_ms + 400 {
                out.push((prosody.cues(), true, t as i64 - clip.true_end_ms as i64));
            } else if let Some((_, e)) =
                clip.pauses_ms.iter().find(|(s, e)| t + 100 >= *s && t < *e)
            {
                out.push((prosody.cues(), false, *e as i64 - t as i64));
            }
        }
        was_voiced = voiced;
    }
    out
}

/// End-of-turn scores of one detector over a set.
#[derive(Debug, Clone, Default)]
pub struct TurnScore {
    pub turns: usize,
    pub pauses: usize,
    pub cut_ins: usize,
    /// Turns released at least once before their true end (at a pause or anywhere else).
    pub cut_early: usize,
    pub missed: usize,
    /// Delay of the release after the true end, per turn that was released (ms).
    pub delays: Vec<u64>,
}

impl TurnScore {
    pub fn add(&mut self, clip: &Clip, releases: &[u64]) {
        self.turns += 1;
        self.pauses += clip.pauses_ms.len();
        // A release inside a pause (or up to 100 ms after speech resumed, the VAD's lag) cuts in.
        self.cut_ins += clip
            .pauses_ms
            .iter()
            .filter(|(s, e)| releases.iter().any(|r| r > s && *r <= e + 100))
            .count();
        // Labels come from an amplitude threshold, so a breath or a fade can sit past the last
        // word: a release this close before the labeled end counts as releasing at the end.
        const END_TOLERANCE_MS: u64 = 150;
        let end = clip.true_end_ms.saturating_sub(END_TOLERANCE_MS);
        // A release within 200 ms of the first word closes a turn that noise opened before it:
        // a false start (the same for every detector), not a cut into the user's turn.
        let first_speech = clip.segments_ms.first().map_or(0, |s| s.0) + 200;
        if releases.iter().any(|&r| r > first_speech && r <= end) {
            self.cut_early += 1;
        }
        match releases.iter().find(|&&r| r > end) {
            Some(r) => self.delays.push(r.saturating_sub(clip.true_end_ms)),
            None if releases.is_empty() => self.missed += 1,
            None => {}
        }
    }

    pub fn cut_in_rate(&self) -> f64 {
        self.cut_ins as f64 / self.pauses.max(1) as f64
    }

    pub fn delay_percentile(&self, q: f64) -> Option<u64> {
        percentile(&self.delays, q)
    }
}

pub fn percentile(v: &[u64], q: f64) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let i = ((s.len() as f64 * q).ceil() as usize).clamp(1, s.len()) - 1;
    Some(s[i])
}

/// Barge-in: the time from the start of speech to the interruption, while a reply plays.
pub fn barge_in_at(probs: &[f32], min_ms: u32) -> Option<u64> {
    let settings = ServerVadSettings::default();
    let mut d = TurnDetector::new(settings);
    let mut guard = BargeInGuard::new(min_ms);
    for (i, &p) in probs.iter().enumerate() {
        let voiced = p >= settings.threshold;
        let ev = d.push(i as u64, p);
        let at = (i as u64 + 1) * FRAME_MS;
        if let Some(Release::BargeIn(_)) = guard.on_frame(voiced, true) {
            return Some(at);
        }
        if let Some(ev) = ev {
            match guard.on_turn(ev, true) {
                Gate::Pass(TurnEvent::SpeechStarted { .. }) => return Some(at),
                Gate::Rejected => d.reset(),
                _ => {}
            }
        }
    }
    None
}

/// Barge-in scores of one guard setting.
#[derive(Debug, Clone, Default)]
pub struct BargeScore {
    pub reactions: Vec<u64>,
    pub turns: usize,
    pub must_not: usize,
    pub false_barge_ins: usize,
}

impl BargeScore {
    pub fn false_rate(&self) -> f64 {
        self.false_barge_ins as f64 / self.must_not.max(1) as f64
    }
}

/// Everything the report prints, for one VAD backend.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub vad: String,
    pub turns: Vec<(DetectorConfig, TurnScore)>,
    pub barge: Vec<(u32, BargeScore)>,
}

pub fn evaluate(vad: &str, clips: &[Clip]) -> anyhow::Result<Evaluation> {
    let configs = detector_configs();
    let mut turns: Vec<(DetectorConfig, TurnScore)> =
        configs.iter().map(|c| (*c, TurnScore::default())).collect();
    let mut barge: Vec<(u32, BargeScore)> = [200, 400]
        .iter()
        .map(|m| (*m, BargeScore::default()))
        .collect();
    for clip in clips {
        let probs = probabilities(vad, clip)?;
        if clip.is_turn() {
            for (cfg, score) in &mut turns {
                score.add(clip, &releases(*cfg, clip, &probs));
            }
        }
        for (min_ms, score) in &mut barge {
            let at = barge_in_at(&probs, *min_ms);
            if clip.is_turn() {
                score.turns += 1;
                if let (Some(at), Some((start, _))) = (at, clip.segments_ms.first()) {
                    score.reactions.push(at.saturating_sub(*start));
                }
            } else {
                score.must_not += 1;
                score.false_barge_ins += usize::from(at.is_some());
            }
        }
    }
    Ok(Evaluation {
        vad: vad.to_string(),
        turns,
        barge,
    })
}

fn ms(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// The markdown tables of an evaluation.
pub fn report(e: &Evaluation) -> String {
    let mut o = format!(
        "### VAD backend: {}\n\n| detector | turns | end-of-turn delay p50 (ms) | p90 (ms) | false cut-ins (per pause) | turns cut before their end | missed turns |\n|---|---|---|---|---|---|---|\n",
        e.vad
    );
    for (cfg, s) in &e.turns {
        o += &format!(
            "| {} | {} | {} | {} | {:.1}% ({}/{}) | {:.1}% ({}/{}) | {} |\n",
            cfg.label(),
            s.turns,
            ms(s.delay_percentile(0.5)),
            ms(s.delay_percentile(0.9)),
            100.0 * s.cut_in_rate(),
            s.cut_ins,
            s.pauses,
            100.0 * s.cut_early as f64 / s.turns.max(1) as f64,
            s.cut_early,
            s.turns,
            s.missed
        );
    }
    o += "\n| barge-in guard | reaction p50 (ms) | p90 (ms) | turns interrupted | false barge-ins (backchannel, noise) |\n|---|---|---|---|---|\n";
    for (min_ms, s) in &e.barge {
        o += &format!(
            "| --barge-in-min-ms {} | {} | {} | {}/{} | {:.1}% ({}/{}) |\n",
            min_ms,
            ms(percentile(&s.reactions, 0.5)),
            ms(percentile(&s.reactions, 0.9)),
            s.reactions.len(),
            s.turns,
            100.0 * s.false_rate(),
            s.false_barge_ins,
            s.must_not
        );
    }
    o
}
