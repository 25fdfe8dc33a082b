//! Opus codec state, created when audio first flows and recycled when a session ends.
//!
//! Creating an Opus encoder or decoder allocates and initialises tens of kilobytes; a session
//! that never talks (or is never answered) needs neither. So a session takes its decoder with the
//! first Opus packet and its encoder with the first reply frame, and gives both back when it is
//! dropped: into a pool of the thread that drops it, reset (`OPUS_RESET_STATE` keeps the
//! settings), for the next session on that shard. One pool per thread: each shard runs on its own
//! thread, so the pool needs no lock, and a session handed to another shard returns its codecs
//! there.

use std::cell::RefCell;

use audiopus::coder::{Decoder, Encoder, GenericCtl};
use audiopus::{Application, Channels, SampleRate};

use super::frame::ModelRate;

/// Codecs a thread keeps for reuse, of each kind.
pub const POOL_MAX: usize = 256;

/// What one thread's pool did (see `stats`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub encoders_created: u64,
    pub encoders_reused: u64,
    pub decoders_created: u64,
    pub decoders_reused: u64,
    /// Codecs held in the pool now.
    pub pooled: u64,
}

/// Codecs of one kind, each with the rate it was made for.
struct Shelf<T>(Vec<(ModelRate, T)>);

impl<T> Default for Shelf<T> {
    fn default() -> Self {
        Shelf(Vec::new())
    }
}

impl<T> Shelf<T> {
    fn take(&mut self, rate: ModelRate) -> Option<T> {
        let i = self.0.iter().rposition(|(r, _)| *r == rate)?;
        Some(self.0.swap_remove(i).1)
    }

    fn put(&mut self, rate: ModelRate, t: T) {
        if self.0.len() < POOL_MAX {
            self.0.push((rate, t));
        }
    }
}

#[derive(Default)]
struct Pool {
    encoders: Shelf<Encoder>,
    decoders: Shelf<Decoder>,
    stats: PoolStats,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

fn sample_rate(rate: ModelRate) -> SampleRate {
    match rate {
        ModelRate::Hz16000 => SampleRate::Hz16000,
        ModelRate::Hz24000 => SampleRate::Hz24000,
    }
}

/// An encoder for replies at `rate` (VOIP, in-band FEC for 5% loss) with `complexity`.
pub fn take_encoder(rate: ModelRate, complexity: u8) -> Result<Encoder, audiopus::Error> {
    let pooled = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let e = p.encoders.take(rate)?;
        p.stats.encoders_reused += 1;
        Some(e)
    });
    let mut enc = match pooled {
        Some(e) => e,
        None => {
            let mut e = Encoder::new(sample_rate(rate), Channels::Mono, Application::Voip)?;
            e.set_inband_fec(true)?;
            e.set_packet_loss_perc(5)?;
            POOL.with(|p| p.borrow_mut().stats.encoders_created += 1);
            e
        }
    };
    enc.set_complexity(complexity.min(10))?;
    Ok(enc)
}

/// A decoder to `rate`.
pub fn take_decoder(rate: ModelRate) -> Result<Decoder, audiopus::Error> {
    let pooled = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let d = p.decoders.take(rate)?;
        p.stats.decoders_reused += 1;
        Some(d)
    });
    match pooled {
        Some(d) => Ok(d),
        None => {
            let d = Decoder::new(sample_rate(rate), Channels::Mono)?;
            POOL.with(|p| p.borrow_mut().stats.decoders_created += 1);
            Ok(d)
        }
    }
}

/// Returns an encoder, reset, to this thread's pool (or frees it when the pool is full).
pub fn give_encoder(rate: ModelRate, mut enc: Encoder) {
    if enc.reset_state().is_err() {
        return;
    }
    POOL.with(|p| p.borrow_mut().encoders.put(rate, enc));
}

/// Returns a decoder, reset, to this thread's pool (or frees it when the pool is full).
pub fn give_decoder(rate: ModelRate, mut dec: Decoder) {
    if dec.reset_state().is_err() {
        return;
    }
    POOL.with(|p| p.borrow_mut().decoders.put(rate, dec));
}

/// This thread's pool figures.
pub fn stats() -> PoolStats {
    POOL.with(|p| {
        let p = p.borrow();
        PoolStats {
            pooled: (p.encoders.0.len() + p.decoders.0.len()) as u64,
            ..p.stats
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_the_libopus_built_from_source() {
        // vendor/audiopus_sys links libopus 1.5.2 built from opusic-sys's sources, not the
        // system's 1.3.1: the codec figures in perf-reports are for this build.
        let v = audiopus::version();
        assert!(v.starts_with("libopus 1.5"), "linked {v}");
    }

    #[test]
    fn codecs_come_back_reset_and_are_reused_at_their_rate() {
        // A thread of its own: the pool is per thread.
        std::thread::spawn(|| {
            let rate = ModelRate::Hz24000;
            let enc = take_encoder(rate, 5).unwrap();
            let mut dec = take_decoder(rate).unwrap();
            let mut pkt = [0u8; 1275];
            let tone: Vec<i16> = (0..480)
                .map(|i| ((i as f32 * 0.2).sin() * 8000.0) as i16)
                .collect();
            let n = enc.encode(&tone, &mut pkt).unwrap();
            let first = pkt[..n].to_vec();
            let mut out = [0i16; 5760];
            let p = audiopus::packet::Packet::try_from(&first[..]).unwrap();
            dec.decode(
                Some(p),
                audiopus::MutSignals::try_from(&mut out[..]).unwrap(),
                false,
            )
            .unwrap();
            give_encoder(rate, enc);
            give_decoder(rate, dec);
            assert_eq!(stats().pooled, 2);
            // Reused, and reset: the same input encodes as it did on a fresh encoder.
            let enc = take_encoder(rate, 5).unwrap();
            let n = enc.encode(&tone, &mut pkt).unwrap();
            assert_eq!(&pkt[..n], &first[..], "a reset encoder starts afresh");
            let _dec = take_decoder(rate).unwrap();
            // Another rate does not take them.
            let _other = take_decoder(ModelRate::Hz16000).unwrap();
            let s = stats();
            assert_eq!(
                (
                    s.encoders_created,
                    s.encoders_reused,
                    s.decoders_created,
                    s.decoders_reused
                ),
                (1, 1, 2, 1)
            );
        })
        .join()
        .unwrap();
    }
}
