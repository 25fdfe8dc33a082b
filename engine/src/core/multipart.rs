//! `multipart/form-data` offers (RFC 7578), as OpenAI's `POST /v1/realtime/calls` accepts them:
//! an `sdp` part with the offer and an optional `session` part with the session config as JSON.
//! The official Python SDK sends this shape whenever a session is given.

/// The parts of a call-creation form that Tern reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallForm<'a> {
    pub sdp: &'a [u8],
    /// The `session` part's bytes (JSON), if present.
    pub session: Option<&'a [u8]>,
}

/// Why a form could not be read; the text is the 400's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("multipart/form-data needs a boundary parameter in Content-Type")]
    NoBoundary,
    #[error("multipart body is malformed: {0}")]
    Malformed(&'static str),
    #[error("multipart body has no \"sdp\" part")]
    NoSdp,
}

/// The `boundary` parameter of a `multipart/form-data` Content-Type.
pub fn boundary(content_type: &str) -> Result<&str, FormError> {
    content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"'))
        .filter(|b| !b.is_empty() && b.len() <= 70)
        .ok_or(FormError::NoBoundary)
}

/// Splits `body` on `boundary` and returns the `sdp` and `session` parts. Other parts are ignored
/// (OpenAI ignores unknown form fields too).
pub fn parse_call_form<'a>(body: &'a [u8], boundary: &str) -> Result<CallForm<'a>, FormError> {
    let delim = [b"--", boundary.as_bytes()].concat();
    let mut rest = match find(body, &delim) {
        Some(i) => &body[i + delim.len()..],
        None => return Err(FormError::Malformed("no opening boundary")),
    };
    let mut sdp = None;
    let mut session = None;
    loop {
        if rest.starts_with(b"--") {
            break; // the closing delimiter
        }
        rest = strip_line_end(rest).ok_or(FormError::Malformed("boundary without line end"))?;
        let head_end = find(rest, b"\r\n\r\n")
            .map(|i| (i, 4))
            .or_else(|| find(rest, b"\n\n").map(|i| (i, 2)))
            .ok_or(FormError::Malformed("part without headers end"))?;
        let head = std::str::from_utf8(&rest[..head_end.0])
            .map_err(|_| FormError::Malformed("part headers are not UTF-8"))?;
        let content = &rest[head_end.0 + head_end.1..];
        let end = find(content, &delim).ok_or(FormError::Malformed("part is not terminated"))?;
        let value = trim_line_end(&content[..end]);
        match part_name(head) {
            Some("sdp") => sdp = Some(value),
            Some("session") => session = Some(value),
            _ => {}
        }
        rest = &content[end + delim.len()..];
    }
    Ok(CallForm {
        sdp: sdp.ok_or(FormError::NoSdp)?,
        session: session.filter(|s| !s.is_empty()),
    })
}

/// The `name` of a part from its `Content-Disposition: form-data; name="..."` header.
fn part_name(head: &str) -> Option<&str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
        .and_then(|(_, v)| {
            v.split(';')
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim() == "name")
                .map(|(_, n)| n.trim().trim_matches('"'))
        })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn strip_line_end(b: &[u8]) -> Option<&[u8]> {
    b.strip_prefix(b"\r\n").or_else(|| b.strip_prefix(b"\n"))
}

/// The line end before a delimiter belongs to the delimiter, not to the part's content.
fn trim_line_end(b: &[u8]) -> &[u8] {
    b.strip_suffix(b"\r\n")
        .or_else(|| b.strip_suffix(b"\n"))
        .unwrap_or(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n";

    fn form(b: &str, parts: &[(&str, &str, &str)]) -> Vec<u8> {
        let mut out = String::new();
        for (name, ctype, value) in parts {
            out.push_str(&format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"{name}\"\r\nContent-Type: {ctype}\r\n\r\n{value}\r\n"
            ));
        }
        out.push_str(&format!("--{b}--\r\n"));
        out.into_bytes()
    }

    #[test]
    fn reads_sdp_and_session_parts_as_the_python_sdk_sends_them() {
        let ct = "multipart/form-data; boundary=abc123";
        let body = form(
            "abc123",
            &[
                ("sdp", "application/sdp", SDP),
                ("session", "application/json", r#"{"type":"realtime"}"#),
            ],
        );
        let f = parse_call_form(&body, boundary(ct).unwrap()).unwrap();
        assert_eq!(f.sdp, SDP.as_bytes(), "the offer keeps its own line ends");
        assert_eq!(f.session, Some(&br#"{"type":"realtime"}"#[..]));
    }

    #[test]
    fn session_is_optional_and_unknown_parts_are_ignored() {
        let body = form(
            "x",
            &[
                ("model", "text/plain", "m"),
                ("sdp", "application/sdp", SDP),
            ],
        );
        let f = parse_call_form(&body, "x").unwrap();
        assert_eq!((f.sdp, f.session), (SDP.as_bytes(), None));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(boundary("multipart/form-data"), Err(FormError::NoBoundary));
        assert_eq!(
            boundary("multipart/form-data; boundary=\"q q\"").unwrap(),
            "q q"
        );
        let no_sdp = form("x", &[("session", "application/json", "{}")]);
        assert_eq!(parse_call_form(&no_sdp, "x"), Err(FormError::NoSdp));
        assert!(matches!(
            parse_call_form(
                b"--x\r\nContent-Disposition: form-data; name=\"sdp\"\r\n\r\nv=0",
                "x"
            ),
            Err(FormError::Malformed(_))
        ));
        assert!(parse_call_form(b"garbage", "x").is_err());
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        const ALPHABET: &[u8] = b"-x\r\n=:; \"namesdp";
        let mut seed = 7u64;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    ALPHABET[(seed % ALPHABET.len() as u64) as usize]
                })
                .collect();
            let _ = parse_call_form(&bytes, "x");
        }
    }
}
