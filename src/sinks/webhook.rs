//! The `webhook` sink: POSTs one JSON event per changed company to a URL, for marketing
//! automation tools and CRMs without a connector. Also the delivery of `webhook`
//! trigger actions. Every POST carries an `Idempotency-Key` header, stable across
//! retries and re-runs, so receivers can drop repeats.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use super::mapping::Desired;
use super::{Match, Sink, SinkError, WriteOutcome, WriteRecord};
use crate::config::Schedule;
use crate::http::{HttpClient, RateLimit, Request, RetryPolicy, redact_url};
use crate::store::Firing;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    #[allow(dead_code)]
    kind: String,
    pub schedule: Schedule,
    pub mapping: String,
    #[serde(default)]
    pub url: Option<String>,
    /// The variable holding the URL, when the URL carries a secret.
    #[serde(default)]
    pub url_env: Option<String>,
    #[serde(default = "default_rate")]
    pub rate_limit: RateLimit,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default = "default_dead_after")]
    pub dead_after: u32,
}

fn default_rate() -> RateLimit {
    RateLimit::new(10, 1)
}

pub fn default_dead_after() -> u32 {
    5
}

impl WebhookConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        match (&self.url, &self.url_env) {
            (Some(_), Some(_)) => Err(("url_env".into(), "give `url` or `url_env`, not both".into())),
            (None, None) => Err(("name".into(), "missing `url` (or `url_env`)".into())),
            (Some(url), None) if reqwest::Url::parse(url).is_err() => Err(("url".into(), format!("`{url}` is not a URL"))),
            _ => Ok(()),
        }
    }
}

pub struct WebhookSink {
    name: String,
    url: String,
    http: HttpClient,
}

impl WebhookSink {
    pub fn build(c: &WebhookConfig, file: &Path) -> Result<WebhookSink, SinkError> {
        let url = match (&c.url, &c.url_env) {
            (Some(url), _) => url.clone(),
            (None, Some(var)) => {
                let url = std::env::var(var).map_err(|_| {
                    SinkError::Api(format!("{}: `url_env`: environment variable {var} is not set", file.display()))
                })?;
                crate::redaction::register(&url);
                url
            }
            (None, None) => return Err(SinkError::Api(format!("{}: missing `url`", file.display()))),
        };
        let http = HttpClient::new(&c.name, &[("default", c.rate_limit)], c.retry)?;
        Ok(WebhookSink { name: c.name.clone(), url, http })
    }
}

/// POSTs one event; any 2xx is delivery. Errors never quote the URL: webhook URLs
/// often carry their secret in the path.
pub async fn post_event(http: &HttpClient, url: &str, key: &str, event: &Value) -> Result<(), SinkError> {
    let hide = |e: crate::http::HttpError| SinkError::Api(e.to_string().replace(&redact_url(url), "<webhook URL>"));
    let response = http
        .send(Request::new(reqwest::Method::POST, url.to_owned()).json(event.clone()).header("idempotency-key", key.to_owned()))
        .await
        .map_err(hide)?;
    if response.ok() { Ok(()) } else { Err(hide(response.into_error())) }
}

impl Sink for WebhookSink {
    fn batch_size(&self) -> usize {
        50
    }

    fn stats(&self) -> crate::http::CallCounts {
        self.http.stats.counts()
    }

    /// Every company is "found": the receiver keys events by domain.
    async fn resolve(&mut self, domains: &[String]) -> Result<HashMap<String, Match>, SinkError> {
        Ok(domains.iter().map(|d| (d.clone(), Match::Found(d.clone()))).collect())
    }

    /// A webhook cannot be read back: a live dry run plans against nothing.
    async fn read(&mut self, _: &[(String, String)], _: &[String]) -> Result<HashMap<String, Desired>, SinkError> {
        Ok(HashMap::new())
    }

    async fn write(&mut self, batch: &[WriteRecord]) -> Result<Vec<WriteOutcome>, SinkError> {
        let mut out = Vec::with_capacity(batch.len());
        for r in batch {
            let fields = serde_json::to_string(&r.fields).unwrap_or_default();
            let seed = format!("{}\n{}\n{fields}", self.name, r.domain);
            let key = super::triggers::idempotency_key(&seed);
            let event = json!({
                "type": "oql.company.updated",
                "id": key,
                "connector": self.name,
                "company": r.domain,
                "fields": r.fields,
                "signals": r.event,
            });
            out.push(match post_event(&self.http, &self.url, &key, &event).await {
                Ok(()) => WriteOutcome::Written { crm_id: r.domain.clone(), created: false },
                Err(e) => WriteOutcome::Failed(e.to_string()),
            });
        }
        Ok(out)
    }

    async fn fire(&mut self, firing: &Firing, _: Option<&str>) -> Result<(), SinkError> {
        Err(SinkError::Api(format!("a webhook connector cannot run the action {}", firing.action)))
    }
}
