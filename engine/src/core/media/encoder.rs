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
}

impl std::fmt::Debug for DownlinkEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DownlinkEncoder")
    }
}

impl DownlinkEncoder {
    /// An encoder for `rate` at `complexity`; its Opus state is made when the first frame is
    /// encoded, so a session that is never answered holds none.
    pub fn new(rate: ModelRate, complexity: u8) -> Self {
        DownlinkEncoder {
            enc: None,
            complexity,
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
            None => self
                .enc
                .insert(codec_pool::take_encoder(self.rate, self.complexity)?),
        };
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
