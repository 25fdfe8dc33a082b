//! `--max-session-s` in virtual time: a talking call is ended at its limit after an `error` event
//! (`session_expired`), counted as `max_duration`; without a limit the same call goes on.

use crate::common;

use std::time::{Duration, Instant};

use common::virtual_server::VirtualServer;
use common::{load_wav, Client, Link};
use tern_engine::core::session::SessionConfig;

fn run(max: Option<Duration>) -> (VirtualServer, Client) {
    let mut cfg = SessionConfig::default();
    cfg.limits.max_duration = max;
    let t0 = Instant::now();
    let mut server = VirtualServer::with_session(cfg);
    let (_, speech) = load_wav("hello-24k.wav");
    let (mut client, offer) = Client::new(t0, "10.0.0.2:50000".parse().unwrap(), speech);
    server.connect(t0, &mut client, &offer);
    let mut up = Link::new(0.0, Duration::from_millis(10), 1);
    let mut down = Link::new(0.0, Duration::from_millis(10), 2);
    server.run(t0, Duration::from_secs(8), &mut client, &mut up, &mut down);
    (server, client)
}

#[test]
fn a_call_ends_at_its_maximum_length_with_an_error_event() {
    let (server, client) = run(Some(Duration::from_secs(3)));
    let errors = client.events_of("error");
    assert_eq!(errors.len(), 1, "{:?}", client.event_types());
    assert_eq!(errors[0]["error"]["code"], "session_expired");
    assert_eq!(server.core.live_sessions(), 0);
    assert_eq!(server.core.counters.ended_by.get("max_duration"), Some(&1));
}

#[test]
fn without_a_limit_the_call_goes_on() {
    let (server, client) = run(None);
    assert!(client.events_of("error").is_empty());
    assert_eq!(server.core.live_sessions(), 1);
}
