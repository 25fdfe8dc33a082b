//! What a node tells the fleet, in Redis: its record (addresses, state, load) under a TTL, and
//! one directory entry per call naming its owner. Plain data and key names; the shell's fleet
//! thread does the IO.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// How long a node's record lives without a refresh: a node that dies leaves placement within it.
pub const NODE_TTL_MS: u64 = 5_000;
/// How often a live node refreshes its record.
pub const NODE_REFRESH_MS: u64 = 1_000;

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
    /// Media shards (the shard in a ufrag is below it).
    #[serde(default)]
    pub shards: u16,
    /// Where relays send this node's clients' datagrams: shard i at this port + i; `None`: the
    /// node is reached directly.
    #[serde(default)]
    pub relay_ingress: Option<SocketAddr>,
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
            shards: 4,
            relay_ingress: Some("10.0.0.5:3500".parse().unwrap()),
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

/// How much busier (share of capacity in use) this node must be than the less loaded of two
/// sampled nodes before it hands an offer over: small differences are not worth a hop.
pub const BUSIER_MARGIN: f64 = 0.25;

/// Why an offer went to another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceReason {
    Draining,
    Full,
    Busier,
}

impl PlaceReason {
    pub const ALL: [PlaceReason; 3] = [
        PlaceReason::Draining,
        PlaceReason::Full,
        PlaceReason::Busier,
    ];

    pub fn label(self) -> &'static str {
        match self {
            PlaceReason::Draining => "draining",
            PlaceReason::Full => "full",
            PlaceReason::Busier => "busier",
        }
    }
}

/// This node as the placement sees it when an offer arrives.
#[derive(Debug, Clone, Copy)]
pub struct LocalLoad {
    pub node: u16,
    pub draining: bool,
    pub full: bool,
    /// Share of capacity in use, 0..1.
    pub load: f64,
}

fn load_of(r: &NodeRecord) -> f64 {
    let total = r.sessions + r.capacity_left;
    if total == 0 {
        1.0
    } else {
        r.sessions as f64 / total as f64
    }
}

/// Power of two choices: of two nodes sampled (by `picks`) among the others that serve and have
/// room, the less loaded; the offer goes there when this node is draining, full, or busier by
/// more than `BUSIER_MARGIN`. `None`: answer here.
pub fn choose(
    me: LocalLoad,
    nodes: &[NodeRecord],
    picks: [usize; 2],
) -> Option<(&NodeRecord, PlaceReason)> {
    let candidates: Vec<&NodeRecord> = nodes
        .iter()
        .filter(|r| r.node != me.node && r.state == NodeState::Serving && r.capacity_left > 0)
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let a = candidates[picks[0] % candidates.len()];
    let b = candidates[picks[1] % candidates.len()];
    let best = if load_of(b) < load_of(a) { b } else { a };
    let reason = if me.draining {
        PlaceReason::Draining
    } else if me.full {
        PlaceReason::Full
    } else if me.load - load_of(best) > BUSIER_MARGIN {
        PlaceReason::Busier
    } else {
        return None;
    };
    Some((best, reason))
}

#[cfg(test)]
mod placement_tests {
    use super::*;

    fn rec(node: u16, sessions: u64, left: u64, state: NodeState) -> NodeRecord {
        NodeRecord {
            node,
            instance: String::new(),
            public: "127.0.0.1:1".parse().unwrap(),
            internal: "127.0.0.1:2".parse().unwrap(),
            shards: 1,
            relay_ingress: None,
            state,
            sessions,
            capacity_left: left,
            cpu_percent: 0.0,
        }
    }

    fn me(draining: bool, full: bool, load: f64) -> LocalLoad {
        LocalLoad {
            node: 1,
            draining,
            full,
            load,
        }
    }

    #[test]
    fn offers_stay_unless_draining_full_or_clearly_busier() {
        let nodes = [
            rec(1, 50, 50, NodeState::Serving),
            rec(2, 10, 90, NodeState::Serving),
            rec(3, 80, 20, NodeState::Serving),
            rec(4, 0, 100, NodeState::Draining),
            rec(5, 100, 0, NodeState::Serving),
        ];
        // Two samples: the less loaded wins (node 2 over node 3).
        let (r, why) = choose(me(true, false, 0.5), &nodes, [0, 1]).unwrap();
        assert_eq!((r.node, why), (2, PlaceReason::Draining));
        let (r, why) = choose(me(false, true, 1.0), &nodes, [1, 0]).unwrap();
        assert_eq!((r.node, why), (2, PlaceReason::Full));
        // 50% against 10%: busier by more than the margin.
        assert_eq!(
            choose(me(false, false, 0.5), &nodes, [0, 0]).map(|(r, w)| (r.node, w)),
            Some((2, PlaceReason::Busier))
        );
        // 30% against 10%: not worth a hop; against node 3 alone (80%): stay.
        assert!(choose(me(false, false, 0.3), &nodes, [0, 0]).is_none());
        assert!(choose(me(false, false, 0.5), &nodes, [1, 1]).is_none());
        // Draining, full and this node itself are never chosen; no candidate: stay.
        let lonely = [
            rec(1, 5, 5, NodeState::Serving),
            rec(4, 0, 9, NodeState::Draining),
        ];
        assert!(choose(me(true, false, 0.5), &lonely, [0, 1]).is_none());
    }
}
