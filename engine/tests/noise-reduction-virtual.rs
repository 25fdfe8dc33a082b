//! Noise suppression (`audio.input.noise_reduction`) in virtual time, Tern's core and the echo
//! agent, no sockets: set by `session.update` and echoed, refused with a clear error when the
//! kind is unknown, and with it a turn spoken over steady noise at 5 dB SNR ends and is answered.

use crate::common;

use common::load_wav;
use common::scene::Scene;

/// The fixture with white noise at `snr_db` under it and `tail_ms` of noise alone after it.
fn noisy_speech(snr_db: f64, tail_ms: usize) -> Vec<i16> {
    let speech = load_wav("hello-24k.wav").1;
    let voiced: Vec<f64> = speech
        .iter()
        .map(|&s| f64::from(s))
        .filter(|s| s.abs() > 300.0)
        .collect();
    let rms = (voiced.iter().map(|s| s * s).sum::<f64>() / voiced.len() as f64).sqrt();
    let amp = rms / 10f64.powf(snr_db / 20.0) * 3f64.sqrt();
    let mut seed = 11u64;
    let mut noise = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 2.0 * amp
    };
    let mut v: Vec<i16> = speech
        .iter()
        .map(|&s| (f64::from(s) + noise()).clamp(-32768.0, 32767.0) as i16)
        .collect();
    v.extend((0..tail_ms * 24).map(|_| noise() as i16));
    v
}

#[test]
fn set_by_session_update_echoed_and_unknown_kinds_refused() {
    let mut s = Scene::muted(Vec::new());
    assert!(s.run_until(2000, |c| !c.events_of("session.created").is_empty()));
    let created = s.client.events_of("session.created")[0].clone();
    assert!(
        created["session"]["audio"]["input"]["noise_reduction"].is_null(),
        "off by default"
    );
    let e = s.session_update(r#"{"audio":{"input":{"noise_reduction":{"type":"near_field"}}}}"#);
    assert_eq!(e["type"], "session.updated", "{e}");
    assert_eq!(
        e["session"]["audio"]["input"]["noise_reduction"]["type"],
        "near_field"
    );
    let e = s.session_update(r#"{"audio":{"input":{"noise_reduction":{"type":"studio"}}}}"#);
    assert_eq!(e["type"], "error", "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("noise_reduction"), "{msg}");
    let e = s.session_update(r#"{"audio":{"input":{"noise_reduction":null}}}"#);
    assert!(
        e["session"]["audio"]["input"]["noise_reduction"].is_null(),
        "{e}"
    );
}

/// Speaks the noisy turn, with or without suppression, and returns the echo's frame levels
/// (the echo agent plays back what the model was given) and the turn's end (`audio_end_ms`).
fn echo_levels(noise_reduction: Option<&str>) -> (Vec<f64>, u64) {
    let mut s = Scene::muted(noisy_speech(5.0, 3000));
    match noise_reduction {
        Some(kind) => {
            s.session_update(&format!(
                r#"{{"audio":{{"input":{{"noise_reduction":{{"type":"{kind}"}}}}}}}}"#
            ));
        }
        None => assert!(s.run_until(2000, |c| c.channel_open)),
    }
    s.client.muted = false;
    assert!(
        s.run_until(15_000, |c| !c
            .events_of("output_audio_buffer.stopped")
            .is_empty()),
        "events: {:?}",
        s.client.event_types()
    );
    assert_eq!(
        s.client
            .events_of("input_audio_buffer.speech_started")
            .len(),
        1,
        "one turn, not a turn per noise burst"
    );
    let end = s.client.events_of("input_audio_buffer.speech_stopped")[0]["audio_end_ms"]
        .as_u64()
        .unwrap();
    (s.client.received.iter().map(|(_, rms)| *rms).collect(), end)
}

fn percentile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q) as usize]
}

#[test]
fn the_model_hears_the_turn_over_5_db_noise_cleaned() {
    let (raw, raw_end) = echo_levels(None);
    let (clean, clean_end) = echo_levels(Some("far_field"));
    // The quieter half of the echo is the noise between words: suppression takes most of it.
    let (raw_floor, clean_floor) = (percentile(raw.clone(), 0.2), percentile(clean.clone(), 0.2));
    assert!(
        clean_floor < raw_floor * 0.5,
        "echo noise floor (20th percentile frame RMS): {raw_floor:.0} without, {clean_floor:.0} with"
    );
    // The words survive: the loud frames keep most of their level.
    let (raw_peak, clean_peak) = (percentile(raw, 0.9), percentile(clean, 0.9));
    println!(
        "echo RMS p20 {raw_floor:.0} -> {clean_floor:.0}, p90 {raw_peak:.0} -> {clean_peak:.0}, \
         turn end {raw_end} -> {clean_end} ms"
    );
    assert!(
        clean_peak > raw_peak * 0.4,
        "echo speech level (90th percentile): {raw_peak:.0} without, {clean_peak:.0} with"
    );
    // And the turn ends about when it did (RNNoise adds 10 ms).
    assert!(
        clean_end.abs_diff(raw_end) <= 200,
        "turn end {raw_end} ms without, {clean_end} ms with"
    );
}
