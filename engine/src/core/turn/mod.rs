//! Voice activity and end-of-turn detection.

pub mod barge_in;
pub mod detector;
pub mod echo_guard;
pub mod latency;
#[cfg(any(feature = "silero", feature = "smart-turn"))]
mod onnx_plan;
pub mod prosody;
pub mod semantic;
#[cfg(feature = "silero")]
pub mod silero;
#[cfg(feature = "smart-turn")]
pub mod smart_turn;
pub mod turn_model;
pub mod vad;

#[cfg(test)]
mod synthetic_pcm_tests;
