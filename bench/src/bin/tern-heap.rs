//! `tern-heap [SESSIONS] [OUT.md]`: where a session's heap goes, measured with the counting allocator in this
//! process (one thread, so the counts are exact): the server `Rtc` str0m builds from an offer,
//! what a `ShardCore` adds for the session (Tern's `Session`, its buffers, the table entry), and
//! the Opus codec state a session holds while audio flows. The connected state (DTLS, SRTP, SCTP
//! and the data channel) is the idle report's heap per session less these.

use std::sync::Arc;
use std::time::Instant;

use tern_engine::core::admission::Admission;
use tern_engine::core::rtc_setup::{answer_offer, parse_offer, ServerCrypto};
use tern_engine::core::session::{Session, SessionConfig};
use tern_engine::core::session_id::{SessionId, TagKey};
use tern_engine::core::shard::{ShardCore, ShardSettings};
use tern_engine::heap::live_bytes;
use tern_testkit::peer::Client;

#[global_allocator]
static GLOBAL: tern_engine::heap::CountingAlloc<std::alloc::System> =
    tern_engine::heap::CountingAlloc(std::alloc::System);

fn per_item(n: usize, mut make: impl FnMut(usize) -> Box<dyn std::any::Any>) -> f64 {
    let mut keep = Vec::with_capacity(n);
    let before = live_bytes();
    for i in 0..n {
        keep.push(make(i));
    }
    let after = live_bytes();
    drop(keep);
    (after - before) as f64 / n as f64
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(500), |s| s.parse())?;
    let n = n.max(10);
    let out = args.next();
    let now = Instant::now();
    let crypto = ServerCrypto::new()?;
    let offers: Vec<String> = (0..n)
        .map(|i| {
            let addr = format!("10.0.{}.{}:5000", i / 250, i % 250 + 1);
            Client::new(now, addr.parse().expect("addr"), Vec::new()).1
        })
        .collect();
    let public = "10.1.0.1:3478".parse()?;
    let rtc = per_item(n, |i| {
        let tag = SessionId {
            node: 0,
            shard: 0,
            slot: i as u32,
            generation: 1,
            secret: i as u64,
        };
        let offer = parse_offer(offers[i].as_bytes()).expect("offer");
        Box::new(
            answer_offer(
                &crypto,
                now,
                str0m::IceCreds {
                    ufrag: tag.ufrag(),
                    pass: "p".repeat(32),
                },
                public,
                None,
                offer,
                true,
            )
            .expect("answer"),
        )
    });
    let settings = Arc::new(ShardSettings {
        node: 0,
        shards: 1,
        workers: 1,
        public,
        public_tcp: None,
        max_sessions_per_shard: n + 16,
        session: SessionConfig::default(),
        tag_key: TagKey::new(b"heap"),
        admission: Admission::unlimited(),
        seed: [7; 32],
    });
    let mut core = ShardCore::new(0, settings, crypto.clone());
    let before = live_bytes();
    for o in &offers {
        core.accept_offer(now, o.as_bytes())?;
    }
    let session_total = (live_bytes() - before) as f64 / n as f64;
    drop(core);
    // libopus allocates with the C allocator, outside the counted heap: its own size query.
    // SAFETY: plain size queries with a valid channel count.
    let (encoder, decoder) = unsafe {
        (
            audiopus::ffi::opus_encoder_get_size(1) as f64,
            audiopus::ffi::opus_decoder_get_size(1) as f64,
        )
    };
    let kib = |b: f64| b / 1024.0;
    let text = format!(
        "# Heap per session, by part\n\n`{}`\n\n{n} of each, one thread, counted by `tern_engine::heap` (exact).\n\n\
         | part | KiB per session | held |\n|---|---|---|\n\
         | str0m `Rtc` answered from an offer (ICE, DTLS and SCTP set up but not connected, SDP state) | {:.1} | always |\n\
         | offer to answer, both together (`ShardCore::accept_offer`: the `Rtc`, Tern's `Session`, the table entry) | {:.1} | always |\n\
         | of which Tern's `Session` struct besides its `Rtc` (`size_of`, inline in its box; the rest of its media state is made when audio flows) | {:.1} | always |\n\
         | Opus encoder, mono (C heap, `opus_encoder_get_size`; RSS, not the counted heap) | {:.1} | from the first reply frame to the end of the call |\n\
         | Opus decoder, mono (C heap, `opus_decoder_get_size`) | {:.1} | from the first Opus packet to the end of the call |\n\n\
         The connected state (DTLS records and keys, SRTP contexts, SCTP association and the data\n\
         channel's buffers) is the idle report's heap per session less the second row.\n",
        std::env::args().collect::<Vec<_>>().join(" "),
        kib(rtc),
        kib(session_total),
        kib((std::mem::size_of::<Session>() - std::mem::size_of::<str0m::Rtc>()) as f64),
        kib(encoder),
        kib(decoder),
    );
    if let Some(out) = &out {
        std::fs::write(out, &text)?;
    }
    println!("{text}");
    Ok(())
}
