//! What an operator watches: JSON logs that carry everything, the daemon's start lines,
//! SIGHUP reloads, liveness apart from readiness, and the metrics a Grafana dashboard
//! draws. Every test runs the real binary.

mod common;

use std::io::Read;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Env;
use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn get(url: &str) -> Option<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let r = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().ok()?.get(url).send().await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    })
}

/// Each stderr line as JSON; panics on a line that is not one JSON object with the
/// message at the top level.
fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\nin:\n{stderr}"));
            assert!(v["message"].is_string() && v["level"].is_string(), "message and level at the top level: {l}");
            v
        })
        .collect()
}

/// A daemon on a free port with JSON logs, its stderr collected as it comes.
struct Daemon {
    child: Child,
    base: String,
    logs: Arc<Mutex<String>>,
}

impl Daemon {
    fn start(env: &Env, listen: &str, port: u16, extra: &[&str]) -> Daemon {
        let mut args = vec!["--log-format", "json", "run", "--listen", listen];
        args.extend_from_slice(extra);
        let mut child = env.command(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Daemon { child, base: format!("http://127.0.0.1:{port}"), logs }
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        get(&format!("{}{path}", self.base))
    }

    /// Waits (at most 30 s) until `done` holds; panics with the logs otherwise.
    fn wait_for<T>(&mut self, what: &str, mut done: impl FnMut(&Daemon) -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(v) = done(self) {
                return v;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the daemon exited ({status}) waiting for {what}:\n{}", self.logs());
            }
            assert!(started.elapsed() < Duration::from_secs(30), "timed out waiting for {what}:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// The complete lines logged so far, as JSON.
    fn log_lines(&self) -> Vec<Value> {
        let logs = self.logs();
        let complete = &logs[..logs.rfind('\n').map_or(0, |i| i + 1)];
        json_lines(complete)
    }

    fn signal(&self, name: &str) {
        assert!(std::process::Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status().unwrap().success());
    }

    /// SIGTERM, and the exit code once it stopped.
    fn stop(mut self) -> (Option<i32>, String) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "the daemon did not stop");
            std::thread::sleep(Duration::from_millis(100));
        };
        std::thread::sleep(Duration::from_millis(100));
        (status.code(), self.logs())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn activity(id: &str, day: &str, company: Option<&str>) -> String {
    let company = company.map(|c| format!(",\"company_domain\":\"{c}\"")).unwrap_or_default();
    format!("{{\"source\":\"web\",\"id\":\"{id}\",\"kind\":\"download\",\"occurred_at\":\"{day}T00:00:00Z\"{company},\"version\":\"1.0\"}}\n")
}

/// A file sink `rows` on `schedule`; its output is `out/rows.csv`.
fn file_sink(env: &Env, schedule: &str) {
    env.write("connectors/rows.yaml", format!("name: rows\nkind: file\nschedule: \"{schedule}\"\nmapping: mappings/rows.yaml\npath: out/rows.csv\n"));
    env.write("mappings/rows.yaml", "object: rows\nmatch: { crm_field: domain }\nfields:\n  stage: { from: stage }\n");
}

/// A file sink that cannot write: its output path is a folder.
fn blocked_file_sink(env: &Env, schedule: &str) {
    file_sink(env, schedule);
    env.write("out/rows.csv/keep", "a folder where the sink's file should be\n");
}

/// The value of one series in a Prometheus text page.
fn value(metrics: &str, series: &str) -> f64 {
    let line = metrics.lines().find(|l| l.strip_prefix(series).is_some_and(|r| r.starts_with(' '))).unwrap_or_else(|| panic!("no {series}:\n{metrics}"));
    line[series.len()..].trim().parse().unwrap()
}

fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

#[test]
fn json_logs_carry_run_summaries_and_the_fatal_error_with_the_message_at_the_top() {
    let env = Env::new();
    env.write("connectors/drops.yaml", "name: drops\nkind: export\nschedule: \"0 0 * * * *\"\npath: data\n");
    blocked_file_sink(&env, "0 0 * * * *");
    env.write("data/web.ndjson", activity("1", "2026-10-20", Some("acme.com")));
    let run = env.run(&["--log-format", "json", "run", "--once", "--as-of", "2026-10-30", "--listen", "none"]);
    assert_eq!(run.code, 1, "the file sink cannot write:\n{}\n{}", run.stdout, run.stderr);
    let lines = json_lines(&run.stderr);
    let poll = lines.iter().find(|l| l["message"] == "poll run done").expect("a poll summary");
    assert_eq!((poll["level"].as_str(), poll["connector"].as_str(), poll["new"].as_i64()), (Some("INFO"), Some("drops"), Some(1)), "{poll}");
    let sync: Vec<&Value> = lines.iter().filter(|l| l["message"] == "sync run done").collect();
    assert_eq!(sync.len(), 1, "{}", run.stderr);
    assert_eq!((sync[0]["level"].as_str(), sync[0]["status"].as_str()), (Some("ERROR"), Some("failed")), "{}", sync[0]);
    assert!(sync[0]["error"].as_str().unwrap().contains("rows.csv"), "{}", sync[0]);
    // Nothing at INFO tells of the failed run as if it went well.
    let first_error = lines.iter().position(|l| l["level"] == "ERROR").unwrap();
    assert!(
        !lines[first_error..].iter().any(|l| l["level"] == "INFO" && l["connector"] == "rows" && l["failed"] == 0),
        "{}",
        run.stderr
    );
    let fatal = lines.last().unwrap();
    assert_eq!((fatal["level"].as_str(), fatal["exit_code"].as_i64()), (Some("ERROR"), Some(1)), "{fatal}");
    assert!(fatal["message"].as_str().unwrap().contains("some connectors failed"), "{fatal}");

    // So does a usage error.
    let usage = env.run(&["--log-format", "json", "companies", "--as-of", "2026-13-01"]);
    assert_eq!(usage.code, 2, "{}", usage.stderr);
    let lines = json_lines(&usage.stderr);
    assert_eq!(lines.len(), 1, "{}", usage.stderr);
    assert!(lines[0]["message"].as_str().unwrap().contains("`2026-13-01` is not a date"), "{}", lines[0]);

    // A config error ends as one JSON line too, with exit code 2.
    env.write("connectors/typo.yaml", "name: typo\nkind: hubspt\nschedule: \"0 0 * * * *\"\n");
    let check = env.run(&["--log-format", "json", "check"]);
    assert_eq!(check.code, 2, "{}", check.stderr);
    let lines = json_lines(&check.stderr);
    let fatal = lines.last().unwrap();
    assert_eq!(fatal["exit_code"], 2, "{fatal}");
    assert!(fatal["message"].as_str().unwrap().contains("typo.yaml"), "{fatal}");
}

#[test]
fn the_daemon_logs_what_it_runs_and_brings_stale_scores_up_to_date_at_start() {
    let env = Env::new();
    // Yearly: nothing runs during the test but what the start does.
    env.write("connectors/drops.yaml", "name: drops\nkind: export\nschedule: \"0 0 0 1 1 *\"\npath: data\n");
    let today = today();
    let yesterday = today.pred_opt().unwrap();
    let file = env.write("web.ndjson", activity("1", &yesterday.to_string(), Some("acme.com")));
    env.ok(&["import", file.to_str().unwrap()]);
    env.ok(&["score", "--as-of", &yesterday.to_string()]);
    let port = free_port();
    let mut daemon = Daemon::start(&env, &format!("127.0.0.1:{port}"), port, &[]);
    daemon.wait_for("/readyz 200", |d| d.get("/readyz").filter(|(code, _)| *code == 200));
    let (_, status) = daemon.get("/status").unwrap();
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["scores_as_of"], today.to_string(), "scores are today's after the start: {status}");
    let lines = daemon.log_lines();
    let start = lines.iter().find(|l| l["message"] == "oql-sync daemon starting").expect("a start line");
    assert_eq!(start["version"], env!("CARGO_PKG_VERSION"), "{start}");
    assert!(start["commit"].as_str().is_some_and(|c| !c.is_empty()), "{start}");
    assert_eq!(start["config_dir"], env.path().display().to_string(), "{start}");
    assert!(start["store"].as_str().unwrap().ends_with("oql.db"), "{start}");
    let drops = lines.iter().find(|l| l["message"] == "connector scheduled" && l["connector"] == "drops").expect("the connector's line");
    let next_year = chrono::Datelike::year(&today) + 1;
    assert!(drops["next_run"].as_str().unwrap().starts_with(&format!("{next_year}-01-01T00:00:00")), "{drops}");
    let rescored = lines.iter().find(|l| l["message"] == "scores brought up to date").expect("the rescore is said");
    assert_eq!(rescored["was_as_of"], yesterday.to_string(), "{rescored}");
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn sighup_reloads_a_checked_config_and_keeps_the_running_one_on_error() {
    let env = Env::new();
    env.write("connectors/drops.yaml", "name: drops\nkind: export\nschedule: \"0 0 0 1 1 *\"\npath: data\n");
    let file = env.write("data/web.ndjson", activity("1", &today().to_string(), Some("acme.com")));
    env.ok(&["import", file.to_str().unwrap()]);
    let port = free_port();
    let mut daemon = Daemon::start(&env, &format!("127.0.0.1:{port}"), port, &[]);
    daemon.wait_for("/readyz 200", |d| d.get("/readyz").filter(|(code, _)| *code == 200));
    let connectors = |d: &Daemon| -> Vec<String> {
        let (_, body) = d.get("/healthz").unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        v["connectors"].as_object().unwrap().keys().cloned().collect()
    };

    // A typo: the reload is refused, said at ERROR, and the running config stays.
    env.write("connectors/typo.yaml", "name: typo\nkind: hubspt\nschedule: \"0 0 * * * *\"\n");
    daemon.signal("HUP");
    let refused = daemon.wait_for("the refusal", |d| {
        d.log_lines().into_iter().find(|l| l["level"] == "ERROR" && l["message"].as_str().unwrap().contains("config not reloaded"))
    });
    assert!(refused["message"].as_str().unwrap().contains("typo.yaml"), "{refused}");
    assert_eq!(connectors(&daemon), ["drops"]);

    // A secret that is not set is refused the same way (checked as at start).
    std::fs::remove_file(env.path().join("connectors/typo.yaml")).unwrap();
    env.write(
        "connectors/hubspot.yaml",
        "name: hubspot\nkind: hubspot\nschedule: \"0 0 * * * *\"\ntoken_env: OQL_TEST_TOKEN_NOT_SET\nmapping: mappings/rows.yaml\n",
    );
    env.write("mappings/rows.yaml", "object: rows\nmatch: { crm_field: domain }\nfields:\n  stage: { from: stage }\n");
    daemon.signal("HUP");
    daemon.wait_for("the second refusal", |d| {
        d.log_lines().into_iter().find(|l| l["level"] == "ERROR" && l["message"].as_str().unwrap().contains("OQL_TEST_TOKEN_NOT_SET"))
    });
    assert_eq!(connectors(&daemon), ["drops"]);

    // A good config: the new connector is scheduled and runs.
    std::fs::remove_file(env.path().join("connectors/hubspot.yaml")).unwrap();
    file_sink(&env, "* * * * * *");
    daemon.signal("HUP");
    daemon.wait_for("the new connector's first run", |_| std::fs::read_to_string(env.path().join("out/rows.csv")).ok().filter(|t| t.contains("acme.com")));
    assert_eq!(connectors(&daemon), ["drops", "rows"]);
    assert!(daemon.log_lines().iter().any(|l| l["message"] == "config reloaded" && l["level"] == "INFO"), "{}", daemon.logs());
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn readiness_fails_after_runs_failing_in_a_row_while_liveness_and_healthz_hold() {
    let env = Env::new();
    blocked_file_sink(&env, "* * * * * *");
    let file = env.write("web.ndjson", activity("1", &today().to_string(), Some("acme.com")));
    env.ok(&["import", file.to_str().unwrap()]);
    let port = free_port();
    // `:PORT`: every interface, asked here on loopback.
    let mut daemon = Daemon::start(&env, &format!(":{port}"), port, &["--unready-after", "2"]);
    let (_, reason) = daemon.wait_for("/readyz 503", |d| d.get("/readyz").filter(|(code, _)| *code == 503));
    let reason: Value = serde_json::from_str(&reason).unwrap();
    let text = reason["status"].as_str().unwrap();
    assert!(text.starts_with("not ready: connector rows failed its last ") && text.contains("runs in a row") && text.contains("rows.csv"), "{reason}");
    assert_eq!(daemon.get("/livez").unwrap().0, 200);
    let (code, health) = daemon.get("/healthz").unwrap();
    assert_eq!(code, 200, "/healthz keeps its meaning (the store answers): {health}");
    let metrics = daemon.get("/metrics").unwrap().1;
    assert!(metrics.contains("oql_ready 0\n"), "{metrics}");
    let failing = value(&metrics, "oql_connector_failing_runs{connector=\"rows\"}");
    assert!(failing >= 2.0, "{metrics}");

    // The folder goes: the next run writes, and the daemon is ready again.
    std::fs::remove_dir_all(env.path().join("out/rows.csv")).unwrap();
    daemon.wait_for("/readyz 200 again", |d| d.get("/readyz").filter(|(code, _)| *code == 200));
    assert!(daemon.get("/metrics").unwrap().1.contains("oql_connector_failing_runs{connector=\"rows\"} 0\n"));
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));

    // A restart on a failing connector starts not ready: the streak is read from the log.
    std::fs::remove_file(env.path().join("out/rows.csv")).unwrap();
    blocked_file_sink(&env, "0 0 0 1 1 *");
    // A new field: the next syncs have something to write, and fail to.
    env.write("mappings/rows.yaml", "object: rows\nmatch: { crm_field: domain }\nfields:\n  stage: { from: stage }\n  score: { from: score }\n");
    for _ in 0..2 {
        assert_eq!(env.run(&["sync"]).code, 1);
    }
    let port = free_port();
    let mut daemon = Daemon::start(&env, &format!("127.0.0.1:{port}"), port, &["--unready-after", "2"]);
    let (_, body) = daemon.wait_for("/readyz answers", |d| d.get("/readyz"));
    assert!(body.contains("connector rows failed its last 2 runs in a row"), "{body}");
}

#[test]
fn metrics_cover_every_stage_the_build_successes_quarantine_and_unattributed_and_the_dashboard_uses_only_them() {
    let env = Env::new();
    file_sink(&env, "* * * * * *");
    let mut lines = activity("1", &today().to_string(), Some("acme.com"));
    lines.push_str(&activity("2", &today().to_string(), None).replace("\"version\"", "\"actor\":\"someone\",\"version\""));
    lines.push_str("{\"source\":\"web\",\"id\":\"3\",\"kind\":\"teleport\",\"occurred_at\":\"2026-10-01T00:00:00Z\"}\n");
    let file = env.write("web.ndjson", lines);
    env.ok(&["import", file.to_str().unwrap()]);
    let port = free_port();
    let mut daemon = Daemon::start(&env, &format!("localhost:{port}"), port, &[]);
    let metrics = daemon.wait_for("a good run in the metrics", |d| {
        d.get("/metrics").map(|(_, m)| m).filter(|m| m.contains("oql_last_success_timestamp_seconds{connector=\"rows\"} 1"))
    });
    for stage in ["interest", "investigation", "experimentation", "ongoing_usage", "inactive"] {
        let expected = if stage == "investigation" { 1 } else { 0 };
        assert!(metrics.contains(&format!("oql_companies{{stage=\"{stage}\"}} {expected}\n")), "{stage}: {metrics}");
    }
    assert!(metrics.contains(&format!("oql_build_info{{version=\"{}\",commit=\"", env!("CARGO_PKG_VERSION"))), "{metrics}");
    assert!(metrics.contains("oql_quarantined_lines 1\n"), "{metrics}");
    assert!(metrics.contains("oql_unattributed_activities 1\n"), "{metrics}");
    assert!(metrics.contains("oql_ready 1\n"), "{metrics}");
    let success = value(&metrics, "oql_last_success_timestamp_seconds{connector=\"rows\"}");
    let now = chrono::Utc::now().timestamp() as f64;
    assert!((now - 60.0..=now + 1.0).contains(&success), "{success} vs {now}");

    // Counts kept between scrapes are read again once the data changed.
    let more = env.write("more.ndjson", activity("4", &today().to_string(), None).replace("\"version\"", "\"actor\":\"another\",\"version\""));
    env.ok(&["import", more.to_str().unwrap()]);
    let metrics = daemon.get("/metrics").unwrap().1;
    assert!(metrics.contains("oql_unattributed_activities 2\n") && metrics.contains("oql_activities{source=\"web\"} 3\n"), "{metrics}");

    let (code, index) = daemon.get("/endpoints").unwrap();
    assert_eq!(code, 200);
    for path in ["/livez", "/readyz", "/healthz", "/metrics", "/status", "/"] {
        assert!(index.lines().any(|l| l.starts_with(&format!("{path} "))), "{path} listed: {index}");
    }
    // `oql-sync health` takes the same address forms.
    for listen in [format!("localhost:{port}"), format!(":{port}")] {
        let out = env.ok(&["health", "--listen", &listen]);
        assert!(out.starts_with("healthy:"), "{out}");
    }

    // Every metric the dashboard queries is one the daemon exports.
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/oql-sync.json")).unwrap()).unwrap();
    let mut names = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("oql_") {
                let name: String = rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                rest = &rest[i + name.len()..];
                names.push(name);
            }
        }
    }
    assert!(names.len() >= 10, "{names:?}");
    for name in &names {
        assert!(metrics.contains(&format!("# TYPE {name} ")), "the dashboard queries {name}, which /metrics does not export:\n{metrics}");
    }
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
}
