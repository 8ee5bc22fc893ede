//! Filtered reads that stream: keyset pagination over `(started_at_ms, seq)`, one short
//! statement per page, so no statement (and no read snapshot) outlives a page and memory is one
//! page of records whatever the table holds.

use super::StoreError;
use crate::config::Owner;
use crate::record::CaptureRecord;
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use std::collections::VecDeque;

/// Which records [`Store::query`](super::Store::query) returns; `None` fields do not filter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// Records whose request started at or after this Unix time in milliseconds.
    pub since_ms: Option<i64>,
    /// Records whose request started before this Unix time in milliseconds (exclusive, so
    /// consecutive windows `[since, until)` never count a record twice).
    pub until_ms: Option<i64>,
    pub route: Option<String>,
    pub model: Option<String>,
    /// An outcome as written in the record (`ok`, `upstream_error`, …).
    pub outcome: Option<String>,
    /// Records that have feedback with a score at least this high.
    pub min_score: Option<f64>,
    /// Records that have feedback with exactly this label.
    pub label: Option<String>,
    /// At most this many records.
    pub limit: Option<usize>,
    /// Newest first (by start time, then insertion), so a limit keeps the newest records;
    /// oldest first otherwise.
    pub newest_first: bool,
}

/// Records per page.
const PAGE: usize = 256;

/// A filter's value, for either driver to bind.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum FilterValue {
    Int(i64),
    Text(String),
    Real(f64),
}

/// Feedback `f` is the beacon of record `c`: the same id and owner (`''` or NULL for none, so
/// a database not yet migrated to keyed owners reads alike), and `c` is that owner's last
/// attempt of the id (the beacon speaks of the answer the client got).
const OWN_LAST: &str = "f.id = c.id AND coalesce(f.owner, '') = coalesce(c.owner, '') \
     AND c.attempt = (SELECT MAX(a.attempt) FROM captures a \
     WHERE a.id = c.id AND coalesce(a.owner, '') = coalesce(c.owner, ''))";

/// The conditions `filter` sets on `captures c`, their values numbered from `first` on.
/// `mark(n)` writes parameter `n` in the driver's syntax (`?n` or `$n`).
fn conditions(
    filter: &Filter,
    mark: fn(usize) -> String,
    first: usize,
) -> (Vec<String>, Vec<FilterValue>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    let mut push = |condition: &str, value: FilterValue| {
        conditions.push(condition.replace('#', &mark(first + values.len())));
        values.push(value);
    };
    if let Some(since) = filter.since_ms {
        push("c.started_at_ms >= #", FilterValue::Int(since));
    }
    if let Some(until) = filter.until_ms {
        push("c.started_at_ms < #", FilterValue::Int(until));
    }
    if let Some(route) = &filter.route {
        push("c.route = #", FilterValue::Text(route.clone()));
    }
    if let Some(model) = &filter.model {
        push("c.model = #", FilterValue::Text(model.clone()));
    }
    if let Some(outcome) = &filter.outcome {
        push("c.outcome = #", FilterValue::Text(outcome.clone()));
    }
    if let Some(score) = filter.min_score {
        push(
            &format!("EXISTS (SELECT 1 FROM feedback f WHERE {OWN_LAST} AND f.score >= #)"),
            FilterValue::Real(score),
        );
    }
    if let Some(label) = &filter.label {
        push(
            &format!("EXISTS (SELECT 1 FROM feedback f WHERE {OWN_LAST} AND f.label = #)"),
            FilterValue::Text(label.clone()),
        );
    }
    (conditions, values)
}

/// The paged query for `filter`, the same for SQLite and Postgres: parameter 1 and 2 are the
/// keyset `(started_at_ms, seq)` to start after (in the filter's order), 3 the page size, then
/// the filter's values in order. `mark(n)` writes parameter `n` in the driver's syntax (`?n` or
/// `$n`).
pub(crate) fn paged_sql(filter: &Filter, mark: fn(usize) -> String) -> (String, Vec<FilterValue>) {
    let (mut conditions, values) = conditions(filter, mark, 4);
    let (after, order) = if filter.newest_first {
        ("<", "c.started_at_ms DESC, c.seq DESC")
    } else {
        (">", "c.started_at_ms, c.seq")
    };
    conditions.insert(
        0,
        format!(
            "(c.started_at_ms, c.seq) {after} ({}, {})",
            mark(1),
            mark(2)
        ),
    );
    let sql = format!(
        "SELECT c.started_at_ms, c.seq, c.id, c.record FROM captures c WHERE {} \
         ORDER BY {order} LIMIT {}",
        conditions.join(" AND "),
        mark(3)
    );
    (sql, values)
}

/// The query for [`Store::annotations`](super::Store::annotations), the same for SQLite and
/// Postgres: `(id, client timings JSON, feedback score, feedback label, the owner's last attempt
/// of the id, owner)` of every record `filter` selects (its limit aside) that has client timings
/// or feedback from its own owner; the filter's values are the parameters in order.
pub(crate) fn annotations_sql(
    filter: &Filter,
    mark: fn(usize) -> String,
) -> (String, Vec<FilterValue>) {
    let (mut conditions, values) = conditions(filter, mark, 1);
    conditions.push("(t.id IS NOT NULL OR f.id IS NOT NULL)".to_owned());
    let sql = format!(
        "SELECT DISTINCT c.id, t.timings, f.score, f.label, \
         (SELECT MAX(a.attempt) FROM captures a \
          WHERE a.id = c.id AND coalesce(a.owner, '') = coalesce(c.owner, '')), c.owner \
         FROM captures c \
         LEFT JOIN client_timings t \
           ON t.id = c.id AND coalesce(t.owner, '') = coalesce(c.owner, '') \
         LEFT JOIN feedback f ON f.id = c.id AND coalesce(f.owner, '') = coalesce(c.owner, '') \
         WHERE {}",
        conditions.join(" AND ")
    );
    (sql, values)
}

/// What the beacons of one owner said about one request id: the client's timings and the
/// feedback's score and label ([`Store::annotations`](super::Store::annotations)).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Annotation {
    pub id: String,
    /// Who sent the beacons, and made the attempts they speak of (`None`: without a token).
    pub owner: Option<Owner>,
    /// The timings JSON the client sent (`first_progress_painted_ms`, …), when it sent any.
    pub client_timings: Option<serde_json::Value>,
    pub feedback_score: Option<f64>,
    pub feedback_label: Option<String>,
    /// The owner's last stored attempt of the id: the beacons speak of the answer the client
    /// got, so they belong to it alone (`None`: unknown, every attempt).
    pub last_attempt: Option<i64>,
}

impl Annotation {
    /// An annotation from a row of [`annotations_sql`]; timings that are not JSON count as none.
    pub(crate) fn from_row(
        id: String,
        timings: Option<&str>,
        score: Option<f64>,
        label: Option<String>,
        last_attempt: Option<i64>,
        owner: Option<&str>,
    ) -> Annotation {
        Annotation {
            id,
            owner: owner.and_then(Owner::parse),
            client_timings: timings.and_then(|t| serde_json::from_str(t).ok()),
            feedback_score: score,
            feedback_label: label,
            last_attempt,
        }
    }

    /// Whether the annotation speaks of `attempt` (the id's last one).
    pub fn covers(&self, attempt: u32) -> bool {
        self.last_attempt
            .is_none_or(|last| last == i64::from(attempt))
    }
}

/// One row of a page: `(started_at_ms, seq, id, record JSON)`.
pub(crate) type Row = (i64, i64, String, String);

/// A driver's side of paging: the rows after the keyset `after`, at most `limit` of them.
pub(crate) trait PageSource {
    fn page(&mut self, after: (i64, i64), limit: usize) -> Result<Vec<Row>, StoreError>;
}

/// The iterator behind both stores' `query`: keyset pages of [`PAGE`] records, decoded as they
/// are handed out, stopping at the filter's limit.
pub(crate) struct Paged<S> {
    source: S,
    /// The last `(started_at_ms, seq)` returned; the next page starts after it.
    after: (i64, i64),
    buffer: VecDeque<Result<CaptureRecord, StoreError>>,
    remaining: Option<usize>,
    exhausted: bool,
}

impl<S: PageSource> Paged<S> {
    /// Pages of `source`, the query [`paged_sql`] made for `filter`.
    pub(crate) fn new(source: S, filter: &Filter) -> Paged<S> {
        let start = if filter.newest_first {
            i64::MAX
        } else {
            i64::MIN
        };
        Paged {
            source,
            after: (start, start),
            buffer: VecDeque::new(),
            remaining: filter.limit,
            exhausted: false,
        }
    }

    fn fetch(&mut self) -> Result<(), StoreError> {
        let want = self.remaining.map_or(PAGE, |r| r.min(PAGE));
        let rows = self.source.page(self.after, want)?;
        if rows.len() < want {
            self.exhausted = true;
        }
        for (started_at_ms, seq, id, json) in rows {
            self.after = (started_at_ms, seq);
            self.buffer.push_back(
                serde_json::from_str(&json).map_err(|source| StoreError::Json { id, source }),
            );
        }
        Ok(())
    }
}

impl<S: PageSource> Iterator for Paged<S> {
    type Item = Result<CaptureRecord, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == Some(0) {
            return None;
        }
        if self.buffer.is_empty()
            && !self.exhausted
            && let Err(e) = self.fetch()
        {
            self.exhausted = true;
            return Some(Err(e));
        }
        let item = self.buffer.pop_front()?;
        if let Some(remaining) = &mut self.remaining {
            *remaining -= 1;
        }
        Some(item)
    }
}

/// SQLite's pages (`SqliteStore::query`): one short statement per page, so no statement (and no
/// read snapshot) outlives a page.
pub(super) struct SqlitePages<'a> {
    conn: &'a Connection,
    sql: String,
    params: Vec<SqlValue>,
}

impl<'a> SqlitePages<'a> {
    pub(super) fn new(conn: &'a Connection, filter: &Filter) -> Paged<SqlitePages<'a>> {
        let (sql, values) = paged_sql(filter, |n| format!("?{n}"));
        let params = sqlite_values(values);
        Paged::new(SqlitePages { conn, sql, params }, filter)
    }
}

fn sqlite_values(values: Vec<FilterValue>) -> Vec<SqlValue> {
    values
        .into_iter()
        .map(|v| match v {
            FilterValue::Int(v) => SqlValue::Integer(v),
            FilterValue::Text(v) => SqlValue::Text(v),
            FilterValue::Real(v) => SqlValue::Real(v),
        })
        .collect()
}

/// SQLite's [`Store::annotations`](super::Store::annotations): one statement.
pub(super) fn sqlite_annotations(
    conn: &Connection,
    filter: &Filter,
) -> Result<Vec<Annotation>, StoreError> {
    let (sql, values) = annotations_sql(filter, |n| format!("?{n}"));
    let mut statement = conn.prepare(&sql)?;
    let mut rows = statement.query(rusqlite::params_from_iter(sqlite_values(values)))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let timings: Option<String> = row.get(1)?;
        let owner: Option<String> = row.get(5)?;
        out.push(Annotation::from_row(
            row.get(0)?,
            timings.as_deref(),
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            owner.as_deref(),
        ));
    }
    Ok(out)
}

impl PageSource for SqlitePages<'_> {
    fn page(&mut self, after: (i64, i64), limit: usize) -> Result<Vec<Row>, StoreError> {
        let mut statement = self.conn.prepare(&self.sql)?;
        let mut all = vec![
            SqlValue::Integer(after.0),
            SqlValue::Integer(after.1),
            SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)),
        ];
        all.extend(self.params.iter().cloned());
        let mut rows = statement.query(rusqlite::params_from_iter(all))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?));
        }
        Ok(out)
    }
}
