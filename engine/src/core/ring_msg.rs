//! Messages that cross the rings between shards and inference workers. Fixed size (audio inline),
//! so pushing one never allocates; JSON events are the rare exception and carry a boxed string.

use std::time::Instant;

use super::media::frame::PcmFrame;
use super::session_id::{SessionId, SessionKey};
use super::turn::detector::TurnEvent;
use super::turn::turn_model::TurnAnswer;

/// Shard -> worker.
// Audio is inline on purpose: a ring slot is a fixed size and a push never allocates.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum UplinkMsg {
    /// The session connected; `tag` names the call.
    Start {
        key: SessionKey,
        tag: SessionId,
        rate_hz: u32,
    },
    /// Frame number `index` of the session's input audio (20 ms each, from 0).
    Audio {
        key: SessionKey,
        index: u64,
        frame: PcmFrame,
        received_at: Instant,
        /// The session's turn detector may ask the turn model about this audio (`semantic_vad`
        /// with `--turn-model smart-turn`): the worker keeps the last 8 s of it.
        for_turn_model: bool,
    },
    /// A turn event. On a stop, `respond` says whether the agent should reply
    /// (`create_response`; an idle timeout also ends an empty turn with `respond`).
    Turn {
        key: SessionKey,
        event: TurnEvent,
        respond: bool,
    },
    /// A data-channel event the engine does not handle itself.
    ClientEvent {
        key: SessionKey,
        json: Box<str>,
    },
    /// The user interrupted (barge-in, `response.cancel`, `output_audio_buffer.clear`): the shard
    /// has already flushed its playout queue; the agent drops the reply in progress. `response` is
    /// the reply that was playing or queued, and `played_ms` how much of it the user heard (what
    /// `conversation.item.truncate` needs).
    Cancel {
        key: SessionKey,
        response: Option<u32>,
        played_ms: u64,
    },
    End {
        key: SessionKey,
    },
    /// `--turn-model smart-turn`: is the turn complete at the end of frame `index`? The worker
    /// answers with `DownlinkMsg::TurnScore`. `asked_at`: on the shard's clock; after `deadline`
    /// the answer would change nothing (the pause is timed out), so it is not computed.
    ScoreTurn {
        key: SessionKey,
        index: u64,
        asked_at: Instant,
        deadline: Instant,
    },
}

impl UplinkMsg {
    /// Whether the worker must be woken for this message now, rather than finding it at its next
    /// turn (a parked worker looks at least every 5 ms, the shell's `MAX_PARK`). A session's start
    /// and end, and audio the worker only keeps or forwards, can wait: a wake is a futex call on
    /// the media core, paid per session at setup and per step while people talk. What a reply or
    /// a decision waits on cannot: turn events, client events, interruptions, the turn model's
    /// questions, and audio when the worker runs the voice detector (`worker_detects_voice`).
    /// The ring keeps order, so whatever waits is handled before the urgent message behind it.
    pub fn is_urgent(&self, worker_detects_voice: bool) -> bool {
        match self {
            UplinkMsg::Start { .. } | UplinkMsg::End { .. } => false,
            UplinkMsg::Audio { .. } => worker_detects_voice,
            UplinkMsg::Turn { .. }
            | UplinkMsg::ClientEvent { .. }
            | UplinkMsg::Cancel { .. }
            | UplinkMsg::ScoreTurn { .. } => true,
        }
    }

    pub fn key(&self) -> SessionKey {
        match self {
            UplinkMsg::Start { key, .. }
            | UplinkMsg::Audio { key, .. }
            | UplinkMsg::Turn { key, .. }
            | UplinkMsg::ClientEvent { key, .. }
            | UplinkMsg::Cancel { key, .. }
            | UplinkMsg::ScoreTurn { key, .. }
            | UplinkMsg::End { key } => *key,
        }
    }
}

/// Worker -> shard.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum DownlinkMsg {
    Audio {
        key: SessionKey,
        response: u32,
        frame: PcmFrame,
    },
    /// All audio of `response` has been sent.
    ResponseDone { key: SessionKey, response: u32 },
    /// Stop playback now and drop what is queued.
    Clear { key: SessionKey },
    /// A JSON event for the data channel.
    Event { key: SessionKey, json: Box<str> },
    /// The voice probability of uplink frame `index`, from a VAD that runs on the worker
    /// (`--vad silero`).
    Vad {
        key: SessionKey,
        index: u64,
        probability: f32,
    },
    /// The turn model's answer to `UplinkMsg::ScoreTurn`.
    TurnScore {
        key: SessionKey,
        index: u64,
        asked_at: Instant,
        answer: TurnAnswer,
    },
}

impl DownlinkMsg {
    pub fn key(&self) -> SessionKey {
        match self {
            DownlinkMsg::Audio { key, .. }
            | DownlinkMsg::ResponseDone { key, .. }
            | DownlinkMsg::Clear { key }
            | DownlinkMsg::Event { key, .. }
            | DownlinkMsg::Vad { key, .. }
            | DownlinkMsg::TurnScore { key, .. } => *key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_someone_waits_on_wakes_the_worker() {
        let tag = SessionId::sealed(&crate::core::session_id::TagKey::new(b"k"), 0, 0, 1, 1, 7);
        let (key, now) = (tag.home_key(), Instant::now());
        let audio = || UplinkMsg::Audio {
            key,
            index: 0,
            frame: PcmFrame::silence(480),
            received_at: now,
            for_turn_model: true,
        };
        let waits = [
            UplinkMsg::Start {
                key,
                tag,
                rate_hz: 24_000,
            },
            UplinkMsg::End { key },
            audio(),
        ];
        let urgent = [
            UplinkMsg::Turn {
                key,
                event: TurnEvent::SpeechStopped { audio_end_ms: 900 },
                respond: true,
            },
            UplinkMsg::ClientEvent {
                key,
                json: "{}".into(),
            },
            UplinkMsg::Cancel {
                key,
                response: Some(1),
                played_ms: 40,
            },
            UplinkMsg::ScoreTurn {
                key,
                index: 45,
                asked_at: now,
                deadline: now,
            },
        ];
        for m in &waits {
            assert!(!m.is_urgent(false), "{m:?}");
        }
        for m in &urgent {
            assert!(m.is_urgent(false), "{m:?}");
        }
        // With the voice detector on the worker, audio is what the turn waits on.
        assert!(audio().is_urgent(true));
        assert!(!waits[0].is_urgent(true) && !waits[1].is_urgent(true));
    }
}
