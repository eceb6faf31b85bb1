//! The bad-input corpus of `tests/bad_input/`: each case is a folder with the files it
//! puts in a fresh config dir, the command it runs (`args`, default `import
//! $DIR/input.*`) and `expected.txt`: the exit code, stdout and stderr the user sees,
//! exactly, and for runs that got as far as the store, every activity and quarantined
//! line it holds afterwards (so a case proves nothing but the bad lines was lost). A
//! case that exits 2 (config or usage error) must not have created the store.
//!
//! `$DIR` stands for the config dir in `args` and `expected.txt`; the import summary's
//! elapsed time reads `<elapsed>`. A file named `*.in` is written without `.in`, with
//! each line `@@HUGE <bytes>@@` replaced by an NDJSON object (or, in a `.csv`, a row)
//! padded to that many bytes, and each line `@@LINES <n> <template>@@` by n lines, `{}`
//! in the template numbering them, so big inputs are generated here, not committed.
//! `BLESS=1 cargo test --test bad_input` rewrites the expected files (review the diff).

mod common;

use std::path::{Path, PathBuf};

use common::Env;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_input");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    cases
}

fn files_of(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_of(&path, base, out);
        } else {
            out.push(path.strip_prefix(base).unwrap().to_path_buf());
        }
    }
}

/// The line a `@@HUGE n@@` placeholder stands for: valid apart from its size.
fn huge_line(bytes: usize, csv: bool) -> Vec<u8> {
    let (head, tail) = if csv {
        ("huge,web,page_view,2026-06-20T12:00:00Z,".to_owned(), String::new())
    } else {
        (r#"{"id":"huge","source":"web","kind":"page_view","occurred_at":"2026-06-20T12:00:00Z","pad":""#.to_owned(), r#""}"#.to_owned())
    };
    let mut line = head.into_bytes();
    line.resize(bytes - tail.len(), b'a');
    line.extend_from_slice(tail.as_bytes());
    line
}

fn expand(text: &[u8], csv: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for line in text.split_inclusive(|&b| b == b'\n') {
        let trimmed = std::str::from_utf8(line).ok().map(str::trim_end);
        let directive = trimmed.and_then(|l| l.strip_prefix("@@")).and_then(|l| l.strip_suffix("@@"));
        match directive.and_then(|d| d.split_once(' ')) {
            Some(("HUGE", n)) => {
                out.extend(huge_line(n.parse().unwrap(), csv));
                out.push(b'\n');
            }
            Some(("LINES", rest)) => {
                let (n, template) = rest.split_once(' ').unwrap();
                for i in 0..n.parse::<usize>().unwrap() {
                    out.extend(template.replace("{}", &i.to_string()).into_bytes());
                    out.push(b'\n');
                }
            }
            _ => out.extend_from_slice(line),
        }
    }
    out
}

/// Activities (source, id, company) and quarantined lines (line, reason, raw text) of
/// the store, one a line.
fn store_contents(db: &Path) -> (String, String) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = oql_sync::store::Store::open(db.to_str().unwrap()).await.unwrap();
        let rows: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT source, id, company_domain FROM activities ORDER BY source, id").fetch_all(store.pool()).await.unwrap();
        let activities: String = rows.iter().map(|(s, i, c)| format!("{s} {i} {}\n", c.as_deref().unwrap_or("-"))).collect();
        let quarantine: String = store
            .quarantined(1000)
            .await
            .unwrap()
            .iter()
            .map(|q| {
                let raw: String = q.raw.chars().take(100).collect::<String>().escape_debug().to_string();
                format!("{}:{}: {} | {raw}\n", q.file, q.line, q.reason)
            })
            .collect();
        store.close().await;
        (activities, quarantine)
    })
}

fn run_case(case: &Path) -> String {
    let env = Env::new();
    let dir = env.path().to_str().unwrap().to_owned();
    let mut files = Vec::new();
    files_of(case, case, &mut files);
    let mut input = None;
    for rel in &files {
        let name = rel.to_str().unwrap();
        if name == "args" || name == "expected.txt" {
            continue;
        }
        let bytes = std::fs::read(case.join(rel)).unwrap();
        let (name, bytes) = match name.strip_suffix(".in") {
            Some(n) => (n, expand(&bytes, n.ends_with(".csv"))),
            None => (name, bytes),
        };
        if name.starts_with("input.") {
            input = Some(name.to_owned());
        }
        env.write(name, bytes);
    }
    let args = match std::fs::read_to_string(case.join("args")) {
        Ok(a) => a.trim().replace("$DIR", &dir),
        Err(_) => format!("import {dir}/{}", input.expect("a case without `args` has an input.* file")),
    };
    let args: Vec<&str> = args.split_whitespace().collect();
    let run = env.run(&args);
    let scrub = |s: &str| -> String {
        let s = s.replace(&dir, "$DIR");
        s.lines()
            .map(|l| match l.split_once(" lines in ") {
                Some((head, _)) if l.starts_with("read ") && l.ends_with(" lines/s)") => format!("{head} lines in <elapsed>\n"),
                _ => format!("{l}\n"),
            })
            .collect()
    };
    let mut got = format!("exit: {}\n--- stdout\n{}--- stderr\n{}", run.code, scrub(&run.stdout), scrub(&run.stderr));
    let db = env.path().join("oql.db");
    if run.code == 2 {
        assert!(!db.exists(), "{}: exit 2 but the store was created: something ran", case.display());
    } else if db.exists() {
        let (activities, quarantine) = store_contents(&db);
        got.push_str(&format!("--- activities\n{activities}--- quarantine\n{}", scrub(&quarantine)));
    }
    got
}

#[test]
fn every_bad_input_case_shows_the_user_its_exact_message() {
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    let cases = cases();
    assert!(!cases.is_empty());
    for case in &cases {
        let got = run_case(case);
        let expected_path = case.join("expected.txt");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!("== {}\n-- expected\n{expected}-- got\n{got}", case.display()));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
