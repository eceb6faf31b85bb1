//! The web console, served by the daemon on its health listener: the funnel, the
//! companies, one company's explanation, the sync log and the sources, as server-made
//! HTML with SVG charts and no script (`docs/console.md`).
//!
//! It reads what the CLI reads, through the same functions (`current_scores` as
//! `companies` does, `explain`, the sync log's queries), so its numbers are the CLI's.
//! Scores are those of the daemon's as-of date (`run --as-of`, else today), held in
//! memory while the store's data version and the model stay the same: a page of 200,000
//! companies then filters and sorts in memory instead of reading them all again.

mod auth;
pub mod charts;
pub mod listing;
pub mod pages;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::NaiveDate;
use maud::Markup;
use serde::Deserialize;

pub use auth::Access;
use auth::Visitor;
use listing::ListQuery;
use pages::Frame;

use crate::config::Config;
use crate::cycle::{current_scores, score_inputs, today};
use crate::daemon::SharedStatus;
use crate::scoring::{CompanyScore, day_number, end_of};
use crate::store::{LogFilter, RunRow, Store, StoreError};

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console {
    store: Store,
    config: Arc<Config>,
    status: SharedStatus,
    as_of: Option<NaiveDate>,
    access: Arc<Access>,
    snapshot: Arc<tokio::sync::Mutex<Option<Snapshot>>>,
    unattributed: Arc<tokio::sync::Mutex<Option<(i64, Vec<crate::store::UnattributedRow>)>>>,
}

/// Scores and company names as of one date, for one data version and model.
#[derive(Clone)]
struct Snapshot {
    as_of: NaiveDate,
    inputs: String,
    scores: Arc<Vec<CompanyScore>>,
    names: Arc<HashMap<String, String>>,
}

/// Who may see the console and how it dates its scores.
pub struct ConsoleOptions {
    /// The console token (from `--console-token-env`).
    pub token: Option<String>,
    /// Whether the listener is on loopback only.
    pub loopback: bool,
    pub as_of: Option<NaiveDate>,
}

pub fn router(store: Store, config: Arc<Config>, status: SharedStatus, options: ConsoleOptions) -> Router {
    let console = Console {
        store,
        config,
        status,
        as_of: options.as_of,
        access: Arc::new(Access::new(options.token.as_deref(), options.loopback)),
        snapshot: Default::default(),
        unattributed: Default::default(),
    };
    Router::new()
        .route("/", get(funnel))
        .route("/companies", get(companies))
        .route("/companies/{domain}", get(company))
        .route("/sync", get(sync))
        .route("/sync/retry", post(retry))
        .route("/sources", get(sources))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/assets/console.css", get(css))
        .with_state(console)
}

/// Headers of every console answer: no caching of pages that hold company data, no
/// script, no framing, no referrer leaving with a URL.
fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

fn html(code: StatusCode, m: Markup) -> Response {
    secure((code, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], m.into_string()).into_response())
}

impl Console {
    fn as_of(&self) -> NaiveDate {
        self.as_of.unwrap_or_else(today)
    }

    /// The visitor, or the answer that refuses them: 401 with the login form.
    fn admit(&self, headers: &HeaderMap) -> Result<Visitor, Response> {
        self.access.visitor(headers).ok_or_else(|| html(StatusCode::UNAUTHORIZED, pages::login(None, self.access.has_token())))
    }

    fn frame<'a>(&self, visitor: &Visitor, active: &'a str) -> Frame<'a> {
        Frame { as_of: self.as_of(), csrf: self.access.csrf(visitor), session: matches!(visitor, Visitor::Session(_)), active }
    }

    fn failure(&self, visitor: &Visitor, e: StoreError) -> Response {
        tracing::error!(error = %e, "console page failed");
        html(StatusCode::INTERNAL_SERVER_ERROR, pages::error(&self.frame(visitor, ""), &e.to_string()))
    }

    /// The scores `companies` would print at the console's as-of date, and the names.
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let as_of = self.as_of();
        let inputs = score_inputs(&self.store, &self.config.model).await?;
        let mut held = self.snapshot.lock().await;
        if let Some(s) = held.as_ref().filter(|s| s.as_of == as_of && s.inputs == inputs) {
            return Ok(s.clone());
        }
        let (_, scores) = current_scores(&self.store, &self.config.model, Some(as_of)).await?;
        let names = self.store.company_names().await?;
        let fresh = Snapshot { as_of, inputs, scores: Arc::new(scores), names: Arc::new(names) };
        *held = Some(fresh.clone());
        Ok(fresh)
    }

    /// The latest runs, split into those of source connectors and the others.
    async fn runs(&self, limit: i64) -> Result<(Vec<RunRow>, Vec<RunRow>), StoreError> {
        let runs = self.store.sync_runs(&LogFilter { limit, ..Default::default() }).await?;
        let sources: std::collections::HashSet<&str> =
            self.config.connectors.iter().filter(|c| !c.is_sink()).map(|c| c.name.as_str()).collect();
        Ok(runs.into_iter().partition(|r| sources.contains(r.connector.as_str())))
    }
}

async fn css() -> Response {
    secure(([(header::CONTENT_TYPE, "text/css; charset=utf-8")], pages::CSS.0).into_response())
}

async fn funnel(State(c): State<Console>, headers: HeaderMap) -> Response {
    let v = match c.admit(&headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let built = async {
        let snap = c.snapshot().await?;
        let as_of = c.as_of();
        let from = as_of - chrono::TimeDelta::days(crate::cycle::HISTORY_DAYS as i64 - 1);
        let history = c.store.stage_history(from, as_of).await?;
        let (moves_as_of, moves) = c.store.stage_moves().await?;
        let mut lines = Vec::new();
        for conn in &c.config.connectors {
            let last = c.store.sync_runs(&LogFilter { connector: Some(conn.name.clone()), limit: 1, ..Default::default() }).await?.pop();
            let status = c.status.lock().expect("status lock").connectors.get(&conn.name).cloned();
            let (health, healthy) = match (&status, &last) {
                (Some(s), _) if s.failing_in_a_row > 0 => (format!("failing: {} runs in a row", s.failing_in_a_row), false),
                (_, Some(r)) if r.status == "failed" => ("failing: its last run failed".to_owned(), false),
                (_, Some(r)) => (format!("ok ({})", r.status), true),
                (Some(_), None) => ("waiting for its first run".to_owned(), true),
                (None, None) => ("not scheduled by the daemon (imported by hand)".to_owned(), true),
            };
            lines.push(pages::ConnectorLine {
                name: conn.name.clone(),
                kind: conn.kind.as_str(),
                schedule: conn.schedule.clone(),
                health,
                healthy,
                last_run: last,
                next_run: status.and_then(|s| s.next_run),
            });
        }
        Ok::<_, StoreError>((snap, history, moves_as_of, moves, lines, from))
    }
    .await;
    let (snap, history, moves_as_of, moves, connectors, from) = match built {
        Ok(b) => b,
        Err(e) => return c.failure(&v, e),
    };
    let mut counts = [0u64; 5];
    for s in snap.scores.iter() {
        counts[s.stage as usize] += 1;
    }
    let week = day_number(c.as_of()) - 6;
    let mut new_leads: Vec<&CompanyScore> = snap.scores.iter().filter(|s| day_number(s.first_seen) >= week).collect();
    new_leads.sort_by(|a, b| b.first_seen.cmp(&a.first_seen).then(a.domain.cmp(&b.domain)));
    let f = pages::Funnel {
        counts,
        history: &history,
        from,
        moves_as_of,
        moves: &moves,
        new_leads,
        churn_risk: snap.scores.iter().filter(|s| s.churn_risk).count(),
        connectors,
    };
    html(StatusCode::OK, pages::funnel(&c.frame(&v, "/"), &f))
}

async fn companies(State(c): State<Console>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    let v = match c.admit(&headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let snap = match c.snapshot().await {
        Ok(s) => s,
        Err(e) => return c.failure(&v, e),
    };
    let rows = listing::select(&snap.scores, &snap.names, &q);
    if q.format.as_deref() == Some("csv") {
        let owned: Vec<CompanyScore> = rows.into_iter().cloned().collect();
        return secure(
            (
                [(header::CONTENT_TYPE, "text/csv; charset=utf-8"), (header::CONTENT_DISPOSITION, "attachment; filename=\"companies.csv\"")],
                crate::output::csv(&owned),
            )
                .into_response(),
        );
    }
    html(StatusCode::OK, pages::companies(&c.frame(&v, "/companies"), &q, &rows, &snap.names))
}

async fn company(State(c): State<Console>, headers: HeaderMap, Path(domain): Path<String>) -> Response {
    let v = match c.admit(&headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let frame = c.frame(&v, "/companies");
    let Some(domain) = crate::activity::normalize_domain(&domain) else {
        return html(StatusCode::NOT_FOUND, pages::error(&frame, "That is not a company domain."));
    };
    let as_of = c.as_of();
    let built = async {
        // As `explain` does: the company's activities to the end of the as-of day.
        let acts = c.store.company_activities(&domain, end_of(as_of)).await?;
        let explanation = crate::scoring::explain::explain(&domain, &acts, &c.config.model, as_of);
        let recent = c.store.recent_activities(&domain, end_of(as_of), 15).await?;
        let identities = c.store.company_identities(&domain, 30).await?;
        let mut sinks = Vec::new();
        for s in c.store.company_sinks(&domain).await? {
            let run = c.store.sync_runs(&LogFilter { connector: Some(s.connector.clone()), limit: 1, ..Default::default() }).await?.pop();
            sinks.push((s, run));
        }
        let name = c.store.names_of(std::slice::from_ref(&domain)).await?.remove(&domain);
        Ok::<_, StoreError>((explanation, recent, identities, sinks, name))
    };
    match built.await {
        Err(e) => c.failure(&v, e),
        Ok((None, ..)) => html(StatusCode::NOT_FOUND, pages::error(&frame, &format!("{domain} has no attributed activity on or before {as_of}."))),
        Ok((Some(explanation), recent, identities, sinks, name)) => {
            let p = pages::CompanyPage { name, explanation: &explanation, recent: &recent, identities: &identities, sinks };
            html(StatusCode::OK, pages::company(&frame, &p))
        }
    }
}

#[derive(Deserialize, Default)]
struct SyncQuery {
    retried: Option<String>,
}

async fn sync(State(c): State<Console>, headers: HeaderMap, Query(q): Query<SyncQuery>) -> Response {
    let v = match c.admit(&headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let built = async {
        let (_, runs) = c.runs(200).await?;
        let records = c.store.sync_records(&LogFilter { limit: 100, ..Default::default() }).await?;
        let failed = c.store.sync_records(&LogFilter { status: Some("failed".into()), limit: 100, ..Default::default() }).await?;
        let dead = c.store.sync_records(&LogFilter { status: Some("dead".into()), limit: 200, ..Default::default() }).await?;
        let pending = c.store.pending_failures(200).await?;
        Ok::<_, StoreError>((runs, records, failed, dead, pending))
    };
    let (mut runs, records, failed, dead, pending) = match built.await {
        Ok(b) => b,
        Err(e) => return c.failure(&v, e),
    };
    runs.truncate(50);
    let notice = q.retried.map(|d| format!("{}: back to pending; its connector's next run sends it again.", pages::shown(&d)));
    let p = pages::SyncPage { runs: &runs, records: &records, failed: &failed, dead: &dead, pending: &pending, notice };
    html(StatusCode::OK, pages::sync(&c.frame(&v, "/sync"), &p))
}

#[derive(Deserialize)]
struct RetryForm {
    #[serde(default)]
    csrf: String,
    connector: String,
    domain: String,
}

async fn retry(State(c): State<Console>, headers: HeaderMap, Form(f): Form<RetryForm>) -> Response {
    let v = match c.admit(&headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !c.access.csrf_ok(&v, &f.csrf) {
        return html(StatusCode::FORBIDDEN, pages::error(&c.frame(&v, "/sync"), "This form is stale or came from another site: reload the page and try again."));
    }
    match c.store.revive_dead_record(&f.connector, &f.domain).await {
        Ok(true) => {
            tracing::info!(connector = %f.connector, domain = %f.domain, "console: a dead record gets a new round of attempts");
            secure(Redirect::to(&format!("/sync?retried={}", listing::encode(&f.domain))).into_response())
        }
        Ok(false) => html(StatusCode::CONFLICT, pages::error(&c.frame(&v, "/sync"), &format!("{} in {} is not dead (any more).", f.domain, f.connector))),
        Err(e) => c.failure(&v, e),
    }
}

async fn sources(State(c): State<Console>, headers: HeaderMap) -> Response {
    let v = match c.admit(&headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let built = async {
        let (mut runs, _) = c.runs(400).await?;
        runs.truncate(50);
        let cursors = c.store.cursors(200).await?;
        let files = c.store.export_files(100).await?;
        let quarantined = c.store.quarantined(100).await?;
        let quarantined_total = c.store.quarantined_count().await?;
        // Grouping every unplaced activity is a scan: once per data version.
        let version = c.store.data_version().await?;
        let unattributed = {
            let mut held = c.unattributed.lock().await;
            match held.as_ref().filter(|(v, _)| *v == version) {
                Some((_, rows)) => rows.clone(),
                None => {
                    let rows = c.store.top_unattributed(25).await?;
                    *held = Some((version, rows.clone()));
                    rows
                }
            }
        };
        Ok::<_, StoreError>((runs, cursors, files, quarantined, quarantined_total, unattributed))
    };
    let (runs, cursors, files, quarantined, quarantined_total, unattributed) = match built.await {
        Ok(b) => b,
        Err(e) => return c.failure(&v, e),
    };
    let p = pages::SourcesPage { runs: &runs, cursors: &cursors, files: &files, quarantined: &quarantined, quarantined_total, unattributed: &unattributed };
    html(StatusCode::OK, pages::sources(&c.frame(&v, "/sources"), &p))
}

async fn login_form(State(c): State<Console>, headers: HeaderMap) -> Response {
    if c.access.visitor(&headers).is_some() {
        return secure(Redirect::to("/").into_response());
    }
    html(if c.access.locked() { StatusCode::UNAUTHORIZED } else { StatusCode::OK }, pages::login(None, c.access.has_token()))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(c): State<Console>, Form(f): Form<LoginForm>) -> Response {
    match c.access.login(&f.token) {
        Some(sid) => {
            let mut r = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&auth::session_cookie(&sid)) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            secure(r)
        }
        None => {
            // Slows guessing down; the token's digest comparison leaks no timing.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            tracing::warn!("console: a login with a wrong token");
            html(StatusCode::UNAUTHORIZED, pages::login(Some("That is not the console token."), c.access.has_token()))
        }
    }
}

#[derive(Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(State(c): State<Console>, headers: HeaderMap, Form(f): Form<LogoutForm>) -> Response {
    let Some(v) = c.access.visitor(&headers) else {
        return secure(Redirect::to("/login").into_response());
    };
    if !c.access.csrf_ok(&v, &f.csrf) {
        return html(StatusCode::FORBIDDEN, pages::error(&c.frame(&v, ""), "This form is stale: reload the page and try again."));
    }
    c.access.logout(&v);
    let mut r = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::cleared_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    secure(r)
}
