//! Values in and out. Parameters are sent in PostgreSQL's text format, so the server parses
//! each into whatever type the statement needs, as it does for `psql`. Results are decoded
//! from the binary format straight into JSON text (see [`crate::json`]); a type without a
//! decoder here is printed by PostgreSQL itself, through the type's output function (see
//! [`PRINT`](super::read::PRINT)), in a read-only transaction.

use super::*;

/// For a type whose values can be long and are written as they are (text, or bytes as
/// base64), which of the two: such a value is written a piece at a time.
pub(super) fn long_kind(ty: &Type) -> Option<bool> {
    match *ty {
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::XML => Some(false),
        Type::BYTEA => Some(true),
        _ => match ty.kind() {
            Kind::Enum(_) => Some(false),
            Kind::Domain(base) => long_kind(base),
            _ => None,
        },
    }
}

/// Whether [`decode`] has a decoder for values of the type.
pub(super) fn decodable(ty: &Type) -> bool {
    match ty.kind() {
        Kind::Enum(_) => true,
        Kind::Domain(base) | Kind::Array(base) => decodable(base),
        Kind::Simple => DECODED.contains(ty),
        _ => false,
    }
}

/// The simple types [`decode`] reads.
pub(super) const DECODED: [Type; 26] = [
    Type::BOOL,
    Type::RECORD,
    Type::INT2,
    Type::INT4,
    Type::INT8,
    Type::OID,
    Type::FLOAT4,
    Type::FLOAT8,
    Type::NUMERIC,
    Type::TEXT,
    Type::VARCHAR,
    Type::BPCHAR,
    Type::NAME,
    Type::UNKNOWN,
    Type::XML,
    Type::CHAR,
    Type::UUID,
    Type::DATE,
    Type::TIME,
    Type::TIMETZ,
    Type::TIMESTAMP,
    Type::TIMESTAMPTZ,
    Type::INTERVAL,
    Type::BYTEA,
    Type::JSON,
    Type::JSONB,
];

pub(super) fn result_columns(statement: &Statement) -> Vec<ResultColumn> {
    describe(statement.columns())
}

pub(super) fn describe(columns: &[tokio_postgres::Column]) -> Vec<ResultColumn> {
    columns
        .iter()
        .map(|column| ResultColumn { name: column.name().to_owned(), data_type: type_name(column.type_()) })
        .collect()
}

/// Whether [`type_name`] of `ty` is `name`, without writing it out.
pub(super) fn is_type_named(ty: &Type, name: &str) -> bool {
    match ty.kind() {
        Kind::Array(element) => name.strip_suffix("[]") == Some(element.name()),
        _ => ty.name() == name,
    }
}

pub(super) fn type_name(ty: &Type) -> String {
    match ty.kind() {
        Kind::Array(element) => format!("{}[]", element.name()),
        _ => ty.name().to_owned(),
    }
}

/// Why a value was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unwritten {
    /// Its type has no decoder here, or its bytes cannot be read: PostgreSQL prints it.
    Undecodable,
    /// It would take the text past its limit.
    TooLarge,
}

impl From<json::text::TooLarge> for Unwritten {
    fn from(_: json::text::TooLarge) -> Self {
        Unwritten::TooLarge
    }
}

/// What `raw` holds, or [`Unwritten::Undecodable`].
pub(super) fn some<T>(value: Option<T>) -> Result<T, Unwritten> {
    value.ok_or(Unwritten::Undecodable)
}

/// Writes one value from PostgreSQL's binary format as JSON text, taking `out` at most to
/// `limit` bytes; for a type decoded by the server instead (or a value this cannot read),
/// writes nothing and says so.
pub(super) fn write_value(ty: &Type, raw: &[u8], out: &mut String, limit: usize) -> Result<(), Unwritten> {
    let start = out.len();
    let written = encode(ty, raw, out, limit);
    if written == Err(Unwritten::Undecodable) {
        out.truncate(start);
    }
    written
}

/// One value as a JSON value, for the few rows a write returns.
pub(super) fn decode(ty: &Type, raw: &[u8]) -> Option<Value> {
    let mut text = String::new();
    write_value(ty, raw, &mut text, usize::MAX).ok()?;
    serde_json::from_str(&text).ok()
}

/// [`write_value`], which may leave part of a value behind when it fails.
pub(super) fn encode(ty: &Type, raw: &[u8], out: &mut String, limit: usize) -> Result<(), Unwritten> {
    use json::text;
    // The built-in types first: each is simple, and asking a type its kind costs a lookup per
    // value. Digits, dates, times and base64 need no escaping: they are only put between quotes.
    match *ty {
        Type::BOOL => text::bool(out, *some(raw.first())? != 0),
        Type::INT2 => text::int(out, i64::from(i16::from_be_bytes(some(raw.try_into().ok())?))),
        Type::INT4 => text::int(out, i64::from(i32::from_be_bytes(some(raw.try_into().ok())?))),
        Type::INT8 => text::int(out, i64::from_be_bytes(some(raw.try_into().ok())?)),
        Type::OID => text::int(out, i64::from(u32::from_be_bytes(some(raw.try_into().ok())?))),
        Type::FLOAT4 => text::float(out, f64::from(f32::from_be_bytes(some(raw.try_into().ok())?))),
        Type::FLOAT8 => text::float(out, f64::from_be_bytes(some(raw.try_into().ok())?)),
        // At most 147,455 digits: small enough to write before the row's check.
        Type::NUMERIC => some(text::quoted_with(out, |out| numeric(raw, out)))?,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::XML => {
            text::string_within(out, some(std::str::from_utf8(raw).ok())?, limit)?;
        }
        Type::CHAR => text::string(out, char::from(*some(raw.first())?).encode_utf8(&mut [0; 4])),
        Type::UUID => {
            let value = some(raw.try_into().ok())?;
            text::quoted_with(out, |out| json::write_uuid(out, value));
        }
        Type::DATE => match i32::from_be_bytes(some(raw.try_into().ok())?) {
            i32::MAX => text::quoted(out, "infinity"),
            i32::MIN => text::quoted(out, "-infinity"),
            days => text::quoted_with(out, |out| json::write_date(out, i64::from(days) + POSTGRES_EPOCH_DAYS)),
        },
        Type::TIME => {
            let micros = i64::from_be_bytes(some(raw.try_into().ok())?);
            text::quoted_with(out, |out| json::write_time(out, micros));
        }
        Type::TIMETZ => {
            let (time, zone) = some(raw.split_at_checked(8))?;
            let micros = i64::from_be_bytes(some(time.try_into().ok())?);
            // PostgreSQL stores the offset in seconds west of UTC.
            let east = -i64::from(i32::from_be_bytes(some(zone.try_into().ok())?));
            text::quoted_with(out, |out| {
                json::write_time(out, micros);
                out.push(if east < 0 { '-' } else { '+' });
                let east = east.unsigned_abs();
                json::push_padded(out, east / 3600, 2);
                out.push(':');
                json::push_padded(out, east / 60 % 60, 2);
                if east % 60 != 0 {
                    out.push(':');
                    json::push_padded(out, east % 60, 2);
                }
            });
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => match i64::from_be_bytes(some(raw.try_into().ok())?) {
            i64::MAX => text::quoted(out, "infinity"),
            i64::MIN => text::quoted(out, "-infinity"),
            micros => {
                let micros = some(micros.checked_add(POSTGRES_EPOCH_MICROS))?;
                let utc = *ty == Type::TIMESTAMPTZ;
                text::quoted_with(out, |out| json::write_timestamp(out, micros, utc));
            }
        },
        Type::INTERVAL => {
            let (micros, rest) = some(raw.split_at_checked(8))?;
            let (days, months) = some(rest.split_at_checked(4))?;
            text::quoted(
                out,
                &json::interval(
                    i32::from_be_bytes(some(months.try_into().ok())?),
                    i32::from_be_bytes(some(days.try_into().ok())?),
                    i64::from_be_bytes(some(micros.try_into().ok())?),
                ),
            );
        }
        Type::BYTEA => text::base64_within(out, raw, limit)?,
        // JSON as the server printed it: duplicate keys, key order and digits kept.
        Type::JSON => some(text::json_within(out, raw, limit))??,
        Type::JSONB => match raw.split_first() {
            Some((1, printed)) => some(text::json_within(out, printed, limit))??,
            _ => return Err(Unwritten::Undecodable),
        },
        // An anonymous row (`ROW(…)`): the server cannot take one back to print it.
        Type::RECORD => encode_record(raw, out, limit)?,
        _ => {
            return match ty.kind() {
                Kind::Enum(_) => Ok(text::string_within(out, some(std::str::from_utf8(raw).ok())?, limit)?),
                Kind::Domain(base) => encode(base, raw, out, limit),
                Kind::Array(element) => encode_array(element, raw, out, limit),
                _ => Err(Unwritten::Undecodable),
            };
        }
    }
    Ok(())
}

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
pub(super) const POSTGRES_EPOCH_DAYS: i64 = 10_957;
pub(super) const POSTGRES_EPOCH_MICROS: i64 = POSTGRES_EPOCH_DAYS * 86_400_000_000;

/// An array in binary format: dimensions, then the elements in row-major order, written as
/// nested JSON arrays.
pub(super) fn encode_array(element: &Type, raw: &[u8], out: &mut String, limit: usize) -> Result<(), Unwritten> {
    let mut input = raw;
    let word = |input: &mut &[u8]| some(take(input, 4).and_then(|bytes| bytes.try_into().ok()).map(i32::from_be_bytes));
    let dimensions = some(usize::try_from(word(&mut input)?).ok())?;
    some(take(&mut input, 8))?; // the has-null flag and the element type
    let mut lengths = Vec::with_capacity(dimensions.min(raw.len()));
    for _ in 0..dimensions {
        lengths.push(some(usize::try_from(word(&mut input)?).ok())?);
        some(take(&mut input, 4))?; // the lower bound
    }
    // PostgreSQL writes an empty array with no dimensions; an element takes 4 bytes at least.
    let count = some(lengths.iter().try_fold(1usize, |total, length| total.checked_mul(*length)))?;
    if dimensions > 0 && (count == 0 || count > raw.len() / 4) {
        return Err(Unwritten::Undecodable);
    }
    encode_nested(element, if dimensions == 0 { &[] } else { &lengths }, &mut input, out, limit)?;
    if input.is_empty() { Ok(()) } else { Err(Unwritten::Undecodable) }
}

/// An anonymous record in binary format (a count, then each field's type, length and value),
/// written as a JSON array of its fields. A field of a type without a decoder here makes the
/// whole record undecodable.
pub(super) fn encode_record(raw: &[u8], out: &mut String, limit: usize) -> Result<(), Unwritten> {
    let mut input = raw;
    let word = |input: &mut &[u8]| some(take(input, 4).and_then(|bytes| bytes.try_into().ok()).map(i32::from_be_bytes));
    let count = some(usize::try_from(word(&mut input)?).ok())?;
    out.push('[');
    for index in 0..count {
        if out.len() > limit {
            return Err(Unwritten::TooLarge);
        }
        if index > 0 {
            out.push(',');
        }
        let ty = some(Type::from_oid(word(&mut input)?.cast_unsigned()))?;
        match usize::try_from(word(&mut input)?) {
            Ok(length) => encode(&ty, some(take(&mut input, length))?, out, limit)?,
            Err(_) => json::text::null(out),
        }
    }
    out.push(']');
    if input.is_empty() { Ok(()) } else { Err(Unwritten::Undecodable) }
}

/// One level of an array: `lengths[0]` items, each an element or a level further down.
pub(super) fn encode_nested(
    element: &Type,
    lengths: &[usize],
    input: &mut &[u8],
    out: &mut String,
    limit: usize,
) -> Result<(), Unwritten> {
    out.push('[');
    if let Some((length, inner)) = lengths.split_first() {
        for index in 0..*length {
            if out.len() > limit {
                return Err(Unwritten::TooLarge);
            }
            if index > 0 {
                out.push(',');
            }
            if inner.is_empty() {
                let length = i32::from_be_bytes(some(take(input, 4).and_then(|bytes| bytes.try_into().ok()))?);
                match usize::try_from(length) {
                    Ok(length) => encode(element, some(take(input, length))?, out, limit)?,
                    Err(_) => json::text::null(out),
                }
            } else {
                encode_nested(element, inner, input, out, limit)?;
            }
        }
    }
    out.push(']');
    Ok(())
}

/// The next `n` bytes of `input`.
pub(super) fn take<'r>(input: &mut &'r [u8], n: usize) -> Option<&'r [u8]> {
    let (head, rest) = input.split_at_checked(n)?;
    *input = rest;
    Some(head)
}

/// A numeric in binary format: base-10000 digits with a weight, a sign and a display scale,
/// written out digit for digit.
pub(super) fn numeric(raw: &[u8], out: &mut String) -> Option<()> {
    let word = |at: usize| raw.get(at..at + 2).map(|bytes| u16::from_be_bytes([bytes[0], bytes[1]]));
    let count = usize::from(word(0)?);
    let weight = i64::from(word(2)? as i16);
    let sign = word(4)?;
    let scale = usize::from(word(6)?);
    if raw.len() < 8 + 2 * count {
        return None;
    }
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => {
            out.push_str("NaN");
            return Some(());
        }
        0xD000 => {
            out.push_str("Infinity");
            return Some(());
        }
        0xF000 => {
            out.push_str("-Infinity");
            return Some(());
        }
        _ => return None,
    }
    // Base-10000 digits; those past the stored ones are zeros.
    let digit = |index: i64| {
        usize::try_from(index)
            .ok()
            .filter(|index| *index < count)
            .and_then(|index| word(8 + 2 * index))
            .map_or(0, u64::from)
    };
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        json::push_padded(out, digit(0), 1);
        for index in 1..=weight {
            json::push_padded(out, digit(index), 4);
        }
    }
    if scale > 0 {
        out.push('.');
        let start = out.len();
        let mut index = weight + 1;
        while out.len() - start < scale {
            json::push_padded(out, digit(index), 4);
            index += 1;
        }
        out.truncate(start + scale);
    }
    Some(())
}

/// A parameter sent in text format, for the server to parse into the type it needs.
#[derive(Debug)]
pub(super) struct Param<'a>(pub(super) &'a SqlValue);

impl ToSql for Param<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self.0 {
            SqlValue::Null => return Ok(IsNull::Yes),
            SqlValue::Bool(value) => out.extend_from_slice(if *value { b"t" } else { b"f" }),
            SqlValue::Int(value) => out.extend_from_slice(itoa::Buffer::new().format(*value).as_bytes()),
            SqlValue::Float(value) => {
                let text = if value.is_nan() {
                    "NaN".to_owned()
                } else if value.is_infinite() {
                    if *value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
                } else {
                    format!("{value:?}")
                };
                out.extend_from_slice(text.as_bytes());
            }
            SqlValue::Text(value) => out.extend_from_slice(value.as_bytes()),
            SqlValue::Bytes(value) => {
                out.extend_from_slice(b"\\x");
                out.extend_from_slice(hex::encode(value).as_bytes());
            }
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> tokio_postgres::types::Format {
        tokio_postgres::types::Format::Text
    }

    to_sql_checked!();
}

/// A value's bytes exactly as the server sent them, in binary format.
#[derive(Debug)]
pub(super) struct RawParam<'a>(pub(super) &'a [u8]);

impl ToSql for RawParam<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.extend_from_slice(self.0);
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Any value, undecoded.
pub(super) struct Raw<'a>(pub(super) Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}
