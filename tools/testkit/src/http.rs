//! One small HTTP/1.1 client for tests, the bench and tools: a request with any headers and body,
//! its response read by `Content-Length`, chunked encoding or up to the close. With
//! `keep_alive`, each thread keeps one connection per server open between requests, as browsers
//! and SDKs do, and opens a new one once if the server closed it meanwhile.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};

/// How long a request waits for its response.
const READ_TIMEOUT: Duration = Duration::from_secs(40);

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names in lowercase, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How a request uses its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// A new connection, closed after the response.
    Close,
    /// This thread's kept-alive connection to the server (opened on first use).
    KeepAlive,
}

thread_local! {
    static CONN: std::cell::RefCell<Option<(SocketAddr, TcpStream)>> =
        const { std::cell::RefCell::new(None) };
}

/// One request with `headers` (beside `Host`, `Connection` and `Content-Length`) and `body`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    connection: Connection,
) -> anyhow::Result<Response> {
    let keep = connection == Connection::KeepAlive;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: {}\r\nContent-Length: {}\r\n",
        if keep { "keep-alive" } else { "close" },
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    for attempt in 0..2 {
        let kept = CONN.with(|c| c.borrow_mut().take());
        let reused = keep && kept.as_ref().is_some_and(|(a, _)| *a == addr);
        let mut s = match kept {
            Some((a, s)) if keep && a == addr => s,
            _ => {
                let s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
                s.set_read_timeout(Some(READ_TIMEOUT))?;
                s.set_nodelay(true)?;
                s
            }
        };
        // A server may answer and close before reading the whole body (an early 413): the
        // response is what counts, so a failed body write is not an error by itself.
        let sent = s.write_all(req.as_bytes());
        if sent.is_ok() {
            let _ = s.write_all(body);
        }
        match sent
            .map_err(anyhow::Error::from)
            .and_then(|_| read_response(&mut s))
        {
            Ok((resp, open)) => {
                if keep && open {
                    CONN.with(|c| *c.borrow_mut() = Some((addr, s)));
                }
                return Ok(resp);
            }
            // A kept connection the server closed meanwhile: once more on a new one.
            Err(_) if reused && attempt == 0 => continue,
            Err(e) => return Err(e),
        }
    }
    bail!("no response from {addr}")
}

/// Reads one response; returns it and whether the connection stays usable.
fn read_response(s: &mut TcpStream) -> anyhow::Result<(Response, bool)> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            bail!("connection closed before a response");
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end - 4]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("no HTTP status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let mut resp = Response {
        status,
        headers,
        body: raw.split_off(head_end),
    };
    let closes = resp
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    if status == 204 || status == 304 {
        return Ok((resp, !closes));
    }
    if let Some(len) = resp
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        while resp.body.len() < len {
            let n = s.read(&mut buf)?;
            if n == 0 {
                bail!("connection closed inside a body");
            }
            resp.body.extend_from_slice(&buf[..n]);
        }
        resp.body.truncate(len);
        return Ok((resp, !closes));
    }
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        while !resp.body.ends_with(b"0\r\n\r\n") {
            let n = s.read(&mut buf)?;
            if n == 0 {
                bail!("connection closed inside a chunked body");
            }
            resp.body.extend_from_slice(&buf[..n]);
        }
        resp.body = dechunk(&resp.body)?;
        return Ok((resp, !closes));
    }
    // Neither length nor chunks: the body runs to the close (a timeout ends it too).
    let _ = s.read_to_end(&mut resp.body);
    Ok((resp, false))
}

/// The body of a `Transfer-Encoding: chunked` response.
fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line")?;
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .context("chunk size")?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).context("truncated chunk")?);
        b = b.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-connection server that answers each request with `replies` in turn.
    fn serve(replies: Vec<&'static [u8]>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            for r in replies {
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    got.extend_from_slice(&buf[..n]);
                }
                s.write_all(r).unwrap();
            }
        });
        addr
    }

    #[test]
    fn reads_sized_and_chunked_bodies_on_one_kept_connection() {
        let addr = serve(vec![
            b"HTTP/1.1 201 Created\r\nLocation: /v1/x\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        ]);
        let keep = Connection::KeepAlive;
        let r = request(addr, "POST", "/", &[("Content-Type", "a/b")], b"x", keep).unwrap();
        assert_eq!((r.status, r.header("location")), (201, Some("/v1/x")));
        assert_eq!(r.body, b"hello");
        let r = request(addr, "GET", "/", &[], b"", keep).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abcde"[..]));
    }

    #[test]
    fn a_body_without_length_runs_to_the_close() {
        let addr = serve(vec![
            b"HTTP/1.1 503 Busy\r\nConnection: close\r\n\r\n{\"e\":1}",
        ]);
        let r = request(addr, "GET", "/", &[], b"", Connection::Close).unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.body, b"{\"e\":1}");
    }
}
