//! One measurement window: the server's CPU, memory and (Tern) per-stage latency buckets at its
//! start and end, and what the clients measured in between, reduced to one `WindowResult`.

use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::client::ClientStats;
use crate::target::Target;
use crate::util::{proc_times_us, rss_kib, Metrics};

/// p50 / p90 / p99 / max in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Pct {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub count: u64,
}

impl Pct {
    pub fn of_us(h: &Histogram<u64>) -> Option<Pct> {
        (!h.is_empty()).then(|| {
            let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
            Pct {
                p50: q(0.5),
                p90: q(0.9),
                p99: q(0.99),
                max: h.max() as f64 / 1000.0,
                count: h.len(),
            }
        })
    }

    pub fn cells(o: Option<Pct>) -> String {
        o.map_or("n/a".into(), |p| {
            format!("{:.2} / {:.2} / {:.2} / {:.2}", p.p50, p.p90, p.p99, p.max)
        })
    }
}

/// The server at one moment.
pub struct ServerSample {
    at: Instant,
    cpu_us: u64,
    sys_us: u64,
    pub rss_kib: u64,
    metrics: Option<Metrics>,
}

impl ServerSample {
    pub fn take(t: &Target) -> anyhow::Result<Self> {
        let (cpu_us, sys_us) = proc_times_us(t.pid())?;
        Ok(ServerSample {
            at: Instant::now(),
            cpu_us,
            sys_us,
            rss_kib: rss_kib(t.pid())?,
            metrics: t.metrics(),
        })
    }

    pub fn heap_bytes(&self) -> Option<f64> {
        self.metrics.as_ref()?.get("tern_heap_live_bytes").ok()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct WindowResult {
    pub sessions: usize,
    pub seconds: f64,
    /// Server process CPU, percent of one core.
    pub server_cpu_pct: f64,
    pub cpu_us_per_session_second: f64,
    pub rss_kib: u64,
    /// Engine-added latency from Tern's per-stage stamps over this window (ms; None for Janus).
    pub engine_uplink: Option<Pct>,
    pub engine_downlink: Option<Pct>,
    pub engine_pacing: Option<Pct>,
    /// Datagrams handed to another shard / datagrams received (Tern).
    pub forwarded_fraction: Option<f64>,
    pub client_loss: f64,
    pub client_jitter: Option<Pct>,
    pub turn_reply: Option<Pct>,
    pub stopped_to_reply: Option<Pct>,
    pub client_send_late: Option<Pct>,
    /// Echo targets: frame sent -> its echo back, ms.
    pub echo_delay: Option<Pct>,
    /// Share of the server's CPU time spent in the kernel (syscalls, network stack).
    pub server_system_share: f64,
    pub setup: Option<Pct>,
    pub turns_spoken: u64,
    pub replies_heard: u64,
    /// Share of the load generator's cores spent working (near 1: the load itself is the limit).
    pub load_busy: f64,
}

impl WindowResult {
    pub fn new(
        sessions: usize,
        a: &ServerSample,
        b: &ServerSample,
        c: &ClientStats,
        load_cores: usize,
    ) -> Self {
        let seconds = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
        let cpu = b.cpu_us.saturating_sub(a.cpu_us) as f64;
        let stage = |name: &str| match (&a.metrics, &b.metrics) {
            (Some(x), Some(y)) => window_quantiles(x, y, name),
            _ => None,
        };
        let delta = |name: &str| match (&a.metrics, &b.metrics) {
            (Some(x), Some(y)) => Some(y.get(name).ok()? - x.get(name).ok()?),
            _ => None,
        };
        let forwarded_fraction = match (
            delta("tern_datagrams_forwarded_total"),
            delta("tern_datagrams_in_total"),
        ) {
            (Some(f), Some(n)) if n > 0.0 => Some(f / n),
            _ => None,
        };
        WindowResult {
            sessions,
            seconds,
            server_cpu_pct: cpu / seconds / 1e4,
            cpu_us_per_session_second: cpu / (sessions.max(1) as f64 * seconds),
            rss_kib: b.rss_kib,
            engine_uplink: stage("tern_uplink_latency_seconds"),
            engine_downlink: stage("tern_downlink_latency_seconds"),
            engine_pacing: stage("tern_pacing_lateness_seconds"),
            forwarded_fraction,
            client_loss: c.loss(),
            client_jitter: Pct::of_us(&c.jitter_us),
            turn_reply: Pct::of_us(&c.turn_reply_us),
            stopped_to_reply: Pct::of_us(&c.stopped_to_reply_us),
            client_send_late: Pct::of_us(&c.send_late_us),
            echo_delay: Pct::of_us(&c.echo_delay_us),
            server_system_share: b.sys_us.saturating_sub(a.sys_us) as f64 / cpu.max(1.0),
            setup: Pct::of_us(&c.setup_us),
            turns_spoken: c.turns_spoken,
            replies_heard: c.replies_heard,
            load_busy: c.busy_ns as f64 / (c.wall_ns.max(1) as f64 * load_cores.max(1) as f64),
        }
    }

    /// The capacity criterion, in ms: for Tern the worst p99 of its stamps (uplink, downlink,
    /// pacing lateness) and of the client-seen jitter (which catches time spent queued in the
    /// socket before the stamps start); for a target without stamps, the echo round trip
    /// (EchoTest) or else the client-seen jitter (AudioBridge).
    pub fn added_p99_ms(&self) -> f64 {
        let stamps = [self.engine_uplink, self.engine_downlink, self.engine_pacing]
            .iter()
            .flatten()
            .map(|p| p.p99)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        let jitter = self.client_jitter.map(|p| p.p99);
        stamps
            .map(|s| s.max(jitter.unwrap_or(0.0)))
            .or(self.echo_delay.map(|p| p.p99))
            .unwrap_or_else(|| self.client_jitter.map_or(0.0, |p| p.p99))
    }
}

/// p50/p90/p99/max of `<name>_hist` over the window between two scrapes, interpolated inside
/// buckets (max is the upper bound of the highest non-empty bucket).
fn window_quantiles(a: &Metrics, b: &Metrics, name: &str) -> Option<Pct> {
    let ba = a.buckets(&format!("{name}_hist_bucket"));
    let bb = b.buckets(&format!("{name}_hist_bucket"));
    if ba.len() != bb.len() || bb.is_empty() {
        return None;
    }
    let cum: Vec<(f64, f64)> = bb
        .iter()
        .zip(&ba)
        .map(|(&(le, y), &(_, x))| (le, (y - x).max(0.0)))
        .collect();
    let total = cum.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let q = |p: f64| {
        let want = p * total;
        let mut prev = (0.0, 0.0);
        for &(le, n) in &cum {
            if n >= want {
                let le = if le.is_finite() { le } else { prev.0 * 2.0 };
                let frac = if n > prev.1 {
                    (want - prev.1) / (n - prev.1)
                } else {
                    1.0
                };
                return (prev.0 + (le - prev.0) * frac) * 1e3;
            }
            prev = (le, n);
        }
        prev.0 * 1e3
    };
    let max = cum
        .iter()
        .rev()
        .zip(cum.iter().rev().skip(1))
        .find(|(hi, lo)| hi.1 > lo.1)
        .map_or(cum[0].0, |(hi, _)| hi.0);
    Some(Pct {
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        max: if max.is_finite() {
            max * 1e3
        } else {
            f64::INFINITY
        },
        count: total as u64,
    })
}
