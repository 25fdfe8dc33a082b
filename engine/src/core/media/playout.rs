//! Downlink playout: a bounded queue of reply frames and the pacer that releases one per 20 ms.
//!
//! The pacer runs against absolute deadlines (start + n x 20 ms), so timer overshoot does not
//! accumulate. RTP time advances 960 ticks per frame inside a talkspurt and by the real elapsed
//! time across a silence, and the first packet of each talkspurt carries the marker bit.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::frame::{PcmFrame, FRAME_MS, RTP_TICKS_PER_FRAME};

pub const FRAME: Duration = Duration::from_millis(FRAME_MS);

// Frames are inline on purpose: the queue grows to its cap during the first long reply and then
// never allocates again.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy)]
pub enum PlayoutItem {
    Frame {
        response: u32,
        frame: PcmFrame,
    },
    /// The agent finished a response: everything before this has been queued.
    End {
        response: u32,
    },
}

/// Bounded FIFO of reply audio; on overflow the oldest frame is shed and counted.
#[derive(Debug)]
pub struct PlayoutQueue {
    q: VecDeque<PlayoutItem>,
    cap: usize,
    pub dropped: u64,
}

impl PlayoutQueue {
    pub fn new(cap: usize) -> Self {
        PlayoutQueue {
            // Grown with the first reply and kept (each item holds a frame, about 1 KiB): a
            // session that is never answered holds none, one that is keeps its busiest depth.
            q: VecDeque::new(),
            cap: cap.max(1),
            dropped: 0,
        }
    }

    pub fn push(&mut self, item: PlayoutItem) {
        if self.q.len() >= self.cap {
            if let Some(i) = self
                .q
                .iter()
                .position(|x| matches!(x, PlayoutItem::Frame { .. }))
            {
                self.q.remove(i);
            } else {
                self.q.pop_front();
            }
            self.dropped += 1;
        }
        self.q.push_back(item);
    }

    /// The response of the first queued item, if any.
    pub fn front_response(&self) -> Option<u32> {
        self.q.front().map(|x| match x {
            PlayoutItem::Frame { response, .. } | PlayoutItem::End { response } => *response,
        })
    }

    pub fn pop(&mut self) -> Option<PlayoutItem> {
        self.q.pop_front()
    }

    /// Pops the first item only if it is a frame: (response, frame).
    pub fn pop_frame(&mut self) -> Option<(u32, PcmFrame)> {
        match self.q.front()? {
            PlayoutItem::Frame { .. } => match self.q.pop_front() {
                Some(PlayoutItem::Frame { response, frame }) => Some((response, frame)),
                _ => None,
            },
            PlayoutItem::End { .. } => None,
        }
    }

    pub fn len(&self) -> usize {
        self.q.len()
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Drops everything queued; returns the number of frames dropped.
    pub fn clear(&mut self) -> usize {
        let n = self
            .q
            .iter()
            .filter(|x| matches!(x, PlayoutItem::Frame { .. }))
            .count();
        self.q.clear();
        n
    }
}

/// What the pacer decided for one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacedSend {
    pub rtp_time: u64,
    pub marker: bool,
    /// How long after its tick (the wake-up, then every 20 ms) this frame went out; None when
    /// it was sent without one.
    pub late_by: Option<Duration>,
}

#[derive(Debug)]
pub struct Pacer {
    next_tick: Option<Instant>,
    rtp_time: u64,
    last_sent: Option<Instant>,
    in_spurt: bool,
}

impl Pacer {
    pub fn new(initial_rtp_time: u64) -> Self {
        Pacer {
            next_tick: None,
            rtp_time: initial_rtp_time,
            last_sent: None,
            in_spurt: false,
        }
    }

    /// The next send deadline, if the pacer is running.
    pub fn deadline(&self) -> Option<Instant> {
        self.next_tick
    }

    /// Starts ticking at `now` if idle (new audio arrived).
    pub fn wake(&mut self, now: Instant) {
        if self.next_tick.is_none() {
            self.next_tick = Some(now);
        }
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.next_tick.is_some_and(|t| t <= now)
    }

    /// Stamps one frame going out now and advances the deadline by exactly one frame.
    pub fn on_send(&mut self, now: Instant) -> PacedSend {
        let marker = !self.in_spurt;
        if let Some(last) = self.last_sent {
            let ticks = if self.in_spurt {
                RTP_TICKS_PER_FRAME
            } else {
                // Across a silence, RTP time follows the wall clock in whole frames.
                let frames = ((now - last).as_micros() as u64 + 10_000) / 20_000;
                frames.max(1) * RTP_TICKS_PER_FRAME
            };
            self.rtp_time = self.rtp_time.wrapping_add(ticks);
        }
        self.in_spurt = true;
        self.last_sent = Some(now);
        let late_by = self.next_tick.map(|t| now.saturating_duration_since(t));
        let base = self.next_tick.unwrap_or(now);
        let mut next = base + FRAME;
        if next + FRAME * 2 < now {
            // Fell far behind (a stalled core): resynchronise instead of bursting.
            next = now + FRAME;
        }
        self.next_tick = Some(next);
        PacedSend {
            rtp_time: self.rtp_time,
            marker,
            late_by,
        }
    }

    /// Nothing to send at this tick: the talkspurt ended (or underran); stop ticking.
    pub fn idle(&mut self) {
        self.next_tick = None;
        self.in_spurt = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_sheds_oldest_frame() {
        let mut q = PlayoutQueue::new(2);
        let f = |r| PlayoutItem::Frame {
            response: r,
            frame: PcmFrame::silence(480),
        };
        q.push(f(1));
        q.push(f(2));
        q.push(f(3));
        assert_eq!(q.dropped, 1);
        assert!(matches!(
            q.pop(),
            Some(PlayoutItem::Frame { response: 2, .. })
        ));
        assert_eq!(q.clear(), 1);
    }

    #[test]
    fn pacing_timestamps_and_markers() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000);
        assert_eq!(p.deadline(), None);
        p.wake(t0);
        assert!(p.is_due(t0));
        assert_eq!(
            p.on_send(t0),
            PacedSend {
                rtp_time: 1000,
                marker: true,
                late_by: Some(Duration::ZERO)
            }
        );
        // Sent a little late: the next deadline is still t0 + 40 ms (absolute).
        let s = p.on_send(t0 + Duration::from_millis(21));
        assert_eq!(
            s,
            PacedSend {
                rtp_time: 1960,
                marker: false,
                late_by: Some(Duration::from_millis(1))
            }
        );
        assert_eq!(p.deadline(), Some(t0 + Duration::from_millis(40)));
        p.idle();
        // 1 s later a new talkspurt: marker set, RTP time jumped by the real gap.
        let t1 = t0 + Duration::from_millis(1021);
        p.wake(t1);
        let s = p.on_send(t1);
        assert!(s.marker);
        assert_eq!(s.rtp_time, 1960 + 50 * 960);
    }
}
