//! Values in and out: parameters bound as the binary protocol's values, and values written as
//! JSON text as each row arrives (see [`crate::json`]).

use super::*;

pub(super) fn to_params(params: &[SqlValue]) -> mysql_async::Params {
    if params.is_empty() {
        return mysql_async::Params::Empty;
    }
    mysql_async::Params::Positional(
        params
            .iter()
            .map(|param| match param {
                SqlValue::Null => MyValue::NULL,
                SqlValue::Bool(value) => MyValue::Int(i64::from(*value)),
                SqlValue::Int(value) => MyValue::Int(*value),
                SqlValue::Float(value) => MyValue::Double(*value),
                SqlValue::Text(value) => MyValue::Bytes(value.clone().into_bytes()),
                SqlValue::Bytes(value) => MyValue::Bytes(value.clone()),
            })
            .collect(),
    )
}

/// The binary character set: bytes, not text.
pub(super) const BINARY: u16 = 63;

/// One value as a JSON value, for the few rows a write returns.
pub(super) fn decode(column: &mysql_async::Column, value: &MyValue) -> Value {
    let mut text = String::new();
    match write_value(column, value, &mut text, usize::MAX) {
        Ok(()) => serde_json::from_str(&text).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// Writes one value as JSON text, unless it would take `out` past `limit` bytes.
pub(super) fn write_value(
    column: &mysql_async::Column,
    value: &MyValue,
    out: &mut String,
    limit: usize,
) -> Result<(), json::text::TooLarge> {
    use json::text;
    let kind = column.column_type();
    match value {
        MyValue::NULL => text::null(out),
        MyValue::Int(value) => text::int(out, *value),
        MyValue::UInt(value) => text::uint(out, *value),
        MyValue::Float(value) => text::float(out, f64::from(*value)),
        MyValue::Double(value) => text::float(out, *value),
        // Digits and separators only: nothing to escape.
        MyValue::Date(year, month, day, hour, minute, second, micros) => text::quoted_with(out, |out| {
            let date = json::Date { year: i64::from(*year), month: u32::from(*month), day: u32::from(*day) };
            let time = (kind != ColumnType::MYSQL_TYPE_DATE).then(|| json::Clock {
                hours: u64::from(*hour),
                minutes: u64::from(*minute),
                seconds: u64::from(*second),
                micros: u64::from(*micros),
            });
            // Sessions run in UTC.
            let utc = matches!(kind, ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIMESTAMP2);
            json::write_date_time(out, date, time, utc && time.is_some(), json::Years::Plain);
        }),
        MyValue::Time(negative, days, hours, minutes, seconds, micros) => text::quoted_with(out, |out| {
            if *negative {
                out.push('-');
            }
            let hours = u64::from(*days) * 24 + u64::from(*hours);
            let time = json::Clock {
                hours,
                minutes: u64::from(*minutes),
                seconds: u64::from(*seconds),
                micros: u64::from(*micros),
            };
            json::write_clock(out, time);
        }),
        MyValue::Bytes(bytes) => {
            return match kind {
                ColumnType::MYSQL_TYPE_JSON => {
                    text::json_within(out, bytes, limit).unwrap_or_else(|| text::lossy_within(out, bytes, limit))
                }
                ColumnType::MYSQL_TYPE_BIT => {
                    text::uint(out, bytes.iter().fold(0u64, |total, byte| total.wrapping_shl(8) | u64::from(*byte)));
                    Ok(())
                }
                ColumnType::MYSQL_TYPE_GEOMETRY => text::base64_within(out, bytes, limit),
                // Digits, as the server wrote them, whatever the character set: a decimal from an
                // expression, an aggregate or a literal is marked binary, and is no less a number.
                ColumnType::MYSQL_TYPE_NEWDECIMAL | ColumnType::MYSQL_TYPE_DECIMAL => {
                    text::lossy_within(out, bytes, limit)
                }
                _ if column.character_set() == BINARY && column.flags().contains(ColumnFlags::BINARY_FLAG) => {
                    text::base64_within(out, bytes, limit)
                }
                _ => text::lossy_within(out, bytes, limit),
            };
        }
    }
    Ok(())
}

/// For a column whose values can be long and are written as they are (text, or bytes as
/// base64), which of the two: such a value is written a piece at a time. JSON is checked
/// whole, and bits are a number.
pub(super) fn long_kind(column: &mysql_async::Column) -> Option<bool> {
    match column.column_type() {
        ColumnType::MYSQL_TYPE_JSON | ColumnType::MYSQL_TYPE_BIT => None,
        ColumnType::MYSQL_TYPE_GEOMETRY => Some(true),
        ColumnType::MYSQL_TYPE_NEWDECIMAL | ColumnType::MYSQL_TYPE_DECIMAL => Some(false),
        _ => Some(column.character_set() == BINARY && column.flags().contains(ColumnFlags::BINARY_FLAG)),
    }
}

pub(super) fn type_name(column: &mysql_async::Column) -> &'static str {
    let binary = column.character_set() == BINARY;
    match column.column_type() {
        ColumnType::MYSQL_TYPE_TINY => "tinyint",
        ColumnType::MYSQL_TYPE_SHORT => "smallint",
        ColumnType::MYSQL_TYPE_INT24 => "mediumint",
        ColumnType::MYSQL_TYPE_LONG => "int",
        ColumnType::MYSQL_TYPE_LONGLONG => "bigint",
        ColumnType::MYSQL_TYPE_FLOAT => "float",
        ColumnType::MYSQL_TYPE_DOUBLE => "double",
        ColumnType::MYSQL_TYPE_NEWDECIMAL | ColumnType::MYSQL_TYPE_DECIMAL => "decimal",
        ColumnType::MYSQL_TYPE_DATE => "date",
        ColumnType::MYSQL_TYPE_TIME | ColumnType::MYSQL_TYPE_TIME2 => "time",
        ColumnType::MYSQL_TYPE_DATETIME | ColumnType::MYSQL_TYPE_DATETIME2 => "datetime",
        ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIMESTAMP2 => "timestamp",
        ColumnType::MYSQL_TYPE_YEAR => "year",
        ColumnType::MYSQL_TYPE_JSON => "json",
        ColumnType::MYSQL_TYPE_BIT => "bit",
        ColumnType::MYSQL_TYPE_ENUM => "enum",
        ColumnType::MYSQL_TYPE_SET => "set",
        ColumnType::MYSQL_TYPE_GEOMETRY => "geometry",
        ColumnType::MYSQL_TYPE_NULL => "null",
        ColumnType::MYSQL_TYPE_TINY_BLOB
        | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
        | ColumnType::MYSQL_TYPE_LONG_BLOB
        | ColumnType::MYSQL_TYPE_BLOB => {
            if binary {
                "blob"
            } else {
                "text"
            }
        }
        ColumnType::MYSQL_TYPE_VAR_STRING | ColumnType::MYSQL_TYPE_VARCHAR => {
            if binary {
                "varbinary"
            } else {
                "varchar"
            }
        }
        ColumnType::MYSQL_TYPE_STRING => {
            if binary {
                "binary"
            } else {
                "char"
            }
        }
        _ => "unknown",
    }
}
