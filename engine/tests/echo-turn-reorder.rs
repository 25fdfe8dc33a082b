//! Scenario: media packets on the uplink overtake each other (up to 35 ms of random extra delay
//! on 20 ms packets). The reorder buffer waits for the missing packet instead of concealing it,
//! adapts its wait, and the turn is echoed whole.

use crate::common;

use std::time::Duration;

use common::virtual_server::VirtualServer;
use common::Link;

#[test]
fn reordered_uplink_is_put_back_in_order() {
    let mut up = Link::new(0.0, Duration::from_millis(15), 7);
    up.jitter = Duration::from_millis(35);
    let mut down = Link::new(0.0, Duration::from_millis(15), 8);
    let (server, client, speech_frames) = VirtualServer::echo_turn(&mut up, &mut down);

    let io = &server.io;
    let [decoded, concealed, fec, _silence] = io.uplink_origins;
    eprintln!(
        "origins {:?}, held {}, late {}, max hold {:?}",
        io.uplink_origins, io.uplink_held, io.uplink_late, io.max_hold
    );
    assert!(
        io.uplink_held >= 5,
        "packets really overtook each other and waited: {}",
        io.uplink_held
    );
    assert!(
        io.max_hold <= Duration::from_millis(61),
        "never held past the 60 ms cap: {:?}",
        io.max_hold
    );
    // Only while the wait adapts from its 20 ms start may a packet come too late.
    assert!(
        concealed + fec <= 3 && io.uplink_late <= 3,
        "reordering is not loss: concealed {concealed}, fec {fec}, late {}",
        io.uplink_late
    );
    assert!(
        decoded >= speech_frames,
        "{decoded} decoded of {speech_frames}"
    );
    let types = client.event_types();
    assert!(
        types.iter().any(|t| t == "output_audio_buffer.stopped"),
        "reply finished: {types:?}"
    );
    assert!(
        client.received.len() >= speech_frames,
        "reply frames {} vs spoken {speech_frames}",
        client.received.len()
    );
}
