//! `sqlwarden audit stats`: what audit files say, summed up: calls, denials by code, the
//! query shapes run most, and the rows each principal was returned.

use std::collections::BTreeMap;
use std::io::{self, BufRead};
use std::path::Path;

use serde::Serialize;

/// The sums over one or more audit files.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// Calls that reached their tool (one `execute` record each).
    pub calls: u64,
    /// Denials, by code, whatever the stage.
    pub denials: BTreeMap<String, u64>,
    /// The query fingerprints run most, with how many times, most first (at most ten).
    pub top_fingerprints: Vec<(String, u64)>,
    /// Rows returned to each principal (`tenant/identity`).
    pub rows_by_principal: BTreeMap<String, u64>,
    /// Lines that are not audit records (the chain's open and close records are not counted).
    pub unreadable_lines: u64,
}

/// Sums up `files`. Lines that do not parse are counted, not fatal: the chain is
/// [`verify`](super::verify)'s to judge.
pub fn stats(files: &[impl AsRef<Path>]) -> io::Result<Stats> {
    #[derive(serde::Deserialize)]
    struct Line {
        #[serde(default)]
        audit: Option<String>,
        #[serde(default)]
        stage: Option<String>,
        #[serde(default)]
        decision: Option<String>,
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        identity: Option<String>,
        #[serde(default)]
        tenant: Option<String>,
        #[serde(default)]
        fingerprint: Option<String>,
        #[serde(default)]
        rows_returned: Option<u64>,
    }
    let mut stats = Stats::default();
    let mut fingerprints: BTreeMap<String, u64> = BTreeMap::new();
    for file in files {
        let reader = io::BufReader::new(std::fs::File::open(file)?);
        for line in reader.lines() {
            let Ok(line) = serde_json::from_str::<Line>(&line?) else {
                stats.unreadable_lines += 1;
                continue;
            };
            if line.audit.is_some() {
                continue;
            }
            if line.decision.as_deref() == Some("deny") {
                *stats.denials.entry(line.code.unwrap_or_else(|| "UNKNOWN".into())).or_default() += 1;
            }
            if line.stage.as_deref() != Some("execute") {
                continue;
            }
            stats.calls += 1;
            if let Some(fingerprint) = line.fingerprint {
                *fingerprints.entry(fingerprint).or_default() += 1;
            }
            if let Some(rows) = line.rows_returned {
                let principal =
                    format!("{}/{}", line.tenant.as_deref().unwrap_or("-"), line.identity.as_deref().unwrap_or("-"));
                *stats.rows_by_principal.entry(principal).or_default() += rows;
            }
        }
    }
    let mut top: Vec<(String, u64)> = fingerprints.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(10);
    stats.top_fingerprints = top;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_denials_shapes_and_rows_are_summed_from_the_records() {
        let dir = std::env::temp_dir().join(format!("sqlwarden-stats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("audit.jsonl");
        let record = |stage: &str, decision: &str, code: &str, extra: &str| {
            format!(
                r#"{{"identity":"ada","tenant":"acme","stage":"{stage}","decision":"{decision}","code":{code}{extra},"seq":0}}"#
            )
        };
        let lines = [
            r#"{"timestamp":"t","audit":"open","seq":0}"#.to_owned(),
            record("authorize", "deny", r#""UNAUTHORIZED""#, ""),
            record("execute", "allow", "null", r#","fingerprint":"aa","rows_returned":3"#),
            record("execute", "allow", "null", r#","fingerprint":"aa","rows_returned":4"#),
            record("execute", "deny", r#""TIMEOUT""#, r#","fingerprint":"bb","rows_returned":0"#),
            "not json".to_owned(),
        ];
        std::fs::write(&path, lines.join("\n") + "\n").expect("written");
        let stats = stats(&[&path]).expect("read");
        assert_eq!(stats.calls, 3);
        assert_eq!(stats.denials, BTreeMap::from([("TIMEOUT".into(), 1), ("UNAUTHORIZED".into(), 1)]));
        assert_eq!(stats.top_fingerprints, vec![("aa".into(), 2), ("bb".into(), 1)]);
        assert_eq!(stats.rows_by_principal, BTreeMap::from([("acme/ada".into(), 7)]));
        assert_eq!(stats.unreadable_lines, 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
