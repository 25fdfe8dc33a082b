//! Uplink reorder-and-gap buffer, between str0m (reordering off, packets handed over as they
//! arrive) and the decoder.
//!
//! In-order packets pass straight through (zero hold). A packet after a gap is held, with any that
//! follow, for at most `max_wait`; if the missing packet arrives in time everything is released in
//! order, otherwise the held packets are released as they are and the decoder conceals the gap (FEC
//! from the packet after it, else PLC). A packet arriving after its slot was released is late:
//! dropped and counted. `max_wait` adapts between 20 and 60 ms to the reorder delay and lateness
//! seen on this session, so a clean path costs nothing and a reordering one loses little.
//!
//! Held payloads live in buffers that are reused, so steady state allocates nothing.

use std::time::{Duration, Instant};

/// The shortest and longest time a gap is waited for.
pub const MIN_WAIT: Duration = Duration::from_millis(20);
pub const MAX_WAIT: Duration = Duration::from_millis(60);
/// Packets held at most (160 ms of 20 ms packets); a fuller buffer gives up on the gap.
pub const MAX_HELD: usize = 8;
/// Each in-order packet forgets this fraction of the observed reorder delay (~10 s memory).
const DECAY: f32 = 1.0 / 500.0;

/// Hold-time histogram bucket upper bounds in ms; the first bucket is "not held at all".
pub const HOLD_BUCKETS_MS: [u32; 6] = [0, 5, 10, 20, 40, 60];

/// Hold time per released packet, in `HOLD_BUCKETS_MS` buckets plus one overflow bucket.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HoldHistogram(pub [u32; HOLD_BUCKETS_MS.len() + 1]);

impl HoldHistogram {
    pub fn record(&mut self, hold: Duration) {
        let ms = hold.as_micros().div_ceil(1000);
        let i = HOLD_BUCKETS_MS
            .iter()
            .position(|&b| ms <= u128::from(b))
            .unwrap_or(HOLD_BUCKETS_MS.len());
        self.0[i] = self.0[i].saturating_add(1);
    }

    pub fn total(&self) -> u64 {
        self.0.iter().map(|&n| u64::from(n)).sum()
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReorderStats {
    /// Packets that waited behind a gap.
    pub held: u64,
    /// Gaps filled by a reordered packet within `max_wait`.
    pub reordered: u64,
    /// Gaps given up on (the decoder conceals them).
    pub gaps: u64,
    /// Packets that came after their slot was released (dropped).
    pub late: u64,
    pub hold: HoldHistogram,
}

/// A packet the buffer hands on, in sequence order.
pub struct Released<'a> {
    pub seq: u64,
    pub rtp_ts: u64,
    pub payload: &'a [u8],
    pub hold: Duration,
}

struct Held {
    seq: u64,
    rtp_ts: u64,
    arrived: Instant,
    data: Vec<u8>,
}

pub struct ReorderBuffer {
    next_seq: Option<u64>,
    /// Held packets, sorted by sequence number.
    held: Vec<Held>,
    spare: Vec<Vec<u8>>,
    /// When the oldest open gap was first seen.
    gap_since: Option<Instant>,
    /// When the last gap given up on was first seen (to measure how late its packet came).
    last_gap: Option<Instant>,
    /// Largest recent reorder delay or lateness, decaying, in ms.
    peak_ms: f32,
    pub stats: ReorderStats,
}

impl std::fmt::Debug for ReorderBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReorderBuffer")
            .field("held", &self.held.len())
            .field("max_wait", &self.max_wait())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Default for ReorderBuffer {
    fn default() -> Self {
        ReorderBuffer {
            next_seq: None,
            held: Vec::new(),
            spare: Vec::new(),
            gap_since: None,
            last_gap: None,
            peak_ms: 0.0,
            stats: ReorderStats::default(),
        }
    }
}

impl ReorderBuffer {
    /// How long a gap is waited for now.
    pub fn max_wait(&self) -> Duration {
        let ms = (self.peak_ms * 1.25 + 5.0).clamp(20.0, 60.0);
        Duration::from_micros((ms * 1000.0) as u64)
    }

    /// When the open gap must be given up on, if one is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.gap_since.map(|t| t + self.max_wait())
    }

    /// Feeds one packet (extended sequence number, 48 kHz RTP time) received at `now`.
    pub fn push(
        &mut self,
        now: Instant,
        seq: u64,
        rtp_ts: u64,
        payload: &[u8],
        emit: &mut dyn FnMut(Released<'_>),
    ) {
        let Some(next) = self.next_seq else {
            self.release_now(seq, rtp_ts, payload, emit);
            return;
        };
        if seq < next || self.held.iter().any(|h| h.seq == seq) {
            self.stats.late += 1;
            if let Some(gap) = self.last_gap {
                self.observe(now.saturating_duration_since(gap));
            }
            return;
        }
        if seq == next {
            if let Some(since) = self.gap_since {
                self.stats.reordered += 1;
                self.observe(now.saturating_duration_since(since));
            } else {
                self.peak_ms *= 1.0 - DECAY;
            }
            self.release_now(seq, rtp_ts, payload, emit);
            self.release_contiguous(now, emit);
            return;
        }
        // A gap. Too far ahead to be reordering (a burst lost, a new stream): give up at once.
        if seq - next > MAX_HELD as u64 {
            self.give_up(now, emit);
            self.release_now(seq, rtp_ts, payload, emit);
            return;
        }
        self.hold(now, seq, rtp_ts, payload);
        if self.held.len() >= MAX_HELD {
            self.give_up(now, emit);
        }
    }

    /// Gives up on an open gap whose `max_wait` has passed.
    pub fn poll(&mut self, now: Instant, emit: &mut dyn FnMut(Released<'_>)) {
        if self.deadline().is_some_and(|d| d <= now) {
            self.give_up(now, emit);
        }
    }

    fn observe(&mut self, delay: Duration) {
        let ms = delay.as_secs_f32() * 1000.0;
        if ms < 1000.0 {
            self.peak_ms = self.peak_ms.max(ms);
        }
    }

    fn release_now(
        &mut self,
        seq: u64,
        rtp_ts: u64,
        payload: &[u8],
        emit: &mut dyn FnMut(Released<'_>),
    ) {
        self.stats.hold.record(Duration::ZERO);
        self.next_seq = Some(seq + 1);
        emit(Released {
            seq,
            rtp_ts,
            payload,
            hold: Duration::ZERO,
        });
    }

    fn hold(&mut self, now: Instant, seq: u64, rtp_ts: u64, payload: &[u8]) {
        let mut data = self.spare.pop().unwrap_or_default();
        data.clear();
        data.extend_from_slice(payload);
        let at = self.held.partition_point(|h| h.seq < seq);
        self.held.insert(
            at,
            Held {
                seq,
                rtp_ts,
                arrived: now,
                data,
            },
        );
        self.stats.held += 1;
        self.gap_since.get_or_insert(now);
    }

    /// Releases held packets that now follow on without a gap.
    fn release_contiguous(&mut self, now: Instant, emit: &mut dyn FnMut(Released<'_>)) {
        let mut n = 0;
        while n < self.held.len() && Some(self.held[n].seq) == self.next_seq {
            self.emit_held(n, now, emit);
            n += 1;
        }
        self.recycle(n);
        self.gap_since = self.held.first().map(|h| h.arrived);
    }

    /// Releases everything held, gaps and all.
    fn give_up(&mut self, now: Instant, emit: &mut dyn FnMut(Released<'_>)) {
        if self.held.is_empty() {
            return;
        }
        self.stats.gaps += 1;
        self.last_gap = self.gap_since;
        for i in 0..self.held.len() {
            self.emit_held(i, now, emit);
        }
        self.recycle(self.held.len());
        self.gap_since = None;
    }

    fn emit_held(&mut self, i: usize, now: Instant, emit: &mut dyn FnMut(Released<'_>)) {
        let h = &self.held[i];
        let hold = now.saturating_duration_since(h.arrived);
        self.stats.hold.record(hold);
        self.next_seq = Some(h.seq + 1);
        emit(Released {
            seq: h.seq,
            rtp_ts: h.rtp_ts,
            payload: &h.data,
            hold,
        });
    }

    fn recycle(&mut self, n: usize) {
        for h in self.held.drain(..n) {
            if self.spare.len() < MAX_HELD {
                self.spare.push(h.data);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Pushes `(arrival ms, seq)` pairs, polling at every ms; returns (seq, hold ms) released.
    fn run(b: &mut ReorderBuffer, arrivals: &[(u64, u64)], until_ms: u64) -> Vec<(u64, u64)> {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut it = arrivals.iter().peekable();
        for t in 0..=until_ms {
            let now = t0 + ms(t);
            while let Some(&&(at, seq)) = it.peek() {
                if at != t {
                    break;
                }
                it.next();
                b.push(now, seq, seq * 960, &[seq as u8], &mut |r| {
                    assert_eq!(r.payload, &[r.seq as u8]);
                    out.push((r.seq, r.hold.as_millis() as u64));
                });
            }
            b.poll(now, &mut |r| out.push((r.seq, r.hold.as_millis() as u64)));
        }
        out
    }

    #[test]
    fn in_order_packets_are_never_held() {
        let mut b = ReorderBuffer::default();
        let arrivals: Vec<_> = (0..50).map(|i| (i * 20, i)).collect();
        let out = run(&mut b, &arrivals, 1000);
        assert_eq!(out, (0..50).map(|i| (i, 0)).collect::<Vec<_>>());
        assert_eq!(b.stats.hold.0[0], 50);
        assert_eq!(b.max_wait(), MIN_WAIT);
    }

    #[test]
    fn reordered_packet_fills_the_gap() {
        let mut b = ReorderBuffer::default();
        // 3 arrives 10 ms before 2.
        let out = run(&mut b, &[(0, 0), (20, 1), (50, 3), (60, 2), (80, 4)], 200);
        assert_eq!(out, vec![(0, 0), (1, 0), (2, 0), (3, 10), (4, 0)]);
        assert_eq!(b.stats.reordered, 1);
        assert_eq!(b.stats.gaps, 0);
        assert_eq!(b.stats.late, 0);
    }

    #[test]
    fn lost_packet_is_given_up_after_max_wait_then_late_copy_dropped() {
        let mut b = ReorderBuffer::default();
        let out = run(&mut b, &[(0, 0), (40, 2), (60, 3), (100, 1)], 200);
        // 2 waits the minimum 20 ms, then 2 and 3 go on (the decoder conceals 1).
        assert_eq!(out, vec![(0, 0), (2, 20), (3, 0)]);
        assert_eq!(b.stats.gaps, 1);
        assert_eq!(b.stats.late, 1);
        // The late packet came 60 ms after the gap opened: the buffer now waits longer.
        assert_eq!(b.max_wait(), MAX_WAIT);
    }

    #[test]
    fn max_wait_adapts_to_reorder_delay_and_decays() {
        let mut b = ReorderBuffer::default();
        // Packet 2 comes 30 ms after 3.
        run(&mut b, &[(0, 0), (20, 1), (40, 3), (70, 2)], 100);
        let adapted = b.max_wait();
        assert!(adapted > ms(40) && adapted < ms(45), "{adapted:?}");
        let arrivals: Vec<_> = (4..2000).map(|i| (i * 20, i)).collect();
        run(&mut b, &arrivals, 2000 * 20);
        assert_eq!(b.max_wait(), MIN_WAIT, "forgotten after a clean stretch");
    }

    #[test]
    fn far_jump_and_full_buffer_do_not_wait() {
        let mut b = ReorderBuffer::default();
        let out = run(&mut b, &[(0, 0), (20, 100)], 40);
        assert_eq!(out, vec![(0, 0), (100, 0)]);
        let mut b = ReorderBuffer::default();
        let mut arrivals = vec![(0, 0)];
        arrivals.extend((2..=9).map(|s| (1, s)));
        let out = run(&mut b, &arrivals, 1);
        assert_eq!(out.len(), 9, "a full buffer releases at once: {out:?}");
        assert_eq!(b.stats.gaps, 1);
    }

    #[test]
    fn duplicates_are_late() {
        let mut b = ReorderBuffer::default();
        let out = run(&mut b, &[(0, 0), (1, 0), (20, 2), (21, 2), (40, 1)], 100);
        assert_eq!(out, vec![(0, 0), (1, 0), (2, 20)]);
        assert_eq!(b.stats.late, 2);
    }

    #[test]
    fn steady_state_reuses_buffers() {
        let mut b = ReorderBuffer::default();
        let mut arrivals = Vec::new();
        for i in 0..=100u64 {
            // After the first, every pair swapped: 0, 2, 1, 4, 3, ...
            let s = match i {
                0 => 0,
                i if i % 2 == 1 => i + 1,
                i => i - 1,
            };
            arrivals.push((i * 20, s));
        }
        let out = run(&mut b, &arrivals, 2100);
        let seqs: Vec<u64> = out.iter().map(|r| r.0).collect();
        assert_eq!(seqs, (0..=100).collect::<Vec<_>>());
        assert_eq!(b.stats.reordered, 50);
        assert_eq!(b.spare.len(), 1, "one buffer, reused");
    }
}
