//! A socket wrapper that gives hyper's own refusals of an unparsable request head an
//! `Aloud-Request-Id` (and an `Aloud-Error-Code`), as every other response of aloud has.
//!
//! hyper answers a request line or header it cannot parse (400), a URI past its limit (414) or
//! a head past `max_buf_size` or with too many headers (431) by itself, before aloud's service
//! sees a request, with no way to add a header. It writes such a head only when it is writing
//! nothing else (`Conn::on_parse_error`, `Writing::Init`), as one whole write of its own
//! three headers (`connection: close`, `content-length: 0`, `date`) and no body. A write that is
//! exactly that, and nothing more, is recognised here and goes out with the two lines added.
//! Any other write passes untouched.
//!
//! Written by hand: hyper 1.x has no hook for these responses, and no crate adds one.

use crate::request_id;
use pin_project_lite::pin_project;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// hyper's automatic refusals: status line, and aloud's code for it.
const REFUSALS: [(&[u8], &str); 3] = [
    (b"HTTP/1.1 400 Bad Request\r\n", "bad_request"),
    (b"HTTP/1.1 414 URI Too Long\r\n", "uri_too_long"),
    (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        "request_head_too_large",
    ),
];

/// Longer than any of hyper's refusals (status line, three short headers).
const MAX_REFUSAL: usize = 192;

pin_project! {
    pub struct Refusals<T> {
        #[pin]
        io: T,
        // A refusal being written with its lines added: the bytes, how many went out, and the
        // length of hyper's own write to report once all have.
        pending: Option<Box<(Vec<u8>, usize, usize)>>,
    }
}

impl<T> Refusals<T> {
    pub fn new(io: T) -> Self {
        Refusals { io, pending: None }
    }
}

/// hyper's refusal with `Aloud-Request-Id` (from `id`, called only then) and `Aloud-Error-Code`
/// added, when `buf` is exactly one; `None` for every other write.
pub fn with_id(buf: &[u8], id: impl FnOnce() -> String) -> Option<Vec<u8>> {
    if buf.len() > MAX_REFUSAL || !buf.starts_with(b"HTTP/1.1 4") {
        return None;
    }
    let (line, code) = REFUSALS.iter().find(|(line, _)| buf.starts_with(line))?;
    let headers = buf[line.len()..].strip_suffix(b"\r\n\r\n")?;
    // Only hyper's own headers, no body: `content-length: 0` among them.
    let mut empty = false;
    for h in headers.split(|&b| b == b'\n') {
        let h = h.strip_suffix(b"\r").unwrap_or(h);
        let colon = h.iter().position(|&b| b == b':')?;
        let (name, value) = (&h[..colon], h[colon + 1..].trim_ascii());
        match name {
            b"connection" | b"date" => {}
            b"content-length" if value == b"0" => empty = true,
            _ => return None,
        }
    }
    if !empty {
        return None;
    }
    let id = id();
    let mut out = Vec::with_capacity(buf.len() + 96);
    out.extend_from_slice(line);
    for (name, value) in [
        (request_id::HEADER.as_str(), id.as_str()),
        ("aloud-error-code", code),
    ] {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&buf[line.len()..]);
    Some(out)
}

impl<T: AsyncWrite> AsyncWrite for Refusals<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut this = self.project();
        let pending = match this.pending {
            Some(pending) => pending,
            None => match with_id(buf, request_id::generate) {
                Some(bytes) => this.pending.insert(Box::new((bytes, 0, buf.len()))),
                None => return this.io.poll_write(cx, buf),
            },
        };
        let (bytes, sent, theirs) = &mut **pending;
        while *sent < bytes.len() {
            let n = ready!(this.io.as_mut().poll_write(cx, &bytes[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        let theirs = *theirs;
        *this.pending = None;
        Poll::Ready(Ok(theirs))
    }

    // No vectored writes: hyper then writes each head with one `poll_write` (the proxy's
    // listener flattens its writes anyway, `accept.rs`).
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

impl<T: AsyncRead> AsyncRead for Refusals<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPER_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 08:00:34 GMT\r\n\r\n";

    #[test]
    fn hypers_refusals_get_the_id_and_code_after_the_status_line() {
        let out = with_id(HYPER_400, || "id-1".into()).unwrap();
        assert_eq!(
            out,
            b"HTTP/1.1 400 Bad Request\r\naloud-request-id: id-1\r\naloud-error-code: bad_request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 08:00:34 GMT\r\n\r\n"
        );
        let uri = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert!(with_id(uri, || "x".into()).is_some());
    }

    #[test]
    fn anything_but_exactly_a_refusal_passes_untouched() {
        let mut with_body = HYPER_400.to_vec();
        with_body.extend_from_slice(b"x");
        let others: [&[u8]; 6] = [
            // aloud's own refusals already carry the id (and a body).
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\naloud-request-id: a\r\ncontent-length: 2\r\n\r\n{}",
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n",
            &with_body,
            // A body chunk that happens to start like one.
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n",
        ];
        for w in others {
            assert!(
                with_id(w, || "x".into()).is_none(),
                "{}",
                String::from_utf8_lossy(w)
            );
        }
    }

    #[tokio::test]
    async fn a_refusal_written_in_pieces_reports_hypers_length_once_all_went_out() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A pipe of 7 bytes: every write of the longer head is partial.
        let (client, mut peer) = tokio::io::duplex(7);
        let mut io = Refusals::new(client);
        let write = async move {
            let n = std::future::poll_fn(|cx| Pin::new(&mut io).poll_write(cx, HYPER_400))
                .await
                .unwrap();
            assert_eq!(n, HYPER_400.len());
            io.write_all(b"after").await.unwrap();
            io.shutdown().await.unwrap();
        };
        let mut got = Vec::new();
        let read = peer.read_to_end(&mut got);
        let ((), read) = tokio::join!(write, read);
        read.unwrap();
        let got = String::from_utf8(got).unwrap();
        assert!(
            got.starts_with("HTTP/1.1 400 Bad Request\r\naloud-request-id: "),
            "{got}"
        );
        assert!(
            got.contains("\r\naloud-error-code: bad_request\r\n"),
            "{got}"
        );
        assert!(got.ends_with("GMT\r\n\r\nafter"), "{got}");
    }
}
