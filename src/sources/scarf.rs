//! Scarf's API (`https://api.scarf.sh`, v2, bearer token): the raw events of an owner's
//! packages and tracking pixels, and its company rollup.
//!
//! Events come as CSV from `GET /v2/packages/{owner}/events` and
//! `GET /v2/tracking-pixels/{owner}/events` with `start_date` and `end_date` (both
//! inclusive, `YYYY-MM-DD`; <https://docs.scarf.sh/api-v2-public.json>), in the columns
//! of Scarf's raw event export, so each row goes through the very mapping an export
//! file does (`sources::export`: confidence, hosting, Do-Not-Track, MTC quota).
//!
//! One request a day of data, oldest first. Scarf fills a day late and its exports are
//! at-least-once (<https://docs.scarf.sh/data-export/>: "de-duplicate on `id`"), so a
//! day is read again on every poll until it is older than `settle_days`; its rows are
//! then final and the entity's position (the last settled day) moves in the same
//! transaction as that day's rows. Activity ids make every re-read row a duplicate.
//! A day that fails stops its entity there: the position never passes it, and the next
//! poll starts from it again. A first poll reaches `backfill_days` back, as Scarf's own
//! exporter (`scarf-sh/scarf-postgres-exporter`, `BACKFILL_DAYS`, 31) does.
//!
//! Errors are Scarf's `{"message", "code"}` (`not-found`, `not-a-pro-member`,
//! `range-too-long`, `invalid-package-query`): a 401 or 403 names the variable the
//! token came from; a 403 saying the owner is "not eligible for export" is the plan,
//! not the token, and says so. 429s and 5xx go through `http.rs`, as for every API.

use std::path::{Path, PathBuf};

use chrono::{NaiveDate, TimeDelta};
use reqwest::Method;
use serde::Deserialize;

use super::export::{ExportFile, ExportFormat, ExportOptions, Record, ScarfSettings};
use super::github::{PollError, PollSummary};
use crate::attribution::AttributionRules;
use crate::auth::{Auth, SecretSource, secret_source};
use crate::config::Schedule;
use crate::http::{HttpClient, RateLimit, Request, Response, RetryPolicy};
use crate::store::{NewActivity, QuarantinedLine, ScarfStage, Store};

/// What Scarf tracks for an owner: package downloads, tracking-pixel views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Packages,
    TrackingPixels,
}

impl Entity {
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Packages => "packages",
            Entity::TrackingPixels => "tracking_pixels",
        }
    }

    /// The API's path segment.
    pub fn path(self) -> &'static str {
        match self {
            Entity::Packages => "packages",
            Entity::TrackingPixels => "tracking-pixels",
        }
    }
}

/// `kind: scarf`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScarfConfig {
    pub name: String,
    #[allow(dead_code)]
    kind: String,
    pub schedule: Schedule,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The Scarf API token (app.scarf.sh → user settings), sent as a bearer token.
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The Scarf user or organization whose packages and pixels are read.
    pub owner: String,
    /// What is read (default: both).
    #[serde(default = "all_entities")]
    pub entities: Vec<Entity>,
    /// A day is read again on every poll until it is more than this many days old:
    /// Scarf fills a day's data late.
    #[serde(default = "default_settle_days")]
    pub settle_days: u32,
    /// How many days back a first poll reads.
    #[serde(default = "default_backfill_days")]
    pub backfill_days: u32,
    /// Read Scarf's company rollup once a day, for the `scarf_stage` signals.
    #[serde(default = "yes")]
    pub company_rollup: bool,
    /// How Scarf's columns map onto activities, as for Scarf export files.
    #[serde(default)]
    pub scarf: ScarfSettings,
    #[serde(default = "default_rate")]
    pub rate_limit: RateLimit,
    #[serde(default)]
    pub retry: RetryPolicy,
}

fn default_base_url() -> String {
    "https://api.scarf.sh".into()
}
fn all_entities() -> Vec<Entity> {
    vec![Entity::Packages, Entity::TrackingPixels]
}
fn default_settle_days() -> u32 {
    2
}
fn default_backfill_days() -> u32 {
    31
}
fn yes() -> bool {
    true
}
fn default_rate() -> RateLimit {
    // Scarf publishes no limit: a gentle pace, and its 429s are honoured.
    RateLimit::new(60, 60)
}

impl ScarfConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        crate::config::check_url("base_url", &self.base_url)?;
        crate::config::check_token(self.token_env.as_ref(), self.token_file.as_ref())?;
        // The owner goes into the URL's path as it is.
        if self.owner.is_empty() || !self.owner.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(("owner".into(), format!("`{}` is not a Scarf user or organization name (letters, digits, `-`, `_`, `.`)", self.owner)));
        }
        if self.entities.is_empty() {
            return Err(("entities".into(), "names nothing to read (packages, tracking_pixels)".into()));
        }
        if self.backfill_days == 0 {
            return Err(("backfill_days".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}

/// Scarf's error body.
#[derive(Debug, Default, Deserialize)]
struct ApiError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: String,
}

/// One day of one entity, read.
struct Day {
    activities: Vec<NewActivity>,
    quarantined: Vec<QuarantinedLine>,
}

pub struct ScarfSource<'a> {
    config: &'a ScarfConfig,
    store: &'a Store,
    rules: &'a AttributionRules,
    http: HttpClient,
    auth: Auth,
    base: String,
    /// Where the token came from, to name in errors (never the token).
    token_from: String,
    summary: PollSummary,
    today: NaiveDate,
}

impl<'a> ScarfSource<'a> {
    pub fn build(config: &'a ScarfConfig, file: &Path, store: &'a Store, rules: &'a AttributionRules) -> Result<ScarfSource<'a>, PollError> {
        let dir = file.parent().and_then(Path::parent).unwrap_or(Path::new("."));
        let source = secret_source("token", config.token_env.as_ref(), config.token_file.as_ref(), dir).map_err(PollError::Api)?;
        let token_from = match &source {
            SecretSource::Env(var) => format!("the environment variable {var}"),
            SecretSource::File(path) => format!("the file {}", path.display()),
        };
        Ok(ScarfSource {
            config,
            store,
            rules,
            http: HttpClient::new(&config.name, &[("default", config.rate_limit)], config.retry)?,
            auth: Auth::Token(source.read(file, "token")?),
            base: config.base_url.trim_end_matches('/').to_owned(),
            token_from,
            summary: PollSummary::default(),
            today: chrono::Utc::now().date_naive(),
        })
    }

    pub async fn poll(mut self) -> Result<PollSummary, PollError> {
        for entity in self.config.entities.clone() {
            match self.poll_entity(entity).await {
                Ok(()) => {}
                Err(PollError::Store(e)) => return Err(PollError::Store(e)),
                Err(e @ PollError::Unauthorized(_)) => {
                    self.summary.report(format!("{e}; polling stopped"));
                    self.summary.add_counts(self.http.stats.counts());
                    return Ok(self.summary);
                }
                Err(e) => self.summary.report(e.to_string()),
            }
        }
        if self.config.company_rollup {
            match self.poll_rollup().await {
                Ok(()) => {}
                Err(PollError::Store(e)) => return Err(PollError::Store(e)),
                Err(e) => self.summary.report(e.to_string()),
            }
        }
        self.summary.add_counts(self.http.stats.counts());
        Ok(self.summary)
    }

    /// Reads the company rollup once a day (`GET /v2/packages/{owner}/company-rollup`,
    /// <https://docs.scarf.sh/data-export/#how-to-export-company-data>): Scarf rolls it up
    /// daily, so a second read the same day would only repeat it.
    async fn poll_rollup(&mut self) -> Result<(), PollError> {
        let name = self.config.name.clone();
        let today = self.today.format("%Y-%m-%d").to_string();
        if self.store.cursor(&name, "rollup").await?.as_deref() == Some(today.as_str()) {
            return Ok(());
        }
        let response = self.get(&format!("/v2/packages/{}/company-rollup", self.config.owner), "").await?;
        let rollup = read_rollup(&response.body).map_err(|e| PollError::Api(format!("company rollup: {e}")))?;
        self.store.save_scarf_stages(&name, &rollup, true, Some(("rollup", &today))).await?;
        tracing::info!(connector = %name, companies = rollup.len(), "scarf company rollup read");
        Ok(())
    }

    /// Whether a day's data is final: it is more than `settle_days` old.
    fn settled(&self, day: NaiveDate) -> bool {
        (self.today - day).num_days() > self.config.settle_days as i64
    }

    /// Reads an entity's days from the one after its last settled day (or the backfill
    /// start) through today.
    async fn poll_entity(&mut self, entity: Entity) -> Result<(), PollError> {
        let name = self.config.name.clone();
        let key = format!("events:{}", entity.as_str());
        let first = match self.store.cursor(&name, &key).await? {
            Some(text) => {
                let day = NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                    .map_err(|_| PollError::Api(format!("stored position `{text}` of {} is not a date", entity.as_str())))?;
                day + TimeDelta::days(1)
            }
            None => self.today - TimeDelta::days(self.config.backfill_days as i64),
        };
        let mut day = first;
        while day <= self.today {
            let read = self.read_day(entity, day).await.map_err(|e| match e {
                PollError::Api(m) => PollError::Api(format!("{} {day}: {m}", entity.as_str())),
                PollError::Http(e) => PollError::Api(format!("{} {day}: {e}", entity.as_str())),
                other => other,
            })?;
            let settled = self.settled(day);
            let value = day.format("%Y-%m-%d").to_string();
            let cursor = settled.then_some((name.as_str(), key.as_str(), value.as_str()));
            let outcome = self.store.insert_with_cursor(&read.activities, &read.quarantined, cursor).await?;
            self.summary.fetched += (read.activities.len() + read.quarantined.len()) as u64;
            self.summary.inserted += outcome.inserted;
            tracing::info!(connector = %name, entity = entity.as_str(), %day, rows = read.activities.len() + read.quarantined.len(), new = outcome.inserted, settled, "scarf day read");
            day += TimeDelta::days(1);
        }
        Ok(())
    }

    /// Sends a GET and turns Scarf's refusals into errors that say what to fix.
    async fn get(&self, path: &str, query: &str) -> Result<Response, PollError> {
        let url = format!("{}{path}{}", self.base, if query.is_empty() { String::new() } else { format!("?{query}") });
        let request = Request::new(Method::GET, url).auth(&self.auth).header("accept", "text/csv".into());
        let response = self.http.send(request).await?;
        if response.ok() {
            return Ok(response);
        }
        let owner = &self.config.owner;
        let error: ApiError = serde_json::from_slice(&response.body).unwrap_or_default();
        let said = if error.message.is_empty() { response.body_text() } else { error.message.clone() };
        let status = response.status;
        Err(match status {
            401 => PollError::Unauthorized(format!(
                "Scarf refused the token from {} (HTTP 401: {said}): it is wrong or expired; fix: a token from https://app.scarf.sh (user settings)",
                self.token_from
            )),
            403 if error.code == "not-a-pro-member" || said.to_ascii_lowercase().contains("not eligible") => PollError::Unauthorized(format!(
                "owner `{owner}` is not eligible for export (HTTP 403: {said}): Scarf's plan for `{owner}` does not include exports; the token from {} is not the problem",
                self.token_from
            )),
            403 => PollError::Unauthorized(format!(
                "Scarf refused the token from {} for owner `{owner}` (HTTP 403: {said}); fix: a token of a member of `{owner}`",
                self.token_from
            )),
            404 => PollError::Unauthorized(format!(
                "unknown owner `{owner}` (HTTP 404: {said}); fix: `owner` is the Scarf user or organization name as in app.scarf.sh"
            )),
            _ => PollError::Api(format!("HTTP {status}: {said}")),
        })
    }

    /// One day of one entity's events, through the Scarf export mapping.
    async fn read_day(&self, entity: Entity, day: NaiveDate) -> Result<Day, PollError> {
        let path = format!("/v2/{}/{}/events", entity.path(), self.config.owner);
        let response = self.get(&path, &format!("start_date={day}&end_date={day}")).await?;
        let label = format!("scarf-api:{}/{}/{day}", self.config.owner, entity.as_str());
        let options = ExportOptions { format: ExportFormat::Scarf, source: None, scarf: self.config.scarf.clone() };
        read_csv(&label, response.body, &options, self.rules)
    }
}

/// Reads a CSV body of Scarf events; a header without the required columns fails the
/// whole body (nothing of it is stored), a bad row is quarantined under `label`.
fn read_csv(label: &str, body: Vec<u8>, options: &ExportOptions, rules: &AttributionRules) -> Result<Day, PollError> {
    let mut day = Day { activities: Vec::new(), quarantined: Vec::new() };
    // A day without events may come as an empty body rather than a bare header.
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(day);
    }
    let size = body.len() as u64;
    let file = ExportFile::from_reader(Path::new(label), std::io::Cursor::new(body), size, options).map_err(|e| PollError::Api(e.to_string()))?;
    for record in file {
        match record.map_err(|e| PollError::Api(e.to_string()))? {
            Record::Valid { activity, .. } => {
                let company = rules.attribute(activity.company_domain.as_deref(), activity.actor.as_deref(), activity.email_domain.as_deref(), activity.occurred_at);
                day.activities.push(NewActivity { activity, company });
            }
            Record::Invalid { line, reason, raw } => day.quarantined.push(QuarantinedLine { file: label.to_owned(), line, reason, raw }),
        }
    }
    Ok(day)
}

/// Our stages, as Scarf's rollup spells them once normalized (`ongoing-usage`).
const OUR_STAGES: [&str; 5] = ["interest", "investigation", "experimentation", "ongoing_usage", "inactive"];

/// Scarf's `funnel_stage` in our spelling when it is one of our stages; any other value
/// (the column's values are not documented, and Scarf may add stages) is kept as Scarf
/// wrote it.
pub fn normalize_stage(value: &str) -> String {
    let ours = value.trim().to_ascii_lowercase().replace(['-', ' '], "_");
    if OUR_STAGES.contains(&ours.as_str()) {
        ours
    } else {
        // Shown and synced as is: never longer than a stage name needs, never personal data.
        crate::activity::redact_personal_data(&crate::activity::truncate(value.trim(), 60)).into_owned()
    }
}

/// A company rollup CSV (<https://docs.scarf.sh/data-export/#how-to-export-company-data>)
/// as each company's stage: columns read by name, `company_domain` and `funnel_stage`
/// needed; the stage's start date from `<stage>_start_date`. Rows without a domain or
/// a stage are skipped: they place nothing.
pub fn read_rollup(body: &[u8]) -> Result<Vec<ScarfStage>, String> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(body);
    let headers: Vec<String> = reader.headers().map_err(|e| format!("cannot read the CSV header: {e}"))?.iter().map(|h| h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase()).collect();
    if headers.is_empty() || headers == [""] {
        return Ok(Vec::new());
    }
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (Some(domain_at), Some(stage_at)) = (column("company_domain"), column("funnel_stage")) else {
        return Err(format!("a company rollup needs the columns `company_domain` and `funnel_stage` (header has: {})", headers.join(", ")));
    };
    let mut out = Vec::new();
    let mut unknown = std::collections::BTreeSet::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("unreadable CSV row: {e}"))?;
        let (Some(domain), Some(stage)) = (record.get(domain_at).and_then(crate::activity::normalize_domain), record.get(stage_at).filter(|s| !s.trim().is_empty())) else {
            continue;
        };
        let stage = normalize_stage(stage);
        if !OUR_STAGES.contains(&stage.as_str()) {
            unknown.insert(stage.clone());
        }
        let since = column(&format!("{}_start_date", stage.to_ascii_lowercase().replace(['-', ' '], "_")))
            .and_then(|i| record.get(i))
            .and_then(|d| chrono::NaiveDate::parse_from_str(d.get(..10).unwrap_or(d), "%Y-%m-%d").ok());
        out.push(ScarfStage { domain, stage, since });
    }
    for stage in unknown {
        tracing::warn!(stage = %stage, "Scarf's rollup names a funnel stage that is not one of ours: kept as Scarf spells it");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scarf_stages_take_our_spelling_and_unknown_ones_stay_as_they_are() {
        assert_eq!(normalize_stage("ongoing-usage"), "ongoing_usage");
        assert_eq!(normalize_stage(" Experimentation "), "experimentation");
        assert_eq!(normalize_stage("Evaluation-Plus"), "Evaluation-Plus");
    }

    #[test]
    fn a_rollup_reads_columns_by_name_with_the_stage_start_date() {
        let csv = "company_name,funnel_stage,extra,company_domain,ongoing_usage_start_date,investigation_start_date\n\
                   Acme,ongoing-usage,x,https://www.Acme.com/,2026-11-02,2026-09-01\n\
                   Nobody,interest,x,,,\n\
                   Initech,evaluation,x,initech.io,,\n";
        let rows = read_rollup(csv.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0], ScarfStage { domain: "acme.com".into(), stage: "ongoing_usage".into(), since: chrono::NaiveDate::from_ymd_opt(2026, 11, 2) });
        assert_eq!(rows[1].stage, "evaluation");
        assert_eq!(rows[1].since, None);
        assert!(read_rollup(b"company_name,total_events\nAcme,3\n").unwrap_err().contains("`funnel_stage`"));
        assert!(read_rollup(b"").unwrap().is_empty());
    }
}
