//! Fleet membership on Redis (`--fleet redis://...`): a control thread registers this node under
//! a TTL (unique node id, addresses, state, load), refreshes it every second, and keeps the call
//! directory (call id -> owning node) from the shards' session events. Never on a media core:
//! shards hand events over through bounded per-shard queues. When Redis is unreachable the node
//! goes on serving its calls and taking new ones (degraded: logged once, counted), and rejoins
//! when Redis is back, re-registering and re-publishing its live calls.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use crossbeam::queue::ArrayQueue;

use crate::core::admission::Admission;
use crate::core::fleet::{
    call_key, choose, node_key, LocalLoad, NodeRecord, NodeState, PlaceReason, NODE_REFRESH_MS,
    NODE_TTL_MS,
};
use crate::core::session_id::SessionId;

/// Session events a shard may have waiting for the fleet thread.
const QUEUE: usize = 4096;
/// How long a Redis connection attempt or command may take.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// The fleet thread's tick.
const TICK: Duration = Duration::from_millis(50);

/// Sets the node's record when the key is free or already ours (same instance); returns 0 when
/// another live instance holds the node id.
const REGISTER: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, rec = pcall(cjson.decode, cur)
  if ok and rec.instance ~= ARGV[2] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"#;

/// Deletes the node's record only if it is ours.
const UNREGISTER: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, rec = pcall(cjson.decode, cur)
  if ok and rec.instance == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
end
return 0
"#;

/// `--fleet`, `--internal-addr` and the key prefix.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    pub url: String,
    /// Prefix of every key (`tern:`).
    pub prefix: String,
    /// Where other nodes reach this one's signaling.
    pub internal: SocketAddr,
    /// `--fleet-call-ttl-s`: how long a call's directory entry outlives its node's last refresh
    /// (refreshed every third of it).
    pub call_ttl: Duration,
    /// `--advertise-relay`: the first port of this node's relay ingress (shard i at port + i);
    /// `None`: clients reach the node directly.
    pub relay_ingress: Option<SocketAddr>,
}

/// What the fleet thread reads of this node's load and state.
#[derive(Debug, Clone)]
pub struct NodeLoad {
    pub admission: Admission,
    pub draining: Arc<AtomicBool>,
}

/// A shard's session events.
#[derive(Debug, Clone, Copy)]
pub enum FleetEvent {
    CallStarted(SessionId),
    CallEnded(SessionId),
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct FleetShared {
    pub registered: AtomicBool,
    pub degraded: AtomicBool,
    pub errors: AtomicU64,
    pub rejoins: AtomicU64,
    pub calls: AtomicU64,
    pub events_dropped: AtomicU64,
    /// Offers answered here, then handed to another node by `PlaceReason`, then hand-offs that
    /// failed (answered here after all).
    pub placed_local: AtomicU64,
    pub placed_away: [AtomicU64; 3],
    pub place_failed: AtomicU64,
}

impl FleetShared {
    pub fn render(&self, o: &mut String) {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let b = |a: &AtomicBool| u8::from(a.load(Ordering::Relaxed));
        let _ = writeln!(
            o,
            "# HELP tern_fleet_registered 1 while this node's record is in the fleet's Redis.\n\
             # TYPE tern_fleet_registered gauge\ntern_fleet_registered {}\n\
             # HELP tern_fleet_degraded 1 while Redis is unreachable (calls go on, new ones are taken locally).\n\
             # TYPE tern_fleet_degraded gauge\ntern_fleet_degraded {}\n\
             # HELP tern_fleet_errors_total Redis operations that failed.\n\
             # TYPE tern_fleet_errors_total counter\ntern_fleet_errors_total {}\n\
             # HELP tern_fleet_rejoins_total Times this node re-registered after Redis came back.\n\
             # TYPE tern_fleet_rejoins_total counter\ntern_fleet_rejoins_total {}\n\
             # HELP tern_fleet_calls Calls this node lists in the fleet's call directory.\n\
             # TYPE tern_fleet_calls gauge\ntern_fleet_calls {}\n\
             # HELP tern_fleet_events_dropped_total Session events lost on a full queue to the fleet thread.\n\
             # TYPE tern_fleet_events_dropped_total counter\ntern_fleet_events_dropped_total {}",
            b(&self.registered),
            b(&self.degraded),
            l(&self.errors),
            l(&self.rejoins),
            l(&self.calls),
            l(&self.events_dropped),
        );
        let _ = writeln!(
            o,
            "# HELP tern_placements_total Offers by where they were answered: here (local), or on another node because this one was draining, full or busier; forward_failed: handed over but answered here.\n\
             # TYPE tern_placements_total counter\ntern_placements_total{{reason=\"local\"}} {}",
            l(&self.placed_local)
        );
        for r in PlaceReason::ALL {
            let _ = writeln!(
                o,
                "tern_placements_total{{reason=\"{}\"}} {}",
                r.label(),
                l(&self.placed_away[r as usize])
            );
        }
        let _ = writeln!(
            o,
            "tern_placements_total{{reason=\"forward_failed\"}} {}",
            l(&self.place_failed)
        );
    }
}

/// Asks the fleet thread where a call lives: the owner's internal address, or `None` when the
/// directory does not list the call (or lists a node with no live record).
#[derive(Debug)]
pub enum Query {
    /// Where `call_id` lives.
    Owner {
        call_id: String,
        reply: futures_channel::oneshot::Sender<Option<SocketAddr>>,
    },
    /// Where an offer that reached this node should go (`None`: here).
    Place {
        me: LocalLoad,
        reply: futures_channel::oneshot::Sender<Option<(SocketAddr, PlaceReason)>>,
    },
}

/// The HTTP side's handle for owner lookups (bounded: a flood of lookups is refused, not queued).
#[derive(Debug, Clone)]
pub struct FleetLookup {
    tx: crossbeam::channel::Sender<Query>,
}

impl FleetLookup {
    /// The internal address of the node that owns `call_id`, if the fleet knows one.
    pub async fn owner(&self, call_id: &str) -> Result<Option<SocketAddr>, LookupError> {
        let (reply, rx) = futures_channel::oneshot::channel();
        let q = Query::Owner {
            call_id: call_id.to_string(),
            reply,
        };
        self.tx.try_send(q).map_err(|_| LookupError::Busy)?;
        rx.await.map_err(|_| LookupError::Unavailable)
    }

    /// The node (internal address) an offer should go to instead of this one, and why.
    pub async fn place(
        &self,
        me: LocalLoad,
    ) -> Result<Option<(SocketAddr, PlaceReason)>, LookupError> {
        let (reply, rx) = futures_channel::oneshot::channel();
        self.tx
            .try_send(Query::Place { me, reply })
            .map_err(|_| LookupError::Busy)?;
        rx.await.map_err(|_| LookupError::Unavailable)
    }
}

/// Why an owner lookup gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("too many fleet lookups waiting")]
    Busy,
    #[error("the fleet's Redis is unreachable")]
    Unavailable,
}

/// A shard's end of its queue to the fleet thread.
#[derive(Clone)]
pub struct ShardFleet {
    queue: Arc<ArrayQueue<FleetEvent>>,
    shared: Arc<FleetShared>,
}

impl ShardFleet {
    /// Hands an event over; never blocks (a full queue drops it, counted).
    pub fn push(&self, ev: FleetEvent) {
        if self.queue.push(ev).is_err() {
            self.shared.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A node that joined: each shard's queue end, the counters, the lookup handle, the thread.
pub struct Joined {
    pub shards: Vec<ShardFleet>,
    pub shared: Arc<FleetShared>,
    pub lookup: FleetLookup,
    pub thread: std::thread::JoinHandle<()>,
}

/// Joins the fleet: registers this node (refusing to start if another live node holds its id)
/// and starts the fleet thread, which runs until `done` is set (after the shards ended), then
/// removes the node's record. Redis unreachable at start: the node starts degraded and joins
/// when Redis appears.
pub fn join(
    settings: FleetSettings,
    node: u16,
    public: SocketAddr,
    load: NodeLoad,
    shards: usize,
    done: Arc<AtomicBool>,
) -> anyhow::Result<Joined> {
    let redis = LazyRedis::open(&settings.url)?;
    let shared = Arc::new(FleetShared::default());
    let queues: Vec<_> = (0..shards)
        .map(|_| Arc::new(ArrayQueue::new(QUEUE)))
        .collect();
    let ends = queues
        .iter()
        .map(|q| ShardFleet {
            queue: q.clone(),
            shared: shared.clone(),
        })
        .collect();
    let mut member = Member {
        redis,
        key: node_key(&settings.prefix, node),
        settings,
        node,
        public,
        shards: shards as u16,
        instance: format!("{:016x}", rand::random::<u64>()),
        load,
        shared: shared.clone(),
        calls: HashSet::new(),
        cpu: CpuSampler::new(),
        conflict_logged: false,
        nodes: Vec::new(),
    };
    match member.register() {
        Ok(true) => shared.registered.store(true, Ordering::Relaxed),
        Ok(false) => {
            let holder = member.holder().unwrap_or_else(|| "another node".into());
            bail!(
                "--node-id {node} is held by a live node ({holder}); pick another --node-id, or \
                 wait {} s if that node is gone",
                NODE_TTL_MS / 1000
            );
        }
        Err(e) => member.degrade(&e),
    }
    let (tx, lookups) = crossbeam::channel::bounded(256);
    let join = std::thread::Builder::new()
        .name("tern-fleet".into())
        .spawn(move || member.run(&queues, &lookups, &done))?;
    Ok(Joined {
        shards: ends,
        shared,
        lookup: FleetLookup { tx },
        thread: join,
    })
}

/// Every node's record under `prefix` (SCAN, then MGET); records that do not parse are skipped.
pub fn read_nodes(c: &mut redis::Connection, prefix: &str) -> redis::RedisResult<Vec<NodeRecord>> {
    let pattern = format!("{prefix}node:*");
    let keys: Vec<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(&pattern)
        .arg("COUNT")
        .arg(10_000)
        .clone()
        .iter(c)?
        .collect();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let values: Vec<Option<String>> = redis::cmd("MGET").arg(keys).query(c)?;
    Ok(values
        .into_iter()
        .flatten()
        .filter_map(|j| serde_json::from_str::<NodeRecord>(&j).ok())
        .collect())
}

/// A Redis connection made on first use, every operation bounded by `REDIS_TIMEOUT`; after a
/// failure `reset` drops it and the next use reconnects.
pub struct LazyRedis {
    client: redis::Client,
    conn: Option<redis::Connection>,
}

impl LazyRedis {
    /// `url` as `--fleet` gave it (checked now, connected later).
    pub fn open(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("--fleet {url}: {e}"))?;
        Ok(LazyRedis { client, conn: None })
    }

    pub fn get(&mut self) -> redis::RedisResult<&mut redis::Connection> {
        if self.conn.is_none() {
            let c = self.client.get_connection_with_timeout(REDIS_TIMEOUT)?;
            c.set_read_timeout(Some(REDIS_TIMEOUT))?;
            c.set_write_timeout(Some(REDIS_TIMEOUT))?;
            self.conn = Some(c);
        }
        Ok(self.conn.as_mut().expect("just set"))
    }

    pub fn reset(&mut self) {
        self.conn = None;
    }
}

struct Member {
    redis: LazyRedis,
    settings: FleetSettings,
    key: String,
    node: u16,
    public: SocketAddr,
    shards: u16,
    instance: String,
    load: NodeLoad,
    shared: Arc<FleetShared>,
    /// Call ids this node owns (the directory entries it keeps alive).
    calls: HashSet<String>,
    cpu: CpuSampler,
    conflict_logged: bool,
    /// Every node's record, as of the last refresh (placement reads it).
    nodes: Vec<NodeRecord>,
}

impl Member {
    fn run(
        &mut self,
        queues: &[Arc<ArrayQueue<FleetEvent>>],
        lookups: &crossbeam::channel::Receiver<Query>,
        done: &AtomicBool,
    ) {
        let mut next_node = Instant::now() + Duration::from_millis(NODE_REFRESH_MS);
        // Refreshed three times per TTL: an entry outlives two lost refreshes.
        let call_refresh = self.settings.call_ttl / 3;
        let mut next_calls = Instant::now() + call_refresh;
        loop {
            let finished = done.load(Ordering::Acquire);
            let mut started = Vec::new();
            let mut ended = Vec::new();
            for q in queues {
                while let Some(ev) = q.pop() {
                    match ev {
                        FleetEvent::CallStarted(t) => started.push(t.call_id()),
                        FleetEvent::CallEnded(t) => ended.push(t.call_id()),
                    }
                }
            }
            if !started.is_empty() || !ended.is_empty() {
                self.publish_calls(started, ended);
            }
            let now = Instant::now();
            if now >= next_node {
                next_node = now + Duration::from_millis(NODE_REFRESH_MS);
                self.refresh_node();
                self.refresh_nodes();
            }
            if now >= next_calls {
                next_calls = now + call_refresh;
                self.refresh_calls();
            }
            if finished && queues.iter().all(|q| q.is_empty()) {
                self.leave();
                return;
            }
            // Wait for a lookup (answered at once) or the next tick.
            if let Ok(q) = lookups.recv_timeout(TICK) {
                self.answer(q);
                while let Ok(q) = lookups.try_recv() {
                    self.answer(q);
                }
            }
        }
    }

    fn answer(&mut self, q: Query) {
        match q {
            Query::Owner { call_id, reply } => self.owner(&call_id, reply),
            Query::Place { me, reply } => {
                let picks = [
                    rand::random::<u32>() as usize,
                    rand::random::<u32>() as usize,
                ];
                let choice = if self.shared.degraded.load(Ordering::Relaxed) {
                    None
                } else {
                    choose(me, &self.nodes, picks).map(|(r, why)| (r.internal, why))
                };
                let _ = reply.send(choice);
            }
        }
    }

    /// Every node's record (SCAN, then MGET): what placement chooses from.
    fn refresh_nodes(&mut self) {
        let r = self
            .redis
            .get()
            .and_then(|c| read_nodes(c, &self.settings.prefix));
        match r {
            Ok(nodes) => self.nodes = nodes,
            Err(e) => self.degrade(&e),
        }
    }

    /// Where a call lives: its directory entry names the node, the node's record its address.
    fn owner(
        &mut self,
        call_id: &str,
        reply: futures_channel::oneshot::Sender<Option<SocketAddr>>,
    ) {
        if self.shared.degraded.load(Ordering::Relaxed) {
            drop(reply); // the HTTP side answers 503
            return;
        }
        let call = call_key(&self.settings.prefix, call_id);
        let prefix = &self.settings.prefix;
        let found = self.redis.get().and_then(|c| {
            let node: Option<u16> = redis::cmd("GET").arg(&call).query(c)?;
            let Some(node) = node else {
                return Ok(None);
            };
            let json: Option<String> = redis::cmd("GET").arg(node_key(prefix, node)).query(c)?;
            Ok(json
                .and_then(|j| serde_json::from_str::<NodeRecord>(&j).ok())
                .map(|r| r.internal))
        });
        match found {
            Ok(addr) => {
                let _ = reply.send(addr);
            }
            Err(e) => self.degrade(&e),
        }
    }

    fn record(&mut self) -> NodeRecord {
        let admitted = self.load.admission.admitted() as u64;
        NodeRecord {
            node: self.node,
            instance: self.instance.clone(),
            public: self.public,
            internal: self.settings.internal,
            shards: self.shards,
            relay_ingress: self.settings.relay_ingress,
            state: if self.load.draining.load(Ordering::Relaxed) {
                NodeState::Draining
            } else {
                NodeState::Serving
            },
            sessions: admitted,
            capacity_left: (self.load.admission.max() as u64).saturating_sub(admitted),
            cpu_percent: self.cpu.percent(),
        }
    }

    /// Writes this node's record; false if another live instance holds the node id.
    fn register(&mut self) -> redis::RedisResult<bool> {
        let json = serde_json::to_string(&self.record()).unwrap_or_default();
        let conn = self.redis.get()?;
        let ok: i64 = redis::Script::new(REGISTER)
            .key(&self.key)
            .arg(json)
            .arg(&self.instance)
            .arg(NODE_TTL_MS)
            .invoke(conn)?;
        Ok(ok == 1)
    }

    /// Who holds this node's id, for the refusal message.
    fn holder(&mut self) -> Option<String> {
        let json: Option<String> = redis::cmd("GET")
            .arg(&self.key)
            .query(self.redis.get().ok()?)
            .ok()?;
        let rec: NodeRecord = serde_json::from_str(&json?).ok()?;
        Some(format!(
            "internal {}, public {}, instance {}",
            rec.internal, rec.public, rec.instance
        ))
    }

    fn refresh_node(&mut self) {
        let was_degraded = self.shared.degraded.load(Ordering::Relaxed);
        match self.register() {
            Ok(true) => {
                self.shared.registered.store(true, Ordering::Relaxed);
                self.conflict_logged = false;
                if was_degraded {
                    self.shared.degraded.store(false, Ordering::Relaxed);
                    self.shared.rejoins.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        node = self.node,
                        calls = self.calls.len(),
                        "fleet: Redis is back; rejoined"
                    );
                    // Entries may have expired or Redis restarted empty: publish every live call.
                    let all: Vec<String> = self.calls.iter().cloned().collect();
                    self.publish_calls(all, Vec::new());
                }
            }
            Ok(false) => {
                self.shared.registered.store(false, Ordering::Relaxed);
                if !self.conflict_logged {
                    self.conflict_logged = true;
                    tracing::error!(
                        node = self.node,
                        "fleet: another live instance holds this --node-id; not registered"
                    );
                }
            }
            Err(e) => self.degrade(&e),
        }
    }

    /// Queues `SET call:<id> <node> PX <ttl>`: the call's directory entry, (re)newed.
    fn list_call(&self, pipe: &mut redis::Pipeline, id: &str) {
        pipe.cmd("SET")
            .arg(call_key(&self.settings.prefix, id))
            .arg(self.node)
            .arg("PX")
            .arg(self.settings.call_ttl.as_millis() as u64)
            .ignore();
    }

    fn publish_calls(&mut self, started: Vec<String>, ended: Vec<String>) {
        let mut pipe = redis::pipe();
        for id in &started {
            self.list_call(&mut pipe, id);
        }
        for id in &ended {
            pipe.cmd("DEL")
                .arg(call_key(&self.settings.prefix, id))
                .ignore();
        }
        self.calls.extend(started);
        for id in &ended {
            self.calls.remove(id);
        }
        self.shared
            .calls
            .store(self.calls.len() as u64, Ordering::Relaxed);
        if self.shared.degraded.load(Ordering::Relaxed) {
            return; // published again on rejoin
        }
        let r = self.redis.get().and_then(|c| pipe.query::<()>(c));
        if let Err(e) = r {
            self.degrade(&e);
        }
    }

    fn refresh_calls(&mut self) {
        if self.calls.is_empty() || self.shared.degraded.load(Ordering::Relaxed) {
            return;
        }
        let mut pipe = redis::pipe();
        for id in &self.calls {
            self.list_call(&mut pipe, id);
        }
        let r = self.redis.get().and_then(|c| pipe.query::<()>(c));
        if let Err(e) = r {
            self.degrade(&e);
        }
    }

    /// Redis failed: drop the connection, go on serving, say so once.
    fn degrade(&mut self, e: &redis::RedisError) {
        self.redis.reset();
        self.shared.errors.fetch_add(1, Ordering::Relaxed);
        self.shared.registered.store(false, Ordering::Relaxed);
        if !self.shared.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                node = self.node,
                url = %self.settings.url,
                "fleet: Redis unreachable ({e}); serving calls and taking new ones locally until it returns"
            );
        }
    }

    /// Shutdown: this node's calls have ended; remove its record if it is still ours.
    fn leave(&mut self) {
        if self.shared.degraded.load(Ordering::Relaxed) {
            return;
        }
        let r = self.redis.get().and_then(|c| {
            redis::Script::new(UNREGISTER)
                .key(&self.key)
                .arg(&self.instance)
                .invoke::<i64>(c)
        });
        match r {
            Ok(_) => self.shared.registered.store(false, Ordering::Relaxed),
            Err(e) => tracing::warn!(node = self.node, "fleet: leaving: {e}"),
        }
    }
}

/// This process's CPU use between two samples, from /proc/self/stat.
struct CpuSampler {
    last: Option<(Instant, u64)>,
}

impl CpuSampler {
    fn new() -> Self {
        CpuSampler { last: None }
    }

    fn ticks() -> Option<u64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the ')'.
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    }

    fn percent(&mut self) -> f64 {
        let now = Instant::now();
        let Some(t) = Self::ticks() else {
            return 0.0;
        };
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let pct = match self.last {
            Some((at, prev)) => {
                let secs = now.duration_since(at).as_secs_f64().max(1e-3);
                (t.saturating_sub(prev) as f64 / hz) / secs * 100.0
            }
            None => 0.0,
        };
        self.last = Some((now, t));
        (pct * 10.0).round() / 10.0
    }
}
