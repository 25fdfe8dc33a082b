//! `--mode soak`: keeps `--sessions` sessions alive for `--seconds`, each living `--lifetime-s`
//! (talking at its start and half-way, hearing the echo, then hanging up and replaced by a new
//! one), and samples the server every `--sample-s`: sessions, RSS, counted heap, table slots,
//! armed deadlines, ring occupancy. At the end every session hangs up and the server must hold
//! no session, slot, deadline or ring message. Writes a markdown report with the memory curve.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tern_testkit::peer::{load_wav, Client};

use crate::util::{
    client_core, http, http_with_location, pin_to, proc_cpu_us, rss_kib, start_server, Metrics,
    HTTP,
};
use crate::Args;

struct Live {
    client: Client,
    /// The call's URL (for the hangup).
    location: String,
    sock: UdpSocket,
    born: Instant,
    spoke_again: bool,
}

struct Sample {
    t_s: f64,
    sessions: f64,
    rss_kib: u64,
    heap_kib: f64,
    slots: f64,
    deadlines: f64,
    ring: f64,
    created: f64,
    /// Server CPU time since start, µs (for the utilization of each interval).
    cpu_us: u64,
}

fn sample(addr: SocketAddr, pid: u32, t0: Instant) -> anyhow::Result<Sample> {
    let m = Metrics::fetch(addr)?;
    Ok(Sample {
        t_s: t0.elapsed().as_secs_f64(),
        sessions: m.get("tern_sessions")?,
        rss_kib: rss_kib(pid)?,
        heap_kib: m.get("tern_heap_live_bytes")? / 1024.0,
        slots: m.get("tern_session_slots")?,
        deadlines: m.get("tern_deadlines_armed")?,
        ring: m.get("tern_ring_queued")?,
        created: m.get("tern_sessions_created_total").unwrap_or(0.0),
        cpu_us: proc_cpu_us(pid)?,
    })
}

fn open(addr: SocketAddr, speech: &[i16], born: Instant) -> anyhow::Result<Live> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_nonblocking(true)?;
    let (mut client, offer) = Client::new(Instant::now(), sock.local_addr()?, speech.to_vec());
    let (status, location, body) =
        http_with_location(addr, "POST", "/v1/realtime/calls", offer.as_bytes())?;
    if status != 201 {
        bail!("offer refused: {status} {}", String::from_utf8_lossy(&body));
    }
    client.accept_answer(std::str::from_utf8(&body)?);
    Ok(Live {
        client,
        location: location.context("201 without Location")?,
        sock,
        born,
        spoke_again: false,
    })
}

fn hang_up(addr: SocketAddr, l: &Live) {
    let _ = http(addr, "DELETE", &l.location, b"");
}

/// Server CPU use between two samples, percent of one core.
fn cpu_pct(prev: Option<&Sample>, s: &Sample) -> f64 {
    prev.map_or(0.0, |p| {
        let dt = (s.t_s - p.t_s).max(1e-3);
        s.cpu_us.saturating_sub(p.cpu_us) as f64 / 1e6 / dt * 100.0
    })
}

/// Least-squares slope of `y` over `x`, per hour.
fn slope_per_hour(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let num: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let den: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if den == 0.0 {
        0.0
    } else {
        num / den * 3600.0
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let addr: SocketAddr = HTTP.parse()?;
    let server = start_server(&a.tern, a.server_core)?;
    let pid = server.0.id();
    pin_to(client_core(a.server_core));
    let fixture = format!(
        "{}/../engine/tests/data/hello-24k.wav",
        env!("CARGO_MANIFEST_DIR")
    );
    let (_, speech) = load_wav(&fixture);
    let lifetime = Duration::from_secs(a.lifetime_s.max(10));
    let t0 = Instant::now();
    let mut samples = vec![sample(addr, pid, t0)?];
    // Staggered births, so sessions end and start continuously.
    let mut live: Vec<Live> = (0..a.sessions)
        .map(|i| {
            let age = lifetime.mul_f64(i as f64 / a.sessions as f64);
            open(addr, &speech, t0.checked_sub(age).unwrap_or(t0))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut buf = [0u8; 2048];
    let mut next_sample = t0 + Duration::from_secs(a.sample_s.max(1));
    let (mut ended, mut echoed) = (0u64, 0u64);
    let end = t0 + Duration::from_secs(a.seconds);
    while Instant::now() < end {
        for slot in live.iter_mut() {
            let now = Instant::now();
            for (to, d) in slot.client.poll(now) {
                let _ = slot.sock.send_to(&d, to);
            }
            while let Ok((n, from)) = slot.sock.recv_from(&mut buf) {
                slot.client.receive(Instant::now(), from, &buf[..n]);
            }
            let age = now.saturating_duration_since(slot.born);
            if !slot.spoke_again && age >= lifetime / 2 {
                slot.client.speak(speech.clone());
                slot.spoke_again = true;
            }
            if age >= lifetime {
                echoed += u64::from(slot.client.audible_frames() > 20);
                hang_up(addr, slot);
                ended += 1;
                *slot = open(addr, &speech, now).context("replacing a session")?;
            }
        }
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(a.sample_s.max(1));
            let s = sample(addr, pid, t0)?;
            eprintln!(
                "t={:.0}s sessions={} rss={} KiB heap={:.0} KiB slots={} deadlines={} ring={} cpu={:.0}%",
                s.t_s,
                s.sessions,
                s.rss_kib,
                s.heap_kib,
                s.slots,
                s.deadlines,
                s.ring,
                cpu_pct(samples.last(), &s)
            );
            samples.push(s);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for l in &live {
        hang_up(addr, l);
    }
    ended += live.len() as u64;
    drop(live);
    std::thread::sleep(Duration::from_secs(3));
    let last = sample(addr, pid, t0)?;

    // Memory trend after the first lifetime (warm-up: allocator arenas, queues reaching size).
    let warm: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t_s >= lifetime.as_secs_f64())
        .collect();
    let rss_slope = slope_per_hour(
        &warm
            .iter()
            .map(|s| (s.t_s, s.rss_kib as f64))
            .collect::<Vec<_>>(),
    );
    let heap_slope = slope_per_hour(&warm.iter().map(|s| (s.t_s, s.heap_kib)).collect::<Vec<_>>());
    let clean =
        last.sessions == 0.0 && last.slots == 0.0 && last.deadlines == 0.0 && last.ring == 0.0;
    let mut r = format!(
        "# tern-bench soak\n\n- command: `{}`\n- {} concurrent sessions for {} s, each living {} s (talks at start and half-way, hears the echo, hangs up); {ended} sessions ended in all, {echoed} of the churned ones heard their echo; {} sessions created by the server\n- memory trend after the first lifetime: RSS {rss_slope:+.0} KiB/hour, counted heap {heap_slope:+.0} KiB/hour\n- after every session hung up: sessions {}, table slots {}, armed deadlines {}, ring messages {}, heap {:.0} KiB (start {:.0} KiB), RSS {} KiB (start {} KiB) -> {}\n- server CPU over the run: {:.0}% of its core on average\n\n| t (s) | sessions | RSS KiB | heap KiB | slots | deadlines | ring msgs | server CPU % |\n|---|---|---|---|---|---|---|---|\n",
        std::env::args().collect::<Vec<_>>().join(" "),
        a.sessions,
        a.seconds,
        lifetime.as_secs(),
        last.created,
        last.sessions,
        last.slots,
        last.deadlines,
        last.ring,
        last.heap_kib,
        samples[0].heap_kib,
        last.rss_kib,
        samples[0].rss_kib,
        if clean { "nothing left behind" } else { "LEFTOVERS" },
        cpu_pct(samples.first(), samples.last().unwrap_or(&last)),
    );
    let all: Vec<&Sample> = samples.iter().chain(std::iter::once(&last)).collect();
    for (i, s) in all.iter().enumerate() {
        let cpu = if i == 0 {
            0.0
        } else {
            cpu_pct(Some(all[i - 1]), s)
        };
        r.push_str(&format!(
            "| {:.0} | {} | {} | {:.0} | {} | {} | {} | {cpu:.0} |\n",
            s.t_s, s.sessions, s.rss_kib, s.heap_kib, s.slots, s.deadlines, s.ring
        ));
    }
    println!("{r}");
    if let Some(out) = &a.out {
        std::fs::write(out, &r).with_context(|| format!("writing {out}"))?;
    }
    drop(server);
    if !clean {
        bail!("resources left behind after all sessions ended");
    }
    Ok(())
}
