//! A Scarf API emulator (`api.scarf.sh` v2), shaped after Scarf's published description
//! (`scarf-sh/docs`, `docs/api-v2-public.json`; `docs/data-export.md`) and its exporter
//! (`scarf-sh/scarf-postgres-exporter`):
//! - `GET /v2/packages/{owner}/events` and `GET /v2/tracking-pixels/{owner}/events`
//!   with required `start_date` and `end_date` (inclusive dates), answering `text/csv`
//!   with a `Content-Disposition` header, in the exporter's 24 columns (or any set a
//!   test gives: Scarf adds and drops columns over time);
//! - `GET /v2/packages/{owner}/company-rollup`, CSV in the documented columns;
//! - bearer auth (`ApiToken`): 401 for a wrong token, and a token that expires after a
//!   number of requests; errors as `{"message", "code"}` (`not-found` 404 for an unknown
//!   owner, `not-a-pro-member` 403 "not eligible for export", `range-too-long` 400);
//! - at-least-once rows: a day's first event and every fourth are written twice;
//! - days filled late (a test adds rows to a past day between polls), empty days
//!   answered with a bare header, or with an empty body;
//! - 429s with and without `Retry-After`, and 5xx, queued per path.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::emulator::{Faults, form_decode, take_fault};

/// The columns of Scarf's raw event export, in the exporter's order.
pub const EVENT_COLUMNS: [&str; 24] = [
    "id", "type", "package", "pixel", "version", "time", "referer", "user_agent", "platform", "variables", "origin_id",
    "origin_latitude", "origin_longitude", "origin_country", "origin_city", "origin_postal", "origin_connection_type",
    "origin_company", "origin_domain", "dnt", "confidence", "endpoint_id", "origin_state", "mtc_quota_exceeded",
];

/// The documented columns of the company rollup.
pub const ROLLUP_COLUMNS: [&str; 24] = [
    "company_name", "company_domain", "funnel_stage", "total_events", "total_downloads", "total_unique_downloads",
    "total_views", "total_unique_views", "unique_sources", "first_seen", "last_seen", "company_linkedin_url",
    "company_industry", "company_size", "company_country", "company_state", "interest_start_date",
    "investigation_start_date", "experimentation_start_date", "ongoing_usage_start_date", "inactive_start_date",
    "scarf_url", "package_totals", "tracking_pixel_totals",
];

#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub status: u16,
}

#[derive(Clone, Debug)]
pub enum Fault {
    /// 429, with `Retry-After` in seconds or without it.
    RateLimited(Option<u64>),
    /// A 5xx.
    Status(u16),
}

#[derive(Clone, Debug)]
struct Event {
    id: String,
    /// `packages` or `tracking-pixels`.
    entity: String,
    day: String,
    domain: String,
}

#[derive(Default)]
struct Inner {
    token: String,
    owner: String,
    /// Requests left before the token expires.
    token_uses: Option<usize>,
    not_eligible: bool,
    columns: Vec<String>,
    /// Days answered with an empty body instead of a bare header.
    empty_bodies: bool,
    events: Vec<Event>,
    /// (domain, funnel_stage, the stage's start date).
    rollup: Vec<(String, String, String)>,
    faults: Faults<Fault>,
    /// How long each answer takes (a slow API, for the crash tests).
    delay: std::time::Duration,
    /// Faults for one day of one path: (path prefix, day, fault, times).
    day_faults: Vec<(String, String, Fault, usize)>,
    requests: Vec<Recorded>,
}

type Shared = Arc<Mutex<Inner>>;

pub struct Scarf {
    pub url: String,
    state: Shared,
}

impl Scarf {
    pub async fn start(token: &str, owner: &str) -> Scarf {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state: Shared = Arc::new(Mutex::new(Inner {
            token: token.into(),
            owner: owner.into(),
            columns: EVENT_COLUMNS.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        }));
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Scarf { url, state }
    }

    /// On a runtime of its own, for tests that run the binary.
    pub fn running(token: &str, owner: &str) -> (Scarf, tokio::runtime::Runtime) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let scarf = rt.block_on(Scarf::start(token, owner));
        (scarf, rt)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().unwrap()
    }

    /// A package download (`entity` = `packages`) or pixel view (`tracking-pixels`) on
    /// `day`, identified at high confidence as `domain`.
    pub fn event(&self, entity: &str, day: &str, id: &str, domain: &str) {
        self.lock().events.push(Event { id: id.into(), entity: entity.into(), day: day.into(), domain: domain.into() });
    }

    pub fn rollup_row(&self, domain: &str, stage: &str, since: &str) {
        self.lock().rollup.push((domain.into(), stage.into(), since.into()));
    }

    /// The CSV columns from now on (Scarf adds and drops columns over time).
    pub fn columns(&self, columns: &[&str]) {
        self.lock().columns = columns.iter().map(|c| c.to_string()).collect();
    }

    pub fn empty_bodies(&self, on: bool) {
        self.lock().empty_bodies = on;
    }

    /// The token works for this many more requests, then answers 401.
    pub fn expire_token_after(&self, requests: usize) {
        self.lock().token_uses = Some(requests);
    }

    pub fn set_token(&self, token: &str) {
        let mut s = self.lock();
        s.token = token.into();
        s.token_uses = None;
    }

    pub fn delay_answers(&self, delay: std::time::Duration) {
        self.lock().delay = delay;
    }

    pub fn not_eligible(&self, on: bool) {
        self.lock().not_eligible = on;
    }

    /// The next `times` requests whose path starts with `path` fail this way.
    pub fn fail_next(&self, path: &str, fault: Fault, times: usize) {
        self.lock().faults.push_back((path.into(), fault, times));
    }

    /// The next `times` requests of `day` on paths starting with `path` fail this way.
    pub fn fail_day(&self, path: &str, day: &str, fault: Fault, times: usize) {
        self.lock().day_faults.push((path.into(), day.into(), fault, times));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }
}

fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v.to_owned() }
}

/// One event's columns, by name.
fn event_fields(e: &Event) -> BTreeMap<&'static str, String> {
    let pixel = e.entity == "tracking-pixels";
    let mut f = BTreeMap::new();
    f.insert("id", e.id.clone());
    f.insert("type", if pixel { "pixel-fetch" } else { "binary-download" }.to_owned());
    f.insert("package", if pixel { String::new() } else { "emulated-pkg".into() });
    f.insert("pixel", if pixel { "emulated-pixel".into() } else { String::new() });
    f.insert("version", if pixel { String::new() } else { "1.2.3".into() });
    f.insert("time", format!("{} 12:00:00.000", e.day));
    f.insert("referer", if pixel { "https://docs.example.org/install".into() } else { String::new() });
    f.insert("user_agent", "curl/8.5.0".into());
    f.insert("platform", "linux".into());
    f.insert("origin_id", format!("origin-{}", e.id));
    f.insert("origin_latitude", "52.5".into());
    f.insert("origin_longitude", "13.4".into());
    f.insert("origin_country", "DE".into());
    f.insert("origin_city", "Berlin".into());
    f.insert("origin_postal", "10115".into());
    f.insert("origin_connection_type", "business".into());
    f.insert("origin_company", e.domain.split('.').next().unwrap_or_default().to_owned());
    f.insert("origin_domain", e.domain.clone());
    f.insert("dnt", "false".into());
    f.insert("confidence", "0.9".into());
    f.insert("endpoint_id", format!("endpoint-{}", e.id));
    f.insert("origin_state", "BE".into());
    f.insert("mtc_quota_exceeded", "false".into());
    f
}

fn error(status: StatusCode, message: &str, code: &str) -> Response {
    (status, [("content-type", "application/json")], json!({"message": message, "code": code}).to_string()).into_response()
}

async fn handle(axum::extract::State(state): axum::extract::State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    let path = uri.path().to_owned();
    let query = form_decode(uri.query().unwrap_or_default());
    let delay = state.lock().unwrap().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let response = answer(&state, &headers, &path, &query);
    state.lock().unwrap().requests.push(Recorded { path, query, status: response.status().as_u16() });
    response
}

fn answer(state: &Shared, headers: &HeaderMap, path: &str, query: &BTreeMap<String, String>) -> Response {
    let mut s = state.lock().unwrap();
    let day = query.get("start_date").cloned().unwrap_or_default();
    let fault = take_fault(&mut s.faults, path).or_else(|| {
        let i = s.day_faults.iter().position(|(p, d, _, n)| *n > 0 && path.starts_with(p.as_str()) && *d == day)?;
        s.day_faults[i].3 -= 1;
        Some(s.day_faults[i].2.clone())
    });
    match fault {
        Some(Fault::RateLimited(after)) => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "Too many requests", "rate-limited");
            if let Some(secs) = after {
                r.headers_mut().insert("retry-after", HeaderValue::from_str(&secs.to_string()).unwrap());
            }
            return r;
        }
        Some(Fault::Status(code)) => return (StatusCode::from_u16(code).unwrap(), "upstream error").into_response(),
        None => {}
    }
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let expired = s.token_uses == Some(0);
    if bearer != Some(s.token.as_str()) || expired {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    if let Some(n) = s.token_uses.as_mut() {
        *n -= 1;
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (entity, owner, what) = match parts.as_slice() {
        ["v2", entity @ ("packages" | "tracking-pixels"), owner, what @ ("events" | "company-rollup")] => (*entity, *owner, *what),
        _ => return error(StatusCode::NOT_FOUND, "Not found", "not-found"),
    };
    if owner != s.owner {
        return error(StatusCode::NOT_FOUND, &format!("Owner {owner} not found"), "not-found");
    }
    if s.not_eligible {
        return error(StatusCode::FORBIDDEN, &format!("{owner} is not eligible for export"), "not-a-pro-member");
    }
    if what == "company-rollup" {
        if entity != "packages" {
            return error(StatusCode::NOT_FOUND, "Not found", "not-found");
        }
        let mut body = ROLLUP_COLUMNS.join(",") + "\n";
        for (domain, stage, since) in &s.rollup {
            let row: Vec<String> = ROLLUP_COLUMNS
                .iter()
                .map(|c| match *c {
                    "company_name" => domain.split('.').next().unwrap_or_default().to_owned(),
                    "company_domain" => domain.clone(),
                    "funnel_stage" => stage.clone(),
                    "total_events" => "12".into(),
                    c if c == format!("{}_start_date", stage.replace('-', "_")) => since.clone(),
                    "package_totals" => "emulated-pkg=12".into(),
                    _ => String::new(),
                })
                .map(|v| csv_field(&v))
                .collect();
            body.push_str(&row.join(","));
            body.push('\n');
        }
        return csv(body, "company-rollup.csv");
    }
    let (Some(start), Some(end)) = (query.get("start_date"), query.get("end_date")) else {
        return error(StatusCode::BAD_REQUEST, "start_date and end_date are required", "invalid-package-query");
    };
    let parse = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok();
    let (Some(from), Some(to)) = (parse(start), parse(end)) else {
        return error(StatusCode::BAD_REQUEST, "dates must be YYYY-MM-DD", "invalid-package-query");
    };
    if to < from || (to - from).num_days() > 31 {
        return error(StatusCode::BAD_REQUEST, "The date range is too long", "range-too-long");
    }
    let rows: Vec<&Event> = s
        .events
        .iter()
        .filter(|e| e.entity == entity && parse(&e.day).is_some_and(|d| d >= from && d <= to))
        .collect();
    if rows.is_empty() && s.empty_bodies {
        return csv(String::new(), "events.csv");
    }
    let mut body = s.columns.join(",") + "\n";
    for (i, e) in rows.iter().enumerate() {
        let fields = event_fields(e);
        let line: Vec<String> = s.columns.iter().map(|c| csv_field(fields.get(c.as_str()).map_or("extra", |v| v.as_str()))).collect();
        let line = line.join(",") + "\n";
        body.push_str(&line);
        // At-least-once: some rows twice (the first of a day's, every fourth).
        if i == 0 || i % 4 == 3 {
            body.push_str(&line);
        }
    }
    csv(body, "events.csv")
}

fn csv(body: String, name: &str) -> Response {
    (
        StatusCode::OK,
        [("content-type", "text/csv".to_owned()), ("content-disposition", format!("attachment; filename=\"{name}\""))],
        body,
    )
        .into_response()
}
