//! A local server speaking the OpenAI Realtime WebSocket protocol, for the bridge tests. Each
//! `response.create` is answered with generated audio (a 440 Hz tone) streamed as fast as the
//! socket takes it, with a transcript delta, then `response.done`. It records what it receives.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answers every turn in full.
    Normal,
    /// Drops the TCP connection after 500 ms of reply audio (later connections behave normally).
    DieMidReply,
    /// Takes 100 ms to handle each message it reads (a backend that cannot keep up).
    Slow,
}

/// Everything the server saw, shared with the test.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every client message except `input_audio_buffer.append`.
    pub messages: Mutex<Vec<Value>>,
    pub appends: AtomicUsize,
    /// Audio deltas handed to the kernel (the send buffer is small, so this tracks what the
    /// client side has actually accepted).
    pub deltas_sent: AtomicUsize,
    pub connections: AtomicUsize,
    pub authorization: Mutex<Vec<Option<String>>>,
}

impl Seen {
    pub fn of_type(&self, kind: &str) -> Vec<Value> {
        self.messages
            .lock()
            .expect("lock")
            .iter()
            .filter(|m| m["type"] == kind)
            .cloned()
            .collect()
    }
}

pub struct RealtimeServer {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    _rt: tokio::runtime::Runtime,
}

impl RealtimeServer {
    /// Starts on a free loopback port; each reply is `reply_ms` of audio.
    pub fn start(mode: Mode, reply_ms: u32) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Small buffers (inherited by accepted sockets), so flow control shows within seconds,
        // not after megabytes of kernel buffering: the reply stream waits for Tern, and in slow
        // mode Tern's sends wait for the server.
        let sock = socket2::SockRef::from(&listener);
        sock.set_send_buffer_size(16 << 10).expect("SO_SNDBUF");
        if mode == Mode::Slow {
            sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        }
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let n = s.connections.fetch_add(1, Ordering::SeqCst);
                let mode = if n > 0 && mode == Mode::DieMidReply {
                    Mode::Normal
                } else {
                    mode
                };
                tokio::spawn(serve(tcp, s.clone(), mode, reply_ms));
            }
        });
        RealtimeServer {
            addr,
            seen,
            _rt: rt,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/v1/realtime?model=test", self.addr)
    }
}

fn tone_chunk(start_sample: usize, samples: usize) -> String {
    let mut bytes = Vec::with_capacity(samples * 2);
    for i in start_sample..start_sample + samples {
        let v = (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 24_000.0).sin()) as i16;
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[allow(clippy::result_large_err)] // the handshake callback signature is tungstenite's
async fn serve(tcp: tokio::net::TcpStream, seen: Arc<Seen>, mode: Mode, reply_ms: u32) {
    let auth = Arc::new(Mutex::new(None));
    let a = auth.clone();
    let callback = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
        *a.lock().expect("lock") = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    seen.authorization
        .lock()
        .expect("lock")
        .push(auth.lock().expect("lock").clone());
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Option<String>>();
    // One writer; `None` asks it to drop the connection.
    let counted = seen.clone();
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            match m {
                Some(t) => {
                    let delta = t.contains("response.output_audio.delta");
                    if sink.send(Message::text(t)).await.is_err() {
                        return;
                    }
                    if delta {
                        counted.deltas_sent.fetch_add(1, Ordering::SeqCst);
                    }
                }
                None => return,
            }
        }
    });
    let send = |v: Value| {
        let _ = tx.send(Some(v.to_string()));
    };
    send(json!({"type": "session.created", "session": {"id": "sess_test"}}));
    let mut responses = 0;
    let mut reply: Option<tokio::task::JoinHandle<()>> = None;
    while let Some(Ok(msg)) = stream.next().await {
        if writer.is_finished() {
            break;
        }
        if mode == Mode::Slow {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let Message::Text(t) = msg else { continue };
        let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
            continue;
        };
        let kind = v["type"].as_str().unwrap_or("").to_string();
        if kind == "input_audio_buffer.append" {
            seen.appends.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        seen.messages.lock().expect("lock").push(v.clone());
        match kind.as_str() {
            "session.update" => send(json!({"type": "session.updated", "session": v["session"]})),
            "input_audio_buffer.commit" => {
                send(json!({"type": "input_audio_buffer.committed", "item_id": "item_user"}))
            }
            "response.create" => {
                responses += 1;
                let id = format!("resp_{responses}");
                let item = format!("item_{responses}");
                let tx = tx.clone();
                reply = Some(tokio::spawn(async move {
                    let send = |v: Value| tx.send(Some(v.to_string())).is_ok();
                    send(json!({"type": "response.created", "response": {"id": id}}));
                    send(
                        json!({"type": "response.output_item.added", "response_id": id, "item": {"id": item}}),
                    );
                    send(
                        json!({"type": "response.output_audio_transcript.delta", "response_id": id, "item_id": item, "delta": "beep"}),
                    );
                    let chunk = 2400; // 100 ms
                    let total = reply_ms as usize * 24;
                    let mut at = 0;
                    while at < total {
                        if mode == Mode::DieMidReply && at >= 12_000 {
                            let _ = tx.send(None);
                            return;
                        }
                        let n = chunk.min(total - at);
                        let ok = send(json!({
                            "type": "response.output_audio.delta",
                            "response_id": id, "item_id": item, "output_index": 0, "content_index": 0,
                            "delta": tone_chunk(at, n)
                        }));
                        if !ok {
                            return;
                        }
                        at += n;
                        tokio::task::yield_now().await;
                    }
                    send(
                        json!({"type": "response.output_audio.done", "response_id": id, "item_id": item}),
                    );
                    send(
                        json!({"type": "response.done", "response": {"id": id, "status": "completed"}}),
                    );
                }));
            }
            "response.cancel" => {
                if let Some(r) = reply.take() {
                    r.abort();
                }
                send(json!({"type": "response.done", "response": {"status": "cancelled"}}));
            }
            "conversation.item.truncate" => send(json!({
                "type": "conversation.item.truncated",
                "item_id": v["item_id"], "content_index": 0, "audio_end_ms": v["audio_end_ms"]
            })),
            _ => {}
        }
    }
    if let Some(r) = reply {
        r.abort();
    }
}
