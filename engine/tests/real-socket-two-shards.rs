//! Scenario on real sockets: two shards in one SO_REUSEPORT group on loopback. A str0m client POSTs
//! its offer over HTTP, connects over UDP, speaks a turn and hears the echo. The session must end up
//! on the shard that receives its datagrams, and nothing is forwarded between shards after setup.

use crate::common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{http, load_wav, metric, Client};

#[test]
fn turn_over_http_and_udp_on_two_shards() {
    let engine = common::engine::start(2, 16);
    let (_, speech) = load_wav("hello-24k.wav");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(2)))
        .unwrap();
    let t0 = Instant::now();
    let (mut client, offer) = Client::new(t0, sock.local_addr().unwrap(), speech);

    let (status, headers, body) = http(
        engine.http,
        "POST",
        "/v1/realtime/calls",
        Some("application/sdp"),
        offer.as_bytes(),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let location = headers
        .iter()
        .find(|(k, _)| k == "location")
        .map(|(_, v)| v.clone())
        .expect("Location");
    assert!(
        location.starts_with("/v1/realtime/calls/rtc_"),
        "{location}"
    );
    client.accept_answer(std::str::from_utf8(&body).unwrap());

    let mut buf = [0u8; 2048];
    let mut forwarded_after_setup: Option<f64> = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let now = Instant::now();
        for (to, d) in client.poll(now) {
            sock.send_to(&d, to).unwrap();
        }
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            client.receive(Instant::now(), from, &buf[..n]);
        }
        if client.channel_open && forwarded_after_setup.is_none() {
            let (_, _, m) = http(engine.http, "GET", "/metrics", None, b"");
            forwarded_after_setup = Some(metric(
                &String::from_utf8_lossy(&m),
                "tern_datagrams_forwarded_total",
                "",
            ));
        }
        if client
            .event_types()
            .iter()
            .any(|t| t == "output_audio_buffer.stopped")
        {
            break;
        }
    }
    let types = client.event_types();
    assert!(
        types.iter().any(|t| t == "output_audio_buffer.stopped"),
        "full turn and reply; events: {types:?}"
    );
    assert!(
        client.audible_frames() > 50,
        "heard the echo ({} audible frames)",
        client.audible_frames()
    );

    let (_, _, m) = http(engine.http, "GET", "/metrics", None, b"");
    let m = String::from_utf8_lossy(&m).to_string();
    // Exactly one shard holds the session, and it is the one that received the datagrams.
    let owner = (0..2)
        .find(|s| metric(&m, "tern_sessions", &format!("shard=\"{s}\"")) == 1.0)
        .expect("a shard owns the session");
    let other = 1 - owner;
    assert_eq!(
        metric(&m, "tern_sessions", &format!("shard=\"{other}\"")),
        0.0
    );
    let in_owner = metric(&m, "tern_datagrams_in_total", &format!("shard=\"{owner}\""));
    let in_other = metric(&m, "tern_datagrams_in_total", &format!("shard=\"{other}\""));
    assert!(
        in_owner > 100.0 && in_other == 0.0,
        "owner got {in_owner}, other {in_other}"
    );
    let fwd_end = metric(&m, "tern_datagrams_forwarded_total", "");
    assert_eq!(
        Some(fwd_end),
        forwarded_after_setup,
        "no datagram forwarded after setup"
    );
    assert!(
        metric(&m, "tern_uplink_latency_seconds_count", "") > 100.0,
        "uplink latency measured"
    );
    assert!(
        metric(&m, "tern_downlink_latency_seconds_count", "") > 50.0,
        "downlink latency measured"
    );
    assert_eq!(metric(&m, "tern_setup_latency_seconds_count", ""), 1.0);
    // Every reply frame after a talkspurt's first is paced against a tick and measured.
    assert!(
        metric(&m, "tern_pacing_lateness_seconds_count", "") > 50.0,
        "pacing lateness measured"
    );
    // The session moved exactly when it was answered on the other shard.
    let call_id = location.rsplit('/').next().unwrap();
    let home = tern_engine::core::session_id::SessionId::parse_call_id(call_id)
        .unwrap()
        .shard as usize;
    let moved = if home == owner { 0.0 } else { 1.0 };
    assert_eq!(metric(&m, "tern_handoffs_in_total", ""), moved);
    assert_eq!(
        metric(&m, "tern_handoffs_out_total", &format!("shard=\"{home}\"")),
        moved
    );
    assert_eq!(metric(&m, "tern_handoffs_failed_total", ""), 0.0);
    // The turn's latency breakdown: one event to the client, the same figures in /metrics.
    let breakdown = client.events_of("tern.turn.latency");
    assert_eq!(breakdown.len(), 1, "{types:?}");
    assert_eq!(
        metric(&m, "tern_turns_total", "rule=\"silence_timer\""),
        1.0
    );
    assert_eq!(
        metric(&m, "tern_turn_stage_seconds_count", "stage=\"total\""),
        1.0
    );
    let total_s = breakdown[0]["total_us"].as_u64().unwrap() as f64 / 1e6;
    let scraped = metric(
        &m,
        "tern_turn_stage_seconds",
        "stage=\"total\",quantile=\"0.5\"",
    );
    assert!(
        (scraped - total_s).abs() <= total_s * 0.002 + 2e-6,
        "metrics {scraped} s, event {total_s} s"
    );
    println!(
        "handoffs in: {}, setup p50 {} s, pacing lateness p99 {} s",
        metric(&m, "tern_handoffs_in_total", ""),
        metric(&m, "tern_setup_latency_seconds", "quantile=\"0.5\""),
        metric(&m, "tern_pacing_lateness_seconds", "quantile=\"0.99\"")
    );

    // Hang up: 204, then 404 for the same id.
    let (s1, _, _) = http(engine.http, "DELETE", &location, None, b"");
    assert_eq!(s1, 204);
    let (s2, _, b2) = http(
        engine.http,
        "POST",
        &format!("{location}/hangup"),
        None,
        b"",
    );
    assert_eq!(s2, 404, "{}", String::from_utf8_lossy(&b2));
    engine.stop();
    engine.join();
}
