//! Uplink decoding: Opus (or G.711) RTP payloads in, 20 ms PCM frames at the model rate out.
//!
//! libopus decodes straight at 16 or 24 kHz, so nothing is resampled; G.711 is decoded at 8 kHz
//! and upsampled, its losses become silence (it has no FEC, and libopus's PLC is for Opus). A gap in sequence numbers is
//! concealed rather than skipped: the last lost frame is rebuilt from the in-band FEC of the packet
//! that follows it (libopus falls back to PLC when there is none), earlier ones by PLC. A jump in
//! RTP time without a sequence gap is DTX or a paused sender, and becomes silence. Packets that
//! arrive after their slot was concealed are counted and dropped.

use std::cell::Cell;

use audiopus::coder::Decoder;
use audiopus::packet::Packet;
use audiopus::MutSignals;

use super::codec::AudioCodec;
use super::codec_pool;
use super::frame::{ModelRate, PcmFrame, RTP_TICKS_PER_FRAME};
use super::g711::G711Decoder;

/// At most this many frames are concealed for one gap (longer gaps are silence).
pub const MAX_CONCEALED_PER_GAP: u64 = 5;
/// At most this many silent frames are inserted for one DTX jump.
pub const MAX_SILENCE_PER_JUMP: u64 = 50;
/// 120 ms at 24 kHz: the longest Opus packet.
const MAX_PACKET_SAMPLES: usize = 2880;

/// How a frame came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameOrigin {
    Decoded,
    Concealed,
    FecRecovered,
    Silence,
}

impl FrameOrigin {
    /// Metric labels, in `index()` order.
    pub const LABELS: [&'static str; 4] = ["decoded", "concealed", "fec_recovered", "silence"];

    pub fn index(self) -> usize {
        match self {
            FrameOrigin::Decoded => 0,
            FrameOrigin::Concealed => 1,
            FrameOrigin::FecRecovered => 2,
            FrameOrigin::Silence => 3,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DecoderStats {
    pub decoded: u64,
    pub concealed: u64,
    pub fec_recovered: u64,
    pub silence: u64,
    pub late: u64,
    pub errors: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("opus decoder: {0}")]
pub struct DecoderError(#[from] audiopus::Error);

thread_local! {
    /// The shard thread's decode buffer (a packet of up to 120 ms), shared by its sessions: one
    /// session decodes at a time, and each copies what it keeps into 20 ms frames, so a session
    /// need not own 5.6 KiB that it uses for microseconds per packet.
    static SCRATCH: Cell<Option<Box<[i16; MAX_PACKET_SAMPLES]>>> = const { Cell::new(None) };
}

/// Runs `f` with the thread's decode buffer: taken out and put back, so a call nested inside
/// `f` (none today) or a panic that loses it costs one new buffer, never a wrong borrow.
fn with_scratch<R>(f: impl FnOnce(&mut [i16; MAX_PACKET_SAMPLES]) -> R) -> R {
    let mut pcm = SCRATCH
        .take()
        .unwrap_or_else(|| Box::new([0; MAX_PACKET_SAMPLES]));
    let r = f(&mut pcm);
    SCRATCH.set(Some(pcm));
    r
}

pub struct UplinkDecoder {
    /// Taken with the first Opus packet; given back to the shard's pool on drop.
    dec: Option<Decoder>,
    /// Set while the session speaks G.711.
    g711: Option<G711Decoder>,
    g711_pcm: Vec<i16>,
    rate: ModelRate,
    next_seq: Option<u64>,
    next_ts: Option<u64>,
    pending: PcmFrame,
    pending_len: usize,
    /// Silent frames the uplink's clock inserted since the last packet (DTX: nothing arrives).
    filled: u64,
    pub stats: DecoderStats,
}

impl std::fmt::Debug for UplinkDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UplinkDecoder")
            .field("stats", &self.stats)
            .finish()
    }
}

impl Drop for UplinkDecoder {
    fn drop(&mut self) {
        if let Some(d) = self.dec.take() {
            codec_pool::give_decoder(self.rate, d);
        }
    }
}

impl UplinkDecoder {
    /// A decoder to `rate`; its Opus state is taken from the shard's pool with the first Opus
    /// packet (`codec_pool`), so a session that never sends audio holds none.
    pub fn new(rate: ModelRate) -> Self {
        UplinkDecoder {
            dec: None,
            g711: None,
            g711_pcm: Vec::new(),
            rate,
            next_seq: None,
            next_ts: None,
            pending: PcmFrame::silence(rate.frame_samples()),
            pending_len: 0,
            filled: 0,
            stats: DecoderStats::default(),
        }
    }

    /// Whether Opus state is held (an Opus packet has been decoded).
    pub fn holds_codec(&self) -> bool {
        self.dec.is_some()
    }

    /// The codec of the packets that follow (the session learns it from the first one).
    pub fn set_codec(&mut self, codec: AudioCodec) {
        let law = codec.law();
        if self.g711.as_ref().map(|g| g.law()) != law {
            self.g711 = law.map(|l| G711Decoder::new(l, self.rate.hz()));
        }
    }

    /// Feeds one RTP packet (extended sequence number, RTP time on the 48 kHz clock, payload in
    /// the codec set by `set_codec`) and emits every complete 20 ms frame it yields, concealment
    /// first.
    pub fn on_packet(
        &mut self,
        seq: u64,
        rtp_ts: u64,
        payload: &[u8],
        emit: &mut dyn FnMut(&PcmFrame, FrameOrigin),
    ) {
        with_scratch(|pcm| self.packet_into(pcm, seq, rtp_ts, payload, emit));
    }

    fn packet_into(
        &mut self,
        pcm: &mut [i16; MAX_PACKET_SAMPLES],
        seq: u64,
        rtp_ts: u64,
        payload: &[u8],
        emit: &mut dyn FnMut(&PcmFrame, FrameOrigin),
    ) {
        let filled = std::mem::take(&mut self.filled);
        if let Some(next) = self.next_seq {
            if seq < next {
                self.stats.late += 1;
                return;
            }
            // The clock already filled part of the gap with silence: conceal only the rest.
            let lost = (seq - next).saturating_sub(filled);
            if lost > 0 {
                let concealed = lost.min(MAX_CONCEALED_PER_GAP);
                for i in 0..concealed {
                    let use_fec = i + 1 == concealed && lost <= MAX_CONCEALED_PER_GAP;
                    self.conceal(pcm, payload, use_fec, emit);
                }
                for _ in concealed..lost.min(MAX_SILENCE_PER_JUMP) {
                    self.emit_silence(pcm, emit);
                }
            } else if let Some(next_ts) = self.next_ts {
                // No packet missing, but time jumped: DTX or a paused sender.
                let ticks = rtp_ts.saturating_sub(next_ts);
                let frames = (ticks / RTP_TICKS_PER_FRAME).min(MAX_SILENCE_PER_JUMP);
                for _ in 0..frames {
                    self.emit_silence(pcm, emit);
                }
            }
        }
        let n = if let Some(g) = self.g711.as_mut() {
            self.g711_pcm.clear();
            g.decode(payload, &mut self.g711_pcm);
            let n = self.g711_pcm.len().min(MAX_PACKET_SAMPLES);
            pcm[..n].copy_from_slice(&self.g711_pcm[..n]);
            n
        } else {
            match Packet::try_from(payload)
                .map_err(DecoderError::from)
                .and_then(|p| self.decode_n(pcm, Some(p), false, MAX_PACKET_SAMPLES))
            {
                Ok(n) => n,
                Err(_) => {
                    self.stats.errors += 1;
                    // A corrupt payload is concealed (one frame) so that the stream keeps its
                    // timing: PLC produces as many samples as it is given room for.
                    let frame = self.rate.frame_samples();
                    self.decode_n(pcm, None, false, frame).unwrap_or(0)
                }
            }
        };
        self.stats.decoded += 1;
        self.split(pcm, n, FrameOrigin::Decoded, emit);
        self.next_seq = Some(seq + 1);
        let ticks = (n as u64 * 48_000) / u64::from(self.rate.hz());
        self.next_ts = Some(rtp_ts + ticks.max(RTP_TICKS_PER_FRAME));
    }

    /// No packet has come for a frame's time (DTX, or a sender that went quiet): one frame of
    /// silence now, at no codec cost, so the VAD and the turn timer keep real time. A packet that
    /// follows accounts for it (its RTP jump, or its sequence gap, is shortened by one frame).
    pub fn silence_tick(&mut self, emit: &mut dyn FnMut(&PcmFrame, FrameOrigin)) {
        if self.next_seq.is_none() {
            return;
        }
        self.filled += 1;
        if let Some(ts) = self.next_ts.as_mut() {
            *ts += RTP_TICKS_PER_FRAME;
        }
        with_scratch(|pcm| self.emit_silence(pcm, emit));
    }

    fn conceal(
        &mut self,
        pcm: &mut [i16; MAX_PACKET_SAMPLES],
        next_payload: &[u8],
        use_fec: bool,
        emit: &mut dyn FnMut(&PcmFrame, FrameOrigin),
    ) {
        if self.g711.is_some() {
            // G.711 has neither FEC nor a concealment of its own here: the gap is silence.
            self.emit_silence(pcm, emit);
            return;
        }
        let frame = self.rate.frame_samples();
        let (res, origin) = match (use_fec, Packet::try_from(next_payload)) {
            (true, Ok(p)) => (
                self.decode_n(pcm, Some(p), true, frame),
                FrameOrigin::FecRecovered,
            ),
            _ => (
                self.decode_n(pcm, None, false, frame),
                FrameOrigin::Concealed,
            ),
        };
        match (res, origin) {
            (Ok(n), FrameOrigin::FecRecovered) => {
                self.stats.fec_recovered += 1;
                self.split(pcm, n, origin, emit);
            }
            (Ok(n), _) => {
                self.stats.concealed += 1;
                self.split(pcm, n, origin, emit);
            }
            (Err(_), _) => {
                self.stats.errors += 1;
                self.emit_silence(pcm, emit);
            }
        }
    }

    fn decode_n(
        &mut self,
        pcm: &mut [i16; MAX_PACKET_SAMPLES],
        p: Option<Packet<'_>>,
        fec: bool,
        n: usize,
    ) -> Result<usize, DecoderError> {
        let dec = match &mut self.dec {
            Some(d) => d,
            None => self.dec.insert(codec_pool::take_decoder(self.rate)?),
        };
        let out = MutSignals::try_from(&mut pcm[..n])?;
        Ok(dec.decode(p, out, fec)?)
    }

    fn emit_silence(
        &mut self,
        pcm: &mut [i16; MAX_PACKET_SAMPLES],
        emit: &mut dyn FnMut(&PcmFrame, FrameOrigin),
    ) {
        self.stats.silence += 1;
        let n = self.rate.frame_samples();
        pcm[..n].fill(0);
        self.split(pcm, n, FrameOrigin::Silence, emit);
    }

    /// Cuts `n` decoded samples into 20 ms frames, carrying a remainder (10 ms packets) over.
    fn split(
        &mut self,
        pcm: &[i16; MAX_PACKET_SAMPLES],
        n: usize,
        origin: FrameOrigin,
        emit: &mut dyn FnMut(&PcmFrame, FrameOrigin),
    ) {
        let frame = self.rate.frame_samples();
        let mut at = 0;
        while at < n {
            let take = (frame - self.pending_len).min(n - at);
            self.pending.samples_mut()[self.pending_len..self.pending_len + take]
                .copy_from_slice(&pcm[at..at + take]);
            self.pending_len += take;
            at += take;
            if self.pending_len == frame {
                emit(&self.pending, origin);
                self.pending_len = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audiopus::coder::Encoder;
    use audiopus::{Application, Channels, SampleRate};

    #[test]
    fn gaps_are_concealed_not_skipped() {
        let enc =
            Encoder::new(SampleRate::Hz24000, Channels::Mono, Application::Voip).expect("encoder");
        let mut dec = UplinkDecoder::new(ModelRate::Hz24000);
        let mut frames = Vec::new();
        for seq in 0..10u64 {
            let pcm: Vec<i16> = (0..480)
                .map(|i| ((i as f32 * 0.2).sin() * 8000.0) as i16)
                .collect();
            let mut out = [0u8; 1500];
            let n = enc.encode(&pcm, &mut out).expect("encode");
            if seq == 4 || seq == 5 {
                continue; // lost
            }
            dec.on_packet(seq, seq * 960, &out[..n], &mut |f, o| {
                frames.push((f.len(), o))
            });
        }
        assert_eq!(frames.len(), 10, "one frame per 20 ms, lost ones included");
        assert!(frames.iter().all(|(n, _)| *n == 480));
        assert_eq!(dec.stats.concealed + dec.stats.fec_recovered, 2);
        dec.on_packet(3, 3 * 960, &[0xf8, 0xff, 0xfe], &mut |_, _| {
            panic!("late packet must not emit")
        });
        assert_eq!(dec.stats.late, 1);
    }

    /// Regression (issue 16): a corrupt payload was concealed into the 120 ms buffer, six frames.
    #[test]
    fn a_corrupt_payload_is_one_concealed_frame() {
        let mut dec = UplinkDecoder::new(ModelRate::Hz24000);
        let mut frames = 0;
        // TOC byte of a code-3 packet with a frame count of zero: libopus refuses it.
        dec.on_packet(0, 0, &[0x03, 0x00], &mut |_, _| frames += 1);
        assert_eq!(dec.stats.errors, 1);
        assert_eq!(frames, 1, "20 ms in, 20 ms out");
    }

    #[test]
    fn g711_packets_become_model_rate_frames_and_gaps_silence() {
        use crate::core::media::g711::{G711Encoder, Law};
        let mut dec = UplinkDecoder::new(ModelRate::Hz24000);
        dec.set_codec(AudioCodec::Pcmu);
        let mut enc = G711Encoder::new(Law::Mu, 24_000);
        let tone: Vec<i16> = (0..480)
            .map(|i| ((i as f32 * 0.1).sin() * 6000.0) as i16)
            .collect();
        let mut frames = Vec::new();
        for seq in 0..6u64 {
            let payload = enc.encode(&tone).to_vec();
            if seq == 3 {
                continue; // lost
            }
            // RTP time on the 48 kHz clock (the session converts G.711's 8 kHz).
            dec.on_packet(seq, seq * 960, &payload, &mut |f, o| {
                let loud = f.samples().iter().any(|s| s.abs() > 1000);
                frames.push((f.len(), o, loud))
            });
        }
        assert_eq!(frames.len(), 6);
        assert!(frames.iter().all(|(n, ..)| *n == 480));
        assert_eq!(frames[3].1, FrameOrigin::Silence, "the lost packet");
        assert!(frames[5].2 && frames[5].1 == FrameOrigin::Decoded);
    }
}
