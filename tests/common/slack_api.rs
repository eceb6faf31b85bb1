//! A Slack Web API emulator for `users.list`, `users.info`, `conversations.history` and
//! `conversations.replies`, shaped after Slack's OpenAPI description
//! (`slackapi/slack-api-specs`, `web-api/slack_web_openapi_v2.json`) and method pages:
//! - cursor paging (`response_metadata.next_cursor`, opaque, positioned by timestamp as
//!   Slack's `next_ts:` cursors are, so a message landing between two requests shifts
//!   nothing); `oldest` is exclusive unless `inclusive`; `has_more`;
//! - history newest first, holding top-level messages and broadcast replies only; a
//!   thread's parent carries `thread_ts`, `reply_count`, `reply_users`,
//!   `latest_reply`, and a reply never moves the parent up the channel;
//! - replies oldest first, the parent first on the first page whatever `oldest` says,
//!   and counted against `limit`; `thread_not_found` for a `ts` the channel lacks;
//! - deactivated members listed with `deleted: true`; Slack Connect users from other
//!   organizations absent from `users.list`, their messages carrying `user_team`, and
//!   `users.info` answering with `is_stranger: true`, with or without
//!   `profile.email`, or `user_not_found`;
//! - errors as HTTP 200 with `{"ok": false, "error": …}` (`invalid_auth`,
//!   `not_in_channel`, `channel_not_found`), and 429 + `Retry-After`;
//! - a "restricted" mode playing an app outside the Marketplace: one call per window
//!   for each of `conversations.history` and `conversations.replies`, 15 items at most
//!   (<https://api.slack.com/changelog/2025-05-terms-rate-limit-update-and-faq>);
//! - messages that land after a given request, the way people post while a poll runs;
//! - posting: `chat.postMessage` (JSON body, bearer token; a channel by id or `#name`;
//!   `channel_not_found`, `not_in_channel`, `no_text`, `invalid_blocks` for blocks
//!   outside Block Kit's limits, `token_revoked` once revoked) and incoming webhooks
//!   (`/services/T/B/X`, answered `ok` or a status with the error code as plain text:
//!   404 `channel_not_found`, 403 `invalid_token`, 410 `channel_is_archived`, 400
//!   `no_text`/`invalid_blocks`, 404 `no_service`;
//!   <https://api.slack.com/messaging/webhooks#handling_errors>). A second post to a
//!   channel within a second of the last is refused with 429 and `Retry-After: 1`:
//!   Slack allows about one a second and may refuse any burst above it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::emulator::{Faults, take_fault};

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub query: BTreeMap<String, String>,
    pub status: u16,
    pub at: Instant,
}

/// A fault queued for a method (`""`: any).
#[derive(Clone, Debug)]
pub enum Fault {
    /// 429 with this `Retry-After` (seconds).
    RateLimited(u64),
    /// HTTP 200 with `{"ok": false, "error": code}`.
    Refused(&'static str),
}

#[derive(Clone, Debug)]
struct Message {
    ts: String,
    user: String,
    /// The thread it replies to (replies only).
    parent: Option<String>,
    /// A reply also sent to the channel (`subtype: thread_broadcast`).
    broadcast: bool,
    /// Posted by an app: `bot_id` set.
    bot: bool,
}

#[derive(Default)]
struct Channel {
    bot_is_member: bool,
    messages: Vec<Message>,
}

/// A user of another organization seen through Slack Connect.
#[derive(Clone)]
enum External {
    /// `users.info` answers, with the email when their organization shares it.
    Visible { team: String, email: Option<String> },
    /// `users.info` answers `user_not_found`.
    Hidden,
}

#[derive(Default)]
struct Inner {
    token: String,
    members: Vec<Value>,
    externals: BTreeMap<String, External>,
    channels: BTreeMap<String, Channel>,
    restricted: Option<(Duration, u64)>,
    /// Last answered call of each restricted method.
    last_call: BTreeMap<String, Instant>,
    faults: Faults<Fault>,
    /// Channel names (without `#`) → ids.
    names: BTreeMap<String, String>,
    /// Incoming webhooks by path: the channel they post to, or the error they answer.
    hooks: BTreeMap<String, Result<String, &'static str>>,
    revoked: bool,
    posted: Vec<Posted>,
    last_post: BTreeMap<String, Instant>,
    /// (method, answered calls of it after which it lands, channel, message).
    landings: Vec<(String, usize, String, Message)>,
    requests: Vec<Recorded>,
}

type Shared = Arc<Mutex<Inner>>;

/// A message Slack accepted.
#[derive(Clone, Debug)]
pub struct Posted {
    pub channel: String,
    pub body: Value,
    pub at: Instant,
    /// Through an incoming webhook (else `chat.postMessage`).
    pub webhook: bool,
}

pub struct Slack {
    /// Base of the Web API (`…/api`).
    pub url: String,
    state: Shared,
}

/// `ts` as (seconds, microseconds): Slack's `0123456789.012345`.
fn ts_key(ts: &str) -> (u64, u64) {
    let (s, f) = ts.split_once('.').unwrap_or((ts, "0"));
    let f = format!("{f:0<6}");
    (s.parse().unwrap_or(0), f[..6].parse().unwrap_or(0))
}

/// A timestamp `days` ago (now, less), with `seq` as its microseconds: tests post
/// messages relative to now, as thread following is.
pub fn ts_days_ago(days: f64, seq: u32) -> String {
    let secs = chrono::Utc::now().timestamp() - (days * 86_400.0) as i64;
    format!("{secs}.{seq:06}")
}

impl Slack {
    pub async fn start(token: &str) -> Slack {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api", listener.local_addr().unwrap());
        let state: Shared = Arc::new(Mutex::new(Inner { token: token.into(), ..Default::default() }));
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Slack { url, state }
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().unwrap()
    }
    pub fn member(&self, id: &str, email: Option<&str>, is_bot: bool) {
        self.lock().members.push(user_object(id, "T0EMUL", email, is_bot, false, false));
    }
    /// A deactivated member: still listed, with `deleted: true`.
    pub fn deactivated(&self, id: &str, email: Option<&str>) {
        self.lock().members.push(user_object(id, "T0EMUL", email, false, true, false));
    }
    /// A Slack Connect user of `team`: not in `users.list`; `users.info` gives the
    /// email only when `email` is `Some`.
    pub fn external(&self, id: &str, team: &str, email: Option<&str>) {
        self.lock().externals.insert(id.into(), External::Visible { team: team.into(), email: email.map(str::to_owned) });
    }
    /// A Slack Connect user whom `users.info` does not find.
    pub fn hidden_external(&self, id: &str) {
        self.lock().externals.insert(id.into(), External::Hidden);
    }
    pub fn channel(&self, id: &str, bot_is_member: bool) {
        self.lock().channels.insert(id.into(), Channel { bot_is_member, messages: Vec::new() });
    }
    pub fn message(&self, channel: &str, ts: &str, user: &str) {
        self.post(channel, Message { ts: ts.into(), user: user.into(), parent: None, broadcast: false, bot: false });
    }
    /// A message an app posted as its bot user (`bot_id` set).
    pub fn bot_message(&self, channel: &str, ts: &str, user: &str) {
        self.post(channel, Message { ts: ts.into(), user: user.into(), parent: None, broadcast: false, bot: true });
    }
    /// A reply in the thread of `parent` (a message of the channel).
    pub fn reply(&self, channel: &str, parent: &str, ts: &str, user: &str) {
        self.post(channel, Message { ts: ts.into(), user: user.into(), parent: Some(parent.into()), broadcast: false, bot: false });
    }
    /// A reply also sent to the channel ("Also send to #channel").
    pub fn broadcast_reply(&self, channel: &str, parent: &str, ts: &str, user: &str) {
        self.post(channel, Message { ts: ts.into(), user: user.into(), parent: Some(parent.into()), broadcast: true, bot: false });
    }
    /// Deletes a message and its whole thread: `conversations.replies` then answers
    /// `thread_not_found`.
    pub fn delete_thread(&self, channel: &str, ts: &str) {
        self.lock().channels.get_mut(channel).unwrap().messages.retain(|m| m.ts != ts && m.parent.as_deref() != Some(ts));
    }
    fn post(&self, channel: &str, m: Message) {
        self.lock().channels.get_mut(channel).unwrap().messages.push(m);
    }
    /// A reply (with `parent`) or message posted right after the `after`-th answered
    /// call of `method`: while a poll is between two requests.
    pub fn land_after(&self, method: &str, after: usize, channel: &str, parent: Option<&str>, ts: &str, user: &str) {
        let m = Message { ts: ts.into(), user: user.into(), parent: parent.map(str::to_owned), broadcast: false, bot: false };
        self.lock().landings.push((method.into(), after, channel.into(), m));
    }
    /// Plays an app outside the Marketplace: one call of each of `conversations.history`
    /// and `conversations.replies` per `window`, 15 items.
    pub fn restrict(&self, window: Duration, retry_after_secs: u64) {
        self.lock().restricted = Some((window, retry_after_secs));
    }
    /// The next `times` calls of `method` (`""`: any) fail this way.
    pub fn fail_next(&self, method: &str, fault: Fault, times: usize) {
        self.lock().faults.push_back((method.into(), fault, times));
    }
    /// A public channel the bot can post to by id or by `#name`.
    pub fn named_channel(&self, id: &str, name: &str, bot_is_member: bool) {
        self.channel(id, bot_is_member);
        self.lock().names.insert(name.into(), id.into());
    }
    /// An incoming webhook posting to `channel`; its URL.
    pub fn webhook(&self, channel: &str) -> String {
        let mut s = self.lock();
        let path = format!("/services/T0EMUL/B{:04}/x{}secret", s.hooks.len(), s.hooks.len());
        s.hooks.insert(path.clone(), Ok(channel.into()));
        format!("{}{path}", self.url.trim_end_matches("/api"))
    }
    /// From now on the webhook answers this error (`channel_not_found`, `invalid_token`,
    /// `channel_is_archived`).
    pub fn break_webhook(&self, url: &str, code: &'static str) {
        let path = url.trim_start_matches(self.url.trim_end_matches("/api")).to_owned();
        self.lock().hooks.insert(path, Err(code));
    }
    /// The bot token is revoked: every call answers `token_revoked`.
    pub fn revoke_token(&self) {
        self.lock().revoked = true;
    }
    pub fn posted(&self) -> Vec<Posted> {
        self.lock().posted.clone()
    }
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }
}

fn user_object(id: &str, team: &str, email: Option<&str>, is_bot: bool, deleted: bool, stranger: bool) -> Value {
    let mut profile = json!({"real_name": id, "display_name": id, "avatar_hash": "g0", "real_name_normalized": id,
        "display_name_normalized": id, "title": "", "phone": "", "skype": "", "status_text": "", "status_emoji": "", "fields": null, "team": team});
    if let Some(e) = email {
        profile["email"] = json!(e);
    }
    let mut user = json!({"id": id, "team_id": team, "name": id.to_lowercase(), "deleted": deleted, "is_bot": is_bot,
        "is_app_user": false, "updated": 1790000000, "profile": profile});
    if stranger {
        user["is_stranger"] = json!(true);
    }
    user
}

/// A message as `conversations.history`/`replies` give it.
fn message_json(m: &Message, replies: &[&Message], team_of: &dyn Fn(&str) -> Option<String>) -> Value {
    let mut v = json!({"type": "message", "user": m.user, "text": "hello", "ts": m.ts});
    if let Some(parent) = &m.parent {
        v["thread_ts"] = json!(parent);
        v["parent_user_id"] = json!("U0PARENT");
        if m.broadcast {
            v["subtype"] = json!("thread_broadcast");
        }
    } else if !replies.is_empty() {
        let mut users: Vec<&str> = replies.iter().map(|r| r.user.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        v["thread_ts"] = json!(m.ts);
        v["reply_count"] = json!(replies.len());
        v["reply_users"] = json!(users);
        v["reply_users_count"] = json!(users.len());
        v["latest_reply"] = json!(replies.iter().map(|r| &r.ts).max_by_key(|t| ts_key(t)));
        v["subscribed"] = json!(false);
    }
    if m.bot {
        v["bot_id"] = json!(format!("B{}", m.user));
        v["app_id"] = json!("A0EMUL");
    }
    if let Some(team) = team_of(&m.user) {
        v["user_team"] = json!(team);
        v["source_team"] = json!(team);
    }
    v
}

/// Opaque cursors holding the timestamp to continue from.
fn cursor_of(query: &BTreeMap<String, String>) -> Option<(u64, u64)> {
    query.get("cursor").filter(|c| !c.is_empty()).and_then(|c| c.strip_prefix("bmV4dF90czo")).map(ts_key)
}

fn answer(s: &mut Inner, method: &str, query: &BTreeMap<String, String>) -> (u16, Value, Option<u64>) {
    if let Some(fault) = take_fault(&mut s.faults, method) {
        return match fault {
            Fault::RateLimited(secs) => (429, json!({"ok": false, "error": "ratelimited"}), Some(secs)),
            Fault::Refused(code) => (200, json!({"ok": false, "error": code}), None),
        };
    }
    let restricted_method = method == "conversations.history" || method == "conversations.replies";
    let mut limit: usize = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100).max(1);
    if let (Some((window, retry_after)), true) = (s.restricted, restricted_method) {
        let now = Instant::now();
        if s.last_call.get(method).is_some_and(|t| now.duration_since(*t) < window) {
            return (429, json!({"ok": false, "error": "ratelimited"}), Some(retry_after));
        }
        s.last_call.insert(method.into(), now);
        limit = limit.min(15);
    }
    let externals = s.externals.clone();
    let team_of = move |user: &str| match externals.get(user) {
        Some(External::Visible { team, .. }) => Some(team.clone()),
        Some(External::Hidden) => Some("T0HIDDEN".to_string()),
        None => None,
    };
    match method {
        "users.list" => {
            let start: usize = query.get("cursor").filter(|c| !c.is_empty()).and_then(|c| c.strip_prefix("dXNlcjo").and_then(|n| n.parse().ok())).unwrap_or(0);
            let page: Vec<Value> = s.members.iter().skip(start).take(limit).cloned().collect();
            let next = if start + limit < s.members.len() { format!("dXNlcjo{}", start + limit) } else { String::new() };
            (200, json!({"ok": true, "members": page, "cache_ts": 1790000000, "response_metadata": {"next_cursor": next}}), None)
        }
        "users.info" => {
            let id = query.get("user").cloned().unwrap_or_default();
            if let Some(m) = s.members.iter().find(|m| m["id"] == json!(id)) {
                return (200, json!({"ok": true, "user": m}), None);
            }
            match s.externals.get(&id) {
                Some(External::Visible { team, email }) => {
                    (200, json!({"ok": true, "user": user_object(&id, team, email.as_deref(), false, false, true)}), None)
                }
                _ => (200, json!({"ok": false, "error": "user_not_found"}), None),
            }
        }
        "conversations.history" | "conversations.replies" => {
            let channel = query.get("channel").cloned().unwrap_or_default();
            let Some(c) = s.channels.get(&channel) else {
                return (200, json!({"ok": false, "error": "channel_not_found"}), None);
            };
            if !c.bot_is_member {
                return (200, json!({"ok": false, "error": "not_in_channel"}), None);
            }
            let inclusive = query.get("inclusive").is_some_and(|i| i == "true" || i == "1");
            let oldest = query.get("oldest").map(|o| ts_key(o)).unwrap_or((0, 0));
            let after_oldest = |ts: &str| if inclusive { ts_key(ts) >= oldest } else { ts_key(ts) > oldest };
            let replies_of = |parent: &str| -> Vec<&Message> {
                let mut r: Vec<&Message> = c.messages.iter().filter(|m| m.parent.as_deref() == Some(parent)).collect();
                r.sort_by_key(|m| ts_key(&m.ts));
                r
            };
            let (page, more, last) = if method == "conversations.history" {
                let mut top: Vec<&Message> = c.messages.iter().filter(|m| (m.parent.is_none() || m.broadcast) && after_oldest(&m.ts)).collect();
                top.sort_by_key(|m| std::cmp::Reverse(ts_key(&m.ts)));
                if let Some(before) = cursor_of(query) {
                    top.retain(|m| ts_key(&m.ts) < before);
                }
                let page: Vec<Value> = top.iter().take(limit).map(|m| message_json(m, &replies_of(&m.ts), &team_of)).collect();
                let last = top.iter().take(limit).next_back().map(|m| m.ts.clone());
                (page, top.len() > limit, last)
            } else {
                let ts = query.get("ts").cloned().unwrap_or_default();
                let Some(parent) = c.messages.iter().find(|m| m.ts == ts && m.parent.is_none()) else {
                    return (200, json!({"ok": false, "error": "thread_not_found"}), None);
                };
                let mut replies: Vec<&Message> = replies_of(&ts).into_iter().filter(|m| after_oldest(&m.ts)).collect();
                let after = cursor_of(query);
                if let Some(after) = after {
                    replies.retain(|m| ts_key(&m.ts) > after);
                }
                let mut page = Vec::new();
                if after.is_none() {
                    page.push(message_json(parent, &replies_of(&ts), &team_of));
                }
                let room = limit.saturating_sub(page.len()).max(1);
                page.extend(replies.iter().take(room).map(|m| message_json(m, &[], &team_of)));
                let last = replies.iter().take(room).next_back().map(|m| m.ts.clone());
                (page, replies.len() > room, last)
            };
            let next = if more { format!("bmV4dF90czo{}", last.unwrap_or_default()) } else { String::new() };
            let mut body = json!({"ok": true, "messages": page, "has_more": more, "response_metadata": {"next_cursor": next}});
            if method == "conversations.history" {
                body["pin_count"] = json!(0);
                body["channel_actions_ts"] = Value::Null;
                body["channel_actions_count"] = json!(0);
            }
            (200, body, None)
        }
        _ => (200, json!({"ok": false, "error": "unknown_method"}), None),
    }
}

/// Block Kit's limits (<https://api.slack.com/reference/block-kit/blocks>): the first
/// breach, as Slack reports `invalid_blocks`.
fn block_kit_problem(blocks: &Value) -> Option<String> {
    let Some(blocks) = blocks.as_array() else { return Some("blocks is not an array".into()) };
    if blocks.len() > 50 {
        return Some("more than 50 blocks".into());
    }
    let text_len = |t: &Value| t["text"].as_str().map_or(usize::MAX, |s| s.chars().count());
    let text_ok = |t: &Value, max: usize| matches!(t["type"].as_str(), Some("plain_text" | "mrkdwn")) && text_len(t) >= 1 && text_len(t) <= max;
    for (i, b) in blocks.iter().enumerate() {
        let bad = match b["type"].as_str() {
            Some("header") => !(b["text"]["type"] == "plain_text" && text_ok(&b["text"], 150)),
            Some("section") => {
                let text = b.get("text").map(|t| text_ok(t, 3000));
                let fields = b.get("fields").and_then(Value::as_array).map(|f| f.len() <= 10 && f.iter().all(|t| text_ok(t, 2000)));
                !(text.unwrap_or(true) && fields.unwrap_or(true) && (text.is_some() || fields.is_some()))
            }
            Some("context") => !b["elements"].as_array().is_some_and(|e| !e.is_empty() && e.len() <= 10 && e.iter().all(|t| text_ok(t, 3000))),
            Some("actions") => !b["elements"].as_array().is_some_and(|e| {
                !e.is_empty() && e.len() <= 25 && e.iter().all(|x| {
                    x["type"] == "button" && x["text"]["type"] == "plain_text" && text_ok(&x["text"], 75)
                        && x["url"].as_str().is_none_or(|u| u.len() <= 3000 && (u.starts_with("http://") || u.starts_with("https://")))
                })
            }),
            Some("divider") => false,
            _ => true,
        };
        if bad {
            return Some(format!("block {i} breaks Block Kit's rules: {b}"));
        }
    }
    None
}

/// A message body as both ways of posting check it: `Err(code)`.
fn check_message(body: &Value) -> Result<(), &'static str> {
    let text = body["text"].as_str().unwrap_or_default();
    if text.is_empty() && body.get("blocks").is_none() {
        return Err("no_text");
    }
    if text.chars().count() > 40_000 {
        return Err("msg_too_long");
    }
    if let Some(blocks) = body.get("blocks")
        && block_kit_problem(blocks).is_some()
    {
        return Err("invalid_blocks");
    }
    Ok(())
}

/// Whether a post to `channel` now would exceed one a second; else records it.
fn paced(s: &mut Inner, channel: &str) -> bool {
    let now = Instant::now();
    if s.last_post.get(channel).is_some_and(|t| now.duration_since(*t) < Duration::from_secs(1)) {
        return false;
    }
    s.last_post.insert(channel.into(), now);
    true
}

fn post_message(s: &mut Inner, body: &Value) -> (u16, Value, Option<u64>) {
    let given = body["channel"].as_str().unwrap_or_default();
    let id = s.names.get(given.trim_start_matches('#')).cloned().unwrap_or_else(|| given.to_owned());
    let Some(channel) = s.channels.get(&id) else {
        return (200, json!({"ok": false, "error": "channel_not_found"}), None);
    };
    if !channel.bot_is_member {
        return (200, json!({"ok": false, "error": "not_in_channel"}), None);
    }
    if let Err(code) = check_message(body) {
        return (200, json!({"ok": false, "error": code}), None);
    }
    if !paced(s, &id) {
        return (429, json!({"ok": false, "error": "ratelimited"}), Some(1));
    }
    let ts = format!("{}.{:06}", chrono::Utc::now().timestamp(), s.posted.len());
    s.posted.push(Posted { channel: id.clone(), body: body.clone(), at: Instant::now(), webhook: false });
    let message = json!({"type": "message", "subtype": "bot_message", "text": body["text"], "ts": ts, "bot_id": "B0EMUL"});
    (200, json!({"ok": true, "channel": id, "ts": ts, "message": message}), None)
}

/// An incoming webhook's answer: (status, plain-text body, Retry-After).
fn hook_post(s: &mut Inner, path: &str, body: &[u8]) -> (u16, String, Option<u64>) {
    let channel = match s.hooks.get(path) {
        None => return (404, "no_service".into(), None),
        Some(Err(code)) => {
            let status = match *code {
                "invalid_token" | "action_prohibited" => 403,
                "channel_is_archived" => 410,
                _ => 404,
            };
            return (status, (*code).into(), None);
        }
        Some(Ok(channel)) => channel.clone(),
    };
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return (400, "invalid_payload".into(), None);
    };
    if let Err(code) = check_message(&body) {
        return (400, code.into(), None);
    }
    if !paced(s, &channel) {
        return (429, "rate_limited".into(), Some(1));
    }
    s.posted.push(Posted { channel, body, at: Instant::now(), webhook: true });
    (200, "ok".into(), None)
}

async fn handle(State(state): State<Shared>, uri: Uri, headers: HeaderMap, raw: axum::body::Bytes) -> Response {
    if uri.path().starts_with("/services/") {
        let (status, text, retry_after) = hook_post(&mut state.lock().unwrap(), uri.path(), &raw);
        let mut response = (StatusCode::from_u16(status).unwrap(), text).into_response();
        response.headers_mut().insert("content-type", HeaderValue::from_static("text/html"));
        if let Some(r) = retry_after {
            response.headers_mut().insert("retry-after", HeaderValue::from_str(&r.to_string()).unwrap());
        }
        return response;
    }
    let method = uri.path().rsplit('/').next().unwrap_or_default().to_owned();
    let query = super::emulator::form_decode(uri.query().unwrap_or_default());
    let mut s = state.lock().unwrap();
    let authed = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {}", s.token)[..]);
    let json_body = headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|c| c.starts_with("application/json"));
    let (status, body, retry_after) = if s.revoked {
        (200, json!({"ok": false, "error": "token_revoked"}), None)
    } else if !authed {
        (200, json!({"ok": false, "error": "invalid_auth"}), None)
    } else if method == "chat.postMessage" {
        match serde_json::from_slice::<Value>(&raw) {
            Ok(body) if json_body => post_message(&mut s, &body),
            _ => (200, json!({"ok": false, "error": "invalid_json"}), None),
        }
    } else {
        answer(&mut s, &method, &query)
    };
    s.requests.push(Recorded { method: method.clone(), query, status, at: Instant::now() });
    // Messages due to land once this many calls of their method were answered.
    let answered = s.requests.iter().filter(|r| r.method == method).count();
    let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut s.landings).into_iter().partition(|(m, n, _, _)| *m == method && *n <= answered);
    s.landings = later;
    for (_, _, channel, message) in due {
        s.channels.get_mut(&channel).unwrap().messages.push(message);
    }
    drop(s);
    let mut response = (StatusCode::from_u16(status).unwrap(), body.to_string()).into_response();
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json; charset=utf-8"));
    if let Some(r) = retry_after {
        response.headers_mut().insert("retry-after", HeaderValue::from_str(&r.to_string()).unwrap());
    }
    response
}
