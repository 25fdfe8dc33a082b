//! Graceful drain of the real `tern` binary: the first SIGTERM stops new calls (503 with
//! Retry-After, /healthz draining) while live sessions go on; the process exits when they end or
//! when --drain-timeout passes (sessions then get a `server_shutdown` event). A second signal
//! exits at once.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use common::udp_client::UdpClient;
use common::{http, load_wav};

struct Tern {
    child: Child,
    http: SocketAddr,
}

impl Tern {
    fn start(drain_timeout: u64) -> Self {
        let http_port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let udp_port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_tern"))
            .args([
                "serve",
                "--cores",
                "0",
                "--udp-bind",
                "127.0.0.1",
                "--public-ip",
                "127.0.0.1",
            ])
            .args(["--http", &format!("127.0.0.1:{http_port}")])
            .args(["--udp-port", &udp_port.to_string()])
            .args(["--drain-timeout", &drain_timeout.to_string()])
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
        let t0 = Instant::now();
        while std::net::TcpStream::connect(http).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "tern did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Tern { child, http }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Tern {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn open_call(t: &Tern) -> UdpClient {
    let mut c = UdpClient::connect(t.http, load_wav("hello-24k.wav").1);
    assert!(c.run_until(Duration::from_secs(10), |cl| cl.channel_open));
    c
}

#[test]
fn drain_refuses_new_calls_and_lets_a_live_call_finish() {
    let mut t = Tern::start(60);
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
        (s, String::from_utf8_lossy(&body).contains("draining")),
        (503, true)
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
    let call = c.client.events_of("session.created")[0]["session"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _, _) = http(
        t.http,
        "DELETE",
        &format!("/v1/realtime/calls/{call}"),
        None,
        b"",
    );
    assert_eq!(s, 204);
    let status = t
        .wait_exit(Duration::from_secs(5))
        .expect("exits after the last call");
    assert!(status.success(), "{status:?}");
}

#[test]
fn drain_timeout_closes_calls_with_an_event() {
    let mut t = Tern::start(2);
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
    let mut t = Tern::start(60);
    let _c = open_call(&t);
    t.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    t.signal(libc::SIGINT);
    let status = t.wait_exit(Duration::from_secs(2)).expect("exits at once");
    assert_eq!(status.code(), Some(130));
}
