//! Per-shard measurements and their Prometheus text rendering.
//!
//! Each shard owns its histograms (hdrhistogram, microseconds); `/metrics` asks every shard for a
//! snapshot through its inbox and merges them, so nothing on the packet path is shared.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::core::shard::{DropReason, ShardCounters};

/// Latency histograms of one shard, in microseconds.
#[derive(Debug, Clone)]
pub struct Latencies {
    /// Offer received -> ICE+DTLS connected.
    pub setup: Histogram<u64>,
    /// Datagram received -> PCM frame in the worker ring.
    pub uplink: Histogram<u64>,
    /// Reply frame taken from the playout queue -> datagram handed to the kernel.
    pub downlink: Histogram<u64>,
    /// How late each paced reply frame left after its 20 ms tick (downlink jitter).
    pub pacing: Histogram<u64>,
    /// How long each uplink frame's packet waited in the reorder buffer (0 for in-order ones).
    pub hold: Histogram<u64>,
    /// Per-turn latency: each stage of `turn::latency::STAGES`, then the total.
    pub turn: [Histogram<u64>; 5],
    /// `--turn-model smart-turn`: CPU time of one decision on the worker (features and model).
    pub turn_model_cpu: Histogram<u64>,
    /// From the question leaving the shard to the answer back in it.
    pub turn_model_wait: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        let h = || Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds are valid");
        Latencies {
            setup: h(),
            uplink: h(),
            downlink: h(),
            pacing: h(),
            hold: h(),
            turn: [h(), h(), h(), h(), h()],
            turn_model_cpu: h(),
            turn_model_wait: h(),
        }
    }
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_micros() as u64).max(1));
}

/// What one shard reports when scraped.
#[derive(Debug, Clone, Default)]
pub struct ShardSnapshot {
    pub shard: u16,
    pub sessions: usize,
    pub slots: usize,
    pub deadlines: usize,
    pub counters: ShardCounters,
    pub latencies: Latencies,
    pub uplink_ring_drops: u64,
    pub downlink_ring_drops: u64,
    pub send_errors: u64,
    pub events_rejected: HashMap<&'static str, u64>,
    /// Turns whose reply started, by the rule that ended them (silence_timer, prosody, ...).
    pub turn_end_rules: HashMap<&'static str, u64>,
    /// Speech over a playing reply, by outcome (interrupted, rejected).
    pub barge_ins: HashMap<&'static str, u64>,
    /// The turn model's answers: scored, or why there was none (`Unanswered`).
    pub turn_model_answers: HashMap<&'static str, u64>,
    /// Uplink frames by origin (decoded, concealed, fec_recovered, silence) and late packets.
    pub uplink_frames: HashMap<&'static str, u64>,
    /// Messages waiting in this shard's rings to and from the workers.
    pub ring_queued: usize,
    /// ICE-TCP connections and frames by outcome (see `ice_tcp::LABELS`).
    pub ice_tcp: HashMap<&'static str, u64>,
    /// The shard thread's Opus codec pool (`core::media::codec_pool`).
    pub codecs: crate::core::media::codec_pool::PoolStats,
    /// Relayed datagrams refused at the relay ingress (`--advertise-relay`), by reason.
    pub relay_ingress_dropped: HashMap<&'static str, u64>,
}

/// A counter with a `reason` label per shard (the label names why, or the outcome).
fn labelled(
    o: &mut String,
    snaps: &[ShardSnapshot],
    name: &str,
    help: &str,
    map: impl Fn(&ShardSnapshot) -> &HashMap<&'static str, u64>,
) {
    labelled_by(o, snaps, name, help, "reason", map);
}

/// A counter per shard and `label` value.
fn labelled_by(
    o: &mut String,
    snaps: &[ShardSnapshot],
    name: &str,
    help: &str,
    label: &str,
    map: impl Fn(&ShardSnapshot) -> &HashMap<&'static str, u64>,
) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
    for s in snaps {
        let mut rows: Vec<_> = map(s).iter().collect();
        rows.sort();
        for (value, n) in rows {
            let _ = writeln!(o, "{name}{{shard=\"{}\",{label}=\"{value}\"}} {n}", s.shard);
        }
    }
}

/// Renders merged snapshots as Prometheus text exposition.
pub fn render(snaps: &[ShardSnapshot], admitted: usize, max_sessions: usize) -> String {
    let mut o = String::with_capacity(8192);
    let gauge =
        |o: &mut String, name: &str, help: &str, f: &dyn Fn(&ShardSnapshot) -> u64, kind: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for s in snaps {
                let _ = writeln!(o, "{name}{{shard=\"{}\"}} {}", s.shard, f(s));
            }
        };
    gauge(
        &mut o,
        "tern_sessions",
        "Sessions living on each shard.",
        &|s| s.sessions as u64,
        "gauge",
    );
    gauge(
        &mut o,
        "tern_session_slots",
        "Table slots in use (sessions and forwarding entries).",
        &|s| s.slots as u64,
        "gauge",
    );
    gauge(
        &mut o,
        "tern_ring_queued",
        "Messages waiting in the shard's rings to and from workers.",
        &|s| s.ring_queued as u64,
        "gauge",
    );
    gauge(
        &mut o,
        "tern_codecs_pooled",
        "Opus encoders and decoders kept for reuse on the shard's thread.",
        &|s| s.codecs.pooled,
        "gauge",
    );
    let _ = writeln!(o, "# HELP tern_codecs_taken_total Opus codec state taken by sessions when audio first flowed: created new, or reused from the shard's pool (reset).\n# TYPE tern_codecs_taken_total counter");
    for s in snaps {
        let c = &s.codecs;
        for (kind, how, n) in [
            ("encoder", "created", c.encoders_created),
            ("encoder", "reused", c.encoders_reused),
            ("decoder", "created", c.decoders_created),
            ("decoder", "reused", c.decoders_reused),
        ] {
            let _ = writeln!(
                o,
                "tern_codecs_taken_total{{shard=\"{}\",kind=\"{kind}\",how=\"{how}\"}} {n}",
                s.shard
            );
        }
    }
    gauge(
        &mut o,
        "tern_deadlines_armed",
        "Session deadlines armed in the shard timer.",
        &|s| s.deadlines as u64,
        "gauge",
    );
    gauge(
        &mut o,
        "tern_datagrams_in_total",
        "UDP datagrams received.",
        &|s| s.counters.datagrams_in,
        "counter",
    );
    gauge(
        &mut o,
        "tern_datagrams_out_total",
        "UDP datagrams sent.",
        &|s| s.counters.datagrams_out,
        "counter",
    );
    gauge(
        &mut o,
        "tern_datagrams_forwarded_total",
        "Datagrams forwarded to another shard.",
        &|s| s.counters.forwarded_out,
        "counter",
    );
    gauge(
        &mut o,
        "tern_datagrams_forwarded_in_total",
        "Datagrams received from another shard.",
        &|s| s.counters.forwarded_in,
        "counter",
    );
    gauge(
        &mut o,
        "tern_handoffs_in_total",
        "Sessions adopted from their home shard.",
        &|s| s.counters.handoffs_in,
        "counter",
    );
    gauge(
        &mut o,
        "tern_handoffs_out_total",
        "Sessions handed to their owner shard.",
        &|s| s.counters.handoffs_out,
        "counter",
    );
    gauge(
        &mut o,
        "tern_handoffs_failed_total",
        "Handoffs that did not happen: the owner's inbox was full (the session stayed home) or its table was full (the session ended, handoff_failed).",
        &|s| s.counters.handoffs_failed,
        "counter",
    );
    gauge(
        &mut o,
        "tern_sessions_created_total",
        "Offers answered.",
        &|s| s.counters.sessions_created,
        "counter",
    );
    gauge(
        &mut o,
        "tern_sessions_ended_total",
        "Sessions ended.",
        &|s| s.counters.sessions_ended,
        "counter",
    );
    gauge(
        &mut o,
        "tern_session_panics_total",
        "Sessions closed by a panic in their processing.",
        &|s| s.counters.session_panics,
        "counter",
    );
    gauge(
        &mut o,
        "tern_offers_rejected_total",
        "Offers refused.",
        &|s| s.counters.offers_rejected,
        "counter",
    );
    gauge(
        &mut o,
        "tern_uplink_ring_drops_total",
        "Frames or events dropped on a full shard->worker ring.",
        &|s| s.uplink_ring_drops,
        "counter",
    );
    gauge(
        &mut o,
        "tern_downlink_ring_drops_total",
        "Replies refused by a full worker->shard ring.",
        &|s| s.downlink_ring_drops,
        "counter",
    );
    gauge(
        &mut o,
        "tern_send_errors_total",
        "Datagrams the kernel refused to send.",
        &|s| s.send_errors,
        "counter",
    );

    let _ = writeln!(o, "# HELP tern_datagrams_dropped_total Datagrams dropped, by reason.\n# TYPE tern_datagrams_dropped_total counter");
    for s in snaps {
        for r in DropReason::ALL {
            let n = s.counters.dropped[r.index()];
            let _ = writeln!(
                o,
                "tern_datagrams_dropped_total{{shard=\"{}\",reason=\"{}\"}} {n}",
                s.shard,
                r.label()
            );
        }
    }
    let _ = writeln!(o, "# HELP tern_sessions_admitted Sessions admitted across shards.\n# TYPE tern_sessions_admitted gauge\ntern_sessions_admitted {admitted}");
    let _ = writeln!(o, "# HELP tern_sessions_max The --max-sessions limit.\n# TYPE tern_sessions_max gauge\ntern_sessions_max {max_sessions}");
    let _ = writeln!(
        o,
        "# HELP tern_heap_live_bytes Heap bytes allocated and not freed (0 when the allocator is not counted).\n# TYPE tern_heap_live_bytes gauge\ntern_heap_live_bytes {}\n# HELP tern_heap_allocations_total Heap allocations since start.\n# TYPE tern_heap_allocations_total counter\ntern_heap_allocations_total {}\n# HELP tern_heap_allocations_str0m_total The part of tern_heap_allocations_total made inside calls into str0m.\n# TYPE tern_heap_allocations_str0m_total counter\ntern_heap_allocations_str0m_total {}",
        crate::heap::live_bytes(),
        crate::heap::allocations(),
        crate::heap::dependency_allocations()
    );
    labelled(
        &mut o,
        snaps,
        "tern_sessions_ended_by_total",
        "Sessions ended, by reason.",
        |s| &s.counters.ended_by,
    );
    labelled(
        &mut o,
        snaps,
        "tern_ice_tcp_total",
        "ICE-TCP connections (accepted, closed, refused) and frames dropped (queue_full, no_connection, oversized_frame).",
        |s| &s.ice_tcp,
    );
    labelled(
        &mut o,
        snaps,
        "tern_relay_ingress_dropped_total",
        "Datagrams refused on the relay ingress: bad_header (no relay header or a wrong fleet token), table_full (too many relayed clients).",
        |s| &s.relay_ingress_dropped,
    );
    labelled(
        &mut o,
        snaps,
        "tern_client_events_rejected_total",
        "Data-channel events refused, by reason.",
        |s| &s.events_rejected,
    );
    labelled(
        &mut o,
        snaps,
        "tern_barge_ins_total",
        "Speech over a playing reply: interrupted it, rejected as too short (--barge-in-min-ms), or echo of the reply itself.",
        |s| &s.barge_ins,
    );
    labelled(
        &mut o,
        snaps,
        "tern_uplink_frames_total",
        "Uplink frames by origin (decoded, concealed by PLC, recovered from FEC, DTX silence); late: packets dropped after their frame was concealed.",
        |s| &s.uplink_frames,
    );
    labelled_by(
        &mut o,
        snaps,
        "tern_turns_total",
        "Turns answered (their reply's first packet sent), by the rule that ended the user's turn.",
        "rule",
        |s| &s.turn_end_rules,
    );
    labelled_by(
        &mut o,
        snaps,
        "tern_turn_model_answers_total",
        "--turn-model smart-turn: questions to the turn model by outcome (scored, or why none came: queue_full, stale, no_model, no_audio, not_asked); an unanswered pause keeps the silence timer's window.",
        "outcome",
        |s| &s.turn_model_answers,
    );
    crate::agent::bridge::stats::render(&mut o);
    turn_stages(&mut o, snaps);

    type Pick = fn(&Latencies) -> &Histogram<u64>;
    let hists: [(&str, &str, Pick); 7] = [
        (
            "tern_setup_latency_seconds",
            "Offer received to connected (ICE+DTLS).",
            |l| &l.setup,
        ),
        (
            "tern_uplink_latency_seconds",
            "Datagram received to PCM frame in the worker ring.",
            |l| &l.uplink,
        ),
        (
            "tern_downlink_latency_seconds",
            "Reply frame taken from the playout queue to datagram sent.",
            |l| &l.downlink,
        ),
        (
            "tern_pacing_lateness_seconds",
            "How late each reply frame left after its 20 ms pacing tick.",
            |l| &l.pacing,
        ),
        (
            "tern_uplink_hold_seconds",
            "How long each uplink frame's packet waited in the reorder buffer for a gap to fill.",
            |l| &l.hold,
        ),
        (
            "tern_turn_model_cpu_seconds",
            "CPU time of one turn-model decision on an inference worker (Whisper features and Smart Turn).",
            |l| &l.turn_model_cpu,
        ),
        (
            "tern_turn_model_wait_seconds",
            "From a turn-model question leaving the shard to its answer back there (queue and model).",
            |l| &l.turn_model_wait,
        ),
    ];
    for (name, help, get) in hists {
        let merged = merge(snaps.iter().map(|s| get(&s.latencies)));
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} summary");
        quantiles(&mut o, name, "", &merged);
        let sum: f64 = merged
            .iter_recorded()
            .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
            .sum::<f64>()
            / 1e6;
        let _ = writeln!(o, "{name}_sum {sum:.6}\n{name}_count {}", merged.len());
        stage_buckets(&mut o, name, &merged);
    }
    o
}

/// `tern_turn_stage_seconds{stage}`: each stage of a turn's latency breakdown (and `total`),
/// merged over the shards.
fn turn_stages(o: &mut String, snaps: &[ShardSnapshot]) {
    let name = "tern_turn_stage_seconds";
    let _ = writeln!(
        o,
        "# HELP {name} Per-turn latency by stage: last voiced packet received -> end of speech decided (end_of_speech) -> speech_stopped sent -> first reply frame from the agent -> first reply packet sent; total is the sum.\n# TYPE {name} summary"
    );
    let stages = crate::core::turn::latency::STAGES
        .iter()
        .copied()
        .chain(["total"]);
    for (i, stage) in stages.enumerate() {
        let merged = merge(snaps.iter().map(|s| &s.latencies.turn[i]));
        quantiles(o, name, &format!("stage=\"{stage}\","), &merged);
        let _ = writeln!(o, "{name}_count{{stage=\"{stage}\"}} {}", merged.len());
    }
}

/// The shards' histograms of one measure, merged.
fn merge<'a>(hists: impl Iterator<Item = &'a Histogram<u64>>) -> Histogram<u64> {
    let mut merged =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("static bounds are valid");
    for h in hists {
        let _ = merged.add(h);
    }
    merged
}

/// p50/p90/p99/max of `h` (µs) as seconds; `labels` go before the quantile (`k="v",`).
fn quantiles(o: &mut String, name: &str, labels: &str, h: &Histogram<u64>) {
    for q in [0.5, 0.9, 0.99, 1.0] {
        let v = if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / 1e6
        };
        let _ = writeln!(o, "{name}{{{labels}quantile=\"{q}\"}} {v:.6}");
    }
}

/// Bucket bounds (µs) of the `_hist` companions: fine around the 5 ms capacity threshold.
const BUCKETS_US: [u64; 22] = [
    25, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1_000, 1_500, 2_000, 3_000, 4_000, 5_000, 7_500,
    10_000, 20_000, 50_000, 100_000, 1_000_000,
];

/// A Prometheus histogram (`<name>_hist_bucket{le}`) beside each summary: summaries cover the
/// process lifetime, buckets can be differenced between two scrapes (rate, or a bench window).
fn stage_buckets(o: &mut String, name: &str, h: &Histogram<u64>) {
    let _ = writeln!(o, "# TYPE {name}_hist histogram");
    for le in BUCKETS_US {
        let n = h.count_between(0, le);
        let _ = writeln!(o, "{name}_hist_bucket{{le=\"{}\"}} {n}", le as f64 / 1e6);
    }
    let _ = writeln!(o, "{name}_hist_bucket{{le=\"+Inf\"}} {}", h.len());
}
