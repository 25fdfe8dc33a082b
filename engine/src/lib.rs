//! Tern: a thread-per-core WebRTC media engine for real-time voice AI.
//!
//! - [`core`]: sans-IO state machines (routing, sessions, media, turn detection, events).
//! - [`agent`]: inference workers and the agents they run (the built-in `echo`).
//! - [`shell`]: the thin IO layer: pinned glommio shards, sockets, HTTP, metrics.

pub mod agent;
pub mod config;
pub mod core;
pub mod heap;
pub mod shell;
