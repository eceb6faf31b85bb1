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

use std::collections::{BTreeSet, HashMap};
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
use crate::store::{GithubProfile, NewActivity, Store, StoreError};

#[derive(Debug, Clone, Deserialize)]
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
}

/// What a poll of one source did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PollSummary {
    pub fetched: u64,
    pub inserted: u64,
    pub api_calls: i64,
    pub not_modified: i64,
    /// Problems that stopped one part (a repo, an endpoint) while the rest went on.
    pub errors: Vec<String>,
}

/// Where one endpoint of one repo stands.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Cursor {
    /// The next URL to read (paged endpoints: the last page seen).
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    etag: Option<String>,
    /// For `since` endpoints: the newest `updated_at` seen.
    #[serde(default)]
    since: Option<String>,
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
        Ok(GitHubSource {
            config,
            store,
            rules,
            http: HttpClient::new(&config.name, &[("default", config.rate_limit)], config.retry)?,
            auth: Auth::Token(source.read(file, "token")?),
            base: config.base_url.trim_end_matches('/').to_owned(),
            now: Utc::now(),
            logins: BTreeSet::new(),
            summary: PollSummary::default(),
        })
    }

    /// Polls every repo and endpoint once; one failing repo or endpoint is reported and
    /// the others go on.
    pub async fn poll(mut self) -> Result<PollSummary, PollError> {
        for repo in &self.config.repos {
            for endpoint in Endpoint::ALL {
                match self.poll_endpoint(repo, endpoint).await {
                    Ok(()) => {}
                    Err(PollError::Store(e)) => return Err(PollError::Store(e)),
                    Err(e) => {
                        let message = format!("{repo} {}: {e}", endpoint.key());
                        tracing::warn!(connector = %self.config.name, "{message}");
                        self.summary.errors.push(message);
                        // A missing repo fails every endpoint alike: say it once.
                        if e.to_string().contains("(HTTP 404)") {
                            break;
                        }
                    }
                }
            }
        }
        self.refresh_profiles().await?;
        self.summary.api_calls = self.http.stats.calls();
        Ok(self.summary)
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
            Endpoint::Stars => format!("{b}/repos/{repo}/stargazers?per_page=100"),
            Endpoint::Forks => format!("{b}/repos/{repo}/forks?sort=oldest&per_page=100"),
            Endpoint::Issues => format!("{b}/repos/{repo}/issues?state=all&sort=updated&direction=asc&per_page=100{since}"),
            Endpoint::Pulls => format!("{b}/repos/{repo}/pulls?state=all&sort=updated&direction=desc&per_page=100"),
            Endpoint::Comments => format!("{b}/repos/{repo}/issues/comments?sort=updated&direction=asc&per_page=100{since}"),
        }
    }

    fn backfill_start(&self) -> Option<DateTime<Utc>> {
        self.config.backfill_days.map(|d| self.now - chrono::TimeDelta::days(d as i64))
    }

    async fn poll_endpoint(&mut self, repo: &str, endpoint: Endpoint) -> Result<(), PollError> {
        let key = format!("{repo}:{}", endpoint.key());
        let mut cursor: Cursor = match self.store.cursor(&self.config.name, &key).await? {
            Some(text) => serde_json::from_str(&text).unwrap_or_default(),
            None => Cursor::default(),
        };
        let first_poll = cursor.url.is_none() && cursor.since.is_none();
        let backfill = if first_poll { self.backfill_start() } else { None };
        let since = cursor.since.clone().or_else(|| backfill.map(|b| b.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
        let accept = match endpoint {
            Endpoint::Stars => "application/vnd.github.star+json",
            _ => "application/vnd.github+json",
        };
        // Stars and forks resume at the last page seen; the others restart from the first
        // page of their window (`since`, or the pulls checkpoint).
        let mut url = match endpoint {
            Endpoint::Stars | Endpoint::Forks => cursor.url.clone().unwrap_or_else(|| self.first_url(repo, endpoint, None)),
            _ => self.first_url(repo, endpoint, since.as_deref()),
        };
        let mut etag = cursor.etag.clone();
        let checkpoint = match endpoint {
            Endpoint::Pulls => since.clone(),
            _ => None,
        };
        let mut newest = cursor.since.clone();
        loop {
            let r = self.get(&url, etag.as_deref(), accept).await?;
            if r.status == 304 {
                return Ok(());
            }
            let items: Vec<Value> = r.json().map_err(|e| PollError::Api(format!("unreadable page: {e}")))?;
            let next = next_link(r.header("link"));
            let page_etag = r.header("etag").map(str::to_owned);
            let mut acts = Vec::new();
            let mut reached_checkpoint = false;
            for item in &items {
                self.summary.fetched += 1;
                if let Some(updated) = item["updated_at"].as_str() {
                    if newest.as_deref().is_none_or(|n| updated > n) {
                        newest = Some(updated.to_owned());
                    }
                    if let Some(cp) = &checkpoint {
                        if updated < cp.as_str() {
                            reached_checkpoint = true;
                            continue;
                        }
                    }
                }
                if let Some(a) = activity(repo, endpoint, item) {
                    if backfill.is_some_and(|b| a.occurred_at < b.timestamp_nanos_opt().unwrap_or(0)) {
                        continue;
                    }
                    if let Some(login) = &a.actor {
                        self.logins.insert(login.clone());
                    }
                    acts.push(a);
                }
            }
            // The cursor that covers this page: for paged endpoints the page itself (it
            // may still grow) until a next page exists; for `since` ones the newest seen.
            match endpoint {
                Endpoint::Stars | Endpoint::Forks => {
                    cursor.url = Some(if next.is_some() { next.clone().unwrap_or_default() } else { url.clone() });
                    cursor.etag = if next.is_some() { None } else { page_etag.clone() };
                }
                Endpoint::Issues | Endpoint::Comments => {
                    cursor.since = newest.clone();
                    cursor.etag = None;
                }
                Endpoint::Pulls => {}
            }
            let done = next.is_none() || reached_checkpoint;
            if done && matches!(endpoint, Endpoint::Pulls) {
                cursor.since = newest.clone();
            }
            let value = serde_json::to_string(&cursor).unwrap_or_default();
            let news: Vec<NewActivity> = acts
                .into_iter()
                .map(|activity| {
                    let company = self.rules.attribute(None, activity.actor.as_deref(), None);
                    NewActivity { activity, company }
                })
                .collect();
            let outcome = self.store.insert_with_cursor(&news, &[], Some((&self.config.name, &key, &value))).await?;
            self.summary.inserted += outcome.inserted;
            if matches!(endpoint, Endpoint::Issues) {
                self.poll_reactions(repo, &items, backfill).await?;
            }
            if done {
                break;
            }
            url = next.unwrap_or_default();
            etag = None;
        }
        // The next poll asks for the same first page conditionally (issues, comments and
        // pulls): an unchanged answer is a free 304.
        if !matches!(endpoint, Endpoint::Stars | Endpoint::Forks) {
            let first = self.first_url(repo, endpoint, cursor.since.as_deref());
            let r = self.get(&first, None, accept).await.ok();
            if let Some(etag) = r.as_ref().and_then(|r| r.header("etag")).map(str::to_owned) {
                cursor.etag = Some(etag);
                self.store.set_cursor(&self.config.name, &key, &serde_json::to_string(&cursor).unwrap_or_default()).await?;
            }
        }
        Ok(())
    }

    /// Reactions to the issues and pull requests of a page that have any (the issue's
    /// `reactions.total_count` says so, which saves a call per issue without them). The
    /// reactions endpoint gives each reaction's time. Stored by reaction id, so reading
    /// them again adds nothing.
    async fn poll_reactions(&mut self, repo: &str, items: &[Value], backfill: Option<DateTime<Utc>>) -> Result<(), PollError> {
        for item in items.iter().filter(|i| i["reactions"]["total_count"].as_u64().unwrap_or(0) > 0) {
            let Some(number) = item["number"].as_u64() else { continue };
            let mut url = Some(format!("{}/repos/{repo}/issues/{number}/reactions?per_page=100", self.base));
            while let Some(u) = url {
                let r = self.get(&u, None, "application/vnd.github+json").await?;
                let list: Vec<Value> = r.json().map_err(|e| PollError::Api(format!("unreadable reactions: {e}")))?;
                url = next_link(r.header("link"));
                let mut news = Vec::new();
                for reaction in &list {
                    self.summary.fetched += 1;
                    let (Some(id), Some(login), Some(at)) =
                        (reaction["id"].as_u64(), reaction["user"]["login"].as_str(), reaction["created_at"].as_str().and_then(nanos))
                    else {
                        continue;
                    };
                    if backfill.is_some_and(|b| at < b.timestamp_nanos_opt().unwrap_or(0)) {
                        continue;
                    }
                    self.logins.insert(login.to_owned());
                    let mut activity = Activity::community("github", format!("reaction:{repo}:{id}"), Action::Reaction, login, at);
                    activity.package = Some(repo.to_owned());
                    activity.url = item["html_url"].as_str().map(str::to_owned);
                    let company = self.rules.attribute(None, activity.actor.as_deref(), None);
                    news.push(NewActivity { activity, company });
                }
                self.summary.inserted += self.store.insert_batch(&news, &[]).await?.inserted;
            }
        }
        Ok(())
    }

    /// Fetches profiles never seen or due for revalidation, then places their
    /// activities (rule 4).
    async fn refresh_profiles(&mut self) -> Result<(), PollError> {
        let due = chrono::TimeDelta::days(self.config.profile_refresh_days as i64).num_nanoseconds().unwrap_or(i64::MAX);
        let now = self.now.timestamp_nanos_opt().unwrap_or(0);
        // New logins, and known ones due for a (conditional, so free when unchanged)
        // revalidation: a profile that changed moves its activities.
        self.logins.extend(self.store.github_logins_checked_before(now.saturating_sub(due).saturating_add(1)).await?);
        let logins: Vec<String> = self.logins.iter().cloned().collect();
        for login in logins {
            let cached = self.store.github_profile(&login).await?;
            if cached.as_ref().is_some_and(|(_, at)| now - at < due && due > 0) {
                continue;
            }
            let url = format!("{}/users/{login}", self.base);
            let etag = cached.as_ref().and_then(|(p, _)| p.etag.clone());
            match self.get(&url, etag.as_deref(), "application/vnd.github+json").await {
                Ok(r) if r.status == 304 => self.store.touch_github_profile(&login).await?,
                Ok(r) => {
                    let v: Value = r.json().map_err(|e| PollError::Api(format!("unreadable profile of {login}: {e}")))?;
                    let text = |k: &str| v[k].as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
                    let profile = GithubProfile {
                        login: login.clone(),
                        etag: r.header("etag").map(str::to_owned),
                        email_domain: text("email").and_then(|e| e.rsplit_once('@').map(|(_, d)| d.to_owned())).and_then(|d| normalize_domain(&d)),
                        blog_domain: text("blog").and_then(|b| normalize_domain(&b)),
                        company: text("company"),
                    };
                    self.store.save_github_profile(&profile).await?;
                }
                Err(e) => self.summary.errors.push(format!("profile {login}: {e}")),
            }
        }
        attribute_profiles(self.store, self.rules, &self.logins).await?;
        Ok(())
    }
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
/// a free host), then its `company`: an `@org` handle mapped in attribution.yaml or the
/// name of a known company.
pub fn profile_domain(p: &GithubProfile, rules: &AttributionRules, names: &HashMap<String, String>) -> Option<String> {
    const FREE_HOSTS: [&str; 6] = ["github.io", "github.com", "medium.com", "linkedin.com", "twitter.com", "x.com"];
    if let Some(d) = p.email_domain.as_deref().filter(|d| !rules.is_free_mail(d)) {
        return Some(d.to_owned());
    }
    if let Some(d) = p.blog_domain.as_deref().filter(|d| !FREE_HOSTS.iter().any(|h| *d == *h || d.ends_with(&format!(".{h}")))) {
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
