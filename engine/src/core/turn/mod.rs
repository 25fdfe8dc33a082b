//! Voice activity and end-of-turn detection.

pub mod barge_in;
pub mod detector;
pub mod echo_guard;
pub mod prosody;
pub mod semantic;
pub mod vad;

#[cfg(test)]
mod synthetic_pcm_tests;
