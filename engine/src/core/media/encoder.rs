//! Downlink encoding: one 20 ms PCM frame at the model rate in, one Opus packet (VOIP mode) or,
//! for a G.711 session, one PCMU/PCMA payload out.

use audiopus::coder::Encoder;

use super::codec::AudioCodec;
use super::codec_pool;
use super::frame::{ModelRate, PcmFrame};
use super::g711::G711Encoder;

/// Largest Opus packet we produce.
pub const MAX_OPUS_PACKET: usize = 1275;

#[derive(Debug, thiserror::Error)]
#[error("opus encoder: {0}")]
pub struct EncoderError(#[from] audiopus::Error);

pub struct DownlinkEncoder {
    /// Taken from the shard's pool with the first reply frame (`codec_pool`); given back on drop.
    enc: Option<Encoder>,
    complexity: u8,
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
    /// An encoder for `rate` at `complexity`; its Opus state is made when the first frame is
    /// encoded, so a session that is never answered holds none.
    pub fn new(rate: ModelRate, complexity: u8) -> Result<Self, EncoderError> {
        Ok(DownlinkEncoder {
            enc: None,
            complexity,
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
        let enc = match &mut self.enc {
            Some(e) => e,
            None => self
                .enc
                .insert(codec_pool::take_encoder(self.rate, self.complexity)?),
        };
        let n = enc.encode(frame.samples(), &mut self.out)?;
        Ok(&self.out[..n])
    }

    /// Whether Opus state is held (a reply has been encoded).
    pub fn holds_codec(&self) -> bool {
        self.enc.is_some()
    }
}

impl Drop for DownlinkEncoder {
    fn drop(&mut self) {
        if let Some(e) = self.enc.take() {
            codec_pool::give_encoder(self.rate, e);
        }
    }
}
