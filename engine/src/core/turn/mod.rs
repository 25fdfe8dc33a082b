//! Voice activity and end-of-turn detection.

pub mod detector;
pub mod vad;
