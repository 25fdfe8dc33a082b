//! One shard: a pinned glommio executor that owns a UDP socket in the SO_REUSEPORT group, a
//! `ShardCore`, its one timer, an inbox from other shards and workers, and an HTTP listener.
//!
//! Three long-lived tasks share the shard state (`Rc<RefCell<_>>`, never borrowed across an
//! await): the receive loop (one task for the socket's lifetime: dropping an in-flight receive can
//! lose a datagram), the timer loop (armed at the earliest session deadline, re-armed when an
//! earlier one appears) and the inbox loop (woken by the doorbell). Each processing step ends with
//! `finish_step`: flush the send batch, wake workers that got messages, re-arm the timer.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use super::worker::WorkerLink;
use crate::core::media::decoder::FrameOrigin;
use crate::core::output::{Output, ShardEvent};
use crate::core::peer_addr::{Peer, Protocol};
use crate::core::ring_msg::UplinkMsg;
use crate::core::shard::CallLocation;
use crate::core::shard::ShardCore;
use crate::core::shard_msg::CoreMsg;
use crate::core::turn::latency::EndRule;
use crate::core::turn::turn_model::TurnAnswer;

use super::fleet::{FleetEvent, ShardFleet};
use super::ice_tcp::{self, TcpPeers};
use super::mesh::{Mesh, ShardMsg};
use super::metrics::{record, Latencies, ShardSnapshot};
use super::net::SendBatch;
use super::recorder::ShardRecorder;
use super::recv_batch::DatagramHandler;
use super::relay_ingress::RelayIngress;
use super::rings::Doorbell;

/// Housekeeping (forwarding table expiry, stop flag) runs at least this often.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// Encoding ahead done in one step before the shard yields to other work.
const ENCODE_BUDGET: Duration = Duration::from_millis(1);

/// The IO side a `ShardCore` writes into.
pub struct ShardIo {
    pub batch: SendBatch,
    pub latencies: Latencies,
    workers: Vec<(Arc<WorkerLink>, Thread)>,
    wake_worker: Vec<bool>,
    /// The workers run the voice detector (`--vad silero`): audio wakes them at once.
    pub worker_detects_voice: bool,
    downlink_taken: Vec<Instant>,
    events_rejected: HashMap<&'static str, u64>,
    barge_ins: HashMap<&'static str, u64>,
    /// The turn model's answers by outcome.
    turn_model_answers: HashMap<&'static str, u64>,
    /// Answered turns by end rule (see `EndRule::ALL`).
    turn_end_rules: [u64; EndRule::ALL.len()],
    /// Uplink frames by origin, then late packets (see `UPLINK_LABELS`).
    uplink_frames: [u64; 5],
    /// ICE-TCP connections held by this shard.
    pub tcp: TcpPeers,
    /// This shard's queue to the recorder thread (`--record-dir`).
    pub recorder: Option<ShardRecorder>,
    /// This shard's queue to the fleet thread (`--fleet`).
    pub fleet: Option<ShardFleet>,
    /// Clients that reach this shard through `tern relay` (`--advertise-relay`).
    pub relay: Option<RelayIngress>,
}

const UPLINK_LABELS: [&str; 5] = [
    FrameOrigin::LABELS[0],
    FrameOrigin::LABELS[1],
    FrameOrigin::LABELS[2],
    FrameOrigin::LABELS[3],
    "late",
];

/// An output the shell could not queue: it goes back to the core.
// Audio is inline (as in `ring_msg`): it goes back without an allocation.
#[allow(clippy::large_enum_variant)]
enum Refused {
    Worker(UplinkMsg),
    Shard(u16, CoreMsg),
}

impl ShardIo {
    /// Carries out one output of the core; returns it if its ring or inbox was full.
    fn apply(&mut self, out: Output<'_>, mesh: &Mesh) -> Option<Refused> {
        match out {
            Output::Transmit { to, payload, .. } => match to.proto {
                Protocol::Udp => match self.relay.as_ref().and_then(|r| r.route(&to.addr)) {
                    Some((relay, head)) => self.batch.push_parts(relay, head.bytes(), payload),
                    None => self.batch.push(to.addr, payload),
                },
                _ => self.tcp.send(to.addr, payload),
            },
            Output::ToWorker { worker, msg } => return self.push_to_worker(worker, msg),
            Output::ToShard { shard, msg } => {
                if let Err(ShardMsg::Core(msg)) = mesh.send(shard, ShardMsg::Core(msg)) {
                    return Some(Refused::Shard(shard, msg));
                }
            }
            Output::Record { call, at, event } => {
                if let Some(r) = &self.recorder {
                    r.push(call, at, event);
                }
            }
            Output::Event(e) => self.count(e),
        }
        None
    }

    fn push_to_worker(&mut self, worker: u16, msg: UplinkMsg) -> Option<Refused> {
        let Some((link, _)) = self.workers.get(worker as usize) else {
            return Some(Refused::Worker(msg));
        };
        let received_at = match &msg {
            UplinkMsg::Audio { received_at, .. } => Some(*received_at),
            _ => None,
        };
        let urgent = msg.is_urgent(self.worker_detects_voice);
        if let Err(msg) = link.uplink.push(msg) {
            return Some(Refused::Worker(msg));
        }
        if let Some(t) = received_at {
            record(&mut self.latencies.uplink, t.elapsed());
        }
        // What can wait still wakes the worker once its ring is a quarter full.
        if urgent || link.uplink.len() >= link.uplink.capacity() / 4 {
            self.wake_worker[worker as usize] = true;
        }
        None
    }

    fn count(&mut self, event: ShardEvent) {
        match event {
            ShardEvent::Connected { setup } => record(&mut self.latencies.setup, setup),
            ShardEvent::DownlinkSent { taken_at } => {
                if self.downlink_taken.len() < self.downlink_taken.capacity() {
                    self.downlink_taken.push(taken_at);
                }
            }
            ShardEvent::SessionEnded { call } => {
                if let Some(f) = &self.fleet {
                    f.push(FleetEvent::CallEnded(call));
                }
            }
            ShardEvent::EventRejected(reason) => {
                *self.events_rejected.entry(reason.label()).or_insert(0) += 1;
            }
            ShardEvent::BargeIn(outcome) => {
                *self.barge_ins.entry(outcome.label()).or_insert(0) += 1;
            }
            ShardEvent::Paced { late_by } => record(&mut self.latencies.pacing, late_by),
            ShardEvent::UplinkFrame { origin, hold } => {
                self.uplink_frames[origin.index()] += 1;
                record(&mut self.latencies.hold, hold);
            }
            ShardEvent::UplinkLate => self.uplink_frames[4] += 1,
            ShardEvent::TurnModel { answer, waited } => {
                let outcome = match answer {
                    TurnAnswer::Scored { model_us, .. } => {
                        record(
                            &mut self.latencies.turn_model_cpu,
                            Duration::from_micros(u64::from(model_us)),
                        );
                        record(&mut self.latencies.turn_model_wait, waited);
                        "scored"
                    }
                    TurnAnswer::Unanswered(why) => why.label(),
                };
                *self.turn_model_answers.entry(outcome).or_insert(0) += 1;
            }
            ShardEvent::TurnLatency(l) => {
                self.turn_end_rules[l.rule.index()] += 1;
                for (h, d) in self.latencies.turn.iter_mut().zip(l.stages) {
                    record(h, d);
                }
                record(&mut self.latencies.turn[4], l.total());
            }
        }
    }

    /// Sends the batch, then records the engine-added latency of the reply frames in it.
    fn flush(&mut self) {
        self.batch.flush();
        self.record_downlink_sent();
    }
    /// Reply frames just handed to the kernel: their engine-added downlink latency.
    fn record_downlink_sent(&mut self) {
        if !self.downlink_taken.is_empty() {
            let sent = Instant::now();
            for t in self.downlink_taken.drain(..) {
                record(
                    &mut self.latencies.downlink,
                    sent.saturating_duration_since(t),
                );
            }
        }
    }
}

/// State shared by the tasks of one shard.
pub struct ShardState {
    pub core: ShardCore,
    pub io: ShardIo,
    pub mesh: Mesh,
    pub stopping: bool,
    timer_target: Option<Instant>,
    timer_waker: Option<Waker>,
    timer_kick: bool,
}

pub type SharedShard = Rc<RefCell<ShardState>>;

impl ShardState {
    /// `reply_from`: the source address of every datagram sent (see `net::reply_source`).
    pub fn new(
        core: ShardCore,
        fd: std::os::fd::RawFd,
        reply_from: Option<std::net::IpAddr>,
        mesh: Mesh,
        workers: Vec<(Arc<WorkerLink>, Thread)>,
    ) -> Self {
        let n = workers.len();
        ShardState {
            core,
            io: ShardIo {
                batch: SendBatch::new(fd, reply_from),
                latencies: Latencies::default(),
                workers,
                wake_worker: vec![false; n],
                worker_detects_voice: false,
                downlink_taken: Vec::with_capacity(4096),
                events_rejected: HashMap::new(),
                barge_ins: HashMap::new(),
                turn_model_answers: HashMap::new(),
                turn_end_rules: [0; EndRule::ALL.len()],
                uplink_frames: [0; 5],
                tcp: TcpPeers::default(),
                recorder: None,
                fleet: None,
                relay: None,
            },
            mesh,
            stopping: false,
            timer_target: None,
            timer_waker: None,
            timer_kick: false,
        }
    }

    /// Handles one received datagram (routing and the handoff protocol are the core's).
    pub fn on_datagram(&mut self, now: Instant, source: Peer, data: &[u8]) {
        self.core.handle_datagram(now, source, data);
        self.drain_outputs(now);
    }

    /// Carries out everything the core decided so far; what finds a full ring or inbox goes back
    /// to the core, which may decide more.
    fn drain_outputs(&mut self, now: Instant) {
        loop {
            let refused = match self.core.poll_output() {
                Some(out) => self.io.apply(out, &self.mesh),
                None => return,
            };
            match refused {
                Some(Refused::Worker(msg)) => self.core.worker_full(now, msg),
                Some(Refused::Shard(to, msg)) => self.core.undeliverable(now, to, msg),
                None => {}
            }
        }
    }

    /// Handles one inbox message.
    pub fn on_shard_msg(&mut self, now: Instant, msg: ShardMsg) {
        match msg {
            ShardMsg::Core(m) => {
                self.core.handle_shard_msg(now, m);
                self.drain_outputs(now);
            }
            ShardMsg::Hangup { tag, hops, reply } => self.hangup(tag, hops, reply),
            ShardMsg::Snapshot { reply } => {
                let _ = reply.send(self.snapshot());
            }
        }
    }

    /// Ends a call wherever it lives; answers `reply` with whether it existed.
    pub fn hangup(
        &mut self,
        tag: crate::core::session_id::SessionId,
        hops: u8,
        reply: futures_channel::oneshot::Sender<bool>,
    ) {
        match self.core.find_call(&tag) {
            CallLocation::Here(key) => {
                let found = self.core.hangup(key);
                self.drain_outputs(Instant::now());
                let _ = reply.send(found);
            }
            CallLocation::Shard(s) if hops < 3 && s != self.core.id => {
                if let Err(ShardMsg::Hangup { reply, .. }) = self.mesh.send(
                    s,
                    ShardMsg::Hangup {
                        tag,
                        hops: hops + 1,
                        reply,
                    },
                ) {
                    let _ = reply.send(false);
                }
            }
            _ => {
                let _ = reply.send(false);
            }
        }
    }

    pub fn snapshot(&self) -> ShardSnapshot {
        let (up, down) = self.io.workers.iter().fold((0, 0), |(u, d), (l, _)| {
            (u + l.uplink.dropped(), d + l.downlink.dropped())
        });
        let queued = self
            .io
            .workers
            .iter()
            .map(|(l, _)| l.uplink.len() + l.downlink.len())
            .sum();
        let mut counters = self.core.counters.clone();
        counters.datagrams_out = self.io.batch.sent + self.io.tcp.sent;
        ShardSnapshot {
            shard: self.core.id,
            sessions: self.core.live_sessions(),
            slots: self.core.occupied_slots(),
            deadlines: self.core.armed_deadlines(),
            counters,
            latencies: self.io.latencies.clone(),
            uplink_ring_drops: up,
            downlink_ring_drops: down,
            send_errors: self.io.batch.send_errors,
            ice_tcp: ice_tcp::LABELS
                .iter()
                .zip(self.io.tcp.counts)
                .map(|(l, c)| (*l, c))
                .collect(),
            events_rejected: self.io.events_rejected.clone(),
            barge_ins: self.io.barge_ins.clone(),
            turn_model_answers: self.io.turn_model_answers.clone(),
            turn_end_rules: EndRule::ALL
                .iter()
                .map(|r| (r.label(), self.io.turn_end_rules[r.index()]))
                .collect(),
            uplink_frames: UPLINK_LABELS
                .iter()
                .copied()
                .zip(self.io.uplink_frames)
                .collect(),
            ring_queued: queued,
            codecs: crate::core::media::codec_pool::stats(),
            relay_ingress_dropped: self
                .io
                .relay
                .as_ref()
                .map(|r| {
                    HashMap::from([("bad_header", r.bad_header), ("table_full", r.table_full)])
                })
                .unwrap_or_default(),
        }
    }

    /// The stop request reached this shard: close every session (`server_shutdown`), send what
    /// that produced, and wake the timer loop, whose return ends the executor.
    fn begin_stop(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.core.close_all(now);
        self.finish_step(now);
        self.timer_kick = true;
        if let Some(w) = self.timer_waker.take() {
            w.wake();
        }
    }

    /// Encodes reply frames ahead for at most `ENCODE_BUDGET`; the rest waits for the next step
    /// (the timer loop yields to other work first).
    fn encode_ahead(&mut self) {
        let start = Instant::now();
        while self.core.encode_next() {
            if start.elapsed() >= ENCODE_BUDGET {
                break;
            }
        }
    }

    /// Ends a processing step: run what is due, send, wake workers, tell homes, re-arm the timer.
    pub fn finish_step(&mut self, now: Instant) {
        // Each due session's output is carried out before the next runs (its uplink reaches the
        // worker at once); datagrams leave together below, before the slower encoding ahead.
        while self.core.handle_next_timeout(now) {
            self.drain_outputs(now);
        }
        self.io.flush();
        self.encode_ahead();
        self.drain_outputs(now);
        self.io.flush();
        for (i, w) in self.io.wake_worker.iter_mut().enumerate() {
            if std::mem::take(w) {
                self.io.workers[i].1.unpark();
            }
        }
        if let Some(next) = self.core.next_deadline() {
            if self.timer_target.is_none_or(|t| next < t) {
                self.timer_kick = true;
                if let Some(w) = self.timer_waker.take() {
                    w.wake();
                }
            }
        }
    }
}

/// Which socket a receive loop reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// The media port clients send to.
    Direct,
    /// The relay ingress: datagrams wrapped by `tern relay`.
    Relay,
}

impl DatagramHandler for ShardState {
    type Socket = Ingress;
    fn on_receive(&mut self, now: Instant, ingress: Ingress, from: SocketAddr, data: &[u8]) {
        match ingress {
            Ingress::Direct => self.on_datagram(now, Peer::udp(from), data),
            Ingress::Relay => {
                let Some(relay) = self.io.relay.as_mut() else {
                    return;
                };
                if let Some((client, payload)) = relay.receive(now, from, data) {
                    self.on_datagram(now, Peer::udp(client), payload);
                }
            }
        }
    }
    fn end_step(&mut self, now: Instant) {
        self.finish_step(now);
    }
    fn stopped(&self) -> bool {
        self.stopping
    }
}

/// The shard's one timer: sleeps until the earliest deadline (or housekeeping), re-armed early by
/// `finish_step` when a sooner deadline appears. It is the executor's main task: it returns once
/// the shard is stopping, which ends the executor (the inbox loop kicks it on a stop request).
pub async fn timer_loop(state: SharedShard, stop: Arc<AtomicBool>) {
    let mut next_housekeeping = Instant::now();
    loop {
        let pending = state.borrow().core.has_pending_encodes();
        if pending {
            // Encoding ahead is left over: let datagrams and replies in first, then go on.
            futures_lite::future::yield_now().await;
        }
        let target = {
            let mut s = state.borrow_mut();
            if s.stopping {
                return;
            }
            let t = s
                .core
                .next_deadline()
                .map_or(next_housekeeping, |d| d.min(next_housekeeping));
            let t = if s.core.has_pending_encodes() {
                Instant::now().min(t)
            } else {
                t
            };
            s.timer_target = Some(t);
            s.timer_kick = false;
            t
        };
        let wait = target.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            let kicked = poll_fn(|cx| {
                let mut s = state.borrow_mut();
                if s.timer_kick {
                    return Poll::Ready(());
                }
                s.timer_waker = Some(cx.waker().clone());
                Poll::Pending
            });
            futures_lite::future::or(glommio::timer::sleep(wait), kicked).await;
        }
        let now = Instant::now();
        let mut s = state.borrow_mut();
        s.timer_target = None;
        if stop.load(Ordering::Relaxed) {
            s.begin_stop(now);
        }
        if s.stopping {
            return;
        }
        if now >= next_housekeeping {
            next_housekeeping = now + HOUSEKEEPING;
            s.core.housekeeping(now);
            if let Some(r) = s.io.relay.as_mut() {
                r.expire(now);
            }
        }
        s.finish_step(now);
    }
}

/// The inbox loop: messages from other shards and replies from workers.
pub async fn inbox_loop(
    state: SharedShard,
    bell: Arc<Doorbell>,
    links: Vec<Arc<WorkerLink>>,
    stop: Arc<AtomicBool>,
) {
    loop {
        bell.wait().await;
        let now = Instant::now();
        let mut s = state.borrow_mut();
        if stop.load(Ordering::Relaxed) {
            s.begin_stop(now);
            return;
        }
        let id = s.core.id as usize;
        for _ in 0..4096 {
            let Some(msg) = s.mesh.inboxes[id].ring.pop() else {
                break;
            };
            s.on_shard_msg(now, msg);
        }
        for link in &links {
            for _ in 0..4096 {
                let Some(msg) = link.downlink.pop() else {
                    break;
                };
                s.core.handle_downlink(now, msg);
                s.drain_outputs(now);
            }
        }
        // More may be waiting beyond the budget: come back without waiting for a ring.
        if !s.mesh.inboxes[id].ring.is_empty() || links.iter().any(|l| !l.downlink.is_empty()) {
            bell.ring();
        }
        s.finish_step(now);
    }
}
