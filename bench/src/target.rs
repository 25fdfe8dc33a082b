//! What the bench measures: Tern (`tern serve`, echo agent) or a local Janus (EchoTest, or
//! AudioBridge with two clients per room so that every packet is decoded, mixed and re-encoded).
//! Each target starts its server pinned to the engine cores and answers a client's offer.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::util::{http_json, http_with_location, Metrics};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum TargetKind {
    Tern,
    JanusEchotest,
    JanusAudiobridge,
}

impl TargetKind {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "tern" => TargetKind::Tern,
            "janus-echotest" => TargetKind::JanusEchotest,
            "janus-audiobridge" => TargetKind::JanusAudiobridge,
            _ => {
                bail!("--target takes tern, janus-echotest or janus-audiobridge (comma-separated)")
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Tern => "tern",
            TargetKind::JanusEchotest => "janus-echotest",
            TargetKind::JanusAudiobridge => "janus-audiobridge",
        }
    }

    /// Whether the target answers a finished turn with a reply (else it returns audio as it goes).
    pub fn replies_after_turn(self) -> bool {
        self == TargetKind::Tern
    }

    /// Janus's AudioBridge does not do data channels.
    pub fn data_channel(self) -> bool {
        self != TargetKind::JanusAudiobridge
    }
}

/// How to end one session.
pub enum Hangup {
    Tern(String),
    Janus(u64),
}

/// A running server of one target kind.
pub struct Target {
    pub kind: TargetKind,
    child: Child,
    pub http: SocketAddr,
    /// Where the server's media lives (clients bind on this address).
    pub media_ip: Ipv4Addr,
    _dir: Option<TempDir>,
}

impl Drop for Target {
    fn drop(&mut self) {
        // SIGTERM first so Janus can leave cleanly, then make sure.
        // SAFETY: plain syscall on our child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The HTTP addresses the bench's servers listen on, and Tern's media port.
pub const TERN_HTTP: &str = crate::util::HTTP;
const JANUS_HTTP: &str = "127.0.0.1:18088";
const TERN_UDP_PORT: &str = "13478";

pub struct ServerOpts<'a> {
    pub tern: &'a str,
    /// `--cores` list for tern; `taskset -c` list for Janus.
    pub cores: &'a str,
    pub steering: &'a str,
    pub extra: &'a [String],
}

impl Target {
    pub fn start(kind: TargetKind, o: &ServerOpts) -> anyhow::Result<Self> {
        // SO_REUSEPORT would let us bind beside a leftover server and measure it instead.
        for addr in [TERN_HTTP, JANUS_HTTP] {
            if std::net::TcpStream::connect(addr).is_ok() {
                bail!("another server already listens on {addr}: stop it first");
            }
        }
        let t = match kind {
            TargetKind::Tern => Target::start_tern(o)?,
            _ => Target::start_janus(kind, o)?,
        };
        let started = Instant::now();
        while !t.ready() {
            if started.elapsed() > Duration::from_secs(20) {
                let log = t
                    ._dir
                    .as_ref()
                    .and_then(|d| std::fs::read_to_string(d.0.join("janus.log")).ok())
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                bail!(
                    "{} did not come up\n{}",
                    kind.name(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        Ok(t)
    }

    fn start_tern(o: &ServerOpts) -> anyhow::Result<Self> {
        let child = Command::new(o.tern)
            .args(["serve", "--cores", o.cores, "--http", TERN_HTTP])
            .args(["--udp-port", TERN_UDP_PORT, "--public-ip", "127.0.0.1"])
            .args(["--max-sessions", "100000", "--max-offers-per-ip", "0"])
            .args(["--steering", o.steering])
            .args(o.extra)
            .env("RUST_LOG", "warn")
            .spawn()
            .with_context(|| format!("starting {} (cargo build --release)", o.tern))?;
        Ok(Target {
            kind: TargetKind::Tern,
            child,
            http: TERN_HTTP.parse()?,
            media_ip: Ipv4Addr::LOCALHOST,
            _dir: None,
        })
    }

    /// Janus from Debian's package, with a config written here: HTTP on loopback, only the
    /// plugin under test, no session timeout. libnice never gathers loopback addresses, so Janus's
    /// ICE is pinned to the host's own address (`ice_enforce_list`): the traffic still never
    /// leaves the host (the kernel routes it over `lo`).
    fn start_janus(kind: TargetKind, o: &ServerOpts) -> anyhow::Result<Self> {
        let media_ip = host_ipv4().context("Janus needs a non-loopback IPv4 address")?;
        let dir =
            TempDir(std::env::temp_dir().join(format!("tern-bench-janus-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0)?;
        let plugin = if kind == TargetKind::JanusEchotest {
            "echotest"
        } else {
            "audiobridge"
        };
        let all = [
            "audiobridge",
            "duktape",
            "echotest",
            "lua",
            "nosip",
            "recordplay",
            "sip",
            "streaming",
            "textroom",
            "videocall",
            "videoroom",
            "voicemail",
        ];
        let disabled: Vec<String> = all
            .iter()
            .filter(|p| **p != plugin)
            .map(|p| format!("libjanus_{p}.so"))
            .collect();
        let lib = "/usr/lib/x86_64-linux-gnu/janus";
        let cfg = format!(
            "general: {{\n configs_folder = \"{d}\"\n plugins_folder = \"{lib}/plugins\"\n transports_folder = \"{lib}/transports\"\n events_folder = \"{d}/none\"\n loggers_folder = \"{d}/none\"\n debug_level = 2\n session_timeout = 0\n}}\n\
             media: {{\n rtp_port_range = \"20000-60000\"\n}}\n\
             nat: {{\n ice_enforce_list = \"{media_ip}\"\n ignore_mdns = true\n}}\n\
             plugins: {{\n disable = \"{}\"\n}}\n\
             transports: {{\n disable = \"libjanus_websockets.so,libjanus_pfunix.so,libjanus_mqtt.so,libjanus_rabbitmq.so,libjanus_nanomsg.so\"\n}}\n",
            disabled.join(","),
            d = dir.0.display(),
        );
        std::fs::write(dir.0.join("janus.jcfg"), cfg)?;
        let (ip, port) = JANUS_HTTP.split_once(':').context("address")?;
        std::fs::write(
            dir.0.join("janus.transport.http.jcfg"),
            format!("general: {{\n json = \"compact\"\n base_path = \"/janus\"\n http = true\n port = {port}\n ip = \"{ip}\"\n}}\nadmin: {{\n admin_http = false\n}}\n"),
        )?;
        std::fs::write(
            dir.0.join(format!("janus.plugin.{plugin}.jcfg")),
            "general: {\n}\n",
        )?;
        let child = Command::new("taskset")
            .args(["-c", o.cores, "janus", "-F"])
            .arg(&dir.0)
            .arg("-C")
            .arg(dir.0.join("janus.jcfg"))
            .stdout(std::fs::File::create(dir.0.join("janus.log"))?)
            .spawn()
            .context("starting janus (scripts/bench.sh installs it: apt-get install janus)")?;
        Ok(Target {
            kind,
            child,
            http: JANUS_HTTP.parse()?,
            media_ip,
            _dir: Some(dir),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn ready(&self) -> bool {
        match self.kind {
            TargetKind::Tern => crate::util::http(self.http, "GET", "/healthz", b"").is_ok(),
            _ => http_json(self.http, "GET", "/janus/info", &Value::Null).is_ok(),
        }
    }

    /// Tern's /metrics (None for Janus, which has none).
    pub fn metrics(&self) -> Option<Metrics> {
        match self.kind {
            TargetKind::Tern => Metrics::fetch(self.http).ok(),
            _ => None,
        }
    }

    /// Sends `offer` for client number `index`; returns the answer and how to hang up.
    pub fn offer(&self, index: usize, offer: &str) -> anyhow::Result<(String, Hangup)> {
        match self.kind {
            TargetKind::Tern => {
                let (status, location, body) =
                    http_with_location(self.http, "POST", "/v1/realtime/calls", offer.as_bytes())?;
                if status != 201 {
                    bail!("offer refused: {status} {}", String::from_utf8_lossy(&body));
                }
                let answer = String::from_utf8(body).context("answer is not UTF-8")?;
                Ok((
                    answer,
                    Hangup::Tern(location.context("201 without Location")?),
                ))
            }
            _ => self.janus_offer(index, offer),
        }
    }

    fn janus_offer(&self, index: usize, offer: &str) -> anyhow::Result<(String, Hangup)> {
        let tx = |s: &str| format!("{s}-{index}");
        let id = |v: &Value| v["data"]["id"].as_u64().context("Janus gave no id");
        let session = id(&http_json(
            self.http,
            "POST",
            "/janus",
            &json!({"janus": "create", "transaction": tx("c")}),
        )?)?;
        let plugin = match self.kind {
            TargetKind::JanusEchotest => "janus.plugin.echotest",
            _ => "janus.plugin.audiobridge",
        };
        let spath = format!("/janus/{session}");
        let handle = id(&http_json(
            self.http,
            "POST",
            &spath,
            &json!({"janus": "attach", "plugin": plugin, "transaction": tx("a")}),
        )?)?;
        let hpath = format!("{spath}/{handle}");
        let body = match self.kind {
            TargetKind::JanusEchotest => json!({"audio": true, "video": false}),
            _ => {
                // Two clients per room: whichever of a pair comes first creates it (486: exists).
                let room = 1000 + index / 2;
                let r = http_json(
                    self.http,
                    "POST",
                    &hpath,
                    &json!({"janus": "message", "transaction": tx("r"),
                    "body": {"request": "create", "room": room, "sampling_rate": 24000, "audiolevel_event": false}}),
                )?;
                let data = &r["plugindata"]["data"];
                if data["audiobridge"].as_str() != Some("created") && data["error_code"] != 486 {
                    bail!("AudioBridge room not created: {r}");
                }
                json!({"request": "join", "room": room, "muted": false})
            }
        };
        let ack = http_json(
            self.http,
            "POST",
            &hpath,
            &json!({"janus": "message", "transaction": tx("o"),
            "body": body, "jsep": {"type": "offer", "sdp": offer}}),
        )?;
        if ack["janus"] == "error" {
            bail!("Janus refused the offer: {ack}");
        }
        // The answer comes as an event on the session's long poll.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let evs = http_json(self.http, "GET", &format!("{spath}?maxev=10"), &Value::Null)?;
            let list = if evs.is_array() {
                evs.as_array().cloned().unwrap_or_default()
            } else {
                vec![evs]
            };
            for ev in list {
                if let Some(sdp) = ev["jsep"]["sdp"].as_str() {
                    return Ok((sdp.to_string(), Hangup::Janus(session)));
                }
                if ev["plugindata"]["data"]["error"].is_string() {
                    bail!("Janus plugin error: {ev}");
                }
            }
        }
        bail!("no answer from Janus in 10 s")
    }

    pub fn hang_up(&self, h: &Hangup) {
        match h {
            Hangup::Tern(location) => {
                let _ = crate::util::http(self.http, "DELETE", location, b"");
            }
            Hangup::Janus(session) => {
                let _ = http_json(
                    self.http,
                    "POST",
                    &format!("/janus/{session}"),
                    &json!({"janus": "destroy", "transaction": "d"}),
                );
            }
        }
    }
}

/// The host's first non-loopback IPv4 address (from the default route's source).
fn host_ipv4() -> Option<Ipv4Addr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("8.8.8.8:53").ok()?;
    match s.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(v) if !v.is_loopback() && !v.is_unspecified() => Some(v),
        _ => None,
    }
}
