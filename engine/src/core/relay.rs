//! The ufrag relay's sans-IO core (`tern relay`): one public UDP address in front of many media
//! nodes, routing on the ICE ufrag as OpenAI's relay and LiveKit's edge do.
//!
//! A flow (client address on the relay's public port) is created by its first STUN binding
//! request: the USERNAME's server ufrag is a sealed `SessionId`, so the relay checks the seal with
//! the fleet secret (a forged ufrag costs no node anything), finds the tag's node in the fleet's
//! node table and remembers client -> (node, shard). Every later datagram of the flow goes to that
//! node's relay ingress for the tag's shard, wrapped in a small header naming the client, so the
//! node's ICE sees the real client address; the node's replies come back with the same header and
//! leave from the public address. The relay never decrypts and never runs ICE. A flow lives as
//! long as the client sends; after a relay restart the next consent check (every few seconds)
//! builds it again.
//!
//! Header (both directions): `b"TRL1"`, an 8-byte fleet token (an HMAC of the fleet secret, so
//! only fleet members can make the relay or a node act on a header), the address family (4 or 6),
//! the client's IP and port.

use std::collections::HashMap;
use std::hash::RandomState;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use str0m::ice::StunMessage;

use super::classify::{classify, DatagramKind};
use super::session_id::{server_ufrag, SessionId, TagKey};

const MAGIC: [u8; 4] = *b"TRL1";
/// Longest header: magic, token, family, IPv6 address, port.
pub const MAX_HEADER: usize = 4 + 8 + 1 + 16 + 2;
/// A flow is forgotten after this long without a datagram from its client (ICE consent fails
/// after 30 s without a check anyway).
pub const FLOW_IDLE: Duration = Duration::from_secs(30);

/// The shared token in every header: derived from the fleet secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RelayToken([u8; 8]);

impl std::fmt::Debug for RelayToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelayToken(..)")
    }
}

impl RelayToken {
    pub fn new(key: &TagKey) -> Self {
        RelayToken(key.derive(b"tern relay header v1"))
    }
}

/// A header to put before a datagram.
#[derive(Clone, Copy)]
pub struct Header {
    buf: [u8; MAX_HEADER],
    len: u8,
}

impl Header {
    pub fn new(token: &RelayToken, client: SocketAddr) -> Self {
        let mut buf = [0u8; MAX_HEADER];
        buf[..4].copy_from_slice(&MAGIC);
        buf[4..12].copy_from_slice(&token.0);
        let at = match client.ip() {
            IpAddr::V4(ip) => {
                buf[12] = 4;
                buf[13..17].copy_from_slice(&ip.octets());
                17
            }
            IpAddr::V6(ip) => {
                buf[12] = 6;
                buf[13..29].copy_from_slice(&ip.octets());
                29
            }
        };
        buf[at..at + 2].copy_from_slice(&client.port().to_be_bytes());
        Header {
            buf,
            len: (at + 2) as u8,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

/// Why a relayed datagram's header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("not a relay header (too short or wrong magic)")]
    NotRelayed,
    #[error("relay header carries a wrong fleet token")]
    BadToken,
    #[error("relay header names an unknown address family")]
    BadFamily,
}

/// Splits a relayed datagram into the client it concerns and the payload. Never panics.
pub fn read_header<'a>(
    data: &'a [u8],
    token: &RelayToken,
) -> Result<(SocketAddr, &'a [u8]), HeaderError> {
    if data.len() < 13 || data[..4] != MAGIC {
        return Err(HeaderError::NotRelayed);
    }
    if aws_lc_rs::constant_time::verify_slices_are_equal(&data[4..12], &token.0).is_err() {
        return Err(HeaderError::BadToken);
    }
    let (ip, at): (IpAddr, usize) = match data[12] {
        4 if data.len() >= 19 => {
            let o: [u8; 4] = data[13..17]
                .try_into()
                .map_err(|_| HeaderError::BadFamily)?;
            (Ipv4Addr::from(o).into(), 17)
        }
        6 if data.len() >= 31 => {
            let o: [u8; 16] = data[13..29]
                .try_into()
                .map_err(|_| HeaderError::BadFamily)?;
            (Ipv6Addr::from(o).into(), 29)
        }
        _ => return Err(HeaderError::BadFamily),
    };
    let port = u16::from_be_bytes([data[at], data[at + 1]]);
    Ok((SocketAddr::new(ip, port), &data[at + 2..]))
}

/// Where a node takes relayed datagrams: shard `i` listens on `ingress` port + `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRoute {
    pub ingress: SocketAddr,
    pub shards: u16,
}

impl NodeRoute {
    fn shard_addr(&self, shard: u16) -> Option<SocketAddr> {
        if shard >= self.shards {
            return None;
        }
        let port = self.ingress.port().checked_add(shard)?;
        Some(SocketAddr::new(self.ingress.ip(), port))
    }
}

/// Why the relay dropped a datagram; a label of `tern_relay_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayDrop {
    /// No flow, and not a STUN binding request that could start one.
    NoFlow,
    /// A STUN request without a USERNAME, or one that does not parse.
    BadStun,
    /// The server ufrag is not a route tag.
    UnknownUfrag,
    /// The route tag's seal does not verify with the fleet secret.
    ForgedUfrag,
    /// The tag names a node the fleet does not list (gone, or never was), or a shard it lacks.
    UnknownNode,
    /// The flow table is full.
    TableFull,
    /// From a node: no header, a wrong token or a bad family.
    BadHeader,
}

impl RelayDrop {
    pub const ALL: [RelayDrop; 7] = [
        RelayDrop::NoFlow,
        RelayDrop::BadStun,
        RelayDrop::UnknownUfrag,
        RelayDrop::ForgedUfrag,
        RelayDrop::UnknownNode,
        RelayDrop::TableFull,
        RelayDrop::BadHeader,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RelayDrop::NoFlow => "no_flow",
            RelayDrop::BadStun => "bad_stun",
            RelayDrop::UnknownUfrag => "unknown_ufrag",
            RelayDrop::ForgedUfrag => "forged_ufrag",
            RelayDrop::UnknownNode => "unknown_node",
            RelayDrop::TableFull => "table_full",
            RelayDrop::BadHeader => "bad_header",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What one relay shard counted.
#[derive(Debug, Default, Clone)]
pub struct RelayCounters {
    pub to_node: u64,
    pub to_client: u64,
    pub flows_created: u64,
    pub flows_expired: u64,
    pub dropped: [u64; RelayDrop::ALL.len()],
}

#[derive(Debug, Clone, Copy)]
struct Flow {
    node: u16,
    shard: u16,
    last_seen: Instant,
}

/// One relay shard's state: the flows whose clients hash to its socket and the fleet's nodes.
pub struct RelayCore {
    key: TagKey,
    token: RelayToken,
    flows: HashMap<SocketAddr, Flow, RandomState>,
    max_flows: usize,
    nodes: HashMap<u16, NodeRoute, RandomState>,
    pub counters: RelayCounters,
}

impl RelayCore {
    /// A core whose flow table holds at most `max_flows` (allocated now, never grown).
    pub fn new(key: TagKey, max_flows: usize) -> Self {
        RelayCore {
            token: RelayToken::new(&key),
            key,
            flows: HashMap::with_capacity_and_hasher(max_flows, RandomState::new()),
            max_flows,
            nodes: HashMap::with_hasher(RandomState::new()),
            counters: RelayCounters::default(),
        }
    }

    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// The fleet's nodes as of the last read of Redis. Flows to a node that left are dropped on
    /// their next datagram.
    pub fn set_nodes(&mut self, nodes: impl IntoIterator<Item = (u16, NodeRoute)>) {
        self.nodes.clear();
        self.nodes.extend(nodes);
    }

    /// A datagram from a client: the node address and the header to put before it.
    pub fn from_client(
        &mut self,
        now: Instant,
        client: SocketAddr,
        data: &[u8],
    ) -> Result<(SocketAddr, Header), RelayDrop> {
        let r = self.route_client(now, client, data);
        match r {
            Ok(_) => self.counters.to_node += 1,
            Err(d) => self.counters.dropped[d.index()] += 1,
        }
        r
    }

    fn route_client(
        &mut self,
        now: Instant,
        client: SocketAddr,
        data: &[u8],
    ) -> Result<(SocketAddr, Header), RelayDrop> {
        let is_request = classify(data) == DatagramKind::Stun && data.starts_with(&[0x00, 0x01]);
        if !is_request {
            // The common case: media on a known flow, one hash lookup.
            let f = self.flows.get_mut(&client).ok_or(RelayDrop::NoFlow)?;
            f.last_seen = now;
            let (node, shard) = (f.node, f.shard);
            return Ok((
                self.node_addr(node, shard)?,
                Header::new(&self.token, client),
            ));
        }
        let known = self.flows.get(&client).copied();
        // Binding requests are routed by their ufrag even on a known flow: an ICE restart or a
        // new call from the same address goes where its ufrag says.
        let (node, shard) = self.check_ufrag(data)?;
        let dest = self.node_addr(node, shard)?;
        if known.is_none() && self.flows.len() >= self.max_flows {
            return Err(RelayDrop::TableFull);
        }
        if known.is_none() {
            self.counters.flows_created += 1;
        }
        self.flows.insert(
            client,
            Flow {
                node,
                shard,
                last_seen: now,
            },
        );
        Ok((dest, Header::new(&self.token, client)))
    }

    /// The relay ingress of `node`'s `shard`, if the fleet lists the node and it has the shard.
    fn node_addr(&self, node: u16, shard: u16) -> Result<SocketAddr, RelayDrop> {
        self.nodes
            .get(&node)
            .and_then(|r| r.shard_addr(shard))
            .ok_or(RelayDrop::UnknownNode)
    }

    fn check_ufrag(&self, data: &[u8]) -> Result<(u16, u16), RelayDrop> {
        let msg = StunMessage::parse(data).map_err(|_| RelayDrop::BadStun)?;
        let (local, _) = msg.split_username().ok_or(RelayDrop::BadStun)?;
        let tag = SessionId::parse(server_ufrag(local)).map_err(|_| RelayDrop::UnknownUfrag)?;
        if !tag.is_sealed_by(&self.key) {
            return Err(RelayDrop::ForgedUfrag);
        }
        Ok((tag.node, tag.shard))
    }

    /// A datagram from a node: the client it goes to and the payload. Never panics.
    pub fn from_node<'a>(&mut self, data: &'a [u8]) -> Result<(SocketAddr, &'a [u8]), RelayDrop> {
        match read_header(data, &self.token) {
            Ok(r) => {
                self.counters.to_client += 1;
                Ok(r)
            }
            Err(_) => {
                self.counters.dropped[RelayDrop::BadHeader.index()] += 1;
                Err(RelayDrop::BadHeader)
            }
        }
    }

    /// Forgets flows whose client has been silent for `FLOW_IDLE`.
    pub fn expire(&mut self, now: Instant) {
        let before = self.flows.len();
        self.flows
            .retain(|_, f| now.saturating_duration_since(f.last_seen) < FLOW_IDLE);
        self.counters.flows_expired += (before - self.flows.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tern_testkit::peer::binding_request;

    fn core() -> (RelayCore, TagKey) {
        let key = TagKey::new(b"fleet secret");
        let mut c = RelayCore::new(key.clone(), 4);
        c.set_nodes([(
            2,
            NodeRoute {
                ingress: "10.0.0.2:4000".parse().unwrap(),
                shards: 2,
            },
        )]);
        (c, key)
    }

    #[test]
    fn headers_round_trip_for_both_families() {
        let token = RelayToken::new(&TagKey::new(b"s"));
        for client in ["198.51.100.7:5000", "[2001:db8::9]:61000"] {
            let client: SocketAddr = client.parse().unwrap();
            let mut d = Header::new(&token, client).bytes().to_vec();
            d.extend_from_slice(b"payload");
            assert_eq!(read_header(&d, &token), Ok((client, &b"payload"[..])));
            let other = RelayToken::new(&TagKey::new(b"t"));
            assert_eq!(read_header(&d, &other), Err(HeaderError::BadToken));
        }
        assert_eq!(read_header(b"TRL1", &token), Err(HeaderError::NotRelayed));
    }

    #[test]
    fn a_sealed_ufrag_opens_a_flow_that_later_datagrams_follow() {
        let (mut c, key) = core();
        let t0 = Instant::now();
        let client: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        let tag = SessionId::sealed(&key, 2, 1, 9, 1, 42);
        // Before the first check: nothing to route by.
        assert_eq!(
            c.from_client(t0, client, &[0x80; 40]).err(),
            Some(RelayDrop::NoFlow)
        );
        let (dest, h) = c
            .from_client(t0, client, &binding_request(&tag.ufrag()))
            .unwrap();
        assert_eq!(dest, "10.0.0.2:4001".parse().unwrap(), "shard 1: port + 1");
        assert_eq!(read_header(h.bytes(), &c.token).unwrap().0, client);
        // DTLS and SRTP then follow the flow.
        let (dest2, _) = c.from_client(t0, client, &[22u8; 40]).unwrap();
        assert_eq!(dest2, dest);
        assert_eq!(c.counters.flows_created, 1);
        // Silent for FLOW_IDLE: forgotten; the next check rebuilds it (a relay restart is alike).
        c.expire(t0 + FLOW_IDLE);
        assert_eq!(c.flows(), 0);
        assert_eq!(
            c.from_client(t0, client, &[22u8; 40]).err(),
            Some(RelayDrop::NoFlow)
        );
        assert!(c
            .from_client(t0, client, &binding_request(&tag.ufrag()))
            .is_ok());
    }

    #[test]
    fn forged_unknown_and_overflowing_requests_are_dropped_and_counted() {
        let (mut c, key) = core();
        let t0 = Instant::now();
        let client: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        let other_fleet = SessionId::sealed(&TagKey::new(b"other"), 2, 0, 1, 1, 1);
        let gone_node = SessionId::sealed(&key, 3, 0, 1, 1, 1);
        let no_shard = SessionId::sealed(&key, 2, 5, 1, 1, 1);
        let cases = [
            (
                binding_request(&other_fleet.ufrag()),
                RelayDrop::ForgedUfrag,
            ),
            (binding_request(&gone_node.ufrag()), RelayDrop::UnknownNode),
            (binding_request(&no_shard.ufrag()), RelayDrop::UnknownNode),
            (binding_request("not-a-tag"), RelayDrop::UnknownUfrag),
            (
                vec![
                    0x00, 0x01, 0, 0, 0x21, 0x12, 0xA4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
                RelayDrop::BadStun,
            ),
        ];
        for (d, want) in &cases {
            let before = c.counters.dropped[want.index()];
            assert_eq!(c.from_client(t0, client, d).err(), Some(*want));
            assert_eq!(c.counters.dropped[want.index()], before + 1, "{want:?}");
        }
        assert_eq!(c.flows(), 0, "no drop opens a flow");
        // The table is bounded: the fifth client is refused, the four others keep theirs.
        let good = binding_request(&SessionId::sealed(&key, 2, 0, 1, 1, 1).ufrag());
        for port in 1..=5u16 {
            let r = c.from_client(t0, SocketAddr::new(client.ip(), port), &good);
            assert_eq!(r.is_ok(), port <= 4, "{port}");
        }
        assert_eq!(c.counters.dropped[RelayDrop::TableFull.index()], 1);
        // A node that leaves the fleet takes its flows with it.
        c.set_nodes([]);
        assert_eq!(
            c.from_client(t0, SocketAddr::new(client.ip(), 1), &[22u8; 40])
                .err(),
            Some(RelayDrop::UnknownNode)
        );
    }

    #[test]
    fn node_datagrams_need_the_fleet_token() {
        let (mut c, _) = core();
        let client: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        let mut d = Header::new(&c.token, client).bytes().to_vec();
        d.extend_from_slice(b"srtp");
        assert_eq!(c.from_node(&d), Ok((client, &b"srtp"[..])));
        let mut forged = Header::new(&RelayToken::new(&TagKey::new(b"x")), client)
            .bytes()
            .to_vec();
        forged.extend_from_slice(b"srtp");
        assert_eq!(c.from_node(&forged), Err(RelayDrop::BadHeader));
        assert_eq!(c.from_node(b"srtp"), Err(RelayDrop::BadHeader));
        assert_eq!((c.counters.to_client, c.counters.dropped[6]), (1, 2));
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..120), port: u16) {
            let (mut c, _) = core();
            let now = Instant::now();
            let client = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
            let _ = c.from_client(now, client, &data);
            let _ = c.from_node(&data);
            let mut d = b"TRL1".to_vec();
            d.extend_from_slice(&c.token.0);
            d.extend_from_slice(&data);
            let _ = c.from_node(&d);
        }
    }
}
