//! How database values become JSON. Every backend maps the same way:
//!
//! | database value | JSON |
//! |---|---|
//! | NULL | `null` |
//! | boolean | `true` / `false` |
//! | integer within ±(2^53 − 1) | a number |
//! | integer beyond that | a string of its digits, so no JSON reader rounds it |
//! | numeric / decimal (from a column, an expression, an aggregate or a literal) | a string, digit for digit |
//! | float | a number; NaN and the infinities as the strings `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | text, enum label | a string |
//! | uuid | a lower-case hyphenated string |
//! | date | `"2024-02-29"` |
//! | time | `"13:45:00"`, with `.ffffff` when there are fractions of a second |
//! | timestamp | `"2024-02-29T13:45:00"`; with a time zone, in UTC with a `Z` |
//! | interval | an ISO 8601 duration such as `"P1Y2M3DT4H5M6.5S"` |
//! | bytes | standard base64 with padding |
//! | json | the JSON itself, as the database printed it |
//! | array | a JSON array |
//! | anonymous row (PostgreSQL `ROW(…)`) | a JSON array of its fields |
//! | any other type (`inet`, a named composite, a range…) | the database's text form of the value, as its output function prints it |
//!
//! Years outside 0001–9999 are written with a sign and at least four digits (`"-0001-12-31"`,
//! `"+10000-01-01"`), year 0 being 1 BC, as ISO 8601 does.

// The writers serve the backends: builds without any go without them.
#![cfg_attr(not(any(feature = "postgres", feature = "mysql", feature = "sqlite")), allow(dead_code, unused_imports))]

pub(crate) mod datetime;
pub(crate) mod text;

pub(crate) use datetime::{
    Clock, Date, Years, interval, push_padded, write_clock, write_date, write_date_time, write_time, write_timestamp,
};

/// The largest integer every JSON reader holds exactly (2^53 − 1).
pub(crate) const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Appends a uuid, lower-case and hyphenated, from its 16 bytes.
pub(crate) fn write_uuid(out: &mut String, value: [u8; 16]) {
    let mut digits = [0u8; 32];
    // 32 digits for 16 bytes: the buffer is exactly the length `hex` needs.
    if hex::encode_to_slice(value, &mut digits).is_ok() {
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out.push('-');
            }
            out.push(char::from(pair[0]));
            out.push(char::from(pair[1]));
        }
    }
}

/// What [`text`] must write, as `serde_json` values: the oracles its tests compare against.
#[cfg(test)]
pub(crate) mod oracle {
    use base64::Engine as _;
    use serde_json::Value;

    use super::MAX_SAFE_INTEGER;

    /// A signed integer: a number when exact everywhere, else a string.
    pub(crate) fn int(value: i64) -> Value {
        if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&value) {
            Value::from(value)
        } else {
            Value::String(value.to_string())
        }
    }

    /// An unsigned integer: a number when exact everywhere, else a string.
    pub(crate) fn uint(value: u64) -> Value {
        match i64::try_from(value) {
            Ok(value) => int(value),
            Err(_) => Value::String(value.to_string()),
        }
    }

    /// A float: a number, or a string for NaN and the infinities, which JSON lacks.
    pub(crate) fn float(value: f64) -> Value {
        if value.is_nan() {
            Value::String("NaN".into())
        } else if value.is_infinite() {
            Value::String(if value > 0.0 { "Infinity" } else { "-Infinity" }.into())
        } else {
            serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
        }
    }

    /// Bytes as standard base64 with padding.
    pub(crate) fn bytes(value: &[u8]) -> Value {
        Value::String(base64::engine::general_purpose::STANDARD.encode(value))
    }

    /// A uuid from its 16 bytes.
    pub(crate) fn uuid(value: [u8; 16]) -> String {
        let mut out = String::with_capacity(36);
        super::write_uuid(&mut out, value);
        out
    }

    /// `YYYY-MM-DD` for the date `days` after 1970-01-01.
    pub(crate) fn date(days: i64) -> String {
        let mut out = String::with_capacity(10);
        super::datetime::write_date(&mut out, days);
        out
    }

    /// `HH:MM:SS[.ffffff]` for a time of day in microseconds.
    pub(crate) fn time(micros: i64) -> String {
        let mut out = String::with_capacity(15);
        super::datetime::write_time(&mut out, micros);
        out
    }

    /// `YYYY-MM-DDTHH:MM:SS[.ffffff]` for microseconds since 1970-01-01T00:00:00, with a `Z` when
    /// the value is a point in time (a timestamp with time zone), kept in UTC.
    pub(crate) fn timestamp(micros: i64, utc: bool) -> String {
        let mut out = String::with_capacity(27);
        super::datetime::write_timestamp(&mut out, micros, utc);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use serde_json::Value;

    use super::oracle::*;
    use super::*;

    #[test]
    fn integers_beyond_two_to_the_53_are_strings() {
        assert_eq!(int(MAX_SAFE_INTEGER), Value::from(MAX_SAFE_INTEGER));
        assert_eq!(int(-MAX_SAFE_INTEGER), Value::from(-MAX_SAFE_INTEGER));
        assert_eq!(int(MAX_SAFE_INTEGER + 1), Value::String("9007199254740992".into()));
        assert_eq!(int(i64::MIN), Value::String("-9223372036854775808".into()));
        assert_eq!(uint(u64::MAX), Value::String("18446744073709551615".into()));
        assert_eq!(uint(7), Value::from(7));
    }

    #[test]
    fn floats_without_a_json_number_are_strings() {
        assert_eq!(float(1.5), Value::from(1.5));
        assert_eq!(float(f64::NAN), Value::String("NaN".into()));
        assert_eq!(float(f64::INFINITY), Value::String("Infinity".into()));
        assert_eq!(float(f64::NEG_INFINITY), Value::String("-Infinity".into()));
    }

    #[test]
    fn dates_follow_the_proleptic_gregorian_calendar() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(-1), "1969-12-31");
        assert_eq!(date(19_782), "2024-02-29");
        assert_eq!(date(10_957), "2000-01-01");
        assert_eq!(date(-719_162), "0001-01-01");
        assert_eq!(date(-719_163), "+0000-12-31", "the day before 1 AD is in year 0 (1 BC)");
        assert_eq!(date(2_932_897), "+10000-01-01");
        assert_eq!(date(-719_528), "+0000-01-01", "year 0 is a leap year");
        assert_eq!(date(-719_529), "-0001-12-31");
    }

    #[test]
    fn times_and_timestamps_trim_fractions() {
        assert_eq!(time(0), "00:00:00");
        assert_eq!(time(49_500_000_000), "13:45:00");
        assert_eq!(time(49_500_500_000), "13:45:00.5");
        assert_eq!(time(86_399_999_999), "23:59:59.999999");
        assert_eq!(timestamp(0, false), "1970-01-01T00:00:00");
        assert_eq!(timestamp(-1, true), "1969-12-31T23:59:59.999999Z");
        assert_eq!(timestamp(1_709_214_300_123_000, true), "2024-02-29T13:45:00.123Z");
    }

    #[test]
    fn intervals_are_iso_8601_durations() {
        assert_eq!(interval(14, 3, 14_706_500_000), "P1Y2M3DT4H5M6.5S");
        assert_eq!(interval(0, 0, 0), "PT0S");
        assert_eq!(interval(-1, 0, -1_000_000), "P-1MT-1S");
        assert_eq!(interval(0, 1, 0), "P1D");
    }

    #[test]
    fn uuids_and_bytes() {
        let id = [0x55, 0x0e, 0x84, 0x00, 0xe2, 0x9b, 0x41, 0xd4, 0xa7, 0x16, 0x44, 0x66, 0x55, 0x44, 0x00, 0x00];
        assert_eq!(uuid(id), "550e8400-e29b-41d4-a716-446655440000");
        assert_eq!(bytes(b"\x00\xffab"), Value::String("AP9hYg==".into()));
    }

    fn written(write: impl FnOnce(&mut String)) -> String {
        let mut out = String::from("…");
        write(&mut out);
        out.split_off("…".len())
    }

    #[test]
    fn every_ascii_character_is_escaped_as_serde_json_escapes_it() {
        let all: String = (0u8..=0x7f).map(char::from).collect();
        let quotes = ["\"", "\\", "\"\"", "\\\"", "a\"b\\c", "[1,\"x\\\"y\"]", "ends\\", "é\"😀\\", "\u{1f}\""];
        let short = [all.as_str(), "", "plain", "é\u{2028}😀\"\\", "\u{7f}\u{0}end"]
            .into_iter()
            .chain(quotes)
            .map(str::to_owned);
        // Long ones take the other path: with the quotes at the start, the end, and throughout.
        let long = quotes.iter().flat_map(|quote| {
            let padding = "x".repeat(40);
            [format!("{quote}{padding}"), format!("{padding}{quote}"), quote.repeat(40), format!("{padding}\n{quote}")]
        });
        // Long, and nothing but control characters.
        let long = long.chain(["\n\t\u{1}".repeat(20), "\u{1f}".repeat(40)]);
        for text in short.chain(long) {
            assert_eq!(written(|out| text::string(out, &text)), serde_json::to_string(&text).expect("serializes"));
        }
    }

    #[test]
    fn numbers_are_written_as_the_values_for_them_serialize() {
        for value in [0, 1, -1, MAX_SAFE_INTEGER, MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, i64::MIN, i64::MAX] {
            assert_eq!(written(|out| text::int(out, value)), int(value).to_string());
        }
        for value in [0, 7, MAX_SAFE_INTEGER as u64 + 1, u64::MAX] {
            assert_eq!(written(|out| text::uint(out, value)), uint(value).to_string());
        }
        for value in
            [0.0, -0.0, 1.5, 0.1, 1e300, -2.5e-300, f64::MIN_POSITIVE, f64::NAN, f64::INFINITY, f64::NEG_INFINITY]
        {
            assert_eq!(written(|out| text::float(out, value)), float(value).to_string());
        }
        assert_eq!(written(|out| text::base64(out, b"\x00\xffab")), bytes(b"\x00\xffab").to_string());
        assert_eq!(written(|out| push_padded(out, 7, 4)), "0007");
        assert_eq!(written(|out| push_padded(out, 123_456, 2)), "123456");
        assert_eq!(written(|out| push_padded(out, 0, 0)), "0");
        for (value, width) in
            [(0, 2), (9, 2), (10, 2), (99, 2), (100, 2), (0, 4), (7, 4), (999, 4), (9999, 4), (10_000, 4)]
        {
            assert_eq!(written(|out| push_padded(out, value, width)), format!("{value:0width$}"));
        }
    }

    fn any_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|value| serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((any::<String>(), inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    /// What [`write_date_time`] writes, by `fmt`.
    fn formatted(date: Date, time: Option<Clock>, utc: bool, years: Years) -> String {
        let mut out = String::new();
        if years.signs(date.year) {
            out.push(if date.year < 0 { '-' } else { '+' });
        }
        let _ = write!(out, "{:04}-{:02}-{:02}", date.year.unsigned_abs(), date.month, date.day);
        if let Some(time) = time {
            let _ = write!(out, "T{:02}:{:02}:{:02}", time.hours, time.minutes, time.seconds);
            if time.micros != 0 {
                let _ = write!(out, ".{:06}", time.micros);
                while out.ends_with('0') {
                    out.pop();
                }
            }
        }
        if utc {
            out.push('Z');
        }
        out
    }

    #[test]
    fn dates_and_times_on_the_stack_and_off_it_read_the_same() {
        let date = |year, month, day| Date { year, month, day };
        let clock = |hours, minutes, seconds, micros| Clock { hours, minutes, seconds, micros };
        let cases = [
            (date(2024, 2, 29), Some(clock(13, 45, 0, 123_000)), true, Years::Signed, "2024-02-29T13:45:00.123Z"),
            (date(1, 1, 1), Some(clock(0, 0, 0, 1)), false, Years::Signed, "0001-01-01T00:00:00.000001"),
            (date(9999, 12, 31), Some(clock(23, 59, 59, 999_999)), false, Years::Signed, "9999-12-31T23:59:59.999999"),
            (date(0, 0, 0), Some(clock(0, 0, 0, 0)), false, Years::Plain, "0000-00-00T00:00:00"),
            (date(0, 1, 1), None, false, Years::Signed, "+0000-01-01"),
            (date(10_000, 1, 1), None, false, Years::Plain, "10000-01-01"),
            (date(2024, 1, 2), Some(clock(100, 0, 0, 1_000_000)), false, Years::Signed, "2024-01-02T100:00:00.1"),
            // One field just past its usual width, the others usual.
            (date(2024, 100, 2), None, false, Years::Plain, "2024-100-02"),
            (date(2024, 1, 100), None, false, Years::Plain, "2024-01-100"),
            (date(2024, 1, 2), Some(clock(100, 0, 0, 0)), false, Years::Signed, "2024-01-02T100:00:00"),
            (date(2024, 1, 2), Some(clock(0, 100, 0, 0)), false, Years::Signed, "2024-01-02T00:100:00"),
            (date(2024, 1, 2), Some(clock(0, 0, 100, 0)), false, Years::Signed, "2024-01-02T00:00:100"),
            (date(2024, 1, 2), Some(clock(0, 0, 0, 1_000_000)), false, Years::Signed, "2024-01-02T00:00:00.1"),
            (date(2024, 100, 100), Some(clock(100, 100, 100, 0)), false, Years::Plain, "2024-100-100T100:100:100"),
        ];
        for (date, time, utc, years, expected) in cases {
            assert_eq!(written(|out| write_date_time(out, date, time, utc, years)), expected);
            assert_eq!(formatted(date, time, utc, years), expected);
        }
    }

    #[test]
    fn values_within_a_limit_are_written_whole_or_refused_without_passing_it() {
        let cases = ["plain", "quote\" and \\", "\u{1}\u{2}\u{3}\u{4}", "é😀", ""];
        for value in cases {
            let json = serde_json::to_string(value).expect("serializes");
            for limit in 0..json.len() + 3 {
                let mut out = String::from("[");
                let written = text::string_within(&mut out, value, limit);
                assert!(out.len() <= limit.max(1), "{value:?} at {limit}: {out:?} passed the limit");
                if json.len() < limit {
                    assert_eq!(written, Ok(()), "{value:?} fits in {limit}");
                    assert_eq!(out, format!("[{json}"));
                } else {
                    assert_eq!(written, Err(text::TooLarge), "{value:?} does not fit in {limit}");
                }
            }
        }
        // Escaping stops at the limit: a megabyte of control characters is not escaped whole.
        let controls = "\u{1}".repeat(1 << 20);
        let mut out = String::new();
        assert_eq!(text::string_within(&mut out, &controls, 2 << 20), Err(text::TooLarge));
        assert!(out.len() < 2 << 20, "{}", out.len());
        for bytes in [&b""[..], b"a", b"ab", b"abc", b"abcd"] {
            let json = bytes_json(bytes);
            let mut out = String::new();
            assert_eq!(text::base64_within(&mut out, bytes, json.len()), Ok(()));
            assert_eq!(out, json);
            assert_eq!(text::base64_within(&mut String::new(), bytes, json.len() - 1), Err(text::TooLarge));
        }
        let mut out = String::new();
        assert_eq!(text::lossy_within(&mut out, b"a\xffb", 7), Ok(()));
        assert_eq!(out, "\"a\u{fffd}b\"");
    }

    fn bytes_json(value: &[u8]) -> String {
        bytes(value).to_string()
    }

    #[test]
    fn json_from_the_database_is_kept_as_it_was_printed() {
        let printed = r#"{"a": 1, "a": 2, "big": 123456789012345678901234567890, "pi": 3.14159265358979323846}"#;
        let mut out = String::new();
        assert_eq!(text::json_within(&mut out, printed.as_bytes(), 1000), Some(Ok(())));
        assert_eq!(out, printed, "duplicate keys and digits kept");
        assert_eq!(text::json_within(&mut String::new(), printed.as_bytes(), 10), Some(Err(text::TooLarge)));
        assert_eq!(text::json_within(&mut String::new(), b"{not json", 1000), None);
        assert_eq!(text::json_within(&mut String::new(), b"\xff", 1000), None);
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(text::json_within(&mut String::new(), deep.as_bytes(), 1000), Some(Ok(())), "at any depth");
        let mut out = String::new();
        let spread = "{\"a\":\n\t[1,\r\n 2], \"b\\n\": \"x\\ty\"}";
        assert_eq!(text::json_within(&mut out, spread.as_bytes(), 1000), Some(Ok(())));
        assert_eq!(out, "{\"a\":[1, 2], \"b\\n\": \"x\\ty\"}", "line breaks and tabs between tokens are left out");
        let mut out = String::new();
        let spaced = "{\n\t\"\": [\n\t\t{\n\t\t\t\"  \": null\n\t\t}\n\t]\n}";
        assert_eq!(text::json_within(&mut out, spaced.as_bytes(), 1000), Some(Ok(())));
        assert_eq!(out, "{\"\": [{\"  \": null}]}", "spaces inside a key are the key's");
    }

    proptest::proptest! {
        #[test]
        fn json_from_the_database_is_written_without_control_characters(value in any_value()) {
            // Pretty-printed with tabs (a key of two spaces must stay two spaces).
            let mut bytes = Vec::new();
            let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
            serde::Serialize::serialize(&value, &mut serde_json::Serializer::with_formatter(&mut bytes, formatter))
                .expect("printed");
            let printed = String::from_utf8(bytes).expect("UTF-8");
            let mut out = String::new();
            proptest::prop_assert_eq!(text::json_within(&mut out, printed.as_bytes(), usize::MAX), Some(Ok(())));
            proptest::prop_assert!(!out.bytes().any(|byte| byte < 0x20), "{}", out);
            let parsed = |text: &str| serde_json::from_str::<Value>(text).expect("JSON");
            proptest::prop_assert_eq!(parsed(&out), parsed(&printed));
        }

        #[test]
        fn any_value_is_written_as_serde_json_writes_it(value in any_value()) {
            proptest::prop_assert_eq!(written(|out| text::value(out, &value)), value.to_string());
        }

        #[test]
        fn any_date_and_time_is_written_as_fmt_writes_it(
            year in proptest::prop_oneof![1i64..=9999, -20_000i64..20_000],
            month in proptest::prop_oneof![1u32..=12, 0u32..300],
            day in proptest::prop_oneof![1u32..=31, 0u32..300],
            hours in proptest::prop_oneof![0u64..24, 0u64..300],
            minutes in proptest::prop_oneof![0u64..60, 0u64..300],
            seconds in proptest::prop_oneof![0u64..60, 0u64..300],
            micros in proptest::prop_oneof![proptest::strategy::Just(0u64), 0u64..1_000_000, 0u64..3_000_000],
            with_time: bool,
            utc: bool,
            signed: bool,
        ) {
            let date = Date { year, month, day };
            let time = with_time.then_some(Clock { hours, minutes, seconds, micros });
            let years = if signed { Years::Signed } else { Years::Plain };
            proptest::prop_assert_eq!(
                written(|out| write_date_time(out, date, time, utc, years)),
                formatted(date, time, utc, years)
            );
        }

        #[test]
        fn any_string_within_its_limit_is_written_as_serde_json_writes_it(value in "(.|[\\x00-\\x1f\"\\\\])*", cut in 0usize..64) {
            let json = serde_json::to_string(&value).expect("serializes");
            let mut out = String::new();
            proptest::prop_assert_eq!(text::string_within(&mut out, &value, json.len()), Ok(()));
            proptest::prop_assert_eq!(&out, &json);
            let limit = json.len().saturating_sub(1 + cut);
            let mut out = String::new();
            proptest::prop_assert_eq!(text::string_within(&mut out, &value, limit), Err(text::TooLarge));
            proptest::prop_assert!(out.len() <= limit);
        }

        #[test]
        fn json_text_is_escaped_as_serde_json_escapes_it(value in any_value()) {
            let json = value.to_string();
            let mut out = Vec::new();
            text::escape_json_text(&mut out, &json);
            let expected = serde_json::to_string(&json).expect("serializes");
            proptest::prop_assert_eq!(&out[..], &expected.as_bytes()[1..expected.len() - 1]);
        }

        #[test]
        fn any_string_is_written_as_serde_json_writes_it(value in ".*") {
            proptest::prop_assert_eq!(written(|out| text::string(out, &value)), serde_json::to_string(&value).expect("serializes"));
        }
    }
}
