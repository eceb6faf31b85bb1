//! Slack as a destination: the `slack` trigger action (one Block Kit message per stage
//! change) and the `slack_digest` sink (one message a run listing the stage changes
//! since the last one). Both post through an incoming webhook or with a bot token
//! and `chat.postMessage`.
//!
//! Slack takes about one message a second per channel
//! (<https://api.slack.com/methods/chat.postMessage#rate_limiting>): posts to one
//! channel are spaced by a second here, and a 429 waits its `Retry-After` in `http.rs`.
//! A post is never repeated after a 5xx or a lost answer (Slack has no idempotency
//! key): the firing fails and the next run posts it, so a message may, in that worst
//! case only, arrive twice.
//!
//! Errors come two ways: the Web API answers HTTP 200 with `{"ok": false, "error"}`;
//! incoming webhooks answer a status with the code as plain text (404
//! `channel_not_found`, 403 `invalid_token`, 410 `channel_is_archived`...;
//! <https://api.slack.com/messaging/webhooks#handling_errors>). A refusal that every
//! later message would meet too (a revoked token, a channel that does not exist) is
//! remembered for the run: the other firings fail at once, each with the reason.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::SinkError;
use super::template::{MessageTemplate, variables_of};
use crate::auth::{Auth, SecretSource};
use crate::http::{HttpClient, RateLimit, Request, RetryPolicy};
use crate::store::Firing;

pub const DEFAULT_API_URL: &str = "https://slack.com/api";
/// The shortest gap between two posts to one channel.
const CHANNEL_GAP: Duration = Duration::from_secs(1);
/// Block Kit limits: a header's text, a section's text, a button's URL.
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;
const URL_MAX: usize = 3000;

/// `slack:` of a trigger: where the message goes and what it says.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackTarget {
    /// The variable holding an incoming webhook URL (it posts to the channel it was made for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url_env: Option<String>,
    /// The variable holding a bot token (`xoxb-`, scope `chat:write`), with `channel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// `#leads` or a channel id; the bot must be a member of a private channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// A message template: the message's first line and notification text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<MessageTemplate>,
    /// A message template of the CRM record's address, for the "Open in CRM" button
    /// (shown when the company has a CRM record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_url: Option<MessageTemplate>,
    /// The Web API's base (tests, Slack GovSlack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// Checks that a destination names one way to post; (key, message).
pub fn check_destination(webhook_url_env: Option<&String>, token_env: Option<&String>, channel: Option<&String>, api_url: Option<&String>) -> Result<(), (String, String)> {
    match (webhook_url_env, token_env, channel) {
        (Some(_), Some(_), _) | (None, None, _) => Err(("webhook_url_env".into(), "needs exactly one of `webhook_url_env` or `token_env` (with `channel`)".into())),
        (Some(_), None, Some(_)) => Err(("channel".into(), "an incoming webhook posts to the channel it was made for; drop `channel`, or use `token_env`".into())),
        (None, Some(_), None) => Err(("token_env".into(), "a bot token needs `channel` (`#leads` or a channel id)".into())),
        (None, Some(_), Some(c)) if c.trim().is_empty() => Err(("channel".into(), "is empty".into())),
        _ => match api_url {
            Some(url) => crate::config::check_url("api_url", url),
            None => Ok(()),
        },
    }
}

impl SlackTarget {
    pub fn validate(&self) -> Result<(), (String, String)> {
        check_destination(self.webhook_url_env.as_ref(), self.token_env.as_ref(), self.channel.as_ref(), self.api_url.as_ref())
    }

    pub fn destination(&self) -> Result<Destination, SinkError> {
        Destination::resolve(self.webhook_url_env.as_ref(), self.token_env.as_ref(), self.channel.as_ref(), self.api_url.as_deref())
    }
}

/// Where a message is posted, its secret read.
pub enum Destination {
    Webhook { url: String, var: String },
    Api { base: String, auth: Auth, channel: String, var: String },
}

impl Destination {
    pub fn resolve(webhook_url_env: Option<&String>, token_env: Option<&String>, channel: Option<&String>, api_url: Option<&str>) -> Result<Destination, SinkError> {
        let missing = |var: &str| SinkError::Api(format!("Slack: environment variable {var} is not set"));
        match (webhook_url_env, token_env, channel) {
            (Some(var), _, _) => {
                let url = std::env::var(var).map_err(|_| missing(var))?;
                crate::redaction::register(&url);
                Ok(Destination::Webhook { url, var: var.clone() })
            }
            (None, Some(var), Some(channel)) => {
                let token = SecretSource::Env(var.clone()).read(std::path::Path::new("mapping"), "token").map_err(|_| missing(var))?;
                let base = api_url.unwrap_or(DEFAULT_API_URL).trim_end_matches('/').to_owned();
                Ok(Destination::Api { base, auth: Auth::Token(token), channel: channel.clone(), var: var.clone() })
            }
            _ => Err(SinkError::Api("Slack: no `webhook_url_env`, or `token_env` with `channel`".into())),
        }
    }

    /// What posts are paced and refusals remembered by: the channel, or the webhook
    /// (by the variable naming it: the URL is a secret).
    fn key(&self) -> String {
        match self {
            Destination::Webhook { var, .. } => format!("webhook:{var}"),
            Destination::Api { channel, var, .. } => format!("{var}:{channel}"),
        }
    }

    fn describe(&self) -> String {
        match self {
            Destination::Webhook { var, .. } => format!("the incoming webhook in {var}"),
            Destination::Api { channel, .. } => format!("channel {channel}"),
        }
    }
}

/// Posts messages for one run: one HTTP client, the channels' pace, and the refusals
/// met so far.
pub struct SlackPoster {
    http: HttpClient,
    last_post: HashMap<String, Instant>,
    refused: HashMap<String, String>,
}

impl SlackPoster {
    pub fn new(connector: &str, retry: RetryPolicy) -> Result<SlackPoster, SinkError> {
        // Slack's tier for chat.postMessage is per channel (paced below); this bounds
        // the whole run's calls under Slack's workspace-wide burst.
        let http = HttpClient::new(&format!("{connector}/slack"), &[("default", RateLimit::new(20, 1))], retry)?;
        Ok(SlackPoster { http, last_post: HashMap::new(), refused: HashMap::new() })
    }

    pub fn stats(&self) -> crate::http::CallCounts {
        self.http.stats.counts()
    }

    /// Posts one message (`text` and `blocks`).
    pub async fn post(&mut self, to: &Destination, message: &Value) -> Result<(), SinkError> {
        let key = to.key();
        if let Some(why) = self.refused.get(&key) {
            return Err(SinkError::Api(why.clone()));
        }
        if let Some(last) = self.last_post.get(&key) {
            let due = *last + CHANNEL_GAP;
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        let outcome = self.send(to, message).await;
        self.last_post.insert(key.clone(), Instant::now());
        match outcome {
            Ok(()) => Ok(()),
            Err((code, lasting)) => {
                let why = explain(to, &code);
                if lasting {
                    self.refused.insert(key, why.clone());
                }
                Err(SinkError::Api(why))
            }
        }
    }

    /// `Err((Slack's error code, whether every later post would meet it))`.
    async fn send(&self, to: &Destination, message: &Value) -> Result<(), (String, bool)> {
        let transport = |e: crate::http::HttpError| {
            let text = match to {
                Destination::Webhook { url, .. } => e.to_string().replace(&crate::http::redact_url(url), "<webhook URL>"),
                Destination::Api { .. } => e.to_string(),
            };
            (text, false)
        };
        match to {
            Destination::Webhook { url, .. } => {
                let req = Request::new(Method::POST, url.clone()).json(message.clone()).not_repeatable();
                let r = self.http.send(req).await.map_err(transport)?;
                if r.ok() {
                    return Ok(());
                }
                let code = r.body_text().trim().to_owned();
                let lasting = matches!(r.status, 403 | 404 | 410);
                Err((if code.is_empty() { format!("HTTP {}", r.status) } else { code }, lasting))
            }
            Destination::Api { base, auth, channel, .. } => {
                let mut body = message.clone();
                body["channel"] = Value::String(channel.clone());
                let req = Request::new(Method::POST, format!("{base}/chat.postMessage")).auth(auth).json(body).not_repeatable();
                let r = self.http.send(req).await.map_err(transport)?;
                let answer: Value = r.json().unwrap_or(Value::Null);
                if r.ok() && answer["ok"] == Value::Bool(true) {
                    return Ok(());
                }
                let code = answer["error"].as_str().map(str::to_owned).unwrap_or_else(|| format!("HTTP {}", r.status));
                let lasting = matches!(
                    code.as_str(),
                    "channel_not_found" | "not_in_channel" | "is_archived" | "invalid_auth" | "not_authed" | "token_revoked"
                        | "token_expired" | "account_inactive" | "missing_scope" | "restricted_action"
                );
                Err((code, lasting))
            }
        }
    }
}

/// A Slack error code in words, with what fixes it.
fn explain(to: &Destination, code: &str) -> String {
    let place = to.describe();
    let var = match to {
        Destination::Webhook { var, .. } | Destination::Api { var, .. } => var,
    };
    let fix = match (code, to) {
        ("channel_not_found" | "channel_is_archived", Destination::Webhook { .. }) => {
            format!("the channel of the incoming webhook in {var} is gone or archived; create a new webhook and put its URL in {var}")
        }
        _ => String::new(),
    };
    if !fix.is_empty() {
        return format!("Slack: {code}: {fix}");
    }
    let fix = match code {
        "channel_not_found" => format!("{place} does not exist, or is private and the app is not in it; fix the channel, or invite the app"),
        "not_in_channel" => format!("the app is not a member of {place}; invite it (/invite @app)"),
        "is_archived" | "channel_is_archived" => format!("{place} is archived"),
        "invalid_auth" | "not_authed" | "token_revoked" | "token_expired" | "account_inactive" => {
            format!("Slack refused the token in {var}; put a valid bot token (scope chat:write) in {var}")
        }
        "invalid_token" | "no_service" | "no_service_id" | "no_team" | "team_disabled" => {
            format!("Slack no longer takes the incoming webhook in {var}; create a new one and put its URL in {var}")
        }
        "missing_scope" => format!("the token in {var} lacks the scope chat:write"),
        "invalid_blocks" | "invalid_payload" | "msg_too_long" | "no_text" => "Slack refused the message's shape".to_owned(),
        _ => format!("posting to {place} failed"),
    };
    format!("Slack: {code}: {fix}")
}

/// Text for Slack's mrkdwn: `&`, `<` and `>` escaped
/// (<https://api.slack.com/reference/surfaces/formatting#escaping>), so no value from
/// an activity becomes a mention or a link.
pub fn mrkdwn_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// At most `max` characters, `…` at the end when cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The Block Kit message of one stage change: a header `company: from → to`, the
/// score, trend and 30-day change, the reason, the operator's text, and a button to
/// the CRM record when the company has one.
pub fn stage_change_message(target: &SlackTarget, firing: &Firing) -> Result<Value, SinkError> {
    let vars: Map<String, Value> = variables_of(&firing.event);
    let get = |k: &str| vars.get(k).and_then(text_of);
    let company = get("company").unwrap_or_else(|| firing.domain.clone());
    let from = firing.from.map(|s| s.as_str()).unwrap_or("new");
    let to = firing.to.as_str();
    let score = get("score").unwrap_or_else(|| "?".into());
    let headline = match &target.text {
        Some(t) => t.render(&vars, mrkdwn_escape)?,
        None => mrkdwn_escape(&format!("{company}: {from} → {to}, score {score}")),
    };
    let mut fields = vec![json!({ "type": "mrkdwn", "text": format!("*Score*\n{score}") })];
    if let Some(trend) = get("trend") {
        fields.push(json!({ "type": "mrkdwn", "text": format!("*Trend*\n{}", mrkdwn_escape(&trend)) }));
    }
    if let Some(change) = vars.get("score_change_30d").and_then(Value::as_f64) {
        fields.push(json!({ "type": "mrkdwn", "text": format!("*30-day change*\n{change:+}") }));
    }
    if let Some(since) = get("stage_since") {
        fields.push(json!({ "type": "mrkdwn", "text": format!("*In {to} since*\n{since}") }));
    }
    let mut blocks = vec![
        json!({ "type": "header", "text": { "type": "plain_text", "text": clip(&format!("{company}: {from} → {to}"), HEADER_MAX), "emoji": false } }),
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": clip(&headline, SECTION_MAX) }, "fields": fields }),
    ];
    if let Some(reason) = get("reason") {
        blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": clip(&format!("*Why:* {}", mrkdwn_escape(&reason)), SECTION_MAX) } }));
    }
    if let (Some(template), Some(_)) = (&target.record_url, get("crm_id")) {
        let url = template.render(&vars, super::template::plain)?;
        if url.len() <= URL_MAX && reqwest::Url::parse(&url).is_ok() {
            blocks.push(json!({ "type": "actions", "elements": [{
                "type": "button", "text": { "type": "plain_text", "text": "Open in CRM" }, "url": url, "action_id": "oql_open_record"
            }] }));
        }
    }
    let as_of = get("as_of").unwrap_or_default();
    blocks.push(json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": format!("oql-sync · scored as of {as_of}") }] }));
    Ok(json!({ "text": clip(&headline, SECTION_MAX), "blocks": blocks, "unfurl_links": false }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_names_one_way_to_post() {
        let s = |v: &str| Some(v.to_owned());
        assert!(check_destination(s("HOOK").as_ref(), None, None, None).is_ok());
        assert!(check_destination(None, s("TOKEN").as_ref(), s("#leads").as_ref(), None).is_ok());
        assert_eq!(check_destination(None, s("TOKEN").as_ref(), None, None).unwrap_err().0, "token_env");
        assert_eq!(check_destination(s("HOOK").as_ref(), None, s("#x").as_ref(), None).unwrap_err().0, "channel");
        assert_eq!(check_destination(None, None, None, None).unwrap_err().0, "webhook_url_env");
    }

    #[test]
    fn mrkdwn_escapes_what_slack_would_read_as_markup() {
        assert_eq!(mrkdwn_escape("<!channel> & <https://x|y>"), "&lt;!channel&gt; &amp; &lt;https://x|y&gt;");
    }
}

/// `kind: slack_digest`: one message a run listing the companies whose stage changed
/// since the last run, grouped by the stage they reached. Schedule it daily.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackDigestConfig {
    pub name: String,
    #[allow(dead_code)]
    kind: String,
    pub schedule: crate::config::Schedule,
    /// A mapping that maps `stage` (the digest lists the changes of that field).
    pub mapping: String,
    #[serde(default)]
    pub webhook_url_env: Option<String>,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default = "super::webhook::default_dead_after")]
    pub dead_after: u32,
}

impl SlackDigestConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        check_destination(self.webhook_url_env.as_ref(), self.token_env.as_ref(), self.channel.as_ref(), self.api_url.as_ref())
    }
}

/// Lines a digest section lists before `…and N more` (a section holds 3000 characters).
const DIGEST_LINES: usize = 25;

pub struct SlackDigestSink {
    name: String,
    to: Destination,
    poster: SlackPoster,
}

impl SlackDigestSink {
    pub fn build(c: &SlackDigestConfig, mapping: &super::mapping::Mapping) -> Result<SlackDigestSink, SinkError> {
        if !mapping.fields.values().any(|f| f.from == super::mapping::Signal::Stage) {
            return Err(SinkError::Config(format!("{}: a Slack digest lists stage changes; its mapping needs a field `from: stage`", c.name)));
        }
        let to = Destination::resolve(c.webhook_url_env.as_ref(), c.token_env.as_ref(), c.channel.as_ref(), c.api_url.as_deref())?;
        Ok(SlackDigestSink { name: c.name.clone(), to, poster: SlackPoster::new(&c.name, c.retry)? })
    }
}

/// The digest of a batch's stage changes; `None` when it holds none.
pub fn digest_message(connector: &str, batch: &[super::WriteRecord]) -> Option<Value> {
    use crate::scoring::Stage;
    let changes: Vec<(&super::WriteRecord, Option<Stage>, Stage)> =
        batch.iter().filter_map(|r| r.stage_change.map(|(from, to)| (r, from, to))).collect();
    if changes.is_empty() {
        return None;
    }
    let title = format!("OQL stage changes: {} {}", changes.len(), if changes.len() == 1 { "company" } else { "companies" });
    let mut blocks = vec![json!({ "type": "header", "text": { "type": "plain_text", "text": title, "emoji": false } })];
    // The stages reached, highest first; in each, the highest scores first.
    for stage in Stage::ALL.iter().rev() {
        let mut reached: Vec<&(&super::WriteRecord, Option<Stage>, Stage)> = changes.iter().filter(|c| c.2 == *stage).collect();
        if reached.is_empty() {
            continue;
        }
        let score = |r: &super::WriteRecord| r.event["score"].as_f64().unwrap_or(0.0);
        reached.sort_by(|a, b| score(b.0).total_cmp(&score(a.0)).then_with(|| a.0.domain.cmp(&b.0.domain)));
        let mut lines: Vec<String> = reached
            .iter()
            .take(DIGEST_LINES)
            .map(|(r, from, _)| {
                format!("• {}: {} → {}, score {}", mrkdwn_escape(&r.domain), from.map_or("new", |f| f.as_str()), stage.as_str(), r.event["score"])
            })
            .collect();
        if reached.len() > DIGEST_LINES {
            lines.push(format!("…and {} more", reached.len() - DIGEST_LINES));
        }
        let text = format!("*→ {}* ({})\n{}", stage.as_str(), reached.len(), lines.join("\n"));
        blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": clip(&text, SECTION_MAX) } }));
    }
    blocks.push(json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": format!("oql-sync · {}", mrkdwn_escape(connector)) }] }));
    Some(json!({ "text": title, "blocks": blocks, "unfurl_links": false }))
}

impl super::Sink for SlackDigestSink {
    fn batch_size(&self) -> usize {
        500
    }

    fn stats(&self) -> crate::http::CallCounts {
        self.poster.stats()
    }

    /// Every company is "found": the digest keys its lines by domain.
    async fn resolve(&mut self, domains: &[String]) -> Result<HashMap<String, super::Match>, SinkError> {
        Ok(domains.iter().map(|d| (d.clone(), super::Match::Found(d.clone()))).collect())
    }

    async fn read(&mut self, _: &[(String, String)], _: &[String]) -> Result<HashMap<String, super::mapping::Desired>, SinkError> {
        Ok(HashMap::new())
    }

    /// One message for the batch's stage changes; the other changes (a score moving
    /// within its stage) are taken without a message. A refused post fails the whole
    /// batch, so the next run lists its changes again.
    async fn write(&mut self, batch: &[super::WriteRecord]) -> Result<Vec<super::WriteOutcome>, SinkError> {
        let posted = match digest_message(&self.name, batch) {
            Some(message) => self.poster.post(&self.to, &message).await,
            None => Ok(()),
        };
        Ok(batch
            .iter()
            .map(|r| match &posted {
                Ok(()) => super::WriteOutcome::Written { crm_id: r.domain.clone(), created: false },
                Err(e) => super::WriteOutcome::Failed(e.to_string()),
            })
            .collect())
    }

    async fn fire(&mut self, firing: &Firing, _: Option<&str>) -> Result<(), SinkError> {
        Err(SinkError::Api(format!("a Slack digest cannot run the action {}", firing.action)))
    }
}
