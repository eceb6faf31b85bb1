//! A stateful Common Room emulator (Core API v1, plus the two v2 reads a live diff needs),
//! shaped after Common Room's OpenAPI description
//! (<https://api.commonroom.io/docs/community.html>, "Download OpenAPI specification";
//! shapes and quotes in /work/notes/common-room-api.md).
//!
//! What it does, as documented:
//! - `Authorization: Bearer <token>` on every call (tokens from [`CommonRoom::accept_token`]).
//! - `POST /source/{destinationSourceId}/user` and `/activity`: 202 Accepted with no body;
//!   users upsert by `id` within a source, activities by (`id`, `activityType`) within a
//!   source; `user` inside an activity is upserted too. Unknown source → 404.
//! - Schema validation (required fields, field types, `{type, value}` objects, date-time
//!   timestamps, `customFields[].value` present-or-absent but never `null`) → 400
//!   `{"reason": "invalid-request-body", "docs": …}` (components.responses.InvalidRequest).
//! - Everything past the schema is "accepted and will be processed" later in the real
//!   service, so by default an unknown custom field id, a value of the wrong type, an enum
//!   value not in the list, an unknown activity type or tag id still get 202: the bad part
//!   is dropped and described in [`CommonRoom::processing_errors`]. [`CommonRoom::set_strict`]
//!   turns those into 400s instead.
//! - `customFields: [{id, value: {type, value}}]` sets a field; `[{id}]` (no `value`)
//!   clears it ("Omitting this field will clear the custom field value"). Fields not
//!   listed are untouched. `tags` are additive; `{type: "name"}` creates unknown tags.
//! - Rate limiting by fixed interval: `X-RateLimit-Limit` / `X-RateLimit-Remaining` on every
//!   answer; a 429 adds `X-RateLimit-Reset` (epoch seconds), `Retry-After` (a UTC date-time,
//!   RFC 3339 by default, see [`RetryAfterFormat`]) and a body
//!   `{reason, rateLimit: {intervalLimit, intervalRemaining, intervalResetSeconds, waitMs}}`
//!   (components.responses.RateLimited).
//! - Reads: `GET /api-token-status`, `/activityTypes`, `/members/customFields`, `/tags`
//!   (+ `POST /tags`), the deprecated `GET /user/{email}` and `GET /members?email=`, and v2
//!   `GET /community/v2/organizations?primaryDomain=` and `/community/v2/contacts?organizationId=`
//!   (custom fields as `cf_<id>` → `{type, value}`), answering from the same state.
//!
//! Undocumented, so chosen here: 401 `{"status": "failure", "reason": "Unauthorized"}` for a
//! missing or unknown token (the docs only show `403 {"status": "forbidden"}` on
//! `/api-token-status`); the 404 body `{"status": "not-found", "reason": "Destination Source
//! Not Found"}` (the docs give the status text only); the 429 `reason` `"rate-limited"`.
//!
//! Paths given to [`CommonRoom::fail_next`] and [`CommonRoom::max_in_window`] match either
//! the full path (`/community/v1/source/…`) or the path under the v1 base (`/source/…`).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// The link the 400 body carries ("docs: A link to this API documentation").
pub const DOCS: &str = "https://api.commonroom.io/docs/community.html";
const V1: &str = "/community/v1";
const V2: &str = "/community/v2";

#[derive(Clone, Debug)]
pub enum Fault {
    /// 429 with the documented headers and body, `Retry-After` = now + `wait_ms`,
    /// `rateLimit.waitMs` = `wait_ms`. Not counted by [`CommonRoom::rate_limited_count`].
    RateLimited { wait_ms: u64 },
    /// This status with `{"status": "failure", "reason": "internal-error"}`; nothing applied.
    ServerError(u16),
    /// Sleep, then answer normally.
    Delay(Duration),
    /// Apply the request, then sleep before answering (a lost-answer window for the client).
    DelayAfterApply(Duration),
    /// 401 whatever the token; nothing applied.
    Unauthorized,
    /// Apply and answer normally but cut the JSON body in half; an answer with no body (202)
    /// gets a broken `{"status":"ok` instead, so a client must not parse 202 bodies.
    TruncatedJson,
}

/// How a 429's `Retry-After` is written. The docs say "The UTC datetime when the interval
/// resets" with `format: date-time` (RFC 3339); an HTTP-date or seconds are what generic
/// clients expect. A client should read all three.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RetryAfterFormat {
    /// `2025-01-01T12:00:00.250Z`
    #[default]
    Rfc3339,
    /// `Wed, 01 Jan 2025 12:00:01 GMT` (rounded up to the next second)
    HttpDate,
    /// `1` (delta-seconds, rounded up)
    Seconds,
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub body: Value,
    pub status: u16,
    pub at: Instant,
}

struct Field {
    id: u64,
    name: String,
    kind: String,
    multivalue: bool,
    values: Vec<String>,
}

struct User {
    source: u64,
    id: String,
    member: u64,
    fields: Map<String, Value>,
    custom: BTreeMap<u64, Value>,
    tags: BTreeSet<String>,
}

struct Activity {
    source: u64,
    body: Value,
}

struct Tag {
    id: String,
    name: String,
    entity_types: Vec<String>,
    created: String,
}

struct Inner {
    tokens: HashSet<String>,
    sources: HashSet<u64>,
    next_id: u64,
    fields: Vec<Field>,
    activity_types: Vec<(String, String)>,
    users: Vec<User>,
    user_index: HashMap<(u64, String), usize>,
    activities: Vec<Activity>,
    activity_index: HashMap<(u64, String, String), usize>,
    orgs: BTreeMap<String, u64>,
    tags: Vec<Tag>,
    requests: Vec<Recorded>,
    faults: VecDeque<(String, Fault, usize)>,
    rejected: HashSet<String>,
    strict: bool,
    processing_errors: Vec<String>,
    limit: (usize, Duration),
    window: Option<(Instant, usize)>,
    limited: usize,
    retry_after: RetryAfterFormat,
}

type Shared = Arc<Mutex<Inner>>;

pub struct CommonRoom {
    /// The v1 API base, `http://127.0.0.1:PORT/community/v1`.
    pub url: String,
    /// The v2 API base, `http://127.0.0.1:PORT/community/v2` (reads only).
    pub url_v2: String,
    state: Shared,
}

/// Lower-cased, without scheme, `www.`, path or trailing dot.
pub fn normalize_domain(d: &str) -> String {
    let d = d.trim().to_ascii_lowercase();
    let d = d.split_once("://").map(|(_, r)| r.to_owned()).unwrap_or(d);
    let d = d.split(['/', '?', '#']).next().unwrap_or_default();
    let d = d.strip_prefix("www.").unwrap_or(d);
    d.trim_end_matches('.').to_owned()
}

impl CommonRoom {
    /// Listens on 127.0.0.1:0 on the current tokio runtime. No token, no source, no custom
    /// field; one activity type (`started_training`, the docs' example).
    pub async fn start() -> CommonRoom {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let inner = Inner {
            tokens: HashSet::new(),
            sources: HashSet::new(),
            next_id: 1000,
            fields: Vec::new(),
            activity_types: vec![("started_training".into(), "Started training".into())],
            users: Vec::new(),
            user_index: HashMap::new(),
            activities: Vec::new(),
            activity_index: HashMap::new(),
            orgs: BTreeMap::new(),
            tags: Vec::new(),
            requests: Vec::new(),
            faults: VecDeque::new(),
            rejected: HashSet::new(),
            strict: false,
            processing_errors: Vec::new(),
            limit: (10_000, Duration::from_secs(1)),
            window: None,
            limited: 0,
            retry_after: RetryAfterFormat::default(),
        };
        let state: Shared = Arc::new(Mutex::new(inner));
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        CommonRoom { url: format!("{origin}{V1}"), url_v2: format!("{origin}{V2}"), state }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap()
    }

    pub fn accept_token(&self, token: &str) {
        self.lock().tokens.insert(token.into());
    }

    /// A new destination (API signal) source; its id is an integer, as the path parameter is.
    pub fn add_source(&self) -> String {
        let mut s = self.lock();
        let id = loop {
            let id = rand::random_range(10_000..100_000u64);
            if !s.sources.contains(&id) {
                break id;
            }
        };
        s.sources.insert(id);
        id.to_string()
    }

    /// A source with a chosen id (for config files written before the emulator starts).
    pub fn add_source_id(&self, id: u64) {
        self.lock().sources.insert(id);
    }

    /// A contact custom field, as created in the Common Room UI. `kind`: enum, string, date,
    /// int, number, url, boolean. `values` are the enum's options. Returns its numeric id.
    pub fn add_custom_field(&self, name: &str, kind: &str, values: &[&str]) -> u64 {
        self.add_field(name, kind, false, values)
    }

    /// A multi-value contact custom field (values are arrays).
    pub fn add_multivalue_custom_field(&self, name: &str, kind: &str, values: &[&str]) -> u64 {
        self.add_field(name, kind, true, values)
    }

    fn add_field(&self, name: &str, kind: &str, multivalue: bool, values: &[&str]) -> u64 {
        let mut s = self.lock();
        s.next_id += 1;
        let id = 12_000 + s.next_id;
        s.fields.push(Field { id, name: name.into(), kind: kind.into(), multivalue, values: values.iter().map(|v| v.to_string()).collect() });
        id
    }

    pub fn add_activity_type(&self, id: &str, display_name: &str) {
        self.lock().activity_types.push((id.into(), display_name.into()));
    }

    /// Stored activities (last values sent for each (source, id, activityType)), in the order
    /// they were first created, exactly as last posted.
    pub fn activities(&self) -> Vec<Value> {
        self.lock().activities.iter().map(|a| a.body.clone()).collect()
    }

    pub fn activity(&self, id: &str, activity_type: &str) -> Option<Value> {
        let s = self.lock();
        s.activities.iter().find(|a| a.body["id"] == id && a.body["activityType"] == activity_type).map(|a| a.body.clone())
    }

    /// Stored users in creation order: the merged `ApiUser` fields plus
    /// `destinationSourceId`, `memberId`, `customFields` (`{"<field id>": {type, value}}`),
    /// `customFieldsByName` (`{"<field name>": value}`) and `tags` (names).
    pub fn users(&self) -> Vec<Value> {
        let s = self.lock();
        s.users.iter().map(|u| render_user(&s, u)).collect()
    }

    pub fn user(&self, id: &str) -> Option<Value> {
        let s = self.lock();
        s.users.iter().find(|u| u.id == id).map(|u| render_user(&s, u))
    }

    /// The first stored user whose `companyDomain` is this domain (case, scheme and `www.`
    /// ignored).
    pub fn user_by_domain(&self, domain: &str) -> Option<Value> {
        self.users_by_domain(domain).into_iter().next()
    }

    pub fn users_by_domain(&self, domain: &str) -> Vec<Value> {
        let want = normalize_domain(domain);
        let s = self.lock();
        s.users
            .iter()
            .filter(|u| u.fields.get("companyDomain").and_then(Value::as_str).is_some_and(|d| normalize_domain(d) == want))
            .map(|u| render_user(&s, u))
            .collect()
    }

    /// Tag names known to the room.
    pub fn tags(&self) -> Vec<String> {
        self.lock().tags.iter().map(|t| t.name.clone()).collect()
    }

    /// What the asynchronous processing dropped after a 202 (unknown custom field, wrong
    /// type, unknown activity type, unknown tag id), one sentence each.
    pub fn processing_errors(&self) -> Vec<String> {
        self.lock().processing_errors.clone()
    }

    /// Answer 400 (and apply nothing) for what the real service would only drop later.
    pub fn set_strict(&self, strict: bool) {
        self.lock().strict = strict;
    }

    pub fn set_retry_after_format(&self, format: RetryAfterFormat) {
        self.lock().retry_after = format;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// POSTs received (whatever their answer).
    pub fn write_calls(&self) -> usize {
        self.lock().requests.iter().filter(|r| r.method == "POST").count()
    }

    /// The next `times` requests whose path starts with `path_prefix` get `fault`.
    pub fn fail_next(&self, path_prefix: &str, fault: Fault, times: usize) {
        if times > 0 {
            self.lock().faults.push_back((path_prefix.into(), fault, times));
        }
    }

    /// 400 `invalid-request-body` for a user with one of these ids, or an activity with one
    /// of these ids or whose user has one. Replaces the previous list.
    pub fn reject_ids(&self, ids: &[&str]) {
        self.lock().rejected = ids.iter().map(|s| s.to_string()).collect();
    }

    /// At most `requests` authenticated calls per fixed interval of `per`, starting at the
    /// first call after the previous interval ended. Default 10,000 a second.
    pub fn set_rate_limit(&self, requests: usize, per: Duration) {
        let mut s = self.lock();
        s.limit = (requests, per);
        s.window = None;
    }

    /// The most requests (any answer, including 429s) under `path_prefix` that fell in any
    /// sliding window of this length.
    pub fn max_in_window(&self, path_prefix: &str, window: Duration) -> usize {
        let s = self.lock();
        let mut times: Vec<Instant> = s.requests.iter().filter(|r| path_matches(&r.path, path_prefix)).map(|r| r.at).collect();
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

    /// 429s the enforced limit sent (injected [`Fault::RateLimited`] not counted).
    pub fn rate_limited_count(&self) -> usize {
        self.lock().limited
    }
}

fn path_matches(path: &str, prefix: &str) -> bool {
    path.starts_with(prefix) || path.strip_prefix(V1).is_some_and(|rel| rel.starts_with(prefix))
}

fn render_user(s: &Inner, u: &User) -> Value {
    let mut out = u.fields.clone();
    out.insert("id".into(), json!(u.id));
    out.insert("destinationSourceId".into(), json!(u.source));
    out.insert("memberId".into(), json!(u.member));
    let mut by_id = Map::new();
    let mut by_name = Map::new();
    for (fid, v) in &u.custom {
        by_id.insert(fid.to_string(), v.clone());
        if let Some(f) = s.fields.iter().find(|f| f.id == *fid) {
            by_name.insert(f.name.clone(), v["value"].clone());
        }
    }
    out.insert("customFields".into(), Value::Object(by_id));
    out.insert("customFieldsByName".into(), Value::Object(by_name));
    out.insert("tags".into(), json!(u.tags.iter().collect::<Vec<_>>()));
    Value::Object(out)
}

// ---------------------------------------------------------------- HTTP

struct Answer {
    status: u16,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn new(status: u16, body: Value) -> Answer {
        Answer { status, body: Some(body), headers: Vec::new() }
    }
    fn accepted() -> Answer {
        Answer { status: 202, body: None, headers: Vec::new() }
    }
}

fn invalid() -> Answer {
    Answer::new(400, json!({"reason": "invalid-request-body", "docs": DOCS}))
}

fn unauthorized() -> Answer {
    Answer::new(401, json!({"status": "failure", "reason": "Unauthorized"}))
}

fn not_found(reason: &str) -> Answer {
    Answer::new(404, json!({"status": "not-found", "reason": reason}))
}

fn retry_after_value(format: RetryAfterFormat, wait: Duration) -> String {
    let at = chrono::Utc::now() + chrono::TimeDelta::milliseconds(wait.as_millis() as i64);
    match format {
        RetryAfterFormat::Rfc3339 => at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        RetryAfterFormat::HttpDate => {
            let up = at + chrono::TimeDelta::milliseconds(if at.timestamp_subsec_millis() > 0 { 1000 - at.timestamp_subsec_millis() as i64 } else { 0 });
            up.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
        }
        RetryAfterFormat::Seconds => wait.as_millis().div_ceil(1000).to_string(),
    }
}

fn too_many(s: &Inner, wait: Duration) -> Answer {
    let (limit, per) = s.limit;
    let reset = chrono::Utc::now() + chrono::TimeDelta::milliseconds(wait.as_millis() as i64);
    let reset_secs = reset.timestamp() + i64::from(reset.timestamp_subsec_millis() > 0);
    let mut a = Answer::new(
        429,
        json!({"reason": "rate-limited", "rateLimit": {
            "intervalLimit": limit, "intervalRemaining": 0,
            "intervalResetSeconds": per.as_secs_f64(), "waitMs": wait.as_millis() as u64}}),
    );
    a.headers.push(("x-ratelimit-remaining", "0".into()));
    a.headers.push(("x-ratelimit-reset", reset_secs.to_string()));
    a.headers.push(("retry-after", retry_after_value(s.retry_after, wait)));
    a
}

fn take_fault(s: &mut Inner, path: &str) -> Option<Fault> {
    let i = s.faults.iter().position(|(p, _, n)| *n > 0 && path_matches(path, p))?;
    let f = s.faults[i].1.clone();
    s.faults[i].2 -= 1;
    if s.faults[i].2 == 0 {
        s.faults.remove(i);
    }
    Some(f)
}

async fn handle(State(state): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let at = Instant::now();
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let parsed: Option<Value> = if body.is_empty() { Some(Value::Null) } else { serde_json::from_slice(&body).ok() };
    let fault = take_fault(&mut state.lock().unwrap(), &path);
    if let Some(Fault::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let answer = {
        let mut s = state.lock().unwrap();
        let mut answer = match &fault {
            Some(Fault::RateLimited { wait_ms }) => too_many(&s, Duration::from_millis(*wait_ms)),
            Some(Fault::ServerError(code)) => Answer::new(*code, json!({"status": "failure", "reason": "internal-error"})),
            Some(Fault::Unauthorized) => unauthorized(),
            _ => gate(&mut s, &method, &path, &query, authorization.as_deref(), parsed.as_ref(), at),
        };
        // X-RateLimit-Limit and -Remaining on every answer (the 429 set its own Remaining).
        let (limit, per) = s.limit;
        let used = s.window.filter(|(start, _)| at.duration_since(*start) < per).map_or(0, |(_, n)| n);
        if !answer.headers.iter().any(|(k, _)| *k == "x-ratelimit-remaining") {
            answer.headers.push(("x-ratelimit-remaining", limit.saturating_sub(used).to_string()));
        }
        answer.headers.push(("x-ratelimit-limit", limit.to_string()));
        s.requests.push(Recorded {
            method: method.to_string(),
            path: path.clone(),
            query,
            authorization,
            body: parsed.unwrap_or_else(|| Value::String(String::from_utf8_lossy(&body).into_owned())),
            status: answer.status,
            at,
        });
        answer
    };
    if let Some(Fault::DelayAfterApply(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let mut text = answer.body.as_ref().map(Value::to_string).unwrap_or_default();
    if let Some(Fault::TruncatedJson) = &fault {
        if text.is_empty() {
            text = "{\"status\":\"ok".into();
        } else {
            text.truncate(text.len() / 2);
        }
    }
    let has_body = !text.is_empty();
    let mut response = (StatusCode::from_u16(answer.status).unwrap(), text).into_response();
    if has_body {
        response.headers_mut().insert("content-type", HeaderValue::from_static("application/json; charset=utf-8"));
    } else {
        response.headers_mut().remove("content-type");
    }
    for (k, v) in answer.headers {
        response.headers_mut().insert(k, HeaderValue::from_str(&v).unwrap());
    }
    response
}

/// Auth, then the rate limit, then the route.
fn gate(s: &mut Inner, method: &Method, path: &str, query: &str, auth: Option<&str>, body: Option<&Value>, at: Instant) -> Answer {
    let token = auth.and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer "))).map(str::trim);
    if !token.is_some_and(|t| s.tokens.contains(t)) {
        return unauthorized();
    }
    let (limit, per) = s.limit;
    let (start, used) = match s.window {
        Some((start, used)) if at.duration_since(start) < per => (start, used),
        _ => (at, 0),
    };
    if used >= limit {
        s.limited += 1;
        s.window = Some((start, used));
        return too_many(s, (start + per).saturating_duration_since(at));
    }
    s.window = Some((start, used + 1));
    let Some(body) = body else { return invalid() };
    route(s, method, path, query, body)
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| percent_decode(v))
}

fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn route(s: &mut Inner, method: &Method, path: &str, query: &str, body: &Value) -> Answer {
    if let Some(rest) = path.strip_prefix(V2) {
        return route_v2(s, method, rest, query);
    }
    let Some(rest) = path.strip_prefix(V1) else { return not_found("Not Found") };
    let segments: Vec<&str> = rest.trim_start_matches('/').trim_end_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["api-token-status"]) => Answer::new(200, json!({"jti": "emul0001", "communityName": "Emulated Room", "communityId": "emul0room"})),
        ("GET", ["activityTypes"]) => {
            Answer::new(200, Value::Array(s.activity_types.iter().map(|(id, name)| json!({"id": id, "displayName": name})).collect()))
        }
        ("GET", ["members", "customFields"]) => {
            // `destinationSourceId` narrows to fields that source may write; here every
            // source may write every field.
            let fields = s
                .fields
                .iter()
                .map(|f| {
                    let mut v = json!({"id": f.id, "name": f.name, "type": f.kind, "multivalue": f.multivalue});
                    if f.kind == "enum" {
                        v["values"] = json!(f.values);
                    }
                    v
                })
                .collect();
            Answer::new(200, Value::Array(fields))
        }
        ("GET", ["tags"]) => Answer::new(200, json!({"labels": s.tags.iter().map(render_tag).collect::<Vec<_>>()})),
        ("POST", ["tags"]) => {
            let (Some(name), Some(types)) = (body["name"].as_str(), body["entityTypes"].as_array()) else { return invalid() };
            let types: Option<Vec<String>> =
                types.iter().map(|t| t.as_str().filter(|t| ["member", "activity", "company"].contains(t)).map(str::to_owned)).collect();
            let Some(types) = types else { return invalid() };
            let i = tag_by_name(s, name, types);
            Answer::new(200, render_tag(&s.tags[i]))
        }
        ("GET", ["user", email]) => {
            let email = percent_decode(email);
            let found: Vec<Value> = s.users.iter().filter(|u| user_email(u) == Some(email.as_str())).map(|u| json!({"id": u.member})).collect();
            if found.is_empty() { not_found("Not Found") } else { Answer::new(200, Value::Array(found)) }
        }
        ("GET", ["members"]) => {
            let Some(email) = query_param(query, "email") else { return Answer::new(400, json!({"status": "failure", "reason": "Parameter Error"})) };
            let found: Vec<Value> = s.users.iter().filter(|u| user_email(u) == Some(email.as_str())).map(|u| legacy_member(s, u)).collect();
            if found.is_empty() { not_found("Not Found") } else { Answer::new(200, Value::Array(found)) }
        }
        ("POST", ["source", id, kind @ ("user" | "activity")]) => {
            let Some(source) = id.parse::<u64>().ok().filter(|id| s.sources.contains(id)) else {
                return not_found("Destination Source Not Found");
            };
            if *kind == "user" { post_user(s, source, body) } else { post_activity(s, source, body) }
        }
        _ => not_found("Not Found"),
    }
}

fn user_email(u: &User) -> Option<&str> {
    u.fields.get("email").and_then(Value::as_str)
}

fn render_tag(t: &Tag) -> Value {
    json!({"id": t.id, "name": t.name, "description": null, "entityTypes": t.entity_types, "createdAt": t.created, "deletedAt": null})
}

fn tag_by_name(s: &mut Inner, name: &str, entity_types: Vec<String>) -> usize {
    if let Some(i) = s.tags.iter().position(|t| t.name == name) {
        return i;
    }
    s.next_id += 1;
    let id = s.next_id.to_string();
    s.tags.push(Tag { id, name: name.into(), entity_types, created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true) });
    s.tags.len() - 1
}

/// The deprecated `GET /members?email=` shape.
fn legacy_member(s: &Inner, u: &User) -> Value {
    let custom: Vec<Value> = u
        .custom
        .iter()
        .filter_map(|(fid, v)| s.fields.iter().find(|f| f.id == *fid).map(|f| json!({"name": f.name, "type": f.kind, "value": v["value"]})))
        .collect();
    json!({
        "fullName": u.fields.get("fullName").cloned().unwrap_or(Value::Null),
        "organization": u.fields.get("companyName").cloned().unwrap_or(Value::Null),
        "title": u.fields.get("titleAtCompany").cloned().unwrap_or(Value::Null),
        "member_tags": u.tags.iter().collect::<Vec<_>>(),
        "custom_fields": custom,
        "common_room_member_url": format!("https://app.commonroom.io/community/emul0room-emulated-room/member/{}", u.member),
    })
}

// ---------------------------------------------------------------- v2 reads

fn route_v2(s: &Inner, method: &Method, rest: &str, query: &str) -> Answer {
    let v2_error = |status: u16, code: &str, message: &str| Answer::new(status, json!({"success": false, "error": {"code": code, "message": message}}));
    let cf_wanted = query_param(query, "cols").map(|c| c.split(',').map(str::to_owned).collect::<Vec<_>>()).unwrap_or_default();
    let custom_of = |u: &User| {
        let mut m = Map::new();
        for (fid, v) in &u.custom {
            let key = format!("cf_{fid}");
            if cf_wanted.iter().any(|c| c == "cf_*" || *c == key) {
                m.insert(key, v.clone());
            }
        }
        Value::Object(m)
    };
    let org_of = |u: &User| u.fields.get("companyDomain").and_then(Value::as_str).and_then(|d| s.orgs.get(&normalize_domain(d)).copied());
    match (method.as_str(), rest.trim_end_matches('/')) {
        ("GET", "/organizations") => {
            let domain = query_param(query, "primaryDomain").map(|d| normalize_domain(&d));
            let data: Vec<Value> = s
                .orgs
                .iter()
                .filter(|(d, _)| domain.as_ref().is_none_or(|want| want == *d))
                .map(|(d, id)| {
                    let name = s
                        .users
                        .iter()
                        .find(|u| org_of(u) == Some(*id))
                        .and_then(|u| u.fields.get("companyName").and_then(Value::as_str))
                        .unwrap_or(d.as_str());
                    let contacts = s.users.iter().filter(|u| org_of(u) == Some(*id)).count();
                    json!({"id": format!("o_{id}"), "name": name, "primaryDomain": d, "contactsCount": contacts})
                })
                .collect();
            Answer::new(200, json!({"success": true, "data": data, "meta": {"nextCursor": null}}))
        }
        ("GET", "/contacts") => {
            let org = match query_param(query, "organizationId") {
                Some(o) => match o.strip_prefix("o_").and_then(|n| n.parse::<u64>().ok()) {
                    Some(n) => Some(n),
                    None => return v2_error(400, "invalid_organization_id", "organizationId must look like o_<number>"),
                },
                None => None,
            };
            let data: Vec<Value> = s
                .users
                .iter()
                .filter(|u| org.is_none_or(|o| org_of(u) == Some(o)))
                .map(|u| {
                    let name = u.fields.get("fullName").and_then(Value::as_str).unwrap_or(&u.id);
                    json!({
                        "id": format!("c_{}", u.member), "name": name,
                        "companyName": u.fields.get("companyName").cloned().unwrap_or(Value::Null),
                        "companyWebsite": u.fields.get("companyDomain").cloned().unwrap_or(Value::Null),
                        "primaryEmail": u.fields.get("email").cloned().unwrap_or(Value::Null),
                        "customFields": custom_of(u),
                        "tags": u.tags.iter().collect::<Vec<_>>(),
                    })
                })
                .collect();
            Answer::new(200, json!({"success": true, "data": data, "meta": {"nextCursor": null}}))
        }
        _ => v2_error(404, "object_not_found", "Not Found"),
    }
}

// ---------------------------------------------------------------- writes

const USER_STRINGS: &[&str] = &[
    "fullName", "firstName", "lastName", "username", "avatarUrl", "bio", "email", "roleAtCompany", "titleAtCompany",
    "companyName", "companyDomain", "country", "city", "region", "rawLocation",
];
const FIELD_TYPES: &[&str] = &["enum", "string", "date", "int", "number", "url", "boolean"];

fn is_text_object(v: &Value, types: &[&str]) -> bool {
    v.as_object().is_some_and(|o| o.get("type").and_then(Value::as_str).is_some_and(|t| types.contains(&t)) && o.get("value").is_some_and(Value::is_string))
}

fn nullable(v: Option<&Value>, ok: impl Fn(&Value) -> bool) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(v) => ok(v),
    }
}

fn valid_tags(v: Option<&Value>) -> bool {
    match v {
        None => true,
        Some(Value::Array(items)) => items.iter().all(|t| match t["type"].as_str() {
            Some("id") => t["id"].is_string(),
            Some("name") => t["name"].as_str().is_some_and(|n| !n.is_empty()),
            _ => false,
        }),
        _ => false,
    }
}

/// The `ApiUser` schema (required `id`; nullable strings; handle objects; tags; customFields).
fn valid_user(u: &Value) -> bool {
    let Some(o) = u.as_object() else { return false };
    if o.get("id").and_then(Value::as_str).is_none_or(str::is_empty) {
        return false;
    }
    if !USER_STRINGS.iter().all(|k| nullable(o.get(*k), Value::is_string)) {
        return false;
    }
    if !nullable(o.get("email"), |e| e.as_str().is_some_and(|e| e.contains('@') && !e.starts_with('@') && !e.ends_with('@'))) {
        return false;
    }
    let handle = |v: &Value| v["type"] == "handle" && v["value"].is_string();
    if !["linkedin", "github", "twitter"].iter().all(|k| nullable(o.get(*k), handle)) {
        return false;
    }
    if !nullable(o.get("discord"), |d| d["username"].is_string() && (d["discriminator"].is_string() || d["discriminator"].is_number())) {
        return false;
    }
    if !nullable(o.get("externalProfiles"), |p| p.as_array().is_some_and(|a| a.iter().all(|x| x["url"].is_string()))) {
        return false;
    }
    if !valid_tags(o.get("tags")) {
        return false;
    }
    match o.get("customFields") {
        None => true,
        Some(Value::Array(items)) => items.iter().all(|cf| {
            cf["id"].is_number()
                && match cf.get("value") {
                    None => true,
                    Some(v) => {
                        v["type"].as_str().is_some_and(|t| FIELD_TYPES.contains(&t))
                            && v.get("value").is_some_and(|x| x.is_string() || x.is_number() || x.is_boolean() || x.is_array())
                    }
                }
        }),
        Some(_) => false,
    }
}

/// The `ApiActivity` schema (required `id`, `activityType`, `user`).
fn valid_activity(a: &Value) -> bool {
    let Some(o) = a.as_object() else { return false };
    let non_empty = |k: &str| o.get(k).and_then(Value::as_str).is_some_and(|v| !v.is_empty());
    non_empty("id")
        && non_empty("activityType")
        && o.get("user").is_some_and(valid_user)
        && nullable(o.get("activityTitle"), |v| is_text_object(v, &["text"]))
        && nullable(o.get("content"), |v| is_text_object(v, &["text", "markdown"]))
        && o.get("timestamp").is_none_or(|t| t.as_str().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()))
        && nullable(o.get("url"), Value::is_string)
        && valid_tags(o.get("tags"))
        && nullable(o.get("parentActivity"), |p| p["id"].is_string() && p["activityType"].is_string())
        && nullable(o.get("subSource"), |p| p["type"] == "name" && p["name"].is_string())
}

/// Does `value` fit the field? (The part the real service checks after the 202.)
fn value_fits(f: &Field, v: &Value) -> Result<(), String> {
    if v["type"] != f.kind.as_str() {
        return Err(format!("custom field {} ({}) is of type {}, the value says {}", f.id, f.name, f.kind, v["type"]));
    }
    let one = |x: &Value| match f.kind.as_str() {
        "enum" => x.as_str().is_some_and(|x| f.values.iter().any(|o| o == x)),
        "string" | "url" => x.is_string(),
        "date" => x.as_str().is_some_and(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok()),
        "int" => x.is_i64() || x.is_u64(),
        "number" => x.is_number(),
        "boolean" => x.is_boolean(),
        _ => false,
    };
    let inner = &v["value"];
    let ok = if f.multivalue { inner.as_array().is_some_and(|a| a.iter().all(one)) } else { one(inner) };
    if ok { Ok(()) } else { Err(format!("custom field {} ({}) of type {} cannot hold {}", f.id, f.name, f.kind, inner)) }
}

/// Custom field changes to make (`None` clears), tag names to add, and what processing drops.
type UserPlan = (Vec<(u64, Option<Value>)>, Vec<String>, Vec<String>);

fn plan_user(s: &Inner, u: &Value) -> UserPlan {
    let id = u["id"].as_str().unwrap_or_default();
    let (mut changes, mut tags, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for cf in u["customFields"].as_array().into_iter().flatten() {
        let fid = cf["id"].as_f64().unwrap_or(-1.0);
        let Some(f) = s.fields.iter().find(|f| f.id as f64 == fid) else {
            errors.push(format!("user {id}: no contact custom field with id {}", cf["id"]));
            continue;
        };
        match cf.get("value") {
            None => changes.push((f.id, None)),
            Some(v) => match value_fits(f, v) {
                Ok(()) => changes.push((f.id, Some(json!({"type": v["type"], "value": v["value"]})))),
                Err(e) => errors.push(format!("user {id}: {e}")),
            },
        }
    }
    for t in u["tags"].as_array().into_iter().flatten() {
        match t["type"].as_str() {
            Some("name") => tags.push(t["name"].as_str().unwrap_or_default().to_owned()),
            _ => match s.tags.iter().find(|x| t["id"].as_str() == Some(x.id.as_str())) {
                Some(x) => tags.push(x.name.clone()),
                None => errors.push(format!("user {id}: no tag with id {}", t["id"])),
            },
        }
    }
    (changes, tags, errors)
}

fn apply_user(s: &mut Inner, source: u64, u: &Value, changes: Vec<(u64, Option<Value>)>, tags: Vec<String>) {
    let id = u["id"].as_str().unwrap_or_default().to_owned();
    if let Some(d) = u.get("companyDomain").and_then(Value::as_str).map(normalize_domain).filter(|d| !d.is_empty())
        && !s.orgs.contains_key(&d)
    {
        s.next_id += 1;
        let n = s.next_id;
        s.orgs.insert(d, n);
    }
    for t in &tags {
        tag_by_name(s, t, vec!["member".into()]);
    }
    let i = match s.user_index.get(&(source, id.clone())) {
        Some(i) => *i,
        None => {
            s.next_id += 1;
            let member = s.next_id;
            s.users.push(User { source, id: id.clone(), member, fields: Map::new(), custom: BTreeMap::new(), tags: BTreeSet::new() });
            s.user_index.insert((source, id), s.users.len() - 1);
            s.users.len() - 1
        }
    };
    let user = &mut s.users[i];
    for (k, v) in u.as_object().into_iter().flatten() {
        if !matches!(k.as_str(), "id" | "customFields" | "tags") {
            user.fields.insert(k.clone(), v.clone());
        }
    }
    for (fid, v) in changes {
        match v {
            Some(v) => user.custom.insert(fid, v),
            None => user.custom.remove(&fid),
        };
    }
    user.tags.extend(tags);
}

fn rejected(s: &Inner, id: &Value) -> bool {
    id.as_str().is_some_and(|id| s.rejected.contains(id))
}

fn post_user(s: &mut Inner, source: u64, body: &Value) -> Answer {
    if !valid_user(body) || rejected(s, &body["id"]) {
        return invalid();
    }
    let (changes, tags, errors) = plan_user(s, body);
    if !errors.is_empty() && s.strict {
        return invalid();
    }
    s.processing_errors.extend(errors);
    apply_user(s, source, body, changes, tags);
    Answer::accepted()
}

fn post_activity(s: &mut Inner, source: u64, body: &Value) -> Answer {
    if !valid_activity(body) || rejected(s, &body["id"]) || rejected(s, &body["user"]["id"]) {
        return invalid();
    }
    let (id, kind) = (body["id"].as_str().unwrap().to_owned(), body["activityType"].as_str().unwrap().to_owned());
    let (changes, tags, mut errors) = plan_user(s, &body["user"]);
    let known_type = s.activity_types.iter().any(|(t, _)| *t == kind);
    if !known_type {
        errors.push(format!("activity {id}: activityType {kind} is not one of GET /activityTypes"));
    }
    for t in body["tags"].as_array().into_iter().flatten() {
        if t["type"] == "id" && !s.tags.iter().any(|x| t["id"].as_str() == Some(x.id.as_str())) {
            errors.push(format!("activity {id}: no tag with id {}", t["id"]));
        }
    }
    if !errors.is_empty() && s.strict {
        return invalid();
    }
    s.processing_errors.extend(errors);
    apply_user(s, source, &body["user"], changes, tags);
    if known_type {
        for t in body["tags"].as_array().into_iter().flatten() {
            if let Some(name) = t["name"].as_str().filter(|_| t["type"] == "name") {
                tag_by_name(s, name, vec!["activity".into()]);
            }
        }
        let key = (source, id, kind);
        match s.activity_index.get(&key) {
            Some(i) => {
                let i = *i;
                s.activities[i].body = body.clone();
            }
            None => {
                s.activities.push(Activity { source, body: body.clone() });
                s.activity_index.insert(key, s.activities.len() - 1);
            }
        }
    }
    Answer::accepted()
}
