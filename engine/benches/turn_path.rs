//! Per-frame costs of the uplink turn path (`cargo bench -p tern-engine --bench turn_path`):
//! reorder buffer, VAD backends, prosody (semantic_vad), echo guard, noise suppression. Each stage runs over the
//! fixture speech, one call per 20 ms frame, timed per call into an hdrhistogram (ns).

use std::hint::black_box;
use std::time::Instant;

use hdrhistogram::Histogram;
use tern_engine::core::media::frame::{ModelRate, PcmFrame};
use tern_engine::core::media::reorder::ReorderBuffer;
use tern_engine::core::turn::echo_guard::EchoGuard;
use tern_engine::core::turn::prosody::ProsodyTracker;
use tern_engine::core::turn::vad::{FrameVad, VadBackend};

const ROUNDS: usize = 20;

fn frames() -> Vec<PcmFrame> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/hello-24k.wav");
    let (_, pcm) = tern_testkit::peer::load_wav(dir);
    pcm.chunks_exact(480).map(PcmFrame::from_slice).collect()
}

fn measure(name: &str, frames: &[PcmFrame], mut f: impl FnMut(usize, &PcmFrame)) {
    let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("bounds");
    let mut i = 0;
    for _ in 0..ROUNDS {
        for fr in frames {
            let t = Instant::now();
            f(i, fr);
            h.saturating_record(t.elapsed().as_nanos() as u64);
            i += 1;
        }
    }
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "| {name} | {} | {:.2} | {:.2} | {:.2} |",
        h.len(),
        us(0.5),
        us(0.99),
        h.max() as f64 / 1000.0
    );
}

fn main() {
    let fr = frames();
    println!(
        "| stage (per 20 ms frame) | calls | p50 µs | p99 µs | max µs |\n|---|---|---|---|---|"
    );
    let mut rb = ReorderBuffer::default();
    let t0 = Instant::now();
    let payload = [0x78u8; 80];
    measure("reorder buffer, in order", &fr, |i, _| {
        rb.push(t0, i as u64, i as u64 * 960, &payload, &mut |r| {
            black_box(r.seq);
        });
    });
    let mut swapped = ReorderBuffer::default();
    measure("reorder buffer, every pair swapped", &fr, |i, _| {
        let seq = if i == 0 {
            0
        } else if i % 2 == 1 {
            i + 1
        } else {
            i - 1
        };
        swapped.push(t0, seq as u64, seq as u64 * 960, &payload, &mut |r| {
            black_box(r.seq);
        });
    });
    for (name, backend) in [
        ("VAD earshot", VadBackend::Earshot),
        ("VAD silero (worker)", VadBackend::Silero),
    ] {
        let Ok(det) = backend.detector() else {
            continue;
        };
        let mut v = FrameVad::new(det, ModelRate::Hz24000);
        measure(name, &fr, |_, f| {
            black_box(v.frame_probability(f));
        });
    }
    let mut p = ProsodyTracker::default();
    measure("prosody (semantic_vad)", &fr, |i, f| {
        black_box(p.push(i as u64, f.samples(), 24_000));
        p.set_voiced(i as u64, true);
    });
    let mut e = EchoGuard::default();
    let reply = fr.clone();
    measure("echo guard, reply playing", &fr, |i, f| {
        e.on_reply_frame(reply[(i + 17) % reply.len()].samples());
        black_box(e.on_uplink_frame(f.samples()));
    });
    let mut quiet = EchoGuard::default();
    measure("echo guard, no reply", &fr, |_, f| {
        black_box(quiet.on_uplink_frame(f.samples()));
    });
    for hz in [24_000u32, 16_000] {
        let mut d = tern_engine::core::media::denoise::Denoiser::new(hz);
        let src: Vec<PcmFrame> = if hz == 24_000 {
            fr.clone()
        } else {
            let mut r = tern_engine::core::media::resample::Resampler::new(24_000, 16_000);
            fr.iter()
                .map(|f| {
                    let mut out = Vec::new();
                    r.process(f.samples(), &mut out);
                    PcmFrame::from_slice(&out)
                })
                .collect()
        };
        measure(
            &format!(
                "noise suppression (RNNoise, --noise-reduction), {} kHz",
                hz / 1000
            ),
            &src,
            |_, f| {
                let mut f = *f;
                d.process(&mut f);
                black_box(f.samples()[0]);
            },
        );
    }
}
