//! ICE-TCP (RFC 6544) for networks that block UDP: every shard accepts connections on the media
//! TCP port (SO_REUSEPORT, like its UDP socket) and carries the same datagrams as UDP, each framed
//! by a 2-byte length (RFC 4571). A connection's frames go through the shard's normal routing, so
//! the session moves to (or is found on) the shard that holds the connection, and its replies are
//! framed back onto it.
//!
//! Per connection: one reader task, one writer task (the stream is split, so no read is ever
//! cancelled), and a bounded output buffer that the shard appends frames to; a full buffer drops
//! the frame and counts it. Connections that carry nothing for `IDLE` are closed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::net::MAX_DATAGRAM;
use super::shard::SharedShard;
use crate::core::peer_addr::Peer;

/// Most frames' bytes waiting for one connection (a few hundred ms of audio and then some).
const MAX_QUEUED: usize = 256 * 1024;
/// Most connections per shard; more are refused.
const MAX_CONNECTIONS: usize = 4096;
/// A connection that sends nothing for this long is closed (ICE consent checks come every few
/// seconds on a live call).
const IDLE: Duration = Duration::from_secs(30);

/// What happened on ICE-TCP, for metrics (`tern_ice_tcp_total{reason}`); indexes `counts`.
#[derive(Debug, Clone, Copy)]
pub enum TcpEvent {
    Accepted,
    Closed,
    Refused,
    QueueFull,
    NoConnection,
    OversizedFrame,
}

/// Metric labels, in `TcpEvent` order.
pub const LABELS: [&str; 6] = [
    "accepted",
    "closed",
    "refused",
    "queue_full",
    "no_connection",
    "oversized_frame",
];

#[derive(Default)]
struct Outbox {
    buf: Vec<u8>,
    waker: Option<Waker>,
    closed: bool,
}

/// A shard's ICE-TCP connections, by peer address.
#[derive(Default)]
pub struct TcpPeers {
    conns: HashMap<SocketAddr, Rc<RefCell<Outbox>>>,
    /// Counts by `TcpEvent`.
    pub counts: [u64; 6],
    /// Frames handed to connections.
    pub sent: u64,
}

impl TcpPeers {
    /// Frames `payload` onto the connection from `to`; counted and dropped when there is none or
    /// its buffer is full.
    pub fn send(&mut self, to: SocketAddr, payload: &[u8]) {
        let Ok(len) = u16::try_from(payload.len()) else {
            self.count(TcpEvent::OversizedFrame);
            return;
        };
        let Some(out) = self.conns.get(&to).cloned() else {
            self.count(TcpEvent::NoConnection);
            return;
        };
        let mut out = out.borrow_mut();
        if out.closed || out.buf.len() + 2 + payload.len() > MAX_QUEUED {
            self.count(TcpEvent::QueueFull);
            return;
        }
        out.buf.extend_from_slice(&len.to_be_bytes());
        out.buf.extend_from_slice(payload);
        self.sent += 1;
        if let Some(w) = out.waker.take() {
            w.wake();
        }
    }

    fn count(&mut self, e: TcpEvent) {
        self.counts[e as usize] += 1;
    }

    fn open(&mut self, peer: SocketAddr) -> Option<Rc<RefCell<Outbox>>> {
        if self.conns.len() >= MAX_CONNECTIONS {
            self.count(TcpEvent::Refused);
            return None;
        }
        self.count(TcpEvent::Accepted);
        let out = Rc::new(RefCell::new(Outbox::default()));
        self.conns.insert(peer, out.clone());
        Some(out)
    }

    fn close(&mut self, peer: SocketAddr) {
        if let Some(out) = self.conns.remove(&peer) {
            self.count(TcpEvent::Closed);
            let mut out = out.borrow_mut();
            out.closed = true;
            if let Some(w) = out.waker.take() {
                w.wake();
            }
        }
    }
}

/// Accepts ICE-TCP connections for the shard's lifetime.
pub async fn accept_loop(state: SharedShard, listener: glommio::net::TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("ice-tcp accept: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if state.borrow().stopping {
            return;
        }
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        let Some(out) = state.borrow_mut().io.tcp.open(peer) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(IDLE));
        let (reader, writer) = futures_lite::io::split(stream);
        glommio::spawn_local(write_loop(writer, out.clone())).detach();
        glommio::spawn_local(read_loop(state.clone(), reader, peer)).detach();
    }
}

/// Reads RFC 4571 frames and hands each to the shard as a datagram from `peer` over TCP.
async fn read_loop(
    state: SharedShard,
    mut reader: futures_lite::io::ReadHalf<glommio::net::TcpStream>,
    peer: SocketAddr,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut have = 0usize;
    'conn: loop {
        let n = match reader.read(&mut buf[have..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        have += n;
        let now = Instant::now();
        let mut at = 0;
        {
            let mut s = state.borrow_mut();
            if s.stopping {
                break;
            }
            while have - at >= 2 {
                let len = usize::from(u16::from_be_bytes([buf[at], buf[at + 1]]));
                if len > MAX_DATAGRAM {
                    // Not ICE traffic (or hostile): nothing of ours is that large.
                    s.io.tcp.count(TcpEvent::OversizedFrame);
                    tracing::warn!(%peer, len, "ice-tcp frame larger than any datagram; closing");
                    break 'conn;
                }
                if have - at < 2 + len {
                    break;
                }
                s.on_datagram(now, Peer::tcp(peer), &buf[at + 2..at + 2 + len]);
                at += 2 + len;
            }
            s.finish_step(now);
        }
        buf.copy_within(at..have, 0);
        have -= at;
    }
    state.borrow_mut().io.tcp.close(peer);
}

/// Writes what the shard framed for this connection until it closes.
async fn write_loop(
    mut writer: futures_lite::io::WriteHalf<glommio::net::TcpStream>,
    out: Rc<RefCell<Outbox>>,
) {
    let mut pending = Vec::new();
    loop {
        let closed = poll_fn(|cx| {
            let mut o = out.borrow_mut();
            if o.closed {
                return Poll::Ready(true);
            }
            if o.buf.is_empty() {
                o.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            // Swap buffers: the shard keeps appending while this batch is written.
            std::mem::swap(&mut o.buf, &mut pending);
            Poll::Ready(false)
        })
        .await;
        if closed {
            break;
        }
        if writer.write_all(&pending).await.is_err() {
            break;
        }
        pending.clear();
    }
    out.borrow_mut().closed = true;
    let _ = writer.close().await;
}
