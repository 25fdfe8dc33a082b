//! tern-bench (first cut): starts `tern serve` as a child process on one core, connects N real
//! WebRTC clients (str0m, on this process's thread) over loopback, has each speak a fixture turn
//! that the echo agent plays back, and reports:
//! - setup time (HTTP offer -> ICE+DTLS connected), client side, hdrhistogram p50/p90/p99/max;
//! - server CPU microseconds per session-second over the steady window (from /proc/<pid>/stat);
//! - resident memory per session (VmRSS with all sessions up minus before, divided by N);
//! - heap per session (the server's counted allocator, `tern_heap_live_bytes` in /metrics).
//!
//! `--mode soak` churns sessions for a long run and samples memory (`soak.rs`); `--mode idle`
//! measures what a muted session costs and extrapolates to a million (`idle.rs`).
//!
//! Usage: tern-bench [--mode steady|soak|idle] [--sessions N] [--seconds T] [--lifetime-s L]
//!        [--sample-s S] [--tern PATH] [--server-core C] [--out FILE]

mod idle;
mod soak;
mod util;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use tern_engine::peer::{load_wav, Client};

use util::{client_core, http, pin_to, proc_cpu_us, rss_kib, start_server, Metrics, HTTP};

pub struct Args {
    pub mode: String,
    pub lifetime_s: u64,
    pub sample_s: u64,
    pub sessions: usize,
    pub seconds: u64,
    pub tern: String,
    pub server_core: usize,
    pub out: Option<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        mode: "steady".into(),
        lifetime_s: 60,
        sample_s: 30,
        sessions: 100,
        seconds: 20,
        tern: "target/release/tern".into(),
        server_core: 0,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--sessions" => a.sessions = v.parse().context("--sessions: a number 1-20000")?,
            "--seconds" => a.seconds = v.parse().context("--seconds: a number")?,
            "--tern" => a.tern = v,
            "--server-core" => a.server_core = v.parse().context("--server-core: a CPU number")?,
            "--out" => a.out = Some(v),
            "--mode" if ["steady", "soak", "idle"].contains(&v.as_str()) => a.mode = v,
            "--mode" => bail!("--mode must be steady, soak or idle"),
            "--lifetime-s" => a.lifetime_s = v.parse().context("--lifetime-s: seconds")?,
            "--sample-s" => a.sample_s = v.parse().context("--sample-s: seconds")?,
            _ => bail!("unknown flag {k}"),
        }
    }
    if a.sessions == 0 || a.sessions > 20_000 {
        bail!("--sessions must be 1-20000");
    }
    Ok(a)
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    match a.mode.as_str() {
        "soak" => soak::run(a),
        "idle" => idle::run(a),
        _ => steady(a),
    }
}

fn steady(a: Args) -> anyhow::Result<()> {
    let http_addr: SocketAddr = HTTP.parse()?;
    let server = start_server(&a.tern, a.server_core)?;
    let pid = server.0.id();
    // The clients run away from the server's core.
    pin_to(client_core(a.server_core));
    let rss_before = rss_kib(pid)?;
    let heap_before = Metrics::fetch(http_addr)?.get("tern_heap_live_bytes")?;
    let fixture = format!(
        "{}/../engine/tests/data/hello-24k.wav",
        env!("CARGO_MANIFEST_DIR")
    );
    let (_, speech) = load_wav(&fixture);

    let mut clients = Vec::new();
    let mut setup = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut pending_setup = Vec::new();
    for _ in 0..a.sessions {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.set_nonblocking(true)?;
        let t = Instant::now();
        let (mut c, offer) = Client::new(t, sock.local_addr()?, speech.clone());
        let (status, body) = http(http_addr, "POST", "/v1/realtime/calls", offer.as_bytes())?;
        if status != 201 {
            bail!("offer refused: {status} {}", String::from_utf8_lossy(&body));
        }
        c.accept_answer(std::str::from_utf8(&body)?);
        clients.push((c, sock));
        pending_setup.push(Some(t));
    }
    let mut buf = [0u8; 2048];
    let drive = |clients: &mut Vec<(Client, UdpSocket)>,
                 pending: &mut Vec<Option<Instant>>,
                 setup: &mut Histogram<u64>,
                 buf: &mut [u8]|
     -> anyhow::Result<()> {
        for (i, (c, s)) in clients.iter_mut().enumerate() {
            let now = Instant::now();
            for (to, d) in c.poll(now) {
                let _ = s.send_to(&d, to);
            }
            while let Ok((n, from)) = s.recv_from(buf) {
                c.receive(Instant::now(), from, &buf[..n]);
            }
            if let (Some(t), Some(conn)) = (pending[i], c.connected_at) {
                setup.saturating_record(conn.saturating_duration_since(t).as_micros() as u64);
                pending[i] = None;
            }
        }
        Ok(())
    };
    let connect_deadline = Instant::now() + Duration::from_secs(30);
    while pending_setup.iter().any(Option::is_some) && Instant::now() < connect_deadline {
        drive(&mut clients, &mut pending_setup, &mut setup, &mut buf)?;
        std::thread::sleep(Duration::from_millis(1));
    }
    let connected = clients
        .iter()
        .filter(|(c, _)| c.connected_at.is_some())
        .count();
    let rss_up = rss_kib(pid)?;
    let heap_up = Metrics::fetch(http_addr)?.get("tern_heap_live_bytes")?;
    let cpu0 = proc_cpu_us(pid)?;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(a.seconds) {
        drive(&mut clients, &mut pending_setup, &mut setup, &mut buf)?;
        std::thread::sleep(Duration::from_millis(1));
    }
    let window = t0.elapsed().as_secs_f64();
    let cpu_us = proc_cpu_us(pid)? - cpu0;
    let replies = clients
        .iter()
        .filter(|(c, _)| c.audible_frames() > 20)
        .count();
    let per_session_second = cpu_us as f64 / (connected as f64 * window);
    // Engine-added latency and pacing, from the server's own hdrhistograms (milliseconds).
    let scrape = Metrics::fetch(http_addr)?;
    let server_ms = |name: &str, q: &str| {
        scrape
            .get_where(name, &format!("quantile=\"{q}\""))
            .map_or(f64::NAN, |v| v * 1e3)
    };
    let stages: Vec<String> = [
        (
            "uplink (datagram -> worker ring)",
            "tern_uplink_latency_seconds",
        ),
        (
            "downlink (ring -> datagram sent)",
            "tern_downlink_latency_seconds",
        ),
        (
            "pacing lateness (tick -> sent)",
            "tern_pacing_lateness_seconds",
        ),
    ]
    .iter()
    .map(|(label, name)| {
        format!(
            "| server {label} ms p50 / p99 / max | {:.3} / {:.3} / {:.3} |\n",
            server_ms(name, "0.5"),
            server_ms(name, "0.99"),
            server_ms(name, "1")
        )
    })
    .collect();
    let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    // What the clients saw: RFC 3550 |D| per reply packet (arrival spacing minus RTP spacing),
    // including this process's own polling delay (clients share one core).
    let mut jitter = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for (c, _) in &clients {
        for &d in &c.transit_deltas_us {
            jitter.saturating_record(d.max(1));
        }
    }
    let report = format!(
        "# tern-bench steady\n\n- command: `{}`\n- sessions: {} requested, {connected} connected, {replies} heard an echo\n- window: {window:.1} s\n\n\
         | metric | value |\n|---|---|\n\
         | setup ms p50 / p90 / p99 / max | {:.2} / {:.2} / {:.2} / {:.2} |\n\
         | server CPU µs per session-second | {per_session_second:.1} |\n\
         | server RSS KiB before / with sessions | {rss_before} / {rss_up} |\n\
         | RSS per session KiB | {:.1} |\n\
         | heap per session KiB (counted allocator) | {:.1} |\n\
         | client-seen jitter, RFC 3550 abs(D) ms p50 / p90 / p99 / max | {:.3} / {:.3} / {:.3} / {:.3} |\n{}",
        std::env::args().collect::<Vec<_>>().join(" "),
        a.sessions,
        q(&setup, 0.5),
        q(&setup, 0.9),
        q(&setup, 0.99),
        setup.max() as f64 / 1000.0,
        (rss_up.saturating_sub(rss_before)) as f64 / connected.max(1) as f64,
        (heap_up - heap_before) / 1024.0 / connected.max(1) as f64,
        q(&jitter, 0.5),
        q(&jitter, 0.9),
        q(&jitter, 0.99),
        jitter.max() as f64 / 1000.0,
        stages.concat(),
    );
    println!("{report}");
    if let Some(out) = a.out {
        std::fs::write(&out, &report).with_context(|| format!("writing {out}"))?;
    }
    drop(server);
    Ok(())
}
