//! Tool names: what MCP accepts as one, and so what a grant or a registry can name.

use std::fmt;

use thiserror::Error;

/// The longest tool name accepted (the MCP limit).
pub const MAX_TOOL_NAME_LEN: usize = 128;

/// A tool name: 1 to 128 characters of `A-Z a-z 0-9 _ - .`, as MCP requires.
///
/// `*` is not a valid name, so no grant can be a wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ToolName(Box<str>);

/// Why a tool name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("tool name must be 1 to {MAX_TOOL_NAME_LEN} characters of A-Z, a-z, 0-9, '_', '-' or '.'")]
pub struct ToolNameError;

impl ToolName {
    /// Validates a tool name.
    pub fn new(name: &str) -> Result<Self, ToolNameError> {
        let valid = !name.is_empty()
            && name.len() <= MAX_TOOL_NAME_LEN
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if valid { Ok(ToolName(name.into())) } else { Err(ToolNameError) }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_follow_the_mcp_alphabet() {
        for ok in ["query_read", "a", "x.y-z_1", &"n".repeat(MAX_TOOL_NAME_LEN)] {
            assert!(ToolName::new(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", "*", "a b", "tool*", "é", "a/b", &"n".repeat(MAX_TOOL_NAME_LEN + 1)] {
            assert_eq!(ToolName::new(bad), Err(ToolNameError), "{bad:?}");
        }
    }
}
