//! A GitHub REST emulator for the endpoints the GitHub source reads: stargazers (with
//! `application/vnd.github.star+json` timestamps), forks, issues (pull requests
//! included, as GitHub lists them), pulls, issue comments and user profiles, with
//! `per_page`/`page` paging and `Link` headers, weak ETags (`W/"…"`) computed from the
//! body alone (so a page that gained a `rel="next"` link still answers 304) and
//! `If-None-Match` → 304 with weak comparison (which GitHub does not count against the
//! rate limit), `x-ratelimit-*` headers, GitHub's error bodies (`{"message",
//! "documentation_url", "status"}`), primary limits (403, `x-ratelimit-remaining: 0`),
//! secondary limits with or without `retry-after` (a limited window keeps answering
//! 403 and counts what was sent into it), profiles that are missing (404) or fail
//! (502), and hooks that land items between two requests.
//! Shapes: <https://docs.github.com/en/rest/activity/starring>,
//! <https://docs.github.com/en/rest/issues/issues>, <https://docs.github.com/en/rest/pulls/pulls>,
//! <https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>.

#![allow(dead_code)]

use super::emulator::{Faults, take_fault};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug)]
pub enum Fault {
    /// 403 with `retry-after` and GitHub's secondary-limit message.
    SecondaryLimit { retry_after_secs: u64 },
    /// 403 with `x-ratelimit-remaining: 0` and the reset that far ahead: the primary
    /// (hourly) limit is spent.
    PrimaryLimit { reset_in_secs: i64 },
    ServerError(u16),
    Delay(Duration),
    /// 200 with a body cut short.
    Malformed,
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub query: String,
    pub status: u16,
    pub conditional: bool,
    pub at: Instant,
}

#[derive(Default)]
struct Repo {
    stars: Vec<(String, String)>,
    forks: Vec<(u64, String, String)>,
    /// (number, login, created_at, updated_at, is_pr)
    issues: Vec<(u64, String, String, String, bool)>,
    /// (id, login, created_at, updated_at)
    comments: Vec<(u64, String, String, String)>,
    /// issue number → (reaction id, login, created_at)
    reactions: BTreeMap<u64, Vec<(u64, String, String)>>,
}

#[derive(Default)]
struct Inner {
    base: String,
    token: String,
    read_only_token: Option<String>,
    repos: BTreeMap<String, Repo>,
    users: BTreeMap<String, Value>,
    requests: Vec<Recorded>,
    faults: Faults<Fault>,
    counted: u64,
    next_id: u64,
    missing_users: std::collections::BTreeSet<String>,
    /// A secondary limit in force: every request before then gets 403 without
    /// `retry-after`, as GitHub answers when it names no time.
    limited_until: Option<Instant>,
    sent_while_limited: u64,
    hooks: Vec<(String, Hook)>,
}

/// Runs once the request to a path with its prefix is answered: what it adds lands
/// between that request and the next.
type Hook = Box<dyn FnOnce(&GitHub) + Send>;

type Shared = Arc<Mutex<Inner>>;

#[derive(Clone)]
pub struct GitHub {
    pub url: String,
    state: Shared,
}

impl GitHub {
    pub async fn start(token: &str) -> GitHub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state: Shared = Arc::new(Mutex::new(Inner { base: url.clone(), token: token.into(), next_id: 5000, ..Default::default() }));
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        GitHub { url, state }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().unwrap()
    }
    /// A token that authenticates but lacks the scope to read repository content.
    pub fn read_only_token(&self, token: &str) {
        self.lock().read_only_token = Some(token.into());
    }
    pub fn add_repo(&self, repo: &str) {
        self.lock().repos.entry(repo.into()).or_default();
    }
    pub fn star(&self, repo: &str, login: &str, at: &str) {
        self.lock().repos.entry(repo.into()).or_default().stars.push((login.into(), at.into()));
    }
    pub fn fork(&self, repo: &str, login: &str, at: &str) {
        let mut s = self.lock();
        s.next_id += 1;
        let id = s.next_id;
        s.repos.entry(repo.into()).or_default().forks.push((id, login.into(), at.into()));
    }
    /// Opens an issue (or a pull request); returns its number.
    pub fn issue(&self, repo: &str, login: &str, at: &str, is_pr: bool) -> u64 {
        let mut s = self.lock();
        let r = s.repos.entry(repo.into()).or_default();
        let number = r.issues.len() as u64 + 1;
        r.issues.push((number, login.into(), at.into(), at.into(), is_pr));
        number
    }
    /// A reaction to an issue or pull request; GitHub bumps the issue's `updated_at`.
    pub fn react(&self, repo: &str, number: u64, login: &str, at: &str) {
        let mut s = self.lock();
        s.next_id += 1;
        let id = s.next_id;
        let r = s.repos.get_mut(repo).unwrap();
        r.reactions.entry(number).or_default().push((id, login.into(), at.into()));
        if let Some(issue) = r.issues.iter_mut().find(|i| i.0 == number) {
            issue.3 = at.into();
        }
    }
    pub fn comment(&self, repo: &str, login: &str, at: &str) {
        let mut s = self.lock();
        s.next_id += 1;
        let id = s.next_id;
        s.repos.entry(repo.into()).or_default().comments.push((id, login.into(), at.into(), at.into()));
    }
    pub fn user(&self, login: &str, email: Option<&str>, blog: &str, company: Option<&str>) {
        self.lock().users.insert(
            login.into(),
            json!({"login": login, "id": login.len(), "node_id": "U_emul", "type": "User", "name": login, "company": company,
                   "blog": blog, "location": null, "email": email, "hireable": null, "bio": null, "public_repos": 3,
                   "followers": 1, "following": 0, "created_at": "2020-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                   "html_url": format!("https://github.com/{login}")}),
        );
    }
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }
    /// Requests GitHub counted against the rate limit (everything but 304s).
    pub fn counted(&self) -> u64 {
        self.lock().counted
    }
    pub fn fail_next(&self, path_prefix: &str, fault: Fault, times: usize) {
        self.lock().faults.push_back((path_prefix.into(), fault, times));
    }
    /// A login GitHub does not know (deleted or renamed): its profile is a 404.
    pub fn missing_user(&self, login: &str) {
        self.lock().missing_users.insert(login.into());
    }
    /// A secondary limit for this long from now, answered without `retry-after`.
    pub fn limit_secondary(&self, d: Duration) {
        self.lock().limited_until = Some(Instant::now() + d);
    }
    /// Requests that arrived while a secondary limit was in force.
    pub fn sent_while_limited(&self) -> u64 {
        self.lock().sent_while_limited
    }
    /// Runs `hook` right after the next request whose path and query (`/a/b?x=1`)
    /// start with `path_prefix` is answered (before its client can send another).
    pub fn after_next(&self, path_prefix: &str, hook: impl FnOnce(&GitHub) + Send + 'static) {
        self.lock().hooks.push((path_prefix.into(), Box::new(hook)));
    }
}

fn user_json(login: &str) -> Value {
    json!({"login": login, "id": login.len(), "node_id": "U_emul", "avatar_url": "", "url": format!("https://api.github.com/users/{login}"),
           "html_url": format!("https://github.com/{login}"), "type": "User", "site_admin": false})
}

fn github_error(status: u16, message: &str, docs: &str) -> (u16, Value) {
    (status, json!({"message": message, "documentation_url": docs, "status": status.to_string()}))
}

async fn handle(State(state): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = format!("{}?{}", uri.path(), uri.query().unwrap_or_default());
    let response = answer(State(state.clone()), method, uri, headers, body).await;
    let hook = {
        let mut s = state.lock().unwrap();
        s.hooks.iter().position(|(p, _)| path.starts_with(p.as_str())).map(|i| s.hooks.remove(i).1)
    };
    if let Some(hook) = hook {
        let base = state.lock().unwrap().base.clone();
        hook(&GitHub { url: base, state });
    }
    response
}

/// `If-None-Match` matches with GitHub's weak comparison: `W/` is ignored on both sides,
/// and the header may list several tags.
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    if_none_match.split(',').any(|t| t.trim() == "*" || bare(t) == bare(etag))
}

async fn answer(State(state): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, _body: Bytes) -> Response {
    let at = Instant::now();
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let params: BTreeMap<String, String> = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%3A", ":")))
        .collect();
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let fault = take_fault(&mut state.lock().unwrap().faults, &path);
    if let Some(Fault::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let mut extra: Vec<(&'static str, String)> = Vec::new();
    let mut s = state.lock().unwrap();
    let auth_ok = header("authorization").as_deref() == Some(&format!("Bearer {}", s.token)[..]);
    let read_only = s.read_only_token.as_ref().is_some_and(|t| header("authorization").as_deref() == Some(&format!("Bearer {t}")[..]));
    let limited = s.limited_until.is_some_and(|t| at < t);
    if limited {
        s.sent_while_limited += 1;
    }
    let (status, body, link) = match &fault {
        _ if limited => {
            let (st, b) = github_error(403, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.", "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits");
            (st, b, None)
        }
        Some(Fault::PrimaryLimit { reset_in_secs }) => {
            extra.push(("x-ratelimit-remaining", "0".into()));
            extra.push(("x-ratelimit-reset", (chrono::Utc::now().timestamp() + reset_in_secs).to_string()));
            let (st, b) = github_error(403, "API rate limit exceeded for user ID 1.", "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits");
            (st, b, None)
        }
        Some(Fault::SecondaryLimit { retry_after_secs }) => {
            extra.push(("retry-after", retry_after_secs.to_string()));
            let (st, b) = github_error(403, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.", "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits");
            (st, b, None)
        }
        Some(Fault::ServerError(code)) => (*code, json!({"message": "Server Error"}), None),
        Some(Fault::Malformed) => (200, Value::String("MALFORMED".into()), None),
        _ if !auth_ok && !read_only => {
            let (st, b) = github_error(401, "Bad credentials", "https://docs.github.com/rest");
            (st, b, None)
        }
        _ => {
            let star_json = header("accept").is_some_and(|a| a.contains("star+json"));
            respond(&mut s, &method, &path, &params, star_json, read_only, &mut extra)
        }
    };
    // A weak ETag of the body alone (not the Link header); a matching If-None-Match
    // gets 304 with no body.
    let text = if body == Value::String("MALFORMED".into()) { "[{\"id\": 1, \"own".to_owned() } else { body.to_string() };
    let etag = format!("W/\"{}\"", Sha256::digest(text.as_bytes()).iter().take(12).map(|b| format!("{b:02x}")).collect::<String>());
    let not_modified = status == 200 && header("if-none-match").is_some_and(|h| etag_matches(&h, &etag));
    let final_status = if not_modified { 304 } else { status };
    if final_status != 304 {
        s.counted += 1;
    }
    let remaining = 5000u64.saturating_sub(s.counted);
    s.requests.push(Recorded { path: path.clone(), query, status: final_status, conditional: header("if-none-match").is_some(), at });
    drop(s);
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::from_u16(status).unwrap(), text).into_response()
    };
    let h = response.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json; charset=utf-8"));
    if status == 200 {
        h.insert("etag", HeaderValue::from_str(&etag).unwrap());
    }
    h.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
    h.insert("x-ratelimit-remaining", HeaderValue::from_str(&remaining.to_string()).unwrap());
    h.insert("x-ratelimit-used", HeaderValue::from_str(&(5000 - remaining).to_string()).unwrap());
    h.insert("x-ratelimit-reset", HeaderValue::from_str(&(chrono::Utc::now().timestamp() + 3600).to_string()).unwrap());
    h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    if let Some(link) = link {
        h.insert("link", HeaderValue::from_str(&link).unwrap());
    }
    for (k, v) in extra {
        h.insert(k, HeaderValue::from_str(&v).unwrap());
    }
    response
}

/// One page of a list, and its `Link` header.
fn paged(base: &str, path: &str, params: &BTreeMap<String, String>, items: Vec<Value>) -> (u16, Value, Option<String>) {
    let per_page: usize = params.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(30).min(100);
    let page: usize = params.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    let url = |p: usize| {
        let mut q: Vec<String> = params.iter().filter(|(k, _)| *k != "page").map(|(k, v)| format!("{k}={v}")).collect();
        q.push(format!("page={p}"));
        format!("<{base}{path}?{}>", q.join("&"))
    };
    let mut links = Vec::new();
    if page < last {
        links.push(format!("{}; rel=\"next\"", url(page + 1)));
        links.push(format!("{}; rel=\"last\"", url(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", url(1)));
        links.push(format!("{}; rel=\"prev\"", url(page - 1)));
    }
    (200, Value::Array(slice), (!links.is_empty()).then(|| links.join(", ")))
}

fn respond(
    s: &mut Inner,
    _method: &Method,
    path: &str,
    params: &BTreeMap<String, String>,
    star_json: bool,
    read_only: bool,
    _extra: &mut Vec<(&'static str, String)>,
) -> (u16, Value, Option<String>) {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if let ["users", login] = segments.as_slice() {
        if s.missing_users.contains(*login) {
            let (st, b) = github_error(404, "Not Found", "https://docs.github.com/rest/users/users#get-a-user");
            return (st, b, None);
        }
        // Every login the emulator lists exists; `user()` gives it details.
        let u = s.users.get(*login).cloned().unwrap_or_else(|| {
            json!({"login": login, "id": login.len(), "type": "User", "name": null, "company": null, "blog": "", "email": null})
        });
        return (200, u, None);
    }
    let ["repos", owner, name, rest @ ..] = segments.as_slice() else {
        let (st, b) = github_error(404, "Not Found", "https://docs.github.com/rest");
        return (st, b, None);
    };
    let full = format!("{owner}/{name}");
    let base = s.base.clone();
    let Some(repo) = s.repos.get(&full) else {
        let (st, b) = github_error(404, "Not Found", "https://docs.github.com/rest/repos/repos#get-a-repository");
        return (st, b, None);
    };
    // <https://docs.github.com/rest/repos/repos#get-a-repository>: readable with the
    // Metadata permission alone.
    if rest.is_empty() {
        let repo_json = json!({"id": full.len(), "name": name, "full_name": full, "private": false,
            "stargazers_count": repo.stars.len(), "forks_count": repo.forks.len(),
            "html_url": format!("https://github.com/{full}")});
        return (200, repo_json, None);
    }
    if read_only {
        let (st, b) = github_error(403, "Resource not accessible by personal access token", "https://docs.github.com/rest/issues/issues#list-repository-issues");
        return (st, b, None);
    }
    let since = params.get("since").cloned().unwrap_or_default();
    let issue_json = |(n, login, created, updated, is_pr): &(u64, String, String, String, bool)| {
        let reactions = repo.reactions.get(n).map_or(0, Vec::len);
        let mut v = json!({"id": 9000 + n, "number": n, "title": format!("Item {n}"), "user": user_json(login), "state": "open",
            "created_at": created, "updated_at": updated, "html_url": format!("https://github.com/{full}/issues/{n}"),
            "reactions": {"total_count": reactions, "+1": reactions}});
        if *is_pr {
            v["pull_request"] = json!({"url": format!("https://api.github.com/repos/{full}/pulls/{n}")});
        }
        v
    };
    let items: Vec<Value> = match rest {
        ["stargazers"] => repo
            .stars
            .iter()
            .map(|(login, at)| if star_json { json!({"starred_at": at, "user": user_json(login)}) } else { user_json(login) })
            .collect(),
        ["forks"] => repo
            .forks
            .iter()
            .map(|(id, login, at)| json!({"id": id, "full_name": format!("{login}/{name}"), "owner": user_json(login), "created_at": at,
                                       "updated_at": at, "html_url": format!("https://github.com/{login}/{name}")}))
            .collect(),
        ["issues"] => {
            let mut v: Vec<&(u64, String, String, String, bool)> = repo.issues.iter().filter(|i| i.3 >= since).collect();
            v.sort_by(|a, b| a.3.cmp(&b.3).then(a.0.cmp(&b.0)));
            v.into_iter().map(issue_json).collect()
        }
        ["pulls"] => {
            let mut v: Vec<&(u64, String, String, String, bool)> = repo.issues.iter().filter(|i| i.4).collect();
            v.sort_by(|a, b| b.3.cmp(&a.3).then(b.0.cmp(&a.0)));
            v.into_iter()
                .map(|i| {
                    let mut j = issue_json(i);
                    j.as_object_mut().unwrap().remove("pull_request");
                    j["html_url"] = json!(format!("https://github.com/{full}/pull/{}", i.0));
                    j
                })
                .collect()
        }
        ["issues", number, "reactions"] => {
            let n: u64 = number.parse().unwrap_or(0);
            repo.reactions
                .get(&n)
                .map(|list| {
                    list.iter()
                        .map(|(id, login, at)| json!({"id": id, "node_id": "REA_emul", "user": user_json(login), "content": "+1", "created_at": at}))
                        .collect()
                })
                .unwrap_or_default()
        }
        ["issues", "comments"] => {
            let mut v: Vec<&(u64, String, String, String)> = repo.comments.iter().filter(|c| c.3 >= since).collect();
            v.sort_by(|a, b| a.3.cmp(&b.3).then(a.0.cmp(&b.0)));
            v.into_iter()
                .map(|(id, login, created, updated)| json!({"id": id, "user": user_json(login), "created_at": created, "updated_at": updated,
                    "html_url": format!("https://github.com/{full}/issues/1#issuecomment-{id}"), "body": "Thanks!"}))
                .collect()
        }
        _ => {
            let (st, b) = github_error(404, "Not Found", "https://docs.github.com/rest");
            return (st, b, None);
        }
    };
    paged(&base, path, params, items)
}
