//! `tern`: the binary. Parses flags, sets up logging, starts the engine and waits for a signal.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tern_engine::agent::bridge::conn::BackendTarget;
use tern_engine::agent::bridge::BridgeProtocol;
use tern_engine::agent::AgentKind;
use tern_engine::config::{
    AgentArg, Cli, Command, CpuList, EagernessArg, LogFormat, NoiseReductionArg, RecordFormatArg,
    RelayArgs, ServeArgs, SteeringArg, TurnDetectionKind, TurnModelArg, VadArg,
};
use tern_engine::core::admission::Admission;
use tern_engine::core::media::denoise::NoiseReduction;
use tern_engine::core::media::frame::ModelRate;
use tern_engine::core::recording::RecordFormat;
use tern_engine::core::session::SessionConfig;
use tern_engine::core::session_id::TagKey;
use tern_engine::core::session_limits::SessionLimits;
use tern_engine::core::shard::ShardSettings;
use tern_engine::core::turn::detector::ServerVadSettings;
use tern_engine::core::turn::semantic::Eagerness;
use tern_engine::core::turn::turn_model::TurnModel;
use tern_engine::core::turn::vad::VadBackend;
use tern_engine::shell::fleet::FleetSettings;
use tern_engine::shell::net::{default_route_addr, Steering};
use tern_engine::shell::recorder::RecordSettings;
use tern_engine::shell::relay::{self, RelaySettings};
use tern_engine::shell::runtime::{self, EngineConfig};

#[global_allocator]
static GLOBAL: tern_engine::heap::CountingAlloc<mimalloc::MiMalloc> =
    tern_engine::heap::CountingAlloc(mimalloc::MiMalloc);

fn main() {
    // Before any thread starts (glommio's first park otherwise registers lazily and slowly).
    runtime::register_membarrier();
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Serve(args) => {
            let args = *args;
            init_logging(args.log_format);
            serve(args)
        }
        Command::Relay(args) => {
            init_logging(args.log_format);
            relay(args)
        }
    };
    if let Err(e) = r {
        eprintln!("tern: {e:#}");
        std::process::exit(1);
    }
}

fn relay(args: RelayArgs) -> anyhow::Result<()> {
    let cores = args.cores.clone().unwrap_or_else(CpuList::all_online).0;
    let public = SocketAddr::new(args.udp_bind, args.udp_port);
    let settings = RelaySettings {
        cores,
        public,
        reply_from: args
            .public_ip
            .and_then(|ip| tern_engine::shell::net::reply_source(args.udp_bind, ip)),
        internal: args.internal_addr,
        fleet_url: args.fleet.clone(),
        prefix: args.fleet_prefix.clone(),
        key: TagKey::new(args.fleet_secret.as_bytes()),
        max_flows_per_shard: args.max_flows_per_shard as usize,
        http: args.http,
        recv_batch: args.recv_batch as usize,
        io_memory: args.io_memory_kib as usize * 1024,
    };
    let relay = relay::start(settings)?;
    eprintln!(
        "tern relay: clients on udp {} , nodes via {} , metrics on http://{}",
        relay.public, relay.internal, relay.http
    );
    let stop = relay.stopper();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing signal handlers")?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            tracing::info!("relay stopping");
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    relay.join();
    tracing::info!("relay stopped");
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

fn agent_kind(args: &ServeArgs, rate: ModelRate) -> anyhow::Result<AgentKind> {
    let target = |url: &str| {
        Arc::new(BackendTarget {
            url: url.to_string(),
            api_key: args.agent_api_key.clone(),
        })
    };
    Ok(match &args.agent {
        AgentArg::Echo => AgentKind::Echo,
        AgentArg::RealtimeWs(url) => {
            if rate != ModelRate::Hz24000 {
                anyhow::bail!(
                    "--agent realtime-ws needs --model-rate 24000 (the Realtime protocol carries 24 kHz PCM16)"
                );
            }
            AgentKind::Bridge(BridgeProtocol::RealtimeWs, target(url))
        }
        AgentArg::PcmWs(url) => AgentKind::Bridge(BridgeProtocol::PcmWs, target(url)),
    })
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let cores = args.cores.clone().unwrap_or_else(CpuList::all_online).0;
    let public_ip = args
        .public_ip
        .or_else(default_route_addr)
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let rate = ModelRate::from_hz(args.model_rate).context("--model-rate")?;
    let turn = match args.turn_detection {
        TurnDetectionKind::ServerVad => Some(ServerVadSettings {
            threshold: args.vad_threshold,
            prefix_padding_ms: args.prefix_padding_ms,
            silence_duration_ms: args.silence_duration_ms,
            ..Default::default()
        }),
        TurnDetectionKind::SemanticVad => Some(ServerVadSettings {
            threshold: args.vad_threshold,
            prefix_padding_ms: args.prefix_padding_ms,
            silence_duration_ms: args.silence_duration_ms,
            eagerness: Some(match args.eagerness {
                EagernessArg::Low => Eagerness::Low,
                EagernessArg::Medium => Eagerness::Medium,
                EagernessArg::High => Eagerness::High,
                EagernessArg::Auto => Eagerness::Auto,
            }),
            ..Default::default()
        }),
        TurnDetectionKind::None => None,
    };
    let record_format = match args.record_format {
        RecordFormatArg::Ogg => RecordFormat::Ogg,
        RecordFormatArg::Wav => RecordFormat::Wav,
    };
    let max_sessions = args.max_sessions as usize;
    let per_shard = args
        .max_sessions_per_shard
        .map_or(max_sessions.div_ceil(cores.len()) * 2 + 16, |n| n as usize);
    // A wildcard --http is no address for other nodes: pair its port with the public IP.
    let internal = args.internal_addr.unwrap_or_else(|| {
        if args.http.ip().is_unspecified() {
            SocketAddr::new(public_ip, args.http.port())
        } else {
            args.http
        }
    });
    // Behind relays, the relay's public address is the node's one candidate.
    let advertised = args
        .advertise_relay
        .unwrap_or(SocketAddr::new(public_ip, args.udp_port));
    let cfg = EngineConfig {
        udp_bind: SocketAddr::new(args.udp_bind, args.udp_port),
        public: advertised,
        http: args.http,
        workers: args.workers,
        agent: agent_kind(&args, rate)?,
        max_sessions,
        max_sdp_bytes: args.max_sdp_bytes as usize,
        ring_frames: args.ring_frames as usize,
        io_memory: args.io_memory_kib as usize * 1024,
        api_keys: args.api_keys.clone(),
        token_secret: args.token_secret.as_ref().map(|s| s.as_bytes().to_vec()),
        offers_per_ip: args.max_offers_per_ip,
        steering: match args.steering {
            SteeringArg::Hash => Steering::Hash,
            SteeringArg::Cpu => Steering::Cpu,
        },
        recv_batch: args.recv_batch as usize,
        cors_origins: args.cors_origins.clone(),
        fleet: args.fleet.as_ref().map(|url| FleetSettings {
            url: url.clone(),
            prefix: args.fleet_prefix.clone(),
            internal,
            call_ttl: Duration::from_secs(args.fleet_call_ttl_s.into()),
            relay_ingress: args.advertise_relay.map(|_| {
                let port = args
                    .relay_ingress_port
                    .unwrap_or(args.udp_port.saturating_add(1));
                SocketAddr::new(internal.ip(), port)
            }),
        }),
        record: args.record_dir.as_ref().map(|dir| RecordSettings {
            dir: dir.clone(),
            max_bytes: args.record_max_bytes,
        }),
        ice_tcp_port: match args.ice_tcp_port {
            // Relays carry UDP only.
            _ if args.advertise_relay.is_some() => None,
            None => Some(args.udp_port),
            Some(0) => None,
            Some(p) => Some(p),
        },
        shard: ShardSettings {
            node: args.node_id,
            shards: cores.len() as u16,
            workers: args.workers,
            public: advertised,
            // Set by the runtime from the bound ICE-TCP port.
            public_tcp: None,
            // A shard may hold sessions it answered and sessions it adopted.
            max_sessions_per_shard: per_shard,
            // A fleet's nodes (and relays) share the key, so any of them can check any tag.
            // Set by the runtime from --max-sessions.
            admission: Admission::unlimited(),
            // Drawn from the operating system; each shard mixes in its id.
            seed: rand::random(),
            tag_key: args
                .fleet_secret
                .as_ref()
                .map_or_else(TagKey::random, |s| TagKey::new(s.as_bytes())),
            session: SessionConfig {
                model_rate: rate,
                turn,
                encoder_complexity: args.opus_complexity,
                encoder_quiet_complexity: args.opus_quiet_complexity,
                opus_dtx: args.opus_dtx,
                barge_in_min_ms: args.barge_in_min_ms,
                barge_in_confirm_ms: args.barge_in_confirm_ms,
                vad: match args.vad {
                    VadArg::Earshot => VadBackend::Earshot,
                    VadArg::Silero => VadBackend::Silero,
                },
                turn_model: match args.turn_model {
                    TurnModelArg::Prosody => TurnModel::Prosody,
                    TurnModelArg::SmartTurn => TurnModel::SmartTurn,
                },
                noise_reduction: match args.noise_reduction {
                    NoiseReductionArg::Off => None,
                    NoiseReductionArg::NearField => Some(NoiseReduction::NearField),
                    NoiseReductionArg::FarField => Some(NoiseReduction::FarField),
                },
                limits: SessionLimits {
                    idle_timeout: Duration::from_secs(args.idle_timeout_s),
                    consent_timeout: Duration::from_secs(args.consent_timeout_s),
                    max_event_bytes: args.max_event_bytes as usize,
                    events_per_sec: args.max_events_per_sec,
                    max_duration: args.max_session_s.map(Duration::from_secs),
                    ..Default::default()
                },
                record: args.record_all.then_some(record_format),
                record_format: args.record_dir.is_some().then_some(record_format),
                ..Default::default()
            },
        },
        cores,
    };
    let engine = runtime::start(cfg)?;
    eprintln!(
        "tern: HTTP on http://{} , media on udp {} (advertised)",
        engine.http, engine.public
    );
    let drain = engine.drain();
    let drain_timeout = Duration::from_secs(args.drain_timeout);
    let stop_timeout = Duration::from_secs(args.stop_timeout);
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing signal handlers")?;
    let (tx, rx) = std::sync::mpsc::channel::<Lifecycle>();
    let drained = tx.clone();
    std::thread::spawn(move || {
        let mut count = 0;
        for _ in signals.forever() {
            count += 1;
            if count > 1 {
                std::process::exit(130);
            }
            let drain = drain.clone();
            let drained = drained.clone();
            std::thread::spawn(move || {
                tracing::info!(
                    sessions = drain.sessions(),
                    "draining: no new calls; waiting up to {drain_timeout:?} for sessions to end"
                );
                let cut = drain.run(drain_timeout);
                tracing::info!(sessions_closed = cut, "stopping");
                let _ = drained.send(Lifecycle::StopRequested);
            });
        }
    });
    std::thread::Builder::new()
        .name("tern-join".into())
        .spawn(move || {
            engine.join();
            let _ = tx.send(Lifecycle::Exited);
        })
        .context("spawning the join thread")?;
    // Shards may also end on their own (a panic); otherwise wait for the stop, then bound the wait.
    if let Ok(Lifecycle::StopRequested) = rx.recv() {
        match rx.recv_timeout(stop_timeout) {
            Ok(_) => {}
            Err(_) => {
                tracing::error!(
                    "shards or workers did not exit within {stop_timeout:?} of the stop request (--stop-timeout); exiting anyway"
                );
                std::process::exit(1);
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// What the main thread waits for.
enum Lifecycle {
    /// The drain is over and every shard was asked to stop.
    StopRequested,
    /// Every shard and worker has exited.
    Exited,
}
