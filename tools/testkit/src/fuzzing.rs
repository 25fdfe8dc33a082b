//! Entry points for the fuzz targets in `engine/fuzz` (cargo-fuzz) and for the corpus replay in
//! the test suite. Each takes arbitrary bytes and must never panic; state that is expensive to
//! build (certificates, a shard) is built once per thread.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tern_engine::core::admission::Admission;
use tern_engine::core::auth::Auth;
use tern_engine::core::events::ClientEvent;
use tern_engine::core::media::decoder::UplinkDecoder;
use tern_engine::core::media::frame::ModelRate;
use tern_engine::core::output::Output;
use tern_engine::core::peer_addr::Peer;
use tern_engine::core::rtc_setup::{answer_offer, parse_offer, ServerCrypto};
use tern_engine::core::session::SessionConfig;
use tern_engine::core::session_id::{server_ufrag, SessionId, TagKey};
use tern_engine::core::shard::{ShardCore, ShardSettings};
use tern_engine::core::turn::detector::ServerVadSettings;

/// Drains the core's outputs as a shell whose worker rings and other shard's inbox are always
/// full would: every message goes back to the core, which settles it.
fn drain_refusing(core: &mut ShardCore, now: Instant) {
    loop {
        let refused = match core.poll_output() {
            None => return,
            Some(Output::ToShard { shard, msg }) => Err((shard, msg)),
            Some(Output::ToWorker { msg, .. }) => Ok(Some(msg)),
            Some(_) => Ok(None),
        };
        match refused {
            Err((to, msg)) => core.undeliverable(now, to, msg),
            Ok(Some(msg)) => core.worker_full(now, msg),
            Ok(None) => {}
        }
    }
}

fn settings() -> Arc<ShardSettings> {
    Arc::new(ShardSettings {
        node: 0,
        shards: 2,
        workers: 1,
        public: SocketAddr::from(([10, 0, 0, 1], 3478)),
        public_tcp: Some(SocketAddr::from(([10, 0, 0, 1], 443))),
        max_sessions_per_shard: 64,
        session: SessionConfig::default(),
        // Fixed, so that a corpus replays the same way.
        tag_key: TagKey::new(b"tern-fuzz"),
        admission: Admission::unlimited(),
        seed: [7; 32],
    })
}

thread_local! {
    static CRYPTO: ServerCrypto = ServerCrypto::new().expect("crypto");
    /// A shard with one live session (answered from a real offer), so routed input reaches str0m.
    static SHARD: RefCell<(ShardCore, SocketAddr)> = RefCell::new({
        let mut core = ShardCore::new(0, settings(), CRYPTO.with(Clone::clone));
        let offer = crate::peer::Client::new(Instant::now(), "10.0.0.2:5000".parse().expect("addr"), Vec::new()).1;
        let _ = core.accept_offer(Instant::now(), offer.as_bytes());
        (core, "10.0.0.2:5000".parse().expect("addr"))
    });
}

/// The datagram classifier and router, then delivery to the session it routes to. The first
/// byte picks the source address (the session's or a stranger's).
pub fn datagram(data: &[u8]) {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    SHARD.with(|s| {
        let (core, known) = &mut *s.borrow_mut();
        let source = if pick & 1 == 0 {
            *known
        } else {
            SocketAddr::from(([192, 0, 2, pick], 4000 + u16::from(pick)))
        };
        let now = Instant::now();
        // Both transports reach the same session code.
        let from = if pick & 2 == 0 {
            Peer::udp(source)
        } else {
            Peer::tcp(source)
        };
        core.handle_datagram(now, from, payload);
        // Messages for the other shard (claims, forwards) find its inbox full.
        drain_refusing(core, now);
        core.handle_timeouts(now);
        drain_refusing(core, now);
    });
}

/// STUN parsing and ufrag decoding (route tags, call ids).
pub fn stun_ufrag(data: &[u8]) {
    if let Ok(msg) = str0m::ice::StunMessage::parse(data) {
        if let Some((local, _)) = msg.split_username() {
            let _ = SessionId::parse(server_ufrag(local));
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = SessionId::parse(server_ufrag(s));
        if let Ok(t) = SessionId::parse_call_id(s) {
            assert_eq!(SessionId::parse_call_id(&t.call_id()), Ok(t));
        }
    }
}

/// The offer path: validation, then str0m's answer.
pub fn offer(data: &[u8]) {
    if let Ok(offer) = parse_offer(data) {
        CRYPTO.with(|c| {
            let tag = SessionId {
                node: 0,
                shard: 0,
                slot: 1,
                generation: 1,
                secret: 7,
            };
            let _ = answer_offer(
                c,
                Instant::now(),
                str0m::IceCreds {
                    ufrag: tag.ufrag(),
                    pass: "p".repeat(32),
                },
                settings().public,
                settings().public_tcp,
                offer,
                true,
            );
        });
    }
}

/// The uplink decoder (gap concealment, FEC, DTX, late packets): the input is a sequence of
/// packets, each `[seq delta, ts delta, len, payload...]`.
pub fn uplink(data: &[u8]) {
    let mut dec = UplinkDecoder::new(ModelRate::Hz24000);
    let (mut seq, mut ts) = (1000u64, 0u64);
    let mut rest = data;
    while rest.len() >= 3 {
        let (d_seq, d_ts, len) = (rest[0], rest[1], rest[2] as usize);
        rest = &rest[3..];
        let payload = &rest[..len.min(rest.len())];
        rest = &rest[payload.len()..];
        // Deltas may go backwards a little (late and duplicate packets).
        seq = (seq + u64::from(d_seq)).saturating_sub(4);
        ts += u64::from(d_ts) * 960 / 16;
        dec.on_packet(seq, ts, payload, &mut |_, _| {});
    }
}

/// Data-channel event parsing (`session.update` and the rest).
pub fn client_event(data: &[u8]) {
    let _ = ClientEvent::parse(data, ServerVadSettings::default());
}

/// What the HTTP handlers do with untrusted request parts: the Authorization header, call ids in
/// paths, token session configs. Input: `header \n path \n json`.
pub fn http_request(data: &[u8]) {
    thread_local! {
        static AUTH: Auth = Auth::new(&["sk-fuzz".into()], b"fuzz-secret");
    }
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let (header, path, json) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    AUTH.with(|a| {
        let _ = a.check(Some(header), 1_000_000);
        let (t, _) = a.mint(60, None, 1_000_000);
        assert!(a.check(Some(&format!("Bearer {t}")), 1_000_000).is_ok());
    });
    if let Some(id) = path.strip_prefix("/v1/realtime/calls/") {
        let _ = SessionId::parse_call_id(id.split('/').next().unwrap_or(""));
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(json) {
        let _ = tern_engine::shell::http::session_config_for(&v, &SessionConfig::default());
    }
}

/// A fuzz target: arbitrary bytes in, no panic.
pub type Target = fn(&[u8]);

/// Every target, by name (for the corpus replay).
pub const TARGETS: [(&str, Target); 6] = [
    ("datagram", datagram),
    ("stun_ufrag", stun_ufrag),
    ("offer", offer),
    ("uplink", uplink),
    ("client_event", client_event),
    ("http_request", http_request),
];
