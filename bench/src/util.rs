//! Helpers shared by the bench modes: HTTP to the server, its /metrics and /proc figures, and
//! the server child process.

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tern_testkit::http;

pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    http_with_location(addr, method, path, body).map(|(s, _, b)| (s, b))
}

/// The same, also returning the `Location` header (the call's URL after an offer).
pub fn http_with_location(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Option<String>, Vec<u8>)> {
    request(addr, method, path, "application/sdp", body)
}

/// A JSON request (Janus's HTTP API); a `Null` body sends none.
pub fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body)?
    };
    let (status, _, resp) = request(addr, method, path, "application/json", &bytes)?;
    if status != 200 {
        bail!("{method} {path}: HTTP {status}");
    }
    Ok(serde_json::from_slice(&resp)?)
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Option<String>, Vec<u8>)> {
    // A kept-alive connection per thread and server, as browsers and SDKs keep theirs; a new
    // one per request with `--keep-alive false`.
    let headers = [("Content-Type", content_type)];
    let connection = if KEEP_ALIVE.load(std::sync::atomic::Ordering::Relaxed) {
        http::Connection::KeepAlive
    } else {
        http::Connection::Close
    };
    let r = http::request(addr, method, path, &headers, body, connection)?;
    let location = r.header("location").map(str::to_string);
    Ok((r.status, location, r.body))
}

/// Whether bench HTTP keeps connections alive (`--keep-alive`, default true).
pub static KEEP_ALIVE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

pub fn proc_times_us(pid: u32) -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit(')').next().context("stat")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    let (user, sys): (u64, u64) = (
        f.get(11).context("utime")?.parse()?,
        f.get(12).context("stime")?.parse()?,
    );
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(((user + sys) * 1_000_000 / hz, sys * 1_000_000 / hz))
}

pub fn proc_cpu_us(pid: u32) -> anyhow::Result<u64> {
    proc_times_us(pid).map(|t| t.0)
}

pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}

/// One scrape of the server's /metrics; read any number of metrics from it.
pub struct Metrics(String);

impl Metrics {
    pub fn fetch(addr: SocketAddr) -> anyhow::Result<Self> {
        let (_, body) = http(addr, "GET", "/metrics", b"")?;
        Ok(Metrics(String::from_utf8_lossy(&body).into_owned()))
    }

    /// `name` summed over its samples (shards, labels).
    pub fn get(&self, name: &str) -> anyhow::Result<f64> {
        self.get_where(name, "")
    }

    /// The same, over the samples whose line contains `filter` (a label such as `quantile="0.99"`).
    pub fn get_where(&self, name: &str, filter: &str) -> anyhow::Result<f64> {
        let mut found = false;
        let mut sum = 0.0;
        for l in self
            .0
            .lines()
            .filter(|l| l.split([' ', '{']).next() == Some(name) && l.contains(filter))
        {
            if let Some(v) = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                sum += v;
                found = true;
            }
        }
        if !found {
            bail!("{name} not in /metrics");
        }
        Ok(sum)
    }
}

pub struct Server(pub Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The HTTP address the bench's server listens on.
pub const HTTP: &str = "127.0.0.1:18080";

/// Starts `tern serve` on `core` with the bench's ports and waits until it answers.
pub fn start_server(tern: &str, core: usize) -> anyhow::Result<Server> {
    let server = Server(
        Command::new(tern)
            .args(["serve", "--cores", &core.to_string(), "--http", HTTP])
            .args(["--udp-port", "13478", "--public-ip", "127.0.0.1"])
            .args(["--max-sessions", "10000", "--max-offers-per-ip", "0"])
            .env("RUST_LOG", "warn")
            .spawn()
            .with_context(|| format!("starting {tern} (build it with cargo build --release)"))?,
    );
    let addr: SocketAddr = HTTP.parse()?;
    let started = Instant::now();
    while http(addr, "GET", "/healthz", b"").is_err() {
        if started.elapsed() > Duration::from_secs(20) {
            bail!("server did not come up");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    Ok(server)
}

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; we set one CPU for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The CPU after `server_core`, for the load generator.
pub fn client_core(server_core: usize) -> usize {
    (server_core + 1) % std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Metrics {
    /// The cumulative buckets of a Prometheus histogram line family: (le seconds, count).
    pub fn buckets(&self, bucket_name: &str) -> Vec<(f64, f64)> {
        self.0
            .lines()
            .filter(|l| l.starts_with(bucket_name) && l[bucket_name.len()..].starts_with('{'))
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, l.rsplit(' ').next()?.parse().ok()?))
            })
            .collect()
    }
}
