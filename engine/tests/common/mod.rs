//! Test harness: a str0m client peer that speaks a WAV fixture over Opus, records the events and
//! the audio it gets back; an in-memory driver that runs it against a `ShardCore` and the echo
//! agent in virtual time; and a tiny HTTP/1.1 client for the real-socket tests.
#![allow(dead_code)]

pub mod cluster;
pub mod engine;
pub mod process;
pub mod realtime_server;
pub mod redis;
pub mod scene;
pub mod udp_client;
pub mod virtual_server;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use tern_testkit::peer::Client;

/// Loads a fixture from `engine/tests/data`.
pub fn load_wav(name: &str) -> (u32, Vec<i16>) {
    tern_testkit::peer::load_wav(&format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR")))
}

/// An HTTP/1.1 request over a fresh connection (the testkit's client); returns (status, headers,
/// body), header names in lowercase.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    ctype: Option<&str>,
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let headers: Vec<(&str, &str)> = ctype.map(|c| ("Content-Type", c)).into_iter().collect();
    http_with(addr, method, path, &headers, body)
}

/// The same with any request headers.
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let close = tern_testkit::http::Connection::Close;
    let r = tern_testkit::http::request(addr, method, path, extra, body, close)
        .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"));
    (r.status, r.headers, r.body)
}

/// POSTs an SDP offer as `application/sdp`; asserts `201` and returns the answer.
pub fn post_offer(addr: SocketAddr, offer: &str) -> String {
    let (status, _, body) = http(
        addr,
        "POST",
        "/v1/realtime/calls",
        Some("application/sdp"),
        offer.as_bytes(),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    String::from_utf8(body).expect("answer is UTF-8")
}

/// `DELETE /v1/realtime/calls/{id}`; returns the status.
pub fn hang_up(addr: SocketAddr, id: &str) -> u16 {
    http(
        addr,
        "DELETE",
        &format!("/v1/realtime/calls/{id}"),
        None,
        b"",
    )
    .0
}

/// Sums a Prometheus metric over all label sets matching `filter`.
pub fn metric(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(filter)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A lossy in-memory link with a deterministic random generator.
pub struct Link {
    pub loss: f64,
    seed: u64,
    pub q: VecDeque<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
    pub delay: Duration,
    /// Extra random delay (0..jitter) per media packet: packets overtake each other.
    pub jitter: Duration,
    pub dropped: usize,
    /// Drop every DTLS record (a middlebox or a peer whose handshake never gets through).
    pub drop_dtls: bool,
    /// Drop every STUN message (a peer whose consent checks stop while media flows).
    pub drop_stun: bool,
    /// Drop everything (a peer that vanished).
    pub blackhole: bool,
}

impl Link {
    pub fn new(loss: f64, delay: Duration, seed: u64) -> Self {
        Link {
            loss,
            seed,
            q: VecDeque::new(),
            delay,
            jitter: Duration::ZERO,
            dropped: 0,
            drop_dtls: false,
            drop_stun: false,
            blackhole: false,
        }
    }

    fn rand(&mut self) -> f64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Queues a datagram (media only is lossy: STUN/DTLS/SCTP setup is not dropped, so setup is
    /// deterministic and the loss applies to the audio path).
    pub fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        let is_rtp = data.first().is_some_and(|b| (128..192).contains(b))
            && data.get(1).is_some_and(|b| !(64..96).contains(&(b & 0x7f)));
        let is_dtls = data.first().is_some_and(|b| (20..64).contains(b));
        let is_stun = data.first().is_some_and(|b| *b < 2);
        if (is_rtp && self.rand() < self.loss)
            || (is_dtls && self.drop_dtls)
            || (is_stun && self.drop_stun)
            || self.blackhole
        {
            self.dropped += 1;
            return;
        }
        let extra = if is_rtp {
            self.jitter.mul_f64(self.rand())
        } else {
            Duration::ZERO
        };
        let at = now + self.delay + extra;
        let i = self.q.partition_point(|(t, ..)| *t <= at);
        self.q.insert(i, (at, from, to, data));
    }

    /// When the next datagram arrives.
    pub fn next_due(&self) -> Option<Instant> {
        self.q.front().map(|(t, ..)| *t)
    }

    pub fn due(&mut self, now: Instant) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        while self.q.front().is_some_and(|(t, ..)| *t <= now) {
            let Some((_, f, t, d)) = self.q.pop_front() else {
                break;
            };
            out.push((f, t, d));
        }
        out
    }
}
