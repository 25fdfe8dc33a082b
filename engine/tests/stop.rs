//! A stop that cannot hang, on the real binary: with two shards, idle and with calls streaming,
//! SIGTERM ends the process cleanly and promptly, again and again. (A stop once hung with an idle
//! shard asleep in `io_uring_enter`; the stop request now rings every shard's doorbell, and the
//! main thread bounds its wait with `--stop-timeout`.)

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::load_wav;
use common::process::TernProcess;
use common::udp_client::UdpClient;

/// Far above a clean stop (tens of milliseconds) and below `--stop-timeout`'s exit, so a stop that
/// only ended through the bound fails here too.
const EXITS_WITHIN: Duration = Duration::from_secs(4);

fn stop_once(round: usize, calls: usize) {
    let mut t = TernProcess::start(&[
        "--cores",
        "0,1",
        "--drain-timeout",
        "0",
        "--stop-timeout",
        "10",
    ]);
    let mut clients: Vec<UdpClient> = (0..calls)
        .map(|_| {
            let mut c = UdpClient::connect(t.http, load_wav("hello-24k.wav").1);
            assert!(c.run_until(Duration::from_secs(10), |cl| cl.channel_open));
            c
        })
        .collect();
    let streaming = AtomicBool::new(true);
    std::thread::scope(|s| {
        // The clients keep talking (audio, consent checks) while the stop arrives.
        let driver = s.spawn(|| {
            while streaming.load(Ordering::Relaxed) {
                for c in clients.iter_mut() {
                    c.run_until(Duration::from_millis(5), |_| false);
                }
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        t.signal(libc::SIGTERM);
        let status = t.wait_exit(EXITS_WITHIN);
        streaming.store(false, Ordering::Relaxed);
        driver.join().unwrap();
        let status = status.unwrap_or_else(|| {
            panic!(
                "round {round} ({calls} calls): no exit within {EXITS_WITHIN:?}\n{}",
                t.log()
            )
        });
        assert!(status.success(), "round {round}: {status:?}\n{}", t.log());
    });
    // Read what the last datagrams carried.
    for c in clients.iter_mut() {
        c.run_until(Duration::from_millis(200), |cl| {
            !cl.events_of("error").is_empty()
        });
    }
    let log = t.log();
    assert!(log.contains("stopped"), "round {round}: {log}");
    assert!(!log.contains("exiting anyway"), "round {round}: {log}");
    for c in &clients {
        let errors = c.client.events_of("error");
        assert!(
            errors
                .iter()
                .any(|e| e["error"]["code"] == "server_shutdown"),
            "round {round}: every live call is told: {:?}",
            c.client.event_types()
        );
    }
}

#[test]
fn idle_two_shards_stop_promptly_every_time() {
    for round in 0..10 {
        stop_once(round, 0);
    }
}

#[test]
fn busy_two_shards_stop_promptly_every_time() {
    for round in 0..4 {
        stop_once(round, 3);
    }
}
