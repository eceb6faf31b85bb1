//! A HubSpot emulator: CRM v3 companies (search, batch read/update/create), company
//! properties and groups, lists v3 memberships, and the OAuth token endpoint, with
//! HubSpot's paths, bodies, status codes and rate-limit headers, plus fault injection
//! and a record of every request.
//!
//! Shapes follow HubSpot's public reference:
//! - search: <https://developers.hubspot.com/docs/api/crm/search> (filterGroups/filters,
//!   `IN` with `values`, `limit` ≤ 200, `after` paging, 10,000 results in all);
//! - batch update: 200 when all succeed, 207 Multi-Status with `errors[].context.ids`
//!   otherwise (<https://developers.hubspot.com/changelog/simplifying-batch-update-response-codes-for-crm-v3-apis>);
//!   invalid property values fail the whole request with 400 VALIDATION_ERROR;
//! - lists: `PUT /crm/v3/lists/{id}/memberships/add` takes a JSON array of record ids and
//!   answers `recordIdsAdded`/`recordIdsMissing`; MANUAL or SNAPSHOT lists only
//!   (<https://developers.hubspot.com/docs/api-reference/crm-lists-v3/memberships/put-crm-v3-lists-listId-memberships-add>);
//! - rate limits: `X-HubSpot-RateLimit-Max`, `-Remaining`, `-Interval-Milliseconds` and
//!   429 bodies with `errorType: RATE_LIMIT` and a `policyName`
//!   (<https://developers.hubspot.com/docs/guides/apps/api-usage/usage-details>);
//! - every request body is checked against the shapes of HubSpot's published OpenAPI
//!   specs (`hubspot_schema.rs`): a missing required key or a wrong type is a 400;
//! - batch create reports per-input errors (207) only when every input carries an
//!   `objectWriteTraceId`; otherwise one bad input fails the whole request
//!   (<https://developers.hubspot.com/docs/api-reference/error-handling#multi-status-errors>);
//! - OAuth: `/oauth/v3/token` (and the retiring `/oauth/v1/token`) mints access tokens
//!   that really expire after `expires_in`; an expired one gets 401
//!   `EXPIRED_AUTHENTICATION`.

#![allow(dead_code)]

pub use super::emulator::Recorded;
#[path = "hubspot_schema.rs"]
pub mod schema;
use super::emulator::{Faults, drop_connection, form_decode, max_in_window, take_fault};

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub enum Fault {
    /// 429 with `Retry-After` when given (TEN_SECONDLY_ROLLING), else a SECONDLY policy body.
    RateLimited { retry_after_secs: Option<u64> },
    ServerError(u16),
    /// Sleep, then answer normally.
    Delay(Duration),
    /// Apply the request, then sleep before answering (a crash window for the client).
    DelayAfterApply(Duration),
    Unauthorized,
    /// Answer normally but cut the JSON body in half.
    TruncatedJson,
    /// Close the connection without answering; the request is not applied.
    ConnectionReset,
    /// Apply the request, then close the connection without answering.
    ResetAfterApply,
}


#[derive(Default)]
struct Inner {
    tokens: HashSet<String>,
    oauth: Option<(String, String, String)>,
    /// Minted access tokens and when each expires.
    access_tokens: std::collections::HashMap<String, Instant>,
    token_lifetime: Duration,
    tokens_minted: usize,
    /// Domains whose create HubSpot refuses (a per-input error).
    rejected_domains: HashSet<String>,
    /// Created records come back without their `objectWriteTraceId` (the spec makes it
    /// optional in results).
    omit_trace_ids: bool,
    companies: BTreeMap<u64, BTreeMap<String, String>>,
    next_id: u64,
    properties: BTreeMap<String, Value>,
    groups: BTreeSet<String>,
    lists: BTreeMap<String, (String, Vec<String>)>,
    requests: Vec<Recorded>,
    faults: Faults<Fault>,
    rejected: HashSet<String>,
    limits: Option<(usize, usize)>,
    limited: usize,
    /// Arrival times of API requests, for the emulator's own limits.
    arrivals: Vec<(Instant, bool)>,
}

type Shared = Arc<Mutex<Inner>>;

pub struct HubSpot {
    pub url: String,
    state: Shared,
}

const BUILTIN: [(&str, &str); 5] =
    [("name", "string"), ("domain", "string"), ("website", "string"), ("hs_object_id", "number"), ("createdate", "datetime")];

/// An emulator on a runtime of its own, so a test can stay synchronous and spawn the
/// binary as a user would; the emulator stops when this is dropped.
pub struct Running {
    pub hs: HubSpot,
    pub rt: tokio::runtime::Runtime,
}

impl HubSpot {
    /// Starts an emulator on its own runtime that accepts `token` as a private app token.
    pub fn running(token: &str) -> Running {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let hs = rt.block_on(HubSpot::start());
        hs.accept_token(token);
        Running { hs, rt }
    }

    pub async fn start() -> HubSpot {
        let mut inner = Inner { next_id: 1_000_001, token_lifetime: Duration::from_secs(1800), ..Default::default() };
        for (name, kind) in BUILTIN {
            inner.properties.insert(name.into(), json!({"name": name, "label": name, "type": kind, "fieldType": "text", "groupName": "companyinformation"}));
        }
        inner.groups.insert("companyinformation".into());
        let state: Shared = Arc::new(Mutex::new(inner));
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        HubSpot { url, state }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().unwrap()
    }

    pub fn accept_token(&self, token: &str) {
        self.lock().tokens.insert(token.into());
    }
    pub fn oauth_client(&self, client_id: &str, client_secret: &str, refresh_token: &str) {
        self.lock().oauth = Some((client_id.into(), client_secret.into(), refresh_token.into()));
    }
    pub fn expire_access_tokens(&self) {
        self.lock().access_tokens.clear();
    }
    /// How long the access tokens minted from now on live (`expires_in`).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.lock().token_lifetime = lifetime;
    }
    /// Access tokens the token endpoint minted.
    pub fn tokens_minted(&self) -> usize {
        self.lock().tokens_minted
    }
    /// Answers that refused an expired access token.
    pub fn expired_token_refusals(&self) -> usize {
        self.lock().requests.iter().filter(|r| r.status == 401 && r.path.starts_with("/crm/")).count()
    }
    pub fn omit_trace_ids(&self) {
        self.lock().omit_trace_ids = true;
    }
    pub fn reject_domains(&self, domains: &[&str]) {
        self.lock().rejected_domains = domains.iter().map(|s| s.to_string()).collect();
    }
    pub fn add_company(&self, properties: &[(&str, &str)]) -> String {
        let mut s = self.lock();
        let id = s.next_id;
        s.next_id += 1;
        let mut p: BTreeMap<String, String> = properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        p.insert("hs_object_id".into(), id.to_string());
        s.companies.insert(id, p);
        id.to_string()
    }
    pub fn set_property(&self, id: &str, name: &str, value: &str) {
        let mut s = self.lock();
        s.companies.get_mut(&id.parse().unwrap()).unwrap().insert(name.into(), value.into());
    }
    pub fn company(&self, id: &str) -> Option<BTreeMap<String, String>> {
        self.lock().companies.get(&id.parse().ok()?).cloned()
    }
    pub fn companies(&self) -> Vec<(String, BTreeMap<String, String>)> {
        self.lock().companies.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }
    pub fn define_property(&self, name: &str, kind: &str, options: &[&str]) {
        let options: Vec<Value> = options.iter().map(|o| json!({"label": o, "value": o})).collect();
        self.lock().properties.insert(name.into(), json!({"name": name, "label": name, "type": kind, "fieldType": "text", "groupName": "companyinformation", "options": options}));
    }
    pub fn property(&self, name: &str) -> Option<Value> {
        self.lock().properties.get(name).cloned()
    }
    pub fn add_list(&self, processing_type: &str) -> String {
        let mut s = self.lock();
        let id = (s.lists.len() + 1).to_string();
        s.lists.insert(id.clone(), (processing_type.into(), Vec::new()));
        id
    }
    pub fn list_members(&self, list_id: &str) -> Vec<String> {
        self.lock().lists.get(list_id).map(|l| l.1.clone()).unwrap_or_default()
    }
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }
    pub fn write_calls(&self) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| {
                r.path.ends_with("/batch/update")
                    || r.path.ends_with("/batch/create")
                    || r.path.contains("/memberships/")
                    || (r.method == "POST" && r.path.starts_with("/crm/v3/properties/"))
            })
            .count()
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
    pub fn set_limits(&self, requests_per_10s: usize, searches_per_s: usize) {
        self.lock().limits = Some((requests_per_10s, searches_per_s));
    }
    pub fn rate_limited_count(&self) -> usize {
        self.lock().limited
    }
    /// The most requests (whose path starts with the prefix) seen inside any window.
    pub fn max_in_window(&self, path_prefix: &str, window: Duration) -> usize {
        max_in_window(self.lock().requests.iter().filter(|r| r.path.starts_with(path_prefix)).map(|r| r.at), window)
    }
}

fn correlation() -> String {
    format!("{:08x}-emul-4000-8000-{:012x}", rand::random::<u32>(), rand::random::<u64>() & 0xffff_ffff_ffff)
}

fn error(status: u16, category: &str, message: &str) -> (u16, Value) {
    (status, json!({"status": "error", "message": message, "correlationId": correlation(), "category": category}))
}

async fn handle(State(state): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let at = Instant::now();
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let parsed: Value = if is_token_path(&path) {
        let form = form_decode(std::str::from_utf8(&body).unwrap_or_default());
        json!(form)
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let fault = take_fault(&mut state.lock().unwrap().faults, &path);
    if let Some(Fault::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let mut extra: Vec<(&'static str, String)> = Vec::new();
    let (status, mut text) = {
        let mut s = state.lock().unwrap();
        let (status, value) = match &fault {
            Some(Fault::RateLimited { retry_after_secs }) => {
                if let Some(secs) = retry_after_secs {
                    // HubSpot says the ten-second window is spent and when to come back.
                    extra.push(("retry-after", secs.to_string()));
                    extra.push(("x-hubspot-ratelimit-max", "100".into()));
                    extra.push(("x-hubspot-ratelimit-remaining", "0".into()));
                    extra.push(("x-hubspot-ratelimit-interval-milliseconds", "10000".into()));
                }
                let policy = if retry_after_secs.is_some() { "TEN_SECONDLY_ROLLING" } else { "SECONDLY" };
                (429, rate_limit_body(policy))
            }
            Some(Fault::ServerError(code)) => (*code, json!({"status": "error", "message": "internal error", "correlationId": correlation()})),
            Some(Fault::Unauthorized) => unauthorized(),
            // Recorded with status 0: the client sent it, nothing answered.
            Some(Fault::ConnectionReset) => (0, Value::Null),
            _ => respond(&mut s, &method, &path, &authorization, &parsed, at, &mut extra),
        };
        let text = value.to_string();
        s.requests.push(Recorded { method: method.to_string(), path: path.clone(), query, authorization, body: parsed, status, at });
        (status, text)
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
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json;charset=utf-8"));
    for (k, v) in extra {
        response.headers_mut().insert(k, HeaderValue::from_str(&v).unwrap());
    }
    response
}

fn rate_limit_body(policy: &str) -> Value {
    json!({
        "status": "error",
        "message": format!("You have reached your {} limit.", policy.to_lowercase()),
        "errorType": "RATE_LIMIT",
        "correlationId": correlation(),
        "policyName": policy,
        "groupName": "publicapi:private-app:1234",
    })
}

fn unauthorized() -> (u16, Value) {
    error(
        401,
        "INVALID_AUTHENTICATION",
        "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
    )
}

#[allow(clippy::too_many_arguments)]
fn respond(
    s: &mut Inner,
    method: &Method,
    path: &str,
    authorization: &Option<String>,
    body: &Value,
    at: Instant,
    extra: &mut Vec<(&'static str, String)>,
) -> (u16, Value) {
    if is_token_path(path) {
        return token(s, body);
    }
    let bearer = authorization.as_deref().and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
    match s.access_tokens.get(bearer) {
        Some(expires) if *expires <= at => {
            let ago = at.duration_since(*expires).as_secs();
            return error(401, "EXPIRED_AUTHENTICATION", &format!("The OAuth token used to make this call expired {ago} second(s) ago."));
        }
        Some(_) => {}
        None if s.tokens.contains(bearer) => {}
        None => return unauthorized(),
    }
    // The emulator's own limits, counted over requests that got through.
    let search = path.ends_with("/search");
    if let Some((per10, per_s)) = s.limits {
        let in10 = s.arrivals.iter().filter(|(t, _)| at.duration_since(*t) < Duration::from_secs(10)).count();
        let in1 = s.arrivals.iter().filter(|(t, sr)| *sr && at.duration_since(*t) < Duration::from_secs(1)).count();
        if in10 >= per10 {
            s.limited += 1;
            extra.push(("x-hubspot-ratelimit-max", per10.to_string()));
            extra.push(("x-hubspot-ratelimit-remaining", "0".into()));
            extra.push(("x-hubspot-ratelimit-interval-milliseconds", "10000".into()));
            return (429, rate_limit_body("TEN_SECONDLY_ROLLING"));
        }
        if search && in1 >= per_s {
            s.limited += 1;
            return (429, rate_limit_body("SECONDLY"));
        }
    }
    s.arrivals.push((at, search));
    if !search {
        let max = s.limits.map_or(100, |l| l.0);
        let used = s.arrivals.iter().filter(|(t, _)| at.duration_since(*t) < Duration::from_secs(10)).count();
        extra.push(("x-hubspot-ratelimit-max", max.to_string()));
        extra.push(("x-hubspot-ratelimit-remaining", max.saturating_sub(used).to_string()));
        extra.push(("x-hubspot-ratelimit-interval-milliseconds", "10000".into()));
    }
    if let Some(problem) = schema::shape_of(method.as_str(), path).and_then(|shape| schema::check(shape, body)) {
        return error(400, "VALIDATION_ERROR", &format!("Invalid input JSON on line 1, column 1: {problem}"));
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["crm", "v3", "objects", "companies", "search"]) => search_companies(s, body),
        ("POST", ["crm", "v3", "objects", "companies", "batch", "update"]) => batch_update(s, body),
        ("POST", ["crm", "v3", "objects", "companies", "batch", "create"]) => batch_create(s, body),
        ("POST", ["crm", "v3", "objects", "companies", "batch", "read"]) => batch_read(s, body),
        ("GET", ["crm", "v3", "properties", "companies"]) => {
            (200, json!({"results": s.properties.values().cloned().collect::<Vec<_>>()}))
        }
        ("GET", ["crm", "v3", "properties", "companies", "groups", name]) => {
            if s.groups.contains(*name) {
                (200, json!({"name": name, "label": name, "displayOrder": -1, "archived": false}))
            } else {
                error(404, "OBJECT_NOT_FOUND", &format!("Unable to find property group {name}"))
            }
        }
        ("POST", ["crm", "v3", "properties", "companies", "groups"]) => {
            let name = body["name"].as_str().unwrap_or_default().to_owned();
            if !s.groups.insert(name.clone()) {
                return error(409, "OBJECT_ALREADY_EXISTS", "Property group already exists");
            }
            (201, json!({"name": name, "label": body["label"], "displayOrder": body["displayOrder"], "archived": false}))
        }
        ("POST", ["crm", "v3", "properties", "companies", "batch", "create"]) => {
            let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
            for p in &inputs {
                let name = p["name"].as_str().unwrap_or_default();
                if s.properties.contains_key(name) {
                    return error(409, "OBJECT_ALREADY_EXISTS", &format!("A property named '{name}' already exists."));
                }
                if !s.groups.contains(p["groupName"].as_str().unwrap_or_default()) {
                    return error(400, "VALIDATION_ERROR", "Property group does not exist");
                }
            }
            for p in &inputs {
                s.properties.insert(p["name"].as_str().unwrap().to_owned(), p.clone());
            }
            (201, json!({"status": "COMPLETE", "results": inputs}))
        }
        ("GET", ["crm", "v3", "lists", id]) => match s.lists.get(*id) {
            Some((kind, _)) => (200, json!({"list": {"listId": id, "name": format!("List {id}"), "processingType": kind, "objectTypeId": "0-2"}})),
            None => error(404, "OBJECT_NOT_FOUND", &format!("List {id} does not exist")),
        },
        ("PUT", ["crm", "v3", "lists", id, "memberships", "add"]) => {
            let ids: Vec<String> = body.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()).unwrap_or_default();
            let known: HashSet<String> = s.companies.keys().map(|k| k.to_string()).collect();
            let Some((kind, members)) = s.lists.get_mut(*id) else {
                return error(404, "OBJECT_NOT_FOUND", &format!("List {id} does not exist"));
            };
            if kind == "DYNAMIC" {
                return error(400, "VALIDATION_ERROR", &format!("List {id} has processing type DYNAMIC; records can only be added to MANUAL or SNAPSHOT lists"));
            }
            let (mut added, mut missing) = (Vec::new(), Vec::new());
            for rid in ids {
                if !known.contains(&rid) {
                    missing.push(rid);
                } else if !members.contains(&rid) {
                    members.push(rid.clone());
                    added.push(rid);
                }
            }
            // The spec's `MembershipsUpdateResponse` spells it `recordsIdsAdded`.
            (200, json!({"recordsIdsAdded": added, "recordIdsMissing": missing, "recordIdsRemoved": []}))
        }
        _ => error(404, "OBJECT_NOT_FOUND", &format!("No route for {method} {path}")),
    }
}

fn is_token_path(path: &str) -> bool {
    path == "/oauth/v3/token" || path == "/oauth/v1/token"
}

fn token(s: &mut Inner, form: &Value) -> (u16, Value) {
    let f = |k: &str| form[k].as_str().unwrap_or_default().to_owned();
    match &s.oauth {
        Some((id, secret, refresh))
            if f("grant_type") == "refresh_token" && &f("client_id") == id && &f("client_secret") == secret && &f("refresh_token") == refresh =>
        {
            let access = format!("emul-access-{:016x}", rand::random::<u64>());
            s.access_tokens.insert(access.clone(), Instant::now() + s.token_lifetime);
            s.tokens_minted += 1;
            // `AccessTokenResponse` of the OAuth v3 spec.
            (200, json!({"token_type": "bearer", "refresh_token": refresh, "access_token": access,
                         "expires_in": s.token_lifetime.as_secs(), "token_use": "access_token", "hub_id": 1234}))
        }
        _ => (400, json!({"error": "invalid_grant", "error_description": "missing or unknown refresh token", "status": "BAD_REFRESH_TOKEN"})),
    }
}

fn record(id: u64, props: &BTreeMap<String, String>, wanted: Option<&[String]>) -> Value {
    let properties: BTreeMap<&str, Option<&str>> = match wanted {
        Some(names) => names
            .iter()
            .map(|n| (n.as_str(), props.get(n).map(String::as_str)))
            .chain([("hs_object_id", Some(props["hs_object_id"].as_str()))])
            .collect(),
        None => props.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))).collect(),
    };
    json!({"id": id.to_string(), "properties": properties, "createdAt": "2026-01-05T10:00:00.000Z", "updatedAt": "2026-11-01T10:00:00.000Z", "archived": false})
}

fn search_companies(s: &Inner, body: &Value) -> (u16, Value) {
    let limit = body["limit"].as_u64().unwrap_or(10) as usize;
    if limit > 200 {
        return error(400, "VALIDATION_ERROR", "limit must be at most 200");
    }
    let groups = body["filterGroups"].as_array().cloned().unwrap_or_default();
    let mut filters = Vec::new();
    for g in &groups {
        for f in g["filters"].as_array().cloned().unwrap_or_default() {
            let values: Vec<String> = f["values"].as_array().map(|v| v.iter().filter_map(|x| x.as_str().map(str::to_lowercase)).collect()).unwrap_or_default();
            if f["operator"] == "IN" && values.len() > 100 {
                return error(400, "VALIDATION_ERROR", "IN filters accept at most 100 values");
            }
            filters.push((f["propertyName"].as_str().unwrap_or_default().to_owned(), f["operator"].as_str().unwrap_or_default().to_owned(), values));
        }
    }
    let after: usize = body["after"].as_str().and_then(|a| a.parse().ok()).unwrap_or(0);
    if after >= 10_000 {
        return error(400, "VALIDATION_ERROR", "Search results are limited to 10,000");
    }
    let wanted: Vec<String> = body["properties"].as_array().map(|p| p.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default();
    let matching: Vec<(&u64, &BTreeMap<String, String>)> = s
        .companies
        .iter()
        .filter(|(_, p)| {
            filters.iter().all(|(name, op, values)| match op.as_str() {
                "IN" => p.get(name).is_some_and(|v| values.contains(&v.to_lowercase())),
                "EQ" => p.get(name).is_some_and(|v| values.first() == Some(&v.to_lowercase())),
                _ => false,
            })
        })
        .collect();
    let total = matching.len();
    let page: Vec<Value> = matching.iter().skip(after).take(limit).map(|(id, p)| record(**id, p, Some(&wanted))).collect();
    let mut out = json!({"total": total, "results": page});
    if after + limit < total.min(10_000) {
        out["paging"] = json!({"next": {"after": (after + limit).to_string(), "link": "?after="}});
    }
    (200, out)
}

/// HubSpot checks every value against its property before writing anything.
fn validate(s: &Inner, inputs: &[Value]) -> Option<(u16, Value)> {
    let mut problems = Vec::new();
    for input in inputs {
        for (name, value) in input["properties"].as_object().into_iter().flatten() {
            let v = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
            let Some(def) = s.properties.get(name) else {
                problems.push(json!({"isValid": false, "message": format!("Property \"{name}\" does not exist"), "error": "PROPERTY_DOESNT_EXIST", "name": name}));
                continue;
            };
            if v.is_empty() {
                continue;
            }
            let bad = match def["type"].as_str().unwrap_or("string") {
                "number" => v.parse::<f64>().is_err().then(|| ("INVALID_FLOAT", format!("{v} was not a valid number."))),
                "date" => (chrono::NaiveDate::parse_from_str(&v, "%Y-%m-%d").is_err() && v.parse::<i64>().map_or(true, |ms| ms % 86_400_000 != 0))
                    .then(|| ("INVALID_DATE", format!("{v} is not a valid date (a midnight UTC timestamp or YYYY-MM-DD)"))),
                "bool" => (v != "true" && v != "false").then(|| ("INVALID_BOOLEAN", format!("{v} is not a valid boolean"))),
                "enumeration" => {
                    let ok = def["options"].as_array().is_some_and(|o| o.iter().any(|o| o["value"] == v.as_str()));
                    (!ok).then(|| ("INVALID_OPTION", format!("{v} was not one of the allowed options")))
                }
                _ => None,
            };
            if let Some((code, message)) = bad {
                problems.push(json!({"isValid": false, "message": message, "error": code, "name": name}));
            }
        }
    }
    if problems.is_empty() {
        return None;
    }
    let message = format!("Property values were not valid: {}", Value::Array(problems.clone()));
    Some((400, json!({"status": "error", "message": message, "correlationId": correlation(), "category": "VALIDATION_ERROR"})))
}

fn batch_limit(inputs: &[Value]) -> Option<(u16, Value)> {
    (inputs.len() > 100).then(|| error(400, "VALIDATION_ERROR", &format!("Batch input limit exceeded: {} inputs, at most 100 allowed", inputs.len())))
}

fn batch_update(s: &mut Inner, body: &Value) -> (u16, Value) {
    let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
    if let Some(e) = batch_limit(&inputs).or_else(|| validate(s, &inputs)) {
        return e;
    }
    let mut results = Vec::new();
    let (mut missing, mut rejected) = (Vec::new(), Vec::new());
    for input in &inputs {
        let id_text = input["id"].as_str().unwrap_or_default().to_owned();
        if s.rejected.contains(&id_text) {
            rejected.push(id_text);
            continue;
        }
        let Some(id) = id_text.parse::<u64>().ok().filter(|id| s.companies.contains_key(id)) else {
            missing.push(id_text);
            continue;
        };
        let company = s.companies.get_mut(&id).unwrap();
        for (k, v) in input["properties"].as_object().into_iter().flatten() {
            company.insert(k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()));
        }
        results.push(record(id, company, None));
    }
    let mut out = json!({"status": "COMPLETE", "results": results, "startedAt": "2026-11-01T10:00:00.000Z", "completedAt": "2026-11-01T10:00:00.100Z"});
    let mut errors = Vec::new();
    if !missing.is_empty() {
        errors.push(json!({"status": "error", "category": "OBJECT_NOT_FOUND", "message": "Could not get some COMPANY objects, they may be deleted or not exist.", "context": {"ids": missing}}));
    }
    if !rejected.is_empty() {
        errors.push(json!({"status": "error", "category": "VALIDATION_ERROR", "message": "Blocked by a validation rule", "context": {"ids": rejected}}));
    }
    if errors.is_empty() {
        (200, out)
    } else {
        out["numErrors"] = json!(errors.len());
        out["errors"] = json!(errors);
        (207, out)
    }
}

fn batch_create(s: &mut Inner, body: &Value) -> (u16, Value) {
    let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
    if let Some(e) = batch_limit(&inputs).or_else(|| validate(s, &inputs)) {
        return e;
    }
    let refused = |input: &Value| input["properties"]["domain"].as_str().is_some_and(|d| s.rejected_domains.contains(d));
    let traced = inputs.iter().all(|i| i["objectWriteTraceId"].is_string());
    // Without a trace id on every input, one bad input fails the whole request.
    if !traced && inputs.iter().any(refused) {
        return error(400, "VALIDATION_ERROR", "Blocked by a validation rule: domain is not allowed");
    }
    let (mut results, mut errors) = (Vec::new(), Vec::new());
    for input in &inputs {
        let trace = input["objectWriteTraceId"].clone();
        if refused(input) {
            errors.push(json!({"status": "error", "category": "VALIDATION_ERROR", "message": "Blocked by a validation rule: domain is not allowed",
                               "context": {"objectWriteTraceId": [trace]}, "errors": [], "links": {}}));
            continue;
        }
        let id = s.next_id;
        s.next_id += 1;
        let mut p: BTreeMap<String, String> = input["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
            .collect();
        p.insert("hs_object_id".into(), id.to_string());
        let mut r = record(id, &p, None);
        if trace.is_string() && !s.omit_trace_ids {
            r["objectWriteTraceId"] = trace;
        }
        results.push(r);
        s.companies.insert(id, p);
    }
    // Created records come back in no promised order.
    results.reverse();
    let mut out = json!({"status": "COMPLETE", "results": results, "startedAt": "2026-11-01T10:00:00.000Z", "completedAt": "2026-11-01T10:00:00.100Z"});
    if errors.is_empty() {
        return (201, out);
    }
    out["numErrors"] = json!(errors.len());
    out["errors"] = json!(errors);
    (207, out)
}

fn batch_read(s: &Inner, body: &Value) -> (u16, Value) {
    let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
    if let Some(e) = batch_limit(&inputs) {
        return e;
    }
    let wanted: Vec<String> = body["properties"].as_array().map(|p| p.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default();
    let ids: Vec<&str> = inputs.iter().filter_map(|i| i["id"].as_str()).collect();
    let known = |id: &&str| id.parse::<u64>().ok().filter(|n| s.companies.contains_key(n));
    let results: Vec<Value> = ids.iter().filter_map(|id| known(id).map(|n| record(n, &s.companies[&n], Some(&wanted)))).collect();
    let missing: Vec<&str> = ids.iter().filter(|id| known(id).is_none()).copied().collect();
    let mut out = json!({"status": "COMPLETE", "results": results, "startedAt": "2026-11-01T10:00:00.000Z", "completedAt": "2026-11-01T10:00:00.100Z"});
    if missing.is_empty() {
        return (200, out);
    }
    // Ids HubSpot does not know: a 207 naming them in `errors`, the others read.
    // <https://developers.hubspot.com/docs/api-reference/error-handling#multi-status-errors>
    out["numErrors"] = json!(1);
    out["errors"] = json!([{"status": "error", "category": "OBJECT_NOT_FOUND", "message": "Could not get some COMPANY objects, they may be deleted or not exist.",
                            "context": {"ids": missing}}]);
    (207, out)
}
