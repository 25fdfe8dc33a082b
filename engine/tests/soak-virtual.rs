//! The CI-sized soak, in virtual time on a two-shard node: waves of sessions (half of them handed
//! to the other shard at their first check) talk, hear the echo and then hang up from their home
//! shard or vanish (ended by the idle timeout). After every wave no shard holds a session, a
//! table slot (live or moved), an armed deadline or an admission, and the heap (counted for this
//! whole test process) is flat from wave to wave. The hour-long run on real sockets is
//! `tern-bench --mode soak` (perf-reports).

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::cluster::{link_pairs, peers, Cluster};
use common::{load_wav, Client};
use tern_engine::core::admission::Admission;
use tern_engine::core::session::SessionConfig;
use tern_engine::core::shard::CallLocation;
use tern_engine::heap::CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc<std::alloc::System> = CountingAlloc(std::alloc::System);

const WAVES: usize = 4;
const PER_WAVE: usize = 8;

fn steer(addr: SocketAddr) -> usize {
    usize::from(addr.port() % 2)
}

#[test]
fn waves_of_sessions_leave_nothing_behind() {
    let admission = Admission::new(64);
    let mut session = SessionConfig::default();
    session.limits.idle_timeout = Duration::from_secs(1);
    let mut c = Cluster::with_session(&[32, 32], &admission, session);
    let speech = load_wav("hello-24k.wav").1;
    let mut now = Instant::now();
    let mut heap_after = Vec::new();
    for wave in 0..WAVES {
        let mut clients = Vec::new();
        let mut calls = Vec::new();
        for i in 0..PER_WAVE {
            // Ports alternate the steering; offers go to shard 0 for the first half, so half of
            // the calls are handed over.
            let addr = SocketAddr::from(([10, 0, 1, wave as u8 + 1], 40_000 + i as u16));
            let (mut client, offer) = Client::new(now, addr, speech.clone());
            let home = usize::from(i >= PER_WAVE / 2);
            let (tag, answer) = c.cores[home].accept_offer(now, offer.as_bytes()).unwrap();
            client.accept_answer(&answer);
            clients.push(client);
            calls.push(tag);
        }
        let mut links = link_pairs(PER_WAVE, Duration::from_millis(10));
        let mut peers = peers(&mut clients, &mut links);
        now = c.run(now, Duration::from_secs(10), &mut peers, steer);
        drop(peers);
        assert!(c.stray.is_empty(), "wave {wave}: sent to {:?}", c.stray);
        for (i, client) in clients.iter().enumerate() {
            assert!(
                client.audible_frames() > 100,
                "wave {wave} client {i} heard its echo: {:?}",
                client.event_types()
            );
        }
        // Half hang up, starting from the home shard as the shell does; half vanish.
        for tag in calls.iter().step_by(2) {
            let key = match c.cores[usize::from(tag.shard)].find_call(tag) {
                CallLocation::Here(k) => k,
                CallLocation::Shard(s) => match c.cores[usize::from(s)].find_call(tag) {
                    CallLocation::Here(k) => k,
                    other => panic!("wave {wave}: owner lost the call: {other:?}"),
                },
                CallLocation::Unknown => panic!("wave {wave}: call unknown"),
            };
            assert!(c.hangup(now, usize::from(key.shard), key));
        }
        c.carry(now);
        drop(clients);
        drop(links);
        // The vanished ones end by the idle timeout.
        now = c.run(now, Duration::from_secs(3), &mut [], steer);
        for (i, core) in c.cores.iter_mut().enumerate() {
            assert_eq!(
                core.live_sessions(),
                0,
                "wave {wave} shard {i}: sessions left"
            );
            assert_eq!(
                core.occupied_slots(),
                0,
                "wave {wave} shard {i}: slots left"
            );
            assert_eq!(
                core.armed_deadlines(),
                0,
                "wave {wave} shard {i}: deadlines"
            );
        }
        assert_eq!(admission.admitted(), 0, "wave {wave}: admissions left");
        let ended: usize = c.io.iter().map(|io| io.ended).sum();
        assert_eq!(ended, (wave + 1) * PER_WAVE, "each call ended once");
        let idle: u64 = c
            .cores
            .iter()
            .map(|core| core.counters.ended_by.get("idle").copied().unwrap_or(0))
            .sum();
        assert_eq!(
            idle as usize,
            (wave + 1) * PER_WAVE / 2,
            "the vanished ones idled out"
        );
        // Packets for the clients that vanished went nowhere.
        c.stray.clear();
        for io in &mut c.io {
            io.out.clear();
            io.setups.clear();
            io.turn_latencies.clear();
            io.barge_ins.clear();
        }
        c.carried.clear();
        heap_after.push(tern_engine::heap::live_bytes());
    }
    let handoffs: u64 = c.cores.iter().map(|core| core.counters.handoffs_in).sum();
    assert_eq!(
        handoffs as usize,
        WAVES * PER_WAVE / 2,
        "half were handed over"
    );
    // Flat: later waves end where the first one did (allowing allocator-internal noise).
    let first = heap_after[0];
    for (i, h) in heap_after.iter().enumerate() {
        assert!(
            (h - first).abs() < 256 * 1024,
            "heap after wave {i}: {h} bytes vs {first} after wave 0 ({heap_after:?})"
        );
    }
    eprintln!("heap after each wave: {heap_after:?}; {} steps", c.steps);
}
