//! Audio stages a packet walks through: decode (with concealment), resample for the VAD, and on the
//! way back playout, pacing and encode.

pub mod codec;
pub mod codec_pool;
pub mod decoder;
pub mod denoise;
pub mod encoder;
pub mod frame;
pub mod g711;
pub mod playout;
pub mod reorder;
pub mod resample;
pub mod uplink;
