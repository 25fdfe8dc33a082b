//! Whole calls on a two-shard node in virtual time: four clients, each offered to one shard while
//! the emulated network (like the kernel's SO_REUSEPORT hash) steers its datagrams to a shard by
//! its address, so two of them are handed over to the other shard at their first check. Every
//! call talks a turn through one echo worker serving both shards; then an adopted call is hung up
//! starting from its home shard, as the shell's hangup does, and the home's entry is freed.
//! Shutdown (what a drain's timeout or a stop does to live calls) tells every call why, on every
//! shard, before it ends. The process side of a drain (signals, 503 to new offers, /readyz) is
//! tested on the real binary in `drain.rs`.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::cluster::{link_pairs, peers, Cluster};
use common::{load_wav, Client};
use tern_engine::core::admission::Admission;
use tern_engine::core::session_id::SessionId;
use tern_engine::core::shard::CallLocation;

/// The shard the network delivers `addr`'s datagrams to.
fn steer(addr: SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(a) => usize::from(a.ip().octets()[3] % 2),
        SocketAddr::V6(_) => 0,
    }
}

#[test]
fn calls_handed_between_shards_talk_and_hang_up_from_home() {
    let admission = Admission::new(8);
    let mut c = Cluster::new(&[8, 8], &admission);
    let speech = load_wav("hello-24k.wav").1;
    let t0 = Instant::now();
    let mut clients = Vec::new();
    let mut calls = Vec::new();
    for (i, home) in [1usize, 1, 0, 0].into_iter().enumerate() {
        let addr: SocketAddr = format!("10.0.0.{}:50000", i + 2).parse().unwrap();
        let (mut client, offer) = Client::new(t0, addr, speech.clone());
        let (tag, answer) = c.cores[home].accept_offer(t0, offer.as_bytes()).unwrap();
        client.accept_answer(&answer);
        clients.push(client);
        calls.push((tag, home));
    }
    let mut links = link_pairs(4, Duration::from_millis(15));
    let mut peers = peers(&mut clients, &mut links);
    let now = c.run(t0, Duration::from_secs(12), &mut peers, steer);
    drop(peers);
    eprintln!(
        "12 s of virtual time in {} steps; handoffs {} and {}",
        c.steps, c.cores[0].counters.handoffs_in, c.cores[1].counters.handoffs_in
    );
    assert!(c.steps < 12_000, "time jumps to the next deadline");

    for (i, client) in clients.iter().enumerate() {
        assert!(
            client.audible_frames() > 100,
            "client {i} heard {} frames: {:?}",
            client.audible_frames(),
            client.event_types()
        );
    }
    // Clients 0 and 3 were offered to the shard the network does not steer them to.
    let moved: Vec<_> = calls
        .iter()
        .zip(&clients)
        .map(|((_, home), cl)| steer(cl.addr) != *home)
        .collect();
    assert_eq!(moved, vec![true, false, false, true]);
    assert_eq!(c.cores[0].counters.handoffs_in, 1);
    assert_eq!(c.cores[1].counters.handoffs_in, 1);
    assert_eq!(c.cores[0].live_sessions(), 2);
    assert_eq!(c.cores[1].live_sessions(), 2);
    assert!(c.stray.is_empty(), "sent to {:?}", c.stray);
    assert_eq!(admission.admitted(), 4);

    // Hang up client 0's call from its home shard (1): home points at the owner (0), which ends it.
    let (tag, home): (SessionId, usize) = calls[0];
    assert_eq!(c.cores[home].find_call(&tag), CallLocation::Shard(0));
    let CallLocation::Here(key) = c.cores[0].find_call(&tag) else {
        panic!("the owner holds the call");
    };
    let home_slots = c.cores[home].occupied_slots();
    assert!(c.hangup(now, 0, key));
    c.carry(now);
    assert_eq!(c.io[0].ended, 1, "ended once, on the owner");
    assert_eq!(
        c.cores[home].occupied_slots(),
        home_slots - 1,
        "home entry freed"
    );
    assert_eq!(c.cores[home].find_call(&tag), CallLocation::Unknown);
    // The former owner no longer holds it and points at home, which knows it no more.
    assert_eq!(c.cores[0].find_call(&tag), CallLocation::Shard(home as u16));
    assert_eq!(admission.admitted(), 3, "its place given back");
}

#[test]
fn shutdown_tells_every_call_on_every_shard_before_ending_it() {
    let admission = Admission::new(8);
    let mut c = Cluster::new(&[8, 8], &admission);
    let speech = load_wav("hello-24k.wav").1;
    let t0 = Instant::now();
    let mut clients = Vec::new();
    for (i, home) in [0usize, 0, 1].into_iter().enumerate() {
        let addr: SocketAddr = format!("10.0.0.{}:50000", i + 2).parse().unwrap();
        let (mut client, offer) = Client::new(t0, addr, speech.clone());
        let (_, answer) = c.cores[home].accept_offer(t0, offer.as_bytes()).unwrap();
        client.accept_answer(&answer);
        clients.push(client);
    }
    let mut links = link_pairs(3, Duration::from_millis(15));
    let mut peers = peers(&mut clients, &mut links);
    // Mid-turn: the clients are still speaking.
    let now = c.run(t0, Duration::from_millis(1500), &mut peers, steer);
    assert_eq!(c.cores[0].live_sessions() + c.cores[1].live_sessions(), 3);
    for i in 0..2 {
        c.cores[i].close_all(now);
        c.io[i].collect(&mut c.cores[i], now);
    }
    c.carry(now);
    assert_eq!(c.io[0].ended + c.io[1].ended, 3, "each call ended once");
    assert_eq!(admission.admitted(), 0);
    // What the shutdown sent reaches the clients.
    c.run(now, Duration::from_millis(200), &mut peers, steer);
    drop(peers);
    for (i, client) in clients.iter().enumerate() {
        let errors = client.events_of("error");
        assert_eq!(
            errors.first().map(|e| e["error"]["code"].clone()),
            Some("server_shutdown".into()),
            "client {i}: {:?}",
            client.event_types()
        );
    }
    for core in &mut c.cores {
        assert_eq!(core.occupied_slots(), 0);
        assert_eq!(core.armed_deadlines(), 0);
    }
}
