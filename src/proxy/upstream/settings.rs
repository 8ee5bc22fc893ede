//! The upstream's HTTP/2 stream limit, read from the first frame it sends on a connection.
//!
//! hyper does not expose the peer's `SETTINGS_MAX_CONCURRENT_STREAMS`, and hyper-util's legacy
//! pool queues requests past it on the one shared connection (see `lanes`). So an h2
//! connection's socket is wrapped until the server's connection preface — a SETTINGS frame,
//! always its first — has been read; the wrapper then steps aside and reads pass through.
//! Written by hand because no crate offers it short of speaking HTTP/2 ourselves.

use super::lanes::Shared;
use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

/// The frame header: 24-bit length, type, flags, 31-bit stream id.
const HEADER: usize = 9;
const SETTINGS: u8 = 0x4;
const MAX_CONCURRENT_STREAMS: u16 = 0x3;
/// A preface longer than this is not read (real ones hold a handful of 6-byte settings).
const MAX_PAYLOAD: usize = 6 * 32;

/// What the first frame said so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Sniff {
    /// The frame is not complete yet.
    More,
    /// The server's stream limit; `None` when it set none (no limit).
    Limit(Option<u32>),
    /// Not a readable SETTINGS frame: the limit stays unknown.
    GaveUp,
}

/// Accumulates the first frame's bytes, at most `HEADER + MAX_PAYLOAD`.
#[derive(Debug, Default)]
pub struct Sniffer {
    buf: Vec<u8>,
}

impl Sniffer {
    pub fn feed(&mut self, bytes: &[u8]) -> Sniff {
        let want = match self.frame_len() {
            Some(len) => HEADER + len,
            None => HEADER,
        };
        let take = want.saturating_sub(self.buf.len()).min(bytes.len());
        self.buf.extend_from_slice(&bytes[..take]);
        if self.buf.len() < HEADER {
            return Sniff::More;
        }
        let len = self.frame_len().unwrap_or(0);
        let stream = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]);
        if self.buf[3] != SETTINGS || stream & 0x7fff_ffff != 0 || len > MAX_PAYLOAD {
            return Sniff::GaveUp;
        }
        if self.buf.len() < HEADER + len {
            // The header alone may have arrived; what followed it in `bytes` is fed again.
            let rest = &bytes[take..];
            if rest.is_empty() {
                return Sniff::More;
            }
            return self.feed(rest);
        }
        let limit = self.buf[HEADER..HEADER + len]
            .chunks_exact(6)
            .filter(|s| u16::from_be_bytes([s[0], s[1]]) == MAX_CONCURRENT_STREAMS)
            .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]))
            .next_back();
        Sniff::Limit(limit)
    }

    fn frame_len(&self) -> Option<usize> {
        (self.buf.len() >= 3).then(|| {
            usize::from(self.buf[0]) << 16
                | usize::from(self.buf[1]) << 8
                | usize::from(self.buf[2])
        })
    }
}

/// A connection's socket; on an h2 connection it reads the server's first frame on the way.
pub struct Sniffed<T> {
    io: T,
    sniff: Option<Box<(Sniffer, Arc<Shared>)>>,
}

impl<T> Sniffed<T> {
    pub fn new(io: T, h2: Option<Arc<Shared>>) -> Self {
        Sniffed {
            io,
            sniff: h2.map(|s| Box::new((Sniffer::default(), s))),
        }
    }
}

impl<T: Read + Unpin> Read for Sniffed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(sniff) = this.sniff.as_mut() else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        let mut tmp = [0u8; 1024];
        let n = buf.remaining().min(tmp.len());
        let mut small = ReadBuf::new(&mut tmp[..n]);
        ready!(Pin::new(&mut this.io).poll_read(cx, small.unfilled()))?;
        let got = small.filled();
        buf.put_slice(got);
        let outcome = if got.is_empty() {
            Sniff::GaveUp
        } else {
            sniff.0.feed(got)
        };
        match outcome {
            Sniff::More => {}
            Sniff::Limit(limit) => {
                sniff.1.learned(limit);
                this.sniff = None;
            }
            Sniff::GaveUp => this.sniff = None,
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: Write + Unpin> Write for Sniffed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

impl<T: Connection> Connection for Sniffed<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, 0];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn setting(id: u16, value: u32) -> Vec<u8> {
        let mut s = id.to_be_bytes().to_vec();
        s.extend_from_slice(&value.to_be_bytes());
        s
    }

    #[test]
    fn the_limit_is_read_however_the_bytes_are_split() {
        let mut payload = setting(0x4, 65_535);
        payload.extend(setting(MAX_CONCURRENT_STREAMS, 2));
        payload.extend(setting(0x6, 16_384));
        let mut bytes = frame(SETTINGS, 0, &payload);
        // What follows the preface (a WINDOW_UPDATE) must not disturb it.
        bytes.extend(frame(0x8, 0, &[0, 0, 1, 0]));
        for step in 1..bytes.len() {
            let mut s = Sniffer::default();
            let mut outcome = Sniff::More;
            for chunk in bytes.chunks(step) {
                outcome = s.feed(chunk);
                if outcome != Sniff::More {
                    break;
                }
            }
            assert_eq!(outcome, Sniff::Limit(Some(2)), "split every {step} bytes");
        }
    }

    #[test]
    fn no_limit_unreadable_frames_and_other_streams() {
        let mut s = Sniffer::default();
        assert_eq!(
            s.feed(&frame(SETTINGS, 0, &setting(0x4, 1))),
            Sniff::Limit(None)
        );
        let mut s = Sniffer::default();
        assert_eq!(s.feed(&frame(SETTINGS, 0, &[])), Sniff::Limit(None));
        let mut s = Sniffer::default();
        assert_eq!(s.feed(&frame(0x1, 1, b"headers")), Sniff::GaveUp);
        let mut s = Sniffer::default();
        assert_eq!(s.feed(&frame(SETTINGS, 3, &[])), Sniff::GaveUp);
        let mut s = Sniffer::default();
        assert_eq!(s.feed(&frame(SETTINGS, 0, &[0; 600])), Sniff::GaveUp);
    }
}
