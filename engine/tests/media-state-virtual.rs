//! Media state is made when audio flows, not at setup (issue 18, memory): a muted call (ICE
//! consent and the data channel only) holds no uplink path, decoder, voice detector, echo guard
//! or encoder, however long it lasts; a talking call beside it holds each once, and its echo
//! comes back as before. `ShardCore::media_held` counts them over the shard's live sessions.

use crate::common;

use std::time::{Duration, Instant};

use common::virtual_server::VirtualServer;
use common::{load_wav, Client, Link};
use tern_engine::core::session::MediaHeld;

#[test]
fn a_muted_call_holds_no_media_state_and_a_talking_one_holds_it_once() {
    let (_, speech) = load_wav("hello-24k.wav");
    let t0 = Instant::now();
    let mut server = VirtualServer::new();
    let (mut muted, offer) = Client::new(t0, "10.0.0.2:50000".parse().unwrap(), speech.clone());
    muted.muted = true;
    server.connect(t0, &mut muted, &offer);
    let (mut talking, offer) = Client::new(t0, "10.0.0.3:50000".parse().unwrap(), speech);
    server.connect(t0, &mut talking, &offer);
    assert_eq!(server.core.live_sessions(), 2);
    assert_eq!(
        server.core.media_held(),
        MediaHeld::default(),
        "nothing is made at setup"
    );

    let mut links: Vec<Link> = (0..4)
        .map(|i| Link::new(0.0, Duration::from_millis(10), i))
        .collect();
    let [up1, down1, up2, down2] = &mut links[..] else {
        unreachable!()
    };
    server.run_many(
        t0,
        Duration::from_secs(12),
        &mut [(&mut muted, up1, down1), (&mut talking, up2, down2)],
    );

    assert!(muted.connected_at.is_some(), "the muted call connected");
    assert_eq!(
        talking.events_of("tern.turn.latency").len(),
        1,
        "{:?}",
        talking.event_types()
    );
    assert!(talking.audible_frames() > 50, "the echo came back");
    assert_eq!(
        server.core.media_held(),
        MediaHeld {
            uplink_paths: 1,
            decoders: 1,
            voice_detectors: 1,
            echo_guards: 1,
            encoders: 1,
        },
        "only the talking call made its media state"
    );
}
