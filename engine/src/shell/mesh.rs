//! Messages between shards, over bounded lock-free inboxes (one per shard) with a doorbell.
//! Used for the shard cores' own messages (handoffs, the rare forwarded datagram: `CoreMsg`),
//! hangups and metric scrapes; never for the steady-state packet path.

use std::sync::Arc;

use futures_channel::oneshot;

use super::metrics::ShardSnapshot;
use super::rings::{Doorbell, Ring};
use crate::core::session_id::SessionId;
use crate::core::shard_msg::CoreMsg;

pub enum ShardMsg {
    /// From one shard core to another.
    Core(CoreMsg),
    /// End this call wherever it lives (`hops`: shards asked so far).
    Hangup {
        tag: SessionId,
        hops: u8,
        reply: oneshot::Sender<bool>,
    },
    Snapshot {
        reply: oneshot::Sender<ShardSnapshot>,
    },
}

/// One shard's inbox.
#[derive(Debug)]
pub struct Inbox {
    pub ring: Ring<ShardMsg>,
    pub bell: Arc<Doorbell>,
}

impl std::fmt::Debug for ShardMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ShardMsg::Core(m) => m.label(),
            ShardMsg::Hangup { .. } => "Hangup",
            ShardMsg::Snapshot { .. } => "Snapshot",
        })
    }
}

/// All inboxes, indexed by shard.
#[derive(Debug, Clone)]
pub struct Mesh {
    pub inboxes: Arc<Vec<Inbox>>,
}

impl Mesh {
    pub fn new(shards: usize, bells: &[Arc<Doorbell>], capacity: usize) -> Self {
        let inboxes = (0..shards)
            .map(|i| Inbox {
                ring: Ring::new(capacity),
                bell: bells[i].clone(),
            })
            .collect();
        Mesh {
            inboxes: Arc::new(inboxes),
        }
    }

    /// Sends to shard `to` and rings its bell; gives the message back if the inbox is full.
    pub fn send(&self, to: u16, msg: ShardMsg) -> Result<(), ShardMsg> {
        let Some(inbox) = self.inboxes.get(to as usize) else {
            return Err(msg);
        };
        inbox.ring.push(msg)?;
        inbox.bell.ring();
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.inboxes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inboxes.is_empty()
    }
}
