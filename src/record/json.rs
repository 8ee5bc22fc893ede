//! A capture record as JSON, written by hand: byte for byte what `serde_json` writes for it (the
//! tests hold the two equal, field by field and on generated records), at a fraction of the cost.
//!
//! Why by hand: every record is serialised once into the spill or the store, on the capture
//! threads that share the proxy's core at saturation. Under callgrind, serde_json spent 20k
//! instructions on a 1.2 KB record, a third of it escaping member names that are constants
//! (its escaper reads a string a byte at a time). Here names are literals and strings with
//! nothing to escape are copied whole. Everything with a format of its own is written by what
//! serde_json itself calls: integers by `itoa`, floats by its `Formatter::write_f64`, and enums,
//! owners and strings that need escapes by serde_json, so the output cannot drift.
//!
//! Adding a field to [`CaptureRecord`] (or to a type inside it) means adding it here: the
//! equality test on a record with every field set fails until it is.

use super::{CaptureRecord, Delta, Disconnect, Doc, EtaRecord, Reassembled, Timings, TokenUsage};
use serde::Serialize;
use serde_json::Value;
use serde_json::ser::{CompactFormatter, Formatter};

type Result = serde_json::Result<()>;

/// Opens an object with its first member's name: `{"name":`. Names are literals with nothing
/// to escape, written whole; every object here has a first member that is always present.
macro_rules! first {
    ($out:expr, $name:literal) => {{
        $out.extend_from_slice(concat!("{\"", $name, "\":").as_bytes());
        &mut *$out
    }};
}

/// A later member's name: `,"name":`.
macro_rules! key {
    ($out:expr, $name:literal) => {{
        $out.extend_from_slice(concat!(",\"", $name, "\":").as_bytes());
        &mut *$out
    }};
}

/// The record's JSON, as `serde_json::to_string` would write it.
pub fn to_string(record: &CaptureRecord) -> serde_json::Result<String> {
    let mut out = Vec::with_capacity(1024);
    write(&mut out, record)?;
    // Everything written is UTF-8: `&str` pieces, ASCII and serde_json's own output.
    String::from_utf8(out).map_err(serde::ser::Error::custom)
}

/// Appends the record's JSON to `out`.
pub fn write(out: &mut Vec<u8>, r: &CaptureRecord) -> Result {
    str_(first!(out, "id"), &r.id);
    int(key!(out, "attempt"), r.attempt);
    if let Some(owner) = &r.owner {
        serde(key!(out, "owner"), owner)?;
    }
    int(key!(out, "started_at_ms"), r.started_at_ms);
    str_(key!(out, "route"), &r.route);
    str_(key!(out, "api"), &r.api);
    opt_str(key!(out, "model"), r.model.as_deref());
    str_(key!(out, "method"), &r.method);
    str_(key!(out, "path"), &r.path);
    opt_int(key!(out, "client_status"), r.client_status);
    opt_int(key!(out, "upstream_status"), r.upstream_status);
    bool_(key!(out, "streamed"), r.streamed);
    str_(key!(out, "tier"), &r.tier);
    serde(key!(out, "outcome"), &r.outcome)?;
    bool_(key!(out, "partial"), r.partial);
    serde(key!(out, "capture"), &r.capture)?;
    timings(key!(out, "timings"), &r.timings);
    match &r.usage {
        Some(u) => usage(key!(out, "usage"), u),
        None => null(key!(out, "usage")),
    }
    opt_doc(key!(out, "upstream_timings"), r.upstream_timings.as_ref())?;
    if let Some(eta) = &r.eta {
        eta_record(key!(out, "eta"), eta);
    }
    opt_doc(key!(out, "request"), r.request.as_ref())?;
    match &r.response {
        Some(response) => reassembled(key!(out, "response"), response)?,
        None => null(key!(out, "response")),
    }
    array(key!(out, "deltas"), &r.deltas, delta)?;
    opt_str(key!(out, "error"), r.error.as_deref());
    bool_(key!(out, "truncated"), r.truncated);
    if let Some(d) = &r.disconnect {
        disconnect(key!(out, "disconnect"), d)?;
    }
    out.push(b'}');
    Ok(())
}

fn timings(out: &mut Vec<u8>, t: &Timings) {
    opt_f64(first!(out, "upstream_headers_ms"), t.upstream_headers_ms);
    opt_f64(
        key!(out, "upstream_first_byte_ms"),
        t.upstream_first_byte_ms,
    );
    opt_f64(key!(out, "client_first_byte_ms"), t.client_first_byte_ms);
    opt_f64(key!(out, "first_feedback_ms"), t.first_feedback_ms);
    opt_f64(key!(out, "first_reasoning_ms"), t.first_reasoning_ms);
    opt_f64(key!(out, "first_token_ms"), t.first_token_ms);
    opt_f64(key!(out, "done_ms"), t.done_ms);
    opt_f64(key!(out, "longest_silence_ms"), t.longest_silence_ms);
    opt_f64(key!(out, "overhead_ms"), t.overhead_ms);
    opt_f64(key!(out, "upstream_ms"), t.upstream_ms);
    out.push(b'}');
}

fn usage(out: &mut Vec<u8>, u: &TokenUsage) {
    opt_int(first!(out, "input"), u.input);
    opt_int(key!(out, "output"), u.output);
    opt_int(key!(out, "reasoning"), u.reasoning);
    out.push(b'}');
}

fn eta_record(out: &mut Vec<u8>, e: &EtaRecord) {
    int(first!(out, "basis"), e.basis);
    if let Some(v) = e.issued_ms {
        f64_(key!(out, "issued_ms"), v);
    }
    if let Some(v) = e.eta_ms {
        f64_(key!(out, "eta_ms"), v);
    }
    if let Some(v) = e.error_at_25 {
        f64_(key!(out, "error_at_25"), v);
    }
    out.push(b'}');
}

fn reassembled(out: &mut Vec<u8>, r: &Reassembled) -> Result {
    str_(first!(out, "text"), &r.text);
    str_(key!(out, "reasoning"), &r.reasoning);
    array(key!(out, "tool_calls"), &r.tool_calls, |out, call| {
        str_(first!(out, "id"), &call.id);
        str_(key!(out, "name"), &call.name);
        str_(key!(out, "arguments"), &call.arguments);
        out.push(b'}');
        Ok(())
    })?;
    opt_str(key!(out, "finish_reason"), r.finish_reason.as_deref());
    if let Some(body) = &r.body {
        doc(key!(out, "body"), body)?;
    }
    out.push(b'}');
    Ok(())
}

fn delta(out: &mut Vec<u8>, d: &Delta) -> Result {
    f64_(first!(out, "at_ms"), d.at_ms);
    serde(key!(out, "kind"), &d.kind)?;
    if let Some(end) = d.end {
        int(key!(out, "end"), end as u64);
    }
    if !d.text.is_empty() {
        str_(key!(out, "text"), &d.text);
    }
    out.push(b'}');
    Ok(())
}

fn disconnect(out: &mut Vec<u8>, d: &Disconnect) -> Result {
    opt_f64(first!(out, "client_left_ms"), d.client_left_ms);
    opt_f64(key!(out, "upstream_done_ms"), d.upstream_done_ms);
    array(key!(out, "resumes"), &d.resumes, |out, r| {
        f64_(first!(out, "at_ms"), r.at_ms);
        int(key!(out, "after"), r.after);
        out.push(b'}');
        Ok(())
    })?;
    out.push(b'}');
    Ok(())
}

/// `[a,b,…]`, each item written by `each`.
fn array<T>(
    out: &mut Vec<u8>,
    items: &[T],
    mut each: impl FnMut(&mut Vec<u8>, &T) -> Result,
) -> Result {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(out, item)?;
    }
    out.push(b']');
    Ok(())
}

/// A JSON value, walked here so that its strings take the copy-whole path too.
fn value(out: &mut Vec<u8>, v: &Value) -> Result {
    match v {
        Value::Null => null(out),
        Value::Bool(b) => bool_(out, *b),
        Value::Number(n) => number(out, n),
        Value::String(s) => str_(out, s),
        Value::Array(items) => array(out, items, value)?,
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                str_(out, k);
                out.push(b':');
                value(out, item)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// A number as serde_json writes one: an integer by `itoa`, a float (always finite in a
/// `Number`) by its float formatter.
fn number(out: &mut Vec<u8>, n: &serde_json::Number) {
    if let Some(u) = n.as_u64() {
        int(out, u);
    } else if let Some(i) = n.as_i64() {
        int(out, i);
    } else {
        f64_(out, n.as_f64().unwrap_or(f64::NAN));
    }
}

/// A document: its text copied as it is (what serde_json read, and would write), or its tree.
fn doc(out: &mut Vec<u8>, d: &Doc) -> Result {
    match d.text() {
        Some(text) => {
            out.extend_from_slice(text.as_bytes());
            Ok(())
        }
        // No text: a tree, borrowed.
        None => value(out, &d.tree()),
    }
}

fn opt_doc(out: &mut Vec<u8>, d: Option<&Doc>) -> Result {
    match d {
        Some(d) => doc(out, d),
        None => {
            null(out);
            Ok(())
        }
    }
}

/// A string: copied whole between quotes when no byte needs an escape (what serde_json escapes:
/// `"`, `\` and control characters below 0x20), else written by serde_json.
fn str_(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a `str` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Whether any byte needs an escape. No early exit: the compiler turns the fold into vector
/// compares, several times faster than a byte-at-a-time search on the short strings of a record.
fn needs_escape(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

fn opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => str_(out, s),
        None => null(out),
    }
}

/// serde_json writes a non-finite float as `null`.
fn f64_(out: &mut Vec<u8>, v: f64) {
    if let Some(micros) = whole_micros(v) {
        millis(out, micros);
    } else if v.is_finite() {
        // Writing into a `Vec` cannot fail.
        let _ = CompactFormatter.write_f64(out, v);
    } else {
        null(out);
    }
}

/// `v` as a whole number of thousandths, when it is exactly the float nearest one (as every
/// duration in a record is: milliseconds rounded to the microsecond) and below 10⁹.
///
/// Then the shortest text that reads back as `v` (what serde_json's formatter writes) is that
/// decimal with its trailing zeros dropped: around 10⁹ floats are 10⁻⁷ apart, so no other
/// decimal with at most three fractional digits reads back as `v`. Written with `itoa`, it costs
/// a fifth of the shortest-float search (about ten durations per record, written twice when a
/// record is spilled). The test holds the two equal on every such value it tries.
fn whole_micros(v: f64) -> Option<u64> {
    let thousandths = (v * 1000.0).round();
    // Negative values (and -0.0, written `-0.0`) take the general path.
    let exact = v.is_sign_positive() && v < 1e9 && thousandths / 1000.0 == v;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "checked above: a whole number in [0, 10^12]"
    )]
    exact.then_some(thousandths as u64)
}

/// Writes `micros / 1000` as serde_json does: `12.5`, `0.001`, `3.0`.
fn millis(out: &mut Vec<u8>, micros: u64) {
    int(out, micros / 1000);
    let frac = micros % 1000;
    if frac == 0 {
        out.extend_from_slice(b".0");
        return;
    }
    let digits = [frac / 100, frac / 10 % 10, frac % 10];
    let len = if frac.is_multiple_of(100) {
        1
    } else if frac.is_multiple_of(10) {
        2
    } else {
        3
    };
    out.push(b'.');
    #[expect(clippy::cast_possible_truncation, reason = "decimal digits")]
    out.extend(digits[..len].iter().map(|d| b'0' + *d as u8));
}

fn opt_f64(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        Some(v) => f64_(out, v),
        None => null(out),
    }
}

fn int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn opt_int(out: &mut Vec<u8>, v: Option<impl itoa::Integer>) {
    match v {
        Some(v) => int(out, v),
        None => null(out),
    }
}

fn bool_(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"null");
}

/// What has a serde form of its own (enums, owners), by serde_json itself.
fn serde(out: &mut Vec<u8>, v: &impl Serialize) -> Result {
    serde_json::to_writer(out, v)
}

#[cfg(test)]
mod tests;
