//! The audio codecs a session may use on the wire: Opus (browsers, SDKs) and G.711 (gateways and
//! clients with no Opus). The client picks by what it sends; Tern answers in the same codec.

use str0m::format::Codec;
use str0m::media::Frequency;

use super::g711::Law;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AudioCodec {
    #[default]
    Opus,
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
}

impl AudioCodec {
    /// The codec of a str0m payload, if Tern speaks it.
    pub fn from_str0m(c: Codec) -> Option<Self> {
        match c {
            Codec::Opus => Some(AudioCodec::Opus),
            Codec::PCMU => Some(AudioCodec::Pcmu),
            Codec::PCMA => Some(AudioCodec::Pcma),
            _ => None,
        }
    }

    /// The RTP clock rate.
    pub fn rtp_hz(self) -> u32 {
        match self {
            AudioCodec::Opus => 48_000,
            AudioCodec::Pcmu | AudioCodec::Pcma => 8_000,
        }
    }

    /// The RTP clock, as str0m wants it for writing.
    pub fn rtp_frequency(self) -> Frequency {
        match self {
            AudioCodec::Opus => Frequency::FORTY_EIGHT_KHZ,
            AudioCodec::Pcmu | AudioCodec::Pcma => Frequency::EIGHT_KHZ,
        }
    }

    /// The G.711 law, for the G.711 codecs.
    pub fn law(self) -> Option<Law> {
        match self {
            AudioCodec::Opus => None,
            AudioCodec::Pcmu => Some(Law::Mu),
            AudioCodec::Pcma => Some(Law::A),
        }
    }

    /// An RTP timestamp in this codec's clock, on the 48 kHz clock the media path counts in.
    pub fn to_48k(self, ts: u64) -> u64 {
        ts * u64::from(48_000 / self.rtp_hz())
    }

    /// A 48 kHz media-path timestamp in this codec's clock.
    pub fn from_48k(self, ts: u64) -> u64 {
        ts / u64::from(48_000 / self.rtp_hz())
    }
}
