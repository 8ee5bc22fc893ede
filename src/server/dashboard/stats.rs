//! `/dashboard/api/stats?since=&until=&bucket=&group_by=` (and `route`, `model`, `outcome`,
//! `all_outcomes`): the flags of `aloud stats` as query parameters, read with the same parsers,
//! answered with the very report `aloud stats --json` prints (`capture::stats::report_from_store`,
//! never a second aggregation).

use crate::capture::stats::{QueryText, StatsQuery};

/// The query the parameters ask for, relative times taken from `now_ms`; errors name the
/// parameter as the CLI names its flag.
pub fn query(params: &[(&str, String)], now_ms: i64) -> Result<StatsQuery, String> {
    let get = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };
    QueryText {
        group_by: get("group_by"),
        since: get("since"),
        until: get("until"),
        bucket: get("bucket"),
        route: get("route"),
        model: get("model"),
        outcome: get("outcome"),
        all_outcomes: matches!(get("all_outcomes"), Some("true" | "1" | "")),
    }
    .parse(now_ms, |name| name.replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::stats::{Bucket, Dimension};

    fn p(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    }

    #[test]
    fn the_parameters_read_as_the_cli_flags_do() {
        let now = 1_700_000_000_000;
        let q = query(
            &p(&[
                ("since", "1h"),
                ("until", "now"),
                ("bucket", "1h"),
                ("group_by", "route,model"),
            ]),
            now,
        )
        .unwrap();
        assert_eq!((q.since_ms, q.until_ms), (Some(now - 3_600_000), Some(now)));
        assert_eq!(q.bucket, Some(Bucket::Hour));
        assert_eq!(q.group_by, vec![Dimension::Route, Dimension::Model]);
        assert!(
            query(&p(&[("bucket", "1w")]), now)
                .unwrap_err()
                .contains("bucket")
        );
        assert!(
            query(&p(&[("group_by", "colour")]), now)
                .unwrap_err()
                .contains("group_by")
        );
        assert!(query(&p(&[("since", "1h"), ("until", "2h")]), now).is_err());
    }
}
