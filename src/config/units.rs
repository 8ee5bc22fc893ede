//! Values with units in the config: durations ("250ms", "2m") and sizes ("32MiB"), read with
//! errors that name the expected form, and sizes shown to people in the same units.

use serde::{Deserialize, Deserializer, de};
use std::fmt;
use std::time::Duration;

/// What a wrong type is told it should have been (serde: "invalid type: integer `30`, expected
/// a duration like \"30s\"").
const A_DURATION: &str = "a duration like \"30s\"";
const A_SIZE: &str = "a size like \"8 MiB\"";

/// Reads a string, or fails naming `expected` when the value has another type.
struct Text(&'static str);

impl de::Visitor<'_> for Text {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
}

/// A positive duration written with a unit, such as "250ms", "30s" or "2m".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = d.deserialize_str(Text(A_DURATION))?;
        parse_duration(&text).map(Dur).map_err(de::Error::custom)
    }
}

/// A duration that may be zero ("0s"), such as a label's offset into a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offset(pub Duration);

impl<'de> Deserialize<'de> for Offset {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = d.deserialize_str(Text(A_DURATION))?;
        match text
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        {
            "0" if text.trim() != "0" => Ok(Offset(Duration::ZERO)),
            _ => parse_duration(&text).map(Offset).map_err(de::Error::custom),
        }
    }
}

/// The longest duration kept from the config: 100 years, "never" in effect. Longer values are
/// capped to it, so adding any configured duration to a clock reading (`Instant`) or scaling it
/// a little can never overflow and panic.
pub const MAX_DURATION: Duration = Duration::from_secs(3_155_760_000); // "100y" (365.25 days)

/// Parses "250ms", "1.5s", "2m", "1h 30m". A bare number is refused: durations carry units.
/// Values over `MAX_DURATION` are capped to it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "duration {text:?} has no unit: write it like \"250ms\", \"30s\" or \"2m\""
        ));
    }
    let parsed = if let Some(secs) = trimmed.strip_suffix('s').and_then(fractional_seconds) {
        Ok(secs)
    } else {
        humantime::parse_duration(trimmed).map_err(|e| {
            format!("invalid duration {text:?}: {e} (write it like \"250ms\", \"30s\" or \"2m\")")
        })
    };
    match parsed? {
        d if d.is_zero() => Err(format!("duration {text:?} must be greater than zero")),
        d => Ok(d.min(MAX_DURATION)),
    }
}

/// "1.5s" style values, which humantime does not accept.
fn fractional_seconds(number: &str) -> Option<Duration> {
    if !number.contains('.') {
        return None;
    }
    number
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| Duration::try_from_secs_f64(v).unwrap_or(MAX_DURATION))
}

/// A byte count, written as an integer or with a unit: "512B", "64KiB", "32MiB", "1GiB", "10MB".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SizeVisitor)
    }
}

/// A whole number of bytes or a string with a unit; anything else names the expected form.
struct SizeVisitor;

impl de::Visitor<'_> for SizeVisitor {
    type Value = Size;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(A_SIZE)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
        Ok(Size(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
        u64::try_from(v)
            .map(Size)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
        parse_size(v).map(Size).map_err(E::custom)
    }
}

/// A byte count as a person reads it, in the largest unit that shows it exactly: `32 MiB`,
/// `64 KiB`, `10 MB`, `1000 bytes`. Written by hand rather than with a formatting crate
/// (humansize, bytesize): those round ("33.6 MB"), and a limit shown rounded would misstate it;
/// this text is exact and `parse_size` reads it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShownSize(pub u64);

impl fmt::Display for ShownSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 6] = [
            (1 << 30, "GiB"),
            (1_000_000_000, "GB"),
            (1 << 20, "MiB"),
            (1_000_000, "MB"),
            (1 << 10, "KiB"),
            (1_000, "KB"),
        ];
        let n = self.0;
        match UNITS
            .iter()
            .find(|(unit, _)| n >= *unit && n.is_multiple_of(*unit))
        {
            Some((unit, name)) => write!(f, "{} {name}", n / unit),
            None if n == 1 => f.write_str("1 byte"),
            None => write!(f, "{n} bytes"),
        }
    }
}

/// Parses a size with a binary (KiB, MiB, GiB) or decimal (KB, MB, GB) unit.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size {text:?}: write it like \"32MiB\" or \"64KiB\""))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "invalid size unit {other:?} in {text:?}: use B, KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(
            parse_duration("0s")
                .unwrap_err()
                .contains("greater than zero")
        );
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn absurd_durations_are_capped_not_overflowing() {
        for text in ["500000000000y", "1.0e300s", "99999999999999999.5s"] {
            assert_eq!(parse_duration(text), Ok(MAX_DURATION), "{text}");
        }
        assert_eq!(
            parse_duration("100y"),
            Ok(Duration::from_secs(3_155_760_000))
        );
        // What the proxy does with them: no panic.
        let _ = tokio::time::Instant::now() + MAX_DURATION;
        let _ = std::time::Instant::now() + MAX_DURATION * 2;
    }

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!(parse_size("32MiB"), Ok(32 << 20));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("512"), Ok(512));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999GiB").is_err());
        assert_eq!(parse_size("8 MiB"), Ok(8 << 20));
    }

    #[test]
    fn sizes_show_exactly_in_the_largest_unit() {
        for (n, text) in [
            (32 << 20, "32 MiB"),
            (64 << 10, "64 KiB"),
            (1 << 30, "1 GiB"),
            (10_000_000, "10 MB"),
            (1_000, "1 KB"),
            (1_536 << 10, "1536 KiB"),
            (33_554_433, "33554433 bytes"),
            (1, "1 byte"),
            (0, "0 bytes"),
        ] {
            assert_eq!(ShownSize(n).to_string(), text);
            assert_eq!(
                parse_size(&text.replace(" bytes", "").replace(" byte", "")),
                Ok(n)
            );
        }
    }
}
