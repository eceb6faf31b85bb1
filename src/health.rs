//! The daemon's HTTP endpoint (loopback by default). `/livez` answers while the process
//! serves requests (restart it when not); `/readyz` says whether it does its work: the
//! store answers, the scores were brought up to date at start, and no connector failed
//! its last N runs in a row (alert or stop routing when not: a restart fixes neither a
//! revoked token nor a full CRM). `/healthz` (store reachable, each connector's last
//! run) stays for the checks written against it; `/metrics` (Prometheus text format),
//! `/status` (JSON) and `/endpoints` (the list); `/` and the pages under it are the web
//! console (`console/`). Nothing here names a person: figures are per source, stage and
//! connector.

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
use crate::scoring::Stage;
use crate::store::{ActivityFigures, Store};

/// The endpoints, as `/endpoints` lists them.
const ENDPOINTS: [(&str, &str); 7] = [
    ("/livez", "200 while the process serves requests"),
    ("/readyz", "200 when the store answers, the start's rescore is done and no connector failed its last runs in a row; 503 with the reasons"),
    ("/healthz", "200 when the store answers, with each connector's last run (JSON)"),
    ("/metrics", "Prometheus metrics"),
    ("/status", "stages, sources and connectors (JSON)"),
    ("/", "the web console (docs/console.md)"),
    ("/endpoints", "this list"),
];

#[derive(Clone)]
struct Ctx {
    store: Store,
    config: Arc<Config>,
    status: SharedStatus,
    activities: Arc<std::sync::Mutex<Option<ActivityFigures>>>,
}

impl Ctx {
    /// Activity counts, read again only when the data changed since the last scrape.
    async fn activity_figures(&self) -> Result<ActivityFigures, crate::store::StoreError> {
        let cached = self.activities.lock().expect("figures lock").clone();
        let fresh = self.store.activity_figures(cached).await?;
        *self.activities.lock().expect("figures lock") = Some(fresh.clone());
        Ok(fresh)
    }
}

/// The health endpoints and the web console on one listener.
pub fn router(store: Store, config: Arc<Config>, status: SharedStatus, console: crate::console::ConsoleOptions) -> Router {
    let pages = crate::console::router(store.clone(), config.clone(), status.clone(), console);
    Router::new()
        .route("/endpoints", get(index))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/status", get(status_json))
        .with_state(Ctx { store, config, status, activities: Default::default() })
        .merge(pages)
}

fn connectors(ctx: &Ctx) -> serde_json::Value {
    let status = ctx.status.lock().expect("status lock");
    json!(status.connectors)
}

async fn index() -> impl IntoResponse {
    let mut out = format!("oql-sync {} (commit {})\n\n", env!("CARGO_PKG_VERSION"), env!("OQL_COMMIT"));
    for (path, what) in ENDPOINTS {
        let _ = writeln!(out, "{path:<9} {what}");
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], out)
}

async fn livez() -> impl IntoResponse {
    axum::Json(json!({ "status": "alive" }))
}

/// Why the daemon is not ready, and the connectors that made it so; empty when ready.
fn unready_reasons(status: &crate::daemon::Status) -> (Vec<String>, Vec<(String, u64)>) {
    let reasons = if status.starting { vec!["starting: bringing scores up to date".to_owned()] } else { Vec::new() };
    let failing = status
        .connectors
        .iter()
        .filter(|(_, c)| status.unready_after > 0 && c.failing_in_a_row >= status.unready_after)
        .map(|(name, c)| (name.clone(), c.failing_in_a_row))
        .collect();
    (reasons, failing)
}

async fn readyz(State(ctx): State<Ctx>) -> impl IntoResponse {
    let (mut reasons, failing) = unready_reasons(&ctx.status.lock().expect("status lock"));
    if let Err(e) = ctx.store.ping().await {
        reasons.insert(0, format!("store unreachable: {e}"));
    }
    for (name, runs) in failing {
        // The sync log has the error; a run that ended before it was written has none.
        let why = match ctx.store.last_run_error(&name).await {
            Ok(Some(e)) => format!(": {e}"),
            _ => String::new(),
        };
        reasons.push(format!("connector {name} failed its last {runs} runs in a row{why}"));
    }
    let (code, text) = if reasons.is_empty() {
        (StatusCode::OK, "ready".to_owned())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}", reasons.join("; ")))
    };
    (code, axum::Json(json!({ "status": text, "reasons": reasons })))
}

async fn healthz(State(ctx): State<Ctx>) -> impl IntoResponse {
    let store_ok = ctx.store.ping().await.is_ok();
    let body = json!({ "status": if store_ok { "ok" } else { "store unreachable" }, "store": store_ok, "connectors": connectors(&ctx) });
    (if store_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, axum::Json(body))
}

async fn status_json(State(ctx): State<Ctx>) -> impl IntoResponse {
    let figures = ctx.store.figures().await.unwrap_or_default();
    let activities = ctx.activity_figures().await.unwrap_or_default();
    let started = ctx.status.lock().expect("status lock").started.clone();
    axum::Json(json!({
        "started": started,
        "config_dir": ctx.config.dir.display().to_string(),
        "scores_as_of": figures.scores_as_of,
        "companies_by_stage": figures.companies_by_stage.iter().map(|(s, n)| (s.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "activities_by_source": activities.by_source.iter().map(|(s, n)| (s.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "connectors": connectors(&ctx),
    }))
}

/// A label value in Prometheus' text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

async fn metrics(State(ctx): State<Ctx>) -> impl IntoResponse {
    let (Ok(f), Ok(a)) = (ctx.store.figures().await, ctx.activity_figures().await) else {
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
        a.by_source.iter().map(|(s, n)| format!("oql_activities{{source=\"{}\"}} {n}", label(s))).collect());
    push(&mut out, "oql_build_info", "gauge", "The running version and the commit it was built from.",
        vec![format!("oql_build_info{{version=\"{}\",commit=\"{}\"}} 1", env!("CARGO_PKG_VERSION"), label(env!("OQL_COMMIT")))]);
    // Every stage, zeros included: a stage that empties must read 0, not vanish.
    let count_of = |stage: &str| f.companies_by_stage.iter().find(|(s, _)| s == stage).map_or(0, |(_, n)| *n);
    push(&mut out, "oql_companies", "gauge", "Scored companies, by stage.",
        Stage::ALL.iter().map(|s| format!("oql_companies{{stage=\"{}\"}} {}", s.as_str(), count_of(s.as_str()))).collect());
    push(&mut out, "oql_scores_as_of_timestamp_seconds", "gauge", "The day the persisted scores are for (Unix seconds, midnight UTC).",
        f.scores_as_of.as_deref().and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .map(|d| format!("oql_scores_as_of_timestamp_seconds {}", d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp()))
            .into_iter().collect());
    push(&mut out, "oql_quarantined_lines", "gauge", "Export lines kept in quarantine (invalid; see the store's quarantine table).",
        vec![format!("oql_quarantined_lines {}", f.quarantined)]);
    push(&mut out, "oql_unattributed_activities", "gauge", "Activities no attribution rule places in a company (yet).",
        vec![format!("oql_unattributed_activities {}", a.unattributed)]);
    push(&mut out, "oql_sync_records_total", "counter", "Sync log records, by connector and outcome.",
        f.sync_records.iter().map(|(c, o, n)| format!("oql_sync_records_total{{connector=\"{}\",outcome=\"{}\"}} {n}", label(c), label(o))).collect());
    let (connectors, ready) = {
        let status = ctx.status.lock().expect("status lock");
        let connectors: Vec<(String, u64)> = status.connectors.iter().map(|(n, c)| (n.clone(), c.failing_in_a_row)).collect();
        let (reasons, failing) = unready_reasons(&status);
        (connectors, reasons.is_empty() && failing.is_empty())
    };
    // Runs by status: the connectors the daemon runs have ok and failed series from the
    // start, so a rate over them exists before the first failure.
    let mut runs: std::collections::BTreeMap<(String, String), i64> =
        connectors.iter().flat_map(|(c, _)| ["ok", "failed"].map(|s| ((c.clone(), s.to_owned()), 0))).collect();
    for (c, s, n, _, _) in &f.runs {
        runs.insert((c.clone(), s.clone()), *n);
    }
    push(&mut out, "oql_runs_total", "counter", "Connector runs, by connector and status.",
        runs.iter().map(|((c, s), n)| format!("oql_runs_total{{connector=\"{}\",status=\"{}\"}} {n}", label(c), label(s))).collect());
    push(&mut out, "oql_connector_failing_runs", "gauge", "Failed runs since each connector's last good one.",
        connectors.iter().map(|(c, n)| format!("oql_connector_failing_runs{{connector=\"{}\"}} {n}", label(c))).collect());
    // 0 for a connector that never succeeded: `time() - x` then reads as "very long ago".
    let mut last_success: std::collections::BTreeMap<&str, f64> = connectors.iter().map(|(c, _)| (c.as_str(), 0.0)).collect();
    for (c, t) in &f.last_success {
        last_success.insert(c.as_str(), *t);
    }
    push(&mut out, "oql_last_success_timestamp_seconds", "gauge", "When each connector's last good run ended (Unix seconds; 0: never).",
        last_success.iter().map(|(c, t)| format!("oql_last_success_timestamp_seconds{{connector=\"{}\"}} {t:.3}", label(c))).collect());
    push(&mut out, "oql_ready", "gauge", "1 when /readyz answers 200.",
        vec![format!("oql_ready {}", u8::from(ready))]);
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

/// Checks a `--listen` value: `HOST:PORT` (a name such as `localhost` is resolved when
/// binding), `:PORT` (every interface, as Prometheus exporters read it), or `none`.
pub fn parse_listen(listen: &str) -> Result<Option<String>, String> {
    if listen == "none" {
        return Ok(None);
    }
    let bad = || format!("--listen {listen}: not an address such as 127.0.0.1:9464, localhost:9464 or :9464 (or `none`)");
    let (host, port) = listen.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(bad());
    }
    Ok(Some(listen.to_owned()))
}

/// Binds a checked `--listen` address: the first address the name resolves to that
/// binds, IPv4 first (`localhost` resolves to both on most systems).
pub async fn bind(listen: &str) -> Result<tokio::net::TcpListener, String> {
    let (host, port) = listen.rsplit_once(':').ok_or_else(|| format!("`{listen}` is not HOST:PORT"))?;
    let port: u16 = port.parse().map_err(|_| format!("`{port}` is not a port number (in `{listen}`)"))?;
    let host = match host.trim_start_matches('[').trim_end_matches(']') {
        "" => "0.0.0.0",
        h => h,
    };
    let mut addrs: Vec<std::net::SocketAddr> =
        tokio::net::lookup_host((host, port)).await.map_err(|e| format!("cannot listen on {listen}: {host} does not resolve: {e}"))?.collect();
    addrs.sort_by_key(|a| !a.is_ipv4());
    let mut last = None;
    for addr in addrs {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(format!("cannot listen on {listen} ({addr}): {e}")),
        }
    }
    Err(last.unwrap_or_else(|| format!("cannot listen on {listen}: {host} resolves to no address")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_names_ports_alone_and_none_and_refuses_the_rest() {
        for ok in ["127.0.0.1:9464", "localhost:9464", ":9464", "0.0.0.0:9464", "[::1]:9464"] {
            assert_eq!(parse_listen(ok), Ok(Some(ok.to_owned())), "{ok}");
        }
        assert_eq!(parse_listen("none"), Ok(None));
        for bad in ["localhost", "9464", "localhost:http", ":99999", "::1:9464"] {
            assert!(parse_listen(bad).unwrap_err().contains(":9464"), "{bad}");
        }
    }
}
