//! Sans-IO core: everything here takes `(now, input)` and returns outputs and deadlines. Nothing
//! reads the clock, spawns, sleeps or touches a socket, so all of it runs in virtual time in tests.

pub mod admission;
pub mod auth;
pub mod classify;
pub mod deadlines;
pub mod events;
pub mod fleet;
pub mod media;
pub mod multipart;
pub mod output;
pub mod peer_addr;
pub mod rate_limit;
pub mod recording;
pub mod relay;
pub mod ring_msg;
pub mod rtc_setup;
pub mod session;
pub mod session_id;
pub mod session_limits;
pub mod session_object;
pub mod session_table;
pub mod shard;
pub mod shard_msg;
pub mod turn;
