//! One client and Tern's core with the echo agent in virtual time, joined by two 10 ms links:
//! the scene the turn-taking and session-setting tests play out.

use std::time::{Duration, Instant};

use tern_engine::core::session::SessionConfig;

use super::virtual_server::VirtualServer;
use super::{Client, Link};

pub struct Scene {
    pub server: VirtualServer,
    pub client: Client,
    pub up: Link,
    pub down: Link,
    pub now: Instant,
}

impl Scene {
    /// A connected client that speaks `speech` from the start.
    pub fn new(speech: Vec<i16>) -> Self {
        Self::with(speech, false)
    }

    /// The same, muted until the test unmutes it (`client.muted = false`).
    pub fn muted(speech: Vec<i16>) -> Self {
        Self::with(speech, true)
    }

    /// A connected client whose session gets `session` (limits, turn settings).
    pub fn with_session(speech: Vec<i16>, session: SessionConfig) -> Self {
        Self::build(speech, false, session)
    }

    /// A connected client whose session gets `session`, with the worker's turn model answering
    /// `delay` after each question (`--turn-model smart-turn`).
    pub fn with_turn_model(speech: Vec<i16>, session: SessionConfig, delay: Duration) -> Self {
        let mut s = Self::build(speech, false, session);
        s.server.enable_turn_model(delay);
        s
    }

    fn with(speech: Vec<i16>, muted: bool) -> Self {
        Self::build(speech, muted, SessionConfig::default())
    }

    fn build(speech: Vec<i16>, muted: bool, session: SessionConfig) -> Self {
        let now = Instant::now();
        let mut server = VirtualServer::with_session(session);
        let (mut client, offer) = Client::new(now, "10.0.0.2:50000".parse().expect("addr"), speech);
        client.muted = muted;
        server.connect(now, &mut client, &offer);
        Scene {
            server,
            client,
            up: Link::new(0.0, Duration::from_millis(10), 1),
            down: Link::new(0.0, Duration::from_millis(10), 2),
            now,
        }
    }

    pub fn run(&mut self, ms: u64) {
        self.now = self.server.run(
            self.now,
            Duration::from_millis(ms),
            &mut self.client,
            &mut self.up,
            &mut self.down,
        );
    }

    /// Runs until `done` or `max_ms` of virtual time.
    pub fn run_until(&mut self, max_ms: u64, done: impl Fn(&Client) -> bool) -> bool {
        for _ in 0..max_ms / 20 {
            if done(&self.client) {
                return true;
            }
            self.run(20);
        }
        done(&self.client)
    }

    pub fn has(&self, kind: &str) -> bool {
        self.client.event_types().iter().any(|t| t == kind)
    }

    /// Sends `session.update` with `session` (JSON) once the channel is open; returns the answer
    /// (`session.updated` or `error`).
    pub fn session_update(&mut self, session: &str) -> serde_json::Value {
        assert!(self.run_until(2000, |c| c.channel_open));
        let answers =
            |c: &Client| c.events_of("session.updated").len() + c.events_of("error").len();
        let before = answers(&self.client);
        let ev = format!(r#"{{"type":"session.update","session":{session}}}"#);
        assert!(self.client.send_event(&ev));
        assert!(self.run_until(1000, |c| answers(c) > before));
        self.client.events.last().expect("an answer").1.clone()
    }
}
