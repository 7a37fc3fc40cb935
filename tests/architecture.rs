//! The layers of `src/` against ARCHITECTURE.md: each module may use only the modules on the
//! lines below its own in the document's layer list, so the module graph has no cycle and reads
//! top-down. A `use` (or any path) that breaks the rule fails here, naming the file and the
//! module it reached.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The layer list of ARCHITECTURE.md, top first: each line's modules.
fn layers() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let start = text.find("<!-- layers -->").expect("ARCHITECTURE.md marks its layer list with <!-- layers -->");
    let end = text.find("<!-- /layers -->").expect("and ends it with <!-- /layers -->");
    text[start..end]
        .lines()
        .skip(1)
        .filter(|line| !line.starts_with("```") && !line.trim().is_empty())
        .map(|line| line.split('#').next().unwrap_or("").split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|modules| !modules.is_empty())
        .collect()
}

/// Every Rust file under `src/`.
fn sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![Path::new(ROOT).join("src")];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("readable directory") {
                pending.push(entry.expect("entry").path());
            }
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// A file's module path below the crate root: `src/adapter/postgres/read.rs` is
/// `[adapter, postgres, read]`, `src/adapter/mod.rs` is `[adapter]`, `src/lib.rs` is `[]`.
fn module_path(file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(Path::new(ROOT).join("src")).expect("under src");
    let mut parts: Vec<String> = relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    if stem == "main" {
        parts.push("main".to_owned());
    }
    parts
}

/// The source with comments, strings and character literals blanked out, so that only code
/// is searched for paths.
fn code_only(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &source[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(bytes.len(), |n| i + n);
            out.push(' ');
            i = end;
        } else if rest.starts_with("/*") {
            let mut depth = 0;
            let mut j = i;
            while j < bytes.len() {
                if source[j..].starts_with("/*") {
                    depth += 1;
                    j += 2;
                } else if source[j..].starts_with("*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            out.push(' ');
            i = j;
        } else if let Some(hashes) = raw_string_start(rest) {
            let closing = format!("\"{}", "#".repeat(hashes));
            let open = 2 + hashes;
            let end = rest[open..].find(&closing).map_or(bytes.len(), |n| i + open + n + closing.len());
            out.push_str("\"\"");
            i = end;
        } else if bytes[i] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i = j + 1;
        } else if bytes[i] == b'\'' {
            // A character literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            let literal = if rest[1..].starts_with('\\') {
                rest[2..].find('\'').map(|n| n + 3)
            } else {
                rest[1..]
                    .chars()
                    .next()
                    .and_then(|c| rest[1 + c.len_utf8()..].starts_with('\'').then(|| 2 + c.len_utf8()))
            };
            match literal {
                Some(length) => {
                    out.push_str("' '");
                    i += length;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let c = rest.chars().next().expect("a character");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The number of `#` of a raw string opening at the start of `text` (`r"`, `r#"`, `br##"`…).
fn raw_string_start(text: &str) -> Option<usize> {
    let after_prefix = text.strip_prefix("br").or_else(|| text.strip_prefix('r'))?;
    let hashes = after_prefix.bytes().take_while(|b| *b == b'#').count();
    after_prefix[hashes..].starts_with('"').then_some(hashes)
}

/// The top-level modules a file's code reaches: through `crate::x`, `crate::{x, y::z}`, and
/// `super::` chains that climb to the crate root.
fn reached(code: &str, path: &[String]) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    let tokens = tokenize(code);
    let nesting = inline_module_depths(&tokens);
    for (at, token) in tokens.iter().enumerate() {
        let after_root = if token == "crate" {
            Some(at + 1)
        } else if token == "super" && (at < 2 || tokens[at - 1] != "::" || tokens[at - 2] != "super") {
            // A chain of `super`s: how far it climbs from the file's module.
            let mut climbed = 0;
            let mut next = at;
            while tokens.get(next).is_some_and(|t| t == "super") {
                climbed += 1;
                next += 1;
                if tokens.get(next).is_some_and(|t| t == "::") {
                    next += 1;
                } else {
                    break;
                }
            }
            (climbed >= path.len() + nesting[at]).then_some(next - 1)
        } else {
            None
        };
        let Some(after_root) = after_root else { continue };
        if tokens.get(after_root).is_none_or(|t| t != "::") {
            continue;
        }
        match tokens.get(after_root + 1).map(String::as_str) {
            Some("{") => {
                // A group: its items at the group's own level.
                let mut depth = 0;
                let mut expecting_item = true;
                for token in &tokens[after_root + 1..] {
                    match token.as_str() {
                        "{" => {
                            depth += 1;
                            continue;
                        }
                        "}" => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                            continue;
                        }
                        "," if depth == 1 => expecting_item = true,
                        _ if depth == 1 && expecting_item => {
                            modules.insert(token.clone());
                            expecting_item = false;
                        }
                        _ => {}
                    }
                }
            }
            Some(name) => {
                modules.insert(name.to_owned());
            }
            None => {}
        }
    }
    modules
}

/// For each token, how many inline modules (`mod tests { … }`) it is inside: each is one more
/// level for `super` to climb.
fn inline_module_depths(tokens: &[String]) -> Vec<usize> {
    let mut depths = Vec::with_capacity(tokens.len());
    // The brace depth at which each open inline module's body began.
    let mut open: Vec<usize> = Vec::new();
    let mut braces = 0;
    for (at, token) in tokens.iter().enumerate() {
        match token.as_str() {
            "{" => {
                braces += 1;
                if at >= 2 && tokens[at - 2] == "mod" {
                    open.push(braces);
                }
            }
            "}" => {
                if open.last() == Some(&braces) {
                    open.pop();
                }
                braces -= 1;
            }
            _ => {}
        }
        depths.push(open.len());
    }
    depths
}

/// Identifiers, `::`, and single punctuation characters.
fn tokenize(code: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = code.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut end = at + c.len_utf8();
            while let Some(&(next, d)) = chars.peek() {
                if d.is_alphanumeric() || d == '_' {
                    end = next + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(code[at..end].to_owned());
        } else if c == ':' && chars.peek().is_some_and(|&(_, d)| d == ':') {
            chars.next();
            tokens.push("::".to_owned());
        } else if !c.is_whitespace() {
            tokens.push(c.to_string());
        }
    }
    tokens
}

#[test]
fn architecture_md_lists_every_module_of_src_once() {
    let listed: Vec<String> = layers().into_iter().flatten().collect();
    let unique: BTreeSet<&String> = listed.iter().collect();
    assert_eq!(unique.len(), listed.len(), "a module is listed twice: {listed:?}");
    let modules: BTreeSet<String> = sources().iter().filter_map(|file| module_path(file).first().cloned()).collect();
    let listed: BTreeSet<String> = listed.into_iter().collect();
    assert_eq!(modules, listed, "the modules of src/ and the layer list of ARCHITECTURE.md differ");
}

#[test]
fn every_module_of_src_uses_only_the_layers_below_its_own() {
    let rank: BTreeMap<String, usize> = layers()
        .into_iter()
        .enumerate()
        .flat_map(|(rank, modules)| modules.into_iter().map(move |module| (module, rank)))
        .collect();
    let mut broken = Vec::new();
    for file in sources() {
        let path = module_path(&file);
        // The crate root only declares the modules and re-exports what users name.
        let Some(own) = path.first() else { continue };
        let code = code_only(&std::fs::read_to_string(&file).expect("readable source"));
        for used in reached(&code, &path) {
            if used == *own || used == "self" {
                continue;
            }
            let shown = file.strip_prefix(ROOT).unwrap_or(&file).display().to_string();
            match (rank.get(own), rank.get(&used)) {
                (Some(own_rank), Some(used_rank)) if used_rank > own_rank => {}
                (_, None) => broken.push(format!(
                    "{shown}: `crate::{used}` is not a module of the layer list (use the module that defines it)"
                )),
                _ => broken.push(format!("{shown}: `{own}` uses `{used}`, which is not on a line below it")),
            }
        }
    }
    assert!(broken.is_empty(), "imports against ARCHITECTURE.md's layers:\n{}", broken.join("\n"));
}

#[test]
fn the_checker_sees_grouped_imports_paths_and_super_chains_but_not_comments_or_strings() {
    let path = vec!["adapter".to_owned(), "postgres".to_owned(), "read".to_owned()];
    let code = code_only(
        r##"
        use crate::{json, sql::{AllowList, TableName}, evidence::Evidence};
        use super::super::super::denial::Denial;
        use super::super::RowCollector;
        mod tests { use super::*; use super::super::super::super::sql::TableName; }
        fn f() -> crate::policy::Mode { let _ = "crate::mcp"; let _ = r#"crate::service"#; let _ = '"'; x::<'a>() }
        // crate::boundary
        /* crate::tools */
        "##,
    );
    let expected: BTreeSet<String> =
        ["json", "sql", "evidence", "denial", "policy"].into_iter().map(str::to_owned).collect();
    assert_eq!(reached(&code, &path), expected);
}

#[test]
fn super_inside_a_test_module_stays_in_its_file() {
    let path = vec!["json".to_owned()];
    let code = code_only("fn a() {} #[cfg(test)] mod tests { use super::*; use super::super::pipe::Unread; }");
    assert_eq!(reached(&code, &path), BTreeSet::from(["pipe".to_owned()]));
}

/// The lines of a file outside its test module (`#[cfg(test)] mod tests { … }` at its end).
fn lines_outside_tests(source: &str) -> usize {
    let lines: Vec<&str> = source.lines().collect();
    let tests = lines.windows(2).position(|pair| pair[0] == "#[cfg(test)]" && pair[1].starts_with("mod tests"));
    tests.unwrap_or(lines.len())
}

#[test]
fn no_file_of_src_is_over_700_lines_outside_its_tests() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter_map(|file| {
            let lines = lines_outside_tests(&std::fs::read_to_string(&file).expect("readable source"));
            (lines > 700).then(|| format!("{}: {lines} lines", file.strip_prefix(ROOT).unwrap_or(&file).display()))
        })
        .collect();
    assert!(long.is_empty(), "split these by concern:\n{}", long.join("\n"));
    assert_eq!(lines_outside_tests("a\nb\n#[cfg(test)]\nmod tests {\n}\n"), 2);
}
