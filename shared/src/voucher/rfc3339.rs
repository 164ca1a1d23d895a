//! YANG `date-and-time` values: RFC 3339 text, offset preserved.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Parses an RFC 3339 timestamp, keeping its UTC offset.
pub(crate) fn parse(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// Formats as RFC 3339 (sub-seconds only as far as needed, `Z` for UTC).
///
/// RFC 3339 cannot express offsets with a seconds part or years outside 0..=9999; such values
/// are converted to UTC, and as a last resort written field by field, so encoding never fails.
pub(crate) fn format(when: &OffsetDateTime) -> String {
    if let Ok(text) = when.format(&Rfc3339) {
        return text;
    }
    let utc = when.checked_to_offset(UtcOffset::UTC).unwrap_or(*when);
    utc.format(&Rfc3339).unwrap_or_else(|_| by_fields(&utc))
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
        assert!(parse("2021-13-01T00:00:00Z").is_none());
        assert!(parse("yesterday").is_none());
    }
}
