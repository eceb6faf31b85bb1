//! Slack (Web API, bot token): members from `users.list` (only each email's domain is
//! kept), joins as members new since the last poll (`slack_join`), and messages of the
//! configured channels from `conversations.history` (`slack_message`), read from the last
//! message seen (`oldest`) with cursor paging.
//!
//! Limits (<https://api.slack.com/apis/rate-limits>): `users.list` is Tier 2 and
//! `conversations.history` Tier 3; a 429 carries `Retry-After` (honoured by `http.rs`).
//! Apps distributed outside the Slack Marketplace since May 2025 get one
//! `conversations.history` call a minute with `limit` at most 15
//! (<https://api.slack.com/changelog/2025-05-terms-rate-limit-update-and-faq>): set
//! `history_pacing: restricted`, or leave `auto` and the first 429 on
//! `conversations.history` switches the source to that pace, remembered in the store.
//! Errors come as HTTP 200 with `{"ok": false, "error": …}` (`not_in_channel`,
//! `invalid_auth`, `channel_not_found`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::github::{PollError, PollSummary};
use crate::activity::{Action, Activity, normalize_domain};
use crate::attribution::AttributionRules;
use crate::auth::{Auth, secret_source};
use crate::config::Schedule;
use crate::http::{HttpClient, RateLimit, Request, RetryPolicy};
use crate::store::{NewActivity, Store};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pacing {
    /// Tier 3 until Slack says otherwise.
    #[default]
    Auto,
    Normal,
    /// One `conversations.history` call a minute, 15 messages a call.
    Restricted,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    pub name: String,
    #[allow(dead_code)]
    kind: String,
    pub schedule: Schedule,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Channel ids (`C0123…`) whose messages count.
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default)]
    pub history_pacing: Pacing,
    /// A first poll reads messages only this many days back.
    #[serde(default)]
    pub backfill_days: Option<u32>,
    #[serde(default = "default_rate")]
    pub rate_limit: RateLimit,
    /// The `conversations.history` pace of apps outside the Marketplace.
    #[serde(default = "default_restricted")]
    pub restricted_rate_limit: RateLimit,
    #[serde(default)]
    pub retry: RetryPolicy,
}

fn default_restricted() -> RateLimit {
    RateLimit::new(1, 60)
}

fn default_base_url() -> String {
    "https://slack.com/api".into()
}
fn default_rate() -> RateLimit {
    // Tier 2 (users.list) allows 20 a minute.
    RateLimit::new(20, 60)
}

impl SlackConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        crate::config::check_url("base_url", &self.base_url)?;
        crate::config::check_token(self.token_env.as_ref(), self.token_file.as_ref())
    }
}

/// Members seen so far (id → email domain) and the pace Slack imposed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Members {
    known: BTreeMap<String, Option<String>>,
    #[serde(default)]
    pacing: Pacing,
}

pub struct SlackSource<'a> {
    config: &'a SlackConfig,
    store: &'a Store,
    rules: &'a AttributionRules,
    http: HttpClient,
    /// `conversations.history`: Tier 3, or one a minute when restricted.
    history: HttpClient,
    auth: Auth,
    base: String,
    summary: PollSummary,
    /// Requests a minute the history client allows now.
    history_limit: u32,
}

impl<'a> SlackSource<'a> {
    pub fn build(config: &'a SlackConfig, file: &Path, store: &'a Store, rules: &'a AttributionRules) -> Result<SlackSource<'a>, PollError> {
        let dir = file.parent().and_then(Path::parent).unwrap_or(Path::new("."));
        let source = secret_source("token", config.token_env.as_ref(), config.token_file.as_ref(), dir).map_err(PollError::Api)?;
        Ok(SlackSource {
            config,
            store,
            rules,
            http: HttpClient::new(&config.name, &[("default", config.rate_limit)], config.retry)?,
            history: HttpClient::new(&config.name, &[("default", RateLimit::new(50, 60))], config.retry)?,
            auth: Auth::Token(source.read(file, "token")?),
            base: config.base_url.trim_end_matches('/').to_owned(),
            summary: PollSummary::default(),
            history_limit: 50,
        })
    }

    /// Calls a Web API method; `ok: false` becomes an error naming Slack's code.
    async fn call(&self, history: bool, method: &str, query: &str) -> Result<Value, PollError> {
        let http = if history { &self.history } else { &self.http };
        let r = http.send(Request::new(Method::GET, format!("{}/{method}?{query}", self.base)).auth(&self.auth)).await?;
        let v: Value = r.json().map_err(|e| PollError::Api(format!("{method}: unreadable answer: {e}")))?;
        if v["ok"] != Value::Bool(true) {
            let error = v["error"].as_str().unwrap_or("unknown_error");
            let needed = v["needed"].as_str().map(|n| format!(" (needs scope {n})")).unwrap_or_default();
            return Err(PollError::Api(format!("{method}: {error}{needed}")));
        }
        Ok(v)
    }

    pub async fn poll(mut self) -> Result<PollSummary, PollError> {
        let name = self.config.name.clone();
        let mut members: Members = match self.store.cursor(&name, "members").await? {
            Some(text) => serde_json::from_str(&text).unwrap_or_default(),
            None => Members::default(),
        };
        let first_poll = members.known.is_empty();
        let mut joins = Vec::new();
        let mut cursor = String::new();
        loop {
            let v = match self.call(false, "users.list", &format!("limit=200&cursor={cursor}")).await {
                Ok(v) => v,
                Err(e) => {
                    self.summary.errors.push(e.to_string());
                    // Without members nothing else can be attributed or trusted.
                    self.summary.api_calls = self.http.stats.calls();
                    return Ok(self.summary);
                }
            };
            for m in v["members"].as_array().cloned().unwrap_or_default() {
                let Some(id) = m["id"].as_str() else { continue };
                if m["is_bot"] == Value::Bool(true) || m["deleted"] == Value::Bool(true) || id == "USLACKBOT" {
                    continue;
                }
                self.summary.fetched += 1;
                let domain = m["profile"]["email"].as_str().and_then(|e| e.rsplit_once('@')).and_then(|(_, d)| normalize_domain(d));
                if !members.known.contains_key(id) && !first_poll {
                    let at = m["updated"].as_i64().map(|s| s * 1_000_000_000).unwrap_or_else(|| chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0));
                    joins.push(self.activity(format!("join:{id}"), Action::SlackJoin, id, domain.clone(), at, None));
                }
                members.known.insert(id.to_owned(), domain);
            }
            cursor = v["response_metadata"]["next_cursor"].as_str().unwrap_or_default().to_owned();
            if cursor.is_empty() {
                break;
            }
        }
        if self.config.history_pacing != Pacing::Auto {
            members.pacing = self.config.history_pacing;
        }
        let value = serde_json::to_string(&members).unwrap_or_default();
        let outcome = self.store.insert_with_cursor(&joins, &[], Some((&name, "members", &value))).await?;
        self.summary.inserted += outcome.inserted;

        for channel in self.config.channels.clone() {
            if let Err(e) = self.poll_channel(&channel, &mut members).await {
                if let PollError::Store(e) = e {
                    return Err(PollError::Store(e));
                }
                self.summary.errors.push(format!("{channel}: {e}"));
            }
        }
        self.summary.api_calls += self.http.stats.calls() + self.history.stats.calls();
        Ok(self.summary)
    }

    fn activity(&self, id: String, action: Action, user: &str, domain: Option<String>, at: i64, url: Option<String>) -> NewActivity {
        let mut activity = Activity::community("slack", id, action, user, at);
        activity.email_domain = domain;
        activity.url = url;
        let company = self.rules.attribute(None, activity.actor.as_deref(), activity.email_domain.as_deref());
        NewActivity { activity, company }
    }

    async fn poll_channel(&mut self, channel: &str, members: &mut Members) -> Result<(), PollError> {
        let name = self.config.name.clone();
        let key = format!("channel:{channel}");
        let oldest = match self.store.cursor(&name, &key).await? {
            Some(ts) => ts,
            None => self
                .config
                .backfill_days
                .map(|d| (chrono::Utc::now() - chrono::TimeDelta::days(d as i64)).timestamp().to_string())
                .unwrap_or_else(|| "0".into()),
        };
        let mut newest = oldest.clone();
        let mut cursor = String::new();
        loop {
            let limit = if members.pacing == Pacing::Restricted { 15 } else { 200 };
            if members.pacing == Pacing::Restricted && self.history_limit != 1 {
                // One call a minute from here on.
                self.summary.api_calls += self.history.stats.calls();
                self.history = HttpClient::new(&name, &[("default", self.config.restricted_rate_limit)], self.config.retry)?;
                self.history_limit = 1;
            }
            let query = format!("channel={channel}&oldest={oldest}&limit={limit}&cursor={cursor}");
            let throttled = self.history.stats.throttled.load(std::sync::atomic::Ordering::Relaxed);
            let v = self.call(true, "conversations.history", &query).await?;
            // Slack answered 429 (and `http.rs` waited): an app outside the Marketplace.
            if members.pacing == Pacing::Auto && self.history.stats.throttled.load(std::sync::atomic::Ordering::Relaxed) > throttled {
                tracing::warn!(connector = %name, "conversations.history is limited to 1 call a minute: pacing to it from now on");
                members.pacing = Pacing::Restricted;
                let value = serde_json::to_string(&members).unwrap_or_default();
                self.store.set_cursor(&name, "members", &value).await?;
            }
            let mut acts = Vec::new();
            for m in v["messages"].as_array().cloned().unwrap_or_default() {
                let (Some(ts), Some(user)) = (m["ts"].as_str(), m["user"].as_str()) else { continue };
                if ts > newest.as_str() {
                    newest = ts.to_owned();
                }
                // Joins, bot posts and other subtypes are not a person talking; neither is
                // a user `users.list` did not list as a member (bots, apps).
                if m.get("subtype").is_some() || m.get("bot_id").is_some() || !members.known.contains_key(user) {
                    continue;
                }
                self.summary.fetched += 1;
                let at = ts.parse::<f64>().map(|s| (s * 1e9) as i64).unwrap_or(0);
                let domain = members.known.get(user).cloned().flatten();
                acts.push(self.activity(format!("msg:{channel}:{ts}"), Action::SlackMessage, user, domain, at, None));
            }
            let outcome = self.store.insert_with_cursor(&acts, &[], None).await?;
            self.summary.inserted += outcome.inserted;
            cursor = v["response_metadata"]["next_cursor"].as_str().unwrap_or_default().to_owned();
            if cursor.is_empty() || v["has_more"] != Value::Bool(true) {
                break;
            }
        }
        // Messages come newest first: the channel's position moves only once every page
        // of the window is stored, so a crash re-reads the window (ids dedupe) and skips
        // nothing.
        self.store.set_cursor(&name, &key, &newest).await?;
        Ok(())
    }
}
