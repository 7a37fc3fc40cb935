//! The hash chain that makes an audit file checkable: each line carries `seq`, its place in the
//! chain, `prev`, the hash of the line before it, and `hash`, its own.
//!
//! A line's `hash` is the SHA-256 (with a key: the HMAC-SHA-256) of the line as written, up to
//! and without `,"hash":"…"`, closed with `}`: the record's JSON without its hash. The first
//! line of a chain has `seq` 0 and a `prev` of 64 zeros. A chain opens with a record
//! `{"audit":"open"}` and a server that stops cleanly closes it with `{"audit":"close"}`; a
//! server that starts on a file already holding a chain continues it (its `open` follows the
//! last line), so that a cut tail or a crash shows as an `open` that does not follow a `close`.
//! `sqlwarden audit verify` checks all of it ([`verify`](super::verify)).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The `prev` of a chain's first line.
pub(crate) const GENESIS: [u8; 32] = [0; 32];

/// Where a chain stands: the next line's sequence number, and the last line's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) seq: u64,
    pub(crate) prev: [u8; 32],
}

impl Position {
    /// A new chain.
    pub(crate) const START: Position = Position { seq: 0, prev: GENESIS };
}

/// A key for the chain's hashes: whoever can edit the file cannot make hashes that verify
/// without it.
#[derive(Clone)]
pub struct ChainKey(Vec<u8>);

impl ChainKey {
    /// The shortest key taken, in bytes.
    pub const MIN_BYTES: usize = 32;

    /// A key of at least [`ChainKey::MIN_BYTES`] bytes.
    pub fn new(key: impl Into<Vec<u8>>) -> Option<ChainKey> {
        let key = key.into();
        (key.len() >= Self::MIN_BYTES).then_some(ChainKey(key))
    }
}

/// Shows that there is a key, never the key.
impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(..)")
    }
}

/// The hash of a record's JSON without its hash: SHA-256, or HMAC-SHA-256 under `key`.
pub(crate) fn digest(key: Option<&ChainKey>, parts: &[&[u8]]) -> [u8; 32] {
    match key {
        None => {
            let mut hasher = Sha256::new();
            for part in parts {
                hasher.update(part);
            }
            hasher.finalize().into()
        }
        Some(ChainKey(key)) => {
            // HMAC takes a key of any length.
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { return GENESIS };
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().into()
        }
    }
}

/// Seals `lines` (JSON objects, one per line, each ending in `}\n`) from `position`: each gets
/// its `seq`, `prev` and `hash`. Returns where the chain stands after them.
pub(crate) fn seal(lines: &mut Vec<u8>, position: Position, key: Option<&ChainKey>) -> Position {
    let mut sealed = Vec::with_capacity(lines.len() + lines.len() / 2 + 200);
    let mut position = position;
    let mut hex = [0u8; 64];
    for line in lines.split_inclusive(|byte| *byte == b'\n') {
        // Every line is written here, by this module's callers, as one object and a newline.
        let Some(body) = line.strip_suffix(b"}\n") else {
            sealed.extend_from_slice(line);
            continue;
        };
        let start = sealed.len();
        sealed.extend_from_slice(body);
        sealed.extend_from_slice(b",\"seq\":");
        sealed.extend_from_slice(itoa::Buffer::new().format(position.seq).as_bytes());
        sealed.extend_from_slice(b",\"prev\":\"");
        let _ = hex::encode_to_slice(position.prev, &mut hex);
        sealed.extend_from_slice(&hex);
        sealed.push(b'"');
        let hash = digest(key, &[&sealed[start..], b"}"]);
        sealed.extend_from_slice(b",\"hash\":\"");
        let _ = hex::encode_to_slice(hash, &mut hex);
        sealed.extend_from_slice(&hex);
        sealed.extend_from_slice(b"\"}\n");
        position = Position { seq: position.seq + 1, prev: hash };
    }
    *lines = sealed;
    position
}

/// Where the chain in an audit file stands at its end, to continue it; [`Position::START`]
/// for an empty file or one whose last line holds no chain. Also whether the file ends inside
/// a line (a write cut short), which the next line must not be appended to.
pub(crate) fn resume(file: &mut File) -> io::Result<(Position, bool)> {
    let length = file.metadata()?.len();
    if length == 0 {
        return Ok((Position::START, false));
    }
    // The tail read grows until it holds the last complete line whole (a line can be long:
    // a query may name many tables).
    let mut tail_bytes: u64 = 64 << 10;
    loop {
        let from = length.saturating_sub(tail_bytes);
        file.seek(SeekFrom::Start(from))?;
        let mut tail = Vec::with_capacity((length - from) as usize);
        file.read_to_end(&mut tail)?;
        let torn = tail.last() != Some(&b'\n');
        let Some(end) = tail.iter().rposition(|byte| *byte == b'\n') else {
            if from == 0 {
                file.seek(SeekFrom::End(0))?;
                return Ok((Position::START, torn));
            }
            tail_bytes = tail_bytes.saturating_mul(4);
            continue;
        };
        let complete = &tail[..end];
        match complete.iter().rposition(|byte| *byte == b'\n') {
            // The line before it began inside the tail, or the tail is the whole file.
            Some(start) => {
                let position = position_after(&complete[start + 1..]);
                file.seek(SeekFrom::End(0))?;
                return Ok((position.unwrap_or(Position::START), torn));
            }
            None if from == 0 => {
                let position = position_after(complete);
                file.seek(SeekFrom::End(0))?;
                return Ok((position.unwrap_or(Position::START), torn));
            }
            None => tail_bytes = tail_bytes.saturating_mul(4),
        }
    }
}

/// Where the chain stands after `line`: its `seq` + 1 and its `hash`.
fn position_after(line: &[u8]) -> Option<Position> {
    #[derive(serde::Deserialize)]
    struct Sealed<'a> {
        seq: u64,
        #[serde(borrow)]
        hash: &'a str,
    }
    let sealed: Sealed<'_> = serde_json::from_slice(line).ok()?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(sealed.hash, &mut hash).ok()?;
    Some(Position { seq: sealed.seq.checked_add(1)?, prev: hash })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_gets_its_place_the_hash_before_it_and_its_own() {
        let mut lines = b"{\"a\":1}\n{\"b\":\"}\\n\"}\n".to_vec();
        let after = seal(&mut lines, Position::START, None);
        let text = String::from_utf8(lines.clone()).expect("utf-8");
        let records: Vec<serde_json::Value> =
            text.lines().map(|line| serde_json::from_str(line).expect("each line is JSON")).collect();
        assert_eq!(records.len(), 2);
        assert_eq!((records[0]["seq"].clone(), records[1]["seq"].clone()), (0.into(), 1.into()));
        assert_eq!(records[0]["prev"], "0".repeat(64));
        assert_eq!(records[1]["prev"], records[0]["hash"]);
        assert_eq!(records[1]["b"], "}\n", "the content is kept");
        // The hash covers the line as written, without the hash.
        let first = text.lines().next().expect("a line");
        let without = &first[..first.find(",\"hash\"").expect("a hash")];
        assert_eq!(records[0]["hash"], hex::encode(Sha256::digest(format!("{without}}}"))));
        assert_eq!(after.seq, 2);
        assert_eq!(hex::encode(after.prev), records[1]["hash"].as_str().expect("hex"));
    }

    #[test]
    fn a_key_changes_every_hash_and_is_never_shown() {
        let key = ChainKey::new(vec![7u8; 32]).expect("long enough");
        let (mut plain, mut keyed) = (b"{\"a\":1}\n".to_vec(), b"{\"a\":1}\n".to_vec());
        seal(&mut plain, Position::START, None);
        seal(&mut keyed, Position::START, Some(&key));
        assert_ne!(plain, keyed);
        assert_eq!(format!("{key:?}"), "ChainKey(..)");
        assert!(ChainKey::new(vec![7u8; 31]).is_none(), "a short key is refused");
    }

    #[test]
    fn a_file_is_resumed_from_its_last_complete_line() {
        let dir = std::env::temp_dir().join(format!("sqlwarden-chain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("audit.jsonl");
        let mut lines = b"{\"a\":1}\n{\"a\":2}\n".to_vec();
        let after = seal(&mut lines, Position::START, None);
        std::fs::write(&path, &lines).expect("written");
        let mut file = std::fs::OpenOptions::new().read(true).append(true).open(&path).expect("opens");
        assert_eq!(resume(&mut file).expect("reads"), (after, false));
        let sealed_two = lines.clone();
        // A write cut short: the chain resumes from the line before it, and says so.
        lines.extend_from_slice(b"{\"a\":3,\"se");
        std::fs::write(&path, &lines).expect("written");
        let mut file = std::fs::OpenOptions::new().read(true).append(true).open(&path).expect("opens");
        assert_eq!(resume(&mut file).expect("reads"), (after, true));
        // A last line longer than the first read of the tail.
        let mut long = format!("{{\"pad\":\"{}\"}}\n", "x".repeat(200 << 10)).into_bytes();
        let after_long = seal(&mut long, after, None);
        let mut both = sealed_two;
        both.extend_from_slice(&long);
        std::fs::write(&path, &both).expect("written");
        let mut file = std::fs::OpenOptions::new().read(true).append(true).open(&path).expect("opens");
        assert_eq!(resume(&mut file).expect("reads"), (after_long, false));
        std::fs::write(&path, b"").expect("emptied");
        let mut file = std::fs::OpenOptions::new().read(true).append(true).open(&path).expect("opens");
        assert_eq!(resume(&mut file).expect("reads"), (Position::START, false));
        let _ = std::fs::remove_dir_all(dir);
    }
}
