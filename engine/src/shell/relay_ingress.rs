//! A node's side of `tern relay` (`--advertise-relay`): each shard takes relayed datagrams on its
//! own ingress port (the relay picks the port from the ufrag's shard, so relayed traffic never
//! crosses cores here), unwraps the header to the real client address, and remembers which relay
//! the client came through so that replies to that client go back through it, wrapped.

use std::collections::HashMap;
use std::hash::RandomState;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::core::relay::{read_header, Header, RelayToken};
use crate::core::session_id::TagKey;

/// A client not heard from through a relay for this long is forgotten (its call has ended or
/// its consent has expired long before).
const PEER_IDLE: Duration = Duration::from_secs(60);

/// What a shard knows of its relayed clients.
pub struct RelayIngress {
    token: RelayToken,
    /// Client -> the relay it came through, with the header for replies.
    peers: HashMap<SocketAddr, (SocketAddr, Header, Instant), RandomState>,
    max_peers: usize,
    /// Datagrams on the ingress without a valid header (wrong token, not relayed).
    pub bad_header: u64,
    /// New relayed clients refused because the table was full.
    pub table_full: u64,
}

impl RelayIngress {
    pub fn new(key: &TagKey, max_peers: usize) -> Self {
        RelayIngress {
            token: RelayToken::new(key),
            peers: HashMap::with_capacity_and_hasher(max_peers.min(65_536), RandomState::new()),
            max_peers,
            bad_header: 0,
            table_full: 0,
        }
    }

    /// Unwraps a datagram from a relay: the client and its payload, or `None` (counted).
    pub fn receive<'a>(
        &mut self,
        now: Instant,
        relay: SocketAddr,
        data: &'a [u8],
    ) -> Option<(SocketAddr, &'a [u8])> {
        let Ok((client, payload)) = read_header(data, &self.token) else {
            self.bad_header += 1;
            return None;
        };
        let room = self.peers.len() < self.max_peers;
        if let Some(p) = self.peers.get_mut(&client) {
            p.0 = relay;
            p.2 = now;
        } else if room {
            let h = Header::new(&self.token, client);
            self.peers.insert(client, (relay, h, now));
        } else {
            self.table_full += 1;
            return None;
        }
        Some((client, payload))
    }

    /// Where a datagram to `client` goes: its relay and the header to put before it; `None`:
    /// the client is not relayed.
    pub fn route(&self, client: &SocketAddr) -> Option<(SocketAddr, &Header)> {
        self.peers.get(client).map(|(r, h, _)| (*r, h))
    }

    pub fn expire(&mut self, now: Instant) {
        self.peers
            .retain(|_, p| now.saturating_duration_since(p.2) < PEER_IDLE);
    }

    pub fn peers(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_clients_are_answered_through_their_latest_relay() {
        let key = TagKey::new(b"s");
        let mut r = RelayIngress::new(&key, 1);
        let t0 = Instant::now();
        let client: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        let (relay_a, relay_b): (SocketAddr, SocketAddr) = (
            "10.0.0.9:3479".parse().unwrap(),
            "10.0.0.10:3479".parse().unwrap(),
        );
        let mut d = Header::new(&RelayToken::new(&key), client).bytes().to_vec();
        d.extend_from_slice(b"dtls");
        assert_eq!(r.receive(t0, relay_a, &d), Some((client, &b"dtls"[..])));
        assert_eq!(r.route(&client).map(|(a, _)| a), Some(relay_a));
        // A restarted relay elsewhere: replies follow the client's latest path.
        assert!(r.receive(t0, relay_b, &d).is_some());
        assert_eq!(r.route(&client).map(|(a, _)| a), Some(relay_b));
        assert_eq!(
            read_header(r.route(&client).unwrap().1.bytes(), &RelayToken::new(&key))
                .unwrap()
                .0,
            client
        );
        // Wrong token, or full: refused and counted.
        let mut forged = Header::new(&RelayToken::new(&TagKey::new(b"x")), client)
            .bytes()
            .to_vec();
        forged.extend_from_slice(b"dtls");
        assert!(r.receive(t0, relay_a, &forged).is_none());
        let mut other = Header::new(&RelayToken::new(&key), "198.51.100.8:1".parse().unwrap())
            .bytes()
            .to_vec();
        other.push(0);
        assert!(r.receive(t0, relay_a, &other).is_none());
        assert_eq!((r.bad_header, r.table_full), (1, 1));
        r.expire(t0 + PEER_IDLE);
        assert_eq!(r.peers(), 0);
        assert!(r.route(&client).is_none());
    }
}
