//! Where each packet of one direction lands in its file. Both files of a call start when the call
//! connected, so they line up: the first packet of a direction goes at its arrival (or send) time
//! after that, later ones at their RTP distance from it. A gap (DTX, loss, the agent silent
//! between replies) becomes silence; a packet behind the write position (a duplicate, a late
//! reordered one) is dropped: the file keeps the order it was written in.

use std::time::Instant;

/// 48 kHz samples per 20 ms.
pub const FRAME_48K: u64 = 960;
/// A jump longer than this is a clock reset, not a pause: re-anchor on wall time.
const MAX_GAP_48K: u64 = 48_000 * 600;

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Write `silence` samples of silence first, then the packet.
    Write { silence: u64 },
    /// Behind what is written already: drop it.
    Late,
}

/// The write position of one direction, in 48 kHz samples from the recording's start.
#[derive(Debug, Clone, Default)]
pub struct TrackClock {
    /// (RTP timestamp, file position) of the anchor packet.
    anchor: Option<(u64, u64)>,
    /// Samples written so far.
    pub position: u64,
}

impl TrackClock {
    /// Places a packet stamped `rtp48` that arrived (or left) at `at`; the recording started at
    /// `start`. Call `advance` with the packet's samples once it is written.
    pub fn place(&mut self, start: Instant, at: Instant, rtp48: u64) -> Placement {
        let wall = |at: Instant| {
            let us = at.saturating_duration_since(start).as_micros() as u64;
            // Whole frames: a packet lands on the 20 ms grid it was sent on.
            us * 48 / 1000 / FRAME_48K * FRAME_48K
        };
        let target = match self.anchor {
            None => {
                let pos = wall(at).max(self.position);
                self.anchor = Some((rtp48, pos));
                pos
            }
            Some((rtp, pos)) => {
                let ahead = rtp48.wrapping_sub(rtp);
                if ahead > MAX_GAP_48K && rtp.wrapping_sub(rtp48) > MAX_GAP_48K {
                    // Neither a pause nor a late packet: the sender's clock jumped.
                    let pos = wall(at).max(self.position);
                    self.anchor = Some((rtp48, pos));
                    pos
                } else if rtp48 < rtp || ahead > MAX_GAP_48K {
                    return Placement::Late;
                } else {
                    pos + ahead
                }
            }
        };
        if target < self.position {
            return Placement::Late;
        }
        Placement::Write {
            silence: target - self.position,
        }
    }

    /// `samples` were written (silence or a packet).
    pub fn advance(&mut self, samples: u64) {
        self.position += samples;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn first_packet_at_its_time_then_rtp_spacing_with_gaps_as_silence() {
        let start = Instant::now();
        let mut c = TrackClock::default();
        let at = start + Duration::from_millis(500);
        assert_eq!(
            c.place(start, at, 1_000_000),
            Placement::Write { silence: 24_000 }
        );
        c.advance(24_000 + 960);
        // The next frame: no gap, whatever its arrival jitter.
        assert_eq!(
            c.place(start, at + Duration::from_millis(35), 1_000_960),
            Placement::Write { silence: 0 }
        );
        c.advance(960);
        // Two frames lost (or DTX): 40 ms of silence.
        assert_eq!(
            c.place(start, at, 1_000_960 + 3 * 960),
            Placement::Write { silence: 1920 }
        );
        c.advance(1920 + 960);
        // A duplicate, or a packet that arrives after its gap was filled.
        assert_eq!(c.place(start, at, 1_000_960), Placement::Late);
        assert_eq!(c.place(start, at, 900_000), Placement::Late);
    }

    #[test]
    fn a_clock_jump_re_anchors_on_wall_time() {
        let start = Instant::now();
        let mut c = TrackClock::default();
        assert_eq!(
            c.place(start, start, 5_000),
            Placement::Write { silence: 0 }
        );
        c.advance(960);
        let later = start + Duration::from_secs(2);
        assert_eq!(
            c.place(start, later, 5_000 + 48_000 * 3600),
            Placement::Write {
                silence: 96_000 - 960
            }
        );
    }
}
