//! `--mode idle`: establishes `--sessions` sessions whose clients are muted (no audio, only ICE
//! consent checks and SCTP), holds them for `--seconds`, and measures what an idle session costs:
//! heap and RSS per session, server CPU per idle session-second, and the setup rate reached while
//! establishing them. Extrapolates memory and CPU to one million sessions.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tern_testkit::peer::Client;

use crate::util::{client_core, http, pin_to, proc_cpu_us, rss_kib, start_server, Metrics, HTTP};
use crate::Args;

pub fn run(a: Args) -> anyhow::Result<()> {
    let addr: SocketAddr = HTTP.parse()?;
    let server = start_server(&a.tern, a.server_core)?;
    let pid = server.0.id();
    pin_to(client_core(a.server_core));
    let heap0 = Metrics::fetch(addr)?.get("tern_heap_live_bytes")?;
    let rss0 = rss_kib(pid)?;
    let mut clients = Vec::with_capacity(a.sessions);
    let mut offered_at = Vec::with_capacity(a.sessions);
    let mut buf = [0u8; 2048];
    let drive = |clients: &mut Vec<(Client, UdpSocket)>, buf: &mut [u8]| {
        for (c, s) in clients.iter_mut() {
            for (to, d) in c.poll(Instant::now()) {
                let _ = s.send_to(&d, to);
            }
            while let Ok((n, from)) = s.recv_from(buf) {
                c.receive(Instant::now(), from, &buf[..n]);
            }
        }
    };
    let t_setup = Instant::now();
    for i in 0..a.sessions {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.set_nonblocking(true)?;
        let (mut c, offer) = Client::new(Instant::now(), sock.local_addr()?, Vec::new());
        c.muted = true;
        let (status, body) = http(addr, "POST", "/v1/realtime/calls", offer.as_bytes())?;
        if status != 201 {
            bail!(
                "offer {i} refused: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        c.accept_answer(std::str::from_utf8(&body)?);
        clients.push((c, sock));
        offered_at.push(Instant::now());
        if i % 50 == 49 {
            drive(&mut clients, &mut buf);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while clients.iter().any(|(c, _)| c.connected_at.is_none()) && Instant::now() < deadline {
        drive(&mut clients, &mut buf);
        std::thread::sleep(Duration::from_millis(1));
    }
    let setup_s = t_setup.elapsed().as_secs_f64();
    let mut setup = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    for ((c, _), t) in clients.iter().zip(&offered_at) {
        if let Some(done) = c.connected_at {
            setup.saturating_record(done.saturating_duration_since(*t).as_micros() as u64);
        }
    }
    let ms = |q: f64| setup.value_at_quantile(q) as f64 / 1000.0;
    let connected = clients
        .iter()
        .filter(|(c, _)| c.connected_at.is_some())
        .count();
    if connected == 0 {
        bail!("no session connected");
    }
    // Let setup work settle, then measure a quiet window.
    let settle = Instant::now() + Duration::from_secs(3);
    while Instant::now() < settle {
        drive(&mut clients, &mut buf);
        std::thread::sleep(Duration::from_millis(5));
    }
    let heap1 = Metrics::fetch(addr)?.get("tern_heap_live_bytes")?;
    let rss1 = rss_kib(pid)?;
    let cpu0 = proc_cpu_us(pid)?;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(a.seconds) {
        drive(&mut clients, &mut buf);
        std::thread::sleep(Duration::from_millis(5));
    }
    let window = t0.elapsed().as_secs_f64();
    let cpu_us = proc_cpu_us(pid)?.saturating_sub(cpu0);
    let alive = Metrics::fetch(addr)?.get("tern_sessions")?;
    let n = connected as f64;
    let heap_per = (heap1 - heap0) / n;
    let rss_per = (rss1.saturating_sub(rss0)) as f64 * 1024.0 / n;
    let cpu_per = cpu_us as f64 / (n * window);
    let gib = |b: f64| b / (1u64 << 30) as f64;
    let report = format!(
        "# tern-bench idle\n\n- command: `{}`\n- {connected} of {} sessions connected in {setup_s:.1} s ({:.0} setups/s, offers sent back to back from one client thread); {alive} still alive after the {window:.0} s window\n- setup (answer received -> connected, client side, while the storm went on) p50 / p90 / p99 / max: {:.1} / {:.1} / {:.1} / {:.1} ms\n\n\
         | metric | per idle session | one million idle sessions |\n|---|---|---|\n\
         | heap (counted allocator) | {:.1} KiB | {:.1} GiB |\n\
         | RSS | {:.1} KiB | {:.1} GiB |\n\
         | server CPU (consent checks, timers) | {cpu_per:.1} µs per second | {:.1} cores |\n",
        std::env::args().collect::<Vec<_>>().join(" "),
        a.sessions,
        connected as f64 / setup_s,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        setup.max() as f64 / 1000.0,
        heap_per / 1024.0,
        gib(heap_per * 1e6),
        rss_per / 1024.0,
        gib(rss_per * 1e6),
        cpu_per, // µs per second per session x 1e6 sessions = µs per second = cores
    );
    println!("{report}");
    if let Some(out) = &a.out {
        std::fs::write(out, &report).with_context(|| format!("writing {out}"))?;
    }
    drop(server);
    Ok(())
}
