//! What a node tells the fleet, in Redis: its record (addresses, state, load) under a TTL, and
//! one directory entry per call naming its owner. Plain data and key names; the shell's fleet
//! thread does the IO.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// How long a node's record lives without a refresh: a node that dies leaves placement within it.
pub const NODE_TTL_MS: u64 = 5_000;
/// How often a live node refreshes its record.
pub const NODE_REFRESH_MS: u64 = 1_000;
/// How long a call's directory entry lives without a refresh (refreshed while the call lives).
pub const CALL_TTL_MS: u64 = 30_000;
/// How often live calls' entries are refreshed.
pub const CALL_REFRESH_MS: u64 = 10_000;

/// Whether a node takes new calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Serving,
    Draining,
}

/// A node's record, as JSON under `node_key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node: u16,
    /// Random per process: tells a restarted node (or an impostor) from the one that holds the id.
    pub instance: String,
    /// Where clients send media (the advertised address).
    pub public: SocketAddr,
    /// Where other nodes send signaling and per-call requests.
    pub internal: SocketAddr,
    pub state: NodeState,
    pub sessions: u64,
    pub capacity_left: u64,
    /// Process CPU use over the last refresh, in percent of one core.
    pub cpu_percent: f64,
}

pub fn node_key(prefix: &str, node: u16) -> String {
    format!("{prefix}node:{node}")
}

pub fn call_key(prefix: &str, call_id: &str) -> String {
    format!("{prefix}call:{call_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_as_json_with_readable_state() {
        let r = NodeRecord {
            node: 3,
            instance: "abc".into(),
            public: "203.0.113.5:3478".parse().unwrap(),
            internal: "10.0.0.5:8081".parse().unwrap(),
            state: NodeState::Draining,
            sessions: 12,
            capacity_left: 988,
            cpu_percent: 37.5,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""state":"draining""#), "{json}");
        assert_eq!(serde_json::from_str::<NodeRecord>(&json).unwrap(), r);
        assert_eq!(node_key("tern:", 3), "tern:node:3");
        assert_eq!(call_key("tern:", "rtc_x"), "tern:call:rtc_x");
    }
}
