//! A stateful Salesforce emulator for integration tests: the OAuth token endpoint (JWT
//! bearer verified against the app's public key, client credentials, refresh token), SOQL
//! `query` with `nextRecordsUrl` paging, sObject Collections (create, update, upsert by
//! external id) with Salesforce's per-record `SaveResult`s, single-record `sobjects`
//! calls (CampaignMember, Task, …), `limits`, the `Sforce-Limit-Info` header, Salesforce's
//! error arrays, fault injection and a request record.
//!
//! One server plays both the login host and the instance: `aud` of a JWT assertion must be
//! exactly [`Salesforce::url`], and `instance_url` in token answers is the same URL.
//!
//! Shapes and the judgement calls made where the docs are unclear are written down in
//! `/work/notes/salesforce-api.md`. In short:
//! - a field the object lacks fails the **whole** collection request:
//!   `400 [{"message":"No such column 'X' on sobject of type Account","errorCode":"INVALID_FIELD"}]`,
//!   nothing is written;
//! - a value of the wrong type fails only its record with `INVALID_TYPE_ON_FIELD_IN_RECORD`
//!   (or, after [`Salesforce::json_parser_errors`]`(true)`, the whole request with
//!   `400 JSON_PARSER_ERROR`, which is what the real deserializer most likely does);
//! - an expired session is `401 [{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`;
//! - a spent daily allocation is `403 [{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`.
//!
//! Uses `super::emulator` (the shared plumbing): include it next to this module.

#![allow(dead_code)]

pub use super::emulator::Recorded;
use super::emulator::{Faults, form_decode, max_in_window, take_fault};

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// Lowest and highest `vXX.X` the emulator serves; others answer 404 like an unknown version.
pub const MIN_API_VERSION: f64 = 20.0;
pub const MAX_API_VERSION: f64 = 68.0;
/// Records per sObject Collections request.
pub const COLLECTION_LIMIT: usize = 200;
/// URI (path + query) bytes before `414 URI Too Long`.
pub const MAX_URI_BYTES: usize = 16_384;
/// Characters of a SOQL statement.
pub const MAX_SOQL_CHARS: usize = 100_000;

/// A fault for the next requests whose path starts with a prefix ("" = any).
#[derive(Clone, Debug)]
pub enum Fault {
    /// `403 [{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`, nothing applied.
    RateLimited,
    /// That HTTP status with a Salesforce error array (503 SERVER_UNAVAILABLE, else UNKNOWN_EXCEPTION), nothing applied.
    ServerError(u16),
    /// Sleep, then answer normally.
    Delay(Duration),
    /// Apply the request (and record it), then sleep before answering: a client timeout
    /// here leaves the write done.
    DelayAfterApply(Duration),
    /// `401 INVALID_SESSION_ID`; the presented access token is revoked too, so retrying with
    /// it fails again until the client runs its grant anew.
    SessionExpired,
    /// Answer normally but cut the body in half (invalid JSON).
    TruncatedJson,
}

// ----------------------------------------------------------------------------------------
// Ids

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The 3-character case-safe suffix of a 15-character id.
fn id_suffix(id15: &[u8]) -> String {
    const MAP: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    (0..3)
        .map(|chunk| {
            let flags = (0..5).filter(|i| id15[chunk * 5 + i].is_ascii_uppercase()).fold(0usize, |f, i| f | 1 << i);
            MAP[flags] as char
        })
        .collect()
}

/// An id as its 18-character form, or None when it is not a Salesforce id.
pub fn normalize_id(v: &str) -> Option<String> {
    let b = v.as_bytes();
    if !(b.len() == 15 || b.len() == 18) || !b.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    let suffix = id_suffix(&b[..15]);
    if b.len() == 18 && !v[15..].eq_ignore_ascii_case(&suffix) {
        return None;
    }
    Some(format!("{}{suffix}", &v[..15]))
}

fn prefix_object(id: &str) -> Option<&'static str> {
    Some(match id.get(..3)? {
        "001" => "Account",
        "003" => "Contact",
        "005" => "User",
        "00Q" => "Lead",
        "701" => "Campaign",
        "00v" => "CampaignMember",
        "00T" => "Task",
        _ => return None,
    })
}

fn object_prefix(object: &str) -> &'static str {
    match object {
        "Account" => "001",
        "Contact" => "003",
        "User" => "005",
        "Lead" => "00Q",
        "Campaign" => "701",
        "CampaignMember" => "00v",
        "Task" => "00T",
        _ => "a00",
    }
}

// ----------------------------------------------------------------------------------------
// Schema

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Id,
    /// A lookup to records whose ids start with one of these prefixes.
    Ref(Vec<&'static str>),
    Text,
    Double,
    Date,
    Boolean,
    Picklist,
}

impl Kind {
    fn soap_name(&self) -> &'static str {
        match self {
            Kind::Id => "id",
            Kind::Ref(_) => "reference",
            Kind::Text => "string",
            Kind::Double => "double",
            Kind::Date => "date",
            Kind::Boolean => "boolean",
            Kind::Picklist => "picklist",
        }
    }
    fn is_text(&self) -> bool {
        matches!(self, Kind::Text | Kind::Picklist)
    }
    fn is_id(&self) -> bool {
        matches!(self, Kind::Id | Kind::Ref(_))
    }
}

#[derive(Clone, Debug)]
struct FieldDef {
    name: String,
    label: String,
    kind: Kind,
    max_len: usize,
    external_id: bool,
    /// Values of a restricted picklist.
    restricted: Option<Vec<String>>,
}

fn field(name: &str, label: &str, kind: Kind) -> FieldDef {
    let max_len = if name == "Description" { 32_000 } else { 255 };
    FieldDef { name: name.into(), label: label.into(), kind, max_len, external_id: false, restricted: None }
}

fn standard_schema() -> BTreeMap<String, Vec<FieldDef>> {
    let mut s = BTreeMap::new();
    s.insert(
        "Account".into(),
        vec![
            field("Id", "Account ID", Kind::Id),
            field("Name", "Account Name", Kind::Text),
            field("Website", "Website", Kind::Text),
            field("OwnerId", "Owner ID", Kind::Ref(vec!["005"])),
        ],
    );
    s.insert(
        "Contact".into(),
        vec![
            field("Id", "Contact ID", Kind::Id),
            field("AccountId", "Account ID", Kind::Ref(vec!["001"])),
            field("FirstName", "First Name", Kind::Text),
            field("LastName", "Last Name", Kind::Text),
            field("Email", "Email", Kind::Text),
            field("OwnerId", "Owner ID", Kind::Ref(vec!["005"])),
        ],
    );
    s.insert(
        "Campaign".into(),
        vec![field("Id", "Campaign ID", Kind::Id), field("Name", "Name", Kind::Text), field("IsActive", "Active", Kind::Boolean)],
    );
    s.insert(
        "CampaignMember".into(),
        vec![
            field("Id", "Campaign Member ID", Kind::Id),
            field("CampaignId", "Campaign ID", Kind::Ref(vec!["701"])),
            field("ContactId", "Contact ID", Kind::Ref(vec!["003"])),
            field("LeadId", "Lead ID", Kind::Ref(vec!["00Q"])),
            field("Status", "Status", Kind::Picklist),
        ],
    );
    s.insert(
        "Task".into(),
        vec![
            field("Id", "Activity ID", Kind::Id),
            field("WhatId", "Related To ID", Kind::Ref(vec!["001", "701"])),
            field("WhoId", "Name ID", Kind::Ref(vec!["003", "00Q"])),
            field("OwnerId", "Assigned To ID", Kind::Ref(vec!["005"])),
            field("Subject", "Subject", Kind::Text),
            field("ActivityDate", "Due Date Only", Kind::Date),
            field("Status", "Status", Kind::Picklist),
            field("Priority", "Priority", Kind::Picklist),
            field("Description", "Description", Kind::Text),
        ],
    );
    s
}

/// A custom field's label: `OQL_Score__c` → `OQL Score`.
fn label_of(name: &str) -> String {
    name.trim_end_matches("__c").replace('_', " ")
}

// ----------------------------------------------------------------------------------------
// State

#[derive(Clone, Debug)]
struct Rec {
    object: String,
    fields: Map<String, Value>,
}

struct JwtApp {
    client_id: String,
    username: String,
    key: jsonwebtoken::DecodingKey,
}

#[derive(Default)]
struct Inner {
    url: String,
    org_id: String,
    default_user: String,
    next: u64,
    schema: BTreeMap<String, Vec<FieldDef>>,
    records: BTreeMap<String, Rec>,
    /// The recycle bin.
    deleted: BTreeMap<String, Rec>,
    users: HashSet<String>,
    campaign_statuses: HashMap<String, Vec<String>>,
    jwt_apps: Vec<JwtApp>,
    client_credentials: Vec<(String, String)>,
    refresh: Vec<(String, String, String)>,
    sessions: HashSet<String>,
    tokens_issued: usize,
    requests: Vec<Recorded>,
    faults: Faults<Fault>,
    rejected: HashSet<String>,
    /// (max, used) of the daily allocation.
    limit: (u64, u64),
    rate: Option<usize>,
    recent: VecDeque<Instant>,
    cursors: HashMap<String, Vec<Value>>,
    /// Rows per query page the server answers at most (Salesforce: 2000, "no guarantee").
    page_size: usize,
    json_parser_errors: bool,
}

type Shared = Arc<Mutex<Inner>>;

/// The emulator; dropping it leaves the server task running until the runtime ends.
pub struct Salesforce {
    /// Serves both the login host (`/services/oauth2/token`) and the instance.
    pub url: String,
    state: Shared,
}

fn new_id(s: &mut Inner, prefix: &str) -> String {
    s.next += 1;
    let mut n = s.next;
    let mut body = [b'0'; 10];
    for c in body.iter_mut().rev() {
        *c = BASE62[(n % 62) as usize];
        n /= 62;
    }
    let id15 = format!("{prefix}5g{}", std::str::from_utf8(&body).unwrap());
    let suffix = id_suffix(id15.as_bytes());
    format!("{id15}{suffix}")
}

impl Salesforce {
    /// Binds 127.0.0.1:0 and serves on the current tokio runtime.
    pub async fn start() -> Salesforce {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut inner = Inner {
            url: url.clone(),
            next: 9_000_000_000,
            schema: standard_schema(),
            limit: (15_000, 0),
            page_size: 2000,
            ..Default::default()
        };
        inner.org_id = new_id(&mut inner, "00D");
        inner.default_user = new_id(&mut inner, "005");
        let user = inner.default_user.clone();
        inner.users.insert(user);
        let state: Shared = Arc::new(Mutex::new(inner));
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Salesforce { url, state }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap()
    }

    /// An RSA 2048 key pair (private PKCS#8 PEM, public SPKI PEM), made once per process.
    pub fn test_keypair() -> (String, String) {
        static PAIR: OnceLock<(String, String)> = OnceLock::new();
        PAIR.get_or_init(make_keypair).clone()
    }

    /// A second, different key pair (for "signed with the wrong key" tests).
    pub fn other_test_keypair() -> (String, String) {
        static PAIR: OnceLock<(String, String)> = OnceLock::new();
        PAIR.get_or_init(make_keypair).clone()
    }

    /// An RS256 assertion as a client makes it: `iss`, `sub`, `aud`, `exp = now + expires_in`.
    pub fn sign_assertion(private_pem: &str, client_id: &str, username: &str, audience: &str, expires_in: i64) -> String {
        let claims = json!({
            "iss": client_id,
            "sub": username,
            "aud": audience,
            "exp": chrono::Utc::now().timestamp() + expires_in,
        });
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key).unwrap()
    }

    /// Accept JWT bearer assertions with `iss == client_id`, `sub == username`,
    /// `aud == self.url`, `now < exp <= now + 180`, RS256-signed by the key whose public
    /// half this is (SPKI or PKCS#1 PEM). Several apps may be registered.
    pub fn jwt_app(&self, client_id: &str, username: &str, public_key_pem: &str) {
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_key_pem.as_bytes()).expect("jwt_app: not an RSA public key PEM");
        let mut s = self.lock();
        s.jwt_apps.retain(|a| a.client_id != client_id);
        s.jwt_apps.push(JwtApp { client_id: client_id.into(), username: username.into(), key });
    }
    /// Accept `grant_type=client_credentials` with this id and secret (form fields or Basic auth).
    pub fn client_credentials_app(&self, client_id: &str, client_secret: &str) {
        self.lock().client_credentials.push((client_id.into(), client_secret.into()));
    }
    /// Accept `grant_type=refresh_token` with this refresh token for this app.
    pub fn refresh_app(&self, client_id: &str, client_secret: &str, refresh_token: &str) {
        self.lock().refresh.push((client_id.into(), client_secret.into(), refresh_token.into()));
    }
    /// Every access token issued so far answers 401 INVALID_SESSION_ID from now on.
    pub fn expire_sessions(&self) {
        self.lock().sessions.clear();
    }
    pub fn tokens_issued(&self) -> usize {
        self.lock().tokens_issued
    }
    /// The integration user the tokens stand for; default OwnerId of new records.
    pub fn default_user(&self) -> String {
        self.lock().default_user.clone()
    }
    /// Another active user ("005…"), e.g. an account owner.
    pub fn add_user(&self) -> String {
        let mut s = self.lock();
        let id = new_id(&mut s, "005");
        s.users.insert(id.clone());
        id
    }

    /// An Account with these fields (values converted to the field's type; an unknown field
    /// panics: `define_field` first). `Name` defaults to "Account N", `OwnerId` to the
    /// default user (an OwnerId given here becomes a known user). 18-char id "001…".
    pub fn add_account(&self, fields: &[(&str, &str)]) -> String {
        let mut s = self.lock();
        let mut m = Map::new();
        for (k, v) in fields {
            let def = find_field(&s, "Account", k).unwrap_or_else(|| panic!("Account has no field {k}: call define_field first")).clone();
            let value = match def.kind {
                Kind::Double => json!(v.parse::<f64>().unwrap_or_else(|_| panic!("{k}: {v} is not a number"))),
                Kind::Boolean => json!(v.parse::<bool>().unwrap_or_else(|_| panic!("{k}: {v} is not true/false"))),
                Kind::Id | Kind::Ref(_) => json!(normalize_id(v).unwrap_or_else(|| panic!("{k}: {v} is not an id"))),
                _ => json!(v),
            };
            if def.name == "OwnerId" {
                s.users.insert(value.as_str().unwrap().to_owned());
            }
            m.insert(def.name.clone(), value);
        }
        let id = new_id(&mut s, "001");
        let n = s.records.values().filter(|r| r.object == "Account").count() + 1;
        m.entry("Name").or_insert_with(|| json!(format!("Account {n}")));
        m.entry("OwnerId").or_insert_with(|| json!(s.default_user));
        m.insert("Id".into(), json!(id));
        s.records.insert(id.clone(), Rec { object: "Account".into(), fields: m });
        id
    }
    /// A live (not deleted) Account's fields, `Id` included.
    pub fn account(&self, id: &str) -> Option<BTreeMap<String, Value>> {
        let id = normalize_id(id)?;
        let s = self.lock();
        s.records.get(&id).filter(|r| r.object == "Account").map(|r| r.fields.clone().into_iter().collect())
    }
    /// Live Accounts in creation order.
    pub fn accounts(&self) -> Vec<(String, BTreeMap<String, Value>)> {
        self.objects("Account").into_iter().map(|(id, m)| (id, m.into_iter().collect())).collect()
    }
    /// Adds (or redefines) an Account field: kind `string`, `double`, `date`, `boolean`,
    /// `picklist`, or `external_id` (text, External ID + Unique: usable in upsert paths).
    pub fn define_field(&self, name: &str, kind: &str) {
        self.define_field_on("Account", name, kind);
    }
    /// `define_field` for another object (Contact, Task, CampaignMember, Campaign).
    pub fn define_field_on(&self, object: &str, name: &str, kind: &str) {
        let (kind, external_id) = match kind {
            "string" | "text" | "email" | "url" => (Kind::Text, false),
            "double" | "number" | "currency" | "percent" | "int" => (Kind::Double, false),
            "date" => (Kind::Date, false),
            "boolean" | "checkbox" => (Kind::Boolean, false),
            "picklist" => (Kind::Picklist, false),
            "external_id" => (Kind::Text, true),
            other => panic!("define_field: unknown kind {other}"),
        };
        let mut s = self.lock();
        let fields = s.schema.get_mut(object).unwrap_or_else(|| panic!("no object {object}"));
        fields.retain(|f| !f.name.eq_ignore_ascii_case(name));
        let mut def = field(name, &label_of(name), kind);
        def.external_id = external_id;
        fields.push(def);
    }
    /// Makes an Account picklist restricted to these values.
    pub fn restrict_picklist(&self, name: &str, values: &[&str]) {
        let mut s = self.lock();
        let def = s.schema.get_mut("Account").unwrap().iter_mut().find(|f| f.name.eq_ignore_ascii_case(name)).expect("no such field");
        def.restricted = Some(values.iter().map(|v| v.to_string()).collect());
    }
    /// Moves an Account to the recycle bin: queries no longer see it, writes to it fail with
    /// ENTITY_IS_DELETED.
    pub fn delete_account(&self, id: &str) {
        let id = normalize_id(id).expect("not an id");
        let mut s = self.lock();
        if let Some(r) = s.records.remove(&id) {
            s.deleted.insert(id, r);
        }
    }
    /// A Contact of this account ("003…").
    pub fn add_contact(&self, account_id: &str) -> String {
        let account = normalize_id(account_id).expect("not an id");
        let mut s = self.lock();
        let id = new_id(&mut s, "003");
        let owner = s.default_user.clone();
        let n = s.records.values().filter(|r| r.object == "Contact").count() + 1;
        let m = json!({"Id": id, "AccountId": account, "LastName": format!("Contact {n}"), "OwnerId": owner});
        s.records.insert(id.clone(), Rec { object: "Contact".into(), fields: m.as_object().unwrap().clone() });
        id
    }
    /// A Campaign ("701…"); its members may have any Status unless `set_campaign_statuses`.
    pub fn add_campaign(&self) -> String {
        let mut s = self.lock();
        let id = new_id(&mut s, "701");
        let n = s.records.values().filter(|r| r.object == "Campaign").count() + 1;
        let m = json!({"Id": id, "Name": format!("Campaign {n}"), "IsActive": true});
        s.records.insert(id.clone(), Rec { object: "Campaign".into(), fields: m.as_object().unwrap().clone() });
        id
    }
    /// Restricts a campaign's member statuses (real campaigns have "Sent" and "Responded"
    /// by default); another Status then fails with INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST.
    pub fn set_campaign_statuses(&self, campaign_id: &str, statuses: &[&str]) {
        let id = normalize_id(campaign_id).expect("not an id");
        self.lock().campaign_statuses.insert(id, statuses.iter().map(|s| s.to_string()).collect());
    }
    /// (ContactId, Status) of the campaign's members, in creation order.
    pub fn campaign_members(&self, campaign_id: &str) -> Vec<(String, String)> {
        let id = normalize_id(campaign_id).unwrap_or_default();
        self.objects("CampaignMember")
            .into_iter()
            .filter(|(_, m)| m.get("CampaignId").and_then(Value::as_str) == Some(id.as_str()))
            .map(|(_, m)| {
                let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                (s("ContactId"), s("Status"))
            })
            .collect()
    }
    /// Tasks (all fields, `Id` included) in creation order.
    pub fn tasks(&self) -> Vec<Value> {
        self.objects("Task").into_iter().map(|(_, m)| Value::Object(m)).collect()
    }
    fn objects(&self, object: &str) -> Vec<(String, Map<String, Value>)> {
        self.lock().records.iter().filter(|(_, r)| r.object == object).map(|(id, r)| (id.clone(), r.fields.clone())).collect()
    }

    /// The daily allocation: every authenticated data call counts one; at `used >= max`
    /// calls answer 403 REQUEST_LIMIT_EXCEEDED. Default 15000 / 0.
    pub fn set_daily_limit(&self, max: u64, used: u64) {
        self.lock().limit = (max, used);
    }
    /// (max, used).
    pub fn daily_usage(&self) -> (u64, u64) {
        self.lock().limit
    }
    /// At most this many rows per query page whatever the client asks (Salesforce: "no
    /// guarantee that the requested batch size is the actual batch size"). Default 2000.
    pub fn set_page_size(&self, rows: usize) {
        self.lock().page_size = rows.max(1);
    }
    /// true: a value the field's type can't take fails the whole collection request with
    /// `400 JSON_PARSER_ERROR` (likely the real behaviour); false (default): the record
    /// fails with INVALID_TYPE_ON_FIELD_IN_RECORD.
    pub fn json_parser_errors(&self, on: bool) {
        self.lock().json_parser_errors = on;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }
    /// Recorded calls that may change records: non-GET under /services/data/.
    pub fn write_calls(&self) -> usize {
        self.lock().requests.iter().filter(|r| r.method != "GET" && r.path.starts_with("/services/data/")).count()
    }
    /// The next `times` requests whose path starts with `path_prefix` ("" = any) get `fault`;
    /// queued faults are taken in order.
    pub fn fail_next(&self, path_prefix: &str, fault: Fault, times: usize) {
        self.lock().faults.push_back((path_prefix.into(), fault, times));
    }
    /// Updates and upserts of these records fail per record with
    /// FIELD_CUSTOM_VALIDATION_EXCEPTION (a validation rule).
    pub fn reject_ids(&self, ids: &[&str]) {
        self.lock().rejected = ids.iter().filter_map(|i| normalize_id(i)).collect();
    }
    /// More than this many data calls inside any second answer
    /// `403 [{"message":"ConcurrentPerOrgLongTxn Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`
    /// (Salesforce has no per-second limit; this is a test device). 0 = off.
    pub fn set_rate_limit(&self, requests_per_second: usize) {
        let mut s = self.lock();
        s.rate = (requests_per_second > 0).then_some(requests_per_second);
        s.recent.clear();
    }
    /// The most recorded requests under `path_prefix` inside any `window`.
    pub fn max_in_window(&self, path_prefix: &str, window: Duration) -> usize {
        max_in_window(self.lock().requests.iter().filter(|r| r.path.starts_with(path_prefix)).map(|r| r.at), window)
    }
}

fn make_keypair() -> (String, String) {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let private = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let public = key.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
    (private, public)
}

fn find_field<'a>(s: &'a Inner, object: &str, name: &str) -> Option<&'a FieldDef> {
    s.schema.get(object)?.iter().find(|f| f.name.eq_ignore_ascii_case(name))
}

fn find_object(s: &Inner, name: &str) -> Option<String> {
    s.schema.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

// ----------------------------------------------------------------------------------------
// HTTP

struct Reply {
    status: u16,
    body: Option<Value>,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply { status, body: Some(body) }
}

/// Salesforce's request-level error array.
fn errors(status: u16, code: &str, message: &str) -> Reply {
    reply(status, json!([{ "message": message, "errorCode": code }]))
}

fn oauth_error(error: &str, description: &str) -> Reply {
    reply(400, json!({ "error": error, "error_description": description }))
}

async fn handle(State(state): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let at = Instant::now();
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let authorization = header("authorization");
    let is_token = path == "/services/oauth2/token";
    let text = String::from_utf8_lossy(&body).into_owned();
    let parsed: Result<Value, String> = if is_token {
        Ok(json!(form_decode(&text)))
    } else if body.is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    };
    let fault = take_fault(&mut state.lock().unwrap().faults, &path);
    if let Some(Fault::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let (out, usage) = {
        let mut s = state.lock().unwrap();
        let out = match &fault {
            Some(Fault::RateLimited) => errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
            Some(Fault::ServerError(503)) => errors(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable. Please try again later."),
            Some(Fault::ServerError(code)) => errors(
                *code,
                "UNKNOWN_EXCEPTION",
                "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-1234567890)",
            ),
            Some(Fault::SessionExpired) => {
                if let Some(token) = bearer(&authorization) {
                    s.sessions.remove(token);
                }
                errors(401, "INVALID_SESSION_ID", "Session expired or invalid")
            }
            _ => route(&mut s, &method, &path, &query, &authorization, &parsed, &header("sforce-query-options")),
        };
        let recorded_body = parsed.clone().unwrap_or_else(|_| Value::String(text.clone()));
        s.requests.push(Recorded {
            method: method.to_string(),
            path: path.clone(),
            query,
            authorization,
            body: recorded_body,
            status: out.status,
            at,
        });
        (out, format!("api-usage={}/{}", s.limit.1, s.limit.0))
    };
    if let Some(Fault::DelayAfterApply(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let status = StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match out.body {
        Some(v) => {
            let mut text = v.to_string();
            if let Some(Fault::TruncatedJson) = &fault {
                let mut cut = text.len() / 2;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            let mut r = (status, text).into_response();
            r.headers_mut().insert("content-type", HeaderValue::from_static("application/json;charset=UTF-8"));
            r
        }
        None => status.into_response(),
    };
    if path.starts_with("/services/data/v") {
        response.headers_mut().insert("sforce-limit-info", HeaderValue::from_str(&usage).unwrap());
    }
    response
}

fn bearer(authorization: &Option<String>) -> Option<&str> {
    let a = authorization.as_deref()?;
    a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("OAuth ")).map(str::trim)
}

fn route(
    s: &mut Inner,
    method: &Method,
    path: &str,
    query: &str,
    auth: &Option<String>,
    body: &Result<Value, String>,
    query_options: &Option<String>,
) -> Reply {
    if path == "/services/oauth2/token" {
        if method != Method::POST {
            return oauth_error("invalid_request", "must use HTTP POST");
        }
        return token(s, body.as_ref().unwrap_or(&Value::Null), auth);
    }
    if path.len() + query.len() + 1 > MAX_URI_BYTES {
        return Reply { status: 414, body: None };
    }
    if (path == "/services/data" || path == "/services/data/") && method == Method::GET {
        let versions: Vec<Value> = [("Winter '25", 62), ("Spring '25", 63), ("Summer '25", 64), ("Winter '26", 65), ("Spring '26", 66), ("Summer '26", 67), ("Winter '27", 68)]
            .iter()
            .map(|(label, v)| json!({"label": label, "url": format!("/services/data/v{v}.0"), "version": format!("{v}.0")}))
            .collect();
        return reply(200, Value::Array(versions));
    }
    let segments: Vec<&str> = path.trim_start_matches('/').trim_end_matches('/').split('/').collect();
    if segments.len() < 3 || segments[0] != "services" || segments[1] != "data" {
        return errors(404, "NOT_FOUND", "The requested resource does not exist");
    }
    if !bearer(auth).is_some_and(|t| s.sessions.contains(t)) {
        return errors(401, "INVALID_SESSION_ID", "Session expired or invalid");
    }
    let version = segments[2];
    let number: f64 = version.strip_prefix('v').filter(|v| v.contains('.')).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    if !(MIN_API_VERSION..=MAX_API_VERSION).contains(&number) {
        return errors(404, "NOT_FOUND", "The requested resource does not exist");
    }
    if let Some(rps) = s.rate {
        let now = Instant::now();
        while s.recent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
            s.recent.pop_front();
        }
        if s.recent.len() >= rps {
            return errors(403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.");
        }
        s.recent.push_back(now);
    }
    if s.limit.1 >= s.limit.0 {
        return errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.");
    }
    s.limit.1 += 1;
    let body = match body {
        Ok(v) => v,
        Err(e) => return errors(400, "JSON_PARSER_ERROR", &format!("{e} at [line:1, column:1]")),
    };
    let batch = query_options
        .as_deref()
        .and_then(|o| o.split([',', ';']).find_map(|p| p.trim().strip_prefix("batchSize=")?.trim().parse::<usize>().ok()))
        .map(|n| n.clamp(200, 2000))
        .unwrap_or(2000)
        .min(s.page_size);
    match (method.as_str(), &segments[3..]) {
        ("GET", ["limits"]) => {
            let (max, used) = s.limit;
            reply(
                200,
                json!({
                    "DailyApiRequests": {"Max": max, "Remaining": max.saturating_sub(used)},
                    "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
                    "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
                    "DataStorageMB": {"Max": 5, "Remaining": 5},
                    "FileStorageMB": {"Max": 20, "Remaining": 20},
                }),
            )
        }
        ("GET", ["query"]) => {
            let q = form_decode(query).remove("q").unwrap_or_default();
            soql(s, version, &q, batch)
        }
        ("GET", ["query", locator]) => {
            let Some((id, offset)) = locator.rsplit_once('-') else {
                return errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator");
            };
            match offset.parse::<usize>() {
                Ok(offset) => page(s, version, id, offset, batch),
                Err(_) => errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator"),
            }
        }
        ("POST", ["composite", "sobjects"]) if number >= 42.0 => collection(s, body, Mode::Create, None),
        ("PATCH", ["composite", "sobjects"]) if number >= 42.0 => collection(s, body, Mode::Update, None),
        ("PATCH", ["composite", "sobjects", object, ext]) if number >= 46.0 => {
            let Some(object) = find_object(s, object) else {
                return errors(404, "NOT_FOUND", "The requested resource does not exist");
            };
            let Some(def) = find_field(s, &object, ext).cloned() else {
                return errors(404, "NOT_FOUND", &format!("Provided external ID field does not exist or is not accessible: {ext}"));
            };
            if !def.external_id && def.kind != Kind::Id {
                return errors(
                    400,
                    "INVALID_FIELD",
                    &format!("Field {} is not an External ID or Id field (emulator: define_field(name, \"external_id\"))", def.name),
                );
            }
            collection(s, body, Mode::Upsert(def.name), Some(object))
        }
        ("POST", ["sobjects", object]) => {
            let Some(object) = find_object(s, object) else {
                return errors(404, "NOT_FOUND", "The requested resource does not exist");
            };
            let mut record = body.as_object().cloned().unwrap_or_default();
            record.entry("attributes").or_insert_with(|| json!({"type": object}));
            let prepared = match prepare(s, &[Value::Object(record)], Some(&object)) {
                Ok(p) => p,
                Err(r) => return r,
            };
            match write_one(s, &prepared[0], &Mode::Create) {
                Ok((id, _)) => reply(201, json!({"id": id, "success": true, "errors": []})),
                Err(e) => reply(400, json!([{"message": e.message, "errorCode": e.code, "fields": e.fields}])),
            }
        }
        ("GET", ["sobjects", object, id]) => {
            let (Some(object), Some(id)) = (find_object(s, object), normalize_id(id)) else {
                return errors(404, "NOT_FOUND", "The requested resource does not exist");
            };
            match s.records.get(&id).filter(|r| r.object == object) {
                Some(r) => {
                    let mut out = Map::new();
                    out.insert("attributes".into(), json!({"type": object, "url": format!("/services/data/{version}/sobjects/{object}/{id}")}));
                    for def in &s.schema[&object] {
                        out.insert(def.name.clone(), r.fields.get(&def.name).cloned().unwrap_or(Value::Null));
                    }
                    reply(200, Value::Object(out))
                }
                None => errors(404, "NOT_FOUND", "The requested resource does not exist"),
            }
        }
        ("PATCH", ["sobjects", object, id]) => {
            let Some(object) = find_object(s, object) else {
                return errors(404, "NOT_FOUND", "The requested resource does not exist");
            };
            let mut record = body.as_object().cloned().unwrap_or_default();
            record.insert("attributes".into(), json!({"type": object}));
            record.insert("Id".into(), json!(id));
            let prepared = match prepare(s, &[Value::Object(record)], Some(&object)) {
                Ok(p) => p,
                Err(r) => return r,
            };
            match write_one(s, &prepared[0], &Mode::Update) {
                Ok(_) => Reply { status: 204, body: None },
                Err(e) => {
                    let status = if e.code == "ENTITY_IS_DELETED" { 404 } else { 400 };
                    reply(status, json!([{"message": e.message, "errorCode": e.code, "fields": e.fields}]))
                }
            }
        }
        ("DELETE", ["sobjects", _, id]) => match normalize_id(id).and_then(|id| s.records.remove_entry(&id)) {
            Some((id, r)) => {
                s.deleted.insert(id, r);
                Reply { status: 204, body: None }
            }
            None => errors(404, "NOT_FOUND", "The requested resource does not exist"),
        },
        _ => errors(404, "NOT_FOUND", "The requested resource does not exist"),
    }
}

// ----------------------------------------------------------------------------------------
// OAuth

fn b64decode(s: &str) -> Option<Vec<u8>> {
    let (mut out, mut buf, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => continue,
            _ => return None,
        } as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn token(s: &mut Inner, form: &Value, auth: &Option<String>) -> Reply {
    let get = |k: &str| form.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    match get("grant_type").as_str() {
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            let assertion = get("assertion");
            let claims: Option<Value> = assertion
                .split('.')
                .nth(1)
                .and_then(b64decode)
                .and_then(|b| serde_json::from_slice(&b).ok());
            let header_ok = jsonwebtoken::decode_header(&assertion).is_ok_and(|h| h.alg == jsonwebtoken::Algorithm::RS256);
            let Some(claims) = claims.filter(|_| header_ok) else {
                return oauth_error("invalid_grant", "invalid assertion");
            };
            let iss = claims["iss"].as_str().unwrap_or_default();
            let Some(app) = s.jwt_apps.iter().find(|a| a.client_id == iss) else {
                return oauth_error("invalid_client_id", "client identifier invalid");
            };
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            validation.validate_exp = false;
            validation.validate_aud = false;
            validation.required_spec_claims = HashSet::new();
            if jsonwebtoken::decode::<Value>(&assertion, &app.key, &validation).is_err() {
                return oauth_error("invalid_grant", "invalid assertion");
            }
            let aud_ok = match &claims["aud"] {
                Value::String(a) => *a == s.url,
                Value::Array(a) => a.iter().any(|a| a.as_str() == Some(s.url.as_str())),
                _ => false,
            };
            if !aud_ok {
                return oauth_error("invalid_grant", "audience is invalid");
            }
            let exp = claims["exp"].as_i64().or_else(|| claims["exp"].as_str().and_then(|e| e.parse().ok()));
            let now = chrono::Utc::now().timestamp();
            if !exp.is_some_and(|e| e > now && e <= now + 180) {
                return oauth_error("invalid_grant", "expired authorization code");
            }
            let sub = claims["sub"].as_str().or_else(|| claims["prn"].as_str()).unwrap_or_default();
            if sub != app.username {
                return oauth_error("invalid_grant", "user hasn't approved this consumer");
            }
            issue(s)
        }
        "client_credentials" => {
            let (mut id, mut secret) = (get("client_id"), get("client_secret"));
            if let Some(basic) = auth.as_deref().and_then(|a| a.strip_prefix("Basic ")) {
                if let Some((i, p)) = b64decode(basic.trim()).and_then(|b| String::from_utf8(b).ok()).and_then(|t| t.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned()))) {
                    (id, secret) = (i, p);
                }
            }
            let known = s.client_credentials.iter().find(|(i, _)| *i == id).map(|(_, sec)| *sec == secret);
            match known {
                None => oauth_error("invalid_client_id", "client identifier invalid"),
                Some(false) => oauth_error("invalid_client", "invalid client credentials"),
                Some(true) => issue(s),
            }
        }
        "refresh_token" => {
            let (id, secret, rt) = (get("client_id"), get("client_secret"), get("refresh_token"));
            let apps: Vec<_> = s.refresh.iter().filter(|(i, _, _)| *i == id).cloned().collect();
            if apps.is_empty() {
                return oauth_error("invalid_client_id", "client identifier invalid");
            }
            if !apps.iter().any(|(_, sec, _)| *sec == secret) {
                return oauth_error("invalid_client", "invalid client credentials");
            }
            if !apps.iter().any(|(_, sec, r)| *sec == secret && *r == rt) {
                return oauth_error("invalid_grant", "expired access/refresh token");
            }
            issue(s)
        }
        "" => oauth_error("invalid_request", "grant type not supported"),
        _ => reply(400, json!({"error": "unsupported_grant_type", "error_description": "grant type not supported"})),
    }
}

fn issue(s: &mut Inner) -> Reply {
    let access = format!("{}!AQEAQ{:016x}{:016x}", &s.org_id[..15], rand::random::<u64>(), rand::random::<u64>());
    s.sessions.insert(access.clone());
    s.tokens_issued += 1;
    reply(
        200,
        json!({
            "access_token": access,
            "signature": "ZW11bGF0ZWQgc2lnbmF0dXJl",
            "scope": "api",
            "instance_url": s.url,
            "id": format!("{}/id/{}/{}", s.url, s.org_id, s.default_user),
            "token_type": "Bearer",
            "issued_at": chrono::Utc::now().timestamp_millis().to_string(),
        }),
    )
}

// ----------------------------------------------------------------------------------------
// Writes

#[derive(Debug)]
enum Mode {
    Create,
    Update,
    /// By this external id field (canonical name).
    Upsert(String),
}

#[derive(Debug)]
struct RecErr {
    code: String,
    message: String,
    fields: Vec<String>,
}

fn rec_err(code: &str, message: impl Into<String>, fields: &[&str]) -> RecErr {
    RecErr { code: code.into(), message: message.into(), fields: fields.iter().map(|f| f.to_string()).collect() }
}

/// A record after deserialization: its object (None: no usable type) and fields under
/// their canonical names.
struct Prepared {
    object: Result<String, RecErr>,
    fields: Vec<(String, Value)>,
}

fn token_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "VALUE_STRING",
        Value::Number(n) if n.is_f64() => "VALUE_NUMBER_FLOAT",
        Value::Number(_) => "VALUE_NUMBER_INT",
        Value::Bool(true) => "VALUE_TRUE",
        Value::Bool(false) => "VALUE_FALSE",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
        Value::Null => "VALUE_NULL",
    }
}

/// Deserialization: unknown fields (and, in strict mode, uncoercible values) fail the
/// whole request, before anything is written.
fn prepare(s: &Inner, records: &[Value], path_object: Option<&str>) -> Result<Vec<Prepared>, Reply> {
    let mut out = Vec::new();
    for r in records {
        let Some(r) = r.as_object() else {
            return Err(errors(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of SObject from non-object value at [line:1, column:1]"));
        };
        let declared = r.get("attributes").and_then(|a| a.get("type")).and_then(Value::as_str);
        let object = match (declared, path_object) {
            (None, _) => Err(rec_err("INVALID_TYPE", "Must send a concrete entity type.", &[])),
            (Some(t), _) => match find_object(s, t) {
                None => Err(rec_err("INVALID_TYPE", format!("sObject type '{t}' is not supported."), &[])),
                Some(t) if path_object.is_some_and(|p| p != t) => {
                    Err(rec_err("INVALID_TYPE", format!("Record type {t} does not match the request's sObject type {}", path_object.unwrap()), &[]))
                }
                Some(t) => Ok(t),
            },
        };
        let mut fields = Vec::new();
        if let Ok(object) = &object {
            for (k, v) in r {
                if k == "attributes" {
                    continue;
                }
                let Some(def) = find_field(s, object, k) else {
                    return Err(errors(400, "INVALID_FIELD", &format!("No such column '{k}' on sobject of type {object}")));
                };
                if s.json_parser_errors && def.kind != Kind::Id {
                    if let Err(Bad::Parse) = coerce(s, def, v) {
                        return Err(errors(
                            400,
                            "JSON_PARSER_ERROR",
                            &format!(
                                "Cannot deserialize instance of {} from {} value {} or request may be missing a required field at [line:1, column:1]",
                                def.kind.soap_name(),
                                token_name(v),
                                v
                            ),
                        ));
                    }
                }
                fields.push((def.name.clone(), v.clone()));
            }
        }
        out.push(Prepared { object, fields });
    }
    Ok(out)
}

fn collection(s: &mut Inner, body: &Value, mode: Mode, path_object: Option<String>) -> Reply {
    let Some(records) = body.get("records").and_then(Value::as_array) else {
        return errors(400, "JSON_PARSER_ERROR", "The request body must be an object with a records array");
    };
    if records.len() > COLLECTION_LIMIT {
        return errors(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call");
    }
    let all_or_none = body.get("allOrNone").and_then(Value::as_bool).unwrap_or(false);
    let prepared = match prepare(s, records, path_object.as_deref()) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let snapshot = all_or_none.then(|| (s.records.clone(), s.next));
    let results: Vec<Result<(String, Option<bool>), RecErr>> = prepared.iter().map(|p| write_one(s, p, &mode)).collect();
    let failed = results.iter().any(Result::is_err);
    let rolled_back = all_or_none && failed;
    if let (true, Some((records, next))) = (rolled_back, snapshot) {
        s.records = records;
        s.next = next;
    }
    let out: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Ok(_) if rolled_back => json!({"success": false, "errors": [{
                "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "message": "Record rolled back because not all records were valid and the request was using AllOrNone header",
                "fields": []}]}),
            Ok((id, created)) => {
                let mut v = json!({"id": id, "success": true, "errors": []});
                if let Some(c) = created {
                    v["created"] = json!(c);
                }
                v
            }
            Err(e) => json!({"success": false, "errors": [{"statusCode": e.code, "message": e.message, "fields": e.fields}]}),
        })
        .collect();
    reply(200, Value::Array(out))
}

enum Bad {
    /// The JSON token can't become the field's type.
    Parse,
    Record(RecErr),
}

fn coerce(s: &Inner, def: &FieldDef, v: &Value) -> Result<Value, Bad> {
    let label = def.label.as_str();
    let name = def.name.as_str();
    if v.is_null() {
        return match def.kind {
            Kind::Boolean => Err(Bad::Record(rec_err("INVALID_TYPE_ON_FIELD_IN_RECORD", format!("{label}: value not of required type: null"), &[name]))),
            _ => Ok(Value::Null),
        };
    }
    match &def.kind {
        Kind::Id => v.as_str().map(|x| json!(x)).ok_or(Bad::Parse),
        Kind::Ref(prefixes) => {
            let raw = v.as_str().ok_or(Bad::Parse)?;
            let Some(id) = normalize_id(raw) else {
                return Err(Bad::Record(rec_err("MALFORMED_ID", format!("{label}: id value of incorrect type: {raw}"), &[name])));
            };
            if !prefixes.contains(&&id[..3]) {
                return Err(Bad::Record(rec_err("FIELD_INTEGRITY_EXCEPTION", format!("{label}: id value of incorrect type: {raw}"), &[name])));
            }
            let exists = if &id[..3] == "005" { s.users.contains(&id) } else { s.records.contains_key(&id) };
            if !exists {
                let code = if s.deleted.contains_key(&id) { "ENTITY_IS_DELETED" } else { "INVALID_CROSS_REFERENCE_KEY" };
                let message = if code == "ENTITY_IS_DELETED" { "entity is deleted".to_owned() } else { format!("invalid cross reference id") };
                return Err(Bad::Record(rec_err(code, message, &[name])));
            }
            Ok(json!(id))
        }
        Kind::Text | Kind::Picklist => {
            let text = match v {
                Value::String(t) => t.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return Err(Bad::Parse),
            };
            if text.chars().count() > def.max_len {
                return Err(Bad::Record(rec_err(
                    "STRING_TOO_LONG",
                    format!("{label}: data value too large: {text} (max length={})", def.max_len),
                    &[name],
                )));
            }
            if let Some(allowed) = &def.restricted {
                if !allowed.contains(&text) {
                    return Err(Bad::Record(rec_err(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        format!("{label}: bad value for restricted picklist field: {text}"),
                        &[name],
                    )));
                }
            }
            Ok(json!(text))
        }
        Kind::Double => match v {
            Value::Number(n) => Ok(json!(n.as_f64().unwrap_or_default())),
            Value::String(t) => t.trim().parse::<f64>().map(|f| json!(f)).map_err(|_| Bad::Parse),
            _ => Err(Bad::Parse),
        },
        Kind::Date => match v.as_str() {
            Some(d) if d.len() == 10 && chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok() => Ok(json!(d)),
            _ => Err(Bad::Parse),
        },
        Kind::Boolean => match v {
            Value::Bool(b) => Ok(json!(b)),
            Value::String(t) if t.eq_ignore_ascii_case("true") => Ok(json!(true)),
            Value::String(t) if t.eq_ignore_ascii_case("false") => Ok(json!(false)),
            _ => Err(Bad::Parse),
        },
    }
}

/// Coerces every field but `Id`; the first bad value fails the record.
fn coerce_all(s: &Inner, object: &str, fields: &[(String, Value)]) -> Result<Map<String, Value>, RecErr> {
    let mut out = Map::new();
    for (name, v) in fields {
        if name == "Id" {
            continue;
        }
        let def = find_field(s, object, name).expect("prepared");
        match coerce(s, def, v) {
            Ok(v) => {
                out.insert(name.clone(), v);
            }
            Err(Bad::Parse) => {
                return Err(rec_err("INVALID_TYPE_ON_FIELD_IN_RECORD", format!("{}: value not of required type: {v}", def.label), &[name]));
            }
            Err(Bad::Record(e)) => return Err(e),
        }
    }
    Ok(out)
}

fn write_one(s: &mut Inner, p: &Prepared, mode: &Mode) -> Result<(String, Option<bool>), RecErr> {
    let object = match &p.object {
        Ok(o) => o.clone(),
        Err(e) => return Err(rec_err(&e.code, e.message.clone(), &[])),
    };
    let given_id = p.fields.iter().find(|(k, _)| k == "Id").map(|(_, v)| v.clone());
    match mode {
        Mode::Create => {
            if given_id.is_some() {
                return Err(rec_err("INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", &["Id"]));
            }
            let values = coerce_all(s, &object, &p.fields)?;
            insert(s, &object, values).map(|id| (id, None))
        }
        Mode::Update => {
            let Some(raw) = given_id else {
                return Err(rec_err("MISSING_ARGUMENT", "Id not specified in an update call", &[]));
            };
            let id = target(s, &object, raw.as_str().unwrap_or_default())?;
            let values = coerce_all(s, &object, &p.fields)?;
            update(s, &object, &id, values)?;
            Ok((id, None))
        }
        Mode::Upsert(ext) => {
            let def = find_field(s, &object, ext).expect("checked").clone();
            let key = p.fields.iter().find(|(k, _)| k == ext).map(|(_, v)| v.clone()).filter(|v| !v.is_null());
            let Some(key) = key else {
                return Err(rec_err("MISSING_ARGUMENT", format!("{ext} not specified"), &[]));
            };
            if def.kind == Kind::Id {
                let id = target(s, &object, key.as_str().unwrap_or_default())?;
                let values = coerce_all(s, &object, &p.fields)?;
                update(s, &object, &id, values)?;
                return Ok((id, Some(false)));
            }
            let key = match coerce(s, &def, &key) {
                Ok(k) => k,
                Err(_) => return Err(rec_err("INVALID_TYPE_ON_FIELD_IN_RECORD", format!("{}: value not of required type: {key}", def.label), &[ext])),
            };
            let matches: Vec<String> = s
                .records
                .iter()
                .filter(|(_, r)| r.object == object && r.fields.get(ext).is_some_and(|v| same_text(v, &key)))
                .map(|(id, _)| id.clone())
                .collect();
            let values = coerce_all(s, &object, &p.fields)?;
            match matches.as_slice() {
                [] => insert(s, &object, values).map(|id| (id, Some(true))),
                [id] => {
                    if s.rejected.contains(id) {
                        return Err(rejected());
                    }
                    update(s, &object, id, values)?;
                    Ok((id.clone(), Some(false)))
                }
                many => Err(rec_err("DUPLICATE_EXTERNAL_ID", format!("More than 1 record found for an external ID field: [{}]", many.join(", ")), &[ext])),
            }
        }
    }
}

fn same_text(a: &Value, b: &Value) -> bool {
    match (a.as_str(), b.as_str()) {
        (Some(a), Some(b)) => a.to_lowercase() == b.to_lowercase(),
        _ => a == b,
    }
}

fn rejected() -> RecErr {
    rec_err("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Blocked by a validation rule (emulated: reject_ids)", &[])
}

/// The record an update names: its 18-char id, or the per-record error Salesforce gives.
fn target(s: &Inner, object: &str, raw: &str) -> Result<String, RecErr> {
    let bad = || rec_err("MALFORMED_ID", format!("{object} ID: id value of incorrect type: {raw}"), &["Id"]);
    let id = normalize_id(raw).ok_or_else(bad)?;
    if prefix_object(&id) != Some(object) && object_prefix(object) != &id[..3] {
        return Err(bad());
    }
    if s.deleted.contains_key(&id) {
        return Err(rec_err("ENTITY_IS_DELETED", "entity is deleted", &[]));
    }
    if !s.records.contains_key(&id) {
        return Err(rec_err("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", &[]));
    }
    if s.rejected.contains(&id) {
        return Err(rejected());
    }
    Ok(id)
}

/// Unique (external id) fields must not collide with another live record.
fn check_unique(s: &Inner, object: &str, id: Option<&str>, values: &Map<String, Value>) -> Result<(), RecErr> {
    for def in s.schema[object].iter().filter(|d| d.external_id) {
        let Some(v) = values.get(&def.name).filter(|v| !v.is_null()) else { continue };
        let other = s.records.iter().find(|(rid, r)| Some(rid.as_str()) != id && r.object == object && r.fields.get(&def.name).is_some_and(|x| same_text(x, v)));
        if let Some((other, _)) = other {
            return Err(rec_err(
                "DUPLICATE_VALUE",
                format!("duplicate value found: {} duplicates value on record with id: {other}", def.name),
                &[def.name.as_str()],
            ));
        }
    }
    Ok(())
}

fn insert(s: &mut Inner, object: &str, mut values: Map<String, Value>) -> Result<String, RecErr> {
    let blank = |m: &Map<String, Value>, k: &str| m.get(k).is_none_or(|v| v.is_null() || v.as_str() == Some(""));
    let required: &[&str] = match object {
        "Account" | "Campaign" => &["Name"],
        "Contact" => &["LastName"],
        "CampaignMember" => &["CampaignId"],
        _ => &[],
    };
    let missing: Vec<&str> = required.iter().copied().filter(|k| blank(&values, k)).collect();
    if !missing.is_empty() {
        return Err(rec_err("REQUIRED_FIELD_MISSING", format!("Required fields are missing: [{}]", missing.join(", ")), &missing));
    }
    match object {
        "Account" | "Contact" | "Task" => {
            if blank(&values, "OwnerId") {
                values.insert("OwnerId".into(), json!(s.default_user));
            }
        }
        _ => {}
    }
    match object {
        "Task" => {
            for (k, default) in [("Status", "Not Started"), ("Priority", "Normal")] {
                if blank(&values, k) {
                    values.insert(k.into(), json!(default));
                }
            }
        }
        "CampaignMember" => {
            if blank(&values, "ContactId") && blank(&values, "LeadId") {
                return Err(rec_err("REQUIRED_FIELD_MISSING", "Required fields are missing: [ContactId, LeadId]", &["ContactId", "LeadId"]));
            }
            if blank(&values, "Status") {
                values.insert("Status".into(), json!("Sent"));
            }
            let campaign = values["CampaignId"].as_str().unwrap_or_default().to_owned();
            if let Some(allowed) = s.campaign_statuses.get(&campaign) {
                let status = values["Status"].as_str().unwrap_or_default();
                if !allowed.iter().any(|a| a == status) {
                    return Err(rec_err("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", format!("Status: bad value for restricted picklist field: {status}"), &["Status"]));
                }
            }
            let member = |m: &Map<String, Value>, k: &str| m.get(k).filter(|v| !v.is_null()).cloned();
            let duplicate = s.records.values().any(|r| {
                r.object == "CampaignMember"
                    && r.fields.get("CampaignId") == values.get("CampaignId")
                    && ((member(&values, "ContactId").is_some() && member(&r.fields, "ContactId") == member(&values, "ContactId"))
                        || (member(&values, "LeadId").is_some() && member(&r.fields, "LeadId") == member(&values, "LeadId")))
            });
            if duplicate {
                return Err(rec_err("DUPLICATE_VALUE", "Already a campaign member.", &[]));
            }
        }
        _ => {}
    }
    check_unique(s, object, None, &values)?;
    let id = new_id(s, object_prefix(object));
    values.insert("Id".into(), json!(id));
    s.records.insert(id.clone(), Rec { object: object.into(), fields: values });
    Ok(id)
}

fn update(s: &mut Inner, object: &str, id: &str, values: Map<String, Value>) -> Result<(), RecErr> {
    if object == "Account" && values.get("Name").is_some_and(|v| v.is_null() || v.as_str() == Some("")) {
        return Err(rec_err("REQUIRED_FIELD_MISSING", "Required fields are missing: [Name]", &["Name"]));
    }
    check_unique(s, object, Some(id), &values)?;
    let rec = s.records.get_mut(id).expect("target checked");
    rec.fields.extend(values);
    Ok(())
}

// ----------------------------------------------------------------------------------------
// SOQL: SELECT f, … FROM Object [WHERE cond] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST]]
// [LIMIT n] [OFFSET n]; cond: comparisons (= != <> < <= > >=), [NOT] IN (…), LIKE, joined
// by AND / OR / NOT with parentheses.

#[derive(Clone, Debug, PartialEq)]
enum Pat {
    Lit(char),
    Any,
    One,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String, Vec<Pat>),
    Num(f64),
    Date(String),
    Sym(&'static str),
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    col: usize,
}

fn lex(q: &str) -> Result<Vec<Token>, (usize, String)> {
    let chars: Vec<char> = q.chars().collect();
    let (mut i, mut out) = (0, Vec::new());
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            '\'' => {
                i += 1;
                let (mut plain, mut pat) = (String::new(), Vec::new());
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err((col, "unexpected end of string literal".into()));
                    };
                    if c == '\\' {
                        let e = chars.get(i + 1).copied().unwrap_or(' ');
                        i += 2;
                        let lit = match e {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            'b' => '\u{8}',
                            'f' => '\u{c}',
                            '\'' | '"' | '\\' | '%' | '_' => e,
                            _ => return Err((col, format!("Invalid string literal '{}'. Illegal character sequence '\\{e}' in string literal.", q))),
                        };
                        plain.push(lit);
                        pat.push(Pat::Lit(lit));
                        continue;
                    }
                    i += 1;
                    if c == '\'' {
                        break;
                    }
                    plain.push(c);
                    pat.push(match c {
                        '%' => Pat::Any,
                        '_' => Pat::One,
                        _ => Pat::Lit(c),
                    });
                }
                Tok::Str(plain, pat)
            }
            ',' | '(' | ')' | '=' => {
                i += 1;
                Tok::Sym(match c {
                    ',' => ",",
                    '(' => "(",
                    ')' => ")",
                    _ => "=",
                })
            }
            '!' | '<' | '>' => {
                let next = chars.get(i + 1).copied();
                let (sym, len) = match (c, next) {
                    ('!', Some('=')) => ("!=", 2),
                    ('<', Some('>')) => ("!=", 2),
                    ('<', Some('=')) => ("<=", 2),
                    ('>', Some('=')) => (">=", 2),
                    ('<', _) => ("<", 1),
                    ('>', _) => (">", 1),
                    _ => return Err((col, format!("unexpected token: '{c}'"))),
                };
                i += len;
                Tok::Sym(sym)
            }
            c if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || ".-:+".contains(chars[i])) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if word.len() == 10 && chrono::NaiveDate::parse_from_str(&word, "%Y-%m-%d").is_ok() {
                    Tok::Date(word)
                } else {
                    Tok::Num(word.parse().map_err(|_| (col, format!("unexpected token: '{word}'")))?)
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                    i += 1;
                }
                Tok::Word(chars[start..i].iter().collect())
            }
            _ => return Err((col, format!("unexpected token: '{c}'"))),
        };
        out.push(Token { tok, col });
    }
    Ok(out)
}

#[derive(Clone, Debug)]
enum Lit {
    Str(String, Vec<Pat>),
    Num(f64),
    Bool(bool),
    Null,
    Date(String),
}

#[derive(Clone, Debug)]
struct FieldRef {
    name: String,
    col: usize,
}

#[derive(Clone, Debug)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(FieldRef, &'static str, Lit),
    In(FieldRef, bool, Vec<Lit>),
    Like(FieldRef, Vec<Pat>),
}

struct Soql {
    fields: Vec<FieldRef>,
    object: FieldRef,
    filter: Option<Expr>,
    order: Option<(FieldRef, bool, bool)>,
    limit: Option<usize>,
    offset: usize,
}

struct Parser {
    toks: Vec<Token>,
    at: usize,
    end_col: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|t| &t.tok)
    }
    fn col(&self) -> usize {
        self.toks.get(self.at).map(|t| t.col).unwrap_or(self.end_col)
    }
    fn unexpected<T>(&self) -> Result<T, (usize, String)> {
        let what = match self.peek() {
            None => "<EOF>".to_owned(),
            Some(Tok::Word(w)) => w.clone(),
            Some(Tok::Str(s, _)) => format!("'{s}'"),
            Some(Tok::Num(n)) => n.to_string(),
            Some(Tok::Date(d)) => d.clone(),
            Some(Tok::Sym(s)) => s.to_string(),
        };
        Err((self.col(), format!("unexpected token: {what}")))
    }
    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }
    fn kw(&mut self, kw: &str) -> Result<(), (usize, String)> {
        if self.is_kw(kw) {
            self.at += 1;
            Ok(())
        } else {
            self.unexpected()
        }
    }
    fn sym(&mut self, s: &str) -> Result<(), (usize, String)> {
        if self.peek() == Some(&Tok::Sym(match s {
            "(" => "(",
            ")" => ")",
            _ => ",",
        })) {
            self.at += 1;
            Ok(())
        } else {
            self.unexpected()
        }
    }
    fn ident(&mut self) -> Result<FieldRef, (usize, String)> {
        const RESERVED: [&str; 12] = ["SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "LIMIT", "OFFSET"];
        match self.peek() {
            Some(Tok::Word(w)) if !RESERVED.iter().any(|r| w.eq_ignore_ascii_case(r)) => {
                let f = FieldRef { name: w.clone(), col: self.col() };
                self.at += 1;
                Ok(f)
            }
            _ => self.unexpected(),
        }
    }
    fn number(&mut self) -> Result<usize, (usize, String)> {
        match self.peek() {
            Some(Tok::Num(n)) if *n >= 0.0 && n.fract() == 0.0 => {
                let n = *n as usize;
                self.at += 1;
                Ok(n)
            }
            _ => self.unexpected(),
        }
    }
    fn literal(&mut self) -> Result<Lit, (usize, String)> {
        let lit = match self.peek() {
            Some(Tok::Str(s, p)) => Lit::Str(s.clone(), p.clone()),
            Some(Tok::Num(n)) => Lit::Num(*n),
            Some(Tok::Date(d)) => Lit::Date(d.clone()),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Lit::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Lit::Bool(false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Lit::Null,
            _ => return self.unexpected(),
        };
        self.at += 1;
        Ok(lit)
    }
    fn query(&mut self) -> Result<Soql, (usize, String)> {
        self.kw("SELECT")?;
        let mut fields = vec![self.ident()?];
        while self.peek() == Some(&Tok::Sym(",")) {
            self.at += 1;
            fields.push(self.ident()?);
        }
        self.kw("FROM")?;
        let object = self.ident()?;
        let filter = if self.is_kw("WHERE") {
            self.at += 1;
            Some(self.or()?)
        } else {
            None
        };
        let mut order = None;
        if self.is_kw("ORDER") {
            self.at += 1;
            self.kw("BY")?;
            let f = self.ident()?;
            let mut desc = false;
            if self.is_kw("ASC") {
                self.at += 1;
            } else if self.is_kw("DESC") {
                self.at += 1;
                desc = true;
            }
            let mut nulls_last = desc;
            if self.is_kw("NULLS") {
                self.at += 1;
                if self.is_kw("FIRST") {
                    nulls_last = false;
                } else if self.is_kw("LAST") {
                    nulls_last = true;
                } else {
                    return self.unexpected();
                }
                self.at += 1;
            }
            order = Some((f, desc, nulls_last));
        }
        let mut limit = None;
        if self.is_kw("LIMIT") {
            self.at += 1;
            limit = Some(self.number()?);
        }
        let mut offset = 0;
        if self.is_kw("OFFSET") {
            self.at += 1;
            offset = self.number()?;
        }
        if self.peek().is_some() {
            return self.unexpected();
        }
        Ok(Soql { fields, object, filter, order, limit, offset })
    }
    fn or(&mut self) -> Result<Expr, (usize, String)> {
        let mut e = self.and()?;
        while self.is_kw("OR") {
            self.at += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }
    fn and(&mut self) -> Result<Expr, (usize, String)> {
        let mut e = self.unary()?;
        while self.is_kw("AND") {
            self.at += 1;
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }
    fn unary(&mut self) -> Result<Expr, (usize, String)> {
        if self.is_kw("NOT") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Tok::Sym("(")) {
            self.at += 1;
            let e = self.or()?;
            self.sym(")")?;
            return Ok(e);
        }
        let f = self.ident()?;
        if self.is_kw("LIKE") {
            self.at += 1;
            return match self.literal()? {
                Lit::Str(_, p) => Ok(Expr::Like(f, p)),
                _ => self.unexpected(),
            };
        }
        let not = self.is_kw("NOT");
        if not {
            self.at += 1;
        }
        if self.is_kw("IN") {
            self.at += 1;
            self.sym("(")?;
            let mut values = vec![self.literal()?];
            while self.peek() == Some(&Tok::Sym(",")) {
                self.at += 1;
                values.push(self.literal()?);
            }
            self.sym(")")?;
            return Ok(Expr::In(f, not, values));
        }
        if not {
            return self.unexpected();
        }
        let op = match self.peek() {
            Some(Tok::Sym(op)) if ["=", "!=", "<", "<=", ">", ">="].contains(op) => *op,
            _ => return self.unexpected(),
        };
        self.at += 1;
        Ok(Expr::Cmp(f, op, self.literal()?))
    }
}

fn soql_error(q: &str, code: &str, col: usize, message: &str) -> Reply {
    errors(400, code, &format!("\n{q}\n{}^\nERROR at Row:1:Column:{col}\n{message}", " ".repeat(col.saturating_sub(1))))
}

/// Checks a literal against the field's type: the resolved, typed literal or an error.
fn check_literal(q: &str, f: &FieldRef, def: &FieldDef, lit: &Lit) -> Result<Lit, Reply> {
    let wrong = |ty: &str, quoted: bool| {
        let how = if quoted { "should be enclosed in quotes" } else { "should not be enclosed in quotes" };
        Err(soql_error(q, "INVALID_FIELD", f.col, &format!("value of filter criterion for field '{}' must be of type {ty} and {how}", def.name)))
    };
    match (&def.kind, lit) {
        (_, Lit::Null) => Ok(Lit::Null),
        (Kind::Id | Kind::Ref(_), Lit::Str(s, _)) => match normalize_id(s) {
            Some(id) => Ok(Lit::Str(id.clone(), id.chars().map(Pat::Lit).collect())),
            None => Err(soql_error(q, "INVALID_QUERY_FILTER_OPERATOR", f.col, &format!("invalid ID field: {s}"))),
        },
        (Kind::Id | Kind::Ref(_), _) => wrong("id", true),
        (Kind::Text | Kind::Picklist, Lit::Str(..)) => Ok(lit.clone()),
        (Kind::Text | Kind::Picklist, _) => wrong("string", true),
        (Kind::Double, Lit::Num(_)) => Ok(lit.clone()),
        (Kind::Double, _) => wrong("double", false),
        (Kind::Boolean, Lit::Bool(_)) => Ok(lit.clone()),
        (Kind::Boolean, _) => wrong("boolean", false),
        (Kind::Date, Lit::Date(_)) => Ok(lit.clone()),
        (Kind::Date, _) => wrong("date", false),
    }
}

/// Resolves field names to their definitions (canonical names) and types literals.
fn resolve(s: &Inner, q: &str, object: &str, e: &Expr) -> Result<Expr, Reply> {
    let field = |f: &FieldRef| -> Result<(FieldRef, FieldDef), Reply> {
        match find_field(s, object, &f.name) {
            Some(d) => Ok((FieldRef { name: d.name.clone(), col: f.col }, d.clone())),
            None => Err(no_such_column(q, object, f)),
        }
    };
    Ok(match e {
        Expr::And(a, b) => Expr::And(Box::new(resolve(s, q, object, a)?), Box::new(resolve(s, q, object, b)?)),
        Expr::Or(a, b) => Expr::Or(Box::new(resolve(s, q, object, a)?), Box::new(resolve(s, q, object, b)?)),
        Expr::Not(a) => Expr::Not(Box::new(resolve(s, q, object, a)?)),
        Expr::Cmp(f, op, lit) => {
            let (f2, def) = field(f)?;
            Expr::Cmp(f2, op, check_literal(q, f, &def, lit)?)
        }
        Expr::In(f, not, lits) => {
            let (f2, def) = field(f)?;
            let lits = lits.iter().map(|l| check_literal(q, f, &def, l)).collect::<Result<Vec<_>, _>>()?;
            Expr::In(f2, *not, lits)
        }
        Expr::Like(f, p) => {
            let (f2, def) = field(f)?;
            if !def.kind.is_text() && !def.kind.is_id() {
                return Err(soql_error(q, "INVALID_FIELD", f.col, &format!("invalid operator on {} field: LIKE", def.kind.soap_name())));
            }
            Expr::Like(f2, p.clone())
        }
    })
}

fn no_such_column(q: &str, object: &str, f: &FieldRef) -> Reply {
    soql_error(
        q,
        "INVALID_FIELD",
        f.col,
        &format!(
            "No such column '{}' on entity '{object}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
            f.name
        ),
    )
}

fn like(pat: &[Pat], text: &[char]) -> bool {
    let (mut p, mut t, mut star, mut mark) = (0, 0, None, 0);
    while t < text.len() {
        match pat.get(p) {
            Some(Pat::Any) => {
                star = Some(p);
                mark = t;
                p += 1;
            }
            Some(Pat::One) => {
                p += 1;
                t += 1;
            }
            Some(Pat::Lit(c)) if c.to_lowercase().eq(text[t].to_lowercase()) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some(sp) => {
                    p = sp + 1;
                    mark += 1;
                    t = mark;
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|x| *x == Pat::Any)
}

fn compare(a: &Value, b: &Lit) -> Option<Ordering> {
    match (a, b) {
        (Value::String(x), Lit::Str(y, _)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (Value::String(x), Lit::Date(y)) => Some(x.as_str().cmp(y.as_str())),
        (Value::Number(x), Lit::Num(y)) => x.as_f64()?.partial_cmp(y),
        (Value::Bool(x), Lit::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn eval(e: &Expr, r: &Map<String, Value>) -> bool {
    let get = |f: &FieldRef| r.get(&f.name).unwrap_or(&Value::Null);
    match e {
        Expr::And(a, b) => eval(a, r) && eval(b, r),
        Expr::Or(a, b) => eval(a, r) || eval(b, r),
        Expr::Not(a) => !eval(a, r),
        Expr::Cmp(f, op, Lit::Null) => match *op {
            "=" => get(f).is_null(),
            "!=" => !get(f).is_null(),
            _ => false,
        },
        Expr::Cmp(f, op, lit) => {
            let v = get(f);
            if v.is_null() {
                return *op == "!=";
            }
            let Some(o) = compare(v, lit) else { return *op == "!=" };
            match *op {
                "=" => o == Ordering::Equal,
                "!=" => o != Ordering::Equal,
                "<" => o == Ordering::Less,
                "<=" => o != Ordering::Greater,
                ">" => o == Ordering::Greater,
                _ => o != Ordering::Less,
            }
        }
        Expr::In(f, not, lits) => {
            let v = get(f);
            let hit = lits.iter().any(|l| match l {
                Lit::Null => v.is_null(),
                l => compare(v, l) == Some(Ordering::Equal),
            });
            hit != *not
        }
        Expr::Like(f, p) => match get(f).as_str() {
            Some(t) => like(p, &t.chars().collect::<Vec<_>>()),
            None => false,
        },
    }
}

fn order_values(a: &Value, b: &Value, nulls_last: bool) -> Ordering {
    match (a.is_null(), b.is_null()) {
        (true, true) => Ordering::Equal,
        (true, false) => if nulls_last { Ordering::Greater } else { Ordering::Less },
        (false, true) => if nulls_last { Ordering::Less } else { Ordering::Greater },
        _ => match (a, b) {
            (Value::String(x), Value::String(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
            (Value::Number(x), Value::Number(y)) => x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(Ordering::Equal),
            (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
            _ => Ordering::Equal,
        },
    }
}

fn soql(s: &mut Inner, version: &str, q: &str, batch: usize) -> Reply {
    if q.trim().is_empty() {
        return errors(400, "MALFORMED_QUERY", "A query string has to be specified");
    }
    if q.chars().count() > MAX_SOQL_CHARS {
        return errors(400, "MALFORMED_QUERY", "SOQL statements cannot be longer than 100,000 characters.");
    }
    let parsed = lex(q).and_then(|toks| Parser { toks, at: 0, end_col: q.chars().count() + 1 }.query());
    let query = match parsed {
        Ok(p) => p,
        Err((col, message)) => return soql_error(q, "MALFORMED_QUERY", col, &message),
    };
    let Some(object) = find_object(s, &query.object.name) else {
        return soql_error(
            q,
            "INVALID_TYPE",
            query.object.col,
            &format!(
                "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.",
                query.object.name
            ),
        );
    };
    let mut fields: Vec<String> = Vec::new();
    for f in &query.fields {
        let Some(def) = find_field(s, &object, &f.name) else {
            return no_such_column(q, &object, f);
        };
        if fields.contains(&def.name) {
            return soql_error(q, "MALFORMED_QUERY", f.col, &format!("duplicate field selected: {}", def.name));
        }
        fields.push(def.name.clone());
    }
    let filter = match query.filter.as_ref().map(|e| resolve(s, q, &object, e)).transpose() {
        Ok(f) => f,
        Err(r) => return r,
    };
    let order = match &query.order {
        Some((f, desc, nulls_last)) => match find_field(s, &object, &f.name) {
            Some(d) => Some((d.name.clone(), *desc, *nulls_last)),
            None => return no_such_column(q, &object, f),
        },
        None => None,
    };
    let mut matched: Vec<&Map<String, Value>> =
        s.records.values().filter(|r| r.object == object).map(|r| &r.fields).filter(|r| filter.as_ref().is_none_or(|e| eval(e, r))).collect();
    if let Some((f, desc, nulls_last)) = &order {
        matched.sort_by(|a, b| {
            let (x, y) = (a.get(f).unwrap_or(&Value::Null), b.get(f).unwrap_or(&Value::Null));
            let o = order_values(x, y, *nulls_last != *desc);
            if *desc { o.reverse() } else { o }
        });
    }
    let rows: Vec<Value> = matched
        .into_iter()
        .skip(query.offset)
        .take(query.limit.unwrap_or(usize::MAX))
        .map(|r| {
            let id = r.get("Id").and_then(Value::as_str).unwrap_or_default();
            let mut row = Map::new();
            row.insert("attributes".into(), json!({"type": object, "url": format!("/services/data/{version}/sobjects/{object}/{id}")}));
            for f in &fields {
                row.insert(f.clone(), r.get(f).cloned().unwrap_or(Value::Null));
            }
            Value::Object(row)
        })
        .collect();
    if rows.len() <= batch {
        return reply(200, json!({"totalSize": rows.len(), "done": true, "records": rows}));
    }
    let locator = new_id(s, "01g");
    s.cursors.insert(locator.clone(), rows);
    page(s, version, &locator, 0, batch)
}

fn page(s: &mut Inner, version: &str, locator: &str, offset: usize, batch: usize) -> Reply {
    let Some(rows) = s.cursors.get(locator) else {
        return errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator");
    };
    if offset > rows.len() {
        return errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator");
    }
    let end = (offset + batch).min(rows.len());
    let mut out = json!({"totalSize": rows.len(), "done": end >= rows.len(), "records": rows[offset..end]});
    if end < rows.len() {
        out["nextRecordsUrl"] = json!(format!("/services/data/{version}/query/{locator}-{end}"));
    }
    reply(200, out)
}
