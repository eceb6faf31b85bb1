//! Salesforce (REST API): Accounts matched by `Website` through SOQL or by an External
//! ID field, written with sObject Collections (200 records a request, `allOrNone:
//! false`, one result per record), paced under the org's daily API allocation, and
//! campaign membership or a task for the account owner as trigger actions.
//!
//! Before its first write for a mapping, a run describes Account and stops, naming every
//! misfit, if the org lacks a mapped field or types it otherwise (`describe_check`, also
//! what `check --live` runs): a field error found by writing would fail every record of
//! every batch alike. Only a value Salesforce cannot parse is split out of a batch
//! (`bisect.rs`).
//!
//! Reads top to bottom: config → auth → matching (SOQL) → collection requests → reading
//! per-record results → the describe check → limits → triggers.
//!
//! Shapes: REST API Developer Guide,
//! <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_sobjects_collections.htm>,
//! <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_query.htm>,
//! <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_limits.htm>.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::mapping::{Desired, Mapping};
use super::{Match, Sink, SinkError, WriteOutcome, WriteRecord};
use crate::activity::normalize_domain;
use crate::auth::{Auth, Grant, read_private_key, secret_source};
use crate::config::Schedule;
use crate::http::{HttpClient, RateLimit, Request, Response, RetryPolicy};
use crate::store::Firing;

/// sObject Collections take at most 200 records.
const BATCH_LIMIT: usize = 200;
/// Domains per SOQL query (each a `LIKE` term; the query stays far below SOQL's
/// 100,000-character limit).
const DOMAINS_PER_QUERY: usize = 100;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SalesforceConfig {
    pub name: String,
    #[allow(dead_code)]
    kind: String,
    pub schedule: Schedule,
    pub mapping: String,
    /// REST API version.
    #[serde(default = "default_version")]
    pub api_version: String,
    pub auth: SalesforceAuth,
    /// The org's session timeout (Setup → Session Settings). Salesforce's token answers
    /// name no lifetime, so access tokens are minted again before this much time has
    /// passed; the default is the shortest timeout Salesforce allows.
    #[serde(default = "default_session_timeout", with = "humantime_serde")]
    #[schemars(with = "String", example = &"2h")]
    pub session_timeout: std::time::Duration,
    /// Salesforce has no per-second limit, only a daily allocation; this keeps bursts polite.
    #[serde(default = "default_rate")]
    pub rate_limit: RateLimit,
    /// Share of the org's daily API allocation left untouched for other integrations.
    #[serde(default = "default_reserve")]
    pub api_reserve_percent: u8,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default = "super::webhook::default_dead_after")]
    pub dead_after: u32,
    /// What names an Account oql-sync creates (Salesforce requires `Name`): the company
    /// name its activities gave (else the domain), or always the domain. Sent only with
    /// a company's first write, so names edited in Salesforce stay.
    #[serde(default)]
    pub record_name: RecordName,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordName {
    #[default]
    CompanyName,
    Domain,
}

/// `auth:` — one of the three OAuth flows an integration user can have.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, tag = "flow", rename_all = "snake_case")]
pub enum SalesforceAuth {
    /// Server-to-server with a certificate: the app's consumer key, the integration
    /// user, and the private key whose certificate the app holds.
    JwtBearer {
        /// `https://login.salesforce.com`, or `https://test.salesforce.com` for sandboxes.
        #[serde(default = "default_login")]
        login_url: String,
        client_id: String,
        username: String,
        private_key_file: PathBuf,
    },
    /// Client credentials, against the org's My Domain URL.
    ClientCredentials {
        my_domain_url: String,
        client_id: String,
        #[serde(default)]
        client_secret_env: Option<String>,
        #[serde(default)]
        client_secret_file: Option<PathBuf>,
    },
    RefreshToken {
        #[serde(default = "default_login")]
        login_url: String,
        client_id: String,
        #[serde(default)]
        client_secret_env: Option<String>,
        #[serde(default)]
        client_secret_file: Option<PathBuf>,
        #[serde(default)]
        refresh_token_env: Option<String>,
        #[serde(default)]
        refresh_token_file: Option<PathBuf>,
    },
}

fn default_version() -> String {
    "v64.0".into()
}
fn default_rate() -> RateLimit {
    RateLimit::new(20, 1)
}
fn default_session_timeout() -> std::time::Duration {
    crate::auth::ASSUMED_LIFETIME
}
fn default_reserve() -> u8 {
    20
}
fn default_login() -> String {
    "https://login.salesforce.com".into()
}

impl SalesforceConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        let v = self.api_version.trim_start_matches('v');
        if v.parse::<f32>().is_err() {
            return Err(("api_version".into(), format!("`{}` is not an API version such as v64.0", self.api_version)));
        }
        if self.api_reserve_percent > 90 {
            return Err(("api_reserve_percent".into(), "must be 0 to 90".into()));
        }
        let base = Path::new("");
        let (url, secrets) = match &self.auth {
            SalesforceAuth::JwtBearer { login_url, .. } => (login_url, Ok(())),
            SalesforceAuth::ClientCredentials { my_domain_url, client_secret_env, client_secret_file, .. } => {
                (my_domain_url, secret_source("client_secret", client_secret_env.as_ref(), client_secret_file.as_ref(), base).map(|_| ()))
            }
            SalesforceAuth::RefreshToken { login_url, client_secret_env, client_secret_file, refresh_token_env, refresh_token_file, .. } => (
                login_url,
                secret_source("client_secret", client_secret_env.as_ref(), client_secret_file.as_ref(), base)
                    .and_then(|_| secret_source("refresh_token", refresh_token_env.as_ref(), refresh_token_file.as_ref(), base))
                    .map(|_| ()),
            ),
        };
        secrets.map_err(|m| ("auth".to_string(), m))?;
        if reqwest::Url::parse(url).is_err() {
            return Err(("auth".into(), format!("`{url}` is not a URL")));
        }
        Ok(())
    }
}

pub struct SalesforceSink {
    config: RunSettings,
    http: HttpClient,
    auth: Auth,
    match_field: String,
    external_id: Option<String>,
    create_missing: bool,
    /// Last `Sforce-Limit-Info` seen: (used, max).
    usage: Option<(u64, u64)>,
    /// Why the connector stopped for this run, once it did.
    paused: Option<String>,
    /// Account owners, cached for task triggers.
    owners: HashMap<String, String>,
    record_name: RecordName,
    /// The mapped fields and the types that take their values, for the describe check.
    wanted: Vec<WantedField>,
    /// What the describe check depends on: the mapping and the API version.
    fingerprint: String,
}

/// The parts of the config a run needs.
struct RunSettings {
    name: String,
    version: String,
    reserve: u8,
}

impl SalesforceSink {
    pub fn build(c: &SalesforceConfig, file: &Path, mapping: &Mapping) -> Result<SalesforceSink, SinkError> {
        let dir = file.parent().and_then(Path::parent).unwrap_or(Path::new("."));
        let token_url = |base: &str| format!("{}/services/oauth2/token", base.trim_end_matches('/'));
        let grant = match &c.auth {
            SalesforceAuth::JwtBearer { login_url, client_id, username, private_key_file } => Grant::JwtBearer {
                token_url: token_url(login_url),
                client_id: client_id.clone(),
                username: username.clone(),
                audience: login_url.trim_end_matches('/').to_owned(),
                key: read_private_key(file, "auth.private_key_file", &dir.join(private_key_file))?,
            },
            SalesforceAuth::ClientCredentials { my_domain_url, client_id, client_secret_env, client_secret_file } => {
                let secret = secret_source("client_secret", client_secret_env.as_ref(), client_secret_file.as_ref(), dir)
                    .map_err(SinkError::Api)?;
                Grant::ClientCredentials {
                    token_url: token_url(my_domain_url),
                    client_id: client_id.clone(),
                    client_secret: secret.read(file, "auth.client_secret")?,
                }
            }
            SalesforceAuth::RefreshToken { login_url, client_id, client_secret_env, client_secret_file, refresh_token_env, refresh_token_file } => {
                let secret = secret_source("client_secret", client_secret_env.as_ref(), client_secret_file.as_ref(), dir)
                    .map_err(SinkError::Api)?;
                let refresh = secret_source("refresh_token", refresh_token_env.as_ref(), refresh_token_file.as_ref(), dir)
                    .map_err(SinkError::Api)?;
                Grant::Refresh {
                    token_url: token_url(login_url),
                    client_id: client_id.clone(),
                    client_secret: secret.read(file, "auth.client_secret")?,
                    refresh_token: refresh.read(file, "auth.refresh_token")?,
                }
            }
        };
        Ok(SalesforceSink {
            config: RunSettings { name: c.name.clone(), version: c.api_version.clone(), reserve: c.api_reserve_percent },
            http: HttpClient::new(&c.name, &[("default", c.rate_limit)], c.retry)?,
            auth: Auth::minted(grant).assuming_lifetime(c.session_timeout),
            match_field: mapping.match_rule.crm_field.clone().unwrap_or_else(|| "Website".into()),
            external_id: mapping.match_rule.external_id.clone(),
            create_missing: mapping.create_missing,
            usage: None,
            paused: None,
            owners: HashMap::new(),
            record_name: c.record_name,
            wanted: mapping
                .fields
                .iter()
                .map(|(name, f)| {
                    let (types, what) = salesforce_types(f);
                    WantedField { name: name.clone(), types, what }
                })
                .collect(),
            fingerprint: {
                use sha2::{Digest, Sha256};
                let key = format!("{}\n{}\n{:?}\n{:?}\n{}", c.api_version, mapping.object, mapping.match_rule, mapping.fields, mapping.create_missing);
                Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
            },
        })
    }

    /// `{instance_url}/services/data/{version}{path}`; the instance comes with the token.
    async fn url(&self, path: &str) -> Result<String, SinkError> {
        let session = self.auth.session(self.http.reqwest()).await?;
        let instance = session
            .instance_url
            .ok_or_else(|| SinkError::Api("the Salesforce token answer had no instance_url".into()))?;
        Ok(format!("{}/services/data/{}{path}", instance.trim_end_matches('/'), self.config.version))
    }

    async fn call(&mut self, method: Method, path: &str, body: Option<Value>) -> Result<Response, SinkError> {
        if let Some(why) = &self.paused {
            return Err(SinkError::Paused(why.clone()));
        }
        let url = if path.starts_with("/services/") {
            let session = self.auth.session(self.http.reqwest()).await?;
            format!("{}{path}", session.instance_url.unwrap_or_default().trim_end_matches('/'))
        } else {
            self.url(path).await?
        };
        // POST creates (accounts, tasks, campaign members): sent twice, it makes two, so
        // a POST whose answer is lost is not repeated; the next run looks again first.
        let repeatable = method != Method::POST;
        let mut req = Request::new(method, url).auth(&self.auth);
        if !repeatable {
            req = req.not_repeatable();
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let response = self.http.send(req).await?;
        self.note_usage(&response);
        if let Some(code) = first_error_code(&response) {
            // The daily allocation ("TotalRequests Limit exceeded.") pauses until it
            // renews; other limits of that code (concurrent long requests) pass, so the
            // request fails for this run only.
            if code == "REQUEST_LIMIT_EXCEEDED" && !first_error_message(&response).contains("ConcurrentPerOrg") {
                let why = format!(
                    "Salesforce refused further API calls today (REQUEST_LIMIT_EXCEEDED: {}); paused until the allocation renews",
                    first_error_message(&response)
                );
                self.paused = Some(why.clone());
                return Err(SinkError::Paused(why));
            }
            if response.status == 401 {
                return Err(SinkError::Api(format!("Salesforce refused the session (HTTP 401 {code}): {}", first_error_message(&response))));
            }
        }
        if self.paused.is_none() {
            if let Some((used, max)) = self.usage {
                let allowed = max * (100 - self.config.reserve as u64) / 100;
                if used >= allowed {
                    let why = format!(
                        "daily API allocation: {used} of {max} calls used; {}% is kept in reserve, so the connector pauses until it renews",
                        self.config.reserve
                    );
                    self.paused = Some(why);
                }
            }
        }
        Ok(response)
    }

    /// `Sforce-Limit-Info: api-usage=18/15000` comes with every response, possibly with
    /// more parts after a `;` (`per-app-api-usage=…`).
    fn note_usage(&mut self, r: &Response) {
        let usage = r.header("sforce-limit-info").and_then(|v| {
            let (used, max) = v.split([';', ',']).find_map(|p| p.trim().strip_prefix("api-usage="))?.split_once('/')?;
            Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
        });
        if usage.is_some() {
            self.usage = usage;
        }
    }

    /// Runs a SOQL query and follows `nextRecordsUrl` to its end.
    async fn query(&mut self, soql: &str) -> Result<Vec<Value>, SinkError> {
        let mut url = format!("/query?q={}", urlencode(soql));
        let mut out = Vec::new();
        loop {
            let r = self.call(Method::GET, &url, None).await?;
            if !r.ok() {
                return Err(SinkError::Api(format!("SOQL query failed (HTTP {}): {}", r.status, describe(&r))));
            }
            let page: QueryPage = r.json()?;
            out.extend(page.records);
            match page.next_records_url {
                Some(next) if !page.done => url = next,
                _ => return Ok(out),
            }
        }
    }

    /// The collection request of a batch: upsert by external id, update by Id, or create.
    fn collection_request(&self, batch: &[WriteRecord]) -> (Method, String, Vec<Value>) {
        let path = "/composite/sobjects";
        match (&self.external_id, batch.first().and_then(|r| r.crm_id.as_deref())) {
            (Some(ext), Some(id)) if id.starts_with("ext:") => {
                let records = batch
                    .iter()
                    .map(|r| {
                        let mut o = sobject(&r.fields, None);
                        o.insert(ext.clone(), json!(r.domain));
                        // A first write may create the account, and Salesforce creates
                        // none without a Name (REQUIRED_FIELD_MISSING).
                        if r.new_record {
                            o.entry("Name").or_insert_with(|| json!(self.name_of(r)));
                        }
                        Value::Object(o)
                    })
                    .collect();
                (Method::PATCH, format!("{path}/Account/{ext}"), records)
            }
            (_, Some(_)) => (Method::PATCH, path.into(), batch.iter().map(|r| Value::Object(sobject(&r.fields, r.crm_id.as_deref()))).collect()),
            (_, None) => {
                let match_field = self.external_id.clone().unwrap_or_else(|| self.match_field.clone());
                let records = batch
                    .iter()
                    .map(|r| {
                        let mut o = sobject(&r.fields, None);
                        o.insert(match_field.clone(), json!(r.domain));
                        o.entry("Name").or_insert_with(|| json!(self.name_of(r)));
                        Value::Object(o)
                    })
                    .collect();
                (Method::POST, path.into(), records)
            }
        }
    }

    /// One `{id, success, errors}` per record, in request order.
    fn read_results(&self, r: &Response, batch: &[WriteRecord]) -> Result<Vec<WriteOutcome>, SinkError> {
        let results: Vec<SaveResult> = r.json()?;
        if results.len() != batch.len() {
            return Err(SinkError::Api(format!("Salesforce answered {} results for {} records", results.len(), batch.len())));
        }
        Ok(batch
            .iter()
            .zip(results)
            .map(|(rec, res)| {
                if res.success {
                    let id = res.id.or_else(|| rec.crm_id.clone()).unwrap_or_default();
                    return WriteOutcome::Written { crm_id: id, created: res.created.unwrap_or(rec.crm_id.is_none()) };
                }
                let message = res
                    .errors
                    .iter()
                    .map(|e| {
                        let fields = if e.fields.is_empty() { String::new() } else { format!(" [{}]", e.fields.join(", ")) };
                        format!("{}: {}{fields}", e.status_code, e.message)
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                let gone = res.errors.iter().any(|e| matches!(e.status_code.as_str(), "ENTITY_IS_DELETED" | "INVALID_CROSS_REFERENCE_KEY" | "MALFORMED_ID"));
                if gone { WriteOutcome::Gone(message) } else { WriteOutcome::Failed(message) }
            })
            .collect())
    }

    /// The Name of an account this record may create.
    fn name_of<'r>(&self, r: &'r WriteRecord) -> &'r str {
        match (self.record_name, &r.company_name) {
            (RecordName::CompanyName, Some(name)) if !name.trim().is_empty() => name.trim(),
            _ => &r.domain,
        }
    }

    async fn contacts_of(&mut self, account: &str) -> Result<Vec<String>, SinkError> {
        let rows = self.query(&format!("SELECT Id FROM Contact WHERE AccountId = '{}'", soql_escape(account))).await?;
        Ok(rows.iter().filter_map(|r| r["Id"].as_str().map(str::to_owned)).collect())
    }

    async fn owner_of(&mut self, account: &str) -> Result<Option<String>, SinkError> {
        if let Some(o) = self.owners.get(account) {
            return Ok(Some(o.clone()));
        }
        let rows = self.query(&format!("SELECT Id, OwnerId FROM Account WHERE Id = '{}'", soql_escape(account))).await?;
        let owner = rows.first().and_then(|r| r["OwnerId"].as_str()).map(str::to_owned);
        if let Some(o) = &owner {
            self.owners.insert(account.to_owned(), o.clone());
        }
        Ok(owner)
    }
}

/// A record of a collection request: typed values as they are (Salesforce takes JSON
/// numbers, booleans, `YYYY-MM-DD` dates, and `null` to clear).
fn sobject(fields: &Desired, id: Option<&str>) -> serde_json::Map<String, Value> {
    let mut o = serde_json::Map::new();
    o.insert("attributes".into(), json!({ "type": "Account" }));
    if let Some(id) = id {
        o.insert("Id".into(), json!(id));
    }
    o.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
    o
}

fn soql_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

/// A domain as a SOQL `LIKE` pattern: `_` and `%` are wildcards there.
fn like_escape(s: &str) -> String {
    soql_escape(s).replace('_', "\\_").replace('%', "\\%")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Salesforce errors are arrays: `[{"message": …, "errorCode": …}]`.
fn first_error(r: &Response) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(&r.body).ok()?;
    let e = v.as_array().and_then(|a| a.first()).unwrap_or(&v);
    Some((e.get("errorCode")?.as_str()?.to_owned(), e.get("message").and_then(|m| m.as_str()).unwrap_or("").to_owned()))
}

fn first_error_code(r: &Response) -> Option<String> {
    if r.ok() { None } else { first_error(r).map(|e| e.0) }
}

fn first_error_message(r: &Response) -> String {
    first_error(r).map(|e| e.1).unwrap_or_else(|| r.body_text())
}

fn describe(r: &Response) -> String {
    match first_error(r) {
        Some((code, message)) => format!("{code}: {message}"),
        None => r.body_text(),
    }
}

/// Request-level errors that name the org's schema, not a value: the same for every
/// record, so a batch is not split over them.
const SCHEMA_ERRORS: [&str; 4] = ["INVALID_FIELD", "INVALID_FIELD_FOR_INSERT_UPDATE", "INVALID_TYPE", "NO_SUCH_COLUMN"];

impl super::bisect::BatchSender for SalesforceSink {
    /// A request-level 400 for a value Salesforce cannot parse (JSON_PARSER_ERROR) is
    /// split; one for a field the org lacks stops the run.
    async fn send_batch(&mut self, batch: &[WriteRecord]) -> Result<super::bisect::Sent, SinkError> {
        let (method, path, records) = self.collection_request(batch);
        let r = self.call(method, &path, Some(json!({ "allOrNone": false, "records": records }))).await?;
        if r.status == 400 {
            let code = first_error_code(&r).unwrap_or_default();
            if SCHEMA_ERRORS.contains(&code.as_str()) {
                return Err(SinkError::Config(format!(
                    "Salesforce refused the {} mapping's fields (HTTP 400 {}); run `oql-sync check --live`",
                    self.config.name,
                    describe(&r)
                )));
            }
            return Ok(super::bisect::Sent::Refused(format!("HTTP 400: {}", describe(&r))));
        }
        if !r.ok() {
            let message = format!("HTTP {}: {}", r.status, describe(&r));
            return Ok(super::bisect::Sent::Answered(vec![WriteOutcome::Failed(message); batch.len()]));
        }
        self.read_results(&r, batch).map(super::bisect::Sent::Answered)
    }
}

/// One mapped field as the describe check sees it: its name and the Salesforce field
/// types that take its values.
#[derive(Debug, Clone)]
struct WantedField {
    name: String,
    types: &'static [&'static str],
    what: &'static str,
}

/// Salesforce types that take what a mapping field renders (typed JSON, see `sobject`).
fn salesforce_types(field: &super::mapping::FieldMapping) -> (&'static [&'static str], &'static str) {
    use super::mapping::{CrmType, DateFormat};
    const NUMBER: &[&str] = &["double", "int", "long", "currency", "percent"];
    const TEXT: &[&str] = &["string", "textarea", "picklist", "combobox", "url", "email", "phone", "encryptedstring"];
    const DATE_OR_TEXT: &[&str] = &["date", "string", "textarea", "picklist", "combobox"];
    match (field.from.crm_type(field), &field.format) {
        (CrmType::Number, _) => (NUMBER, "a number"),
        (CrmType::Date, DateFormat::EpochMillis) => (NUMBER, "a number (epoch_ms)"),
        // `YYYY-MM-DD` is text too: a text field takes it as it is.
        (CrmType::Date, _) => (DATE_OR_TEXT, "a date"),
        (CrmType::Bool, _) => (&["boolean"], "a checkbox"),
        (CrmType::Text | CrmType::Enumeration, _) => (TEXT, "text"),
    }
}

/// `GET sobjects/Account/describe`: the fields the org has.
#[derive(Deserialize)]
struct Describe {
    fields: Vec<FieldDescribe>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FieldDescribe {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    updateable: bool,
    #[serde(default)]
    createable: bool,
    #[serde(default)]
    external_id: bool,
}

impl SalesforceSink {
    /// Describes Account and names every mapped field the org lacks, cannot write, or
    /// types so that it refuses the values: one message, before any write.
    /// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_sobject_describe.htm>
    pub async fn describe_check(&mut self) -> Result<(), SinkError> {
        let r = self.call(Method::GET, "/sobjects/Account/describe", None).await?;
        if !r.ok() {
            return Err(SinkError::Api(format!("cannot describe Account (HTTP {}): {}", r.status, describe(&r))));
        }
        let described: Describe = r.json()?;
        // Field names are case-insensitive in Salesforce.
        let have: HashMap<String, &FieldDescribe> = described.fields.iter().map(|f| (f.name.to_lowercase(), f)).collect();
        let mut problems = Vec::new();
        let lookup_field = self.external_id.clone().unwrap_or_else(|| self.match_field.clone());
        match have.get(&lookup_field.to_lowercase()) {
            None => problems.push(format!("{lookup_field} (the match field) does not exist")),
            Some(f) if self.external_id.is_some() && !f.external_id => {
                problems.push(format!("{lookup_field} is not an External ID field (Setup → Object Manager → Account → Fields)"))
            }
            Some(_) => {}
        }
        for w in &self.wanted {
            match have.get(&w.name.to_lowercase()) {
                None => problems.push(format!("{} does not exist", w.name)),
                Some(f) if !w.types.contains(&f.kind.as_str()) => {
                    problems.push(format!("{} is of type {}, which does not take {} (needs {})", w.name, f.kind, w.what, w.types.join(", ")))
                }
                Some(f) if !f.updateable || (self.create_missing && !f.createable) => {
                    problems.push(format!("{} is not writable by the integration user (field-level security)", w.name))
                }
                Some(_) => {}
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(SinkError::Config(format!("Salesforce Account does not fit the mapping: {}", problems.join("; "))))
    }
}

/// `oql-sync check --live`: the describe check of a Salesforce connector, run whatever
/// the store remembers, then each campaign a trigger names read by id (a dry check:
/// nothing is written).
pub async fn check_live(c: &SalesforceConfig, file: &Path, mapping: &Mapping) -> Result<(), SinkError> {
    let mut sink = SalesforceSink::build(c, file, mapping)?;
    sink.describe_check().await?;
    let mut missing = Vec::new();
    for t in &mapping.triggers {
        if let super::mapping::Action::SalesforceCampaign(target) = &t.action {
            let r = sink.call(Method::GET, &format!("/services/data/{}/sobjects/Campaign/{}", c.api_version, target.id), None).await?;
            match r.status {
                200 => {}
                404 => missing.push(target.id.clone()),
                s => return Err(SinkError::Api(format!("cannot read campaign {} (HTTP {s}): {}", target.id, describe(&r)))),
            }
        }
    }
    if !missing.is_empty() {
        return Err(SinkError::Config(format!(
            "no Campaign {} in the org; fix: put the id of an existing campaign (701…, in its URL) in the mapping's trigger",
            missing.join(", ")
        )));
    }
    Ok(())
}

impl Sink for SalesforceSink {
    fn batch_size(&self) -> usize {
        BATCH_LIMIT
    }

    fn stats(&self) -> crate::http::CallCounts {
        self.http.stats.counts()
    }

    fn schema_fingerprint(&self) -> Option<String> {
        Some(self.fingerprint.clone())
    }

    async fn check_schema(&mut self) -> Result<(), SinkError> {
        self.describe_check().await
    }

    /// Reads the org's daily allocation before writing (`GET /limits`), so a run that
    /// would eat into the reserve does not start.
    async fn prepare(&mut self) -> Result<(), SinkError> {
        let r = self.call(Method::GET, "/limits", None).await?;
        if r.ok() {
            let limits: Value = r.json()?;
            let daily = &limits["DailyApiRequests"];
            if let (Some(max), Some(remaining)) = (daily["Max"].as_u64(), daily["Remaining"].as_u64()) {
                self.usage = Some((max.saturating_sub(remaining), max));
                let allowed = max * (100 - self.config.reserve as u64) / 100;
                if max.saturating_sub(remaining) >= allowed {
                    let why = format!(
                        "daily API allocation: {} of {max} calls used; {}% is kept in reserve, so the connector pauses until it renews",
                        max - remaining,
                        self.config.reserve
                    );
                    self.paused = Some(why.clone());
                    return Err(SinkError::Paused(why));
                }
            }
        }
        Ok(())
    }

    async fn resolve(&mut self, domains: &[String]) -> Result<HashMap<String, Match>, SinkError> {
        let mut out: HashMap<String, Match> = domains.iter().map(|d| (d.clone(), Match::Missing)).collect();
        if self.external_id.is_some() && self.create_missing {
            // Upserts by external id need no lookup: every record is "found" by its key.
            return Ok(domains.iter().map(|d| (d.clone(), Match::Found(format!("ext:{d}")))).collect());
        }
        let field = self.external_id.clone().unwrap_or_else(|| self.match_field.clone());
        for chunk in domains.chunks(DOMAINS_PER_QUERY) {
            let filter = if self.external_id.is_some() {
                let list: Vec<String> = chunk.iter().map(|d| format!("'{}'", soql_escape(d))).collect();
                format!("{field} IN ({})", list.join(", "))
            } else {
                // Website holds anything from `acme.com` to `https://www.acme.com/en`: match
                // loosely here and exactly after normalizing below.
                chunk.iter().map(|d| format!("{field} LIKE '%{}%'", like_escape(d))).collect::<Vec<_>>().join(" OR ")
            };
            let rows = self.query(&format!("SELECT Id, {field} FROM Account WHERE {filter} ORDER BY Id")).await?;
            for row in rows {
                let (Some(id), Some(value)) = (row["Id"].as_str(), row[&field].as_str()) else { continue };
                let Some(domain) = normalize_domain(value) else { continue };
                if let Some(m) = out.get_mut(&domain) {
                    *m = match std::mem::replace(m, Match::Missing) {
                        Match::Missing => Match::Found(id.to_owned()),
                        Match::Found(first) if first == id => Match::Found(first),
                        Match::Found(first) => Match::Ambiguous(vec![first, id.to_owned()]),
                        Match::Ambiguous(mut ids) => {
                            ids.push(id.to_owned());
                            Match::Ambiguous(ids)
                        }
                    };
                }
            }
        }
        Ok(out)
    }

    fn reads_back(&self) -> Result<(), String> {
        Ok(())
    }

    /// SOQL by Account Id, or by the external-id field for accounts known by their key
    /// (`ext:{domain}`), 100 a query (paced by the connector's `rate_limit`).
    async fn read(&mut self, records: &[(String, String)], fields: &[String]) -> Result<HashMap<String, Desired>, SinkError> {
        let mut out = HashMap::new();
        let (by_key, by_id): (Vec<&(String, String)>, Vec<&(String, String)>) = records.iter().partition(|(_, id)| id.starts_with("ext:"));
        let columns = fields.join(", ");
        for (key_field, group) in [(Some(self.external_id.clone().unwrap_or_default()), by_key), (None, by_id)] {
            let key_field = key_field.filter(|_| !group.is_empty());
            for chunk in group.chunks(DOMAINS_PER_QUERY) {
                let (column, keys): (String, Vec<String>) = match &key_field {
                    Some(ext) => (ext.clone(), chunk.iter().map(|(d, _)| d.clone()).collect()),
                    None => ("Id".into(), chunk.iter().map(|(_, id)| id.clone()).collect()),
                };
                let list: Vec<String> = keys.iter().map(|k| format!("'{}'", soql_escape(k))).collect();
                let select = if column == "Id" { format!("Id, {columns}") } else { format!("Id, {column}, {columns}") };
                let rows = self.query(&format!("SELECT {select} FROM Account WHERE {column} IN ({})", list.join(", "))).await?;
                let by_key: HashMap<String, &str> = chunk.iter().zip(&keys).map(|((d, _), k)| (k.to_lowercase(), d.as_str())).collect();
                for row in rows {
                    let Some(domain) = row[&column].as_str().and_then(|k| by_key.get(&k.to_lowercase())) else { continue };
                    out.insert((*domain).to_owned(), fields.iter().map(|f| (f.clone(), row[f].clone())).collect());
                }
            }
        }
        Ok(out)
    }

    async fn write(&mut self, batch: &[WriteRecord]) -> Result<Vec<WriteOutcome>, SinkError> {
        let mut outcomes = super::bisect::write_bisecting(self, batch).await?;
        // An account its External ID no longer finds (deleted since the company's first
        // write) is created by the upsert, which then needs the Name later writes leave
        // out: those records go again, named, in this run.
        let unnamed: Vec<usize> = outcomes
            .iter()
            .zip(batch)
            .enumerate()
            .filter(|(_, (o, r))| {
                !r.new_record
                    && r.crm_id.as_deref().is_some_and(|id| id.starts_with("ext:"))
                    && matches!(o, WriteOutcome::Failed(m) if m.starts_with("REQUIRED_FIELD_MISSING") && m.contains("Name"))
            })
            .map(|(i, _)| i)
            .collect();
        if !unnamed.is_empty() {
            let named: Vec<WriteRecord> = unnamed.iter().map(|&i| WriteRecord { new_record: true, ..batch[i].clone() }).collect();
            let again = super::bisect::write_bisecting(self, &named).await?;
            for (i, o) in unnamed.into_iter().zip(again) {
                outcomes[i] = o;
            }
        }
        // Upserted records are known by their key, so the next run upserts again.
        Ok(outcomes
            .into_iter()
            .zip(batch)
            .map(|(o, r)| match o {
                WriteOutcome::Written { created, .. } if r.crm_id.as_deref().is_some_and(|id| id.starts_with("ext:")) => {
                    WriteOutcome::Written { crm_id: r.crm_id.clone().unwrap_or_default(), created }
                }
                other => other,
            })
            .collect())
    }

    async fn fire(&mut self, firing: &Firing, crm_id: Option<&str>) -> Result<(), SinkError> {
        let Some(account) = crm_id.filter(|id| !id.starts_with("ext:")).map(str::to_owned) else {
            return Err(SinkError::Api(format!("{} has no Salesforce Account id to act on", firing.domain)));
        };
        if let Some(c) = firing.action.get("salesforce_campaign") {
            let campaign = c["id"].as_str().unwrap_or_default().to_owned();
            let status = c["status"].as_str().unwrap_or("Sent").to_owned();
            let contacts = self.contacts_of(&account).await?;
            if contacts.is_empty() {
                tracing::info!(connector = %self.config.name, account, "no contacts to add to campaign {campaign}");
                return Ok(());
            }
            // CampaignMember needs a ContactId (or LeadId) and a Status.
            let records: Vec<Value> = contacts
                .iter()
                .map(|c| json!({ "attributes": { "type": "CampaignMember" }, "CampaignId": campaign, "ContactId": c, "Status": status }))
                .collect();
            let r = self.call(Method::POST, "/composite/sobjects", Some(json!({ "allOrNone": false, "records": records }))).await?;
            if !r.ok() {
                return Err(SinkError::Api(format!("cannot add contacts to campaign {campaign} (HTTP {}): {}", r.status, describe(&r))));
            }
            let results: Vec<SaveResult> = r.json()?;
            // Contacts already in the campaign answer DUPLICATE_VALUE: that is the goal.
            let failed: Vec<String> = results
                .iter()
                .flat_map(|r| r.errors.iter())
                .filter(|e| e.status_code != "DUPLICATE_VALUE")
                .map(|e| format!("{}: {}", e.status_code, e.message))
                .collect();
            return if failed.is_empty() { Ok(()) } else { Err(SinkError::Api(failed.join("; "))) };
        }
        if let Some(t) = firing.action.get("salesforce_task") {
            let owner = self.owner_of(&account).await?;
            let subject = match t["subject"].as_str() {
                Some(source) => super::template::MessageTemplate::try_from(source.to_owned())
                    .map_err(SinkError::Api)?
                    .render(&super::template::variables_of(&firing.event), super::template::plain)?,
                None => "OQL stage change".to_owned(),
            };
            let due = chrono::Utc::now().date_naive() + chrono::TimeDelta::days(t["due_in_days"].as_i64().unwrap_or(2));
            let description = format!(
                "{} moved from {} to {} (score {}). Sent by oql-sync.",
                firing.domain,
                firing.from.map(|s| s.as_str()).unwrap_or("none"),
                firing.to.as_str(),
                firing.event["score"]
            );
            let mut task = json!({
                "WhatId": account, "Subject": subject, "ActivityDate": due.format("%Y-%m-%d").to_string(),
                "Status": "Not Started", "Priority": "Normal", "Description": description,
            });
            if let Some(owner) = owner {
                task["OwnerId"] = json!(owner);
            }
            let r = self.call(Method::POST, "/sobjects/Task", Some(task)).await?;
            return if r.ok() { Ok(()) } else { Err(SinkError::Api(format!("cannot create the task (HTTP {}): {}", r.status, describe(&r)))) };
        }
        Err(SinkError::Api(format!("Salesforce cannot run the action {}", firing.action)))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryPage {
    #[serde(default)]
    done: bool,
    #[serde(default)]
    next_records_url: Option<String>,
    #[serde(default)]
    records: Vec<Value>,
}

#[derive(Deserialize)]
struct SaveResult {
    #[serde(default)]
    id: Option<String>,
    success: bool,
    #[serde(default)]
    created: Option<bool>,
    #[serde(default)]
    errors: Vec<SaveError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SaveError {
    #[serde(default)]
    status_code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    fields: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards_and_quotes() {
        assert_eq!(like_escape("my_co.com"), "my\\_co.com");
        assert_eq!(soql_escape("o'neil.io"), "o\\'neil.io");
        assert_eq!(urlencode("SELECT Id FROM Account WHERE Website LIKE '%a.com%'"), "SELECT+Id+FROM+Account+WHERE+Website+LIKE+%27%25a.com%25%27");
    }
}
