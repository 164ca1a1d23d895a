//! Timestamps as RFC 3339 §5.6 `date-time` text, the one rule of the house: YANG
//! `date-and-time` leaves of vouchers (RFC 8366 §5.3), the MASA audit log (RFC 8995 §5.8.1),
//! records, file summaries and command-line times.
//!
//! Named `rfc3339` rather than `time` so it never shadows the `time` crate it builds on.
//!
//! Formatting keeps the value's offset (`Z` for UTC; callers stamping "now" pass
//! `OffsetDateTime::now_utc()`), writes sub-seconds only as far as needed, and never fails:
//! what RFC 3339 cannot express falls back to UTC, then to fields (see [`format`]).

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Parses an RFC 3339 timestamp, keeping its UTC offset.
pub fn parse(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(text, &Rfc3339)
}

/// Formats as RFC 3339 (sub-seconds only as far as needed, `Z` for UTC, other offsets kept).
///
/// RFC 3339 cannot express offsets with a seconds part or years outside 0..=9999; such values
/// are converted to UTC, and as a last resort written field by field, so formatting never
/// fails (never an empty string, never `time`'s own `Display` text).
pub fn format(when: &OffsetDateTime) -> String {
    if let Ok(text) = when.format(&Rfc3339) {
        return text;
    }
    let utc = when.checked_to_offset(UtcOffset::UTC).unwrap_or(*when);
    utc.format(&Rfc3339).unwrap_or_else(|_| by_fields(&utc))
}

/// Formats a Unix time (seconds) as RFC 3339 UTC text; a value outside what `time` represents
/// is written as the number itself.
pub fn format_unix(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs).map_or_else(|_| secs.to_string(), |t| format(&t))
}

fn by_fields(t: &OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn keeps_offset_and_millis() {
        let t = parse("2021-04-13T17:43:23.747-04:00").expect("valid");
        assert_eq!(t.offset().whole_hours(), -4);
        assert_eq!(format(&t), "2021-04-13T17:43:23.747-04:00");
        assert_eq!(format(&datetime!(2022-12-06 20:23:30.708 UTC)), "2022-12-06T20:23:30.708Z");
    }

    #[test]
    fn odd_offsets_fall_back_to_utc() {
        let t = datetime!(2020-01-01 00:00:00 +00:00:30);
        assert_eq!(format(&t), "2019-12-31T23:59:30Z");
        assert!(parse("2021-13-01T00:00:00Z").is_err());
        assert!(parse("yesterday").is_err());
    }

    #[test]
    fn utc_is_written_with_z_and_whole_seconds_without_fraction() {
        assert_eq!(format(&datetime!(2024-02-29 23:59:59 UTC)), "2024-02-29T23:59:59Z");
        let t = parse("2024-02-29T23:59:59+00:00").expect("valid");
        assert_eq!(format(&t), "2024-02-29T23:59:59Z");
        assert_eq!(format(&datetime!(2024-01-01 00:00:00.000_001 UTC)), "2024-01-01T00:00:00.000001Z");
    }

    #[test]
    fn unix_times() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(i64::MAX), i64::MAX.to_string());
    }

    #[test]
    fn years_rfc3339_cannot_express_are_written_by_fields_not_empty() {
        // The MASA's copy wrote `time`'s Display text here, the pledge's an empty string.
        let t = datetime!(-0001-06-01 12:00:00 UTC);
        assert_eq!(format(&t), "-001-06-01T12:00:00Z");
    }
}
