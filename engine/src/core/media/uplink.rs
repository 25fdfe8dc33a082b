//! The uplink path of one session: reorder-and-gap buffer, then the decoder (concealment, FEC,
//! DTX silence). Frames come out in order at the model rate, each with how long its packet was
//! held.

use std::time::Instant;

use super::codec::AudioCodec;
use super::decoder::{DecoderError, FrameOrigin, UplinkDecoder};
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

pub struct UplinkPath {
    reorder: ReorderBuffer,
    decoder: UplinkDecoder,
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
    pub fn new(rate: ModelRate) -> Result<Self, DecoderError> {
        Ok(UplinkPath {
            reorder: ReorderBuffer::default(),
            decoder: UplinkDecoder::new(rate)?,
        })
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
        self.reorder.push(now, seq, rtp_ts, payload, &mut |r| {
            let arrived = now.checked_sub(r.hold).unwrap_or(now);
            dec.on_packet(r.seq, r.rtp_ts, r.payload, &mut |f, o| emit(f, o, arrived));
        });
        self.reorder.stats.late == late
    }

    /// Gives up on a gap whose wait is over.
    pub fn poll(&mut self, now: Instant, emit: &mut EmitFrame<'_>) {
        let dec = &mut self.decoder;
        self.reorder.poll(now, &mut |r| {
            let arrived = now.checked_sub(r.hold).unwrap_or(now);
            dec.on_packet(r.seq, r.rtp_ts, r.payload, &mut |f, o| emit(f, o, arrived));
        });
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.reorder.deadline()
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
    fn reorder_costs_nothing_and_loss_is_recovered_from_fec() {
        let pk = packets(12);
        let t0 = Instant::now();
        let mut up = UplinkPath::new(ModelRate::Hz24000).expect("path");
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
