//! Incremental gzip decoding for observed bodies, bounded against decompression bombs.
//!
//! **Invariant:** total output never exceeds the configured limit; past it the decoder refuses
//! further input instead of growing.

use std::io::Write;

/// Why decoding stopped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GzipError {
    #[error("gzip output exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("invalid gzip data: {0}")]
    Invalid(String),
}

/// A `Write` sink that keeps decoded bytes until taken, and errors past a total limit.
#[derive(Debug)]
struct Bounded {
    out: Vec<u8>,
    total: usize,
    limit: usize,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.total.saturating_add(buf.len()) > self.limit {
            return Err(std::io::Error::other("gzip output limit"));
        }
        self.total += buf.len();
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Feeds compressed chunks, returns the decompressed bytes available so far.
pub struct GzipDecoder {
    inner: flate2::write::MultiGzDecoder<Bounded>,
    failed: Option<GzipError>,
}

impl std::fmt::Debug for GzipDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzipDecoder")
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl GzipDecoder {
    pub fn new(max_output: usize) -> Self {
        let sink = Bounded {
            out: Vec::new(),
            total: 0,
            limit: max_output,
        };
        GzipDecoder {
            inner: flate2::write::MultiGzDecoder::new(sink),
            failed: None,
        }
    }

    /// Total decompressed bytes produced so far.
    pub fn total_out(&self) -> usize {
        self.inner.get_ref().total
    }

    /// Decodes one chunk. After the first error every call returns that error.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<u8>, GzipError> {
        if let Some(e) = &self.failed {
            return Err(e.clone_error());
        }
        let result = self
            .inner
            .write_all(chunk)
            .and_then(|()| self.inner.flush());
        self.settle(result)
    }

    /// Ends the stream, returning any remaining output.
    pub fn finish(&mut self) -> Result<Vec<u8>, GzipError> {
        if let Some(e) = &self.failed {
            return Err(e.clone_error());
        }
        let result = self.inner.try_finish();
        self.settle(result)
    }

    fn settle(&mut self, result: std::io::Result<()>) -> Result<Vec<u8>, GzipError> {
        let out = std::mem::take(&mut self.inner.get_mut().out);
        match result {
            Ok(()) => Ok(out),
            Err(e) => {
                let sink = self.inner.get_ref();
                let error =
                    if sink.total + out.len() >= sink.limit || e.to_string().contains("limit") {
                        GzipError::TooLarge { limit: sink.limit }
                    } else {
                        GzipError::Invalid(e.to_string())
                    };
                self.failed = Some(error.clone_error());
                Err(error)
            }
        }
    }
}

impl GzipError {
    fn clone_error(&self) -> GzipError {
        match self {
            GzipError::TooLarge { limit } => GzipError::TooLarge { limit: *limit },
            GzipError::Invalid(s) => GzipError::Invalid(s.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decodes_byte_by_byte() {
        let z = gz(b"data: hello\n\n");
        let mut d = GzipDecoder::new(1024);
        let mut out = Vec::new();
        for b in &z {
            out.extend(d.feed(std::slice::from_ref(b)).unwrap());
        }
        out.extend(d.finish().unwrap());
        assert_eq!(out, b"data: hello\n\n");
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let z = gz(&vec![b'a'; 1 << 20]);
        let mut d = GzipDecoder::new(4096);
        let got = d.feed(&z);
        assert_eq!(got, Err(GzipError::TooLarge { limit: 4096 }));
        assert!(d.total_out() <= 4096);
    }

    #[test]
    fn garbage_is_an_error() {
        let mut d = GzipDecoder::new(4096);
        let r = d.feed(b"not gzip at all").and_then(|_| d.finish());
        assert!(matches!(r, Err(GzipError::Invalid(_))));
    }
}
