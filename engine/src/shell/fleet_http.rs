//! The one HTTP/1.1 request a node makes to another: a per-call request forwarded to the call's
//! owner over its internal address, on the shard's executor (no thread, no blocking), bounded in
//! time and size.

use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};

/// The whole exchange must fit in this.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Largest answer read back (an error body at most).
const MAX_ANSWER: usize = 64 * 1024;

/// What the owner answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
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

/// Sends `method path` (no body) with `authorization` to `to`; returns its answer.
pub async fn request(
    to: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> Result<Answer, ForwardError> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\
         X-Tern-Forwarded: 1\r\n"
    );
    if let Some(a) = authorization {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    head.push_str("\r\n");
    let exchange = async {
        let mut s = glommio::net::TcpStream::connect(to).await?;
        s.write_all(head.as_bytes()).await?;
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
    let content_type = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-type")
            .then(|| v.trim().to_string())
    });
    Some(Answer {
        status,
        content_type,
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
