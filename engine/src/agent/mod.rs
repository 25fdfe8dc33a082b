//! Inference agents and the worker threads that run them.
//!
//! An [`Agent`] serves every session bound to one worker. It is sans-IO like the core: it gets ring
//! messages with `now`, and answers through an [`AgentOutput`] (the downlink rings) and a next wake
//! time. Workers are plain OS threads, never media cores.

pub mod bridge;
pub mod echo;
pub mod worker;

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

/// The logic behind a worker: speech-to-speech, a bridge to a model server, or `echo`.
pub trait Agent: Send {
    /// One message from a shard: session start/end, 20 ms PCM frames, turn events, client events.
    fn on_message(&mut self, now: Instant, msg: UplinkMsg, out: &mut dyn AgentOutput);
    /// Does timed work (streaming a reply at real time); returns when to be polled again.
    fn poll(&mut self, now: Instant, out: &mut dyn AgentOutput) -> Option<Instant>;
}

/// Which agent `--agent` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentKind {
    Echo,
    /// A WebSocket bridge to an inference backend.
    Bridge(BridgeProtocol, Arc<BackendTarget>),
}

impl AgentKind {
    /// Builds the agent for worker `worker`; called on that worker's thread.
    pub fn build(&self, worker: u16) -> std::io::Result<Box<dyn Agent>> {
        Ok(match self {
            AgentKind::Echo => Box::new(echo::EchoAgent::default()),
            AgentKind::Bridge(protocol, target) => {
                Box::new(BridgeAgent::new(worker, *protocol, target.clone())?)
            }
        })
    }
}
