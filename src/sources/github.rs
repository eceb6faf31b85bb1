//! GitHub (REST): stars (with their time), forks, issues, pull requests and issue
//! comments of the configured repos become `community` activities, with the login as
//! `actor`. Polls are incremental and resumable: every page's activities are committed
//! with the cursor that covers them; re-polls are conditional (`If-None-Match`), and a
//! 304 costs nothing against GitHub's rate limit.
//!
//! Per endpoint (<https://docs.github.com/en/rest>):
//! - stars: `GET /repos/{repo}/stargazers` with `application/vnd.github.star+json` (for
//!   `starred_at`); no `since`, oldest first: resume from the last page seen;
//! - forks: `GET /repos/{repo}/forks?sort=oldest`: same;
//! - issues: `GET /repos/{repo}/issues?state=all&sort=updated&direction=asc&since=`
//!   (pull requests appear there too and are skipped: the pulls endpoint has them);
//! - pulls: `GET /repos/{repo}/pulls?state=all&sort=updated&direction=desc`: no `since`,
//!   so pages are read until an item older than the checkpoint;
//! - comments: `GET /repos/{repo}/issues/comments?sort=updated&direction=asc&since=`;
//! - reactions: `GET /repos/{repo}/issues/{number}/reactions` for issues and pull
//!   requests of the issues pages whose `reactions.total_count` is not zero.
//!
//! Paging follows the `Link` header. Profiles (`GET /users/{login}`) are cached with
//! their ETag and give attribution rule 4: public email domain, then `blog` domain, then
//! `company` (an `@org` handle mapped in attribution.yaml, or a known company's name).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::activity::{Action, Activity, normalize_domain};
use crate::attribution::AttributionRules;
use crate::auth::{Auth, secret_source};
use crate::config::Schedule;
use crate::http::{HttpClient, RateLimit, Request, Response, RetryPolicy};
use crate::store::{GithubPage, GithubProfile, NewActivity, PendingReactions, Store, StoreError};

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitHubConfig {
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
    /// `owner/name` of each repository.
    pub repos: Vec<String>,
    /// A first poll reads only this many days back.
    #[serde(default)]
    pub backfill_days: Option<u32>,
    /// Cached profiles are revalidated (conditionally) after this many days.
    #[serde(default = "default_refresh")]
    pub profile_refresh_days: u32,
    #[serde(default = "default_rate")]
    pub rate_limit: RateLimit,
    #[serde(default)]
    pub retry: RetryPolicy,
}

fn default_base_url() -> String {
    "https://api.github.com".into()
}
fn default_refresh() -> u32 {
    7
}
fn default_rate() -> RateLimit {
    RateLimit::new(10, 1)
}

impl GitHubConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        crate::config::check_url("base_url", &self.base_url)?;
        if let Some(bad) = self.repos.iter().find(|r| r.split('/').count() != 2 || r.split('/').any(str::is_empty)) {
            return Err(("repos".into(), format!("`{bad}` is not `owner/name`")));
        }
        crate::config::check_token(self.token_env.as_ref(), self.token_file.as_ref())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Api(String),
    /// The API refused the token itself (401): no other request can do better.
    #[error("{0}")]
    Unauthorized(String),
}

impl PollError {
    /// Causes that end the whole poll: every further request would meet them too, and
    /// requests sent while rate limited risk a ban of the integration.
    fn stops_poll(&self) -> bool {
        matches!(
            self,
            PollError::Unauthorized(_)
                | PollError::Http(crate::http::HttpError::RateLimited { .. } | crate::http::HttpError::BudgetSpent { .. })
        )
    }
}

/// What a poll of one source did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PollSummary {
    pub fetched: u64,
    pub inserted: u64,
    pub api_calls: i64,
    pub not_modified: i64,
    /// Waits for a rate limit: the two below together.
    pub rate_limit_waits: i64,
    /// Waits the API imposed (429, `Retry-After`, secondary limits).
    pub server_waits: i64,
    /// Waits of the connector's own pacing.
    pub pacing_waits: i64,
    /// Problems that stopped one part (a repo, an endpoint) while the rest went on;
    /// each cause once.
    pub errors: Vec<String>,
}

impl PollSummary {
    /// Adds what one HTTP client's requests cost.
    pub fn add_counts(&mut self, c: crate::http::CallCounts) {
        self.api_calls += c.calls;
        self.server_waits += c.server_waits;
        self.pacing_waits += c.pacing_waits;
        self.rate_limit_waits = self.server_waits + self.pacing_waits;
    }
}

impl PollSummary {
    /// Adds a problem unless the same one is already reported.
    pub fn report(&mut self, message: String) {
        if !self.errors.contains(&message) {
            self.errors.push(message);
        }
    }
}

/// Items a page holds at most (`per_page`, GitHub's maximum).
const PER_PAGE: usize = 100;

/// Where one endpoint of one repo stands. Holds no URL: the next poll builds its
/// requests on the configured `base_url`, so moving it (say, to a proxy) moves them.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Cursor {
    /// Stars and forks: the last page that held items, read again (conditionally)
    /// next poll since new items are appended to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    page: Option<u32>,
    /// Stars and forks: whether that page was full, so that new items land on the next
    /// one, which an unchanged (304) page cannot tell.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    full: bool,
    /// The ETag of a response whose items are all stored: a 304 to it means nothing new.
    #[serde(default)]
    etag: Option<String>,
    /// For `since` endpoints and pulls: the newest `updated_at` seen.
    #[serde(default)]
    since: Option<String>,
    /// Cursors before version 2 kept the page as an absolute URL (read for its page
    /// number only) and, for issues, pulls and comments, an ETag that could cover
    /// items never read (dropped).
    #[serde(default, skip_serializing)]
    url: Option<String>,
    #[serde(default)]
    v: u8,
}

pub struct GitHubSource<'a> {
    config: &'a GitHubConfig,
    store: &'a Store,
    rules: &'a AttributionRules,
    http: HttpClient,
    auth: Auth,
    base: String,
    now: DateTime<Utc>,
    logins: BTreeSet<String>,
    /// Issues whose reactions this poll already queued, with the `updated_at` then: a
    /// re-read of the same issue queues nothing more.
    queued_reactions: HashSet<(String, i64, String)>,
    /// Repos whose pending reactions failed this poll: not tried again until the next.
    reactions_failed: HashSet<String>,
    /// How the token is configured, for the message of a 401.
    token_name: String,
    summary: PollSummary,
}

#[derive(Clone, Copy)]
enum Endpoint {
    Stars,
    Forks,
    Issues,
    Pulls,
    Comments,
}

impl Endpoint {
    const ALL: [Endpoint; 5] = [Endpoint::Stars, Endpoint::Forks, Endpoint::Issues, Endpoint::Pulls, Endpoint::Comments];

    fn key(self) -> &'static str {
        match self {
            Endpoint::Stars => "stars",
            Endpoint::Forks => "forks",
            Endpoint::Issues => "issues",
            Endpoint::Pulls => "pulls",
            Endpoint::Comments => "comments",
        }
    }

    fn accept(self) -> &'static str {
        match self {
            Endpoint::Stars => "application/vnd.github.star+json",
            _ => "application/vnd.github+json",
        }
    }
}

impl<'a> GitHubSource<'a> {
    pub fn build(
        config: &'a GitHubConfig,
        file: &Path,
        store: &'a Store,
        rules: &'a AttributionRules,
    ) -> Result<GitHubSource<'a>, PollError> {
        let dir = file.parent().and_then(Path::parent).unwrap_or(Path::new("."));
        let source = secret_source("token", config.token_env.as_ref(), config.token_file.as_ref(), dir).map_err(PollError::Api)?;
        let token_name = match (&config.token_env, &config.token_file) {
            (Some(var), _) => format!("the token in ${var}"),
            (None, Some(path)) => format!("the token in {}", path.display()),
            (None, None) => "the token".to_owned(),
        };
        Ok(GitHubSource {
            config,
            store,
            rules,
            http: HttpClient::new(&config.name, &[("default", config.rate_limit)], config.retry)?,
            auth: Auth::Token(source.read(file, "token")?),
            base: config.base_url.trim_end_matches('/').to_owned(),
            now: Utc::now(),
            logins: BTreeSet::new(),
            queued_reactions: HashSet::new(),
            reactions_failed: HashSet::new(),
            token_name,
            summary: PollSummary::default(),
        })
    }

    /// Polls every repo and endpoint once; one failing repo or endpoint is reported and
    /// the others go on, except for causes every request would meet (a rejected token,
    /// a rate limit), which end the poll with one message.
    pub async fn poll(mut self) -> Result<PollSummary, PollError> {
        let mut stopped = false;
        'repos: for repo in &self.config.repos {
            for endpoint in Endpoint::ALL {
                match self.poll_endpoint(repo, endpoint).await {
                    Ok(()) => {}
                    Err(PollError::Store(e)) => return Err(PollError::Store(e)),
                    Err(e) if e.stops_poll() => {
                        self.stop(&e);
                        stopped = true;
                        break 'repos;
                    }
                    Err(e) => {
                        let message = format!("{repo} {}: {e}", endpoint.key());
                        tracing::warn!(connector = %self.config.name, "{message}");
                        self.summary.report(message);
                        // A missing repo fails every endpoint alike: say it once.
                        if e.to_string().contains("(HTTP 404)") {
                            break;
                        }
                    }
                }
            }
        }
        if !stopped {
            match self.refresh_profiles().await {
                Err(e) if e.stops_poll() => self.stop(&e),
                Err(e) => return Err(e),
                Ok(()) => {}
            }
        }
        // What cached profiles say places this poll's activities even when fetching
        // more had to wait.
        attribute_profiles(self.store, self.rules, &self.logins).await?;
        self.summary.add_counts(self.http.stats.counts());
        Ok(self.summary)
    }

    /// Reports a cause that ends the poll, once.
    fn stop(&mut self, e: &PollError) {
        let message = match e {
            PollError::Unauthorized(_) => format!("{e}; polling stopped"),
            _ => format!("{e}; polling stopped until the next run (work left is resumed then)"),
        };
        tracing::warn!(connector = %self.config.name, "{message}");
        self.summary.report(message);
    }

    async fn get(&mut self, url: &str, etag: Option<&str>, accept: &str) -> Result<Response, PollError> {
        let mut req = Request::new(Method::GET, url.to_owned())
            .auth(&self.auth)
            .header("accept", accept.to_owned())
            .header("x-github-api-version", "2022-11-28".to_owned());
        if let Some(etag) = etag {
            req = req.header("if-none-match", etag.to_owned());
        }
        let r = self.http.send(req).await?;
        if r.status == 304 {
            self.summary.not_modified += 1;
            return Ok(r);
        }
        if !r.ok() {
            // GitHub's errors carry a `message` (and the scope hints in headers).
            let message = r
                .json::<Value>()
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| r.body_text());
            if r.status == 401 {
                return Err(PollError::Unauthorized(format!(
                    "GitHub rejected {} ({message}, HTTP 401): check that it is set and still valid",
                    self.token_name
                )));
            }
            let hint = match (r.status, r.header("x-accepted-github-permissions")) {
                (403, Some(p)) => format!(" (the token needs: {p})"),
                _ => String::new(),
            };
            return Err(PollError::Api(format!("{message}{hint} (HTTP {})", r.status)));
        }
        Ok(r)
    }

    fn first_url(&self, repo: &str, endpoint: Endpoint, since: Option<&str>) -> String {
        let b = &self.base;
        let since = since.map(|s| format!("&since={s}")).unwrap_or_default();
        match endpoint {
            Endpoint::Stars => format!("{b}/repos/{repo}/stargazers?per_page={PER_PAGE}"),
            Endpoint::Forks => format!("{b}/repos/{repo}/forks?sort=oldest&per_page={PER_PAGE}"),
            Endpoint::Issues => format!("{b}/repos/{repo}/issues?state=all&sort=updated&direction=asc&per_page={PER_PAGE}{since}"),
            Endpoint::Pulls => format!("{b}/repos/{repo}/pulls?state=all&sort=updated&direction=desc&per_page={PER_PAGE}"),
            Endpoint::Comments => format!("{b}/repos/{repo}/issues/comments?sort=updated&direction=asc&per_page={PER_PAGE}{since}"),
        }
    }

    /// The oldest time stored: `backfill_days` back from now, on every poll (a later
    /// poll re-reads old items too: a stars page, an old issue that got a comment).
    fn backfill_start(&self) -> Option<DateTime<Utc>> {
        self.config.backfill_days.map(|d| self.now - chrono::TimeDelta::days(d as i64))
    }

    async fn poll_endpoint(&mut self, repo: &str, endpoint: Endpoint) -> Result<(), PollError> {
        let key = format!("{repo}:{}", endpoint.key());
        let mut cursor: Cursor = match self.store.cursor(&self.config.name, &key).await? {
            Some(text) => serde_json::from_str(&text).unwrap_or_default(),
            None => Cursor::default(),
        };
        if cursor.v < 2 {
            cursor.page = cursor.page.or_else(|| cursor.url.as_deref().and_then(page_number));
            if !matches!(endpoint, Endpoint::Stars | Endpoint::Forks) {
                cursor.etag = None;
            }
            cursor.v = 2;
        }
        match endpoint {
            Endpoint::Stars | Endpoint::Forks => self.poll_pages(repo, endpoint, &key, cursor).await,
            Endpoint::Issues | Endpoint::Comments => {
                if matches!(endpoint, Endpoint::Issues) {
                    self.drain_reactions(repo).await?;
                }
                self.poll_since(repo, endpoint, &key, cursor).await
            }
            Endpoint::Pulls => self.poll_pulls(repo, &key, cursor).await,
        }
    }

    /// Stars and forks: no `since`, oldest first, so new items are appended to the last
    /// page. It is read again with its ETag; when it was full, a 304 says nothing about
    /// what follows it, so the next page is asked for too.
    async fn poll_pages(&mut self, repo: &str, endpoint: Endpoint, key: &str, mut cursor: Cursor) -> Result<(), PollError> {
        let mut page = cursor.page.unwrap_or(1).max(1);
        let mut etag = cursor.etag.clone();
        let mut full = cursor.full;
        loop {
            let url = format!("{}&page={page}", self.first_url(repo, endpoint, None));
            let r = self.get(&url, etag.as_deref(), endpoint.accept()).await?;
            if r.status == 304 {
                if !full {
                    return Ok(());
                }
                (page, etag, full) = (page + 1, None, false);
                continue;
            }
            let items: Vec<Value> = r.json().map_err(|e| PollError::Api(format!("unreadable page: {e}")))?;
            let has_next = next_link(r.header("link")).is_some();
            let page_etag = r.header("etag").map(str::to_owned);
            if items.is_empty() {
                if page > 1 && cursor.page == Some(page) {
                    // Items were removed (unstarred, forks deleted) and the list shrank
                    // below the page: step back to the page that now ends it.
                    page -= 1;
                    (etag, full) = (None, false);
                    cursor.page = Some(page);
                    continue;
                }
                if cursor.page.is_none() {
                    // Nothing yet: the empty first page's ETag makes the next poll free.
                    cursor = Cursor { page: Some(1), etag: page_etag, v: 2, ..Cursor::default() };
                    self.store.set_cursor(&self.config.name, key, &serde_json::to_string(&cursor).unwrap_or_default()).await?;
                }
                // Past a full last page: nothing after it yet.
                return Ok(());
            }
            let news = self.read_items(repo, endpoint, &items, None).0;
            // The last page is kept with its ETag; before it, the next page to read.
            cursor = match has_next {
                true => Cursor { page: Some(page + 1), v: 2, ..Cursor::default() },
                false => Cursor { page: Some(page), full: items.len() >= PER_PAGE, etag: page_etag, v: 2, ..Cursor::default() },
            };
            self.commit(key, &cursor, news, &[]).await?;
            if !has_next {
                return Ok(());
            }
            (page, etag, full) = (page + 1, None, false);
        }
    }

    /// Issues and comments: `since` the newest `updated_at` stored, oldest first. The
    /// ETag kept is that of the very request the next poll makes, and only once its
    /// items are stored: when the window moved, its new first page is read (items
    /// and all) before an ETag is kept, so nothing that landed between two requests
    /// hides behind a 304.
    async fn poll_since(&mut self, repo: &str, endpoint: Endpoint, key: &str, mut cursor: Cursor) -> Result<(), PollError> {
        let backfill = self.backfill_start().map(|b| b.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let mut since = match (cursor.since.clone(), backfill) {
            (Some(s), Some(b)) => Some(s.max(b)),
            (s, b) => s.or(b),
        };
        let mut etag = cursor.etag.clone();
        // Each round reads the window from its start; more than a few rounds means
        // items keep landing, and the next poll goes on from where this one stopped.
        for _ in 0..3 {
            let mut url = self.first_url(repo, endpoint, since.as_deref());
            let mut newest = since.clone();
            let (mut pages, mut first_etag) = (0, None);
            loop {
                let r = self.get(&url, if pages == 0 { etag.as_deref() } else { None }, endpoint.accept()).await?;
                if r.status == 304 {
                    return Ok(());
                }
                pages += 1;
                let items: Vec<Value> = r.json().map_err(|e| PollError::Api(format!("unreadable page: {e}")))?;
                let next = next_link(r.header("link"));
                if pages == 1 {
                    first_etag = r.header("etag").map(str::to_owned);
                }
                let (news, page_newest, _) = self.read_items(repo, endpoint, &items, None);
                newest = newest.max(page_newest);
                cursor = Cursor { since: newest.clone(), v: 2, ..Cursor::default() };
                let due = self.reactions_due(repo, endpoint, &items);
                self.commit(key, &cursor, news, &due).await?;
                if !due.is_empty() {
                    self.drain_reactions(repo).await?;
                }
                match next {
                    Some(n) => url = n,
                    None => break,
                }
            }
            if pages == 1 && newest == since {
                cursor.etag = first_etag;
                self.store.set_cursor(&self.config.name, key, &serde_json::to_string(&cursor).unwrap_or_default()).await?;
                return Ok(());
            }
            (since, etag) = (newest, None);
        }
        Ok(())
    }

    /// Pulls: no `since`, newest first: pages are read until an item older than the
    /// checkpoint. The first page's ETag is kept with the new checkpoint: its items are
    /// stored, and any update moves a pull request to its top, so a 304 means none.
    async fn poll_pulls(&mut self, repo: &str, key: &str, mut cursor: Cursor) -> Result<(), PollError> {
        let checkpoint = cursor.since.clone();
        let mut url = self.first_url(repo, Endpoint::Pulls, None);
        let mut etag = cursor.etag.clone();
        let mut newest = cursor.since.clone();
        let mut first_etag = None;
        for page in 1.. {
            let r = self.get(&url, etag.as_deref(), Endpoint::Pulls.accept()).await?;
            if r.status == 304 {
                return Ok(());
            }
            let items: Vec<Value> = r.json().map_err(|e| PollError::Api(format!("unreadable page: {e}")))?;
            let next = next_link(r.header("link"));
            if page == 1 {
                first_etag = r.header("etag").map(str::to_owned);
            }
            let (news, page_newest, reached_checkpoint) = self.read_items(repo, Endpoint::Pulls, &items, checkpoint.as_deref());
            newest = newest.max(page_newest);
            let done = next.is_none() || reached_checkpoint;
            if done {
                cursor = Cursor { since: newest.clone(), etag: first_etag.clone(), v: 2, ..Cursor::default() };
            }
            self.commit(key, &cursor, news, &[]).await?;
            if done {
                return Ok(());
            }
            url = next.unwrap_or_default();
            etag = None;
        }
        Ok(())
    }

    /// The activities of a page (those since the backfill start), its newest
    /// `updated_at`, and whether it reached an item older than the checkpoint.
    fn read_items(&mut self, repo: &str, endpoint: Endpoint, items: &[Value], checkpoint: Option<&str>) -> (Vec<NewActivity>, Option<String>, bool) {
        let backfill = self.backfill_start().and_then(|b| b.timestamp_nanos_opt());
        let mut newest: Option<String> = None;
        let mut reached_checkpoint = false;
        let mut news = Vec::new();
        for item in items {
            self.summary.fetched += 1;
            if let Some(updated) = item["updated_at"].as_str() {
                if newest.as_deref().is_none_or(|n| updated > n) {
                    newest = Some(updated.to_owned());
                }
                if checkpoint.is_some_and(|cp| updated < cp) {
                    reached_checkpoint = true;
                    continue;
                }
            }
            let Some(activity) = activity(repo, endpoint, item) else { continue };
            if backfill.is_some_and(|b| activity.occurred_at < b) {
                continue;
            }
            news.push(self.placed(activity));
        }
        (news, newest, reached_checkpoint)
    }

    /// An activity with the company rules 1 to 3 give it (rule 4 comes with profiles).
    fn placed(&mut self, activity: Activity) -> NewActivity {
        let login = activity.actor.clone();
        let activity = activity.redacted();
        // A login that held personal data (never a real one) is not looked up.
        if let Some(login) = login
            && activity.actor.as_ref() == Some(&login)
        {
            self.logins.insert(login);
        }
        let company = self.rules.attribute(None, activity.actor.as_deref(), None, activity.occurred_at);
        NewActivity { activity, company }
    }

    /// Commits a page's activities with its cursor, the reactions it found and the
    /// profiles it needs.
    async fn commit(&mut self, key: &str, cursor: &Cursor, news: Vec<NewActivity>, due: &[PendingReactions]) -> Result<(), PollError> {
        let value = serde_json::to_string(cursor).unwrap_or_default();
        let page = GithubPage { cursor: Some((key, &value)), reactions_due: due, reactions_read: None };
        self.summary.inserted += self.store.insert_github_page(&self.config.name, &news, page).await?.inserted;
        Ok(())
    }

    /// The issues and pull requests of an issues page that have reactions (the issue's
    /// `reactions.total_count` says so, which saves a call per issue without them) and
    /// were not queued yet this poll as they are now.
    fn reactions_due(&mut self, repo: &str, endpoint: Endpoint, items: &[Value]) -> Vec<PendingReactions> {
        if !matches!(endpoint, Endpoint::Issues) {
            return Vec::new();
        }
        let mut due = Vec::new();
        for item in items.iter().filter(|i| i["reactions"]["total_count"].as_u64().unwrap_or(0) > 0) {
            let Some(number) = item["number"].as_i64() else { continue };
            let seen = (repo.to_owned(), number, item["updated_at"].as_str().unwrap_or_default().to_owned());
            if self.queued_reactions.insert(seen) {
                due.push(PendingReactions { repo: repo.to_owned(), number, url: item["html_url"].as_str().map(str::to_owned) });
            }
        }
        due
    }

    /// Reads the reactions still pending for a repo (the reactions endpoint gives each
    /// one's time). Each issue's reactions leave the queue in the transaction that
    /// stores them; stored by reaction id, so reading them again adds nothing. A failed
    /// fetch stays queued for the next poll.
    async fn drain_reactions(&mut self, repo: &str) -> Result<(), PollError> {
        if self.reactions_failed.contains(repo) {
            return Ok(());
        }
        let backfill = self.backfill_start().and_then(|b| b.timestamp_nanos_opt());
        for pending in self.store.github_pending_reactions(&self.config.name, repo).await? {
            let mut url = Some(format!("{}/repos/{repo}/issues/{}/reactions?per_page={PER_PAGE}", self.base, pending.number));
            while let Some(u) = url {
                let list: Vec<Value> = match self.get(&u, None, "application/vnd.github+json").await {
                    Ok(r) => {
                        url = next_link(r.header("link"));
                        r.json().map_err(|e| PollError::Api(format!("unreadable reactions: {e}")))?
                    }
                    Err(e) if e.stops_poll() || matches!(e, PollError::Store(_)) => return Err(e),
                    Err(e) => {
                        self.summary.report(format!("{repo} reactions of #{}: {e} (read again next poll)", pending.number));
                        self.reactions_failed.insert(repo.to_owned());
                        return Ok(());
                    }
                };
                let mut news = Vec::new();
                for reaction in &list {
                    self.summary.fetched += 1;
                    let (Some(id), Some(login), Some(at)) =
                        (reaction["id"].as_u64(), reaction["user"]["login"].as_str(), reaction["created_at"].as_str().and_then(nanos))
                    else {
                        continue;
                    };
                    if backfill.is_some_and(|b| at < b) {
                        continue;
                    }
                    let mut activity = Activity::community("github", format!("reaction:{repo}:{id}"), Action::Reaction, login, at);
                    activity.package = Some(repo.to_owned());
                    activity.url = pending.url.clone();
                    news.push(self.placed(activity));
                }
                let read = url.is_none().then_some((repo, pending.number));
                let page = GithubPage { reactions_read: read, ..GithubPage::default() };
                self.summary.inserted += self.store.insert_github_page(&self.config.name, &news, page).await?.inserted;
            }
        }
        Ok(())
    }

    /// Fetches the profiles queued (logins first seen, failed fetches now due) and
    /// those due for revalidation, then places their activities (rule 4). A failed
    /// fetch stays queued with backoff and does not fail the poll; a 404 (the account
    /// is gone or renamed) is asked again only after a long wait.
    async fn refresh_profiles(&mut self) -> Result<(), PollError> {
        let due = chrono::TimeDelta::days(self.config.profile_refresh_days as i64).num_nanoseconds().unwrap_or(i64::MAX);
        let now = self.now.timestamp_nanos_opt().unwrap_or(0);
        let mut logins: BTreeSet<String> = self.store.github_profiles_due(Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)).await?.into_iter().collect();
        // Known profiles due for a (conditional, so free when unchanged) revalidation: a
        // profile that changed moves its activities.
        logins.extend(self.store.github_logins_checked_before(now.saturating_sub(due).saturating_add(1)).await?);
        // Whatever is fetched places its activities, even if the poll stops half-way.
        self.logins.extend(logins.iter().cloned());
        let mut failed: Vec<String> = Vec::new();
        for login in &logins {
            let cached = self.store.github_profile(login).await?;
            let url = format!("{}/users/{login}", self.base);
            let etag = cached.as_ref().and_then(|(p, _)| p.etag.clone());
            match self.get(&url, etag.as_deref(), "application/vnd.github+json").await {
                Ok(r) if r.status == 304 => self.store.touch_github_profile(login).await?,
                Ok(r) => match r.json::<Value>() {
                    Ok(v) => self.store.save_github_profile(&read_profile(login, r.header("etag"), &v)).await?,
                    Err(e) => failed.push(self.profile_failed(login, &format!("unreadable profile: {e}")).await?),
                },
                Err(e) if e.stops_poll() || matches!(e, PollError::Store(_)) => return Err(e),
                Err(e) if e.to_string().contains("(HTTP 404)") => {
                    if cached.is_some() {
                        self.store.touch_github_profile(login).await?;
                    } else {
                        self.store.github_profile_failed(login, "not found (HTTP 404)", |_| NOT_FOUND_WAIT).await?;
                        tracing::info!(connector = %self.config.name, "profile {login}: not found; asked again in 30 days");
                    }
                }
                Err(e) => failed.push(self.profile_failed(login, &e.to_string()).await?),
            }
        }
        if let Some(first) = failed.first() {
            // Activities stay stored; only their placement waits for the retry.
            tracing::warn!(connector = %self.config.name, "{} profiles not fetched, queued for retry: {first}", failed.len());
        }
        Ok(())
    }

    /// Queues a failed profile fetch for retry; returns the line that says so.
    async fn profile_failed(&mut self, login: &str, error: &str) -> Result<String, PollError> {
        let attempts = self.store.github_profile_failed(login, error, profile_retry_delay).await?;
        Ok(format!("profile {login}: {error} (attempt {attempts})"))
    }
}

/// A 404 profile (an account deleted or renamed) is asked again after 30 days.
const NOT_FOUND_WAIT: i64 = 30 * 24 * 3600 * 1_000_000_000;

/// After a failed profile fetch: the next poll tries again, then waits double each
/// time from 15 minutes, at most a day.
fn profile_retry_delay(attempts: i64) -> i64 {
    const MINUTE: i64 = 60 * 1_000_000_000;
    if attempts <= 1 { 0 } else { (15 * MINUTE).saturating_mul(1 << (attempts - 2).min(10)).min(24 * 60 * MINUTE) }
}

/// What a profile says about its owner's company.
fn read_profile(login: &str, etag: Option<&str>, v: &Value) -> GithubProfile {
    let text = |k: &str| v[k].as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    GithubProfile {
        login: login.to_owned(),
        etag: etag.map(str::to_owned),
        email_domain: text("email").and_then(|e| e.rsplit_once('@').map(|(_, d)| d.to_owned())).and_then(|d| normalize_domain(&d)),
        blog_domain: text("blog").and_then(|b| normalize_domain(&b)),
        company: text("company").map(|c| crate::activity::redact_personal_data(&c).into_owned()),
    }
}

/// The `page` parameter of a URL (cursors before version 2 kept whole URLs).
fn page_number(url: &str) -> Option<u32> {
    url.split(['?', '&']).find_map(|p| p.strip_prefix("page=")).and_then(|n| n.parse().ok())
}

/// Re-places the GitHub activities of these logins by their cached profiles (rule 4).
pub async fn attribute_profiles(store: &Store, rules: &AttributionRules, logins: &BTreeSet<String>) -> Result<u64, StoreError> {
    let names = store.company_names().await?;
    let mut placements = Vec::new();
    for login in logins {
        if let Some((p, _)) = store.github_profile(login).await? {
            placements.push((login.clone(), profile_domain(&p, rules, &names)));
        }
    }
    store.apply_profile_attribution(&placements).await
}

/// Rule 4: a profile's public email domain (not free mail), then its `blog` domain (not
/// a personal-page host such as `dev.to` or `*.github.io`), then its `company`: an `@org` handle mapped in attribution.yaml or the
/// name of a known company.
pub fn profile_domain(p: &GithubProfile, rules: &AttributionRules, names: &HashMap<String, String>) -> Option<String> {
    profile_rule(p, rules, names).and_then(|d| rules.company(&d))
}

/// Rule 4 before aliases and ignores apply.
fn profile_rule(p: &GithubProfile, rules: &AttributionRules, names: &HashMap<String, String>) -> Option<String> {
    if let Some(d) = p.email_domain.as_deref().filter(|d| !rules.is_free_mail(d)) {
        return Some(d.to_owned());
    }
    if let Some(d) = p.blog_domain.as_deref().filter(|d| !rules.is_personal_host(d)) {
        return Some(d.to_owned());
    }
    let company = p.company.as_deref()?.trim();
    for part in company.split([',', ' ', '/']) {
        if let Some(d) = part.strip_prefix('@').and_then(|h| rules.github_org(h)) {
            return Some(d.to_owned());
        }
    }
    names.get(&company.trim_start_matches('@').to_lowercase()).cloned()
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(link: Option<&str>) -> Option<String> {
    link?.split(',').find_map(|part| {
        let (url, rel) = part.split_once(';')?;
        rel.contains("rel=\"next\"").then(|| url.trim().trim_start_matches('<').trim_end_matches('>').to_owned())
    })
}

fn nanos(ts: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(ts).ok()?.timestamp_nanos_opt()
}

/// The activity an item of an endpoint stands for.
fn activity(repo: &str, endpoint: Endpoint, item: &Value) -> Option<Activity> {
    let (id, action, login, at, url) = match endpoint {
        Endpoint::Stars => (
            format!("star:{repo}:{}", item["user"]["login"].as_str()?),
            Action::Star,
            item["user"]["login"].as_str()?,
            item["starred_at"].as_str()?,
            None,
        ),
        Endpoint::Forks => (
            format!("fork:{repo}:{}", item["id"].as_u64()?),
            Action::Fork,
            item["owner"]["login"].as_str()?,
            item["created_at"].as_str()?,
            item["html_url"].as_str(),
        ),
        Endpoint::Issues => {
            if item.get("pull_request").is_some() {
                return None;
            }
            (
                format!("issue:{repo}:{}", item["number"].as_u64()?),
                Action::IssueOpened,
                item["user"]["login"].as_str()?,
                item["created_at"].as_str()?,
                item["html_url"].as_str(),
            )
        }
        Endpoint::Pulls => (
            format!("pr:{repo}:{}", item["number"].as_u64()?),
            Action::PrOpened,
            item["user"]["login"].as_str()?,
            item["created_at"].as_str()?,
            item["html_url"].as_str(),
        ),
        Endpoint::Comments => (
            format!("comment:{repo}:{}", item["id"].as_u64()?),
            Action::Comment,
            item["user"]["login"].as_str()?,
            item["created_at"].as_str()?,
            item["html_url"].as_str(),
        ),
    };
    let mut a = Activity::community("github", id, action, login, nanos(at)?);
    a.package = Some(repo.to_owned());
    a.url = url.map(str::to_owned);
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_give_the_next_page() {
        let link = r#"<https://api.github.com/repositories/1/stargazers?page=3>; rel="next", <https://api.github.com/repositories/1/stargazers?page=9>; rel="last""#;
        assert_eq!(next_link(Some(link)).as_deref(), Some("https://api.github.com/repositories/1/stargazers?page=3"));
        assert_eq!(next_link(Some(r#"<https://x/?page=1>; rel="prev""#)), None);
        assert_eq!(next_link(None), None);
    }

    #[test]
    fn profiles_place_by_email_then_blog_then_company() {
        let file: crate::attribution::AttributionFile = serde_saphyr::from_str("github_orgs:\n  \"@acme-inc\": acme.com\n").unwrap();
        let rules = AttributionRules::from_file(file);
        let names: HashMap<String, String> = [("initech".to_string(), "initech.io".to_string())].into();
        let p = |email: Option<&str>, blog: Option<&str>, company: Option<&str>| GithubProfile {
            login: "x".into(),
            email_domain: email.map(str::to_owned),
            blog_domain: blog.map(str::to_owned),
            company: company.map(str::to_owned),
            ..Default::default()
        };
        assert_eq!(profile_domain(&p(Some("corp.com"), Some("blog.dev"), None), &rules, &names).as_deref(), Some("corp.com"));
        assert_eq!(profile_domain(&p(Some("gmail.com"), Some("blog.dev"), None), &rules, &names).as_deref(), Some("blog.dev"));
        assert_eq!(profile_domain(&p(None, Some("me.github.io"), Some("@acme-inc")), &rules, &names).as_deref(), Some("acme.com"));
        assert_eq!(profile_domain(&p(None, None, Some("Initech")), &rules, &names).as_deref(), Some("initech.io"));
        assert_eq!(profile_domain(&p(None, None, Some("Freelance")), &rules, &names), None);
    }
}
