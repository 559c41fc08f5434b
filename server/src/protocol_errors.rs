//! hyper answers requests it cannot parse (a malformed request line, a path over 64 KiB,
//! headers over its buffer) itself, before any handler runs, with an empty body. This
//! adapter on the connection's write side gives those answers the one JSON error shape:
//! a write that is exactly such a bodyless 4xx head is replaced by the same status with a
//! JSON body. Everything else passes through unchanged.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use ductape::wire::{ErrorBody, ErrorDetail};
use ductape::ErrorCode;

/// The JSON answer for a bodyless protocol-error head, if `head` is one.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    // Cheap checks first: every answer passes through here.
    if head.len() > 1024 || !head.starts_with(b"HTTP/1.1 4") || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    if !text.ends_with("\r\n\r\n")
        || !text
            .to_ascii_lowercase()
            .contains("\r\ncontent-length: 0\r\n")
    {
        return None;
    }
    let status: u16 = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let (code, message) = match status {
        400 => (
            ErrorCode::MalformedBody,
            "the request could not be parsed as HTTP/1.1",
        ),
        414 => (
            ErrorCode::UriTooLong,
            "the request's path and query are too long",
        ),
        431 => (
            ErrorCode::HeadersTooLarge,
            "the request's headers are too large",
        ),
        _ => return None,
    };
    let body = serde_json::to_string(&ErrorBody {
        error: ErrorDetail {
            status,
            code: code.as_str().to_owned(),
            message: message.to_owned(),
        },
    })
    .ok()?;
    let status_line = text.split("\r\n").next()?;
    let mut out = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    out.push_str(&body);
    Some(out.into_bytes())
}

/// The connection, with hyper's bodyless protocol-error answers given JSON bodies.
pub struct JsonProtocolErrors<I> {
    inner: I,
    /// A replacement being written: its bytes, how many are written, and how many bytes of
    /// the caller's buffer it stands for.
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<I> JsonProtocolErrors<I> {
    pub fn new(inner: I) -> Self {
        JsonProtocolErrors {
            inner,
            pending: None,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for JsonProtocolErrors<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for JsonProtocolErrors<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending.is_none() {
            match replacement(buf) {
                Some(bytes) => self.pending = Some((bytes, 0, buf.len())),
                None => return Pin::new(&mut self.inner).poll_write(cx, buf),
            }
        }
        let this = &mut *self;
        while let Some((bytes, written, stands_for)) = &mut this.pending {
            if *written == bytes.len() {
                let n = *stands_for;
                this.pending = None;
                return Poll::Ready(Ok(n));
            }
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(0))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes each answer as one buffer, which `replacement` sees
    // whole.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bodyless_protocol_errors_are_replaced() {
        let head = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(replacement(head).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 414 URI Too Long\r\n"));
        assert!(out.ends_with(r#"{"error":{"status":414,"code":"uri_too_long","message":"the request's path and query are too long"}}"#));
        // Our own answers always have a body; 2xx and other statuses pass.
        assert!(replacement(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(replacement(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 12\r\n\r\n").is_none());
        assert!(replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
    }
}
