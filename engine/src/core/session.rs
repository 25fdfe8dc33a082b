//! One voice session: str0m's `Rtc` plus the media pipeline around it, sans-IO.
//!
//! Inputs are datagrams, timeouts and reply messages from the agent, each with `now`; outputs go to
//! a `SessionIo` (datagrams to send, messages for the agent, measurements) and the next deadline is
//! returned. Uplink: Opus RTP -> `UplinkDecoder` (concealment) -> `FrameVad` -> `TurnDetector` ->
//! agent ring. Downlink: agent frames -> `PlayoutQueue` -> `Pacer` (20 ms) -> Opus -> str0m.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::channel::ChannelId;
use str0m::media::{MediaKind, MediaTime, Mid, Pt};
use str0m::net::Receive;
use str0m::{Event, IceConnectionState, Input, Output, Rtc};

use super::events::{ClientEvent, EventWriter};
use super::media::codec::AudioCodec;
use super::media::decoder::FrameOrigin;
use super::media::denoise::{Denoiser, NoiseReduction};
use super::media::encoder::DownlinkEncoder;
use super::media::frame::{ModelRate, PcmFrame};
use super::media::playout::{Pacer, PlayoutItem, PlayoutQueue};
use super::media::uplink::{UplinkPath, UplinkStats};
use super::peer_addr::Peer;
use super::recording::{Direction, RecordEvent, RecordFormat};
use super::ring_msg::{DownlinkMsg, SessionKey, UplinkMsg};
use super::route_tag::RouteTag;
use super::session_limits::{EndReason, EventGate, EventRejected, Liveness, SessionLimits};
use super::session_object;
use super::turn::barge_in::{BargeInGuard, BargeInOutcome, Gate, Release};
use super::turn::detector::{ServerVadSettings, TurnDetector, TurnEvent};
use super::turn::echo_guard::{EchoGuard, ReplyEnvelope};
use super::turn::latency::{EndRule, TurnLatency, TurnTimeline, SPEECH_FLOOR_DBFS};
use super::turn::vad::{EarshotVad, FrameVad, VadBackend};

/// The label of the events data channel.
pub const EVENTS_CHANNEL: &str = "oai-events";
/// Events queued before the channel opens (older ones are dropped).
const MAX_PENDING_EVENTS: usize = 32;
/// If str0m asks for nothing sooner, look at the session again after this long.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Frames of a worker-side VAD awaiting an answer before the oldest is taken as silence (1 s).
const MAX_PENDING_VAD: usize = 50;

/// Where a session's voice probabilities come from.
enum VadPath {
    /// Computed on the media core as each frame arrives (earshot).
    Inline(FrameVad),
    /// Computed on the worker (`--vad silero`); frames wait here, in order, for their answer.
    Remote(VecDeque<PendingVad>),
}

#[derive(Debug, Clone, Copy)]
struct PendingVad {
    index: u64,
    echo: bool,
    /// When the frame's packet arrived, if the frame carried speech energy.
    loud_at: Option<Instant>,
    probability: Option<f32>,
}

/// Per-session settings, from CLI defaults.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub model_rate: ModelRate,
    /// `None`: turn detection off (the client commits turns itself).
    pub turn: Option<ServerVadSettings>,
    pub encoder_complexity: u8,
    /// Ask the client for Opus DTX in the answer (`usedtx=1`).
    pub opus_dtx: bool,
    /// The origin of the shard's 20 ms grid that silence fills are aligned to (set by the shell;
    /// `None`: each session fills on its own phase).
    pub fill_grid: Option<Instant>,
    pub playout_frames: usize,
    pub limits: SessionLimits,
    /// Voiced speech needed over a playing reply before it stops (0: at once).
    pub barge_in_min_ms: u32,
    /// Speech needed in all before a stopped reply is dropped; a backchannel that ends sooner
    /// resumes it. At or below `barge_in_min_ms`: no pause, the reply is dropped at once.
    pub barge_in_confirm_ms: u32,
    /// `--vad`: the voice detector (earshot on the media core, or Silero on the worker).
    pub vad: VadBackend,
    /// `--noise-reduction`: suppression before the VAD and the model when a session does not
    /// say (`audio.input.noise_reduction` in its session or a `session.update` does).
    pub noise_reduction: Option<NoiseReduction>,
    /// Test builds only (never set from the CLI): the data-channel event
    /// `{"type":"tern.test.panic"}` panics inside the session, to prove panic isolation.
    #[doc(hidden)]
    pub fault_injection: bool,
    /// The app's session fields (instructions, voice, tools, ...: everything Tern does not own),
    /// from a token or the offer's form, merged with each `session.update`; shown in
    /// `session.created`/`updated` and forwarded to the agent.
    pub app: serde_json::Map<String, serde_json::Value>,
    /// Record this call, in this format (from `--record-all` or the session a server set).
    pub record: Option<RecordFormat>,
    /// `--record-format` when `--record-dir` is set (a session may ask to be recorded); `None`:
    /// this node records nothing.
    pub record_format: Option<RecordFormat>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            model_rate: ModelRate::Hz24000,
            turn: Some(ServerVadSettings::default()),
            encoder_complexity: 5,
            opus_dtx: true,
            fill_grid: None,
            playout_frames: 150,
            limits: SessionLimits::default(),
            barge_in_min_ms: 200,
            barge_in_confirm_ms: 600,
            vad: VadBackend::Earshot,
            noise_reduction: None,
            fault_injection: false,
            app: serde_json::Map::new(),
            record: None,
            record_format: None,
        }
    }
}

/// Where a session's outputs go. Implemented by the shard shell (sockets, rings, metrics) and by
/// test harnesses (vectors).
pub trait SessionIo {
    /// A datagram to send to `to` (over UDP, or framed on its TCP connection) from our local
    /// address `source`.
    fn transmit(&mut self, to: Peer, source: SocketAddr, payload: &[u8]);
    /// A message for the session's inference worker; false when the ring was full (counted there).
    fn to_agent(&mut self, worker: u16, msg: UplinkMsg) -> bool;
    /// The session connected `setup` after its offer arrived.
    fn connected(&mut self, setup: Duration);
    /// A reply frame left the playout queue at `taken_at` and its datagram was just handed over.
    fn downlink_sent(&mut self, taken_at: Instant);
    /// The session of `call` ended (its admission slot can be released, its directory entry
    /// removed).
    fn session_ended(&mut self, _call: RouteTag) {}
    /// A client event was refused (counted by reason).
    fn event_rejected(&mut self, _reason: EventRejected) {}
    /// Speech over a playing reply: it interrupted, or was rejected (too short, or echo).
    fn barge_in(&mut self, _outcome: BargeInOutcome) {}
    /// A reply frame went out `late_by` after its pacing tick (downlink jitter).
    fn paced(&mut self, _late_by: Duration) {}
    /// Send what has been written so far now (before slower work in the same step).
    fn flush(&mut self) {}
    /// An uplink frame was decoded, concealed, FEC-recovered or filled with silence after its
    /// packet was held `hold` by the reorder buffer.
    fn uplink_frame(&mut self, _origin: FrameOrigin, _hold: Duration) {}
    /// An uplink packet came after its frame was concealed (dropped).
    fn uplink_late(&mut self) {}
    /// A turn's latency breakdown is complete (its reply's first packet went out).
    fn turn_latency(&mut self, _latency: &TurnLatency) {}
    /// For the call recording (only sessions that record call it).
    fn record(&mut self, _call: RouteTag, _now: Instant, _event: RecordEvent<'_>) {}
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SessionStats {
    pub frames_in: u64,
    pub frames_out: u64,
    pub uplink_dropped: u64,
    pub playout_dropped: u64,
    pub turns: u64,
    pub events_rate_limited: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Decoder(#[from] super::media::decoder::DecoderError),
    #[error(transparent)]
    Encoder(#[from] super::media::encoder::EncoderError),
}

pub struct Session {
    pub tag: RouteTag,
    /// Our key on the owning shard; set by the shard when the session is inserted or adopted.
    pub key: SessionKey,
    pub worker: u16,
    rtc: Rtc,
    config: SessionConfig,
    offered_at: Instant,
    connected: bool,
    agent_started: bool,
    /// The audio m-line, and the payload type and codec the client sends (we answer in kind).
    audio: Option<(Mid, Option<(Pt, AudioCodec)>)>,
    events: Option<ChannelId>,
    pending_events: VecDeque<String>,
    writer: EventWriter,
    /// Reorder buffer + decoder; taken out while its frames are handled (see `feed_uplink`).
    uplink: Option<Box<UplinkPath>>,
    vad: VadPath,
    turn: TurnDetector,
    turn_enabled: bool,
    frame_index: u64,
    item_seq: u32,
    current_item: Option<u32>,
    encoder: DownlinkEncoder,
    playout: PlayoutQueue,
    pacer: Pacer,
    playing: Option<u32>,
    /// Frames of `playing` sent so far (the played-out position for truncation).
    played_frames: u64,
    /// Replies up to this id were interrupted; their frames still in flight are dropped.
    cancelled_upto: u32,
    rtc_deadline: Instant,
    closed: bool,
    liveness: Liveness,
    barge_in: BargeInGuard,
    /// A possible barge-in stopped the reply's audio; the queue waits (see `BargeInGuard`).
    paused: bool,
    /// The next reply frame, encoded ahead of its tick (`encode_ahead`): its response and loudness
    /// envelope; the Opus packet is in `payload`.
    ahead: Option<(u32, ReplyEnvelope)>,
    /// The Opus packet being sent or encoded ahead (reused, no allocation per frame).
    payload: Vec<u8>,
    echo: EchoGuard,
    /// The stamps of the turn in progress, for its latency breakdown.
    timeline: TurnTimeline,
    /// Audio position (ms) where the user's silence after the last reply began.
    idle_since: Option<u64>,
    event_gate: EventGate,
    end_reason: Option<EndReason>,
    /// An authenticated ICE check has arrived (setup got past ICE).
    ice_checked: bool,
    /// The first error str0m reported (why DTLS or ICE failed), for the end-of-session log.
    failure: Option<String>,
    pub stats: SessionStats,
    /// `audio.input.noise_reduction` in effect; the denoiser is made with the first frame.
    noise_reduction: Option<NoiseReduction>,
    denoiser: Option<Box<Denoiser>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("tag", &self.tag)
            .field("key", &self.key)
            .finish()
    }
}

impl Session {
    pub fn new(
        tag: RouteTag,
        rtc: Rtc,
        config: SessionConfig,
        offered_at: Instant,
        worker: u16,
    ) -> Result<Self, SessionError> {
        let mut config = config;
        let rate = config.model_rate;
        let turn = config.turn.unwrap_or_default();
        // The session's own say wins; else the node's default, shown in the session object.
        let noise_reduction = match session_object::noise_reduction(&config.app) {
            Ok(Some(v)) => v,
            _ => {
                if let Some(k) = config.noise_reduction {
                    session_object::merge(
                        &mut config.app,
                        session_object::noise_reduction_patch(Some(k)),
                    );
                }
                config.noise_reduction
            }
        };
        Ok(Session {
            noise_reduction,
            denoiser: None,
            tag,
            key: SessionKey {
                shard: tag.shard,
                slot: tag.slot,
                generation: tag.generation,
            },
            worker,
            rtc,
            offered_at,
            connected: false,
            agent_started: false,
            audio: None,
            events: None,
            pending_events: VecDeque::new(),
            writer: EventWriter::default(),
            uplink: Some(Box::new({
                let mut up = UplinkPath::new(rate)?;
                up.set_fill_grid(config.fill_grid);
                up
            })),
            vad: if config.vad.runs_on_worker() {
                VadPath::Remote(VecDeque::with_capacity(8))
            } else {
                VadPath::Inline(FrameVad::new(Box::new(EarshotVad::default()), rate))
            },
            turn: TurnDetector::new(turn),
            turn_enabled: config.turn.is_some(),
            frame_index: 0,
            item_seq: 0,
            current_item: None,
            encoder: DownlinkEncoder::new(rate, config.encoder_complexity)?,
            playout: PlayoutQueue::new(config.playout_frames),
            pacer: Pacer::new(u64::from(rand::random::<u32>())),
            playing: None,
            played_frames: 0,
            cancelled_upto: 0,
            rtc_deadline: offered_at,
            closed: false,
            liveness: Liveness::new(offered_at),
            barge_in: BargeInGuard::with_confirm(
                config.barge_in_min_ms,
                config.barge_in_confirm_ms,
            ),
            paused: false,
            ahead: None,
            payload: Vec::new(),
            echo: EchoGuard::default(),
            timeline: TurnTimeline::default(),
            idle_since: None,
            event_gate: EventGate::new(offered_at, &config.limits),
            end_reason: None,
            ice_checked: false,
            failure: None,
            stats: SessionStats::default(),
            config,
        })
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// False once the peer went away, ICE failed, or the session was closed.
    pub fn is_alive(&self) -> bool {
        !self.closed && self.rtc.is_alive()
    }

    /// The earliest time this session needs `handle_timeout`.
    pub fn deadline(&self) -> Instant {
        let d = match self.pacer.deadline() {
            Some(p) if p < self.rtc_deadline => p,
            _ => self.rtc_deadline,
        };
        let mut d = d.min(self.liveness.deadline(&self.config.limits));
        if !self.connected {
            d = d.min(self.offered_at + self.config.limits.setup_timeout);
        }
        if let Some(max) = self.config.limits.max_duration {
            d = d.min(self.offered_at + max);
        }
        match self.uplink.as_ref().and_then(|u| u.deadline()) {
            Some(u) => d.min(u),
            None => d,
        }
    }

    /// Milliseconds of session audio so far (the clock of `audio_start_ms` / `audio_end_ms`).
    fn audio_ms(&self) -> u64 {
        self.frame_index * super::media::frame::FRAME_MS
    }

    /// The peer passed an authenticated STUN check (ICE consent, RFC 7675).
    pub fn on_consent(&mut self, now: Instant) {
        self.ice_checked = true;
        self.liveness.on_consent(now);
    }

    /// Why the session ended (once it has).
    pub fn end_reason(&self) -> EndReason {
        match self.end_reason {
            Some(r) => r,
            None if self.closed => EndReason::Hangup,
            None if !self.connected => EndReason::setup_failure(self.ice_checked),
            None => EndReason::PeerGone,
        }
    }

    /// The first error str0m reported for this session, if any.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    fn note_failure(&mut self, e: &str) {
        if self.failure.is_none() {
            self.failure = Some(e.to_string());
        }
    }

    /// Feeds one datagram from `from` addressed to `destination` (our advertised address for that
    /// transport).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: Peer,
        destination: SocketAddr,
        payload: &[u8],
        io: &mut dyn SessionIo,
    ) -> Result<(), str0m::RtcError> {
        let r = match Receive::new(from.proto, from.addr, destination, payload) {
            Ok(r) => r,
            Err(e) => return Err(str0m::RtcError::Net(e)),
        };
        self.liveness.on_datagram(now);
        if let Err(e) = self.rtc.handle_input(Input::Receive(now, r)) {
            self.note_failure(&e.to_string());
            return Err(e);
        }
        self.drive(now, io);
        Ok(())
    }

    /// Handles whatever is due at `now`: str0m timers and the downlink pacer.
    pub fn handle_timeout(&mut self, now: Instant, io: &mut dyn SessionIo) {
        if let Some(max) = self.config.limits.max_duration {
            if now >= self.offered_at + max && !self.closed {
                let e = self.writer.error(
                    "invalid_request_error",
                    "session_expired",
                    &format!(
                        "the session reached its maximum duration of {} s (--max-session-s)",
                        max.as_secs()
                    ),
                );
                self.send_event(e);
                self.drive(now, io);
                self.end_reason = Some(EndReason::MaxDuration);
                self.close(io);
                return;
            }
        }
        let setup_over = now >= self.offered_at + self.config.limits.setup_timeout;
        let expired = self.liveness.expired(now, &self.config.limits);
        if expired.is_some() || (!self.connected && setup_over) {
            let reason = match expired {
                Some(r) if self.connected => r,
                _ => EndReason::setup_failure(self.ice_checked),
            };
            tracing::debug!(call = %self.tag, reason = reason.label(), "session expired");
            self.end_reason = Some(reason);
            self.close(io);
            return;
        }
        if self.rtc_deadline <= now {
            if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                tracing::debug!(call = %self.tag, "timeout input: {e}");
                self.note_failure(&e.to_string());
            }
        }
        self.drive(now, io);
        self.feed_uplink(now, None, io);
        self.pace(now, io);
    }

    /// A message from the agent for this session.
    pub fn handle_downlink(&mut self, now: Instant, msg: DownlinkMsg, io: &mut dyn SessionIo) {
        match msg {
            DownlinkMsg::Audio { response, .. } | DownlinkMsg::ResponseDone { response, .. }
                if response <= self.cancelled_upto => {}
            DownlinkMsg::Audio {
                response, frame, ..
            } => {
                self.timeline.reply_frame(now, response);
                self.playout.push(PlayoutItem::Frame { response, frame });
                self.stats.playout_dropped = self.playout.dropped;
                if !self.paused {
                    self.pacer.wake(now);
                }
            }
            DownlinkMsg::ResponseDone { response, .. } => {
                self.playout.push(PlayoutItem::End { response });
                if !self.paused {
                    self.pacer.wake(now);
                }
            }
            DownlinkMsg::Clear { .. } => {
                self.playout.clear();
                self.ahead = None;
                if let Some(r) = self.playing.take() {
                    let ev = self.writer.output_cleared(&response_id(r));
                    self.send_event(ev);
                }
                self.pacer.idle();
                self.paused = false;
            }
            DownlinkMsg::Event { json, .. } => self.send_event(json.into()),
            DownlinkMsg::Vad {
                index, probability, ..
            } => self.on_vad(now, index, probability, io),
        }
        self.drive(now, io);
    }

    /// Tells the client the server is going away (before `close` at shutdown).
    pub fn notify_shutdown(&mut self, now: Instant, io: &mut dyn SessionIo) {
        let e = self.writer.error(
            "server_error",
            "server_shutdown",
            "the server is shutting down; reconnect to continue",
        );
        self.send_event(e);
        self.drive(now, io);
    }

    /// Ends the session (hangup): closes the peer connection and tells the agent.
    pub fn close(&mut self, io: &mut dyn SessionIo) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.rtc.disconnect();
        if self.config.record.is_some() && self.connected {
            // A close carries no time of its own: the recorder only ends the files.
            io.record(self.tag, self.offered_at, RecordEvent::Close);
        }
        if self.agent_started {
            io.to_agent(self.worker, UplinkMsg::End { key: self.key });
        }
    }

    fn drive(&mut self, now: Instant, io: &mut dyn SessionIo) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.rtc_deadline = t.min(now + IDLE_POLL);
                    break;
                }
                Ok(Output::Transmit(t)) => io.transmit(
                    Peer {
                        addr: t.destination,
                        proto: t.proto,
                    },
                    t.source,
                    &t.contents,
                ),
                Ok(Output::Event(e)) => self.on_event(now, e, io),
                Err(e) => {
                    tracing::debug!(call = %self.tag, "rtc error: {e}");
                    self.note_failure(&e.to_string());
                    self.rtc_deadline = now + IDLE_POLL;
                    break;
                }
            }
        }
        self.note_events_sent(now);
    }

    fn on_event(&mut self, now: Instant, e: Event, io: &mut dyn SessionIo) {
        match e {
            Event::Connected => {
                self.connected = true;
                io.connected(now.saturating_duration_since(self.offered_at));
                if let Some(format) = self.config.record {
                    io.record(self.tag, now, RecordEvent::Open { format });
                }
                let msg = UplinkMsg::Start {
                    key: self.key,
                    tag: self.tag,
                    rate_hz: self.config.model_rate.hz(),
                };
                self.agent_started = io.to_agent(self.worker, msg);
                if !self.config.app.is_empty() {
                    let app = self.config.app.clone();
                    self.forward_app_session(&app, io);
                }
                self.open_manual_buffer(io);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.end_reason = Some(if self.connected {
                    EndReason::IceDisconnected
                } else {
                    EndReason::setup_failure(self.ice_checked)
                });
                self.close(io);
            }
            Event::MediaAdded(m) if m.kind == MediaKind::Audio => {
                self.audio = Some((m.mid, None));
            }
            Event::MediaData(d) => {
                let Some(codec) = AudioCodec::from_str0m(d.params.spec().codec) else {
                    return;
                };
                if let Some((mid, sending)) = &mut self.audio {
                    if *mid == d.mid && sending.is_none_or(|(pt, _)| pt != d.pt) {
                        *sending = Some((d.pt, codec));
                        self.encoder.set_codec(codec);
                        if let Some(up) = self.uplink.as_mut() {
                            up.set_codec(codec);
                        }
                    }
                }
                let seq = **d.seq_range.start();
                let ts = codec.to_48k(d.time.numer());
                self.record_packet(now, Direction::Received, ts, codec, &d.data, io);
                self.feed_uplink(now, Some((seq, ts, &d.data)), io);
            }
            Event::ChannelOpen(id, label) if label == EVENTS_CHANNEL => {
                self.events = Some(id);
                let turn = self.turn_enabled.then(|| self.turn.settings());
                let ev = self.writer.session_created(
                    &self.tag.call_id(),
                    turn,
                    self.config.model_rate.hz(),
                    &self.config.app,
                );
                self.pending_events.push_front(ev);
                self.flush_events();
            }
            Event::ChannelData(d) if Some(d.id) == self.events => {
                self.on_client_event(now, &d.data, io)
            }
            Event::ChannelClose(id) if Some(id) == self.events => self.events = None,
            _ => {}
        }
    }

    /// Runs one packet (or, with `None`, an expired gap wait) through the reorder buffer and
    /// decoder, and each frame that comes out through the rest of the uplink.
    fn feed_uplink(
        &mut self,
        now: Instant,
        packet: Option<(u64, u64, &[u8])>,
        io: &mut dyn SessionIo,
    ) {
        let Some(mut up) = self.uplink.take() else {
            return;
        };
        let mut on = |f: &PcmFrame, origin: FrameOrigin, arrived: Instant| {
            io.uplink_frame(origin, now.saturating_duration_since(arrived));
            self.on_frame(f, arrived, now, io);
        };
        match packet {
            Some((seq, ts, payload)) => {
                if !up.on_packet(now, seq, ts, payload, &mut on) {
                    io.uplink_late();
                }
            }
            None => up.poll(now, &mut on),
        }
        self.uplink = Some(up);
    }

    /// Uplink repair figures of this session (concealed, FEC-recovered, late, hold times).
    pub fn uplink_stats(&self) -> UplinkStats {
        self.uplink.as_ref().map(|u| u.stats()).unwrap_or_default()
    }

    fn on_frame(
        &mut self,
        frame: &PcmFrame,
        received_at: Instant,
        now: Instant,
        io: &mut dyn SessionIo,
    ) {
        // Noise suppression first: the VAD, the turn detector, the echo guard and the model all
        // hear the cleaned frame. Digital silence (DTX fills) has nothing to clean.
        let cleaned;
        let frame = match self.noise_reduction {
            Some(_) if frame.samples().iter().any(|&s| s != 0) => {
                let rate = self.config.model_rate.hz();
                let d = self
                    .denoiser
                    .get_or_insert_with(|| Box::new(Denoiser::new(rate)));
                let mut f = *frame;
                d.process(&mut f);
                cleaned = f;
                &cleaned
            }
            _ => frame,
        };
        let index = self.frame_index;
        self.frame_index += 1;
        self.stats.frames_in += 1;
        self.echo.on_uplink_frame(frame.samples());
        let echo = self.echo.is_echo();
        let loud_at = (frame.level_dbfs() >= SPEECH_FLOOR_DBFS).then_some(received_at);
        if self.turn_enabled {
            self.turn
                .observe(index, frame.samples(), self.config.model_rate.hz());
        }
        let mut sent = false;
        if self.agent_started {
            let msg = UplinkMsg::Audio {
                key: self.key,
                index,
                frame: *frame,
                received_at,
            };
            sent = io.to_agent(self.worker, msg);
            if !sent {
                self.stats.uplink_dropped += 1;
            }
        }
        match &mut self.vad {
            VadPath::Inline(v) => {
                // Inserted silence (DTX) goes through the VAD too: its state must see the pause,
                // or the next real frame is judged on the speech before it.
                let p = v.frame_probability(frame);
                self.decide(now, index, p, echo, loud_at, io);
            }
            VadPath::Remote(q) => {
                // A frame the worker never got has no answer coming: it counts as silence.
                q.push_back(PendingVad {
                    index,
                    echo,
                    loud_at,
                    probability: (!sent).then_some(0.0),
                });
                self.drain_vad(now, io);
            }
        }
    }

    /// The worker's VAD answered for frame `index` (`--vad silero`).
    fn on_vad(&mut self, now: Instant, index: u64, probability: f32, io: &mut dyn SessionIo) {
        if let VadPath::Remote(q) = &mut self.vad {
            if let Some(f) = q.iter_mut().find(|f| f.index == index) {
                f.probability = Some(probability);
            }
        }
        self.drain_vad(now, io);
    }

    /// Decides the frames whose probability is known, in order. A worker that falls more than
    /// `MAX_PENDING_VAD` frames behind has its oldest frames taken as silence.
    fn drain_vad(&mut self, now: Instant, io: &mut dyn SessionIo) {
        loop {
            let VadPath::Remote(q) = &mut self.vad else {
                return;
            };
            let overdue = q.len() > MAX_PENDING_VAD;
            let Some(front) = q.front().copied() else {
                return;
            };
            let p = match (front.probability, overdue) {
                (Some(p), _) => p,
                (None, true) => 0.0,
                (None, false) => return,
            };
            q.pop_front();
            self.decide(now, front.index, p, front.echo, front.loud_at, io);
        }
    }

    /// Turn detection and barge-in for frame `index` with voice probability `p`; `loud_at`: when
    /// its packet arrived, if it carried speech energy.
    fn decide(
        &mut self,
        now: Instant,
        index: u64,
        p: f32,
        echo: bool,
        loud_at: Option<Instant>,
        io: &mut dyn SessionIo,
    ) {
        // The VAD's hangover calls a few frames of silence after speech voiced: the latency
        // breakdown anchors on the last frame that is both voiced and loud.
        if let (true, Some(t)) = (p >= self.turn.settings().threshold, loud_at) {
            self.timeline.voiced(t);
        }
        let event = if self.turn_enabled {
            self.turn.push(index, p)
        } else {
            None
        };
        // Barge-in applies only while a reply plays and the session allows interrupting it.
        let settings = self.turn.settings();
        let talking = settings.interrupt_response
            && (self.playing.is_some() || self.ahead.is_some() || !self.playout.is_empty());
        let voiced = p >= settings.threshold;
        match self.barge_in.on_frame(voiced, echo, talking) {
            Some(Release::BargeIn(start)) => {
                io.barge_in(BargeInOutcome::Interrupted);
                self.interrupt(io);
                self.on_turn_event(now, start, io);
            }
            Some(Release::Plain(start)) => self.on_turn_event(now, start, io),
            Some(Release::Echo) => {
                io.barge_in(BargeInOutcome::Echo);
                self.turn.reset();
            }
            Some(Release::Pause) => {
                // The audio stops now; the queue waits for confirmation (or a resume).
                self.paused = true;
                self.pacer.idle();
            }
            Some(Release::Resume) => self.resume(now, io),
            None => {}
        }
        if let Some(ev) = event {
            match self.barge_in.on_turn(ev, talking) {
                Gate::Pass(ev) => {
                    // Without a guard (--barge-in-min-ms 0) speech interrupts at once.
                    if talking && matches!(ev, TurnEvent::SpeechStarted { .. }) {
                        io.barge_in(BargeInOutcome::Interrupted);
                        self.interrupt(io);
                    }
                    self.on_turn_event(now, ev, io);
                }
                Gate::Hold => {}
                Gate::Resume => self.resume(now, io),
                Gate::Rejected { echo } => {
                    let outcome = if echo {
                        BargeInOutcome::Echo
                    } else {
                        BargeInOutcome::Rejected
                    };
                    io.barge_in(outcome);
                    self.turn.reset();
                }
            }
        }
        self.check_idle_timeout(io);
    }

    fn on_turn_event(&mut self, now: Instant, ev: TurnEvent, io: &mut dyn SessionIo) {
        let rule = self.turn.end_rule();
        self.on_turn_event_by(now, ev, rule, io);
    }

    /// A turn event; a turn that stops was ended by `rule`.
    fn on_turn_event_by(
        &mut self,
        now: Instant,
        ev: TurnEvent,
        rule: EndRule,
        io: &mut dyn SessionIo,
    ) {
        match ev {
            TurnEvent::SpeechStarted { audio_start_ms } => {
                self.timeline.speech_started();
                self.idle_since = None;
                self.item_seq += 1;
                self.current_item = Some(self.item_seq);
                let e = self
                    .writer
                    .speech_started(audio_start_ms, &item_id(self.item_seq));
                self.send_event(e);
            }
            TurnEvent::SpeechStopped { audio_end_ms } => {
                let item = self.current_item.take().unwrap_or(self.item_seq);
                self.timeline.decided(now, rule);
                let e = self.writer.speech_stopped(audio_end_ms, &item_id(item));
                self.send_event(e);
                self.note_events_sent(now);
                let prev = (item > 1).then(|| item_id(item - 1));
                let e = self.writer.committed(&item_id(item), prev.as_deref());
                self.send_event(e);
                self.stats.turns += 1;
            }
        }
        if self.agent_started {
            let respond = self.turn.settings().create_response;
            self.send_turn(ev, respond, io);
        }
    }

    /// With turn detection off the client commits turns itself, so the input buffer is always
    /// open: the agent is told a turn starts now (at start, after each commit or clear).
    fn open_manual_buffer(&mut self, io: &mut dyn SessionIo) {
        if !self.turn_enabled {
            let now_ms = self.audio_ms();
            self.send_turn(
                TurnEvent::SpeechStarted {
                    audio_start_ms: now_ms,
                },
                false,
                io,
            );
        }
    }

    fn send_turn(&mut self, event: TurnEvent, respond: bool, io: &mut dyn SessionIo) {
        if self.agent_started {
            let msg = UplinkMsg::Turn {
                key: self.key,
                event,
                respond,
            };
            io.to_agent(self.worker, msg);
        }
    }

    /// `idle_timeout_ms` after a reply finished without the user speaking: an empty turn ends,
    /// the client hears `input_audio_buffer.timeout_triggered`, and the agent is asked to reply.
    fn check_idle_timeout(&mut self, io: &mut dyn SessionIo) {
        let (Some(since), Some(limit)) = (self.idle_since, self.turn.settings().idle_timeout_ms)
        else {
            return;
        };
        if !self.turn_enabled || self.turn.is_speaking() || self.barge_in.is_holding() {
            self.idle_since = None;
            return;
        }
        let now_ms = self.audio_ms();
        if now_ms.saturating_sub(since) < u64::from(limit) {
            return;
        }
        self.idle_since = None;
        self.item_seq += 1;
        let item = item_id(self.item_seq);
        let e = self.writer.timeout_triggered(since, now_ms, &item);
        self.send_event(e);
        let prev = (self.item_seq > 1).then(|| item_id(self.item_seq - 1));
        let e = self.writer.committed(&item, prev.as_deref());
        self.send_event(e);
        self.send_turn(
            TurnEvent::SpeechStopped {
                audio_end_ms: now_ms,
            },
            true,
            io,
        );
    }

    /// Hands the app's session fields to the agent as a `session.update` (a bridge passes them to
    /// its backend model; Tern's own fields were taken out by `session_object::app_fields`).
    fn forward_app_session(
        &mut self,
        app: &serde_json::Map<String, serde_json::Value>,
        io: &mut dyn SessionIo,
    ) {
        if !self.agent_started {
            return;
        }
        let json = serde_json::json!({ "type": "session.update", "session": app }).to_string();
        io.to_agent(
            self.worker,
            UplinkMsg::ClientEvent {
                key: self.key,
                json: json.into(),
            },
        );
    }

    fn on_client_event(&mut self, now: Instant, data: &[u8], io: &mut dyn SessionIo) {
        if self.config.fault_injection && data == br#"{"type":"tern.test.panic"}"# {
            panic!("injected fault in session {}", self.tag);
        }
        if let Err(r) = self.event_gate.admit(now, data.len(), &self.config.limits) {
            io.event_rejected(r);
            let msg = match r {
                EventRejected::TooLarge => format!(
                    "event of {} bytes is over the {} byte limit",
                    data.len(),
                    self.config.limits.max_event_bytes
                ),
                EventRejected::RateLimited => format!(
                    "more than {} events per second",
                    self.config.limits.events_per_sec
                ),
            };
            let code = match r {
                EventRejected::TooLarge => "event_too_large",
                EventRejected::RateLimited => "rate_limit_exceeded",
            };
            // Rate-limit errors are themselves limited: the first and every 50th.
            let tell = match r {
                EventRejected::TooLarge => true,
                EventRejected::RateLimited => {
                    self.stats.events_rate_limited += 1;
                    self.stats.events_rate_limited % 50 == 1
                }
            };
            if tell {
                let e = self.writer.error("invalid_request_error", code, &msg);
                self.send_event(e);
            }
            return;
        }
        let base = self.turn.settings();
        match ClientEvent::parse(data, base) {
            Ok(ClientEvent::SessionUpdate {
                turn_detection,
                app,
            }) => {
                if let Some(td) = turn_detection {
                    let was = self.turn_enabled;
                    self.turn_enabled = td.is_some();
                    if let Some(s) = td {
                        self.turn.set_settings(s);
                    }
                    self.turn.reset();
                    if was && !self.turn_enabled {
                        self.open_manual_buffer(io);
                    }
                }
                if let Ok(Some(nr)) = session_object::noise_reduction(&app) {
                    self.noise_reduction = nr;
                    if nr.is_none() {
                        self.denoiser = None;
                    }
                }
                let turn = self.turn_enabled.then(|| self.turn.settings());
                if !app.is_empty() {
                    self.forward_app_session(&app, io);
                    session_object::merge(&mut self.config.app, app);
                }
                let e = self.writer.session_updated(
                    &self.tag.call_id(),
                    turn,
                    self.config.model_rate.hz(),
                    &self.config.app,
                );
                self.send_event(e);
            }
            Ok(ClientEvent::Commit) => {
                let end = self.audio_ms();
                if self.current_item.is_none() {
                    self.item_seq += 1;
                    self.current_item = Some(self.item_seq);
                }
                self.turn.reset();
                self.on_turn_event_by(
                    now,
                    TurnEvent::SpeechStopped { audio_end_ms: end },
                    EndRule::ClientCommit,
                    io,
                );
                self.open_manual_buffer(io);
            }
            Ok(ClientEvent::Clear) => {
                self.turn.reset();
                self.current_item = None;
                let e = self.writer.event_simple("input_audio_buffer.cleared");
                self.send_event(e);
                // The agent drops what it collected: its turn starts again here.
                self.open_manual_buffer(io);
            }
            Ok(ClientEvent::ResponseCancel) | Ok(ClientEvent::OutputClear) => self.interrupt(io),
            Ok(ClientEvent::Other { .. }) => {
                if self.agent_started {
                    if let Ok(s) = std::str::from_utf8(data) {
                        io.to_agent(
                            self.worker,
                            UplinkMsg::ClientEvent {
                                key: self.key,
                                json: s.into(),
                            },
                        );
                    }
                }
            }
            Err(e) => {
                let ev =
                    self.writer
                        .error("invalid_request_error", "invalid_event", &e.to_string());
                self.send_event(ev);
            }
        }
    }

    fn pace(&mut self, now: Instant, io: &mut dyn SessionIo) {
        if !self.pacer.is_due(now) {
            return;
        }
        if let Some((response, envelope)) = self.ahead.take() {
            self.start_response(now, response, io);
            let send = self.pacer.on_send(now);
            if let Some(late) = send.late_by {
                io.paced(late);
            }
            self.echo.on_reply_envelope(envelope);
            self.write_payload(now, send.rtp_time, send.marker, io);
            self.drive(now, io);
            io.downlink_sent(now);
            self.played_frames += 1;
            self.stats.frames_out += 1;
            return;
        }
        loop {
            match self.playout.pop() {
                Some(PlayoutItem::End { response }) => {
                    if self.playing == Some(response) {
                        self.playing = None;
                        let e = self.writer.output_stopped(&response_id(response));
                        self.send_event(e);
                        self.idle_since = Some(self.audio_ms());
                    }
                }
                Some(PlayoutItem::Frame { response, frame }) => {
                    self.start_response(now, response, io);
                    let send = self.pacer.on_send(now);
                    if let Some(late) = send.late_by {
                        io.paced(late);
                    }
                    self.write_frame(now, &frame, send.rtp_time, send.marker, io);
                    self.drive(now, io);
                    io.downlink_sent(now);
                    self.played_frames += 1;
                    self.stats.frames_out += 1;
                    return;
                }
                None => {
                    self.pacer.idle();
                    self.drive(now, io);
                    return;
                }
            }
        }
    }

    /// The first frame of `response` goes out: `output_audio_buffer.started`, then the turn's
    /// latency breakdown when this reply answers a turn.
    fn start_response(&mut self, now: Instant, response: u32, io: &mut dyn SessionIo) {
        if self.playing != Some(response) {
            self.playing = Some(response);
            self.played_frames = 0;
            let e = self.writer.output_started(&response_id(response));
            self.send_event(e);
            if let Some(l) = self.timeline.reply_sent(now, response) {
                io.turn_latency(&l);
                let e =
                    self.writer
                        .turn_latency(&l, &item_id(self.item_seq), &response_id(response));
                self.send_event(e);
            }
        }
    }

    /// Stamps `speech_stopped` as handed to the data channel once nothing waits before it.
    fn note_events_sent(&mut self, now: Instant) {
        if self.events.is_some()
            && self.pending_events.is_empty()
            && self.timeline.awaits_stopped_sent()
        {
            self.timeline.stopped_sent(now);
        }
    }

    /// Encodes the next queued reply frame now, so that its tick only has to send it. The shard
    /// calls this after it has sent every frame due in a step: a step with many sessions due then
    /// sends all of them before it spends time encoding.
    pub fn encode_ahead(&mut self) {
        if self.ahead.is_some() || self.paused || !self.connected || self.playing.is_none() {
            return;
        }
        let Some((response, frame)) = self.playout.pop_frame() else {
            return;
        };
        let Ok(packet) = self.encoder.encode(&frame) else {
            return;
        };
        self.payload.clear();
        self.payload.extend_from_slice(packet);
        self.ahead = Some((response, EchoGuard::reply_envelope(frame.samples())));
    }

    fn write_frame(
        &mut self,
        now: Instant,
        frame: &PcmFrame,
        rtp_time: u64,
        marker: bool,
        io: &mut dyn SessionIo,
    ) {
        if !self.connected {
            return;
        }
        let Ok(packet) = self.encoder.encode(frame) else {
            return;
        };
        self.payload.clear();
        self.payload.extend_from_slice(packet);
        self.echo.on_reply_frame(frame.samples());
        self.write_payload(now, rtp_time, marker, io);
    }

    /// Hands the packet in `payload` to str0m.
    fn write_payload(&mut self, now: Instant, rtp_time: u64, marker: bool, io: &mut dyn SessionIo) {
        let Some((mid, Some((pt, codec)))) = self.audio else {
            return;
        };
        if !self.connected {
            return;
        }
        let Some(w) = self.rtc.writer(mid) else {
            return;
        };
        let t = MediaTime::new(codec.from_48k(rtp_time), codec.rtp_frequency());
        if let Err(e) = w
            .start_of_talkspurt(marker)
            .write(pt, now, t, &self.payload[..])
        {
            tracing::debug!(call = %self.tag, "write: {e}");
        } else {
            self.record_packet(now, Direction::Sent, rtp_time, codec, &self.payload, io);
        }
        // Writes are packetized on the next timeout.
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            tracing::debug!(call = %self.tag, "packetize: {e}");
        }
    }

    /// Hands a packet as received or sent to the recording, if this call records.
    fn record_packet(
        &self,
        now: Instant,
        dir: Direction,
        rtp48: u64,
        codec: AudioCodec,
        payload: &[u8],
        io: &mut dyn SessionIo,
    ) {
        if self.config.record.is_some() {
            let ev = RecordEvent::Packet {
                dir,
                rtp48,
                codec,
                payload,
            };
            io.record(self.tag, now, ev);
        }
    }

    /// A backchannel paused the reply: drop its turn and play on from where it paused.
    fn resume(&mut self, now: Instant, io: &mut dyn SessionIo) {
        io.barge_in(BargeInOutcome::Resumed);
        self.turn.reset();
        self.paused = false;
        self.pacer.wake(now);
    }

    /// Stops the reply now: flushes the playout queue, tells the client (`output_audio_buffer.cleared`)
    /// and the agent (`Cancel` with the played-out position).
    fn interrupt(&mut self, io: &mut dyn SessionIo) {
        let played_ms = if self.playing.is_some() {
            self.played_frames * super::media::frame::FRAME_MS
        } else {
            0
        };
        let response = self
            .playing
            .take()
            .or(self.ahead.map(|a| a.0))
            .or(self.playout.front_response());
        self.playout.clear();
        self.ahead = None;
        self.pacer.idle();
        self.paused = false;
        if let Some(r) = response {
            self.cancelled_upto = self.cancelled_upto.max(r);
            let ev = self.writer.output_cleared(&response_id(r));
            self.send_event(ev);
        }
        if self.agent_started {
            let msg = UplinkMsg::Cancel {
                key: self.key,
                response,
                played_ms,
            };
            io.to_agent(self.worker, msg);
        }
    }

    fn send_event(&mut self, json: String) {
        if self.pending_events.len() >= MAX_PENDING_EVENTS {
            self.pending_events.pop_front();
        }
        self.pending_events.push_back(json);
        self.flush_events();
    }

    fn flush_events(&mut self) {
        let Some(id) = self.events else {
            return;
        };
        while let Some(ev) = self.pending_events.pop_front() {
            let Some(mut ch) = self.rtc.channel(id) else {
                self.pending_events.push_front(ev);
                return;
            };
            match ch.write(false, ev.as_bytes()) {
                Ok(true) => {}
                _ => {
                    self.pending_events.push_front(ev);
                    return;
                }
            }
        }
    }
}

fn item_id(n: u32) -> String {
    format!("item_{n:06}")
}

fn response_id(n: u32) -> String {
    format!("resp_{n:06}")
}
