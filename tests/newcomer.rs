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

fn check_in(env: &Env, envs: &[(&str, &str)]) -> common::Run {
    env.run_with(&["check"], envs)
}

#[test]
fn check_reports_every_problem_at_once_in_plain_words() {
    let env = Env::new();
    env.write("connectors/typo.yaml", "name: typo\nkind: hubspt\nschedule: \"0 * * * * *\"\n");
    env.write("connectors/gh.yaml", "name: gh\nkind: github\nschedule: \"0 * * * * *\"\ntoken_env: OQL_TEST_UNSET_GH\nrepos: [a/b]\nrate_limit: { requests: 0, per_seconds: 1 }\n");
    env.write("connectors/late.yaml", "name: late\nkind: export\nschedule: \"0 61 * * * *\"\npath: data\n");
    env.write("scoring.yml", "windows:\n  scroe: 30\n");
    let r = check_in(&env, &[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let e = &r.stderr;
    assert!(e.contains("4 problems in the config"), "{e}");
    assert!(e.contains("connectors/typo.yaml:2:1: unknown connector kind `hubspt`"), "{e}");
    assert!(e.contains("connectors/gh.yaml:6:15: expected a whole number of at least 1, found `0`"), "{e}");
    assert!(e.contains("connectors/late.yaml:3:11: `0 61 * * * *` is not a cron expression"), "{e}");
    // `.yml` is read where `.yaml` is (a scoring.yml was silently ignored).
    assert!(e.contains("scoring.yml:2:3: unknown field `scroe`"), "{e}");
    for rust in ["u8", "u32", "u64", "nonzero", "usize", "invalid value"] {
        assert!(!e.contains(rust), "a message shows a Rust type ({rust}):\n{e}");
    }
}

#[test]
fn check_and_run_refuse_a_config_whose_secrets_are_missing() {
    let env = Env::new();
    env.write("connectors/gh.yaml", "name: gh\nkind: github\nschedule: \"0 * * * * *\"\ntoken_env: OQL_TEST_GH_TOKEN\nrepos: [a/b]\n");
    env.write(
        "connectors/sf.yaml",
        "name: sf\nkind: salesforce\nschedule: \"0 * * * * *\"\nmapping: mappings/sf.yaml\nauth:\n  flow: jwt_bearer\n  login_url: https://login.salesforce.com\n  client_id: abc\n  username: u@x.com\n  private_key_file: secrets/sf.key\n",
    );
    env.write("mappings/sf.yaml", "object: Account\nmatch: { crm_field: Website }\nfields:\n  OQL_Stage__c: { from: stage }\n");
    env.write("connectors/hooks.yaml", "name: hooks\nkind: file\nschedule: \"0 * * * * *\"\nmapping: mappings/rows.yaml\npath: out/rows.csv\n");
    env.write(
        "mappings/rows.yaml",
        "object: rows\nmatch: { crm_field: domain }\nfields:\n  stage: { from: stage }\ntriggers:\n  - when: { to: experimentation }\n    action: { webhook: { url_env: OQL_TEST_HOOK_URL } }\n",
    );
    let r = check_in(&env, &[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("3 problems in the config"), "{}", r.stderr);
    assert!(r.stderr.contains("connectors/gh.yaml:4:1: `token_env`: the environment variable OQL_TEST_GH_TOKEN is not set"), "{}", r.stderr);
    assert!(r.stderr.contains("connectors/sf.yaml:10:3: `private_key_file`:") && r.stderr.contains("secrets/sf.key does not exist"), "{}", r.stderr);
    assert!(r.stderr.contains("mappings/rows.yaml:7:26: `url_env`: the environment variable OQL_TEST_HOOK_URL is not set"), "{}", r.stderr);

    // A key file that is not a key is told apart from a missing one.
    env.write("secrets/sf.key", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    let envs = [("OQL_TEST_GH_TOKEN", "ghp_canary"), ("OQL_TEST_HOOK_URL", "https://hooks.example.com/x")];
    let r = check_in(&env, &envs);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("is not an RSA private key in PEM form"), "{}", r.stderr);

    // `run` refuses to start on the same problems, before it opens the store.
    let run = env.run_with(&["run", "--once", "--listen", "none"], &envs);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("is not an RSA private key"), "{}", run.stderr);
    assert!(!env.path().join("oql.db").exists(), "run opened the store before refusing");
    assert!(!run.stderr.contains("ghp_canary") && !run.stdout.contains("ghp_canary"));
}

#[test]
fn two_file_sinks_writing_one_file_are_rejected() {
    let env = Env::new();
    env.write("mappings/rows.yaml", "object: rows\nmatch: { crm_field: domain }\nfields:\n  stage: { from: stage }\n");
    env.write("connectors/a.yaml", "name: a\nkind: file\nschedule: \"0 * * * * *\"\nmapping: mappings/rows.yaml\npath: out/rows.csv\n");
    env.write("connectors/b.yaml", "name: b\nkind: file\nschedule: \"0 * * * * *\"\nmapping: mappings/rows.yaml\npath: ./out/../out/rows.csv\n");
    let r = check_in(&env, &[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("connectors/b.yaml: file sink `b` writes") && r.stderr.contains("as `a`"), "{}", r.stderr);
}

#[test]
fn check_warns_about_a_config_dir_without_connectors_or_inside_them() {
    let env = Env::new();
    let r = check_in(&env, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("warning:") && r.stderr.contains("has no connectors/ folder"), "{}", r.stderr);

    env.write("connectors/drops.yaml", "name: drops\nkind: export\nschedule: \"0 0 3 * * *\"\npath: data\n");
    let inside = env.path().join("connectors");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oql-sync")).arg("--config-dir").arg(&inside).arg("check").env_remove("OQL_DB").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is a connectors/ folder, not a config dir: pass its parent"), "{stderr}");
}

fn quickstart() -> Env {
    let env = Env::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart/data");
    for f in ["activities.ndjson", "scarf-export.csv"] {
        std::fs::copy(root.join(f), env.path().join(f)).unwrap();
    }
    env.ok(&["import", env.path().join("activities.ndjson").to_str().unwrap()]);
    env
}

#[test]
fn companies_fit_80_columns_and_say_what_they_left_out() {
    let env = quickstart();
    let table = env.ok(&["companies", "--as-of", "2026-10-31", "--limit", "5"]);
    for line in table.lines() {
        assert!(line.chars().count() <= 80, "{} columns: {line}", line.chars().count());
    }
    assert_eq!(table.lines().take_while(|l| !l.is_empty()).count(), 6, "a header and the top 5:\n{table}");
    assert!(table.contains("showing the top 5 of"), "{table}");
    assert!(table.contains("--wide shows"), "{table}");

    let filtered = env.ok(&["companies", "--as-of", "2026-10-31", "--stage", "investigation"]);
    assert!(filtered.contains("filtered: --stage investigation ("), "{filtered}");

    let wide = env.ok(&["companies", "--as-of", "2026-10-31", "--wide"]);
    assert!(wide.lines().next().unwrap().contains("TELEM 30D") && !wide.contains("--wide shows"), "{wide}");

    // Tools get exactly the rows asked for, nothing more said.
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["companies", "--as-of", "2026-10-31", "--format", "json", "--limit", "2"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    let env = quickstart();
    let mut child = env
        .command(&["companies", "--as-of", "2026-10-31", "--wide"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(out.status.code(), Some(0));
}

/// The whole road of a new operator, as README and docs/getting-started.md then
/// docs/crm/hubspot.md tell it: init, check, a first run, companies, explain; then
/// HubSpot enabled against the emulator: the token missing is caught by `check`, then
/// `check --live` asks HubSpot, a dry run against HubSpot's values, the sync, and a second sync that
/// writes nothing.
#[test]
fn the_newcomer_road_from_init_to_a_first_hubspot_sync() {
    const TOKEN: &str = "pat-na1-newcomer-token";
    let crm = common::hubspot_crm::HubSpot::running(TOKEN);
    let hs = &crm.hs;
    let acme = hs.add_company(&[("name", "Acme"), ("domain", "acme.com")]);

    let env = Env::new();
    env.ok(&["init"]);
    env.ok(&["check"]);
    let day = |d: u32, id: u32| {
        format!("{{\"source\":\"web\",\"id\":\"{id}\",\"kind\":\"download\",\"occurred_at\":\"2026-10-{d:02}T00:00:00Z\",\"company_domain\":\"acme.com\",\"version\":\"1.{id}\"}}\n")
    };
    env.write("data/october.ndjson", (1..=20).map(|i| day(i, i)).collect::<String>());
    let first = env.run(&["run", "--once", "--as-of", "2026-10-31", "--listen", "none"]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    let companies = env.ok(&["companies", "--as-of", "2026-10-31"]);
    assert!(companies.contains("acme.com"), "{companies}");
    let why = env.ok(&["explain", "acme.com", "--as-of", "2026-10-31"]);
    assert!(why.contains("acme.com"), "{why}");

    // docs/crm/hubspot.md: enable the connector, point it at HubSpot, give the token.
    std::fs::rename(env.path().join("connectors/hubspot.yaml.disabled"), env.path().join("connectors/hubspot.yaml")).unwrap();
    let file = env.path().join("connectors/hubspot.yaml");
    let text = std::fs::read_to_string(&file).unwrap().replace("# base_url: https://api.hubapi.com", &format!("base_url: {}", hs.url));
    std::fs::write(&file, text).unwrap();
    let unset = env.run(&["check"]);
    assert_eq!(unset.code, 2, "check passed without the token:\n{}", unset.stdout);
    assert!(unset.stderr.contains("HUBSPOT_TOKEN is not set"), "{}", unset.stderr);
    let token = [("HUBSPOT_TOKEN", TOKEN)];
    let checked = env.run_with(&["check"], &token);
    assert_eq!(checked.code, 0, "{}", checked.stderr);
    let live = env.run_with(&["check", "--live"], &token);
    assert_eq!(live.code, 0, "{}\n{}", live.stdout, live.stderr);
    assert!(live.stdout.lines().any(|l| l.starts_with("hubspot") && l.contains("token accepted")), "{}", live.stdout);

    let dry = env.run_with(&["sync", "--connector", "hubspot", "--dry-run", "--live", "--as-of", "2026-10-31"], &token);
    assert_eq!(dry.code, 0, "{}{}", dry.stdout, dry.stderr);
    assert!(dry.stdout.contains("acme.com"), "{}", dry.stdout);
    assert_eq!(hs.write_calls(), 0, "a dry run wrote to HubSpot");

    let sync = env.run_with(&["sync", "--connector", "hubspot", "--as-of", "2026-10-31"], &token);
    assert_eq!(sync.code, 0, "{}{}", sync.stdout, sync.stderr);
    let record = hs.company(&acme).unwrap();
    assert!(record.get("oql_stage").is_some_and(|s| !s.is_empty()), "{record:?}");
    let writes = hs.write_calls();
    let again = env.run_with(&["sync", "--connector", "hubspot", "--as-of", "2026-10-31"], &token);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert_eq!(hs.write_calls(), writes, "a second sync with nothing changed wrote again");
}

/// `log` and `sync --dry-run` fit 80 columns: columns left out by need, fields shortened,
/// errors whole on their own wrapped lines; `--wide` shows every column whole.
#[test]
fn the_sync_log_and_the_dry_run_fit_80_columns_with_errors_whole() {
    let env = quickstart();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    env.write("mappings/crm.yaml", std::fs::read(root.join("mappings/crm.yaml")).unwrap());
    env.write("connectors/crm-file.yaml", std::fs::read(root.join("connectors/crm-file.yaml")).unwrap());
    // A webhook that refuses connections: every record fails with an error to read.
    env.write(
        "connectors/events.yaml",
        "name: events-to-the-marketing-automation-webhook\nkind: webhook\nschedule: \"0 0 * * * *\"\nmapping: mappings/crm.yaml\nurl_env: OQL_TEST_DEAD_HOOK\nretry: { max_retries: 0, budget: 0 }\n",
    );
    let hook = [("OQL_TEST_DEAD_HOOK", "http://127.0.0.1:9/hooks/oql")];
    let fits = |what: &str, text: &str| {
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{what}: a line of {} columns:\n{line}\n\n{text}", line.chars().count());
        }
    };

    let dry = env.run_with(&["sync", "--dry-run", "--as-of", "2026-10-31"], &hook);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    fits("sync --dry-run", &dry.stdout);
    assert!(dry.stdout.contains('…'), "long changes are shortened:\n{}", dry.stdout);
    let dry_wide = env.run_with(&["sync", "--dry-run", "--wide", "--as-of", "2026-10-31"], &hook);
    assert!(dry_wide.stdout.lines().any(|l| l.chars().count() > 80) && !dry_wide.stdout.contains('…'), "{}", dry_wide.stdout);

    let sync = env.run_with(&["sync", "--as-of", "2026-10-31"], &hook);
    assert_ne!(sync.code, 0, "the webhook cannot be reached: {}", sync.stdout);
    let log = env.ok(&["log", "--limit", "20"]);
    fits("log", &log);
    assert!(log.contains("error: POST <webhook URL>: connection failed"), "errors are shown:\n{log}");
    assert!(log.contains("--wide shows"), "{log}");
    // Rows line up: every record row puts its outcome in the header's column.
    let header = log.lines().find(|l| l.contains("outcome")).unwrap();
    let at = header.find("outcome").unwrap();
    for row in log.lines().skip_while(|l| !l.contains("outcome")).skip(1).filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && l.split_whitespace().count() >= 3) {
        let cell = row.get(at..).unwrap_or_default();
        assert!(["accepted", "created", "failed", "dead", "trigger", "ambiguous", "not_found"].iter().any(|o| cell.starts_with(o)), "misaligned: {row:?} under {header:?}");
    }
    let wide = env.ok(&["log", "--wide", "--limit", "20"]);
    assert!(wide.lines().any(|l| l.chars().count() > 80) && !wide.contains("--wide shows"), "{wide}");
}
