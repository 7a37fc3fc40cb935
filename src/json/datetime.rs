//! Dates, times and durations as JSON strings (the formats are in the [module table](super)).

use std::fmt::Write as _;

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
pub(crate) struct Date {
    /// Astronomical year: 0 is 1 BC.
    pub(crate) year: i64,
    /// 1–12.
    pub(crate) month: u32,
    /// 1–31.
    pub(crate) day: u32,
}

impl Date {
    /// The date `days` after 1970-01-01 (before it when negative), proleptic Gregorian.
    pub(crate) fn from_unix_days(days: i64) -> Date {
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
    pub(crate) fn signs(self, year: i64) -> bool {
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

/// Appends `YYYY-MM-DD` for the date `days` after 1970-01-01.
pub(crate) fn write_date(out: &mut String, days: i64) {
    Date::from_unix_days(days).write(out);
}

/// Appends `HH:MM:SS[.ffffff]` for a time of day in microseconds.
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

/// Appends `YYYY-MM-DDTHH:MM:SS[.ffffff]` for microseconds since 1970-01-01T00:00:00, with a
/// `Z` when the value is a point in time (a timestamp with time zone), kept in UTC.
pub(crate) fn write_timestamp(out: &mut String, micros: i64, utc: bool) {
    let day = micros.div_euclid(86_400_000_000);
    let time = Clock::of_micros(micros.rem_euclid(86_400_000_000));
    write_date_time(out, Date::from_unix_days(day), Some(time), utc, Years::Signed);
}

/// An ISO 8601 duration for an interval of months, days and microseconds, each of which may
/// be negative on its own (as in PostgreSQL).
pub(crate) fn interval(months: i32, days: i32, micros: i64) -> String {
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
