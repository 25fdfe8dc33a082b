//! Opus DTX uplink in virtual time: a client that sends as a browser does under `usedtx=1` (one
//! packet every 400 ms while silent) gets the same turn as one that sends every frame: the end
//! of its turn is decided within the clock's fill delay of the other's, the gaps become silent
//! frames without decoding, and the echo comes back whole.

use crate::common;

use std::time::{Duration, Instant};

use common::virtual_server::VirtualServer;
use common::{load_wav, Client, Link};

struct Run {
    stopped_at: Duration,
    end_of_speech_us: u64,
    decoded: usize,
    silence: usize,
    packets_sent: u64,
    audible: usize,
}

fn run(dtx: bool) -> Run {
    let (_, speech) = load_wav("hello-24k.wav");
    let t0 = Instant::now();
    let mut server = VirtualServer::new();
    let (mut client, offer) = Client::new(t0, "10.0.0.2:50000".parse().unwrap(), speech);
    client.dtx = dtx;
    server.connect(t0, &mut client, &offer);
    let mut up = Link::new(0.0, Duration::from_millis(10), 1);
    let mut down = Link::new(0.0, Duration::from_millis(10), 2);
    server.run(t0, Duration::from_secs(12), &mut client, &mut up, &mut down);
    let e = client.events_of("tern.turn.latency");
    assert_eq!(e.len(), 1, "dtx {dtx}: {:?}", client.event_types());
    Run {
        stopped_at: client
            .event_time("input_audio_buffer.speech_stopped")
            .unwrap()
            - t0,
        end_of_speech_us: e[0]["stages_us"]["end_of_speech"].as_u64().unwrap(),
        decoded: server.io.uplink_origins[0],
        silence: server.io.uplink_origins[3],
        packets_sent: client.frames_sent,
        audible: client.audible_frames(),
    }
}

#[test]
fn a_dtx_sender_gets_the_same_turn_at_a_fraction_of_the_decodes() {
    let full = run(false);
    let dtx = run(true);
    println!(
        "every frame: stopped at {:?}, end of speech {} µs, {} packets, {} decoded; \
         DTX: stopped at {:?}, end of speech {} µs, {} packets, {} decoded, {} silent frames",
        full.stopped_at,
        full.end_of_speech_us,
        full.packets_sent,
        full.decoded,
        dtx.stopped_at,
        dtx.end_of_speech_us,
        dtx.packets_sent,
        dtx.decoded,
        dtx.silence
    );
    // The clock fills a silent slot 40 ms after it was due; nothing else may differ.
    let late = dtx.stopped_at.saturating_sub(full.stopped_at);
    let early = full.stopped_at.saturating_sub(dtx.stopped_at);
    assert!(
        late <= Duration::from_millis(60) && early <= Duration::from_millis(20),
        "turn end moved: {:?} -> {:?}",
        full.stopped_at,
        dtx.stopped_at
    );
    assert!(dtx.packets_sent * 2 < full.packets_sent);
    assert!(dtx.decoded * 2 < full.decoded, "silence is not decoded");
    assert!(dtx.silence > 200, "the gaps became silent frames");
    assert!(dtx.audible + 5 >= full.audible, "the echo is whole");
    assert!(dtx.end_of_speech_us <= full.end_of_speech_us + 60_000);
}
