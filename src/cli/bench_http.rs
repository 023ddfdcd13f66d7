//! A light HTTP/1.1 load generator for the benchmarks: one keep-alive connection per task,
//! requests written whole, answers read by their `Content-Length`. It costs a fraction of
//! a full client's CPU, which matters when the generator and the node share two cores.

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Conn {
    stream: TcpStream,
    host: String,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects to `base` (`http://host:port`, no TLS).
    pub async fn open(base: &str) -> Result<Conn> {
        let host = base
            .strip_prefix("http://")
            .context("the light client speaks plain http only")?
            .trim_end_matches('/')
            .to_string();
        let stream = TcpStream::connect(&host).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            host,
            buf: Vec::with_capacity(4096),
        })
    }

    /// POSTs a JSON body with a bearer key and returns the status of the answer.
    pub async fn post_json(&mut self, path: &str, key: &str, body: &[u8]) -> Result<u16> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let mut req = Vec::with_capacity(head.len() + body.len());
        req.extend_from_slice(head.as_bytes());
        req.extend_from_slice(body);
        self.stream.write_all(&req).await?;
        self.read_answer().await
    }

    async fn read_answer(&mut self) -> Result<u16> {
        let (head_end, status, length) = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).context("a non-UTF-8 head")?;
                let (status, length) = parse_head(head)?;
                break (end + 4, status, length);
            }
            self.fill().await?;
        };
        let end = head_end
            .checked_add(length)
            .context("a Content-Length beyond memory")?;
        while self.buf.len() < end {
            self.fill().await?;
        }
        self.buf.drain(..end);
        Ok(status)
    }

    async fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 8192];
        // A server that stops answering fails the request instead of hanging the run.
        let n = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            self.stream.read(&mut chunk),
        )
        .await
        .context("no answer within 60 s")??;
        if n == 0 {
            bail!("the server closed the connection");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The status code and `Content-Length` of a response head.
fn parse_head(head: &str) -> Result<(u16, usize)> {
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    // 1xx, 204 and 304 answers carry no body (RFC 9112 §6.3), whatever they say.
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok((status, 0));
    }
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .context("an answer without Content-Length (the light client reads no chunks)")?;
    Ok((status, length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_give_status_and_length() {
        let h = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 42";
        assert_eq!(parse_head(h).unwrap(), (200, 42));
        assert_eq!(
            parse_head("HTTP/1.1 503 Service Unavailable\r\ncontent-length:0").unwrap(),
            (503, 0)
        );
        assert!(parse_head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked").is_err());
        assert!(parse_head("garbage").is_err());
        assert_eq!(parse_head("HTTP/1.1 204 No Content").unwrap(), (204, 0));
        assert_eq!(
            parse_head("HTTP/1.1 304 Not Modified\r\ncontent-length: 10").unwrap(),
            (304, 0)
        );
    }

    #[tokio::test]
    async fn it_reads_answers_back_to_back_on_one_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut chunk = [0u8; 1024];
            // two requests, then both answers in one write (split across reads by chance)
            while got.windows(4).filter(|w| w == b"\r\n\r\n").count() < 2 || !got.ends_with(b"}") {
                let n = s.read(&mut chunk).await.unwrap();
                got.extend_from_slice(&chunk[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1 429 Too Many\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
        });
        let mut c = Conn::open(&format!("http://{addr}")).await.unwrap();
        let head = format!(
            "POST /x HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 2\r\n\r\n{{}}POST /x HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 2\r\n\r\n{{}}"
        );
        c.stream.write_all(head.as_bytes()).await.unwrap();
        assert_eq!(c.read_answer().await.unwrap(), 200);
        assert_eq!(c.read_answer().await.unwrap(), 429);
        assert!(c.buf.is_empty());
    }
}
