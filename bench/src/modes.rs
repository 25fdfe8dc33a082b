//! The measuring modes over the load generator: `steady` (N sessions for T seconds), `ramp`
//! (capacity search) and `setup-storm` (handshakes per second).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::client::Fixture;
use crate::load::LoadGen;
use crate::measure::{Pct, ServerSample, WindowResult};
use crate::target::{ServerOpts, Target, TargetKind};
use crate::Args;

fn bar(len: u64, msg: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}

/// Sleeps `secs` with a progress bar.
fn hold(secs: f64, msg: &str) {
    let pb = bar(secs.ceil() as u64, msg);
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        std::thread::sleep(
            Duration::from_millis(250).min(end.saturating_duration_since(Instant::now())),
        );
        pb.set_position(
            secs.ceil() as u64 - end.saturating_duration_since(Instant::now()).as_secs(),
        );
    }
    pb.finish_and_clear();
}

/// Waits until every offered client connected (or `limit` passed).
fn settle_connects(lg: &LoadGen, limit: Duration) {
    let end = Instant::now() + limit;
    while lg.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn open_with_bar(lg: &mut LoadGen, t: &Target, n: usize, a: &Args, talk: bool, msg: &str) -> usize {
    let pb = bar(n as u64, msg);
    let ok = lg.open(t, n, a.signalers, talk, &|| pb.inc(1));
    pb.finish_and_clear();
    ok
}

#[derive(Debug, Serialize)]
pub struct SteadyResult {
    pub requested: usize,
    pub connected: u64,
    pub setups_per_second: f64,
    pub rss_per_session_kib: f64,
    pub heap_per_session_kib: Option<f64>,
    pub window: WindowResult,
}

pub fn start(kind: TargetKind, a: &Args) -> anyhow::Result<Target> {
    Target::start(
        kind,
        &ServerOpts {
            tern: &a.tern,
            cores: &a.engine_cores_arg,
            steering: &a.steering,
            extra: &a.tern_args,
        },
    )
}

pub fn steady(kind: TargetKind, a: &Args, fixture: &Arc<Fixture>) -> anyhow::Result<SteadyResult> {
    let target = start(kind, a)?;
    let mut lg = LoadGen::new(&a.load_cores, fixture.clone(), false)?;
    let s0 = ServerSample::take(&target)?;
    let t = Instant::now();
    open_with_bar(
        &mut lg,
        &target,
        a.sessions,
        a,
        true,
        &format!("{}: offers", kind.name()),
    );
    settle_connects(&lg, Duration::from_secs(30));
    let setups_per_second = a.sessions as f64 / t.elapsed().as_secs_f64();
    let setup = lg.snapshot();
    let connected = setup.connected;
    let s1 = ServerSample::take(&target)?;
    hold(2.0, "warming up");
    let _ = lg.snapshot();
    let w0 = ServerSample::take(&target)?;
    hold(a.seconds as f64, &format!("{}: steady", kind.name()));
    let stats = lg.snapshot();
    let w1 = ServerSample::take(&target)?;
    let mut window = WindowResult::new(connected as usize, &w0, &w1, &stats, a.load_cores.len());
    window.setup = Pct::of_us(&setup.setup_us);
    let per = |x: f64| x / connected.max(1) as f64;
    let heap = match (s0.heap_bytes(), s1.heap_bytes()) {
        (Some(x), Some(y)) => Some(per(y - x) / 1024.0),
        _ => None,
    };
    lg.stop(&target);
    Ok(SteadyResult {
        requested: a.sessions,
        connected,
        setups_per_second,
        rss_per_session_kib: per(s1.rss_kib.saturating_sub(s0.rss_kib) as f64),
        heap_per_session_kib: heap,
        window,
    })
}

#[derive(Debug, Serialize)]
pub struct RampResult {
    pub steps: Vec<WindowResult>,
    /// Most sessions that met the criteria (0 if the first step failed).
    pub capacity: usize,
    pub engine_cores: usize,
    pub sessions_per_core: f64,
    /// Sessions one fully busy core would hold, from the server's CPU per session at the largest
    /// step that used a measurable share of a core: the CPU-bound capacity, which a noisy
    /// machine's jitter does not cut short the way it cuts the latency-bound one.
    pub cpu_bound_per_core: Option<f64>,
    pub stop_reason: String,
}

/// Sessions per fully busy core from (sessions, server CPU % of one core) per step: the largest
/// step that used at least 5% of a core.
pub fn cpu_bound_per_core(steps: impl Iterator<Item = (usize, f64)>) -> Option<f64> {
    steps
        .filter(|(n, cpu)| *cpu >= 5.0 && *n > 0)
        .max_by_key(|(n, _)| *n)
        .map(|(n, cpu)| n as f64 * 100.0 / cpu)
}

/// Capacity search: adds `--step` sessions at a time, measures each level for `--step-s`, and
/// stops when the engine-added p99 passes `--max-p99-ms` or client loss `--max-loss`.
pub fn ramp(kind: TargetKind, a: &Args, fixture: &Arc<Fixture>) -> anyhow::Result<RampResult> {
    let target = start(kind, a)?;
    let mut lg = LoadGen::new(&a.load_cores, fixture.clone(), false)?;
    let mut steps: Vec<WindowResult> = Vec::new();
    let mut connected = 0u64;
    let mut capacity = 0;
    let stop_reason;
    let mut n = 0;
    loop {
        let next = if n == 0 { a.sessions } else { n + a.step };
        open_with_bar(
            &mut lg,
            &target,
            next - n,
            a,
            true,
            &format!("{}: to {next}", kind.name()),
        );
        n = next;
        settle_connects(&lg, Duration::from_secs(60));
        let mut opening = lg.snapshot();
        hold(3.0, "settling");
        opening.merge(&lg.snapshot());
        connected += opening.connected;
        let w0 = ServerSample::take(&target)?;
        hold(a.step_s as f64, &format!("{}: {n} sessions", kind.name()));
        let stats = lg.snapshot();
        connected += stats.connected;
        let w1 = ServerSample::take(&target)?;
        let mut r = WindowResult::new(connected as usize, &w0, &w1, &stats, a.load_cores.len());
        r.setup = Pct::of_us(&opening.setup_us);
        eprintln!(
            "{}: {} sessions, added p99 {:.3} ms, loss {:.3}%, server CPU {:.0}%, load busy {:.0}%",
            kind.name(),
            r.sessions,
            r.added_p99_ms(),
            r.client_loss * 100.0,
            r.server_cpu_pct,
            r.load_busy * 100.0
        );
        let failed = if (connected as usize) < n {
            Some(format!("{} of {n} sessions connected", connected))
        } else if r.added_p99_ms() > a.max_p99_ms {
            Some(format!(
                "engine-added p99 {:.2} ms > {} ms",
                r.added_p99_ms(),
                a.max_p99_ms
            ))
        } else if r.client_loss > a.max_loss {
            Some(format!(
                "loss {:.2}% > {:.2}%",
                r.client_loss * 100.0,
                a.max_loss * 100.0
            ))
        } else {
            None
        };
        let busy = r.load_busy;
        steps.push(r);
        if let Some(why) = failed {
            stop_reason = why;
            break;
        }
        capacity = n;
        if busy > 0.9 {
            stop_reason = format!(
                "the load generator is saturated ({:.0}% busy): the capacity is a lower bound",
                busy * 100.0
            );
            break;
        }
        if n + a.step > a.max_sessions {
            stop_reason = format!("reached --max-sessions {}", a.max_sessions);
            break;
        }
    }
    lg.stop(&target);
    let cores = a.engine_cores.len();
    Ok(RampResult {
        cpu_bound_per_core: cpu_bound_per_core(
            steps.iter().map(|w| (w.sessions, w.server_cpu_pct)),
        ),
        steps,
        capacity,
        engine_cores: cores,
        sessions_per_core: capacity as f64 / cores as f64,
        stop_reason,
    })
}

#[derive(Debug, Serialize)]
pub struct StormResult {
    pub seconds: f64,
    pub window: usize,
    pub handshakes: u64,
    pub failed_offers: usize,
    pub handshakes_per_second: f64,
    pub server_cpu_pct: f64,
    pub cpu_us_per_handshake: f64,
    /// Handshakes per second one fully used engine core would sustain at this cost.
    pub handshakes_per_core_second: f64,
    pub setup: Option<Pct>,
}

/// Setup storm: keeps `--window` handshakes in flight for `--seconds`; each client hangs up as
/// soon as it connected.
pub fn storm(kind: TargetKind, a: &Args, fixture: &Arc<Fixture>) -> anyhow::Result<StormResult> {
    let target = start(kind, a)?;
    let lg = LoadGen::new(&a.load_cores, fixture.clone(), true)?;
    let w0 = ServerSample::take(&target)?;
    let end = Instant::now() + Duration::from_secs(a.seconds);
    let index = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicUsize::new(0);
    let pb = bar(a.seconds, &format!("{}: storm", kind.name()));
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for t in 0..a.signalers.max(1) {
            let (lg, target, index, failed) = (&lg, &target, &index, &failed);
            let core = a.load_cores[t % a.load_cores.len()];
            s.spawn(move || {
                crate::util::pin_to(core);
                while Instant::now() < end {
                    while let Ok(h) = lg.done.try_recv() {
                        target.hang_up(&h);
                    }
                    if lg.in_flight.load(Ordering::Relaxed) >= a.window {
                        std::thread::sleep(Duration::from_micros(200));
                        continue;
                    }
                    let i = index.fetch_add(1, Ordering::Relaxed);
                    if lg.open_one(target, i, false).is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(250));
            pb.set_position(t0.elapsed().as_secs());
        }
    });
    pb.finish_and_clear();
    let stats = lg.snapshot();
    let w1 = ServerSample::take(&target)?;
    let seconds = t0.elapsed().as_secs_f64();
    let w = WindowResult::new(1, &w0, &w1, &stats, a.load_cores.len());
    let cpu_us = w.server_cpu_pct * 1e4 * w.seconds;
    let n = stats.connected.max(1);
    lg.stop(&target);
    Ok(StormResult {
        seconds,
        window: a.window,
        handshakes: stats.connected,
        failed_offers: failed.load(Ordering::Relaxed),
        handshakes_per_second: stats.connected as f64 / seconds,
        server_cpu_pct: w.server_cpu_pct,
        cpu_us_per_handshake: cpu_us / n as f64,
        handshakes_per_core_second: 1e6 / (cpu_us / n as f64),
        setup: Pct::of_us(&stats.setup_us),
    })
}

#[cfg(test)]
mod tests {
    use super::cpu_bound_per_core;

    #[test]
    fn cpu_bound_capacity_comes_from_the_largest_measurable_step() {
        let steps = [(0, 0.4), (40, 2.0), (80, 25.0), (120, 40.0)];
        assert_eq!(cpu_bound_per_core(steps.into_iter()), Some(300.0));
        // An idle machine's noise is no measure.
        assert_eq!(cpu_bound_per_core([(10, 1.0)].into_iter()), None);
        assert_eq!(cpu_bound_per_core(std::iter::empty()), None);
    }
}
