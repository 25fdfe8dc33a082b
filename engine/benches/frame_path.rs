//! Per-frame cost of the whole media path and of its parts (`cargo bench -p tern-engine --bench
//! frame_path`), so that Tern's and str0m's share can be told from libopus's.
//!
//! Parts, each over the fixture speech, one call per 20 ms frame at the default 24 kHz model rate:
//! Opus encode (the engine's `DownlinkEncoder`, complexity 5) and decode (`UplinkDecoder`), the
//! 24 -> 16 kHz resampler, earshot on 16 kHz chunks, and the VAD adapter as a session runs it
//! (resampler and earshot together).
//!
//! Whole path: one client talks to one `ShardCore` in virtual time, as `alloc-per-frame` runs it.
//! Each server call is timed: an uplink datagram while the user speaks (SRTP, str0m, reorder,
//! decode, VAD, turn detection, the uplink ring message) and a reply frame while the reply plays
//! (the agent's frame in, playout, encode, str0m, SRTP). The last table subtracts the parts from
//! the whole: what is left is str0m, SRTP and Tern's own session logic.

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::virtual_server::{Replies, VirtualServer};
use common::{load_wav, Client, Link};
use hdrhistogram::Histogram;
use tern_engine::agent::echo::EchoAgent;
use tern_engine::agent::Agent;
use tern_engine::core::media::decoder::UplinkDecoder;
use tern_engine::core::media::encoder::DownlinkEncoder;
use tern_engine::core::media::frame::{ModelRate, PcmFrame};
use tern_engine::core::media::resample::Resampler;
use tern_engine::core::output::Output;
use tern_engine::core::peer_addr::Peer;
use tern_engine::core::rtc_setup::ServerCrypto;
use tern_engine::core::session::SessionConfig;
use tern_engine::core::shard::ShardCore;
use tern_engine::core::turn::vad::{EarshotVad, FrameVad, VoiceDetector};

const ROUNDS: usize = 20;
/// Turns of the whole-path call; the first warms up and is not measured.
const TURNS: usize = 8;

fn hist() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap()
}

/// p50 and p99 in µs, and the mean.
fn row(name: &str, h: &Histogram<u64>) -> f64 {
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let mean = h.mean() / 1000.0;
    println!(
        "| {name} | {} | {:.2} | {:.2} | {:.2} |",
        h.len(),
        us(0.5),
        us(0.99),
        mean
    );
    mean
}

fn timed(h: &mut Histogram<u64>, f: impl FnOnce()) {
    let t = Instant::now();
    f();
    h.saturating_record(t.elapsed().as_nanos() as u64);
}

/// Mean µs per frame of each part.
struct Parts {
    encode: f64,
    decode: f64,
    vad: f64,
}

fn parts(speech: &[i16]) -> Parts {
    let frames: Vec<PcmFrame> = speech.chunks_exact(480).map(PcmFrame::from_slice).collect();
    println!(
        "| part (per 20 ms frame) | calls | p50 µs | p99 µs | mean µs |\n|---|---|---|---|---|"
    );
    let mut enc = DownlinkEncoder::new(ModelRate::Hz24000, 5, 2);
    let mut packets = Vec::new();
    let mut h = hist();
    let mut buf = Vec::with_capacity(1500);
    for _ in 0..ROUNDS {
        for f in &frames {
            timed(&mut h, || enc.encode_into(f, &mut buf).unwrap());
            if packets.len() < frames.len() {
                packets.push(buf.clone());
            }
        }
    }
    let encode = row("Opus encode, complexity 5 (DownlinkEncoder)", &h);

    let mut dec = UplinkDecoder::new(ModelRate::Hz24000);
    let mut h = hist();
    let mut seq = 0u64;
    for _ in 0..ROUNDS {
        for p in &packets {
            timed(&mut h, || {
                dec.on_packet(seq, seq * 960, p, &mut |f, _| {
                    black_box(f.samples()[0]);
                })
            });
            seq += 1;
        }
    }
    let decode = row("Opus decode to 24 kHz (UplinkDecoder)", &h);

    let mut rs = Resampler::new(24_000, 16_000);
    let mut out = Vec::with_capacity(1024);
    let mut h = hist();
    let mut at16: Vec<i16> = Vec::new();
    for round in 0..ROUNDS {
        for f in &frames {
            out.clear();
            timed(&mut h, || rs.process(f.samples(), &mut out));
            if round == 0 {
                at16.extend_from_slice(&out);
            }
        }
    }
    row("resampler 24 -> 16 kHz", &h);

    let mut det = EarshotVad::default();
    let mut h = hist();
    for _ in 0..ROUNDS {
        for c in at16.chunks_exact(det.chunk_samples()) {
            timed(&mut h, || {
                black_box(det.probability(c));
            });
        }
    }
    row("earshot, one 16 ms chunk at 16 kHz", &h);

    let mut v = FrameVad::new(Box::new(EarshotVad::default()), ModelRate::Hz24000);
    let mut h = hist();
    for _ in 0..ROUNDS {
        for f in &frames {
            timed(&mut h, || {
                black_box(v.frame_probability(f));
            });
        }
    }
    let vad = row("VAD as a session runs it (resampler + earshot)", &h);
    let mut h = hist();
    let silent = PcmFrame::silence(480);
    for _ in 0..ROUNDS {
        for _ in &frames {
            timed(&mut h, || {
                black_box(v.frame_probability(&silent));
            });
        }
    }
    row("VAD on a DTX fill (digital silence; resting after 5)", &h);
    Parts {
        encode,
        decode,
        vad,
    }
}

/// Times each server call of an echo call of `TURNS` turns; returns the server's mean µs per
/// 20 ms while the user speaks and while the reply plays.
fn whole(speech: &[i16]) -> (f64, f64) {
    let public: SocketAddr = "10.0.0.1:3478".parse().unwrap();
    let settings = VirtualServer::settings(public, SessionConfig::default());
    let mut core = ShardCore::new(0, Arc::new(settings), ServerCrypto::new().unwrap());
    let mut agent = EchoAgent::default();
    let t0 = Instant::now();
    let (mut client, offer) = Client::new(t0, "10.0.0.2:50000".parse().unwrap(), speech.to_vec());
    let (_, answer) = core.accept_offer(t0, offer.as_bytes()).unwrap();
    client.accept_answer(&answer);
    let (mut up, mut down) = (
        Link::new(0.0, Duration::ZERO, 1),
        Link::new(0.0, Duration::ZERO, 2),
    );
    // (virtual time, ns) per server call.
    let mut calls: Vec<(Instant, u64)> = Vec::new();
    let mut outbox: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    let mut to_agent = Vec::new();
    let drain = |core: &mut ShardCore,
                 outbox: &mut Vec<(SocketAddr, Vec<u8>)>,
                 to_agent: &mut Vec<_>| {
        while let Some(out) = core.poll_output() {
            match out {
                Output::Transmit { to, payload, .. } => outbox.push((to.addr, payload.to_vec())),
                Output::ToWorker { msg, .. } => to_agent.push(msg),
                _ => {}
            }
        }
    };
    // The client speaks its first turn from the start; each further turn once the last reply has
    // stopped playing.
    let mut spoken = 1;
    let mut now = t0;
    let turns = TURNS;
    while now < t0 + Duration::from_secs(15 * turns as u64) {
        let stopped = client.events_of("output_audio_buffer.stopped").len();
        if stopped == turns {
            break;
        }
        if stopped == spoken {
            client.speak(speech.to_vec());
            spoken += 1;
        }
        for (to, d) in client.poll(now) {
            up.send(now, client.addr, to, d);
        }
        for (from, _to, d) in up.due(now) {
            let t = Instant::now();
            core.handle_datagram(now, Peer::udp(from), &d);
            drain(&mut core, &mut outbox, &mut to_agent);
            calls.push((now, t.elapsed().as_nanos() as u64));
        }
        // As the shell does: timers only when the core's deadline is due.
        let due = |core: &mut ShardCore| core.next_deadline().is_some_and(|d| d <= now);
        if due(&mut core) {
            let t = Instant::now();
            core.handle_timeouts(now);
            drain(&mut core, &mut outbox, &mut to_agent);
            calls.push((now, t.elapsed().as_nanos() as u64));
        }
        let mut replies = Replies::default();
        for m in to_agent.drain(..) {
            agent.on_message(now, m, &mut replies);
        }
        agent.poll(now, &mut replies);
        if !replies.0.is_empty() || due(&mut core) || core.has_pending_encodes() {
            let t = Instant::now();
            for m in replies.0 {
                core.handle_downlink(now, m);
            }
            core.handle_timeouts(now);
            while core.encode_next() {}
            drain(&mut core, &mut outbox, &mut to_agent);
            calls.push((now, t.elapsed().as_nanos() as u64));
        }
        for (to, d) in outbox.drain(..) {
            down.send(now, public, to, d);
        }
        for (from, _to, d) in down.due(now) {
            client.receive(now, from, &d);
        }
        now += Duration::from_millis(1);
    }
    // Windows: between each speech_started/stopped, and each output started/stopped (first turn
    // skipped as warm-up), 40 ms in from each edge.
    let windows = |from: &str, to: &str| -> Vec<(Instant, Instant)> {
        let nth = |kind: &str, i: usize| {
            client
                .events
                .iter()
                .filter(|(_, v)| v["type"] == kind)
                .nth(i)
                .map(|(t, _)| *t)
        };
        (1..client.events_of(from).len())
            .filter_map(|i| {
                Some((
                    nth(from, i)? + Duration::from_millis(40),
                    nth(to, i)? - Duration::from_millis(40),
                ))
            })
            .collect()
    };
    // The server's time in each 20 ms of a window, all calls counted (datagrams, timers, the
    // agent's frames, encoding).
    let per_20ms = |w: &[(Instant, Instant)]| {
        let mut h = hist();
        for &(a, b) in w {
            let slots = ((b - a).as_millis() / 20) as usize;
            let mut ns = vec![0u64; slots];
            for &(at, t) in &calls {
                if at >= a && at < b {
                    if let Some(slot) = ns.get_mut(((at - a).as_millis() / 20) as usize) {
                        *slot += t;
                    }
                }
            }
            for v in ns {
                h.saturating_record(v.max(1));
            }
        }
        h
    };
    let speaking = per_20ms(&windows(
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
    ));
    let replying = per_20ms(&windows(
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
    ));
    assert!(speaking.len() >= 100, "speaking slots: {}", speaking.len());
    assert!(replying.len() >= 100, "replying slots: {}", replying.len());
    println!("\n| whole path (ShardCore, virtual time): server time per 20 ms | slots | p50 µs | p99 µs | mean µs |\n|---|---|---|---|---|");
    let up_mean = row("the user speaking (one Opus packet a slot)", &speaking);
    let reply_mean = row(
        "a reply playing, the user silent (browser DTX: fills)",
        &replying,
    );
    (up_mean, reply_mean)
}

fn main() {
    let (_, speech) = load_wav("hello-24k.wav");
    let p = parts(&speech);
    let (up, reply) = whole(&speech);
    println!("\n| share of the whole path (means, µs per frame) | uplink | reply |\n|---|---|---|");
    println!(
        "| Opus (decode / encode) | {:.2} | {:.2} |",
        p.decode, p.encode
    );
    println!("| VAD (resampler + earshot) | {:.2} | - |", p.vad);
    println!(
        "| the rest: str0m, SRTP, Tern's session logic | {:.2} | {:.2} |",
        up - p.decode - p.vad,
        reply - p.encode
    );
    println!("| whole | {up:.2} | {reply:.2} |");
}
