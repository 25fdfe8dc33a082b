//! A corpus of malformed and hostile offers: every one is answered 4xx with a JSON reason, none
//! creates a session or leaks an admission slot, and the server still answers a good offer.

use crate::common;

use std::time::Instant;

use common::{http, metric, Client};

fn good_offer() -> String {
    Client::new(Instant::now(), "127.0.0.1:9".parse().unwrap(), Vec::new()).1
}

/// Replaces every line starting with `prefix` by `with` (None removes it).
fn edit(sdp: &str, prefix: &str, with: Option<&str>) -> String {
    sdp.split("\r\n")
        .filter_map(|l| if l.starts_with(prefix) { with } else { Some(l) })
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let g = good_offer();
    let audio_at = g.find("m=audio").unwrap();
    let audio_section_end = g[audio_at..]
        .find("m=application")
        .map_or(g.len(), |i| audio_at + i);
    let audio_section = &g[audio_at..audio_section_end];
    let mut c: Vec<(&'static str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("whitespace", b"   \r\n\t ".to_vec()),
        ("not sdp", b"hello world".to_vec()),
        ("json", br#"{"type":"offer","sdp":"v=0"}"#.to_vec()),
        ("binary", (0u8..=255).cycle().take(3000).collect()),
        (
            "utf-16",
            g.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
        ),
        ("nul bytes", g.replace("\r\n", "\0\r\n").into_bytes()),
        (
            "invalid utf-8",
            [g.as_bytes(), &[0xff, 0xfe, 0xfd]].concat(),
        ),
        ("only v line", b"v=0\r\n".to_vec()),
        ("version 1", g.replacen("v=0", "v=1", 1).into_bytes()),
        ("no origin", edit(&g, "o=", None).into_bytes()),
        ("no media", g[..audio_at].to_string().into_bytes()),
        (
            "no audio",
            [&g[..audio_at], &g[audio_section_end..]]
                .concat()
                .into_bytes(),
        ),
        (
            "no fingerprint",
            edit(&g, "a=fingerprint", None).into_bytes(),
        ),
        (
            "bad fingerprint",
            edit(&g, "a=fingerprint", Some("a=fingerprint:sha-256 zz")).into_bytes(),
        ),
        ("no ice-ufrag", edit(&g, "a=ice-ufrag", None).into_bytes()),
        ("no ice-pwd", edit(&g, "a=ice-pwd", None).into_bytes()),
        (
            "setup passive",
            edit(&g, "a=setup", Some("a=setup:passive")).into_bytes(),
        ),
        (
            "setup holdconn",
            edit(&g, "a=setup", Some("a=setup:holdconn")).into_bytes(),
        ),
        (
            "ice-lite offerer",
            g.replacen("t=0 0\r\n", "t=0 0\r\na=ice-lite\r\n", 1)
                .into_bytes(),
        ),
        (
            "duplicated audio m-line",
            [
                &g[..audio_section_end],
                audio_section,
                &g[audio_section_end..],
            ]
            .concat()
            .into_bytes(),
        ),
        (
            // Opus, PCMU and PCMA are spoken; G.722 alone is not.
            "no codec Tern speaks",
            g.replace("opus/48000/2", "G722/8000").into_bytes(),
        ),
        (
            "audio port text",
            g.replacen("m=audio 9", "m=audio nine", 1).into_bytes(),
        ),
        ("audio no formats", {
            let line_end = g[audio_at..].find("\r\n").unwrap() + audio_at;
            [
                &g[..audio_at],
                "m=audio 9 UDP/TLS/RTP/SAVPF",
                &g[line_end..],
            ]
            .concat()
            .into_bytes()
        }),
        (
            "plain RTP/AVP",
            g.replacen("UDP/TLS/RTP/SAVPF", "RTP/AVP", 1).into_bytes(),
        ),
        (
            "huge attribute line",
            g.replacen(
                "t=0 0\r\n",
                &format!("t=0 0\r\na=x-{}\r\n", "y".repeat(20_000)),
                1,
            )
            .into_bytes(),
        ),
        (
            "over size limit",
            [g.as_bytes(), &vec![b'a'; 64 * 1024]].concat(),
        ),
        ("thousand m-lines", {
            let mut s = g.clone();
            for i in 0..1000 {
                s.push_str(&format!(
                    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:x{i}\r\n"
                ));
            }
            s.into_bytes()
        }),
        (
            "answer not offer",
            g.replace("a=setup:actpass", "a=setup:active")
                .replacen("s=-", "s=answer", 1)
                .replace("a=ice-ufrag", "a=x-ufrag")
                .into_bytes(),
        ),
        (
            "bare LF and garbage lines",
            g.replace("\r\n", "\n")
                .replacen("t=0 0", "t=0 0\n!!!\n=\nzz", 1)
                .into_bytes(),
        ),
    ];
    for cut in [10, 50, 100, 200, g.len() / 2, g.len() - 40] {
        let name: &'static str = Box::leak(format!("truncated at {cut}").into_boxed_str());
        c.push((name, g.as_bytes()[..cut].to_vec()));
    }
    c
}

#[test]
fn every_malformed_offer_gets_a_4xx_with_a_reason() {
    let engine = common::engine::start(1, 64);
    let corpus = corpus();
    assert!(corpus.len() >= 30, "{} cases", corpus.len());
    let mut accepted = Vec::new();
    for (name, body) in &corpus {
        let (status, _, resp) = http(
            engine.http,
            "POST",
            "/v1/realtime/calls",
            Some("application/sdp"),
            body,
        );
        if !(400..500).contains(&status) {
            accepted.push(format!("{name}: {status}"));
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&resp).unwrap_or_else(|_| {
            panic!(
                "{name}: {status} body is not JSON: {}",
                String::from_utf8_lossy(&resp)
            )
        });
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(
            !msg.is_empty() && v["error"]["code"].is_string(),
            "{name}: {v}"
        );
    }
    assert!(accepted.is_empty(), "offers not refused: {accepted:#?}");

    let (_, _, m) = http(engine.http, "GET", "/metrics", None, b"");
    let m = String::from_utf8(m).unwrap();
    assert_eq!(metric(&m, "tern_sessions", ""), 0.0);
    assert_eq!(
        metric(&m, "tern_sessions_admitted", ""),
        0.0,
        "no admission leaked"
    );
    // The server is unharmed.
    let (s, _, _) = http(
        engine.http,
        "POST",
        "/v1/realtime/calls",
        Some("application/sdp"),
        good_offer().as_bytes(),
    );
    assert_eq!(s, 201);
}
