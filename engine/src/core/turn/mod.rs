//! Voice activity and end-of-turn detection.

pub mod barge_in;
pub mod detector;
pub mod echo_guard;
pub mod latency;
pub mod prosody;
pub mod semantic;
#[cfg(feature = "silero")]
pub mod silero;
pub mod vad;

#[cfg(test)]
mod synthetic_pcm_tests;
