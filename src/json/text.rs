//! JSON text written straight into a buffer, without building a [`Value`] first: for each
//! value, the same text `serde_json` writes for the `Value` the [test oracles](super::oracle) make. A
//! result's rows are written this way as they arrive.

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
            let [high, low] = hex_digits(*byte);
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
        let word = u64::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7]]);
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
            let [high, low] = hex_digits(*byte);
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

/// A control character's two hexadecimal digits, for its `\u00XX` escape.
fn hex_digits(byte: u8) -> [u8; 2] {
    let mut digits = [b'0'; 2];
    // Two digits for one byte: the buffer is exactly the length `hex` needs.
    let _ = hex::encode_to_slice([byte], &mut digits);
    digits
}
