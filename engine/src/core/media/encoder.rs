//! Downlink encoding: one 20 ms PCM frame at the model rate in, one Opus packet (VOIP mode) or,
//! for a G.711 session, one PCMU/PCMA payload out.

use audiopus::coder::Encoder;
use audiopus::{Application, Channels, SampleRate};

use super::codec::AudioCodec;
use super::frame::{ModelRate, PcmFrame};
use super::g711::G711Encoder;

/// Largest Opus packet we produce.
pub const MAX_OPUS_PACKET: usize = 1275;

#[derive(Debug, thiserror::Error)]
#[error("opus encoder: {0}")]
pub struct EncoderError(#[from] audiopus::Error);

pub struct DownlinkEncoder {
    enc: Encoder,
    rate: ModelRate,
    /// Set while the session speaks G.711.
    g711: Option<G711Encoder>,
    out: [u8; MAX_OPUS_PACKET],
}

impl std::fmt::Debug for DownlinkEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DownlinkEncoder")
    }
}

impl DownlinkEncoder {
    pub fn new(rate: ModelRate, complexity: u8) -> Result<Self, EncoderError> {
        let sr = match rate {
            ModelRate::Hz16000 => SampleRate::Hz16000,
            ModelRate::Hz24000 => SampleRate::Hz24000,
        };
        let mut enc = Encoder::new(sr, Channels::Mono, Application::Voip)?;
        enc.set_complexity(complexity.min(10))?;
        enc.set_inband_fec(true)?;
        enc.set_packet_loss_perc(5)?;
        Ok(DownlinkEncoder {
            enc,
            rate,
            g711: None,
            out: [0; MAX_OPUS_PACKET],
        })
    }

    /// The codec to encode in (the one the client sends).
    pub fn set_codec(&mut self, codec: AudioCodec) {
        let law = codec.law();
        if self.g711.as_ref().map(|g| g.law()) != law {
            self.g711 = law.map(|l| G711Encoder::new(l, self.rate.hz()));
        }
    }

    /// Encodes one frame; the packet borrows an internal buffer until the next call.
    pub fn encode(&mut self, frame: &PcmFrame) -> Result<&[u8], EncoderError> {
        if let Some(g) = self.g711.as_mut() {
            return Ok(g.encode(frame.samples()));
        }
        let n = self.enc.encode(frame.samples(), &mut self.out)?;
        Ok(&self.out[..n])
    }
}
