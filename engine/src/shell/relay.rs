//! `tern relay`: the shell around `RelayCore`. The same thread-per-core shape as `tern serve`:
//! one pinned glommio executor per core, each owning a socket in the SO_REUSEPORT group of the
//! public port (clients) and one in the group of the internal address (nodes), batched receives
//! (`recvmmsg`) and sends (`sendmmsg`), no socket per flow and nothing shared between cores on
//! the packet path. A control thread reads the fleet's nodes from Redis every second and hands
//! each shard the table through its own bounded channel; it also lists the relay in Redis under a
//! TTL. When Redis is unreachable the relay keeps routing with the last table it read.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam::channel::{Receiver, Sender};
use glommio::{LocalExecutorBuilder, Placement};

use super::fleet::{read_nodes, LazyRedis};
use super::net::{bind_udp, SendBatch};
use super::recv_batch::{receive_loop, DatagramHandler};
use crate::core::relay::{NodeRoute, RelayCore, RelayDrop};
use crate::core::session_id::TagKey;

/// How often a shard takes a new node table, publishes its counters and checks the stop flag.
const TICK: Duration = Duration::from_millis(100);
/// How often idle flows are swept.
const SWEEP: Duration = Duration::from_secs(1);
/// How often the control thread reads the nodes (and refreshes the relay's own record).
const REFRESH: Duration = Duration::from_secs(1);
/// The relay's record TTL in Redis.
const RELAY_TTL_MS: u64 = 5_000;

/// `tern relay`'s flags, resolved.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub cores: Vec<usize>,
    /// The public UDP address clients send to (bound with SO_REUSEPORT, one socket per shard).
    pub public: SocketAddr,
    /// Replies to clients leave from this address (a host with several); `None`: the kernel picks.
    pub reply_from: Option<IpAddr>,
    /// Where nodes are reached from and send their replies to.
    pub internal: SocketAddr,
    pub fleet_url: String,
    pub prefix: String,
    pub key: TagKey,
    pub max_flows_per_shard: usize,
    pub http: SocketAddr,
    pub recv_batch: usize,
    pub io_memory: usize,
}

type NodeTable = Arc<Vec<(u16, NodeRoute)>>;

/// Counters shared with `/metrics`: each shard writes its own row every tick.
#[derive(Debug, Default)]
pub struct ShardStats {
    pub to_node: AtomicU64,
    pub to_client: AtomicU64,
    pub flows: AtomicU64,
    pub flows_created: AtomicU64,
    pub flows_expired: AtomicU64,
    pub send_errors: AtomicU64,
    pub dropped: [AtomicU64; RelayDrop::ALL.len()],
}

#[derive(Debug, Default)]
pub struct ControlStats {
    pub nodes: AtomicU64,
    pub redis_errors: AtomicU64,
    pub degraded: AtomicBool,
}

pub struct RelayStats {
    pub shards: Vec<ShardStats>,
    pub control: ControlStats,
}

impl RelayStats {
    pub fn render(&self) -> String {
        let mut o = String::new();
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let per_shard =
            |o: &mut String, name: &str, kind: &str, help: &str, f: &dyn Fn(&ShardStats) -> u64| {
                let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for (i, s) in self.shards.iter().enumerate() {
                    let _ = writeln!(o, "{name}{{shard=\"{i}\"}} {}", f(s));
                }
            };
        per_shard(
            &mut o,
            "tern_relay_to_node_total",
            "counter",
            "Client datagrams forwarded to a node.",
            &|s| l(&s.to_node),
        );
        per_shard(
            &mut o,
            "tern_relay_to_client_total",
            "counter",
            "Node datagrams carried back to a client.",
            &|s| l(&s.to_client),
        );
        per_shard(
            &mut o,
            "tern_relay_flows",
            "gauge",
            "Flows (client addresses) in the shard's table.",
            &|s| l(&s.flows),
        );
        per_shard(
            &mut o,
            "tern_relay_flows_created_total",
            "counter",
            "Flows opened by a sealed ufrag.",
            &|s| l(&s.flows_created),
        );
        per_shard(
            &mut o,
            "tern_relay_flows_expired_total",
            "counter",
            "Flows forgotten after their client went silent.",
            &|s| l(&s.flows_expired),
        );
        per_shard(
            &mut o,
            "tern_relay_send_errors_total",
            "counter",
            "Datagrams the kernel refused to send.",
            &|s| l(&s.send_errors),
        );
        let _ = writeln!(o, "# HELP tern_relay_dropped_total Datagrams dropped, by reason.\n# TYPE tern_relay_dropped_total counter");
        for (i, s) in self.shards.iter().enumerate() {
            for r in RelayDrop::ALL {
                let _ = writeln!(
                    o,
                    "tern_relay_dropped_total{{shard=\"{i}\",reason=\"{}\"}} {}",
                    r.label(),
                    l(&s.dropped[r.index()])
                );
            }
        }
        let c = &self.control;
        let _ = writeln!(
            o,
            "# HELP tern_relay_nodes Nodes with a relay ingress in the last table read.\n# TYPE tern_relay_nodes gauge\ntern_relay_nodes {}\n\
             # HELP tern_relay_redis_errors_total Redis operations that failed.\n# TYPE tern_relay_redis_errors_total counter\ntern_relay_redis_errors_total {}\n\
             # HELP tern_relay_degraded 1 while Redis is unreachable (routing goes on with the last table).\n# TYPE tern_relay_degraded gauge\ntern_relay_degraded {}",
            l(&c.nodes),
            l(&c.redis_errors),
            u8::from(c.degraded.load(Ordering::Relaxed))
        );
        o
    }
}

/// A running relay.
pub struct Relay {
    pub public: SocketAddr,
    pub internal: SocketAddr,
    pub http: SocketAddr,
    pub stats: Arc<RelayStats>,
    stop: Arc<AtomicBool>,
    shards: Vec<glommio::ExecutorJoinHandle<()>>,
    control: std::thread::JoinHandle<()>,
}

impl Relay {
    /// Asks every shard and the control thread to stop (within a tick).
    pub fn stopper(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub fn join(self) {
        for s in self.shards {
            let _ = s.join();
        }
        let _ = self.control.join();
    }
}

/// Binds everything, reads the nodes once, then starts the shards, the control thread and HTTP.
pub fn start(s: RelaySettings) -> anyhow::Result<Relay> {
    crate::shell::runtime::check_memlock(s.cores.len(), s.io_memory)?;
    let n = s.cores.len();
    let mut public = Vec::new();
    let mut internal = Vec::new();
    let (mut pub_addr, mut int_addr) = (s.public, s.internal);
    for _ in 0..n {
        let p =
            bind_udp(pub_addr).with_context(|| format!("binding UDP {pub_addr} (--udp-port)"))?;
        let i = bind_udp(int_addr)
            .with_context(|| format!("binding UDP {int_addr} (--internal-addr)"))?;
        pub_addr.set_port(p.local_addr()?.port());
        int_addr.set_port(i.local_addr()?.port());
        public.push(p);
        internal.push(i);
    }
    let http =
        TcpListener::bind(s.http).with_context(|| format!("binding HTTP {} (--http)", s.http))?;
    let http_addr = http.local_addr()?;
    let stats = Arc::new(RelayStats {
        shards: (0..n).map(|_| ShardStats::default()).collect(),
        control: ControlStats::default(),
    });
    let stop = Arc::new(AtomicBool::new(false));

    let mut control = Control::new(&s, int_addr, pub_addr, stats.clone())?;
    let first = control.read();
    let (txs, rxs): (Vec<Sender<NodeTable>>, Vec<Receiver<NodeTable>>) =
        (0..n).map(|_| crossbeam::channel::bounded(2)).unzip();

    let mut shards = Vec::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    for (i, ((&cpu, (p, it)), rx)) in s
        .cores
        .iter()
        .zip(public.into_iter().zip(internal))
        .zip(rxs)
        .enumerate()
    {
        let (pfd, ifd) = (p.into_raw_fd(), it.into_raw_fd());
        let mut core = RelayCore::new(s.key.clone(), s.max_flows_per_shard);
        if let Some(t) = &first {
            core.set_nodes(t.iter().copied());
        }
        let (stats, stop, ready) = (stats.clone(), stop.clone(), ready_tx.clone());
        let (reply_from, batch) = (s.reply_from, s.recv_batch);
        let h = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("tern-relay-{i}"))
            .io_memory(s.io_memory)
            .ring_depth(256)
            .spawn(move || async move {
                // SAFETY: the fds were bound above and handed over to this executor alone.
                let (ps, is) = unsafe {
                    (
                        glommio::net::UdpSocket::from_raw_fd(pfd),
                        glommio::net::UdpSocket::from_raw_fd(ifd),
                    )
                };
                let shard = Rc::new(RefCell::new(RelayShard {
                    core,
                    to_nodes: SendBatch::new(is.as_raw_fd(), None),
                    to_clients: SendBatch::new(ps.as_raw_fd(), reply_from),
                }));
                let _ = ready.send(());
                glommio::spawn_local(receive_loop(shard.clone(), ps, Side::Clients, batch))
                    .detach();
                glommio::spawn_local(receive_loop(shard.clone(), is, Side::Nodes, batch)).detach();
                tick_loop(shard, rx, &stats.shards[i], stop).await;
            })
            .map_err(|e| anyhow::anyhow!("starting relay executor on CPU {cpu}: {e}"))?;
        shards.push(h);
    }
    drop(ready_tx);
    for _ in 0..n {
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .context("a relay shard did not start within 10 s")?;
    }
    let control_stop = stop.clone();
    let control = std::thread::Builder::new()
        .name("tern-relay-control".into())
        .spawn(move || control.run(&txs, &control_stop))?;
    let http_stats = stats.clone();
    std::thread::Builder::new()
        .name("tern-relay-http".into())
        .spawn(move || serve_http(http, &http_stats))?;
    tracing::info!(shards = n, public = %pub_addr, internal = %int_addr, http = %http_addr, "tern relay serving");
    Ok(Relay {
        public: pub_addr,
        internal: int_addr,
        http: http_addr,
        stats,
        stop,
        shards,
        control,
    })
}

struct RelayShard {
    core: RelayCore,
    to_nodes: SendBatch,
    to_clients: SendBatch,
}

impl DatagramHandler for RelayShard {
    type Socket = Side;
    fn on_receive(&mut self, now: Instant, side: Side, from: SocketAddr, data: &[u8]) {
        match side {
            Side::Clients => {
                if let Ok((dest, head)) = self.core.from_client(now, from, data) {
                    self.to_nodes.push_parts(dest, head.bytes(), data);
                }
            }
            Side::Nodes => {
                if let Ok((client, payload)) = self.core.from_node(data) {
                    self.to_clients.push(client, payload);
                }
            }
        }
    }

    fn end_step(&mut self, _now: Instant) {
        self.to_nodes.flush();
        self.to_clients.flush();
    }
}

#[derive(Debug, Clone, Copy)]
enum Side {
    Clients,
    Nodes,
}

/// The shard's main task: new node tables, flow sweeps, counters, and the stop flag.
async fn tick_loop(
    shard: Rc<RefCell<RelayShard>>,
    tables: Receiver<NodeTable>,
    stats: &ShardStats,
    stop: Arc<AtomicBool>,
) {
    let mut next_sweep = Instant::now() + SWEEP;
    loop {
        glommio::timer::sleep(TICK).await;
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        let mut s = shard.borrow_mut();
        if let Some(t) = tables.try_iter().last() {
            s.core.set_nodes(t.iter().copied());
        }
        if now >= next_sweep {
            next_sweep = now + SWEEP;
            s.core.expire(now);
        }
        let c = &s.core.counters;
        stats.to_node.store(c.to_node, Ordering::Relaxed);
        stats.to_client.store(c.to_client, Ordering::Relaxed);
        stats.flows.store(s.core.flows() as u64, Ordering::Relaxed);
        stats
            .flows_created
            .store(c.flows_created, Ordering::Relaxed);
        stats
            .flows_expired
            .store(c.flows_expired, Ordering::Relaxed);
        for (a, v) in stats.dropped.iter().zip(c.dropped) {
            a.store(v, Ordering::Relaxed);
        }
        stats.send_errors.store(
            s.to_nodes.send_errors + s.to_clients.send_errors,
            Ordering::Relaxed,
        );
    }
}

/// Reads the fleet's nodes from Redis and lists the relay there.
struct Control {
    redis: LazyRedis,
    prefix: String,
    key: String,
    record: String,
    stats: Arc<RelayStats>,
}

impl Control {
    fn new(
        s: &RelaySettings,
        internal: SocketAddr,
        public: SocketAddr,
        stats: Arc<RelayStats>,
    ) -> anyhow::Result<Self> {
        let instance = format!("{:016x}", rand::random::<u64>());
        Ok(Control {
            redis: LazyRedis::open(&s.fleet_url)?,
            key: format!("{}relay:{instance}", s.prefix),
            record:
                serde_json::json!({ "instance": instance, "public": public, "internal": internal })
                    .to_string(),
            prefix: s.prefix.clone(),
            stats,
        })
    }

    /// The nodes that take relayed media (draining ones too: their calls go on); `None` when
    /// Redis could not be read (logged once per outage, counted).
    fn read(&mut self) -> Option<NodeTable> {
        let r = self.redis.get().and_then(|c| {
            let nodes = read_nodes(c, &self.prefix)?;
            redis::cmd("SET")
                .arg(&self.key)
                .arg(&self.record)
                .arg("PX")
                .arg(RELAY_TTL_MS)
                .query::<()>(c)?;
            Ok(nodes)
        });
        let c = &self.stats.control;
        match r {
            Ok(nodes) => {
                if c.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("relay: Redis is back; node table refreshed");
                }
                let table: Vec<(u16, NodeRoute)> = nodes
                    .iter()
                    .filter_map(|n| {
                        n.relay_ingress.map(|ingress| {
                            (
                                n.node,
                                NodeRoute {
                                    ingress,
                                    shards: n.shards.max(1),
                                },
                            )
                        })
                    })
                    .collect();
                c.nodes.store(table.len() as u64, Ordering::Relaxed);
                Some(Arc::new(table))
            }
            Err(e) => {
                self.redis.reset();
                c.redis_errors.fetch_add(1, Ordering::Relaxed);
                if !c.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "relay: Redis unreachable ({e}); routing with the last node table"
                    );
                }
                None
            }
        }
    }

    fn run(&mut self, shards: &[Sender<NodeTable>], stop: &AtomicBool) {
        let mut next = Instant::now() + REFRESH;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            if Instant::now() < next {
                continue;
            }
            next = Instant::now() + REFRESH;
            if let Some(t) = self.read() {
                for s in shards {
                    // Full: the shard has a newer table waiting already.
                    let _ = s.try_send(t.clone());
                }
            }
        }
        if let Ok(c) = self.redis.get() {
            let _ = redis::cmd("DEL").arg(&self.key).query::<()>(c);
        }
    }
}

/// `/metrics` and `/healthz` on a plain thread (the control plane, never a media core).
fn serve_http(listener: TcpListener, stats: &RelayStats) {
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 2048];
        let n = s.read(&mut buf).unwrap_or(0);
        let req = String::from_utf8_lossy(&buf[..n]);
        let path = req.split_whitespace().nth(1).unwrap_or("");
        let (status, body) = match path {
            "/metrics" => ("200 OK", stats.render()),
            "/healthz" => ("200 OK", "{\"ok\":true}\n".to_string()),
            _ => ("404 Not Found", "not found\n".to_string()),
        };
        let _ = write!(
            s,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}
