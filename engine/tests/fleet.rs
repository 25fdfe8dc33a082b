//! Fleet membership on a real Redis (Debian's `redis-server`, one per test on a free port) with
//! the real binary: nodes register with a TTL and unique ids, list their calls in the directory
//! while they live, leave within the TTL when they die, show draining, and keep serving while
//! Redis is down, rejoining when it returns.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::process::{free_port, TernProcess};
use common::redis::Redis;
use common::udp_client::UdpClient;
use common::{hang_up, http, load_wav, metric};

fn node(redis: &Redis, id: u16, extra: &[&str]) -> TernProcess {
    let id = id.to_string();
    let url = redis.url();
    let mut args = vec!["--cores", "0", "--fleet", &url, "--node-id", &id];
    args.extend_from_slice(extra);
    TernProcess::start(&args)
}

fn record(v: Option<&str>) -> serde_json::Value {
    serde_json::from_str(v.unwrap_or("null")).unwrap()
}

#[test]
fn nodes_register_with_unique_ids() {
    let redis = Redis::start();
    let a = node(&redis, 1, &[]);
    let r = record(
        redis
            .wait_for("tern:node:1", Duration::from_secs(5), |v| v.is_some())
            .as_deref(),
    );
    assert_eq!(r["node"], 1);
    assert_eq!(r["state"], "serving");
    assert_eq!(r["internal"], a.http.to_string());
    assert_eq!(r["sessions"], 0);
    assert!(r["capacity_left"].as_u64().unwrap() > 0);
    assert!(r["public"].as_str().unwrap().starts_with("127.0.0.1:"));

    // A second live node with the same id is refused at start, with the reason.
    let url = redis.url();
    let udp = free_port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args([
            "serve",
            "--cores",
            "0",
            "--http",
            "127.0.0.1:0",
            "--udp-port",
            &udp,
        ])
        .args(["--udp-bind", "127.0.0.1", "--public-ip", "127.0.0.1"])
        .args(["--fleet", &url, "--node-id", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--node-id 1 is held by a live node"), "{err}");

    // Another id joins beside it.
    let _b = node(&redis, 2, &[]);
    redis.wait_for("tern:node:2", Duration::from_secs(5), |v| v.is_some());
    assert!(redis.get("tern:node:1").is_some());
    assert_eq!(metric(&metrics(&a), "tern_fleet_registered", ""), 1.0);
}

#[test]
fn calls_are_listed_while_they_live_and_a_dead_node_leaves_within_its_ttl() {
    let redis = Redis::start();
    let mut a = node(
        &redis,
        3,
        &["--drain-timeout", "60", "--fleet-call-ttl-s", "3"],
    );
    redis.wait_for("tern:node:3", Duration::from_secs(5), |v| v.is_some());
    let mut c = UdpClient::connect(a.http, load_wav("hello-24k.wav").1);
    assert!(c.run_until(Duration::from_secs(10), |cl| cl.channel_open));
    let id = c.call_id();
    let key = format!("tern:call:{id}");
    assert_eq!(
        redis
            .wait_for(&key, Duration::from_secs(3), |v| v.is_some())
            .as_deref(),
        Some("3"),
        "the directory names the owner"
    );
    redis.wait_for("tern:node:3", Duration::from_secs(3), |v| {
        record(v)["sessions"] == 1
    });
    assert_eq!(hang_up(a.http, &id), 204);
    redis.wait_for(&key, Duration::from_secs(3), |v| v.is_none());

    // Draining shows in the record; a node that dies leaves within its TTL.
    let mut c2 = UdpClient::connect(a.http, load_wav("hello-24k.wav").1);
    assert!(c2.run_until(Duration::from_secs(10), |cl| cl.channel_open));
    let key2 = format!("tern:call:{}", c2.call_id());
    redis.wait_for(&key2, Duration::from_secs(3), |v| v == Some("3"));
    // Refreshed while the call lives: still there after two TTLs.
    c2.run_until(Duration::from_secs(6), |_| false);
    assert_eq!(
        redis.get(&key2).as_deref(),
        Some("3"),
        "a live call stays listed"
    );
    a.signal(libc::SIGTERM);
    redis.wait_for("tern:node:3", Duration::from_secs(3), |v| {
        record(v)["state"] == "draining"
    });
    a.signal(libc::SIGKILL);
    a.wait_exit(Duration::from_secs(5)).unwrap();
    let t0 = Instant::now();
    redis.wait_for("tern:node:3", Duration::from_secs(7), |v| v.is_none());
    println!("dead node left the fleet after {:?}", t0.elapsed());
    // Its call was never ended; its directory entry expires with the TTL.
    redis.wait_for(&key2, Duration::from_secs(4), |v| v.is_none());
}

#[test]
fn redis_down_degrades_and_the_node_rejoins_when_it_returns() {
    let mut redis = Redis::start();
    let port = redis.port;
    let a = node(&redis, 4, &[]);
    redis.wait_for("tern:node:4", Duration::from_secs(5), |v| v.is_some());
    redis.kill();

    // Calls go on and new ones are taken locally.
    let mut c = UdpClient::connect(a.http, load_wav("hello-24k.wav").1);
    assert!(c.run_until(Duration::from_secs(10), |cl| cl.channel_open));
    let t0 = Instant::now();
    while metric(&metrics(&a), "tern_fleet_degraded", "") != 1.0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "{}", metrics(&a));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        a.log().matches("Redis unreachable").count() == 1,
        "logged once:\n{}",
        a.log()
    );

    // Redis comes back empty: the node re-registers and republishes its live call.
    let redis = Redis::start_on(port);
    redis.wait_for("tern:node:4", Duration::from_secs(5), |v| v.is_some());
    let key = format!("tern:call:{}", c.call_id());
    redis.wait_for(&key, Duration::from_secs(3), |v| v == Some("4"));
    let m = metrics(&a);
    assert_eq!(metric(&m, "tern_fleet_degraded", ""), 0.0);
    assert_eq!(metric(&m, "tern_fleet_rejoins_total", ""), 1.0);
    // The call lived through it all.
    assert!(c.run_until(Duration::from_secs(15), |cl| {
        cl.event_types()
            .iter()
            .any(|t| t == "output_audio_buffer.stopped")
    }));
}

#[test]
fn a_hangup_sent_to_any_node_reaches_the_owner() {
    let redis = Redis::start();
    let secret = ["--fleet-secret", "fleet-test-secret"];
    let a = node(&redis, 5, &secret);
    let b = node(&redis, 6, &secret);
    redis.wait_for("tern:node:6", Duration::from_secs(5), |v| v.is_some());
    let mut c = UdpClient::connect(a.http, load_wav("hello-24k.wav").1);
    assert!(c.run_until(Duration::from_secs(10), |cl| cl.channel_open));
    let id = c.call_id();
    redis.wait_for(&format!("tern:call:{id}"), Duration::from_secs(3), |v| {
        v == Some("5")
    });
    // Node 6 forwards the hangup to node 5, and answers as node 5 did.
    assert_eq!(hang_up(b.http, &id), 204);
    assert_eq!(
        metric(&metrics(&a), "tern_sessions", ""),
        0.0,
        "ended on its owner"
    );
    redis.wait_for(&format!("tern:call:{id}"), Duration::from_secs(3), |v| {
        v.is_none()
    });
    // Once gone, the call is unknown on every node.
    let (s, _, body) = http(
        b.http,
        "POST",
        &format!("/v1/realtime/calls/{id}/hangup"),
        None,
        b"",
    );
    assert_eq!(s, 404, "{}", String::from_utf8_lossy(&body));
    assert_eq!(hang_up(a.http, &id), 404);
    // A forged call id naming node 5 costs node 5 nothing: node 6 refuses it itself.
    let mut forged = id.clone().into_bytes();
    let last = forged.last_mut().unwrap();
    *last = if *last == b'0' { b'1' } else { b'0' };
    assert_eq!(hang_up(b.http, std::str::from_utf8(&forged).unwrap()), 404);
}

#[test]
fn offers_to_a_full_or_draining_node_are_answered_by_another() {
    let redis = Redis::start();
    let secret = ["--fleet-secret", "fleet-test-secret"];
    let a = node(
        &redis,
        7,
        &[
            secret[0],
            secret[1],
            "--max-sessions",
            "1",
            "--drain-timeout",
            "60",
        ],
    );
    let b = node(&redis, 8, &secret);
    redis.wait_for("tern:node:8", Duration::from_secs(5), |v| v.is_some());
    // Node 7's placement reads the fleet's records once a second.
    std::thread::sleep(Duration::from_millis(1500));
    let node_of = |c: &UdpClient| {
        tern_engine::core::session_id::SessionId::parse_call_id(&c.call_id())
            .unwrap()
            .node
    };
    let mut first = UdpClient::connect(a.http, load_wav("hello-24k.wav").1);
    assert!(first.run_until(Duration::from_secs(10), |cl| cl.channel_open));
    assert_eq!(node_of(&first), 7, "room here: answered here");

    // Node 7 is full: the offer sent to it is answered by node 8, and the call runs there.
    let mut second = UdpClient::connect(a.http, load_wav("hello-24k.wav").1);
    assert!(second.run_until(Duration::from_secs(10), |cl| cl.channel_open));
    assert_eq!(node_of(&second), 8);
    assert_eq!(metric(&metrics(&b), "tern_sessions", ""), 1.0);
    let m = metrics(&a);
    assert_eq!(
        metric(&m, "tern_placements_total", "reason=\"full\""),
        1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "tern_placements_total", "reason=\"local\""), 1.0);

    // Node 7 drains: new offers go to node 8 instead of a 503.
    a.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    let mut third = UdpClient::connect(a.http, load_wav("hello-24k.wav").1);
    assert!(third.run_until(Duration::from_secs(10), |cl| cl.channel_open));
    assert_eq!(node_of(&third), 8);
    assert_eq!(
        metric(&metrics(&a), "tern_placements_total", "reason=\"draining\""),
        1.0
    );
    // Its own call goes on while it drains: the echo of the first client's speech comes back.
    assert!(first.run_until(Duration::from_secs(15), |cl| cl.audible_frames() >= 30));
    assert_eq!(metric(&metrics(&a), "tern_sessions", ""), 1.0);
    // Once that call ends, the drain is over and the node exits.
    let mut a = a;
    assert_eq!(hang_up(a.http, &first.call_id()), 204);
    assert!(
        a.wait_exit(Duration::from_secs(10)).is_some(),
        "a drained node exits when its last call ends"
    );
}

fn metrics(t: &TernProcess) -> String {
    String::from_utf8(http(t.http, "GET", "/metrics", None, b"").2).unwrap()
}
