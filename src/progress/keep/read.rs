//! Reading a kept stream: from after event N, live until its end; or whole, once it ended.

use super::{Kept, KeptEnd, KeptHead};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::watch;

/// Why a reader cannot give (the rest of) a kept stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FollowError {
    /// The upstream failed or was cut: the stream stops short.
    #[error("the upstream's answer stopped short: {0}")]
    Failed(String),
    /// Its bytes were dropped past a bound.
    #[error("the answer is no longer kept: {0}")]
    Overflow(String),
    /// The stream ended with fewer events than asked to skip.
    #[error("the stream has {events} events; after={after} is past its end")]
    Beyond { events: usize, after: u64 },
}

impl FollowError {
    /// A machine-readable code for the error body.
    pub fn code(&self) -> &'static str {
        match self {
            FollowError::Failed(_) => "upstream_failed",
            FollowError::Overflow(_) => "resume_buffer_exceeded",
            FollowError::Beyond { .. } => "after_past_end",
        }
    }
}

/// Where a reader starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// This byte offset.
    At(usize),
    /// Event N has not arrived yet.
    Wait,
}

fn end_error(end: &KeptEnd) -> Option<FollowError> {
    match end {
        KeptEnd::Complete => None,
        KeptEnd::Failed(m) => Some(FollowError::Failed(m.clone())),
        KeptEnd::Overflow(m) => Some(FollowError::Overflow(m.clone())),
    }
}

impl Kept {
    /// Where the bytes after event `after` start.
    pub fn start(&self, after: u64) -> Result<Start, FollowError> {
        let s = self.lock();
        if let Some(KeptEnd::Overflow(m)) = &s.end {
            return Err(FollowError::Overflow(m.clone()));
        }
        let n = usize::try_from(after).unwrap_or(usize::MAX);
        match n {
            0 => Ok(Start::At(0)),
            n if n <= s.ends.len() => Ok(Start::At(s.ends[n - 1])),
            _ if s.end.is_some() => Err(FollowError::Beyond {
                events: s.ends.len(),
                after,
            }),
            _ => Ok(Start::Wait),
        }
    }

    /// A reader of the bytes after event `after`, live until the end.
    pub fn follow(self: &Arc<Self>, after: u64) -> Follow {
        Follow {
            rx: self.changed.subscribe(),
            kept: Arc::clone(self),
            after,
            pos: None,
            chunk: 0,
            offset: 0,
            over: false,
        }
    }

    /// Waits for the upstream's head; `Err` when the stream ended without one, or failed.
    pub async fn head_when_known(self: &Arc<Self>) -> Result<KeptHead, FollowError> {
        let mut rx = self.changed.subscribe();
        loop {
            {
                let s = self.lock();
                if let Some(KeptEnd::Overflow(m)) = &s.end {
                    return Err(FollowError::Overflow(m.clone()));
                }
                if let Some(h) = &s.head {
                    return Ok(h.clone());
                }
                if let Some(e) = &s.end {
                    return Err(end_error(e)
                        .unwrap_or_else(|| FollowError::Failed("no response head".into())));
                }
            }
            if rx.changed().await.is_err() {
                return Err(FollowError::Failed("the exchange went away".into()));
            }
        }
    }

    /// Waits for the end; the whole body's chunks when it completed.
    pub async fn whole(self: &Arc<Self>) -> Result<(KeptHead, Vec<Bytes>), FollowError> {
        let mut rx = self.changed.subscribe();
        loop {
            {
                let s = self.lock();
                match (&s.end, &s.head) {
                    (Some(KeptEnd::Complete), Some(h)) => return Ok((h.clone(), s.chunks.clone())),
                    (Some(e), _) => {
                        return Err(end_error(e)
                            .unwrap_or_else(|| FollowError::Failed("no response head".into())));
                    }
                    (None, _) => {}
                }
            }
            if rx.changed().await.is_err() {
                return Err(FollowError::Failed("the exchange went away".into()));
            }
        }
    }
}

/// Reads a kept stream's bytes as they come (zero-copy slices of the kept chunks).
pub struct Follow {
    kept: Arc<Kept>,
    rx: watch::Receiver<u64>,
    after: u64,
    /// The next byte to give, once event `after` arrived.
    pos: Option<usize>,
    /// Where `pos` falls: chunk index and offset within it.
    chunk: usize,
    offset: usize,
    over: bool,
}

impl Follow {
    /// The next bytes; `None` at a clean end; an error once, then `None`.
    pub async fn next(&mut self) -> Option<Result<Bytes, FollowError>> {
        if self.over {
            return None;
        }
        loop {
            match self.step() {
                Some(Ok(Some(b))) => return Some(Ok(b)),
                Some(Ok(None)) => {
                    self.over = true;
                    return None;
                }
                Some(Err(e)) => {
                    self.over = true;
                    return Some(Err(e));
                }
                None => {
                    if self.rx.changed().await.is_err() {
                        self.over = true;
                        return Some(Err(FollowError::Failed("the exchange went away".into())));
                    }
                }
            }
        }
    }

    /// `None`: wait for a change. `Some(Ok(None))`: the clean end.
    fn step(&mut self) -> Option<Result<Option<Bytes>, FollowError>> {
        // Mark what is seen before reading, so a change after the read wakes the wait.
        self.rx.borrow_and_update();
        if self.pos.is_none() {
            match self.kept.start(self.after) {
                Ok(Start::At(p)) => self.seek(p),
                Ok(Start::Wait) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
        let s = self.kept.lock();
        if let Some(KeptEnd::Overflow(m)) = &s.end {
            return Some(Err(FollowError::Overflow(m.clone())));
        }
        while let Some(c) = s.chunks.get(self.chunk) {
            if self.offset < c.len() {
                let b = c.slice(self.offset..);
                self.chunk += 1;
                self.offset = 0;
                return Some(Ok(Some(b)));
            }
            self.chunk += 1;
            self.offset = 0;
        }
        // What the upstream sent before it failed came first; then the failure.
        s.end.as_ref().map(|e| end_error(e).map_or(Ok(None), Err))
    }

    fn seek(&mut self, pos: usize) {
        let s = self.kept.lock();
        let mut base = 0;
        self.chunk = s.chunks.len();
        self.offset = 0;
        for (i, c) in s.chunks.iter().enumerate() {
            if pos < base + c.len() {
                self.chunk = i;
                self.offset = pos - base;
                break;
            }
            base += c.len();
        }
        self.pos = Some(pos);
    }
}
