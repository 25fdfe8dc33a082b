//! The real `tern` binary as a child process on free local ports, with its log in a file.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct TernProcess {
    pub child: Child,
    pub http: SocketAddr,
    log: PathBuf,
}

pub fn free_port() -> u16 {
    // A UDP and a TCP socket on the same number: `--udp-port` and ICE-TCP share it by default.
    loop {
        let t = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = t.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl TernProcess {
    /// `tern serve` on loopback with `args` added (`--cores`, `--drain-timeout`, ...); returns once
    /// HTTP answers. The log (RUST_LOG=info) goes to a temp file, read with `log()`.
    pub fn start(args: &[&str]) -> Self {
        let http_port = free_port();
        // Not the HTTP port again (it is free once its probe closes): ICE-TCP listens there.
        let udp_port = std::iter::repeat_with(free_port)
            .find(|&p| p != http_port)
            .expect("a second free port");
        let log =
            std::env::temp_dir().join(format!("tern-test-{}-{http_port}.log", std::process::id()));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_tern"))
            .args([
                "serve",
                "--udp-bind",
                "127.0.0.1",
                "--public-ip",
                "127.0.0.1",
            ])
            .args(["--http", &format!("127.0.0.1:{http_port}")])
            .args(["--udp-port", &udp_port.to_string()])
            .args(args)
            .env("RUST_LOG", "info")
            .stderr(Stdio::from(file))
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn tern");
        let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().expect("addr");
        let mut t = TernProcess { child, http, log };
        let t0 = Instant::now();
        while std::net::TcpStream::connect(http).is_err() {
            if let Some(s) = t.child.try_wait().expect("try_wait") {
                panic!("tern exited at start ({s}):\n{}", t.log());
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "tern did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        t
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TernProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
