//! Call recording: what a session hands over (packets as received and as sent, never re-encoded
//! on a media core), where each packet lands in its file, and the file formats. The shell's
//! recorder thread owns the files; everything here is plain logic, testable without a disk.

pub mod ogg_opus;
pub mod track;
pub mod wav;

use super::media::codec::AudioCodec;

/// What a recording is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFormat {
    /// Opus packets as they travelled, in Ogg (RFC 7845); G.711 calls fall back to WAV.
    Ogg,
    /// WAV: G.711 bytes as they travelled (µ-law/A-law WAV), Opus decoded to 48 kHz PCM off the
    /// media cores.
    Wav,
}

impl RecordFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ogg" => Some(RecordFormat::Ogg),
            "wav" => Some(RecordFormat::Wav),
            _ => None,
        }
    }

    /// The file extension for a call in `codec`.
    pub fn extension(self, codec: AudioCodec) -> &'static str {
        match (self, codec) {
            (RecordFormat::Ogg, AudioCodec::Opus) => "ogg",
            _ => "wav",
        }
    }
}

/// Which way a packet went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client, as received.
    Received,
    /// To the client, as sent.
    Sent,
}

impl Direction {
    /// The file name suffix.
    pub fn label(self) -> &'static str {
        match self {
            Direction::Received => "in",
            Direction::Sent => "out",
        }
    }
}

/// What a session tells the recorder.
#[derive(Debug, Clone, Copy)]
pub enum RecordEvent<'a> {
    /// The call connected: its recording starts now.
    Open { format: RecordFormat },
    /// One media packet; `rtp48` is its RTP timestamp on a 48 kHz clock.
    Packet {
        dir: Direction,
        rtp48: u64,
        codec: AudioCodec,
        payload: &'a [u8],
    },
    /// The call ended.
    Close,
}

/// Samples (at 48 kHz) an Opus packet decodes to, from its TOC (RFC 6716 §3.1); None for a
/// malformed packet.
pub fn opus_samples_48k(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let per_frame = match config {
        // SILK: 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        // Hybrid: 10, 20 ms.
        12..=15 => [480, 960][usize::from(config % 2)],
        // CELT: 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 0x3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    let total = per_frame * frames;
    // At most 120 ms per packet.
    (frames > 0 && total <= 5760).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_packet_durations_from_the_toc() {
        assert_eq!(opus_samples_48k(&[0xf8, 0xff, 0xfe]), Some(960)); // CELT FB 20 ms
        assert_eq!(opus_samples_48k(&[0x78]), Some(960)); // hybrid FB 20 ms
        assert_eq!(opus_samples_48k(&[0x0b << 3]), Some(2880)); // SILK 60 ms
        assert_eq!(opus_samples_48k(&[0xf9]), Some(1920)); // two 20 ms frames
        assert_eq!(opus_samples_48k(&[0xfb, 0x03]), Some(2880)); // code 3, 3 frames
        assert_eq!(opus_samples_48k(&[0xfb, 0x07]), None); // 140 ms: over the limit
        assert_eq!(opus_samples_48k(&[0xfb]), None); // code 3 without its count
        assert_eq!(opus_samples_48k(&[]), None);
    }
}
