//! Inference agents and the worker threads that run them.
//!
//! An [`Agent`] serves every session bound to one worker. It is sans-IO like the core: it gets ring
//! messages with `now`, and answers through an [`AgentOutput`] (the downlink rings) and a next wake
//! time. Workers are plain OS threads, never media cores.
//!
//! # Writing an in-process agent
//!
//! Implement [`Agent`] and start the engine with [`AgentKind::Custom`]; `engine/examples/
//! chime_agent.rs` is a complete example to copy. What an agent sees, per session ([`UplinkMsg`]):
//! - `Start { key, tag, rate_hz }` when the WebRTC session connects (`tag.call_id()` names it);
//! - `Audio { index, frame, .. }`: every 20 ms frame of the user's audio at the model rate, numbered
//!   from 0 (frame `index` covers `index * 20` ms), concealed where packets were lost;
//! - `Turn { event }`: Tern's turn detector (`SpeechStarted { audio_start_ms }`, `SpeechStopped {
//!   audio_end_ms }`, or a client's `input_audio_buffer.commit`): reply after `SpeechStopped`;
//! - `Cancel { response, played_ms }`: the user barged in or the client cancelled; the shard has
//!   already stopped playback after `played_ms` of reply `response`; stop producing it;
//! - `ClientEvent { json }`: data-channel events Tern does not handle itself;
//! - `End` when the session is gone;
//! - `ScoreTurn`, a question for the turn model, is answered by the worker and never reaches an
//!   agent: match it with the messages you ignore.
//!
//! What it sends back ([`DownlinkMsg`], through [`AgentOutput::send`]): `Audio { response, frame }`
//! (20 ms frames at the model rate, one `response` id per reply, increasing), `ResponseDone`, `Clear`
//! (stop playback now) and `Event { json }` (data-channel events). Send reply frames at about real
//! time (a few frames ahead): the shard's playout queue is bounded and sheds the oldest frames. A
//! full ring hands the message back; keep it and retry on the next poll. Never block: the worker
//! serves many sessions; slow work goes to a thread or runtime of the agent's own.

pub mod bridge;
pub mod echo;
#[cfg(feature = "smart-turn")]
pub mod worker_turn;
pub mod worker_vad;

use std::sync::Arc;
use std::time::Instant;

use self::bridge::conn::BackendTarget;
use self::bridge::{BridgeAgent, BridgeProtocol};

use crate::core::ring_msg::{DownlinkMsg, UplinkMsg};

/// Where an agent's replies go.
pub trait AgentOutput {
    /// Queues a message for the session's shard. False when the ring is full: the agent keeps the
    /// message and retries on its next poll (its own backlog, never the shard's).
    #[allow(clippy::result_large_err)] // the message comes back unboxed so nothing allocates
    fn send(&mut self, msg: DownlinkMsg) -> Result<(), DownlinkMsg>;
}

/// Collects everything sent (tests and in-process harnesses).
impl AgentOutput for Vec<DownlinkMsg> {
    fn send(&mut self, msg: DownlinkMsg) -> Result<(), DownlinkMsg> {
        self.push(msg);
        Ok(())
    }
}

/// The logic behind a worker: speech-to-speech, a bridge to a model server, or `echo`.
pub trait Agent: Send {
    /// One message from a shard: session start/end, 20 ms PCM frames, turn events, client events.
    fn on_message(&mut self, now: Instant, msg: UplinkMsg, out: &mut dyn AgentOutput);
    /// Does timed work (streaming a reply at real time); returns when to be polled again.
    fn poll(&mut self, now: Instant, out: &mut dyn AgentOutput) -> Option<Instant>;
}

/// Builds an in-process agent for worker `n`, on that worker's thread.
pub type AgentBuilder = dyn Fn(u16) -> std::io::Result<Box<dyn Agent>> + Send + Sync;

/// A user-supplied agent (see the module docs).
#[derive(Clone)]
pub struct AgentFactory(pub Arc<AgentBuilder>);

impl std::fmt::Debug for AgentFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentFactory")
    }
}

impl PartialEq for AgentFactory {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for AgentFactory {}

/// Which agent the workers run (`--agent`, or an embedding program).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentKind {
    Echo,
    /// A WebSocket bridge to an inference backend.
    Bridge(BridgeProtocol, Arc<BackendTarget>),
    /// An in-process agent supplied by a program that embeds the engine.
    Custom(AgentFactory),
}

impl AgentKind {
    /// Builds the agent for worker `worker`; called on that worker's thread.
    pub fn build(&self, worker: u16) -> std::io::Result<Box<dyn Agent>> {
        Ok(match self {
            AgentKind::Echo => Box::new(echo::EchoAgent::default()),
            AgentKind::Bridge(protocol, target) => {
                Box::new(BridgeAgent::new(worker, *protocol, target.clone())?)
            }
            AgentKind::Custom(factory) => (factory.0)(worker)?,
        })
    }
}
