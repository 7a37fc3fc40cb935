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

use std::fmt::Write as _;

use base64::Engine as _;
use serde_json::Value;

/// The largest integer every JSON reader holds exactly (2^53 − 1).
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// A signed integer: a number when exact everywhere, else a string.
pub fn int(value: i64) -> Value {
    if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&value) {
        Value::from(value)
    } else {
        Value::String(value.to_string())
    }
}

/// An unsigned integer: a number when exact everywhere, else a string.
pub fn uint(value: u64) -> Value {
    match i64::try_from(value) {
        Ok(value) => int(value),
        Err(_) => Value::String(value.to_string()),
    }
}

/// A float: a number, or a string for NaN and the infinities, which JSON lacks.
pub fn float(value: f64) -> Value {
    if value.is_nan() {
        Value::String("NaN".into())
    } else if value.is_infinite() {
        Value::String(if value > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
    }
}

/// Bytes as standard base64 with padding.
pub fn bytes(value: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(value))
}

/// A uuid from its 16 bytes.
pub fn uuid(value: [u8; 16]) -> String {
    let mut out = String::with_capacity(36);
    write_uuid(&mut out, value);
    out
}

/// Appends [`uuid`]`(value)`.
pub(crate) fn write_uuid(out: &mut String, value: [u8; 16]) {
    for (i, byte) in value.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        push_hex(out, *byte);
    }
}

/// Appends a byte as two lower-case hexadecimal digits.
fn push_hex(out: &mut String, byte: u8) {
    let [high, low] = hex(byte);
    out.push(char::from(high));
    out.push(char::from(low));
}

/// A byte's two lower-case hexadecimal digits.
fn hex(byte: u8) -> [u8; 2] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    [HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]]
}

/// Appends `value` in decimal, zero-padded to at least `width` digits. (Results hold many
/// dates and times: this is what formatting them costs, without `fmt`'s machinery.)
pub(crate) fn push_padded(out: &mut String, value: u64, width: usize) {
    // Most are the two digits of a month, a day or a time, or a year's four.
    let digit = |value: u64| char::from(b'0' + (value % 10) as u8);
    if width == 2 && value < 100 {
        out.push(digit(value / 10));
        out.push(digit(value));
        return;
    }
    if width == 4 && value < 10_000 {
        out.push(digit(value / 1000));
        out.push(digit(value / 100));
        out.push(digit(value / 10));
        out.push(digit(value));
        return;
    }
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(value);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    /// Astronomical year: 0 is 1 BC.
    pub year: i64,
    /// 1–12.
    pub month: u32,
    /// 1–31.
    pub day: u32,
}

impl Date {
    /// The date `days` after 1970-01-01 (before it when negative), proleptic Gregorian.
    pub fn from_unix_days(days: i64) -> Date {
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        // day and month are within 1..=31 and 1..=12 by construction.
        Date { year, month: month as u32, day: day as u32 }
    }

    fn write(self, out: &mut String) {
        write_date_time(out, self, None, false, Years::Signed);
    }
}

/// A time of day, as its parts. The hours may exceed 23 (PostgreSQL's `24:00:00`, a MySQL
/// `TIME` of several days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Clock {
    pub(crate) hours: u64,
    pub(crate) minutes: u64,
    pub(crate) seconds: u64,
    pub(crate) micros: u64,
}

impl Clock {
    /// The time `micros` after midnight.
    pub(crate) fn of_micros(micros: i64) -> Clock {
        let seconds = micros.div_euclid(1_000_000).unsigned_abs();
        let micros = micros.rem_euclid(1_000_000).unsigned_abs();
        Clock { hours: seconds / 3600, minutes: seconds / 60 % 60, seconds: seconds % 60, micros }
    }
}

/// How a year outside 0001–9999 is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Years {
    /// ISO 8601's expanded form: a sign and at least four digits.
    Signed,
    /// As MySQL prints them, without a sign: its zero date is `0000-00-00`.
    Plain,
}

impl Years {
    fn signs(self, year: i64) -> bool {
        self == Years::Signed && !(1..=9999).contains(&year)
    }
}

/// Appends `YYYY-MM-DD`, then `THH:MM:SS[.ffffff]` with a time, then `Z` when `utc`. The
/// usual case (a four-digit year, two-digit fields) is put together on the stack and
/// appended at once, since results hold many of these.
pub(crate) fn write_date_time(out: &mut String, date: Date, time: Option<Clock>, utc: bool, years: Years) {
    let two_digits = |value: u64| value < 100;
    let usual = (0..=9999).contains(&date.year)
        && !years.signs(date.year)
        && two_digits(u64::from(date.month))
        && two_digits(u64::from(date.day))
        && time.is_none_or(|time| {
            two_digits(time.hours) && two_digits(time.minutes) && two_digits(time.seconds) && time.micros < 1_000_000
        });
    if usual {
        let mut text = *b"0000-00-00T00:00:00.000000Z";
        put_digits(&mut text[..4], date.year.unsigned_abs());
        put_digits(&mut text[5..7], u64::from(date.month));
        put_digits(&mut text[8..10], u64::from(date.day));
        let mut len = 10;
        if let Some(time) = time {
            put_digits(&mut text[11..13], time.hours);
            put_digits(&mut text[14..16], time.minutes);
            put_digits(&mut text[17..19], time.seconds);
            len = 19;
            if time.micros != 0 {
                put_digits(&mut text[20..26], time.micros);
                len = 26;
                while text[len - 1] == b'0' {
                    len -= 1;
                }
            }
        }
        if utc {
            text[len] = b'Z';
            len += 1;
        }
        // Digits and separators only, so always text.
        if let Ok(text) = std::str::from_utf8(&text[..len]) {
            out.push_str(text);
        }
        return;
    }
    if years.signs(date.year) {
        out.push(if date.year < 0 { '-' } else { '+' });
    }
    push_padded(out, date.year.unsigned_abs(), 4);
    out.push('-');
    push_padded(out, u64::from(date.month), 2);
    out.push('-');
    push_padded(out, u64::from(date.day), 2);
    if let Some(time) = time {
        out.push('T');
        write_clock(out, time);
    }
    if utc {
        out.push('Z');
    }
}

/// Writes `value`'s last `digits.len()` decimal digits into `digits`.
fn put_digits(digits: &mut [u8], mut value: u64) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Appends `HH:MM:SS[.ffffff]`.
pub(crate) fn write_clock(out: &mut String, time: Clock) {
    push_padded(out, time.hours, 2);
    out.push(':');
    push_padded(out, time.minutes, 2);
    out.push(':');
    push_padded(out, time.seconds, 2);
    push_fraction(out, time.micros);
}

/// `YYYY-MM-DD` for the date `days` after 1970-01-01.
pub fn date(days: i64) -> String {
    let mut out = String::with_capacity(10);
    write_date(&mut out, days);
    out
}

/// Appends [`date`]`(days)`.
pub(crate) fn write_date(out: &mut String, days: i64) {
    Date::from_unix_days(days).write(out);
}

/// `HH:MM:SS[.ffffff]` for a time of day in microseconds.
pub fn time(micros: i64) -> String {
    let mut out = String::with_capacity(15);
    write_time(&mut out, micros);
    out
}

/// Appends [`time`]`(micros)`.
pub(crate) fn write_time(out: &mut String, micros: i64) {
    write_clock(out, Clock::of_micros(micros));
}

/// Appends `.ffffff` for a nonzero count of microseconds, without trailing zeros.
pub(crate) fn push_fraction(out: &mut String, micros: u64) {
    if micros != 0 {
        out.push('.');
        push_padded(out, micros, 6);
        while out.ends_with('0') {
            out.pop();
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]` for microseconds since 1970-01-01T00:00:00, with a `Z` when
/// the value is a point in time (a timestamp with time zone), kept in UTC.
pub fn timestamp(micros: i64, utc: bool) -> String {
    let mut out = String::with_capacity(27);
    write_timestamp(&mut out, micros, utc);
    out
}

/// Appends [`timestamp`]`(micros, utc)`.
pub(crate) fn write_timestamp(out: &mut String, micros: i64, utc: bool) {
    let day = micros.div_euclid(86_400_000_000);
    let time = Clock::of_micros(micros.rem_euclid(86_400_000_000));
    write_date_time(out, Date::from_unix_days(day), Some(time), utc, Years::Signed);
}

/// An ISO 8601 duration for an interval of months, days and microseconds, each of which may
/// be negative on its own (as in PostgreSQL).
pub fn interval(months: i32, days: i32, micros: i64) -> String {
    let mut out = String::from("P");
    let (years, months) = (months / 12, months % 12);
    for (value, unit) in [(i64::from(years), 'Y'), (i64::from(months), 'M'), (i64::from(days), 'D')] {
        if value != 0 {
            let _ = write!(out, "{value}{unit}");
        }
    }
    if micros != 0 {
        out.push('T');
        let negative = micros < 0;
        let micros = micros.unsigned_abs();
        let (hours, minutes) = (micros / 3_600_000_000, micros / 60_000_000 % 60);
        let (seconds, fraction) = (micros / 1_000_000 % 60, micros % 1_000_000);
        let sign = if negative { "-" } else { "" };
        if hours != 0 {
            let _ = write!(out, "{sign}{hours}H");
        }
        if minutes != 0 {
            let _ = write!(out, "{sign}{minutes}M");
        }
        if seconds != 0 || fraction != 0 {
            let _ = write!(out, "{sign}{seconds}");
            if fraction != 0 {
                let _ = write!(out, ".{fraction:06}");
                while out.ends_with('0') {
                    out.pop();
                }
            }
            out.push('S');
        }
    }
    if out.len() == 1 {
        out.push_str("T0S");
    }
    out
}

/// JSON text written straight into a buffer, without building a [`Value`] first: for each
/// value, the same text `serde_json` writes for the [`Value`] the functions above make. A
/// result's rows are written this way as they arrive.
pub(crate) mod text {
    use serde_json::Value;

    use super::MAX_SAFE_INTEGER;

    pub(crate) fn null(out: &mut String) {
        out.push_str("null");
    }

    pub(crate) fn bool(out: &mut String, value: bool) {
        out.push_str(if value { "true" } else { "false" });
    }

    /// As [`super::int`]: a number when exact everywhere, else a string of its digits.
    pub(crate) fn int(out: &mut String, value: i64) {
        let mut digits = itoa::Buffer::new();
        if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&value) {
            out.push_str(digits.format(value));
        } else {
            quoted(out, digits.format(value));
        }
    }

    /// As [`super::uint`].
    pub(crate) fn uint(out: &mut String, value: u64) {
        match i64::try_from(value) {
            Ok(value) => int(out, value),
            Err(_) => quoted(out, itoa::Buffer::new().format(value)),
        }
    }

    /// As [`super::float`].
    pub(crate) fn float(out: &mut String, value: f64) {
        if value.is_nan() {
            out.push_str("\"NaN\"");
        } else if value.is_infinite() {
            out.push_str(if value > 0.0 { "\"Infinity\"" } else { "\"-Infinity\"" });
        } else {
            out.push_str(zmij::Buffer::new().format_finite(value));
        }
    }

    /// A string with nothing to escape in it (digits, dates, base64): between quotes.
    pub(crate) fn quoted(out: &mut String, plain: &str) {
        quoted_with(out, |out| out.push_str(plain));
    }

    /// A string that `write` writes, putting nothing in it that needs escaping: between quotes.
    pub(crate) fn quoted_with<R>(out: &mut String, write: impl FnOnce(&mut String) -> R) -> R {
        out.push('"');
        let written = write(out);
        out.push('"');
        written
    }

    /// A string, escaped as `serde_json` escapes it: `"` and `\\`, and the control characters,
    /// five of them by letter and the rest as `\u00xx`. Everything else is written as it is.
    pub(crate) fn string(out: &mut String, value: &str) {
        out.push('"');
        escaped(value, |piece| out.push_str(piece));
        out.push('"');
    }

    /// Hands `piece`, in order, the parts of `value` escaped as the inside of a JSON string,
    /// as `serde_json` escapes it.
    pub(crate) fn escaped(value: &str, mut piece: impl FnMut(&str)) {
        let bytes = value.as_bytes();
        // Without control characters (JSON text has none, and most values), a quote or a
        // backslash is all there is to escape: each takes a backslash before it, and memchr
        // finds them many bytes at a time. (A short value is quicker byte by byte.)
        if bytes.len() >= 32 && !has_control(bytes) {
            let mut plain = 0;
            for at in memchr::memchr2_iter(b'"', b'\\', bytes) {
                // The byte at `at` is ASCII, so a character boundary; it starts the next piece.
                piece(&value[plain..at]);
                piece("\\");
                plain = at;
            }
            piece(&value[plain..]);
            return;
        }
        let mut plain = 0;
        for (at, byte) in bytes.iter().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0x00..=0x1f => "",
                _ => continue,
            };
            // Every byte escaped is ASCII, so these are character boundaries.
            if plain < at {
                piece(&value[plain..at]);
            }
            if escape.is_empty() {
                let [high, low] = super::hex(*byte);
                piece(std::str::from_utf8(&[b'\\', b'u', b'0', b'0', high, low]).unwrap_or_default());
            } else {
                piece(escape);
            }
            plain = at + 1;
        }
        piece(&value[plain..]);
    }

    /// JSON text (which holds no control characters) as the inside of a JSON string: a
    /// backslash before each quote and backslash, as [`string`] escapes them. Eight bytes are
    /// looked at together, so that text dense with quotes and backslashes (a result of escaped
    /// strings) costs no more than a copy and a little.
    pub(crate) fn escape_json_text(out: &mut Vec<u8>, json: &str) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        // Whether any byte of `word` is `byte`: the classic test for a zero byte, on the xor.
        let has = |word: u64, byte: u8| {
            let x = word ^ (ONES * u64::from(byte));
            x.wrapping_sub(ONES) & !x & HIGHS != 0
        };
        let bytes = json.as_bytes();
        out.reserve(bytes.len() + bytes.len() / 8);
        let mut words = bytes.chunks_exact(8);
        for chunk in &mut words {
            let word =
                u64::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7]]);
            if !has(word, b'"') && !has(word, b'\\') {
                out.extend_from_slice(chunk);
                continue;
            }
            for &byte in chunk {
                if byte == b'"' || byte == b'\\' {
                    out.push(b'\\');
                }
                out.push(byte);
            }
        }
        for &byte in words.remainder() {
            if byte == b'"' || byte == b'\\' {
                out.push(b'\\');
            }
            out.push(byte);
        }
    }

    /// Bytes as standard base64 with padding, as [`super::bytes`].
    pub(crate) fn base64(out: &mut String, value: &[u8]) {
        quoted_with(out, |out| base64::Engine::encode_string(&base64::engine::general_purpose::STANDARD, value, out));
    }

    /// A value that does not fit: writing it would take the text past its limit.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct TooLarge;

    /// [`string`], unless that would take `out` past `limit` bytes: then nothing more is
    /// written once the limit is reached (escaping stops there), and the value is refused.
    /// Its least size (the bytes and two quotes) is checked before anything is written.
    pub(crate) fn string_within(out: &mut String, value: &str, limit: usize) -> Result<(), TooLarge> {
        if out.len().saturating_add(value.len()).saturating_add(2) > limit {
            return Err(TooLarge);
        }
        out.push('"');
        // Room is kept for the closing quote.
        escape_within(out, value, limit - 1)?;
        out.push('"');
        Ok(())
    }

    /// The inside of a JSON string for `value`, escaped as [`string`] escapes it, unless that
    /// would take `out` past `limit` bytes: then escaping stops there.
    pub(crate) fn escape_within(out: &mut String, value: &str, limit: usize) -> Result<(), TooLarge> {
        let bytes = value.as_bytes();
        if !has_control(bytes) {
            let mut fits = true;
            escaped(value, |piece| {
                if fits && out.len() + piece.len() <= limit {
                    out.push_str(piece);
                } else {
                    fits = false;
                }
            });
            return if fits { Ok(()) } else { Err(TooLarge) };
        }
        // Control characters, perhaps many: written straight in, a byte at a time.
        let mut plain = 0;
        for (at, byte) in bytes.iter().enumerate() {
            let escape = ESCAPES[usize::from(*byte)];
            if escape == 0 {
                continue;
            }
            // Room for the run before it and the escape.
            let escape_len = if escape == b'u' { 6 } else { 2 };
            if out.len() + (at - plain) + escape_len > limit {
                return Err(TooLarge);
            }
            // Every byte escaped is ASCII, so these are character boundaries.
            out.push_str(&value[plain..at]);
            out.push('\\');
            if escape == b'u' {
                let [high, low] = super::hex(*byte);
                for digit in [b'u', b'0', b'0', high, low] {
                    out.push(char::from(digit));
                }
            } else {
                out.push(char::from(escape));
            }
            plain = at + 1;
        }
        if out.len() + (bytes.len() - plain) > limit {
            return Err(TooLarge);
        }
        out.push_str(&value[plain..]);
        Ok(())
    }

    /// For each byte, the letter of its escape after a backslash: `u` for `\u00xx`, 0 for a
    /// byte written as it is.
    const ESCAPES: [u8; 256] = {
        let mut table = [0u8; 256];
        let mut byte = 0;
        while byte < 0x20 {
            table[byte] = b'u';
            byte += 1;
        }
        table[b'"' as usize] = b'"';
        table[b'\\' as usize] = b'\\';
        table[b'\n' as usize] = b'n';
        table[b'\r' as usize] = b'r';
        table[b'\t' as usize] = b't';
        table[0x08] = b'b';
        table[0x0c] = b'f';
        table
    };

    /// Whether there is a control character among the bytes.
    fn has_control(bytes: &[u8]) -> bool {
        bytes.iter().fold(false, |control, byte| control | (*byte < 0x20))
    }

    /// Bytes that should be UTF-8 text, as a string within `limit` (as [`string_within`]);
    /// invalid sequences become U+FFFD. (Valid text is checked by `from_utf8`, quicker than
    /// `from_utf8_lossy`'s chunks.)
    pub(crate) fn lossy_within(out: &mut String, value: &[u8], limit: usize) -> Result<(), TooLarge> {
        match std::str::from_utf8(value) {
            Ok(value) => string_within(out, value, limit),
            Err(_) => string_within(out, &String::from_utf8_lossy(value), limit),
        }
    }

    /// [`base64`] within `limit`: its size is known before it is written.
    pub(crate) fn base64_within(out: &mut String, value: &[u8], limit: usize) -> Result<(), TooLarge> {
        let size = value.len().div_ceil(3).saturating_mul(4).saturating_add(2);
        if out.len().saturating_add(size) > limit {
            return Err(TooLarge);
        }
        base64(out, value);
        Ok(())
    }

    /// JSON text from the database (PostgreSQL `json` and `jsonb`, MySQL `JSON`), written as
    /// the database printed it, so duplicate keys, key order and big numbers are kept: `None`
    /// when it is not JSON, for the caller to write it another way. (It is checked without
    /// being taken apart: a value tree would take many times the text's memory.)
    ///
    /// Line breaks and tabs between its tokens (PostgreSQL's `json` keeps the input's) are left
    /// out: JSON text written here holds no control character, which the stdio transport's
    /// one-message-per-line framing and its text copy rely on. Valid JSON has them nowhere
    /// else, since a string cannot hold one unescaped.
    pub(crate) fn json_within(out: &mut String, value: &[u8], limit: usize) -> Option<Result<(), TooLarge>> {
        let text = std::str::from_utf8(value).ok()?;
        serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
        if out.len().saturating_add(text.len()) > limit {
            return Some(Err(TooLarge));
        }
        let mut rest = text;
        while let Some(at) = memchr::memchr3(b'\n', b'\r', b'\t', rest.as_bytes()) {
            out.push_str(&rest[..at]);
            rest = &rest[at + 1..];
        }
        out.push_str(rest);
        Some(Ok(()))
    }

    /// Any JSON value.
    pub(crate) fn value(out: &mut String, value: &Value) {
        match value {
            Value::Null => null(out),
            Value::Bool(value) => bool(out, *value),
            Value::Number(number) => {
                if let Some(value) = number.as_u64() {
                    out.push_str(itoa::Buffer::new().format(value));
                } else if let Some(value) = number.as_i64() {
                    out.push_str(itoa::Buffer::new().format(value));
                } else if let Some(value) = number.as_f64() {
                    out.push_str(zmij::Buffer::new().format_finite(value));
                }
            }
            Value::String(value) => string(out, value),
            Value::Array(values) => {
                out.push('[');
                for (index, item) in values.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    self::value(out, item);
                }
                out.push(']');
            }
            Value::Object(map) => {
                out.push('{');
                for (index, (key, item)) in map.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    string(out, key);
                    out.push(':');
                    self::value(out, item);
                }
                out.push('}');
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
