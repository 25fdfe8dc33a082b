//! End-of-turn rule with OpenAI's settings. `server_vad`: speech starts when the voice probability
//! reaches `threshold` for a short run, and the turn ends after `silence_duration_ms` below it.
//! `semantic_vad`: the same start, but the silence that ends the turn is chosen when the pause
//! begins, from how finished the last words sounded (`prosody`, `semantic`): short after a falling
//! statement, up to 8/4/2 s (eagerness low/medium/high) after a pause that sounds mid-sentence.
//! Positions are in milliseconds of session audio (frame index x 20 ms), like OpenAI's
//! `audio_start_ms` / `audio_end_ms`: the start includes `prefix_padding_ms`, the end includes the
//! silence window.

use super::super::media::frame::FRAME_MS;
use super::latency::EndRule;
use super::prosody::ProsodyTracker;
use super::semantic::Eagerness;

/// Voice frames in a row needed before speech counts as started (filters clicks).
pub const MIN_SPEECH_FRAMES: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerVadSettings {
    pub threshold: f32,
    pub prefix_padding_ms: u32,
    pub silence_duration_ms: u32,
    /// After a reply has played, this long without speech commits an empty turn and emits
    /// `input_audio_buffer.timeout_triggered` (so the agent can prompt the user). `None`: off.
    pub idle_timeout_ms: Option<u32>,
    /// Ask the agent to reply when a turn ends.
    pub create_response: bool,
    /// Speech over a playing reply interrupts it (barge-in).
    pub interrupt_response: bool,
    /// `Some`: `semantic_vad` with this eagerness (`silence_duration_ms` is then not used).
    pub eagerness: Option<Eagerness>,
}

impl Default for ServerVadSettings {
    fn default() -> Self {
        ServerVadSettings {
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 500,
            idle_timeout_ms: None,
            create_response: true,
            interrupt_response: true,
            eagerness: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnEvent {
    SpeechStarted { audio_start_ms: u64 },
    SpeechStopped { audio_end_ms: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Idle {
        voiced_run: u32,
    },
    /// `wait_ms`: the silence that will end the turn, set when the current pause began.
    Speaking {
        silence_ms: u32,
        wait_ms: u32,
    },
}

#[derive(Debug, Clone)]
pub struct TurnDetector {
    settings: ServerVadSettings,
    state: State,
    /// semantic_vad's pitch and energy history (about 2 KiB), made with the first frame it sees.
    prosody: Option<Box<ProsodyTracker>>,
}

impl TurnDetector {
    pub fn new(settings: ServerVadSettings) -> Self {
        TurnDetector {
            settings,
            state: State::Idle { voiced_run: 0 },
            prosody: None,
        }
    }

    pub fn settings(&self) -> ServerVadSettings {
        self.settings
    }

    pub fn set_settings(&mut self, s: ServerVadSettings) {
        self.settings = s;
    }

    /// The rule that ends turns under the current settings.
    pub fn end_rule(&self) -> EndRule {
        match self.settings.eagerness {
            Some(_) => EndRule::Prosody,
            None => EndRule::SilenceTimer,
        }
    }

    pub fn is_speaking(&self) -> bool {
        matches!(self.state, State::Speaking { .. })
    }

    /// Feeds frame `index`: its voice probability and its samples at `rate` Hz.
    pub fn push_frame(
        &mut self,
        index: u64,
        probability: f32,
        pcm: &[i16],
        rate: u32,
    ) -> Option<TurnEvent> {
        self.observe(index, pcm, rate);
        self.push(index, probability)
    }

    /// The samples of the next frame, as they arrive (semantic_vad's prosody). The voice
    /// probability may come later (`push`), e.g. from a VAD on a worker thread.
    pub fn observe(&mut self, index: u64, pcm: &[i16], rate: u32) {
        if self.settings.eagerness.is_some() && !pcm.is_empty() {
            self.prosody.get_or_insert_default().push(index, pcm, rate);
        }
    }

    /// The voice probability of frame `index` (0-based); returns a turn event, if any. Without
    /// `observe`d samples `semantic_vad` has no prosody and waits as for an unclear end.
    pub fn push(&mut self, index: u64, probability: f32) -> Option<TurnEvent> {
        let voiced = probability >= self.settings.threshold;
        if self.settings.eagerness.is_some() {
            self.prosody
                .get_or_insert_default()
                .set_voiced(index, voiced);
        }
        let fixed_wait = self.settings.silence_duration_ms;
        match &mut self.state {
            State::Idle { voiced_run } => {
                if !voiced {
                    *voiced_run = 0;
                    return None;
                }
                *voiced_run += 1;
                if *voiced_run < MIN_SPEECH_FRAMES {
                    return None;
                }
                let first = (index + 1 - u64::from(*voiced_run)) * FRAME_MS;
                self.state = State::Speaking {
                    silence_ms: 0,
                    wait_ms: fixed_wait,
                };
                Some(TurnEvent::SpeechStarted {
                    audio_start_ms: first
                        .saturating_sub(u64::from(self.settings.prefix_padding_ms)),
                })
            }
            State::Speaking {
                silence_ms,
                wait_ms,
            } => {
                if voiced {
                    *silence_ms = 0;
                    return None;
                }
                if *silence_ms == 0 {
                    (*wait_ms, *silence_ms) = match self.settings.eagerness {
                        Some(e) => {
                            let cues = self.prosody.get_or_insert_default().cues(index);
                            (e.wait_ms(&cues), e.credit_ms(&cues))
                        }
                        None => (fixed_wait, 0),
                    };
                }
                *silence_ms += FRAME_MS as u32;
                if *silence_ms < *wait_ms {
                    return None;
                }
                self.state = State::Idle { voiced_run: 0 };
                Some(TurnEvent::SpeechStopped {
                    audio_end_ms: (index + 1) * FRAME_MS,
                })
            }
        }
    }

    /// Forgets any turn in progress (e.g. `input_audio_buffer.clear`).
    pub fn reset(&mut self) {
        self.state = State::Idle { voiced_run: 0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(d: &mut TurnDetector, probs: &[f32]) -> Vec<(u64, TurnEvent)> {
        probs
            .iter()
            .enumerate()
            .filter_map(|(i, &p)| d.push(i as u64, p).map(|e| (i as u64, e)))
            .collect()
    }

    #[test]
    fn one_turn_with_defaults() {
        let mut d = TurnDetector::new(ServerVadSettings::default());
        // 1 s silence, 1 s speech, 1 s silence.
        let probs: Vec<f32> = (0..150)
            .map(|i| if (50..100).contains(&i) { 0.9 } else { 0.1 })
            .collect();
        let ev = run(&mut d, &probs);
        assert_eq!(
            ev,
            vec![
                (
                    52,
                    TurnEvent::SpeechStarted {
                        audio_start_ms: 1000 - 300
                    }
                ),
                // 500 ms of silence after the last voiced frame (index 99) ends at index 124.
                (124, TurnEvent::SpeechStopped { audio_end_ms: 2500 }),
            ]
        );
    }

    #[test]
    fn short_pause_does_not_end_turn() {
        let mut d = TurnDetector::new(ServerVadSettings::default());
        let mut probs = vec![0.9; 50];
        probs.extend(vec![0.1; 20]); // 400 ms pause < 500 ms
        probs.extend(vec![0.9; 50]);
        probs.extend(vec![0.0; 30]);
        let ev = run(&mut d, &probs);
        assert_eq!(ev.len(), 2);
        assert!(matches!(
            ev[1].1,
            TurnEvent::SpeechStopped { audio_end_ms: 2900 }
        ));
    }

    #[test]
    fn clicks_are_not_speech_and_threshold_applies() {
        let mut d = TurnDetector::new(ServerVadSettings {
            threshold: 0.8,
            ..Default::default()
        });
        let probs = [0.9, 0.9, 0.1, 0.9, 0.1, 0.7, 0.7, 0.7, 0.7, 0.1];
        assert!(run(&mut d, &probs).is_empty());
        assert!(!d.is_speaking());
    }
}
