//! Strict ICE agents (Pion, aioice, libnice) drop a reply whose source is not the address they sent
//! to. The engine binds its UDP sockets to the wildcard and advertises 127.0.0.3, a local address
//! that is not the kernel's preferred source for loopback (127.0.0.1 is): every datagram the client
//! gets must still come from 127.0.0.3, and the call must connect.

use crate::common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{load_wav, post_offer, Client};

#[test]
fn replies_leave_from_the_advertised_address() {
    let engine = common::engine::start_with(1, 4, tern_engine::agent::AgentKind::Echo, |c| {
        c.udp_bind = "0.0.0.0:0".parse().unwrap();
        c.public = "127.0.0.3:0".parse().unwrap();
    });
    assert_eq!(engine.public.ip().to_string(), "127.0.0.3");
    let (_, speech) = load_wav("hello-24k.wav");
    let sock = UdpSocket::bind("127.0.0.2:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(2)))
        .unwrap();
    let (mut client, offer) = Client::new(Instant::now(), sock.local_addr().unwrap(), speech);
    let answer = post_offer(engine.http, &offer);
    assert!(answer.contains("127.0.0.3"), "{answer}");
    client.accept_answer(&answer);

    let mut buf = [0u8; 2048];
    let mut sources: Vec<SocketAddr> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && !client.channel_open {
        for (to, d) in client.poll(Instant::now()) {
            sock.send_to(&d, to).unwrap();
        }
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if !sources.contains(&from) {
                sources.push(from);
            }
            client.receive(Instant::now(), from, &buf[..n]);
        }
    }
    assert_eq!(
        sources,
        vec![engine.public],
        "every reply comes from the advertised address"
    );
    assert!(client.channel_open, "ICE, DTLS and SCTP completed");
}
