//! HubSpot (CRM v3): companies found by domain through the search API, written with
//! batch update/create, custom properties created in the `oql` group when missing, and
//! list membership as the trigger action (a list-triggered HubSpot workflow then runs
//! the nurture).
//!
//! Reads top to bottom: config → auth → matching (search) → batch requests → reading
//! per-record outcomes → properties → lists.
//!
//! Shapes: <https://developers.hubspot.com/docs/api/crm/companies>,
//! <https://developers.hubspot.com/docs/api/crm/search>,
//! <https://developers.hubspot.com/docs/api/crm/properties>,
//! <https://developers.hubspot.com/docs/api/crm/lists>.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::mapping::{CrmType, Desired, Mapping, as_text};
use super::{Match, Sink, SinkError, WriteOutcome, WriteRecord};
use crate::activity::normalize_domain;
use crate::auth::{Auth, Grant, secret_source};
use crate::config::Schedule;
use crate::http::{HttpClient, RateLimit, Request, Response, RetryPolicy};
use crate::store::Firing;

/// HubSpot's batch endpoints take at most 100 inputs.
const BATCH_LIMIT: usize = 100;
/// Domains per search request: the IN operator takes at most 100 values, and each
/// domain is looked up bare and with `www.`.
const DOMAINS_PER_SEARCH: usize = 50;
/// Record ids per list membership call. The lists v3 spec names no limit; this keeps a
/// request small while one call serves a run's usual firings.
const MEMBERS_PER_CALL: usize = 500;
/// Results per search page (HubSpot's maximum) and in all (beyond it, `after` fails).
const SEARCH_PAGE: usize = 200;
const SEARCH_TOTAL: usize = 10_000;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HubSpotConfig {
    pub name: String,
    #[allow(dead_code)]
    kind: String,
    pub schedule: Schedule,
    pub mapping: String,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// A private app's access token.
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// An OAuth app: access tokens minted from a refresh token.
    #[serde(default)]
    pub oauth: Option<OAuthConfig>,
    /// All requests (HubSpot: 100 or 190 per 10 s by plan; default stays under both).
    #[serde(default = "default_rate")]
    pub rate_limit: RateLimit,
    /// Search requests (HubSpot: 5 per second per account).
    #[serde(default = "default_search_rate")]
    pub search_rate_limit: RateLimit,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Failed attempts before a record is parked as dead.
    #[serde(default = "super::webhook::default_dead_after")]
    pub dead_after: u32,
    /// Property group of the custom properties oql-sync creates.
    #[serde(default = "default_group")]
    pub property_group: String,
    /// Create the mapping's properties when HubSpot lacks them.
    #[serde(default = "yes")]
    pub create_properties: bool,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    pub client_id: String,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub refresh_token_env: Option<String>,
    #[serde(default)]
    pub refresh_token_file: Option<PathBuf>,
    /// Default: `{base_url}/oauth/v3/token` (HubSpot retires OAuth v1 on 2027-02-16).
    #[serde(default)]
    pub token_url: Option<String>,
}

fn default_base_url() -> String {
    "https://api.hubapi.com".into()
}
fn default_rate() -> RateLimit {
    RateLimit::new(100, 10)
}
fn default_search_rate() -> RateLimit {
    RateLimit::new(4, 1)
}
fn default_group() -> String {
    "oql".into()
}
fn yes() -> bool {
    true
}

impl HubSpotConfig {
    /// Checks what types cannot; returns (key, message).
    pub fn validate(&self, _file: &Path) -> Result<(), (String, String)> {
        crate::config::check_url("base_url", &self.base_url)?;
        let ways = self.token_env.is_some() as u8 + self.token_file.is_some() as u8 + self.oauth.is_some() as u8;
        if ways != 1 {
            return Err(("name".into(), "give exactly one of `token_env`, `token_file` or `oauth`".into()));
        }
        if let Some(o) = &self.oauth {
            let base = Path::new("");
            secret_source("client_secret", o.client_secret_env.as_ref(), o.client_secret_file.as_ref(), base)
                .map_err(|m| ("oauth".to_string(), m))?;
            secret_source("refresh_token", o.refresh_token_env.as_ref(), o.refresh_token_file.as_ref(), base)
                .map_err(|m| ("oauth".to_string(), m))?;
        }
        Ok(())
    }
}

pub struct HubSpotSink {
    base: String,
    http: HttpClient,
    auth: Auth,
    config: HubSpotConfig,
    /// The properties the mapping writes, and what type each needs.
    wanted: Vec<(String, CrmType, Vec<String>)>,
    match_field: String,
    /// Lists the mapping's triggers name, checked in `prepare`: list id → why it cannot
    /// take members.
    unusable_lists: HashMap<String, String>,
}

impl HubSpotSink {
    /// Builds the client; reads the secrets (a missing variable fails this connector only).
    pub fn build(c: &HubSpotConfig, file: &Path, mapping: &Mapping) -> Result<HubSpotSink, SinkError> {
        let dir = file.parent().and_then(Path::parent).unwrap_or(Path::new("."));
        let auth = match &c.oauth {
            None => {
                let source = secret_source("token", c.token_env.as_ref(), c.token_file.as_ref(), dir).map_err(SinkError::Api)?;
                Auth::Token(source.read(file, "token")?)
            }
            Some(o) => {
                let secret = secret_source("client_secret", o.client_secret_env.as_ref(), o.client_secret_file.as_ref(), dir)
                    .map_err(SinkError::Api)?;
                let refresh = secret_source("refresh_token", o.refresh_token_env.as_ref(), o.refresh_token_file.as_ref(), dir)
                    .map_err(SinkError::Api)?;
                Auth::minted(Grant::Refresh {
                    token_url: o.token_url.clone().unwrap_or_else(|| format!("{}/oauth/v3/token", c.base_url.trim_end_matches('/'))),
                    client_id: o.client_id.clone(),
                    client_secret: secret.read(file, "oauth.client_secret")?,
                    refresh_token: refresh.read(file, "oauth.refresh_token")?,
                })
            }
        };
        let http = HttpClient::new(&c.name, &[("default", c.rate_limit), ("search", c.search_rate_limit)], c.retry)?;
        let wanted = mapping
            .fields
            .iter()
            .map(|(name, f)| {
                let options = match &f.values {
                    Some(values) => {
                        let mut seen = HashSet::new();
                        values.values().filter(|v| seen.insert(v.as_str())).cloned().collect()
                    }
                    None if f.from == super::mapping::Signal::Stage || f.from == super::mapping::Signal::PeakStage => {
                        crate::scoring::Stage::ALL.iter().map(|s| s.as_str().to_owned()).collect()
                    }
                    None => Vec::new(),
                };
                (name.clone(), f.from.crm_type(f), options)
            })
            .collect();
        Ok(HubSpotSink {
            base: c.base_url.trim_end_matches('/').to_owned(),
            http,
            auth,
            config: c.clone(),
            wanted,
            match_field: mapping.match_rule.crm_field.clone().unwrap_or_else(|| "domain".into()),
            unusable_lists: HashMap::new(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>, class: &'static str) -> Result<Response, SinkError> {
        self.send(Request::new(method, self.url(path)).auth(&self.auth).class(class), body).await
    }

    async fn send(&self, mut req: Request<'_>, body: Option<Value>) -> Result<Response, SinkError> {
        if let Some(body) = body {
            req = req.json(body);
        }
        let response = self.http.send(req).await?;
        match response.status {
            401 | 403 => Err(SinkError::Api(format!(
                "HubSpot refused the credentials (HTTP {}): {}",
                response.status,
                error_message(&response)
            ))),
            _ => Ok(response),
        }
    }

    /// One search for a set of domains; every page of it.
    async fn search(&self, domains: &[String], properties: &[String]) -> Result<Vec<SearchResult>, SinkError> {
        let mut values: Vec<String> = Vec::with_capacity(domains.len() * 2);
        for d in domains {
            values.push(d.clone());
            values.push(format!("www.{d}"));
        }
        let mut props: Vec<String> = vec![self.match_field.clone()];
        props.extend(properties.iter().cloned());
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            // <https://developers.hubspot.com/docs/api/crm/search>: filters in one group are
            // ANDed; IN takes a list of values. The spec's `PublicObjectSearchRequest`
            // requires `after` (the first page starts at "0") and `sorts`.
            let body = json!({
                "filterGroups": [{ "filters": [{ "propertyName": self.match_field, "operator": "IN", "values": values }] }],
                "properties": props,
                "sorts": [{ "propertyName": "hs_object_id", "direction": "ASCENDING" }],
                "limit": SEARCH_PAGE,
                "after": after.as_deref().unwrap_or("0"),
            });
            let r = self.call(Method::POST, "/crm/v3/objects/companies/search", Some(body), "search").await?;
            if !r.ok() {
                return Err(SinkError::Api(format!("company search failed (HTTP {}): {}", r.status, error_message(&r))));
            }
            let page: SearchPage = r.json()?;
            out.extend(page.results);
            after = page.paging.and_then(|p| p.next).map(|n| n.after);
            match &after {
                None => break,
                Some(a) if a.parse::<usize>().is_ok_and(|n| n >= SEARCH_TOTAL) => {
                    return Err(SinkError::Api(format!(
                        "company search for {} domains matched more than HubSpot's {SEARCH_TOTAL}-result limit",
                        domains.len()
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(out)
    }

    async fn update(&self, batch: &[WriteRecord]) -> Result<Vec<WriteOutcome>, SinkError> {
        let inputs: Vec<Value> = batch
            .iter()
            .map(|r| json!({ "id": r.crm_id, "properties": text_properties(&r.fields) }))
            .collect();
        let r = self.call(Method::POST, "/crm/v3/objects/companies/batch/update", Some(json!({ "inputs": inputs })), "default").await?;
        let keys: Vec<String> = batch.iter().map(|b| b.crm_id.clone().unwrap_or_default()).collect();
        read_batch(&r, &keys, |result| result.id.clone(), "ids")
    }

    async fn create(&self, batch: &[WriteRecord]) -> Result<Vec<WriteOutcome>, SinkError> {
        // Each input carries a trace id: with one on every input, HubSpot reports the
        // inputs it refused (207) instead of failing the whole batch, and names each by
        // its trace id. `associations` is required by `SimplePublicObjectBatchInputForCreate`.
        // <https://developers.hubspot.com/docs/api-reference/error-handling#multi-status-errors>
        let traces: Vec<String> = (0..batch.len()).map(|i| format!("oql-{i}")).collect();
        let inputs: Vec<Value> = batch
            .iter()
            .zip(&traces)
            .map(|(r, trace)| {
                let mut props = text_properties(&r.fields);
                props.insert(self.match_field.clone(), r.domain.clone());
                props.entry("name".into()).or_insert_with(|| r.domain.clone());
                json!({ "properties": props, "associations": [], "objectWriteTraceId": trace })
            })
            .collect();
        // A create sent twice makes two companies: it is never repeated blindly; if its
        // answer is lost, the records fail and the next run finds them by domain.
        let req = Request::new(Method::POST, self.url("/crm/v3/objects/companies/batch/create")).auth(&self.auth).not_repeatable();
        let r = self.send(req, Some(json!({ "inputs": inputs }))).await?;
        // Created records come back in no promised order: match them by trace id, or by
        // domain where a result does not echo it (the spec makes it optional).
        let trace_of: HashMap<&str, &String> = batch.iter().map(|r| r.domain.as_str()).zip(&traces).collect();
        let field = self.match_field.clone();
        let key_of = |result: &RecordResult| {
            result.object_write_trace_id.clone().or_else(|| {
                let domain = result.properties.get(&field).and_then(|v| v.as_deref()).and_then(normalize_domain)?;
                trace_of.get(domain.as_str()).map(|t| (*t).clone())
            })
        };
        let outcomes = read_batch(&r, &traces, key_of, "objectWriteTraceId")?;
        Ok(outcomes
            .into_iter()
            .map(|o| match o {
                WriteOutcome::Written { crm_id, .. } => WriteOutcome::Written { crm_id, created: true },
                other => other,
            })
            .collect())
    }

    /// Creates the group and the properties the mapping needs that HubSpot lacks.
    async fn ensure_properties(&self) -> Result<(), SinkError> {
        let r = self.call(Method::GET, "/crm/v3/properties/companies", None, "default").await?;
        if !r.ok() {
            return Err(SinkError::Api(format!("cannot list company properties (HTTP {}): {}", r.status, error_message(&r))));
        }
        let existing: PropertyList = r.json()?;
        let have: HashMap<&str, &PropertyDef> = existing.results.iter().map(|p| (p.name.as_str(), p)).collect();
        let mut missing = Vec::new();
        for (name, kind, options) in &self.wanted {
            match have.get(name.as_str()) {
                Some(p) => {
                    if let Some(expected) = hubspot_type(*kind).map(|(t, _)| t)
                        && p.kind != expected && !(expected == "string" && p.kind == "enumeration") {
                            tracing::warn!(property = %name, has = %p.kind, expected, "HubSpot property has another type; values may be rejected");
                        }
                }
                None => missing.push(property_definition(name, *kind, options, &self.config.property_group)),
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if !self.config.create_properties {
            let names: Vec<String> = missing.iter().filter_map(|p| p["name"].as_str().map(str::to_owned)).collect();
            return Err(SinkError::Api(format!(
                "HubSpot lacks the company properties {} and create_properties is off",
                names.join(", ")
            )));
        }
        let group_path = format!("/crm/v3/properties/companies/groups/{}", self.config.property_group);
        let g = self.call(Method::GET, &group_path, None, "default").await?;
        if g.status == 404 {
            let body = json!({ "name": self.config.property_group, "label": "Open Source Qualified Lead", "displayOrder": -1 });
            let c = self.call(Method::POST, "/crm/v3/properties/companies/groups", Some(body), "default").await?;
            if !c.ok() && c.status != 409 {
                return Err(SinkError::Api(format!("cannot create property group (HTTP {}): {}", c.status, error_message(&c))));
            }
        }
        let count = missing.len();
        let r = self
            .call(Method::POST, "/crm/v3/properties/companies/batch/create", Some(json!({ "inputs": missing })), "default")
            .await?;
        if !r.ok() && r.status != 409 {
            return Err(SinkError::Api(format!("cannot create company properties (HTTP {}): {}", r.status, error_message(&r))));
        }
        tracing::info!(connector = %self.config.name, count, "created HubSpot company properties");
        Ok(())
    }
}

impl super::bisect::BatchSender for HubSpotSink {
    async fn send_batch(&mut self, batch: &[WriteRecord]) -> Result<super::bisect::Sent, SinkError> {
        let create = batch.first().is_some_and(|r| r.crm_id.is_none());
        match if create { self.create(batch).await } else { self.update(batch).await } {
            Err(SinkError::Api(m)) if m.starts_with(BATCH_REJECTED) => Ok(super::bisect::Sent::Refused(m[BATCH_REJECTED.len()..].trim().to_owned())),
            other => other.map(super::bisect::Sent::Answered),
        }
    }
}

/// Marks the error of a batch HubSpot refused as a whole (so it can be split).
const BATCH_REJECTED: &str = "[batch rejected]";

/// CRM values as HubSpot takes them: strings; an empty string clears a property.
fn text_properties(fields: &Desired) -> BTreeMap<String, String> {
    fields.iter().map(|(k, v)| (k.clone(), as_text(v))).collect()
}

/// Per-record outcomes of a batch answer, in the order of `keys` (each record's id, or
/// its trace id for creates). 200/201: every record in `results`; 207 Multi-Status:
/// `results` plus `errors`, each naming its records in `context.<error_key>`.
fn read_batch(
    r: &Response,
    keys: &[String],
    key_of: impl Fn(&RecordResult) -> Option<String>,
    error_key: &str,
) -> Result<Vec<WriteOutcome>, SinkError> {
    match r.status {
        200 | 201 | 207 => {}
        400 => return Err(SinkError::Api(format!("{BATCH_REJECTED} HubSpot rejected the batch (HTTP 400): {}", error_message(r)))),
        409 | 404 | 422 => {
            let m = format!("HTTP {}: {}", r.status, error_message(r));
            return Ok(vec![WriteOutcome::Failed(m); keys.len()]);
        }
        _ => return Err(SinkError::Api(format!("batch write failed (HTTP {}): {}", r.status, error_message(r)))),
    }
    let body: BatchResponse = r.json()?;
    let mut written: HashMap<String, String> = HashMap::new();
    for result in &body.results {
        if let (Some(key), Some(id)) = (key_of(result), result.id.clone()) {
            written.insert(key, id);
        }
    }
    let mut failed: HashMap<String, (String, bool)> = HashMap::new();
    for e in &body.errors {
        let gone = e.category.as_deref() == Some("OBJECT_NOT_FOUND");
        let message = format!("{}: {}", e.category.as_deref().unwrap_or("ERROR"), e.message.as_deref().unwrap_or("no message"));
        for id in e.context.get(error_key).into_iter().flatten() {
            failed.insert(id.clone(), (message.clone(), gone));
        }
    }
    Ok(keys
        .iter()
        .map(|key| {
            if let Some(id) = written.get(key) {
                WriteOutcome::Written { crm_id: id.clone(), created: false }
            } else if let Some((message, gone)) = failed.get(key) {
                if *gone { WriteOutcome::Gone(message.clone()) } else { WriteOutcome::Failed(message.clone()) }
            } else {
                WriteOutcome::Failed(format!("HubSpot did not report this record (HTTP {})", r.status))
            }
        })
        .collect())
}

/// The `message` of a HubSpot error body, with its validation details.
fn error_message(r: &Response) -> String {
    match r.json::<ErrorBody>() {
        Ok(e) => {
            let mut out = e.message.unwrap_or_else(|| r.body_text());
            if let Some(c) = e.category {
                out = format!("{c}: {out}");
            }
            for d in e.errors.iter().take(3) {
                if let Some(m) = &d.message {
                    out.push_str(&format!(" [{m}]"));
                }
            }
            out
        }
        Err(_) => r.body_text(),
    }
}

/// HubSpot's (type, fieldType) for a mapped field.
fn hubspot_type(kind: CrmType) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        CrmType::Text => ("string", "text"),
        CrmType::Number => ("number", "number"),
        CrmType::Date => ("date", "date"),
        CrmType::Bool => ("bool", "booleancheckbox"),
        CrmType::Enumeration => ("enumeration", "select"),
    })
}

fn property_definition(name: &str, kind: CrmType, options: &[String], group: &str) -> Value {
    let (t, field_type) = hubspot_type(kind).unwrap_or(("string", "text"));
    let mut def = json!({
        "name": name,
        "label": label_of(name),
        "type": t,
        "fieldType": field_type,
        "groupName": group,
        "description": "Written by oql-sync (Open Source Qualified Lead scoring).",
    });
    match kind {
        CrmType::Enumeration => {
            def["options"] = options
                .iter()
                .enumerate()
                .map(|(i, o)| json!({ "label": o, "value": o, "displayOrder": i, "hidden": false }))
                .collect();
        }
        CrmType::Bool => {
            def["options"] = json!([
                { "label": "Yes", "value": "true", "displayOrder": 0, "hidden": false },
                { "label": "No", "value": "false", "displayOrder": 1, "hidden": false }
            ]);
        }
        _ => {}
    }
    def
}

/// `oql_last_activity` → `OQL Last Activity`.
fn label_of(name: &str) -> String {
    name.split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            if w.eq_ignore_ascii_case("oql") {
                "OQL".to_owned()
            } else {
                let mut c = w.chars();
                c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Sink for HubSpotSink {
    fn batch_size(&self) -> usize {
        BATCH_LIMIT
    }

    fn stats(&self) -> crate::http::CallCounts {
        self.http.stats.counts()
    }

    async fn prepare(&mut self) -> Result<(), SinkError> {
        self.ensure_properties().await
    }

    async fn resolve(&mut self, domains: &[String]) -> Result<HashMap<String, Match>, SinkError> {
        let mut out: HashMap<String, Match> = domains.iter().map(|d| (d.clone(), Match::Missing)).collect();
        for chunk in domains.chunks(DOMAINS_PER_SEARCH) {
            for result in self.search(chunk, &[]).await? {
                let Some(id) = result.id else { continue };
                let Some(domain) = result.properties.get(&self.match_field).and_then(|v| v.as_deref()).and_then(normalize_domain) else {
                    continue;
                };
                if let Some(m) = out.get_mut(&domain) {
                    *m = match std::mem::replace(m, Match::Missing) {
                        Match::Missing => Match::Found(id),
                        Match::Found(first) if first == id => Match::Found(first),
                        Match::Found(first) => Match::Ambiguous(vec![first, id]),
                        Match::Ambiguous(mut ids) => {
                            ids.push(id);
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

    /// Batch read by record id, 100 ids a call (paced by the connector's `rate_limit`).
    /// An id HubSpot no longer knows comes back in `errors` (207), not in `results`.
    async fn read(&mut self, records: &[(String, String)], fields: &[String]) -> Result<HashMap<String, Desired>, SinkError> {
        let mut out = HashMap::new();
        for chunk in records.chunks(BATCH_LIMIT) {
            // `propertiesWithHistory` is required by `BatchReadInputSimplePublicObjectId`.
            let body = json!({
                "properties": fields,
                "propertiesWithHistory": [],
                "inputs": chunk.iter().map(|(_, id)| json!({ "id": id })).collect::<Vec<_>>(),
            });
            let r = self.call(Method::POST, "/crm/v3/objects/companies/batch/read", Some(body), "default").await?;
            if !(r.ok() || r.status == 207) {
                return Err(SinkError::Api(format!("cannot read companies (HTTP {}): {}", r.status, error_message(&r))));
            }
            let body: BatchResponse = r.json()?;
            let by_id: HashMap<&str, &str> = chunk.iter().map(|(d, id)| (id.as_str(), d.as_str())).collect();
            for result in body.results {
                let Some(domain) = result.id.as_deref().and_then(|id| by_id.get(id)) else { continue };
                let values: Desired = fields
                    .iter()
                    .map(|f| {
                        let v = result.properties.get(f).cloned().flatten();
                        (f.clone(), v.map(Value::String).unwrap_or(Value::Null))
                    })
                    .collect();
                out.insert((*domain).to_owned(), values);
            }
        }
        Ok(out)
    }

    /// A whole-batch 400 (one bad value fails them all) is split until the bad records
    /// stand alone, so good records still land.
    async fn write(&mut self, batch: &[WriteRecord]) -> Result<Vec<WriteOutcome>, SinkError> {
        super::bisect::write_bisecting(self, batch).await
    }

    async fn fire(&mut self, firing: &Firing, crm_id: Option<&str>) -> Result<(), SinkError> {
        self.fire_all(&[(firing, crm_id)]).await.pop().unwrap_or(Ok(()))
    }

    /// List memberships, one call per list for up to `MEMBERS_PER_CALL` companies.
    async fn fire_all(&mut self, firings: &[(&Firing, Option<&str>)]) -> Vec<Result<(), SinkError>> {
        let mut out: Vec<Option<Result<(), SinkError>>> = (0..firings.len()).map(|_| None).collect();
        // list id → (firing index, record id)
        let mut by_list: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
        for (i, (firing, crm_id)) in firings.iter().enumerate() {
            match (firing.action.get("hubspot_list").and_then(|v| v.as_str()), crm_id) {
                (None, _) => out[i] = Some(Err(SinkError::Api(format!("HubSpot cannot run the action {}", firing.action)))),
                (Some(list), None) => {
                    out[i] = Some(Err(SinkError::Api(format!("{} has no HubSpot record to add to list {list}", firing.domain))));
                }
                (Some(list), Some(id)) => by_list.entry(list.to_owned()).or_default().push((i, (*id).to_owned())),
            }
        }
        for (list, members) in by_list {
            if let Err(problem) = self.check_list(&list).await {
                let message = problem.to_string();
                for (i, _) in members {
                    out[i] = Some(Err(SinkError::Api(message.clone())));
                }
                continue;
            }
            for chunk in members.chunks(MEMBERS_PER_CALL) {
                let mut ids: Vec<&str> = chunk.iter().map(|(_, id)| id.as_str()).collect();
                ids.sort_unstable();
                ids.dedup();
                let added = self.add_to_list(&list, &ids).await;
                for (i, id) in chunk {
                    out[*i] = Some(match &added {
                        Err(e) => Err(SinkError::Api(e.clone())),
                        Ok(missing) if missing.contains(id) => Err(SinkError::Api(format!("HubSpot does not know company {id} (list {list})"))),
                        Ok(_) => Ok(()),
                    });
                }
            }
        }
        out.into_iter().map(|o| o.unwrap_or(Ok(()))).collect()
    }
}

/// The private app scopes oql-sync needs, for messages that say what to grant.
const SCOPES: &str = "crm.objects.companies.read, crm.objects.companies.write, crm.schemas.companies.read, crm.schemas.companies.write (and crm.lists.read, crm.lists.write for list triggers)";

/// `oql-sync check --live`, read-only: the credentials (reading the company properties
/// and searching one domain need the read scopes), every mapped property present with
/// a type that takes its values (or to be created by the first sync), and every list a
/// trigger names a MANUAL or SNAPSHOT list of companies. What was verified, or every
/// problem with its fix, as a configuration error.
pub async fn check_live(c: &HubSpotConfig, file: &Path, mapping: &Mapping) -> Result<String, SinkError> {
    let mut sink = HubSpotSink::build(c, file, mapping)?;
    let credentials = |e: SinkError| match e {
        SinkError::Api(m) if m.starts_with("HubSpot refused the credentials") => SinkError::Config(format!(
            "{m}; fix: give the connector a private app token (Settings → Integrations → Private apps) with the scopes {SCOPES}"
        )),
        other => other,
    };
    let r = sink.call(Method::GET, "/crm/v3/properties/companies", None, "default").await.map_err(credentials)?;
    if !r.ok() {
        return Err(SinkError::Api(format!("cannot list company properties (HTTP {}): {}", r.status, error_message(&r))));
    }
    let existing: PropertyList = r.json()?;
    let have: HashMap<&str, &PropertyDef> = existing.results.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut problems = Vec::new();
    let mut missing = Vec::new();
    for (name, kind, _) in &sink.wanted {
        match have.get(name.as_str()) {
            Some(p) => {
                if let Some(expected) = hubspot_type(*kind).map(|(t, _)| t)
                    && p.kind != expected && !(expected == "string" && p.kind == "enumeration") {
                        problems.push(format!("property {name} is of type {} where the mapping writes {expected}; fix: map another property, or recreate {name} as {expected}", p.kind));
                    }
            }
            None => missing.push(name.clone()),
        }
    }
    if !missing.is_empty() && !c.create_properties {
        problems.push(format!(
            "HubSpot lacks the company properties {}; fix: create them (Settings → Properties) or set `create_properties: true`",
            missing.join(", ")
        ));
    }
    sink.search(&["example.com".to_owned()], &[]).await.map_err(credentials)?;
    let lists: Vec<&str> = mapping
        .triggers
        .iter()
        .filter_map(|t| match &t.action {
            super::mapping::Action::HubspotList(l) => Some(l.as_str()),
            _ => None,
        })
        .collect();
    for list in &lists {
        match sink.check_list(list).await {
            Ok(()) => {}
            Err(SinkError::Api(m)) if !m.starts_with("cannot read list") => {
                problems.push(format!("{m}; fix: put the id of a MANUAL or SNAPSHOT company list (the number in its URL) in the mapping's trigger"));
            }
            Err(e) => return Err(credentials(e)),
        }
    }
    if !problems.is_empty() {
        return Err(SinkError::Config(problems.join("\n")));
    }
    let mut done = format!("token accepted; {} of {} mapped properties present", sink.wanted.len() - missing.len(), sink.wanted.len());
    if !missing.is_empty() {
        done.push_str(&format!(" ({} created by the first sync)", missing.join(", ")));
    }
    if !lists.is_empty() {
        done.push_str(&format!("; list{} {} take{} companies", if lists.len() > 1 { "s" } else { "" }, lists.join(", "), if lists.len() > 1 { "" } else { "s" }));
    }
    Ok(done)
}

impl HubSpotSink {
    /// Whether a list can take companies by hand; read once per run.
    async fn check_list(&mut self, list: &str) -> Result<(), SinkError> {
        if !self.unusable_lists.contains_key(list) {
            let r = self.call(Method::GET, &format!("/crm/v3/lists/{list}"), None, "default").await?;
            let problem = match r.status {
                200 => {
                    let l: ListResponse = r.json()?;
                    match (l.list.processing_type.as_str(), l.list.object_type_id.as_str()) {
                        (_, t) if t != "0-2" => Some(format!("list {list} holds objects of type {t}, not companies (0-2)")),
                        ("MANUAL" | "SNAPSHOT", _) => None,
                        (p, _) => Some(format!(
                            "list {list} is {p}: HubSpot adds records by hand only to MANUAL or SNAPSHOT lists"
                        )),
                    }
                }
                404 => Some(format!("list {list} does not exist")),
                s => return Err(SinkError::Api(format!("cannot read list {list} (HTTP {s}): {}", error_message(&r)))),
            };
            self.unusable_lists.insert(list.to_owned(), problem.unwrap_or_default());
        }
        match self.unusable_lists.get(list).filter(|p| !p.is_empty()) {
            Some(problem) => Err(SinkError::Api(problem.clone())),
            None => Ok(()),
        }
    }

    /// Adds records to a list in one call; the ids HubSpot does not know.
    /// <https://developers.hubspot.com/docs/api/crm/lists>: the body is a JSON array of
    /// record ids; adding a member twice is harmless.
    async fn add_to_list(&self, list: &str, ids: &[&str]) -> Result<HashSet<String>, String> {
        let path = format!("/crm/v3/lists/{list}/memberships/add");
        let r = self.call(Method::PUT, &path, Some(json!(ids)), "default").await.map_err(|e| e.to_string())?;
        if !r.ok() {
            return Err(format!("cannot add {} companies to list {list} (HTTP {}): {}", ids.len(), r.status, error_message(&r)));
        }
        let answer: MembershipsUpdate = r.json().unwrap_or_default();
        Ok(answer.record_ids_missing.into_iter().collect())
    }
}

/// `MembershipsUpdateResponse`.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MembershipsUpdate {
    #[serde(default)]
    record_ids_missing: Vec<String>,
}

#[derive(Deserialize)]
struct SearchPage {
    #[serde(default)]
    results: Vec<SearchResult>,
    #[serde(default)]
    paging: Option<Paging>,
}

type SearchResult = RecordResult;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordResult {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    object_write_trace_id: Option<String>,
    #[serde(default)]
    properties: HashMap<String, Option<String>>,
}

#[derive(Deserialize)]
struct Paging {
    next: Option<NextPage>,
}

#[derive(Deserialize)]
struct NextPage {
    after: String,
}

#[derive(Deserialize)]
struct BatchResponse {
    #[serde(default)]
    results: Vec<RecordResult>,
    #[serde(default)]
    errors: Vec<BatchError>,
}

#[derive(Deserialize)]
struct BatchError {
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    context: HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    errors: Vec<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct PropertyList {
    results: Vec<PropertyDef>,
}

#[derive(Deserialize)]
struct PropertyDef {
    name: String,
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize)]
struct ListResponse {
    list: ListInfo,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListInfo {
    processing_type: String,
    #[serde(default)]
    object_type_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_like_words() {
        assert_eq!(label_of("oql_last_activity"), "OQL Last Activity");
        assert_eq!(label_of("score"), "Score");
    }
}
