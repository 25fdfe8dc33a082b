//! The server's signing key is parsed once per process and shared by later handshakes (the
//! vendored dimpl keeps the first P-256 key it parses, with its DER): calls to servers with the
//! same certificate and with other certificates in one process all complete DTLS and open the
//! data channel, which fails if a handshake signed with another server's key (the client checks
//! the signature against the fingerprint in the answer).

use std::time::{Duration, Instant};

use crate::common::virtual_server::VirtualServer;
use crate::common::{Client, Link};

#[test]
fn handshakes_with_one_certificate_and_with_others_all_connect() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut port = 50_000;
    // Three servers, three certificates; two calls on each, in two rounds.
    let mut servers: Vec<VirtualServer> = (0..3).map(|_| VirtualServer::new()).collect();
    for round in 0..2 {
        for (i, server) in servers.iter_mut().enumerate() {
            for _ in 0..2 {
                port += 1;
                let addr = format!("10.0.0.2:{port}").parse().unwrap();
                let (mut client, offer) = Client::new(now, addr, Vec::new());
                server.connect(now, &mut client, &offer);
                let (mut up, mut down) = (
                    Link::new(0.0, Duration::ZERO, port as u64),
                    Link::new(0.0, Duration::ZERO, port as u64 + 1),
                );
                now = server.run(now, Duration::from_secs(2), &mut client, &mut up, &mut down);
                assert!(
                    client.connected_at.is_some() && client.channel_open,
                    "round {round}, server {i}: connected {:?}, channel {}",
                    client.connected_at,
                    client.channel_open
                );
            }
        }
    }
}
