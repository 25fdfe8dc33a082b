//! tern-turn-eval: scores Tern's turn detectors on a labeled set.
//!
//! Usage: tern-turn-eval --set DIR [--vad earshot[,silero]] [--out FILE.md] [--dump-cues]
//!        [--smart-turn THREADS]
//! `--smart-turn N` also scores Smart Turn v3.2 on N threads (about a second of CPU per pause).
//! `--dump-cues` prints the prosodic cues at every pause onset instead, one line each (label: 1 at
//! a true end, 0 in a mid-sentence pause; kind; f0 slope; final f0; energy slope; pitched frames; clip; ms since the true end or ms left in the pause; unpitched frames): the data
//! `semantic::WEIGHTS` were fitted on.
//! Make the set first: python3 tools/turn-eval/make_set.py DIR [--size ci|full]

use std::path::PathBuf;

use anyhow::{bail, Context};

fn main() -> anyhow::Result<()> {
    let mut set = None;
    let mut vads = vec!["earshot".to_string()];
    let mut out = None;
    let mut dump_cues = false;
    let mut smart_turn_threads = 0usize;
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--dump-cues" {
            dump_cues = true;
            continue;
        }
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--set" => set = Some(PathBuf::from(v)),
            "--vad" => vads = v.split(',').map(str::to_string).collect(),
            "--out" => out = Some(PathBuf::from(v)),
            "--smart-turn" => smart_turn_threads = v.parse().context("--smart-turn THREADS")?,
            _ => bail!("unknown flag {k} (--set DIR, --vad LIST, --out FILE, --smart-turn N)"),
        }
    }
    let set = set.context("--set DIR is required")?;
    let clips = tern_turn_eval::load_set(&set)?;
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
        "Set: {} ({} clips, {} turns)\n\n",
        set.display(),
        clips.len(),
        clips.iter().filter(|c| c.is_turn()).count()
    );
    for vad in &vads {
        if tern_turn_eval::vad_backend(vad).is_none() {
            bail!("--vad: unknown backend {vad}");
        }
        let e = tern_turn_eval::evaluate(vad, &clips)?;
        md += &tern_turn_eval::report(&e);
        md += "\n";
        let by_source = tern_turn_eval::breakdown(vad, &clips, |c| c.source.as_str())?;
        if by_source.len() > 1 || clips.iter().any(|c| c.turn_type != c.kind) {
            md += "End-of-turn delay p50 (ms) / false cut-ins per pause, by group:\n\n";
            for (by, groups) in [
                ("source", by_source),
                (
                    "condition",
                    tern_turn_eval::breakdown(vad, &clips, |c| c.condition.as_str())?,
                ),
                (
                    "turn type",
                    tern_turn_eval::breakdown(vad, &clips, |c| c.turn_type.as_str())?,
                ),
            ] {
                md += &tern_turn_eval::report_breakdown(by, &groups);
                md += "\n";
            }
        }
    }
    if smart_turn_threads > 0 {
        use tern_turn_eval::smart_turn_eval;
        let turns: Vec<_> = clips.iter().filter(|c| c.is_turn()).collect();
        let (releases, cost) = smart_turn_eval::run(&turns, smart_turn_threads)?;
        md += &smart_turn_eval::report(&turns, &releases, &cost);
    }
    print!("{md}");
    if let Some(p) = out {
        std::fs::write(&p, &md).with_context(|| format!("{}", p.display()))?;
    }
    Ok(())
}
