//! Downlink encoding: one 20 ms PCM frame at the model rate in, one Opus packet (VOIP mode) or,
//! for a G.711 session, one PCMU/PCMA payload out.
//!
//! Frames that carry no sound above the noise floor (peak at or under `QUIET_PEAK`, -54 dBFS: the
//! pauses between words and sentences of a reply) are encoded at the quiet complexity: the
//! speech-grade noise shaping of complexity 4 and up buys nothing audible there and is most of
//! the cost (`perf-reports/2026-11-30-opus-1.5`: complexity 2 on such frames, 0.92x the CPU per
//! reply frame at unchanged PESQ).

use audiopus::coder::Encoder;

use super::codec::AudioCodec;
use super::codec_pool;
use super::frame::{ModelRate, PcmFrame};
use super::g711::G711Encoder;

/// Largest Opus packet we produce.
pub const MAX_OPUS_PACKET: usize = 1275;

/// Loudest sample (absolute) of a frame encoded at the quiet complexity: -54 dBFS.
pub const QUIET_PEAK: u16 = 64;

#[derive(Debug, thiserror::Error)]
#[error("opus encoder: {0}")]
pub struct EncoderError(#[from] audiopus::Error);

pub struct DownlinkEncoder {
    /// Taken from the shard's pool with the first reply frame (`codec_pool`); given back on drop.
    enc: Option<Encoder>,
    /// `--opus-complexity`: frames with sound in them.
    complexity: u8,
    /// `--opus-quiet-complexity`: frames at or under `QUIET_PEAK` (never above `complexity`).
    quiet_complexity: u8,
    /// What `enc` is set to now.
    current: u8,
    rate: ModelRate,
    /// Set while the session speaks G.711.
    g711: Option<G711Encoder>,
}

impl std::fmt::Debug for DownlinkEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DownlinkEncoder")
    }
}

impl DownlinkEncoder {
    /// An encoder for `rate` at `complexity` (`quiet_complexity` for quiet frames); its Opus
    /// state is made when the first frame is encoded, so a session that is never answered holds
    /// none.
    pub fn new(rate: ModelRate, complexity: u8, quiet_complexity: u8) -> Self {
        let complexity = complexity.min(10);
        DownlinkEncoder {
            enc: None,
            complexity,
            quiet_complexity: quiet_complexity.min(complexity),
            current: complexity,
            rate,
            g711: None,
        }
    }

    /// The codec to encode in (the one the client sends).
    pub fn set_codec(&mut self, codec: AudioCodec) {
        let law = codec.law();
        if self.g711.as_ref().map(|g| g.law()) != law {
            self.g711 = law.map(|l| G711Encoder::new(l, self.rate.hz()));
        }
    }

    /// Encodes one frame into `packet`, replacing what it held (empty on error). The caller's
    /// buffer keeps its capacity across frames, so the encoder needs no output buffer of its own
    /// (1.25 KiB a session, idle or not).
    pub fn encode_into(
        &mut self,
        frame: &PcmFrame,
        packet: &mut Vec<u8>,
    ) -> Result<(), EncoderError> {
        packet.clear();
        if let Some(g) = self.g711.as_mut() {
            packet.extend_from_slice(g.encode(frame.samples()));
            return Ok(());
        }
        let enc = match &mut self.enc {
            Some(e) => e,
            None => {
                self.current = self.complexity;
                self.enc
                    .insert(codec_pool::take_encoder(self.rate, self.complexity)?)
            }
        };
        let want = if is_quiet(frame.samples()) {
            self.quiet_complexity
        } else {
            self.complexity
        };
        if want != self.current {
            enc.set_complexity(want)?;
            self.current = want;
        }
        packet.resize(MAX_OPUS_PACKET, 0);
        match enc.encode(frame.samples(), packet) {
            Ok(n) => {
                packet.truncate(n);
                Ok(())
            }
            Err(e) => {
                packet.clear();
                Err(e.into())
            }
        }
    }

    /// The complexity the next Opus frame would be encoded at, were it as loud as the last.
    pub fn current_complexity(&self) -> u8 {
        self.current
    }

    /// Whether Opus state is held (a reply has been encoded).
    pub fn holds_codec(&self) -> bool {
        self.enc.is_some()
    }
}

/// Whether no sample of `pcm` is louder than `QUIET_PEAK` (one pass, vectorized).
fn is_quiet(pcm: &[i16]) -> bool {
    pcm.iter().fold(0u16, |m, s| m.max(s.unsigned_abs())) <= QUIET_PEAK
}

impl Drop for DownlinkEncoder {
    fn drop(&mut self) {
        if let Some(e) = self.enc.take() {
            codec_pool::give_encoder(self.rate, e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(amplitude: f32) -> PcmFrame {
        let mut f = PcmFrame::silence(480);
        for (i, s) in f.samples_mut().iter_mut().enumerate() {
            *s = ((i as f32 * 0.07).sin() * amplitude) as i16;
        }
        f
    }

    #[test]
    fn quiet_frames_are_encoded_at_the_quiet_complexity() {
        std::thread::spawn(|| {
            let mut enc = DownlinkEncoder::new(ModelRate::Hz24000, 5, 2);
            let mut pkt = Vec::new();
            let (loud, quiet) = (frame(6000.0), frame(f32::from(QUIET_PEAK)));
            enc.encode_into(&loud, &mut pkt).unwrap();
            assert_eq!(enc.current_complexity(), 5);
            assert!(!pkt.is_empty());
            enc.encode_into(&quiet, &mut pkt).unwrap();
            assert_eq!(enc.current_complexity(), 2, "peak {QUIET_PEAK} is quiet");
            assert!(!pkt.is_empty(), "a quiet frame is still sent");
            enc.encode_into(&frame(f32::from(QUIET_PEAK) + 2.0), &mut pkt)
                .unwrap();
            assert_eq!(enc.current_complexity(), 5, "one step louder is not");
            // The quiet complexity never exceeds the configured one.
            let mut low = DownlinkEncoder::new(ModelRate::Hz24000, 1, 2);
            low.encode_into(&quiet, &mut pkt).unwrap();
            assert_eq!(low.current_complexity(), 1);
        })
        .join()
        .unwrap();
    }
}
