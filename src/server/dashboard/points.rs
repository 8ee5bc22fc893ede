//! `/dashboard/api/points`: one point per exchange (its timings, tier, outcome, feedback score
//! and ETA error) for the perceived-versus-actual scatter, the silence distribution and the
//! ETA error over time. Newest first,
//! at most `limit`, from a window read oldest first with a cap on the records scanned.

use crate::config::Owner;
use crate::record::CaptureRecord;
use crate::store::{Annotation, Filter, Store, StoreError};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};

/// Points per answer when the page asks for none, and the most it may ask for.
pub const MAX_POINTS: usize = 5_000;
/// Records read for one answer at most (a window holding more is answered from its first
/// `MAX_SCAN` records, and says so).
pub const MAX_SCAN: usize = 200_000;

/// One exchange.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    pub id: String,
    pub attempt: u32,
    pub started_ms: i64,
    pub route: String,
    pub model: Option<String>,
    pub tier: String,
    pub outcome: &'static str,
    pub streamed: bool,
    pub first_feedback_ms: Option<f64>,
    pub first_token_ms: Option<f64>,
    pub total_ms: Option<f64>,
    pub longest_silence_ms: Option<f64>,
    /// The feedback score given for the id, when there is one.
    pub score: Option<f64>,
    /// The ETA's absolute percentage error at 25% of the exchange (`eta.error_at_25` × 100,
    /// the unit of `aloud stats`' `eta_error_pct`); `None` when it had no estimate then.
    pub eta_error_pct: Option<f64>,
}

impl Point {
    pub fn of(r: &CaptureRecord, score: Option<f64>) -> Point {
        let t = &r.timings;
        Point {
            id: r.id.clone(),
            attempt: r.attempt,
            started_ms: r.started_at_ms,
            route: r.route.clone(),
            model: r.model.clone(),
            tier: r.tier.clone(),
            outcome: r.outcome.as_str(),
            streamed: r.streamed,
            first_feedback_ms: t.first_feedback_ms,
            first_token_ms: t.first_token_ms,
            total_ms: t.done_ms,
            longest_silence_ms: t.longest_silence_ms,
            score,
            eta_error_pct: r.eta.and_then(|e| e.error_at_25).map(|e| e * 100.0),
        }
    }
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Points {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Records in the window that were read.
    pub scanned: usize,
    /// The window held more than `MAX_SCAN` records: the newest were not read.
    pub truncated: bool,
    /// Newest first.
    pub points: Vec<Point>,
}

/// The newest `limit` exchanges that started in `[since, until)` (blocking).
pub fn read(
    store: &dyn Store,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    limit: usize,
) -> Result<Points, StoreError> {
    let filter = Filter {
        since_ms,
        until_ms,
        ..Filter::default()
    };
    // Feedback scores of the window in one query (ids without feedback are absent).
    // By (id, owner): a token's feedback scores its own last attempt only (as in stats).
    let scores: HashMap<(String, Option<Owner>), Annotation> = store
        .annotations(&filter)?
        .into_iter()
        .filter(|a| a.feedback_score.is_some())
        .map(|a| ((a.id.clone(), a.owner), a))
        .collect();
    let mut kept: VecDeque<Point> = VecDeque::with_capacity(limit.min(1024));
    let (mut scanned, mut truncated) = (0, false);
    for record in store.query(&filter)? {
        let record = record?;
        if scanned == MAX_SCAN {
            truncated = true;
            break;
        }
        scanned += 1;
        if kept.len() == limit {
            kept.pop_front();
        }
        if limit > 0 {
            let score = scores
                .get(&(record.id.clone(), record.owner))
                .filter(|a| a.covers(record.attempt))
                .and_then(|a| a.feedback_score);
            kept.push_back(Point::of(&record, score));
        }
    }
    let points = kept.into_iter().rev().collect();
    Ok(Points {
        since_ms,
        until_ms,
        scanned,
        truncated,
        points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::record::Outcome;
    use crate::store::SqliteStore;

    fn attempt(n: u32, outcome: Outcome) -> CaptureRecord {
        CaptureRecord {
            attempt: n,
            started_at_ms: i64::from(n) * 1000,
            outcome,
            ..CaptureRecord::minimal("retried")
        }
    }

    /// As in stats and exports: a retried id's score is its last attempt's, not the failures'.
    #[test]
    fn a_retried_ids_score_is_on_its_last_attempt_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(dir.path().join("aloud.db")).unwrap();
        let failed = attempt(1, Outcome::UpstreamError);
        store
            .insert_batch(&[failed, attempt(2, Outcome::Ok)])
            .unwrap();
        store
            .insert_feedback("retried", Some(1.0), None, None)
            .unwrap();
        let points = read(&store, None, None, 10).unwrap().points;
        let scores: Vec<(u32, Option<f64>)> = points.iter().map(|p| (p.attempt, p.score)).collect();
        assert_eq!(scores, [(2, Some(1.0)), (1, None)]);
    }
}
