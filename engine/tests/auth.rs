//! Auth over real HTTP: with `--api-key`, calls need `Authorization: Bearer`; a server key mints
//! ephemeral `ek_` tokens (TTL 10-7200 s, optional session config) that browsers use to call.

use crate::common;

use std::net::SocketAddr;
use std::time::Instant;

use common::{http_with, Client};
use serde_json::{json, Value};
use tern_engine::agent::AgentKind;

fn offer() -> String {
    let (_, offer) = Client::new(Instant::now(), "127.0.0.1:9".parse().unwrap(), Vec::new());
    offer
}

fn call(addr: SocketAddr, auth: Option<&str>) -> (u16, Value) {
    let mut headers = vec![("Content-Type", "application/sdp")];
    let bearer;
    if let Some(a) = auth {
        bearer = format!("Bearer {a}");
        headers.push(("Authorization", &bearer));
    }
    let (s, _, b) = http_with(
        addr,
        "POST",
        "/v1/realtime/calls",
        &headers,
        offer().as_bytes(),
    );
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

fn mint(addr: SocketAddr, key: &str, body: Value) -> (u16, Value) {
    let bearer = format!("Bearer {key}");
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (s, _, b) = http_with(
        addr,
        "POST",
        "/v1/realtime/client_secrets",
        &headers,
        body.to_string().as_bytes(),
    );
    (s, serde_json::from_slice(&b).unwrap())
}

#[test]
fn api_keys_and_ephemeral_tokens() {
    let engine = common::engine::start_with(1, 8, AgentKind::Echo, |c| {
        c.api_keys = vec!["sk-alpha".into(), "sk-beta".into()];
    });
    let addr = engine.http;

    // No header, a wrong key, a forged token: 401 with a JSON error.
    let (s, e) = call(addr, None);
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (401, Some("missing_api_key")),
        "{e}"
    );
    let (s, e) = call(addr, Some("sk-gamma"));
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (401, Some("invalid_api_key")),
        "{e}"
    );
    let (s, _) = call(addr, Some("ek_eyJleHAiOjk5OTk5OTk5OTl9.AAAA"));
    assert_eq!(s, 401);

    // A server key calls directly.
    assert_eq!(call(addr, Some("sk-beta")).0, 201);

    // A server key mints a token; the token calls.
    let (s, t) = mint(
        addr,
        "sk-alpha",
        json!({"expires_after": {"anchor": "created_at", "seconds": 60}}),
    );
    assert_eq!(s, 200, "{t}");
    let token = t["value"].as_str().unwrap().to_string();
    assert!(token.starts_with("ek_"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now + 55..=now + 61).contains(&t["expires_at"].as_u64().unwrap()),
        "{t}"
    );
    assert_eq!(call(addr, Some(&token)).0, 201);

    // A token cannot mint tokens (403); TTLs outside 10-7200 s are refused naming the range.
    let (s, e) = mint(addr, &token, json!({}));
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{e}"
    );
    let (s, e) = mint(addr, "sk-alpha", json!({"expires_after": {"seconds": 5}}));
    assert_eq!(s, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("10 to 7200"),
        "{e}"
    );
    let (s, _) = mint(
        addr,
        "sk-alpha",
        json!({"expires_after": {"seconds": 7201}}),
    );
    assert_eq!(s, 400);
    // Default TTL is 600 s; a bad session config is refused at mint time.
    let (s, t) = mint(addr, "sk-alpha", json!({}));
    assert_eq!(s, 200);
    assert!(t["expires_at"].as_u64().unwrap() >= now + 599);
    let bad = json!({"session": {"turn_detection": {"type": "server_vad", "threshold": 7}}});
    let (s, e) = mint(addr, "sk-alpha", bad);
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("invalid_session")),
        "{e}"
    );

    // Hangup needs credentials too.
    let (s, _, _) = http_with(addr, "DELETE", "/v1/realtime/calls/rtc_00", &[], b"");
    assert_eq!(s, 401);
}

#[test]
fn token_session_config_applies_to_the_call() {
    let engine = common::engine::start_with(1, 8, AgentKind::Echo, |c| {
        c.api_keys = vec!["sk-alpha".into()];
    });
    let cfg = json!({"audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 900}}}});
    let (s, t) = mint(engine.http, "sk-alpha", json!({"session": cfg}));
    assert_eq!(s, 200, "{t}");
    // The token's session is the effective one (OpenAI's shape): what was asked for, over the
    // server's defaults.
    let td = &t["session"]["audio"]["input"]["turn_detection"];
    assert_eq!(td["type"], "server_vad");
    assert_eq!(td["silence_duration_ms"], 900);
    assert_eq!(t["session"]["object"], "realtime.session");
    let token = t["value"].as_str().unwrap();

    // The client connects with the token; session.created reports the token's settings.
    let (_, speech) = common::load_wav("hello-24k.wav");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(2)))
        .unwrap();
    let (mut client, offer) = Client::new(Instant::now(), sock.local_addr().unwrap(), speech);
    let bearer = format!("Bearer {token}");
    let headers = [
        ("Content-Type", "application/sdp"),
        ("Authorization", bearer.as_str()),
    ];
    let (s, _, body) = http_with(
        engine.http,
        "POST",
        "/v1/realtime/calls",
        &headers,
        offer.as_bytes(),
    );
    assert_eq!(s, 201);
    client.accept_answer(std::str::from_utf8(&body).unwrap());
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while Instant::now() < deadline && client.events_of("session.created").is_empty() {
        for (to, d) in client.poll(Instant::now()) {
            sock.send_to(&d, to).unwrap();
        }
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            client.receive(Instant::now(), from, &buf[..n]);
        }
    }
    let created = client.events_of("session.created");
    assert_eq!(created.len(), 1, "{:?}", client.event_types());
    let td = &created[0]["session"]["audio"]["input"]["turn_detection"];
    assert_eq!(td["silence_duration_ms"], 900, "{}", created[0]);
}
