//! A str0m `Client` on a real UDP socket, connected to a real engine through HTTP.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::{http_with, Client};

pub struct UdpClient {
    pub client: Client,
    /// Drop the client's outgoing STUN (to let ICE consent expire while media flows).
    pub drop_stun: bool,
    /// Send nothing at all (a peer that vanished).
    pub mute: bool,
    /// The SDP answer.
    pub answer: String,
    /// The last SRTP datagram sent (for replay tests).
    pub last_media: Option<(SocketAddr, Vec<u8>)>,
    sock: UdpSocket,
    buf: Vec<u8>,
}

impl UdpClient {
    /// POSTs the offer to `http_addr` and applies the answer.
    pub fn connect(http_addr: SocketAddr, speech: Vec<i16>) -> Self {
        Self::connect_with_session(http_addr, speech, None)
    }

    /// The same; with a `session`, the offer goes as `multipart/form-data` with `sdp` and
    /// `session` parts, as OpenAI's SDKs send it.
    pub fn connect_with_session(
        http_addr: SocketAddr,
        speech: Vec<i16>,
        session: Option<&str>,
    ) -> Self {
        Self::connect_as(http_addr, speech, session, None)
    }

    /// The same, presenting `bearer` (an API key or an ephemeral token) in `Authorization`.
    pub fn connect_as(
        http_addr: SocketAddr,
        speech: Vec<i16>,
        session: Option<&str>,
        bearer: Option<&str>,
    ) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(2)))
            .expect("timeout");
        let addr = sock.local_addr().expect("addr");
        let (mut client, offer) = Client::new(Instant::now(), addr, speech);
        let (ctype, body) = match session {
            None => ("application/sdp".to_string(), offer.into_bytes()),
            Some(s) => {
                let b = "tern-form-boundary";
                let form = format!(
                    "--{b}\r\nContent-Disposition: form-data; name=\"sdp\"\r\n\r\n{offer}\r\n\
                     --{b}\r\nContent-Disposition: form-data; name=\"session\"\r\n\
                     Content-Type: application/json\r\n\r\n{s}\r\n--{b}--\r\n"
                );
                (
                    format!("multipart/form-data; boundary={b}"),
                    form.into_bytes(),
                )
            }
        };
        let auth = bearer.map(|b| format!("Bearer {b}"));
        let mut headers = vec![("Content-Type", ctype.as_str())];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let (status, _, body) = http_with(http_addr, "POST", "/v1/realtime/calls", &headers, &body);
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        let answer = String::from_utf8(body).expect("answer is UTF-8");
        client.accept_answer(&answer);
        UdpClient {
            client,
            answer,
            last_media: None,
            drop_stun: false,
            mute: false,
            sock,
            buf: vec![0; 2048],
        }
    }

    /// Drives the client until `done` holds or `timeout` passes; returns whether it held.
    /// The call id from `session.created`.
    pub fn call_id(&self) -> String {
        self.client.events_of("session.created")[0]["session"]["id"]
            .as_str()
            .expect("session.created carries the call id")
            .to_string()
    }

    pub fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&mut Client) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for (to, d) in self.client.poll(Instant::now()) {
                let stun = d.first().is_some_and(|b| *b < 2);
                let held = self.mute || (self.drop_stun && stun);
                if !held {
                    let _ = self.sock.send_to(&d, to);
                }
                if d.first().is_some_and(|b| (128..192).contains(b)) {
                    self.last_media = Some((to, d));
                }
            }
            while let Ok((n, from)) = self.sock.recv_from(&mut self.buf) {
                self.client.receive(Instant::now(), from, &self.buf[..n]);
                self.sock
                    .set_read_timeout(Some(Duration::from_micros(1)))
                    .expect("timeout");
            }
            self.sock
                .set_read_timeout(Some(Duration::from_millis(2)))
                .expect("timeout");
            if done(&mut self.client) {
                return true;
            }
        }
        false
    }

    /// A second handle on the client's socket (for a flood thread sending from its address).
    pub fn socket_clone(&self) -> UdpSocket {
        self.sock.try_clone().expect("clone socket")
    }

    /// The server's ICE ufrag, from the answer.
    pub fn server_ufrag(&self) -> String {
        self.answer
            .lines()
            .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
            .expect("ufrag in answer")
            .to_string()
    }

    /// Whether an event of `kind` has arrived.
    pub fn has(&self, kind: &str) -> bool {
        self.client.event_types().iter().any(|t| t == kind)
    }
}
