//! Starts a real engine (pinned shards, sockets, workers) on loopback with free ports.

use tern_engine::agent::AgentKind;
use tern_engine::shell::runtime::{self, Engine, EngineConfig};

/// An engine with `shards` shards on CPUs 0.. (wrapping over the CPUs this machine has).
pub fn start(shards: usize, max_sessions: usize) -> Engine {
    start_with_agent(shards, max_sessions, AgentKind::Echo)
}

/// The same, with the workers running `agent`.
pub fn start_with_agent(shards: usize, max_sessions: usize, agent: AgentKind) -> Engine {
    start_with(shards, max_sessions, agent, |_| {})
}

/// The same, with a last say on the config.
pub fn start_with(
    shards: usize,
    max_sessions: usize,
    agent: AgentKind,
    tweak: impl FnOnce(&mut EngineConfig),
) -> Engine {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cores: Vec<usize> = (0..shards).map(|i| i % cpus).collect();
    let any = "127.0.0.1:0".parse().expect("addr");
    let mut cfg = EngineConfig::new(cores, any, any, agent);
    cfg.max_sessions = max_sessions;
    cfg.max_sdp_bytes = 16 * 1024;
    cfg.ring_frames = 1024;
    cfg.io_memory = 256 * 1024;
    cfg.shard.max_sessions_per_shard = max_sessions * 2 + 4;
    tweak(&mut cfg);
    runtime::start(cfg).expect("engine starts")
}
