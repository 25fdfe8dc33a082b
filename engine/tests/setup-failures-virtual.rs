//! Calls that never connect, in virtual time: each ends once, counted by how far its setup got
//! (`ice_failed`: no ICE check ever arrived; `dtls_failed`: ICE worked, DTLS never completed,
//! even though the client's checks keep the session alive).

use crate::common;

use std::time::{Duration, Instant};

use common::virtual_server::VirtualServer;
use common::{Client, Link};

/// A server that answered a silent client's offer at `t0`.
fn answered(t0: Instant) -> (VirtualServer, Client) {
    let mut server = VirtualServer::new();
    let (mut client, offer) = Client::new(t0, "10.0.0.2:50000".parse().unwrap(), Vec::new());
    server.connect(t0, &mut client, &offer);
    (server, client)
}

#[test]
fn silence_after_the_answer_ends_as_ice_failed() {
    let t0 = Instant::now();
    let (mut server, _client) = answered(t0);
    // The client's network drops everything: nothing reaches Tern.
    let mut now = t0;
    while now < t0 + Duration::from_secs(40) {
        now += Duration::from_millis(100);
        server.core.handle_timeouts(now);
        server.io.collect(&mut server.core, now);
    }
    assert_eq!(server.core.live_sessions(), 0);
    assert_eq!(server.core.counters.ended_by.get("ice_failed"), Some(&1));
    assert_eq!(server.core.counters.ended_by.len(), 1, "ended once");
}

#[test]
fn ice_without_dtls_ends_as_dtls_failed() {
    let t0 = Instant::now();
    let (mut server, mut client) = answered(t0);
    let mut up = Link::new(0.0, Duration::from_millis(10), 1);
    up.drop_dtls = true;
    let mut down = Link::new(0.0, Duration::from_millis(10), 2);
    server.run(t0, Duration::from_secs(25), &mut client, &mut up, &mut down);
    assert!(up.dropped > 0, "the client's DTLS was dropped");
    assert_eq!(server.core.live_sessions(), 0);
    assert_eq!(server.core.counters.ended_by.get("dtls_failed"), Some(&1));
    assert_eq!(server.core.counters.ended_by.len(), 1, "ended once");
}
