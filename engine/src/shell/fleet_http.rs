//! The one HTTP/1.1 request a node makes to another: a per-call request forwarded to the call's
//! owner over its internal address, on the shard's executor (no thread, no blocking), bounded in
//! time and size.

use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};

/// The header that marks a request one node sent another (answered there, never passed on).
pub const FORWARDED: &str = "X-Tern-Forwarded";

/// The whole exchange must fit in this.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Largest answer read back (an error body at most).
const MAX_ANSWER: usize = 64 * 1024;

/// What the owner answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("connecting or talking to it: {0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("its answer is not HTTP/1.1")]
    Malformed,
}

/// Sends `method path` with `authorization` and an optional body (content type, bytes) to `to`,
/// marked as forwarded (the receiver answers it itself); returns its answer.
pub async fn request(
    to: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> Result<Answer, ForwardError> {
    let len = body.map_or(0, |(_, b)| b.len());
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {to}\r\nContent-Length: {len}\r\nConnection: close\r\n\
         {FORWARDED}: 1\r\n"
    );
    if let Some(a) = authorization {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    if let Some((ctype, _)) = body {
        head.push_str(&format!("Content-Type: {ctype}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if let Some((_, b)) = body {
        out.extend_from_slice(b);
    }
    let exchange = async {
        let mut s = glommio::net::TcpStream::connect(to).await?;
        s.write_all(&out).await?;
        s.flush().await?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 || buf.len() + n > MAX_ANSWER {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(buf)
    };
    let raw = glommio::timer::timeout(TIMEOUT, async {
        exchange.await.map_err(glommio::GlommioError::IoError)
    })
    .await
    .map_err(|e| match e {
        glommio::GlommioError::IoError(e) => ForwardError::Io(e),
        _ => ForwardError::Timeout(TIMEOUT),
    })?;
    parse(&raw).ok_or(ForwardError::Malformed)
}

/// Status, content type and body of an HTTP/1.1 answer read to its end.
fn parse(raw: &[u8]) -> Option<Answer> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()?
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    let headers: Vec<(&str, &str)> = lines.filter_map(|l| l.split_once(':')).collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    Some(Answer {
        status,
        content_type: header("content-type"),
        location: header("location"),
        body: raw[split + 4..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn answers_parse_and_garbage_does_not() {
        let a = parse(b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\r\n{\"x\":1}")
            .unwrap();
        assert_eq!(
            (a.status, a.content_type.as_deref()),
            (404, Some("application/json"))
        );
        assert_eq!(a.body, b"{\"x\":1}");
        assert_eq!(
            parse(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap().status,
            204
        );
        assert!(parse(b"garbage").is_none());
        assert!(parse(b"HTTP/1.1 2\r\n\r\n").is_none());
    }
}
