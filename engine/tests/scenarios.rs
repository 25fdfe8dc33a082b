//! Every scenario test of the engine in one test binary: one link instead of one per file (the
//! debug binaries are large, and CI's disk and two cores pay for each link). Each file is a
//! module; nextest still runs every test in a process of its own. The two tests that install a
//! counting global allocator (`alloc-per-frame`, `soak-virtual`) stay binaries of their own.

#![allow(clippy::unwrap_used)]

mod common;

#[path = "auth.rs"]
mod auth;
#[path = "bridge-realtime.rs"]
mod bridge_realtime;
#[path = "cluster-virtual.rs"]
mod cluster_virtual;
#[path = "codec-pool.rs"]
mod codec_pool;
#[path = "demo-page.rs"]
mod demo_page;
#[path = "drain.rs"]
mod drain;
#[path = "dtx-virtual.rs"]
mod dtx_virtual;
#[path = "echo-turn-loss.rs"]
mod echo_turn_loss;
#[path = "echo-turn-reorder.rs"]
mod echo_turn_reorder;
#[path = "echo-turn-virtual.rs"]
mod echo_turn_virtual;
#[path = "fleet.rs"]
mod fleet;
#[path = "fleet-relay.rs"]
mod fleet_relay;
#[path = "flood-virtual.rs"]
mod flood_virtual;
#[path = "fuzz-corpus.rs"]
mod fuzz_corpus;
#[path = "handoff-virtual.rs"]
mod handoff_virtual;
#[path = "ice-tcp.rs"]
mod ice_tcp;
#[path = "limits.rs"]
mod limits;
#[path = "limits-virtual.rs"]
mod limits_virtual;
#[path = "malformed-offers.rs"]
mod malformed_offers;
#[path = "max-session-virtual.rs"]
mod max_session_virtual;
#[path = "media-state-virtual.rs"]
mod media_state_virtual;
#[path = "noise-reduction-virtual.rs"]
mod noise_reduction_virtual;
#[path = "openai-http.rs"]
mod openai_http;
#[path = "panic-isolation-virtual.rs"]
mod panic_isolation_virtual;
#[path = "real-socket-two-shards.rs"]
mod real_socket_two_shards;
#[path = "recording.rs"]
mod recording;
#[path = "reply-source.rs"]
mod reply_source;
#[path = "server-key-virtual.rs"]
mod server_key_virtual;
#[path = "setup-failures-virtual.rs"]
mod setup_failures_virtual;
#[path = "signaling-errors.rs"]
mod signaling_errors;
#[path = "silero-vad.rs"]
mod silero_vad;
#[path = "steering-cpu.rs"]
mod steering_cpu;
#[path = "stop.rs"]
mod stop;
#[path = "turn-model-virtual.rs"]
mod turn_model_virtual;
#[path = "turn-settings-virtual.rs"]
mod turn_settings_virtual;
#[path = "worker-ring-virtual.rs"]
mod worker_ring_virtual;
