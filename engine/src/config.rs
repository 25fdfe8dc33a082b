//! Command-line flags of `tern serve`, validated at start: a bad value stops start-up with a
//! message naming the flag and what is allowed.

use std::net::{IpAddr, SocketAddr};

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "tern",
    version,
    about = "Thread-per-core WebRTC media engine for real-time voice AI"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve WebRTC voice sessions.
    Serve(Box<ServeArgs>),
    /// Front a fleet's media nodes with one public UDP address, routing on the ICE ufrag.
    Relay(RelayArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// The fleet's Redis (`redis://HOST:PORT[/DB]`), where the relay reads the nodes.
    #[arg(long, env = "TERN_FLEET")]
    pub fleet: String,
    /// The fleet's shared secret (`--fleet-secret` of the nodes): the relay checks every new
    /// flow's ufrag seal with it and signs the headers it puts on datagrams.
    #[arg(long, env = "TERN_FLEET_SECRET", hide_env_values = true)]
    pub fleet_secret: String,
    /// Prefix of the fleet's Redis keys.
    #[arg(long, default_value = "tern:")]
    pub fleet_prefix: String,
    /// CPUs to run relay shards on, one pinned executor each. Default: all online CPUs.
    #[arg(long, value_parser = parse_cpu_list)]
    pub cores: Option<CpuList>,
    /// The public UDP port clients send to (the nodes' `--advertise-relay` port).
    #[arg(long, default_value_t = 3478, value_parser = clap::value_parser!(u16).range(1..))]
    pub udp_port: u16,
    /// Local address the public UDP sockets bind to.
    #[arg(long, default_value = "0.0.0.0")]
    pub udp_bind: IpAddr,
    /// The relay's public IP, when the host has several: replies to clients leave from it.
    #[arg(long, value_parser = parse_public_ip)]
    pub public_ip: Option<IpAddr>,
    /// Where the relay sends to and hears from the nodes (an internal address; nodes send their
    /// replies here).
    #[arg(long, default_value = "127.0.0.1:3479")]
    pub internal_addr: SocketAddr,
    /// Flows (client addresses) each relay shard tracks at most; new flows beyond it are dropped
    /// and counted.
    #[arg(long, default_value_t = 262_144, value_parser = clap::value_parser!(u32).range(16..))]
    pub max_flows_per_shard: u32,
    /// HTTP address for `/metrics` and `/healthz`.
    #[arg(long, default_value = "127.0.0.1:9479")]
    pub http: SocketAddr,
    /// Datagrams per `recvmmsg` after a wake-up.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub recv_batch: u16,
    /// io_uring memory per executor, in KiB.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(64..=65_536))]
    pub io_memory_kib: u32,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `--steering`: how the kernel spreads datagrams over the shards' sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecordFormatArg {
    Ogg,
    Wav,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SteeringArg {
    /// Hash of the 4-tuple (kernel default).
    Hash,
    /// The socket of the CPU that received the packet (classic-BPF reuseport program).
    Cpu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TurnDetectionKind {
    #[value(name = "server_vad")]
    ServerVad,
    /// server_vad's start of speech, with the end chosen from prosody (see --eagerness).
    #[value(name = "semantic_vad")]
    SemanticVad,
    None,
}

/// `--noise-reduction`: the default of `audio.input.noise_reduction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NoiseReductionArg {
    Off,
    #[value(name = "near_field")]
    NearField,
    #[value(name = "far_field")]
    FarField,
}

/// `--vad`: the voice detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VadArg {
    /// earshot: small, on the media core (about 6 µs per 16 ms).
    Earshot,
    /// Silero v6 (tract-onnx): more robust in noise; runs on the inference workers.
    Silero,
}

/// `--turn-model`: what chooses semantic_vad's waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TurnModelArg {
    /// The pitch and energy of the last words, on the media core.
    Prosody,
    /// Smart Turn v3.2 on the inference workers (about 0.2 s of a worker CPU per pause).
    #[value(name = "smart-turn")]
    SmartTurn,
}

/// `--eagerness` for semantic_vad: how soon a turn may end (longest waits 8/4/2 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EagernessArg {
    Low,
    Medium,
    High,
    Auto,
}

/// `--agent`: what the inference workers run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentArg {
    /// Plays each user turn back.
    Echo,
    /// Bridges each session to an OpenAI-Realtime-compatible WebSocket server.
    RealtimeWs(String),
    /// Bridges each session to a pcm-ws worker (PCM frames plus JSON control).
    PcmWs(String),
}

fn parse_agent(s: &str) -> Result<AgentArg, String> {
    const ALLOWED: &str =
        "allowed: echo, realtime-ws=<ws:// or wss:// URL>, pcm-ws=<ws:// or wss:// URL>";
    let url_ok =
        |u: &str| (u.starts_with("ws://") || u.starts_with("wss://")) && u.len() > "wss://".len();
    match s.split_once('=') {
        None if s == "echo" => Ok(AgentArg::Echo),
        Some(("realtime-ws", u)) if url_ok(u) => Ok(AgentArg::RealtimeWs(u.to_string())),
        Some(("pcm-ws", u)) if url_ok(u) => Ok(AgentArg::PcmWs(u.to_string())),
        _ => Err(ALLOWED.into()),
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// CPUs to run media shards on, one pinned executor each (e.g. `0-3` or `0,2`). Default: all online CPUs.
    #[arg(long, value_parser = parse_cpu_list)]
    pub cores: Option<CpuList>,
    /// UDP port for all media (ICE, DTLS, SRTP), shared by every shard with SO_REUSEPORT.
    #[arg(long, default_value_t = 3478, value_parser = clap::value_parser!(u16).range(1..))]
    pub udp_port: u16,
    /// TCP port for ICE-TCP passive candidates (RFC 6544/4571) for networks that block UDP (443
    /// passes most firewalls). Default: the same number as --udp-port; 0 turns ICE-TCP off.
    #[arg(long)]
    pub ice_tcp_port: Option<u16>,
    /// Local address the UDP sockets bind to.
    #[arg(long, default_value = "0.0.0.0")]
    pub udp_bind: IpAddr,
    /// Address advertised in ICE candidates. Default: the host's primary address (default route),
    /// else 127.0.0.1. Must be a specific address (0.0.0.0 and :: are rejected).
    #[arg(long, value_parser = parse_public_ip)]
    pub public_ip: Option<IpAddr>,
    /// HTTP listen address (signaling, metrics, demo page).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Inference worker threads, kept off the media cores: they run on the CPUs `--cores` leaves
    /// (on the media cores only when `--cores` takes every CPU).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
    /// Agent run by the workers.
    #[arg(long, value_parser = parse_agent, default_value = "echo")]
    pub agent: AgentArg,
    /// Signaling requests (offers, tokens, hangups) per second per client address, bursts of twice
    /// that; more get 429. 0 turns the limit off (behind a proxy every client shares its address).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub max_offers_per_ip: u32,
    /// How datagrams reach shards: `hash` (kernel default) or `cpu` (the shard of the CPU that
    /// received the packet; pair with NIC RSS or RPS so each flow's interrupts land on one core).
    #[arg(long, value_enum, default_value_t = SteeringArg::Hash)]
    pub steering: SteeringArg,
    /// Browser origins allowed to call the API from their own pages (CORS), comma-separated
    /// (`https://app.example,http://localhost:5173`), or `*` for any. Default: any origin while
    /// no --api-key is set, none when keys are set.
    #[arg(long, value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Option<Vec<String>>,
    /// Datagrams taken per receive syscall (recvmmsg) when a backlog waits; 1: one per receive.
    /// A shard tries it after each wake-up while drains keep finding datagrams; after an empty
    /// one it skips the next 1, 2, 4 ... 32 wake-ups (no wasted syscall per datagram when idle).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub recv_batch: u16,
    /// Voiced speech (ms) needed over a playing reply before its audio stops; shorter bursts
    /// (coughs, echo) are rejected and counted. 0 stops it at once.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=5000))]
    pub barge_in_min_ms: u32,
    /// Speech in all (ms) before a reply stopped by --barge-in-min-ms is dropped; a backchannel
    /// that ends sooner (300 ms of silence) lets the reply play on. At or below
    /// --barge-in-min-ms: the reply is dropped at once.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub barge_in_confirm_ms: u32,
    /// Close a session after this many seconds without any datagram from its peer.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub idle_timeout_s: u64,
    /// Close a session after this many seconds without an ICE consent check (RFC 7675 uses 30).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub consent_timeout_s: u64,
    /// End a call this many seconds after its offer, with an `error` event (`session_expired`)
    /// first. Default: no limit.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub max_session_s: Option<u64>,
    /// Record calls into this directory (created if missing): both directions of a call, as
    /// received and as sent, named `<call id>-in.<ext>` and `<call id>-out.<ext>`. Which calls:
    /// every call with --record-all, otherwise those whose session (set by a server: a token's
    /// session or a server-key offer) says `"tern": {"record": true}`. Unset: nothing is recorded.
    #[arg(long)]
    pub record_dir: Option<std::path::PathBuf>,
    /// Record every call (needs --record-dir); a session may still say `"record": false`.
    #[arg(long, requires = "record_dir")]
    pub record_all: bool,
    /// `ogg` (Opus packets as they travelled; G.711 calls as WAV) or `wav` (Opus decoded to
    /// 48 kHz PCM on the recorder thread).
    #[arg(long, value_enum, default_value_t = RecordFormatArg::Ogg)]
    pub record_format: RecordFormatArg,
    /// Disk budget for --record-dir, in bytes written by this process: when it is spent, every
    /// recording stops (files closed properly) and calls go on unrecorded.
    #[arg(long, default_value_t = 10 * 1024 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(4096..))]
    pub record_max_bytes: u64,
    /// Largest data-channel event accepted from a client, bytes; larger get an error event.
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u64).range(256..=1_048_576))]
    pub max_event_bytes: u64,
    /// Data-channel events per second per session (bursts of twice that); more are refused.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_events_per_sec: u32,
    /// Most sessions one shard holds (answered plus adopted). Default: 2 x --max-sessions / shards + 16.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_sessions_per_shard: Option<u64>,
    /// Seconds the first SIGTERM/SIGINT waits for live sessions to end before closing them
    /// (new calls get 503 meanwhile). A second signal exits at once.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub drain_timeout: u64,
    /// Seconds to wait, once the drain is over, for every shard and worker to exit; past it the
    /// process logs which did not and exits with status 1 anyway, so a stop never hangs.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub stop_timeout: u64,
    /// Server API keys for `/v1/realtime/calls` and `/v1/realtime/client_secrets` (repeat the flag,
    /// or a comma-separated list in `TERN_API_KEYS`). Unset: no auth.
    #[arg(
        long = "api-key",
        env = "TERN_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// Secret that signs ephemeral `ek_` tokens; give every node of a fleet the same one so a token
    /// minted on one works on all. Unset: random per process.
    #[arg(long, env = "TERN_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// API key for the agent's backend, sent as `Authorization: Bearer <key>` (bridges only).
    #[arg(long, env = "TERN_AGENT_API_KEY", hide_env_values = true)]
    pub agent_api_key: Option<String>,
    /// Most concurrent sessions; more offers get 503.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_sessions: u64,
    /// Largest SDP offer accepted, in bytes; larger gets 413.
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(1024..=1_048_576))]
    pub max_sdp_bytes: u64,
    /// Sample rate of PCM handed to inference.
    #[arg(long, default_value_t = 24_000, value_parser = parse_model_rate)]
    pub model_rate: u32,
    /// Default turn detection (clients may change it with session.update).
    #[arg(long, value_enum, default_value_t = TurnDetectionKind::ServerVad)]
    pub turn_detection: TurnDetectionKind,
    /// Voice detector: earshot (on the media core) or silero (Silero v6 on the inference
    /// workers; its answer comes back through the ring).
    #[arg(long, value_enum, default_value_t = VadArg::Earshot)]
    pub vad: VadArg,
    /// Noise suppression (RNNoise) before the VAD, the turn detector and the model, for sessions
    /// that do not set `audio.input.noise_reduction` themselves: off (OpenAI's default, null),
    /// near_field or far_field (the same model; about 0.27 ms of media-core CPU per 20 ms frame,
    /// `cargo bench --bench turn_path`).
    #[arg(long, value_enum, default_value_t = NoiseReductionArg::Off)]
    pub noise_reduction: NoiseReductionArg,
    /// semantic_vad: how eagerly a turn ends (low waits up to 8 s after an unfinished-sounding
    /// pause, medium 4 s, high 2 s; auto is medium).
    #[arg(long, value_enum, default_value_t = EagernessArg::Auto)]
    pub eagerness: EagernessArg,
    /// semantic_vad: what chooses how long a pause must last. smart-turn: Smart Turn v3.2 on the
    /// inference workers (about 0.1-0.2 s of a worker CPU per question): high asks 200 ms into a
    /// pause and ends the turn on a confident "complete", medium asks 400 ms in, ends the turn on
    /// "complete" and waits 1.6 s on "incomplete"; low never asks. Until it answers, or when it is
    /// busy, the pause is timed like server_vad at 500/800/1200 ms for high/medium/low. prosody:
    /// the pitch and energy of the last words (media core; waits up to the eagerness ceiling,
    /// worse than a timer on held-out voices).
    #[arg(long, value_enum, default_value_t = TurnModelArg::SmartTurn)]
    pub turn_model: TurnModelArg,
    /// server_vad: speech probability threshold.
    #[arg(long, default_value_t = 0.5, value_parser = parse_threshold)]
    pub vad_threshold: f32,
    /// server_vad: audio kept before the detected start of speech, in ms.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(0..=5000))]
    pub prefix_padding_ms: u32,
    /// server_vad: silence that ends a turn, in ms.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(20..=10_000))]
    pub silence_duration_ms: u32,
    /// Opus encoder complexity for replies (0-10; encoding is the per-core ceiling).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(0..=10))]
    pub opus_complexity: u8,
    /// Opus encoder complexity for reply frames with no sound above -54 dBFS (pauses between
    /// words and sentences; never above `--opus-complexity`). 2 costs about half of 5 on such
    /// frames at unchanged PESQ; set it equal to `--opus-complexity` to encode every frame alike.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=10))]
    pub opus_quiet_complexity: u8,
    /// Ask clients for Opus DTX in the answer (`usedtx=1`): while the user is silent a browser
    /// sends a packet every 400 ms instead of 50 a second, and Tern fills the gaps with silence
    /// without decoding. `--opus-dtx false` answers without it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub opus_dtx: bool,
    /// Frames per shard<->worker ring (each direction).
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(64..=65_536))]
    pub ring_frames: u32,
    /// Node id carried in ufrags and call ids; unique in a fleet (a second live node with the
    /// same id is refused at start).
    #[arg(long, default_value_t = 0)]
    pub node_id: u16,
    /// Join a fleet whose shared state lives in this Redis (`redis://HOST:PORT[/DB]`): the node
    /// registers itself (addresses, state, load) under a TTL and lists its calls in the call
    /// directory. Unset: this node runs alone.
    #[arg(long, env = "TERN_FLEET")]
    pub fleet: Option<String>,
    /// The secret every node of a fleet shares: it seals ufrags and call ids, so any node (and a
    /// relay) can tell the fleet's own from forged ones. Unset: a random key per process.
    #[arg(long, env = "TERN_FLEET_SECRET", hide_env_values = true)]
    pub fleet_secret: Option<String>,
    /// Where other nodes of the fleet reach this node's HTTP (default: the --http address).
    #[arg(long)]
    pub internal_addr: Option<SocketAddr>,
    /// Prefix of the fleet's Redis keys (several fleets may share one Redis).
    #[arg(long, default_value = "tern:")]
    pub fleet_prefix: String,
    /// How long a call's directory entry outlives the last refresh from its node (a node that
    /// dies leaves its calls' entries for at most this long); refreshed every third of it, one
    /// pipelined command per live call.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(3..=3600))]
    pub fleet_call_ttl_s: u32,
    /// This node sits behind `tern relay`s whose public UDP address is this: it is the one ICE
    /// candidate the node advertises, and the node takes relayed media on its relay ingress
    /// (needs --fleet and --fleet-secret).
    #[arg(long, requires = "fleet", requires = "fleet_secret")]
    pub advertise_relay: Option<SocketAddr>,
    /// First UDP port of the relay ingress: shard i takes relayed datagrams on the internal IP
    /// (of --internal-addr) at this port + i. Default: --udp-port + 1.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub relay_ingress_port: Option<u16>,
    /// io_uring memory per executor, in KiB (counts against RLIMIT_MEMLOCK).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(64..=65_536))]
    pub io_memory_kib: u32,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// A validated list of CPU ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

fn online_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            return (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect();
        }
    }
    (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
}

impl CpuList {
    pub fn all_online() -> Self {
        CpuList(online_cpus())
    }
}

pub fn parse_cpu_list(s: &str) -> Result<CpuList, String> {
    let online = online_cpus();
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let parse = |x: &str| {
            x.trim()
                .parse::<usize>()
                .map_err(|_| format!("{part:?} is not a CPU number or range like 0-3"))
        };
        let (a, b) = (parse(a)?, parse(b)?);
        if a > b {
            return Err(format!("range {part:?} runs backwards"));
        }
        for c in a..=b {
            if !online.contains(&c) {
                return Err(format!(
                    "CPU {c} is not available to this process (available: {})",
                    fmt_cpus(&online)
                ));
            }
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    if out.is_empty() {
        return Err("give at least one CPU, e.g. 0 or 0-3".into());
    }
    if out.len() > 1024 {
        return Err("at most 1024 cores".into());
    }
    Ok(CpuList(out))
}

fn fmt_cpus(c: &[usize]) -> String {
    c.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_origin(s: &str) -> Result<String, String> {
    let s = s.trim();
    let ok = s == "*"
        || ((s.starts_with("http://") || s.starts_with("https://"))
            && !s
                .trim_end_matches('/')
                .contains(|c: char| c.is_whitespace())
            && s.trim_end_matches('/').matches('/').count() == 2);
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not an origin: use scheme://host[:port] (no path) or *"
        ))
    }
}

fn parse_public_ip(s: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = s
        .parse()
        .map_err(|_| format!("{s:?} is not an IP address"))?;
    if ip.is_unspecified() {
        return Err(
            "must be the specific address clients reach (0.0.0.0 and :: are not allowed)".into(),
        );
    }
    Ok(ip)
}

fn parse_model_rate(s: &str) -> Result<u32, String> {
    match s {
        "16000" => Ok(16_000),
        "24000" => Ok(24_000),
        _ => Err("allowed: 16000 or 24000".into()),
    }
}

fn parse_threshold(s: &str) -> Result<f32, String> {
    let v: f32 = s
        .parse()
        .map_err(|_| "must be a number between 0.0 and 1.0".to_string())?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0.0 and 1.0".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_values() {
        assert_eq!(parse_agent("echo"), Ok(AgentArg::Echo));
        assert_eq!(
            parse_agent("realtime-ws=wss://api.example.com/v1/realtime?model=m"),
            Ok(AgentArg::RealtimeWs(
                "wss://api.example.com/v1/realtime?model=m".into()
            ))
        );
        assert_eq!(
            parse_agent("pcm-ws=ws://127.0.0.1:9000"),
            Ok(AgentArg::PcmWs("ws://127.0.0.1:9000".into()))
        );
        assert!(parse_agent("pcm-ws=").is_err());
        assert!(parse_agent("llm").is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0"), Ok(CpuList(vec![0])));
        assert!(parse_cpu_list("0-0,0").is_ok());
        assert!(parse_cpu_list("5000")
            .unwrap_err()
            .contains("not available"));
        assert!(parse_cpu_list("x")
            .unwrap_err()
            .contains("not a CPU number"));
        assert!(parse_cpu_list("3-1").unwrap_err().contains("backwards"));
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let e = Cli::try_parse_from(["tern", "serve", "--udp-port", "70000"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--udp-port"), "{e}");
        let e = Cli::try_parse_from(["tern", "serve", "--public-ip", "0.0.0.0"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--public-ip") && e.contains("not allowed"),
            "{e}"
        );
        let e = Cli::try_parse_from(["tern", "serve", "--vad-threshold", "2"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--vad-threshold"), "{e}");
        let e = Cli::try_parse_from(["tern", "serve", "--model-rate", "44100"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--model-rate") && e.contains("16000 or 24000"),
            "{e}"
        );
        let e = Cli::try_parse_from(["tern", "serve", "--agent", "realtime-ws=http://x"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--agent") && e.contains("wss://"), "{e}");
        assert!(Cli::try_parse_from(["tern", "serve"]).is_ok());
    }
}
