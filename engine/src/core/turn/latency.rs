//! One turn's latency on the shard's clock, from the user's last voiced packet to the first reply
//! packet: five stamps, four stages. The session feeds it as the turn unfolds; the breakdown is
//! complete when the first packet of the reply to that turn goes out.

use std::time::{Duration, Instant};

/// Frames below this level (about RMS 330 of 32768) carry no speech for the breakdown's anchor,
/// whatever the VAD says of them.
pub const SPEECH_FLOOR_DBFS: f32 = -40.0;

/// Which rule ended the user's turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndRule {
    /// `server_vad`: the silence window passed.
    SilenceTimer,
    /// `semantic_vad`: the wait that the turn-end cues (prosody) chose passed.
    Prosody,
    /// `semantic_vad` with `--turn-model smart-turn`: the wait the model's answer chose passed
    /// (or, with no answer, the timer's window).
    TurnModel,
    /// The client committed the input buffer (turn detection off).
    ClientCommit,
}

impl EndRule {
    pub const ALL: [EndRule; 4] = [
        EndRule::SilenceTimer,
        EndRule::Prosody,
        EndRule::TurnModel,
        EndRule::ClientCommit,
    ];

    pub fn label(self) -> &'static str {
        match self {
            EndRule::SilenceTimer => "silence_timer",
            EndRule::Prosody => "prosody",
            EndRule::TurnModel => "turn_model",
            EndRule::ClientCommit => "client_commit",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The stages, in order; each runs from the previous stamp to its own.
pub const STAGES: [&str; 4] = [
    // last voiced uplink packet received -> end of speech decided
    "end_of_speech",
    // -> `input_audio_buffer.speech_stopped` handed to the data channel
    "speech_stopped_sent",
    // -> first reply frame from the agent reached the shard
    "agent_first_frame",
    // -> first reply packet handed to the socket
    "first_packet_sent",
];

/// A finished breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnLatency {
    pub rule: EndRule,
    pub response: u32,
    /// The stage durations, as `STAGES` names them.
    pub stages: [Duration; 4],
}

impl TurnLatency {
    /// Last voiced packet received to first reply packet sent: the stages' sum.
    pub fn total(&self) -> Duration {
        self.stages.iter().sum()
    }
}

/// The stamps of the turn in progress.
#[derive(Debug, Default, Clone)]
pub struct TurnTimeline {
    last_voiced: Option<Instant>,
    decided: Option<(Instant, EndRule)>,
    stopped_sent: Option<Instant>,
    first_frame: Option<(Instant, u32)>,
}

impl TurnTimeline {
    /// The user started a new turn: forget the previous one's stamps.
    pub fn speech_started(&mut self) {
        *self = TurnTimeline::default();
    }

    /// An uplink frame the VAD judged voiced, received at `received_at`.
    pub fn voiced(&mut self, received_at: Instant) {
        if self.decided.is_none() {
            self.last_voiced = Some(self.last_voiced.map_or(received_at, |t| t.max(received_at)));
        }
    }

    /// The end of the user's turn was decided at `now` by `rule`. A turn without voiced audio
    /// (a commit of silence) has no breakdown.
    pub fn decided(&mut self, now: Instant, rule: EndRule) {
        if self.last_voiced.is_some() && self.decided.is_none() {
            self.decided = Some((now, rule));
        }
    }

    /// True while `speech_stopped` waits to be handed to the data channel.
    pub fn awaits_stopped_sent(&self) -> bool {
        self.decided.is_some() && self.stopped_sent.is_none()
    }

    /// `speech_stopped` was handed to the data channel at `now`.
    pub fn stopped_sent(&mut self, now: Instant) {
        if self.awaits_stopped_sent() {
            self.stopped_sent = Some(now);
        }
    }

    /// A reply frame of `response` reached the shard at `now`; the first after the decision
    /// names the reply to this turn.
    pub fn reply_frame(&mut self, now: Instant, response: u32) {
        if self.decided.is_some() && self.first_frame.is_none() {
            self.first_frame = Some((now, response));
        }
    }

    /// The first packet of `response` was sent at `now`: the breakdown, once per turn.
    pub fn reply_sent(&mut self, now: Instant, response: u32) -> Option<TurnLatency> {
        let (frame_at, r) = self.first_frame?;
        if r != response {
            return None;
        }
        let voiced = self.last_voiced?;
        let (decided, rule) = self.decided?;
        // Not handed over yet (a closed channel): the stage is empty rather than unknown.
        let sent = self.stopped_sent.unwrap_or(decided);
        let stamps = [voiced, decided, sent, frame_at, now];
        let mut stages = [Duration::ZERO; 4];
        for (i, s) in stages.iter_mut().enumerate() {
            *s = stamps[i + 1].saturating_duration_since(stamps[i]);
        }
        *self = TurnTimeline::default();
        Some(TurnLatency {
            rule,
            response,
            stages,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn stages_follow_the_stamps_and_sum_to_the_total() {
        let t0 = Instant::now();
        let mut t = TurnTimeline::default();
        t.speech_started();
        for f in 0..50 {
            t.voiced(ms(t0, f * 20));
        }
        t.decided(ms(t0, 980 + 500), EndRule::SilenceTimer);
        t.stopped_sent(ms(t0, 1481));
        t.reply_frame(ms(t0, 1490), 3);
        assert_eq!(t.reply_sent(ms(t0, 1495), 2), None, "another reply");
        let l = t.reply_sent(ms(t0, 1500), 3).unwrap();
        assert_eq!(l.stages.map(|d| d.as_millis()), [500, 1, 9, 10], "{l:?}");
        assert_eq!(l.total(), Duration::from_millis(520));
        assert_eq!(l.rule, EndRule::SilenceTimer);
        assert_eq!(t.reply_sent(ms(t0, 1520), 3), None, "once per turn");
    }

    #[test]
    fn voiced_frames_after_the_decision_do_not_move_the_anchor() {
        let t0 = Instant::now();
        let mut t = TurnTimeline::default();
        t.voiced(ms(t0, 100));
        t.decided(ms(t0, 700), EndRule::Prosody);
        t.voiced(ms(t0, 720));
        t.reply_frame(ms(t0, 800), 1);
        let l = t.reply_sent(ms(t0, 810), 1).unwrap();
        assert_eq!(l.stages[0], Duration::from_millis(600));
        // Not handed to the channel: an empty stage, the sum still whole.
        assert_eq!(l.stages[1], Duration::ZERO);
        assert_eq!(l.total(), Duration::from_millis(710));
    }

    #[test]
    fn a_turn_without_voice_or_a_reply_before_the_decision_gives_nothing() {
        let t0 = Instant::now();
        let mut t = TurnTimeline::default();
        t.decided(ms(t0, 500), EndRule::ClientCommit);
        t.reply_frame(ms(t0, 600), 1);
        assert_eq!(t.reply_sent(ms(t0, 610), 1), None);

        let mut t = TurnTimeline::default();
        t.voiced(ms(t0, 0));
        t.reply_frame(ms(t0, 10), 1); // a reply the client asked for mid-speech
        t.decided(ms(t0, 500), EndRule::SilenceTimer);
        t.reply_frame(ms(t0, 600), 2);
        assert!(t.reply_sent(ms(t0, 20), 1).is_none());
        assert_eq!(
            t.reply_sent(ms(t0, 610), 2).map(|l| l.total()),
            Some(Duration::from_millis(610))
        );
    }
}
