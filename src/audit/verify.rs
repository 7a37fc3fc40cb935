//! `sqlwarden audit verify`: walks the chain of one or more audit files, in order, and reports
//! the first place where it breaks, by file and line.

use std::fmt;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use super::chain::{ChainKey, GENESIS, digest};

/// What an intact chain held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records in the chain, control records included.
    pub records: u64,
    /// How many times the chain was opened (server starts, and rotations).
    pub opened: u64,
}

/// Where and how a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The file.
    pub file: PathBuf,
    /// The line, from 1.
    pub line: u64,
    /// What is wrong there.
    pub reason: String,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: line {}: {}", self.file.display(), self.line, self.reason)
    }
}

/// Verifies the chain through `files`, in the order given (a rotated file before the one that
/// followed it), with `key` if the chain was written with one.
///
/// It breaks at: a line that is not a sealed record or does not end in a newline (edited, or a
/// write cut short); a hash that does not match the line (edited, or another key); a sequence
/// number or a `prev` that does not follow the line before (a line deleted, inserted or moved);
/// a chain opened again without having been closed (the server crashed, or lines were cut
/// before a restart); and a chain whose last record is not a close (the server is still
/// running, stopped without closing, or its last lines were cut).
pub fn verify(files: &[impl AsRef<Path>], key: Option<&ChainKey>) -> Result<Verified, Break> {
    let mut walk = Walk::default();
    for file in files {
        let file = file.as_ref();
        let broken = |line: u64, reason: String| Break { file: file.to_owned(), line, reason };
        let reader = std::fs::File::open(file).map_err(|error| broken(0, format!("cannot be read: {error}")))?;
        let mut reader = io::BufReader::new(reader);
        let mut line = Vec::new();
        let mut number = 0;
        loop {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).map_err(|error| broken(number + 1, error.to_string()))?;
            if read == 0 {
                break;
            }
            number += 1;
            walk.step(&line, key).map_err(|reason| broken(number, reason))?;
        }
        walk.last = Some((file.to_owned(), number));
    }
    match (&walk.last_kind, &walk.last) {
        (Kind::Close, _) => Ok(Verified { records: walk.records, opened: walk.opened }),
        (_, Some((file, line))) => Err(Break {
            file: file.clone(),
            line: *line,
            reason: "the chain ends here without a close record: the server is still running, stopped without \
                     closing it, or the lines after this one were cut"
                .into(),
        }),
        (_, None) => Err(Break { file: PathBuf::new(), line: 0, reason: "no file to verify".into() }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Kind {
    #[default]
    None,
    Open,
    Close,
    Record,
}

/// The chain as read so far.
#[derive(Default)]
struct Walk {
    /// The next sequence number and the last hash; `None` before the first line.
    expected: Option<(u64, [u8; 32])>,
    last_kind: Kind,
    records: u64,
    opened: u64,
    last: Option<(PathBuf, u64)>,
}

/// The members of a sealed line the chain needs.
#[derive(serde::Deserialize)]
struct Sealed<'a> {
    seq: u64,
    #[serde(borrow)]
    prev: &'a str,
    #[serde(default, borrow)]
    audit: Option<&'a str>,
}

impl Walk {
    fn step(&mut self, line: &[u8], key: Option<&ChainKey>) -> Result<(), String> {
        let Some(line) = line.strip_suffix(b"\n") else {
            return Err("the line is cut short (no newline): a write was cut, or the file's tail was cut".into());
        };
        const HASH: &[u8] = b",\"hash\":\"";
        let not_sealed = || "not a sealed audit record (edited, inserted, or written without a chain)".to_owned();
        // `,"hash":"` + 64 hex digits + `"}` closes every sealed line.
        let Some(at) = line.len().checked_sub(HASH.len() + 64 + 2) else { return Err(not_sealed()) };
        if &line[at..at + HASH.len()] != HASH || !line.ends_with(b"\"}") {
            return Err(not_sealed());
        }
        let (body, written) = (&line[..at], &line[at + HASH.len()..at + HASH.len() + 64]);
        let mut closed = body.to_vec();
        closed.push(b'}');
        let sealed: Sealed<'_> = serde_json::from_slice(&closed).map_err(|_| not_sealed())?;
        let mut hash = [0u8; 32];
        hex::decode_to_slice(written, &mut hash).map_err(|_| not_sealed())?;
        if digest(key, &[&closed]) != hash {
            return Err(match key {
                Some(_) => "its hash does not match its content: the line was edited, or written under another key",
                None => "its hash does not match its content: the line was edited (or the chain has a key: pass it)",
            }
            .into());
        }
        let mut prev = [0u8; 32];
        hex::decode_to_slice(sealed.prev, &mut prev).map_err(|_| not_sealed())?;
        let kind = match sealed.audit {
            Some("open") => Kind::Open,
            Some("close") => Kind::Close,
            Some(_) => return Err(not_sealed()),
            None => Kind::Record,
        };
        match self.expected {
            // The first line read: a chain's start, or (a later file given alone) wherever it is.
            None if kind != Kind::Open => return Err("the chain does not start with an open record".into()),
            None => {}
            Some((seq, _)) if sealed.seq != seq => {
                return Err(format!(
                    "sequence number {} where {seq} was expected: a line before it was deleted, or lines were \
                     inserted or moved",
                    sealed.seq
                ));
            }
            Some((_, last)) if prev != last => {
                return Err("it does not follow the line before it: a line was deleted, inserted or moved".into());
            }
            Some(_) => {}
        }
        if kind == Kind::Open && self.expected.is_some() && self.last_kind != Kind::Close {
            return Err("the chain is opened again without having been closed: the server stopped without closing \
                        it (a crash), or lines before this one were cut"
                .into());
        }
        if kind != Kind::Open && self.last_kind == Kind::Close {
            return Err("a record after the chain was closed: it was inserted".into());
        }
        if self.expected.is_none() && sealed.seq == 0 && prev != GENESIS {
            return Err("the chain's first record does not start from nothing".into());
        }
        self.expected = Some((sealed.seq + 1, hash));
        self.last_kind = kind;
        self.records += 1;
        self.opened += u64::from(kind == Kind::Open);
        Ok(())
    }
}
