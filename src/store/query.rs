//! Filtered reads that stream: keyset pagination over `(started_at_ms, seq)`, one short
//! statement per page, so no statement (and no read snapshot) outlives a page and memory is one
//! page of records whatever the table holds.

use super::StoreError;
use crate::record::CaptureRecord;
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use std::collections::VecDeque;

/// Which records [`Store::query`](super::Store::query) returns; `None` fields do not filter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// Records whose request started at or after this Unix time in milliseconds.
    pub since_ms: Option<i64>,
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

/// The paged query for `filter`, the same for SQLite and Postgres: parameter 1 and 2 are the
/// keyset `(started_at_ms, seq)` to start after, 3 the page size, then the filter's values in
/// order. `mark(n)` writes parameter `n` in the driver's syntax (`?n` or `$n`).
pub(crate) fn paged_sql(filter: &Filter, mark: fn(usize) -> String) -> (String, Vec<FilterValue>) {
    let mut conditions = vec![format!(
        "(c.started_at_ms, c.seq) > ({}, {})",
        mark(1),
        mark(2)
    )];
    let mut values = Vec::new();
    let mut push = |condition: &str, value: FilterValue| {
        values.push(value);
        conditions.push(condition.replace('#', &mark(values.len() + 3)));
    };
    if let Some(since) = filter.since_ms {
        push("c.started_at_ms >= #", FilterValue::Int(since));
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
            "EXISTS (SELECT 1 FROM feedback f WHERE f.id = c.id AND f.score >= #)",
            FilterValue::Real(score),
        );
    }
    if let Some(label) = &filter.label {
        push(
            "EXISTS (SELECT 1 FROM feedback f WHERE f.id = c.id AND f.label = #)",
            FilterValue::Text(label.clone()),
        );
    }
    let sql = format!(
        "SELECT c.started_at_ms, c.seq, c.id, c.record FROM captures c WHERE {} \
         ORDER BY c.started_at_ms, c.seq LIMIT {}",
        conditions.join(" AND "),
        mark(3)
    );
    (sql, values)
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
    pub(crate) fn new(source: S, limit: Option<usize>) -> Paged<S> {
        Paged {
            source,
            after: (i64::MIN, i64::MIN),
            buffer: VecDeque::new(),
            remaining: limit,
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
        let params = values
            .into_iter()
            .map(|v| match v {
                FilterValue::Int(v) => SqlValue::Integer(v),
                FilterValue::Text(v) => SqlValue::Text(v),
                FilterValue::Real(v) => SqlValue::Real(v),
            })
            .collect();
        Paged::new(SqlitePages { conn, sql, params }, filter.limit)
    }
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
