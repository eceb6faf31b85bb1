//! The first hour of a new operator, with the real binary: `init` writes a config whose
//! first runs are clean, in the plain layout and in the read-only-config layouts of
//! systemd and Docker.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::Env;

fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.insert(p.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    out
}

const EXPORT_LINE: &str = "{\"source\":\"web\",\"id\":\"1\",\"kind\":\"download\",\"occurred_at\":\"2026-10-30T00:00:00Z\",\"company_domain\":\"acme.com\",\"version\":\"1.0\"}\n";

#[test]
fn the_starter_config_runs_cleanly_from_its_first_run() {
    let env = Env::new();
    // `init` without DIR writes into --config-dir.
    let out = env.ok(&["init"]);
    assert!(out.contains("wrote ") && out.contains("connectors/exports.yaml") && out.contains("the drop folder"), "{out}");
    assert!(env.path().join("data").is_dir());
    assert!(std::fs::read_dir(env.path().join("data")).unwrap().next().is_none(), "the drop folder starts empty: anything in it is read as an export");
    env.ok(&["check"]);

    let first = env.run(&["run", "--once", "--as-of", "2026-10-31", "--listen", "none"]);
    assert_eq!(first.code, 0, "the first run of the starter config fails:\n{}{}", first.stdout, first.stderr);
    assert!(!first.stderr.contains("ERROR") && !first.stderr.contains("failed"), "{}", first.stderr);

    // A file dropped in is imported on the next run and reaches the file sink.
    env.write("data/first.ndjson", EXPORT_LINE);
    let second = env.run(&["run", "--once", "--as-of", "2026-10-31", "--listen", "none"]);
    assert_eq!(second.code, 0, "{}{}", second.stdout, second.stderr);
    assert!(second.stdout.contains("1 imported"), "{}", second.stdout);
    assert!(std::fs::read_to_string(env.path().join("out/crm.csv")).unwrap().contains("acme.com"));

    // Running init again keeps every file and says so.
    let again = env.ok(&["init"]);
    assert!(again.contains("kept ") && again.contains("nothing written") && !again.contains("wrote "), "{again}");
}

#[test]
fn with_a_state_dir_the_daemon_writes_nothing_into_its_config_dir() {
    let env = Env::new();
    let config = env.path().join("etc");
    let state = env.path().join("var");
    std::fs::create_dir_all(&state).unwrap();
    let bin = env!("CARGO_BIN_EXE_oql-sync");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .env("OQL_CONFIG_DIR", &config)
            .env("OQL_DB", state.join("oql.db").display().to_string())
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, text) = run(&["init", "--state-dir", state.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(!config.join("data").exists(), "the drop folder lives in the state dir");
    assert!(state.join("data").is_dir());
    let exports = std::fs::read_to_string(config.join("connectors/exports.yaml")).unwrap();
    assert!(exports.contains(&format!("path: \"{}\"", state.join("data").display())), "{exports}");
    let before = files_under(&config);

    std::fs::write(state.join("data/first.ndjson"), EXPORT_LINE).unwrap();
    let (code, text) = run(&["run", "--once", "--as-of", "2026-10-31", "--listen", "none"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("1 imported"), "{text}");
    assert!(std::fs::read_to_string(state.join("out/crm.csv")).unwrap().contains("acme.com"));
    assert_eq!(files_under(&config), before, "the run wrote into the (read-only in production) config dir");
}
