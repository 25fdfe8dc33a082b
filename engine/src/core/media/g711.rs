//! G.711 (PCMU: µ-law, PCMA: A-law) for gateways and clients that offer no Opus (SIP trunks,
//! telephony bridges; OpenAI's answers carry `111 0 8`). 8 kHz, one byte per sample, no state:
//! decoding is a table lookup, encoding the standard segment search (ITU-T G.711, as in the
//! classic Sun reference code). The model rate is reached with the shared `Resampler`.

use super::resample::Resampler;

/// Which companding law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// µ-law, RTP payload type 0 (PCMU).
    Mu,
    /// A-law, RTP payload type 8 (PCMA).
    A,
}

/// G.711's sample rate (and RTP clock).
pub const G711_HZ: u32 = 8_000;

const fn ulaw_to_linear(u: u8) -> i16 {
    const BIAS: i32 = 0x84;
    let u = !u;
    let mut t = (((u & 0x0f) as i32) << 3) + BIAS;
    t <<= (u & 0x70) >> 4;
    (if u & 0x80 != 0 { BIAS - t } else { t - BIAS }) as i16
}

const fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = ((a & 0x0f) as i32) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn table(law: Law) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match law {
            Law::Mu => ulaw_to_linear(i as u8),
            Law::A => alaw_to_linear(i as u8),
        };
        i += 1;
    }
    t
}

static ULAW: [i16; 256] = table(Law::Mu);
static ALAW: [i16; 256] = table(Law::A);

/// The segment (0-7) whose end is at or above `v`, or 8.
fn segment(v: i32, ends: &[i32; 8]) -> usize {
    ends.iter().position(|&e| v <= e).unwrap_or(8)
}

fn linear_to_ulaw(s: i16) -> u8 {
    const ENDS: [i32; 8] = [0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff];
    const CLIP: i32 = 8159;
    let mut v = i32::from(s) >> 2;
    let mask = if v < 0 {
        v = -v;
        0x7f
    } else {
        0xff
    };
    v = v.min(CLIP) + (0x84 >> 2);
    let seg = segment(v, &ENDS);
    if seg >= 8 {
        return 0x7f ^ mask;
    }
    ((seg << 4) as u8 | ((v >> (seg + 1)) & 0x0f) as u8) ^ mask
}

fn linear_to_alaw(s: i16) -> u8 {
    const ENDS: [i32; 8] = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];
    let mut v = i32::from(s) >> 3;
    let mask = if v >= 0 {
        0xd5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = segment(v, &ENDS);
    if seg >= 8 {
        return 0x7f ^ mask;
    }
    let mant = if seg < 2 { v >> 1 } else { v >> seg } & 0x0f;
    ((seg << 4) as u8 | mant as u8) ^ mask
}

/// Decodes G.711 bytes to linear PCM at 8 kHz.
pub fn decode(law: Law, bytes: &[u8], out: &mut [i16]) {
    let t = match law {
        Law::Mu => &ULAW,
        Law::A => &ALAW,
    };
    for (o, &b) in out.iter_mut().zip(bytes) {
        *o = t[b as usize];
    }
}

/// Encodes 8 kHz linear PCM to G.711 bytes.
pub fn encode(law: Law, pcm: &[i16], out: &mut [u8]) {
    for (o, &s) in out.iter_mut().zip(pcm) {
        *o = match law {
            Law::Mu => linear_to_ulaw(s),
            Law::A => linear_to_alaw(s),
        };
    }
}

/// G.711 payloads to model-rate PCM: table decode, then upsampling (buffers reused).
#[derive(Debug)]
pub struct G711Decoder {
    law: Law,
    up: Resampler,
    narrow: Vec<i16>,
}

impl G711Decoder {
    pub fn new(law: Law, model_hz: u32) -> Self {
        G711Decoder {
            law,
            up: Resampler::new(G711_HZ, model_hz),
            narrow: Vec::with_capacity(480),
        }
    }

    pub fn law(&self) -> Law {
        self.law
    }

    /// Decodes `payload` and appends the model-rate samples to `out`.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        self.narrow.clear();
        self.narrow.resize(payload.len(), 0);
        decode(self.law, payload, &mut self.narrow);
        self.up.process(&self.narrow, out);
    }
}

/// Model-rate PCM frames to G.711 payloads: downsampling, then the law (buffers reused).
#[derive(Debug)]
pub struct G711Encoder {
    law: Law,
    down: Resampler,
    narrow: Vec<i16>,
    out: Vec<u8>,
}

impl G711Encoder {
    pub fn new(law: Law, model_hz: u32) -> Self {
        G711Encoder {
            law,
            down: Resampler::new(model_hz, G711_HZ),
            narrow: Vec::with_capacity(160),
            out: Vec::with_capacity(160),
        }
    }

    pub fn law(&self) -> Law {
        self.law
    }

    /// Encodes one frame; the payload borrows an internal buffer until the next call.
    pub fn encode(&mut self, pcm: &[i16]) -> &[u8] {
        self.narrow.clear();
        self.down.process(pcm, &mut self.narrow);
        self.out.clear();
        self.out.resize(self.narrow.len(), 0);
        encode(self.law, &self.narrow, &mut self.out);
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_code_points() {
        // µ-law 0xff and 0x7f are +0 and -0; A-law 0xd5 / 0x55 are the smallest steps.
        assert_eq!(ULAW[0xff], 0);
        assert_eq!(ULAW[0x7f], 0);
        assert_eq!(ULAW[0x00], -32124);
        assert_eq!(ULAW[0x80], 32124);
        assert_eq!(ALAW[0xd5], 8);
        assert_eq!(ALAW[0x55], -8);
        assert_eq!(ALAW[0xaa], 32256);
        assert_eq!(ALAW[0x2a], -32256);
    }

    #[test]
    fn every_code_round_trips() {
        for b in 0..=255u8 {
            let s = ULAW[b as usize];
            let expect = if b == 0x7f { 0xff } else { b };
            assert_eq!(linear_to_ulaw(s), expect, "µ-law {b:#04x} -> {s}");
            assert_eq!(linear_to_alaw(ALAW[b as usize]), b, "A-law {b:#04x}");
        }
    }

    #[test]
    fn companding_error_stays_within_a_step() {
        for law in [Law::Mu, Law::A] {
            for s in (-32768i32..32768).step_by(7) {
                let s = s as i16;
                let mut b = [0u8];
                encode(law, &[s], &mut b);
                let mut back = [0i16];
                decode(law, &b, &mut back);
                let err = (i32::from(back[0]) - i32::from(s)).abs();
                // Steps grow with the segment: at most 1/16 of the magnitude plus the smallest.
                let bound = (i32::from(s).abs() / 16).max(16) + 16;
                assert!(err <= bound, "{law:?} {s} -> {} (err {err})", back[0]);
            }
        }
    }

    #[test]
    fn a_20ms_frame_goes_to_the_model_rate_and_back() {
        let tone: Vec<i16> = (0..480)
            .map(|i| {
                ((i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 24_000.0).sin() * 8000.0) as i16
            })
            .collect();
        let mut enc = G711Encoder::new(Law::Mu, 24_000);
        let mut dec = G711Decoder::new(Law::Mu, 24_000);
        let mut out = Vec::new();
        for _ in 0..3 {
            let payload = enc.encode(&tone).to_vec();
            assert_eq!(payload.len(), 160, "20 ms at 8 kHz");
            out.clear();
            dec.decode(&payload, &mut out);
            assert_eq!(out.len(), 480, "20 ms at 24 kHz");
        }
        let energy = |x: &[i16]| x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
        let ratio = energy(&out) / energy(&tone);
        assert!((0.7..1.3).contains(&ratio), "tone energy kept: {ratio}");
    }
}
