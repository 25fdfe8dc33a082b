//! Test harness: a str0m client peer that speaks a WAV fixture over Opus, records the events and
//! the audio it gets back; an in-memory driver that runs it against a `ShardCore` and the echo
//! agent in virtual time; and a tiny HTTP/1.1 client for the real-socket tests.
#![allow(dead_code)]

pub mod engine;
pub mod virtual_server;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Channels, MutSignals, SampleRate};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// Loads a 16-bit mono WAV; returns (rate, samples).
pub fn load_wav(path: &str) -> (u32, Vec<i16>) {
    let full = format!("{}/tests/data/{path}", env!("CARGO_MANIFEST_DIR"));
    let b = std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
    let rate = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    let mut i = 12;
    while i + 8 <= b.len() {
        let id = &b[i..i + 4];
        let len = u32::from_le_bytes([b[i + 4], b[i + 5], b[i + 6], b[i + 7]]) as usize;
        if id == b"data" {
            let d = &b[i + 8..(i + 8 + len).min(b.len())];
            return (
                rate,
                d.chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            );
        }
        i += 8 + len + (len & 1);
    }
    panic!("no data chunk in {full}");
}

/// A WebRTC client peer: sends the fixture (then silence), records events and reply audio.
pub struct Client {
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pending: Option<SdpPendingOffer>,
    mid: Mid,
    channel: ChannelId,
    enc: Encoder,
    dec: Decoder,
    speech: Vec<i16>,
    pos: usize,
    next_send: Option<Instant>,
    rtp_time: u64,
    pub connected_at: Option<Instant>,
    pub channel_open: bool,
    pub events: Vec<(Instant, serde_json::Value)>,
    /// (arrival, RMS level) of each reply frame.
    pub received: Vec<(Instant, f64)>,
    pub next_timeout: Instant,
}

impl Client {
    pub fn new(now: Instant, addr: SocketAddr, speech: Vec<i16>) -> (Self, String) {
        let mut rtc = Rtc::builder().set_reordering_size_audio(0).build(now);
        let cand = Candidate::host(addr, "udp").expect("valid candidate");
        rtc.add_local_candidate(cand);
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let channel = api.add_channel("oai-events".into());
        let (offer, pending) = api.apply().expect("offer");
        let enc =
            Encoder::new(SampleRate::Hz24000, Channels::Mono, Application::Voip).expect("encoder");
        let dec = Decoder::new(SampleRate::Hz24000, Channels::Mono).expect("decoder");
        let c = Client {
            rtc,
            addr,
            pending: Some(pending),
            mid,
            channel,
            enc,
            dec,
            speech,
            pos: 0,
            next_send: None,
            rtp_time: 0,
            connected_at: None,
            channel_open: false,
            events: Vec::new(),
            received: Vec::new(),
            next_timeout: now,
        };
        (c, offer.to_sdp_string())
    }

    pub fn accept_answer(&mut self, sdp: &str) {
        let answer = SdpAnswer::from_sdp_string(sdp).expect("answer parses");
        let pending = self.pending.take().expect("one answer");
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
    }

    pub fn receive(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let r = Receive::new(Protocol::Udp, from, self.addr, data).expect("datagram");
        self.rtc
            .handle_input(Input::Receive(now, r))
            .expect("client input");
    }

    /// Runs timers, sends audio when due; returns datagrams to send.
    pub fn poll(&mut self, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
        if now >= self.next_timeout {
            self.rtc.handle_input(Input::Timeout(now)).expect("timeout");
        }
        let mut out = Vec::new();
        self.drain(now, &mut out);
        if self.connected_at.is_some() && self.channel_open {
            let start = *self.next_send.get_or_insert(now);
            if now >= start {
                self.send_frame(now);
                self.next_send = Some(start + Duration::from_millis(20));
                self.rtc.handle_input(Input::Timeout(now)).expect("timeout");
                self.drain(now, &mut out);
            }
        }
        out
    }

    fn send_frame(&mut self, now: Instant) {
        let mut pcm = [0i16; 480];
        for (i, s) in pcm.iter_mut().enumerate() {
            *s = self.speech.get(self.pos + i).copied().unwrap_or(0);
        }
        self.pos += 480;
        let mut buf = [0u8; 1500];
        let n = self.enc.encode(&pcm, &mut buf).expect("encode");
        let Some(w) = self.rtc.writer(self.mid) else {
            return;
        };
        let pt = w.payload_params().next().expect("opus negotiated").pt();
        let t = MediaTime::new(self.rtp_time, Frequency::FORTY_EIGHT_KHZ);
        self.rtp_time += 960;
        w.write(pt, now, t, &buf[..n]).expect("write");
    }

    fn drain(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        loop {
            match self.rtc.poll_output().expect("poll") {
                Output::Timeout(t) => {
                    self.next_timeout = t;
                    break;
                }
                Output::Transmit(t) => out.push((t.destination, t.contents.to_vec())),
                Output::Event(e) => match e {
                    Event::Connected => self.connected_at = Some(now),
                    Event::ChannelOpen(id, _) if id == self.channel => self.channel_open = true,
                    Event::ChannelData(d) => {
                        let v: serde_json::Value =
                            serde_json::from_slice(&d.data).expect("server events are JSON");
                        self.events.push((now, v));
                    }
                    Event::MediaData(d) => {
                        let mut pcm = [0i16; 2880];
                        let n = audiopus::packet::Packet::try_from(&d.data[..])
                            .ok()
                            .and_then(|p| {
                                self.dec
                                    .decode(
                                        Some(p),
                                        MutSignals::try_from(&mut pcm[..]).ok()?,
                                        false,
                                    )
                                    .ok()
                            })
                            .unwrap_or(0);
                        let rms = if n == 0 {
                            0.0
                        } else {
                            (pcm[..n].iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / n as f64)
                                .sqrt()
                        };
                        self.received.push((now, rms));
                    }
                    _ => {}
                },
            }
        }
    }

    /// Whether the fixture has been sent completely plus `tail` of silence.
    pub fn done_speaking(&self, tail: Duration) -> bool {
        self.pos >= self.speech.len() + (tail.as_millis() as usize * 24)
    }

    pub fn event_types(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|(_, v)| v["type"].as_str().map(String::from))
            .collect()
    }

    pub fn event_time(&self, kind: &str) -> Option<Instant> {
        self.events
            .iter()
            .find(|(_, v)| v["type"] == kind)
            .map(|(t, _)| *t)
    }

    /// Reply frames with audible energy.
    pub fn audible_frames(&self) -> usize {
        self.received.iter().filter(|(_, rms)| *rms > 300.0).count()
    }
}

/// Minimal HTTP/1.1 request over a fresh connection; returns (status, headers, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    ctype: Option<&str>,
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(c) = ctype {
        req.push_str(&format!("Content-Type: {c}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    (status, headers, resp[split + 4..].to_vec())
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
    pub dropped: usize,
}

impl Link {
    pub fn new(loss: f64, delay: Duration, seed: u64) -> Self {
        Link {
            loss,
            seed,
            q: VecDeque::new(),
            delay,
            dropped: 0,
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
        if is_rtp && self.rand() < self.loss {
            self.dropped += 1;
            return;
        }
        self.q.push_back((now + self.delay, from, to, data));
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
