//! The turn-taking evaluation: every clip of a labeled set (`make_set.py`) goes through a VAD
//! backend and a turn detector frame by frame, in virtual time, exactly as a session runs them, and
//! the releases are scored against the ground truth.
//!
//! Per detector: end-of-turn delay after the true end (p50, p90), false cut-ins (releases inside a
//! mid-sentence pause, per pause), missed turns (no release after the true end). Per barge-in guard:
//! reaction time from the start of speech over a playing reply, and false barge-ins on clips that
//! must not interrupt (backchannels, noise alone, the reply's own echo).

pub mod smart_turn_eval;

use smart_turn_eval::ModelScores;

use std::path::Path;

use anyhow::Context;
use serde_json::Value;
use tern_engine::core::media::denoise::Denoiser;
use tern_engine::core::media::frame::{ModelRate, PcmFrame, FRAME_MS};
use tern_engine::core::turn::barge_in::{BargeInGuard, Gate, Release};
use tern_engine::core::turn::detector::{ServerVadSettings, TurnDetector, TurnEvent};
use tern_engine::core::turn::echo_guard::EchoGuard;
use tern_engine::core::turn::prosody::{ProsodyTracker, TurnEndCues};
use tern_engine::core::turn::semantic::Eagerness;
use tern_engine::core::turn::turn_model::{ModelRule, TurnModel};
use tern_engine::core::turn::vad::{EarshotVad, FrameVad, VadBackend, VoiceDetector};

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
    /// Where the speech comes from (a synthesizer voice, a recorded speaker): the labels'
    /// `source`, else the first word of their `voice`, else "set".
    pub source: String,
    /// clean, 20db, 10db, 5db, tel-clean, tel-10db (held-out sets); from `snr_db` otherwise.
    pub condition: String,
    /// What the turn is: filler, list, number, restart, clause, statement, question (held-out
    /// sets); the kind otherwise.
    pub turn_type: String,
    /// The samples went through the noise suppressor (`denoise`), as a session's would with
    /// `audio.input.noise_reduction` set; the reply's echo is suppressed the same way.
    pub denoised: bool,
}

/// `samples` (16 kHz) through RNNoise as a session runs it on its uplink (`--noise-reduction`),
/// 20 ms at a time; a last partial frame is dropped.
pub fn denoised(samples: &[i16]) -> Vec<i16> {
    let mut d = Denoiser::new(RATE.hz());
    let mut out = Vec::with_capacity(samples.len());
    for c in samples.chunks_exact(RATE.frame_samples()) {
        let mut f = PcmFrame::from_slice(c);
        d.process(&mut f);
        out.extend_from_slice(f.samples());
    }
    out
}

impl Clip {
    /// The same clip through the noise suppressor.
    pub fn denoise(mut self) -> Self {
        self.samples = denoised(&self.samples);
        self.denoised = true;
        self
    }
}

impl Clip {
    /// A user turn (scored for end of turn), as opposed to a backchannel or noise alone.
    pub fn is_turn(&self) -> bool {
        matches!(self.kind.as_str(), "paused" | "plain" | "prompt")
    }

    /// What a silence the VAD hears begin at `t` ms is: the turn's true end (up to 100 ms before
    /// it, for the VAD's lag, or 400 ms after), a labeled mid-sentence pause, or neither.
    pub fn silence_at(&self, t: u64) -> SilenceAt {
        if t + 100 >= self.true_end_ms && t <= self.true_end_ms + 400 {
            return SilenceAt::End;
        }
        match self.pauses_ms.iter().find(|(s, e)| t + 100 >= *s && t < *e) {
            Some(&(start, end)) => SilenceAt::Pause { start, end },
            None => SilenceAt::Other,
        }
    }
}

/// See `Clip::silence_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceAt {
    End,
    /// A labeled pause, from `start` to `end` ms of the clip.
    Pause {
        start: u64,
        end: u64,
    },
    /// A gap inside a phrase, or silence after a release.
    Other,
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
                tern_testkit::peer::load_wav(&dir.join(&file).display().to_string());
            anyhow::ensure!(rate == RATE.hz(), "{file}: {rate} Hz, want {}", RATE.hz());
            let text = |k: &str| c[k].as_str().map(str::to_string);
            let snr = c["snr_db"].as_i64();
            Ok(Clip {
                // Fit sets name the voice ("en-us+m3 s140", "asterisk en (Allison)"): its first
                // word is the source.
                source: text("source")
                    .or_else(|| {
                        let v = text("voice")?;
                        v.split_whitespace().next().map(str::to_string)
                    })
                    .unwrap_or_else(|| "set".into()),
                condition: text("condition")
                    .unwrap_or_else(|| snr.map_or("clean".into(), |s| format!("{s}db"))),
                turn_type: text("turn_type").unwrap_or_else(|| text("kind").unwrap_or_default()),
                kind: c["kind"].as_str().unwrap_or("").to_string(),
                snr_db: snr,
                segments_ms: pairs(&c["segments_ms"]),
                pauses_ms: pairs(&c["pauses_ms"]),
                true_end_ms: c["true_end_ms"].as_u64().unwrap_or(0),
                file,
                samples,
                denoised: false,
            })
        })
        .collect()
}

/// A VAD backend by name (`--vad`).
pub fn vad_backend(name: &str) -> Option<Box<dyn VoiceDetector>> {
    match name {
        "earshot" => Some(Box::new(EarshotVad::default())),
        "silero" => VadBackend::Silero.detector().ok(),
        _ => None,
    }
}

/// A turn detector configuration to evaluate.
#[derive(Debug, Clone, Copy)]
pub enum DetectorConfig {
    /// server_vad: a fixed silence timer of this many ms.
    Silence(u32),
    Semantic(Eagerness),
    /// semantic_vad with `--turn-model smart-turn` at this eagerness (its own rule).
    Model(Eagerness),
    /// semantic_vad with the model and another rule (fitting, Pipecat's).
    Rule(Eagerness, ModelRule),
}

impl DetectorConfig {
    pub fn label(&self) -> String {
        match self {
            DetectorConfig::Silence(ms) => format!("server_vad silence {ms} ms"),
            DetectorConfig::Semantic(e) => format!("semantic_vad {}", e.label()),
            DetectorConfig::Model(e) => format!("semantic_vad {}, smart-turn", e.label()),
            DetectorConfig::Rule(_, r) if *r == smart_turn_eval::PIPECAT => {
                "Smart Turn, Pipecat's rule (complete at 0.5, else 3 s)".into()
            }
            DetectorConfig::Rule(e, r) => format!(
                "{} pooled fit: complete at {}, else {} ms, under {}: {} ms",
                e.label(),
                r.complete_at,
                r.unsure_ms,
                r.unfinished_below,
                r.unfinished_ms
            ),
        }
    }

    fn settings(&self) -> ServerVadSettings {
        let (eagerness, turn_model) = match *self {
            DetectorConfig::Silence(ms) => {
                return ServerVadSettings {
                    silence_duration_ms: ms,
                    ..Default::default()
                }
            }
            DetectorConfig::Semantic(e) => (e, TurnModel::Prosody),
            DetectorConfig::Model(e) | DetectorConfig::Rule(e, _) => (e, TurnModel::SmartTurn),
        };
        ServerVadSettings {
            eagerness: Some(eagerness),
            turn_model,
            ..Default::default()
        }
    }

    pub fn uses_model(&self) -> bool {
        matches!(self, DetectorConfig::Model(_) | DetectorConfig::Rule(..))
    }
}

/// The configurations the report compares; with the model, `--turn-model smart-turn` at each
/// eagerness and Pipecat's rule too.
pub fn detector_configs(model: bool) -> Vec<DetectorConfig> {
    let mut v = vec![
        DetectorConfig::Silence(500),
        DetectorConfig::Silence(800),
        DetectorConfig::Silence(1200),
        DetectorConfig::Semantic(Eagerness::High),
        DetectorConfig::Semantic(Eagerness::Medium),
        DetectorConfig::Semantic(Eagerness::Low),
    ];
    if model {
        v.extend([
            DetectorConfig::Model(Eagerness::High),
            DetectorConfig::Model(Eagerness::Medium),
            DetectorConfig::Model(Eagerness::Low),
            DetectorConfig::Rule(Eagerness::Medium, smart_turn_eval::PIPECAT),
        ]);
        v.extend(
            smart_turn_eval::POOLED_FIT
                .iter()
                .map(|(e, r)| DetectorConfig::Rule(*e, *r)),
        );
    }
    v
}

/// Per-frame VAD probabilities of 16 kHz audio (the same for every detector).
pub fn probabilities(vad: &str, samples: &[i16]) -> anyhow::Result<Vec<f32>> {
    let det = vad_backend(vad).with_context(|| format!("unknown VAD backend {vad}"))?;
    let mut fv = FrameVad::new(det, RATE);
    let n = RATE.frame_samples();
    Ok(samples
        .chunks_exact(n)
        .map(|c| fv.frame_probability(&PcmFrame::from_slice(c)))
        .collect())
}

/// When a detector released turns in one clip (ms of clip time at each speech_stopped). A
/// detector with the model gets its answers from `model`, `model.delay_frames` after it asked.
pub fn releases(
    cfg: DetectorConfig,
    clip: &Clip,
    probs: &[f32],
    mut model: Option<&mut ModelScores>,
) -> anyhow::Result<Vec<u64>> {
    let mut d = TurnDetector::new(cfg.settings());
    if let DetectorConfig::Rule(_, r) = cfg {
        d = d.with_model_rule(r);
    }
    let n = RATE.frame_samples();
    let mut out = Vec::new();
    // (frame the answer arrives, frame asked about, answer)
    let mut pending: Vec<(u64, u64, f32)> = Vec::new();
    for (i, (c, &p)) in clip.samples.chunks_exact(n).zip(probs).enumerate() {
        let i = i as u64;
        let mut ev = d.push_frame(i, p, c, RATE.hz());
        if let Some(asked) = d.take_model_request() {
            let m = model
                .as_deref_mut()
                .context("a smart-turn detector needs the model's answers")?;
            pending.push((asked + m.delay_frames, asked, m.get(clip, asked)?));
        }
        while let Some(k) = pending.iter().position(|(due, ..)| *due <= i) {
            let (_, asked, answer) = pending.swap_remove(k);
            ev = ev.or(d.on_model_score(asked, answer));
        }
        if let Some(TurnEvent::SpeechStopped { .. }) = ev {
            out.push((i + 1) * FRAME_MS);
        }
    }
    Ok(out)
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
        prosody.push(i as u64, c, RATE.hz());
        prosody.set_voiced(i as u64, voiced);
        let speaking = d.is_speaking();
        d.push(i as u64, p);
        if speaking && was_voiced && !voiced {
            let t = i as u64 * FRAME_MS;
            // With the time since the true end, or the silence left in the pause.
            match clip.silence_at(t) {
                SilenceAt::End => out.push((
                    prosody.cues(i as u64),
                    true,
                    t as i64 - clip.true_end_ms as i64,
                )),
                SilenceAt::Pause { end, .. } => {
                    out.push((prosody.cues(i as u64), false, end as i64 - t as i64))
                }
                SilenceAt::Other => {}
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

/// A barge-in guard setting to evaluate.
#[derive(Debug, Clone, Copy)]
pub struct GuardConfig {
    pub min_ms: u32,
    /// `--barge-in-confirm-ms` (0: drop the reply at `min_ms`).
    pub confirm_ms: u32,
    pub echo_guard: bool,
}

impl GuardConfig {
    pub fn label(&self) -> String {
        let confirm = match self.confirm_ms {
            0 => "off".to_string(),
            ms => format!("{ms} ms"),
        };
        let echo = if self.echo_guard { "on" } else { "off" };
        format!(
            "min {} ms, confirm {confirm}, echo guard {echo}",
            self.min_ms
        )
    }
}

pub fn guard_configs() -> Vec<GuardConfig> {
    [(200, 0, false), (200, 0, true), (200, 600, true)]
        .into_iter()
        .map(|(min_ms, confirm_ms, echo_guard)| GuardConfig {
            min_ms,
            confirm_ms,
            echo_guard,
        })
        .collect()
}

/// What speech over a playing reply did to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BargeIn {
    /// When (ms of clip time) the reply's audio stopped, if it did.
    pub stopped_at: Option<u64>,
    /// The reply was dropped (not just paused and resumed).
    pub interrupted: bool,
}

/// Barge-in, as a session runs it while a reply (`reply`, 16 kHz) plays: whether and when speech
/// heard in `near` stops the reply, and whether it drops it.
pub fn barge_in_at(near: &[i16], probs: &[f32], reply: &[i16], g: GuardConfig) -> BargeIn {
    let settings = ServerVadSettings::default();
    let mut d = TurnDetector::new(settings);
    let mut guard = BargeInGuard::with_confirm(g.min_ms, g.confirm_ms);
    let mut out = BargeIn::default();
    let mut echo = EchoGuard::default();
    let n = RATE.frame_samples();
    let mut replies = reply.chunks_exact(n).cycle();
    for (i, (frame, &p)) in near.chunks_exact(n).zip(probs).enumerate() {
        if let Some(r) = replies.next() {
            echo.on_reply_frame(r);
        }
        echo.on_uplink_frame(frame);
        let is_echo = g.echo_guard && echo.is_echo();
        let voiced = p >= settings.threshold;
        let ev = d.push(i as u64, p);
        let at = (i as u64 + 1) * FRAME_MS;
        match guard.on_frame(voiced, is_echo, true) {
            Some(Release::Pause) => {
                out.stopped_at = out.stopped_at.or(Some(at));
            }
            Some(Release::BargeIn(_)) => {
                out.stopped_at = out.stopped_at.or(Some(at));
                out.interrupted = true;
                return out;
            }
            Some(Release::Resume) => d.reset(),
            _ => {}
        }
        if let Some(ev) = ev {
            match guard.on_turn(ev, true) {
                Gate::Pass(TurnEvent::SpeechStarted { .. }) => {
                    out.stopped_at = out.stopped_at.or(Some(at));
                    out.interrupted = true;
                    return out;
                }
                Gate::Rejected { .. } | Gate::Resume => d.reset(),
                _ => {}
            }
        }
    }
    out
}

/// The reply leaking back into the microphone: 140 ms later, 12 dB down, over room noise.
pub fn echo_of(reply: &[i16], noise: &[i16]) -> Vec<i16> {
    let delay = (RATE.hz() as usize * 140) / 1000;
    noise
        .iter()
        .enumerate()
        .map(|(i, &nz)| {
            let e = i
                .checked_sub(delay)
                .and_then(|j| reply.get(j))
                .map_or(0, |&s| i32::from(s) / 4);
            (e + i32::from(nz) / 4).clamp(-32768, 32767) as i16
        })
        .collect()
}

/// Barge-in scores of one guard setting.
#[derive(Debug, Clone, Default)]
pub struct BargeScore {
    /// From the start of speech to the reply's audio stopping, per turn that stopped it.
    pub reactions: Vec<u64>,
    pub turns: usize,
    /// Turns that dropped the reply.
    pub interrupted: usize,
    /// (clips, replies dropped, replies paused then resumed) for backchannels, noise alone and
    /// echo of the reply.
    pub backchannel: (usize, usize, usize),
    pub noise: (usize, usize, usize),
    pub echo: (usize, usize, usize),
}

/// Everything the report prints, for one VAD backend.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub vad: String,
    /// What the VAD cost per 20 ms frame, on this machine (wall clock, one thread).
    pub us_per_frame: f64,
    pub turns: Vec<(DetectorConfig, TurnScore)>,
    pub barge: Vec<(GuardConfig, BargeScore)>,
}

/// Every detector and barge-in guard over `clips`; the model's detectors too when `model` is given.
pub fn evaluate(
    vad: &str,
    clips: &[Clip],
    mut model: Option<&mut ModelScores>,
) -> anyhow::Result<Evaluation> {
    let configs = detector_configs(model.is_some());
    let mut turns: Vec<(DetectorConfig, TurnScore)> =
        configs.iter().map(|c| (*c, TurnScore::default())).collect();
    let mut barge: Vec<(GuardConfig, BargeScore)> = guard_configs()
        .into_iter()
        .map(|g| (g, BargeScore::default()))
        .collect();
    // The agent's reply while the user barges in: another clip of the set (clean, a different
    // voice), so the echo guard is live and must not mistake the user for echo.
    let replies: Vec<&Clip> = clips
        .iter()
        .filter(|c| c.is_turn() && c.snr_db.is_none())
        .collect();
    let quiet_noise = clips
        .iter()
        .find(|c| c.kind == "noise" && c.snr_db == Some(20));
    let (mut vad_time, mut frames) = (std::time::Duration::ZERO, 0usize);
    for (k, clip) in clips.iter().enumerate() {
        let t = std::time::Instant::now();
        let probs = probabilities(vad, &clip.samples)?;
        vad_time += t.elapsed();
        frames += probs.len();
        if clip.is_turn() {
            for (cfg, score) in &mut turns {
                score.add(clip, &releases(*cfg, clip, &probs, model.as_deref_mut())?);
            }
        }
        // Never the clip's own words (its clean version is one of the replies).
        let reply = (0..replies.len())
            .map(|j| replies[(k * 7 + 3 + j) % replies.len()])
            .find(|r| r.file.get(..4) != clip.file.get(..4))
            .map_or(&[][..], |c| &c.samples[..]);
        for (g, score) in &mut barge {
            let at = barge_in_at(&clip.samples, &probs, reply, *g);
            match clip.kind.as_str() {
                "backchannel" => bump(&mut score.backchannel, at),
                "noise" => bump(&mut score.noise, at),
                _ => {
                    score.turns += 1;
                    score.interrupted += usize::from(at.interrupted);
                    if let (Some(at), Some((start, _))) = (at.stopped_at, clip.segments_ms.first())
                    {
                        score.reactions.push(at.saturating_sub(*start));
                    }
                }
            }
        }
        // The clip played as the reply, leaking back while the user is silent.
        if let (true, Some(nz)) = (clip.is_turn() && clip.snr_db.is_none(), quiet_noise) {
            let mut near = echo_of(&clip.samples, &nz.samples);
            if nz.denoised {
                near = denoised(&near);
            }
            let p = probabilities(vad, &near)?;
            for (g, score) in &mut barge {
                bump(&mut score.echo, barge_in_at(&near, &p, &clip.samples, *g));
            }
        }
    }
    Ok(Evaluation {
        vad: vad.to_string(),
        us_per_frame: vad_time.as_secs_f64() * 1e6 / frames.max(1) as f64,
        turns,
        barge,
    })
}

fn bump(slot: &mut (usize, usize, usize), b: BargeIn) {
    slot.0 += 1;
    slot.1 += usize::from(b.interrupted);
    slot.2 += usize::from(b.stopped_at.is_some() && !b.interrupted);
}

fn rate((n, bad, paused): (usize, usize, usize)) -> String {
    let pct = 100.0 * bad as f64 / n.max(1) as f64;
    if paused > 0 {
        format!("{pct:.0}% ({bad}/{n}; {paused} paused, resumed)")
    } else {
        format!("{pct:.0}% ({bad}/{n})")
    }
}

fn ms(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// The markdown tables of an evaluation.
pub fn report(e: &Evaluation) -> String {
    let mut o = format!(
        "### VAD backend: {} ({:.1} µs per 20 ms frame here)\n\n| detector | turns | end-of-turn delay p50 (ms) | p90 (ms) | false cut-ins (per pause) | turns cut before their end | missed turns |\n|---|---|---|---|---|---|---|\n",
        e.vad, e.us_per_frame
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
    o += "\n| barge-in guard | reply stops after (p50 ms) | p90 (ms) | turns that dropped the reply | false barge-ins (reply dropped): backchannels | noise alone | echo of the reply |\n|---|---|---|---|---|---|---|\n";
    for (g, s) in &e.barge {
        o += &format!(
            "| {} | {} | {} | {}/{} | {} | {} | {} |\n",
            g.label(),
            ms(percentile(&s.reactions, 0.5)),
            ms(percentile(&s.reactions, 0.9)),
            s.interrupted,
            s.turns,
            rate(s.backchannel),
            rate(s.noise),
            rate(s.echo)
        );
    }
    o
}

/// One group's name and every detector's scores on its turns.
pub type Group = (String, Vec<(DetectorConfig, TurnScore)>);

/// End-of-turn scores per group of turns (by source, condition or turn type), one row a group:
/// each detector's p50 delay and false cut-ins.
pub fn breakdown(
    vad: &str,
    clips: &[Clip],
    group: impl Fn(&Clip) -> &str,
    mut model: Option<&mut ModelScores>,
) -> anyhow::Result<Vec<Group>> {
    let mut groups: Vec<Group> = Vec::new();
    for clip in clips.iter().filter(|c| c.is_turn()) {
        let key = group(clip);
        let i = match groups.iter().position(|(k, _)| k == key) {
            Some(i) => i,
            None => {
                let fresh = detector_configs(model.is_some())
                    .into_iter()
                    .map(|c| (c, TurnScore::default()))
                    .collect();
                groups.push((key.to_string(), fresh));
                groups.len() - 1
            }
        };
        let probs = probabilities(vad, &clip.samples)?;
        for (cfg, score) in &mut groups[i].1 {
            score.add(clip, &releases(*cfg, clip, &probs, model.as_deref_mut())?);
        }
    }
    Ok(groups)
}

/// A breakdown as one markdown table: a row per group, "p50 ms / false cut-ins" per detector.
pub fn report_breakdown(by: &str, groups: &[Group]) -> String {
    let Some((_, first)) = groups.first() else {
        return String::new();
    };
    let mut o = format!("| {by} | turns |");
    for (cfg, _) in first {
        o += &format!(" {} |", cfg.label());
    }
    o += "\n|---|---|";
    o += &"---|".repeat(first.len());
    o += "\n";
    for (key, scores) in groups {
        o += &format!("| {key} | {} |", scores.first().map_or(0, |(_, s)| s.turns));
        for (_, s) in scores {
            let cut = if s.pauses == 0 {
                "-".to_string()
            } else {
                format!("{:.0}%", 100.0 * s.cut_in_rate())
            };
            o += &format!(" {} / {cut} |", ms(s.delay_percentile(0.5)));
        }
        o += "\n";
    }
    o
}

/// Where each detector sits, as an SVG plot: end-of-turn p50 (x) against false cut-ins per pause
/// (y); the silence timers joined by a line (what a plain timer can trade), every other detector
/// a labeled point. Down and left is better.
pub fn plot_svg(e: &Evaluation) -> String {
    let (w, h, left, bottom, top, right) = (760.0, 480.0, 70.0, 50.0, 20.0, 220.0);
    let pts: Vec<(String, f64, f64, bool)> = e
        .turns
        .iter()
        .filter_map(|(c, s)| {
            let p50 = s.delay_percentile(0.5)? as f64;
            let timer = matches!(c, DetectorConfig::Silence(_));
            Some((c.label(), p50, 100.0 * s.cut_in_rate(), timer))
        })
        .collect();
    let x_max = pts.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
    let y_max = pts.iter().map(|p| p.2).fold(0.0, f64::max).max(1.0) * 1.1;
    let x = |v: f64| left + v / x_max * (w - left - right);
    let y = |v: f64| h - bottom - v / y_max * (h - bottom - top);
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <line x1=\"{left}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <text x=\"{cx}\" y=\"{xl}\" text-anchor=\"middle\">end-of-turn delay p50 (ms)</text>\n\
         <text x=\"16\" y=\"{cy}\" transform=\"rotate(-90 16 {cy})\" text-anchor=\"middle\">false cut-ins per pause (%)</text>\n",
        b = h - bottom,
        r = w - right,
        cx = (left + w - right) / 2.0,
        xl = h - 12.0,
        cy = (top + h - bottom) / 2.0,
    );
    for i in 0..=5 {
        let (vx, vy) = (x_max * i as f64 / 5.0, y_max * i as f64 / 5.0);
        o += &format!(
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">{vx:.0}</text>\n<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{vy:.0}</text>\n",
            x(vx),
            h - bottom + 16.0,
            left - 6.0,
            y(vy) + 4.0
        );
    }
    let line: Vec<String> = pts
        .iter()
        .filter(|p| p.3)
        .map(|p| format!("{:.1},{:.1}", x(p.1), y(p.2)))
        .collect();
    o += &format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"gray\" stroke-dasharray=\"4 3\"/>\n",
        line.join(" ")
    );
    // Points at the same place (a detector that is its timer) share one label.
    let mut spots: Vec<(String, f64, f64, bool)> = Vec::new();
    for (label, p50, cut, timer) in &pts {
        match spots.iter_mut().find(|s| s.1 == *p50 && s.2 == *cut) {
            Some(s) => {
                s.0 = format!("{} = {label}", s.0);
                s.3 &= *timer;
            }
            None => spots.push((label.clone(), *p50, *cut, *timer)),
        }
    }
    for (k, (label, p50, cut, timer)) in spots.iter().enumerate() {
        let (px, py) = (x(*p50), y(*cut));
        let colour = if *timer { "gray" } else { "#1f5fbf" };
        o += &format!(
            "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"4\" fill=\"{colour}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\">{}</text>\n",
            px + 6.0,
            py - 4.0 + (k % 3) as f64 * 4.0,
            label.replace('&', "&amp;").replace('<', "&lt;")
        );
    }
    o += "</svg>\n";
    o
}
