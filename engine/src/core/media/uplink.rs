//! The uplink path of one session: reorder-and-gap buffer, then the decoder (concealment, FEC,
//! DTX silence). Frames come out in order at the model rate, each with how long its packet was
//! held.

use std::time::{Duration, Instant};

use super::codec::AudioCodec;
use super::decoder::{FrameOrigin, UplinkDecoder};
use super::frame::{ModelRate, PcmFrame};
use super::reorder::{HoldHistogram, ReorderBuffer};

/// Per-session uplink repair figures.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UplinkStats {
    pub decoded: u64,
    pub concealed: u64,
    pub fec_recovered: u64,
    pub silence: u64,
    /// Packets that arrived after their frame was concealed (dropped).
    pub late: u64,
    /// Gaps filled by a reordered packet in time.
    pub reordered: u64,
    pub hold: HoldHistogram,
}

/// One frame's time.
const FRAME: Duration = Duration::from_millis(20);
/// How late a frame may be before the clock fills its slot with silence: two frames of jitter.
/// A sender in DTX sends a packet every 400 ms; without the clock the VAD and the turn timer would
/// stall until it came.
pub const FILL_AFTER: Duration = Duration::from_millis(40);

pub struct UplinkPath {
    reorder: ReorderBuffer,
    decoder: UplinkDecoder,
    /// When the next frame is due, in real time (set by each packet, advanced by each fill).
    next_frame_at: Option<Instant>,
    /// Fills happen on this 20 ms grid (shared by a shard's sessions) when set.
    grid: Option<Instant>,
}

impl std::fmt::Debug for UplinkPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UplinkPath")
            .field("stats", &self.stats())
            .finish()
    }
}

/// A frame out of the uplink path: PCM, how it was made, when its packet arrived.
pub type EmitFrame<'a> = dyn FnMut(&PcmFrame, FrameOrigin, Instant) + 'a;

impl UplinkPath {
    pub fn new(rate: ModelRate) -> Self {
        UplinkPath {
            reorder: ReorderBuffer::default(),
            decoder: UplinkDecoder::new(rate),
            next_frame_at: None,
            grid: None,
        }
    }

    /// The codec the session's packets are in (see `UplinkDecoder::set_codec`).
    pub fn set_codec(&mut self, codec: AudioCodec) {
        self.decoder.set_codec(codec);
    }

    /// One RTP packet received at `now` (RTP time on the 48 kHz clock); false when it came too
    /// late and was dropped.
    pub fn on_packet(
        &mut self,
        now: Instant,
        seq: u64,
        rtp_ts: u64,
        payload: &[u8],
        emit: &mut EmitFrame<'_>,
    ) -> bool {
        let late = self.reorder.stats.late;
        let dec = &mut self.decoder;
        let mut released = false;
        self.reorder.push(now, seq, rtp_ts, payload, &mut |r| {
            released = true;
            let arrived = now.checked_sub(r.hold).unwrap_or(now);
            dec.on_packet(r.seq, r.rtp_ts, r.payload, &mut |f, o| emit(f, o, arrived));
        });
        if released {
            self.next_frame_at = Some(now + FRAME);
        }
        self.reorder.stats.late == late
    }

    /// Gives up on a gap whose wait is over, and fills with silence the frames of a sender that
    /// went quiet (`FILL_AFTER`).
    pub fn poll(&mut self, now: Instant, emit: &mut EmitFrame<'_>) {
        let dec = &mut self.decoder;
        let mut released = false;
        self.reorder.poll(now, &mut |r| {
            released = true;
            let arrived = now.checked_sub(r.hold).unwrap_or(now);
            dec.on_packet(r.seq, r.rtp_ts, r.payload, &mut |f, o| emit(f, o, arrived));
        });
        if released {
            self.next_frame_at = Some(now + FRAME);
        }
        while let Some(due) = self.fill_due() {
            if due > now {
                break;
            }
            // Made now, not received: stamped now (the uplink latency measures datagrams).
            let Some(slot) = self.next_frame_at else {
                break;
            };
            self.decoder.silence_tick(&mut |f, o| emit(f, o, now));
            self.next_frame_at = Some(slot + FRAME);
        }
    }

    /// Aligns silence fills to a 20 ms grid starting at `origin`: every session of a shard then
    /// fills on the same ticks, one timer wake-up for all of them (a fill comes up to 20 ms later).
    pub fn set_fill_grid(&mut self, origin: Option<Instant>) {
        self.grid = origin;
    }

    /// When the clock fills the next frame, while no gap is being waited for.
    fn fill_due(&self) -> Option<Instant> {
        if self.reorder.deadline().is_some() {
            return None;
        }
        let due = self.next_frame_at? + FILL_AFTER;
        Some(match self.grid {
            Some(origin) => {
                let since = due.saturating_duration_since(origin).as_micros() as u64;
                let tick = FRAME.as_micros() as u64;
                origin + Duration::from_micros(since.div_ceil(tick) * tick)
            }
            None => due,
        })
    }

    pub fn deadline(&self) -> Option<Instant> {
        match (self.reorder.deadline(), self.fill_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the decoder holds Opus state.
    pub fn holds_codec(&self) -> bool {
        self.decoder.holds_codec()
    }

    pub fn stats(&self) -> UplinkStats {
        let d = self.decoder.stats;
        let r = self.reorder.stats;
        UplinkStats {
            decoded: d.decoded,
            concealed: d.concealed,
            fec_recovered: d.fec_recovered,
            silence: d.silence,
            late: r.late + d.late,
            reordered: r.reordered,
            hold: r.hold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audiopus::coder::Encoder;
    use audiopus::{Application, Bitrate, Channels, SampleRate};
    use std::time::Duration;

    /// 20 ms Opus packets of a tone, with in-band FEC on (as browsers send).
    fn packets(n: usize) -> Vec<Vec<u8>> {
        let mut enc =
            Encoder::new(SampleRate::Hz24000, Channels::Mono, Application::Voip).expect("encoder");
        enc.set_inband_fec(true).expect("fec");
        enc.set_packet_loss_perc(20).expect("loss");
        enc.set_bitrate(Bitrate::BitsPerSecond(32_000))
            .expect("bitrate");
        (0..n)
            .map(|k| {
                let pcm: Vec<i16> = (0..480)
                    .map(|i| (((k * 480 + i) as f32 * 0.05).sin() * 8000.0) as i16)
                    .collect();
                let mut out = [0u8; 1500];
                let len = enc.encode(&pcm, &mut out).expect("encode");
                out[..len].to_vec()
            })
            .collect()
    }

    #[test]
    fn dtx_silence_keeps_real_time_and_the_next_packet_does_not_double_it() {
        let pk = packets(40);
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut up = UplinkPath::new(ModelRate::Hz24000);
        let mut frames: Vec<(u64, FrameOrigin)> = Vec::new();
        // Ten packets, then DTX: the next one (contiguous sequence number) 400 ms of RTP later.
        for k in 0..10u64 {
            up.poll(ms(k * 20), &mut |_, o, _| frames.push((k * 20, o)));
            up.on_packet(ms(k * 20), k, k * 960, &pk[k as usize], &mut |_, o, _| {
                frames.push((k * 20, o))
            });
        }
        // Polled every millisecond through the pause, as the shard's timer does.
        for t in 181..600 {
            up.poll(ms(t), &mut |_, o, _| frames.push((t, o)));
        }
        let filled: Vec<_> = frames
            .iter()
            .filter(|(_, o)| *o == FrameOrigin::Silence)
            .collect();
        // The slot after the last packet (200 ms) is filled at 240 ms, then one every 20 ms.
        assert_eq!(filled.first().map(|f| f.0), Some(240));
        assert_eq!(filled.len(), 18, "slots 200..540 by 599 ms");
        assert!(up.deadline().is_some(), "the clock stays armed");
        // The DTX packet: sequence 10, in slot 29 (580 ms). Slots 10..27 are filled so far, so
        // one more silence frame (slot 28) comes with it.
        let before = frames.len();
        up.on_packet(ms(600), 10, 29 * 960, &pk[10], &mut |_, o, _| {
            frames.push((600, o))
        });
        let with_packet: Vec<_> = frames[before..].iter().map(|f| f.1).collect();
        assert_eq!(
            with_packet
                .iter()
                .filter(|o| **o == FrameOrigin::Silence)
                .count(),
            1,
            "{with_packet:?}"
        );
        assert_eq!(with_packet.last(), Some(&FrameOrigin::Decoded));
        let s = up.stats();
        assert_eq!(s.concealed, 0, "a pause is not loss");
        assert_eq!(s.decoded, 11, "nothing decoded for the silence");
        assert_eq!(frames.len(), 30, "one frame per 20 ms slot, no more");
    }

    #[test]
    fn a_loss_burst_partly_filled_by_the_clock_is_not_counted_twice() {
        let pk = packets(20);
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut up = UplinkPath::new(ModelRate::Hz24000);
        let mut n = 0;
        for k in 0..5u64 {
            up.on_packet(ms(k * 20), k, k * 960, &pk[k as usize], &mut |_, _, _| {
                n += 1
            });
        }
        // Packets 5..9 are lost; the clock fills slots 5, 6 and 7 by 199 ms.
        for t in 81..200 {
            up.poll(ms(t), &mut |_, _, _| n += 1);
        }
        assert_eq!(n, 8);
        // Packet 10 opens a gap: held while the buffer waits for 5, then given up on.
        up.on_packet(ms(200), 10, 10 * 960, &pk[10], &mut |_, _, _| n += 1);
        for t in 201..260 {
            up.poll(ms(t), &mut |_, _, _| n += 1);
        }
        let s = up.stats();
        assert_eq!(n, 11, "slots 8 and 9 concealed, then packet 10: {s:?}");
        assert_eq!((s.silence, s.concealed + s.fec_recovered), (3, 2), "{s:?}");
    }

    #[test]
    fn reorder_costs_nothing_and_loss_is_recovered_from_fec() {
        let pk = packets(12);
        let t0 = Instant::now();
        let mut up = UplinkPath::new(ModelRate::Hz24000);
        let mut origins = Vec::new();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // 0..4 in order; 5 and 4 swapped; 8 lost; 10 comes after 11 was given up on.
        let order: [(u64, usize); 11] = [
            (0, 0),
            (20, 1),
            (40, 2),
            (60, 3),
            (80, 5),
            (85, 4),
            (120, 6),
            (140, 7),
            (180, 9),
            (220, 11),
            (300, 10),
        ];
        for (at, seq) in order {
            up.poll(ms(at), &mut |_, o, _| origins.push(o));
            up.on_packet(
                ms(at),
                seq as u64,
                seq as u64 * 960,
                &pk[seq],
                &mut |_, o, _| origins.push(o),
            );
        }
        let s = up.stats();
        assert_eq!(s.reordered, 1, "{s:?}");
        assert_eq!(
            s.fec_recovered, 2,
            "8 and 10 rebuilt from the packet after: {s:?}"
        );
        assert_eq!(s.late, 1, "10 came after it was concealed");
        assert_eq!(origins.len(), 12, "one frame per 20 ms slot");
        assert!(!origins.contains(&FrameOrigin::Concealed));
    }
}
