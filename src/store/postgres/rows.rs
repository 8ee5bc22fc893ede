//! A batch of records as column arrays, the parameters of one `INSERT ... SELECT FROM
//! unnest(...)`: one statement and one round trip per batch, however many records it holds.

use super::super::StoreError;
use crate::record::CaptureRecord;
use postgres::types::ToSql;
use std::borrow::Cow;

/// `text` as Postgres can store it: its `text` type refuses NUL, which a client can put in a
/// model name or a feedback comment; each becomes U+FFFD so one record cannot fail a batch
/// forever. (The record's JSON escapes NUL, so it keeps the original.)
pub(super) fn text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

fn opt_text(value: Option<&str>) -> Option<String> {
    value.map(|v| text(v).into_owned())
}

/// Token counts as Postgres integers (counts beyond `i64::MAX` are stored as `NULL`).
fn count(value: Option<u64>) -> Option<i64> {
    value.and_then(|v| i64::try_from(v).ok())
}

#[derive(Default)]
pub(super) struct Columns {
    id: Vec<String>,
    attempt: Vec<i64>,
    started_at_ms: Vec<i64>,
    route: Vec<String>,
    api: Vec<String>,
    model: Vec<Option<String>>,
    method: Vec<String>,
    path: Vec<String>,
    client_status: Vec<Option<i32>>,
    upstream_status: Vec<Option<i32>>,
    streamed: Vec<bool>,
    tier: Vec<String>,
    outcome: Vec<&'static str>,
    partial: Vec<bool>,
    first_feedback_ms: Vec<Option<f64>>,
    first_token_ms: Vec<Option<f64>>,
    done_ms: Vec<Option<f64>>,
    longest_silence_ms: Vec<Option<f64>>,
    overhead_ms: Vec<Option<f64>>,
    upstream_ms: Vec<Option<f64>>,
    input_tokens: Vec<Option<i64>>,
    output_tokens: Vec<Option<i64>>,
    reasoning_tokens: Vec<Option<i64>>,
    record: Vec<String>,
    owner: Vec<Option<String>>,
}

impl Columns {
    pub(super) fn new(records: &[&CaptureRecord]) -> Result<Columns, StoreError> {
        let mut c = Columns::default();
        for r in records {
            let json = crate::record::json::to_string(r).map_err(|source| StoreError::Json {
                id: r.id.clone(),
                source,
            })?;
            let t = &r.timings;
            let usage = r.usage.unwrap_or_default();
            c.id.push(text(&r.id).into_owned());
            c.attempt.push(i64::from(r.attempt));
            c.started_at_ms.push(r.started_at_ms);
            c.route.push(text(&r.route).into_owned());
            c.api.push(text(&r.api).into_owned());
            c.model.push(opt_text(r.model.as_deref()));
            c.method.push(text(&r.method).into_owned());
            c.path.push(text(&r.path).into_owned());
            c.client_status.push(r.client_status.map(i32::from));
            c.upstream_status.push(r.upstream_status.map(i32::from));
            c.streamed.push(r.streamed);
            c.tier.push(text(&r.tier).into_owned());
            c.outcome.push(r.outcome.as_str());
            c.partial.push(r.partial);
            c.first_feedback_ms.push(t.first_feedback_ms);
            c.first_token_ms.push(t.first_token_ms);
            c.done_ms.push(t.done_ms);
            c.longest_silence_ms.push(t.longest_silence_ms);
            c.overhead_ms.push(t.overhead_ms);
            c.upstream_ms.push(t.upstream_ms);
            c.input_tokens.push(count(usage.input));
            c.output_tokens.push(count(usage.output));
            c.reasoning_tokens.push(count(usage.reasoning));
            c.record.push(json);
            c.owner.push(r.owner.map(|o| o.to_string()));
        }
        Ok(c)
    }

    /// `$1` to `$25` of the insert, in its column order.
    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 25] {
        [
            &self.id,
            &self.attempt,
            &self.started_at_ms,
            &self.route,
            &self.api,
            &self.model,
            &self.method,
            &self.path,
            &self.client_status,
            &self.upstream_status,
            &self.streamed,
            &self.tier,
            &self.outcome,
            &self.partial,
            &self.first_feedback_ms,
            &self.first_token_ms,
            &self.done_ms,
            &self.longest_silence_ms,
            &self.overhead_ms,
            &self.upstream_ms,
            &self.input_tokens,
            &self.output_tokens,
            &self.reasoning_tokens,
            &self.record,
            &self.owner,
        ]
    }
}
