//! A Common Room emulator for the Core API v1 paths oql-sync uses, shaped after the
//! public OpenAPI description (<https://api.commonroom.io/docs/community.html>):
//! `POST /source/{destinationSourceId}/user` and `/activity` (202 Accepted; upserts by
//! user id, and by activity id + activityType), `GET /members/customFields`,
//! `GET /activityTypes`, `400 {reason: invalid-request-body, docs}`, 404 for an unknown
//! destination source, and rate limiting with `X-RateLimit-Limit`/`-Remaining` on every
//! answer and, on 429, `X-RateLimit-Reset` (epoch seconds), `Retry-After` (a UTC
//! date-time) and a body with `rateLimit.waitMs`.

#![allow(dead_code)]

pub use super::emulator::Recorded;
use super::emulator::{Faults, drop_connection, max_in_window, take_fault};

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub enum Fault {
    RateLimited { wait_ms: u64 },
    ServerError(u16),
    Delay(Duration),
    DelayAfterApply(Duration),
    TruncatedJson,
    /// Close the connection without answering; the request is not applied.
    ConnectionReset,
    /// Apply the request, then close the connection without answering.
    ResetAfterApply,
}


#[derive(Default)]
struct Inner {
    tokens: HashSet<String>,
    sources: HashSet<u64>,
    users: BTreeMap<String, Value>,
    activities: BTreeMap<(String, String), Value>,
    fields: Vec<Value>,
    activity_types: Vec<String>,
    requests: Vec<Recorded>,
    faults: Faults<Fault>,
    rejected: HashSet<String>,
    limit: Option<(usize, Duration)>,
    limited: usize,
    arrivals: Vec<Instant>,
}

type Shared = Arc<Mutex<Inner>>;

pub struct CommonRoom {
    /// The API base, `…/community/v1`.
    pub url: String,
    state: Shared,
}

const DOCS: &str = "https://api.commonroom.io/docs/community.html";

impl CommonRoom {
    pub async fn start() -> CommonRoom {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/community/v1", listener.local_addr().unwrap());
        let inner = Inner { activity_types: vec!["oql_stage_changed".into(), "started_training".into()], ..Default::default() };
        let state: Shared = Arc::new(Mutex::new(inner));
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        CommonRoom { url, state }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().unwrap()
    }
    pub fn accept_token(&self, token: &str) {
        self.lock().tokens.insert(token.into());
    }
    pub fn add_source(&self, id: u64) {
        self.lock().sources.insert(id);
    }
    /// A contact custom field (`type`: enum, string, date, int, number, url, boolean).
    pub fn add_custom_field(&self, id: u64, name: &str, kind: &str, values: &[&str]) {
        self.lock().fields.push(json!({"id": id, "name": name, "type": kind, "multivalue": false, "values": values}));
    }
    pub fn users(&self) -> Vec<Value> {
        self.lock().users.values().cloned().collect()
    }
    pub fn user(&self, id: &str) -> Option<Value> {
        self.lock().users.get(id).cloned()
    }
    /// A custom field value of a user, by field id.
    pub fn field_of(&self, user: &str, field: u64) -> Option<Value> {
        let s = self.lock();
        let fields = s.users.get(user)?.get("customFieldValues")?.clone();
        fields.get(field.to_string()).cloned()
    }
    pub fn activities(&self) -> Vec<Value> {
        self.lock().activities.values().cloned().collect()
    }
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }
    pub fn write_calls(&self) -> usize {
        self.lock().requests.iter().filter(|r| r.method == "POST" && r.path.starts_with("/community/")).count()
    }
    /// Events the webhook receiver (`{origin}/webhook`) got.
    pub fn webhooks(&self) -> Vec<Recorded> {
        self.lock().requests.iter().filter(|r| r.path == "/webhook").cloned().collect()
    }
    pub fn fail_next(&self, path_prefix: &str, fault: Fault, times: usize) {
        self.lock().faults.push_back((path_prefix.into(), fault, times));
    }
    /// Queued faults no request has met yet.
    pub fn faults_pending(&self) -> usize {
        self.lock().faults.iter().map(|f| f.2).sum()
    }
    pub fn reject_ids(&self, ids: &[&str]) {
        self.lock().rejected = ids.iter().map(|s| s.to_string()).collect();
    }
    pub fn set_rate_limit(&self, requests: usize, per: Duration) {
        self.lock().limit = Some((requests, per));
    }
    pub fn rate_limited_count(&self) -> usize {
        self.lock().limited
    }
    pub fn max_in_window(&self, path_prefix: &str, window: Duration) -> usize {
        max_in_window(self.lock().requests.iter().filter(|r| r.path.starts_with(path_prefix)).map(|r| r.at), window)
    }
}

fn rate_limited(wait_ms: u64, limit: usize, window: Duration, extra: &mut Vec<(&'static str, String)>) -> (u16, Value) {
    let reset = chrono::Utc::now() + chrono::TimeDelta::milliseconds(wait_ms as i64);
    extra.push(("x-ratelimit-remaining", "0".into()));
    extra.push(("x-ratelimit-reset", reset.timestamp().to_string()));
    extra.push(("retry-after", reset.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)));
    (429, json!({"reason": "rate-limited", "rateLimit": {"intervalLimit": limit, "intervalRemaining": 0, "intervalResetSeconds": window.as_secs_f64(), "waitMs": wait_ms}}))
}

async fn handle(State(state): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let at = Instant::now();
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let fault = take_fault(&mut state.lock().unwrap().faults, &path);
    if let Some(Fault::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let mut extra: Vec<(&'static str, String)> = Vec::new();
    let (status, mut text) = {
        let mut s = state.lock().unwrap();
        let (limit, window) = s.limit.unwrap_or((100, Duration::from_secs(1)));
        let (status, value) = match &fault {
            Some(Fault::RateLimited { wait_ms }) => rate_limited(*wait_ms, limit, window, &mut extra),
            Some(Fault::ServerError(code)) => (*code, json!({"reason": "internal-error"})),
            // Recorded with status 0: the client sent it, nothing answered.
            Some(Fault::ConnectionReset) => (0, Value::Null),
            _ => {
                let used = s.arrivals.iter().filter(|t| at.duration_since(**t) < window).count();
                if s.limit.is_some() && used >= limit {
                    s.limited += 1;
                    let oldest = s.arrivals.iter().find(|t| at.duration_since(**t) < window).copied().unwrap_or(at);
                    let wait = (oldest + window).saturating_duration_since(at).as_millis() as u64;
                    rate_limited(wait, limit, window, &mut extra)
                } else {
                    s.arrivals.push(at);
                    extra.push(("x-ratelimit-remaining", limit.saturating_sub(used + 1).to_string()));
                    respond(&mut s, &method, &path, &query, &authorization, &parsed)
                }
            }
        };
        extra.push(("x-ratelimit-limit", limit.to_string()));
        s.requests.push(Recorded { method: method.to_string(), path: path.clone(), query, authorization, body: parsed, status, at });
        (status, if value.is_null() { String::new() } else { value.to_string() })
    };
    if let Some(Fault::DelayAfterApply(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    if let Some(Fault::ConnectionReset | Fault::ResetAfterApply) = &fault {
        drop_connection();
    }
    if let Some(Fault::TruncatedJson) = &fault {
        text.truncate(text.len() / 2);
    }
    let mut response = (StatusCode::from_u16(status).unwrap(), text).into_response();
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    for (k, v) in extra {
        response.headers_mut().insert(k, HeaderValue::from_str(&v).unwrap());
    }
    response
}

fn invalid() -> (u16, Value) {
    (400, json!({"reason": "invalid-request-body", "docs": DOCS}))
}

fn respond(s: &mut Inner, method: &Method, path: &str, query: &str, auth: &Option<String>, body: &Value) -> (u16, Value) {
    // Not Common Room: a webhook receiver on the same server, for webhook trigger tests.
    if path == "/webhook" {
        return (204, Value::Null);
    }
    let bearer = auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
    if !s.tokens.contains(bearer) {
        return (401, json!({"status": "failure", "reason": "Unauthorized"}));
    }
    let rest = path.strip_prefix("/community/v1").unwrap_or(path);
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["api-token-status"]) => (200, json!({"jti": "emul", "communityName": "Emulated", "communityId": "e1"})),
        ("GET", ["members", "customFields"]) => {
            let _ = query;
            (200, Value::Array(s.fields.clone()))
        }
        ("GET", ["activityTypes"]) => (200, Value::Array(s.activity_types.iter().map(|t| json!({"id": t, "displayName": t})).collect())),
        ("POST", ["source", id, kind]) => {
            let Some(id) = id.parse::<u64>().ok().filter(|id| s.sources.contains(id)) else {
                return (404, json!({"status": "not-found", "reason": "Destination Source Not Found"}));
            };
            let _ = id;
            match *kind {
                "user" => user(s, body),
                "activity" => activity(s, body),
                _ => (404, json!({"status": "not-found"})),
            }
        }
        _ => (404, json!({"status": "not-found"})),
    }
}

/// Applies a user; `customFields` entries set (or, without `value`, clear) a field.
fn apply_user(s: &mut Inner, u: &Value) -> Result<(), (u16, Value)> {
    let Some(id) = u["id"].as_str() else { return Err(invalid()) };
    if s.rejected.contains(id) {
        return Err(invalid());
    }
    let mut values = s.users.get(id).and_then(|x| x.get("customFieldValues").cloned()).unwrap_or(json!({}));
    for cf in u["customFields"].as_array().cloned().unwrap_or_default() {
        let Some(fid) = cf["id"].as_f64() else { return Err(invalid()) };
        let Some(def) = s.fields.iter().find(|f| f["id"].as_f64() == Some(fid)) else { return Err(invalid()) };
        let key = (fid as u64).to_string();
        match cf.get("value") {
            None => {
                values.as_object_mut().unwrap().remove(&key);
            }
            Some(v) => {
                let ok = v["type"] == def["type"]
                    && match def["type"].as_str().unwrap_or_default() {
                        "int" | "number" => v["value"].is_number(),
                        "boolean" => v["value"].is_boolean(),
                        "enum" => def["values"].as_array().is_some_and(|vals| vals.contains(&v["value"])),
                        _ => v["value"].is_string(),
                    };
                if !ok {
                    return Err(invalid());
                }
                values[key] = v["value"].clone();
            }
        }
    }
    let mut stored = u.clone();
    stored.as_object_mut().unwrap().remove("customFields");
    stored["customFieldValues"] = values;
    s.users.insert(id.to_owned(), stored);
    Ok(())
}

fn user(s: &mut Inner, body: &Value) -> (u16, Value) {
    match apply_user(s, body) {
        Ok(()) => (202, Value::Null),
        Err(e) => e,
    }
}

fn activity(s: &mut Inner, body: &Value) -> (u16, Value) {
    let (Some(id), Some(kind)) = (body["id"].as_str(), body["activityType"].as_str()) else { return invalid() };
    if !s.activity_types.iter().any(|t| t == kind) || !body["user"].is_object() {
        return invalid();
    }
    if let Err(e) = apply_user(s, &body["user"]) {
        return e;
    }
    s.activities.insert((id.to_owned(), kind.to_owned()), body.clone());
    (202, Value::Null)
}
