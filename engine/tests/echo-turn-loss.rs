//! Scenario: 5% random loss on the uplink and the downlink still gives a full echo: lost frames
//! are concealed (PLC/FEC), not skipped, so the turn keeps its length.

use crate::common;

use std::time::Duration;

use common::virtual_server::VirtualServer;
use common::Link;

#[test]
fn five_percent_loss_still_echoes() {
    let mut up = Link::new(0.05, Duration::from_millis(15), 7);
    let mut down = Link::new(0.05, Duration::from_millis(15), 8);
    let (server, client, speech_frames) = VirtualServer::echo_turn(&mut up, &mut down);

    assert!(
        up.dropped > 5,
        "the uplink really lost packets ({})",
        up.dropped
    );
    let [_, concealed, fec, _] = server.io.uplink_origins;
    assert!(
        concealed + fec >= up.dropped / 2,
        "lost packets were rebuilt (PLC {concealed}, FEC {fec}) for {} lost",
        up.dropped
    );
    let types = client.event_types();
    assert!(
        types
            .iter()
            .any(|t| t == "input_audio_buffer.speech_stopped"),
        "turn ended: {types:?}"
    );
    assert!(
        types.iter().any(|t| t == "output_audio_buffer.stopped"),
        "reply finished: {types:?}"
    );
    let audible = client.audible_frames();
    assert!(
        audible >= speech_frames / 2,
        "heard {audible} audible frames of {speech_frames}"
    );
    // Concealment keeps the timeline: the echoed turn is as long as the spoken one, so the reply
    // has at least as many frames as were spoken (minus downlink loss).
    assert!(
        client.received.len() as f64 >= speech_frames as f64 * 0.9,
        "reply frames {} vs spoken {speech_frames}",
        client.received.len()
    );
}
