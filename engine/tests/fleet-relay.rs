//! A fleet behind one public UDP address: a real `redis-server`, three `tern serve` nodes with
//! `--advertise-relay`, and one `tern relay` on loopback ports, with real WebRTC clients (the
//! project's str0m peer; aiortc in the interop phase) whose only candidate is the relay. They
//! hear their echo through it; forged ufrags die at the relay; a relay restart mid-call loses no
//! call; Redis going away leaves relayed calls (and new ones) running; a dead node leaves the
//! relay's table within its TTL.

use crate::common;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{free_port, TernProcess};
use common::redis::Redis;
use common::udp_client::UdpClient;
use common::{hang_up, http, load_wav, metric};
use tern_engine::core::session_id::{SessionId, TagKey};
use tern_testkit::peer::binding_request;

const SECRET: &str = "relay-test-fleet-secret";

struct RelayProcess {
    child: Child,
    http: SocketAddr,
    log: PathBuf,
}

impl RelayProcess {
    fn start(redis: &Redis, udp_port: u16, internal_port: u16) -> Self {
        let http_port = free_port();
        let log = std::env::temp_dir().join(format!("tern-relay-{http_port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(["relay", "--cores", "0", "--udp-bind", "127.0.0.1"])
            .args(["--fleet", &redis.url(), "--fleet-secret", SECRET])
            .args(["--udp-port", &udp_port.to_string()])
            .args(["--internal-addr", &format!("127.0.0.1:{internal_port}")])
            .args(["--http", &format!("127.0.0.1:{http_port}")])
            .env("RUST_LOG", "info")
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn tern relay");
        let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
        let mut r = RelayProcess { child, http, log };
        let t0 = Instant::now();
        while std::net::TcpStream::connect(http).is_err() {
            if let Some(s) = r.child.try_wait().unwrap() {
                panic!("tern relay exited at start ({s}):\n{}", r.log());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "relay did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    fn metrics(&self) -> String {
        String::from_utf8(http(self.http, "GET", "/metrics", None, b"").2).unwrap()
    }

    fn wait_nodes(&self, n: f64, within: Duration) {
        let t0 = Instant::now();
        while metric(&self.metrics(), "tern_relay_nodes", "") != n {
            assert!(
                t0.elapsed() < within,
                "relay lists {} nodes, want {n}",
                metric(&self.metrics(), "tern_relay_nodes", "")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A node behind the relay at `relay_port`.
fn node(redis: &Redis, id: u16, relay_port: u16) -> TernProcess {
    let (id, url) = (id.to_string(), redis.url());
    let relay = format!("127.0.0.1:{relay_port}");
    let ingress = free_port().to_string();
    TernProcess::start(&[
        "--cores",
        "0",
        "--fleet",
        &url,
        "--fleet-secret",
        SECRET,
        "--node-id",
        &id,
        "--advertise-relay",
        &relay,
        "--relay-ingress-port",
        &ingress,
    ])
}

fn metrics(t: &TernProcess) -> String {
    String::from_utf8(http(t.http, "GET", "/metrics", None, b"").2).unwrap()
}

/// Drives the client until its echo has ended (no new audible frame for a second).
fn settle(c: &mut UdpClient) {
    let mut last = (c.client.audible_frames(), Instant::now());
    while last.1.elapsed() < Duration::from_secs(1) {
        c.run_until(Duration::from_millis(100), |_| false);
        let n = c.client.audible_frames();
        if n != last.0 {
            last = (n, Instant::now());
        }
    }
}

fn candidate_port(answer: &str) -> u16 {
    let line = answer
        .lines()
        .find(|l| l.contains("a=candidate"))
        .expect("a candidate in the answer");
    line.split_whitespace().nth(5).unwrap().parse().unwrap()
}

#[test]
fn clients_reach_three_nodes_through_one_relay_and_forgeries_stop_there() {
    let redis = Redis::start();
    let relay_port = free_port();
    let relay = RelayProcess::start(&redis, relay_port, free_port());
    let nodes: Vec<TernProcess> = (1..=3).map(|i| node(&redis, i, relay_port)).collect();
    relay.wait_nodes(3.0, Duration::from_secs(5));

    // One client per node, each offered to its node; every answer names only the relay.
    let speech = load_wav("hello-24k.wav").1;
    let mut clients: Vec<UdpClient> = nodes
        .iter()
        .map(|n| UdpClient::connect(n.http, speech.clone()))
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(candidate_port(&c.answer), relay_port, "node {}", i + 1);
        assert!(
            c.run_until(Duration::from_secs(20), |cl| cl.audible_frames() >= 30),
            "client {} heard {} echo frames through the relay",
            i + 1,
            c.client.audible_frames()
        );
    }
    let m = relay.metrics();
    assert_eq!(metric(&m, "tern_relay_flows", ""), 3.0, "{m}");
    assert!(metric(&m, "tern_relay_to_node_total", "") > 100.0);
    assert!(metric(&m, "tern_relay_to_client_total", "") > 100.0);
    for n in &nodes {
        assert_eq!(metric(&metrics(n), "tern_sessions", ""), 1.0);
    }

    // Forged and foreign ufrags die at the relay; no node sees a datagram of them.
    let dropped_at_nodes = |nodes: &[TernProcess]| -> f64 {
        nodes
            .iter()
            .map(|n| metric(&metrics(n), "tern_datagrams_dropped_total", ""))
            .sum()
    };
    let before = dropped_at_nodes(&nodes);
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let relay_addr: SocketAddr = format!("127.0.0.1:{relay_port}").parse().unwrap();
    let forged = SessionId::sealed(&TagKey::new(b"not the fleet's"), 1, 0, 0, 1, 7);
    let real = SessionId::parse(&clients[0].server_ufrag()).unwrap();
    let tampered = SessionId {
        slot: real.slot + 1,
        ..real
    };
    for _ in 0..50 {
        attacker
            .send_to(&binding_request(&forged.ufrag()), relay_addr)
            .unwrap();
        attacker
            .send_to(&binding_request(&tampered.ufrag()), relay_addr)
            .unwrap();
        attacker.send_to(&[0x80; 60], relay_addr).unwrap();
    }
    std::thread::sleep(Duration::from_millis(400));
    let m = relay.metrics();
    assert_eq!(
        metric(&m, "tern_relay_dropped_total", "reason=\"forged_ufrag\""),
        100.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "tern_relay_dropped_total", "reason=\"no_flow\""),
        50.0
    );
    assert_eq!(dropped_at_nodes(&nodes), before, "forgeries cost no node");

    // A hangup sent to another node than the owner ends the relayed call.
    let call = clients[0].call_id();
    assert_eq!(hang_up(nodes[2].http, &call), 204);
    let t0 = Instant::now();
    while metric(&metrics(&nodes[0]), "tern_sessions", "") != 0.0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "call not ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(hang_up(nodes[1].http, &call), 404);

    // A node that dies leaves the relay's table within its TTL; checks naming it die there.
    let mut nodes = nodes;
    drop(nodes.pop());
    relay.wait_nodes(2.0, Duration::from_secs(8));
    // The shards take the new table on their next tick.
    std::thread::sleep(Duration::from_millis(300));
    let stale = SessionId::parse(&clients[2].server_ufrag()).unwrap();
    attacker
        .send_to(&binding_request(&stale.ufrag()), relay_addr)
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let m = relay.metrics();
    assert!(
        metric(&m, "tern_relay_dropped_total", "reason=\"unknown_node\"") >= 1.0,
        "{m}"
    );
}

#[test]
fn a_relayed_call_survives_a_relay_restart_and_a_redis_outage() {
    let mut redis = Redis::start();
    let (relay_port, internal_port) = (free_port(), free_port());
    let mut relay = RelayProcess::start(&redis, relay_port, internal_port);
    let n = node(&redis, 1, relay_port);
    relay.wait_nodes(1.0, Duration::from_secs(5));
    let speech = load_wav("hello-24k.wav").1;
    let mut c = UdpClient::connect(n.http, speech.clone());
    assert!(c.run_until(Duration::from_secs(20), |cl| cl.audible_frames() >= 30));

    settle(&mut c);

    // Restart the relay on the same ports. Until the client's next consent check (str0m: every
    // 3 s) the new relay knows no flow and drops the client's media; the check rebuilds it.
    relay.kill();
    c.run_until(Duration::from_millis(500), |_| false);
    relay = RelayProcess::start(&redis, relay_port, internal_port);
    let t0 = Instant::now();
    while metric(&relay.metrics(), "tern_relay_flows_created_total", "") < 1.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no consent check rebuilt the flow\n{}",
            relay.metrics()
        );
        c.run_until(Duration::from_millis(100), |_| false);
    }
    let heard = c.client.audible_frames();
    c.client.speak(speech.clone());
    assert!(
        c.run_until(Duration::from_secs(20), |cl| cl.audible_frames()
            >= heard + 30),
        "echo after the relay restart: {} frames, {heard} before\n{}",
        c.client.audible_frames(),
        relay.metrics()
    );
    assert_eq!(metric(&metrics(&n), "tern_sessions", ""), 1.0, "same call");
    assert!(metric(&relay.metrics(), "tern_relay_to_node_total", "") > 30.0);
    settle(&mut c);

    // Redis goes away: the relay keeps routing with its last table, the call goes on.
    redis.kill();
    let t0 = Instant::now();
    while metric(&relay.metrics(), "tern_relay_degraded", "") != 1.0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "relay not degraded");
        std::thread::sleep(Duration::from_millis(100));
    }
    let heard = c.client.audible_frames();
    c.client.speak(speech.clone());
    assert!(
        c.run_until(Duration::from_secs(20), |cl| cl.audible_frames()
            >= heard + 30),
        "echo with Redis down"
    );
    // A new call is taken (locally, degraded) and reaches the node through the relay too.
    let mut c2 = UdpClient::connect(n.http, speech.clone());
    assert!(c2.run_until(Duration::from_secs(20), |cl| cl.audible_frames() >= 30));
    // Redis returns on the same port: the relay leaves the degraded state.
    let redis = Redis::start_on(redis.port);
    let t0 = Instant::now();
    while metric(&relay.metrics(), "tern_relay_degraded", "") != 0.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "relay still degraded"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(redis);
}
