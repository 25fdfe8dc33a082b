//! Bridges to inference backends over WebSocket: `realtime-ws` (the OpenAI Realtime protocol) and
//! `pcm-ws` (raw PCM frames plus JSON control, for custom pipelines).
//!
//! The [`BridgeAgent`] runs on a worker thread like any agent; each session's connection lives on
//! a tokio runtime owned by that worker ([`conn`]). Reply audio is cut into 20 ms frames and handed
//! to the shard at real time plus a small lead, so the shard's playout queue never overflows; the
//! agent reads from the backend only while its reply queue is short, so a backend that streams
//! faster than real time is held back by TCP, never buffered without bound.

pub mod conn;
pub mod pcm_ws;
pub mod protocol;
pub mod realtime;
pub mod stats;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;

use self::conn::{BackendTarget, BridgeRuntime, ConnEvent, Connection};
use self::protocol::{error_event, BackendEvent, Protocol, WsMsg};
use super::{Agent, AgentOutput};
use crate::core::media::frame::{PcmFrame, FRAME_MS};
use crate::core::ring_msg::{DownlinkMsg, UplinkMsg};
use crate::core::session_id::SessionKey;

/// Which protocol a bridge speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeProtocol {
    RealtimeWs,
    PcmWs,
}

/// Reply frames handed to the shard ahead of real time.
const LEAD: Duration = Duration::from_millis(5 * FRAME_MS);
/// Read more from the backend only while fewer frames than this are queued (1 s).
const LOW_WATER: usize = 50;
/// Hard cap on queued reply frames per session (one oversized backend message past the low
/// water mark); beyond it frames are dropped and counted.
const MAX_QUEUED: usize = 1500;
const FRAME: Duration = Duration::from_millis(FRAME_MS);

// Frames are inline on purpose: the queue grows once and then never allocates per frame.
#[allow(clippy::large_enum_variant)]
enum Item {
    Frame { response: u32, frame: PcmFrame },
    Done { response: u32 },
}

struct Reply {
    id: u32,
    backend: Option<String>,
}

struct BridgeSession {
    protocol: Box<dyn Protocol>,
    conn: Connection,
    connected: bool,
    call_id: String,
    rate_hz: u32,
    frame_samples: usize,
    reply: Option<Reply>,
    last_response: u32,
    cancelled_backend: Option<String>,
    partial: Vec<i16>,
    queue: VecDeque<Item>,
    paced_until: Instant,
}

impl BridgeSession {
    /// Sends the protocol's messages toward the backend; counts what cannot be sent.
    fn forward(&mut self, out: &mut Vec<WsMsg>) {
        for m in out.drain(..) {
            if !self.connected {
                stats::inc(&stats::UPLINK_DROPPED_DISCONNECTED);
                continue;
            }
            match self.conn.tx.try_send(m) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => stats::inc(&stats::UPLINK_DROPPED_BACKPRESSURE),
                Err(TrySendError::Closed(_)) => stats::inc(&stats::UPLINK_DROPPED_DISCONNECTED),
            }
        }
    }

    fn push_frame(&mut self, response: u32, frame: PcmFrame) {
        if self.queue.len() >= MAX_QUEUED {
            stats::inc(&stats::DOWNLINK_DROPPED);
            return;
        }
        self.queue.push_back(Item::Frame { response, frame });
    }

    /// Ends the current reply: the last partial frame is padded with silence.
    fn finish_reply(&mut self) {
        let Some(r) = self.reply.take() else {
            return;
        };
        if !self.partial.is_empty() {
            self.partial.resize(self.frame_samples, 0);
            let frame = PcmFrame::from_slice(&self.partial);
            self.partial.clear();
            self.push_frame(r.id, frame);
        }
        self.queue.push_back(Item::Done { response: r.id });
    }

    fn on_audio(&mut self, backend: Option<String>, pcm: &[i16]) {
        if backend.is_some() && backend == self.cancelled_backend {
            return; // still in flight from an interrupted reply
        }
        let same = matches!(&self.reply, Some(r) if backend.is_none() || r.backend == backend);
        if !same {
            self.finish_reply();
            self.last_response += 1;
            self.reply = Some(Reply {
                id: self.last_response,
                backend,
            });
        }
        let id = self.last_response;
        self.partial.extend_from_slice(pcm);
        let n = self.frame_samples;
        let mut at = 0;
        while self.partial.len() - at >= n {
            let frame = PcmFrame::from_slice(&self.partial[at..at + n]);
            self.push_frame(id, frame);
            at += n;
        }
        self.partial.drain(..at);
    }

    fn interrupt(&mut self) {
        self.cancelled_backend = self.reply.take().and_then(|r| r.backend);
        self.partial.clear();
        self.queue.clear();
    }

    fn apply(&mut self, ev: BackendEvent, key: SessionKey, out: &mut dyn AgentOutput) {
        match ev {
            BackendEvent::Audio { reply, pcm } => self.on_audio(reply, &pcm),
            BackendEvent::ReplyDone => self.finish_reply(),
            BackendEvent::Clear => {
                self.interrupt();
                self.cancelled_backend = None;
                send(out, DownlinkMsg::Clear { key });
            }
            BackendEvent::Event(json) => send(
                out,
                DownlinkMsg::Event {
                    key,
                    json: json.into(),
                },
            ),
            BackendEvent::Error(json) => {
                stats::inc(&stats::BACKEND_ERRORS);
                send(
                    out,
                    DownlinkMsg::Event {
                        key,
                        json: json.into(),
                    },
                );
            }
        }
    }

    /// The backend went away: end any reply so the client hears it stop, and say why.
    fn lost(&mut self, code: &str, reason: &str, key: SessionKey, out: &mut dyn AgentOutput) {
        self.connected = false;
        self.finish_reply();
        let json = error_event(code, reason);
        send(
            out,
            DownlinkMsg::Event {
                key,
                json: json.into(),
            },
        );
    }

    /// Hands queued items to the shard: frames at real time plus the lead, the rest at once.
    /// Returns when the next frame is due, if any is queued.
    fn pace(
        &mut self,
        now: Instant,
        key: SessionKey,
        out: &mut dyn AgentOutput,
    ) -> Option<Instant> {
        while let Some(item) = self.queue.front() {
            let msg = match item {
                Item::Frame { response, frame } => {
                    if self.paced_until > now + LEAD {
                        return Some(self.paced_until - LEAD);
                    }
                    DownlinkMsg::Audio {
                        key,
                        response: *response,
                        frame: *frame,
                    }
                }
                Item::Done { response } => DownlinkMsg::ResponseDone {
                    key,
                    response: *response,
                },
            };
            let is_frame = matches!(msg, DownlinkMsg::Audio { .. });
            if out.send(msg).is_err() {
                return Some(now + FRAME / 4); // ring full: retry soon, keep the item
            }
            if is_frame {
                self.paced_until = self.paced_until.max(now) + FRAME;
            }
            self.queue.pop_front();
        }
        None
    }
}

fn send(out: &mut dyn AgentOutput, msg: DownlinkMsg) {
    if out.send(msg).is_err() {
        stats::inc(&stats::EVENTS_DROPPED);
    }
}

/// An agent that relays each session to a WebSocket backend.
pub struct BridgeAgent {
    runtime: BridgeRuntime,
    target: Arc<BackendTarget>,
    protocol: BridgeProtocol,
    waker: Thread,
    sessions: HashMap<SessionKey, BridgeSession>,
    scratch: Vec<WsMsg>,
    events: Vec<BackendEvent>,
}

impl BridgeAgent {
    /// Builds the agent on the worker thread that will run it (its waker).
    pub fn new(
        worker: u16,
        protocol: BridgeProtocol,
        target: Arc<BackendTarget>,
    ) -> std::io::Result<Self> {
        Ok(BridgeAgent {
            runtime: BridgeRuntime::new(worker)?,
            target,
            protocol,
            waker: std::thread::current(),
            sessions: HashMap::new(),
            scratch: Vec::new(),
            events: Vec::new(),
        })
    }

    fn new_protocol(&self) -> Box<dyn Protocol> {
        match self.protocol {
            BridgeProtocol::RealtimeWs => Box::new(realtime::RealtimeProtocol::default()),
            BridgeProtocol::PcmWs => Box::new(pcm_ws::PcmWsProtocol::default()),
        }
    }
}

impl Agent for BridgeAgent {
    fn on_message(&mut self, now: Instant, msg: UplinkMsg, _out: &mut dyn AgentOutput) {
        let key = msg.key();
        if let UplinkMsg::Start { tag, rate_hz, .. } = &msg {
            let conn = self.runtime.open(self.target.clone(), self.waker.clone());
            let s = BridgeSession {
                protocol: self.new_protocol(),
                conn,
                connected: false,
                call_id: tag.call_id(),
                rate_hz: *rate_hz,
                frame_samples: (*rate_hz / 50) as usize,
                reply: None,
                last_response: 0,
                cancelled_backend: None,
                partial: Vec::new(),
                queue: VecDeque::new(),
                paced_until: now,
            };
            self.sessions.insert(key, s);
            return;
        }
        if let UplinkMsg::End { .. } = msg {
            self.sessions.remove(&key); // drops the connection
            return;
        }
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let scratch = &mut self.scratch;
        match msg {
            UplinkMsg::Audio { frame, .. } => s.protocol.on_audio(&frame, scratch),
            UplinkMsg::Turn { event, respond, .. } => s.protocol.on_turn(event, respond, scratch),
            UplinkMsg::ClientEvent { json, .. } => s.protocol.on_client_event(&json, scratch),
            UplinkMsg::Cancel { played_ms, .. } => {
                s.interrupt();
                s.protocol.on_interrupt(played_ms, scratch);
            }
            UplinkMsg::Start { .. } | UplinkMsg::End { .. } | UplinkMsg::ScoreTurn { .. } => {}
        }
        // Nothing goes to the shard here: on Cancel it has already flushed its playout queue.
        s.forward(scratch);
    }

    fn poll(&mut self, now: Instant, out: &mut dyn AgentOutput) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for (&key, s) in self.sessions.iter_mut() {
            while s.queue.len() < LOW_WATER {
                let Ok(ev) = s.conn.rx.try_recv() else {
                    break;
                };
                match ev {
                    ConnEvent::Connected => {
                        s.connected = true;
                        s.protocol
                            .on_connect(&s.call_id, s.rate_hz, &mut self.scratch);
                        s.forward(&mut self.scratch);
                    }
                    ConnEvent::Message(m) => {
                        s.protocol.on_backend(m, &mut self.events);
                        for ev in self.events.drain(..) {
                            s.apply(ev, key, out);
                        }
                    }
                    ConnEvent::Disconnected(reason) => {
                        s.lost("backend_unavailable", &reason.to_string(), key, out)
                    }
                    ConnEvent::GaveUp(reason) => s.lost(
                        "backend_gave_up",
                        &format!("{reason}; no more retries for this session"),
                        key,
                        out,
                    ),
                }
            }
            if let Some(t) = s.pace(now, key, out) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        next
    }
}
