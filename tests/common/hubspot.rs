//! A stateful HubSpot emulator for integration tests (axum 0.8 on the current tokio runtime).
//!
//! Covers what oql-sync talks to: CRM v3 companies (search, batch create/update/read, single
//! read), company properties and property groups, lists v3 (fetch, memberships add /
//! add-and-remove) and the OAuth token endpoint — with HubSpot's paths, bodies, status codes
//! and `X-HubSpot-RateLimit-*` headers, plus fault injection, rate-limit enforcement and a
//! record of every request. Shapes and the evidence for them are written up in
//! `/work/notes/hubspot-api.md`; doc URLs are repeated next to the subtle bits below.
//!
//! Judgement calls (docs unclear; see the notes):
//! - `IN` on a string property matches `value == stored.to_lowercase()`: HubSpot indexes string
//!   values lowercased and its search guide says IN values for strings must be lowercase. So a
//!   lowercase query finds `Acme.com`, an uppercase query finds nothing. `EQ` is case-insensitive.
//! - batch/update with an unknown id answers 207 with an `OBJECT_NOT_FOUND` error
//!   (`context.ids`), applying the rest; an invalid value or unknown property anywhere in the
//!   batch fails the whole batch with 400 `VALIDATION_ERROR` and applies nothing.
//! - Search responses carry no `X-HubSpot-RateLimit-*` headers (as observed on the real API);
//!   other authenticated CRM responses do. OAuth access tokens get no `-Daily*` headers.
//! - The emulator's own limits (`set_limits`) are sliding windows counted over requests it
//!   accepted (authenticated, not themselves rate limited).
//! - `date` values are stored as `YYYY-MM-DD` (a midnight-UTC millisecond value is converted),
//!   which is how HubSpot v3 reads them back.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Map, Value, json};

/// Faults, consumed in order by the next requests whose path starts with the given prefix.
#[derive(Clone, Debug)]
pub enum Fault {
    /// 429 with HubSpot's RATE_LIMIT body (`policyName` SECONDLY on search paths, else
    /// TEN_SECONDLY_ROLLING) and `Retry-After` when given. Not applied; not counted in
    /// `rate_limited_count`.
    RateLimited { retry_after_secs: Option<u64> },
    /// That status with a HubSpot-style error body. Not applied.
    ServerError(u16),
    /// Sleep, then handle normally.
    Delay(Duration),
    /// Handle normally (writes are applied), then sleep before answering: a window in which
    /// the client can be killed or time out after the server committed.
    DelayAfterApply(Duration),
    /// 401 INVALID_AUTHENTICATION, whatever the token. Not applied.
    Unauthorized,
    /// Handle normally (writes ARE applied, as when a response is cut in transit), then answer
    /// 200 with the JSON body cut in half.
    TruncatedJson,
    /// Not applied; the connection is aborted before any response byte is written (the body
    /// stream errors on its first poll, so hyper drops the connection with the head unsent):
    /// the client sees "connection closed before message completed" or similar.
    ResetConnection,
    /// Like `ResetConnection`, but the request is applied first (commit, then connection loss).
    ResetAfterApply,
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    /// JSON body; form fields as a JSON object for the token endpoint; a JSON string if the
    /// body was not JSON; `Value::Null` if empty.
    pub body: Value,
    pub status: u16,
    pub at: Instant,
}

struct Company {
    props: BTreeMap<String, String>,
    created: String,
    updated: String,
}

struct List {
    processing_type: String,
    name: String,
    members: Vec<String>,
    created: String,
}

#[derive(Default)]
struct Inner {
    private_tokens: HashSet<String>,
    /// (client_id, client_secret, refresh_token)
    oauth_clients: Vec<(String, String, String)>,
    /// access token -> expired?
    access_tokens: HashMap<String, bool>,
    tokens_issued: usize,
    companies: BTreeMap<u64, Company>,
    next_id: u64,
    properties: BTreeMap<String, Value>,
    groups: BTreeMap<String, Value>,
    lists: BTreeMap<String, List>,
    next_list: u64,
    requests: Vec<Recorded>,
    faults: VecDeque<(String, Fault, usize)>,
    rejected: HashSet<String>,
    limits: Option<(usize, usize)>,
    limited: usize,
    /// Accepted API requests: (arrival, is_search), for the emulator's own limits and headers.
    arrivals: Vec<(Instant, bool)>,
}

type Shared = Arc<Mutex<Inner>>;

pub struct HubSpot {
    pub url: String,
    state: Shared,
}

const DAILY_LIMIT: usize = 650_000;
const DEFAULT_BURST: usize = 190;
const MAX_BATCH: usize = 100;
const MAX_SEARCH_LIMIT: u64 = 200;
const MAX_IN_VALUES: usize = 100;
const SEARCH_CAP: usize = 10_000;
const COMPANY_GROUP: &str = "companyinformation";

/// Built-in company properties: (name, label, type, fieldType, read-only value).
const BUILTIN: &[(&str, &str, &str, &str, bool)] = &[
    ("name", "Company name", "string", "text", false),
    ("domain", "Company Domain Name", "string", "text", false),
    ("website", "Website URL", "string", "text", false),
    ("description", "Description", "string", "textarea", false),
    ("phone", "Phone Number", "string", "phonenumber", false),
    ("city", "City", "string", "text", false),
    ("country", "Country/Region", "string", "text", false),
    ("numberofemployees", "Number of Employees", "number", "number", false),
    ("hs_object_id", "Record ID", "number", "number", true),
    ("createdate", "Create Date", "datetime", "date", true),
    ("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", true),
];

/// Valid `fieldType`s per `type` (properties guide:
/// <https://developers.hubspot.com/docs/api/crm/properties>).
fn field_types(kind: &str) -> &'static [&'static str] {
    match kind {
        "bool" => &["booleancheckbox"],
        "enumeration" => &["booleancheckbox", "checkbox", "radio", "select", "calculation_equation"],
        "date" | "datetime" => &["date"],
        "number" => &["number", "calculation_equation"],
        "string" => &["text", "textarea", "file", "html", "phonenumber", "calculation_equation"],
        _ => &[],
    }
}

fn now_iso() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn correlation() -> String {
    let a: u32 = rand::random();
    let b: u16 = rand::random();
    let c: u16 = rand::random();
    let d: u64 = rand::random();
    format!("{a:08x}-{b:04x}-4{:03x}-8{:03x}-{:012x}", c & 0xfff, b & 0xfff, d & 0xffff_ffff_ffff)
}

#[allow(clippy::too_many_arguments)]
fn property_json(name: &str, label: &str, kind: &str, field_type: &str, group: &str, options: Vec<Value>, hubspot_defined: bool, read_only: bool) -> Value {
    let at = now_iso();
    json!({
        "name": name,
        "label": label,
        "type": kind,
        "fieldType": field_type,
        "description": "",
        "groupName": group,
        "options": options,
        "displayOrder": -1,
        "calculated": false,
        "externalOptions": false,
        "hasUniqueValue": false,
        "hidden": false,
        "hubspotDefined": hubspot_defined,
        "modificationMetadata": {"archivable": !hubspot_defined, "readOnlyDefinition": hubspot_defined, "readOnlyValue": read_only},
        "formField": false,
        "createdAt": at,
        "updatedAt": at,
        "archived": false,
    })
}

fn group_json(name: &str, label: &str, display_order: i64) -> Value {
    json!({"name": name, "label": label, "displayOrder": display_order, "archived": false})
}

impl HubSpot {
    /// Binds 127.0.0.1:0 and serves on the current tokio runtime.
    pub async fn start() -> HubSpot {
        let mut inner = Inner { next_id: 1_000_001, next_list: 101, ..Default::default() };
        for (name, label, kind, field_type, read_only) in BUILTIN {
            inner.properties.insert(name.to_string(), property_json(name, label, kind, field_type, COMPANY_GROUP, vec![], true, *read_only));
        }
        inner.groups.insert(COMPANY_GROUP.into(), group_json(COMPANY_GROUP, "Company information", 0));
        let state: Shared = Arc::new(Mutex::new(inner));
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        HubSpot { url, state }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A private-app token that is accepted as `Authorization: Bearer <token>`.
    pub fn accept_token(&self, token: &str) {
        self.lock().private_tokens.insert(token.into());
    }

    /// Registers an OAuth client: `POST /oauth/v1/token` with `grant_type=refresh_token` and these
    /// credentials issues a fresh random access token, accepted until `expire_access_tokens`.
    pub fn oauth_client(&self, client_id: &str, client_secret: &str, refresh_token: &str) {
        self.lock().oauth_clients.push((client_id.into(), client_secret.into(), refresh_token.into()));
    }

    /// Every access token issued so far now answers 401 EXPIRED_AUTHENTICATION.
    pub fn expire_access_tokens(&self) {
        for expired in self.lock().access_tokens.values_mut() {
            *expired = true;
        }
    }

    /// How many access tokens the token endpoint has issued.
    pub fn tokens_issued(&self) -> usize {
        self.lock().tokens_issued
    }

    /// Adds a company directly (no request recorded); returns its id, e.g. "1000001".
    pub fn add_company(&self, properties: &[(&str, &str)]) -> String {
        let mut s = self.lock();
        let id = s.next_id;
        s.next_id += 1;
        let mut props: BTreeMap<String, String> = properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        props.insert("hs_object_id".into(), id.to_string());
        let at = now_iso();
        s.companies.insert(id, Company { props, created: at.clone(), updated: at });
        id.to_string()
    }

    /// Sets one property directly (no validation, no request recorded).
    pub fn set_property(&self, id: &str, name: &str, value: &str) {
        let mut s = self.lock();
        if let Some(c) = id.parse().ok().and_then(|id: u64| s.companies.get_mut(&id)) {
            c.props.insert(name.into(), value.into());
            c.updated = now_iso();
        }
    }

    /// Stored property values (including `hs_object_id`).
    pub fn company(&self, id: &str) -> Option<BTreeMap<String, String>> {
        self.lock().companies.get(&id.parse().ok()?).map(|c| c.props.clone())
    }

    pub fn companies(&self) -> Vec<(String, BTreeMap<String, String>)> {
        self.lock().companies.iter().map(|(k, c)| (k.to_string(), c.props.clone())).collect()
    }

    /// Defines a custom company property in group `companyinformation`. `kind` is the HubSpot
    /// `type` ("string" | "number" | "date" | "datetime" | "enumeration" | "bool"); `options` are
    /// enumeration option values (label = value).
    pub fn define_property(&self, name: &str, kind: &str, options: &[&str]) {
        let field_type = match kind {
            "number" => "number",
            "date" | "datetime" => "date",
            "enumeration" => "select",
            "bool" => "booleancheckbox",
            _ => "text",
        };
        let options: Vec<Value> = options
            .iter()
            .enumerate()
            .map(|(i, o)| json!({"label": o, "value": o, "displayOrder": i, "hidden": false}))
            .collect();
        self.lock().properties.insert(name.into(), property_json(name, name, kind, field_type, COMPANY_GROUP, options, false, false));
    }

    /// The property definition as created (name, label, type, fieldType, groupName, options, ...).
    pub fn property(&self, name: &str) -> Option<Value> {
        self.lock().properties.get(name).cloned()
    }

    pub fn property_group(&self, name: &str) -> Option<Value> {
        self.lock().groups.get(name).cloned()
    }

    /// A companies list (objectTypeId "0-2") with processingType MANUAL | SNAPSHOT | DYNAMIC.
    pub fn add_list(&self, processing_type: &str) -> String {
        let mut s = self.lock();
        let id = s.next_list.to_string();
        s.next_list += 1;
        s.lists.insert(id.clone(), List { processing_type: processing_type.into(), name: format!("List {id}"), members: Vec::new(), created: now_iso() });
        id
    }

    pub fn list_members(&self, list_id: &str) -> Vec<String> {
        self.lock().lists.get(list_id).map(|l| l.members.clone()).unwrap_or_default()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Requests that write: companies batch/create and batch/update, property and property-group
    /// creates, list membership changes (whatever their status).
    pub fn write_calls(&self) -> usize {
        self.lock().requests.iter().filter(|r| is_write(&r.method, &r.path)).count()
    }

    /// Queue `fault` for the next `times` requests whose path starts with `path_prefix` ("" = any).
    /// Faults are consumed in the order they were queued.
    pub fn fail_next(&self, path_prefix: &str, fault: Fault, times: usize) {
        if times > 0 {
            self.lock().faults.push_back((path_prefix.into(), fault, times));
        }
    }

    /// batch/update inputs with these ids fail as per-record errors (207); the rest apply.
    pub fn reject_ids(&self, ids: &[&str]) {
        self.lock().rejected = ids.iter().map(|s| s.to_string()).collect();
    }

    /// Enforce a burst limit over all authenticated API calls (sliding 10 s, policyName
    /// TEN_SECONDLY_ROLLING) and a search limit (sliding 1 s, policyName SECONDLY).
    pub fn set_limits(&self, requests_per_10s: usize, searches_per_s: usize) {
        self.lock().limits = Some((requests_per_10s, searches_per_s));
    }

    /// The most recorded requests (path starts with the prefix, whatever their status) whose
    /// arrival times fall inside one window of this length.
    pub fn max_in_window(&self, path_prefix: &str, window: Duration) -> usize {
        let mut times: Vec<Instant> = self.lock().requests.iter().filter(|r| r.path.starts_with(path_prefix)).map(|r| r.at).collect();
        times.sort();
        let (mut best, mut lo) = (0, 0);
        for hi in 0..times.len() {
            while times[hi].duration_since(times[lo]) >= window {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    /// 429s produced by the emulator's own limits (not by injected faults).
    pub fn rate_limited_count(&self) -> usize {
        self.lock().limited
    }
}

fn is_write(method: &str, path: &str) -> bool {
    (method == "POST"
        && (path.ends_with("/objects/companies/batch/update")
            || path.ends_with("/objects/companies/batch/create")
            || path.starts_with("/crm/v3/properties/")))
        || (method == "PUT" && path.starts_with("/crm/v3/lists/") && path.contains("/memberships/"))
}

fn is_token_path(path: &str) -> bool {
    matches!(path, "/oauth/v1/token" | "/oauth/v3/token" | "/oauth/2026-03/token")
}

// ---------------------------------------------------------------------------------------------
// Request plumbing

struct Reply {
    status: u16,
    body: Value,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn new(status: u16, body: Value) -> Reply {
        Reply { status, body, headers: Vec::new() }
    }
}

/// HubSpot's generic error body (<https://developers.hubspot.com/docs/api-reference/error-handling>).
fn error(status: u16, category: &str, message: &str) -> Reply {
    Reply::new(status, json!({"status": "error", "message": message, "correlationId": correlation(), "category": category}))
}

fn error_with_context(status: u16, category: &str, message: &str, context: Value) -> Reply {
    Reply::new(status, json!({"status": "error", "message": message, "correlationId": correlation(), "category": category, "context": context}))
}

fn unauthorized() -> Reply {
    error(
        401,
        "INVALID_AUTHENTICATION",
        "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
    )
}

fn expired() -> Reply {
    error(401, "EXPIRED_AUTHENTICATION", "The OAuth token used to make this call expired 1 minute(s) ago.")
}

/// 429 body as in the usage guidelines
/// (<https://developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines>):
/// `{status, message, errorType: RATE_LIMIT, correlationId, policyName, requestId}`.
fn rate_limited(policy: &str) -> Reply {
    Reply::new(
        429,
        json!({
            "status": "error",
            "message": format!("You have reached your {} limit.", policy.to_lowercase()),
            "errorType": "RATE_LIMIT",
            "correlationId": correlation(),
            "policyName": policy,
            "requestId": correlation(),
        }),
    )
}

async fn handle(State(state): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let at = Instant::now();
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (parsed, json_ok) = if body.is_empty() {
        (Value::Null, true)
    } else if is_token_path(&path) {
        (Value::Object(decode_form(&String::from_utf8_lossy(&body)).into_iter().map(|(k, v)| (k, Value::String(v))).collect()), true)
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => (v, true),
            Err(_) => (Value::String(String::from_utf8_lossy(&body).into_owned()), false),
        }
    };

    let fault = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        take_fault(&mut s, &path)
    };
    if let Some(Fault::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }

    let reply = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        let reply = match &fault {
            Some(Fault::RateLimited { retry_after_secs }) => {
                let mut r = rate_limited(if path.ends_with("/search") { "SECONDLY" } else { "TEN_SECONDLY_ROLLING" });
                if let Some(secs) = retry_after_secs {
                    r.headers.push(("retry-after", secs.to_string()));
                }
                r
            }
            Some(Fault::ServerError(code)) => error(*code, "INTERNAL_ERROR", "internal error"),
            Some(Fault::Unauthorized) => unauthorized(),
            Some(Fault::ResetConnection) => Reply::new(0, Value::Null),
            _ => {
                if json_ok {
                    respond(&mut s, &method, &path, &query, authorization.as_deref(), &parsed, at)
                } else {
                    error(400, "VALIDATION_ERROR", "Invalid input JSON on line 1, column 1: request body is not valid JSON")
                }
            }
        };
        let status = match &fault {
            Some(Fault::ResetConnection | Fault::ResetAfterApply) => 0,
            Some(Fault::TruncatedJson) => 200,
            _ => reply.status,
        };
        s.requests.push(Recorded { method: method.to_string(), path: path.clone(), query, authorization, body: parsed, status, at });
        reply
    };

    if let Some(Fault::DelayAfterApply(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    if let Some(Fault::ResetConnection | Fault::ResetAfterApply) = &fault {
        // The body's first poll fails before hyper has flushed the response head, so the
        // connection is dropped with nothing written.
        let stream = futures_util::stream::iter(vec![Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "emulated connection reset",
        ))]);
        let mut response = Response::new(Body::from_stream(stream));
        *response.status_mut() = StatusCode::OK;
        return response;
    }

    let mut text = reply.body.to_string();
    let mut status = reply.status;
    if let Some(Fault::TruncatedJson) = &fault {
        text.truncate(text.len() / 2);
        status = 200;
    }
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = response.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json;charset=utf-8"));
    h.insert("x-hubspot-correlation-id", HeaderValue::from_str(&correlation()).unwrap());
    for (k, v) in reply.headers {
        h.insert(HeaderName::from_static(k), HeaderValue::from_str(&v).unwrap());
    }
    response
}

fn take_fault(s: &mut Inner, path: &str) -> Option<Fault> {
    let i = s.faults.iter().position(|(p, _, n)| *n > 0 && path.starts_with(p.as_str()))?;
    let fault = s.faults[i].1.clone();
    s.faults[i].2 -= 1;
    if s.faults[i].2 == 0 {
        s.faults.remove(i);
    }
    Some(fault)
}

fn decode_form(s: &str) -> BTreeMap<String, String> {
    let decode = |v: &str| {
        let bytes = v.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(b) => {
                            out.push(b);
                            i += 3;
                            continue;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    decode_form(query).remove(name)
}

// ---------------------------------------------------------------------------------------------
// Routing, auth and rate limits

enum Caller {
    PrivateApp,
    OAuth,
}

fn respond(s: &mut Inner, method: &Method, path: &str, query: &str, authorization: Option<&str>, body: &Value, at: Instant) -> Reply {
    if is_token_path(path) {
        return if method == Method::POST { token(s, body) } else { error(405, "VALIDATION_ERROR", "Method not allowed") };
    }
    let bearer = authorization.and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer "))).map(str::trim).unwrap_or("");
    let caller = if s.private_tokens.contains(bearer) {
        Caller::PrivateApp
    } else {
        match s.access_tokens.get(bearer) {
            Some(false) => Caller::OAuth,
            Some(true) => return expired(),
            None => return unauthorized(),
        }
    };

    let search = path.ends_with("/search");
    let in_window = |s: &Inner, window: Duration, only_search: bool| {
        s.arrivals.iter().filter(|(t, sr)| (!only_search || *sr) && at.saturating_duration_since(*t) < window).count()
    };
    let burst_max = s.limits.map_or(DEFAULT_BURST, |l| l.0);
    let rate_headers = |s: &Inner, used: usize, caller: &Caller| {
        let mut h = vec![
            ("x-hubspot-ratelimit-interval-milliseconds", "10000".to_string()),
            ("x-hubspot-ratelimit-max", burst_max.to_string()),
            ("x-hubspot-ratelimit-remaining", burst_max.saturating_sub(used).to_string()),
        ];
        // OAuth calls have no daily limit, hence no -Daily headers
        // (<https://developers.hubspot.com/changelog/rate-limit-headers-will-now-appear-for-oauth-authenticated-calls>).
        if let Caller::PrivateApp = caller {
            h.push(("x-hubspot-ratelimit-daily", DAILY_LIMIT.to_string()));
            h.push(("x-hubspot-ratelimit-daily-remaining", DAILY_LIMIT.saturating_sub(s.arrivals.len()).to_string()));
        }
        h
    };
    if let Some((per10, per_s)) = s.limits {
        if in_window(s, Duration::from_secs(10), false) >= per10 {
            s.limited += 1;
            let mut r = rate_limited("TEN_SECONDLY_ROLLING");
            if !search {
                r.headers = rate_headers(s, per10, &caller);
            }
            return r;
        }
        if search && in_window(s, Duration::from_secs(1), true) >= per_s {
            s.limited += 1;
            return rate_limited("SECONDLY");
        }
    }
    s.arrivals.push((at, search));
    let used = in_window(s, Duration::from_secs(10), false);
    let headers = if search { Vec::new() } else { rate_headers(s, used, &caller) };

    let mut reply = route(s, method, path, query, body);
    reply.headers.extend(headers);
    reply
}

fn route(s: &mut Inner, method: &Method, path: &str, query: &str, body: &Value) -> Reply {
    let segments: Vec<&str> = path.trim_start_matches('/').trim_end_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["crm", "v3", "objects", "companies", "search"]) => search_companies(s, body),
        ("POST", ["crm", "v3", "objects", "companies", "batch", "update"]) => batch_update(s, body),
        ("POST", ["crm", "v3", "objects", "companies", "batch", "create"]) => batch_create(s, body),
        ("POST", ["crm", "v3", "objects", "companies", "batch", "read"]) => batch_read(s, body),
        ("GET", ["crm", "v3", "objects", "companies", id]) => read_one(s, id, query),
        ("GET", ["crm", "v3", "properties", "companies"]) => Reply::new(200, json!({"results": s.properties.values().cloned().collect::<Vec<_>>()})),
        ("GET", ["crm", "v3", "properties", "companies", "groups"]) => Reply::new(200, json!({"results": s.groups.values().cloned().collect::<Vec<_>>()})),
        ("GET", ["crm", "v3", "properties", "companies", "groups", name]) => match s.groups.get(*name) {
            Some(g) => Reply::new(200, g.clone()),
            None => error(404, "OBJECT_NOT_FOUND", &format!("Unable to find property group {name} for object type 0-2")),
        },
        ("POST", ["crm", "v3", "properties", "companies", "groups"]) => create_group(s, body),
        ("GET", ["crm", "v3", "properties", "companies", name]) => match s.properties.get(*name) {
            Some(p) => Reply::new(200, p.clone()),
            None => error(404, "OBJECT_NOT_FOUND", &format!("Unable to find property {name} for object type 0-2")),
        },
        ("POST", ["crm", "v3", "properties", "companies"]) => create_property(s, body),
        ("POST", ["crm", "v3", "properties", "companies", "batch", "create"]) => batch_create_properties(s, body),
        ("GET", ["crm", "v3", "lists", id]) => get_list(s, id),
        ("PUT", ["crm", "v3", "lists", id, "memberships", "add"]) => {
            let Some(ids) = id_array(body) else {
                return error(400, "VALIDATION_ERROR", "Request body must be a JSON array of record ids");
            };
            change_members(s, id, ids, Vec::new(), false)
        }
        ("PUT", ["crm", "v3", "lists", id, "memberships", "add-and-remove"]) => {
            let add = id_array(&body["recordIdsToAdd"]).unwrap_or_default();
            let remove = id_array(&body["recordIdsToRemove"]).unwrap_or_default();
            change_members(s, id, add, remove, true)
        }
        _ => error(404, "OBJECT_NOT_FOUND", &format!("Unable to route {method} {path}")),
    }
}

// ---------------------------------------------------------------------------------------------
// OAuth (<https://developers.hubspot.com/docs/api-reference/legacy/authentication/oauth-tokens/v1/guide>)

fn token(s: &mut Inner, form: &Value) -> Reply {
    let f = |k: &str| form[k].as_str().unwrap_or_default().to_owned();
    let bad = |status: &str, message: &str| {
        Reply::new(400, json!({"status": status, "message": message, "correlationId": correlation(), "requestId": correlation()}))
    };
    match f("grant_type").as_str() {
        "refresh_token" => {}
        "authorization_code" => return bad("BAD_AUTH_CODE", "missing or unknown auth code"),
        _ => return bad("BAD_GRANT_TYPE", "missing or unknown grant type"),
    }
    let Some((_, secret, refresh)) = s.oauth_clients.iter().find(|(id, _, _)| *id == f("client_id")).cloned() else {
        return bad("BAD_CLIENT_ID", "missing or unknown client id");
    };
    if secret != f("client_secret") {
        return bad("BAD_CLIENT_SECRET", "missing or invalid client secret");
    }
    if refresh != f("refresh_token") {
        return bad("BAD_REFRESH_TOKEN", "missing or unknown refresh token");
    }
    let access = format!("CN{:016x}{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>(), rand::random::<u64>());
    s.access_tokens.insert(access.clone(), false);
    s.tokens_issued += 1;
    Reply::new(200, json!({"token_type": "bearer", "refresh_token": refresh, "access_token": access, "expires_in": 1800}))
}

// ---------------------------------------------------------------------------------------------
// Records

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

fn id_array(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| {
        a.iter()
            .filter_map(|x| match x {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect()
    })
}

/// A SimplePublicObject. `wanted`: `None` = every stored property; `Some(names)` = those (null if
/// unset) plus createdate, hs_lastmodifieddate and hs_object_id.
fn record(id: u64, c: &Company, wanted: Option<&[String]>) -> Value {
    let mut props = Map::new();
    match wanted {
        None => {
            for (k, v) in &c.props {
                props.insert(k.clone(), json!(v));
            }
        }
        Some(names) => {
            for n in names {
                props.insert(n.clone(), c.props.get(n).map_or(Value::Null, |v| json!(v)));
            }
        }
    }
    props.insert("createdate".into(), json!(c.created));
    props.insert("hs_lastmodifieddate".into(), json!(c.updated));
    props.insert("hs_object_id".into(), json!(id.to_string()));
    json!({"id": id.to_string(), "properties": props, "createdAt": c.created, "updatedAt": c.updated, "archived": false})
}

fn read_one(s: &Inner, id: &str, query: &str) -> Reply {
    let wanted: Vec<String> = query_param(query, "properties").map(|p| p.split(',').map(str::to_owned).collect()).unwrap_or_else(|| vec!["name".into(), "domain".into()]);
    match id.parse::<u64>().ok().and_then(|n| s.companies.get(&n).map(|c| (n, c))) {
        Some((n, c)) => Reply::new(200, record(n, c, Some(&wanted))),
        None => error(404, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric."),
    }
}

// Search: <https://developers.hubspot.com/docs/api-reference/2026-03/crm/search-the-crm>
// (limit ≤ 200, `after` paging, 10,000 results per query); filter-count limits from
// <https://developers.hubspot.com/changelog/breaking-change-expanded-filtering-capabilities-and-error-messaging-in-hubspots-search-api>.

const OPERATORS: &[&str] =
    &["EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"];

struct Filter {
    property: String,
    operator: String,
    value: Option<String>,
    high: Option<String>,
    values: Vec<String>,
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_filters(body: &Value) -> Result<Vec<Vec<Filter>>, Reply> {
    let invalid = |m: String| Err(error(400, "VALIDATION_ERROR", &m));
    let groups = match &body["filterGroups"] {
        Value::Null => return Ok(Vec::new()),
        Value::Array(g) => g,
        _ => return invalid("filterGroups must be an array".into()),
    };
    if groups.len() > 5 {
        return invalid(format!("Too many filter groups: {} (at most 5 allowed)", groups.len()));
    }
    let mut total = 0;
    let mut out = Vec::new();
    for g in groups {
        let Some(filters) = g["filters"].as_array() else {
            return invalid("Each filterGroup must contain a filters array".into());
        };
        if filters.is_empty() {
            return invalid("Each filterGroup must contain at least one filter".into());
        }
        if filters.len() > 10 {
            return invalid(format!("Too many filters in a filter group: {} (at most 10 allowed)", filters.len()));
        }
        total += filters.len();
        let mut group = Vec::new();
        for f in filters {
            let Some(property) = f["propertyName"].as_str() else {
                return invalid("Each filter requires a propertyName".into());
            };
            let operator = f["operator"].as_str().unwrap_or("EQ");
            if !OPERATORS.contains(&operator) {
                return invalid(format!("Unknown filter operator: {operator}"));
            }
            let values: Vec<String> = f["values"].as_array().map(|a| a.iter().filter_map(scalar).collect()).unwrap_or_default();
            if matches!(operator, "IN" | "NOT_IN") {
                if f["values"].as_array().is_none_or(|a| a.is_empty()) {
                    return invalid(format!("The {operator} operator requires a non-empty values array"));
                }
                if values.len() > MAX_IN_VALUES {
                    return invalid(format!("Too many values in an {operator} filter: {} (at most {MAX_IN_VALUES} allowed)", values.len()));
                }
            }
            let value = scalar(&f["value"]);
            if !matches!(operator, "IN" | "NOT_IN" | "HAS_PROPERTY" | "NOT_HAS_PROPERTY") && value.is_none() {
                return invalid(format!("The {operator} operator requires a value"));
            }
            group.push(Filter { property: property.into(), operator: operator.into(), value, high: scalar(&f["highValue"]), values });
        }
        out.push(group);
    }
    if total > 25 {
        return invalid(format!("Too many filters: {total} (at most 25 allowed)"));
    }
    Ok(out)
}

fn cmp_values(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.cmp(b),
    }
}

fn matches(f: &Filter, id: u64, c: &Company) -> bool {
    let stored = match f.property.as_str() {
        "hs_object_id" => Some(id.to_string()),
        "createdate" => Some(c.created.clone()),
        "hs_lastmodifieddate" => Some(c.updated.clone()),
        name => c.props.get(name).cloned().filter(|v| !v.is_empty()),
    };
    let value = f.value.as_deref().unwrap_or_default();
    match (f.operator.as_str(), stored) {
        ("HAS_PROPERTY", s) => s.is_some(),
        ("NOT_HAS_PROPERTY", s) => s.is_none(),
        // String values are indexed lowercased; IN values must be given in lowercase.
        ("IN", Some(s)) => f.values.iter().any(|v| *v == s.to_lowercase()),
        ("NOT_IN", Some(s)) => !f.values.iter().any(|v| *v == s.to_lowercase()),
        ("NOT_IN", None) => true,
        ("EQ", Some(s)) => s.to_lowercase() == value.to_lowercase(),
        ("NEQ", Some(s)) => s.to_lowercase() != value.to_lowercase(),
        ("NEQ", None) => true,
        ("LT", Some(s)) => cmp_values(&s, value).is_lt(),
        ("LTE", Some(s)) => cmp_values(&s, value).is_le(),
        ("GT", Some(s)) => cmp_values(&s, value).is_gt(),
        ("GTE", Some(s)) => cmp_values(&s, value).is_ge(),
        ("BETWEEN", Some(s)) => cmp_values(&s, value).is_ge() && f.high.as_deref().is_some_and(|h| cmp_values(&s, h).is_le()),
        ("CONTAINS_TOKEN", Some(s)) => s.to_lowercase().contains(&value.to_lowercase().replace('*', "")),
        ("NOT_CONTAINS_TOKEN", Some(s)) => !s.to_lowercase().contains(&value.to_lowercase().replace('*', "")),
        ("NOT_CONTAINS_TOKEN", None) => true,
        _ => false,
    }
}

fn search_companies(s: &Inner, body: &Value) -> Reply {
    if !body.is_object() {
        return error(400, "VALIDATION_ERROR", "Search request body must be a JSON object");
    }
    let limit = match &body["limit"] {
        Value::Null => 10,
        v => match v.as_u64() {
            Some(n) => n,
            None => return error(400, "VALIDATION_ERROR", "limit must be a positive integer"),
        },
    };
    if limit > MAX_SEARCH_LIMIT {
        return error(400, "VALIDATION_ERROR", &format!("Invalid input: limit must be less than or equal to {MAX_SEARCH_LIMIT}, was {limit}"));
    }
    let after: usize = match &body["after"] {
        Value::Null => 0,
        v => match scalar(v).and_then(|a| if a.is_empty() { Some(0) } else { a.parse().ok() }) {
            Some(n) => n,
            None => return error(400, "VALIDATION_ERROR", "after must be a paging cursor from a previous response"),
        },
    };
    if after >= SEARCH_CAP {
        return error(400, "VALIDATION_ERROR", "The paging cursor exceeds the maximum of 10000 results for a search query");
    }
    let groups = match parse_filters(body) {
        Ok(g) => g,
        Err(e) => return e,
    };
    let wanted: Vec<String> = match body["properties"].as_array() {
        Some(p) if !p.is_empty() => strings(&body["properties"]),
        _ => vec!["domain".into(), "name".into()],
    };
    let mut matching: Vec<(u64, &Company)> = s
        .companies
        .iter()
        .filter(|(id, c)| groups.is_empty() || groups.iter().any(|g| g.iter().all(|f| matches(f, **id, c))))
        .map(|(id, c)| (*id, c))
        .collect();
    // Ordered by id; a DESCENDING sort on hs_object_id or createdate reverses it.
    if let Some(first) = body["sorts"].as_array().and_then(|a| a.first()) {
        let descending = first["direction"] == "DESCENDING" || first.as_str().is_some_and(|s| s.starts_with('-'));
        if descending {
            matching.reverse();
        }
    }
    let total = matching.len();
    let limit = limit as usize;
    let page: Vec<Value> = matching.iter().skip(after).take(limit).map(|(id, c)| record(*id, c, Some(&wanted))).collect();
    let mut out = json!({"total": total, "results": page});
    let next = after + limit;
    if limit > 0 && next < total && next < SEARCH_CAP {
        out["paging"] = json!({"next": {"after": next.to_string(), "link": format!("?after={next}")}});
    }
    Reply::new(200, out)
}

/// Every value checked against its property before anything is written; any problem fails the
/// whole request with 400 VALIDATION_ERROR ("Property values were not valid: [...]").
/// Returns the normalised values per input.
fn validate(s: &Inner, inputs: &[Value]) -> Result<Vec<BTreeMap<String, Option<String>>>, Reply> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for input in inputs {
        let mut values = BTreeMap::new();
        let props = match &input["properties"] {
            Value::Object(m) => m.clone(),
            Value::Null => Map::new(),
            _ => return Err(error(400, "VALIDATION_ERROR", "properties must be an object of property name to value")),
        };
        for (name, raw) in props {
            let v = match &raw {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                other => Some(other.to_string()),
            };
            let Some(def) = s.properties.get(&name) else {
                problems.push(json!({"isValid": false, "message": format!("Property \"{name}\" does not exist"), "error": "PROPERTY_DOESNT_EXIST", "name": name}));
                continue;
            };
            if def["modificationMetadata"]["readOnlyValue"] == true {
                problems.push(json!({"isValid": false, "message": format!("\"{name}\" is a read only property; its value cannot be set."), "error": "READ_ONLY_VALUE", "name": name}));
                continue;
            }
            let Some(v) = v.filter(|v| !v.is_empty()) else {
                values.insert(name, None);
                continue;
            };
            let checked: Result<String, (&str, String)> = match def["type"].as_str().unwrap_or("string") {
                "number" => v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .map(|_| v.trim().to_owned())
                    .ok_or(("INVALID_FLOAT", format!("{v} was not a valid number."))),
                "bool" => match v.as_str() {
                    "true" | "false" => Ok(v.clone()),
                    _ => Err(("INVALID_BOOLEAN", format!("{v} was not a valid boolean; use true or false."))),
                },
                "date" => parse_date(&v).ok_or((
                    "INVALID_DATE",
                    format!("{v} is not a valid date: use YYYY-MM-DD or a UNIX millisecond timestamp at midnight UTC"),
                )),
                "datetime" => {
                    let ok = v.parse::<i64>().is_ok() || chrono::DateTime::parse_from_rfc3339(&v).is_ok() || chrono::NaiveDate::parse_from_str(&v, "%Y-%m-%d").is_ok();
                    if ok { Ok(v.clone()) } else { Err(("INVALID_DATETIME", format!("{v} is not a valid datetime"))) }
                }
                "enumeration" => {
                    let options: Vec<&str> = def["options"].as_array().into_iter().flatten().filter_map(|o| o["value"].as_str()).collect();
                    let multi = def["fieldType"] == "checkbox";
                    let parts: Vec<&str> = if multi { v.split(';').collect() } else { vec![v.as_str()] };
                    if parts.iter().all(|p| options.contains(p)) {
                        Ok(v.clone())
                    } else {
                        Err(("INVALID_OPTION", format!("{v} was not one of the allowed options: [{}]", options.join(", "))))
                    }
                }
                _ => Ok(v.clone()),
            };
            match checked {
                Ok(v) => {
                    values.insert(name, Some(v));
                }
                Err((code, message)) => problems.push(json!({"isValid": false, "message": message, "error": code, "name": name})),
            }
        }
        out.push(values);
    }
    if problems.is_empty() {
        return Ok(out);
    }
    let message = format!("Property values were not valid: {}", Value::Array(problems));
    Err(error(400, "VALIDATION_ERROR", &message))
}

/// `YYYY-MM-DD`, or a UNIX millisecond timestamp at exactly midnight UTC
/// (<https://developers.hubspot.com/docs/faq/how-should-timestamps-be-formatted-for-hubspots-apis>).
fn parse_date(v: &str) -> Option<String> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Some(d.format("%Y-%m-%d").to_string());
    }
    let ms = v.parse::<i64>().ok()?;
    if ms.rem_euclid(86_400_000) != 0 {
        return None;
    }
    chrono::DateTime::from_timestamp_millis(ms).map(|d| d.format("%Y-%m-%d").to_string())
}

fn batch_inputs(body: &Value) -> Result<Vec<Value>, Reply> {
    let Some(inputs) = body["inputs"].as_array() else {
        return Err(error(400, "VALIDATION_ERROR", "Invalid input JSON: the request body needs an inputs array"));
    };
    if inputs.len() > MAX_BATCH {
        return Err(error(400, "VALIDATION_ERROR", &format!("Batch input limit exceeded: {} inputs were sent, at most {MAX_BATCH} are allowed", inputs.len())));
    }
    Ok(inputs.clone())
}

fn batch_envelope(results: Vec<Value>, errors: Vec<Value>, started: &str) -> Value {
    let mut out = json!({"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": now_iso()});
    if !errors.is_empty() {
        out["numErrors"] = json!(errors.len());
        out["errors"] = json!(errors);
    }
    out
}

// batch/update: 200 when all succeed, 207 Multi-Status otherwise
// (<https://developers.hubspot.com/changelog/simplifying-batch-update-response-codes-for-crm-v3-apis>).
fn batch_update(s: &mut Inner, body: &Value) -> Reply {
    let started = now_iso();
    let inputs = match batch_inputs(body) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let ids: Vec<String> = inputs.iter().map(|i| scalar(&i["id"]).unwrap_or_default()).collect();
    if ids.iter().any(String::is_empty) {
        return error(400, "VALIDATION_ERROR", "Each input requires an id");
    }
    let mut seen = HashSet::new();
    let duplicates: Vec<&String> = ids.iter().filter(|id| !seen.insert(*id)).collect();
    if !duplicates.is_empty() {
        return error_with_context(
            400,
            "VALIDATION_ERROR",
            &format!("Duplicate IDs found in batch input: {duplicates:?}. IDs must be unique"),
            json!({"ids": duplicates}),
        );
    }
    let values = match validate(s, &inputs) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let now = now_iso();
    let (mut results, mut missing, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for (id_text, vals) in ids.iter().zip(values) {
        if s.rejected.contains(id_text) {
            errors.push(json!({
                "status": "error",
                "category": "VALIDATION_ERROR",
                "message": format!("Record {id_text} could not be updated: blocked by a validation rule"),
                "context": {"ids": [id_text]},
                "errors": [],
            }));
            continue;
        }
        let Some((id, company)) = id_text.parse::<u64>().ok().and_then(|id| s.companies.get_mut(&id).map(|c| (id, c))) else {
            missing.push(id_text.clone());
            continue;
        };
        let names: Vec<String> = vals.keys().cloned().collect();
        for (k, v) in vals {
            match v {
                Some(v) => company.props.insert(k, v),
                None => company.props.remove(&k),
            };
        }
        company.updated = now.clone();
        results.push(record(id, company, Some(&names)));
    }
    if !missing.is_empty() {
        errors.insert(
            0,
            json!({
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "message": "Could not get some COMPANY objects, they may be deleted or not exist. Check that ids are valid.",
                "context": {"ids": missing},
                "errors": [],
            }),
        );
    }
    let status = if errors.is_empty() { 200 } else { 207 };
    Reply::new(status, batch_envelope(results, errors, &started))
}

fn batch_create(s: &mut Inner, body: &Value) -> Reply {
    let started = now_iso();
    let inputs = match batch_inputs(body) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let values = match validate(s, &inputs) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let mut results = Vec::new();
    for (input, vals) in inputs.iter().zip(values) {
        let id = s.next_id;
        s.next_id += 1;
        let mut props: BTreeMap<String, String> = vals.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
        props.insert("hs_object_id".into(), id.to_string());
        let at = now_iso();
        let company = Company { props, created: at.clone(), updated: at };
        let mut r = record(id, &company, None);
        if let Some(trace) = input["objectWriteTraceId"].as_str() {
            r["objectWriteTraceId"] = json!(trace);
        }
        results.push(r);
        s.companies.insert(id, company);
    }
    // HubSpot does not promise results in input order; reversing catches clients that assume it.
    results.reverse();
    Reply::new(201, batch_envelope(results, Vec::new(), &started))
}

fn batch_read(s: &Inner, body: &Value) -> Reply {
    let started = now_iso();
    let inputs = match batch_inputs(body) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let wanted = strings(&body["properties"]);
    let wanted = if wanted.is_empty() { vec!["name".to_string(), "domain".to_string()] } else { wanted };
    let (mut results, mut missing) = (Vec::new(), Vec::new());
    for input in &inputs {
        let id_text = scalar(&input["id"]).unwrap_or_default();
        match id_text.parse::<u64>().ok().and_then(|id| s.companies.get(&id).map(|c| (id, c))) {
            Some((id, c)) => results.push(record(id, c, Some(&wanted))),
            None => missing.push(id_text),
        }
    }
    let mut errors = Vec::new();
    if !missing.is_empty() {
        errors.push(json!({
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": "Could not get some COMPANY objects, they may be deleted or not exist. Check that ids are valid.",
            "context": {"ids": missing},
            "errors": [],
        }));
    }
    let status = if errors.is_empty() { 200 } else { 207 };
    Reply::new(status, batch_envelope(results, errors, &started))
}

// ---------------------------------------------------------------------------------------------
// Properties (<https://developers.hubspot.com/docs/api/crm/properties>)

fn check_property(s: &Inner, p: &Value) -> Result<Value, Reply> {
    let invalid = |m: String| Err(error(400, "VALIDATION_ERROR", &m));
    for field in ["name", "label", "type", "fieldType", "groupName"] {
        if p[field].as_str().is_none_or(str::is_empty) {
            return invalid(format!("Property {field} is required"));
        }
    }
    let name = p["name"].as_str().unwrap();
    let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_name {
        return invalid(format!("Property name '{name}' is invalid: use lowercase letters, digits and underscores, starting with a letter"));
    }
    let kind = p["type"].as_str().unwrap();
    let field_type = p["fieldType"].as_str().unwrap();
    if field_types(kind).is_empty() {
        return invalid(format!("Property type '{kind}' is invalid"));
    }
    if !field_types(kind).contains(&field_type) {
        return invalid(format!("Property fieldType '{field_type}' is not valid for type '{kind}'"));
    }
    let group = p["groupName"].as_str().unwrap();
    if !s.groups.contains_key(group) {
        return invalid(format!("Property group '{group}' does not exist"));
    }
    let mut options = Vec::new();
    for (i, o) in p["options"].as_array().into_iter().flatten().enumerate() {
        let (Some(label), Some(value)) = (o["label"].as_str(), o["value"].as_str()) else {
            return invalid("Each option requires a label and a value".into());
        };
        options.push(json!({"label": label, "value": value, "displayOrder": o["displayOrder"].as_i64().unwrap_or(i as i64), "hidden": o["hidden"].as_bool().unwrap_or(false)}));
    }
    if kind != "enumeration" && !options.is_empty() {
        return invalid(format!("Options are only allowed on enumeration properties, not '{kind}'"));
    }
    let mut def = property_json(name, p["label"].as_str().unwrap(), kind, field_type, group, options, false, false);
    for field in ["description", "displayOrder", "hasUniqueValue", "hidden", "formField"] {
        if !p[field].is_null() {
            def[field] = p[field].clone();
        }
    }
    Ok(def)
}

fn already_exists(name: &str) -> Reply {
    error(409, "OBJECT_ALREADY_EXISTS", &format!("Property named '{name}' already exists."))
}

fn create_property(s: &mut Inner, body: &Value) -> Reply {
    let def = match check_property(s, body) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let name = def["name"].as_str().unwrap().to_owned();
    if s.properties.contains_key(&name) {
        return already_exists(&name);
    }
    s.properties.insert(name, def.clone());
    Reply::new(201, def)
}

fn batch_create_properties(s: &mut Inner, body: &Value) -> Reply {
    let started = now_iso();
    let inputs = match batch_inputs(body) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let mut defs = Vec::new();
    for p in &inputs {
        match check_property(s, p) {
            Ok(d) => defs.push(d),
            Err(e) => return e,
        }
    }
    let (mut results, mut errors) = (Vec::new(), Vec::new());
    for def in defs {
        let name = def["name"].as_str().unwrap().to_owned();
        if s.properties.contains_key(&name) {
            errors.push(json!({
                "status": "error",
                "category": "OBJECT_ALREADY_EXISTS",
                "message": format!("Property named '{name}' already exists."),
                "context": {"name": [name]},
                "errors": [],
            }));
            continue;
        }
        s.properties.insert(name, def.clone());
        results.push(def);
    }
    let status = if errors.is_empty() { 201 } else { 207 };
    Reply::new(status, batch_envelope(results, errors, &started))
}

fn create_group(s: &mut Inner, body: &Value) -> Reply {
    let (Some(name), Some(label)) = (body["name"].as_str(), body["label"].as_str()) else {
        return error(400, "VALIDATION_ERROR", "Property group name and label are required");
    };
    if s.groups.contains_key(name) {
        return error(409, "OBJECT_ALREADY_EXISTS", &format!("A property group named '{name}' already exists."));
    }
    let group = group_json(name, label, body["displayOrder"].as_i64().unwrap_or(-1));
    s.groups.insert(name.into(), group.clone());
    Reply::new(201, group)
}

// ---------------------------------------------------------------------------------------------
// Lists v3 (<https://developers.hubspot.com/docs/api-reference/legacy/crm/lists/memberships/add-to-list>)

fn get_list(s: &Inner, id: &str) -> Reply {
    match s.lists.get(id) {
        Some(l) => Reply::new(
            200,
            json!({"list": {
                "listId": id,
                "listVersion": 1,
                "name": l.name,
                "objectTypeId": "0-2",
                "processingStatus": "COMPLETE",
                "processingType": l.processing_type,
                "size": l.members.len(),
                "createdAt": l.created,
                "updatedAt": l.created,
                "filtersUpdatedAt": l.created,
                "createdById": "1",
                "updatedById": "1",
            }}),
        ),
        None => error(404, "OBJECT_NOT_FOUND", &format!("List with id {id} does not exist.")),
    }
}

/// "Records that do not exist or that are already members of the list are ignored"; MANUAL or
/// SNAPSHOT lists only. The response spells the added field `recordsIdsAdded` (sic).
fn change_members(s: &mut Inner, id: &str, add: Vec<String>, remove: Vec<String>, with_removals: bool) -> Reply {
    let known: HashSet<String> = s.companies.keys().map(|k| k.to_string()).collect();
    let Some(list) = s.lists.get_mut(id) else {
        return error(404, "OBJECT_NOT_FOUND", &format!("List with id {id} does not exist."));
    };
    if list.processing_type == "DYNAMIC" {
        return error(
            400,
            "VALIDATION_ERROR",
            &format!("List {id} has processingType DYNAMIC; memberships can only be changed for MANUAL or SNAPSHOT lists."),
        );
    }
    let (mut added, mut removed, mut missing) = (Vec::new(), Vec::new(), Vec::new());
    for rid in add {
        if !known.contains(&rid) {
            if !missing.contains(&rid) {
                missing.push(rid);
            }
        } else if !list.members.contains(&rid) {
            list.members.push(rid.clone());
            added.push(rid);
        }
    }
    if with_removals {
        for rid in remove {
            if let Some(i) = list.members.iter().position(|m| *m == rid) {
                list.members.remove(i);
                removed.push(rid);
            } else if !known.contains(&rid) && !missing.contains(&rid) {
                missing.push(rid);
            }
        }
    }
    Reply::new(200, json!({"recordIdsMissing": missing, "recordIdsRemoved": removed, "recordsIdsAdded": added}))
}
