//! `oql-sync check --live`: each connector asks its service, read-only, whether the
//! config works there (credentials and their scopes, mapped fields and their types,
//! list ids, repositories, channels), so the first scheduled run is not where an
//! operator learns that a token lacks a scope. One line per connector, with the fix.
//!
//! Nothing here writes: no property is created, no webhook is posted, no file written.

use std::path::Path;

use reqwest::Method;
use serde_json::Value;

use crate::auth::{Auth, secret_source};
use crate::config::{Config, Connector, ConnectorKind};
use crate::http::{HttpClient, RateLimit, Request, RetryPolicy};
use crate::sinks::{Sink, SinkError};

/// What the live check found for one connector.
pub struct Verdict {
    pub connector: String,
    pub kind: &'static str,
    /// What was verified, or what is wrong and how to fix it (one problem a line).
    pub outcome: Result<String, String>,
}

/// Checks every connector of the config, one after the other (a handful of requests
/// each, paced by the connector's own limits).
pub async fn check_all(config: &Config) -> Vec<Verdict> {
    let mut out = Vec::new();
    for c in &config.connectors {
        let outcome = check_one(config, c).await.map_err(|e| crate::redaction::redact(&e).into_owned());
        out.push(Verdict { connector: c.name.clone(), kind: c.kind.as_str(), outcome });
    }
    out
}

async fn check_one(config: &Config, c: &Connector) -> Result<String, String> {
    let mapping = config.mapping_of(c);
    let sink_error = |e: SinkError| match e {
        SinkError::Config(m) => m.strip_prefix("configuration error: ").unwrap_or(&m).to_owned(),
        other => other.to_string(),
    };
    match (&c.kind, mapping.as_deref()) {
        (ConnectorKind::HubSpot(h), Some(m)) => crate::sinks::hubspot::check_live(h, &c.path, m).await.map_err(sink_error),
        (ConnectorKind::Salesforce(s), Some(m)) => crate::sinks::salesforce::check_live(s, &c.path, m)
            .await
            .map(|()| "signed in; every mapped field exists on the object, is writable and takes its values".to_owned())
            .map_err(sink_error),
        (ConnectorKind::CommonRoom(cr), Some(m)) => {
            let mut sink = crate::sinks::common_room::CommonRoomSink::build(cr, &c.path, m).map_err(sink_error)?;
            // Its preparation only reads: the custom fields this source may write and
            // the activity types.
            sink.prepare().await.map_err(sink_error)?;
            Ok("token accepted; every mapped custom field exists for this source; the activity type is known".into())
        }
        (ConnectorKind::GitHub(g), _) => github(c, g).await,
        (ConnectorKind::Slack(s), _) => slack(c, s).await,
        (ConnectorKind::SlackDigest(_), _) => {
            Ok("not called: posting is Slack's only way to check a destination (`oql-sync sync --dry-run` shows the changes a digest would list)".into())
        }
        (ConnectorKind::Scarf(s), _) => scarf(c, s).await,
        (ConnectorKind::Webhook(_), _) => {
            Ok("not called: a webhook has no read-only request (`oql-sync sync --dry-run` shows what it would receive)".into())
        }
        (ConnectorKind::File(f), _) => {
            let path = config.dir.join(&f.path);
            let folder = path.parent().unwrap_or(Path::new("."));
            let existing = folder.ancestors().find(|p| p.exists()).unwrap_or(Path::new("."));
            match std::fs::metadata(existing) {
                Ok(m) if m.permissions().readonly() => Err(format!("{} is read-only; fix: point `path` into a writable folder (the state dir)", existing.display())),
                Ok(_) => Ok(format!("writes {}", path.display())),
                Err(e) => Err(format!("cannot reach {}: {e}", existing.display())),
            }
        }
        (ConnectorKind::Export(e), _) => match &e.path {
            None => Ok("no watched folder: files are given to `oql-sync import`".into()),
            Some(p) if crate::sources::bucket::Location::parse(p).is_some() => match crate::sources::bucket::Location::parse(p) {
                Some(Ok(location)) => crate::sources::bucket::check(&location).await,
                _ => Err(format!("`{p}` is not a location oql-sync watches")),
            },
            Some(p) => {
                let folder = config.dir.join(p);
                if folder.is_dir() || p.contains('*') {
                    Ok(format!("watches {}", folder.display()))
                } else {
                    Err(format!("{} does not exist; fix: create it, or correct `path`", folder.display()))
                }
            }
        },
        (_, None) => Err("its mapping did not load".into()),
    }
}

/// One client with the connector's token and a gentle pace.
fn client(c: &Connector, env: Option<&String>, file: Option<&std::path::PathBuf>, retry: RetryPolicy) -> Result<(HttpClient, Auth), String> {
    let dir = c.path.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    let source = secret_source("token", env, file, dir)?;
    let token = source.read(&c.path, "token").map_err(|e| e.to_string())?;
    let http = HttpClient::new(&c.name, &[("default", RateLimit::new(5, 1))], retry).map_err(|e| e.to_string())?;
    Ok((http, Auth::Token(token)))
}

/// GitHub: each repository readable with the token (`GET /repos/{owner}/{repo}`).
async fn github(c: &Connector, g: &crate::sources::github::GitHubConfig) -> Result<String, String> {
    let (http, auth) = client(c, g.token_env.as_ref(), g.token_file.as_ref(), g.retry)?;
    let base = g.base_url.trim_end_matches('/');
    let mut problems = Vec::new();
    for repo in &g.repos {
        let req = Request::new(Method::GET, format!("{base}/repos/{repo}")).auth(&auth).class("default");
        let r = http.send(req).await.map_err(|e| e.to_string())?;
        match r.status {
            200 => {}
            401 => return Err("GitHub refused the token (HTTP 401); fix: a fine-grained token with Metadata, Issues and Pull requests (read) on these repositories".into()),
            403 | 404 => problems.push(format!(
                "{repo}: not visible with this token (HTTP {}); fix: correct the name, or give the token access to it",
                r.status
            )),
            s => problems.push(format!("{repo}: HTTP {s}")),
        }
    }
    if problems.is_empty() { Ok(format!("token accepted; {} repositories readable", g.repos.len())) } else { Err(problems.join("\n")) }
}

/// Slack: each channel's history readable with the token (`conversations.history`,
/// one message), which needs the bot in the channel and the `*:history` scopes.
async fn slack(c: &Connector, s: &crate::sources::slack::SlackConfig) -> Result<String, String> {
    let (http, auth) = client(c, s.token_env.as_ref(), s.token_file.as_ref(), RetryPolicy::default())?;
    let base = s.base_url.trim_end_matches('/');
    let mut problems = Vec::new();
    for channel in &s.channels {
        let req = Request::new(Method::GET, format!("{base}/conversations.history?channel={channel}&limit=1")).auth(&auth).class("default");
        let r = http.send(req).await.map_err(|e| e.to_string())?;
        let body: Value = r.json().unwrap_or(Value::Null);
        if body["ok"].as_bool() == Some(true) {
            continue;
        }
        let error = body["error"].as_str().unwrap_or("unreadable answer");
        match error {
            "invalid_auth" | "not_authed" | "token_revoked" | "account_inactive" => {
                return Err(format!("Slack refused the token ({error}); fix: the bot token (xoxb-…) of the installed app"));
            }
            "missing_scope" => {
                return Err("the token lacks a scope (missing_scope); fix: add channels:history, groups:history and users:read, then reinstall the app".into());
            }
            "not_in_channel" => problems.push(format!("{channel}: the bot is not in the channel; fix: /invite the app there")),
            "channel_not_found" => problems.push(format!("{channel}: no such channel for this token; fix: use the channel id (C…)")),
            other => problems.push(format!("{channel}: {other}")),
        }
    }
    if problems.is_empty() { Ok(format!("token accepted; {} channels readable", s.channels.len())) } else { Err(problems.join("\n")) }
}

/// The report: one line per connector, problems and fixes indented under it.
pub fn render(verdicts: &[Verdict]) -> String {
    let width = verdicts.iter().map(|v| v.connector.len()).max().unwrap_or(0).max(9);
    let mut out = String::new();
    for v in verdicts {
        let (mark, text) = match &v.outcome {
            Ok(t) => ("ok  ", t.as_str()),
            Err(e) => ("FAIL", e.as_str()),
        };
        // Problems and fixes under the connector, wrapped to the terminal, indented.
        let indent = " ".repeat(width + 2 + 11 + 2 + 4 + 2);
        let head = format!("{:width$}  {:11}  {mark}  ", v.connector, v.kind);
        for (i, line) in text.lines().enumerate() {
            let wrapped = crate::output::wrap(line, crate::output::TERMINAL_WIDTH.saturating_sub(indent.len()).max(30));
            for (j, part) in wrapped.lines().enumerate() {
                let lead = if i == 0 && j == 0 { head.as_str() } else { indent.as_str() };
                out.push_str(&format!("{lead}{}\n", part.trim_start()));
            }
        }
    }
    let failed = verdicts.iter().filter(|v| v.outcome.is_err()).count();
    out.push_str(&if failed == 0 {
        format!("live check: all {} connectors work\n", verdicts.len())
    } else {
        format!("live check: {failed} of {} connectors need a fix\n", verdicts.len())
    });
    out
}

/// Scarf: one day of each entity's events (`GET /v2/{entity}/{owner}/events`, yesterday),
/// which needs the token, the owner, and a plan that includes exports.
async fn scarf(c: &Connector, s: &crate::sources::scarf::ScarfConfig) -> Result<String, String> {
    let (http, auth) = client(c, s.token_env.as_ref(), s.token_file.as_ref(), RetryPolicy::default())?;
    let base = s.base_url.trim_end_matches('/');
    let day = chrono::Utc::now().date_naive() - chrono::TimeDelta::days(1);
    for entity in &s.entities {
        let req = Request::new(Method::GET, format!("{base}/v2/{}/{}/events?start_date={day}&end_date={day}", entity.path(), s.owner)).auth(&auth);
        let r = http.send(req).await.map_err(|e| e.to_string())?;
        let said = r.json::<Value>().ok().and_then(|v| v["message"].as_str().map(str::to_owned)).unwrap_or_else(|| r.body_text());
        match r.status {
            200 => {}
            401 => return Err(format!("Scarf refused the token (HTTP 401: {said}); fix: a token from app.scarf.sh user settings")),
            403 if said.to_ascii_lowercase().contains("not eligible") => {
                return Err(format!("`{}` is not eligible for export (HTTP 403: {said}); fix: Scarf's plan, not the token", s.owner));
            }
            403 => return Err(format!("Scarf refused the token for `{}` (HTTP 403: {said}); fix: a token of a member of `{}`", s.owner, s.owner)),
            404 => return Err(format!("unknown owner `{}` (HTTP 404: {said}); fix: the Scarf user or organization name", s.owner)),
            status => return Err(format!("{} events: HTTP {status}: {said}", entity.as_str())),
        }
    }
    Ok(format!("token accepted; the events of `{}` are readable", s.owner))
}
