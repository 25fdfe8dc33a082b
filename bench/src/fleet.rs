//! `--mode fleet`: what a fleet costs, measured in one run on a real `redis-server`.
//!
//! 1. **Relay datapath.** `tern relay` pinned to `--server-core`; on the other cores a node
//!    stand-in registered in Redis (it echoes what the relay brings, header and all) and a plain
//!    UDP echo for the direct baseline. `--sessions` flows (one client socket each, 50 packets a
//!    second of 172 bytes, the size of a 20 ms Opus frame in SRTP) first straight to the echo,
//!    then through the relay: round trips in hdrhistogram, the relay's datagrams per second and
//!    its CPU from /proc, so datagrams per second per relay core. Also at 1/4 and 1/2 of the
//!    flows. The relay's added latency is the relayed round trip minus the direct one at each
//!    percentile (two relay hops per round trip).
//! 2. **Placement.** Two `tern serve` nodes in a fleet; node A holds one call with
//!    `--max-sessions 1`, so every further offer to it is forwarded to node B. Offer round trips
//!    (POST -> answer) straight to B against through A.
//! 3. **Redis per call.** Redis's `total_commands_processed` over the offers and hangups, less
//!    the fleet's background rate (node and relay refreshes) measured over an idle window.

use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde_json::json;
use tern_engine::core::relay::{read_header, RelayToken};
use tern_engine::core::session_id::{SessionId, TagKey};
use tern_testkit::peer::{binding_request, Client};

use crate::util::{http, http_with_location, pin_to, proc_cpu_us, Metrics, Server};
use crate::Args;

const SECRET: &str = "bench-fleet-secret";
/// The node id the echo stand-in registers as.
const ECHO_NODE: u16 = 900;
const PACKET: usize = 172;
const TICK: Duration = Duration::from_millis(20);

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) -> anyhow::Result<()> {
    let t0 = Instant::now();
    while !ok() {
        if t0.elapsed() > within {
            bail!("{what} within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

struct Redis {
    _p: Server,
    url: String,
}

impl Redis {
    fn start() -> anyhow::Result<Self> {
        let port = free_port()?;
        let p = Server(
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .context("redis-server (scripts/setup.sh installs it)")?,
        );
        let url = format!("redis://127.0.0.1:{port}/0");
        let r = Redis { _p: p, url };
        wait_for("redis answers", Duration::from_secs(10), || {
            r.conn().is_ok()
        })?;
        Ok(r)
    }

    fn conn(&self) -> anyhow::Result<redis::Connection> {
        let c = redis::Client::open(self.url.as_str())?;
        Ok(c.get_connection_with_timeout(Duration::from_millis(500))?)
    }

    fn commands(&self) -> anyhow::Result<u64> {
        let info: String = redis::cmd("INFO").arg("stats").query(&mut self.conn()?)?;
        info.lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .context("total_commands_processed in INFO")?
            .trim()
            .parse()
            .context("a count")
    }
}

/// Echoes datagrams until `stop`: relayed ones keep their header (the relay needs it back).
fn echo(sock: UdpSocket, token: Option<RelayToken>, stop: Arc<AtomicBool>, cpu: usize) {
    pin_to(cpu);
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if let Some(t) = &token {
            // A node answers the client the header names, through the relay it came from.
            // The reply carries the same header (same client, same token).
            if read_header(&buf[..n], t).is_err() {
                continue;
            }
        }
        let _ = sock.send_to(&buf[..n], from);
    }
}

struct PathRun {
    rtt: Histogram<u64>,
    sent: u64,
    received: u64,
    relay_cpu_s: f64,
    relay_datagrams: f64,
    seconds: f64,
}

/// `flows` clients, 50 packets a second each, to `dest` for `seconds`.
fn run_flows(
    flows: usize,
    seconds: u64,
    dest: SocketAddr,
    key: Option<&TagKey>,
    cpu: usize,
) -> anyhow::Result<(Histogram<u64>, u64, u64)> {
    pin_to(cpu);
    let socks: Vec<UdpSocket> = (0..flows)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect::<anyhow::Result<_>>()?;
    if let Some(key) = key {
        // Each flow's first datagram: a binding request with a ufrag the fleet sealed.
        for (i, s) in socks.iter().enumerate() {
            let tag = SessionId::sealed(key, ECHO_NODE, 0, i as u32, 1, rand_u32(i));
            s.send_to(&binding_request(&tag.ufrag()), dest)?;
        }
        std::thread::sleep(Duration::from_millis(200));
        drain(&socks, None);
    }
    // One epoll set over every client socket: a round trip is stamped when its datagram is
    // ready, not when a polling loop comes round.
    // SAFETY: plain epoll syscalls on sockets this function owns; `events` outlives each wait.
    let ep = unsafe { libc::epoll_create1(0) };
    if ep < 0 {
        bail!("epoll_create1: {}", std::io::Error::last_os_error());
    }
    for (i, s) in socks.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 512];
    let t0 = Instant::now();
    let mut rtt = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3)?;
    let mut pkt = [0u8; PACKET];
    pkt[0] = 0x80;
    pkt[1] = 111;
    let mut sent = 0u64;
    let mut received = 0u64;
    let end = t0 + Duration::from_secs(seconds);
    let mut next = t0;
    let mut wait = |until: Instant, rtt: &mut Histogram<u64>| -> u64 {
        let mut got = 0;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let ms = left.as_millis().min(1000) as i32;
            let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, ms) };
            for e in &events[..n.max(0) as usize] {
                got += drain(&socks[e.u64 as usize..e.u64 as usize + 1], Some((rtt, t0)));
            }
            if n <= 0 && Instant::now() >= until {
                return got;
            }
        }
    };
    // Clients are not in step: each tick's sends go out in four groups 5 ms apart.
    let groups = 4;
    let per_group = socks.len().div_ceil(groups);
    while Instant::now() < end {
        for g in socks.chunks(per_group) {
            for s in g {
                let stamp = t0.elapsed().as_micros() as u64;
                pkt[12..20].copy_from_slice(&stamp.to_be_bytes());
                if s.send_to(&pkt, dest).is_ok() {
                    sent += 1;
                }
            }
            next += TICK / groups as u32;
            received += wait(next, &mut rtt);
        }
    }
    received += wait(Instant::now() + Duration::from_millis(100), &mut rtt);
    unsafe { libc::close(ep) };
    Ok((rtt, sent, received))
}

fn rand_u32(i: usize) -> u32 {
    (i as u32).wrapping_mul(2_654_435_761) ^ 0x5bd1_e995
}

/// Reads every socket until empty; records round trips of stamped packets.
fn drain(socks: &[UdpSocket], mut rtt: Option<(&mut Histogram<u64>, Instant)>) -> u64 {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    for s in socks {
        while let Ok(len) = s.recv(&mut buf) {
            // Through the relay the client gets the payload alone, as a browser would.
            if len == PACKET && buf[0] == 0x80 {
                n += 1;
                if let Some((h, t0)) = rtt.as_mut() {
                    let stamp = u64::from_be_bytes(buf[12..20].try_into().unwrap_or([0; 8]));
                    let now = t0.elapsed().as_micros() as u64;
                    let _ = h.record(now.saturating_sub(stamp).max(1));
                }
            }
        }
    }
    n
}

fn pcts(h: &Histogram<u64>) -> serde_json::Value {
    json!({
        "p50_us": h.value_at_quantile(0.5),
        "p90_us": h.value_at_quantile(0.9),
        "p99_us": h.value_at_quantile(0.99),
        "max_us": h.max(),
        "count": h.len(),
    })
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let relay_core = a.server_core;
    let load_core = (relay_core + 1) % cpus;
    let redis = Redis::start()?;
    let key = TagKey::new(SECRET.as_bytes());
    let token = RelayToken::new(&key);
    let stop = Arc::new(AtomicBool::new(false));

    // The node stand-in: its relay ingress and its record in the fleet.
    // Large buffers, as a node's sockets have (`bind_udp`).
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let ingress = tern_engine::shell::net::bind_udp(any)?;
    ingress.set_nonblocking(false)?;
    let ingress_addr = ingress.local_addr()?;
    let direct = tern_engine::shell::net::bind_udp(any)?;
    direct.set_nonblocking(false)?;
    let direct_addr = direct.local_addr()?;
    let mut threads = Vec::new();
    for (sock, tok) in [(ingress, Some(token)), (direct, None)] {
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || echo(sock, tok, stop, load_core)));
    }
    let record = json!({
        "node": ECHO_NODE, "instance": "bench", "public": "127.0.0.1:9",
        "internal": "127.0.0.1:9", "shards": 1, "relay_ingress": ingress_addr,
        "state": "serving", "sessions": 0, "capacity_left": 1, "cpu_percent": 0.0,
    })
    .to_string();
    {
        let (stop, url) = (stop.clone(), redis.url.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut c) = redis::Client::open(url.as_str())
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
                {
                    let _: redis::RedisResult<()> = redis::cmd("SET")
                        .arg(format!("tern:node:{ECHO_NODE}"))
                        .arg(&record)
                        .arg("PX")
                        .arg(5000)
                        .query(&mut c);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }));
    }

    let (relay_port, relay_http) = (free_port()?, free_port()?);
    let relay = Server(
        Command::new(&a.tern)
            .args(["relay", "--cores", &relay_core.to_string()])
            .args([
                "--udp-bind",
                "127.0.0.1",
                "--udp-port",
                &relay_port.to_string(),
            ])
            .args(["--internal-addr", &format!("127.0.0.1:{}", free_port()?)])
            .args(["--http", &format!("127.0.0.1:{relay_http}")])
            .args(["--fleet", &redis.url, "--fleet-secret", SECRET])
            .env("RUST_LOG", "warn")
            .spawn()
            .with_context(|| format!("starting {} relay", a.tern))?,
    );
    let relay_http: SocketAddr = format!("127.0.0.1:{relay_http}").parse()?;
    let relay_addr: SocketAddr = format!("127.0.0.1:{relay_port}").parse()?;
    wait_for("the relay lists the node", Duration::from_secs(10), || {
        Metrics::fetch(relay_http)
            .and_then(|m| m.get("tern_relay_nodes"))
            .is_ok_and(|n| n == 1.0)
    })?;
    std::thread::sleep(Duration::from_millis(300));

    let mut levels = Vec::new();
    let mut md = String::new();
    for flows in [a.sessions / 4, a.sessions / 2, a.sessions] {
        let flows = flows.max(1);
        let secs = a.seconds;
        // On a thread of its own: the pin must not pass to the processes started later.
        let (d_rtt, d_sent, d_recv) =
            std::thread::spawn(move || run_flows(flows, secs, direct_addr, None, load_core))
                .join()
                .map_err(|_| anyhow::anyhow!("the direct load thread panicked"))??;
        let m0 = Metrics::fetch(relay_http)?;
        let c0 = proc_cpu_us(relay.0.id())?;
        let t0 = Instant::now();
        let k = key.clone();
        let (r_rtt, r_sent, r_recv) =
            std::thread::spawn(move || run_flows(flows, secs, relay_addr, Some(&k), load_core))
                .join()
                .map_err(|_| anyhow::anyhow!("the relayed load thread panicked"))??;
        let seconds = t0.elapsed().as_secs_f64();
        let c1 = proc_cpu_us(relay.0.id())?;
        let m1 = Metrics::fetch(relay_http)?;
        let dgrams = |m: &Metrics| -> anyhow::Result<f64> {
            Ok(m.get("tern_relay_to_node_total")? + m.get("tern_relay_to_client_total")?)
        };
        let run = PathRun {
            rtt: r_rtt,
            sent: r_sent,
            received: r_recv,
            relay_cpu_s: (c1 - c0) as f64 / 1e6,
            relay_datagrams: dgrams(&m1)? - dgrams(&m0)?,
            seconds,
        };
        let pps = run.relay_datagrams / run.seconds;
        let cpu = run.relay_cpu_s / run.seconds;
        let per_core = if cpu > 0.0 { pps / cpu } else { 0.0 };
        let added =
            |q: f64| run.rtt.value_at_quantile(q) as i64 - d_rtt.value_at_quantile(q) as i64;
        let _ = writeln!(
            md,
            "| {flows} | {:.0} | {:.1}% | {:.0} | {} / {} | {} / {} | {} / {} | {:.3}% / {:.3}% |",
            pps,
            cpu * 100.0,
            per_core,
            d_rtt.value_at_quantile(0.5),
            d_rtt.value_at_quantile(0.99),
            run.rtt.value_at_quantile(0.5),
            run.rtt.value_at_quantile(0.99),
            added(0.5),
            added(0.99),
            100.0 * (1.0 - d_recv as f64 / d_sent.max(1) as f64),
            100.0 * (1.0 - run.received as f64 / run.sent.max(1) as f64),
        );
        levels.push(json!({
            "flows": flows,
            "direct": { "rtt": pcts(&d_rtt), "sent": d_sent, "received": d_recv },
            "relay": { "rtt": pcts(&run.rtt), "sent": run.sent, "received": run.received },
            "relay_datagrams_per_s": pps,
            "relay_cpu_fraction": cpu,
            "relay_datagrams_per_s_per_core": per_core,
            "added_p50_us": added(0.5),
            "added_p99_us": added(0.99),
        }));
        eprintln!(
            "relay: {flows} flows, {pps:.0} datagrams/s at {:.1}% CPU",
            cpu * 100.0
        );
    }
    drop(relay);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }

    let (placement, redis_cost) = placement(&a, &redis)?;
    let machine = crate::report::Machine::probe();
    let header = format!(
        "# Fleet: relay, placement, Redis\n\n`{}`\n\nMachine: {} CPUs ({}), {:.0} GiB, {}, commit {}.\n\n",
        std::env::args().collect::<Vec<_>>().join(" "),
        machine.cpus,
        machine.cpu_model,
        machine.memory_gib,
        machine.kernel,
        machine.commit
    );
    let report = json!({
        "mode": "fleet",
        "machine": machine,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "relay_core": relay_core,
        "load_core": load_core,
        "seconds_per_level": a.seconds,
        "relay": levels,
        "placement": placement,
        "redis": redis_cost,
    });
    let dir = a.report_dir.clone().unwrap_or_else(|| {
        format!("perf-reports/fleet-{}", a.name.clone().unwrap_or_default()).into()
    });
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("fleet.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let text = format!(
        "## Relay datapath (relay on CPU {relay_core}, clients and node stand-in on CPU {load_core})\n\n\
         | flows | relay datagrams/s | relay CPU | datagrams/s per relay core | direct RTT p50 / p99 (µs) | relayed RTT p50 / p99 (µs) | added p50 / p99 (µs) | loss direct / relayed |\n\
         |---|---|---|---|---|---|---|---|\n{md}\n\
         ## Placement (offer round trip, µs)\n\n```\n{}\n```\n\n## Redis per call\n\n```\n{}\n```\n",
        serde_json::to_string_pretty(&report["placement"])?,
        serde_json::to_string_pretty(&report["redis"])?,
    );
    let text = header + &text;
    std::fs::write(dir.join("fleet.md"), &text)?;
    println!("{text}");
    eprintln!("report written to {}", dir.display());
    Ok(())
}

/// Offers straight to node B, then through node A (full, so it forwards to B); the Redis
/// commands they cost, less the fleet's idle rate.
fn placement(a: &Args, redis: &Redis) -> anyhow::Result<(serde_json::Value, serde_json::Value)> {
    let start = |id: &str, extra: &[&str]| -> anyhow::Result<(Server, SocketAddr)> {
        let http_port = free_port()?;
        let p = Server(
            Command::new(&a.tern)
                .args([
                    "serve",
                    "--cores",
                    &a.server_core.to_string(),
                    "--node-id",
                    id,
                ])
                .args(["--http", &format!("127.0.0.1:{http_port}")])
                .args([
                    "--udp-port",
                    &free_port()?.to_string(),
                    "--udp-bind",
                    "127.0.0.1",
                ])
                .args(["--public-ip", "127.0.0.1", "--max-offers-per-ip", "0"])
                .args(["--fleet", &redis.url, "--fleet-secret", SECRET])
                .args(extra)
                .env("RUST_LOG", "warn")
                .spawn()?,
        );
        let addr: SocketAddr = format!("127.0.0.1:{http_port}").parse()?;
        wait_for("a node answers", Duration::from_secs(20), || {
            http(addr, "GET", "/healthz", b"").is_ok()
        })?;
        Ok((p, addr))
    };
    let (_a, node_a) = start("1", &["--max-sessions", "1"])?;
    let (_b, node_b) = start("2", &[])?;
    // Placement reads the records once a second.
    std::thread::sleep(Duration::from_millis(2500));
    let offer = || {
        let (_, sdp) = Client::new(
            Instant::now(),
            "127.0.0.1:9".parse().expect("addr"),
            Vec::new(),
        );
        sdp
    };
    // Node A's one call: from now on it is full.
    let (s, _, _) = http_with_location(node_a, "POST", "/v1/realtime/calls", offer().as_bytes())?;
    if s != 201 {
        bail!("first offer to node A: HTTP {s}");
    }
    let n = 200;
    // The fleet's idle Redis rate over a window as long as the offers will take (estimated).
    let idle_s = 3.0;
    let r0 = redis.commands()?;
    std::thread::sleep(Duration::from_secs_f64(idle_s));
    let idle_rate = (redis.commands()? - r0) as f64 / idle_s;
    let mut out = serde_json::Map::new();
    let mut per_call = serde_json::Map::new();
    for (name, to) in [("local", node_b), ("forwarded", node_a)] {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let r0 = redis.commands()?;
        let t0 = Instant::now();
        for _ in 0..n {
            let sdp = offer();
            let t = Instant::now();
            let (s, loc, _) = http_with_location(to, "POST", "/v1/realtime/calls", sdp.as_bytes())?;
            let _ = h.record(t.elapsed().as_micros() as u64);
            if s != 201 {
                bail!("{name} offer: HTTP {s}");
            }
            // Hang up where the call lives (node B either way), as the client's DELETE would
            // reach it through any node.
            if let Some(loc) = loc {
                http(node_b, "DELETE", &loc, b"")?;
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let ops = (redis.commands()? - r0) as f64 - idle_rate * secs;
        out.insert(name.into(), pcts(&h));
        per_call.insert(name.into(), json!(ops / n as f64));
        eprintln!(
            "placement {name}: p50 {} µs, p99 {} µs; {:.2} Redis commands per call",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            ops / n as f64
        );
    }
    let m = Metrics::fetch(node_a)?;
    out.insert(
        "forwarded_by_a".into(),
        json!(m.get_where("tern_placements_total", "reason=\"full\"")?),
    );
    Ok((
        serde_json::Value::Object(out),
        json!({
            "idle_commands_per_s_two_nodes_and_no_relay": idle_rate,
            "commands_per_call_offer_and_hangup": per_call,
            "note": "a call's directory entry is also refreshed (one pipelined PEXPIRE) every 10 s while it lives",
        }),
    ))
}
