//! The end-of-turn rule on synthetic PCM: the real VAD backend and the detector together, fed
//! formant-filtered pulse trains (vowel-like "syllables") and silence, without sockets or codecs.

use super::detector::{ServerVadSettings, TurnDetector, TurnEvent};
use super::semantic::Eagerness;
use super::vad::{EarshotVad, FrameVad};
use crate::core::media::frame::{ModelRate, PcmFrame};

const RATE: f32 = 24_000.0;

/// A two-pole resonator (formant) at `f` Hz with bandwidth `bw` Hz.
struct Resonator {
    a1: f32,
    a2: f32,
    gain: f32,
    y1: f32,
    y2: f32,
}

impl Resonator {
    fn new(f: f32, bw: f32) -> Self {
        let r = (-std::f32::consts::PI * bw / RATE).exp();
        let theta = 2.0 * std::f32::consts::PI * f / RATE;
        Resonator {
            a1: 2.0 * r * theta.cos(),
            a2: -r * r,
            gain: 1.0 - r,
            y1: 0.0,
            y2: 0.0,
        }
    }
    fn step(&mut self, x: f32) -> f32 {
        let y = self.gain * x + self.a1 * self.y1 + self.a2 * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// Vowel-like speech: a glottal pulse train with a gliding pitch through three formants, shaped
/// into 200 ms syllables with short dips between them. Deterministic (no RNG).
fn synthetic_speech(ms: u32, out: &mut Vec<i16>) {
    synthetic_phrase(
        ms,
        |t, _| 120.0 + 25.0 * (2.0 * std::f32::consts::PI * 0.7 * t).sin(),
        out,
    );
}

/// The same with pitch `f0(t seconds, progress 0..1)`.
fn synthetic_phrase(ms: u32, f0: impl Fn(f32, f32) -> f32, out: &mut Vec<i16>) {
    let n = (ms as f32 * RATE / 1000.0) as usize;
    let mut formants = [
        Resonator::new(700.0, 130.0),
        Resonator::new(1220.0, 70.0),
        Resonator::new(2600.0, 160.0),
    ];
    let mut phase = 0.0f32;
    let mut noise = 0x1234_5678u32;
    for i in 0..n {
        let t = i as f32 / RATE;
        phase += f0(t, i as f32 / n as f32) / RATE;
        let pulse = if phase >= 1.0 {
            phase -= 1.0;
            1.0
        } else {
            0.0
        };
        noise = noise.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let breath = ((noise >> 16) as f32 / 65_536.0 - 0.5) * 0.02;
        let x = pulse + breath;
        let y: f32 = formants.iter_mut().map(|r| r.step(x)).sum();
        let syllable = (t * 5.0).fract();
        let env = if syllable < 0.85 {
            (std::f32::consts::PI * syllable / 0.85).sin().sqrt()
        } else {
            0.05
        };
        out.push((y * env * 110_000.0).clamp(-32_000.0, 32_000.0) as i16);
    }
}

fn silence(ms: u32, out: &mut Vec<i16>) {
    out.extend(std::iter::repeat_n(
        0i16,
        (ms as f32 * RATE / 1000.0) as usize,
    ));
}

/// Runs the VAD and detector over `pcm` in 20 ms frames; returns (frame index, event) pairs.
fn detect(pcm: &[i16], settings: ServerVadSettings) -> Vec<(u64, TurnEvent)> {
    let mut vad = FrameVad::new(Box::new(EarshotVad::default()), ModelRate::Hz24000);
    let mut det = TurnDetector::new(settings);
    pcm.chunks_exact(ModelRate::Hz24000.frame_samples())
        .enumerate()
        .filter_map(|(i, chunk)| {
            let p = vad.frame_probability(&PcmFrame::from_slice(chunk));
            det.push_frame(i as u64, p, chunk, RATE as u32)
                .map(|e| (i as u64, e))
        })
        .collect()
}

/// semantic_vad (medium): how long after the phrase ends the turn is released, in ms.
fn semantic_release_after(f0: impl Fn(f32, f32) -> f32) -> u64 {
    let mut pcm = Vec::new();
    silence(500, &mut pcm);
    synthetic_speech(1000, &mut pcm);
    synthetic_phrase(800, f0, &mut pcm);
    silence(5000, &mut pcm);
    let settings = ServerVadSettings {
        eagerness: Some(Eagerness::Medium),
        ..Default::default()
    };
    let ev = detect(&pcm, settings);
    let stop = ev.iter().find_map(|(_, e)| match e {
        TurnEvent::SpeechStopped { audio_end_ms } => Some(*audio_end_ms),
        _ => None,
    });
    stop.expect("the turn ends") - 2300
}

#[test]
fn semantic_vad_releases_a_falling_end_sooner_than_a_rising_pause() {
    // A statement: pitch falls to the bottom of the range. A pause mid-sentence: pitch rises.
    let fall = semantic_release_after(|_, k| 130.0 - 45.0 * k);
    let rise = semantic_release_after(|_, k| 120.0 + 40.0 * k);
    let (quick, longest) = Eagerness::Medium.waits_ms();
    eprintln!("fall released after {fall} ms, rise after {rise} ms");
    assert!(
        fall <= u64::from(quick) + 150,
        "falling end released {fall} ms after the voice"
    );
    assert!(
        rise >= 1_000 && rise <= u64::from(longest) + 150,
        "rising pause held {rise} ms"
    );
}

#[test]
fn turn_ends_one_silence_window_after_speech() {
    let mut pcm = Vec::new();
    silence(1000, &mut pcm);
    synthetic_speech(1600, &mut pcm);
    silence(1500, &mut pcm);
    let ev = detect(&pcm, ServerVadSettings::default());
    assert_eq!(ev.len(), 2, "one start and one stop: {ev:?}");
    let TurnEvent::SpeechStarted { audio_start_ms } = ev[0].1 else {
        panic!("first event is a start: {ev:?}");
    };
    // Speech begins at 1000 ms; the start is reported with 300 ms of prefix padding.
    assert!((600..=900).contains(&audio_start_ms), "{ev:?}");
    let TurnEvent::SpeechStopped { audio_end_ms } = ev[1].1 else {
        panic!("second event is a stop: {ev:?}");
    };
    // Speech ends at 2600 ms; the turn ends once 500 ms of silence have passed (the VAD may trail
    // the signal by a chunk or two).
    assert!((3050..=3300).contains(&audio_end_ms), "{ev:?}");
}

#[test]
fn pause_shorter_than_the_window_keeps_the_turn_open() {
    let mut pcm = Vec::new();
    silence(500, &mut pcm);
    synthetic_speech(800, &mut pcm);
    silence(300, &mut pcm);
    synthetic_speech(800, &mut pcm);
    silence(1500, &mut pcm);
    let ev = detect(&pcm, ServerVadSettings::default());
    assert_eq!(
        ev.len(),
        2,
        "the 300 ms pause does not split the turn: {ev:?}"
    );

    // The same audio with a 200 ms silence window ends the first half as its own turn.
    let eager = ServerVadSettings {
        silence_duration_ms: 200,
        ..Default::default()
    };
    let ev = detect(&pcm, eager);
    assert_eq!(ev.len(), 4, "two turns with a 200 ms window: {ev:?}");
}

#[test]
fn silence_and_low_noise_never_start_a_turn() {
    let mut pcm = Vec::new();
    silence(1000, &mut pcm);
    let mut x = 7u32;
    for _ in 0..24_000 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        pcm.push(((x >> 16) as i32 % 64 - 32) as i16);
    }
    assert!(detect(&pcm, ServerVadSettings::default()).is_empty());
}
