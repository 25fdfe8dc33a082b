//! The thin IO shell: executors and pinning, sockets, the shard loops, HTTP and metrics export.

pub mod cors;
pub mod fleet;
pub mod fleet_http;
pub mod http;
pub mod ice_tcp;
pub mod mesh;
pub mod metrics;
pub mod net;
pub mod recorder;
pub mod recv_batch;
pub mod relay;
pub mod relay_ingress;
pub mod rings;
pub mod runtime;
pub mod shard;
pub mod worker;
