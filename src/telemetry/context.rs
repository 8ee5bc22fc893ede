//! W3C trace context and sampling: `traceparent` parsed and written, new ids, and the
//! parent-based trace-id-ratio decision. Pure but for the random ids.

use std::fmt::Write;

/// A span's place in a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

/// Reads a `traceparent` header (version `00`, and later versions by their first four fields,
/// as the W3C spec asks). `None` for anything invalid: an all-zero id, bad hex, a bad length.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let value = value.trim();
    let mut parts = value.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let rest = parts.next();
    if version.len() != 2 || version.eq_ignore_ascii_case("ff") || trace.len() != 32 {
        return None;
    }
    // Version 00 has exactly four fields; a later version may append more.
    if version == "00" && rest.is_some() {
        return None;
    }
    if span.len() != 16 || flags.len() != 2 || !lower_hex(version) {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    hex_into(trace, &mut trace_id)?;
    hex_into(span, &mut span_id)?;
    let mut flag = [0u8; 1];
    hex_into(flags, &mut flag)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(SpanContext {
        trace_id,
        span_id,
        sampled: flag[0] & 1 == 1,
    })
}

/// `00-{trace id}-{span id}-{flags}`.
pub fn format_traceparent(c: &SpanContext) -> String {
    let mut s = String::with_capacity(55);
    s.push_str("00-");
    push_hex(&mut s, &c.trace_id);
    s.push('-');
    push_hex(&mut s, &c.span_id);
    s.push_str(if c.sampled { "-01" } else { "-00" });
    s
}

pub fn push_hex(s: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
}

fn lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hex_into(s: &str, out: &mut [u8]) -> Option<()> {
    if !lower_hex(s) || s.len() != out.len() * 2 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(())
}

/// The trace-id-ratio decision of the OpenTelemetry spec (the 56-bit threshold form): the
/// rightmost 7 bytes of the trace id, random by W3C's level-2 rule, are compared with
/// `(1 - ratio) * 2^56`. The same trace id always gets the same answer, in aloud and in any
/// SDK sampling the same trace at the same ratio.
pub fn ratio_sampled(trace_id: &[u8; 16], ratio: f64) -> bool {
    const MAX: u64 = 1 << 56;
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let mut low = [0u8; 8];
    low[1..].copy_from_slice(&trace_id[9..]);
    let random = u64::from_be_bytes(low);
    let threshold = ((1.0 - ratio) * MAX as f64) as u64;
    random >= threshold
}

/// Whether to record this exchange: a client's sampled flag decides for its own trace
/// (parent-based); a new trace is sampled by ratio.
pub fn decide(parent: Option<&SpanContext>, trace_id: &[u8; 16], ratio: f64) -> bool {
    match parent {
        Some(p) => p.sampled,
        None => ratio_sampled(trace_id, ratio),
    }
}

/// Random ids from the system's generator (`ring`, already a dependency for client tokens).
pub fn random_ids() -> Option<([u8; 16], [u8; 8])> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 24];
    SystemRandom::new().fill(&mut bytes).ok()?;
    let mut trace = [0u8; 16];
    let mut span = [0u8; 8];
    trace.copy_from_slice(&bytes[..16]);
    span.copy_from_slice(&bytes[16..]);
    if trace == [0; 16] || span == [0; 8] {
        return None;
    }
    Some((trace, span))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_round_trips() {
        let c = parse_traceparent(EXAMPLE).unwrap();
        assert!(c.sampled);
        assert_eq!(c.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(format_traceparent(&c), EXAMPLE);
        let unsampled = parse_traceparent(&EXAMPLE.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled);
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
        // A later version may carry more fields; the first four are read.
        assert!(parse_traceparent(&format!("{}-later", EXAMPLE.replacen("00", "01", 1))).is_some());
    }

    #[test]
    fn the_ratio_is_deterministic_and_roughly_right() {
        let mut id = [0u8; 16];
        assert!(ratio_sampled(&id, 1.0));
        assert!(!ratio_sampled(&[0xff; 16], 0.0));
        id[9..].copy_from_slice(&[0xff; 7]);
        assert!(
            ratio_sampled(&id, 0.01),
            "the highest random part passes any ratio"
        );
        let mut hits = 0;
        for i in 0u32..10_000 {
            let mut t = [0u8; 16];
            // A spread of random parts: multiply by a large odd constant.
            let r = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 8;
            t[8..].copy_from_slice(&r.to_be_bytes());
            if ratio_sampled(&t, 0.25) {
                hits += 1;
            }
            assert_eq!(ratio_sampled(&t, 0.25), ratio_sampled(&t, 0.25));
        }
        assert!((2_200..2_800).contains(&hits), "{hits}");
    }

    #[test]
    fn a_parent_decides_for_its_trace() {
        let p = parse_traceparent(EXAMPLE).unwrap();
        assert!(decide(Some(&p), &p.trace_id, 0.0));
        let q = SpanContext {
            sampled: false,
            ..p
        };
        assert!(!decide(Some(&q), &q.trace_id, 1.0));
    }
}
