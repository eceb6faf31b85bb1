//! A Slack Web API emulator for `users.list` and `conversations.history`: cursor
//! paging (`response_metadata.next_cursor`), `oldest`, `has_more`, errors as HTTP 200
//! with `{"ok": false, "error": …}` (`invalid_auth`, `not_in_channel`,
//! `channel_not_found`), and 429 + `Retry-After`. A "restricted" mode plays an app
//! outside the Marketplace: one `conversations.history` call per window, 15 messages
//! at most. Shapes: <https://api.slack.com/methods/users.list>,
//! <https://api.slack.com/methods/conversations.history>,
//! <https://api.slack.com/apis/rate-limits>.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub query: BTreeMap<String, String>,
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    token: String,
    members: Vec<Value>,
    /// channel → (bot is a member, messages as (ts, user))
    channels: BTreeMap<String, (bool, Vec<(String, String)>)>,
    restricted: Option<(Duration, u64)>,
    last_history: Option<Instant>,
    requests: Vec<Recorded>,
}

type Shared = Arc<Mutex<Inner>>;

pub struct Slack {
    /// Base of the Web API (`…/api`).
    pub url: String,
    state: Shared,
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
        self.lock().members.push(json!({"id": id, "team_id": "T0EMUL", "name": id.to_lowercase(), "deleted": false, "is_bot": is_bot,
            "updated": 1790000000, "profile": {"real_name": id, "display_name": id, "email": email}}));
    }
    pub fn channel(&self, id: &str, bot_is_member: bool) {
        self.lock().channels.insert(id.into(), (bot_is_member, Vec::new()));
    }
    pub fn message(&self, channel: &str, ts: &str, user: &str) {
        self.lock().channels.get_mut(channel).unwrap().1.push((ts.into(), user.into()));
    }
    /// Plays an app outside the Marketplace: one history call per `window`, 15 messages.
    pub fn restrict(&self, window: Duration, retry_after_secs: u64) {
        self.lock().restricted = Some((window, retry_after_secs));
    }
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }
}

async fn handle(State(state): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let method = uri.path().rsplit('/').next().unwrap_or_default().to_owned();
    let query: BTreeMap<String, String> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut s = state.lock().unwrap();
    let authed = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {}", s.token)[..]);
    let mut retry_after = None;
    let (status, body) = if !authed {
        (200, json!({"ok": false, "error": "invalid_auth"}))
    } else {
        match method.as_str() {
            "users.list" => {
                let limit: usize = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
                let start: usize = query.get("cursor").filter(|c| !c.is_empty()).and_then(|c| c.strip_prefix("dXNlcjo").and_then(|n| n.parse().ok())).unwrap_or(0);
                let page: Vec<Value> = s.members.iter().skip(start).take(limit).cloned().collect();
                let next = if start + limit < s.members.len() { format!("dXNlcjo{}", start + limit) } else { String::new() };
                (200, json!({"ok": true, "members": page, "cache_ts": 1790000000, "response_metadata": {"next_cursor": next}}))
            }
            "conversations.history" => {
                let now = Instant::now();
                let restricted = s.restricted;
                let too_soon = restricted.is_some_and(|(w, _)| s.last_history.is_some_and(|t| now.duration_since(t) < w));
                if too_soon {
                    retry_after = restricted.map(|(_, r)| r);
                    (429, json!({"ok": false, "error": "ratelimited"}))
                } else {
                    s.last_history = Some(now);
                    let channel = query.get("channel").cloned().unwrap_or_default();
                    match s.channels.get(&channel) {
                        None => (200, json!({"ok": false, "error": "channel_not_found"})),
                        Some((false, _)) => (200, json!({"ok": false, "error": "not_in_channel"})),
                        Some((true, msgs)) => {
                            let mut limit: usize = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
                            if restricted.is_some() {
                                limit = limit.min(15);
                            }
                            let oldest: f64 = query.get("oldest").and_then(|o| o.parse().ok()).unwrap_or(0.0);
                            let mut newest_first: Vec<&(String, String)> = msgs.iter().filter(|(ts, _)| ts.parse::<f64>().unwrap() > oldest).collect();
                            newest_first.sort_by(|a, b| b.0.cmp(&a.0));
                            let start: usize = query.get("cursor").filter(|c| !c.is_empty()).and_then(|c| c.strip_prefix("bmV4dDo").and_then(|n| n.parse().ok())).unwrap_or(0);
                            let page: Vec<Value> = newest_first
                                .iter()
                                .skip(start)
                                .take(limit)
                                .map(|(ts, user)| json!({"type": "message", "user": user, "text": "hello", "ts": ts}))
                                .collect();
                            let more = start + limit < newest_first.len();
                            let next = if more { format!("bmV4dDo{}", start + limit) } else { String::new() };
                            (200, json!({"ok": true, "messages": page, "has_more": more, "pin_count": 0, "response_metadata": {"next_cursor": next}}))
                        }
                    }
                }
            }
            _ => (200, json!({"ok": false, "error": "unknown_method"})),
        }
    };
    s.requests.push(Recorded { method, query, status });
    drop(s);
    let mut response = (StatusCode::from_u16(status).unwrap(), body.to_string()).into_response();
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json; charset=utf-8"));
    if let Some(r) = retry_after {
        response.headers_mut().insert("retry-after", HeaderValue::from_str(&r.to_string()).unwrap());
    }
    response
}
