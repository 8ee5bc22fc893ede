//! `--since` and `--until`: a time ago (`7d`, `24h`) or an RFC 3339 instant, as Unix ms.
//!
//! **Invariant:** pure: "now" is handed in, so a window given in absolute times is the same
//! window whenever the report is made again.

use std::time::{Duration, SystemTime};

use crate::config::units::parse_duration;

/// `text` as Unix ms: `now`; a duration ago like `7d`, `24h` or `90m`; an RFC 3339 timestamp
/// (`2024-05-06T12:00:00Z`, fractions and `+02:00` offsets allowed); or a date
/// (`2024-05-06`, midnight UTC).
pub fn parse_instant(text: &str, now_ms: i64) -> Result<i64, String> {
    let text = text.trim();
    if text == "now" {
        return Ok(now_ms);
    }
    if !text.contains('-') {
        let ago = parse_duration(text).map_err(|e| {
            format!(
                "{e}; or give a time like \"2024-05-06T12:00:00Z\" or a date like \"2024-05-06\""
            )
        })?;
        let ago = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
        return Ok(now_ms.saturating_sub(ago));
    }
    absolute(text).ok_or_else(|| {
        format!(
            "{text:?} is neither a time ago like \"7d\" nor an RFC 3339 time like \
             \"2024-05-06T12:00:00Z\" or a date like \"2024-05-06\""
        )
    })
}

/// `--since` and `--until` together; `until` must come after `since`.
pub fn parse_window(
    since: Option<&str>,
    until: Option<&str>,
    now_ms: i64,
) -> Result<(Option<i64>, Option<i64>), String> {
    let since = since
        .map(|s| parse_instant(s, now_ms).map_err(|e| format!("--since: {e}")))
        .transpose()?;
    let until = until
        .map(|u| parse_instant(u, now_ms).map_err(|e| format!("--until: {e}")))
        .transpose()?;
    if let (Some(s), Some(u)) = (since, until)
        && u <= s
    {
        return Err("--until must be later than --since".to_owned());
    }
    Ok((since, until))
}

/// An RFC 3339 timestamp or a bare date. humantime reads the `Z` form; an offset is taken off
/// here, since humantime reads only UTC.
fn absolute(text: &str) -> Option<i64> {
    if text.len() == 10 {
        return utc(&format!("{text}T00:00:00Z"));
    }
    if let Some(stripped) = text.strip_suffix(['Z', 'z']) {
        return utc(&format!("{stripped}Z"));
    }
    let split = text.len().checked_sub(6)?;
    let (local, offset) = (text.get(..split)?, text.get(split..)?);
    let sign = match offset.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (hours, minutes) = offset.get(1..)?.split_once(':')?;
    let (hours, minutes): (i64, i64) = (hours.parse().ok()?, minutes.parse().ok()?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    let at = utc(&format!("{local}Z"))?;
    Some(at - sign * (hours * 60 + minutes) * 60_000)
}

fn utc(text: &str) -> Option<i64> {
    let at = humantime::parse_rfc3339_weak(text).ok()?;
    match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).ok(),
        Err(e) => i64::try_from(e.duration().as_millis()).ok().map(|ms| -ms),
    }
}

/// Unix ms of `at` (for the CLI, which reads the clock and hands it in).
pub fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis()
        .try_into()
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_715_000_000_000;

    #[test]
    fn relative_and_absolute() {
        assert_eq!(parse_instant("now", NOW), Ok(NOW));
        assert_eq!(parse_instant("7d", NOW), Ok(NOW - 7 * 86_400_000));
        assert_eq!(parse_instant("90m", NOW), Ok(NOW - 90 * 60_000));
        // 2024-05-06 is day 19849 since 1970-01-01: 19849 · 86 400 000.
        assert_eq!(parse_instant("2024-05-06", NOW), Ok(1_714_953_600_000));
        assert_eq!(
            parse_instant("2024-05-06T12:00:00Z", NOW),
            Ok(1_714_953_600_000 + 12 * 3_600_000)
        );
        assert_eq!(
            parse_instant("2024-05-06T12:00:00.250Z", NOW),
            Ok(1_714_996_800_250)
        );
        // 14:00 at +02:00 is 12:00 UTC; 07:30 at -04:30 is 12:00 UTC.
        assert_eq!(
            parse_instant("2024-05-06T14:00:00+02:00", NOW),
            Ok(1_714_996_800_000)
        );
        assert_eq!(
            parse_instant("2024-05-06T07:30:00-04:30", NOW),
            Ok(1_714_996_800_000)
        );
        assert!(parse_instant("yesterday", NOW).is_err());
        assert!(parse_instant("2024-13-01", NOW).is_err());
        assert!(parse_instant("7", NOW).unwrap_err().contains("no unit"));
    }

    #[test]
    fn window_order() {
        assert_eq!(
            parse_window(Some("2d"), Some("1d"), NOW),
            Ok((Some(NOW - 2 * 86_400_000), Some(NOW - 86_400_000)))
        );
        assert_eq!(parse_window(None, None, NOW), Ok((None, None)));
        assert!(
            parse_window(Some("1d"), Some("2d"), NOW)
                .unwrap_err()
                .contains("later")
        );
        assert!(
            parse_window(Some("x"), None, NOW)
                .unwrap_err()
                .starts_with("--since")
        );
    }
}
