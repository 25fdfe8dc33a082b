//! tern-turn-eval: scores Tern's turn detectors on a labeled set.
//!
//! Usage: tern-turn-eval --set DIR [--vad earshot[,silero]] [--out FILE.md] [--dump-cues]
//!        [--smart-turn THREADS [--model-cache FILE] [--fit-model | --dump-pauses]]
//!        [--noise-reduction]
//!        [--plot FILE.svg]
//! `--smart-turn N` also scores `--turn-model smart-turn` (Smart Turn v3.2, computed on N threads,
//! about 0.25 s of CPU per pause in the dev profile) at each eagerness and Pipecat's rule;
//! `--model-cache FILE` keeps the model's answers between runs; `--fit-model` fits the model's
//! rule for each eagerness on this set (run it on the fit split only) and prints the fit;
//! `--fit-pooled` fits it on the set as one source (the first fit, `POOLED_FIT`).
//! `--plot FILE.svg` draws the first VAD's detectors: p50 against false cut-ins, timers joined.
//! `--noise-reduction` puts every clip through RNNoise first, as `audio.input.noise_reduction`
//! does in a session (before the VAD, the turn detector and the model).
//! `--dump-pauses` (with `--smart-turn`) prints the model's answers at every silence after voice
//! in each turn instead, one line each: clip, source, condition, turn type, start (ms), how long
//! the silence lasts (ms), what it is (`end`: the turn's true end; `pause:MS`: a labeled
//! mid-sentence pause of MS; `other`: a gap inside a phrase), the true end (ms), and the answers
//! asked 200 and 400 ms into it (`-` when it ended sooner): what `pause_answers.py` reads.
//! `--dump-cues` prints the prosodic cues at every pause onset instead, one line each (label: 1 at
//! a true end, 0 in a mid-sentence pause; kind; f0 slope; final f0; energy slope; pitched frames; clip; ms since the true end or ms left in the pause; unpitched frames): the data
//! `semantic::WEIGHTS` were fitted on.
//! Make the set first: python3 tools/turn-eval/make_set.py DIR [--size ci|full]

use std::path::PathBuf;

use anyhow::{bail, Context};
use tern_engine::core::media::frame::FRAME_MS;
use tern_engine::core::turn::turn_model::ASK_POINTS_MS;
use tern_turn_eval::smart_turn_eval::{self, ModelScores};

fn main() -> anyhow::Result<()> {
    let mut set = None;
    let mut vads = vec!["earshot".to_string()];
    let mut out = None;
    let mut dump_cues = false;
    let mut dump_pauses = false;
    let mut smart_turn_threads = 0usize;
    let mut cache = None;
    let mut fit_model = false;
    let mut fit_pooled = false;
    let mut noise_reduction = false;
    let mut plot = None;
    let mut delay_ms = None;
    let mut ask_points = ASK_POINTS_MS.to_vec();
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--dump-cues" {
            dump_cues = true;
            continue;
        }
        if k == "--fit-model" || k == "--fit-pooled" {
            fit_model = true;
            fit_pooled = k == "--fit-pooled";
            continue;
        }
        if k == "--dump-pauses" {
            dump_pauses = true;
            continue;
        }
        if k == "--noise-reduction" {
            noise_reduction = true;
            continue;
        }
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--set" => set = Some(PathBuf::from(v)),
            "--vad" => vads = v.split(',').map(str::to_string).collect(),
            "--out" => out = Some(PathBuf::from(v)),
            "--smart-turn" => smart_turn_threads = v.parse().context("--smart-turn THREADS")?,
            "--model-cache" => cache = Some(PathBuf::from(v)),
            "--plot" => plot = Some(PathBuf::from(v)),
            "--ask-after-ms" => {
                let ms: u32 = v.parse().context("--ask-after-ms MS")?;
                if !ASK_POINTS_MS.contains(&ms) {
                    bail!("--ask-after-ms: {ms} is not one of {ASK_POINTS_MS:?}");
                }
                ask_points = vec![ms];
            }
            "--model-delay-ms" => {
                let ms: u64 = v.parse().context("--model-delay-ms MS")?;
                if !ms.is_multiple_of(FRAME_MS) {
                    bail!("--model-delay-ms: {ms} is not a whole number of {FRAME_MS} ms frames");
                }
                delay_ms = Some(ms);
            }
            _ => bail!(
                "unknown flag {k} (--set DIR, --vad LIST, --out FILE, --smart-turn N, --model-cache FILE, --fit-model, --fit-pooled, --noise-reduction, --plot FILE, --model-delay-ms MS, --ask-after-ms MS (the fit's ask points), --dump-cues, --dump-pauses)"
            ),
        }
    }
    let set = set.context("--set DIR is required")?;
    let mut clips = tern_turn_eval::load_set(&set)?;
    if noise_reduction {
        clips = clips
            .into_iter()
            .map(tern_turn_eval::Clip::denoise)
            .collect();
    }
    if dump_cues {
        for c in clips.iter().filter(|c| c.is_turn()) {
            let probs = tern_turn_eval::probabilities("earshot", &c.samples)?;
            for (cue, fin, ms) in tern_turn_eval::cue_samples(c, &probs) {
                println!(
                    "{} {} {:.2} {:.2} {:.2} {} {} {ms} {}",
                    u8::from(fin),
                    c.kind,
                    cue.f0_slope,
                    cue.f0_final,
                    cue.energy_slope,
                    cue.pitched,
                    c.file,
                    cue.unpitched_for
                );
            }
        }
        return Ok(());
    }
    let mut md = format!(
        "Set: {} ({} clips, {} turns){}\n\n",
        set.display(),
        clips.len(),
        clips.iter().filter(|c| c.is_turn()).count(),
        if noise_reduction {
            ", every clip through the noise suppressor (RNNoise) first"
        } else {
            ""
        }
    );
    let mut model = None;
    if smart_turn_threads > 0 {
        let turns: Vec<&tern_turn_eval::Clip> = clips.iter().filter(|c| c.is_turn()).collect();
        let probs = turns
            .iter()
            .map(|c| tern_turn_eval::probabilities("earshot", &c.samples))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut scores =
            ModelScores::compute(&turns, &probs, smart_turn_threads, cache.as_deref())?;
        if let Some(ms) = delay_ms {
            scores.delay_frames = ms / FRAME_MS;
        }
        let cost = if scores.model_us.is_empty() {
            "all read from --model-cache".to_string()
        } else {
            format!(
                "{} computed here: model time p50 {} ms, p90 {} ms per decision, tract, one thread",
                scores.model_us.len(),
                tern_turn_eval::percentile(&scores.model_us, 0.5).unwrap_or(0) / 1000,
                tern_turn_eval::percentile(&scores.model_us, 0.9).unwrap_or(0) / 1000
            )
        };
        md += &format!(
            "Smart Turn v3.2: {} answers ({cost}), each reaching the detector {} ms after it asked.\n\n",
            scores.decisions(),
            scores.delay_frames * FRAME_MS
        );
        if dump_pauses {
            for (clip, probs) in turns.iter().zip(&probs) {
                for a in smart_turn_eval::pause_answers(clip, probs, &mut scores)? {
                    let p = |x: Option<f32>| x.map_or("-".to_string(), |p| format!("{p:.4}"));
                    println!(
                        "{} {} {} {} {} {} {} {} {} {}",
                        clip.file,
                        clip.source,
                        clip.condition,
                        clip.turn_type,
                        a.start_ms,
                        a.silence_ms,
                        a.label,
                        clip.true_end_ms,
                        p(a.answers[0]),
                        p(a.answers[1])
                    );
                }
            }
            return Ok(());
        }
        if fit_model {
            let fits = smart_turn_eval::fit(&turns, &probs, &mut scores, fit_pooled, &ask_points)?;
            md += if fit_pooled {
                "### The model's rule, fitted on this set (pooled: the whole set as one source)\n\n"
            } else {
                "### The model's rule, fitted on this set, source by source\n\n"
            };
            md += &smart_turn_eval::fit_report(&fits);
            print!("{md}");
            if let Some(p) = out {
                std::fs::write(&p, &md).with_context(|| format!("{}", p.display()))?;
            }
            return Ok(());
        }
        model = Some(scores);
    } else if fit_model {
        bail!("--fit-model needs --smart-turn THREADS");
    }
    for vad in &vads {
        if tern_turn_eval::vad_backend(vad).is_none() {
            bail!("--vad: unknown backend {vad}");
        }
        let e = tern_turn_eval::evaluate(vad, &clips, model.as_mut())?;
        md += &tern_turn_eval::report(&e);
        if let (Some(p), true) = (&plot, vad == &vads[0]) {
            std::fs::write(p, tern_turn_eval::plot_svg(&e))
                .with_context(|| format!("{}", p.display()))?;
        }
        md += "\n";
        let by_source =
            tern_turn_eval::breakdown(vad, &clips, |c| c.source.as_str(), model.as_mut())?;
        if by_source.len() > 1 || clips.iter().any(|c| c.turn_type != c.kind) {
            md += "End-of-turn delay p50 (ms) / false cut-ins per pause, by group:\n\n";
            for (by, groups) in [
                ("source", by_source),
                (
                    "condition",
                    tern_turn_eval::breakdown(
                        vad,
                        &clips,
                        |c| c.condition.as_str(),
                        model.as_mut(),
                    )?,
                ),
                (
                    "turn type",
                    tern_turn_eval::breakdown(
                        vad,
                        &clips,
                        |c| c.turn_type.as_str(),
                        model.as_mut(),
                    )?,
                ),
            ] {
                md += &tern_turn_eval::report_breakdown(by, &groups);
                md += "\n";
            }
        }
    }
    print!("{md}");
    if let Some(p) = out {
        std::fs::write(&p, &md).with_context(|| format!("{}", p.display()))?;
    }
    Ok(())
}
