//! The conversation: turns, barge-in, items and the idle timeout.
//!
//! It holds no `Rtc`, codec or socket. The session feeds it one voice decision per uplink frame
//! (with whether a reply is playing) and the client's commits and clears; it queues what follows
//! as `Action`s, which the session polls and carries out in order (events to the client, turn
//! boundaries to the agent, stopping or pausing the reply). Item numbers, the turn's latency
//! stamps and the idle clock live here, so every rule about whose turn it is can be tested
//! without a peer.

use std::collections::VecDeque;
use std::time::Instant;

use super::super::turn::barge_in::{BargeInGuard, BargeInOutcome, Gate, Release};
use super::super::turn::detector::{ServerVadSettings, TurnDetector, TurnEvent};
use super::super::turn::latency::{EndRule, TurnTimeline};
use super::super::turn::turn_model::TurnModel;

/// The voice decision for one uplink frame.
#[derive(Debug, Clone, Copy)]
pub struct VoiceFrame {
    /// The frame's position (0-based, 20 ms each).
    pub index: u64,
    /// Voice probability from the VAD.
    pub probability: f32,
    /// The echo guard heard the reply's own echo in this frame.
    pub echo: bool,
    /// When the frame's packet arrived, if it carried speech energy (the latency anchor).
    pub loud_at: Option<Instant>,
}

/// A server event the conversation asks the session to send. Items and responses are numbers;
/// the session renders ids and JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationEvent {
    /// `input_audio_buffer.speech_started`.
    SpeechStarted { audio_start_ms: u64, item: u32 },
    /// `input_audio_buffer.speech_stopped` (the session stamps the turn's `speech_stopped_sent`
    /// once it has gone out).
    SpeechStopped { audio_end_ms: u64, item: u32 },
    /// `input_audio_buffer.committed`.
    Committed { item: u32, previous: Option<u32> },
    /// `input_audio_buffer.timeout_triggered`.
    TimeoutTriggered {
        audio_start_ms: u64,
        audio_end_ms: u64,
        item: u32,
    },
    /// `input_audio_buffer.cleared`.
    Cleared,
}

/// What the session does next, in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Event(ConversationEvent),
    /// A turn boundary for the agent; `respond`: ask it to reply.
    Turn {
        event: TurnEvent,
        respond: bool,
    },
    /// Stop the reply now (flush, tell client and agent).
    Interrupt,
    /// Stop the reply's audio but keep its queue: speech over it awaits confirmation.
    Pause,
    /// Play the paused reply on (the speech was a backchannel).
    Resume,
    /// Speech over a playing reply, by outcome (counted).
    BargeIn(BargeInOutcome),
    /// Ask the turn model whether the turn is complete at the end of frame `index`; the answer
    /// goes to `on_turn_score`, and is worth computing only within `useful_ms`.
    ScoreTurn {
        index: u64,
        useful_ms: u32,
    },
}

#[derive(Debug)]
pub struct Conversation {
    turn: TurnDetector,
    /// Server-side turn detection on (`turn_detection` not null).
    enabled: bool,
    barge_in: BargeInGuard,
    item_seq: u32,
    current_item: Option<u32>,
    /// Audio position (ms) where the user's silence after the last reply began.
    idle_since: Option<u64>,
    /// The stamps of the turn in progress, for its latency breakdown.
    pub timeline: TurnTimeline,
    actions: VecDeque<Action>,
}

impl Conversation {
    /// `turn`: `None` when the client commits turns itself.
    pub fn new(
        turn: Option<ServerVadSettings>,
        turn_model: TurnModel,
        barge_in: BargeInGuard,
    ) -> Self {
        let settings = ServerVadSettings {
            turn_model,
            ..turn.unwrap_or_default()
        };
        Conversation {
            turn: TurnDetector::new(settings),
            enabled: turn.is_some(),
            barge_in,
            item_seq: 0,
            current_item: None,
            idle_since: None,
            timeline: TurnTimeline::default(),
            // Grown with the first action and kept (an idle session decides none).
            actions: VecDeque::new(),
        }
    }

    /// The turn settings (kept while detection is off, for the next `session.update`).
    pub fn settings(&self) -> ServerVadSettings {
        self.turn.settings()
    }

    /// The `turn_detection` the client sees: `None` when it commits turns itself.
    pub fn turn_detection(&self) -> Option<ServerVadSettings> {
        self.enabled.then(|| self.turn.settings())
    }

    /// The turn detector may ask the turn model (`semantic_vad` with `--turn-model smart-turn`).
    pub fn asks_turn_model(&self) -> bool {
        self.enabled && self.turn.asks_model()
    }

    /// The newest item's number (the turn a reply answers).
    pub fn item_seq(&self) -> u32 {
        self.item_seq
    }

    /// The next action to carry out, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The session's agent starts: with detection off its input buffer opens now.
    pub fn start(&mut self, audio_ms: u64) {
        self.open_manual_buffer(audio_ms);
    }

    /// A frame's samples as they arrive (semantic_vad's prosody).
    pub fn observe(&mut self, index: u64, pcm: &[i16], rate: u32) {
        if self.enabled {
            self.turn.observe(index, pcm, rate);
        }
    }

    /// The voice decision for one frame. `reply_active`: reply audio is playing, encoded ahead or
    /// queued; `audio_ms`: the session's audio clock now (for the idle timeout).
    pub fn on_voice(&mut self, now: Instant, f: VoiceFrame, reply_active: bool, audio_ms: u64) {
        let settings = self.turn.settings();
        let voiced = f.probability >= settings.threshold;
        // The VAD's hangover calls a few frames of silence after speech voiced: the latency
        // breakdown anchors on the last frame that is both voiced and loud.
        if let (true, Some(t)) = (voiced, f.loud_at) {
            self.timeline.voiced(t);
        }
        let event = if self.enabled {
            self.turn.push(f.index, f.probability)
        } else {
            None
        };
        // Barge-in applies only while a reply plays and the session allows interrupting it.
        let talking = settings.interrupt_response && reply_active;
        match self.barge_in.on_frame(voiced, f.echo, talking) {
            Some(Release::BargeIn(start)) => {
                self.push(Action::BargeIn(BargeInOutcome::Interrupted));
                self.push(Action::Interrupt);
                self.turn_event(now, start, self.turn.end_rule());
            }
            Some(Release::Plain(start)) => self.turn_event(now, start, self.turn.end_rule()),
            Some(Release::Echo) => {
                self.push(Action::BargeIn(BargeInOutcome::Echo));
                self.turn.reset();
            }
            Some(Release::Pause) => self.push(Action::Pause),
            Some(Release::Resume) => self.resume(),
            None => {}
        }
        if let Some(asked) = self.turn.take_model_request() {
            let useful_ms = self.turn.model_answer_useful_ms();
            self.push(Action::ScoreTurn {
                index: asked,
                useful_ms,
            });
        }
        if let Some(ev) = event {
            self.gate_turn_event(now, ev, talking);
        }
        self.check_idle_timeout(audio_ms);
    }

    /// The turn model's answer for the pause at frame `index` (`--turn-model smart-turn`):
    /// may end the turn now.
    pub fn on_turn_score(
        &mut self,
        now: Instant,
        index: u64,
        probability: f32,
        reply_active: bool,
    ) {
        if !self.enabled {
            return;
        }
        if let Some(ev) = self.turn.on_model_score(index, probability) {
            let settings = self.turn.settings();
            self.gate_turn_event(now, ev, settings.interrupt_response && reply_active);
        }
    }

    /// A turn event from the detector, through the barge-in guard while a reply plays.
    fn gate_turn_event(&mut self, now: Instant, ev: TurnEvent, talking: bool) {
        match self.barge_in.on_turn(ev, talking) {
            Gate::Pass(ev) => {
                // Without a guard (--barge-in-min-ms 0) speech interrupts at once.
                if talking && matches!(ev, TurnEvent::SpeechStarted { .. }) {
                    self.push(Action::BargeIn(BargeInOutcome::Interrupted));
                    self.push(Action::Interrupt);
                }
                self.turn_event(now, ev, self.turn.end_rule());
            }
            Gate::Hold => {}
            Gate::Resume => self.resume(),
            Gate::Rejected { echo } => {
                let outcome = if echo {
                    BargeInOutcome::Echo
                } else {
                    BargeInOutcome::Rejected
                };
                self.push(Action::BargeIn(outcome));
                self.turn.reset();
            }
        }
    }

    /// `input_audio_buffer.commit`: the turn ends here, by the client's word.
    pub fn commit(&mut self, now: Instant, audio_ms: u64) {
        if self.current_item.is_none() {
            self.item_seq += 1;
            self.current_item = Some(self.item_seq);
        }
        self.turn.reset();
        let stop = TurnEvent::SpeechStopped {
            audio_end_ms: audio_ms,
        };
        self.turn_event(now, stop, EndRule::ClientCommit);
        self.open_manual_buffer(audio_ms);
    }

    /// `input_audio_buffer.clear`: the turn so far is dropped.
    pub fn clear(&mut self, audio_ms: u64) {
        self.turn.reset();
        self.current_item = None;
        self.push(Action::Event(ConversationEvent::Cleared));
        // The agent drops what it collected: its turn starts again here.
        self.open_manual_buffer(audio_ms);
    }

    /// `session.update` with `turn_detection` (`None`: the client commits turns from now on).
    pub fn set_turn_detection(&mut self, td: Option<ServerVadSettings>, audio_ms: u64) {
        let was = self.enabled;
        self.enabled = td.is_some();
        if let Some(s) = td {
            self.turn.set_settings(s);
        }
        self.turn.reset();
        if was && !self.enabled {
            self.open_manual_buffer(audio_ms);
        }
    }

    /// A reply finished playing: the idle clock starts.
    pub fn reply_finished(&mut self, audio_ms: u64) {
        self.idle_since = Some(audio_ms);
    }

    fn push(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    /// A backchannel paused the reply: drop its turn and play on from where it paused.
    fn resume(&mut self) {
        self.push(Action::BargeIn(BargeInOutcome::Resumed));
        self.turn.reset();
        self.push(Action::Resume);
    }

    /// A turn event; a turn that stops was ended by `rule`.
    fn turn_event(&mut self, now: Instant, ev: TurnEvent, rule: EndRule) {
        match ev {
            TurnEvent::SpeechStarted { audio_start_ms } => {
                self.timeline.speech_started();
                self.idle_since = None;
                self.item_seq += 1;
                self.current_item = Some(self.item_seq);
                self.push(Action::Event(ConversationEvent::SpeechStarted {
                    audio_start_ms,
                    item: self.item_seq,
                }));
            }
            TurnEvent::SpeechStopped { audio_end_ms } => {
                let item = self.current_item.take().unwrap_or(self.item_seq);
                self.timeline.decided(now, rule);
                self.push(Action::Event(ConversationEvent::SpeechStopped {
                    audio_end_ms,
                    item,
                }));
                self.push(Action::Event(ConversationEvent::Committed {
                    item,
                    previous: (item > 1).then(|| item - 1),
                }));
            }
        }
        let respond = self.turn.settings().create_response;
        self.push(Action::Turn { event: ev, respond });
    }

    /// With turn detection off the client commits turns itself, so the input buffer is always
    /// open: the agent is told a turn starts now (at start, after each commit or clear).
    fn open_manual_buffer(&mut self, audio_ms: u64) {
        if !self.enabled {
            let event = TurnEvent::SpeechStarted {
                audio_start_ms: audio_ms,
            };
            self.push(Action::Turn {
                event,
                respond: false,
            });
        }
    }

    /// `idle_timeout_ms` after a reply finished without the user speaking: an empty turn ends,
    /// the client hears `input_audio_buffer.timeout_triggered`, and the agent is asked to reply.
    fn check_idle_timeout(&mut self, audio_ms: u64) {
        let (Some(since), Some(limit)) = (self.idle_since, self.turn.settings().idle_timeout_ms)
        else {
            return;
        };
        if !self.enabled || self.turn.is_speaking() || self.barge_in.is_holding() {
            self.idle_since = None;
            return;
        }
        if audio_ms.saturating_sub(since) < u64::from(limit) {
            return;
        }
        self.idle_since = None;
        self.item_seq += 1;
        let item = self.item_seq;
        self.push(Action::Event(ConversationEvent::TimeoutTriggered {
            audio_start_ms: since,
            audio_end_ms: audio_ms,
            item,
        }));
        self.push(Action::Event(ConversationEvent::Committed {
            item,
            previous: (item > 1).then(|| item - 1),
        }));
        self.push(Action::Turn {
            event: TurnEvent::SpeechStopped {
                audio_end_ms: audio_ms,
            },
            respond: true,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use super::super::super::media::frame::FRAME_MS;
    use ConversationEvent as E;

    /// Drives a conversation frame by frame on a virtual clock.
    struct Script {
        conv: Conversation,
        t0: Instant,
        index: u64,
        reply_active: bool,
        actions: Vec<Action>,
    }

    impl Script {
        fn new(turn: Option<ServerVadSettings>, barge_in: BargeInGuard) -> Self {
            Script {
                conv: Conversation::new(turn, TurnModel::Prosody, barge_in),
                t0: Instant::now(),
                index: 0,
                reply_active: false,
                actions: Vec::new(),
            }
        }

        fn now(&self) -> Instant {
            self.t0 + Duration::from_millis(self.index * FRAME_MS)
        }

        fn audio_ms(&self) -> u64 {
            self.index * FRAME_MS
        }

        /// `n` frames at probability `p` (`echo`: heard as the reply's echo).
        fn frames(&mut self, n: u64, p: f32, echo: bool) -> &mut Self {
            for _ in 0..n {
                let now = self.now();
                let f = VoiceFrame {
                    index: self.index,
                    probability: p,
                    echo,
                    loud_at: (p > 0.5).then_some(now),
                };
                self.index += 1;
                let ms = self.audio_ms();
                self.conv.on_voice(now, f, self.reply_active, ms);
                while let Some(a) = self.conv.poll_action() {
                    self.actions.push(a);
                }
            }
            self
        }

        fn take(&mut self) -> Vec<Action> {
            std::mem::take(&mut self.actions)
        }
    }

    fn events(actions: &[Action]) -> Vec<ConversationEvent> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Event(e) => Some(*e),
                _ => None,
            })
            .collect()
    }

    fn turns(actions: &[Action]) -> Vec<(TurnEvent, bool)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Turn { event, respond } => Some((*event, *respond)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_turn_model_is_asked_once_per_pause_and_its_answer_ends_the_turn() {
        use super::super::super::turn::semantic::Eagerness;
        let high = ServerVadSettings {
            eagerness: Some(Eagerness::High),
            ..Default::default()
        };
        let mut s = Script::new(None, BargeInGuard::new(200));
        s.conv = Conversation::new(Some(high), TurnModel::SmartTurn, BargeInGuard::new(200));
        assert!(s.conv.asks_turn_model());
        s.frames(40, 0.9, false).frames(10, 0.0, false);
        let a = s.take();
        let asked: Vec<u64> = a
            .iter()
            .filter_map(|x| match x {
                Action::ScoreTurn { index, useful_ms } => {
                    // An answer matters until high's 500 ms window would end the turn anyway.
                    assert_eq!(*useful_ms, 300);
                    Some(*index)
                }
                _ => None,
            })
            .collect();
        // Asked once, about the 10th silent frame (200 ms into the pause); nothing ended yet.
        assert_eq!(asked, vec![49]);
        assert!(!events(&a)
            .iter()
            .any(|e| matches!(e, E::SpeechStopped { .. })));
        // "Complete": the turn ends at the answer, ended by the model.
        let now = s.now();
        s.conv.on_turn_score(now, 49, 0.99, false);
        let mut b = Vec::new();
        while let Some(x) = s.conv.poll_action() {
            b.push(x);
        }
        assert_eq!(
            events(&b)[0],
            E::SpeechStopped {
                audio_end_ms: 1000,
                item: 1
            }
        );
        assert_eq!(s.conv.turn.end_rule(), EndRule::TurnModel);
        // Server_vad and low (a timer) never ask; neither does prosody. Medium does.
        let with = |eagerness| ServerVadSettings {
            eagerness: Some(eagerness),
            ..Default::default()
        };
        for (settings, model, asks) in [
            (ServerVadSettings::default(), TurnModel::SmartTurn, false),
            (with(Eagerness::Low), TurnModel::SmartTurn, false),
            (high, TurnModel::Prosody, false),
            (with(Eagerness::Medium), TurnModel::SmartTurn, true),
        ] {
            let c = Conversation::new(Some(settings), model, BargeInGuard::new(200));
            assert_eq!(c.asks_turn_model(), asks, "{settings:?} {model:?}");
        }
    }

    #[test]
    fn a_turn_is_started_stopped_committed_and_handed_to_the_agent() {
        let mut s = Script::new(Some(ServerVadSettings::default()), BargeInGuard::new(200));
        s.frames(10, 0.0, false).frames(40, 0.9, false);
        let a = s.take();
        // Speech starts 3 voiced frames in, at frame 10, less 300 ms of prefix padding.
        assert_eq!(
            events(&a),
            vec![E::SpeechStarted {
                audio_start_ms: 0,
                item: 1
            }]
        );
        assert_eq!(
            turns(&a),
            vec![(TurnEvent::SpeechStarted { audio_start_ms: 0 }, true)]
        );
        s.frames(40, 0.0, false);
        let a = s.take();
        let ev = events(&a);
        assert!(
            matches!(
                ev[..],
                [
                    E::SpeechStopped { item: 1, .. },
                    E::Committed {
                        item: 1,
                        previous: None
                    }
                ]
            ),
            "{ev:?}"
        );
        assert!(matches!(
            turns(&a)[..],
            [(TurnEvent::SpeechStopped { .. }, true)]
        ));
        // The second turn's commit names the first as previous.
        s.frames(20, 0.9, false).frames(40, 0.0, false);
        let ev = events(&s.take());
        assert_eq!(
            ev[2],
            E::Committed {
                item: 2,
                previous: Some(1)
            }
        );
        assert_eq!(s.conv.item_seq(), 2);
    }

    #[test]
    fn sustained_speech_over_a_reply_interrupts_it_before_the_turn_starts() {
        let mut s = Script::new(Some(ServerVadSettings::default()), BargeInGuard::new(200));
        s.reply_active = true;
        s.frames(5, 0.0, false).frames(15, 0.9, false);
        let a = s.take();
        let first = a
            .iter()
            .position(|x| *x == Action::Interrupt)
            .expect("interrupted");
        assert_eq!(a[first - 1], Action::BargeIn(BargeInOutcome::Interrupted));
        assert!(matches!(
            a[first + 1],
            Action::Event(E::SpeechStarted { item: 1, .. })
        ));
        assert_eq!(a.iter().filter(|x| **x == Action::Interrupt).count(), 1);
    }

    #[test]
    fn the_replys_own_echo_never_interrupts() {
        let mut s = Script::new(Some(ServerVadSettings::default()), BargeInGuard::new(200));
        s.reply_active = true;
        s.frames(30, 0.9, true).frames(40, 0.0, false);
        let a = s.take();
        assert!(!a.contains(&Action::Interrupt), "{a:?}");
        assert!(a.contains(&Action::BargeIn(BargeInOutcome::Echo)));
        assert!(events(&a).is_empty(), "{a:?}");
    }

    #[test]
    fn speech_over_a_reply_is_ignored_when_the_session_forbids_interrupting() {
        let settings = ServerVadSettings {
            interrupt_response: false,
            ..Default::default()
        };
        let mut s = Script::new(Some(settings), BargeInGuard::new(200));
        s.reply_active = true;
        s.frames(30, 0.9, false);
        let a = s.take();
        assert!(!a.contains(&Action::Interrupt));
        assert!(matches!(events(&a)[..], [E::SpeechStarted { item: 1, .. }]));
    }

    #[test]
    fn a_backchannel_pauses_the_reply_and_resumes_it() {
        let mut s = Script::new(
            Some(ServerVadSettings::default()),
            BargeInGuard::with_confirm(200, 600),
        );
        s.reply_active = true;
        // 300 ms of "mm-hmm": past the 200 ms guard, short of the 600 ms confirmation.
        s.frames(15, 0.9, false).frames(30, 0.0, false);
        let a = s.take();
        let pause = a.iter().position(|x| *x == Action::Pause).expect("paused");
        let resume = a
            .iter()
            .position(|x| *x == Action::Resume)
            .expect("resumed");
        assert!(pause < resume);
        assert_eq!(a[resume - 1], Action::BargeIn(BargeInOutcome::Resumed));
        assert!(!a.contains(&Action::Interrupt));
        assert!(events(&a).is_empty(), "{a:?}");
    }

    #[test]
    fn confirmed_speech_after_a_pause_interrupts() {
        let mut s = Script::new(
            Some(ServerVadSettings::default()),
            BargeInGuard::with_confirm(200, 600),
        );
        s.reply_active = true;
        s.frames(40, 0.9, false);
        let a = s.take();
        let pause = a.iter().position(|x| *x == Action::Pause).expect("paused");
        let stop = a
            .iter()
            .position(|x| *x == Action::Interrupt)
            .expect("stopped");
        assert!(pause < stop);
        assert!(matches!(
            a[stop + 1],
            Action::Event(E::SpeechStarted { item: 1, .. })
        ));
    }

    #[test]
    fn silence_after_a_reply_triggers_the_idle_timeout_once() {
        let settings = ServerVadSettings {
            idle_timeout_ms: Some(1000),
            ..Default::default()
        };
        let mut s = Script::new(Some(settings), BargeInGuard::new(200));
        s.frames(10, 0.0, false);
        let ms = s.audio_ms();
        s.conv.reply_finished(ms);
        s.frames(49, 0.0, false);
        assert!(s.take().is_empty());
        s.frames(30, 0.0, false);
        let a = s.take();
        assert_eq!(
            events(&a),
            vec![
                E::TimeoutTriggered {
                    audio_start_ms: 200,
                    audio_end_ms: 1200,
                    item: 1
                },
                E::Committed {
                    item: 1,
                    previous: None
                }
            ]
        );
        assert_eq!(
            turns(&a),
            vec![(TurnEvent::SpeechStopped { audio_end_ms: 1200 }, true)]
        );
    }

    #[test]
    fn speech_after_a_reply_cancels_the_idle_timeout() {
        let settings = ServerVadSettings {
            idle_timeout_ms: Some(1000),
            ..Default::default()
        };
        let mut s = Script::new(Some(settings), BargeInGuard::new(200));
        s.conv.reply_finished(0);
        s.frames(10, 0.9, false).frames(100, 0.0, false);
        let ev = events(&s.take());
        assert!(
            !ev.iter().any(|e| matches!(e, E::TimeoutTriggered { .. })),
            "{ev:?}"
        );
    }

    #[test]
    fn with_detection_off_the_client_commits_and_the_buffer_reopens() {
        let mut s = Script::new(None, BargeInGuard::new(200));
        s.conv.start(0);
        assert_eq!(
            s.conv.poll_action(),
            Some(Action::Turn {
                event: TurnEvent::SpeechStarted { audio_start_ms: 0 },
                respond: false
            })
        );
        // Voice alone ends nothing.
        s.frames(50, 0.9, false).frames(50, 0.0, false);
        assert!(s.take().is_empty());
        let now = s.now();
        s.conv.commit(now, 2000);
        let a: Vec<_> = std::iter::from_fn(|| s.conv.poll_action()).collect();
        assert_eq!(
            a,
            vec![
                Action::Event(E::SpeechStopped {
                    audio_end_ms: 2000,
                    item: 1
                }),
                Action::Event(E::Committed {
                    item: 1,
                    previous: None
                }),
                Action::Turn {
                    event: TurnEvent::SpeechStopped { audio_end_ms: 2000 },
                    respond: true
                },
                Action::Turn {
                    event: TurnEvent::SpeechStarted {
                        audio_start_ms: 2000
                    },
                    respond: false
                },
            ]
        );
        s.conv.clear(2400);
        let a: Vec<_> = std::iter::from_fn(|| s.conv.poll_action()).collect();
        assert_eq!(a[0], Action::Event(E::Cleared));
        assert!(matches!(a[1], Action::Turn { respond: false, .. }));
    }

    #[test]
    fn turning_detection_off_opens_the_manual_buffer() {
        let mut s = Script::new(Some(ServerVadSettings::default()), BargeInGuard::new(200));
        assert!(s.conv.turn_detection().is_some());
        s.conv.set_turn_detection(None, 800);
        assert_eq!(s.conv.turn_detection(), None);
        assert_eq!(
            s.conv.poll_action(),
            Some(Action::Turn {
                event: TurnEvent::SpeechStarted {
                    audio_start_ms: 800
                },
                respond: false
            })
        );
        // And back on: detection resumes with the new settings, nothing is sent.
        let eager = ServerVadSettings {
            silence_duration_ms: 200,
            ..Default::default()
        };
        s.conv.set_turn_detection(Some(eager), 900);
        assert_eq!(s.conv.poll_action(), None);
        assert_eq!(s.conv.settings().silence_duration_ms, 200);
    }

    #[test]
    fn create_response_false_hands_turns_over_without_asking_for_a_reply() {
        let settings = ServerVadSettings {
            create_response: false,
            ..Default::default()
        };
        let mut s = Script::new(Some(settings), BargeInGuard::new(200));
        s.frames(20, 0.9, false).frames(40, 0.0, false);
        let t = turns(&s.take());
        assert_eq!(t.len(), 2);
        assert!(t.iter().all(|(_, respond)| !respond));
    }
}
