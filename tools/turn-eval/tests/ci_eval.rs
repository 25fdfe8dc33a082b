//! The CI-sized evaluation: the small labeled set (made by make_set.py on first use: espeak-ng,
//! sox and asterisk-core-sounds-en-wav from scripts/setup.sh) through the real detectors.
//! `semantic_vad` must beat the silence timer: for every silence duration there is an eagerness
//! that ends turns sooner (p50) with no more false cut-ins.

use std::path::PathBuf;
use std::process::Command;

use tern_turn_eval::{breakdown, evaluate, load_set, report, report_breakdown, DetectorConfig};

fn ci_set() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("../../target/turn-eval-ci");
    if !dir.join("labels.json").exists() {
        let st = Command::new("python3")
            .arg(root.join("make_set.py"))
            .arg(&dir)
            .args(["--size", "ci"])
            .status()
            .expect("python3 runs");
        assert!(st.success(), "make_set.py failed (run scripts/setup.sh)");
    }
    dir
}

#[test]
fn semantic_vad_beats_the_silence_timer() {
    let clips = load_set(&ci_set()).expect("set loads");
    assert!(clips.iter().filter(|c| c.is_turn()).count() >= 30);
    let e = evaluate("earshot", &clips).expect("evaluates");
    println!("{}", report(&e));
    let timers: Vec<_> = e
        .turns
        .iter()
        .filter(|(c, _)| matches!(c, DetectorConfig::Silence(_)))
        .collect();
    let semantic: Vec<_> = e
        .turns
        .iter()
        .filter(|(c, _)| matches!(c, DetectorConfig::Semantic(_)))
        .collect();
    for (timer, t) in &timers {
        let t50 = t.delay_percentile(0.5).expect("timer released turns");
        let beaten = semantic.iter().any(|(_, s)| {
            s.cut_in_rate() <= t.cut_in_rate() && s.delay_percentile(0.5).is_some_and(|d| d < t50)
        });
        assert!(beaten, "{} is not beaten:\n{}", timer.label(), report(&e));
        assert_eq!(t.missed, 0, "{} missed turns", timer.label());
    }
    // The default (medium) against the default timer (500 ms): sooner and fewer cut-ins.
    let (_, t500) = timers[0];
    let (_, medium) = semantic
        .iter()
        .find(|(c, _)| c.label().ends_with("medium"))
        .expect("medium evaluated");
    assert!(medium.cut_in_rate() < t500.cut_in_rate());
    assert!(medium.delay_percentile(0.5) < t500.delay_percentile(0.5));
}

#[test]
fn breakdowns_split_the_same_turns_and_agree_with_the_whole() {
    let clips = load_set(&ci_set()).expect("set loads");
    let e = evaluate("earshot", &clips).expect("evaluates");
    let groups = breakdown("earshot", &clips, |c| c.condition.as_str()).expect("breaks down");
    let labels: Vec<_> = groups.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        labels,
        vec!["clean", "10db"],
        "the CI set's conditions, in order"
    );
    for (i, (cfg, whole)) in e.turns.iter().enumerate() {
        let parts: Vec<_> = groups.iter().map(|(_, g)| &g[i].1).collect();
        assert_eq!(parts.iter().map(|s| s.turns).sum::<usize>(), whole.turns);
        assert_eq!(parts.iter().map(|s| s.pauses).sum::<usize>(), whole.pauses);
        assert_eq!(
            parts.iter().map(|s| s.cut_ins).sum::<usize>(),
            whole.cut_ins,
            "{}",
            cfg.label()
        );
    }
    let table = report_breakdown("condition", &groups);
    assert_eq!(table.lines().count(), 2 + groups.len(), "{table}");
}
