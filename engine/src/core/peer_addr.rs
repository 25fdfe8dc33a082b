//! Where a datagram came from or goes to: an address and the transport that carries it. Media
//! normally runs over UDP; ICE-TCP (RFC 6544) carries the same datagrams framed on a TCP
//! connection (RFC 4571) for networks that block UDP.

use std::net::SocketAddr;

pub use str0m::net::Protocol;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub addr: SocketAddr,
    pub proto: Protocol,
}

impl Peer {
    pub fn udp(addr: SocketAddr) -> Self {
        Peer {
            addr,
            proto: Protocol::Udp,
        }
    }

    pub fn tcp(addr: SocketAddr) -> Self {
        Peer {
            addr,
            proto: Protocol::Tcp,
        }
    }
}
