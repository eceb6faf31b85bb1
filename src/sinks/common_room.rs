//! Common Room (Core API v1). Its public API cannot write organizations, so a company
//! reaches Common Room through what the API can write into an "API signal" source:
//!
//! - one contact per company (`POST /source/{destinationSourceId}/user`, upserted by our
//!   id `oql:{domain}`), whose `companyDomain` and `companyName` attach it to the
//!   company's organization, carrying the mapped fields as contact custom fields;
//! - one activity per stage change (`POST /source/{destinationSourceId}/activity`,
//!   upserted by id and `activityType`, so a retry never duplicates it), shown in the
//!   organization's and the contact's activity feed.
//!
//! Shapes from the public OpenAPI description of the Core API,
//! <https://api.commonroom.io/docs/community.html> (`ApiUser`, `ApiActivity`,
//! `ApiCustomFields`, `/members/customFields`, `/activityTypes`, and the `RateLimited`
//! response: `X-RateLimit-*` headers, `Retry-After` as a UTC date-time, and a body with
//! `rateLimit.waitMs`, all honoured by `http.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::mapping::{Desired, Mapping, Signal, as_text};
use super::{Match, Sink, SinkError, WriteOutcome, WriteRecord};
use crate::auth::{Auth, secret_source};
use crate::config::Schedule;
use crate::http::{HttpClient, RateLimit, Request, Response, RetryPolicy};
use crate::store::Firing;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommonRoomConfig {
    pub name: String,
    #[allow(dead_code)]
    kind: String,
    pub schedule: Schedule,
    pub mapping: String,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The Destination Source ID of the API signal created for oql-sync.
    pub destination_source_id: u64,
    /// The activity type stage changes are posted as (one of `GET /activityTypes`).
    #[serde(default = "default_activity_type")]
    pub activity_type: String,
    #[serde(default = "default_rate")]
    pub rate_limit: RateLimit,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default = "super::webhook::default_dead_after")]
    pub dead_after: u32,
}

fn default_base_url() -> String {
    "https://api.commonroom.io/community/v1".into()
}
fn default_activity_type() -> String {
    "oql_stage_changed".into()
}
fn default_rate() -> RateLimit {
    RateLimit::new(5, 1)
}

impl CommonRoomConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        crate::config::check_url("base_url", &self.base_url)?;
        crate::config::check_token(self.token_env.as_ref(), self.token_file.as_ref())
    }
}

/// A contact custom field as `/members/customFields` describes it.
#[derive(Clone, Debug, Deserialize)]
struct CustomField {
    /// The spec types it `number`; it is an integer id, and goes back out as one (not
    /// `1003.0`).
    #[serde(deserialize_with = "integer_id")]
    id: u64,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    values: Vec<String>,
}

fn integer_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    n.as_u64()
        .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64))
        .ok_or_else(|| serde::de::Error::custom(format!("custom field id {n} is not a whole number")))
}

pub struct CommonRoomSink {
    config: CommonRoomConfig,
    base: String,
    http: HttpClient,
    auth: Auth,
    /// Custom fields by the mapping's field names, read in `prepare`.
    custom_fields: HashMap<String, CustomField>,
    mapped: Vec<String>,
    /// What each mapped field renders (`number`, `date`, `yes/no` or `text`), to check it
    /// against the custom field's type before any write.
    renders: HashMap<String, &'static str>,
    /// How the mapping writes stages (its value map), for activity titles.
    stage_labels: std::collections::BTreeMap<String, String>,
    /// The mapped fields holding the stage and the score, whose rendered values (labels,
    /// rounding) the activity shows.
    stage_field: Option<String>,
    score_field: Option<String>,
}

impl CommonRoomSink {
    pub fn build(c: &CommonRoomConfig, file: &Path, mapping: &Mapping) -> Result<CommonRoomSink, SinkError> {
        let dir = file.parent().and_then(Path::parent).unwrap_or(Path::new("."));
        let source = secret_source("token", c.token_env.as_ref(), c.token_file.as_ref(), dir).map_err(SinkError::Api)?;
        Ok(CommonRoomSink {
            base: c.base_url.trim_end_matches('/').to_owned(),
            http: HttpClient::new(&c.name, &[("default", c.rate_limit)], c.retry)?,
            auth: Auth::Token(source.read(file, "token")?),
            config: c.clone(),
            custom_fields: HashMap::new(),
            mapped: mapping.fields.keys().cloned().collect(),
            renders: mapping.fields.iter().map(|(name, f)| (name.clone(), renders(f))).collect(),
            stage_labels: mapping.fields.values().find(|f| f.from == Signal::Stage).and_then(|f| f.values.clone()).unwrap_or_default(),
            stage_field: mapping.fields.iter().find(|(_, f)| f.from == Signal::Stage).map(|(n, _)| n.clone()),
            score_field: mapping.fields.iter().find(|(_, f)| f.from == Signal::Score).map(|(n, _)| n.clone()),
        })
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Response, SinkError> {
        let mut req = Request::new(method, format!("{}{path}", self.base)).auth(&self.auth);
        if let Some(body) = body {
            req = req.json(body);
        }
        let r = self.http.send(req).await?;
        // Neither is any record's fault: the run stops at the first sign.
        match r.status {
            401 | 403 => Err(SinkError::Config(format!("Common Room refused the API token (HTTP {}): {}", r.status, r.body_text()))),
            404 if path.starts_with("/source/") => Err(SinkError::Config(format!(
                "destination source {} does not exist in this Common Room (HTTP 404): create an API signal and set destination_source_id to its Destination Source ID",
                self.config.destination_source_id
            ))),
            _ => Ok(r),
        }
    }

    /// The user record standing for a company in the API signal source.
    fn company_user(domain: &str) -> Value {
        json!({ "id": format!("oql:{domain}"), "fullName": format!("{domain} (OQL)"), "companyDomain": domain, "companyName": domain })
    }

    /// `customFields` entries for changed fields; `null` clears (the value is omitted).
    fn custom_field_values(&self, fields: &Desired) -> Result<Vec<Value>, String> {
        fields
            .iter()
            .map(|(name, value)| {
                let f = self.custom_fields.get(name).ok_or_else(|| format!("no contact custom field named `{name}`"))?;
                if value.is_null() {
                    return Ok(json!({ "id": f.id }));
                }
                let number = |s: &str| s.trim().parse::<f64>().map_err(|_| format!("`{name}` takes a number, not `{s}`"));
                let v = match (f.kind.as_str(), value) {
                    // `int` takes an integer (the spec's `type: integer`): 5, never 5.0.
                    ("int", Value::String(s)) => Value::from(number(s)?.round() as i64),
                    ("int", Value::Number(n)) => Value::from(n.as_i64().unwrap_or_else(|| n.as_f64().unwrap_or(0.0).round() as i64)),
                    ("number", Value::String(s)) => s.trim().parse::<serde_json::Number>().map(Value::Number).or_else(|_| number(s).map(Value::from))?,
                    ("string" | "enum" | "url" | "date", Value::Number(n)) => Value::String(n.to_string()),
                    ("boolean", Value::String(s)) => Value::Bool(s == "true" || s == "Yes"),
                    _ => value.clone(),
                };
                if f.kind == "enum" && !f.values.is_empty() && !f.values.iter().any(|x| Some(x.as_str()) == v.as_str()) {
                    return Err(format!("`{name}` has no value `{}` (values: {})", v.as_str().unwrap_or_default(), f.values.join(", ")));
                }
                Ok(json!({ "id": f.id, "value": { "type": f.kind, "value": v } }))
            })
            .collect()
    }

    async fn write_one(&self, r: &WriteRecord) -> Result<WriteOutcome, SinkError> {
        let source = self.config.destination_source_id;
        let mut user = Self::company_user(&r.domain);
        match self.custom_field_values(&r.fields) {
            Ok(values) => user["customFields"] = Value::Array(values),
            Err(e) => return Ok(WriteOutcome::Failed(e)),
        }
        let resp = self.call(Method::POST, &format!("/source/{source}/user"), Some(user)).await?;
        if !resp.ok() {
            return Ok(WriteOutcome::Failed(format!("contact refused (HTTP {}): {}", resp.status, reason(&resp))));
        }
        if let Some((from, to)) = r.stage_change {
            let since = r.event.get("stage_since").and_then(|v| v.as_str()).unwrap_or_default();
            // In the words the contact's fields use: the mapping's labels and rounding.
            let label = |stage: crate::scoring::Stage| self.stage_labels.get(stage.as_str()).cloned().unwrap_or_else(|| stage.as_str().to_owned());
            let to_label = self.stage_field.as_ref().and_then(|f| r.desired.get(f)).map(as_text).unwrap_or_else(|| label(to));
            let title = match from {
                Some(from) => format!("OQL stage: {} → {to_label}", label(from)),
                None => format!("OQL stage: {to_label}"),
            };
            let score = match self.score_field.as_ref().and_then(|f| r.desired.get(f)) {
                Some(v) => as_text(v),
                None => r.event.get("score").and_then(Value::as_f64).map(|s| format!("{}", (s * 100.0).round() / 100.0)).unwrap_or_default(),
            };
            let activity = json!({
                // Stable across retries: Common Room upserts by (id, activityType).
                "id": format!("oql-stage:{}:{}:{since}", r.domain, to.as_str()),
                "activityType": self.config.activity_type,
                "user": Self::company_user(&r.domain),
                "activityTitle": { "type": "text", "value": title },
                "content": { "type": "markdown", "value": format!(
                    "**{}** is in **{to_label}** since {since} (OQL score {score}).\n\nSent by oql-sync.", r.domain) },
                "timestamp": format!("{since}T00:00:00.000Z"),
            });
            let resp = self.call(Method::POST, &format!("/source/{source}/activity"), Some(activity)).await?;
            if !resp.ok() {
                return Ok(WriteOutcome::Failed(format!("stage activity refused (HTTP {}): {}", resp.status, reason(&resp))));
            }
        }
        Ok(WriteOutcome::Written { crm_id: format!("oql:{}", r.domain), created: false })
    }
}

/// What a mapped field's values are, as Common Room types go.
fn renders(f: &super::mapping::FieldMapping) -> &'static str {
    use super::mapping::{CrmType, DateFormat};
    match (f.from.crm_type(f), &f.format) {
        (CrmType::Number, _) | (CrmType::Date, DateFormat::EpochMillis) => "numbers",
        (CrmType::Date, DateFormat::Date) => "dates (YYYY-MM-DD)",
        (CrmType::Bool, _) => "yes/no",
        _ => "text",
    }
}

/// Whether a custom field of type `kind` takes what a mapped field renders. Text fields
/// take numbers and dates as text; `date` takes ISO 8601 dates only.
fn takes(kind: &str, renders: &str) -> bool {
    match kind {
        "int" | "number" => renders == "numbers",
        "date" => renders.starts_with("dates"),
        "boolean" => renders == "yes/no",
        "enum" => renders == "text",
        _ => renders != "yes/no",
    }
}

/// `oql-sync check --live`: what a run checks before its first write (the token, the
/// custom fields the source may write, the activity type), without writing.
pub async fn check_live(c: &CommonRoomConfig, file: &Path, mapping: &Mapping) -> Result<(), SinkError> {
    CommonRoomSink::build(c, file, mapping)?.prepare().await
}

fn reason(r: &Response) -> String {
    r.json::<Value>()
        .ok()
        .and_then(|v| v.get("reason").and_then(|x| x.as_str()).map(str::to_owned))
        .unwrap_or_else(|| r.body_text())
}

impl Sink for CommonRoomSink {
    fn batch_size(&self) -> usize {
        50
    }

    fn stats(&self) -> crate::http::CallCounts {
        self.http.stats.counts()
    }

    /// Reads the custom fields this source may write and checks the activity type.
    async fn prepare(&mut self) -> Result<(), SinkError> {
        let path = format!("/members/customFields?destinationSourceId={}", self.config.destination_source_id);
        let r = self.call(Method::GET, &path, None).await?;
        if !r.ok() {
            return Err(SinkError::Api(format!("cannot list contact custom fields (HTTP {}): {}", r.status, reason(&r))));
        }
        let fields: Vec<CustomField> = r.json()?;
        self.custom_fields = fields.into_iter().map(|f| (f.name.clone(), f)).collect();
        let missing: Vec<&str> = self.mapped.iter().filter(|m| !self.custom_fields.contains_key(*m)).map(String::as_str).collect();
        if !missing.is_empty() {
            // Fields the room has but this source may not write point at a wrong
            // destination_source_id, not at missing fields: ask the room as a whole.
            let r = self.call(Method::GET, "/members/customFields", None).await?;
            let all: Vec<CustomField> = if r.ok() { r.json()? } else { Vec::new() };
            let exist: Vec<&str> = missing.iter().copied().filter(|m| all.iter().any(|f| f.name == *m)).collect();
            let source = self.config.destination_source_id;
            return Err(SinkError::Config(if exist.is_empty() {
                format!("Common Room has no contact custom field named {} (create them under Settings → Custom fields)", missing.join(", "))
            } else {
                format!(
                    "destination source {source} may not write the contact custom fields {} that this Common Room has: check destination_source_id (the Destination Source ID of oql-sync's API signal)",
                    exist.join(", ")
                )
            }));
        }
        // A value the field's type cannot take would fail every record alike, every run.
        let misfits: Vec<String> = self
            .mapped
            .iter()
            .filter_map(|name| {
                let kind = self.custom_fields[name].kind.as_str();
                let writes = self.renders[name];
                (!takes(kind, writes)).then(|| format!("{name} is a{} {kind} field and the mapping writes {writes}", if kind.starts_with(['a', 'e', 'i', 'u']) { "n" } else { "" }))
            })
            .collect();
        if !misfits.is_empty() {
            return Err(SinkError::Config(format!("Common Room custom fields do not take the mapping's values: {}", misfits.join("; "))));
        }
        let r = self.call(Method::GET, "/activityTypes", None).await?;
        if r.ok() {
            let types: Vec<Value> = r.json()?;
            if !types.iter().any(|t| t["id"] == self.config.activity_type.as_str()) {
                let known: Vec<&str> = types.iter().filter_map(|t| t["id"].as_str()).collect();
                return Err(SinkError::Config(format!(
                    "activity type `{}` is not one Common Room accepts (known: {})",
                    self.config.activity_type,
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Every company is its own contact, upserted by id: nothing to look up.
    async fn resolve(&mut self, domains: &[String]) -> Result<HashMap<String, Match>, SinkError> {
        Ok(domains.iter().map(|d| (d.clone(), Match::Found(format!("oql:{d}")))).collect())
    }

    /// The Core API cannot read API-signal contacts back: a live dry run plans against
    /// an empty CRM.
    /// The Core API v1 writes contacts of an API source but reads none back, and the v2
    /// API reads contacts by Common Room's own id (`c_<number>`), which the v1 write
    /// (202, no body) never returns: no read finds our contact by its id `oql:{domain}`.
    /// <https://api.commonroom.io/docs/community.html>, <https://api.commonroom.io/docs/api-v2.html>
    fn reads_back(&self) -> Result<(), String> {
        Err("Common Room's API cannot read back the custom fields of the contacts oql-sync writes (v1 reads no API-source contact; v2 reads contacts only by Common Room's own id)".into())
    }

    async fn read(&mut self, _: &[(String, String)], _: &[String]) -> Result<HashMap<String, Desired>, SinkError> {
        Ok(HashMap::new())
    }

    async fn write(&mut self, batch: &[WriteRecord]) -> Result<Vec<WriteOutcome>, SinkError> {
        let mut out = Vec::with_capacity(batch.len());
        for r in batch {
            match self.write_one(r).await {
                Ok(o) => out.push(o),
                // A wrong source id or a refused token: the run stops, no record is charged.
                Err(e @ SinkError::Config(_)) => return Err(e),
                // A refused token, a missing source or spent retries stop the batch; the
                // records already written stay written.
                Err(e) => {
                    let message = e.to_string();
                    out.resize(batch.len(), WriteOutcome::Failed(message));
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn fire(&mut self, firing: &Firing, _: Option<&str>) -> Result<(), SinkError> {
        Err(SinkError::Api(format!("Common Room cannot run the action {}", firing.action)))
    }
}
