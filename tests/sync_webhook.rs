//! The `webhook` and `file` sinks and `webhook` trigger actions, against a small local
//! receiver that records what it is sent.

mod common;

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::Env;
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Received {
    events: Arc<Mutex<Vec<(Option<String>, Value)>>>,
    /// Answer this many requests with 503 first.
    fail_first: Arc<Mutex<usize>>,
}

struct Receiver {
    url: String,
    got: Received,
    _rt: tokio::runtime::Runtime,
}

fn receiver() -> Receiver {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let got = Received::default();
    let state = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: axum::Json<Value>| {
            let state = state.clone();
            async move {
                let mut fail = state.fail_first.lock().unwrap();
                if *fail > 0 {
                    *fail -= 1;
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
                state.events.lock().unwrap().push((key, body.0));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, got, _rt: rt }
}

/// `busy.com` is experimenting on 2026-10-30 and inactive 61 days after its last
/// activity; `quiet.com` is only an investigation.
fn data() -> String {
    let mut out = String::new();
    let mut line = |domain: &str, id: &str, kind: &str, day: &str| {
        let mut a = json!({"source": "web", "id": id, "kind": kind, "occurred_at": format!("{day}T09:00:00Z"), "company_domain": domain});
        if kind == "download" {
            a["package"] = json!("oqldb");
            a["version"] = json!("1.2.0");
        } else {
            a["url"] = json!("/docs/start");
        }
        out.push_str(&format!("{a}\n"));
    };
    for (i, day) in ["2026-10-01", "2026-10-02", "2026-10-05", "2026-10-06", "2026-10-07", "2026-10-08", "2026-10-09", "2026-10-10"].iter().enumerate() {
        line("busy.com", &format!("d{i}"), "download", day);
        line("busy.com", &format!("v{i}"), "doc_view", day);
    }
    line("quiet.com", "q1", "download", "2026-10-20");
    out
}

#[test]
fn the_webhook_sink_posts_changed_companies_with_stable_idempotency_keys() {
    let r = receiver();
    let env = Env::new();
    env.write("mappings/events.yaml", "object: events\nmatch: { crm_field: domain }\nfields:\n  stage: { from: stage }\n  score: { from: score }\n");
    env.write(
        "connectors/events.yaml",
        format!("name: events\nkind: webhook\nschedule: \"0 0 * * * *\"\nmapping: mappings/events.yaml\nurl: {}\nretry: {{ base_delay_ms: 10 }}\n", r.url),
    );
    let data = env.write("data.ndjson", data());
    env.ok(&["import", data.to_str().unwrap()]);
    *r.got.fail_first.lock().unwrap() = 2;
    let out = env.ok(&["sync", "--as-of", "2026-10-30"]);
    assert!(out.contains("events: 2 planned, 2 sent, 2 accepted"), "{out}");
    let events = r.got.events.lock().unwrap().clone();
    assert_eq!(events.len(), 2, "503s were retried, each company delivered once");
    let busy = events.iter().find(|(_, e)| e["company"] == "busy.com").unwrap();
    assert_eq!(busy.1["type"], "oql.company.updated");
    assert_eq!(busy.1["fields"]["stage"], "experimentation");
    assert_eq!(busy.1["signals"]["domain"], "busy.com");
    assert_eq!(busy.0.as_deref(), busy.1["id"].as_str(), "the Idempotency-Key header is the event id");
    env.ok(&["sync", "--as-of", "2026-10-30"]);
    assert_eq!(r.got.events.lock().unwrap().len(), 2, "nothing changed, nothing sent");
}

#[test]
fn a_webhook_trigger_fires_once_per_stage_change_with_the_score_breakdown() {
    let r = receiver();
    let env = Env::new();
    env.write(
        "mappings/rows.yaml",
        "object: rows\nmatch: { crm_field: domain }\nstages: [experimentation, ongoing_usage, inactive]\nfirst_sync: fire\n\
         fields:\n  stage: { from: stage }\ntriggers:\n  - when: { from: experimentation, to: inactive }\n    \
         action: { webhook: { url_env: CHURN_HOOK } }\n  - when: { to: experimentation }\n    action: { webhook: { url_env: CHURN_HOOK } }\n",
    );
    env.write("connectors/rows.yaml", "name: rows\nkind: file\nschedule: \"0 0 * * * *\"\nmapping: mappings/rows.yaml\npath: out/rows.ndjson\n");
    let data = env.write("data.ndjson", data());
    env.ok(&["import", data.to_str().unwrap()]);
    let hook = [("CHURN_HOOK", r.url.as_str())];
    let first = env.run_with(&["sync", "--as-of", "2026-10-30"], &hook);
    assert!(first.stdout.contains("1 triggers fired"), "{}", first.stdout);
    let rows = std::fs::read_to_string(env.path().join("out/rows.ndjson")).unwrap();
    assert_eq!(rows, "{\"domain\":\"busy.com\",\"stage\":\"experimentation\"}\n", "quiet.com is not in a pushed stage");

    // 61 days after its last activity busy.com is inactive: the churn trigger fires.
    let later = env.run_with(&["sync", "--as-of", "2026-12-10"], &hook);
    assert!(later.stdout.contains("1 triggers fired"), "{}", later.stdout);
    env.run_with(&["sync", "--as-of", "2026-12-10"], &hook);
    let events = r.got.events.lock().unwrap().clone();
    assert_eq!(events.len(), 2, "one event per change: {events:?}");
    let (key, churn) = &events[1];
    assert_eq!((churn["from"].as_str(), churn["to"].as_str()), (Some("experimentation"), Some("inactive")));
    assert_eq!(churn["type"], "oql.stage_changed");
    assert_eq!(key.as_deref(), churn["id"].as_str());
    assert_ne!(events[0].0, events[1].0);
    let (_, entered) = &events[0];
    let breakdown = entered["breakdown"].as_array().unwrap();
    let total: f64 = breakdown.iter().map(|b| b["points"].as_f64().unwrap()).sum();
    assert!((total - entered["score"].as_f64().unwrap()).abs() < 0.02, "{entered}");
    assert!(breakdown.iter().any(|b| b["category"] == "downloads" && b["tier"] == "medium"));
    let log = env.ok(&["log", "--status", "trigger"]);
    assert!(log.contains("busy.com") && log.contains("experimentation → inactive"), "{log}");
    assert!(!log.contains(&r.url), "the webhook URL came from the environment and stays out of the log");
}

#[test]
fn a_missing_webhook_variable_fails_the_trigger_clearly_and_it_fires_later() {
    let r = receiver();
    let env = Env::new();
    env.write(
        "mappings/rows.yaml",
        "object: rows\nmatch: { crm_field: domain }\nfirst_sync: fire\nfields:\n  stage: { from: stage }\ntriggers:\n  - when: { to: experimentation }\n    action: { webhook: { url_env: HOOK_URL } }\n",
    );
    env.write("connectors/rows.yaml", "name: rows\nkind: file\nschedule: \"0 0 * * * *\"\nmapping: mappings/rows.yaml\npath: out/rows.csv\n");
    let data = env.write("data.ndjson", data());
    env.ok(&["import", data.to_str().unwrap()]);
    let first = env.run(&["sync", "--as-of", "2026-10-30"]);
    assert_eq!(first.code, 1);
    assert!(first.stdout.contains("(1 failed)"), "{}", first.stdout);
    let failed = env.ok(&["log", "--status", "failed"]);
    assert!(failed.contains("environment variable HOOK_URL is not set"), "{failed}");
    let again = env.run_with(&["sync", "--as-of", "2026-10-30"], &[("HOOK_URL", r.url.as_str())]);
    assert_eq!(again.code, 0, "{}", again.stdout);
    assert_eq!(r.got.events.lock().unwrap().len(), 1);
}

#[test]
fn broken_mappings_are_rejected_with_file_and_line_before_anything_runs() {
    let env = Env::new();
    env.write(
        "mappings/bad.yaml",
        "object: rows\nmatch: { crm_field: domain }\nfields:\n  stage: { from: stage }\n  level: { from: stge }\n",
    );
    let r = env.run(&["companies"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("bad.yaml:5:") && r.stderr.contains("unknown signal `stge`"), "{}", r.stderr);

    env.write("mappings/bad.yaml", "object: rows\nmatch: { crm_field: domain }\nfields:\n  stage:\n    from: stage\n    values: { interest: I }\n");
    let r = env.run(&["companies"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("bad.yaml:6:5: fields.stage.values: has no value for investigation"), "{}", r.stderr);

    env.write("mappings/bad.yaml", "object: rows\nmatch: { crm_field: domain }\nfields:\n  Stage: { from: stage }\n  stage: { from: peak_stage }\n");
    let r = env.run(&["companies"]);
    assert!(r.stderr.contains("bad.yaml:5:3: fields.stage: duplicate CRM field"), "{}", r.stderr);

    env.write("mappings/bad.yaml", "object: rows\nmatch: { crm_field: domain }\nfields:\n  stage: { from: stage }\n");
    env.write("connectors/rows.yaml", "name: rows\nkind: file\nschedule: \"0 0 * * * *\"\nmapping: mappings/nope.yaml\npath: out/rows.csv\n");
    let r = env.run(&["companies"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("rows.yaml:4:1: mapping `mappings/nope.yaml` is not a file"), "{}", r.stderr);
}

#[test]
fn the_shipped_example_config_loads() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let env = Env::new();
    for dir in ["connectors", "mappings"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            env.write(&format!("{dir}/{}", path.file_name().unwrap().to_string_lossy()), std::fs::read(&path).unwrap());
        }
    }
    env.ok(&["companies"]);
    let plan = env.run(&["sync", "--dry-run"]);
    assert_eq!(plan.code, 0, "a dry run needs no token: {}", plan.stderr);
}

#[test]
fn a_webhook_trigger_text_renders_its_template_with_the_signals() {
    let r = receiver();
    let env = Env::new();
    env.write(
        "mappings/rows.yaml",
        "object: rows\nmatch: { crm_field: domain }\nstages: [experimentation]\nfields:\n  stage: { from: stage }\ntriggers:\n  - when: { to: experimentation }\n    \
         action:\n      webhook:\n        url_env: HOOK\n        text: \"{{ company }}: {{ from or 'new' }} -> {{ to }} ({{ score }}, {{ trend }}). {{ reason }}\"\n",
    );
    env.write("connectors/rows.yaml", "name: rows\nkind: file\nschedule: \"0 0 * * * *\"\nmapping: mappings/rows.yaml\npath: out/rows.ndjson\n");
    let data = env.write("data.ndjson", data());
    env.ok(&["import", data.to_str().unwrap()]);
    let run = env.run_with(&["sync", "--as-of", "2026-10-30"], &[("HOOK", r.url.as_str())]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let events = r.got.events.lock().unwrap().clone();
    let event = &events[0].1;
    let signals = &event["signals"];
    assert_eq!(signals["trend"], "new", "nothing before 2026-10-01");
    assert_eq!(
        event["text"],
        format!("busy.com: new -> experimentation ({}, new). {}", signals["score"], signals["reason"].as_str().unwrap())
    );
    assert!(signals["reason"].as_str().unwrap().starts_with("Experimentation since "), "{signals}");
    assert!(signals["reason"].as_str().unwrap().contains("8 downloads of oqldb 1.2.0"), "{signals}");
}

#[test]
fn a_template_naming_an_unknown_signal_is_refused_with_file_and_line() {
    let env = Env::new();
    env.write(
        "mappings/rows.yaml",
        "object: rows\nmatch: { crm_field: domain }\nfields:\n  stage: { from: stage }\ntriggers:\n  - when: { to: experimentation }\n    action:\n      webhook:\n        url: http://127.0.0.1:9/hook\n        text: \"{{ company }} is {{ temperature }}\"\n",
    );
    env.write("connectors/rows.yaml", "name: rows\nkind: file\nschedule: \"0 0 * * * *\"\nmapping: mappings/rows.yaml\npath: out/rows.csv\n");
    let r = env.run(&["check"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("rows.yaml:10:") && r.stderr.contains("unknown variable `temperature`"), "{}", r.stderr);
}
