//! A scripted WebRTC client peer (str0m, sans-IO): offers audio plus the `oai-events` channel,
//! speaks PCM at 24 kHz as Opus every 20 ms, and records server events and reply audio. Used by
//! the scenario tests and by `tern-bench`; not used by the server.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
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
    let full = path.to_string();
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
    /// The transport of its one candidate.
    pub proto: Protocol,
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
    /// |D| of RFC 3550 for each received packet after the first (arrival spacing minus RTP
    /// spacing, in microseconds): the jitter a receiver sees.
    pub transit_deltas_us: Vec<u64>,
    last_arrival: Option<(Instant, u64)>,
    pub next_timeout: Instant,
    /// 20 ms frames sent.
    pub frames_sent: u64,
    /// Send as a browser does under `usedtx=1`: during silence only one packet every 400 ms
    /// (the RTP clock runs on, sequence numbers do not skip).
    pub dtx: bool,
    silent_run: u64,
    /// When it last sent a frame with audible speech (RMS over 300, as `audible_frames` counts).
    pub last_voiced_sent: Option<Instant>,
    /// Muted: no audio at all (a muted microphone with DTX), only ICE consent and SCTP.
    pub muted: bool,
}

impl Client {
    pub fn new(now: Instant, addr: SocketAddr, speech: Vec<i16>) -> (Self, String) {
        Self::new_on(now, addr, Protocol::Udp, speech)
    }

    /// A client whose one candidate is `addr` over `proto`: UDP, or TCP as an active ICE-TCP
    /// candidate (`addr` is then the local address of its connected TCP stream).
    pub fn new_on(
        now: Instant,
        addr: SocketAddr,
        proto: Protocol,
        speech: Vec<i16>,
    ) -> (Self, String) {
        let mut rtc = Rtc::builder().set_reordering_size_audio(0).build(now);
        let cand = match proto {
            Protocol::Tcp => Candidate::builder()
                .tcp()
                .host(addr)
                .tcptype(str0m::net::TcpType::Active)
                .build(),
            _ => Candidate::host(addr, "udp"),
        }
        .expect("valid candidate");
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
            proto,
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
            transit_deltas_us: Vec::new(),
            last_arrival: None,
            next_timeout: now,
            frames_sent: 0,
            dtx: false,
            silent_run: 0,
            last_voiced_sent: None,
            muted: false,
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
        let r = Receive::new(self.proto, from, self.addr, data).expect("datagram");
        self.rtc
            .handle_input(Input::Receive(now, r))
            .expect("client input");
        // What the datagram caused (an answer, a retransmit) is polled at once.
        self.next_timeout = now;
    }

    /// When `poll` next has work: str0m's timeout, or the next audio frame once it talks.
    pub fn next_wake(&self) -> Instant {
        let talking = self.connected_at.is_some() && self.channel_open && !self.muted;
        match self.next_send {
            Some(t) if talking => t.min(self.next_timeout),
            _ => self.next_timeout,
        }
    }

    /// Runs timers, sends audio when due; returns datagrams to send.
    pub fn poll(&mut self, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
        if now >= self.next_timeout {
            self.rtc.handle_input(Input::Timeout(now)).expect("timeout");
        }
        let mut out = Vec::new();
        self.drain(now, &mut out);
        if self.connected_at.is_some() && self.channel_open && !self.muted {
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
        let energy = pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / 480.0;
        if energy.sqrt() > 300.0 {
            self.last_voiced_sent = Some(now);
        }
        self.silent_run = if energy.sqrt() < 50.0 {
            self.silent_run + 1
        } else {
            0
        };
        if self.dtx && self.silent_run > 1 && self.silent_run % 20 != 1 {
            self.rtp_time += 960;
            return;
        }
        let mut buf = [0u8; 1500];
        let n = self.enc.encode(&pcm, &mut buf).expect("encode");
        let Some(w) = self.rtc.writer(self.mid) else {
            return;
        };
        let pt = w.payload_params().next().expect("opus negotiated").pt();
        let t = MediaTime::new(self.rtp_time, Frequency::FORTY_EIGHT_KHZ);
        self.rtp_time += 960;
        w.write(pt, now, t, &buf[..n]).expect("write");
        self.frames_sent += 1;
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
                        let rtp = d.time.numer();
                        if let Some((t, r)) = self.last_arrival {
                            let arrival = now.saturating_duration_since(t).as_micros() as i64;
                            let sent = (rtp.wrapping_sub(r) as i64) * 1_000_000 / 48_000;
                            self.transit_deltas_us.push((arrival - sent).unsigned_abs());
                        }
                        self.last_arrival = Some((now, rtp));
                    }
                    _ => {}
                },
            }
        }
    }

    /// Starts speaking `speech` from its beginning (replacing whatever was left to say).
    pub fn speak(&mut self, speech: Vec<i16>) {
        self.speech = speech;
        self.pos = 0;
    }

    /// Sends a client event (JSON) on the `oai-events` data channel; false if it is not open.
    pub fn send_event(&mut self, json: &str) -> bool {
        let Some(mut ch) = self.rtc.channel(self.channel) else {
            return false;
        };
        ch.write(false, json.as_bytes()).is_ok()
    }

    /// Events of type `kind`, in arrival order.
    pub fn events_of(&self, kind: &str) -> Vec<&serde_json::Value> {
        self.events
            .iter()
            .filter(|(_, v)| v["type"] == kind)
            .map(|(_, v)| v)
            .collect()
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

/// A real STUN binding request (str0m's) for server ufrag `ufrag`, signed with a password no
/// relay checks: what a client's first check through `tern relay` looks like.
pub fn binding_request(ufrag: &str) -> Vec<u8> {
    let user = format!("{ufrag}:clnt");
    let msg = str0m::ice::StunMessage::binding_request(
        &user,
        str0m::ice::TransId::new(),
        true,
        0,
        1,
        false,
    );
    let mut buf = vec![0u8; 512];
    let n = msg
        .to_bytes(Some(b"any password"), &mut buf, |key, parts| {
            let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
            let mut c = aws_lc_rs::hmac::Context::with_key(&k);
            for p in parts {
                c.update(p);
            }
            c.sign().as_ref().try_into().expect("20 bytes")
        })
        .expect("a binding request fits");
    buf.truncate(n);
    buf
}
