//! The audit file's hash chain: what the writer leaves verifies, across restarts and under
//! concurrent calls; any one line deleted, edited, moved or inserted, or a tail cut, breaks it
//! at that line; with a key, a chain made again without it does not verify.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sqlwarden::audit::{AuditBatch, AuditDecision, AuditRecord, AuditSink, AuditWriter, ChainKey, Stage, verify};

/// A temporary directory, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).expect("random");
        let path = std::env::temp_dir().join(format!("sqlwarden-{name}-{}", hex::encode(random)));
        std::fs::create_dir_all(&path).expect("dir");
        Dir(path)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn record(stage: Stage) -> AuditRecord {
    AuditRecord {
        timestamp: SystemTime::now(),
        stage,
        decision: AuditDecision::Allow,
        code: None,
        duration: Duration::from_micros(3),
        rows_affected: None,
    }
}

/// A server's life on `path`: `calls` calls of two records each, then (if `close`) a clean stop.
fn serve(path: &Path, key: Option<ChainKey>, calls: usize, close: bool) {
    let mut writer = AuditWriter::append_to(path, Duration::from_secs(5)).expect("opens");
    if let Some(key) = key {
        writer = writer.with_key(key);
    }
    let records = [record(Stage::Resolve), record(Stage::Execute)];
    for _ in 0..calls {
        writer
            .record(&AuditBatch { session: None, tool: "query_read", records: &records, read: None, origin: None })
            .expect("written");
    }
    if close {
        writer.close(Duration::from_secs(5)).expect("closed");
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).expect("readable").lines().map(|line| format!("{line}\n")).collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.concat()).expect("written");
}

fn key() -> ChainKey {
    ChainKey::new(b"an audit key of at least 32 bytes!".to_vec()).expect("long enough")
}

#[test]
fn a_file_untouched_since_it_was_written_verifies_across_restarts() {
    let dir = Dir::new("chain-ok");
    let path = dir.file("audit.jsonl");
    serve(&path, None, 3, true);
    serve(&path, None, 2, true);
    // A server that made no call still opens and closes the chain.
    serve(&path, None, 0, true);
    let verified = verify(&[&path], None).expect("intact");
    assert_eq!((verified.records, verified.opened), (3 * 2 + 2 * 2 + 3 * 2, 3));
}

#[test]
fn any_one_line_deleted_edited_moved_or_inserted_breaks_the_chain_at_that_line() {
    let dir = Dir::new("chain-tamper");
    let path = dir.file("audit.jsonl");
    serve(&path, None, 3, true);
    serve(&path, None, 2, true);
    let original = lines(&path);
    let count = original.len();
    let tampered = dir.file("tampered.jsonl");
    let mut cases: Vec<(String, Vec<String>, u64)> = Vec::new();
    for at in 0..count {
        let mut deleted = original.clone();
        deleted.remove(at);
        // Deleting a line breaks the chain at the line that now stands in its place; deleting
        // the last one leaves a chain without its close record, which breaks where it ends.
        let line = if at + 1 == count { count as u64 - 1 } else { at as u64 + 1 };
        cases.push((format!("line {} deleted", at + 1), deleted, line));
        let mut edited = original.clone();
        edited[at] = edited[at].replacen("\"timestamp\":\"2", "\"timestamp\":\"1", 1);
        assert_ne!(edited[at], original[at]);
        cases.push((format!("line {} edited", at + 1), edited, at as u64 + 1));
        if at + 1 < count {
            let mut swapped = original.clone();
            swapped.swap(at, at + 1);
            cases.push((format!("lines {} and {} swapped", at + 1, at + 2), swapped, at as u64 + 1));
        }
        let mut inserted = original.clone();
        inserted.insert(at, original[(at + 3) % count].clone());
        cases.push((format!("a copy inserted before line {}", at + 1), inserted, at as u64 + 1));
    }
    let mut cut = original.concat();
    cut.truncate(cut.len() - 10);
    cases.push(("the tail cut inside a line".into(), vec![cut], count as u64));
    for (what, lines, line) in cases {
        write_lines(&tampered, &lines);
        match verify(&[&tampered], None) {
            Ok(verified) => panic!("{what}: verified {verified:?}"),
            Err(broken) => assert_eq!(broken.line, line, "{what}: {broken}"),
        }
    }
}

#[test]
fn a_crash_or_a_tail_cut_before_a_restart_shows_at_the_restart() {
    let dir = Dir::new("chain-crash");
    let path = dir.file("audit.jsonl");
    serve(&path, None, 2, false);
    serve(&path, None, 1, true);
    let broken = verify(&[&path], None).expect_err("the first life never closed its chain");
    // open, 2 × 2 records, then the second life's open.
    assert_eq!(broken.line, 6, "{broken}");
    assert!(broken.reason.contains("without having been closed"), "{broken}");
}

#[test]
fn with_a_key_a_chain_made_again_without_it_does_not_verify() {
    let dir = Dir::new("chain-key");
    let path = dir.file("audit.jsonl");
    serve(&path, Some(key()), 2, true);
    assert!(verify(&[&path], Some(&key())).is_ok());
    let without = verify(&[&path], None).expect_err("the hashes are keyed");
    assert_eq!(without.line, 1);
    let other = ChainKey::new(b"another key, also 32 bytes long..".to_vec()).expect("long enough");
    assert_eq!(verify(&[&path], Some(&other)).expect_err("another key").line, 1);
    // Whoever edits a line and makes the chain again, with SHA-256 and no key, is found out.
    let forged = dir.file("forged.jsonl");
    serve(&forged, None, 2, true);
    assert!(verify(&[&forged], None).is_ok(), "a chain made without the key is a chain");
    assert_eq!(verify(&[&forged], Some(&key())).expect_err("but not under the key").line, 1);
}

#[test]
fn concurrent_calls_leave_one_ordered_chain() {
    let dir = Dir::new("chain-concurrent");
    let path = dir.file("audit.jsonl");
    let writer = Arc::new(AuditWriter::append_to(&path, Duration::from_secs(5)).expect("opens"));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || {
                let records = [record(Stage::Resolve), record(Stage::Admit), record(Stage::Execute)];
                for _ in 0..200 {
                    let batch = AuditBatch { session: None, tool: "t", records: &records, read: None, origin: None };
                    writer.record(&batch).expect("written");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("thread");
    }
    writer.close(Duration::from_secs(5)).expect("closed");
    let verified = verify(&[&path], None).expect("intact");
    assert_eq!(verified.records, 2 + 8 * 200 * 3);
}

#[test]
fn a_write_cut_short_before_a_restart_is_reported_and_the_chain_goes_on_after_it() {
    let dir = Dir::new("chain-torn");
    let path = dir.file("audit.jsonl");
    serve(&path, None, 1, true);
    let mut text = std::fs::read_to_string(&path).expect("readable");
    text.push_str("{\"timestamp\":\"2026-");
    std::fs::write(&path, &text).expect("written");
    serve(&path, None, 1, true);
    let lines = lines(&path);
    assert!(lines[4].starts_with("{\"timestamp\":\"2026-\n"), "the torn line stays apart: {:?}", lines[4]);
    let broken = verify(&[&path], None).expect_err("a torn line");
    assert_eq!(broken.line, 5, "{broken}");
}

/// The files of a rotated audit, oldest first: `PATH.SEQ`… then `PATH`.
fn rotated(dir: &Dir, name: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir.0)
        .expect("dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.file_name().is_some_and(|file| file.to_string_lossy().starts_with(&format!("{name}."))))
        .collect();
    files.sort();
    files.push(dir.file(name));
    files
}

#[test]
fn a_rotation_at_max_bytes_goes_on_in_a_new_file_and_the_files_verify_together() {
    let dir = Dir::new("chain-rotate");
    let path = dir.file("audit.jsonl");
    let writer = AuditWriter::append_to(&path, Duration::from_secs(5)).expect("opens").rotate_at(2_000);
    let records = [record(Stage::Resolve), record(Stage::Execute)];
    for _ in 0..40 {
        writer
            .record(&AuditBatch { session: None, tool: "query_read", records: &records, read: None, origin: None })
            .expect("written");
    }
    writer.close(Duration::from_secs(5)).expect("closed");
    let files = rotated(&dir, "audit.jsonl");
    assert!(files.len() >= 4, "rotated several times: {files:?}");
    for file in &files[..files.len() - 1] {
        let text = std::fs::read_to_string(file).expect("readable");
        assert!(text.lines().last().is_some_and(|line| line.contains(r#""audit":"close""#)), "{file:?} ends closed");
        assert!(text.len() < 2_000 + 1_000, "{file:?} holds about max_bytes: {}", text.len());
    }
    let verified = verify(&files, None).expect("intact across the files");
    assert_eq!(verified.opened, files.len() as u64);
    // A file left out breaks the chain where the next one starts.
    let mut gap = files.clone();
    gap.remove(1);
    let broken = verify(&gap, None).expect_err("a file is missing");
    assert_eq!((broken.file.clone(), broken.line), (files[2].clone(), 1), "{broken}");
    // The last file alone verifies from where it starts.
    assert!(verify(&files[files.len() - 1..], None).is_ok());
}

#[test]
fn a_reopen_after_an_outside_rotation_closes_the_old_file_and_goes_on_in_the_new() {
    let dir = Dir::new("chain-reopen");
    let path = dir.file("audit.jsonl");
    let writer = AuditWriter::append_to(&path, Duration::from_secs(5)).expect("opens");
    let records = [record(Stage::Execute)];
    let batch = AuditBatch { session: None, tool: "t", records: &records, read: None, origin: None };
    writer.record(&batch).expect("written");
    // logrotate: rename, then SIGHUP.
    let old = dir.file("audit.jsonl.1");
    std::fs::rename(&path, &old).expect("renamed");
    writer.reopen().expect("reopened");
    writer.reopen().expect("a second reopen with nothing written in between adds nothing");
    writer.record(&batch).expect("written");
    writer.close(Duration::from_secs(5)).expect("closed");
    assert_eq!(std::fs::read_to_string(&old).expect("old").lines().count(), 3, "open, the record, close");
    let verified = verify(&[&old, &path], None).expect("intact across the rename");
    assert_eq!((verified.records, verified.opened), (6, 2));
}

#[test]
fn a_second_writer_on_the_same_file_is_refused_rather_than_interleaved() {
    let dir = Dir::new("chain-lock");
    let path = dir.file("audit.jsonl");
    let first = AuditWriter::append_to(&path, Duration::from_secs(5)).expect("opens");
    let second = AuditWriter::append_to(&path, Duration::from_secs(5)).expect_err("the file is taken");
    assert!(second.to_string().contains("another process writes this audit file"), "{second}");
    drop(first);
    // Free again once the first writer is gone.
    serve(&path, None, 1, true);
    assert!(verify(&[&path], None).is_ok());
}

/// `line` (a sealed record, with its newline) sealed again at `seq` after `prev`, with no key,
/// as whoever can edit the file could: the chain's own rules must find what the hashes cannot.
fn reseal(line: &str, seq: u64, prev: &str) -> String {
    use sha2::Digest;
    let mut record: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).expect("a record");
    record.remove("hash");
    record.insert("seq".into(), seq.into());
    record.insert("prev".into(), prev.into());
    let body = serde_json::to_string(&record).expect("JSON");
    let without = body.strip_suffix('}').expect("an object");
    let hash = hex::encode(sha2::Sha256::digest(format!("{without}}}")));
    format!("{without},\"hash\":\"{hash}\"}}\n")
}

fn hash_of(line: &str) -> String {
    let record: serde_json::Value = serde_json::from_str(line).expect("a record");
    record["hash"].as_str().expect("a hash").to_owned()
}

#[test]
fn a_forged_line_is_found_by_the_chains_rules_where_its_hash_is_right() {
    let dir = Dir::new("chain-forged");
    let path = dir.file("audit.jsonl");
    serve(&path, None, 2, true);
    let original = lines(&path);
    let forged = dir.file("forged.jsonl");
    let check = |what: &str, lines: &[String], line: u64, reason: &str| {
        write_lines(&forged, lines);
        let broken = verify(&[&forged], None).expect_err(what);
        assert_eq!(broken.line, line, "{what}: {broken}");
        assert!(broken.reason.contains(reason), "{what}: {broken}");
    };
    // Line 3 deleted, and line 4 renumbered into its place: the sequence follows, the line
    // before it does not.
    let mut renumbered = original.clone();
    renumbered.remove(2);
    let prev = serde_json::from_str::<serde_json::Value>(&original[3]).expect("record")["prev"].clone();
    renumbered[2] = reseal(&original[3], 2, prev.as_str().expect("hex"));
    check("renumbered", &renumbered, 3, "does not follow");
    // A record appended after the close, following it exactly.
    let mut appended = original.clone();
    let last = original.last().expect("a close").clone();
    appended.push(reseal(&original[1], original.len() as u64, &hash_of(&last)));
    check("appended after the close", &appended, original.len() as u64 + 1, "after the chain was closed");
    // A line renumbered in place, following the line before it: the sequence is what breaks.
    let mut skipped = original.clone();
    skipped[2] = reseal(&original[2], 10, &hash_of(&original[1]));
    check("renumbered in place", &skipped, 3, "sequence number 10 where 2 was expected");
    // A line whose closing brace was edited: its hash still matches what it covers.
    let mut unclosed = original.clone();
    unclosed[1] = unclosed[1].replacen("\"}\n", "\"]\n", 1);
    assert_ne!(unclosed[1], original[1]);
    check("closing brace edited", &unclosed, 2, "not a sealed audit record");
    // A chain whose first record claims to start from nothing, but does not.
    let mut rebased = original.clone();
    rebased[0] = reseal(&original[0], 0, &"1".repeat(64));
    check("rebased", &rebased, 1, "start from nothing");
}
