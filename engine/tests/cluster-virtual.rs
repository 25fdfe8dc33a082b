//! Whole calls on a two-shard node in virtual time: four clients, each offered to one shard while
//! the emulated network (like the kernel's SO_REUSEPORT hash) steers its datagrams to a shard by
//! its address, so two of them are handed over to the other shard at their first check. Every
//! call talks a turn through one echo worker serving both shards; then an adopted call is hung up
//! starting from its home shard, as the shell's hangup does, and the home's entry is freed.

#![allow(clippy::unwrap_used)]

mod common;

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
