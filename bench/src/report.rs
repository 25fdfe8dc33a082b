//! Where results go: `perf-reports/<date>-<name>/` gets report.json (everything measured),
//! report.md (tables, Tern and Janus side by side as ratios) and SVG plots, each recording the
//! machine, kernel, commit and command line.

use std::fmt::Write;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;
use serde::Serialize;

use crate::measure::Pct;
use crate::modes::{RampResult, SteadyResult, StormResult};
use crate::target::TargetKind;

#[derive(Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
    pub commit: String,
}

impl Machine {
    pub fn probe() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .unwrap_or("unknown")
            .trim()
            .to_string();
        let memory_gib = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
        let cmd = |c: &str, args: &[&str]| {
            std::process::Command::new(c)
                .args(args)
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown".into())
        };
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_gib,
            kernel: cmd("uname", &["-sr"]),
            commit: cmd("git", &["rev-parse", "--short", "HEAD"]),
        }
    }
}

#[derive(Serialize)]
pub struct TargetRun {
    pub target: TargetKind,
    pub steady: Option<SteadyResult>,
    pub ramp: Option<RampResult>,
    pub storm: Option<StormResult>,
}

#[derive(Serialize)]
pub struct Report {
    pub name: String,
    pub mode: String,
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub engine_cores: Vec<usize>,
    pub load_cores: Vec<usize>,
    pub runs: Vec<TargetRun>,
}

impl Report {
    /// Writes report.json, report.md and the plots into `dir`; returns the markdown.
    pub fn write(&self, dir: &Path) -> anyhow::Result<String> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        let md = self.markdown(dir)?;
        std::fs::write(dir.join("report.md"), &md)?;
        Ok(md)
    }

    fn markdown(&self, dir: &Path) -> anyhow::Result<String> {
        let m = &self.machine;
        let mut o = format!(
            "# tern-bench {}: {}\n\n- command: `{}`\n- machine: {} CPUs ({}), {:.0} GiB, {}; commit {}; {}\n- engine cores {:?}, load-generator cores {:?} (thread per core, str0m clients, kernel receive stamps)\n- workload: each client offers audio{} and speaks a 3.8 s Opus fixture turn every 9.5 s (talks 40% of the time), staying on the line with silence frames in between; Tern's echo agent replies to each turn, Janus EchoTest returns every packet, Janus AudioBridge puts clients in pairs (two per room, decode, mix, encode)\n\n",
            self.mode,
            self.name,
            self.command,
            m.cpus,
            m.cpu_model,
            m.memory_gib,
            m.kernel,
            m.commit,
            self.date,
            self.engine_cores,
            self.load_cores,
            " plus the `oai-events` data channel (not for AudioBridge, which has none)",
        );
        if self.runs.iter().any(|r| r.steady.is_some()) {
            self.steady_md(&mut o, dir)?;
        }
        if self.runs.iter().any(|r| r.ramp.is_some()) {
            self.ramp_md(&mut o, dir)?;
        }
        if self.runs.iter().any(|r| r.storm.is_some()) {
            self.storm_md(&mut o);
        }
        Ok(o)
    }

    fn header(&self, o: &mut String) {
        let names: Vec<&str> = self.runs.iter().map(|r| r.target.name()).collect();
        let _ = writeln!(o, "| metric | {} |", names.join(" | "));
        let _ = writeln!(o, "|---|{}", "---|".repeat(names.len()));
    }

    fn row(o: &mut String, label: &str, cells: Vec<String>) {
        let _ = writeln!(o, "| {label} | {} |", cells.join(" | "));
    }

    fn steady_md(&self, o: &mut String, dir: &Path) -> anyhow::Result<()> {
        let runs: Vec<&SteadyResult> = self.runs.iter().filter_map(|r| r.steady.as_ref()).collect();
        o.push_str("## steady\n\n");
        self.header(o);
        let each =
            |f: &dyn Fn(&SteadyResult) -> String| runs.iter().map(|r| f(r)).collect::<Vec<_>>();
        let pct = |p: Option<Pct>| Pct::cells(p);
        Self::row(
            o,
            "sessions connected / requested",
            each(&|r| format!("{} / {}", r.connected, r.requested)),
        );
        Self::row(
            o,
            "setups per second (offers from the signaling threads)",
            each(&|r| format!("{:.0}", r.setups_per_second)),
        );
        Self::row(
            o,
            "setup ms p50 / p90 / p99 / max (offer -> connected)",
            each(&|r| pct(r.window.setup)),
        );
        Self::row(
            o,
            "server CPU, % of one core",
            each(&|r| format!("{:.1}", r.window.server_cpu_pct)),
        );
        Self::row(
            o,
            "server CPU µs per session-second",
            each(&|r| format!("{:.0}", r.window.cpu_us_per_session_second)),
        );
        Self::row(
            o,
            "server CPU share in the kernel (syscalls, UDP stack)",
            each(&|r| format!("{:.0}%", r.window.server_system_share * 100.0)),
        );
        Self::row(
            o,
            "server RSS per session KiB",
            each(&|r| format!("{:.0}", r.rss_per_session_kib)),
        );
        Self::row(
            o,
            "server heap per session KiB (counted allocator)",
            each(&|r| {
                r.heap_per_session_kib
                    .map_or("n/a".into(), |h| format!("{h:.0}"))
            }),
        );
        Self::row(
            o,
            "engine-added uplink ms p50 / p90 / p99 / max (datagram -> worker ring)",
            each(&|r| pct(r.window.engine_uplink)),
        );
        Self::row(
            o,
            "engine-added downlink ms (ring -> datagram sent)",
            each(&|r| pct(r.window.engine_downlink)),
        );
        Self::row(
            o,
            "pacing lateness ms (20 ms tick -> sent)",
            each(&|r| pct(r.window.engine_pacing)),
        );
        Self::row(
            o,
            "client: end of turn -> first reply packet ms",
            each(&|r| pct(r.window.turn_reply)),
        );
        Self::row(
            o,
            "client: speech_stopped event -> first reply packet ms",
            each(&|r| pct(r.window.stopped_to_reply)),
        );
        Self::row(
            o,
            "client: jitter, RFC 3550 abs(D) ms (kernel receive stamps)",
            each(&|r| pct(r.window.client_jitter)),
        );
        Self::row(
            o,
            "client: echo round trip ms (EchoTest: frame sent -> its echo)",
            each(&|r| pct(r.window.echo_delay)),
        );
        Self::row(
            o,
            "client: loss (sequence gaps)",
            each(&|r| format!("{:.3}%", r.window.client_loss * 100.0)),
        );
        Self::row(
            o,
            "datagrams forwarded between shards",
            each(&|r| {
                r.window
                    .forwarded_fraction
                    .map_or("n/a".into(), |f| format!("{:.2}%", f * 100.0))
            }),
        );
        Self::row(
            o,
            "turns spoken / replies heard",
            each(&|r| format!("{} / {}", r.window.turns_spoken, r.window.replies_heard)),
        );
        Self::row(
            o,
            "load generator busy / its send lateness p99 ms",
            each(&|r| {
                format!(
                    "{:.0}% / {:.2}",
                    r.window.load_busy * 100.0,
                    r.window.client_send_late.map_or(0.0, |p| p.p99)
                )
            }),
        );
        if runs.len() > 1 && self.runs[0].target == TargetKind::Tern {
            let base = runs[0];
            o.push_str("\nSide by side (other target / Tern):\n\n| target | CPU per session-second | RSS per session |\n|---|---|---|\n");
            for (run, r) in self.runs.iter().zip(&runs).skip(1) {
                let _ = writeln!(
                    o,
                    "| {} | {:.2}x | {:.2}x |",
                    run.target.name(),
                    r.window.cpu_us_per_session_second
                        / base.window.cpu_us_per_session_second.max(1e-9),
                    r.rss_per_session_kib / base.rss_per_session_kib.max(1e-9)
                );
            }
        }
        let series: Vec<(String, Vec<(f64, f64)>)> = self
            .runs
            .iter()
            .filter_map(|r| {
                let s = r.steady.as_ref()?.window.setup?;
                Some((
                    r.target.name().to_string(),
                    vec![(50.0, s.p50), (90.0, s.p90), (99.0, s.p99), (100.0, s.max)],
                ))
            })
            .collect();
        plot(
            &dir.join("steady-setup.svg"),
            "setup time (offer -> connected)",
            "percentile",
            "ms",
            &series,
        )?;
        o.push_str("\n![setup time](steady-setup.svg)\n\n");
        Ok(())
    }

    fn ramp_md(&self, o: &mut String, dir: &Path) -> anyhow::Result<()> {
        o.push_str("## ramp (capacity search)\n\n");
        let mut lat = Vec::new();
        let mut cpu = Vec::new();
        for run in &self.runs {
            let Some(r) = &run.ramp else { continue };
            let _ = writeln!(
                o,
                "### {}: {} sessions on {} engine core(s) = **{:.0} sessions per core**\n\nStopped: {}.\n\n| sessions | server CPU % | kernel share | engine uplink p99 ms | engine downlink p99 ms | pacing p99 ms | echo round trip p99 ms | client jitter p99 ms | end of turn -> reply p50 ms | loss | load busy |\n|---|---|---|---|---|---|---|---|---|---|---|",
                run.target.name(), r.capacity, r.engine_cores, r.sessions_per_core, r.stop_reason
            );
            let p = |x: Option<Pct>| x.map_or("n/a".into(), |p| format!("{:.2}", p.p99));
            for s in &r.steps {
                let _ = writeln!(
                    o,
                    "| {} | {:.0} | {:.0}% | {} | {} | {} | {} | {} | {} | {:.3}% | {:.0}% |",
                    s.sessions,
                    s.server_cpu_pct,
                    s.server_system_share * 100.0,
                    p(s.engine_uplink),
                    p(s.engine_downlink),
                    p(s.engine_pacing),
                    p(s.echo_delay),
                    p(s.client_jitter),
                    s.turn_reply
                        .map_or("n/a".into(), |t| format!("{:.0}", t.p50)),
                    s.client_loss * 100.0,
                    s.load_busy * 100.0
                );
            }
            o.push('\n');
            lat.push((
                run.target.name().to_string(),
                r.steps
                    .iter()
                    .map(|s| (s.sessions as f64, s.added_p99_ms()))
                    .collect(),
            ));
            cpu.push((
                run.target.name().to_string(),
                r.steps
                    .iter()
                    .map(|s| (s.sessions as f64, s.server_cpu_pct))
                    .collect(),
            ));
        }
        let ramps: Vec<(&str, &RampResult)> = self
            .runs
            .iter()
            .filter_map(|r| Some((r.target.name(), r.ramp.as_ref()?)))
            .collect();
        if ramps.len() > 1 && ramps[0].0 == "tern" {
            o.push_str("Side by side, sessions per engine core (latency-bound: the ramp's criterion; CPU-bound: sessions at 100% of a core from CPU per session):\n\n| target | latency-bound | ratio to Tern | CPU-bound | ratio to Tern |\n|---|---|---|---|---|\n");
            let base = ramps[0].1;
            for (name, r) in &ramps {
                let cpu = r.cpu_bound_per_core;
                let _ = writeln!(
                    o,
                    "| {name} | {:.0} | {} | {} | {} |",
                    r.sessions_per_core,
                    ratio(r.sessions_per_core, base.sessions_per_core),
                    cpu.map_or("n/a".into(), |c| format!("{c:.0}")),
                    match (cpu, base.cpu_bound_per_core) {
                        (Some(c), Some(b)) => ratio(c, b),
                        _ => "n/a".into(),
                    }
                );
            }
            o.push('\n');
        }
        plot(&dir.join("ramp-latency.svg"), "added p99 (Tern: stamps, pacing, client jitter; EchoTest: echo round trip; AudioBridge: client jitter)", "sessions", "ms", &lat)?;
        plot(
            &dir.join("ramp-cpu.svg"),
            "server CPU",
            "sessions",
            "% of one core",
            &cpu,
        )?;
        o.push_str("![added latency](ramp-latency.svg)\n![server CPU](ramp-cpu.svg)\n\n");
        Ok(())
    }

    fn storm_md(&self, o: &mut String) {
        let runs: Vec<&StormResult> = self.runs.iter().filter_map(|r| r.storm.as_ref()).collect();
        o.push_str("## setup storm\n\n");
        self.header(o);
        let each =
            |f: &dyn Fn(&StormResult) -> String| runs.iter().map(|r| f(r)).collect::<Vec<_>>();
        Self::row(
            o,
            "handshakes in flight (window)",
            each(&|r| r.window.to_string()),
        );
        Self::row(
            o,
            "handshakes completed / failed offers",
            each(&|r| format!("{} / {}", r.handshakes, r.failed_offers)),
        );
        Self::row(
            o,
            "handshakes per second (measured)",
            each(&|r| format!("{:.0}", r.handshakes_per_second)),
        );
        Self::row(
            o,
            "server CPU, % of one core",
            each(&|r| format!("{:.0}", r.server_cpu_pct)),
        );
        Self::row(
            o,
            "server CPU µs per handshake (offer, ICE, DTLS, hangup)",
            each(&|r| format!("{:.0}", r.cpu_us_per_handshake)),
        );
        Self::row(
            o,
            "**handshakes per second per engine core** (1e6 / CPU per handshake)",
            each(&|r| format!("{:.0}", r.handshakes_per_core_second)),
        );
        Self::row(
            o,
            "setup ms p50 / p90 / p99 / max",
            each(&|r| Pct::cells(r.setup)),
        );
        if runs.len() > 1 && self.runs[0].target == TargetKind::Tern {
            o.push_str("\nRatio to Tern, handshakes per core-second: ");
            let base = runs[0].handshakes_per_core_second.max(1e-9);
            let parts: Vec<String> = self
                .runs
                .iter()
                .zip(&runs)
                .map(|(run, r)| {
                    format!(
                        "{} {:.2}x",
                        run.target.name(),
                        r.handshakes_per_core_second / base
                    )
                })
                .collect();
            o.push_str(&parts.join(", "));
            o.push('\n');
        }
        o.push('\n');
    }
}

/// A line chart of `series` (name, points) as SVG.
fn plot(
    path: &Path,
    title: &str,
    x: &str,
    y: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> anyhow::Result<()> {
    let pts = series.iter().flat_map(|s| s.1.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
    for &(a, b) in pts {
        x0 = x0.min(a);
        x1 = x1.max(a);
        if b.is_finite() {
            y1 = y1.max(b);
        }
    }
    if x0 > x1 {
        return Ok(());
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, 0.0..(y1 * 1.15).max(1e-3))?;
    chart.configure_mesh().x_desc(x).y_desc(y).draw()?;
    for (i, (name, p)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(p.iter().copied(), color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart.draw_series(
            p.iter()
                .map(|&(a, b)| Circle::new((a, b), 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// `x / base` as `1.23x`, or `n/a` when the base is zero (a target that held nothing).
fn ratio(x: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:.2}x", x / base)
    } else {
        "n/a".into()
    }
}

#[cfg(test)]
mod ratio_tests {
    use super::ratio;

    #[test]
    fn a_zero_base_is_not_divided_by() {
        assert_eq!(ratio(240.0, 160.0), "1.50x");
        assert_eq!(ratio(80.0, 0.0), "n/a");
    }
}
