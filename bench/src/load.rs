//! The load generator: thread-per-core workers (pinned to CPUs the engine does not use), each
//! owning its clients' sockets in one epoll set and their timers in one heap, and signaling
//! threads that build clients, send offers and hand connected-to-be clients to a worker.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{bounded, unbounded, Receiver, Sender};
use tern_engine::core::rtc_setup::ServerCrypto;

use crate::client::{Behaviour, BenchClient, ClientStats, Fixture};
use crate::netio::{now_ns, recv_timestamped, timestamped_socket, Poller};
use crate::target::{Hangup, Target};
use crate::util::pin_to;

struct NewClient {
    client: BenchClient,
    sock: UdpSocket,
    hangup: Hangup,
}

enum Cmd {
    Add(Box<NewClient>),
    Snapshot(Sender<ClientStats>),
    /// Hang every client up (through the sender's target) and stop.
    Stop(Sender<Vec<Hangup>>),
}

pub struct LoadGen {
    workers: Vec<(Sender<Cmd>, std::thread::JoinHandle<()>)>,
    cores: Vec<usize>,
    fixture: Arc<Fixture>,
    crypto: ServerCrypto,
    next_index: usize,
    /// Storm mode: clients that connected, to hang up (workers drop them at once).
    pub done: Receiver<Hangup>,
    done_tx: Sender<Hangup>,
    /// Offers sent whose client has not connected yet (storm mode's window).
    pub in_flight: Arc<AtomicUsize>,
    pub failed_offers: usize,
}

impl LoadGen {
    /// One worker per CPU in `cores`.
    pub fn new(
        cores: &[usize],
        fixture: Arc<Fixture>,
        hang_up_when_connected: bool,
    ) -> anyhow::Result<Self> {
        let (done_tx, done) = unbounded();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let workers = cores
            .iter()
            .map(|&core| {
                let (tx, rx) = bounded(4096);
                let done_tx = done_tx.clone();
                let in_flight = in_flight.clone();
                let h = std::thread::Builder::new()
                    .name(format!("load-{core}"))
                    .spawn(move || {
                        pin_to(core);
                        Worker::new(rx, done_tx, in_flight, hang_up_when_connected).run();
                    })
                    .map_err(anyhow::Error::from)?;
                Ok((tx, h))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(LoadGen {
            workers,
            cores: cores.to_vec(),
            fixture,
            crypto: ServerCrypto::new().map_err(|e| anyhow::anyhow!("crypto: {e}"))?,
            next_index: 0,
            done,
            done_tx,
            in_flight,
            failed_offers: 0,
        })
    }

    /// Opens `n` sessions against `target` from `signalers` threads; `tick` is called per offer.
    pub fn open(
        &mut self,
        target: &Target,
        n: usize,
        signalers: usize,
        talk: bool,
        tick: &(dyn Fn() + Sync),
    ) -> usize {
        let first = self.next_index;
        self.next_index += n;
        let counter = AtomicUsize::new(first);
        let failed = AtomicUsize::new(0);
        let end = first + n;
        std::thread::scope(|s| {
            for t in 0..signalers.max(1) {
                let core = self.cores[t % self.cores.len()];
                let counter = &counter;
                let failed = &failed;
                let me = &*self;
                s.spawn(move || {
                    pin_to(core);
                    loop {
                        let i = counter.fetch_add(1, Ordering::Relaxed);
                        if i >= end {
                            break;
                        }
                        if let Err(e) = me.open_one(target, i, talk) {
                            if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("session {i}: {e:#}");
                            }
                        }
                        tick();
                    }
                });
            }
        });
        let f = failed.load(Ordering::Relaxed);
        self.failed_offers += f;
        n - f
    }

    /// Builds one client, offers, and gives it to its worker. Janus AudioBridge pairs clients
    /// 2k and 2k+1 in one room, so a pair goes to one worker in order.
    pub fn open_one(&self, target: &Target, index: usize, talk: bool) -> anyhow::Result<()> {
        let sock = timestamped_socket(target.media_ip)?;
        let behaviour = Behaviour {
            talk,
            reply_after_turn: target.kind.replies_after_turn(),
            echo: target.kind == crate::target::TargetKind::JanusEchotest,
            data_channel: target.kind.data_channel(),
            // Golden-ratio spread of turn phases over the cycle.
            phase: (index as f64 * 0.618_033_988_75).fract(),
        };
        let (mut client, offer) = BenchClient::new(
            self.crypto.client_config(),
            Instant::now(),
            sock.local_addr()?,
            self.fixture.clone(),
            behaviour,
        )?;
        let offered = now_ns();
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let answer = target.offer(index, &offer).inspect_err(|_| {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        })?;
        client.accept_answer(&answer.0, offered)?;
        let w = &self.workers[(index / 2) % self.workers.len()].0;
        w.send(Cmd::Add(Box::new(NewClient {
            client,
            sock,
            hangup: answer.1,
        })))
        .map_err(|_| anyhow::anyhow!("load worker gone"))?;
        Ok(())
    }

    /// What every worker measured since the last snapshot.
    pub fn snapshot(&self) -> ClientStats {
        let mut all = ClientStats::new();
        for (tx, _) in &self.workers {
            let (rtx, rrx) = bounded(1);
            if tx.send(Cmd::Snapshot(rtx)).is_ok() {
                if let Ok(s) = rrx.recv_timeout(Duration::from_secs(10)) {
                    all.merge(&s);
                }
            }
        }
        all
    }

    /// Stops the workers and hangs every session up.
    pub fn stop(self, target: &Target) {
        drop(self.done_tx);
        for (tx, h) in self.workers {
            let (rtx, rrx) = bounded(1);
            if tx.send(Cmd::Stop(rtx)).is_ok() {
                for hang in rrx
                    .recv_timeout(Duration::from_secs(10))
                    .unwrap_or_default()
                {
                    target.hang_up(&hang);
                }
            }
            let _ = h.join();
        }
        while let Ok(h) = self.done.try_recv() {
            target.hang_up(&h);
        }
    }
}

struct Slot {
    client: BenchClient,
    sock: UdpSocket,
    hangup: Hangup,
    wake: Instant,
    /// Counted in `in_flight` until it connects or fails.
    in_flight: bool,
}

struct Worker {
    rx: Receiver<Cmd>,
    done: Sender<Hangup>,
    in_flight: Arc<AtomicUsize>,
    hang_up_when_connected: bool,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    stats: ClientStats,
    since: Instant,
}

impl Worker {
    fn new(
        rx: Receiver<Cmd>,
        done: Sender<Hangup>,
        in_flight: Arc<AtomicUsize>,
        hang_up_when_connected: bool,
    ) -> Self {
        Worker {
            rx,
            done,
            in_flight,
            hang_up_when_connected,
            slots: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
            stats: ClientStats::new(),
            since: Instant::now(),
        }
    }

    fn run(mut self) {
        let Ok(mut poller) = Poller::new() else {
            return;
        };
        let mut ready = Vec::with_capacity(256);
        let mut buf = vec![0u8; 2048];
        loop {
            let turn_start = Instant::now();
            while let Ok(cmd) = self.rx.try_recv() {
                match cmd {
                    Cmd::Add(nc) => self.add(*nc, &poller),
                    Cmd::Snapshot(tx) => {
                        let mut s = std::mem::replace(&mut self.stats, ClientStats::new());
                        s.wall_ns = self.since.elapsed().as_nanos() as u64;
                        self.since = Instant::now();
                        let _ = tx.send(s);
                    }
                    Cmd::Stop(tx) => {
                        let hangups = self.slots.drain(..).flatten().map(|s| s.hangup).collect();
                        let _ = tx.send(hangups);
                        return;
                    }
                }
            }
            let now = Instant::now();
            while let Some(&Reverse((t, i))) = self.timers.peek() {
                if t > now {
                    break;
                }
                self.timers.pop();
                if self.slots[i].as_ref().is_some_and(|s| s.wake == t) {
                    self.poll_slot(i, now, &poller);
                }
            }
            let timeout = self
                .timers
                .peek()
                .map_or(Duration::from_millis(5), |Reverse((t, _))| {
                    t.saturating_duration_since(Instant::now())
                })
                .min(Duration::from_millis(5));
            let waited = Instant::now();
            self.stats.busy_ns += waited.duration_since(turn_start).as_nanos() as u64;
            ready.clear();
            poller.wait(timeout, &mut ready);
            let woke = Instant::now();
            for &token in &ready {
                let i = token as usize;
                let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) else {
                    continue;
                };
                let fd = slot.sock.as_raw_fd();
                while let Ok((n, from, rx_ns)) = recv_timestamped(fd, &mut buf) {
                    slot.client.receive(
                        Instant::now(),
                        rx_ns,
                        from,
                        &buf[..n],
                        &slot.sock,
                        &mut self.stats,
                    );
                }
                self.poll_slot(i, Instant::now(), &poller);
            }
            self.stats.busy_ns += woke.elapsed().as_nanos() as u64;
        }
    }

    fn add(&mut self, nc: NewClient, poller: &Poller) {
        let i = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        if poller.add(nc.sock.as_raw_fd(), i as u64).is_err() {
            self.free.push(i);
            return;
        }
        let now = Instant::now();
        self.slots[i] = Some(Slot {
            client: nc.client,
            sock: nc.sock,
            hangup: nc.hangup,
            wake: now,
            in_flight: true,
        });
        self.poll_slot(i, now, poller);
    }

    /// Polls client `i` and re-arms its timer; drops it when it failed (or connected, in a storm).
    fn poll_slot(&mut self, i: usize, now: Instant, poller: &Poller) {
        let Some(slot) = self.slots[i].as_mut() else {
            return;
        };
        let wake = slot.client.poll(now, &slot.sock, &mut self.stats);
        if slot.in_flight && (slot.client.connected || slot.client.failed) {
            slot.in_flight = false;
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        if slot.client.failed || (self.hang_up_when_connected && slot.client.connected) {
            if let Some(s) = self.slots[i].take() {
                poller.remove(s.sock.as_raw_fd());
                let _ = self.done.send(s.hangup);
            }
            self.free.push(i);
            return;
        }
        slot.wake = wake;
        self.timers.push(Reverse((wake, i)));
    }
}
