//! Heap allocations per uplink frame and per reply frame in steady state, counted by the
//! allocator: Tern's own code (shard core, session, media, conversation) makes none; str0m's own
//! allocations (its calls are wrapped in `heap::in_dependency`) are measured and printed apart.
//!
//! One client talks to one shard core in virtual time over loss-free links. The first turn warms
//! up (queues grow to their working size); in the second turn two windows are measured: the user
//! speaking (between `speech_started` and `speech_stopped`) and the reply playing (between
//! `output_audio_buffer.started` and `.stopped`). Only the server's calls are counted; the client,
//! the echo agent and the harness allocate outside the brackets.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::virtual_server::{Replies, VirtualServer};
use common::{load_wav, Client, Link};
use tern_engine::agent::echo::EchoAgent;
use tern_engine::agent::Agent;
use tern_engine::core::output::{Output, ShardEvent};
use tern_engine::core::peer_addr::Peer;
use tern_engine::core::ring_msg::UplinkMsg;
use tern_engine::core::rtc_setup::ServerCrypto;
use tern_engine::core::session::SessionConfig;
use tern_engine::core::shard::ShardCore;
use tern_engine::heap::{allocations, dependency_allocations, CountingAlloc};

#[global_allocator]
static GLOBAL: CountingAlloc<std::alloc::System> = CountingAlloc(std::alloc::System);

const SLOTS: usize = 256;

/// The shell's side, that never allocates once built: datagrams are copied into preallocated
/// slots, agent messages into a vector with room reserved (the shell's send batch and rings do
/// the same). Draining the core's outputs is counted with the core's calls.
struct QuietIo {
    out: Vec<(SocketAddr, Vec<u8>)>,
    used: usize,
    to_agent: Vec<UplinkMsg>,
    uplink_frames: u64,
    reply_frames: u64,
}

impl QuietIo {
    fn new() -> Self {
        QuietIo {
            out: (0..SLOTS)
                .map(|_| ("0.0.0.0:0".parse().unwrap(), Vec::with_capacity(2048)))
                .collect(),
            used: 0,
            to_agent: Vec::with_capacity(SLOTS),
            uplink_frames: 0,
            reply_frames: 0,
        }
    }

    fn drain(&mut self, core: &mut ShardCore) {
        while let Some(out) = core.poll_output() {
            match out {
                Output::Transmit { to, payload, .. } => {
                    let (addr, buf) = &mut self.out[self.used];
                    *addr = to.addr;
                    buf.clear();
                    buf.extend_from_slice(payload);
                    self.used += 1;
                }
                Output::ToWorker { msg, .. } => {
                    assert!(self.to_agent.len() < self.to_agent.capacity());
                    self.to_agent.push(msg);
                }
                Output::Event(ShardEvent::DownlinkSent { .. }) => self.reply_frames += 1,
                Output::Event(ShardEvent::UplinkFrame { .. }) => self.uplink_frames += 1,
                _ => {}
            }
        }
    }
}

/// What the server did in one 1 ms step.
#[derive(Debug, Clone, Copy, Default)]
struct Step {
    at: Option<Instant>,
    tern_allocs: u64,
    str0m_allocs: u64,
    uplink_frames: u64,
    reply_frames: u64,
}

/// Counts the allocations `$e` makes, split into str0m's and the rest (Tern's).
macro_rules! counted {
    ($step:expr, $e:expr) => {{
        let (a0, d0) = (allocations(), dependency_allocations());
        let r = $e;
        let (a1, d1) = (allocations(), dependency_allocations());
        $step.str0m_allocs += d1 - d0;
        $step.tern_allocs += (a1 - a0) - (d1 - d0);
        r
    }};
}

/// Sums the steps strictly inside (from, to) and checks no client event fell there.
fn window(steps: &[Step], client: &Client, from: Instant, to: Instant, name: &str) -> Step {
    let inside = |t: Instant| t > from && t < to;
    let events: Vec<_> = client
        .events
        .iter()
        .filter(|(t, _)| inside(*t))
        .map(|(_, v)| v["type"].to_string())
        .collect();
    assert!(
        events.is_empty(),
        "{name}: events inside the window: {events:?}"
    );
    let mut sum = Step::default();
    for s in steps.iter().filter(|s| s.at.is_some_and(inside)) {
        sum.tern_allocs += s.tern_allocs;
        sum.str0m_allocs += s.str0m_allocs;
        sum.uplink_frames += s.uplink_frames;
        sum.reply_frames += s.reply_frames;
    }
    sum
}

fn nth_event(client: &Client, kind: &str, n: usize) -> Instant {
    client
        .events
        .iter()
        .filter(|(_, v)| v["type"] == kind)
        .nth(n)
        .map(|(t, _)| *t)
        .unwrap_or_else(|| panic!("no {kind} #{n}: {:?}", client.event_types()))
}

#[test]
fn steady_state_frames_allocate_nothing_in_terns_code() {
    let public: SocketAddr = "10.0.0.1:3478".parse().unwrap();
    let settings = VirtualServer::settings(public, SessionConfig::default());
    let mut core = ShardCore::new(0, Arc::new(settings), ServerCrypto::new().unwrap());
    let mut io = QuietIo::new();
    let mut agent = EchoAgent::default();
    let (_, speech) = load_wav("hello-24k.wav");
    let t0 = Instant::now();
    let (mut client, offer) = Client::new(t0, "10.0.0.2:50000".parse().unwrap(), speech.clone());
    let (_, answer) = core.accept_offer(t0, offer.as_bytes()).unwrap();
    client.accept_answer(&answer);
    let (mut up, mut down) = (
        Link::new(0.0, Duration::ZERO, 1),
        Link::new(0.0, Duration::ZERO, 2),
    );

    let total = Duration::from_secs(24);
    let mut steps: Vec<Step> = Vec::with_capacity(total.as_millis() as usize + 1);
    let mut spoke_again = false;
    let mut now = t0;
    while now < t0 + total {
        // Second turn once the first reply has finished playing.
        if !spoke_again && client.event_time("output_audio_buffer.stopped").is_some() {
            client.speak(speech.clone());
            spoke_again = true;
        }
        let mut step = Step {
            at: Some(now),
            ..Default::default()
        };
        for (to, d) in client.poll(now) {
            up.send(now, client.addr, to, d);
        }
        let (f0, r0) = (io.uplink_frames, io.reply_frames);
        for (from, _to, d) in up.due(now) {
            counted!(step, {
                core.handle_datagram(now, Peer::udp(from), &d);
                io.drain(&mut core)
            });
        }
        counted!(step, {
            core.handle_timeouts(now);
            io.drain(&mut core)
        });
        let mut replies = Replies::default();
        for m in io.to_agent.drain(..) {
            agent.on_message(now, m, &mut replies);
        }
        agent.poll(now, &mut replies);
        for m in replies.0 {
            counted!(step, {
                core.handle_downlink(now, m);
                io.drain(&mut core)
            });
        }
        counted!(step, {
            core.handle_timeouts(now);
            io.drain(&mut core);
            while core.encode_next() {}
            io.drain(&mut core)
        });
        step.uplink_frames = io.uplink_frames - f0;
        step.reply_frames = io.reply_frames - r0;
        for (to, d) in io.out[..io.used].iter() {
            down.send(now, public, *to, d.clone());
        }
        io.used = 0;
        for (from, _to, d) in down.due(now) {
            client.receive(now, from, &d);
        }
        steps.push(step);
        now += Duration::from_millis(1);
    }
    assert!(
        spoke_again,
        "the first reply finished: {:?}",
        client.event_types()
    );

    let margin = Duration::from_millis(40);
    let between = |from: &str, to: &str, name: &str| {
        let (from, to) = (nth_event(&client, from, 1), nth_event(&client, to, 1));
        window(&steps, &client, from + margin, to - margin, name)
    };
    let speaking = between(
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "user speaking",
    );
    let replying = between(
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "reply playing",
    );
    let per = |allocs: u64, frames: u64| allocs as f64 / frames.max(1) as f64;
    println!(
        "ALLOC {{\"user_speaking\": {{\"uplink_frames\": {}, \"tern_allocs\": {}, \"str0m_allocs\": {}, \"str0m_per_uplink_frame\": {:.2}}}, \"reply_playing\": {{\"reply_frames\": {}, \"uplink_frames\": {}, \"tern_allocs\": {}, \"str0m_allocs\": {}, \"str0m_per_reply_frame\": {:.2}}}}}",
        speaking.uplink_frames,
        speaking.tern_allocs,
        speaking.str0m_allocs,
        per(speaking.str0m_allocs, speaking.uplink_frames),
        replying.reply_frames,
        replying.uplink_frames,
        replying.tern_allocs,
        replying.str0m_allocs,
        per(replying.str0m_allocs, replying.reply_frames),
    );
    assert!(speaking.uplink_frames >= 50, "{speaking:?}");
    assert!(replying.reply_frames >= 50, "{replying:?}");
    for (name, w) in [("the user spoke", speaking), ("the reply played", replying)] {
        assert_eq!(w.tern_allocs, 0, "Tern allocated while {name}: {w:?}");
    }
    // The counter works: str0m allocates per packet today (its receive and write paths).
    assert!(speaking.str0m_allocs > 0 && replying.str0m_allocs > 0);
}
