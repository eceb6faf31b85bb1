//! The daemon's HTTP endpoint (loopback by default): `/healthz` (store reachable, each
//! connector's last run and outcome), `/metrics` (Prometheus text format) and `/status`
//! (JSON). Nothing here names a person: figures are per source, stage and connector.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::config::Config;
use crate::daemon::SharedStatus;
use crate::store::Store;

#[derive(Clone)]
struct Ctx {
    store: Store,
    config: Arc<Config>,
    status: SharedStatus,
}

pub fn router(store: Store, config: Arc<Config>, status: SharedStatus) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/status", get(status_json))
        .with_state(Ctx { store, config, status })
}

fn connectors(ctx: &Ctx) -> serde_json::Value {
    let status = ctx.status.lock().expect("status lock");
    json!(status.connectors)
}

async fn healthz(State(ctx): State<Ctx>) -> impl IntoResponse {
    let store_ok = ctx.store.ping().await.is_ok();
    let body = json!({ "status": if store_ok { "ok" } else { "store unreachable" }, "store": store_ok, "connectors": connectors(&ctx) });
    (if store_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, axum::Json(body))
}

async fn status_json(State(ctx): State<Ctx>) -> impl IntoResponse {
    let figures = ctx.store.figures().await.unwrap_or_default();
    let started = ctx.status.lock().expect("status lock").started.clone();
    axum::Json(json!({
        "started": started,
        "config_dir": ctx.config.dir.display().to_string(),
        "scores_as_of": figures.scores_as_of,
        "companies_by_stage": figures.companies_by_stage.iter().map(|(s, n)| (s.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "activities_by_source": figures.activities_by_source.iter().map(|(s, n)| (s.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "connectors": connectors(&ctx),
    }))
}

/// A label value in Prometheus' text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

async fn metrics(State(ctx): State<Ctx>) -> impl IntoResponse {
    let Ok(f) = ctx.store.figures().await else {
        return (StatusCode::SERVICE_UNAVAILABLE, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], "# store unreachable\n".to_string());
    };
    let mut out = String::new();
    let push = |out: &mut String, name: &str, kind: &str, help: &str, lines: Vec<String>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    };
    push(&mut out, "oql_activities", "gauge", "Activities in the store, by source.",
        f.activities_by_source.iter().map(|(s, n)| format!("oql_activities{{source=\"{}\"}} {n}", label(s))).collect());
    push(&mut out, "oql_companies", "gauge", "Scored companies, by stage.",
        f.companies_by_stage.iter().map(|(s, n)| format!("oql_companies{{stage=\"{}\"}} {n}", label(s))).collect());
    push(&mut out, "oql_sync_records_total", "counter", "Sync log records, by connector and outcome.",
        f.sync_records.iter().map(|(c, o, n)| format!("oql_sync_records_total{{connector=\"{}\",outcome=\"{}\"}} {n}", label(c), label(o))).collect());
    push(&mut out, "oql_runs_total", "counter", "Connector runs, by connector and status.",
        f.runs.iter().map(|(c, s, n, _, _)| format!("oql_runs_total{{connector=\"{}\",status=\"{}\"}} {n}", label(c), label(s))).collect());
    let mut calls: std::collections::BTreeMap<&str, (i64, i64)> = Default::default();
    for (c, _, _, api, waits) in &f.runs {
        let e = calls.entry(c.as_str()).or_default();
        e.0 += api;
        e.1 += waits;
    }
    push(&mut out, "oql_api_calls_total", "counter", "API calls made, by connector.",
        calls.iter().map(|(c, (a, _))| format!("oql_api_calls_total{{connector=\"{}\"}} {a}", label(c))).collect());
    push(&mut out, "oql_rate_limit_waits_total", "counter", "Waits for rate limits, by connector.",
        calls.iter().map(|(c, (_, w))| format!("oql_rate_limit_waits_total{{connector=\"{}\"}} {w}", label(c))).collect());
    push(&mut out, "oql_server_waits_total", "counter", "Waits the API imposed (429, Retry-After, secondary limits), by connector.",
        f.waits.iter().map(|(c, s, _)| format!("oql_server_waits_total{{connector=\"{}\"}} {s}", label(c))).collect());
    push(&mut out, "oql_pacing_waits_total", "counter", "Waits of a connector's own pacing (its configured rate), by connector.",
        f.waits.iter().map(|(c, _, p)| format!("oql_pacing_waits_total{{connector=\"{}\"}} {p}", label(c))).collect());
    push(&mut out, "oql_last_run_duration_seconds", "gauge", "Duration of each connector's last run.",
        f.last_run_seconds.iter().map(|(c, s)| format!("oql_last_run_duration_seconds{{connector=\"{}\"}} {s:.3}", label(c))).collect());
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// `oql-sync health`: asks the daemon at `listen` for `/healthz`. A wildcard or empty
/// host (`0.0.0.0:9464`, `:9464`) is asked on loopback, where a daemon listening on
/// every interface answers too. Returns the one line to print, or why it is unhealthy.
pub async fn probe(listen: &str) -> Result<String, String> {
    let (host, port) = listen.rsplit_once(':').ok_or_else(|| format!("`{listen}` is not HOST:PORT"))?;
    let port: u16 = port.parse().map_err(|_| format!("`{port}` is not a port number (in `{listen}`)"))?;
    let host = match host.trim_start_matches('[').trim_end_matches(']') {
        "" | "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" => "[::1]".to_owned(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_owned(),
    };
    let url = format!("http://{host}:{port}/healthz");
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let answer = client.get(&url).send().await.map_err(|e| format!("no daemon answers at {url}: {}", crate::http::describe(&e)))?;
    let status = answer.status();
    let body = answer.text().await.unwrap_or_default();
    // `/healthz` answers JSON with a `status`; anything else is quoted, shortened.
    let first = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["status"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.lines().next().unwrap_or_default().chars().take(200).collect());
    if status.is_success() {
        Ok(format!("healthy: {url} answered {} {first}", status.as_u16()))
    } else {
        Err(format!("unhealthy: {url} answered {} {first}", status.as_u16()))
    }
}
