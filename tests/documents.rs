//! The security documents against the code: every guarantee in SECURITY-INVARIANTS.md names a
//! proof (a test, a compile-fail case or a corpus category) and every proof it names exists; so
//! does every test README.md names.

use std::collections::BTreeSet;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every `fn` name in the project's Rust sources.
fn functions() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut pending: Vec<std::path::PathBuf> =
        ["src", "tests", "ui-tests", "examples", "benches"].iter().map(|dir| Path::new(ROOT).join(dir)).collect();
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("readable directory") {
                pending.push(entry.expect("entry").path());
            }
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path).expect("readable source");
            for (at, _) in text.match_indices("fn ") {
                let name: String =
                    text[at + 3..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    names.insert(name);
                }
            }
        }
    }
    names
}

/// The categories of the attack corpus.
fn categories() -> BTreeSet<String> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("tests/corpus/attacks.jsonl")).expect("corpus");
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|row| row["category"].as_str().map(str::to_owned))
        .collect()
}

fn backticked(text: &str) -> impl Iterator<Item = &str> {
    text.split('`').skip(1).step_by(2)
}

fn is_test_name(token: &str) -> bool {
    token.contains('_') && token.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// What a proof names, if it names something that must exist: `Err` with the reason it does not.
fn check(
    token: &str,
    in_corpus_cell: bool,
    functions: &BTreeSet<String>,
    categories: &BTreeSet<String>,
) -> Option<Result<(), String>> {
    if token.contains('/') && !token.contains(' ') {
        return Some(if Path::new(ROOT).join(token).exists() { Ok(()) } else { Err(format!("no file {token}")) });
    }
    if let Some(file) = token.strip_suffix(".rs").filter(|name| !name.contains(' ')) {
        let path = Path::new(ROOT).join("ui-tests").join(format!("{file}.rs"));
        return Some(if path.exists() { Ok(()) } else { Err(format!("no ui-tests/{token}")) });
    }
    if is_test_name(token) {
        return Some(if functions.contains(token) { Ok(()) } else { Err(format!("no fn {token}")) });
    }
    if in_corpus_cell && token.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
        return Some(if categories.contains(token) { Ok(()) } else { Err(format!("no corpus category {token}")) });
    }
    None
}

#[test]
fn every_guarantee_names_a_proof_that_exists() {
    let (functions, categories) = (functions(), categories());
    let text = std::fs::read_to_string(Path::new(ROOT).join("SECURITY-INVARIANTS.md")).expect("the document");
    let mut problems = Vec::new();
    let mut rows = 0;
    for line in text.lines().filter(|line| line.starts_with("| ") && !line.starts_with("| #")) {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
        let (Some(id), Some(proof)) = (cells.first(), cells.last()) else { continue };
        if cells.len() < 3 || !id.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            continue;
        }
        rows += 1;
        let corpus = proof.contains("corpus categor");
        let named: Vec<Result<(), String>> =
            backticked(proof).filter_map(|token| check(token, corpus, &functions, &categories)).collect();
        if named.is_empty() {
            problems.push(format!("{id}: names no test"));
        }
        problems.extend(named.into_iter().filter_map(Result::err).map(|problem| format!("{id}: {problem}")));
    }
    assert!(rows >= 100, "only {rows} guarantees read: the table format changed?");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_test_the_readme_names_exists() {
    let functions = functions();
    let text = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("the README");
    // What follows "(test" or "(Tests" up to its closing parenthesis (one outside backticks):
    // "(tests: `a`, `b`)", "(Tests: `c` …)".
    let lower = text.to_ascii_lowercase();
    let named = lower.match_indices("(test").map(|(at, _)| {
        let rest = &text[at..];
        let mut quoted = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                quoted ^= c == '`';
                c == ')' && !quoted
            })
            .map_or(rest.len(), |(end, _)| end);
        &rest[..end]
    });
    let mut count = 0;
    let mut missing = Vec::new();
    for token in named.flat_map(backticked).filter(|token| is_test_name(token)) {
        count += 1;
        if !functions.contains(token) {
            missing.push(token);
        }
    }
    assert!(count >= 10, "only {count} tests named: the README's way of naming them changed?");
    assert!(missing.is_empty(), "README.md names tests that do not exist: {missing:?}");
}

/// The check itself can fail: a name that is no test, a file that is not there.
#[test]
fn a_missing_proof_is_found() {
    let functions: BTreeSet<String> = ["a_real_test".to_owned()].into();
    let categories: BTreeSet<String> = ["catalog".to_owned()].into();
    assert_eq!(check("a_real_test", false, &functions, &categories), Some(Ok(())));
    assert!(matches!(check("a_test_that_was_renamed", false, &functions, &categories), Some(Err(_))));
    assert!(matches!(check("ui-tests/no_such_case.rs", false, &functions, &categories), Some(Err(_))));
    assert!(matches!(check("no_such_case.rs", false, &functions, &categories), Some(Err(_))));
    assert!(matches!(check("no-such-category", true, &functions, &categories), Some(Err(_))));
    assert_eq!(check("catalog", true, &functions, &categories), Some(Ok(())));
    assert_eq!(check("JsonLinesSink", false, &functions, &categories), None);
}

/// The keys of README.md's configuration reference, as `(section, key)`: each row's first cell
/// holds `` `[section] key` `` or `` `[section] key1`, `key2` ``.
fn reference_keys() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("the README");
    let mut keys = Vec::new();
    for line in text.lines().filter(|line| line.starts_with("| `[")) {
        let cell = line.trim_start_matches('|').split('|').next().unwrap_or("");
        let mut section = String::new();
        for token in backticked(cell) {
            let key = match token.rfind(']') {
                Some(end) => {
                    section = token[..end].trim_matches(|c| c == '[' || c == ']').to_owned();
                    token[end + 1..].trim()
                }
                None => token.trim(),
            };
            keys.push((section.clone(), key.to_owned()));
        }
    }
    keys
}

#[test]
fn the_example_configuration_loads_and_holds_every_key_of_the_reference() {
    let path = Path::new(ROOT).join("sqlwarden.example.toml");
    let text = std::fs::read_to_string(&path).expect("sqlwarden.example.toml");
    let env = |name: &str| (name == "DATABASE_URL").then(|| "postgres://reader@127.0.0.1:5432/app".to_owned());
    if let Err(error) = sqlwarden::config::Config::parse(&text, "sqlwarden.example.toml", env) {
        panic!("sqlwarden.example.toml does not load: {error}");
    }
    // Every key, set or shown commented out, under its own section.
    let keys = reference_keys();
    assert!(keys.len() >= 20, "only {} keys read from the README's reference: its format changed?", keys.len());
    let mut missing = Vec::new();
    for (section, key) in keys {
        let header = format!("[{section}]");
        let header_alt = format!("[[{section}]]");
        // A section that is off unless present (such as [http]) is shown commented out.
        let at = [&header, &header_alt, &format!("# {header}"), &format!("# {header_alt}")]
            .iter()
            .find_map(|header| text.find(&format!("\n{header}\n")));
        let Some(at) = at else {
            missing.push(format!("[{section}] (the section)"));
            continue;
        };
        // The section runs to the next header that is not the same section again.
        let body = &text[at + 1..];
        let end = body[1..]
            .match_indices("\n[")
            .map(|(n, _)| n + 1)
            .find(|&n| !body[n + 1..].starts_with(&header) && !body[n + 1..].starts_with(&header_alt))
            .unwrap_or(body.len());
        let section_text = &body[..end];
        let present = section_text.lines().any(|line| {
            let line = line.trim_start_matches(['#', ' ']);
            line.starts_with(&format!("{key} =")) || line.starts_with(&format!("{key}="))
        });
        if !present {
            missing.push(format!("[{section}] {key}"));
        }
    }
    assert!(missing.is_empty(), "sqlwarden.example.toml lacks keys of the README's reference: {missing:?}");
}

#[test]
fn the_security_documents_exist_and_name_real_tests() {
    let (functions, categories) = (functions(), categories());
    let mut problems = Vec::new();
    let mut named = 0;
    for document in ["SECURITY.md", "THREAT_MODEL.md", "CONTRIBUTING.md", "SECURITY-CHANGE-CHECKLIST.md"] {
        let Ok(text) = std::fs::read_to_string(Path::new(ROOT).join(document)) else {
            problems.push(format!("{document} is missing"));
            continue;
        };
        for token in backticked(&text) {
            if let Some(result) = check(token, false, &functions, &categories) {
                named += 1;
                if let Err(problem) = result {
                    problems.push(format!("{document}: {problem}"));
                }
            }
        }
    }
    assert!(named >= 15, "only {named} tests named: the threat model's table changed?");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The README's worked example of declared tools loads, with its three tools.
#[test]
fn the_readme_example_of_declared_tools_loads() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README.md");
    let block = readme.split("<!-- declared-tools-example -->\n```toml\n").nth(1).expect("the example's marker");
    let block = &block[..block.find("\n```").expect("the block's end")];
    let text = format!(
        "[database]\nurl = \"postgres://postgres@127.0.0.1/app\"\n[mode]\nread_only = false\n\
         [allowlist]\ntables = [\"tickets\", \"ticket_notes\", \"orders\"]\n[audit]\npath = \"/dev/null\"\n{block}\n"
    );
    let config =
        sqlwarden::config::Config::parse(&text, "README.md", |_| None).unwrap_or_else(|error| panic!("{error}"));
    let names: Vec<&str> = config.tools.iter().map(|tool| tool.name.as_str()).collect();
    assert_eq!(names, ["open_tickets", "revenue_by_month", "add_ticket_note"]);
}
