//! Fixed-size PCM frames: the unit that crosses the rings. No heap, so a frame can be copied into a
//! ring slot without allocating.

/// Largest frame: 20 ms at 24 kHz.
pub const MAX_FRAME_SAMPLES: usize = 480;
/// Frame duration in milliseconds.
pub const FRAME_MS: u64 = 20;
/// RTP clock ticks (48 kHz) per frame.
pub const RTP_TICKS_PER_FRAME: u64 = 960;

/// The sample rate at which audio is handed to inference (and taken back from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelRate {
    Hz16000,
    Hz24000,
}

impl ModelRate {
    pub fn hz(self) -> u32 {
        match self {
            ModelRate::Hz16000 => 16_000,
            ModelRate::Hz24000 => 24_000,
        }
    }

    pub fn from_hz(hz: u32) -> Option<Self> {
        match hz {
            16_000 => Some(ModelRate::Hz16000),
            24_000 => Some(ModelRate::Hz24000),
            _ => None,
        }
    }

    /// Samples in one 20 ms frame.
    pub fn frame_samples(self) -> usize {
        self.hz() as usize / 50
    }
}

/// 20 ms of mono PCM16 at the model rate.
#[derive(Clone, Copy)]
pub struct PcmFrame {
    samples: [i16; MAX_FRAME_SAMPLES],
    len: u16,
}

impl std::fmt::Debug for PcmFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PcmFrame({} samples)", self.len)
    }
}

impl PcmFrame {
    /// A silent frame of `len` samples (clamped to the maximum).
    pub fn silence(len: usize) -> Self {
        PcmFrame {
            samples: [0; MAX_FRAME_SAMPLES],
            len: len.min(MAX_FRAME_SAMPLES) as u16,
        }
    }

    /// Copies up to `MAX_FRAME_SAMPLES` samples.
    pub fn from_slice(s: &[i16]) -> Self {
        let mut f = Self::silence(s.len());
        f.samples[..f.len as usize].copy_from_slice(&s[..f.len as usize]);
        f
    }

    pub fn samples(&self) -> &[i16] {
        &self.samples[..self.len as usize]
    }

    pub fn samples_mut(&mut self) -> &mut [i16] {
        &mut self.samples[..self.len as usize]
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every sample zero: the fills the decoder inserts for DTX gaps, or a muted sender. Nothing
    /// in it to clean or to detect.
    pub fn is_digital_silence(&self) -> bool {
        self.samples().iter().all(|&s| s == 0)
    }

    /// Root-mean-square level in dBFS (-96 for digital silence).
    pub fn level_dbfs(&self) -> f32 {
        if self.len == 0 {
            return -96.0;
        }
        let sum: f64 = self
            .samples()
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum();
        let rms = (sum / self.len as f64).sqrt() / 32768.0;
        if rms <= 1.6e-5 {
            -96.0
        } else {
            (20.0 * rms.log10()) as f32
        }
    }
}
