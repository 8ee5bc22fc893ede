//! The body's side of `on_disconnect = "finish"`: the upstream's own head and bytes go to the
//! kept stream as they pass (a refcount bump, no copy), its end too; the finish step takes
//! what the disconnect and the resumes were for the capture record.

use super::ExchangeBody;
use super::flow::UpstreamEnd;
use crate::capture::Outcome;
use crate::progress::keep::{Kept, KeptEnd, KeptHead};
use crate::proxy::exchange::Ending;
use crate::record::{Disconnect, Resume};
use bytes::Bytes;
use http::header;
use std::sync::Arc;
use tokio::time::Instant;

impl ExchangeBody {
    /// Keeps this exchange's upstream bytes in `kept`.
    pub fn keep(&mut self, kept: Arc<Kept>) {
        self.kept = Some(kept);
    }

    /// The upstream has more to send (or has not answered yet): worth finishing.
    pub fn upstream_pending(&self) -> bool {
        !matches!(self.src, super::Source::Done) && !self.ex.is_finished()
    }

    /// The client went away; the body is read on without it.
    pub fn client_left(&mut self) {
        self.detached = true;
        if let Some(k) = &self.kept {
            k.client_left(Instant::now());
        }
    }

    pub fn keep_overflowed(&self) -> bool {
        self.kept.as_ref().is_some_and(|k| k.overflowed())
    }

    /// Nobody can resume an overflowed answer: stop reading the upstream.
    pub fn give_up(&mut self) {
        self.ex.end(Ending::new(
            Outcome::ClientDisconnected,
            true,
            "resume_buffer_full",
            "the client went away and the answer outgrew its resume buffer".into(),
        ));
    }

    pub(super) fn keep_head(&mut self, parts: &http::response::Parts) {
        let Some(k) = &self.kept else { return };
        let text = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        k.head(KeptHead {
            status: parts.status.as_u16(),
            content_type: text(header::CONTENT_TYPE),
            content_encoding: text(header::CONTENT_ENCODING),
        });
    }

    pub(super) fn keep_data(&mut self, data: &Bytes) {
        if let Some(k) = &self.kept {
            k.data(data);
        }
    }

    pub(super) fn keep_end(&mut self, end: &UpstreamEnd) {
        let Some(k) = &self.kept else { return };
        k.end(match end {
            UpstreamEnd::Complete => KeptEnd::Complete,
            UpstreamEnd::Failed(e) => KeptEnd::Failed(format!("the upstream failed mid-body: {e}")),
            UpstreamEnd::IdleTimeout => {
                KeptEnd::Failed("no upstream bytes within the idle timeout".into())
            }
            UpstreamEnd::TotalTimeout => {
                KeptEnd::Failed("the exchange ran past its total timeout".into())
            }
        });
    }

    pub(super) fn keep_cut(&mut self, message: &str) {
        if let Some(k) = &self.kept {
            k.end(KeptEnd::Failed(message.to_owned()));
        }
    }

    /// At the finish step: an answer that did not end is cut; the record gets the disconnect.
    pub(super) fn keep_finish(&mut self) {
        let Some(k) = &self.kept else { return };
        if self.ex.is_finished() {
            return;
        }
        if !k.is_over() {
            k.end(KeptEnd::Failed(
                "the exchange ended before the upstream's answer did".into(),
            ));
        }
        self.ex.disconnect = k.disconnected().map(|d| Disconnect {
            client_left_ms: d.client_left_ms,
            upstream_done_ms: d.upstream_done_ms,
            resumes: d
                .resumes
                .into_iter()
                .map(|(at_ms, after)| Resume { at_ms, after })
                .collect(),
        });
    }
}
