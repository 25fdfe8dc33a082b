//! Helpers shared by the bench modes: HTTP to the server, its /metrics and /proc figures, and
//! the server child process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

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
    // one when it was closed (one retry) or with `--keep-alive false`.
    let keep = KEEP_ALIVE.load(std::sync::atomic::Ordering::Relaxed);
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        if keep { "keep-alive" } else { "close" },
        body.len()
    );
    let mut resp = None;
    for attempt in 0..2 {
        let reused = keep && CONN.with(|c| c.borrow().as_ref().is_some_and(|(a, _)| *a == addr));
        let mut s = match CONN.with(|c| c.borrow_mut().take()) {
            Some((a, s)) if keep && a == addr => s,
            _ => {
                let s = TcpStream::connect(addr)?;
                s.set_read_timeout(Some(Duration::from_secs(40)))?;
                s.set_nodelay(true)?;
                s
            }
        };
        let sent = s.write_all(req.as_bytes()).and_then(|_| s.write_all(body));
        match sent
            .map_err(anyhow::Error::from)
            .and_then(|_| read_response(&mut s))
        {
            Ok((r, open)) => {
                if keep && open {
                    CONN.with(|c| *c.borrow_mut() = Some((addr, s)));
                }
                resp = Some(r);
                break;
            }
            // A kept connection the server closed meanwhile: once more on a new one.
            Err(_) if reused && attempt == 0 => continue,
            Err(e) => return Err(e),
        }
    }
    let resp = resp.context("no response")?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no HTTP head")?;
    let head = String::from_utf8_lossy(&resp[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("status")?;
    let location = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("location")
            .then(|| v.trim().to_string())
    });
    let body = &resp[split + 4..];
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        location,
        if chunked {
            dechunk(body)?
        } else {
            body.to_vec()
        },
    ))
}

/// Whether bench HTTP keeps connections alive (`--keep-alive`, default true).
pub static KEEP_ALIVE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

thread_local! {
    static CONN: std::cell::RefCell<Option<(SocketAddr, TcpStream)>> =
        const { std::cell::RefCell::new(None) };
}

/// Reads one response (head, then a body sized by Content-Length, chunked, or up to the close);
/// returns its bytes and whether the connection stays usable.
fn read_response(s: &mut TcpStream) -> anyhow::Result<(Vec<u8>, bool)> {
    let mut resp = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            bail!("connection closed before a response");
        }
        resp.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&resp[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let closes = header("connection:").is_some_and(|v| v == "close");
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status == "204" || status == "304" {
        return Ok((resp, !closes));
    }
    if let Some(len) = header("content-length:").and_then(|v| v.parse::<usize>().ok()) {
        while resp.len() < head_end + len {
            let n = s.read(&mut buf)?;
            if n == 0 {
                bail!("connection closed inside a body");
            }
            resp.extend_from_slice(&buf[..n]);
        }
        return Ok((resp, !closes));
    }
    if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        while !resp[head_end..].ends_with(b"0\r\n\r\n") {
            let n = s.read(&mut buf)?;
            if n == 0 {
                bail!("connection closed inside a chunked body");
            }
            resp.extend_from_slice(&buf[..n]);
        }
        return Ok((resp, !closes));
    }
    s.read_to_end(&mut resp)?;
    Ok((resp, false))
}

/// The body of a `Transfer-Encoding: chunked` response (Janus answers that way).
fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line")?;
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .context("chunk size")?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).context("truncated chunk")?);
        b = b.get(size + 2..).unwrap_or_default();
    }
}

/// The process's CPU time, (user + kernel, kernel only) in µs, from one read of /proc/<pid>/stat.
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
