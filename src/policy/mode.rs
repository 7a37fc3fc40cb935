//! The server mode and the access class each tool declares.

use serde::Serialize;

/// What a tool can do to the database, as declared by its type (see [`crate::tools::Tool`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// The tool only reads.
    Read,
    /// The tool may change data.
    Write,
}

/// The server mode. Read-only is the default: write tools are refused before authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Only read tools may run.
    #[default]
    ReadOnly,
    /// Read and write tools may run (each still needs its grant).
    ReadWrite,
}

impl Mode {
    /// Whether a tool of this access class may run in this mode.
    pub fn allows(self, access: Access) -> bool {
        match (self, access) {
            (_, Access::Read) => true,
            (Mode::ReadWrite, Access::Write) => true,
            (Mode::ReadOnly, Access::Write) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_is_the_default_and_stops_only_writes() {
        assert_eq!(Mode::default(), Mode::ReadOnly);
        assert!(Mode::ReadOnly.allows(Access::Read));
        assert!(!Mode::ReadOnly.allows(Access::Write));
        assert!(Mode::ReadWrite.allows(Access::Read));
        assert!(Mode::ReadWrite.allows(Access::Write));
    }
}
