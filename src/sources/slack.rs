//! Slack (Web API, bot token): members from `users.list` (only each email's domain is
//! kept), joins as members new since the last poll (`slack_join`), and the messages of
//! the configured channels (`slack_message`): top-level messages from
//! `conversations.history`, and thread replies from `conversations.replies`.
//!
//! History is read newest first from the last message seen (`oldest`), with cursor
//! paging; the channel's position moves once every page of the window is stored.
//! Replies never move their parent up the channel: only the parent's `latest_reply`
//! says a thread moved. So each poll also reads again the history of the last
//! `thread_window_days` (a page shows up to 200 parents' `latest_reply`), and every
//! thread whose parent announced a reply not yet read is asked for its replies, oldest
//! first from the last one stored; threads older than the window but active within it
//! are asked directly. A thread's position moves with each page of its replies, in the
//! same transaction (`store::slack_threads`).
//!
//! People: deactivated members (`deleted: true`) and Slack Connect users of other
//! organizations (absent from `users.list`; `users.info` tells their email when their
//! organization shares it) are people too: their messages count, attributed by email
//! domain when there is one. Bots and apps are not.
//!
//! Limits (<https://api.slack.com/apis/rate-limits>): `users.list` is Tier 2,
//! `conversations.history` and `conversations.replies` Tier 3, `users.info` Tier 4; a
//! 429 carries `Retry-After` (honoured by `http.rs`). Apps distributed outside the
//! Slack Marketplace since May 2025 get one call a minute of each of
//! `conversations.history` and `conversations.replies`, with `limit` at most 15
//! (<https://api.slack.com/changelog/2025-05-terms-rate-limit-update-and-faq>): set
//! `history_pacing: restricted`, or leave `auto` and the first 429 of either switches
//! the source to that pace, remembered in the store; the call after the switch waits
//! out the restricted interval from the last one. Errors come as HTTP 200 with
//! `{"ok": false, "error": …}` (`not_in_channel`, `invalid_auth`, `channel_not_found`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::github::{PollError, PollSummary};
use crate::activity::{Action, Activity, normalize_domain};
use crate::attribution::AttributionRules;
use crate::auth::{Auth, secret_source};
use crate::config::Schedule;
use crate::http::{HttpClient, RateLimit, Request, RetryPolicy};
use crate::store::{NewActivity, SlackThread, Store, ThreadMark};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Pacing {
    /// Tier 3 until Slack says otherwise.
    #[default]
    Auto,
    Normal,
    /// One `conversations.history` and one `conversations.replies` call a minute, 15
    /// messages a call.
    Restricted,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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
    /// A first poll reads messages only this many days back, and the thread window
    /// never reaches back before then.
    #[serde(default)]
    pub backfill_days: Option<u32>,
    /// Threads are followed for new replies while their parent or their latest reply
    /// is at most this many days old (0: only the replies of parents read for the
    /// first time, or read again after a pause).
    #[serde(default = "default_thread_window")]
    pub thread_window_days: u32,
    #[serde(default = "default_rate")]
    pub rate_limit: RateLimit,
    /// The pace of `conversations.history` and `conversations.replies` (Tier 3).
    #[serde(default = "default_history_rate")]
    pub history_rate_limit: RateLimit,
    /// Their pace for apps outside the Marketplace.
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
fn default_history_rate() -> RateLimit {
    // Tier 3 allows 50 a minute.
    RateLimit::new(50, 60)
}
fn default_thread_window() -> u32 {
    7
}

impl SlackConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        crate::config::check_url("base_url", &self.base_url)?;
        crate::config::check_token(self.token_env.as_ref(), self.token_file.as_ref())
    }
}

/// A Slack timestamp (`ts`): the message's id within its channel and the time it was
/// posted, as seconds and microseconds (`1700000000.123456`). Read exactly: through
/// an `f64` the nanoseconds would be off by up to a few hundred.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Ts {
    nanos: i64,
    /// As Slack writes it (six fraction digits), to send back and to compare as text.
    text: String,
}

impl Ts {
    fn parse(ts: &str) -> Option<Ts> {
        let (secs, frac) = ts.split_once('.').unwrap_or((ts, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if secs.is_empty() || secs.len() > 11 || frac.len() > 6 || !digits(secs) || !digits(frac) {
            return None;
        }
        let secs: i64 = secs.parse().ok()?;
        let micros: i64 = format!("{frac:0<6}").parse().ok()?;
        Some(Ts { nanos: secs * 1_000_000_000 + micros * 1_000, text: format!("{secs}.{micros:06}") })
    }

    fn of_time(t: chrono::DateTime<chrono::Utc>) -> Ts {
        Ts::parse(&t.timestamp().to_string()).expect("a whole second is a valid ts")
    }
}

/// Members seen so far (id → email domain), people of other organizations looked up
/// (the same), bots, and the pace Slack imposed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Members {
    known: BTreeMap<String, Option<String>>,
    #[serde(default)]
    bots: BTreeSet<String>,
    #[serde(default)]
    pacing: Pacing,
}

/// A method Slack paces on its own (Tier 3, or one call a minute for apps outside the
/// Marketplace): its client, and when its last call came back.
struct Paced {
    client: HttpClient,
    restricted: bool,
    last_call: Option<Instant>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// `users.list`, `users.info`.
    Users,
    History,
    Replies,
}

pub struct SlackSource<'a> {
    config: &'a SlackConfig,
    store: &'a Store,
    rules: &'a AttributionRules,
    http: HttpClient,
    history: Paced,
    replies: Paced,
    auth: Auth,
    base: String,
    summary: PollSummary,
    members: Members,
    /// Members changed since they were last stored (a person looked up).
    members_changed: bool,
    /// Calls made by clients since replaced by the restricted pace.
    /// What the clients replaced by slower ones had cost.
    retired: crate::http::CallCounts,
    /// Threads active since then are followed.
    window_start: Ts,
    /// History is never read before then (`backfill_days`).
    backfill_start: Option<Ts>,
}

impl<'a> SlackSource<'a> {
    pub fn build(config: &'a SlackConfig, file: &Path, store: &'a Store, rules: &'a AttributionRules) -> Result<SlackSource<'a>, PollError> {
        let dir = file.parent().and_then(Path::parent).unwrap_or(Path::new("."));
        let source = secret_source("token", config.token_env.as_ref(), config.token_file.as_ref(), dir).map_err(PollError::Api)?;
        let paced = || -> Result<Paced, PollError> {
            Ok(Paced { client: HttpClient::new(&config.name, &[("default", config.history_rate_limit)], config.retry)?, restricted: false, last_call: None })
        };
        let now = chrono::Utc::now();
        Ok(SlackSource {
            config,
            store,
            rules,
            http: HttpClient::new(&config.name, &[("default", config.rate_limit)], config.retry)?,
            history: paced()?,
            replies: paced()?,
            auth: Auth::Token(source.read(file, "token")?),
            base: config.base_url.trim_end_matches('/').to_owned(),
            summary: PollSummary::default(),
            members: Members::default(),
            members_changed: false,
            retired: Default::default(),
            window_start: Ts::of_time(now - chrono::TimeDelta::days(config.thread_window_days as i64)),
            backfill_start: config.backfill_days.map(|d| Ts::of_time(now - chrono::TimeDelta::days(d as i64))),
        })
    }

    /// Calls a Web API method and returns its answer, `ok: false` included.
    async fn call_raw(&mut self, endpoint: Endpoint, method: &str, query: &str) -> Result<Value, PollError> {
        if endpoint != Endpoint::Users && self.members.pacing == Pacing::Restricted {
            self.restrict().await?;
        }
        let request = Request::new(Method::GET, format!("{}/{method}?{query}", self.base)).auth(&self.auth);
        let (answer, throttled) = match endpoint {
            Endpoint::Users => (self.http.send(request).await, false),
            Endpoint::History | Endpoint::Replies => {
                let paced = if endpoint == Endpoint::History { &mut self.history } else { &mut self.replies };
                let before = paced.client.stats.throttled.load(std::sync::atomic::Ordering::Relaxed);
                let answer = paced.client.send(request).await;
                paced.last_call = Some(Instant::now());
                (answer, paced.client.stats.throttled.load(std::sync::atomic::Ordering::Relaxed) > before)
            }
        };
        // Slack answered 429 (and `http.rs` waited): an app outside the Marketplace.
        if throttled && self.members.pacing == Pacing::Auto {
            tracing::warn!(connector = %self.config.name, "{method} is limited to 1 call a minute: pacing to it from now on");
            self.members.pacing = Pacing::Restricted;
            let value = serde_json::to_string(&self.members).unwrap_or_default();
            self.store.set_cursor(&self.config.name, "members", &value).await?;
            self.members_changed = false;
        }
        answer?.json().map_err(|e| PollError::Api(format!("{method}: unreadable answer: {e}")))
    }

    /// Calls a Web API method; `ok: false` becomes an error naming Slack's code.
    async fn call(&mut self, endpoint: Endpoint, method: &str, query: &str) -> Result<Value, PollError> {
        let v = self.call_raw(endpoint, method, query).await?;
        refusal(method, &v).map_or(Ok(v), Err)
    }

    /// Puts both paced methods on the restricted pace. The first call on it waits the
    /// restricted interval from the method's last call: the fresh client's limiter has
    /// not seen that call, and Slack would answer a second 429.
    async fn restrict(&mut self) -> Result<(), PollError> {
        let limit = self.config.restricted_rate_limit;
        let interval = Duration::from_secs(limit.per_seconds.get() as u64) * 21 / 20 / limit.requests.get();
        for paced in [&mut self.history, &mut self.replies] {
            if paced.restricted {
                continue;
            }
            let client = HttpClient::new(&self.config.name, &[("default", limit)], self.config.retry)?;
            if let Some(last) = paced.last_call {
                client.hold_from(last + interval).await;
            }
            let c = paced.client.stats.counts();
            self.retired = crate::http::CallCounts { calls: self.retired.calls + c.calls, server_waits: self.retired.server_waits + c.server_waits, pacing_waits: self.retired.pacing_waits + c.pacing_waits };
            *paced = Paced { client, restricted: true, last_call: paced.last_call };
        }
        Ok(())
    }

    fn page_limit(&self) -> u32 {
        if self.members.pacing == Pacing::Restricted { 15 } else { 200 }
    }

    pub async fn poll(mut self) -> Result<PollSummary, PollError> {
        let name = self.config.name.clone();
        if let Some(text) = self.store.cursor(&name, "members").await? {
            self.members = serde_json::from_str(&text).unwrap_or_default();
        }
        let first_poll = self.members.known.is_empty();
        let mut joins = Vec::new();
        let mut cursor = String::new();
        loop {
            let v = match self.call(Endpoint::Users, "users.list", &format!("limit=200&cursor={cursor}")).await {
                Ok(v) => v,
                Err(e) => {
                    self.summary.errors.push(e.to_string());
                    // Without members nothing else can be attributed or trusted.
                    self.summary.add_counts(self.http.stats.counts());
                    return Ok(self.summary);
                }
            };
            for m in v["members"].as_array().cloned().unwrap_or_default() {
                let Some(id) = m["id"].as_str() else { continue };
                if m["is_bot"] == Value::Bool(true) || id == "USLACKBOT" {
                    self.members.bots.insert(member_key(id));
                    continue;
                }
                self.summary.fetched += 1;
                let domain = email_domain(&m);
                // A deactivated member stays a person whose messages count; that they
                // left is no join.
                let deactivated = m["deleted"] == Value::Bool(true);
                if !self.members.known.contains_key(&member_key(id)) && !first_poll && !deactivated {
                    let at = m["updated"].as_i64().map(|s| s * 1_000_000_000).unwrap_or_else(|| chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0));
                    joins.push(self.activity(format!("join:{id}"), Action::SlackJoin, id, domain.clone(), at));
                }
                self.members.known.insert(member_key(id), domain);
            }
            cursor = v["response_metadata"]["next_cursor"].as_str().unwrap_or_default().to_owned();
            if cursor.is_empty() {
                break;
            }
        }
        if self.config.history_pacing != Pacing::Auto {
            self.members.pacing = self.config.history_pacing;
        }
        let value = serde_json::to_string(&self.members).unwrap_or_default();
        let outcome = self.store.insert_with_cursor(&joins, &[], Some((&name, "members", &value))).await?;
        self.summary.inserted += outcome.inserted;

        for channel in self.config.channels.clone() {
            let polled = match self.poll_channel(&channel).await {
                Ok(seen_after) => self.poll_threads(&channel, &seen_after).await,
                Err(e) => Err(e),
            };
            if let Err(e) = polled {
                if let PollError::Store(e) = e {
                    return Err(PollError::Store(e));
                }
                self.summary.errors.push(format!("{channel}: {e}"));
            }
        }
        for c in [self.http.stats.counts(), self.history.client.stats.counts(), self.replies.client.stats.counts(), self.retired] {
            self.summary.add_counts(c);
        }
        Ok(self.summary)
    }

    fn activity(&self, id: String, action: Action, user: &str, domain: Option<String>, at: i64) -> NewActivity {
        let mut activity = Activity::community("slack", id, action, user, at).redacted();
        activity.email_domain = domain;
        let company = self.rules.attribute(None, activity.actor.as_deref(), activity.email_domain.as_deref(), activity.occurred_at);
        NewActivity { activity, company }
    }

    /// Who said a message, when a person did: their id and email domain. Joins, topic
    /// changes and other subtypes are not a person talking, nor are bots and apps.
    /// Someone `users.list` did not list (a person of another organization in a Slack
    /// Connect channel) is looked up once with `users.info` and remembered.
    async fn speaker(&mut self, m: &Value) -> Result<Option<(String, Option<String>)>, PollError> {
        let Some(user) = m["user"].as_str() else { return Ok(None) };
        let talk = matches!(m["subtype"].as_str(), None | Some("thread_broadcast" | "file_share" | "me_message"));
        if !talk || m.get("bot_id").is_some_and(|b| !b.is_null()) || self.members.bots.contains(&member_key(user)) {
            return Ok(None);
        }
        if let Some(domain) = self.members.known.get(&member_key(user)) {
            return Ok(Some((user.to_owned(), domain.clone())));
        }
        let v = self.call_raw(Endpoint::Users, "users.info", &format!("user={user}")).await?;
        self.members_changed = true;
        match v["error"].as_str() {
            None if v["ok"] == Value::Bool(true) => {
                if v["user"]["is_bot"] == Value::Bool(true) {
                    self.members.bots.insert(member_key(user));
                    return Ok(None);
                }
                let domain = email_domain(&v["user"]);
                self.members.known.insert(member_key(user), domain.clone());
                Ok(Some((user.to_owned(), domain)))
            }
            // Their organization does not show them to ours: a person all the same.
            Some("user_not_found" | "user_not_visible") => {
                self.members.known.insert(member_key(user), None);
                Ok(Some((user.to_owned(), None)))
            }
            _ => Err(refusal("users.info", &v).unwrap_or_else(|| PollError::Api("users.info: unknown_error".into()))),
        }
    }

    /// A message's activity (and the fetched count), when a person said it.
    async fn message(&mut self, channel: &str, m: &Value, ts: &Ts) -> Result<Option<NewActivity>, PollError> {
        let Some((user, domain)) = self.speaker(m).await? else { return Ok(None) };
        self.summary.fetched += 1;
        Ok(Some(self.activity(format!("msg:{channel}:{}", ts.text), Action::SlackMessage, &user, domain, ts.nanos)))
    }

    /// Stores one page with the members, when a look-up changed them.
    async fn store_page(&mut self, channel: &str, acts: &[NewActivity], threads: &[ThreadMark]) -> Result<(), PollError> {
        let members = self.members_changed.then(|| serde_json::to_string(&self.members).unwrap_or_default());
        let cursor = members.as_deref().map(|m| ("members", m));
        let outcome = self.store.insert_slack_page(&self.config.name, channel, acts, threads, cursor).await?;
        self.members_changed = false;
        self.summary.inserted += outcome.inserted;
        Ok(())
    }

    /// Reads the channel's history from the last message seen, or from the start of
    /// the thread window when that is earlier (so that parents show their latest
    /// replies), and notes every thread. Returns the `oldest` it read after.
    async fn poll_channel(&mut self, channel: &str) -> Result<Ts, PollError> {
        let name = self.config.name.clone();
        let key = format!("channel:{channel}");
        let zero = Ts::parse("0").expect("valid");
        let start = match self.store.cursor(&name, &key).await? {
            Some(ts) => Ts::parse(&ts).ok_or_else(|| PollError::Api(format!("stored position `{ts}` is not a Slack ts")))?,
            None => self.backfill_start.clone().unwrap_or_else(|| zero.clone()),
        };
        let recheck = self.window_start.clone().max(self.backfill_start.clone().unwrap_or(zero));
        let oldest = start.clone().min(recheck);
        let mut newest = start;
        let mut cursor = String::new();
        loop {
            let query = format!("channel={channel}&oldest={}&limit={}&cursor={cursor}", oldest.text, self.page_limit());
            let v = self.call(Endpoint::History, "conversations.history", &query).await?;
            let mut acts = Vec::new();
            let mut threads = Vec::new();
            for m in v["messages"].as_array().cloned().unwrap_or_default() {
                let Some(ts) = m["ts"].as_str().and_then(Ts::parse) else { continue };
                let is_parent = m["thread_ts"].as_str() == Some(m["ts"].as_str().unwrap_or_default());
                if let (true, Some(latest)) = (is_parent, m["latest_reply"].as_str().and_then(Ts::parse)) {
                    threads.push(ThreadMark { thread_ts: ts.text.clone(), latest_reply: latest.text, read_to: None });
                }
                acts.extend(self.message(channel, &m, &ts).await?);
                newest = newest.max(ts);
            }
            self.store_page(channel, &acts, &threads).await?;
            cursor = v["response_metadata"]["next_cursor"].as_str().unwrap_or_default().to_owned();
            if cursor.is_empty() || v["has_more"] != Value::Bool(true) {
                break;
            }
        }
        // Messages come newest first: the channel's position moves only once every page
        // of the window is stored, so a crash re-reads the window (ids dedupe) and skips
        // nothing.
        self.store.set_cursor(&name, &key, &newest.text).await?;
        Ok(oldest)
    }

    /// Reads the new replies of the channel's threads that moved, or may have.
    async fn poll_threads(&mut self, channel: &str, seen_after: &Ts) -> Result<(), PollError> {
        let name = self.config.name.clone();
        for thread in self.store.slack_threads_due(&name, channel, &self.window_start.text, &seen_after.text).await? {
            self.read_thread(channel, &thread).await?;
        }
        self.store.forget_slack_threads(&name, channel, &self.window_start.text, None).await?;
        Ok(())
    }

    /// Reads a thread's replies after the last one stored, oldest first
    /// (<https://api.slack.com/methods/conversations.replies>): each page is stored
    /// with the thread's new position, so a poll killed between pages goes on from
    /// there. The parent comes first on the first page; it is a channel message,
    /// read with the history.
    async fn read_thread(&mut self, channel: &str, thread: &SlackThread) -> Result<(), PollError> {
        let mut read_to = Ts::parse(&thread.read_to).ok_or_else(|| PollError::Api(format!("stored thread position `{}` is not a Slack ts", thread.read_to)))?;
        let oldest = read_to.text.clone();
        let mut latest_reply = thread.latest_reply.clone();
        let mut cursor = String::new();
        loop {
            let query = format!("channel={channel}&ts={}&oldest={oldest}&limit={}&cursor={cursor}", thread.thread_ts, self.page_limit());
            let v = self.call_raw(Endpoint::Replies, "conversations.replies", &query).await?;
            if v["error"] == "thread_not_found" {
                // The parent was deleted with its thread.
                return Ok(self.store.forget_slack_threads(&self.config.name, channel, &self.window_start.text, Some(&thread.thread_ts)).await?);
            }
            if let Some(e) = refusal("conversations.replies", &v) {
                return Err(e);
            }
            let mut acts = Vec::new();
            for m in v["messages"].as_array().cloned().unwrap_or_default() {
                let Some(ts) = m["ts"].as_str().and_then(Ts::parse) else { continue };
                if ts.text == thread.thread_ts {
                    if let Some(latest) = m["latest_reply"].as_str().and_then(Ts::parse) {
                        latest_reply = latest_reply.max(latest.text);
                    }
                    continue;
                }
                if ts <= read_to {
                    continue;
                }
                acts.extend(self.message(channel, &m, &ts).await?);
                read_to = ts;
            }
            let mark = ThreadMark { thread_ts: thread.thread_ts.clone(), latest_reply: latest_reply.clone(), read_to: Some(read_to.text.clone()) };
            self.store_page(channel, &acts, &[mark]).await?;
            cursor = v["response_metadata"]["next_cursor"].as_str().unwrap_or_default().to_owned();
            if cursor.is_empty() || v["has_more"] != Value::Bool(true) {
                return Ok(());
            }
        }
    }
}

/// The error an `ok: false` answer carries, naming Slack's code.
fn refusal(method: &str, v: &Value) -> Option<PollError> {
    if v["ok"] == Value::Bool(true) {
        return None;
    }
    let error = v["error"].as_str().unwrap_or("unknown_error");
    let needed = v["needed"].as_str().map(|n| format!(" (needs scope {n})")).unwrap_or_default();
    Some(PollError::Api(format!("{method}: {error}{needed}")))
}

/// The domain of a user object's `profile.email`, when Slack gives it.
/// How a member is remembered in the store: their id, unless it holds personal data
/// (never a real Slack id), then its hash, as their activities name them.
fn member_key(id: &str) -> String {
    crate::activity::redact_personal_data(id).into_owned()
}

fn email_domain(user: &Value) -> Option<String> {
    user["profile"]["email"].as_str().and_then(|e| e.rsplit_once('@')).and_then(|(_, d)| normalize_domain(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ts_is_read_exactly_into_nanoseconds() {
        let ts = Ts::parse("1700000000.123457").unwrap();
        assert_eq!(ts.nanos, 1_700_000_000_123_457_000);
        assert_eq!(ts.text, "1700000000.123457");
        assert_eq!(Ts::parse("1700000000.5").unwrap().text, "1700000000.500000");
        assert_eq!(Ts::parse("1700000000").unwrap().nanos, 1_700_000_000_000_000_000);
        for bad in ["", ".5", "17e9", "-1.000000", "1700000000.1234567", "1700000000.12a456"] {
            assert!(Ts::parse(bad).is_none(), "{bad}");
        }
        assert!(Ts::parse("1700000000.000002") > Ts::parse("1700000000.000001"));
    }
}
