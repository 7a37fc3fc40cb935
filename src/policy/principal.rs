//! The one rule for identity and tenant strings, shared by sessions and grants so that a grant
//! can only ever name a principal that a session could hold.

use thiserror::Error;

/// The longest identity or tenant accepted, in bytes.
pub const MAX_PRINCIPAL_LEN: usize = 256;

/// Why an identity or tenant string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PrincipalError {
    /// The value is the empty string.
    #[error("is empty")]
    Empty,
    /// The value holds nothing but white space.
    #[error("is only white space")]
    Blank,
    /// The value starts or ends with white space (a likely typo, refused rather than trimmed).
    #[error("starts or ends with white space")]
    SurroundingWhitespace,
    /// The value is longer than [`MAX_PRINCIPAL_LEN`] bytes.
    #[error("is longer than {MAX_PRINCIPAL_LEN} bytes")]
    TooLong,
    /// The value holds a control, bidirectional-override or zero-width character, which could
    /// forge or hide text in audit records.
    #[error("contains a control or invisible character")]
    ControlCharacter,
}

/// Checks an identity or tenant string.
pub(crate) fn check(value: &str) -> Result<(), PrincipalError> {
    if value.is_empty() {
        return Err(PrincipalError::Empty);
    }
    if value.len() > MAX_PRINCIPAL_LEN {
        return Err(PrincipalError::TooLong);
    }
    if value.chars().any(is_hidden) {
        return Err(PrincipalError::ControlCharacter);
    }
    if value.trim().is_empty() {
        return Err(PrincipalError::Blank);
    }
    if value.trim() != value {
        return Err(PrincipalError::SurroundingWhitespace);
    }
    Ok(())
}

fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_principals() {
        for ok in ["alice", "analyst@example.com", "ACME Corp", "é", &"a".repeat(MAX_PRINCIPAL_LEN)] {
            assert_eq!(check(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn refuses_each_bad_shape_with_its_reason() {
        let long = "a".repeat(MAX_PRINCIPAL_LEN + 1);
        let cases = [
            ("", PrincipalError::Empty),
            ("   ", PrincipalError::Blank),
            ("\u{3000}", PrincipalError::Blank),
            (" alice", PrincipalError::SurroundingWhitespace),
            ("alice ", PrincipalError::SurroundingWhitespace),
            (long.as_str(), PrincipalError::TooLong),
            ("al\nice", PrincipalError::ControlCharacter),
            ("alice\0", PrincipalError::ControlCharacter),
            ("\t", PrincipalError::ControlCharacter),
            ("al\u{7f}", PrincipalError::ControlCharacter),
            ("admin\u{202E}", PrincipalError::ControlCharacter),
            ("ad\u{200B}min", PrincipalError::ControlCharacter),
            ("\u{FEFF}admin", PrincipalError::ControlCharacter),
        ];
        for (value, want) in cases {
            assert_eq!(check(value), Err(want), "{value:?}");
        }
    }
}
