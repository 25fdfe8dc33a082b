//! `tern-codec-table OUT_DIR [SPEECH.wav]`: Opus encode complexity 0-10 and decoder output rate
//! against CPU per 20 ms frame, with the decoded audio written for a speech-quality metric
//! (`scripts/codec-table.sh` scores it with PESQ, wideband). The encoder is the engine's own
//! (`codec_pool::take_encoder`: VOIP, in-band FEC for 5% loss, Opus's automatic bitrate), fed
//! the 24 kHz model-rate speech frame by frame as replies are.

use std::time::Instant;

use anyhow::{bail, Context};
use audiopus::coder::Decoder;
use audiopus::packet::Packet;
use audiopus::{Channels, MutSignals, SampleRate};
use hdrhistogram::Histogram;
use tern_engine::core::media::codec_pool;
use tern_engine::core::media::frame::ModelRate;

const FRAME: usize = 480;
/// Passes over the clip per measurement, for stable per-frame times.
const PASSES: usize = 20;

fn write_wav(path: &std::path::Path, rate: u32, pcm: &[i16]) -> anyhow::Result<()> {
    let data = (pcm.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + pcm.len() * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data.to_le_bytes());
    for s in pcm {
        b.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, b).with_context(|| format!("writing {}", path.display()))
}

fn decode_all(packets: &[Vec<u8>], rate: SampleRate) -> anyhow::Result<(Vec<i16>, f64)> {
    let mut out = Vec::new();
    let mut buf = vec![0i16; 5760];
    let mut spent = 0.0;
    for pass in 0..PASSES {
        let mut dec = Decoder::new(rate, Channels::Mono)?;
        for p in packets {
            let t = Instant::now();
            let n = dec.decode(
                Some(Packet::try_from(&p[..])?),
                MutSignals::try_from(&mut buf[..])?,
                false,
            )?;
            spent += t.elapsed().as_secs_f64();
            if pass == 0 {
                out.extend_from_slice(&buf[..n]);
            }
        }
    }
    Ok((out, spent * 1e6 / (PASSES * packets.len()) as f64))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(
        args.next()
            .context("usage: tern-codec-table OUT_DIR [SPEECH.wav]")?,
    );
    let speech = args.next().unwrap_or_else(|| {
        format!(
            "{}/../engine/tests/data/hello-24k.wav",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    std::fs::create_dir_all(&out)?;
    let (hz, pcm) = tern_testkit::peer::load_wav(&speech);
    if hz != 24_000 {
        bail!("{speech}: 24 kHz mono expected (the model rate), got {hz} Hz");
    }
    let frames: Vec<&[i16]> = pcm.chunks_exact(FRAME).collect();
    let mut rows = Vec::new();
    let mut packets_c5 = Vec::new();
    for complexity in 0..=10u8 {
        let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3)?;
        let mut packets = Vec::new();
        let mut bytes = 0usize;
        for pass in 0..PASSES {
            let enc = codec_pool::take_encoder(ModelRate::Hz24000, complexity)?;
            let mut pkt = [0u8; 1275];
            for f in &frames {
                let t = Instant::now();
                let n = enc.encode(f, &mut pkt)?;
                let _ = hist.record((t.elapsed().as_nanos() as u64).max(1));
                if pass == 0 {
                    packets.push(pkt[..n].to_vec());
                    bytes += n;
                }
            }
            codec_pool::give_encoder(ModelRate::Hz24000, enc);
        }
        let (decoded, _) = decode_all(&packets, SampleRate::Hz16000)?;
        write_wav(
            &out.join(format!("enc-c{complexity}.wav")),
            16_000,
            &decoded,
        )?;
        let kbps = bytes as f64 * 8.0 / (frames.len() as f64 * 0.02) / 1000.0;
        rows.push(serde_json::json!({
            "complexity": complexity,
            "encode_us_mean": hist.mean() / 1000.0,
            "encode_us_p99": hist.value_at_quantile(0.99) as f64 / 1000.0,
            "kbps": kbps,
            "wav": format!("enc-c{complexity}.wav"),
        }));
        eprintln!(
            "complexity {complexity}: {:.1} us per frame, {kbps:.1} kbit/s",
            hist.mean() / 1000.0
        );
        if complexity == 5 {
            packets_c5 = packets;
        }
    }
    let mut dec_rows = Vec::new();
    for (rate, hz) in [
        (SampleRate::Hz16000, 16_000u32),
        (SampleRate::Hz24000, 24_000),
        (SampleRate::Hz48000, 48_000),
    ] {
        let (decoded, us) = decode_all(&packets_c5, rate)?;
        write_wav(&out.join(format!("dec-{hz}.wav")), hz, &decoded)?;
        dec_rows.push(
            serde_json::json!({ "rate": hz, "decode_us_mean": us, "wav": format!("dec-{hz}.wav") }),
        );
        eprintln!("decode to {hz} Hz: {us:.1} us per frame");
    }
    // SAFETY: libopus returns a pointer to a static, NUL-terminated version string.
    let libopus = unsafe { std::ffi::CStr::from_ptr(audiopus::ffi::opus_get_version_string()) }
        .to_string_lossy()
        .into_owned();
    eprintln!("linked: {libopus}");
    let report = serde_json::json!({
        "libopus": libopus,
        "speech": speech,
        "frames": frames.len(),
        "encode": rows,
        "decode_complexity5": dec_rows,
    });
    std::fs::write(out.join("cpu.json"), serde_json::to_string_pretty(&report)?)?;
    Ok(())
}
