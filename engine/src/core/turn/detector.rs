//! End-of-turn rule with OpenAI's settings. `server_vad`: speech starts when the voice probability
//! reaches `threshold` for a short run, and the turn ends after `silence_duration_ms` below it.
//! `semantic_vad`: the same start, but the silence that ends the turn depends on the pause. With
//! `--turn-model smart-turn` the pause is timed with the eagerness's timer window while the model
//! is asked about it (`take_model_request`, answered by `on_model_score`), whose answer may shorten
//! or lengthen it (`turn_model::ModelRule`). With `prosody` the wait is chosen when the pause
//! begins, from how finished the last words sounded (`prosody`, `semantic`): short after a falling
//! statement, up to 8/4/2 s (eagerness low/medium/high) after a pause that sounds mid-sentence.
//! Positions are in milliseconds of session audio (frame index x 20 ms), like OpenAI's
//! `audio_start_ms` / `audio_end_ms`: the start includes `prefix_padding_ms`, the end includes the
//! silence window.

use super::super::media::frame::FRAME_MS;
use super::latency::EndRule;
use super::prosody::ProsodyTracker;
use super::semantic::Eagerness;
use super::turn_model::{ModelRule, TurnModel};

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
    /// What chooses `semantic_vad`'s waits (`--turn-model`).
    pub turn_model: TurnModel,
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
            turn_model: TurnModel::Prosody,
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
    /// `--turn-model smart-turn`: the frame the model was asked about in the current pause, until
    /// its answer comes or the voice returns (a later answer is then stale).
    asked: Option<u64>,
    /// A question for the model, until `take_model_request`.
    request: Option<u64>,
    /// Another rule than the eagerness's own (`tern-turn-eval --fit-model` tries them).
    rule: Option<ModelRule>,
    last_index: u64,
}

impl TurnDetector {
    pub fn new(settings: ServerVadSettings) -> Self {
        TurnDetector {
            settings,
            state: State::Idle { voiced_run: 0 },
            prosody: None,
            asked: None,
            request: None,
            rule: None,
            last_index: 0,
        }
    }

    /// Uses `rule` instead of the eagerness's own (to fit or evaluate other rules).
    pub fn with_model_rule(mut self, rule: ModelRule) -> Self {
        self.rule = Some(rule);
        self
    }

    /// How long after a question its answer can still change the turn (see `ModelRule`).
    pub fn model_answer_useful_ms(&self) -> u32 {
        self.model_rule().map_or(0, |r| r.answer_useful_ms())
    }

    /// Whether this detector asks the turn model about pauses.
    pub fn asks_model(&self) -> bool {
        self.model_rule().is_some_and(|r| r.listens())
    }

    /// The model's rule while `semantic_vad` runs with `--turn-model smart-turn`.
    fn model_rule(&self) -> Option<ModelRule> {
        match (self.settings.eagerness, self.settings.turn_model) {
            (Some(e), TurnModel::SmartTurn) => Some(self.rule.unwrap_or(e.model_rule())),
            _ => None,
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
        match (self.settings.eagerness, self.settings.turn_model) {
            (Some(_), TurnModel::Prosody) => EndRule::Prosody,
            (Some(_), TurnModel::SmartTurn) => EndRule::TurnModel,
            (None, _) => EndRule::SilenceTimer,
        }
    }

    /// The frame whose audio, up to its end, the turn model should score now (once per pause,
    /// the rule's `ask_after_ms` into it). The answer goes to `on_model_score`.
    pub fn take_model_request(&mut self) -> Option<u64> {
        self.request.take()
    }

    /// The model's probability that the turn is complete, scored at frame `index`. Ends the turn
    /// now when the wait it chooses has already passed; an answer for an earlier pause (the
    /// voice came back since) is ignored.
    pub fn on_model_score(&mut self, index: u64, probability: f32) -> Option<TurnEvent> {
        let rule = self.model_rule()?;
        if self.asked != Some(index) {
            return None;
        }
        self.asked = None;
        let State::Speaking {
            silence_ms,
            wait_ms,
        } = &mut self.state
        else {
            return None;
        };
        *wait_ms = rule.wait_ms(probability);
        if *silence_ms < *wait_ms {
            return None;
        }
        self.state = State::Idle { voiced_run: 0 };
        Some(TurnEvent::SpeechStopped {
            audio_end_ms: (self.last_index + 1) * FRAME_MS,
        })
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
        // The model reads audio of its own on the worker: prosody is semantic_vad's without it.
        let prosody = self.settings.turn_model == TurnModel::Prosody;
        if self.settings.eagerness.is_some() && prosody && !pcm.is_empty() {
            self.prosody.get_or_insert_default().push(index, pcm, rate);
        }
    }

    /// The voice probability of frame `index` (0-based); returns a turn event, if any. Without
    /// `observe`d samples `semantic_vad` has no prosody and waits as for an unclear end.
    pub fn push(&mut self, index: u64, probability: f32) -> Option<TurnEvent> {
        let voiced = probability >= self.settings.threshold;
        self.last_index = index;
        let rule = self.model_rule();
        if self.settings.eagerness.is_some() && rule.is_none() {
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
                    self.asked = None;
                    return None;
                }
                if *silence_ms == 0 {
                    (*wait_ms, *silence_ms) = match (self.settings.eagerness, rule) {
                        (Some(_), Some(r)) => (r.unsure_ms, 0),
                        (Some(e), None) => {
                            let cues = self.prosody.get_or_insert_default().cues(index);
                            (e.wait_ms(&cues), e.credit_ms(&cues))
                        }
                        (None, _) => (fixed_wait, 0),
                    };
                }
                *silence_ms += FRAME_MS as u32;
                if rule.is_some_and(|r| r.listens() && *silence_ms == r.ask_after_ms) {
                    self.asked = Some(index);
                    self.request = Some(index);
                }
                if *silence_ms < *wait_ms {
                    return None;
                }
                self.state = State::Idle { voiced_run: 0 };
                self.asked = None;
                Some(TurnEvent::SpeechStopped {
                    audio_end_ms: (index + 1) * FRAME_MS,
                })
            }
        }
    }

    /// Forgets any turn in progress (e.g. `input_audio_buffer.clear`).
    pub fn reset(&mut self) {
        self.state = State::Idle { voiced_run: 0 };
        self.asked = None;
        self.request = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::turn::turn_model::ASK_AFTER_MS;

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

    /// A rule that uses every kind of answer (the fitted ones use fewer).
    const RULE: ModelRule = ModelRule {
        ask_after_ms: ASK_AFTER_MS,
        complete_at: 0.7,
        unfinished_below: 0.5,
        unsure_ms: 800,
        unfinished_ms: 1_600,
    };

    fn with_model() -> TurnDetector {
        TurnDetector::new(ServerVadSettings {
            eagerness: Some(Eagerness::Medium),
            turn_model: TurnModel::SmartTurn,
            ..Default::default()
        })
        .with_model_rule(RULE)
    }

    /// Speech for 1 s from frame 0, then silence; returns the frame of the model's question.
    fn speak_then_pause(d: &mut TurnDetector) -> u64 {
        for i in 0..50 {
            d.push(i, 0.9);
            assert_eq!(d.take_model_request(), None);
        }
        // Asked once, at the 10th silent frame (200 ms).
        let mut asked = None;
        for i in 50..60 {
            assert_eq!(d.push(i, 0.1), None);
            if let Some(a) = d.take_model_request() {
                asked = Some(a);
            }
        }
        assert_eq!(asked, Some(59));
        59
    }

    #[test]
    fn the_model_ends_a_complete_turn_at_its_answer() {
        let mut d = with_model();
        let asked = speak_then_pause(&mut d);
        for i in 60..70 {
            assert_eq!(d.push(i, 0.1), None);
        }
        // The answer comes at frame 69: the turn ends there.
        assert_eq!(
            d.on_model_score(asked, 0.97),
            Some(TurnEvent::SpeechStopped { audio_end_ms: 1400 })
        );
        assert_eq!(d.end_rule(), EndRule::TurnModel);
        // A second answer for the same pause changes nothing.
        assert_eq!(d.on_model_score(asked, 0.97), None);
        assert!(!d.is_speaking());
    }

    #[test]
    fn without_an_answer_or_when_unsure_the_pause_is_timed_like_the_timer() {
        let rule = RULE;
        for answer in [None, Some((rule.complete_at + rule.unfinished_below) / 2.0)] {
            let mut d = with_model();
            let asked = speak_then_pause(&mut d);
            if let Some(p) = answer {
                assert_eq!(d.on_model_score(asked, p), None);
            }
            // server_vad at the same window stops at the same frame.
            let mut timer = TurnDetector::new(ServerVadSettings {
                silence_duration_ms: rule.unsure_ms,
                ..Default::default()
            });
            let mut stops = Vec::new();
            for i in 0..200 {
                let p = if i < 50 { 0.9 } else { 0.1 };
                let a = if i < 60 { None } else { d.push(i, p) };
                stops.push((a, timer.push(i, p)));
            }
            let ours = stops.iter().position(|(a, _)| a.is_some());
            let theirs = stops
                .iter()
                .position(|(_, t)| matches!(t, Some(TurnEvent::SpeechStopped { .. })));
            assert_eq!(ours, theirs, "{answer:?}");
            assert_eq!(ours, Some(49 + (rule.unsure_ms / 20) as usize));
        }
    }

    #[test]
    fn an_unfinished_answer_waits_longer_and_a_stale_one_is_ignored() {
        let rule = RULE;
        let mut d = with_model();
        let asked = speak_then_pause(&mut d);
        assert_eq!(d.on_model_score(asked, 0.0), None);
        let stop = (60..400)
            .find(|&i| d.push(i, 0.1).is_some())
            .expect("stops");
        assert_eq!(stop, 49 + u64::from(rule.unfinished_ms / 20));
        // The voice came back before the answer: the answer is for a pause that is over.
        let mut d = with_model();
        let asked = speak_then_pause(&mut d);
        d.push(60, 0.9);
        assert_eq!(d.on_model_score(asked, 1.0), None);
        assert!(d.is_speaking());
        // Medium as fitted asks later (the 20th silent frame, 400 ms in); low, a rule no answer
        // changes, never asks: it is the timer.
        for (eagerness, ask) in [(Eagerness::Medium, Some(69)), (Eagerness::Low, None)] {
            let mut d = TurnDetector::new(ServerVadSettings {
                eagerness: Some(eagerness),
                turn_model: TurnModel::SmartTurn,
                ..Default::default()
            });
            let asked: Vec<u64> = (0..100)
                .filter_map(|i| {
                    d.push(i, if i < 50 { 0.9 } else { 0.1 });
                    d.take_model_request()
                })
                .collect();
            assert_eq!(asked, Vec::from_iter(ask), "{eagerness:?}");
        }
        // Prosody mode never asks.
        let mut d = TurnDetector::new(ServerVadSettings {
            eagerness: Some(Eagerness::Medium),
            ..Default::default()
        });
        for i in 0..100 {
            d.push(i, if i < 50 { 0.9 } else { 0.1 });
            assert_eq!(d.take_model_request(), None);
        }
        assert_eq!(d.on_model_score(59, 1.0), None);
    }
}
