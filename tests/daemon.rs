//! The daemon as operators run it: `run --once` on the quickstart, `init` and `check`,
//! connectors on short real schedules with the health and metrics endpoint, and a
//! graceful SIGTERM.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Env;

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else if !entry.file_name().to_string_lossy().starts_with("oql.db") {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn run_once_on_the_quickstart_polls_scores_and_syncs() {
    let env = Env::new();
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart"), env.path());
    let _ = std::fs::remove_dir_all(env.path().join("out"));
    let out = env.ok(&["run", "--once", "--as-of", "2026-10-31"]);
    assert!(out.contains("scarf: 3111 fetched, 3108 new activities"), "{out}");
    assert!(out.contains("crm-file: 33 planned, 33 sent, 33 accepted"), "{out}");
    assert!(out.contains("scored 36 companies as of 2026-10-31: 18 ongoing_usage, 6 experimentation, 9 investigation, 3 interest, 0 inactive"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.path().join("oql.db")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the store is readable by its owner only");
    }
    let csv = std::fs::read_to_string(env.path().join("out/crm.csv")).unwrap();
    assert_eq!(csv.lines().count(), 34);
    // Why a company is where it is: the numbers add up to the score and the stage.
    let e: serde_json::Value = serde_json::from_str(&env.ok(&["explain", "atlas-systems.com", "--as-of", "2026-10-31", "--format", "json"])).unwrap();
    let total: f64 = e["points"].as_array().unwrap().iter().map(|b| b["points"].as_f64().unwrap()).sum();
    assert!((total - e["score"]["score"].as_f64().unwrap()).abs() < 0.02, "{e}");
    assert_eq!(e["gates"][0]["stage"], "ongoing_usage");
    assert_eq!(e["gates"][0]["held"], true);
    assert_eq!(e["timeline"].as_array().unwrap().last().unwrap()["stage"], e["score"]["stage"]);
    assert!(e["points"].as_array().unwrap().iter().any(|b| b["capped"].as_f64().unwrap() > 0.0), "a cap bit: {e}");
    let text = env.ok(&["explain", "atlas-systems.com", "--as-of", "2026-10-31"]);
    assert!(text.contains("is in ongoing_usage since") && text.contains("[x] ongoing_usage") && text.contains("held back by the caps"), "{text}");
    let missing = env.run(&["explain", "nobody.example", "--as-of", "2026-10-31"]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("nobody.example has no attributed activity"), "{}", missing.stderr);
    // A second cycle finds nothing new and writes nothing.
    let again = env.ok(&["run", "--once", "--as-of", "2026-10-31"]);
    assert!(again.contains("scarf: 0 fetched, 0 new activities") && again.contains("crm-file: 0 planned"), "{again}");
}

#[test]
fn init_writes_a_starter_config_that_check_accepts() {
    let env = Env::new();
    let dir = env.path().join("fresh");
    let out = env.ok(&["init", dir.to_str().unwrap()]);
    assert!(out.contains("connectors/exports.yaml") && out.contains("connectors/hubspot.yaml.disabled"), "{out}");
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_oql-sync")).args(["--config-dir", dir.to_str().unwrap(), "check"]).output().unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{text}");
    assert!(text.contains("is valid: 2 connectors") && text.contains("exports") && text.contains("next 20"), "{text}");
    // A second init leaves what exists alone, and says so.
    let again = env.ok(&["init", dir.to_str().unwrap()]);
    assert!(!again.contains("wrote ") && again.contains("kept ") && again.contains("nothing written"), "{again}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn the_daemon_runs_connectors_on_schedule_reports_metrics_and_stops_on_sigterm() {
    let env = Env::new();
    env.write("connectors/drops.yaml", "name: drops\nkind: export\nschedule: \"* * * * * *\"\npath: data\n");
    env.write("connectors/rows.yaml", "name: rows\nkind: file\nschedule: \"*/2 * * * * *\"\nmapping: mappings/rows.yaml\npath: out/rows.csv\n");
    env.write("mappings/rows.yaml", "object: rows\nmatch: { crm_field: domain }\nfields:\n  stage: { from: stage }\n");
    let today = chrono::Utc::now().date_naive();
    env.write(
        "data/web.ndjson",
        format!("{{\"source\":\"web\",\"id\":\"1\",\"kind\":\"download\",\"occurred_at\":\"{today}T00:00:00Z\",\"company_domain\":\"acme.com\",\"version\":\"1.0\"}}\n"),
    );
    let port = free_port();
    let mut child = env
        .command(&["run", "--listen", &format!("127.0.0.1:{port}"), "--log-format", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let metrics = loop {
        assert!(started.elapsed() < Duration::from_secs(30), "the daemon never synced");
        std::thread::sleep(Duration::from_millis(300));
        if let Some((200, text)) = common::http_get(&format!("{base}/metrics")) {
            if text.contains("oql_sync_records_total{connector=\"rows\",outcome=\"accepted\"} 1") {
                break text;
            }
        }
    };
    assert!(metrics.contains("oql_activities{source=\"web\"} 1"), "{metrics}");
    assert!(metrics.contains("oql_companies{stage=\"investigation\"} 1"), "{metrics}");
    assert!(metrics.contains("oql_runs_total{connector=\"drops\",status=\"ok\"}"), "{metrics}");
    assert!(metrics.contains("# TYPE oql_api_calls_total counter"), "{metrics}");
    let (code, health) = common::http_get(&format!("{base}/healthz")).unwrap();
    assert_eq!(code, 200);
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["store"], true);
    assert_eq!(health["connectors"]["drops"]["last_outcome"], "ok");
    assert!(health["connectors"]["rows"]["runs"].as_u64().unwrap() >= 1);
    let (_, status) = common::http_get(&format!("{base}/status")).unwrap();
    assert!(status.contains("\"companies_by_stage\""), "{status}");
    assert_eq!(std::fs::read_to_string(env.path().join("out/rows.csv")).unwrap(), "domain,stage\nacme.com,investigation\n");

    // SIGTERM: the daemon stops scheduling, lets runs finish and exits 0.
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0));
    let mut logs = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut logs).unwrap();
    assert!(logs.lines().any(|l| l.starts_with('{') && l.contains("sync run done")), "JSON logs with a sync summary: {logs}");
    assert!(logs.contains("stopped cleanly"), "{logs}");
}

#[test]
fn a_shutdown_in_the_middle_of_a_sync_lets_the_batch_finish_and_loses_nothing() {
    use common::hubspot_crm::{Fault, HubSpot};
    let crm = HubSpot::running("daemon-token");
    let hs = &crm.hs;
    let id = hs.add_company(&[("domain", "acme.com")]);
    let env = Env::new();
    env.write("mappings/hs.yaml", "object: companies\nmatch: { crm_field: domain }\nfields:\n  oql_stage: { from: stage }\n");
    env.write(
        "connectors/hs.yaml",
        format!("name: hs\nkind: hubspot\nschedule: \"* * * * * *\"\nbase_url: {}\ntoken_env: HS_TOKEN\nmapping: mappings/hs.yaml\n", hs.url),
    );
    let today = chrono::Utc::now().date_naive();
    let data = env.write(
        "data.ndjson",
        format!("{{\"source\":\"web\",\"id\":\"1\",\"kind\":\"download\",\"occurred_at\":\"{today}T00:00:00Z\",\"company_domain\":\"acme.com\",\"version\":\"1.0\"}}\n"),
    );
    env.ok(&["import", data.to_str().unwrap()]);
    // HubSpot takes 2 s to answer the write; SIGTERM arrives while it is in flight.
    hs.fail_next("/crm/v3/objects/companies/batch/update", Fault::Delay(Duration::from_secs(2)), 1);
    let mut child = env.command(&["run", "--listen", "none"]).env("HS_TOKEN", "daemon-token").stderr(std::process::Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while !hs.requests().iter().any(|r| r.path == "/crm/v3/objects/companies/search") {
        assert!(started.elapsed() < Duration::from_secs(20), "the sync never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(hs.company(&id).unwrap()["oql_stage"], "investigation");
    // The confirmed write was recorded before exiting: nothing is left to send.
    let plan = env.run_with(&["sync", "--dry-run"], &[]);
    assert!(plan.stdout.contains("0 companies"), "{}", plan.stdout);
}

#[test]
fn a_cycle_after_new_activity_rescores_only_the_companies_it_touched_and_matches_a_full_rescore() {
    let env = Env::new();
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart"), env.path());
    let _ = std::fs::remove_dir_all(env.path().join("out"));
    env.ok(&["run", "--once", "--as-of", "2026-10-31"]);
    // A new drop touches one company (a quiet one that wakes up).
    env.write(
        "data/late.ndjson",
        "{\"source\":\"web\",\"id\":\"late-1\",\"kind\":\"download\",\"occurred_at\":\"2026-10-30T09:00:00Z\",\"company_domain\":\"delta-systems.com\",\"version\":\"2.5.0\"}\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oql-sync"))
        .args(["--config-dir", env.path().to_str().unwrap(), "run", "--once", "--as-of", "2026-10-31"])
        .env("RUST_LOG", "oql_sync::cycle=info")
        .output()
        .unwrap();
    assert!(out.status.success());
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("rescored=1"), "one company recomputed: {logs}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("crm-file: 1 planned"), "{stdout}");
    // The persisted scores equal a full recomputation.
    let incremental = env.companies_json("2026-10-31");
    env.ok(&["score", "--as-of", "2026-10-31"]);
    assert_eq!(env.companies_json("2026-10-31"), incremental);
}
