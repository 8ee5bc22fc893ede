//! `Server-Timing` (W3C Server Timing): the time until the client's head, split into the
//! upstream's time to its headers and aloud's own, so a browser's devtools show where the wait
//! went. One small header value per response, formatted into one buffer.
//!
//! aloud appends its own header line and never touches the upstream's: `Server-Timing` is a
//! list, and several lines of it are one list (RFC 9110, 5.3), so an upstream's own metrics pass
//! through byte for byte next to aloud's.

use http::{HeaderName, HeaderValue};
use std::time::Duration;
use tokio::time::Instant;

pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// The instants the header is made of.
pub struct Marks {
    /// The request head was parsed.
    pub started: Instant,
    /// The request was written upstream in full.
    pub sent: Option<Instant>,
    /// The upstream's head arrived.
    pub upstream_head: Option<Instant>,
    /// An upstream attempt started (false: aloud refused the request itself).
    pub attempted: bool,
    /// The client's head goes out.
    pub now: Instant,
}

/// Writes `d` in milliseconds with `decimals` (1 or 3) digits after the point. Integer
/// arithmetic, digits by `itoa`: float formatting, and even `write!` of integers, cost more than
/// the rest of the header on every response.
fn write_ms(s: &mut String, d: Duration, decimals: u32) {
    let micros = d.as_micros();
    let (unit, frac) = if decimals == 1 { (100, 10) } else { (1, 1000) };
    let scaled = (micros + unit / 2) / unit;
    let (whole, part) = (scaled / frac, scaled % frac);
    let mut digits = itoa::Buffer::new();
    s.push_str(digits.format(whole));
    s.push('.');
    let part = digits.format(part);
    if decimals != 1 {
        // Three decimals: the part is below 1000, so one or two zeros at most.
        s.push_str(&"00"[..3 - part.len().min(3)]);
    }
    s.push_str(part);
}

/// `upstream;dur=812.4;desc="upstream headers", aloud;dur=0.312`: the upstream's part runs from
/// the request written upstream (or, when its body never finished, from the request head) to
/// the upstream's head, or to now when the client's head goes first (an early commit, a
/// failure); aloud's part is the rest. A refusal is aloud's alone.
pub fn header(m: &Marks) -> HeaderValue {
    let mut s = String::with_capacity(72);
    if m.attempted {
        let from = m.sent.unwrap_or(m.started);
        let to = m.upstream_head.unwrap_or(m.now);
        let upstream = to.saturating_duration_since(from);
        let own = from.saturating_duration_since(m.started) + m.now.saturating_duration_since(to);
        let desc = if m.upstream_head.is_some() {
            "upstream headers"
        } else {
            "no upstream headers"
        };
        s.push_str("upstream;dur=");
        write_ms(&mut s, upstream, 1);
        s.push_str(";desc=\"");
        s.push_str(desc);
        s.push_str("\", aloud;dur=");
        write_ms(&mut s, own, 3);
    } else {
        let own = m.now.saturating_duration_since(m.started);
        s.push_str("aloud;dur=");
        write_ms(&mut s, own, 3);
    }
    // Only ASCII digits, names and quotes were written.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(s))
        .unwrap_or_else(|_| HeaderValue::from_static("aloud"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_are_written_with_fixed_decimals() {
        let w = |us: u64, d: u32| {
            let mut s = String::new();
            write_ms(&mut s, Duration::from_micros(us), d);
            s
        };
        assert_eq!(w(1234, 3), "1.234");
        assert_eq!(w(7, 3), "0.007");
        assert_eq!(w(1020, 3), "1.020");
        assert_eq!(w(1200, 3), "1.200");
        assert_eq!(w(1250, 1), "1.3");
        assert_eq!(w(1249, 1), "1.2");
        assert_eq!(w(812_449, 1), "812.4");
        assert_eq!(w(0, 1), "0.0");
        assert_eq!(w(30_000_000, 3), "30000.000");
    }

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn splits_the_wait_between_upstream_and_aloud() {
        let t = Instant::now();
        let v = header(&Marks {
            started: t,
            sent: Some(at(t, 2)),
            upstream_head: Some(at(t, 814)),
            attempted: true,
            now: at(t, 815),
        });
        assert_eq!(
            v,
            "upstream;dur=812.0;desc=\"upstream headers\", aloud;dur=3.000"
        );
    }

    #[test]
    fn a_head_before_the_upstreams_says_so_and_a_refusal_is_aloud_alone() {
        let t = Instant::now();
        let early = header(&Marks {
            started: t,
            sent: None,
            upstream_head: None,
            attempted: true,
            now: at(t, 5),
        });
        assert_eq!(
            early,
            "upstream;dur=5.0;desc=\"no upstream headers\", aloud;dur=0.000"
        );
        let refused = header(&Marks {
            started: t,
            sent: None,
            upstream_head: None,
            attempted: false,
            now: at(t, 1),
        });
        assert_eq!(refused, "aloud;dur=1.000");
    }
}
