//! A garbage flood while a session talks, in virtual time: every 2 ms, from four flood sources,
//! random bytes, truncated STUN, STUN for a ufrag Tern never issued, a binding request with the
//! live session's ufrag but a forged MESSAGE-INTEGRITY, a DTLS hello and RTP from unknown
//! sources, a STUN indication without USERNAME; and every datagram the client sends is replayed
//! twice from its own address. The session's turn comes out exactly as without the flood, each
//! flood datagram is counted by its reason, and no flood source gets a byte back (no
//! amplification). Deterministic: the counts are exact.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::virtual_server::VirtualServer;
use common::{load_wav, Client, Link};
use tern_engine::core::session_id::SessionId;
use tern_engine::core::shard::DropReason;
use tern_testkit::peer::binding_request;

/// The flood's datagrams for one step, in a fixed order (`KINDS` names them).
fn flood(step: u64, live_ufrag: &str) -> [Vec<u8>; 7] {
    let mut truncated = binding_request("x");
    truncated.truncate(28);
    let mut indication = vec![0x00, 0x11, 0, 0, 0x21, 0x12, 0xa4, 0x42];
    indication.extend_from_slice(&step.to_be_bytes());
    indication.extend_from_slice(&[0; 4]);
    let mut rtp = vec![0x80u8, 0x6f, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    rtp.extend_from_slice(&[0xaa; 160]);
    let mut dtls = vec![0x16u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100];
    dtls.extend_from_slice(&[1u8; 100]);
    [
        // 0xff is no protocol RFC 7983 knows.
        (0..(step % 200 + 1))
            .map(|i| if i == 0 { 0xff } else { i as u8 })
            .collect(),
        truncated,
        binding_request(&format!("{:032x}", u128::from(step) * 0x9e37_79b9)),
        binding_request(live_ufrag),
        dtls,
        rtp,
        indication,
    ]
}

/// What each of `flood`'s datagrams must be counted as.
const KINDS: [DropReason; 7] = [
    DropReason::Garbage,
    DropReason::BadStun,
    DropReason::UnknownUfrag,
    DropReason::Unauthenticated,
    DropReason::UnknownSource,
    DropReason::UnknownSource,
    DropReason::NoUsername,
];

struct Outcome {
    audible: usize,
    events: Vec<String>,
    server: VirtualServer,
    flooded: u64,
    replayed: u64,
}

fn talk(with_flood: bool) -> Outcome {
    let (_, speech) = load_wav("hello-24k.wav");
    let t0 = Instant::now();
    let mut server = VirtualServer::new();
    let addr: SocketAddr = "10.0.0.2:50000".parse().unwrap();
    let (mut client, offer) = Client::new(t0, addr, speech);
    let call = server.connect(t0, &mut client, &offer);
    let live_ufrag = SessionId::parse_call_id(&call).unwrap().ufrag();
    let sources: Vec<SocketAddr> = (1..=4)
        .map(|i| SocketAddr::from(([192, 0, 2, i], 4000 + u16::from(i))))
        .collect();
    let (mut up, mut down) = (
        Link::new(0.0, Duration::from_millis(15), 1),
        Link::new(0.0, Duration::from_millis(15), 2),
    );
    let (mut flooded, mut replayed, mut step) = (0u64, 0u64, 0u64);
    server.run_with(
        t0,
        Duration::from_secs(12),
        &mut [(&mut client, &mut up, &mut down)],
        |server, now, delivered| {
            step += 1;
            if !with_flood {
                return;
            }
            // Replays of the client's own datagrams, from its own address.
            for (from, d) in delivered {
                for _ in 0..2 {
                    server.inject(now, *from, d);
                    replayed += 1;
                }
            }
            if step % 2 == 0 {
                for (i, d) in flood(step, &live_ufrag).iter().enumerate() {
                    server.inject(now, sources[i % sources.len()], d);
                    flooded += 1;
                }
            }
        },
    );
    Outcome {
        audible: client.audible_frames(),
        events: client.event_types(),
        server,
        flooded,
        replayed,
    }
}

#[test]
fn a_garbage_flood_is_counted_by_reason_and_the_turn_loses_nothing() {
    let base = talk(false);
    assert!(base.audible > 100, "baseline echo {} frames", base.audible);
    let flooded = talk(true);
    eprintln!(
        "flood: {} datagrams and {} replays; baseline {} audible reply frames, under the flood {}",
        flooded.flooded, flooded.replayed, base.audible, flooded.audible
    );
    assert!(flooded.flooded > 20_000 && flooded.replayed > 1_000);
    assert_eq!(flooded.audible, base.audible, "the turn lost nothing");
    assert_eq!(flooded.events, base.events, "the same events, in order");

    // Every flood datagram is counted under its reason, exactly.
    let counters = &flooded.server.core.counters;
    let per_kind = flooded.flooded / KINDS.len() as u64;
    for reason in DropReason::ALL {
        let expected = KINDS.iter().filter(|k| **k == reason).count() as u64 * per_kind;
        let counted = counters.dropped[reason.index()];
        match reason {
            // Replays are judged by str0m (SRTP replay window, DTLS records already seen).
            DropReason::Rejected => {}
            _ => assert_eq!(counted, expected, "{}", reason.label()),
        }
    }
    // No flood source got a byte back.
    assert!(
        flooded.server.stray.is_empty(),
        "sent to {:?}",
        flooded.server.stray
    );
    assert_eq!(flooded.server.core.live_sessions(), 1);
}
