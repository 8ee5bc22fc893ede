//! A `StatsQuery` from text: `aloud stats`'s flags and the dashboard's URL parameters are read
//! by this one function, so the two can never disagree about a window or a group.
//!
//! **Invariant:** pure: "now" is handed in.

use super::{Bucket, Dimension, StatsQuery, parse_window};
use crate::capture::Outcome;

/// A stats query as text, before parsing; `None` is "not given".
#[derive(Clone, Copy, Debug, Default)]
pub struct QueryText<'a> {
    pub group_by: Option<&'a str>,
    pub since: Option<&'a str>,
    pub until: Option<&'a str>,
    pub bucket: Option<&'a str>,
    pub route: Option<&'a str>,
    pub model: Option<&'a str>,
    pub outcome: Option<&'a str>,
    pub all_outcomes: bool,
}

impl QueryText<'_> {
    /// Parses with relative times taken from `now_ms`. Errors name each input as `name` shows
    /// it: `--group-by` for the CLI, `group_by` for the dashboard.
    pub fn parse(&self, now_ms: i64, name: fn(&str) -> String) -> Result<StatsQuery, String> {
        let group_by = Dimension::parse_list(self.group_by.unwrap_or("none"))
            .map_err(|e| format!("{}: {e}", name("group-by")))?;
        // `parse_window` names its inputs as the CLI does.
        let (since_ms, until_ms) = parse_window(self.since, self.until, now_ms).map_err(|e| {
            e.replace("--since", &name("since"))
                .replace("--until", &name("until"))
        })?;
        let bucket = self
            .bucket
            .map(|b| {
                Bucket::parse(b).ok_or_else(|| format!("{} {b:?}: use 1h or 1d", name("bucket")))
            })
            .transpose()?;
        let outcome = self
            .outcome
            .map(|o| {
                Outcome::parse(o).ok_or_else(|| {
                    format!(
                        "{} {o:?}: use ok, upstream_error, proxy_error, timeout, \
                         client_disconnected or shutdown",
                        name("outcome")
                    )
                })
            })
            .transpose()?;
        Ok(StatsQuery {
            since_ms,
            until_ms,
            bucket,
            group_by,
            route: self.route.map(str::to_owned),
            model: self.model.map(str::to_owned),
            all_outcomes: self.all_outcomes && outcome.is_none(),
            outcome,
        })
    }
}
