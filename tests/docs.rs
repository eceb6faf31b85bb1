//! The user docs stay true: every link in README.md and docs/ reaches a file, every
//! repository path they name exists, and every `oql-sync` command they show parses with
//! the real command line.

use std::path::{Path, PathBuf};

use clap::Parser;
use oql_sync::cli::Cli;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file under docs/.
fn pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut out = vec![root().join("README.md")];
    walk(&root().join("docs"), &mut out);
    out.sort();
    out
}

/// The targets of `[text](target)` links.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_owned());
        }
    }
    out
}

/// Lines inside fenced code blocks.
fn code_lines(text: &str) -> Vec<String> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
        } else if inside {
            out.push(line.to_owned());
        }
    }
    out
}

/// Splits a shell line into words: whitespace, single and double quotes; a `#` comment
/// ends it.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut started = false;
    for c in line.chars() {
        match (quote, c) {
            (None, '#') if !started => break,
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (_, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(word);
    }
    out
}

#[test]
fn every_link_in_the_docs_reaches_a_file() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for target in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") || target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            let file = target.split('#').next().unwrap_or_default();
            if !page.parent().unwrap().join(file).exists() {
                broken.push(format!("{}: {target}", page.strip_prefix(root()).unwrap().display()));
            }
        }
    }
    assert!(broken.is_empty(), "links to missing files:\n{}", broken.join("\n"));
}

#[test]
fn every_repository_path_the_docs_name_exists() {
    const TOP: [&str; 11] = ["connectors/", "mappings/", "deploy/", "examples/", "benches/", "tests/", "src/", "migrations/", "fuzz/", "docs/", "spec/"];
    let mut missing = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (i, part) in text.split('`').enumerate() {
            // Odd parts are inline code; paths with placeholders or patterns are examples.
            if i % 2 == 0 || !TOP.iter().any(|t| part.starts_with(t)) || part.contains(char::is_whitespace) {
                continue;
            }
            if part.contains(['*', '{', '<', '…']) || part.contains("NAME") || part.contains("...") {
                continue;
            }
            let path = part.trim_end_matches([':', ',', '.']);
            let path = path.split_once(':').map_or(path, |(p, _)| p);
            // What the quickstart and the fuzzer write is not in the repository until they run.
            if path.starts_with("examples/quickstart/out/") || path.starts_with("fuzz/artifacts/") || path.starts_with("fuzz/corpus/") || path.ends_with(".db") {
                continue;
            }
            if !root().join(path).exists() {
                missing.push(format!("{}: {path}", page.strip_prefix(root()).unwrap().display()));
            }
        }
    }
    assert!(missing.is_empty(), "paths the docs name that do not exist:\n{}", missing.join("\n"));
}

#[test]
fn every_command_the_docs_show_parses() {
    let mut checked = 0;
    let mut bad = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for line in code_lines(&text) {
            let line = line.trim().trim_start_matches("$ ");
            let args = if let Some(rest) = line.strip_prefix("cargo run --release -- ") {
                rest
            } else if let Some(rest) = line.strip_prefix("oql-sync ") {
                rest
            } else {
                continue;
            };
            // What a shell redirects is not the command's.
            let args = args.split(" > ").next().unwrap_or(args);
            // Synopses show placeholders, not commands.
            if args.contains(['[', '<', '|', '…']) || args.contains("...") {
                continue;
            }
            let mut argv = vec!["oql-sync".to_owned()];
            argv.extend(words(args));
            checked += 1;
            if let Err(e) = Cli::try_parse_from(&argv) {
                bad.push(format!("{}: `{line}`: {}", page.strip_prefix(root()).unwrap().display(), e.kind()));
            }
        }
    }
    assert!(bad.is_empty(), "commands in the docs that do not parse:\n{}", bad.join("\n"));
    assert!(checked >= 5, "only {checked} commands found in the docs");
}

#[test]
fn words_split_like_a_shell() {
    assert_eq!(words(r#"sync --dry-run "a b" 'c' # note"#), ["sync", "--dry-run", "a b", "c"]);
}
