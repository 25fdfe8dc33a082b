//! Test support for Tern, outside the engine library: the one WebRTC test peer (`peer`: str0m with
//! Opus, speaking a WAV fixture and recording what comes back), the one HTTP/1.1 client (`http`)
//! and the fuzz entry points (`fuzzing`, for `engine/fuzz` and the corpus replay). The engine's
//! tests, the bench and the tools use these; the engine does not export test code.

pub mod fuzzing;
pub mod http;
pub mod peer;
