//! What a backend protocol mapper does, independent of sockets: Tern's ring messages in,
//! WebSocket messages out, and backend messages in, reply audio and events out.

use crate::core::media::frame::PcmFrame;
use crate::core::turn::detector::TurnEvent;

/// A WebSocket message, either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMsg {
    Text(String),
    Binary(Vec<u8>),
}

/// What a backend message means for the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendEvent {
    /// Reply audio (PCM16 at the model rate). `reply` names the backend's reply when the protocol
    /// has ids; a new id starts a new reply.
    Audio {
        reply: Option<String>,
        pcm: Vec<i16>,
    },
    /// The current reply is complete.
    ReplyDone,
    /// Stop playback now.
    Clear,
    /// A JSON event for the data channel.
    Event(String),
    /// The backend reported an error (forwarded to the data channel as an `error` event).
    Error(String),
}

/// Maps one session between Tern and a backend protocol.
pub trait Protocol: Send {
    /// Messages that open a backend session (sent after every successful connect).
    fn on_connect(&mut self, call_id: &str, rate_hz: u32, out: &mut Vec<WsMsg>);
    /// One 20 ms frame of the user's audio.
    fn on_audio(&mut self, frame: &PcmFrame, out: &mut Vec<WsMsg>);
    /// Tern's turn detector fired; on a stop, `respond` says whether a reply is wanted.
    fn on_turn(&mut self, event: TurnEvent, respond: bool, out: &mut Vec<WsMsg>);
    /// The user interrupted the reply after hearing `played_ms` of it.
    fn on_interrupt(&mut self, played_ms: u64, out: &mut Vec<WsMsg>);
    /// A data-channel event Tern does not handle itself.
    fn on_client_event(&mut self, json: &str, out: &mut Vec<WsMsg>);
    /// A message from the backend.
    fn on_backend(&mut self, msg: WsMsg, events: &mut Vec<BackendEvent>);
}

/// PCM16 little-endian bytes to samples (a trailing odd byte is ignored).
pub fn pcm_from_le_bytes(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Samples to PCM16 little-endian bytes.
pub fn pcm_to_le_bytes(pcm: &[i16], out: &mut Vec<u8>) {
    out.reserve(pcm.len() * 2);
    for s in pcm {
        out.extend_from_slice(&s.to_le_bytes());
    }
}

/// The data-channel `error` event Tern sends for bridge failures.
pub fn error_event(code: &str, message: &str) -> String {
    serde_json::json!({
        "type": "error",
        "error": { "type": "server_error", "code": code, "message": message }
    })
    .to_string()
}
