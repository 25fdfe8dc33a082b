//! WAV files: G.711 bytes as they travelled (WAVE_FORMAT_MULAW / ALAW, 8 kHz) or 16-bit PCM. The
//! header's sizes are patched when the file ends (and readers that meet a file cut short by a
//! crash take the data to its end).

use std::io::{self, Seek, SeekFrom, Write};

/// The sample encoding of a WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavEncoding {
    /// 16-bit little-endian PCM at `rate` Hz.
    Pcm16 { rate: u32 },
    /// G.711 µ-law, 8 kHz.
    Mulaw,
    /// G.711 A-law, 8 kHz.
    Alaw,
}

impl WavEncoding {
    fn tag(self) -> u16 {
        match self {
            WavEncoding::Pcm16 { .. } => 1,
            WavEncoding::Alaw => 6,
            WavEncoding::Mulaw => 7,
        }
    }

    pub fn rate(self) -> u32 {
        match self {
            WavEncoding::Pcm16 { rate } => rate,
            _ => 8_000,
        }
    }

    fn bytes_per_sample(self) -> u16 {
        match self {
            WavEncoding::Pcm16 { .. } => 2,
            _ => 1,
        }
    }

    /// The byte of one silent sample (G.711's zero codes; PCM writes 0s).
    fn silence_byte(self) -> u8 {
        match self {
            WavEncoding::Pcm16 { .. } => 0,
            WavEncoding::Mulaw => 0xff,
            WavEncoding::Alaw => 0xd5,
        }
    }
}

const HEADER_BYTES: u32 = 44;

pub struct WavWriter<W: Write + Seek> {
    out: W,
    enc: WavEncoding,
    data_bytes: u32,
}

impl<W: Write + Seek> WavWriter<W> {
    pub fn new(mut out: W, enc: WavEncoding) -> io::Result<Self> {
        out.write_all(&header(enc, 0))?;
        Ok(WavWriter {
            out,
            enc,
            data_bytes: 0,
        })
    }

    pub fn encoding(&self) -> WavEncoding {
        self.enc
    }

    /// `samples` of silence at the file's rate.
    pub fn silence(&mut self, samples: u64) -> io::Result<()> {
        let byte = self.enc.silence_byte();
        let mut left = samples * u64::from(self.enc.bytes_per_sample());
        let chunk = [byte; 960];
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            self.write(&chunk[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    /// G.711 bytes as they are.
    pub fn bytes(&mut self, data: &[u8]) -> io::Result<()> {
        self.write(data)
    }

    /// PCM samples.
    pub fn pcm(&mut self, samples: &[i16]) -> io::Result<()> {
        let mut buf = [0u8; 1920];
        for chunk in samples.chunks(buf.len() / 2) {
            for (i, s) in chunk.iter().enumerate() {
                buf[2 * i..2 * i + 2].copy_from_slice(&s.to_le_bytes());
            }
            self.write(&buf[..chunk.len() * 2])?;
        }
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.data_bytes = self.data_bytes.saturating_add(data.len() as u32);
        Ok(())
    }

    /// Pushes buffered bytes to the output.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Patches the sizes into the header and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&header(self.enc, self.data_bytes))?;
        self.out.seek(SeekFrom::End(0))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn header(enc: WavEncoding, data_bytes: u32) -> [u8; HEADER_BYTES as usize] {
    let mut h = [0u8; HEADER_BYTES as usize];
    let bps = enc.bytes_per_sample();
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(HEADER_BYTES - 8 + data_bytes).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&enc.tag().to_le_bytes());
    h[22..24].copy_from_slice(&1u16.to_le_bytes());
    h[24..28].copy_from_slice(&enc.rate().to_le_bytes());
    h[28..32].copy_from_slice(&(enc.rate() * u32::from(bps)).to_le_bytes());
    h[32..34].copy_from_slice(&bps.to_le_bytes());
    h[34..36].copy_from_slice(&(bps * 8).to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_bytes.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn pcm_header_sizes_are_patched_at_the_end() {
        let mut w =
            WavWriter::new(Cursor::new(Vec::new()), WavEncoding::Pcm16 { rate: 48_000 }).unwrap();
        w.silence(480).unwrap();
        w.pcm(&[1000i16; 960]).unwrap();
        let b = w.finish().unwrap().into_inner();
        assert_eq!(b.len(), 44 + 2 * 1440);
        assert_eq!(&b[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(b[40..44].try_into().unwrap()), 2 * 1440);
        assert_eq!(u32::from_le_bytes(b[24..28].try_into().unwrap()), 48_000);
        assert_eq!(&b[44..46], &[0, 0]);
        assert_eq!(i16::from_le_bytes([b[44 + 960], b[45 + 960]]), 1000);
    }

    #[test]
    fn g711_is_written_as_it_travelled() {
        let mut w = WavWriter::new(Cursor::new(Vec::new()), WavEncoding::Mulaw).unwrap();
        w.silence(2).unwrap();
        w.bytes(&[0x12, 0x34]).unwrap();
        let b = w.finish().unwrap().into_inner();
        assert_eq!(u16::from_le_bytes([b[20], b[21]]), 7, "WAVE_FORMAT_MULAW");
        assert_eq!(&b[44..], &[0xff, 0xff, 0x12, 0x34]);
    }
}
