//! The CI-sized soak: waves of sessions that talk, hear the echo and then hang up or vanish
//! (closed by the idle timeout). After every wave the engine holds no session, table slot, armed
//! deadline, ring message or admission, and the heap (counted for this whole test process) is
//! flat from wave to wave. The hour-long run is `tern-bench --mode soak` (perf-reports).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::udp_client::UdpClient;
use common::{hang_up, http, load_wav, metric};
use tern_engine::agent::AgentKind;
use tern_engine::heap::CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc<std::alloc::System> = CountingAlloc(std::alloc::System);

const WAVES: usize = 3;
const PER_WAVE: usize = 6;

#[test]
fn waves_of_sessions_leave_nothing_behind() {
    let e = common::engine::start_with(1, 32, AgentKind::Echo, |c| {
        c.shard.session.limits.idle_timeout = Duration::from_secs(1);
    });
    let speech = load_wav("hello-24k.wav").1;
    let mut heap_after = Vec::new();
    for wave in 0..WAVES {
        let mut clients: Vec<UdpClient> = (0..PER_WAVE)
            .map(|_| UdpClient::connect(e.http, speech.clone()))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(25);
        while Instant::now() < deadline
            && !clients.iter().all(|c| c.has("output_audio_buffer.stopped"))
        {
            for c in clients.iter_mut() {
                c.run_until(Duration::from_millis(2), |_| false);
            }
        }
        for (i, c) in clients.iter().enumerate() {
            assert!(
                c.client.audible_frames() > 100,
                "wave {wave} client {i} heard its echo"
            );
        }
        // Half hang up, half vanish.
        for c in clients.iter().step_by(2) {
            let id = c.call_id();
            assert_eq!(hang_up(e.http, &id), 204);
        }
        drop(clients);
        std::thread::sleep(Duration::from_millis(2500));
        let m = String::from_utf8(http(e.http, "GET", "/metrics", None, b"").2).unwrap();
        for (name, what) in [
            ("tern_sessions", "sessions"),
            ("tern_session_slots", "table slots"),
            ("tern_deadlines_armed", "armed deadlines"),
            ("tern_ring_queued", "ring messages"),
            ("tern_sessions_admitted", "admissions"),
        ] {
            assert_eq!(
                metric(&m, name, ""),
                0.0,
                "wave {wave}: {what} left behind\n{m}"
            );
        }
        let ended = metric(&m, "tern_sessions_ended_by_total", "");
        assert_eq!(ended, ((wave + 1) * PER_WAVE) as f64);
        heap_after.push(tern_engine::heap::live_bytes());
    }
    // Flat: later waves end where the first one did (allowing allocator-internal noise).
    let first = heap_after[0];
    for (i, h) in heap_after.iter().enumerate() {
        assert!(
            (h - first).abs() < 256 * 1024,
            "heap after wave {i}: {h} bytes vs {first} after wave 0 ({heap_after:?})"
        );
    }
    eprintln!("heap after each wave: {heap_after:?}");
}
