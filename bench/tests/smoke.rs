//! The test command's tern-bench smoke run: 20 real WebRTC clients for 10 seconds against the
//! debug `tern` binary. It asserts that the run measured what operators read (sessions connected,
//! setup percentiles, engine-added latency from the server's histograms, what the clients heard),
//! and that it wrote the JSON, markdown and SVG report; never how fast.

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
    let dir = std::env::temp_dir().join(format!("tern-bench-smoke-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_tern-bench"))
        .args(["--mode", "steady", "--sessions", "20", "--seconds", "10"])
        .arg("--tern")
        .arg(&tern)
        .arg("--report-dir")
        .arg(&dir)
        .output()
        .expect("tern-bench runs");
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tern-bench failed: {md}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("report.json")).expect("report.json written"),
    )
    .expect("report.json parses");
    assert!(dir.join("report.md").exists() && dir.join("steady-setup.svg").exists());
    let run = &json["runs"][0];
    assert_eq!(run["target"], "Tern");
    let steady = &run["steady"];
    assert_eq!(steady["connected"], 20, "every session measured:\n{md}");
    let w = &steady["window"];
    assert_eq!(w["setup"]["count"], 20, "a setup time per session:\n{md}");
    for stage in [
        "engine_uplink",
        "engine_downlink",
        "client_jitter",
        "turn_reply",
    ] {
        let p = &w[stage];
        let (p50, p99, n) = (
            p["p50"].as_f64().unwrap_or(-1.0),
            p["p99"].as_f64().unwrap_or(-1.0),
            p["count"].as_u64().unwrap_or(0),
        );
        assert!(
            n > 0 && p50 >= 0.0 && p99 >= p50,
            "{stage} measured: {p}\n{md}"
        );
    }
    assert!(
        w["replies_heard"].as_u64().unwrap_or(0) > 0,
        "clients heard replies:\n{md}"
    );
    assert!(w["cpu_us_per_session_second"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(steady["rss_per_session_kib"].as_f64().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}
