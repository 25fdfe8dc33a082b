//! The test command's tern-bench smoke run: 20 real WebRTC clients for 10 seconds against the
//! debug `tern` binary. It asserts that the run measured what operators read (sessions connected,
//! setup percentiles, engine-added latency from the server's histograms), never how fast.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn steady_smoke_measures_sessions_and_latencies() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let tern = root.join("target/debug/tern");
    if !tern.exists() {
        let st = Command::new(env!("CARGO"))
            .args(["build", "-p", "tern-engine", "--bin", "tern"])
            .current_dir(&root)
            .status()
            .expect("cargo runs");
        assert!(st.success(), "building tern");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_tern-bench"))
        .args(["--mode", "steady", "--sessions", "20", "--seconds", "10"])
        .arg("--tern")
        .arg(&tern)
        .output()
        .expect("tern-bench runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tern-bench failed: {report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("20 requested, 20 connected"),
        "every session measured:\n{report}"
    );
    let heard: usize = report
        .split("20 connected, ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        heard > 0,
        "clients heard the echo:
{report}"
    );
    let row = |name: &str| -> Vec<f64> {
        let line = report
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no {name} row:\n{report}"));
        let cell = line.rsplit('|').nth(1).unwrap_or("");
        cell.split('/')
            .filter_map(|v| v.trim().parse().ok())
            .collect()
    };
    for name in [
        "setup ms",
        "server uplink",
        "server downlink",
        "server pacing",
    ] {
        let v = row(name);
        assert!(
            v.len() >= 3 && v.iter().all(|x| x.is_finite() && *x >= 0.0) && v[0] > 0.0,
            "{name} measured: {v:?}\n{report}"
        );
    }
}
