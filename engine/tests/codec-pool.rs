//! Opus codec state is taken when audio first flows and recycled when a call ends: a muted call
//! holds none, and the next talking call on the shard reuses what the last one gave back (reset).
//! Real engine, sockets, DTLS/SRTP and Opus.

use crate::common;

use std::time::Duration;

use common::udp_client::UdpClient;
use common::{hang_up, http, load_wav, metric};

fn codecs(http_addr: std::net::SocketAddr, filter: &str) -> f64 {
    let m = String::from_utf8(http(http_addr, "GET", "/metrics", None, b"").2).unwrap();
    metric(&m, "tern_codecs_taken_total", filter)
}

#[test]
fn muted_calls_hold_no_codec_and_talking_calls_reuse_the_last_ones() {
    let engine = common::engine::start(1, 10);
    let speech = load_wav("hello-24k.wav").1;

    // A muted call: connected, data channel open, no audio either way.
    let mut muted = UdpClient::connect(engine.http, Vec::new());
    muted.client.muted = true;
    assert!(muted.run_until(Duration::from_secs(10), |c| c.channel_open));
    muted.run_until(Duration::from_millis(500), |_| false);
    assert_eq!(
        codecs(engine.http, ""),
        0.0,
        "no codec for a call without audio"
    );

    // A talking call: one decoder with its first packet, one encoder with its first reply frame.
    let mut first = UdpClient::connect(engine.http, speech.clone());
    assert!(first.run_until(Duration::from_secs(20), |c| c.audible_frames() >= 30));
    assert_eq!(codecs(engine.http, "how=\"created\""), 2.0);
    assert_eq!(hang_up(engine.http, &first.call_id()), 204);
    first.run_until(Duration::from_millis(300), |_| false);

    // The next talking call takes both from the pool, and its echo is as audible.
    let mut second = UdpClient::connect(engine.http, speech);
    assert!(second.run_until(Duration::from_secs(20), |c| c.audible_frames() >= 30));
    assert_eq!(codecs(engine.http, "how=\"created\""), 2.0, "none created");
    assert_eq!(codecs(engine.http, "how=\"reused\""), 2.0, "both reused");
    drop(muted);
    engine.stop();
}
