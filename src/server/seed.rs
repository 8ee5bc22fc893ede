//! Seeds the ETA history from the capture database at start: a bounded read of recent ok
//! exchanges on a blocking thread, tracked like every task, while aloud already serves.
//! Requests that arrive before it ends simply find less history.

use crate::apis::Api;
use crate::config::Database;
use crate::progress::eta::{self, History, Key, Sample};
use crate::record::CaptureRecord;
use crate::store::{Filter, open_reader};
use std::sync::Arc;
use std::time::Duration;

/// How far back the seed reads.
pub const SEED_WINDOW: Duration = Duration::from_secs(3 * 24 * 3600);
/// The most records the seed reads (the rings keep the latest [`eta::history::RING`] per key).
pub const SEED_MAX: usize = 20_000;

/// Reads the newest ok records of the last [`SEED_WINDOW`] (at most [`SEED_MAX`]) from
/// `database` into `history`; returns how many were added.
pub fn seed(database: &Database, history: &History, now_ms: i64) -> Result<usize, String> {
    seed_at_most(database, history, now_ms, SEED_MAX)
}

/// [`seed`], reading at most `max` records: the newest of the window (read newest first, then
/// taught oldest first, so each key's ring ends with its latest exchanges).
pub fn seed_at_most(
    database: &Database,
    history: &History,
    now_ms: i64,
    max: usize,
) -> Result<usize, String> {
    let store = open_reader(database).map_err(|e| e.to_string())?;
    let filter = Filter {
        since_ms: Some(now_ms - SEED_WINDOW.as_millis() as i64),
        // Open-ended: a replica's clock may run a little ahead.
        until_ms: None,
        outcome: Some("ok".to_owned()),
        limit: Some(max),
        newest_first: true,
        ..Filter::default()
    };
    let mut found = Vec::new();
    for record in store.query(&filter).map_err(|e| e.to_string())? {
        let record = record.map_err(|e| e.to_string())?;
        found.extend(from_record(&record));
    }
    let added = found.len();
    for (key, sample, sized) in found.into_iter().rev() {
        history.record_from(if sized { 0 } else { 1 }, &key, sample);
    }
    Ok(added)
}

/// The key and sample of a captured exchange, and whether its request's size is known (a
/// record without its request seeds only the levels without size).
pub fn from_record(r: &CaptureRecord) -> Option<(Key, Sample, bool)> {
    let total = r.timings.done_ms?;
    let api = Api::ALL.into_iter().find(|a| a.as_str() == r.api)?;
    let body = r.request.as_ref().and_then(|v| serde_json::to_vec(v).ok());
    let traits = crate::apis::traits::read(api, &r.method, &r.path, None, body.as_deref());
    let key = Key {
        route: Arc::from(r.route.as_str()),
        model: traits.model.or_else(|| r.model.clone()).map(Arc::from),
        streams: if body.is_some() {
            traits.streams
        } else {
            r.streamed
        },
        effort: traits.effort.map(Arc::from),
        input: body
            .as_ref()
            .map_or(0, |b| eta::input_bucket(b.len() as u64)),
    };
    let sample = Sample {
        total_ms: total as f32,
        first_token_ms: r.timings.first_token_ms.map(|f| f as f32),
    };
    Some((key, sample, body.is_some()))
}
