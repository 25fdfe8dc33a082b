//! Bridge counters, process-wide (bridges run on worker threads, not shards), for `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

pub static CONNECTS: AtomicU64 = AtomicU64::new(0);
pub static CONNECT_FAILURES: AtomicU64 = AtomicU64::new(0);
pub static DISCONNECTS: AtomicU64 = AtomicU64::new(0);
pub static GAVE_UP: AtomicU64 = AtomicU64::new(0);
/// User audio not sent: the backend was not connected.
pub static UPLINK_DROPPED_DISCONNECTED: AtomicU64 = AtomicU64::new(0);
/// User audio not sent: the backend did not keep up (its send queue was full).
pub static UPLINK_DROPPED_BACKPRESSURE: AtomicU64 = AtomicU64::new(0);
/// Reply frames dropped because the session's reply queue was full.
pub static DOWNLINK_DROPPED: AtomicU64 = AtomicU64::new(0);
/// Messages for the shard dropped because its downlink ring was full.
pub static EVENTS_DROPPED: AtomicU64 = AtomicU64::new(0);
pub static BACKEND_ERRORS: AtomicU64 = AtomicU64::new(0);

pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Appends the bridge counters in Prometheus text format.
pub fn render(o: &mut String) {
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let simple = [
        (
            "tern_bridge_connects_total",
            "Backend WebSocket connections opened.",
            &CONNECTS,
        ),
        (
            "tern_bridge_connect_failures_total",
            "Backend connection attempts that failed.",
            &CONNECT_FAILURES,
        ),
        (
            "tern_bridge_disconnects_total",
            "Backend connections lost while the session lived.",
            &DISCONNECTS,
        ),
        (
            "tern_bridge_gave_up_total",
            "Sessions whose backend stayed unreachable after every retry.",
            &GAVE_UP,
        ),
        (
            "tern_bridge_downlink_dropped_total",
            "Reply frames dropped on a full reply queue.",
            &DOWNLINK_DROPPED,
        ),
        (
            "tern_bridge_events_dropped_total",
            "Bridge messages dropped on a full downlink ring.",
            &EVENTS_DROPPED,
        ),
        (
            "tern_bridge_backend_errors_total",
            "Error events received from backends.",
            &BACKEND_ERRORS,
        ),
    ];
    for (name, help, c) in simple {
        let _ = writeln!(
            o,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            get(c)
        );
    }
    let name = "tern_bridge_uplink_dropped_total";
    let _ = writeln!(
        o,
        "# HELP {name} User audio frames not sent to the backend, by reason.\n# TYPE {name} counter\n\
         {name}{{reason=\"disconnected\"}} {}\n{name}{{reason=\"backpressure\"}} {}",
        get(&UPLINK_DROPPED_DISCONNECTED),
        get(&UPLINK_DROPPED_BACKPRESSURE)
    );
}
