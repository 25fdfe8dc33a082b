//! Tern's sans-IO core (one `ShardCore`) and the echo agent, driven in virtual time against
//! `Client`s over an in-memory `Link`. No sockets, no threads, no clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_engine::agent::echo::EchoAgent;
use tern_engine::agent::worker_turn::WorkerTurnModel;
use tern_engine::agent::{Agent, AgentOutput};
use tern_engine::core::admission::Admission;
use tern_engine::core::output::{Output, ShardEvent};
use tern_engine::core::peer_addr::Peer;
use tern_engine::core::ring_msg::{DownlinkMsg, UplinkMsg};
use tern_engine::core::rtc_setup::ServerCrypto;
use tern_engine::core::session::SessionConfig;
use tern_engine::core::session_id::TagKey;
use tern_engine::core::session_limits::EventRejected;
use tern_engine::core::shard::{Route, ShardCore, ShardSettings};
use tern_engine::core::shard_msg::CoreMsg;
use tern_engine::core::turn::barge_in::BargeInOutcome;
use tern_engine::core::turn::latency::TurnLatency;
use tern_engine::core::turn::turn_model::TurnAnswer;

use super::{Client, Link};

#[derive(Default)]
pub struct CollectIo {
    pub out: Vec<(SocketAddr, Vec<u8>)>,
    pub to_agent: Vec<UplinkMsg>,
    pub setups: Vec<Duration>,
    pub downlink_frames: usize,
    /// Uplink frames by origin: decoded, concealed, FEC-recovered, silence.
    pub uplink_origins: [usize; 4],
    pub uplink_late: usize,
    /// Uplink frames whose packet waited in the reorder buffer, and the longest wait.
    pub uplink_held: usize,
    pub max_hold: Duration,
    pub barge_ins: Vec<BargeInOutcome>,
    pub turn_latencies: Vec<TurnLatency>,
    /// Sessions that ended (each releases its admission exactly once).
    pub ended: usize,
    /// Client events refused, by reason.
    pub events_rejected: Vec<EventRejected>,
    /// The turn model's answers the shard counted, in order.
    pub turn_model_answers: Vec<TurnAnswer>,
    /// Messages for other shards, in order (a `Cluster` carries them).
    pub to_shard: Vec<(u16, CoreMsg)>,
    /// The worker's ring is full: every message for it goes back to the core.
    pub worker_ring_full: bool,
    /// Messages for the worker that went back.
    pub worker_refused: usize,
}

impl CollectIo {
    /// Pulls everything `core` decided (as the shell's shard does after each input).
    pub fn collect(&mut self, core: &mut ShardCore, now: Instant) {
        loop {
            let refused = match core.poll_output() {
                None => return,
                Some(Output::ToWorker { msg, .. }) if self.worker_ring_full => Some(msg),
                Some(out) => {
                    match out {
                        Output::Transmit { to, payload, .. } => {
                            self.out.push((to.addr, payload.to_vec()))
                        }
                        Output::ToWorker { msg, .. } => self.to_agent.push(msg),
                        Output::ToShard { shard, msg } => self.to_shard.push((shard, msg)),
                        Output::Record { .. } => {}
                        Output::Event(e) => self.count(e),
                    }
                    None
                }
            };
            if let Some(msg) = refused {
                self.worker_refused += 1;
                core.worker_full(now, msg);
            }
        }
    }

    fn count(&mut self, event: ShardEvent) {
        match event {
            ShardEvent::Connected { setup } => self.setups.push(setup),
            ShardEvent::DownlinkSent { .. } => self.downlink_frames += 1,
            ShardEvent::UplinkFrame { origin, hold } => {
                self.uplink_origins[origin.index()] += 1;
                if hold > Duration::ZERO {
                    self.uplink_held += 1;
                    self.max_hold = self.max_hold.max(hold);
                }
            }
            ShardEvent::UplinkLate => self.uplink_late += 1,
            ShardEvent::BargeIn(outcome) => self.barge_ins.push(outcome),
            ShardEvent::SessionEnded { .. } => self.ended += 1,
            ShardEvent::TurnLatency(latency) => self.turn_latencies.push(latency),
            ShardEvent::EventRejected(reason) => self.events_rejected.push(reason),
            ShardEvent::TurnModel { answer, .. } => self.turn_model_answers.push(answer),
            ShardEvent::Paced { .. } => {}
        }
    }
}

impl VirtualTurnModel {
    fn on_message(&mut self, now: Instant, m: &UplinkMsg) {
        let mut answers = Replies::default();
        // Virtual time stands still while the scorer works, so the question's deadline (virtual)
        // means nothing to it (wall clock): the run itself decides when the answer arrives.
        let far = std::time::Instant::now() + Duration::from_secs(600);
        match *m {
            UplinkMsg::ScoreTurn {
                key,
                index,
                asked_at,
                ..
            } => self.model.on_message(
                &UplinkMsg::ScoreTurn {
                    key,
                    index,
                    asked_at,
                    deadline: far,
                },
                &mut answers,
            ),
            _ => self.model.on_message(m, &mut answers),
        }
        if matches!(m, UplinkMsg::ScoreTurn { .. }) {
            self.asked += 1;
        }
        // Wait (wall clock) for the scorer: virtual time stands still meanwhile.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while answers.0.len() < self.asked && std::time::Instant::now() < deadline {
            std::thread::park_timeout(Duration::from_millis(10));
            self.model.poll(&mut answers);
        }
        self.asked -= answers.0.len().min(self.asked);
        let at = now + self.delay;
        self.pending.extend(answers.0.into_iter().map(|a| (at, a)));
    }

    fn due(&mut self, now: Instant, out: &mut Replies) {
        let (due, later): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|(t, _)| *t <= now);
        self.pending = later;
        out.0.extend(due.into_iter().map(|(_, m)| m));
    }
}

/// What an agent sent back in one step.
#[derive(Default)]
pub struct Replies(pub Vec<DownlinkMsg>);

impl AgentOutput for Replies {
    fn send(&mut self, msg: DownlinkMsg) -> Result<(), DownlinkMsg> {
        self.0.push(msg);
        Ok(())
    }
}

pub struct VirtualServer {
    pub core: ShardCore,
    pub io: CollectIo,
    pub agent: EchoAgent,
    pub public: SocketAddr,
    pub unrouted: usize,
    /// Addresses the server sent to that belong to no client (a flood source must get nothing).
    pub stray: Vec<SocketAddr>,
    /// `--turn-model smart-turn`: the worker's model (`with_turn_model`).
    pub turn_model: Option<VirtualTurnModel>,
}

/// The worker's turn model in a virtual-time run: its scorer thread answers in wall-clock time,
/// so the run waits for each answer, then hands it to the core `delay` of virtual time after the
/// question (what a worker's decision takes).
pub struct VirtualTurnModel {
    pub model: WorkerTurnModel,
    pub delay: Duration,
    asked: usize,
    pending: Vec<(Instant, DownlinkMsg)>,
}

impl VirtualServer {
    pub fn new() -> Self {
        Self::with_session(SessionConfig::default())
    }

    /// The settings of a one-shard node at `public` whose sessions get `session`.
    pub fn settings(public: SocketAddr, session: SessionConfig) -> ShardSettings {
        ShardSettings {
            node: 0,
            shards: 1,
            workers: 1,
            public,
            public_tcp: None,
            max_sessions_per_shard: 64,
            session,
            tag_key: TagKey::random(),
            admission: Admission::unlimited(),
            // Fixed: a run's nonces and ICE passwords are the same every time.
            seed: [7; 32],
        }
    }

    /// A server whose sessions get `session` (limits, turn settings).
    pub fn with_session(session: SessionConfig) -> Self {
        let public: SocketAddr = "10.0.0.1:3478".parse().expect("addr");
        let settings = Self::settings(public, session);
        let crypto = ServerCrypto::new().expect("crypto");
        VirtualServer {
            core: ShardCore::new(0, Arc::new(settings), crypto),
            io: CollectIo::default(),
            agent: EchoAgent::default(),
            public,
            unrouted: 0,
            stray: Vec::new(),
            turn_model: None,
        }
    }

    /// Runs the worker's turn model beside the echo agent; answers reach the core `delay` after
    /// the question.
    pub fn enable_turn_model(&mut self, delay: Duration) {
        let model = WorkerTurnModel::start(0, std::thread::current(), &[]).expect("scorer starts");
        self.turn_model = Some(VirtualTurnModel {
            model,
            delay,
            asked: 0,
            pending: Vec::new(),
        });
    }

    /// Offers from `client`; returns the call id.
    pub fn connect(&mut self, now: Instant, client: &mut Client, offer: &str) -> String {
        let (tag, answer) = self
            .core
            .accept_offer(now, offer.as_bytes())
            .expect("offer accepted");
        client.accept_answer(&answer);
        tag.call_id()
    }

    /// Runs client and server for `dur` of virtual time in 1 ms steps, over lossy links.
    /// Connects a client that speaks `hello-24k.wav` once and runs 12 s of virtual time over the
    /// given links. Returns the server, the client and how many 20 ms frames were spoken.
    pub fn echo_turn(up: &mut Link, down: &mut Link) -> (VirtualServer, Client, usize) {
        let (_, speech) = super::load_wav("hello-24k.wav");
        let speech_frames = speech.len() / 480;
        let t0 = Instant::now();
        let mut server = VirtualServer::new();
        let addr = "10.0.0.2:50000".parse().expect("addr");
        let (mut client, offer) = Client::new(t0, addr, speech);
        server.connect(t0, &mut client, &offer);
        server.run(t0, Duration::from_secs(12), &mut client, up, down);
        (server, client, speech_frames)
    }

    pub fn run(
        &mut self,
        start: Instant,
        dur: Duration,
        client: &mut Client,
        up: &mut Link,
        down: &mut Link,
    ) -> Instant {
        self.run_many(start, dur, &mut [(client, up, down)])
    }

    /// Runs several clients, each over its own pair of links, in 1 ms steps; replies go to the
    /// client whose address they are for.
    pub fn run_many(
        &mut self,
        start: Instant,
        dur: Duration,
        peers: &mut [(&mut Client, &mut Link, &mut Link)],
    ) -> Instant {
        self.run_with(start, dur, peers, |_, _, _| {})
    }

    /// Like `run_many`, calling `each_step` once per step with the datagrams the clients' links
    /// delivered in it (a test may inject datagrams of its own through `inject`).
    pub fn run_with(
        &mut self,
        start: Instant,
        dur: Duration,
        peers: &mut [(&mut Client, &mut Link, &mut Link)],
        mut each_step: impl FnMut(&mut Self, Instant, &[(SocketAddr, Vec<u8>)]),
    ) -> Instant {
        let mut now = start;
        let end = start + dur;
        let mut delivered = Vec::new();
        while now < end {
            delivered.clear();
            for (client, up, _) in peers.iter_mut() {
                for (to, d) in client.poll(now) {
                    up.send(now, client.addr, to, d);
                }
                for (from, _to, d) in up.due(now) {
                    match self.core.route(now, from, &d) {
                        Route::Local(k) => self.core.deliver(now, k, Peer::udp(from), &d),
                        _ => self.unrouted += 1,
                    }
                    delivered.push((from, d));
                }
            }
            each_step(self, now, &delivered);
            self.core.handle_timeouts(now);
            self.io.collect(&mut self.core, now);
            let mut replies = Replies::default();
            for m in self.io.to_agent.drain(..) {
                if let Some(t) = self.turn_model.as_mut() {
                    t.on_message(now, &m);
                    if matches!(m, UplinkMsg::ScoreTurn { .. }) {
                        continue;
                    }
                }
                self.agent.on_message(now, m, &mut replies);
            }
            if let Some(t) = self.turn_model.as_mut() {
                t.due(now, &mut replies);
            }
            self.agent.poll(now, &mut replies);
            for m in replies.0 {
                self.core.handle_downlink(now, m);
            }
            self.core.handle_timeouts(now);
            // As the shell does after each step: encode the next reply frames ahead.
            while self.core.encode_next() {}
            self.io.collect(&mut self.core, now);
            for (to, d) in self.io.out.drain(..) {
                match peers.iter_mut().find(|(c, _, _)| c.addr == to) {
                    Some((_, _, down)) => down.send(now, self.public, to, d),
                    None => self.stray.push(to),
                }
            }
            for (client, _, down) in peers.iter_mut() {
                for (from, _to, d) in down.due(now) {
                    client.receive(now, from, &d);
                }
            }
            now += Duration::from_millis(1);
        }
        now
    }

    /// A datagram from `from` that no client sent, handled as the shard handles any datagram
    /// (routing, drops counted by reason).
    pub fn inject(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.core.handle_datagram(now, Peer::udp(from), data);
        self.io.collect(&mut self.core, now);
    }
}
