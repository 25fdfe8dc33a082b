//! The handoff between two shard cores in virtual time, including its failure branches: a forged
//! ufrag naming another shard costs that shard nothing; a handoff whose Adopt message cannot be
//! queued keeps the session home, live; an owner with no room ends the session, counts it and
//! frees the home entry.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use common::virtual_server::CollectIo;
use common::{load_wav, Client};
use tern_engine::core::admission::Admission;
use tern_engine::core::peer_addr::Peer;
use tern_engine::core::route_tag::{RouteTag, TagKey};
use tern_engine::core::rtc_setup::{OfferError, ServerCrypto};
use tern_engine::core::session::SessionConfig;
use tern_engine::core::shard::{
    CallLocation, ClaimOutcome, DropReason, Route, ShardCore, ShardSettings,
};

/// One shard of a node whose shards share `admission` (`--max-sessions`).
fn settings(key: &TagKey, max_sessions: usize, admission: &Admission) -> Arc<ShardSettings> {
    Arc::new(ShardSettings {
        node: 0,
        shards: 2,
        workers: 1,
        public: "10.0.0.1:3478".parse().unwrap(),
        public_tcp: None,
        max_sessions_per_shard: max_sessions,
        session: SessionConfig::default(),
        tag_key: key.clone(),
        admission: admission.clone(),
    })
}

/// Two shards of one node; the client's offer went to shard 0 (home). Returns the shards, the
/// client, its tag and its first STUN request.
fn setup(
    owner_room: usize,
) -> (
    ShardCore,
    ShardCore,
    Client,
    RouteTag,
    (SocketAddr, Vec<u8>),
    Admission,
) {
    let key = TagKey::random();
    let crypto = ServerCrypto::new().unwrap();
    let admission = Admission::new(8);
    let home = ShardCore::new(0, settings(&key, 8, &admission), crypto.clone());
    let owner = ShardCore::new(1, settings(&key, owner_room, &admission), crypto);
    let mut home = home;
    let t0 = Instant::now();
    let (mut client, offer) = Client::new(
        t0,
        "10.0.0.2:50000".parse().unwrap(),
        load_wav("hello-24k.wav").1,
    );
    let (tag, answer) = home.accept_offer(t0, offer.as_bytes()).unwrap();
    client.accept_answer(&answer);
    let stun = client
        .poll(t0)
        .into_iter()
        .find(|(_, d)| d.first().is_some_and(|b| *b < 2))
        .expect("a STUN binding request");
    (home, owner, client, tag, stun, admission)
}

#[test]
fn a_forged_ufrag_for_another_shard_is_dropped_before_any_work() {
    let (_home, mut owner, client, tag, (_, stun), _) = setup(8);
    let now = Instant::now();
    // The genuine request names shard 0: shard 1 claims it.
    assert!(matches!(
        owner.route(now, client.addr, &stun),
        Route::Claim { home: 0, .. }
    ));
    // The same request with one hex digit of the secret changed: same shape, bad seal.
    let ufrag = tag.ufrag();
    let mut forged_ufrag = ufrag.clone().into_bytes();
    let last = forged_ufrag.last_mut().unwrap();
    *last = if *last == b'0' { b'1' } else { b'0' };
    let forged = replace(&stun, ufrag.as_bytes(), &forged_ufrag);
    assert_eq!(
        owner.route(now, "10.0.0.9:4000".parse().unwrap(), &forged),
        Route::Drop(DropReason::ForgedUfrag)
    );
    // A call id with a bad seal is unknown everywhere (no hangup hop to another shard).
    let bad = RouteTag::parse(std::str::from_utf8(&forged_ufrag).unwrap()).unwrap();
    assert_eq!(owner.find_call(&bad), CallLocation::Unknown);
    assert_eq!(owner.find_call(&tag), CallLocation::Shard(0));
}

#[test]
fn a_handoff_that_cannot_be_queued_keeps_the_session_home() {
    let (mut home, mut owner, client, tag, (_, stun), admission) = setup(8);
    let now = Instant::now();
    assert!(matches!(
        owner.route(now, client.addr, &stun),
        Route::Claim { .. }
    ));
    let ClaimOutcome::HandOver(session) = home.on_claim(tag, 1) else {
        panic!("home hands the session over");
    };
    assert_eq!(home.live_sessions(), 0);
    // The Adopt message found shard 1's inbox full.
    let key = home.keep_home(session).unwrap();
    assert_eq!(home.live_sessions(), 1);
    assert_eq!(home.find_call(&tag), CallLocation::Here(key));
    assert_eq!(home.counters.handoffs_out, 0);
    assert_eq!(home.counters.handoffs_failed, 1);
    // The session still answers: the datagram is handled at home.
    let mut io = CollectIo::default();
    home.deliver(now, key, Peer::udp(client.addr), &stun, &mut io);
    assert!(!io.out.is_empty(), "the check is answered from home");
    assert_eq!(io.ended, 0);
    assert_eq!(admission.admitted(), 1, "the session kept its place");
}

#[test]
fn an_owner_without_room_ends_the_session_and_frees_its_home_entry() {
    let (mut home, mut owner, client, tag, (_, stun), admission) = setup(1);
    let now = Instant::now();
    // Shard 1's table is full with a call of its own.
    let (_c2, offer2) = Client::new(now, "10.0.0.3:50000".parse().unwrap(), Vec::new());
    owner.accept_offer(now, offer2.as_bytes()).unwrap();
    assert!(matches!(
        owner.route(now, client.addr, &stun),
        Route::Claim { .. }
    ));
    let ClaimOutcome::HandOver(session) = home.on_claim(tag, 1) else {
        panic!("home hands the session over");
    };
    assert_eq!(home.occupied_slots(), 1, "home keeps a Moved entry");
    let session = owner.adopt(session).unwrap_err();
    assert_eq!(admission.admitted(), 2);
    let mut io = CollectIo::default();
    owner.refuse_adoption(session, &mut io);
    assert_eq!(io.ended, 1, "ended once");
    assert_eq!(admission.admitted(), 1, "its place is given back, once");
    assert_eq!(owner.counters.sessions_ended, 1);
    assert_eq!(owner.counters.handoffs_failed, 1);
    assert_eq!(owner.counters.ended_by.get("handoff_failed"), Some(&1));
    let released: Vec<_> = owner.take_released().collect();
    assert_eq!(released, vec![tag], "home is told");
    home.on_released(tag);
    assert_eq!(home.occupied_slots(), 0, "no entry left Moved forever");
    assert_eq!(home.find_call(&tag), CallLocation::Unknown);
}

#[test]
fn shards_share_the_node_admission_and_every_end_gives_the_place_back() {
    let key = TagKey::random();
    let crypto = ServerCrypto::new().unwrap();
    let admission = Admission::new(2);
    let mut a = ShardCore::new(0, settings(&key, 8, &admission), crypto.clone());
    let mut b = ShardCore::new(1, settings(&key, 8, &admission), crypto);
    let now = Instant::now();
    let offer = |port: u16| {
        let addr = SocketAddr::from(([10, 0, 0, 2], port));
        Client::new(now, addr, Vec::new()).1
    };
    let (t1, _) = a.accept_offer(now, offer(1).as_bytes()).unwrap();
    let (t2, _) = b.accept_offer(now, offer(2).as_bytes()).unwrap();
    assert_eq!(admission.admitted(), 2);
    // The node is full on every shard, before the offer is even parsed.
    for core in [&mut a, &mut b] {
        assert!(matches!(
            core.accept_offer(now, offer(3).as_bytes()),
            Err(OfferError::NodeFull(2))
        ));
        assert!(matches!(
            core.accept_offer(now, b"not an offer"),
            Err(OfferError::NodeFull(2))
        ));
    }
    // An offer that fails after admission holds no place.
    assert_eq!(admission.admitted(), 2);
    let mut io = CollectIo::default();
    let CallLocation::Here(k2) = b.find_call(&t2) else {
        panic!("b holds its call");
    };
    assert!(b.hangup(k2, &mut io));
    assert_eq!(admission.admitted(), 1, "a hangup gives the place back");
    assert!(matches!(
        a.accept_offer(now, b"v=0\r\n"),
        Err(OfferError::NotSdp(_) | OfferError::NoAudio)
    ));
    assert_eq!(admission.admitted(), 1, "a refused offer holds none");
    // A session that expires (never connects) gives its place back too.
    let late = now + std::time::Duration::from_secs(60);
    a.handle_timeouts(late, &mut io);
    assert_eq!(a.find_call(&t1), CallLocation::Unknown);
    assert_eq!(
        admission.admitted(),
        0,
        "an expired session gives its place back"
    );
    assert_eq!(io.ended, 2);
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let i = hay
        .windows(from.len())
        .position(|w| w == from)
        .expect("the ufrag is in the request");
    let mut out = hay.to_vec();
    out[i..i + from.len()].copy_from_slice(to);
    out
}
