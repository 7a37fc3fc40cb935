//! What a format string, a JSON text or a literal can make: widths and precisions, the widest
//! character, nesting.

use super::*;

/// The widest character of `text`, in bytes (1 for an empty one).
pub(super) fn widest_char(text: &str) -> f64 {
    text.chars().map(char::len_utf8).max().unwrap_or(1) as f64
}

/// How deeply brackets nest in JSON text.
pub(super) fn nesting(json: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for byte in json.bytes() {
        match byte {
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// What a conversion in a format string takes.
#[derive(Debug, PartialEq)]
pub(super) enum Width {
    /// A width or precision written in the format.
    Fixed(u64),
    /// `*`: the next argument.
    FromArgument,
    /// The value the conversion prints: the next argument.
    Value,
}

/// The widths, precisions and values of a format string's conversions, in the order they take
/// their arguments. `%%` takes none.
pub(super) fn format_widths(format: &str, precision: bool) -> Vec<Width> {
    let bytes = format.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] != b'%' {
            at += 1;
            continue;
        }
        at += 1;
        if bytes.get(at) == Some(&b'%') {
            at += 1;
            continue;
        }
        // An argument position (`%2$s`), flags.
        let start = at;
        while bytes.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if bytes.get(at) != Some(&b'$') {
            at = start;
        } else {
            at += 1;
        }
        while bytes.get(at).is_some_and(|byte| b"-+ #0!,".contains(byte)) {
            at += 1;
        }
        let number = |at: &mut usize| {
            let start = *at;
            while bytes.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            format[start..*at].parse::<u64>().unwrap_or(u64::MAX)
        };
        if bytes.get(at) == Some(&b'*') {
            at += 1;
            // `*n$` names its argument; it is still a width from an argument.
            let _ = number(&mut at);
            if bytes.get(at) == Some(&b'$') {
                at += 1;
            }
            found.push(Width::FromArgument);
        } else if bytes.get(at).is_some_and(u8::is_ascii_digit) {
            found.push(Width::Fixed(number(&mut at)));
        }
        if precision && bytes.get(at) == Some(&b'.') {
            at += 1;
            if bytes.get(at) == Some(&b'*') {
                at += 1;
                found.push(Width::FromArgument);
            } else {
                found.push(Width::Fixed(number(&mut at)));
            }
        }
        // Length modifiers, then the conversion itself, which prints a value.
        while bytes.get(at).is_some_and(|byte| b"hlLqjzt".contains(byte)) {
            at += 1;
        }
        if at < bytes.len() {
            found.push(Width::Value);
            at += 1;
        }
    }
    found
}

/// The text of a string literal.
pub(super) fn string_of(value: &Value) -> Option<&str> {
    match value {
        Value::SingleQuotedString(text)
        | Value::EscapedStringLiteral(text)
        | Value::UnicodeStringLiteral(text)
        | Value::NationalStringLiteral(text)
        | Value::TripleSingleQuotedString(text)
        | Value::TripleDoubleQuotedString(text) => Some(text),
        Value::DollarQuotedString(dollar) => Some(&dollar.value),
        _ => None,
    }
}
