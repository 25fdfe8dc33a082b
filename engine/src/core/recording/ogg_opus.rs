//! Opus packets into an Ogg Opus file (RFC 7845) as they travelled: no decoding, no re-encoding.
//! A gap is filled with empty Opus frames (a TOC byte alone), which a decoder plays as a lost
//! frame, so the file keeps the call's length.

use std::io::{self, Write};

use ogg::writing::{PacketWriteEndInfo, PacketWriter};

use super::track::FRAME_48K;

/// A TOC byte alone: one 20 ms CELT frame of no bytes (RFC 6716 §3.2.1: played as lost).
const EMPTY_FRAME: [u8; 1] = [0xf8];
/// Packets per Ogg page: a page a second bounds what a crash can lose.
const PACKETS_PER_PAGE: u32 = 50;

pub struct OggOpusWriter<W: Write> {
    out: PacketWriter<'static, W>,
    serial: u32,
    /// Samples written (the granule position).
    granule: u64,
    in_page: u32,
    /// Bytes held for the page in progress (packets and their lacing values).
    pending: u64,
}

impl<W: Write> OggOpusWriter<W> {
    /// Writes the identification and comment headers; `serial` tells streams apart.
    pub fn new(out: W, serial: u32, call_id: &str, direction: &str) -> io::Result<Self> {
        let mut w = OggOpusWriter {
            out: PacketWriter::new(out),
            serial,
            granule: 0,
            in_page: 0,
            pending: 0,
        };
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(1); // channels: WebRTC voice is mono (a stereo packet downmixes)
        head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip: packets as sent, nothing cut
        head.extend_from_slice(&48_000u32.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // channel mapping family
        w.out
            .write_packet(head, serial, PacketWriteEndInfo::EndPage, 0)?;
        let vendor = b"tern";
        let comment = format!("TERN_CALL={call_id} DIRECTION={direction}");
        let mut tags = Vec::with_capacity(32 + comment.len());
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&1u32.to_le_bytes());
        tags.extend_from_slice(&(comment.len() as u32).to_le_bytes());
        tags.extend_from_slice(comment.as_bytes());
        w.out
            .write_packet(tags, serial, PacketWriteEndInfo::EndPage, 0)?;
        Ok(w)
    }

    /// `samples` (48 kHz) of silence, as empty frames.
    pub fn silence(&mut self, samples: u64) -> io::Result<()> {
        for _ in 0..samples.div_ceil(FRAME_48K) {
            self.packet(&EMPTY_FRAME, FRAME_48K)?;
        }
        Ok(())
    }

    /// One Opus packet that decodes to `samples` (48 kHz).
    pub fn packet(&mut self, packet: &[u8], samples: u64) -> io::Result<()> {
        self.granule += samples;
        self.in_page += 1;
        self.pending += packet.len() as u64 / 255 + 1 + packet.len() as u64;
        let end = if self.in_page >= PACKETS_PER_PAGE {
            self.in_page = 0;
            self.pending = 0;
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        self.out
            .write_packet(packet.to_vec(), self.serial, end, self.granule)
    }

    /// Bytes the page in progress will add when it is written (its header aside).
    pub fn pending_bytes(&self) -> u64 {
        self.pending
    }

    /// Pushes finished pages to the output (a page in progress stays until it ends).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.inner_mut().flush()
    }

    /// Ends the stream (an empty last packet closes it) and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_packet(
            Vec::new(),
            self.serial,
            PacketWriteEndInfo::EndStream,
            self.granule,
        )?;
        Ok(self.out.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_packets_and_granules_read_back() {
        let mut w = OggOpusWriter::new(Vec::new(), 7, "rtc_abc", "in").unwrap();
        w.silence(1920).unwrap();
        for _ in 0..60 {
            w.packet(&[0xf8, 1, 2, 3], 960).unwrap();
        }
        let bytes = w.finish().unwrap();
        let mut r = ogg::reading::PacketReader::new(std::io::Cursor::new(bytes));
        let head = r.read_packet().unwrap().unwrap();
        assert!(head.data.starts_with(b"OpusHead"));
        let tags = r.read_packet().unwrap().unwrap();
        assert!(tags.data.starts_with(b"OpusTags"));
        assert!(String::from_utf8_lossy(&tags.data).contains("TERN_CALL=rtc_abc"));
        let mut audio = 0;
        let mut last = None;
        while let Some(p) = r.read_packet().unwrap() {
            if !p.data.is_empty() {
                audio += 1;
            }
            last = Some((p.absgp_page(), p.last_in_stream()));
        }
        assert_eq!(audio, 62, "2 empty frames of silence + 60 packets");
        assert_eq!(last, Some((62 * 960, true)), "the granule is the length");
    }
}
