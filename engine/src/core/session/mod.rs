//! One voice session: str0m's `Rtc` plus the media pipeline around it, sans-IO.
//!
//! Inputs are datagrams, timeouts and reply messages from the agent, each with `now`; outputs go to
//! the shard core's `Outputs` queue (datagrams to send, messages for the agent, measurements),
//! which the shell pulls, and the next deadline is returned. The files are the stages a packet walks through:
//! - `rtc_events`: driving str0m (its outputs, connection and channel events);
//! - `uplink`: Opus RTP -> `UplinkPath` (reorder, decode, concealment) -> noise suppression ->
//!   VAD (inline, or answered by the worker) -> one `VoiceFrame` per frame;
//! - `conversation`: turns, barge-in, items and the idle timeout, with no `Rtc` (unit-tested);
//! - `client_events`: what the client says on the events channel;
//! - `downlink`: agent frames -> `PlayoutQueue` -> `Pacer` (20 ms) -> Opus -> str0m, one send path;
//! - `events_channel`: the server events' queue on the data channel.

mod client_events;
pub mod conversation;
mod downlink;
mod events_channel;
mod rtc_events;
mod uplink;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::media::{Mid, Pt};
use str0m::net::Receive;
use str0m::{Input, Rtc};

use super::admission::Permit;
use super::events::EventWriter;
use super::media::codec::AudioCodec;
use super::media::denoise::{Denoiser, NoiseReduction};
use super::media::encoder::DownlinkEncoder;
use super::media::frame::ModelRate;
use super::media::playout::{Pacer, PlayoutItem, PlayoutQueue};
use super::media::uplink::UplinkPath;
use super::output::{Outputs, ShardEvent};
use super::peer_addr::Peer;
use super::recording::{RecordEvent, RecordFormat};
use super::ring_msg::{DownlinkMsg, UplinkMsg};
use super::session_id::SessionId;
use super::session_id::SessionKey;
use super::session_limits::{EndReason, EventGate, Liveness, SessionLimits};
use super::session_object;
use super::turn::barge_in::BargeInGuard;
use super::turn::detector::ServerVadSettings;
use super::turn::echo_guard::{EchoGuard, ReplyEnvelope};
use super::turn::turn_model::{TurnAnswer, TurnModel, Unanswered};
use super::turn::vad::VadBackend;
use crate::heap::in_dependency;

use conversation::Conversation;
use events_channel::EventsChannel;
pub use events_channel::EVENTS_CHANNEL;
use uplink::VadPath;

/// If str0m asks for nothing sooner, look at the session again after this long.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Per-session settings, from CLI defaults.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub model_rate: ModelRate,
    /// `None`: turn detection off (the client commits turns itself).
    pub turn: Option<ServerVadSettings>,
    /// `--turn-model`: what chooses `semantic_vad`'s waits, whatever turn detection a session
    /// starts with or switches to.
    pub turn_model: TurnModel,
    pub encoder_complexity: u8,
    /// Opus complexity for reply frames with no sound above -54 dBFS (`encoder::QUIET_PEAK`).
    pub encoder_quiet_complexity: u8,
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
            turn_model: TurnModel::SmartTurn,
            encoder_complexity: 5,
            encoder_quiet_complexity: 2,
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

#[derive(Debug, Default, Clone, Copy)]
pub struct SessionStats {
    pub frames_in: u64,
    pub frames_out: u64,
    pub uplink_dropped: u64,
    pub playout_dropped: u64,
    pub turns: u64,
    pub events_rate_limited: u64,
}

/// How many sessions hold each part of the media state that is made only once audio flows (the
/// uplink path and its decoder, the voice detector, the echo guard, the encoder): an idle
/// session holds none of them (`ShardCore::media_held`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaHeld {
    pub uplink_paths: usize,
    pub decoders: usize,
    pub voice_detectors: usize,
    pub echo_guards: usize,
    pub encoders: usize,
}

impl MediaHeld {
    fn add(&mut self, o: MediaHeld) {
        self.uplink_paths += o.uplink_paths;
        self.decoders += o.decoders;
        self.voice_detectors += o.voice_detectors;
        self.echo_guards += o.echo_guards;
        self.encoders += o.encoders;
    }

    /// The sum over `sessions`.
    pub fn total<'a>(sessions: impl Iterator<Item = &'a Session>) -> MediaHeld {
        let mut t = MediaHeld::default();
        for s in sessions {
            t.add(s.media_held());
        }
        t
    }
}

pub struct Session {
    pub tag: SessionId,
    /// Our key on the owning shard; set by the shard when the session is inserted or adopted.
    pub key: SessionKey,
    pub worker: u16,
    rtc: Rtc,
    /// Our ICE password: binding requests are checked against it before str0m sees them.
    ice_pass: String,
    config: SessionConfig,
    offered_at: Instant,
    connected: bool,
    agent_started: bool,
    /// The audio m-line, and the payload type and codec the client sends (we answer in kind).
    audio: Option<(Mid, Option<(Pt, AudioCodec)>)>,
    events: EventsChannel,
    writer: EventWriter,
    /// Reorder buffer + decoder; taken out while its frames are handled (see `feed_uplink`).
    uplink: Option<Box<UplinkPath>>,
    vad: VadPath,
    frame_index: u64,
    /// `audio.input.noise_reduction` in effect; the denoiser is made with the first frame.
    noise_reduction: Option<NoiseReduction>,
    denoiser: Option<Box<Denoiser>>,
    /// Made with the first uplink or reply frame (an idle session holds none).
    echo: Option<Box<EchoGuard>>,
    conversation: Conversation,
    encoder: DownlinkEncoder,
    playout: PlayoutQueue,
    pacer: Pacer,
    playing: Option<u32>,
    /// Frames of `playing` sent so far (the played-out position for truncation).
    played_frames: u64,
    /// Replies up to this id were interrupted; their frames still in flight are dropped.
    cancelled_upto: u32,
    /// A possible barge-in stopped the reply's audio; the queue waits (see `BargeInGuard`).
    paused: bool,
    /// The next reply frame, encoded ahead of its tick (`encode_ahead`): its response and loudness
    /// envelope; the Opus packet is in `payload`.
    ahead: Option<(u32, ReplyEnvelope)>,
    /// The Opus packet being sent or encoded ahead (reused, no allocation per frame).
    payload: Vec<u8>,
    rtc_deadline: Instant,
    closed: bool,
    liveness: Liveness,
    event_gate: EventGate,
    end_reason: Option<EndReason>,
    /// An authenticated ICE check has arrived (setup got past ICE).
    ice_checked: bool,
    /// The first error str0m reported (why DTLS or ICE failed), for the end-of-session log.
    failure: Option<String>,
    pub stats: SessionStats,
    /// This session's place under `--max-sessions`, given back when the session is dropped,
    /// however it ended.
    _permit: Permit,
}

impl Session {
    /// The lazily made media parts this session holds (each 0 or 1).
    pub fn media_held(&self) -> MediaHeld {
        MediaHeld {
            uplink_paths: usize::from(self.uplink.is_some()),
            decoders: usize::from(self.uplink.as_ref().is_some_and(|u| u.holds_codec())),
            voice_detectors: usize::from(matches!(self.vad, VadPath::Inline(Some(_)))),
            echo_guards: usize::from(self.echo.is_some()),
            encoders: usize::from(self.encoder.holds_codec()),
        }
    }
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
        tag: SessionId,
        mut rtc: Rtc,
        config: SessionConfig,
        offered_at: Instant,
        worker: u16,
        permit: Permit,
    ) -> Self {
        let mut config = config;
        let rate = config.model_rate;
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
        let barge_in =
            BargeInGuard::with_confirm(config.barge_in_min_ms, config.barge_in_confirm_ms);
        let ice_pass = rtc.direct_api().local_ice_credentials().pass;
        Session {
            tag,
            ice_pass,
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
            events: EventsChannel::default(),
            writer: EventWriter::default(),
            // Made with the first audio packet (`rtc_events`): an idle session holds none.
            uplink: None,
            vad: if config.vad.runs_on_worker() {
                VadPath::remote()
            } else {
                VadPath::Inline(None)
            },
            frame_index: 0,
            noise_reduction,
            denoiser: None,
            echo: None,
            conversation: Conversation::new(config.turn, config.turn_model, barge_in),
            encoder: DownlinkEncoder::new(
                rate,
                config.encoder_complexity,
                config.encoder_quiet_complexity,
            ),
            playout: PlayoutQueue::new(config.playout_frames),
            // The first RTP timestamp must be unpredictable (RFC 3550): the tag's secret is.
            pacer: Pacer::new(tag.secret & u64::from(u32::MAX)),
            playing: None,
            played_frames: 0,
            cancelled_upto: 0,
            paused: false,
            ahead: None,
            payload: Vec::new(),
            rtc_deadline: offered_at,
            closed: false,
            liveness: Liveness::new(offered_at),
            event_gate: EventGate::new(offered_at, &config.limits),
            end_reason: None,
            ice_checked: false,
            failure: None,
            stats: SessionStats::default(),
            _permit: permit,
            config,
        }
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
        out: &mut Outputs,
    ) -> Result<(), str0m::RtcError> {
        let parsed = in_dependency(|| Receive::new(from.proto, from.addr, destination, payload));
        let r = match parsed {
            Ok(r) => r,
            Err(e) => return Err(str0m::RtcError::Net(e)),
        };
        self.liveness.on_datagram(now);
        let rtc = &mut self.rtc;
        if let Err(e) = in_dependency(|| rtc.handle_input(Input::Receive(now, r))) {
            self.note_failure(&e.to_string());
            return Err(e);
        }
        self.drive(now, out);
        Ok(())
    }

    /// Handles whatever is due at `now`: limits, str0m timers, uplink gaps and the downlink pacer.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Outputs) {
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
                self.drive(now, out);
                self.end_reason = Some(EndReason::MaxDuration);
                self.close(out);
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
            self.close(out);
            return;
        }
        if self.rtc_deadline <= now {
            let rtc = &mut self.rtc;
            if let Err(e) = in_dependency(|| rtc.handle_input(Input::Timeout(now))) {
                tracing::debug!(call = %self.tag, "timeout input: {e}");
                self.note_failure(&e.to_string());
            }
        }
        self.drive(now, out);
        self.feed_uplink(now, None, out);
        self.pace(now, out);
    }

    /// A message from the agent for this session.
    pub fn handle_downlink(&mut self, now: Instant, msg: DownlinkMsg, out: &mut Outputs) {
        match msg {
            DownlinkMsg::Audio { response, .. } | DownlinkMsg::ResponseDone { response, .. }
                if response <= self.cancelled_upto => {}
            DownlinkMsg::Audio {
                response, frame, ..
            } => {
                self.conversation.timeline.reply_frame(now, response);
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
            DownlinkMsg::Clear { .. } => self.clear_reply(),
            DownlinkMsg::Event { json, .. } => self.send_event(json.into()),
            DownlinkMsg::Vad {
                index, probability, ..
            } => self.on_vad(now, index, probability, out),
            DownlinkMsg::TurnScore {
                index,
                asked_at,
                answer,
                ..
            } => self.on_turn_score(now, index, asked_at, answer, out),
        }
        self.drive(now, out);
    }

    /// Tells the client the server is going away (before `close` at shutdown).
    pub fn notify_shutdown(&mut self, now: Instant, out: &mut Outputs) {
        let e = self.writer.error(
            "server_error",
            "server_shutdown",
            "the server is shutting down; reconnect to continue",
        );
        self.send_event(e);
        self.drive(now, out);
    }

    /// Ends the session (hangup): closes the peer connection and tells the agent.
    pub fn close(&mut self, out: &mut Outputs) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.rtc.disconnect();
        if self.config.record.is_some() && self.connected {
            // A close carries no time of its own: the recorder only ends the files.
            out.record(self.tag, self.offered_at, RecordEvent::Close);
        }
        if self.agent_started {
            out.for_worker(self.worker, UplinkMsg::End { key: self.key });
        }
    }

    fn send_event(&mut self, json: String) {
        self.events.send(json, &mut self.rtc);
    }

    /// A message for the agent, if it was told the session started.
    fn tell_agent(&mut self, msg: UplinkMsg, out: &mut Outputs) {
        if self.agent_started {
            out.for_worker(self.worker, msg);
        }
    }

    /// The worker's ring had no room for `msg` (the ring counts the drop): a refused `Start`
    /// means the agent never heard of the session, so nothing more is sent to it; refused audio
    /// is counted as dropped uplink.
    pub fn worker_refused(&mut self, now: Instant, msg: &UplinkMsg, out: &mut Outputs) {
        match msg {
            UplinkMsg::Start { .. } => self.agent_started = false,
            UplinkMsg::Audio { index, .. } => self.on_audio_refused(now, *index, out),
            UplinkMsg::ScoreTurn { .. } => out.event(ShardEvent::TurnModel {
                answer: TurnAnswer::Unanswered(Unanswered::NotAsked),
                waited: Duration::ZERO,
            }),
            _ => {}
        }
    }

    /// Carries out what the conversation decided, in order.
    fn run_conversation(&mut self, now: Instant, out: &mut Outputs) {
        use conversation::{Action, ConversationEvent as E};
        while let Some(action) = self.conversation.poll_action() {
            match action {
                Action::Event(e) => {
                    let json = match e {
                        E::SpeechStarted {
                            audio_start_ms,
                            item,
                        } => self.writer.speech_started(audio_start_ms, &item_id(item)),
                        E::SpeechStopped { audio_end_ms, item } => {
                            self.writer.speech_stopped(audio_end_ms, &item_id(item))
                        }
                        E::Committed { item, previous } => self
                            .writer
                            .committed(&item_id(item), previous.map(item_id).as_deref()),
                        E::TimeoutTriggered {
                            audio_start_ms,
                            audio_end_ms,
                            item,
                        } => self.writer.timeout_triggered(
                            audio_start_ms,
                            audio_end_ms,
                            &item_id(item),
                        ),
                        E::Cleared => self.writer.event_simple("input_audio_buffer.cleared"),
                    };
                    self.send_event(json);
                    if let E::SpeechStopped { .. } = e {
                        self.note_events_sent(now);
                        self.stats.turns += 1;
                    }
                }
                Action::Turn { event, respond } => {
                    let msg = UplinkMsg::Turn {
                        key: self.key,
                        event,
                        respond,
                    };
                    self.tell_agent(msg, out);
                }
                Action::Interrupt => self.interrupt(out),
                Action::Pause => {
                    // The audio stops now; the queue waits for confirmation (or a resume).
                    self.paused = true;
                    self.pacer.idle();
                }
                Action::Resume => {
                    self.paused = false;
                    self.pacer.wake(now);
                }
                Action::BargeIn(outcome) => out.event(ShardEvent::BargeIn(outcome)),
                Action::ScoreTurn { index, useful_ms } => {
                    if self.agent_started {
                        let msg = UplinkMsg::ScoreTurn {
                            key: self.key,
                            index,
                            asked_at: now,
                            deadline: now + Duration::from_millis(useful_ms.into()),
                        };
                        out.for_worker(self.worker, msg);
                    } else {
                        let answer = TurnAnswer::Unanswered(Unanswered::NotAsked);
                        out.event(ShardEvent::TurnModel {
                            answer,
                            waited: Duration::ZERO,
                        });
                    }
                }
            }
        }
    }

    /// Reply audio is playing, encoded ahead or queued (barge-in applies).
    fn reply_active(&self) -> bool {
        self.playing.is_some() || self.ahead.is_some() || !self.playout.is_empty()
    }

    /// The turn model's answer (`--turn-model smart-turn`), counted, and to the conversation.
    fn on_turn_score(
        &mut self,
        now: Instant,
        index: u64,
        asked_at: Instant,
        answer: TurnAnswer,
        out: &mut Outputs,
    ) {
        let waited = now.saturating_duration_since(asked_at);
        out.event(ShardEvent::TurnModel { answer, waited });
        if let TurnAnswer::Scored { probability, .. } = answer {
            let reply_active = self.reply_active();
            self.conversation
                .on_turn_score(now, index, probability, reply_active);
            self.run_conversation(now, out);
        }
    }

    /// Stamps `speech_stopped` as handed to the data channel once nothing waits before it.
    fn note_events_sent(&mut self, now: Instant) {
        if self.events.is_drained() && self.conversation.timeline.awaits_stopped_sent() {
            self.conversation.timeline.stopped_sent(now);
        }
    }
}

fn item_id(n: u32) -> String {
    format!("item_{n:06}")
}

fn response_id(n: u32) -> String {
    format!("resp_{n:06}")
}
