//! The one HTTP client every connector uses: a governor rate limiter per connector (and
//! per endpoint class, such as HubSpot's stricter search limit), retries with
//! exponential backoff and full jitter on 5xx, timeouts and connection errors, waits
//! that honour `Retry-After` and the rate-limit headers and bodies APIs send, a retry
//! budget per run, and tracing spans that never carry a secret or a query string.
//!
//! Connectors describe requests and read responses; none of them loops or sleeps.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;
use tracing::Instrument;

use crate::auth::{Auth, AuthError};

/// `rate_limit: { requests: 100, per_seconds: 10 }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub requests: NonZeroU32,
    pub per_seconds: NonZeroU32,
}

impl RateLimit {
    pub fn new(requests: u32, per_seconds: u32) -> RateLimit {
        RateLimit {
            requests: NonZeroU32::new(requests.max(1)).expect("non-zero"),
            per_seconds: NonZeroU32::new(per_seconds.max(1)).expect("non-zero"),
        }
    }

    /// A GCRA quota that never lets more than `requests` through in any sliding window
    /// of `per_seconds` (the way HubSpot and others count): a burst of a tenth of the
    /// limit, then one request every `window / (limit - burst + 1)`, so a window holds
    /// the burst plus `limit - burst` more. A plain "burst = limit" quota would allow
    /// almost twice the limit in a window that starts with the burst. The window is
    /// stretched by 5% so network jitter cannot squeeze one more into the server's.
    pub fn quota(self) -> Quota {
        let n = self.requests.get();
        let burst = (n / 10).max(1);
        let window = Duration::from_secs(self.per_seconds.get() as u64) * 21 / 20;
        let period = window / (n - burst + 1);
        Quota::with_period(period)
            .expect("period is positive")
            .allow_burst(NonZeroU32::new(burst).expect("non-zero"))
    }
}

/// `retry:` in a connector file.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Retries of one request after 5xx, timeouts and connection errors.
    pub max_retries: u32,
    /// Waits for one request on 429 before it is given up for this run.
    pub max_rate_limited: u32,
    /// Retries (of all kinds) one run may spend; once spent, requests fail fast and the
    /// records they carry are retried next run.
    pub budget: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// The longest wait a server may ask for (Retry-After and the like) before the
    /// request is given up for this run.
    pub max_wait_ms: u64,
    pub timeout_ms: u64,
    /// The first wait after a GitHub secondary rate limit that names no time (no
    /// `retry-after`, requests remaining); it doubles on each repeat. GitHub asks for at
    /// least a minute.
    pub secondary_limit_wait_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            max_rate_limited: 10,
            budget: 200,
            base_delay_ms: 500,
            max_delay_ms: 30_000,
            max_wait_ms: 120_000,
            timeout_ms: 30_000,
            secondary_limit_wait_ms: 60_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{method} {url}: {message}")]
    Transport { method: String, url: String, message: String },
    #[error("{method} {url}: still rate limited after {waits} waits ({status})")]
    RateLimited { method: String, url: String, waits: u32, status: u16 },
    #[error("{method} {url}: the run's retry budget is spent")]
    BudgetSpent { method: String, url: String },
    #[error("{method} {url}: HTTP {status}: {body}")]
    Status { method: String, url: String, status: u16, body: String },
    #[error("{method} {url}: cannot read the response: {message}")]
    Decode { method: String, url: String, message: String },
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl HttpError {
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } | HttpError::RateLimited { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Counters a run reports in the sync log.
#[derive(Debug, Default)]
pub struct HttpStats {
    pub calls: AtomicI64,
    /// Every wait for a rate limit: the server's and the client's own pacing.
    pub rate_limit_waits: AtomicI64,
    /// Waits the server imposed: a 429 (or GitHub's 403 limits) and the time it named.
    pub server_waits: AtomicI64,
    /// Waits of the client's own pacing (its configured rate, or a window a header
    /// said is spent) before a request went out.
    pub pacing_waits: AtomicI64,
    pub retries: AtomicI64,
    /// Answers that said "rate limited" (429, or GitHub's 403 limits).
    pub throttled: AtomicI64,
}

/// What a run's requests cost, for the sync log and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallCounts {
    pub calls: i64,
    pub server_waits: i64,
    pub pacing_waits: i64,
}

impl HttpStats {
    pub fn calls(&self) -> i64 {
        self.calls.load(Ordering::Relaxed)
    }
    pub fn rate_limit_waits(&self) -> i64 {
        self.rate_limit_waits.load(Ordering::Relaxed)
    }
    pub fn counts(&self) -> CallCounts {
        CallCounts {
            calls: self.calls(),
            server_waits: self.server_waits.load(Ordering::Relaxed),
            pacing_waits: self.pacing_waits.load(Ordering::Relaxed),
        }
    }
}

pub enum Body {
    None,
    Json(Value),
    Form(Vec<(String, String)>),
}

/// A request as a connector describes it.
pub struct Request<'a> {
    pub method: reqwest::Method,
    pub url: String,
    /// Which limiter paces it (`"default"` or a connector-specific class like `"search"`).
    pub class: &'static str,
    pub body: Body,
    pub auth: Option<&'a Auth>,
    pub headers: Vec<(&'static str, String)>,
    /// Whether sending it twice does no harm (updates, upserts, reads). A request that
    /// is not (a create) is sent again only when it surely never reached the server: a
    /// failed connect, a 429 or a 401 before a new token. After a timeout, a connection
    /// lost mid-request or a 5xx the server may have applied it, so the error goes back
    /// to the caller, whose next run finds what was made instead of making it twice.
    pub repeatable: bool,
}

impl<'a> Request<'a> {
    pub fn new(method: reqwest::Method, url: String) -> Request<'a> {
        Request { method, url, class: "default", body: Body::None, auth: None, headers: Vec::new(), repeatable: true }
    }
    /// Marks a request that must not be sent twice (see `repeatable`).
    pub fn not_repeatable(mut self) -> Self {
        self.repeatable = false;
        self
    }
    pub fn json(mut self, body: Value) -> Self {
        self.body = Body::Json(body);
        self
    }
    pub fn auth(mut self, auth: &'a Auth) -> Self {
        self.auth = Some(auth);
        self
    }
    pub fn class(mut self, class: &'static str) -> Self {
        self.class = class;
        self
    }
    pub fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// A response with its body read.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub url: String,
    pub method: String,
}

impl Response {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| HttpError::Decode {
            method: self.method.clone(),
            url: self.url.clone(),
            message: e.to_string(),
        })
    }

    /// The body as text, shortened, for error messages and the sync log.
    pub fn body_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        match text.char_indices().nth(500) {
            Some((i, _)) => format!("{}…", &text[..i]),
            None => text.to_owned(),
        }
    }

    pub fn into_error(self) -> HttpError {
        HttpError::Status { body: self.body_text(), method: self.method, url: self.url, status: self.status }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A URL without its query string or credentials, and without any secret in its path
/// (a webhook URL from `url_env`): safe to log.
pub fn redact_url(url: &str) -> String {
    let mut u = match reqwest::Url::parse(url) {
        Ok(u) => u,
        Err(_) => return crate::redaction::redact(url.split(['?', '#']).next().unwrap_or_default()).into_owned(),
    };
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    crate::redaction::redact(u.as_str()).into_owned()
}

/// One class's limit: governor paces requests evenly (GCRA), and a log of the last
/// sends holds any request that would put more than the limit into one window, even
/// when a late send lets GCRA catch up.
struct Limiter {
    gcra: Arc<DefaultDirectRateLimiter>,
    limit: usize,
    window: Duration,
    sent: Mutex<std::collections::VecDeque<Instant>>,
}

impl Limiter {
    fn new(l: RateLimit) -> Limiter {
        Limiter {
            gcra: Arc::new(RateLimiter::direct(l.quota())),
            limit: l.requests.get() as usize,
            window: Duration::from_secs(l.per_seconds.get() as u64) * 21 / 20,
            sent: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// Waits until this class may send (GCRA, then the send log).
    async fn ready(&self) {
        self.gcra.until_ready().await;
        loop {
            let wait = {
                let mut sent = self.sent.lock().await;
                let now = Instant::now();
                while sent.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
                    sent.pop_front();
                }
                match sent.front() {
                    Some(oldest) if sent.len() >= self.limit => *oldest + self.window,
                    _ => return,
                }
            };
            tokio::time::sleep_until(wait.into()).await;
        }
    }

    /// Whether a send now stays inside the window.
    async fn room(&self) -> bool {
        let sent = self.sent.lock().await;
        let now = Instant::now();
        sent.iter().filter(|t| now.duration_since(**t) < self.window).count() < self.limit
    }

    async fn record(&self, at: Instant) {
        self.sent.lock().await.push_back(at);
    }
}

pub struct HttpClient {
    client: reqwest::Client,
    connector: String,
    limiters: HashMap<&'static str, Limiter>,
    policy: RetryPolicy,
    budget: AtomicI64,
    /// Set when an API said its window is used up: nothing is sent before then.
    not_before: Mutex<Option<Instant>>,
    pub stats: HttpStats,
}

impl HttpClient {
    pub fn new(
        connector: &str,
        limits: &[(&'static str, RateLimit)],
        policy: RetryPolicy,
    ) -> Result<HttpClient, HttpError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(policy.timeout_ms))
            .connect_timeout(Duration::from_millis(policy.timeout_ms.min(10_000)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("oql-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Transport {
                method: String::new(),
                url: String::new(),
                message: e.without_url().to_string(),
            })?;
        Ok(HttpClient {
            client,
            connector: connector.to_owned(),
            limiters: limits.iter().map(|(class, l)| (*class, Limiter::new(*l))).collect(),
            policy,
            budget: AtomicI64::new(policy.budget as i64),
            not_before: Mutex::new(None),
            stats: HttpStats::default(),
        })
    }

    pub fn reqwest(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends a request, waiting and retrying as the policy says. Returns the final
    /// response whatever its status, except 429s and 5xx that outlast the retries.
    pub async fn send(&self, req: Request<'_>) -> Result<Response, HttpError> {
        let safe_url = redact_url(&req.url);
        let method = req.method.to_string();
        let span = tracing::debug_span!("http", connector = %self.connector, %method, url = %safe_url);
        self.send_inner(req, &safe_url, &method).instrument(span).await
    }

    async fn send_inner(&self, req: Request<'_>, safe_url: &str, method: &str) -> Result<Response, HttpError> {
        let mut retries = 0u32;
        let mut waits = 0u32;
        let mut refreshed = false;
        loop {
            self.pace(req.class).await;
            let mut builder = self.client.request(req.method.clone(), &req.url);
            for (name, value) in &req.headers {
                builder = builder.header(*name, value);
            }
            if let Some(auth) = req.auth {
                let token = auth.bearer(&self.client).await?;
                let mut value = HeaderValue::from_str(&format!("Bearer {}", secrecy::ExposeSecret::expose_secret(&token)))
                    .map_err(|_| AuthError::Invalid("the access token is not a valid header value".into()))?;
                value.set_sensitive(true);
                builder = builder.header(reqwest::header::AUTHORIZATION, value);
            }
            builder = match &req.body {
                Body::None => builder,
                Body::Json(v) => builder.json(v),
                Body::Form(f) => builder.form(f),
            };
            self.stats.calls.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let result = builder.send().await;
            let response = match result {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let headers = r.headers().clone();
                    match r.bytes().await {
                        // A body that echoes the request (a 401 quoting the token, a 500
                        // quoting the URL) loses the secrets before anything reads it.
                        Ok(body) => Ok(Response {
                            status,
                            headers,
                            body: crate::redaction::redact_bytes(body.to_vec()),
                            url: safe_url.to_owned(),
                            method: method.to_owned(),
                        }),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    let message = describe(&e);
                    tracing::debug!(error = %message, "request failed");
                    if retries >= self.policy.max_retries || (!req.repeatable && !e.is_connect()) {
                        return Err(HttpError::Transport { method: method.into(), url: safe_url.into(), message });
                    }
                    self.spend_retry(method, safe_url)?;
                    retries += 1;
                    tokio::time::sleep(self.backoff(retries)).await;
                    continue;
                }
            };
            tracing::debug!(status = response.status, ms = started.elapsed().as_millis() as u64, "response");
            self.note_window(&response).await;
            match response.status {
                401 if !refreshed && req.auth.is_some_and(|a| a.refreshable()) => {
                    // Tokens are renewed ahead of their expiry; a 401 all the same (a
                    // revoked or shortened session) gets one new token, as a last resort.
                    tracing::warn!(connector = %self.connector, "the API refused an access token before its expiry; minting a new one");
                    refreshed = true;
                    req.auth.expect("checked").invalidate().await;
                    continue;
                }
                // GitHub answers its secondary limits, and a spent primary limit, with 403
                // plus `retry-after` or `x-ratelimit-remaining: 0`.
                // <https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>
                429 | 403 if response.status == 429 || is_rate_limited_403(&response) => {
                    self.stats.rate_limit_waits.fetch_add(1, Ordering::Relaxed);
                    self.stats.server_waits.fetch_add(1, Ordering::Relaxed);
                    self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                    if is_daily_limit(&response) {
                        return Err(response.into_error());
                    }
                    let wait = server_wait(&response)
                        .or_else(|| primary_reset(&response))
                        .or_else(|| is_secondary_limit(&response).then(|| self.secondary_wait(waits)))
                        .unwrap_or_else(|| self.backoff(waits + 1));
                    if waits >= self.policy.max_rate_limited || wait > Duration::from_millis(self.policy.max_wait_ms) {
                        return Err(HttpError::RateLimited {
                            method: method.into(),
                            url: safe_url.into(),
                            waits,
                            status: response.status,
                        });
                    }
                    self.spend_retry(method, safe_url)?;
                    waits += 1;
                    tracing::info!(connector = %self.connector, wait_ms = wait.as_millis() as u64, "rate limited; waiting");
                    // The refusal's own word on when to come back replaces any longer hold
                    // its headers implied (HubSpot sends `Retry-After: 1` with a spent
                    // ten-second window); the limiters pace what follows.
                    self.hold_exactly(Instant::now() + wait).await;
                }
                500..=599 => {
                    if retries >= self.policy.max_retries || !req.repeatable {
                        return Err(response.into_error());
                    }
                    self.spend_retry(method, safe_url)?;
                    retries += 1;
                    let wait = server_wait(&response).unwrap_or_else(|| self.backoff(retries));
                    tokio::time::sleep(wait.min(Duration::from_millis(self.policy.max_wait_ms))).await;
                }
                _ => return Ok(response),
            }
        }
    }

    fn spend_retry(&self, method: &str, url: &str) -> Result<(), HttpError> {
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        if self.budget.fetch_sub(1, Ordering::Relaxed) <= 0 {
            return Err(HttpError::BudgetSpent { method: method.into(), url: url.into() });
        }
        Ok(())
    }

    /// GitHub's wait for a secondary limit that names no time: "wait for at least one
    /// minute", then "an exponentially increasing amount of time between retries".
    /// <https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit>
    fn secondary_wait(&self, waits: u32) -> Duration {
        Duration::from_millis(self.policy.secondary_limit_wait_ms.saturating_mul(1u64 << waits.min(20)))
    }

    /// Exponential backoff with full jitter: a random wait up to `base * 2^(n-1)`, capped.
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .policy
            .base_delay_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(20))
            .min(self.policy.max_delay_ms)
            .max(1);
        Duration::from_millis(rand::random_range(cap / 2..=cap))
    }

    /// Waits for the connector's limiter and for any window an API said is used up.
    async fn pace(&self, class: &'static str) {
        let started = Instant::now();
        let until = *self.not_before.lock().await;
        if let Some(until) = until {
            tokio::time::sleep_until(until.into()).await;
        }
        // Every class the request belongs to must have room at the moment it is sent,
        // and that moment is what each send log records.
        let classes: Vec<&Limiter> = ["default", class]
            .iter()
            .enumerate()
            .filter(|(i, c)| *i == 0 || **c != "default")
            .filter_map(|(_, c)| self.limiters.get(c))
            .collect();
        loop {
            for l in &classes {
                l.ready().await;
            }
            let mut all = true;
            for l in &classes {
                all &= l.room().await;
            }
            if all {
                break;
            }
        }
        let now = Instant::now();
        for l in &classes {
            l.record(now).await;
        }
        if started.elapsed() > Duration::from_millis(50) {
            self.stats.rate_limit_waits.fetch_add(1, Ordering::Relaxed);
            self.stats.pacing_waits.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Holds this client's requests until `until` without waiting here: a pace learned
    /// before the client existed (e.g. when another client last called the same
    /// endpoint, whose limit this one now keeps).
    pub async fn hold_from(&self, until: Instant) {
        let mut nb = self.not_before.lock().await;
        if nb.is_none_or(|t| t < until) {
            *nb = Some(until);
        }
    }

    /// Holds every request until `until`, no longer, and waits for it.
    async fn hold_exactly(&self, until: Instant) {
        *self.not_before.lock().await = Some(until);
        tokio::time::sleep_until(until.into()).await;
    }

    /// HubSpot tells how much of its window is left (`X-HubSpot-RateLimit-Remaining`,
    /// `-Interval-Milliseconds`); `X-RateLimit-Remaining`/`-Reset` elsewhere. When
    /// nothing is left, hold further requests until the window turns.
    /// <https://developers.hubspot.com/docs/guides/apps/api-usage/usage-details>
    async fn note_window(&self, r: &Response) {
        let remaining = |name: &str| r.header(name).and_then(|v| v.trim().parse::<i64>().ok());
        let hold = if remaining("x-hubspot-ratelimit-remaining") == Some(0) {
            r.header("x-hubspot-ratelimit-interval-milliseconds")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_millis)
        } else if remaining("x-hubspot-ratelimit-secondly-remaining") == Some(0) {
            Some(Duration::from_secs(1))
        } else if remaining("x-ratelimit-remaining") == Some(0) {
            r.header("x-ratelimit-reset").and_then(parse_reset)
        } else {
            None
        };
        if let Some(d) = hold {
            let d = d.min(Duration::from_millis(self.policy.max_wait_ms));
            let mut nb = self.not_before.lock().await;
            let until = Instant::now() + d;
            if nb.is_none_or(|t| t < until) {
                *nb = Some(until);
            }
        }
    }
}

/// `X-RateLimit-Reset`: seconds to wait, or an epoch second in the future.
fn parse_reset(v: &str) -> Option<Duration> {
    let n: u64 = v.trim().parse().ok()?;
    let now = chrono::Utc::now().timestamp() as u64;
    Some(if n > 1_000_000_000 { Duration::from_secs(n.saturating_sub(now)) } else { Duration::from_secs(n) })
}

fn is_rate_limited_403(r: &Response) -> bool {
    r.status == 403
        && (r.header("retry-after").is_some() || r.header("x-ratelimit-remaining").map(str::trim) == Some("0") || is_secondary_limit(r))
}

/// `X-RateLimit-Reset` counts only once the window is spent (`X-RateLimit-Remaining: 0`,
/// or no remaining count given): GitHub sends the reset on every answer, secondary
/// limits included, where it says nothing about when to try again.
fn primary_reset(r: &Response) -> Option<Duration> {
    match r.header("x-ratelimit-remaining").map(str::trim) {
        Some("0") | None => r.header("x-ratelimit-reset").and_then(parse_reset),
        Some(_) => None,
    }
}

/// GitHub's secondary limits (403 or 429) say so only in their message.
fn is_secondary_limit(r: &Response) -> bool {
    (r.status == 403 || r.status == 429)
        && serde_json::from_slice::<Value>(&r.body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(|m| m.to_ascii_lowercase()))
            .is_some_and(|m| m.contains("secondary rate limit") || m.contains("abuse detection"))
}

/// HubSpot's daily limit is not worth waiting for inside a run.
fn is_daily_limit(r: &Response) -> bool {
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v.get("policyName").and_then(|p| p.as_str()).map(|p| p == "DAILY"))
        .unwrap_or(false)
}

/// How long the server asked us to wait: `Retry-After` (seconds or an HTTP or ISO
/// date), a JSON body's `rateLimit.waitMs` (Common Room), or HubSpot's interval header
/// with its secondly/ten-secondly policy.
pub fn server_wait(r: &Response) -> Option<Duration> {
    if let Some(v) = r.header("retry-after") {
        let v = v.trim();
        if let Ok(secs) = v.parse::<f64>() {
            return Some(Duration::from_secs_f64(secs.max(0.0)));
        }
        let at = chrono::DateTime::parse_from_rfc2822(v).or_else(|_| chrono::DateTime::parse_from_rfc3339(v));
        if let Ok(at) = at {
            let ms = (at.timestamp_millis() - chrono::Utc::now().timestamp_millis()).max(0);
            return Some(Duration::from_millis(ms as u64));
        }
    }
    let body: Option<Value> = serde_json::from_slice(&r.body).ok();
    if let Some(ms) = body.as_ref().and_then(|b| b.pointer("/rateLimit/waitMs")).and_then(|v| v.as_u64()) {
        return Some(Duration::from_millis(ms));
    }
    let policy = body.as_ref().and_then(|b| b.get("policyName")).and_then(|p| p.as_str());
    match policy {
        Some("SECONDLY") => Some(Duration::from_secs(1)),
        Some(_) => r
            .header("x-hubspot-ratelimit-interval-milliseconds")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_millis),
        None => None,
    }
}

/// A transport error without its URL (which may carry a query string).
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "connection broke while reading the response"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    let text = if detail.is_empty() { kind.to_owned() } else { format!("{kind}: {detail}") };
    crate::redaction::redact(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_never_admits_more_than_the_limit_in_any_window() {
        for (n, secs) in [(100u32, 10u32), (4, 1), (5, 1), (1, 1), (200, 60)] {
            let q = RateLimit::new(n, secs).quota();
            let window = Duration::from_secs(secs as u64);
            // A burst at t=0, then one per period strictly inside the window.
            let period = q.replenish_interval();
            let after_burst = (window.as_nanos() - 1) / period.as_nanos();
            let admitted = q.burst_size().get() as u128 + after_burst;
            assert!(admitted <= n as u128, "{n}/{secs}s admits {admitted}");
            assert!(admitted * 10 >= n as u128 * 9, "{n}/{secs}s wastes capacity: {admitted}");
        }
    }

    #[test]
    fn urls_lose_query_strings_and_credentials() {
        assert_eq!(redact_url("https://user:pw@api.x.com/a/b?hapikey=secret#f"), "https://api.x.com/a/b");
        assert_eq!(redact_url("not a url?token=1"), "not a url");
    }

    fn response(headers: &[(&str, &str)], body: &str) -> Response {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        Response { status: 429, headers: map, body: body.as_bytes().to_vec(), url: String::new(), method: String::new() }
    }

    #[test]
    fn server_waits_come_from_retry_after_bodies_and_hubspot_policies() {
        assert_eq!(server_wait(&response(&[("retry-after", "3")], "")), Some(Duration::from_secs(3)));
        let later = (chrono::Utc::now() + chrono::TimeDelta::seconds(5)).to_rfc2822();
        let wait = server_wait(&response(&[("retry-after", &later)], "")).unwrap();
        assert!(wait > Duration::from_secs(3) && wait <= Duration::from_secs(5), "{wait:?}");
        assert_eq!(server_wait(&response(&[], r#"{"rateLimit":{"waitMs":1500}}"#)), Some(Duration::from_millis(1500)));
        assert_eq!(server_wait(&response(&[], r#"{"policyName":"SECONDLY"}"#)), Some(Duration::from_secs(1)));
        assert_eq!(
            server_wait(&response(&[("x-hubspot-ratelimit-interval-milliseconds", "10000")], r#"{"policyName":"TEN_SECONDLY_ROLLING"}"#)),
            Some(Duration::from_secs(10))
        );
        assert_eq!(server_wait(&response(&[], "{}")), None);
    }
}
