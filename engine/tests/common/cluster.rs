//! The shard cores of one node in virtual time with the mesh between them emulated: every message
//! a core puts out (`Output::ToShard`) is carried to its target's `handle_shard_msg`, until no
//! core has anything left to say. An inbox marked full refuses, and the message goes back to its
//! sender's `undeliverable`, as the shell does with a full ring.
//!
//! `run` drives whole calls: str0m clients over links, an emulated network that decides which
//! shard each datagram reaches (as the kernel's SO_REUSEPORT hash does), one echo worker serving
//! every shard, and virtual time that jumps to the next deadline of anything in it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_engine::agent::echo::EchoAgent;
use tern_engine::agent::Agent;
use tern_engine::core::admission::Admission;
use tern_engine::core::peer_addr::Peer;
use tern_engine::core::rtc_setup::ServerCrypto;
use tern_engine::core::session::SessionConfig;
use tern_engine::core::session_id::SessionKey;
use tern_engine::core::session_id::TagKey;
use tern_engine::core::shard::{ShardCore, ShardSettings};

use super::virtual_server::{CollectIo, Replies, VirtualServer};
use super::{Client, Link};

pub struct Cluster {
    pub cores: Vec<ShardCore>,
    /// Each core's outputs (datagrams, agent messages, ends).
    pub io: Vec<CollectIo>,
    /// Inboxes that refuse every message, as a full ring does.
    pub inbox_full: Vec<bool>,
    /// Messages carried: (from, to, kind).
    pub carried: Vec<(u16, u16, &'static str)>,
    /// Messages refused by a full inbox: (from, to, kind).
    pub refused: Vec<(u16, u16, &'static str)>,
    /// The one worker, serving every shard (`--workers 1`).
    pub agent: EchoAgent,
    /// Addresses a core sent to that belong to no client.
    pub stray: Vec<SocketAddr>,
    /// Steps `run` took (each jumps to the next deadline).
    pub steps: usize,
}

impl Cluster {
    /// One node whose shard `i` holds at most `room[i]` sessions; all share `admission`.
    pub fn new(room: &[usize], admission: &Admission) -> Self {
        Self::with_session(room, admission, SessionConfig::default())
    }

    /// Like `new`, with sessions configured by `session` (limits, turn settings).
    pub fn with_session(room: &[usize], admission: &Admission, session: SessionConfig) -> Self {
        let key = TagKey::random();
        let crypto = ServerCrypto::new().expect("crypto");
        let shards = room.len();
        let cores = room
            .iter()
            .enumerate()
            .map(|(i, &max)| {
                let public = "10.0.0.1:3478".parse().expect("addr");
                let settings = ShardSettings {
                    shards: shards as u16,
                    max_sessions_per_shard: max,
                    tag_key: key.clone(),
                    admission: admission.clone(),
                    ..VirtualServer::settings(public, session.clone())
                };
                ShardCore::new(i as u16, Arc::new(settings), crypto.clone())
            })
            .collect();
        Cluster {
            cores,
            io: (0..shards).map(|_| CollectIo::default()).collect(),
            inbox_full: vec![false; shards],
            carried: Vec::new(),
            refused: Vec::new(),
            agent: EchoAgent::default(),
            stray: Vec::new(),
            steps: 0,
        }
    }

    /// A datagram from `source` that the kernel steered to shard `to`, then every message it
    /// caused, carried.
    pub fn datagram(&mut self, now: Instant, to: usize, source: SocketAddr, data: &[u8]) {
        self.cores[to].handle_datagram(now, Peer::udp(source), data);
        self.io[to].collect(&mut self.cores[to], now);
        self.carry(now);
    }

    /// Carries messages between cores until none is left.
    pub fn carry(&mut self, now: Instant) {
        loop {
            let mut in_flight = Vec::new();
            for i in 0..self.cores.len() {
                while !self.io[i].to_shard.is_empty() {
                    let (to, msg) = self.io[i].to_shard.remove(0);
                    let hop = (i as u16, to, msg.label());
                    if self.inbox_full.get(to as usize).copied().unwrap_or(true) {
                        self.refused.push(hop);
                        self.cores[i].undeliverable(now, to, msg);
                        // What settling it decided comes after the messages already in line.
                        self.io[i].collect(&mut self.cores[i], now);
                    } else {
                        self.carried.push(hop);
                        in_flight.push((to as usize, msg));
                    }
                }
            }
            if in_flight.is_empty() {
                return;
            }
            for (to, msg) in in_flight {
                self.cores[to].handle_shard_msg(now, msg);
                self.io[to].collect(&mut self.cores[to], now);
            }
        }
    }

    /// Hangs up `key` on shard `shard`; true if the call lived there.
    pub fn hangup(&mut self, now: Instant, shard: usize, key: SessionKey) -> bool {
        let found = self.cores[shard].hangup(key);
        self.io[shard].collect(&mut self.cores[shard], now);
        found
    }

    /// Periodic upkeep on shard `shard` (it may send again what found a full inbox).
    pub fn housekeeping(&mut self, shard: usize, now: Instant) {
        self.cores[shard].housekeeping(now);
        self.io[shard].collect(&mut self.cores[shard], now);
    }

    /// The kinds of messages carried so far, in order.
    pub fn carried_kinds(&self) -> Vec<&'static str> {
        self.carried.iter().map(|(_, _, k)| *k).collect()
    }

    /// Runs clients, each over its own links, for `dur`: the datagrams a client sends reach the
    /// shard `steer` picks for its address; replies go to the client they are for. Each step does
    /// everything due, then time jumps to the earliest next deadline of a client, a link, a core
    /// or the worker.
    pub fn run(
        &mut self,
        start: Instant,
        dur: Duration,
        peers: &mut [(&mut Client, &mut Link, &mut Link)],
        steer: impl Fn(SocketAddr) -> usize,
    ) -> Instant {
        let end = start + dur;
        let mut now = start;
        while now < end {
            self.steps += 1;
            for (client, up, _) in peers.iter_mut() {
                for (to, d) in client.poll(now) {
                    up.send(now, client.addr, to, d);
                }
                for (from, _to, d) in up.due(now) {
                    self.datagram(now, steer(from), from, &d);
                }
            }
            for i in 0..self.cores.len() {
                self.cores[i].handle_timeouts(now);
                self.io[i].collect(&mut self.cores[i], now);
            }
            self.carry(now);
            let mut replies = Replies::default();
            for i in 0..self.cores.len() {
                for m in self.io[i].to_agent.drain(..) {
                    self.agent.on_message(now, m, &mut replies);
                }
            }
            let agent_wake = self.agent.poll(now, &mut replies);
            for m in replies.0 {
                let shard = usize::from(m.key().shard);
                self.cores[shard].handle_downlink(now, m);
            }
            for i in 0..self.cores.len() {
                self.cores[i].handle_timeouts(now);
                while self.cores[i].encode_next() {}
                self.io[i].collect(&mut self.cores[i], now);
            }
            self.carry(now);
            let public = self.cores[0].settings().public;
            for io in &mut self.io {
                for (to, d) in io.out.drain(..) {
                    match peers.iter_mut().find(|(c, _, _)| c.addr == to) {
                        Some((_, _, down)) => down.send(now, public, to, d),
                        None => self.stray.push(to),
                    }
                }
            }
            for (client, _, down) in peers.iter_mut() {
                for (from, _to, d) in down.due(now) {
                    client.receive(now, from, &d);
                }
            }
            let mut next = end;
            for (client, up, down) in peers.iter() {
                next = next.min(client.next_wake());
                for t in [up.next_due(), down.next_due()].into_iter().flatten() {
                    next = next.min(t);
                }
            }
            for core in &mut self.cores {
                if let Some(t) = core.next_deadline() {
                    next = next.min(t);
                }
            }
            if let Some(t) = agent_wake {
                next = next.min(t);
            }
            // Whatever was due has run: time moves on, by at least a microsecond.
            now = next.max(now + Duration::from_micros(1));
        }
        now
    }
}

/// A loss-free pair of links (up, down) with one-way `delay` for each of `n` clients.
pub fn link_pairs(n: usize, delay: Duration) -> Vec<(Link, Link)> {
    (0..n as u64)
        .map(|i| {
            (
                Link::new(0.0, delay, 2 * i + 1),
                Link::new(0.0, delay, 2 * i + 2),
            )
        })
        .collect()
}

/// The clients with their links, as `Cluster::run` takes them.
pub fn peers<'a>(
    clients: &'a mut [Client],
    links: &'a mut [(Link, Link)],
) -> Vec<(&'a mut Client, &'a mut Link, &'a mut Link)> {
    clients
        .iter_mut()
        .zip(links.iter_mut())
        .map(|(c, (up, down))| (c, up, down))
        .collect()
}
