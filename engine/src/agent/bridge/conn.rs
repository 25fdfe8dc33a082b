//! Backend WebSocket connections, one per session, on a small tokio runtime of the worker's own
//! (never a media core). Reconnect policy: after a failed attempt or a lost connection, retry after
//! 0.5, 1, 2, 4, 8 s; a connection that stayed up for 10 s resets the count; after 5 failures in a
//! row the session's bridge gives up (the WebRTC session stays up, the agent is silent).

use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use super::protocol::WsMsg;
use super::stats;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_FAILURES: u32 = 5;
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Messages queued toward the backend (about 2.5 s of 20 ms frames); more are dropped and counted.
pub const UPLINK_QUEUE: usize = 128;
/// Backend messages buffered toward the agent; when full, reading stops (TCP backpressure).
const DOWNLINK_QUEUE: usize = 4;
/// Largest backend message accepted.
const MAX_MESSAGE: usize = 4 << 20;
/// Kernel send buffer toward the backend (about half a second of appends; Linux doubles it):
/// user audio that a backend cannot take in time is dropped and counted here rather than queued
/// for seconds in the kernel, since stale audio is useless to a real-time model.
const SEND_BUFFER: u32 = 32 << 10;
/// Kernel receive buffer from the backend (about a second of 24 kHz reply audio in base64 JSON):
/// a backend streaming faster than real time is held back by TCP flow control, so per-session
/// kernel memory stays small even with thousands of sessions.
const RECV_BUFFER: u32 = 64 << 10;

/// Where the bridge connects, and with which credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTarget {
    pub url: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
}

/// What the connection task reports to the agent.
#[derive(Debug)]
pub enum ConnEvent {
    Connected,
    Message(WsMsg),
    /// The attempt failed or the connection dropped; a retry follows.
    Disconnected(LinkError),
    /// No more retries.
    GaveUp(LinkError),
}

/// Why a backend connection is not (or no longer) up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("backend write failed: {0}")]
    Write(#[source] tokio_tungstenite::tungstenite::Error),
    #[error("backend closed the connection")]
    Closed,
    #[error("backend connection lost: {0}")]
    Lost(#[source] tokio_tungstenite::tungstenite::Error),
}

/// The agent's end of one session's backend connection. Dropping it closes the connection.
#[derive(Debug)]
pub struct Connection {
    pub tx: mpsc::Sender<WsMsg>,
    pub rx: mpsc::Receiver<ConnEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One runtime thread per worker for all of its sessions' connections.
#[derive(Debug)]
pub struct BridgeRuntime {
    rt: tokio::runtime::Runtime,
}

impl BridgeRuntime {
    pub fn new(worker: u16) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("tern-bridge-{worker}"))
            .enable_all()
            .build()?;
        Ok(BridgeRuntime { rt })
    }

    /// Starts connecting; `waker` is unparked whenever an event is queued for the agent.
    pub fn open(&self, target: Arc<BackendTarget>, waker: Thread) -> Connection {
        let (tx, out_rx) = mpsc::channel(UPLINK_QUEUE);
        let (in_tx, rx) = mpsc::channel(DOWNLINK_QUEUE);
        let task = self.rt.spawn(run(target, out_rx, in_tx, waker));
        Connection { tx, rx, task }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Why a backend connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("bad backend URL {url}: {source}")]
    Url {
        url: String,
        source: tokio_tungstenite::tungstenite::Error,
    },
    #[error("the API key is not a valid header value")]
    ApiKey,
    #[error("cannot connect to {url}: the URL has no host")]
    NoHost { url: String },
    #[error("cannot connect to {url}: resolving {host}: {source}")]
    Resolve {
        url: String,
        host: String,
        source: std::io::Error,
    },
    #[error("cannot connect to {url}: {source}")]
    Tcp { url: String, source: std::io::Error },
    #[error("cannot connect to {url}: {source}")]
    Handshake {
        url: String,
        source: tokio_tungstenite::tungstenite::Error,
    },
    #[error("connecting to {url} timed out")]
    Timeout { url: String },
}

async fn connect(target: &BackendTarget) -> Result<Ws, ConnectError> {
    let url = || target.url.clone();
    let mut req = target
        .url
        .as_str()
        .into_client_request()
        .map_err(|source| ConnectError::Url { url: url(), source })?;
    if let Some(key) = &target.api_key {
        let v =
            HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| ConnectError::ApiKey)?;
        req.headers_mut().insert("Authorization", v);
    }
    let cfg = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let attempt = async {
        let tcp = tcp_connect(&target.url, req.uri()).await?;
        tokio_tungstenite::client_async_tls_with_config(req, tcp, Some(cfg), None)
            .await
            .map(|(ws, _)| ws)
            .map_err(|source| ConnectError::Handshake { url: url(), source })
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout { url: url() }),
    }
}

/// Opens the TCP connection with a small send buffer and no Nagle delay.
async fn tcp_connect(
    url: &str,
    uri: &tokio_tungstenite::tungstenite::http::Uri,
) -> Result<tokio::net::TcpStream, ConnectError> {
    let host = uri
        .host()
        .ok_or_else(|| ConnectError::NoHost { url: url.into() })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tls = uri.scheme_str() == Some("wss");
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let tcp_err = |source| ConnectError::Tcp {
        url: url.into(),
        source,
    };
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| ConnectError::Resolve {
            url: url.into(),
            host: host.into(),
            source,
        })?
    {
        let sock = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(tcp_err)?;
        let _ = sock.set_send_buffer_size(SEND_BUFFER);
        let _ = sock.set_recv_buffer_size(RECV_BUFFER);
        match sock.connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(tcp_err(last))
}

async fn emit(in_tx: &mpsc::Sender<ConnEvent>, waker: &Thread, ev: ConnEvent) -> bool {
    let ok = in_tx.send(ev).await.is_ok();
    waker.unpark();
    ok
}

async fn run(
    target: Arc<BackendTarget>,
    mut out_rx: mpsc::Receiver<WsMsg>,
    in_tx: mpsc::Sender<ConnEvent>,
    waker: Thread,
) {
    let mut failures = 0u32;
    loop {
        let reason = match connect(&target).await {
            Ok(ws) => {
                stats::inc(&stats::CONNECTS);
                // Whatever was queued for a previous connection is stale.
                while out_rx.try_recv().is_ok() {}
                if !emit(&in_tx, &waker, ConnEvent::Connected).await {
                    return;
                }
                let since = Instant::now();
                let (rx_back, ended) = pump(ws, out_rx, &in_tx, &waker).await;
                out_rx = rx_back;
                match ended {
                    Ended::SessionGone => return,
                    Ended::Backend(reason) => {
                        stats::inc(&stats::DISCONNECTS);
                        if since.elapsed() >= STABLE_AFTER {
                            failures = 0;
                        }
                        reason
                    }
                }
            }
            Err(e) => {
                stats::inc(&stats::CONNECT_FAILURES);
                LinkError::from(e)
            }
        };
        failures += 1;
        if failures >= MAX_FAILURES {
            stats::inc(&stats::GAVE_UP);
            emit(&in_tx, &waker, ConnEvent::GaveUp(reason)).await;
            return;
        }
        if !emit(&in_tx, &waker, ConnEvent::Disconnected(reason)).await {
            return;
        }
        let backoff = Duration::from_millis(500) * (1 << (failures - 1).min(4));
        tokio::time::sleep(backoff).await;
    }
}

enum Ended {
    SessionGone,
    Backend(LinkError),
}

/// Runs one connection: a writer task drains the uplink queue into the socket while this task
/// reads, waiting on the agent when its queue is full. Returns the uplink receiver for a retry.
async fn pump(
    ws: Ws,
    out_rx: mpsc::Receiver<WsMsg>,
    in_tx: &mpsc::Sender<ConnEvent>,
    waker: &Thread,
) -> (mpsc::Receiver<WsMsg>, Ended) {
    let (mut sink, mut stream) = ws.split();
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let mut writer = tokio::spawn(async move {
        let mut out_rx = out_rx;
        loop {
            tokio::select! {
                _ = &mut stop_rx => return (out_rx, None),
                m = out_rx.recv() => {
                    let Some(m) = m else {
                        let _ = sink.close().await;
                        return (out_rx, Some(Ended::SessionGone));
                    };
                    let msg = match m {
                        WsMsg::Text(t) => Message::text(t),
                        WsMsg::Binary(b) => Message::binary(b),
                    };
                    if let Err(e) = sink.send(msg).await {
                        return (out_rx, Some(Ended::Backend(LinkError::Write(e))));
                    }
                }
            }
        }
    });
    let read_end = loop {
        tokio::select! {
            w = &mut writer => {
                return match w {
                    Ok((rx, ended)) => (rx, ended.unwrap_or(Ended::SessionGone)),
                    // The writer cannot panic on its own; treat a failed join as the end.
                    Err(_) => (mpsc::channel(1).1, Ended::SessionGone),
                };
            }
            f = stream.next() => {
                let m = match f {
                    Some(Ok(Message::Text(t))) => WsMsg::Text(t.as_str().to_string()),
                    Some(Ok(Message::Binary(b))) => WsMsg::Binary(b.to_vec()),
                    Some(Ok(Message::Close(_))) | None => break Ended::Backend(LinkError::Closed),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break Ended::Backend(LinkError::Lost(e)),
                };
                if !emit(in_tx, waker, ConnEvent::Message(m)).await {
                    break Ended::SessionGone;
                }
            }
        }
    };
    let _ = stop_tx.send(());
    match writer.await {
        Ok((rx, _)) => (rx, read_end),
        Err(_) => (mpsc::channel(1).1, Ended::SessionGone),
    }
}
