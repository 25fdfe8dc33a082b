//! Start-up and the thread layout: membarrier and memlock first, then worker threads, then one
//! pinned glommio executor per core in `--cores`, each serving UDP and HTTP.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use glommio::{LocalExecutorBuilder, Placement};

use super::cors::CorsPolicy;
use super::fleet::{self, FleetSettings, NodeLoad};
use super::http::{serve_connection, HttpContext};
use super::ice_tcp;
use super::mesh::Mesh;
use super::net::{
    attach_cpu_steering, bind_tcp, bind_udp, reply_source, tcp_listeners_collide, Steering,
};
use super::recorder::{self, RecordSettings};
use super::recv_batch::receive_loop;
use super::relay_ingress::RelayIngress;
use super::rings::Doorbell;
use super::shard::{inbox_loop, timer_loop, Ingress, ShardState};
use super::worker::{self, WorkerLink, WorkerPlan};
use crate::agent::AgentKind;
use crate::config::CpuList;
use crate::core::admission::Admission;
use crate::core::auth::Auth;
use crate::core::rate_limit::IpRateLimiter;
use crate::core::rtc_setup::ServerCrypto;
use crate::core::session::SessionConfig;
use crate::core::session_id::TagKey;
use crate::core::shard::{ShardCore, ShardSettings};

/// Everything `run` needs, resolved from flags.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub cores: Vec<usize>,
    pub udp_bind: SocketAddr,
    pub public: SocketAddr,
    pub http: SocketAddr,
    pub workers: u16,
    pub agent: AgentKind,
    pub max_sessions: usize,
    pub max_sdp_bytes: usize,
    pub ring_frames: usize,
    pub io_memory: usize,
    /// Server API keys; empty: no auth.
    pub api_keys: Vec<String>,
    /// Signs ephemeral tokens; random per process when unset.
    pub token_secret: Option<Vec<u8>>,
    /// Signaling requests per second per client address (bursts of twice that); 0: no limit.
    pub offers_per_ip: u32,
    /// How datagrams are spread over the shards' sockets.
    pub steering: Steering,
    /// Datagrams per `recvmmsg` when draining a backlog (1: no batching).
    pub recv_batch: usize,
    /// `--ice-tcp-port`: the TCP port for ICE-TCP passive candidates (0: any free port); `None`:
    /// UDP only.
    pub ice_tcp_port: Option<u16>,
    /// `--cors-origins`: browser origins allowed to call (`None`: any while auth is off, none with
    /// auth on).
    pub cors_origins: Option<Vec<String>>,
    /// `--record-dir` and its budget; `None`: nothing is recorded.
    pub record: Option<RecordSettings>,
    /// `--fleet`: join a fleet on Redis; `None`: this node runs alone.
    pub fleet: Option<FleetSettings>,
    pub shard: ShardSettings,
}

impl EngineConfig {
    /// A config with the `tern serve` defaults: media bound to `udp` and advertised there (so `udp`
    /// must be an address clients can reach), one worker running `agent`.
    pub fn new(cores: Vec<usize>, http: SocketAddr, udp: SocketAddr, agent: AgentKind) -> Self {
        let shards = cores.len().max(1);
        let max_sessions = 10_000;
        EngineConfig {
            udp_bind: udp,
            public: udp,
            http,
            workers: 1,
            agent,
            max_sessions,
            max_sdp_bytes: 64 * 1024,
            ring_frames: 2048,
            io_memory: 512 * 1024,
            api_keys: Vec::new(),
            token_secret: None,
            offers_per_ip: 20,
            steering: Steering::Hash,
            recv_batch: 32,
            cors_origins: None,
            ice_tcp_port: None,
            record: None,
            fleet: None,
            shard: ShardSettings {
                node: 0,
                shards: shards as u16,
                workers: 1,
                public: udp,
                public_tcp: None,
                max_sessions_per_shard: max_sessions.div_ceil(shards) * 2 + 16,
                session: SessionConfig::default(),
                tag_key: TagKey::random(),
                admission: Admission::new(max_sessions),
                seed: rand::random(),
            },
            cores,
        }
    }
}

/// A running engine; `stop()` asks every shard to close its sessions and exit.
pub struct Engine {
    stop: Stop,
    drain: Drain,
    shards: Vec<glommio::ExecutorJoinHandle<()>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// The recorder and fleet threads; told to end (`shards_done`) once the shards have ended,
    /// so they handle their calls' last packets and ends.
    recorder: Option<std::thread::JoinHandle<()>>,
    fleet: Option<std::thread::JoinHandle<()>>,
    shards_done: Arc<AtomicBool>,
    pub http: SocketAddr,
    pub public: SocketAddr,
}

/// The stop request: a flag every shard and worker checks, and a ring of every shard's doorbell so
/// that an executor asleep in `io_uring_enter` wakes and sees it now rather than at its next timer
/// (a glommio timer is not a wake-up anyone should bet the shutdown on).
#[derive(Debug, Clone)]
pub struct Stop {
    flag: Arc<AtomicBool>,
    bells: Vec<Arc<Doorbell>>,
}

impl Stop {
    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        for b in &self.bells {
            b.ring();
        }
    }

    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Graceful shutdown: stop taking calls, let live sessions finish, then stop.
#[derive(Debug, Clone)]
pub struct Drain {
    draining: Arc<AtomicBool>,
    stop: Stop,
    admission: Admission,
}

impl Drain {
    /// New calls get 503 with `Retry-After` and `/readyz` turns 503; sessions go on.
    pub fn begin(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Sessions still admitted (live or connecting).
    pub fn sessions(&self) -> usize {
        self.admission.admitted()
    }

    /// Waits until every session ended or `timeout` passed, then stops the engine (remaining
    /// sessions get a `server_shutdown` event and are closed). Returns the sessions cut off.
    pub fn run(&self, timeout: Duration) -> usize {
        self.begin();
        let deadline = std::time::Instant::now() + timeout;
        while self.sessions() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let left = self.sessions();
        self.stop.request();
        left
    }
}

impl Engine {
    pub fn drain(&self) -> Drain {
        self.drain.clone()
    }

    /// Asks every shard to close its sessions (`server_shutdown`) and exit, and wakes them.
    pub fn stop(&self) {
        self.stop.request();
    }

    /// A handle that can request the stop from another thread.
    pub fn stopper(&self) -> Stop {
        self.stop.clone()
    }

    /// Waits for every shard and worker to finish.
    pub fn join(self) {
        for s in self.shards {
            if let Err(e) = s.join() {
                tracing::error!("shard exited with error: {e}");
            }
        }
        self.stop.request();
        for w in self.workers {
            let _ = w.join();
        }
        self.shards_done.store(true, Ordering::Release);
        for t in [self.recorder, self.fleet].into_iter().flatten() {
            let _ = t.join();
        }
    }
}

/// Registers for expedited membarrier before any thread starts: otherwise glommio's first park
/// registers lazily and costs 10-80 ms.
pub fn register_membarrier() {
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;
    // SAFETY: a plain syscall with integer arguments.
    let r = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
            0,
        )
    };
    if r != 0 {
        tracing::warn!(
            "membarrier registration failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Checks RLIMIT_MEMLOCK against what the executors need, raising the soft limit if permitted.
pub fn check_memlock(executors: usize, io_memory: usize) -> anyhow::Result<()> {
    let need = executors as u64 * (io_memory as u64 + 64 * 1024);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) != 0 {
            return Ok(());
        }
        if lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) == 0 {
                lim = raised;
            }
        }
    }
    let cur = lim.rlim_cur;
    if cur == libc::RLIM_INFINITY || cur >= need {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let msg = format!(
        "RLIMIT_MEMLOCK is {} KiB but {executors} executors with --io-memory-kib {} need about {} KiB; \
         raise it (ulimit -l unlimited, or LimitMEMLOCK=infinity in systemd) or lower --io-memory-kib / --cores",
        cur / 1024,
        io_memory / 1024,
        need / 1024
    );
    if root {
        // Root has CAP_IPC_LOCK, which lets io_uring lock memory beyond the limit.
        tracing::warn!("{msg} (continuing: running as root with CAP_IPC_LOCK)");
        Ok(())
    } else if cur < 512 * 1024 {
        bail!("{msg}")
    } else {
        tracing::warn!("{msg}");
        Ok(())
    }
}

/// Starts workers and shards; returns once every shard is listening.
pub fn start(cfg: EngineConfig) -> anyhow::Result<Engine> {
    check_memlock(cfg.cores.len(), cfg.io_memory)?;
    if let Some(ice) = cfg
        .ice_tcp_port
        .map(|p| SocketAddr::new(cfg.udp_bind.ip(), p))
        .filter(|a| tcp_listeners_collide(*a, cfg.http))
    {
        // Both listeners set SO_REUSEPORT, so the kernel would let the second bind succeed and
        // then deal signaling connections to ICE-TCP and ICE-TCP ones to HTTP at random.
        anyhow::bail!(
            "ICE-TCP would listen on {ice}, the HTTP address (--http {}): TCP port {} \
             would carry both; choose another --udp-port, set --ice-tcp-port, or --ice-tcp-port 0 \
             to turn ICE-TCP off",
            cfg.http,
            ice.port()
        );
    }
    let crypto = ServerCrypto::new().context("creating DTLS certificate")?;
    let shards = cfg.cores.len();
    let stop = Arc::new(AtomicBool::new(false));
    let admission = Admission::new(cfg.max_sessions);
    let draining = Arc::new(AtomicBool::new(false));
    let bells: Vec<Arc<Doorbell>> = (0..shards).map(|_| Arc::new(Doorbell::default())).collect();
    let stopper = Stop {
        flag: stop.clone(),
        bells: bells.clone(),
    };
    let mesh = Mesh::new(shards, &bells, 4096);

    // links[w][s]: rings between worker w and shard s.
    let links: Vec<Vec<Arc<WorkerLink>>> = (0..cfg.workers)
        .map(|_| {
            (0..shards)
                .map(|_| {
                    Arc::new(WorkerLink {
                        uplink: super::rings::Ring::new(cfg.ring_frames),
                        downlink: super::rings::Ring::new(cfg.ring_frames),
                    })
                })
                .collect()
        })
        .collect();
    let mut worker_threads = Vec::new();
    let mut worker_joins = Vec::new();
    let worker_cpus = worker::off_media_cores(&CpuList::all_online().0, &cfg.cores);
    if worker_cpus.is_empty() {
        tracing::info!("inference workers share the media cores (--cores takes every CPU)");
    } else {
        tracing::info!(cpus = ?worker_cpus, "inference workers kept off the media cores");
    }
    for (w, l) in links.iter().enumerate() {
        let plan = WorkerPlan {
            id: w as u16,
            links: l.clone(),
            bells: bells.clone(),
            agent: cfg.agent.clone(),
            vad: cfg.shard.session.vad,
            turn_model: cfg.shard.session.turn_model,
            stop: stop.clone(),
            cpus: worker_cpus.clone(),
        };
        let (thread, join) = worker::spawn(plan).context("spawning worker thread")?;
        worker_threads.push(thread);
        worker_joins.push(join);
    }

    let shards_done = Arc::new(AtomicBool::new(false));
    let (mut recorders, recorder_shared, recorder_join) = match &cfg.record {
        Some(r) => {
            let (ends, shared, join) = recorder::spawn(r.clone(), shards, shards_done.clone())
                .with_context(|| format!("starting the recorder in {}", r.dir.display()))?;
            (
                ends.into_iter().map(Some).collect(),
                Some(shared),
                Some(join),
            )
        }
        None => ((0..shards).map(|_| None).collect::<Vec<_>>(), None, None),
    };

    // Bind every socket before any shard serves, in shard order: the SO_REUSEPORT group is built
    // once and kept (adding or closing a socket remaps flows).
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    let mut ice_tcp = Vec::new();
    let (mut udp_addr, mut http_bind) = (cfg.udp_bind, cfg.http);
    let mut ice_tcp_addr = cfg
        .ice_tcp_port
        .map(|p| SocketAddr::new(cfg.udp_bind.ip(), p));
    for _ in 0..shards {
        if let Some(addr) = ice_tcp_addr.as_mut() {
            let l = bind_tcp(*addr)
                .with_context(|| format!("binding ICE-TCP {addr} (--ice-tcp-port)"))?;
            addr.set_port(l.local_addr()?.port());
            ice_tcp.push(Some(l));
        } else {
            ice_tcp.push(None);
        }
        let u =
            bind_udp(udp_addr).with_context(|| format!("binding UDP {udp_addr} (--udp-port)"))?;
        let t =
            bind_tcp(http_bind).with_context(|| format!("binding HTTP {http_bind} (--http)"))?;
        // Port 0 picks a free port once; the rest of the group joins that port.
        udp_addr.set_port(u.local_addr()?.port());
        http_bind.set_port(t.local_addr()?.port());
        udp.push(u);
        tcp.push(t);
    }
    // The relay ingress (`--advertise-relay`): shard i at port + i.
    let mut ingress = Vec::new();
    if let Some(base) = cfg.fleet.as_ref().and_then(|f| f.relay_ingress) {
        for i in 0..shards {
            let port = base
                .port()
                .checked_add(i as u16)
                .context("relay ingress port")?;
            let addr = SocketAddr::new(base.ip(), port);
            let u = bind_udp(addr).with_context(|| {
                format!("binding the relay ingress {addr} (--relay-ingress-port)")
            })?;
            ingress.push(Some(u));
        }
    } else {
        ingress.resize_with(shards, || None);
    }
    if cfg.steering == Steering::Cpu {
        attach_cpu_steering(&udp[0], &cfg.cores)
            .context("attaching the --steering cpu program (SO_ATTACH_REUSEPORT_CBPF)")?;
    }
    let http_addr = tcp[0].local_addr()?;
    let public = if cfg.public.port() == 0 {
        SocketAddr::new(cfg.public.ip(), udp[0].local_addr()?.port())
    } else {
        cfg.public
    };
    let reply_from = reply_source(cfg.udp_bind.ip(), public.ip());
    tracing::info!(reply_from = ?reply_from, "media replies leave from the advertised address when it is local");
    let public_tcp = ice_tcp_addr.map(|a| SocketAddr::new(public.ip(), a.port()));
    let mut shard_settings = cfg.shard.clone();
    // One grid for every session's silence fills, so that a shard wakes once per tick for all of
    // them rather than once per session (see `UplinkPath::set_fill_grid`).
    shard_settings.session.fill_grid = Some(std::time::Instant::now());
    let settings = Arc::new(ShardSettings {
        public,
        public_tcp,
        shards: shards as u16,
        admission: admission.clone(),
        ..shard_settings
    });
    let (mut fleets, fleet_shared, fleet_join) = match &cfg.fleet {
        Some(f) => {
            let load = NodeLoad {
                admission: admission.clone(),
                draining: draining.clone(),
            };
            let joined = fleet::join(
                f.clone(),
                settings.node,
                public,
                load,
                shards,
                shards_done.clone(),
            )?;
            let ends = joined.shards.into_iter().map(Some).collect();
            (
                ends,
                Some((joined.shared, joined.lookup)),
                Some(joined.thread),
            )
        }
        None => ((0..shards).map(|_| None).collect::<Vec<_>>(), None, None),
    };
    let secret = cfg
        .token_secret
        .clone()
        .unwrap_or_else(|| rand::random::<[u8; 32]>().to_vec());
    let ctx = HttpContext {
        max_sdp_bytes: cfg.max_sdp_bytes,
        admission: admission.clone(),
        auth: Arc::new(Auth::new(&cfg.api_keys, &secret)),
        draining: draining.clone(),
        cors: CorsPolicy::from_flag(cfg.cors_origins.as_deref(), !cfg.api_keys.is_empty()),
        session_defaults: settings.session.clone(),
        recorder: recorder_shared,
        fleet: fleet_shared,
        node: settings.node,
        tag_key: settings.tag_key.clone(),
        signaling_limit: Arc::new(std::sync::Mutex::new(IpRateLimiter::new(
            cfg.offers_per_ip,
            cfg.offers_per_ip.saturating_mul(2),
            100_000,
        ))),
    };

    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let mut joins = Vec::new();
    let sockets = udp.into_iter().zip(tcp).zip(ice_tcp).zip(ingress);
    for (i, (&cpu, (((u, t), it), ri))) in cfg.cores.iter().zip(sockets).enumerate() {
        let shard_links: Vec<Arc<WorkerLink>> = links.iter().map(|l| l[i].clone()).collect();
        let workers: Vec<_> = shard_links
            .iter()
            .cloned()
            .zip(worker_threads.iter().cloned())
            .collect();
        let core = ShardCore::new(i as u16, settings.clone(), crypto.clone());
        let mesh = mesh.clone();
        let bell = bells[i].clone();
        let stop = stop.clone();
        let ctx = ctx.clone();
        let ready = ready_tx.clone();
        let recv_batch = cfg.recv_batch;
        let worker_detects_voice = cfg.shard.session.vad.runs_on_worker();
        let recorder = recorders[i].take();
        let fleet = fleets[i].take();
        let (ufd, tfd) = (u.into_raw_fd(), t.into_raw_fd());
        let itfd = it.map(|l| l.into_raw_fd());
        let rifd = ri.map(|u| u.into_raw_fd());
        let relay =
            rifd.map(|_| RelayIngress::new(&settings.tag_key, settings.max_sessions_per_shard * 4));
        let builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("tern-shard-{i}"))
            .io_memory(cfg.io_memory)
            .ring_depth(256)
            .preempt_timer(Duration::from_millis(5));
        let handle = builder
            .spawn(move || async move {
                // SAFETY: the fds were bound above and handed over to this executor alone.
                let socket = unsafe { glommio::net::UdpSocket::from_raw_fd(ufd) };
                let listener = unsafe { glommio::net::TcpListener::from_raw_fd(tfd) };
                // Warm the executor: the first park is slow.
                glommio::timer::sleep(Duration::from_millis(1)).await;
                let state = Rc::new(RefCell::new(ShardState::new(
                    core,
                    socket.as_raw_fd(),
                    reply_from,
                    mesh,
                    workers,
                )));
                state.borrow_mut().io.recorder = recorder;
                state.borrow_mut().io.fleet = fleet;
                state.borrow_mut().io.relay = relay;
                state.borrow_mut().io.worker_detects_voice = worker_detects_voice;
                let _ = ready.send(Ok(()));
                glommio::spawn_local(receive_loop(
                    state.clone(),
                    socket,
                    Ingress::Direct,
                    recv_batch,
                ))
                .detach();
                if let Some(fd) = rifd {
                    // SAFETY: bound above and handed over to this executor alone.
                    let s = unsafe { glommio::net::UdpSocket::from_raw_fd(fd) };
                    glommio::spawn_local(receive_loop(
                        state.clone(),
                        s,
                        Ingress::Relay,
                        recv_batch,
                    ))
                    .detach();
                }
                if let Some(fd) = itfd {
                    // SAFETY: bound above and handed over to this executor alone.
                    let l = unsafe { glommio::net::TcpListener::from_raw_fd(fd) };
                    glommio::spawn_local(ice_tcp::accept_loop(state.clone(), l)).detach();
                }
                glommio::spawn_local(inbox_loop(state.clone(), bell, shard_links, stop.clone()))
                    .detach();
                let ctx = Rc::new(ctx);
                let st = state.clone();
                glommio::spawn_local(async move {
                    loop {
                        match listener.accept().await {
                            Ok(stream) => {
                                glommio::spawn_local(serve_connection(
                                    stream,
                                    st.clone(),
                                    ctx.clone(),
                                ))
                                .detach();
                            }
                            Err(e) => {
                                tracing::warn!("accept: {e}");
                                glommio::timer::sleep(Duration::from_millis(10)).await;
                            }
                        }
                    }
                })
                .detach();
                timer_loop(state, stop).await;
            })
            .map_err(|e| anyhow::anyhow!("starting executor on CPU {cpu}: {e}"))?;
        joins.push(handle);
    }
    drop(ready_tx);
    for _ in 0..shards {
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => bail!("a shard did not start within 10 s"),
        }
    }
    tracing::info!(shards, http = %http_addr, public = %public, libopus = audiopus::version(), "tern serving");
    Ok(Engine {
        drain: Drain {
            draining,
            stop: stopper.clone(),
            admission,
        },
        stop: stopper,
        shards: joins,
        workers: worker_joins,
        recorder: recorder_join,
        fleet: fleet_join,
        shards_done,
        http: http_addr,
        public,
    })
}
