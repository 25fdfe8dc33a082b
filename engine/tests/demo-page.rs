//! The demo page is served at `GET /` from the binary itself, with the client code the browser
//! interop tests (tools/interop) drive.

use crate::common;

use common::http;

#[test]
fn demo_page_is_served_at_root() {
    let engine = common::engine::start(1, 1);
    for path in ["/", "/index.html"] {
        let (status, headers, body) = http(engine.http, "GET", path, None, b"");
        assert_eq!(status, 200, "{path}");
        let ctype = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str());
        assert_eq!(ctype, Some("text/html; charset=utf-8"));
        let page = String::from_utf8(body).unwrap();
        for needle in [
            "createDataChannel(\"oai-events\")",
            "/v1/realtime/calls",
            "application/sdp",
            "getUserMedia",
            "id=\"start\"",
            "id=\"stop\"",
        ] {
            assert!(page.contains(needle), "page lacks {needle}");
        }
    }
    // Only GET serves it.
    let (status, _, _) = http(engine.http, "POST", "/", None, b"");
    assert_eq!(status, 404);
}
