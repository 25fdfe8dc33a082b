//! What one shard core tells another: the handoff of a session to the shard the kernel steers its
//! packets to, datagrams forwarded to a session's owner, and the end of an adopted session. The
//! shard core produces these as outputs (`ShardCore::poll_to_shard`) and takes them as inputs
//! (`ShardCore::handle_shard_msg`); the shell only carries them over its bounded mesh and hands
//! back any it could not queue (`ShardCore::undeliverable`).

use std::net::SocketAddr;

use super::peer_addr::Peer;
use super::session::Session;
use super::session_id::SessionId;

/// The largest datagram a shard receives or sends (our receive buffers never exceed it).
pub const MAX_DATAGRAM: usize = 2048;

/// A datagram copied inline, to travel in a box between shards.
#[derive(Clone)]
pub struct Datagram {
    pub source: Peer,
    len: u16,
    buf: [u8; MAX_DATAGRAM],
}

impl Datagram {
    /// Copies `data` (truncated to `MAX_DATAGRAM`).
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

pub enum CoreMsg {
    /// "The kernel gives me this session's packets: hand it over" (with the first datagram).
    Claim {
        tag: SessionId,
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
    Released { tag: SessionId },
}

impl CoreMsg {
    pub fn label(&self) -> &'static str {
        match self {
            CoreMsg::Claim { .. } => "Claim",
            CoreMsg::Adopt { .. } => "Adopt",
            CoreMsg::Forward { .. } => "Forward",
            CoreMsg::Learn { .. } => "Learn",
            CoreMsg::Released { .. } => "Released",
        }
    }
}

impl std::fmt::Debug for CoreMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}
