//! A garbage UDP flood while sessions stream: random bytes, truncated STUN, STUN for unknown
//! ufrags, STUN with a live session's ufrag but a forged integrity, fake DTLS, RTP from unknown
//! sources, and replayed SRTP from a client's own address. The streaming sessions lose nothing
//! beyond their baseline, the flood is counted by reason, and no flood source gets a single byte
//! back (no amplification).

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::udp_client::UdpClient;
use common::{http, load_wav, metric};

/// A STUN message of `kind` (0x0001 binding request, 0x0011 indication) with an optional
/// USERNAME, PRIORITY, a forged MESSAGE-INTEGRITY and a valid FINGERPRINT: it parses, so it
/// reaches routing (and, with a live ufrag, the session, which must not answer it).
fn stun(kind: u16, username: Option<&str>) -> Vec<u8> {
    let mut attrs = Vec::new();
    if let Some(u) = username {
        let u = u.as_bytes();
        attrs.extend_from_slice(&0x0006u16.to_be_bytes());
        attrs.extend_from_slice(&(u.len() as u16).to_be_bytes());
        attrs.extend_from_slice(u);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
    }
    attrs.extend_from_slice(&[0x00, 0x24, 0, 4, 0x6e, 0x7f, 0x1e, 0xff]);
    attrs.extend_from_slice(&0x0008u16.to_be_bytes());
    attrs.extend_from_slice(&20u16.to_be_bytes());
    attrs.extend_from_slice(&[0x5a; 20]);
    // FINGERPRINT last: its CRC covers everything before it, with the length including it.
    let mut m = kind.to_be_bytes().to_vec();
    m.extend_from_slice(&((attrs.len() + 8) as u16).to_be_bytes());
    m.extend_from_slice(&0x2112_A442u32.to_be_bytes());
    m.extend_from_slice(&rand::random::<[u8; 12]>());
    m.extend_from_slice(&attrs);
    let crc = crc32(&m) ^ 0x5354_554e;
    m.extend_from_slice(&0x8028u16.to_be_bytes());
    m.extend_from_slice(&4u16.to_be_bytes());
    m.extend_from_slice(&crc.to_be_bytes());
    m
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// One turn from each client, calling `between` after each round of driving them; returns the
/// audible reply frames each heard.
fn turns(clients: &mut [UdpClient], mut between: impl FnMut(&[UdpClient])) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(25);
    while Instant::now() < deadline {
        let mut all = true;
        for c in clients.iter_mut() {
            c.run_until(Duration::from_millis(5), |_| false);
            all &= c.has("output_audio_buffer.stopped");
        }
        between(clients);
        if all {
            break;
        }
    }
    clients.iter().map(|c| c.client.audible_frames()).collect()
}

#[test]
fn garbage_flood_is_counted_and_sessions_lose_nothing() {
    let engine = common::engine::start(1, 16);
    let speech = load_wav("hello-24k.wav").1;
    let connect = || {
        let mut c = UdpClient::connect(engine.http, speech.clone());
        assert!(c.run_until(Duration::from_secs(10), |cl| cl.channel_open));
        c
    };

    // Baseline: one turn without the flood.
    let mut base = vec![connect()];
    let baseline = turns(&mut base, |_| {})[0];
    assert!(baseline > 100, "baseline echo {baseline} frames");
    drop(base);

    // Two sessions stream while the flood runs.
    let mut clients = [connect(), connect()];
    let server: SocketAddr = clients[0]
        .last_media
        .clone()
        .map_or(engine.public, |(to, _)| to);
    let live_ufrag = clients[0].server_ufrag();
    let replay_sock = clients[1].socket_clone();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sources: Vec<UdpSocket> = (0..4)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for s in &sources {
        s.set_nonblocking(true).unwrap();
    }
    let flood_socks: Vec<UdpSocket> = sources.iter().map(|s| s.try_clone().unwrap()).collect();
    let (st, n) = (stop.clone(), sent.clone());
    let flood = std::thread::spawn(move || {
        let dtls_hello = [
            &[0x16u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100][..],
            &[1u8; 100][..],
        ]
        .concat();
        let mut rtp = vec![0x80u8, 0x6f, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
        rtp.extend_from_slice(&[0xaa; 160]);
        let forged = stun(0x0001, Some(&format!("{live_ufrag}:evil")));
        let no_username = stun(0x0011, None);
        let mut i = 0u64;
        while !st.load(Ordering::Relaxed) {
            let sock = &flood_socks[(i % 4) as usize];
            let pkt: Vec<u8> = match i % 7 {
                0 => (0..(i % 200 + 1)).map(|_| rand::random::<u8>()).collect(),
                1 => stun(0x0001, Some("x:y"))[..(i % 40 + 20) as usize].to_vec(),
                2 => stun(
                    0x0001,
                    Some(&format!("{:032x}:evil", rand::random::<u128>())),
                ),
                3 => forged.clone(),
                4 => dtls_hello.clone(),
                5 => rtp.clone(),
                // A well-formed binding request without USERNAME.
                _ => no_username.clone(),
            };
            let _ = sock.send_to(&pkt, server);
            i += 1;
            if i.is_multiple_of(256) {
                std::thread::yield_now();
            }
        }
        n.store(i, Ordering::Relaxed);
    });
    let t0 = Instant::now();
    // Replays: a live client's real SRTP packets, resent from its own address.
    let mut replayed = 0u64;
    let heard = turns(&mut clients, |cs| {
        if let Some((to, pkt)) = &cs[1].last_media {
            for _ in 0..20 {
                let _ = replay_sock.send_to(pkt, *to);
                replayed += 1;
            }
        }
    });
    let flood_secs = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    let flooded = sent.load(Ordering::Relaxed);
    eprintln!(
        "flood: {flooded} datagrams + {replayed} replays in {flood_secs:.1} s = {:.0}/s; baseline {baseline} frames, heard {heard:?}",
        (flooded + replayed) as f64 / flood_secs
    );
    for h in &heard {
        assert!(
            *h + 2 >= baseline,
            "a session lost frames under the flood: {h} vs {baseline}"
        );
    }

    // Nothing went back to any flood source.
    let mut buf = [0u8; 2048];
    for s in &sources {
        assert!(s.recv_from(&mut buf).is_err(), "a flood source got a reply");
    }
    let m = String::from_utf8(http(engine.http, "GET", "/metrics", None, b"").2).unwrap();
    let drop = |r: &str| {
        metric(
            &m,
            "tern_datagrams_dropped_total",
            &format!("reason=\"{r}\""),
        )
    };
    for r in [
        "garbage",
        "bad_stun",
        "no_username",
        "unknown_ufrag",
        "unknown_source",
        "unauthenticated",
    ] {
        assert!(drop(r) > 0.0, "no drops counted as {r}\n{m}");
    }
    let reasons = [
        "garbage",
        "bad_stun",
        "no_username",
        "unknown_ufrag",
        "unknown_source",
        "stale_session",
        "rejected",
        "unauthenticated",
    ];
    let counted: f64 = reasons.iter().map(|r| drop(r)).sum();
    let by_reason: Vec<String> = reasons.iter().map(|r| format!("{r}={}", drop(r))).collect();
    eprintln!("counted drops: {counted} ({})", by_reason.join(", "));
    // Every flood datagram the kernel delivered was counted (it may shed some under load).
    assert!(
        counted <= flooded as f64 && counted >= 0.5 * flooded as f64,
        "{counted} of {flooded}"
    );
    // The baseline session (silent now) and the two streaming ones are all still there.
    assert_eq!(metric(&m, "tern_sessions", ""), 3.0);
}
