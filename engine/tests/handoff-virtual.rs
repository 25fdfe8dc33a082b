//! The handoff between shard cores in virtual time, through their own message protocol (`Claim`,
//! `Adopt`, `Forward`, `Learn`, `Released`) carried by an emulated mesh, including its failure
//! branches: a forged ufrag naming another shard costs that shard nothing; a handoff whose Adopt
//! message finds a full inbox keeps the session home, live; an owner with no room ends the
//! session, counts it and frees the home entry; a `Released` that finds a full inbox is sent again.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{load_wav, Client};
use tern_engine::core::admission::Admission;
use tern_engine::core::peer_addr::Peer;
use tern_engine::core::rtc_setup::OfferError;
use tern_engine::core::session_id::SessionId;
use tern_engine::core::shard::{CallLocation, DropReason};

const CLIENT: &str = "10.0.0.2:50000";

/// Two shards of one node (room for `owner_room` sessions on shard 1); the client's offer went to
/// shard 0 (home). Returns the cluster, the client, its tag, its first STUN request and the
/// node's admission.
fn setup(owner_room: usize) -> (Cluster, Client, SessionId, Vec<u8>, Admission) {
    let admission = Admission::new(8);
    let mut cluster = Cluster::new(&[8, owner_room], &admission);
    let t0 = Instant::now();
    let (mut client, offer) = Client::new(t0, CLIENT.parse().unwrap(), load_wav("hello-24k.wav").1);
    let (tag, answer) = cluster.cores[0].accept_offer(t0, offer.as_bytes()).unwrap();
    client.accept_answer(&answer);
    let stun = client
        .poll(t0)
        .into_iter()
        .find(|(_, d)| d.first().is_some_and(|b| *b < 2))
        .expect("a STUN binding request")
        .1;
    (cluster, client, tag, stun, admission)
}

fn dropped(c: &Cluster, shard: usize, reason: DropReason) -> u64 {
    c.cores[shard].counters.dropped[reason.index()]
}

#[test]
fn the_first_check_on_another_shard_moves_the_session_there() {
    let (mut c, client, tag, stun, admission) = setup(8);
    let now = Instant::now();
    c.datagram(now, 1, client.addr, &stun);
    assert_eq!(c.carried_kinds(), vec!["Claim", "Adopt"]);
    assert_eq!(
        (c.cores[0].live_sessions(), c.cores[1].live_sessions()),
        (0, 1)
    );
    assert!(!c.io[1].out.is_empty(), "the owner answered the check");
    assert_eq!(c.cores[1].counters.handoffs_in, 1);
    assert_eq!(c.cores[0].counters.handoffs_out, 1);
    assert!(matches!(c.cores[1].find_call(&tag), CallLocation::Here(_)));
    assert_eq!(c.cores[0].find_call(&tag), CallLocation::Shard(1));
    // The same client's next datagram reaching home is forwarded to the owner.
    c.datagram(now, 0, client.addr, &stun);
    assert_eq!(c.carried_kinds()[2..], ["Forward"]);
    assert_eq!(c.cores[1].counters.forwarded_in, 1);
    assert_eq!(admission.admitted(), 1);
}

#[test]
fn a_forged_ufrag_for_another_shard_is_dropped_before_any_work() {
    let (mut c, client, tag, stun, _) = setup(8);
    let now = Instant::now();
    // The same request with one hex digit of the secret changed: same shape, bad seal.
    let ufrag = tag.ufrag();
    let mut forged_ufrag = ufrag.clone().into_bytes();
    let last = forged_ufrag.last_mut().unwrap();
    *last = if *last == b'0' { b'1' } else { b'0' };
    let forged = replace(&stun, ufrag.as_bytes(), &forged_ufrag);
    c.datagram(now, 1, "10.0.0.9:4000".parse().unwrap(), &forged);
    assert_eq!(dropped(&c, 1, DropReason::ForgedUfrag), 1);
    assert!(
        c.carried.is_empty(),
        "no copy, no message, no wake-up of shard 0"
    );
    // A call id with a bad seal is unknown everywhere (no hangup hop to another shard).
    let bad = SessionId::parse(std::str::from_utf8(&forged_ufrag).unwrap()).unwrap();
    assert_eq!(c.cores[1].find_call(&bad), CallLocation::Unknown);
    assert_eq!(c.cores[1].find_call(&tag), CallLocation::Shard(0));
    // The genuine request still moves the session.
    c.datagram(now, 1, client.addr, &stun);
    assert_eq!(c.carried_kinds(), vec!["Claim", "Adopt"]);
}

#[test]
fn a_handoff_that_cannot_be_queued_keeps_the_session_home() {
    let (mut c, client, tag, stun, admission) = setup(8);
    let now = Instant::now();
    // Shard 1 takes the check and claims; its own inbox is full when the Adopt comes back.
    c.cores[1].handle_datagram(now, Peer::udp(client.addr), &stun);
    c.io[1].collect(&mut c.cores[1], now);
    c.inbox_full[1] = true;
    c.carry(now);
    assert_eq!(c.carried_kinds(), vec!["Claim"]);
    assert_eq!(c.refused, vec![(0, 1, "Adopt")]);
    assert_eq!(c.cores[0].live_sessions(), 1);
    assert_eq!(c.cores[1].live_sessions(), 0);
    assert!(matches!(c.cores[0].find_call(&tag), CallLocation::Here(_)));
    assert_eq!(c.cores[0].counters.handoffs_out, 0);
    assert_eq!(c.cores[0].counters.handoffs_failed, 1);
    // The datagram that claimed it was handled at home: the check is answered from there.
    assert!(!c.io[0].out.is_empty(), "the check is answered from home");
    assert_eq!(c.io[0].ended + c.io[1].ended, 0);
    assert_eq!(admission.admitted(), 1, "the session kept its place");
}

#[test]
fn an_owner_without_room_ends_the_session_and_frees_its_home_entry() {
    let (mut c, client, tag, stun, admission) = setup(1);
    let now = Instant::now();
    // Shard 1's table is full with a call of its own.
    let (_c2, offer2) = Client::new(now, "10.0.0.3:50000".parse().unwrap(), Vec::new());
    c.cores[1].accept_offer(now, offer2.as_bytes()).unwrap();
    assert_eq!(admission.admitted(), 2);
    c.datagram(now, 1, client.addr, &stun);
    assert_eq!(c.carried_kinds(), vec!["Claim", "Adopt", "Released"]);
    let owner = &c.cores[1];
    assert_eq!(c.io[1].ended, 1, "ended once");
    assert_eq!(owner.counters.sessions_ended, 1);
    assert_eq!(owner.counters.handoffs_failed, 1);
    assert_eq!(owner.counters.ended_by.get("handoff_failed"), Some(&1));
    assert_eq!(admission.admitted(), 1, "its place is given back, once");
    assert_eq!(
        c.cores[0].occupied_slots(),
        0,
        "no entry left Moved forever"
    );
    assert_eq!(c.cores[0].find_call(&tag), CallLocation::Unknown);
}

#[test]
fn a_hangup_of_an_adopted_call_frees_home_even_through_a_full_inbox() {
    let (mut c, client, tag, stun, admission) = setup(8);
    let now = Instant::now();
    c.datagram(now, 1, client.addr, &stun);
    let CallLocation::Here(key) = c.cores[1].find_call(&tag) else {
        panic!("adopted by shard 1");
    };
    assert_eq!(c.cores[0].occupied_slots(), 1, "home keeps a Moved entry");
    // Home's inbox is full when the owner reports the end: the report is kept, not lost.
    c.inbox_full[0] = true;
    assert!(c.hangup(now, 1, key));
    c.carry(now);
    assert_eq!(c.refused.last(), Some(&(1, 0, "Released")));
    assert_eq!(c.cores[0].occupied_slots(), 1);
    assert_eq!(admission.admitted(), 0, "the permit went with the session");
    // The inbox drains; the next housekeeping sends the report again.
    c.inbox_full[0] = false;
    c.housekeeping(1, now + Duration::from_millis(100));
    c.carry(now);
    assert_eq!(c.carried.last(), Some(&(1, 0, "Released")));
    assert_eq!(c.cores[0].occupied_slots(), 0);
    assert_eq!(c.cores[0].find_call(&tag), CallLocation::Unknown);
}

#[test]
fn shards_share_the_node_admission_and_every_end_gives_the_place_back() {
    let admission = Admission::new(2);
    let mut c = Cluster::new(&[8, 8], &admission);
    let now = Instant::now();
    let offer = |port: u16| {
        let addr = SocketAddr::from(([10, 0, 0, 2], port));
        Client::new(now, addr, Vec::new()).1
    };
    let (t1, _) = c.cores[0].accept_offer(now, offer(1).as_bytes()).unwrap();
    let (t2, _) = c.cores[1].accept_offer(now, offer(2).as_bytes()).unwrap();
    assert_eq!(admission.admitted(), 2);
    // The node is full on every shard, before the offer is even parsed.
    for core in c.cores.iter_mut() {
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
    let CallLocation::Here(k2) = c.cores[1].find_call(&t2) else {
        panic!("shard 1 holds its call");
    };
    assert!(c.hangup(now, 1, k2));
    assert_eq!(admission.admitted(), 1, "a hangup gives the place back");
    assert!(matches!(
        c.cores[0].accept_offer(now, b"v=0\r\n"),
        Err(OfferError::NotSdp(_) | OfferError::NoAudio)
    ));
    assert_eq!(admission.admitted(), 1, "a refused offer holds none");
    // A session that never connects expires and gives its place back too.
    let late = now + Duration::from_secs(60);
    c.cores[0].handle_timeouts(late);
    c.io[0].collect(&mut c.cores[0], now);
    assert_eq!(c.cores[0].find_call(&t1), CallLocation::Unknown);
    assert_eq!(
        admission.admitted(),
        0,
        "an expired session gives its place back"
    );
    assert_eq!(c.io[0].ended + c.io[1].ended, 2);
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
