//! The sans-IO heart of a shard: its session table, its deadline queue, routing of datagrams, the
//! handoff of sessions between shards, and per-shard counters. The shell feeds it datagrams,
//! timeouts and ring messages with `now`; it never touches a socket or a clock.
//!
//! Routing (quinn's model): a STUN request names our ufrag, which decodes to (node, shard, slot,
//! generation, secret): O(1) without hashing. Everything else is routed by source address, bound only
//! after the session answered an authenticated STUN check from it.
//!
//! Handoff: a session is built by the shard whose HTTP listener took the offer (its home) but must
//! live on the shard the kernel delivers its datagrams to (its owner). When the first STUN request
//! reaches a shard that is not the home, the shard asks the home to `Claim` it; the home moves the
//! session over and keeps a forwarding entry until the owner reports the session's end.
//!
//! The whole protocol lives here: messages for other shards are outputs (`poll_to_shard`), theirs
//! are inputs (`handle_shard_msg`), and a message the shell could not queue comes back
//! (`undeliverable`) to be settled here (a handoff that cannot be sent keeps the session home).
//! The shell only carries them.

use std::collections::HashMap;
use std::hash::RandomState;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::ice::StunMessage;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use str0m::IceCreds;

use super::admission::Admission;
use super::classify::{classify, DatagramKind};
use super::deadlines::DeadlineQueue;
use super::output::{Output, Outputs, ShardEvent};
use super::peer_addr::{Peer, Protocol};
use super::ring_msg::DownlinkMsg;
use super::ring_msg::UplinkMsg;
use super::rtc_setup::{answer_offer, ice_password, parse_offer, OfferError, ServerCrypto};
use super::session::{MediaHeld, Session, SessionConfig};
use super::session_id::SessionKey;
use super::session_id::{server_ufrag, SessionId, TagKey};
use super::session_limits::EndReason;
use super::session_table::{Entry, Miss, SessionTable};
use super::shard_msg::{CoreMsg, Datagram};

/// Peer addresses remembered for forwarding to another shard, at most.
const MAX_FORWARD_ADDRS: usize = 65_536;
/// Forwarding entries unused this long are forgotten.
const FORWARD_IDLE: Duration = Duration::from_secs(60);

/// Why a datagram was dropped; exported as a label of `tern_datagrams_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// First byte matches no protocol (RFC 7983).
    Garbage,
    /// Looked like STUN but did not parse.
    BadStun,
    /// STUN without a username we can route by.
    NoUsername,
    /// Username is not one of our ufrags.
    UnknownUfrag,
    /// Ufrag for another node.
    WrongNode,
    /// Ufrag of a session that ended, or with a wrong secret.
    StaleSession,
    /// DTLS/RTP/RTCP from an address that no session has authenticated.
    UnknownSource,
    /// The session rejected the datagram (str0m error).
    Rejected,
    /// A STUN check with a live session's ufrag that failed authentication (not answered).
    Unauthenticated,
    /// A queue towards another shard was full.
    QueueFull,
    /// A ufrag in our format whose seal (keyed MAC) does not verify: forged or from an old process.
    ForgedUfrag,
}

impl DropReason {
    pub const ALL: [DropReason; 11] = [
        DropReason::Garbage,
        DropReason::BadStun,
        DropReason::NoUsername,
        DropReason::UnknownUfrag,
        DropReason::WrongNode,
        DropReason::StaleSession,
        DropReason::UnknownSource,
        DropReason::Rejected,
        DropReason::Unauthenticated,
        DropReason::QueueFull,
        DropReason::ForgedUfrag,
    ];

    /// Position in `ALL` (and in `ShardCounters::dropped`).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            DropReason::Garbage => "garbage",
            DropReason::BadStun => "bad_stun",
            DropReason::NoUsername => "no_username",
            DropReason::UnknownUfrag => "unknown_ufrag",
            DropReason::WrongNode => "wrong_node",
            DropReason::StaleSession => "stale_session",
            DropReason::UnknownSource => "unknown_source",
            DropReason::Rejected => "rejected",
            DropReason::Unauthenticated => "unauthenticated",
            DropReason::QueueFull => "queue_full",
            DropReason::ForgedUfrag => "forged_ufrag",
        }
    }
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Local(SessionKey),
    /// Ask the home shard of `tag` for the session (first STUN on this shard).
    Claim {
        home: u16,
        tag: SessionId,
    },
    /// Send to another shard that knows the session.
    Forward {
        shard: u16,
    },
    Drop(DropReason),
}

/// What the home shard answers to a claim.
#[derive(Debug)]
enum ClaimOutcome {
    /// Move this session to the claiming shard.
    HandOver(Box<Session>),
    /// The session already lives elsewhere: forward the datagram there.
    Forward {
        shard: u16,
    },
    Drop(DropReason),
}

/// Counters a shard keeps; scraped through the shell.
#[derive(Debug, Default, Clone)]
pub struct ShardCounters {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    /// Datagrams dropped, indexed by `DropReason::index`.
    pub dropped: [u64; DropReason::ALL.len()],
    pub forwarded_out: u64,
    pub forwarded_in: u64,
    pub handoffs_in: u64,
    pub handoffs_out: u64,
    /// Handoffs that did not happen: the Adopt message found the owner's inbox full (the session
    /// stayed home), or the owner's table full (the session ended as `handoff_failed`).
    pub handoffs_failed: u64,
    pub sessions_created: u64,
    pub sessions_ended: u64,
    pub session_panics: u64,
    pub offers_rejected: u64,
    /// Sessions ended, by reason (hangup, idle, consent_expired, peer_gone, panic).
    pub ended_by: HashMap<&'static str, u64>,
}

/// Engine-wide settings every shard shares.
#[derive(Debug, Clone)]
pub struct ShardSettings {
    pub node: u16,
    pub shards: u16,
    pub workers: u16,
    /// The advertised ICE candidate address (also the `destination` of every Receive).
    pub public: SocketAddr,
    /// The advertised ICE-TCP passive candidate (RFC 6544, RFC 4571 framing), for networks that
    /// block UDP; `None`: UDP only.
    pub public_tcp: Option<SocketAddr>,
    pub max_sessions_per_shard: usize,
    pub session: SessionConfig,
    /// Seals and checks route tags (ufrags, call ids); the same for every shard of the node.
    pub tag_key: TagKey,
    /// `--max-sessions`: the node's admission count, shared by its shards (a clone shares it).
    pub admission: Admission,
    /// Seeds each shard core's random draws (tag nonces, ICE passwords), mixed with the shard's
    /// id: the shell fills it from the operating system, a test may fix it.
    pub seed: [u8; 32],
}

pub struct ShardCore {
    pub id: u16,
    settings: Arc<ShardSettings>,
    crypto: ServerCrypto,
    /// The core's one source of randomness (seeded by the caller, see `ShardSettings::seed`).
    rng: StdRng,
    table: SessionTable<Box<Session>>,
    /// Sessions adopted from another home shard, by their home tag.
    adopted: HashMap<SessionId, SessionKey, RandomState>,
    /// Peer addresses whose session lives on another shard.
    forward_addrs: HashMap<SocketAddr, (u16, Instant), RandomState>,
    deadlines: DeadlineQueue,
    next_worker: u16,
    pub counters: ShardCounters,
    /// What sessions wrote for the shell (`poll_output`).
    outputs: Outputs,
    /// Messages for other shards, in order (`poll_output` gives them after `outputs`).
    outbox: std::collections::VecDeque<(u16, CoreMsg)>,
    /// `Released` messages the shell could not queue: sent again at the next housekeeping.
    released_retry: Vec<SessionId>,
    /// Sessions whose next reply frame is still to be encoded ahead (`encode_pending`).
    to_encode: std::collections::VecDeque<SessionKey>,
}

impl std::fmt::Debug for ShardCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardCore")
            .field("id", &self.id)
            .field("live", &self.table.live())
            .finish()
    }
}

impl ShardCore {
    pub fn new(id: u16, settings: Arc<ShardSettings>, crypto: ServerCrypto) -> Self {
        let mut seed = settings.seed;
        for (b, i) in seed.iter_mut().zip(id.to_le_bytes()) {
            *b ^= i;
        }
        ShardCore {
            id,
            rng: StdRng::from_seed(seed),
            table: SessionTable::new(id, settings.max_sessions_per_shard),
            settings,
            crypto,
            adopted: HashMap::with_hasher(RandomState::new()),
            forward_addrs: HashMap::with_hasher(RandomState::new()),
            deadlines: DeadlineQueue::new(id),
            next_worker: id,
            counters: ShardCounters::default(),
            // Audio messages sit inline (about 1 KiB each): start small, grow once to the busiest
            // step and keep that.
            outputs: Outputs::with_capacity(64, 16 * 1024),
            outbox: std::collections::VecDeque::with_capacity(64),
            released_retry: Vec::new(),
            to_encode: std::collections::VecDeque::new(),
        }
    }

    pub fn settings(&self) -> &ShardSettings {
        &self.settings
    }

    /// Sessions living on this shard.
    pub fn live_sessions(&self) -> usize {
        self.table.live()
    }

    /// Slots in use (live sessions and forwarding entries).
    pub fn occupied_slots(&self) -> usize {
        self.table.occupied()
    }

    /// How many of this shard's sessions hold each lazily made media part (idle ones hold none).
    pub fn media_held(&self) -> MediaHeld {
        MediaHeld::total(self.table.live_values().map(|s| &**s))
    }

    pub fn armed_deadlines(&self) -> usize {
        self.deadlines.len()
    }

    /// The next thing for the shell to do, in the order it was decided: call after each input
    /// until it returns `None`.
    pub fn poll_output(&mut self) -> Option<Output<'_>> {
        if !self.outputs.is_empty() {
            return self.outputs.pop();
        }
        let _ = self.outputs.pop(); // empty: this frees its byte buffer for reuse
        self.outbox
            .pop_front()
            .map(|(shard, msg)| Output::ToShard { shard, msg })
    }

    /// Runs `f` with the output queue lent out, so that the core's own methods can write to it
    /// while they borrow the core.
    fn with_outputs<R>(&mut self, f: impl FnOnce(&mut Self, &mut Outputs) -> R) -> R {
        let mut out = std::mem::take(&mut self.outputs);
        let r = f(self, &mut out);
        self.outputs = out;
        r
    }

    /// One datagram received on this shard: routed, then delivered to its session here or queued
    /// for the shard that has or will have it.
    pub fn handle_datagram(&mut self, now: Instant, source: Peer, data: &[u8]) {
        self.with_outputs(|c, out| c.handle_datagram_into(now, source, data, out));
    }

    /// Delivers a datagram already routed to `key` (see `route`).
    pub fn deliver(&mut self, now: Instant, key: SessionKey, from: Peer, buf: &[u8]) {
        self.with_outputs(|c, out| c.deliver_into(now, key, from, buf, out));
    }

    /// Runs whatever is due at `now` (see `next_deadline`).
    pub fn handle_timeouts(&mut self, now: Instant) {
        while self.handle_next_timeout(now) {}
    }

    /// Runs the next session whose deadline has come (reaping it if it ended); false when none is
    /// left. A shell drains the output after each, so that one session's uplink reaches its
    /// worker before the others due in the same step have run. Sessions run here have their next
    /// reply frame queued to be encoded ahead (`encode_next`), which the shell does only after
    /// every due session has run and its output has been sent: when many are due at once,
    /// encoding one does not hold back the others' frames.
    pub fn handle_next_timeout(&mut self, now: Instant) -> bool {
        self.with_outputs(|c, out| c.handle_next_timeout_into(now, out))
    }

    /// Encodes ahead the next reply frame of one session the last `handle_timeouts` ran; true
    /// while more are queued. The shell calls it until its time budget for the step is spent (the
    /// core reads no clock), and again between other work.
    pub fn encode_next(&mut self) -> bool {
        self.with_outputs(|c, out| c.encode_next_into(out))
    }

    /// A message from an inference worker.
    pub fn handle_downlink(&mut self, now: Instant, msg: DownlinkMsg) {
        self.with_outputs(|c, out| c.handle_downlink_into(now, msg, out));
    }

    /// A message from another shard.
    pub fn handle_shard_msg(&mut self, now: Instant, msg: CoreMsg) {
        self.with_outputs(|c, out| c.handle_shard_msg_into(now, msg, out));
    }

    /// An `Output::ToShard` that the shell could not queue (shard `to`'s inbox was full): settled
    /// here so that nothing is lost silently.
    pub fn undeliverable(&mut self, now: Instant, to: u16, msg: CoreMsg) {
        self.with_outputs(|c, out| c.undeliverable_into(now, to, msg, out));
    }

    /// An `Output::ToWorker` that found the worker's ring full (the ring counts the drop): its
    /// session settles it (a refused start, or an audio frame dropped).
    pub fn worker_full(&mut self, now: Instant, msg: UplinkMsg) {
        let key = msg.key();
        self.with_outputs(|c, out| {
            let Some(session) = c.table.get_mut(key) else {
                return;
            };
            let result = catch_unwind(AssertUnwindSafe(|| {
                session.worker_refused(now, &msg, out);
                session.deadline()
            }));
            match result {
                Ok(deadline) => c.deadlines.schedule(key, deadline),
                Err(_) => c.on_panic(key, out),
            }
        });
    }

    /// Ends a session by hangup; true if it lived here.
    pub fn hangup(&mut self, key: SessionKey) -> bool {
        self.with_outputs(|c, out| c.hangup_into(key, out))
    }

    /// Shutdown: every session gets a `server_shutdown` event, then is closed.
    pub fn close_all(&mut self, now: Instant) {
        self.with_outputs(|c, out| c.close_all_into(now, out));
    }

    /// Answers an SDP offer and registers the session before the answer leaves.
    pub fn accept_offer(
        &mut self,
        now: Instant,
        body: &[u8],
    ) -> Result<(SessionId, String), OfferError> {
        let config = self.settings.session.clone();
        self.accept_offer_with(now, body, config)
    }

    /// Like [`accept_offer`](Self::accept_offer), with a session config of its own (from the
    /// ephemeral token the client presented).
    pub fn accept_offer_with(
        &mut self,
        now: Instant,
        body: &[u8],
        config: SessionConfig,
    ) -> Result<(SessionId, String), OfferError> {
        // The place is taken first and travels with the session: dropped, it is given back.
        let permit = self
            .settings
            .admission
            .try_admit()
            .ok_or(OfferError::NodeFull(self.settings.admission.max()))?;
        let offer = parse_offer(body).inspect_err(|_| self.counters.offers_rejected += 1)?;
        // The tag (and so the ufrag) must name the slot the session will occupy.
        let key = self.table.next_key().map_err(|_| OfferError::ShardFull)?;
        let tag = SessionId::sealed(
            &self.settings.tag_key,
            self.settings.node,
            self.id,
            key.slot,
            key.generation,
            self.rng.random(),
        );
        let ice_pass = ice_password(&mut self.rng);
        let secret = tag.secret;
        let worker = self.next_worker % self.settings.workers.max(1);
        let built = answer_offer(
            &self.crypto,
            now,
            IceCreds {
                ufrag: tag.ufrag(),
                pass: ice_pass,
            },
            self.settings.public,
            self.settings.public_tcp,
            offer,
            config.opus_dtx,
        )
        .map(|(rtc, answer)| (Session::new(tag, rtc, config, now, worker, permit), answer));
        match built {
            Ok((mut session, answer)) => {
                self.next_worker = self.next_worker.wrapping_add(1);
                session.key = key;
                let deadline = session.deadline();
                let inserted = self
                    .table
                    .insert(secret, Box::new(session))
                    .map_err(|_| OfferError::ShardFull)?;
                debug_assert_eq!(
                    inserted, key,
                    "next_key predicts insert on a single-threaded table"
                );
                self.deadlines.schedule(key, deadline);
                self.counters.sessions_created += 1;
                Ok((tag, answer))
            }
            Err(e) => {
                self.counters.offers_rejected += 1;
                Err(e)
            }
        }
    }

    /// Decides where a datagram goes. Never panics on any input.
    pub fn route(&mut self, now: Instant, source: SocketAddr, buf: &[u8]) -> Route {
        match classify(buf) {
            DatagramKind::Unknown => Route::Drop(DropReason::Garbage),
            DatagramKind::Stun => self.route_stun(now, source, buf),
            _ => {
                if let Some(k) = self.table.by_addr(&source) {
                    return Route::Local(k);
                }
                if let Some((shard, used)) = self.forward_addrs.get_mut(&source) {
                    *used = now;
                    return Route::Forward { shard: *shard };
                }
                Route::Drop(DropReason::UnknownSource)
            }
        }
    }

    fn route_stun(&mut self, now: Instant, source: SocketAddr, buf: &[u8]) -> Route {
        let Ok(msg) = crate::heap::in_dependency(|| StunMessage::parse(buf)) else {
            return Route::Drop(DropReason::BadStun);
        };
        let Some((local, _remote)) = msg.split_username() else {
            // Responses and indications carry no username: route by address.
            return match self.table.by_addr(&source) {
                Some(k) => Route::Local(k),
                None => Route::Drop(DropReason::NoUsername),
            };
        };
        let Ok(tag) = SessionId::parse(server_ufrag(local)) else {
            return Route::Drop(DropReason::UnknownUfrag);
        };
        if tag.node != self.settings.node {
            return Route::Drop(DropReason::WrongNode);
        }
        // Before any work for another shard (a copy, a wake-up): is this a tag we issued?
        if !tag.is_sealed_by(&self.settings.tag_key) {
            return Route::Drop(DropReason::ForgedUfrag);
        }
        if tag.shard != self.id {
            if let Some(k) = self.adopted.get(&tag) {
                return Route::Local(*k);
            }
            if tag.shard >= self.settings.shards {
                return Route::Drop(DropReason::UnknownUfrag);
            }
            self.remember_forward(now, source, tag.shard);
            return Route::Claim {
                home: tag.shard,
                tag,
            };
        }
        match self.table.lookup(tag.home_key(), tag.secret) {
            Ok(Entry::Live { .. }) => Route::Local(tag.home_key()),
            Ok(Entry::Moved { shard, .. }) => {
                let shard = *shard;
                self.remember_forward(now, source, shard);
                Route::Forward { shard }
            }
            Err(Miss::NoSuchSlot | Miss::StaleGeneration | Miss::BadSecret) => {
                Route::Drop(DropReason::StaleSession)
            }
        }
    }

    /// Another shard told us where datagrams from `source` belong.
    fn learn_forward(&mut self, now: Instant, source: SocketAddr, shard: u16) {
        if shard != self.id && shard < self.settings.shards {
            self.remember_forward(now, source, shard);
        }
    }

    fn remember_forward(&mut self, now: Instant, source: SocketAddr, shard: u16) {
        if self.forward_addrs.len() < MAX_FORWARD_ADDRS || self.forward_addrs.contains_key(&source)
        {
            self.forward_addrs.insert(source, (shard, now));
        }
    }

    /// Counts a drop.
    fn count_drop(&mut self, reason: DropReason) {
        self.counters.dropped[reason.index()] += 1;
    }

    /// Delivers a datagram to a local session. Panics inside the session close only that session.
    fn deliver_into(
        &mut self,
        now: Instant,
        key: SessionKey,
        from: Peer,
        buf: &[u8],
        out: &mut Outputs,
    ) {
        let Peer {
            addr: source,
            proto,
        } = from;
        let local = match proto {
            Protocol::Tcp => self.settings.public_tcp,
            _ => Some(self.settings.public),
        };
        let Some(local) = local else {
            self.count_drop(DropReason::Rejected);
            return;
        };
        let Some(session) = self.table.get_mut(key) else {
            self.count_drop(DropReason::StaleSession);
            return;
        };
        // A binding request is checked here, against the session's ICE password (RFC 8445
        // §7.3), before str0m or any routing state sees it: only an authenticated check binds
        // the address and counts as consent (RFC 7675).
        let check = classify(buf) == DatagramKind::Stun && buf.starts_with(&[0x00, 0x01]);
        if check && !session.authenticates(buf) {
            self.count_drop(DropReason::Unauthenticated);
            return;
        }
        let result = catch_unwind(AssertUnwindSafe(|| {
            let r = session.handle_datagram(now, from, local, buf, out);
            if check {
                session.on_consent(now);
            }
            (r.is_ok(), session.deadline())
        }));
        match result {
            Ok((ok, deadline)) => {
                if !ok {
                    self.count_drop(DropReason::Rejected);
                }
                if check {
                    self.table.bind_addr(source, key);
                    self.forward_addrs.remove(&source);
                }
                self.deadlines.schedule(key, deadline);
            }
            Err(_) => self.on_panic(key, out),
        }
    }

    fn handle_next_timeout_into(&mut self, now: Instant, out: &mut Outputs) -> bool {
        while let Some(key) = self.deadlines.pop_due(now) {
            let Some(session) = self.table.get_mut(key) else {
                continue;
            };
            let result = catch_unwind(AssertUnwindSafe(|| {
                session.handle_timeout(now, out);
                (session.is_alive(), session.deadline())
            }));
            match result {
                Ok((true, deadline)) => {
                    self.deadlines.schedule(key, deadline);
                    self.to_encode.push_back(key);
                }
                Ok((false, _)) => self.end_session(key, out),
                Err(_) => self.on_panic(key, out),
            }
            return true;
        }
        false
    }

    fn encode_next_into(&mut self, out: &mut Outputs) -> bool {
        if let Some(key) = self.to_encode.pop_front() {
            if let Some(session) = self.table.get_mut(key) {
                if catch_unwind(AssertUnwindSafe(|| session.encode_ahead())).is_err() {
                    self.on_panic(key, out);
                }
            }
        }
        !self.to_encode.is_empty()
    }

    pub fn has_pending_encodes(&self) -> bool {
        !self.to_encode.is_empty()
    }

    fn handle_downlink_into(&mut self, now: Instant, msg: DownlinkMsg, out: &mut Outputs) {
        let key = msg.key();
        let Some(session) = self.table.get_mut(key) else {
            return; // the session ended; late replies are dropped
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            session.handle_downlink(now, msg, out);
            session.deadline()
        }));
        match result {
            Ok(deadline) => self.deadlines.schedule(key, deadline),
            Err(_) => self.on_panic(key, out),
        }
    }

    fn handle_datagram_into(&mut self, now: Instant, source: Peer, data: &[u8], out: &mut Outputs) {
        self.counters.datagrams_in += 1;
        match self.route(now, source.addr, data) {
            Route::Local(key) => self.deliver_into(now, key, source, data, out),
            Route::Claim { home, tag } => {
                let datagram = Box::new(Datagram::new(source, data));
                let from = self.id;
                self.send_to_shard(
                    home,
                    CoreMsg::Claim {
                        tag,
                        from,
                        datagram,
                    },
                );
            }
            Route::Forward { shard } => self.forward(shard, source, data),
            Route::Drop(reason) => self.count_drop(reason),
        }
    }

    fn handle_shard_msg_into(&mut self, now: Instant, msg: CoreMsg, out: &mut Outputs) {
        match msg {
            CoreMsg::Claim {
                tag,
                from,
                datagram,
            } => match self.on_claim(tag, from) {
                ClaimOutcome::HandOver(session) => {
                    self.send_to_shard(from, CoreMsg::Adopt { session, datagram })
                }
                ClaimOutcome::Forward { shard } => {
                    let source = datagram.source;
                    let learn = CoreMsg::Learn {
                        source: source.addr,
                        shard,
                    };
                    self.send_to_shard(from, learn);
                    self.forward(shard, source, datagram.data());
                }
                ClaimOutcome::Drop(r) => self.count_drop(r),
            },
            CoreMsg::Adopt { session, datagram } => match self.adopt(session) {
                Ok(key) => self.deliver_into(now, key, datagram.source, datagram.data(), out),
                Err(session) => self.refuse_adoption(session, out),
            },
            CoreMsg::Forward { datagram } => {
                self.counters.forwarded_in += 1;
                match self.route(now, datagram.source.addr, datagram.data()) {
                    Route::Local(key) => {
                        self.deliver_into(now, key, datagram.source, datagram.data(), out)
                    }
                    // No second hop for forwarded datagrams: loops are impossible by construction.
                    Route::Drop(r) => self.count_drop(r),
                    _ => self.count_drop(DropReason::StaleSession),
                }
            }
            CoreMsg::Learn { source, shard } => self.learn_forward(now, source, shard),
            CoreMsg::Released { tag } => self.on_released(tag),
        }
    }

    fn undeliverable_into(&mut self, now: Instant, to: u16, msg: CoreMsg, out: &mut Outputs) {
        match msg {
            CoreMsg::Adopt { session, datagram } => {
                // The session stays here, and this datagram with it; the claiming shard forwards
                // the rest of its traffic here.
                tracing::warn!(
                    shard = self.id,
                    claimed_by = to,
                    "handoff not sent (inbox full); the session stays on its home shard"
                );
                match self.keep_home(session) {
                    Ok(key) => self.deliver_into(now, key, datagram.source, datagram.data(), out),
                    Err(session) => self.refuse_adoption(session, out),
                }
            }
            CoreMsg::Forward { .. } => {
                self.counters.forwarded_out = self.counters.forwarded_out.saturating_sub(1);
                self.count_drop(DropReason::QueueFull);
            }
            CoreMsg::Claim { .. } => self.count_drop(DropReason::QueueFull),
            // The claimer asks the home again on the next check, and is told again.
            CoreMsg::Learn { .. } => {}
            // Retried at the next housekeeping: the home's entry must not stay `Moved` forever.
            CoreMsg::Released { tag } => self.released_retry.push(tag),
        }
    }

    fn send_to_shard(&mut self, shard: u16, msg: CoreMsg) {
        self.outbox.push_back((shard, msg));
    }

    fn forward(&mut self, shard: u16, source: Peer, data: &[u8]) {
        self.counters.forwarded_out += 1;
        let datagram = Box::new(Datagram::new(source, data));
        self.send_to_shard(shard, CoreMsg::Forward { datagram });
    }

    /// The home side of a claim from shard `from`.
    fn on_claim(&mut self, tag: SessionId, from: u16) -> ClaimOutcome {
        let key = tag.home_key();
        match self.table.lookup(key, tag.secret) {
            Ok(Entry::Live { .. }) => {
                let Some(session) = self.table.mark_moved(key, from) else {
                    return ClaimOutcome::Drop(DropReason::StaleSession);
                };
                self.deadlines.cancel(key);
                self.table.unbind_addrs(key);
                self.counters.handoffs_out += 1;
                ClaimOutcome::HandOver(session)
            }
            Ok(Entry::Moved { shard, .. }) => ClaimOutcome::Forward { shard: *shard },
            Err(_) => ClaimOutcome::Drop(DropReason::StaleSession),
        }
    }

    /// The owner side of a handoff: inserts the session and returns its key here.
    fn adopt(&mut self, session: Box<Session>) -> Result<SessionKey, Box<Session>> {
        if self.table.next_key().is_err() {
            return Err(session);
        }
        let tag = session.tag;
        let Ok(key) = self.table.insert(tag.secret, session) else {
            unreachable!("next_key just said there is room");
        };
        if let Some(s) = self.table.get_mut(key) {
            s.key = key;
            let deadline = s.deadline();
            self.deadlines.schedule(key, deadline);
        }
        self.adopted.insert(tag, key);
        self.counters.handoffs_in += 1;
        Ok(key)
    }

    /// The handoff of `session` could not be sent to the shard that claimed it (its inbox was
    /// full): the session stays here, live, as if never claimed. Returns its key, or the session
    /// if its slot is not waiting for it.
    fn keep_home(&mut self, session: Box<Session>) -> Result<SessionKey, Box<Session>> {
        let key = session.tag.home_key();
        self.table.restore_moved(key, session)?;
        if let Some(s) = self.table.get_mut(key) {
            self.deadlines.schedule(key, s.deadline());
        }
        self.counters.handoffs_out = self.counters.handoffs_out.saturating_sub(1);
        self.counters.handoffs_failed += 1;
        Ok(key)
    }

    /// The owner side of a handoff that found no room here (table full): the session ends,
    /// counted as `handoff_failed`, and its home is told to free its entry (`take_released`).
    fn refuse_adoption(&mut self, mut session: Box<Session>, out: &mut Outputs) {
        let tag = session.tag;
        tracing::warn!(call = %tag, shard = self.id, "handoff refused: this shard's table is full; session ended");
        let _ = catch_unwind(AssertUnwindSafe(|| {
            session.close(out);
            drop(session);
        }));
        self.send_to_shard(tag.shard, CoreMsg::Released { tag });
        self.counters.handoffs_failed += 1;
        *self
            .counters
            .ended_by
            .entry(EndReason::HandoffFailed.label())
            .or_insert(0) += 1;
        self.counters.sessions_ended += 1;
        out.event(ShardEvent::SessionEnded { call: tag });
    }

    fn hangup_into(&mut self, key: SessionKey, out: &mut Outputs) -> bool {
        let Some(session) = self.table.get_mut(key) else {
            return false;
        };
        let _ = catch_unwind(AssertUnwindSafe(|| session.close(out)));
        self.end_session(key, out);
        true
    }

    /// Finds a session by its call tag: here, adopted here, or moved elsewhere.
    pub fn find_call(&self, tag: &SessionId) -> CallLocation {
        if tag.node != self.settings.node || !tag.is_sealed_by(&self.settings.tag_key) {
            return CallLocation::Unknown;
        }
        if let Some(k) = self.adopted.get(tag) {
            return CallLocation::Here(*k);
        }
        if tag.shard != self.id {
            return CallLocation::Shard(tag.shard);
        }
        let key = tag.home_key();
        match self.table.lookup(key, tag.secret) {
            Ok(Entry::Live { .. }) => CallLocation::Here(key),
            Ok(Entry::Moved { shard, .. }) => CallLocation::Shard(*shard),
            Err(_) => CallLocation::Unknown,
        }
    }

    /// The owner reported the end of a session that was handed over from here.
    fn on_released(&mut self, tag: SessionId) {
        let key = tag.home_key();
        if let Ok(Entry::Moved { .. }) = self.table.lookup(key, tag.secret) {
            self.table.remove(key);
        }
    }

    /// Earliest session deadline.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.deadlines.peek_deadline()
    }

    /// Periodic upkeep: forget idle forwarding addresses, send again the `Released` messages that
    /// found a full inbox.
    pub fn housekeeping(&mut self, now: Instant) {
        self.forward_addrs
            .retain(|_, (_, used)| now.saturating_duration_since(*used) < FORWARD_IDLE);
        for tag in std::mem::take(&mut self.released_retry) {
            self.send_to_shard(tag.shard, CoreMsg::Released { tag });
        }
    }

    fn close_all_into(&mut self, now: Instant, out: &mut Outputs) {
        let keys: Vec<SessionKey> = self.table.live_keys().collect();
        for k in keys {
            if let Some(session) = self.table.get_mut(k) {
                let _ = catch_unwind(AssertUnwindSafe(|| session.notify_shutdown(now, out)));
            }
            self.hangup_into(k, out);
        }
    }

    fn on_panic(&mut self, key: SessionKey, out: &mut Outputs) {
        self.counters.session_panics += 1;
        tracing::error!(shard = self.id, slot = key.slot, "session panicked; closed");
        self.end_session_as(key, true, out);
    }

    fn end_session(&mut self, key: SessionKey, out: &mut Outputs) {
        self.end_session_as(key, false, out);
    }

    fn end_session_as(&mut self, key: SessionKey, panicked: bool, out: &mut Outputs) {
        self.deadlines.cancel(key);
        if let Some(Entry::Live { value, .. }) = self.table.remove(key) {
            let mut session = value;
            let tag = session.tag;
            let end = session.end_reason();
            let reason = if panicked { "panic" } else { end.label() };
            *self.counters.ended_by.entry(reason).or_insert(0) += 1;
            if !panicked && end.is_setup_failure() {
                tracing::warn!(
                    call = %tag, reason, error = session.failure().unwrap_or("no error reported; the peer went silent"),
                    "session failed to connect"
                );
            }
            let up = session.uplink_stats();
            tracing::debug!(
                call = %tag, reason, decoded = up.decoded, concealed = up.concealed,
                fec_recovered = up.fec_recovered, late = up.late, reordered = up.reordered,
                hold_ms_buckets = ?up.hold.0, "session ended"
            );
            let _ = catch_unwind(AssertUnwindSafe(|| {
                session.close(out);
                drop(session);
            }));
            if tag.shard != self.id {
                self.adopted.remove(&tag);
                self.send_to_shard(tag.shard, CoreMsg::Released { tag });
            }
            self.counters.sessions_ended += 1;
            out.event(ShardEvent::SessionEnded { call: tag });
        }
    }
}

/// Where a call lives, seen from one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallLocation {
    Here(SessionKey),
    Shard(u16),
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::DropReason;

    #[test]
    fn drop_reasons_index_their_counters_in_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
        let mut labels: Vec<_> = DropReason::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), DropReason::ALL.len(), "labels are distinct");
    }
}
