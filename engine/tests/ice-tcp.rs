//! ICE-TCP on real sockets: the answer carries a passive TCP candidate; a client whose only
//! candidate is TCP (as behind a network that blocks UDP) connects to it, frames its datagrams
//! (RFC 4571), completes ICE, DTLS and SCTP over the one connection, speaks a turn and hears the
//! echo; `/metrics` counts the connection.

use crate::common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{http, load_wav, metric, post_offer, Client};
use tern_engine::core::peer_addr::Protocol;

/// The passive TCP candidate's address in an SDP answer.
fn tcp_candidate(answer: &str) -> SocketAddr {
    let line = answer
        .lines()
        .find(|l| l.starts_with("a=candidate") && l.contains("tcptype passive"))
        .unwrap_or_else(|| panic!("no passive TCP candidate in {answer}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    assert!(f[2].eq_ignore_ascii_case("tcp"), "{line}");
    format!("{}:{}", f[4], f[5]).parse().unwrap()
}

#[test]
fn a_tcp_only_client_completes_a_turn() {
    let engine = common::engine::start_with(1, 4, tern_engine::agent::AgentKind::Echo, |c| {
        c.ice_tcp_port = Some(0);
    });
    let (_, speech) = load_wav("hello-24k.wav");

    // Learn the TCP port from a first answer, then connect and offer from that connection.
    let probe = Client::new(Instant::now(), "127.0.0.1:9".parse().unwrap(), Vec::new()).1;
    let server_tcp = tcp_candidate(&post_offer(engine.http, &probe));
    let mut stream = TcpStream::connect(server_tcp).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(2)))
        .unwrap();
    let local = stream.local_addr().unwrap();
    let (mut client, offer) = Client::new_on(Instant::now(), local, Protocol::Tcp, speech);
    let answer = post_offer(engine.http, &offer);
    assert_eq!(tcp_candidate(&answer), server_tcp);
    client.accept_answer(&answer);

    let mut inbuf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(25);
    let has = |c: &Client, e: &str| c.event_types().iter().any(|t| t == e);
    while Instant::now() < deadline && !has(&client, "output_audio_buffer.stopped") {
        for (to, d) in client.poll(Instant::now()) {
            assert_eq!(to, server_tcp, "everything goes over the one connection");
            let mut framed = (d.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&d);
            stream.write_all(&framed).unwrap();
        }
        match stream.read(&mut chunk) {
            Ok(0) => panic!("server closed the connection"),
            Ok(n) => inbuf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
        while inbuf.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([inbuf[0], inbuf[1]]));
            if inbuf.len() < 2 + len {
                break;
            }
            let frame: Vec<u8> = inbuf.drain(..2 + len).skip(2).collect();
            client.receive(Instant::now(), server_tcp, &frame);
        }
    }
    assert!(client.channel_open, "ICE, DTLS and SCTP over TCP");
    for e in [
        "session.created",
        "input_audio_buffer.speech_stopped",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
    ] {
        assert!(has(&client, e), "{e} missing: {:?}", client.event_types());
    }
    assert!(
        client.received.len() > 50,
        "echo heard: {} frames",
        client.received.len()
    );
    let (_, _, m) = http(engine.http, "GET", "/metrics", None, b"");
    let m = String::from_utf8_lossy(&m);
    assert_eq!(metric(&m, "tern_ice_tcp_total", "accepted"), 1.0, "{m}");
    assert_eq!(metric(&m, "tern_ice_tcp_total", "no_connection"), 0.0);
}

/// ICE-TCP on the HTTP port (by default it takes the media port's number) would share one
/// SO_REUSEPORT group with signaling, and the kernel would hand offers to ICE-TCP: refused at
/// start with a message that names both flags.
#[test]
fn ice_tcp_on_the_http_port_is_refused_at_start() {
    let port = common::process::free_port();
    let http: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = {
        let mut c = tern_engine::shell::runtime::EngineConfig::new(
            vec![0],
            http,
            "127.0.0.1:0".parse().unwrap(),
            tern_engine::agent::AgentKind::Echo,
        );
        c.ice_tcp_port = Some(port);
        c
    };
    let err = match tern_engine::shell::runtime::start(cfg) {
        Ok(_) => panic!("an engine started with ICE-TCP on its HTTP port"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("--http") && err.contains("--ice-tcp-port"),
        "{err}"
    );
    // Nothing was left listening.
    assert!(std::net::TcpListener::bind(http).is_ok(), "{err}");
}
