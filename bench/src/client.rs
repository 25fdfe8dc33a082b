//! One benchmark client: a str0m peer that speaks pre-encoded Opus turns, stays silent while the
//! agent replies, and records what a user would notice (setup time, loss, jitter, end of turn to
//! first reply packet) into its worker's `ClientStats`. Lean on purpose: the reply is never
//! decoded and the speech is encoded once per process, so the load generator stays cheaper per
//! session than the engine it measures.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audiopus::coder::Encoder;
use audiopus::{Application, Channels, SampleRate};
use hdrhistogram::Histogram;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

/// Share of the time each user talks: a turn starts every `speech / TALK_SHARE`.
pub const TALK_SHARE: f64 = 0.4;

/// The fixture turn, Opus-encoded once (20 ms frames at 24 kHz), and a silent frame.
pub struct Fixture {
    pub frames: Vec<Arc<[u8]>>,
    pub silence: Arc<[u8]>,
    /// Index of the last frame with speech in it: the user's end of turn.
    pub last_voiced: usize,
}

impl Fixture {
    pub fn encode(pcm: &[i16]) -> anyhow::Result<Arc<Self>> {
        let enc = Encoder::new(SampleRate::Hz24000, Channels::Mono, Application::Voip)?;
        let mut buf = [0u8; 1500];
        let mut frames = Vec::new();
        let mut last_voiced = 0;
        for (i, chunk) in pcm.chunks(480).enumerate() {
            let mut f = [0i16; 480];
            f[..chunk.len()].copy_from_slice(chunk);
            let rms = (f.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / 480.0).sqrt();
            if rms > 300.0 {
                last_voiced = i;
            }
            let n = enc.encode(&f, &mut buf)?;
            frames.push(Arc::from(&buf[..n]));
        }
        let n = enc.encode(&[0i16; 480], &mut buf)?;
        Ok(Arc::new(Fixture {
            frames,
            silence: Arc::from(&buf[..n]),
            last_voiced,
        }))
    }

    /// One turn cycle: the speech takes TALK_SHARE of it.
    pub fn cycle(&self) -> Duration {
        Duration::from_millis((self.frames.len() as f64 * 20.0 / TALK_SHARE) as u64)
    }
}

/// What the clients of one worker measured since the last snapshot.
pub struct ClientStats {
    /// Offer sent -> ICE and DTLS connected, µs.
    pub setup_us: Histogram<u64>,
    /// RFC 3550 |D| per received packet (kernel receive stamps), µs.
    pub jitter_us: Histogram<u64>,
    /// End of the user's speech -> first reply packet, µs (targets that reply after a turn).
    pub turn_reply_us: Histogram<u64>,
    /// Server's speech_stopped event -> first reply packet, µs: the agent and downlink path.
    pub stopped_to_reply_us: Histogram<u64>,
    /// Echo targets: our frame sent -> its echo received, µs (both directions through the server).
    pub echo_delay_us: Histogram<u64>,
    /// How late each of our own 20 ms frames left (load-generator health), µs.
    pub send_late_us: Histogram<u64>,
    pub packets_expected: u64,
    pub packets_received: u64,
    pub turns_spoken: u64,
    pub replies_heard: u64,
    pub connected: u64,
    /// Time this worker spent working rather than waiting, ns (load-generator saturation).
    pub busy_ns: u64,
    pub wall_ns: u64,
}

impl ClientStats {
    pub fn new() -> Self {
        let h = || Histogram::new_with_bounds(1, 120_000_000, 3).expect("static bounds");
        ClientStats {
            setup_us: h(),
            jitter_us: h(),
            turn_reply_us: h(),
            stopped_to_reply_us: h(),
            send_late_us: h(),
            echo_delay_us: h(),
            packets_expected: 0,
            packets_received: 0,
            turns_spoken: 0,
            replies_heard: 0,
            connected: 0,
            busy_ns: 0,
            wall_ns: 0,
        }
    }

    pub fn merge(&mut self, o: &ClientStats) {
        let _ = self.setup_us.add(&o.setup_us);
        let _ = self.jitter_us.add(&o.jitter_us);
        let _ = self.turn_reply_us.add(&o.turn_reply_us);
        let _ = self.stopped_to_reply_us.add(&o.stopped_to_reply_us);
        let _ = self.send_late_us.add(&o.send_late_us);
        let _ = self.echo_delay_us.add(&o.echo_delay_us);
        self.packets_expected += o.packets_expected;
        self.packets_received += o.packets_received;
        self.turns_spoken += o.turns_spoken;
        self.replies_heard += o.replies_heard;
        self.connected += o.connected;
        self.busy_ns += o.busy_ns;
        self.wall_ns = self.wall_ns.max(o.wall_ns);
    }

    /// Fraction of expected reply packets that never came (sequence-number gaps).
    pub fn loss(&self) -> f64 {
        if self.packets_expected == 0 {
            return 0.0;
        }
        (1.0 - self.packets_received as f64 / self.packets_expected as f64).max(0.0)
    }
}

/// How a client behaves over its life.
#[derive(Clone, Copy)]
pub struct Behaviour {
    /// Speak turns (else muted: ICE consent and SCTP only).
    pub talk: bool,
    /// The target replies after each turn (Tern's agents), so time end of turn -> reply.
    pub reply_after_turn: bool,
    /// The target returns our own packets (Janus EchoTest): time each one's round trip.
    pub echo: bool,
    /// Offer the `oai-events` data channel.
    pub data_channel: bool,
    /// Where in its turn cycle this client starts, 0..1 (spreads turns over time).
    pub phase: f64,
}

pub struct BenchClient {
    rtc: Rtc,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    mid: Mid,
    fixture: Arc<Fixture>,
    behaviour: Behaviour,
    offered_ns: u64,
    pub connected: bool,
    /// Next 20 ms send time, once connected.
    next_send: Option<Instant>,
    /// Frame of the current turn being spoken; None between turns.
    frame: Option<usize>,
    next_turn: Option<Instant>,
    rtp_time: u64,
    end_of_turn_ns: Option<u64>,
    stopped_ns: Option<u64>,
    highest_seq: Option<u64>,
    last_arrival: Option<(u64, u64)>,
    /// Send time (ns) of our recent frames, by frame number modulo its length.
    sent_ns: [u64; 64],
    frames_sent: u64,
    /// (frame number, RTP time) of the first echo: later echoes are numbered from it.
    echo_origin: Option<(u64, u64)>,
    pub next_timeout: Instant,
    /// Set when str0m failed on our input: the client is dead and gets dropped.
    pub failed: bool,
    /// The answer asked for Opus DTX (`usedtx=1`): between turns send one packet every 400 ms,
    /// as browsers do, instead of a silent packet every 20 ms.
    dtx: bool,
    /// Silent frames in a row (between turns).
    silent_run: u64,
}

/// Whether an SDP answer asks the sender for Opus DTX.
pub fn answer_wants_dtx(sdp: &str) -> bool {
    sdp.lines()
        .map(str::trim_end)
        .any(|l| l.starts_with("a=fmtp:") && l.split([';', ' ']).any(|p| p == "usedtx=1"))
}

impl BenchClient {
    /// A client with its offer (SDP text).
    pub fn new(
        config: RtcConfig,
        now: Instant,
        local: SocketAddr,
        fixture: Arc<Fixture>,
        behaviour: Behaviour,
    ) -> anyhow::Result<(Self, String)> {
        let mut rtc = config.set_reordering_size_audio(0).build(now);
        rtc.add_local_candidate(Candidate::host(local, "udp")?);
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        if behaviour.data_channel {
            api.add_channel("oai-events".into());
        }
        let (offer, pending) = api.apply().ok_or_else(|| anyhow::anyhow!("no offer"))?;
        Ok((
            BenchClient {
                rtc,
                local,
                pending: Some(pending),
                mid,
                fixture,
                behaviour,
                offered_ns: 0,
                connected: false,
                next_send: None,
                frame: None,
                next_turn: None,
                rtp_time: 0,
                end_of_turn_ns: None,
                stopped_ns: None,
                highest_seq: None,
                last_arrival: None,
                sent_ns: [0; 64],
                frames_sent: 0,
                echo_origin: None,
                next_timeout: now,
                failed: false,
                dtx: false,
                silent_run: 0,
            },
            offer.to_sdp_string(),
        ))
    }

    /// Applies the target's answer; `offered_ns` is when the offer was sent.
    pub fn accept_answer(&mut self, sdp: &str, offered_ns: u64) -> anyhow::Result<()> {
        let answer = SdpAnswer::from_sdp_string(sdp)?;
        let pending = self
            .pending
            .take()
            .ok_or_else(|| anyhow::anyhow!("answered"))?;
        self.rtc.sdp_api().accept_answer(pending, answer)?;
        self.dtx = answer_wants_dtx(sdp);
        self.offered_ns = offered_ns;
        Ok(())
    }

    /// One datagram that arrived at kernel time `rx_ns`.
    pub fn receive(
        &mut self,
        now: Instant,
        rx_ns: u64,
        from: SocketAddr,
        data: &[u8],
        sock: &UdpSocket,
        st: &mut ClientStats,
    ) {
        let Ok(r) = Receive::new(Protocol::Udp, from, self.local, data) else {
            return;
        };
        if self.rtc.handle_input(Input::Receive(now, r)).is_err() {
            self.failed = true;
            return;
        }
        self.drain(rx_ns, sock, st);
    }

    /// Runs str0m's timers and sends the frame when due; returns when to call again.
    pub fn poll(&mut self, now: Instant, sock: &UdpSocket, st: &mut ClientStats) -> Instant {
        if now >= self.next_timeout && self.rtc.handle_input(Input::Timeout(now)).is_err() {
            self.failed = true;
            return now + Duration::from_secs(3600);
        }
        let now_ns = crate::netio::now_ns();
        self.drain(now_ns, sock, st);
        if let Some(due) = self.next_send.filter(|_| self.behaviour.talk) {
            if now >= due {
                st.send_late_us
                    .saturating_record(now.saturating_duration_since(due).as_micros() as u64);
                self.send_frame(now, now_ns, st);
                // Catch up without bursting if we fell far behind.
                let next = due + Duration::from_millis(20);
                self.next_send = Some(if now > next + Duration::from_millis(100) {
                    now + Duration::from_millis(20)
                } else {
                    next
                });
                if self.rtc.handle_input(Input::Timeout(now)).is_err() {
                    self.failed = true;
                }
                self.drain(now_ns, sock, st);
            }
        }
        match self.next_send.filter(|_| self.behaviour.talk) {
            Some(s) => s.min(self.next_timeout),
            None => self.next_timeout,
        }
    }

    fn send_frame(&mut self, now: Instant, now_ns: u64, st: &mut ClientStats) {
        let f = &self.fixture;
        if self.frame.is_none() && self.next_turn.is_some_and(|t| now >= t) {
            self.frame = Some(0);
            self.next_turn = self.next_turn.map(|t| t + f.cycle());
            st.turns_spoken += 1;
        }
        let payload = match self.frame {
            Some(i) => {
                self.silent_run = 0;
                if i == f.last_voiced && self.behaviour.reply_after_turn {
                    self.end_of_turn_ns = Some(now_ns + 20_000_000);
                    self.stopped_ns = None;
                }
                self.frame = (i + 1 < f.frames.len()).then_some(i + 1);
                &f.frames[i]
            }
            None => {
                self.silent_run += 1;
                // Under DTX a browser sends the first silent frame, then one every 400 ms.
                if self.dtx && self.silent_run % 20 != 1 {
                    // The slot passes unsent: RTP time and frame numbering run on.
                    self.rtp_time += 960;
                    self.frames_sent += 1;
                    return;
                }
                &f.silence
            }
        };
        let Some(w) = self.rtc.writer(self.mid) else {
            return;
        };
        let Some(pt) = w.payload_params().next().map(|p| p.pt()) else {
            return;
        };
        let t = MediaTime::new(self.rtp_time, Frequency::FORTY_EIGHT_KHZ);
        self.rtp_time += 960;
        self.sent_ns[(self.frames_sent % 64) as usize] = now_ns;
        self.frames_sent += 1;
        if w.write(pt, now, t, payload.clone()).is_err() {
            self.failed = true;
        }
    }

    fn drain(&mut self, rx_ns: u64, sock: &UdpSocket, st: &mut ClientStats) {
        loop {
            let out = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(_) => {
                    self.failed = true;
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    self.next_timeout = t;
                    return;
                }
                Output::Transmit(t) => {
                    let _ = sock.send_to(&t.contents, t.destination);
                }
                Output::Event(Event::Connected) => self.on_connected(rx_ns, st),
                Output::Event(Event::ChannelData(d)) => {
                    if memchr_str(&d.data, b"input_audio_buffer.speech_stopped") {
                        self.stopped_ns = Some(rx_ns);
                    }
                }
                Output::Event(Event::MediaData(d)) => {
                    self.on_media(rx_ns, **d.seq_range.end(), d.time.numer(), st)
                }
                Output::Event(_) => {}
            }
        }
    }

    fn on_connected(&mut self, rx_ns: u64, st: &mut ClientStats) {
        if self.connected {
            return;
        }
        self.connected = true;
        st.connected += 1;
        st.setup_us
            .saturating_record(rx_ns.saturating_sub(self.offered_ns) / 1000);
        let now = Instant::now();
        self.next_send = Some(now);
        self.next_turn = Some(now + self.fixture.cycle().mul_f64(self.behaviour.phase));
    }

    fn on_media(&mut self, rx_ns: u64, seq: u64, rtp: u64, st: &mut ClientStats) {
        st.packets_received += 1;
        match self.highest_seq {
            None => st.packets_expected += 1,
            Some(h) if seq > h => st.packets_expected += seq - h,
            Some(_) => {}
        }
        self.highest_seq = Some(self.highest_seq.map_or(seq, |h| h.max(seq)));
        if let Some((t, r)) = self.last_arrival {
            let arrival = rx_ns.saturating_sub(t) as i64 / 1000;
            let sent = (rtp.wrapping_sub(r) as i64) * 1_000_000 / 48_000;
            st.jitter_us
                .saturating_record((arrival - sent).unsigned_abs());
        }
        self.last_arrival = Some((rx_ns, rtp));
        if self.behaviour.echo && self.frames_sent > 0 {
            // The first echo is of the latest frame sent (a round trip is far below 20 ms);
            // the server keeps RTP spacing, so later ones are numbered from it.
            let (k0, r0) = *self.echo_origin.get_or_insert((self.frames_sent - 1, rtp));
            let k = k0 + rtp.wrapping_sub(r0) / 960;
            if k < self.frames_sent && self.frames_sent - k <= 64 {
                let sent = self.sent_ns[(k % 64) as usize];
                st.echo_delay_us
                    .saturating_record(rx_ns.saturating_sub(sent) / 1000);
            }
        }
        if let Some(end) = self.end_of_turn_ns.filter(|&e| rx_ns > e) {
            st.turn_reply_us.saturating_record((rx_ns - end) / 1000);
            if let Some(s) = self.stopped_ns.filter(|&s| rx_ns > s) {
                st.stopped_to_reply_us.saturating_record((rx_ns - s) / 1000);
            }
            st.replies_heard += 1;
            self.end_of_turn_ns = None;
            self.stopped_ns = None;
        }
    }
}

fn memchr_str(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::answer_wants_dtx;

    #[test]
    fn usedtx_is_read_from_the_answer() {
        assert!(answer_wants_dtx(
            "v=0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1;usedtx=1\r\n"
        ));
        assert!(!answer_wants_dtx(
            "v=0\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"
        ));
        assert!(!answer_wants_dtx("a=fmtp:111 usedtx=0\r\n"));
    }
}
