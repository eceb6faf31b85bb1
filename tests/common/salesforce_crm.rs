//! A Salesforce emulator: the OAuth token endpoint (JWT bearer verified against the
//! app's public key, client credentials, refresh token), SOQL `query` with
//! `nextRecordsUrl` paging, sObject Collections (create, update, upsert by external
//! id), CampaignMember and Task, `limits`, the `Sforce-Limit-Info` header on every
//! answer, and Salesforce's error arrays. Fault injection and a request record as in the
//! HubSpot emulator.
//!
//! Shapes follow the REST API Developer Guide
//! (<https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/>):
//! collections answer one `{id, success, errors[{statusCode, message, fields}]}` per
//! record in request order, with `allOrNone: false` applying the good ones; request
//! errors are arrays of `{message, errorCode}`; an expired session is 401
//! INVALID_SESSION_ID; a spent daily allocation is 403 REQUEST_LIMIT_EXCEEDED.

#![allow(dead_code)]

pub use super::emulator::Recorded;
use super::emulator::{Faults, drop_connection, form_decode, max_in_window, take_fault};

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

#[derive(Clone, Debug)]
pub enum Fault {
    ServerError(u16),
    Delay(Duration),
    DelayAfterApply(Duration),
    SessionExpired,
    TruncatedJson,
    /// Close the connection without answering; the request is not applied.
    ConnectionReset,
    /// Apply the request, then close the connection without answering.
    ResetAfterApply,
}


#[derive(Default)]
struct Inner {
    url: String,
    jwt: Option<(String, String, String)>,
    client_credentials: Option<(String, String)>,
    refresh: Option<(String, String, String)>,
    sessions: HashSet<String>,
    /// When each session expires, once a session timeout is set.
    session_ends: std::collections::HashMap<String, std::time::Instant>,
    session_timeout: Option<std::time::Duration>,
    tokens_issued: usize,
    records: BTreeMap<String, (String, Map<String, Value>)>,
    deleted: HashSet<String>,
    fields: BTreeMap<String, String>,
    /// Fields marked External ID (upserts go through them).
    external_ids: HashSet<String>,
    next: u64,
    requests: Vec<Recorded>,
    faults: Faults<Fault>,
    rejected: HashSet<String>,
    limit: (u64, u64),
    cursors: BTreeMap<String, Vec<Value>>,
    poisoned: HashSet<String>,
    /// Rows per query page when the client sends no batchSize (Salesforce: 2000).
    page_size: usize,
}

type Shared = Arc<Mutex<Inner>>;

pub struct Salesforce {
    pub url: String,
    state: Shared,
}

/// `connectors/sf.yaml` of a connector signing in to `login_url` with the JWT bearer
/// flow as `app-1` / `int@example.com` (see `jwt_app`), its key in `keys/sf.key`
/// (`test_keypair().0`), mapping `mappings/sf.yaml`; `extra` is appended.
pub fn jwt_connector(login_url: &str, extra: &str) -> String {
    format!(
        "name: sf\nkind: salesforce\nschedule: \"0 0 * * * *\"\nmapping: mappings/sf.yaml\nauth:\n  flow: jwt_bearer\n  login_url: {login_url}\n  \
         client_id: app-1\n  username: int@example.com\n  private_key_file: keys/sf.key\n{extra}"
    )
}

/// An RSA key pair for JWT bearer tests, made once per test process.
pub fn test_keypair() -> (String, String) {
    static PAIR: OnceLock<(String, String)> = OnceLock::new();
    PAIR.get_or_init(|| {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let private = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let public = key.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        (private, public)
    })
    .clone()
}

const STANDARD: [(&str, &str); 5] = [("Id", "id"), ("Name", "string"), ("Website", "url"), ("OwnerId", "reference"), ("AccountId", "reference")];

impl Salesforce {
    pub async fn start() -> Salesforce {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut inner = Inner { url: url.clone(), next: 1, limit: (15_000, 0), page_size: 2000, ..Default::default() };
        for (f, t) in STANDARD {
            inner.fields.insert(f.into(), t.into());
        }
        let state: Shared = Arc::new(Mutex::new(inner));
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Salesforce { url, state }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().unwrap()
    }

    pub fn jwt_app(&self, client_id: &str, username: &str, public_key_pem: &str) {
        self.lock().jwt = Some((client_id.into(), username.into(), public_key_pem.into()));
    }
    pub fn client_credentials_app(&self, client_id: &str, client_secret: &str) {
        self.lock().client_credentials = Some((client_id.into(), client_secret.into()));
    }
    pub fn refresh_app(&self, client_id: &str, client_secret: &str, refresh_token: &str) {
        self.lock().refresh = Some((client_id.into(), client_secret.into(), refresh_token.into()));
    }
    pub fn expire_sessions(&self) {
        self.lock().sessions.clear();
    }
    /// Sessions end this long after their token was issued (the org's session timeout).
    pub fn set_session_timeout(&self, timeout: std::time::Duration) {
        self.lock().session_timeout = Some(timeout);
    }
    pub fn tokens_issued(&self) -> usize {
        self.lock().tokens_issued
    }
    pub fn add_account(&self, fields: &[(&str, &str)]) -> String {
        let mut s = self.lock();
        let id = new_id(&mut s, "001");
        let mut m: Map<String, Value> = fields.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        m.insert("Id".into(), json!(id));
        m.entry("OwnerId").or_insert(json!("005000000000001AAA"));
        s.records.insert(id.clone(), ("Account".into(), m));
        id
    }
    /// A hand edit of one field of a record.
    pub fn set_field(&self, id: &str, name: &str, value: Value) {
        if let Some((_, m)) = self.lock().records.get_mut(id) {
            m.insert(name.into(), value);
        }
    }
    pub fn account(&self, id: &str) -> Option<BTreeMap<String, Value>> {
        self.lock().records.get(id).map(|(_, m)| m.clone().into_iter().collect())
    }
    pub fn accounts(&self) -> Vec<(String, BTreeMap<String, Value>)> {
        self.lock()
            .records
            .iter()
            .filter(|(_, (t, _))| t == "Account")
            .map(|(id, (_, m))| (id.clone(), m.clone().into_iter().collect()))
            .collect()
    }
    pub fn define_field(&self, name: &str, kind: &str) {
        self.lock().fields.insert(name.into(), kind.into());
    }
    /// A text field marked External ID, as upserts need.
    pub fn define_external_id(&self, name: &str) {
        let mut s = self.lock();
        s.fields.insert(name.into(), "string".into());
        s.external_ids.insert(name.into());
    }
    /// An admin deletes a field.
    pub fn remove_field(&self, name: &str) {
        self.lock().fields.remove(name);
    }
    pub fn delete_account(&self, id: &str) {
        let mut s = self.lock();
        s.records.remove(id);
        s.deleted.insert(id.into());
    }
    pub fn add_contact(&self, account_id: &str) -> String {
        let mut s = self.lock();
        let id = new_id(&mut s, "003");
        s.records.insert(id.clone(), ("Contact".into(), json!({"Id": id, "AccountId": account_id}).as_object().unwrap().clone()));
        id
    }
    pub fn add_campaign(&self) -> String {
        let mut s = self.lock();
        let id = new_id(&mut s, "701");
        s.records.insert(id.clone(), ("Campaign".into(), json!({"Id": id}).as_object().unwrap().clone()));
        id
    }
    pub fn campaign_members(&self, campaign_id: &str) -> Vec<(String, String)> {
        self.objects("CampaignMember")
            .into_iter()
            .filter(|m| m["CampaignId"] == campaign_id)
            .map(|m| (m["ContactId"].as_str().unwrap_or_default().to_owned(), m["Status"].as_str().unwrap_or_default().to_owned()))
            .collect()
    }
    pub fn tasks(&self) -> Vec<Value> {
        self.objects("Task")
    }
    fn objects(&self, kind: &str) -> Vec<Value> {
        self.lock().records.values().filter(|(t, _)| t == kind).map(|(_, m)| Value::Object(m.clone())).collect()
    }
    pub fn set_page_size(&self, rows: usize) {
        self.lock().page_size = rows;
    }
    pub fn set_daily_limit(&self, max: u64, used: u64) {
        self.lock().limit = (max, used);
    }
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }
    /// Calls that change records (collections, CampaignMember, Task).
    pub fn write_calls(&self) -> usize {
        self.lock().requests.iter().filter(|r| r.method != "GET" && r.path.starts_with("/services/data/")).count()
    }
    pub fn fail_next(&self, path_prefix: &str, fault: Fault, times: usize) {
        self.lock().faults.push_back((path_prefix.into(), fault, times));
    }
    /// Queued faults no request has met yet.
    pub fn faults_pending(&self) -> usize {
        self.lock().faults.iter().map(|f| f.2).sum()
    }
    /// Any collection request carrying one of these records fails whole with 400.
    pub fn poison_ids(&self, ids: &[&str]) {
        self.lock().poisoned = ids.iter().map(|s| s.to_string()).collect();
    }
    pub fn reject_ids(&self, ids: &[&str]) {
        self.lock().rejected = ids.iter().map(|s| s.to_string()).collect();
    }
    pub fn max_in_window(&self, path_prefix: &str, window: Duration) -> usize {
        max_in_window(self.lock().requests.iter().filter(|r| r.path.starts_with(path_prefix)).map(|r| r.at), window)
    }
}

fn new_id(s: &mut Inner, prefix: &str) -> String {
    s.next += 1;
    format!("{prefix}{:012}AAA", s.next)
}

fn errors(status: u16, code: &str, message: &str) -> (u16, Value) {
    (status, json!([{ "message": message, "errorCode": code }]))
}

async fn handle(State(state): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let at = Instant::now();
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let batch_size: usize = headers
        .get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("batchSize="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| state.lock().unwrap().page_size);
    let parsed: Value = if path == "/services/oauth2/token" {
        json!(form_decode(std::str::from_utf8(&body).unwrap_or_default()))
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let fault = take_fault(&mut state.lock().unwrap().faults, &path);
    if let Some(Fault::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let (status, mut text, usage) = {
        let mut s = state.lock().unwrap();
        let (status, value) = match &fault {
            Some(Fault::ServerError(code)) => errors(*code, "SERVER_UNAVAILABLE", "Server temporarily unavailable"),
            Some(Fault::SessionExpired) => errors(401, "INVALID_SESSION_ID", "Session expired or invalid"),
            // Recorded with status 0: the client sent it, nothing answered.
            Some(Fault::ConnectionReset) => (0, Value::Null),
            _ => respond(&mut s, &method, &path, &query, &authorization, &parsed, batch_size),
        };
        s.requests.push(Recorded { method: method.to_string(), path: path.clone(), query, authorization, body: parsed, status, at });
        // As Salesforce sends it: more parts may follow after `; `.
        let usage = format!("api-usage={}/{}; per-app-api-usage=3/250(appName=oql-sync)", s.limit.1, s.limit.0);
        (status, value.to_string(), usage)
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
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json;charset=UTF-8"));
    if path.starts_with("/services/data/") {
        response.headers_mut().insert("sforce-limit-info", HeaderValue::from_str(&usage).unwrap());
    }
    response
}

fn respond(s: &mut Inner, method: &Method, path: &str, query: &str, auth: &Option<String>, body: &Value, batch: usize) -> (u16, Value) {
    if path == "/services/oauth2/token" {
        return token(s, body);
    }
    let bearer = auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
    let ended = s.session_ends.get(bearer).is_some_and(|end| *end <= std::time::Instant::now());
    if !s.sessions.contains(bearer) || ended {
        return errors(401, "INVALID_SESSION_ID", "Session expired or invalid");
    }
    if s.limit.1 >= s.limit.0 {
        return errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.");
    }
    s.limit.1 += 1;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["services", "data", _, "limits"]) => {
            (200, json!({"DailyApiRequests": {"Max": s.limit.0, "Remaining": s.limit.0 - s.limit.1}}))
        }
        ("GET", ["services", "data", v, "query"]) => {
            let q = form_decode(query).get("q").cloned().unwrap_or_default();
            soql(s, v, &q, batch)
        }
        ("GET", ["services", "data", v, "query", cursor]) => {
            let Some(rest) = s.cursors.remove(*cursor) else {
                return errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator");
            };
            page(s, v, rest, batch)
        }
        ("POST", ["services", "data", _, "composite", "sobjects"]) => collection(s, body, Mode::Create),
        ("PATCH", ["services", "data", _, "composite", "sobjects"]) => collection(s, body, Mode::Update),
        ("PATCH", ["services", "data", _, "composite", "sobjects", "Account", ext]) => {
            if !s.external_ids.contains(*ext) {
                return errors(400, "INVALID_FIELD", &format!("Field name provided, {ext} is not an External ID or indexed field for Account"));
            }
            collection(s, body, Mode::Upsert(ext.to_string()))
        }
        // <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_sobject_describe.htm>
        ("GET", ["services", "data", _, "sobjects", "Account", "describe"]) => {
            let fields: Vec<Value> = s
                .fields
                .iter()
                .map(|(name, kind)| {
                    let system = kind == "id";
                    json!({"name": name, "label": name, "type": kind, "custom": name.ends_with("__c"), "nillable": name != "Name" && !system,
                           "createable": !system, "updateable": !system, "externalId": s.external_ids.contains(name)})
                })
                .collect();
            (200, json!({"name": "Account", "label": "Account", "keyPrefix": "001", "createable": true, "updateable": true, "fields": fields}))
        }
        // <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_sobject_retrieve_get.htm>:
        // a record by id, or 404 NOT_FOUND.
        ("GET", ["services", "data", _, "sobjects", t, id]) if *t != "Account" => match s.records.get(*id) {
            Some((kind, m)) if kind == t => (200, Value::Object(m.clone())),
            _ => (404, json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])),
        },
        ("POST", ["services", "data", _, "sobjects", "Task"]) => {
            let mut m = body.as_object().cloned().unwrap_or_default();
            let id = new_id(s, "00T");
            m.insert("Id".into(), json!(id));
            s.records.insert(id.clone(), ("Task".into(), m));
            (201, json!({"id": id, "success": true, "errors": []}))
        }
        _ => errors(404, "NOT_FOUND", "The requested resource does not exist"),
    }
}

fn token(s: &mut Inner, f: &Value) -> (u16, Value) {
    let get = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
    let ok = match get("grant_type").as_str() {
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => match &s.jwt {
            Some((client, user, public)) => {
                let key = jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()).unwrap();
                let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
                v.set_audience(&[s.url.as_str()]);
                v.set_issuer(&[client.as_str()]);
                match jsonwebtoken::decode::<Value>(&get("assertion"), &key, &v) {
                    Ok(data) => {
                        let exp = data.claims["exp"].as_i64().unwrap_or(0);
                        data.claims["sub"] == user.as_str() && exp <= chrono::Utc::now().timestamp() + 180
                    }
                    Err(_) => false,
                }
            }
            None => false,
        },
        "client_credentials" => s.client_credentials.as_ref().is_some_and(|(id, secret)| get("client_id") == *id && get("client_secret") == *secret),
        "refresh_token" => s
            .refresh
            .as_ref()
            .is_some_and(|(id, secret, rt)| get("client_id") == *id && get("client_secret") == *secret && get("refresh_token") == *rt),
        _ => false,
    };
    if !ok {
        return (400, json!({"error": "invalid_grant", "error_description": "authentication failure"}));
    }
    let access = format!("00Demul!{:016x}", rand::random::<u64>());
    s.sessions.insert(access.clone());
    if let Some(timeout) = s.session_timeout {
        s.session_ends.insert(access.clone(), std::time::Instant::now() + timeout);
    }
    s.tokens_issued += 1;
    (200, json!({"access_token": access, "instance_url": s.url, "id": format!("{}/id/00D000000000001/005000000000001", s.url), "token_type": "Bearer", "issued_at": "1790000000000", "signature": "emulated", "scope": "api"}))
}

/// A SOQL subset: `SELECT f, … FROM T WHERE cond [ORDER BY Id]`, where cond is
/// `F = 'v'`, `F IN ('a', …)` or `F LIKE '%v%'` terms joined by OR.
fn soql(s: &mut Inner, version: &str, q: &str, batch: usize) -> (u16, Value) {
    let upper = q.to_uppercase();
    let (Some(from), Some(where_at)) = (upper.find(" FROM "), upper.find(" WHERE ")) else {
        return errors(400, "MALFORMED_QUERY", "unexpected token");
    };
    let fields: Vec<String> = q[7..from].split(',').map(|f| f.trim().to_owned()).collect();
    let object = q[from + 6..where_at].trim().to_owned();
    let end = upper.find(" ORDER BY ").unwrap_or(q.len());
    let cond = &q[where_at + 7..end];
    for f in &fields {
        if !s.fields.contains_key(f) {
            return errors(400, "INVALID_FIELD", &format!("\n{q}\n^\nERROR at Row:1:Column:8\nNo such column '{f}' on entity '{object}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name."));
        }
    }
    let terms: Vec<(String, String, Vec<String>)> = cond
        .split(" OR ")
        .map(|t| {
            let t = t.trim();
            let unquote = |v: &str| v.trim().trim_matches('\'').replace("\\'", "'").replace("\\_", "_").replace("\\\\", "\\");
            if let Some((f, v)) = t.split_once(" LIKE ") {
                (f.trim().to_owned(), "LIKE".into(), vec![unquote(v).trim_matches('%').to_owned()])
            } else if let Some((f, v)) = t.split_once(" IN ") {
                let inner = v.trim().trim_start_matches('(').trim_end_matches(')');
                (f.trim().to_owned(), "IN".into(), inner.split(',').map(unquote).collect())
            } else if let Some((f, v)) = t.split_once(" = ") {
                (f.trim().to_owned(), "IN".into(), vec![unquote(v)])
            } else {
                (String::new(), String::new(), Vec::new())
            }
        })
        .collect();
    let rows: Vec<Value> = s
        .records
        .values()
        .filter(|(t, _)| *t == object)
        .filter(|(_, m)| {
            terms.iter().any(|(f, op, vals)| {
                let v = m.get(f).and_then(|v| v.as_str()).unwrap_or_default().to_lowercase();
                match op.as_str() {
                    "LIKE" => vals.iter().any(|x| v.contains(&x.to_lowercase())),
                    _ => vals.iter().any(|x| v == x.to_lowercase()),
                }
            })
        })
        .map(|(t, m)| {
            let mut row = Map::new();
            row.insert("attributes".into(), json!({"type": t, "url": format!("/services/data/{version}/sobjects/{t}/{}", m["Id"].as_str().unwrap_or_default())}));
            for f in &fields {
                row.insert(f.clone(), m.get(f).cloned().unwrap_or(Value::Null));
            }
            Value::Object(row)
        })
        .collect();
    page(s, version, rows, batch)
}

fn page(s: &mut Inner, version: &str, mut rows: Vec<Value>, batch: usize) -> (u16, Value) {
    let total = rows.len();
    let rest = if rows.len() > batch { rows.split_off(batch) } else { Vec::new() };
    let mut out = json!({"totalSize": total, "done": rest.is_empty(), "records": rows});
    if !rest.is_empty() {
        let cursor = format!("01gEMUL{:08}-{batch}", rand::random::<u32>());
        out["nextRecordsUrl"] = json!(format!("/services/data/{version}/query/{cursor}"));
        s.cursors.insert(cursor, rest);
    }
    (200, out)
}

enum Mode {
    Create,
    Update,
    Upsert(String),
}

fn failure(code: &str, message: &str, fields: &[&str]) -> Value {
    json!({"success": false, "errors": [{"statusCode": code, "message": message, "fields": fields}]})
}

/// Account's required field: a create without it fails that record only.
fn has_name(fields: &Map<String, Value>) -> bool {
    fields.get("Name").and_then(|v| v.as_str()).is_some_and(|n| !n.trim().is_empty())
}

fn name_missing() -> Value {
    failure("REQUIRED_FIELD_MISSING", "Required fields are missing: [Name]", &["Name"])
}

fn collection(s: &mut Inner, body: &Value, mode: Mode) -> (u16, Value) {
    let records = body["records"].as_array().cloned().unwrap_or_default();
    if records.len() > 200 {
        return errors(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call");
    }
    if body["allOrNone"] != json!(false) {
        return errors(400, "INVALID_FIELD", "this emulator expects allOrNone: false, as oql-sync sends");
    }
    // Request-level errors fail the whole request before anything is written: a field
    // the org lacks (INVALID_FIELD), or a value Salesforce cannot parse (here: a
    // "poisoned" record id, standing for a JSON_PARSER_ERROR).
    for r in &records {
        // Each record must carry `attributes.type` (the guide's usage rules).
        if !r["attributes"]["type"].is_string() {
            return errors(400, "JSON_PARSER_ERROR", "Each record must have an attributes map with a type");
        }
        if r["attributes"]["type"] == "Account" {
            if let Some(f) = r.as_object().into_iter().flatten().map(|(k, _)| k).find(|k| *k != "attributes" && !s.fields.contains_key(*k)) {
                return errors(400, "INVALID_FIELD", &format!("No such column '{f}' on sobject of type Account"));
            }
        }
        if r["Id"].as_str().is_some_and(|id| s.poisoned.contains(id)) {
            return errors(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of double from VALUE_STRING value abc");
        }
    }
    let mut results = Vec::new();
    for r in records {
        let mut r = r.as_object().cloned().unwrap_or_default();
        let kind = r.remove("attributes").and_then(|a| a["type"].as_str().map(str::to_owned)).unwrap_or_default();
        // Creates and upserts name no record id; updates must.
        let result = match (&mode, r.contains_key("Id")) {
            (Mode::Create, true) => failure("INVALID_FIELD", "cannot specify Id in an insert call", &["Id"]),
            (Mode::Upsert(_), true) => failure("INVALID_FIELD", "Only external ids are supported in an upsert, not record ids", &["Id"]),
            (Mode::Update, false) => failure("MISSING_ARGUMENT", "Id not specified in an update call", &[]),
            _ => write_one(s, &kind, r, &mode),
        };
        results.push(result);
    }
    (200, Value::Array(results))
}

fn write_one(s: &mut Inner, kind: &str, fields: Map<String, Value>, mode: &Mode) -> Value {
    if kind == "Account" {
        for (f, v) in &fields {
            let Some(t) = s.fields.get(f) else {
                return failure("INVALID_FIELD", &format!("No such column '{f}' on sobject of type Account"), &[]);
            };
            let ok = match t.as_str() {
                "double" => v.is_number() || v.is_null(),
                "boolean" => v.is_boolean() || v.is_null(),
                "date" => v.is_null() || v.as_str().is_some_and(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok()),
                _ => v.is_string() || v.is_null(),
            };
            if !ok {
                return failure("INVALID_TYPE_ON_FIELD_IN_RECORD", &format!("{f}: value not of required type: {v}"), &[f.as_str()]);
            }
        }
    }
    match (kind, mode) {
        ("CampaignMember", Mode::Create) => {
            let (c, contact) = (fields["CampaignId"].clone(), fields["ContactId"].clone());
            if fields.get("Status").is_none_or(|v| v.is_null()) || contact.is_null() {
                return failure("REQUIRED_FIELD_MISSING", "Required fields are missing: [ContactId, Status]", &["ContactId", "Status"]);
            }
            let dup = s.records.values().any(|(t, m)| t == "CampaignMember" && m["CampaignId"] == c && m["ContactId"] == contact);
            if dup {
                return failure("DUPLICATE_VALUE", "Already a campaign member.", &[]);
            }
            let id = new_id(s, "00v");
            let mut m = fields;
            m.insert("Id".into(), json!(id));
            s.records.insert(id.clone(), ("CampaignMember".into(), m));
            json!({"id": id, "success": true, "errors": []})
        }
        ("Account", Mode::Create) => {
            if !has_name(&fields) {
                return name_missing();
            }
            let id = new_id(s, "001");
            let mut m = fields;
            m.insert("Id".into(), json!(id));
            s.records.insert(id.clone(), ("Account".into(), m));
            json!({"id": id, "success": true, "errors": []})
        }
        ("Account", Mode::Update) => {
            let id = fields.get("Id").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
            if s.deleted.contains(&id) {
                return failure("ENTITY_IS_DELETED", "entity is deleted", &[]);
            }
            if s.rejected.contains(&id) {
                return failure("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Blocked by a validation rule", &[]);
            }
            let Some((_, m)) = s.records.get_mut(&id) else {
                return failure("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", &[]);
            };
            m.extend(fields);
            json!({"id": id, "success": true, "errors": []})
        }
        ("Account", Mode::Upsert(ext)) => {
            let key = fields.get(ext).cloned().unwrap_or(Value::Null);
            let existing = s.records.iter().find(|(_, (t, m))| t == "Account" && m.get(ext) == Some(&key)).map(|(id, _)| id.clone());
            match existing {
                Some(id) => {
                    s.records.get_mut(&id).unwrap().1.extend(fields);
                    json!({"id": id, "success": true, "errors": [], "created": false})
                }
                // An upsert that creates needs what a create needs.
                None if !has_name(&fields) => name_missing(),
                None => {
                    let id = new_id(s, "001");
                    let mut m = fields;
                    m.insert("Id".into(), json!(id));
                    s.records.insert(id.clone(), ("Account".into(), m));
                    json!({"id": id, "success": true, "errors": [], "created": true})
                }
            }
        }
        _ => failure("INVALID_TYPE", &format!("sObject type '{kind}' is not supported here"), &[]),
    }
}
