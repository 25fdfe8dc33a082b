//! tern-bench: drives real WebRTC clients (str0m, thread per core, on CPUs the engine does not
//! use) against Tern or a local Janus and reports what operators size fleets from.
//!
//! Modes:
//! - `steady`: `--sessions` for `--seconds`: setup time, engine-added latency (Tern's per-stage
//!   stamps) and what clients saw (end of turn -> reply, jitter, loss), CPU and memory per session;
//! - `ramp`: capacity search, adding `--step` sessions until the engine-added p99 passes
//!   `--max-p99-ms` (5) or loss `--max-loss` (0.5%): sessions per engine core;
//! - `setup-storm`: handshakes per second per core (clients hang up once connected);
//! - `idle`: muted sessions, memory and idle CPU per session, extrapolated to a million (`idle.rs`);
//! - `soak`: churning sessions for hours, memory trend and leftovers (`soak.rs`);
//! - `fleet`: relay datagrams per second per core and added latency against a direct path,
//!   placement forwarding cost per setup, Redis commands per call (`fleet.rs`).
//!
//! `--target tern,janus-echotest,janus-audiobridge` runs the same workload against each in turn
//! and prints them side by side. Results go to `perf-reports/<date>-<name>/` (`--name`): JSON,
//! markdown and SVG plots.

mod client;
mod fleet;
mod idle;
mod load;
mod measure;
mod modes;
mod netio;
mod report;
mod soak;
mod target;
mod util;

use std::path::PathBuf;

use anyhow::{bail, Context};
use tern_testkit::peer::load_wav;

use client::Fixture;
use report::{Machine, Report, TargetRun};
use target::TargetKind;

pub struct Args {
    pub mode: String,
    pub targets: Vec<TargetKind>,
    pub sessions: usize,
    pub seconds: u64,
    pub step: usize,
    pub step_s: u64,
    pub max_sessions: usize,
    pub max_p99_ms: f64,
    pub max_loss: f64,
    pub window: usize,
    pub signalers: usize,
    pub engine_cores: Vec<usize>,
    pub engine_cores_arg: String,
    pub load_cores: Vec<usize>,
    pub steering: String,
    pub tern: String,
    pub tern_args: Vec<String>,
    pub name: Option<String>,
    pub report_dir: Option<PathBuf>,
    pub lifetime_s: u64,
    pub sample_s: u64,
    pub server_core: usize,
    pub out: Option<String>,
}

const USAGE: &str = "usage: tern-bench [--mode steady|ramp|setup-storm|idle|soak|fleet] [--target tern,janus-echotest,janus-audiobridge]
  [--sessions N] [--seconds T] [--step N] [--step-s S] [--max-sessions N] [--max-p99-ms MS] [--max-loss FRACTION]
  [--window N] [--signalers N] [--engine-cores LIST] [--load-cores LIST] [--steering hash|cpu]
  [--tern PATH] [--tern-arg ARG]... [--name NAME | --report-dir DIR] [--lifetime-s L] [--sample-s S] [--out FILE] [--keep-alive true|false]";

/// `0-3,6` -> [0, 1, 2, 3, 6].
fn cpu_list(flag: &str, s: &str) -> anyhow::Result<Vec<usize>> {
    let mut v = Vec::new();
    for part in s.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (
            a.trim()
                .parse()
                .with_context(|| format!("{flag}: a CPU list such as 0-3,6"))?,
            b.trim()
                .parse()
                .with_context(|| format!("{flag}: a CPU list such as 0-3,6"))?,
        );
        if a > b || b >= 4096 {
            bail!("{flag}: {part} is not a CPU range");
        }
        v.extend(a..=b);
    }
    Ok(v)
}

fn num<T>(flag: &str, v: &str, range: std::ops::RangeInclusive<T>, what: &str) -> anyhow::Result<T>
where
    T: std::str::FromStr + PartialOrd,
{
    match v.parse::<T>() {
        Ok(x) if range.contains(&x) => Ok(x),
        _ => bail!("{flag} must be {what}"),
    }
}

fn args() -> anyhow::Result<Args> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut a = Args {
        mode: "steady".into(),
        targets: vec![TargetKind::Tern],
        sessions: 100,
        seconds: 20,
        step: 50,
        step_s: 10,
        max_sessions: 20_000,
        max_p99_ms: 5.0,
        max_loss: 0.005,
        window: 16,
        signalers: 2,
        engine_cores: vec![0],
        engine_cores_arg: "0".into(),
        load_cores: Vec::new(),
        steering: "hash".into(),
        tern: "target/release/tern".into(),
        tern_args: Vec::new(),
        name: None,
        report_dir: None,
        lifetime_s: 60,
        sample_s: 30,
        server_core: 0,
        out: None,
    };
    let mut load_cores = None;
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--help" || k == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let v = it
            .next()
            .with_context(|| format!("{k} needs a value\n{USAGE}"))?;
        match k.as_str() {
            "--mode"
                if ["steady", "ramp", "setup-storm", "soak", "idle", "fleet"]
                    .contains(&v.as_str()) =>
            {
                a.mode = v
            }
            "--mode" => bail!("--mode must be steady, ramp, setup-storm, idle, soak or fleet"),
            "--target" => {
                a.targets = v
                    .split(',')
                    .map(TargetKind::parse)
                    .collect::<anyhow::Result<_>>()?
            }
            "--sessions" => a.sessions = num(&k, &v, 1..=100_000, "1-100000")?,
            "--seconds" => a.seconds = num(&k, &v, 1..=86_400, "1-86400 seconds")?,
            "--step" => a.step = num(&k, &v, 1..=10_000, "1-10000 sessions")?,
            "--step-s" => a.step_s = num(&k, &v, 2..=3600, "2-3600 seconds")?,
            "--max-sessions" => a.max_sessions = num(&k, &v, 1..=1_000_000, "1-1000000")?,
            "--max-p99-ms" => a.max_p99_ms = num(&k, &v, 0.01..=10_000.0, "0.01-10000 ms")?,
            "--max-loss" => a.max_loss = num(&k, &v, 0.0..=1.0, "a fraction 0-1")?,
            "--window" => a.window = num(&k, &v, 1..=10_000, "1-10000 handshakes in flight")?,
            "--signalers" => a.signalers = num(&k, &v, 1..=64, "1-64 threads")?,
            "--engine-cores" => {
                a.engine_cores = cpu_list(&k, &v)?;
                a.engine_cores_arg = v;
            }
            "--load-cores" => load_cores = Some(cpu_list(&k, &v)?),
            "--steering" if v == "hash" || v == "cpu" => a.steering = v,
            "--steering" => bail!("--steering must be hash or cpu"),
            "--tern" => a.tern = v,
            "--tern-arg" => a.tern_args.push(v),
            "--name" => a.name = Some(v),
            "--report-dir" => a.report_dir = Some(v.into()),
            "--lifetime-s" => a.lifetime_s = num(&k, &v, 1..=86_400, "seconds")?,
            "--sample-s" => a.sample_s = num(&k, &v, 1..=86_400, "seconds")?,
            "--server-core" => a.server_core = num(&k, &v, 0..=4095, "a CPU number")?,
            "--out" => a.out = Some(v),
            "--keep-alive" => util::KEEP_ALIVE.store(
                match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => bail!("--keep-alive must be true or false"),
                },
                std::sync::atomic::Ordering::Relaxed,
            ),
            _ => bail!("unknown flag {k}\n{USAGE}"),
        }
    }
    if a.engine_cores.iter().any(|&c| c >= cpus) {
        bail!("--engine-cores: this machine has CPUs 0-{}", cpus - 1);
    }
    // Tern first, so the others read as ratios to it.
    a.targets.sort_by_key(|t| *t != TargetKind::Tern);
    a.targets.dedup();
    a.load_cores =
        load_cores.unwrap_or_else(|| (0..cpus).filter(|c| !a.engine_cores.contains(c)).collect());
    if a.load_cores.is_empty() {
        // One CPU, or every CPU given to the engine: share them.
        a.load_cores = a.engine_cores.clone();
    }
    Ok(a)
}

/// Lets the load generator (and the servers it starts) hold one socket per client.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on a valid struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    raise_fd_limit();
    match a.mode.as_str() {
        "soak" => soak::run(a),
        "idle" => idle::run(a),
        "fleet" => fleet::run(a),
        _ => measured(a),
    }
}

/// steady, ramp and setup-storm: each target in turn, then one report.
fn measured(a: Args) -> anyhow::Result<()> {
    let fixture = format!(
        "{}/../engine/tests/data/hello-24k.wav",
        env!("CARGO_MANIFEST_DIR")
    );
    let (_, speech) = load_wav(&fixture);
    let fixture = Fixture::encode(&speech)?;
    let mut runs = Vec::new();
    for &t in &a.targets {
        let mut run = TargetRun {
            target: t,
            steady: None,
            ramp: None,
            storm: None,
        };
        match a.mode.as_str() {
            "ramp" => run.ramp = Some(modes::ramp(t, &a, &fixture)?),
            "setup-storm" => run.storm = Some(modes::storm(t, &a, &fixture)?),
            _ => run.steady = Some(modes::steady(t, &a, &fixture)?),
        }
        runs.push(run);
        // Let the previous server's sockets and ports go.
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    let date = std::process::Command::new("date")
        .arg("+%F")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let name = a.name.clone().unwrap_or_else(|| a.mode.clone());
    let report = Report {
        name: name.clone(),
        mode: a.mode.clone(),
        date: date.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: Machine::probe(),
        engine_cores: a.engine_cores.clone(),
        load_cores: a.load_cores.clone(),
        runs,
    };
    let dir = a
        .report_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("perf-reports/{date}-{name}")));
    let md = report.write(&dir)?;
    println!("{md}");
    eprintln!("report written to {}", dir.display());
    Ok(())
}
