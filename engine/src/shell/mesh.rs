//! Messages between shards, over bounded lock-free inboxes (one per shard) with a doorbell.
//! Used for handoffs, the rare forwarded datagram, hangups and metric scrapes; never for the
//! steady-state packet path.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_channel::oneshot;

use super::metrics::ShardSnapshot;
use super::net::MAX_DATAGRAM;
use super::rings::{Doorbell, Ring};
use crate::core::peer_addr::Peer;
use crate::core::route_tag::RouteTag;
use crate::core::session::Session;

/// A datagram copied inline (no allocation).
#[derive(Clone)]
pub struct Datagram {
    pub source: Peer,
    len: u16,
    buf: [u8; MAX_DATAGRAM],
}

impl Datagram {
    /// Copies `data` (truncated to `MAX_DATAGRAM`, which our receive buffer never exceeds).
    pub fn new(source: Peer, data: &[u8]) -> Self {
        let len = data.len().min(MAX_DATAGRAM);
        let mut buf = [0u8; MAX_DATAGRAM];
        buf[..len].copy_from_slice(&data[..len]);
        Datagram {
            source,
            len: len as u16,
            buf,
        }
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

pub enum ShardMsg {
    /// "The kernel gives me this session's packets: hand it over" (with the first datagram).
    Claim {
        tag: RouteTag,
        from: u16,
        datagram: Box<Datagram>,
    },
    /// The session, moved to its owner, and the datagram that claimed it.
    Adopt {
        session: Box<Session>,
        datagram: Box<Datagram>,
    },
    /// A datagram for a session that lives on the receiving shard.
    Forward { datagram: Box<Datagram> },
    /// Forward datagrams from `source` straight to `shard` from now on.
    Learn { source: SocketAddr, shard: u16 },
    /// An adopted session ended: free its forwarding entry at home.
    Released { tag: RouteTag },
    Hangup {
        tag: RouteTag,
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
            ShardMsg::Claim { .. } => "Claim",
            ShardMsg::Adopt { .. } => "Adopt",
            ShardMsg::Forward { .. } => "Forward",
            ShardMsg::Learn { .. } => "Learn",
            ShardMsg::Released { .. } => "Released",
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
