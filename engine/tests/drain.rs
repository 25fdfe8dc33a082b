//! Graceful drain of the real `tern` binary: the first SIGTERM stops new calls (503 with
//! Retry-After, /readyz 503 while /healthz stays 200) while live sessions go on; the process exits when they end or
//! when --drain-timeout passes (sessions then get a `server_shutdown` event). A second signal
//! exits at once.

use crate::common;

use std::time::Duration;

use common::process::TernProcess;
use common::udp_client::UdpClient;
use common::{hang_up, http, load_wav};

fn start(drain_timeout: u64) -> TernProcess {
    TernProcess::start(&[
        "--cores",
        "0",
        "--drain-timeout",
        &drain_timeout.to_string(),
    ])
}

fn open_call(t: &TernProcess) -> UdpClient {
    let mut c = UdpClient::connect(t.http, load_wav("hello-24k.wav").1);
    assert!(c.run_until(Duration::from_secs(10), |cl| cl.channel_open));
    c
}

#[test]
fn drain_refuses_new_calls_and_lets_a_live_call_finish() {
    let mut t = start(60);
    let mut c = open_call(&t);
    assert_eq!(http(t.http, "GET", "/readyz", None, b"").0, 200);
    t.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));

    let (s, headers, body) = http(
        t.http,
        "POST",
        "/v1/realtime/calls",
        Some("application/sdp"),
        b"v=0",
    );
    assert_eq!(s, 503, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("draining"));
    assert!(
        headers.iter().any(|(k, v)| k == "retry-after" && v == "5"),
        "{headers:?}"
    );
    let (s, _, body) = http(t.http, "GET", "/healthz", None, b"");
    assert_eq!(
        (s, String::from_utf8_lossy(&body).as_ref()),
        (200, r#"{"status":"ok","draining":true}"#),
        "liveness stays about the process"
    );
    let (s, _, body) = http(t.http, "GET", "/readyz", None, b"");
    assert_eq!(
        (s, String::from_utf8_lossy(&body).contains("draining")),
        (503, true),
        "not ready while draining"
    );

    // The live call still completes a whole turn during the drain.
    assert!(c.run_until(Duration::from_secs(20), |cl| {
        cl.event_types()
            .iter()
            .any(|e| e == "output_audio_buffer.stopped")
    }));
    assert!(c.client.audible_frames() > 50);
    assert!(
        t.child.try_wait().unwrap().is_none(),
        "still serving the live call"
    );

    // When the last call hangs up, the process exits cleanly without waiting for the timeout.
    let call = c.call_id();
    assert_eq!(hang_up(t.http, &call), 204);
    let status = t
        .wait_exit(Duration::from_secs(5))
        .expect("exits after the last call");
    assert!(status.success(), "{status:?}");
}

#[test]
fn drain_timeout_closes_calls_with_an_event() {
    let mut t = start(2);
    let mut c = open_call(&t);
    t.signal(libc::SIGTERM);
    let got = c.run_until(Duration::from_secs(6), |cl| {
        !cl.events_of("error").is_empty()
    });
    assert!(got, "events {:?}", c.client.event_types());
    assert_eq!(
        c.client.events_of("error")[0]["error"]["code"],
        "server_shutdown"
    );
    let status = t
        .wait_exit(Duration::from_secs(5))
        .expect("exits after the drain timeout");
    assert!(status.success(), "{status:?}");
}

#[test]
fn second_signal_exits_at_once() {
    let mut t = start(60);
    let _c = open_call(&t);
    t.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    t.signal(libc::SIGINT);
    let status = t.wait_exit(Duration::from_secs(2)).expect("exits at once");
    assert_eq!(status.code(), Some(130));
}
