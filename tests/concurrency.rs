//! One store, many processes: daemons handing over, a second `run` turned away,
//! imports, watched-folder drops, manual polls and syncs, and readers, all at once
//! against a HubSpot emulator, for several rounds. Nothing may be sent twice, no
//! activity lost, no run failed by SQLite's locking; a connector another process runs
//! is skipped, never failed. Also the single guarantees one by one: a second `run`,
//! concurrent first opens, the checkpoint at exit, `backup` and `doctor`, a full disk.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Env;
use common::hubspot_crm::{Fault, HubSpot, Running};
use serde_json::{Value, json};

const TOKEN: &str = "pat-na1-concurrency-token";
const AS_OF: &str = "2026-10-31";

fn crm() -> Running {
    HubSpot::running(TOKEN)
}

/// Activities with ids `{tag}-{i}` over 40 companies, in October 2026.
fn activities(tag: &str, n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let line = json!({
            "source": "scarf", "id": format!("{tag}-{i}"), "kind": "download",
            "occurred_at": format!("2026-10-{:02}T10:00:00Z", 1 + (i * 7 + tag.len()) % 30),
            "company_domain": format!("co{}.com", (i * 13 + tag.len() * 3) % 40),
            "package": "oqldb", "version": "1.0.0",
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

/// A config dir with a watched folder, a HubSpot sink that creates missing companies and
/// a file sink, every connector on a one-second schedule.
fn setup(hs: &HubSpot) -> Env {
    let env = Env::new();
    env.write("connectors/drops.yaml", "name: drops\nkind: export\nschedule: \"* * * * * *\"\npath: data\nsettle: 0s\n");
    env.write(
        "connectors/hs.yaml",
        format!(
            "name: hs\nkind: hubspot\nschedule: \"* * * * * *\"\nbase_url: {}\ntoken_env: HS_TOKEN\nmapping: mappings/hs.yaml\n\
             retry: {{ base_delay_ms: 20, max_delay_ms: 200 }}\n",
            hs.url
        ),
    );
    env.write(
        "mappings/hs.yaml",
        "object: companies\nmatch: { crm_field: domain }\ncreate_missing: true\n\
         stages: [interest, investigation, experimentation, ongoing_usage, inactive]\n\
         fields:\n  oql_stage: { from: stage }\n  oql_score: { from: score, round: 0 }\n",
    );
    env.write("connectors/rows.yaml", "name: rows\nkind: file\nschedule: \"* * * * * *\"\nmapping: mappings/rows.yaml\npath: out/rows.csv\n");
    env.write("mappings/rows.yaml", "object: rows\nmatch: { crm_field: domain }\nfields:\n  stage: { from: stage }\n  score: { from: score }\n");
    std::fs::create_dir_all(env.path().join("data")).unwrap();
    env
}

/// Only the HubSpot sink, over 40 companies already imported.
fn hubspot_only(hs: &HubSpot) -> Env {
    let env = setup(hs);
    std::fs::remove_file(env.path().join("connectors/drops.yaml")).unwrap();
    std::fs::remove_file(env.path().join("connectors/rows.yaml")).unwrap();
    let data = env.write("a.ndjson", activities("a", 60));
    env.ok(&["import", data.to_str().unwrap()]);
    env
}

fn spawn(env: &Env, args: &[&str]) -> Child {
    env.command(args).env("HS_TOKEN", TOKEN).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

struct Finished {
    args: String,
    code: i32,
    stdout: String,
    stderr: String,
}

fn finish(args: &str, child: Child) -> Finished {
    let out = child.wait_with_output().unwrap();
    Finished {
        args: args.to_owned(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn sigterm(child: &Child) {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
}

/// Waits for a child to exit, at most `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "process {} did not exit", child.id());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn daemon(env: &Env) -> Child {
    env.command(&["run", "--listen", "none", "--as-of", AS_OF])
        .env("HS_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Nobody reads a daemon's logs here; a pipe left unread would fill and stop it.
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until the daemon holds the store's `run` lease (its first poll ran).
fn wait_until_serving(env: &Env) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !env.run(&["doctor"]).stdout.contains("lease run:") {
        assert!(Instant::now() < deadline, "the daemon never took its lease");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn doctor_count(env: &Env, what: &str) -> i64 {
    let out = env.ok(&["doctor"]);
    let line = out.lines().find(|l| l.starts_with(what)).unwrap_or_else(|| panic!("no `{what}` in {out}"));
    line[what.len()..].trim().split(' ').next().unwrap().parse().unwrap()
}

/// Writes a drop into the watched folder whole (a rename), as exporters should.
fn drop_file(env: &Env, name: &str, text: &str) {
    let tmp = env.path().join(format!("data/.{name}.part"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, env.path().join("data").join(name)).unwrap();
}

#[test]
fn daemons_imports_polls_and_manual_syncs_on_one_store_send_nothing_twice_and_lose_nothing() {
    let c = crm();
    let env = setup(&c.hs);
    let started = Instant::now();
    let base = env.write("base.ndjson", activities("base", 200));
    env.ok(&["import", base.to_str().unwrap()]);
    let mut written = 200usize;
    let mut finished: Vec<Finished> = Vec::new();
    let mut turned_away = 0;
    let mut current = daemon(&env);
    wait_until_serving(&env);
    const ROUNDS: usize = 8;
    for round in 0..ROUNDS {
        let import = env.write(&format!("imports/round-{round}.ndjson"), activities(&format!("import{round}"), 300));
        written += 300;
        drop_file(&env, &format!("drop-{round}.ndjson"), &activities(&format!("drop{round}"), 100));
        written += 100;
        let import = import.to_str().unwrap().to_owned();
        let explain_domain = format!("co{round}.com");
        let jobs: Vec<Vec<&str>> = vec![
            vec!["import", &import],
            vec!["sync", "--connector", "hs", "--as-of", AS_OF],
            vec!["sync", "--connector", "hs", "--as-of", AS_OF],
            vec!["sync", "--as-of", AS_OF],
            vec!["poll", "--connector", "drops"],
            vec!["companies", "--as-of", AS_OF, "--format", "json"],
            vec!["log", "--limit", "5"],
            vec!["explain", &explain_domain, "--as-of", AS_OF],
        ];
        let children: Vec<(String, Child)> = jobs.iter().map(|a| (a.join(" "), spawn(&env, a))).collect();
        // A second daemon on the store is turned away, naming the first.
        let second = finish("run (second)", spawn(&env, &["run", "--listen", "none", "--as-of", AS_OF]));
        assert_eq!(second.code, 2, "a second `run` exits 2: {}", second.stderr);
        assert!(second.stderr.contains(&format!("pid {}", current.id())), "it names the holder: {}", second.stderr);
        turned_away += 1;
        for (args, child) in children {
            finished.push(finish(&args, child));
        }
        // Every other round the daemon hands over to a new one mid-flight.
        if round % 2 == 1 {
            sigterm(&current);
            assert_eq!(wait_exit(&mut current, Duration::from_secs(40)), 0, "a daemon stops cleanly");
            current = daemon(&env);
            wait_until_serving(&env);
        }
        // The daemon's schedules run between the rounds too.
        std::thread::sleep(Duration::from_millis(1500));
    }
    sigterm(&current);
    assert_eq!(wait_exit(&mut current, Duration::from_secs(40)), 0);
    // What the daemon had no round left to do, one last cycle does.
    finished.push(finish("poll (last)", spawn(&env, &["poll"])));
    finished.push(finish("sync (last)", spawn(&env, &["sync", "--as-of", AS_OF])));

    // Runs failed by locking: a process that failed, or said the store was locked.
    let locking = |f: &&Finished| f.code != 0 || f.stderr.contains("locked") || f.stderr.contains("busy");
    let failed: Vec<&Finished> = finished.iter().filter(locking).collect();
    for f in &failed {
        eprintln!("failed: oql-sync {} (exit {})\n{}\n{}", f.args, f.code, f.stdout, f.stderr);
    }
    let log: Value = serde_json::from_str(&env.ok(&["log", "--status", "failed", "--format", "json", "--limit", "1000"])).unwrap();
    let failed_runs = log["runs"].as_array().unwrap().len();
    let skipped_log: Value = serde_json::from_str(&env.ok(&["log", "--status", "skipped", "--format", "json", "--limit", "1000"])).unwrap();
    let skipped = skipped_log["runs"].as_array().unwrap().len();

    // Lost activities: every id written is in the store once.
    let stored = doctor_count(&env, "activities:") as usize;
    let lost = written.saturating_sub(stored);

    // Double sends: a company created twice, or the same values sent to one record twice.
    let mut per_domain: HashMap<String, usize> = HashMap::new();
    for (_, p) in c.hs.companies() {
        *per_domain.entry(p.get("domain").cloned().unwrap_or_default()).or_default() += 1;
    }
    let created_twice: usize = per_domain.values().map(|n| n - 1).sum();
    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    for r in c.hs.requests().iter().filter(|r| r.path == "/crm/v3/objects/companies/batch/update" && r.status < 300) {
        for input in r.body["inputs"].as_array().into_iter().flatten() {
            *sent.entry(format!("{} {}", input["id"], input["properties"])).or_default() += 1;
        }
    }
    let updated_twice: usize = sent.values().map(|n| n - 1).sum();
    let double_sends = created_twice + updated_twice;

    // And the CRM ends where the scores are.
    let companies: Value = serde_json::from_str(&env.ok(&["companies", "--as-of", AS_OF, "--format", "json"])).unwrap();
    let crm: HashMap<String, BTreeMap<String, String>> = c.hs.companies().into_iter().map(|(_, p)| (p["domain"].clone(), p)).collect();
    let mut out_of_date = Vec::new();
    for company in companies.as_array().unwrap() {
        let domain = company["domain"].as_str().unwrap();
        let score = format!("{}", company["score"].as_f64().unwrap().round() as i64);
        if crm.get(domain).and_then(|p| p.get("oql_score")) != Some(&score) {
            out_of_date.push(domain.to_owned());
        }
    }

    // Every write that reached a sink (the file written, the CRM answered) was recorded:
    // nothing is left to send.
    let plan = env.run_with(&["sync", "--dry-run", "--as-of", AS_OF], &[("HS_TOKEN", TOKEN)]);
    assert!(plan.code == 0 && plan.stdout.matches("0 companies").count() == 2, "{}\n{}", plan.stdout, plan.stderr);

    println!(
        "concurrency: {ROUNDS} rounds, {} processes, {turned_away} second daemons turned away, {written} activities written, {} runs skipped, in {:.1}s\n\
         double sends: {double_sends}; lost activities: {lost}; runs failed by locking: {} ({} failed runs in the log)",
        finished.len() + turned_away + ROUNDS / 2 + 1,
        skipped,
        started.elapsed().as_secs_f64(),
        failed.len(),
        failed_runs
    );
    assert_eq!(double_sends, 0, "records sent twice");
    assert_eq!(lost, 0, "activities lost: {written} written, {stored} stored");
    assert!(failed.is_empty() && failed_runs == 0, "runs failed");
    assert!(out_of_date.is_empty(), "companies whose CRM record lags their score: {out_of_date:?}");
    assert!(env.ok(&["doctor"]).contains("integrity: ok"));
}

#[test]
fn a_manual_sync_of_a_connector_the_daemon_is_running_is_skipped_not_sent_twice() {
    let c = crm();
    let env = hubspot_only(&c.hs);
    // HubSpot takes 3 s to answer the daemon's first create: the sync holds its lease.
    c.hs.fail_next("/crm/v3/objects/companies/batch/create", Fault::Delay(Duration::from_secs(3)), 1);
    let mut d = daemon(&env);
    let deadline = Instant::now() + Duration::from_secs(20);
    // The emulator records a request once answered: the search comes just before the
    // slow create.
    while !c.hs.requests().iter().any(|r| r.path == "/crm/v3/objects/companies/search") {
        assert!(Instant::now() < deadline, "the daemon never synced");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let manual = env.run_with(&["sync", "--connector", "hs", "--as-of", AS_OF], &[("HS_TOKEN", TOKEN)]);
    assert_eq!(manual.code, 0, "{}", manual.stderr);
    assert!(manual.stdout.contains("hs: skipped: another process runs this connector") && manual.stdout.contains(&format!("pid {}", d.id())), "{}", manual.stdout);
    // The reader commands read on while the daemon writes.
    env.ok(&["companies", "--as-of", AS_OF]);
    env.ok(&["explain", "co1.com", "--as-of", AS_OF]);
    sigterm(&d);
    assert_eq!(wait_exit(&mut d, Duration::from_secs(40)), 0);
    let creates = c.hs.requests().iter().filter(|r| r.path == "/crm/v3/objects/companies/batch/create").count();
    let seen: Vec<String> = c.hs.requests().iter().map(|r| format!("{} {} {} {}", r.method, r.path, r.status, r.body["inputs"].as_array().map_or(0, |a| a.len()))).collect();
    assert_eq!(creates, 1, "only the daemon created the companies: {seen:#?}");
    assert_eq!(c.hs.companies().len(), 40, "each company created once");
    let skipped: Value = serde_json::from_str(&env.ok(&["log", "--status", "skipped", "--format", "json"])).unwrap();
    let runs = skipped["runs"].as_array().unwrap();
    assert!(!runs.is_empty() && runs.iter().all(|r| r["connector"] == "hs" && r["status"] == "skipped"), "{skipped}");
    assert!(runs[0]["error"].as_str().unwrap().contains("held by pid"), "{skipped}");
    let failed: Value = serde_json::from_str(&env.ok(&["log", "--status", "failed", "--format", "json"])).unwrap();
    assert!(failed["runs"].as_array().unwrap().is_empty(), "a skip is no failure: {failed}");
    let table = env.ok(&["log", "--connector", "hs"]);
    assert!(table.contains("skipped"), "{table}");
}

#[test]
fn a_second_run_on_a_store_names_the_holder_and_exits_2_and_a_killed_one_frees_it() {
    let env = Env::new();
    env.write("connectors/rows.yaml", "name: rows\nkind: file\nschedule: \"0 0 0 1 1 *\"\nmapping: mappings/rows.yaml\npath: out/rows.csv\n");
    env.write("mappings/rows.yaml", "object: rows\nmatch: { crm_field: domain }\nfields:\n  stage: { from: stage }\n");
    let mut first = env.command(&["run", "--listen", "none"]).stderr(Stdio::null()).spawn().unwrap();
    wait_until_serving(&env);
    for args in [&["run", "--listen", "none"][..], &["run", "--once"][..]] {
        let second = env.run(args);
        assert_eq!(second.code, 2, "{args:?}: {}", second.stderr);
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        assert!(second.stderr.contains(&format!("pid {} on host {}", first.id(), host.trim())), "{}", second.stderr);
        assert_eq!(second.stderr.matches("another `oql-sync run`").count(), 1, "said once: {}", second.stderr);
    }
    // A daemon killed outright cannot give its lease back; a process of the same host
    // that is gone holds nothing.
    first.kill().unwrap();
    first.wait().unwrap();
    env.ok(&["run", "--once"]);
}

#[test]
fn twenty_processes_opening_a_new_store_at_once_all_succeed() {
    let env = Env::new();
    env.write("connectors/rows.yaml", "name: rows\nkind: file\nschedule: \"0 0 0 1 1 *\"\nmapping: mappings/rows.yaml\npath: out/rows.csv\n");
    env.write("mappings/rows.yaml", "object: rows\nmatch: { crm_field: domain }\nfields:\n  stage: { from: stage }\n");
    let data = env.write("a.ndjson", activities("a", 50));
    let data = data.to_str().unwrap();
    for attempt in 0..2 {
        let _ = std::fs::remove_file(env.path().join("oql.db"));
        let children: Vec<(String, Child)> = (0..20)
            .map(|i| {
                let args: &[&str] = match i % 4 {
                    0 => &["import", data],
                    1 => &["companies"],
                    2 => &["score"],
                    _ => &["log"],
                };
                (args.join(" "), spawn(&env, args))
            })
            .collect();
        for (args, child) in children {
            let f = finish(&args, child);
            assert_eq!(f.code, 0, "attempt {attempt}: oql-sync {args} failed: {}", f.stderr);
        }
        let doctor = env.ok(&["doctor"]);
        assert!(doctor.contains("(up to date)") && doctor.contains("activities: 50 "), "{doctor}");
    }
}

#[test]
fn a_clean_exit_leaves_everything_in_the_store_file_and_backup_copies_a_live_store() {
    let env = Env::new();
    let data = env.write("a.ndjson", activities("a", 500));
    env.ok(&["import", data.to_str().unwrap()]);
    let wal = env.path().join("oql.db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0, "the WAL is checkpointed at exit");
    // A copy of the store's file alone has it all.
    let copy = Env::new();
    std::fs::copy(env.path().join("oql.db"), copy.path().join("oql.db")).unwrap();
    assert!(copy.ok(&["doctor"]).contains("activities: 500 "));

    // A backup taken while another process writes is whole and sound.
    let more = env.write("b.ndjson", activities("b", 20_000));
    let writer = spawn(&env, &["import", more.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(100));
    let backup = env.path().join("backup.db");
    let out = env.ok(&["backup", backup.to_str().unwrap()]);
    assert!(out.contains("wrote a backup"), "{out}");
    assert_eq!(finish("import", writer).code, 0);
    let restored = Env::new();
    std::fs::copy(&backup, restored.path().join("oql.db")).unwrap();
    let doctor = restored.ok(&["doctor"]);
    let n = doctor_count(&restored, "activities:");
    assert!(doctor.contains("integrity: ok") && (n == 500 || n == 20_500), "{doctor}");
    // A backup never overwrites.
    let again = env.run(&["backup", backup.to_str().unwrap()]);
    assert_eq!(again.code, 2, "{}", again.stderr);
}

/// Overwrites a page in the middle of a store's file with garbage.
fn damage(db: &std::path::Path) {
    use std::io::{Seek, SeekFrom, Write};
    let len = std::fs::metadata(db).unwrap().len();
    let mut f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    f.seek(SeekFrom::Start((len / 4096 / 2) * 4096)).unwrap();
    f.write_all(&[0xA5; 4096]).unwrap();
}

#[test]
fn doctor_reports_a_damaged_store_and_import_does_not_exit_0_into_it() {
    let env = Env::new();
    let data = env.write("a.ndjson", activities("a", 20_000));
    env.ok(&["import", data.to_str().unwrap()]);
    let healthy = env.ok(&["doctor"]);
    for line in ["integrity: ok", "(up to date)", "wal: ", "activities: 20000 (0 unattributed)", "quarantined lines: 0", "leases: none", "healthy"] {
        assert!(healthy.contains(line), "{line}: {healthy}");
    }
    damage(&env.path().join("oql.db"));
    let doctor = env.run(&["doctor"]);
    assert_eq!(doctor.code, 1, "{}\n{}", doctor.stdout, doctor.stderr);
    assert!(doctor.stdout.contains("unhealthy"), "{}", doctor.stdout);
    let small = env.write("b.ndjson", activities("b", 3));
    let import = env.run(&["import", small.to_str().unwrap()]);
    assert_ne!(import.code, 0, "an import into a damaged store does not report success: {}", import.stdout);
    assert!(import.stderr.contains("damaged"), "{}", import.stderr);
}

#[test]
fn a_full_disk_stops_an_import_with_what_was_committed_and_how_to_resume_said_once() {
    // A file system of 8 MB of its own, in a mount namespace of this test's (no root
    // needed where user namespaces are allowed), then grown to resume.
    if !Command::new("unshare").args(["-rm", "true"]).status().is_ok_and(|s| s.success()) {
        eprintln!("skipped: this system allows no user and mount namespaces (unshare -rm)");
        return;
    }
    let env = Env::new();
    let first = env.write("first.ndjson", activities("first", 2_000));
    let big = env.write("big.ndjson", activities("big", 100_000));
    std::fs::create_dir_all(env.path().join("store")).unwrap();
    let script = r#"mount -t tmpfs -o size=8m tmpfs "$1/store" || exit 99
"$0" --config-dir "$1" --db "$1/store/oql.db" import "$2" "$3" > "$1/full.out" 2> "$1/full.err"; echo $? > "$1/full.code"
mount -o remount,size=200m "$1/store" || exit 98
"$0" --config-dir "$1" --db "$1/store/oql.db" import "$2" "$3" > "$1/again.out" 2> "$1/again.err"; echo $? > "$1/again.code"
"$0" --config-dir "$1" --db "$1/store/oql.db" doctor > "$1/doctor.out""#;
    let status = Command::new("unshare")
        .args(["-rm", "sh", "-c", script])
        .arg(env!("CARGO_BIN_EXE_oql-sync"))
        .arg(env.path())
        .arg(&first)
        .arg(&big)
        .env_remove("OQL_DB")
        .env_remove("RUST_LOG")
        .status()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let read = |name: &str| std::fs::read_to_string(env.path().join(name)).unwrap();
    let (stdout, stderr) = (read("full.out"), read("full.err"));
    assert_eq!(read("full.code").trim(), "1", "{stdout}\n{stderr}");
    assert!(stdout.contains("first.ndjson (ndjson): 2000 imported"), "the file done is summed up: {stdout}");
    assert_eq!(stderr.matches("the disk holding the store is full").count(), 1, "the cause said once: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("code: 13") && !stderr.contains("(code"), "in words: {stderr}");
    assert!(stderr.contains("2000 activities are committed") && stderr.contains("run the same `oql-sync import` again"), "{stderr}");
    // Resumed with room to spare, the import finishes the job.
    let again = read("again.out");
    assert_eq!(read("again.code").trim(), "0", "{again}\n{}", read("again.err"));
    assert!(again.contains("2000 duplicate") && again.contains("100000 imported"), "{again}");
    assert!(read("doctor.out").contains("activities: 102000 "), "{}", read("doctor.out"));
}

#[test]
fn store_locations_that_cannot_hold_a_store_are_said_in_plain_words() {
    let env = Env::new();
    let cases: Vec<(Vec<(&str, String)>, Vec<&str>, &str)> = vec![
        (vec![], vec!["--db", env.path().to_str().unwrap()], "it is a directory"),
        (vec![], vec!["--db", "/nonexistent-oql/store/oql.db"], "the folder /nonexistent-oql/store does not exist"),
        (vec![("OQL_DB", "/nonexistent-oql/oql.db".into())], vec![], "(set by OQL_DB)"),
        (vec![("OQL_DB", "postgres://oql:hunter2@db.internal/oql".into())], vec![], "a `postgres://` URL names another kind of database"),
    ];
    for (envs, args, expected) in cases {
        let mut c = env.command(&[]);
        c.args(&args).arg("companies");
        for (k, v) in &envs {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?} {envs:?}: {stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(!stderr.contains("code: 14") && !stderr.contains("hunter2"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}

/// Runs the binary as an unprivileged user when the tests run as root (root ignores
/// file permissions).
#[cfg(unix)]
fn as_other_user(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    if std::fs::read_to_string("/proc/self/status").unwrap_or_default().lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")) {
        cmd.uid(65534).gid(65534);
    }
    cmd
}

#[cfg(unix)]
#[test]
fn read_only_commands_work_on_a_read_only_store_and_writes_say_why_they_cannot() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let data = env.write("a.ndjson", activities("a", 200));
    env.ok(&["import", data.to_str().unwrap()]);
    // The config dir and store readable by all, writable by none.
    let mode = |p: &std::path::Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    mode(&env.path().join("oql.db"), 0o444);
    mode(&env.path().join("oql.db.lock"), 0o444);
    mode(&env.path().join("a.ndjson"), 0o444);
    mode(env.path(), 0o555);
    let run = |args: &[&str]| {
        let out = as_other_user(&mut env.command(args)).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, stdout, stderr) = run(&["companies", "--as-of", AS_OF, "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(serde_json::from_str::<Value>(&stdout).unwrap().as_array().unwrap().len() == 40, "{stdout}");
    let (code, _, stderr) = run(&["log"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(&["explain", "co1.com", "--as-of", AS_OF]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(&["import", data.to_str().unwrap()]);
    mode(env.path(), 0o755);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("permission denied: the store is read-only to this user"), "{stderr}");
}

#[test]
fn a_scheduled_run_of_a_connector_a_manual_sync_holds_is_skipped_and_the_daemon_stays_ready() {
    let c = crm();
    let env = hubspot_only(&c.hs);
    // The manual sync's create takes 4 s: the daemon's runs meanwhile find hs held.
    c.hs.fail_next("/crm/v3/objects/companies/batch/create", Fault::Delay(Duration::from_secs(4)), 1);
    let manual = spawn(&env, &["sync", "--connector", "hs", "--as-of", AS_OF]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c.hs.requests().iter().any(|r| r.path == "/crm/v3/objects/companies/search") {
        assert!(Instant::now() < deadline, "the manual sync never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut d = env
        .command(&["run", "--listen", &format!("127.0.0.1:{port}"), "--as-of", AS_OF, "--unready-after", "1"])
        .env("HS_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = loop {
        assert!(Instant::now() < deadline, "the daemon never ran hs");
        std::thread::sleep(Duration::from_millis(200));
        if let Some((200, text)) = common::http_get(&format!("http://127.0.0.1:{port}/status")) {
            let status: Value = serde_json::from_str(&text).unwrap();
            if !status["connectors"]["hs"]["last_outcome"].is_null() {
                break status;
            }
        }
    };
    assert_eq!(status["connectors"]["hs"]["last_outcome"], "skipped", "{status}");
    let (code, ready) = common::http_get(&format!("http://127.0.0.1:{port}/readyz")).unwrap();
    assert_eq!(code, 200, "a skipped run is no failure: {ready}");
    let manual = finish("sync", manual);
    assert_eq!(manual.code, 0, "{}", manual.stderr);
    sigterm(&d);
    assert_eq!(wait_exit(&mut d, Duration::from_secs(40)), 0);
    assert_eq!(c.hs.requests().iter().filter(|r| r.path == "/crm/v3/objects/companies/batch/create").count(), 1);
}
