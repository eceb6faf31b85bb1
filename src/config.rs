//! Loads and validates a config directory: `connectors/*.yaml`, `attribution.yaml` and
//! `scoring.yaml`, each optional. Everything is checked before any command does work,
//! and every error names the file, line and column.
//!
//! Validation happens inside deserialization (typed fields, `deny_unknown_fields`,
//! `try_from` newtypes), so the YAML parser's own location is the one reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::activity::{Kind, normalize_domain};
use crate::attribution::AttributionRules;
use crate::scoring::model::{Model, ModelOverrides};
use crate::sinks::file::FileConfig;
use crate::sinks::common_room::CommonRoomConfig;
use crate::sources::github::GitHubConfig;
use crate::sources::scarf::ScarfConfig;
use crate::sources::slack::SlackConfig;
use crate::sinks::hubspot::HubSpotConfig;
use crate::sinks::salesforce::SalesforceConfig;
use crate::sinks::mapping::{Action, Mapping};
use crate::sinks::webhook::WebhookConfig;
use crate::sources::export::{ExportFormat, ScarfSettings};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config directory {0} does not exist or is not a directory")]
    MissingDir(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    /// Every problem of a config dir at once, one a line: fixing them one run at a time
    /// is the slow road.
    #[error("{} problems in the config:\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Many(Vec<ConfigError>),
}

impl ConfigError {
    /// One error as itself, several as `Many`; `None` for none.
    pub fn from_list(mut errors: Vec<ConfigError>) -> Option<ConfigError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(ConfigError::Many(errors)),
        }
    }

    /// The problems one a line, for counting and listing.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Many(all) => all.iter().flat_map(ConfigError::lines).collect(),
            other => vec![other.to_string()],
        }
    }
}

/// A loaded, validated config directory.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub model: Model,
    pub attribution: AttributionRules,
    pub connectors: Vec<Connector>,
    /// Every `mappings/*.yaml`, by path relative to the config dir.
    pub mappings: BTreeMap<String, std::sync::Arc<Mapping>>,
    /// Things that are not errors but most likely mistakes (`check` prints them).
    pub warnings: Vec<String>,
}

/// Fields every connector file has, whatever its kind.
#[derive(Debug, Clone)]
pub struct Connector {
    pub name: String,
    pub schedule: String,
    pub path: PathBuf,
    pub kind: ConnectorKind,
}

#[derive(Debug, Clone)]
pub enum ConnectorKind {
    Export(ExportConnector),
    GitHub(GitHubConfig),
    Slack(SlackConfig),
    Scarf(ScarfConfig),
    HubSpot(HubSpotConfig),
    Salesforce(SalesforceConfig),
    CommonRoom(CommonRoomConfig),
    File(FileConfig),
    Webhook(WebhookConfig),
    SlackDigest(crate::sinks::slack::SlackDigestConfig),
}

impl ConnectorKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ConnectorKind::Export(_) => "export",
            ConnectorKind::GitHub(_) => "github",
            ConnectorKind::Slack(_) => "slack",
            ConnectorKind::Scarf(_) => "scarf",
            ConnectorKind::HubSpot(_) => "hubspot",
            ConnectorKind::Salesforce(_) => "salesforce",
            ConnectorKind::CommonRoom(_) => "common_room",
            ConnectorKind::File(_) => "file",
            ConnectorKind::Webhook(_) => "webhook",
            ConnectorKind::SlackDigest(_) => "slack_digest",
        }
    }
}

impl Connector {
    /// The mapping of a sink; `None` for sources.
    pub fn mapping_path(&self) -> Option<&str> {
        match &self.kind {
            ConnectorKind::Export(_) | ConnectorKind::GitHub(_) | ConnectorKind::Slack(_) | ConnectorKind::Scarf(_) => None,
            ConnectorKind::HubSpot(c) => Some(&c.mapping),
            ConnectorKind::Salesforce(c) => Some(&c.mapping),
            ConnectorKind::CommonRoom(c) => Some(&c.mapping),
            ConnectorKind::File(c) => Some(&c.mapping),
            ConnectorKind::Webhook(c) => Some(&c.mapping),
            ConnectorKind::SlackDigest(c) => Some(&c.mapping),
        }
    }

    pub fn is_sink(&self) -> bool {
        self.mapping_path().is_some()
    }
}

/// `kind: export`: export files (NDJSON, CSV, Scarf) read from a folder or glob.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportConnector {
    pub name: String,
    #[allow(dead_code)]
    kind: String,
    pub schedule: Schedule,
    /// Folder or glob of export files, relative to the config dir; or a bucket,
    /// `s3://bucket/prefix` or `gs://bucket/prefix`.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub format: ExportFormat,
    /// Overrides the `source` of activities read through this connector.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub scarf: ScarfSettings,
    /// How long a changed file must stay unchanged (size and modification time) before
    /// it is read whole: an exporter may still be writing it. Lines an NDJSON file
    /// already ends with a newline are read before.
    #[serde(default = "default_settle", with = "humantime_serde")]
    #[schemars(with = "String", example = &"5s")]
    pub settle: std::time::Duration,
}

/// A few seconds: longer than an exporter's pause between two writes of one file.
fn default_settle() -> std::time::Duration {
    std::time::Duration::from_secs(5)
}

/// Checks a connector's `base_url`-like key: (key, message) on failure.
pub fn check_url(key: &str, url: &str) -> Result<(), (String, String)> {
    reqwest::Url::parse(url).map(|_| ()).map_err(|_| (key.to_owned(), format!("`{url}` is not a URL")))
}

/// Checks that a connector names its token once, as `token_env` or `token_file`.
pub fn check_token(env: Option<&String>, file: Option<&std::path::PathBuf>) -> Result<(), (String, String)> {
    crate::auth::secret_source("token", env, file, Path::new("")).map(|_| ()).map_err(|m| {
        let key = if m.starts_with("`token_env` must") { "token_env" } else { "name" };
        (key.to_owned(), m)
    })
}

/// A cron expression with a seconds field (`sec min hour day month weekday [year]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Schedule(pub String);

impl TryFrom<String> for Schedule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        use std::str::FromStr;
        const SHAPE: &str = "sec min hour day month weekday [year], e.g. `0 */15 * * * *`";
        let fields = s.split_whitespace().count();
        if !s.trim_start().starts_with('@') && !(6..=7).contains(&fields) {
            return Err(format!(
                "`{s}` is not a cron expression with seconds: it has {fields} field{}, expected 6 or 7 ({SHAPE})",
                if fields == 1 { "" } else { "s" }
            ));
        }
        let schedule = cron::Schedule::from_str(&s).map_err(|e| {
            // The cron crate's message repeats the expression with a caret under it;
            // only its last line says what is wrong.
            let text = e.to_string();
            let why = text.lines().map(str::trim).filter(|l| !l.is_empty() && *l != s.trim() && !l.chars().all(|c| c == '^' || c == ' ')).last().map(str::to_owned);
            // "Minutes must be less than 59. ('61' specified.)": 59 itself is allowed.
            let why = why.map(|w| match w.split_once(" must be less than ") {
                Some((unit, rest)) => {
                    let max = rest.split('.').next().unwrap_or(rest);
                    let found = rest.split('\'').nth(1).unwrap_or("?");
                    format!("{} must be at most {max}, found `{found}`", unit.to_lowercase())
                }
                None => w.trim_end_matches('.').to_owned(),
            });
            match why {
                Some(why) => format!("`{s}` is not a cron expression with seconds: {why} ({SHAPE})"),
                None => format!("`{s}` is not a cron expression with seconds ({SHAPE})"),
            }
        })?;
        if schedule.upcoming(chrono::Utc).next().is_none() {
            return Err(format!("`{s}` never fires (no date matches it)"));
        }
        Ok(Schedule(s))
    }
}

/// A company domain in config, normalized at load.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Domain(pub String);

impl TryFrom<String> for Domain {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        normalize_domain(&s)
            .map(Domain)
            .ok_or_else(|| format!("`{s}` is not a domain"))
    }
}

/// An activity kind named in config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct KindName(pub Kind);

impl TryFrom<String> for KindName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Kind::parse(&s).map(KindName).ok_or_else(|| {
            format!("unknown kind `{s}` (expected download, page_view, doc_view, telemetry or community)")
        })
    }
}

#[derive(Deserialize)]
struct ConnectorHeader {
    name: Option<String>,
    kind: Option<String>,
}

/// The bytes of a config dir's files, read before anything is parsed: `Config::load`
/// reads them from disk, and `Config::from_files` (pure, also the fuzz target's entry
/// point) parses and checks them.
#[derive(Debug, Clone, Default)]
pub struct ConfigFiles {
    pub dir: PathBuf,
    pub scoring: Option<Vec<u8>>,
    pub attribution: Option<Vec<u8>>,
    /// Where `scoring` and `attribution` were read (`.yaml` or `.yml`), for messages;
    /// `None`: `scoring.yaml`, `attribution.yaml`.
    pub scoring_path: Option<PathBuf>,
    pub attribution_path: Option<PathBuf>,
    /// `mappings/*.yaml` and `connectors/*.yaml`, by path, sorted.
    pub mappings: Vec<(PathBuf, Vec<u8>)>,
    pub connectors: Vec<(PathBuf, Vec<u8>)>,
}

impl ConfigFiles {
    pub fn read(dir: &Path) -> Result<ConfigFiles, ConfigError> {
        if !dir.is_dir() {
            return Err(ConfigError::MissingDir(dir.to_path_buf()));
        }
        // `.yml` is read wherever `.yaml` is; both at once would leave one ignored.
        let optional = |name: &str| -> Result<Option<(PathBuf, Vec<u8>)>, ConfigError> {
            let yaml = dir.join(format!("{name}.yaml"));
            let yml = dir.join(format!("{name}.yml"));
            let path = match (yaml.exists(), yml.exists()) {
                (true, true) => {
                    return Err(ConfigError::File { path: yml, message: format!("both {name}.yaml and {name}.yml exist; keep one") });
                }
                (true, false) => yaml,
                (false, true) => yml,
                (false, false) => return Ok(None),
            };
            read_bytes(&path).map(|b| Some((path, b)))
        };
        let yaml_files = |sub: &str| -> Result<Vec<(PathBuf, Vec<u8>)>, ConfigError> {
            let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
                return Ok(Vec::new());
            };
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            paths.sort();
            paths.into_iter().map(|p| read_bytes(&p).map(|b| (p, b))).collect()
        };
        let (scoring_path, scoring) = optional("scoring")?.unzip();
        let (attribution_path, attribution) = optional("attribution")?.unzip();
        Ok(ConfigFiles {
            dir: dir.to_path_buf(),
            scoring,
            attribution,
            scoring_path,
            attribution_path,
            mappings: yaml_files("mappings")?,
            connectors: yaml_files("connectors")?,
        })
    }
}

impl Config {
    /// Loads the config dir. A dir with none of the files is valid: defaults apply.
    pub fn load(dir: &Path) -> Result<Config, ConfigError> {
        let files = ConfigFiles::read(dir)?;
        let texts: Vec<String> =
            files.connectors.iter().chain(&files.mappings).map(|(_, bytes)| String::from_utf8_lossy(bytes).into_owned()).collect();
        crate::redaction::register_config(dir, &texts.iter().map(String::as_str).collect::<Vec<_>>());
        Config::from_files(files)
    }

    /// Parses and checks the files of a config dir (no I/O). Every problem is reported,
    /// not only the first: a file that fails is skipped and the others are still read.
    pub fn from_files(files: ConfigFiles) -> Result<Config, ConfigError> {
        let dir = files.dir.as_path();
        let mut errors = Vec::new();
        let mut model = Model::default();
        if let Some(bytes) = &files.scoring {
            let path = files.scoring_path.clone().unwrap_or_else(|| dir.join("scoring.yaml"));
            match decode(&path, bytes).and_then(|text| parse::<ModelOverrides>(&path, &text)) {
                Ok(overrides) => model.apply(overrides),
                Err(e) => errors.push(e),
            }
        }
        let mut attribution = AttributionRules::default();
        if let Some(bytes) = &files.attribution {
            let path = files.attribution_path.clone().unwrap_or_else(|| dir.join("attribution.yaml"));
            match decode(&path, bytes).and_then(|text| load_attribution(&path, &text)) {
                Ok(rules) => attribution = rules,
                Err(e) => errors.push(e),
            }
        }
        let mappings = load_mappings(&files.mappings, &mut errors);
        let connectors = load_connectors(&files.connectors, &mut errors);
        let texts: BTreeMap<&Path, &[u8]> = files.connectors.iter().map(|(p, b)| (p.as_path(), b.as_slice())).collect();
        let mapping_files: std::collections::BTreeSet<String> =
            files.mappings.iter().map(|(p, _)| format!("mappings/{}", p.file_name().unwrap_or_default().to_string_lossy())).collect();
        for c in &connectors {
            let text = texts.get(c.path.as_path()).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            // A mapping that failed to load was reported already.
            if c.mapping_path().is_some_and(|m| mapping_files.contains(&mapping_key(m)) && !mappings.contains_key(&mapping_key(m))) {
                continue;
            }
            if let Err(e) = check_sink(dir, c, &text, &mappings) {
                errors.push(e);
            }
        }
        errors.extend(check_shared_outputs(dir, &connectors));
        if let Some(e) = ConfigError::from_list(errors) {
            return Err(e);
        }
        let mut warnings = Vec::new();
        if files.connectors.is_empty() {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name == "connectors" || name == "mappings" {
                warnings.push(format!(
                    "{} is a {name}/ folder, not a config dir: pass its parent (--config-dir {})",
                    dir.display(),
                    dir.parent().map(|p| p.display().to_string()).filter(|p| !p.is_empty()).unwrap_or_else(|| "..".into())
                ));
            } else {
                warnings.push(format!(
                    "{} has no connectors/ folder with connector files: nothing will be polled or synced (`oql-sync init` writes a starter config)",
                    dir.display()
                ));
            }
        }
        Ok(Config {
            dir: dir.to_path_buf(),
            model,
            attribution,
            connectors,
            mappings,
            warnings,
        })
    }

    /// The export connectors, by name.
    pub fn export_connectors(&self) -> impl Iterator<Item = (&Connector, &ExportConnector)> {
        self.connectors.iter().filter_map(|c| match &c.kind {
            ConnectorKind::Export(e) => Some((c, e)),
            _ => None,
        })
    }

    /// The mapping a sink connector names (checked at load).
    pub fn mapping_of(&self, connector: &Connector) -> Option<std::sync::Arc<Mapping>> {
        connector.mapping_path().and_then(|p| self.mappings.get(&mapping_key(p)).cloned())
    }
}

/// Mappings are keyed by their path relative to the config dir, `./` removed.
fn mapping_key(path: &str) -> String {
    path.trim_start_matches("./").to_owned()
}

fn load_mappings(files: &[(PathBuf, Vec<u8>)], errors: &mut Vec<ConfigError>) -> BTreeMap<String, std::sync::Arc<Mapping>> {
    let mut out = BTreeMap::new();
    for (path, bytes) in files {
        match load_mapping(path, bytes) {
            Ok(mapping) => {
                let key = format!("mappings/{}", path.file_name().unwrap_or_default().to_string_lossy());
                out.insert(key, std::sync::Arc::new(mapping));
            }
            Err(e) => errors.push(e),
        }
    }
    out
}

fn load_mapping(path: &Path, bytes: &[u8]) -> Result<Mapping, ConfigError> {
    let text = decode(path, bytes)?;
    let mapping: Mapping = parse_lenient(path, &text)?;
    if let Err((at, message)) = mapping.validate() {
        let (line, column) = locate(&text, &at);
        return Err(ConfigError::Invalid { path: path.to_path_buf(), line, column, message: format!("{at}: {message}") });
    }
    Ok(mapping)
}

/// Parses `attribution.yaml` and checks what its types cannot (date ranges, cycles).
fn load_attribution(path: &Path, text: &str) -> Result<AttributionRules, ConfigError> {
    let file: crate::attribution::AttributionFile = parse(path, text)?;
    if let Err(e) = file.validate() {
        let keys: Vec<&str> = e.at.iter().map(String::as_str).collect();
        let (line, column) = locate_keys(text, &keys);
        return Err(ConfigError::Invalid { path: path.to_path_buf(), line, column, message: e.message });
    }
    Ok(AttributionRules::from_file(file))
}

/// Where `key` starts after `from` as a whole key: `acme.com:` is not found in
/// `widgets-acme.com:`.
fn find_key(text: &str, from: usize, key: &str) -> Option<usize> {
    let mut at = from;
    while let Some(i) = text[at..].find(key) {
        let start = at + i;
        let before = text[..start].chars().next_back();
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '.' || c == '_') {
            return Some(start);
        }
        at = start + key.len();
    }
    None
}

/// The line and column of a dotted key path (`fields.oql_stage.values`) in a YAML text:
/// each key is searched for after the previous one. Good enough to point at the key of a
/// semantic error that the parser could not see.
pub(crate) fn locate(text: &str, path: &str) -> (u64, u64) {
    locate_keys(text, &path.split('.').map(|k| k.split('[').next().unwrap_or(k)).collect::<Vec<_>>())
}

/// `locate` for keys that may hold dots themselves (domains). A key `name#n` stands for
/// the n-th (from 0) occurrence of `name:` after the previous key.
pub(crate) fn locate_keys(text: &str, keys: &[&str]) -> (u64, u64) {
    let mut from = 0usize;
    for key in keys {
        let (key, nth) = match key.split_once('#') {
            Some((k, n)) => (k, n.parse::<usize>().unwrap_or(0)),
            None => (*key, 0),
        };
        for _ in 0..nth {
            if let Some(i) = find_key(text, from, &format!("{key}:")) {
                from = i + key.len() + 1;
            }
        }
        let found = [format!("{key}:"), format!("\"{key}\":"), format!("'{key}':")]
            .iter()
            .filter_map(|k| find_key(text, from, k))
            .min();
        if let Some(i) = found {
            from = i;
        }
    }
    let line = text[..from].matches('\n').count() as u64 + 1;
    let column = (from - text[..from].rfind('\n').map_or(0, |i| i + 1)) as u64 + 1;
    (line, column)
}

/// A sink's mapping must exist, and its triggers must be actions the sink can run.
fn check_sink(dir: &Path, c: &Connector, text: &str, mappings: &BTreeMap<String, std::sync::Arc<Mapping>>) -> Result<(), ConfigError> {
    let Some(path) = c.mapping_path() else {
        return Ok(());
    };
    let (line, column) = locate(text, "mapping");
    let invalid = |message: String| ConfigError::Invalid { path: c.path.clone(), line, column, message };
    let mapping = mappings.get(&mapping_key(path)).ok_or_else(|| {
        invalid(format!(
            "mapping `{path}` is not a file of {} (mappings are read from the config dir's mappings/ folder)",
            dir.join("mappings").display()
        ))
    })?;
    for (i, t) in mapping.triggers.iter().enumerate() {
        let runs = match (&c.kind, &t.action) {
            (_, Action::Webhook(_) | Action::Slack(_)) => true,
            (ConnectorKind::HubSpot(_), Action::HubspotList(_)) => true,
            (ConnectorKind::Salesforce(_), Action::SalesforceCampaign(_) | Action::SalesforceTask(_)) => true,
            _ => false,
        };
        if !runs {
            return Err(invalid(format!(
                "mapping `{path}` triggers[{i}]: a {} connector cannot run the action {:?}",
                c.kind.as_str(),
                t.action
            )));
        }
    }
    // A value kept only while the CRM field is empty needs the field read back.
    if !matches!(c.kind, ConnectorKind::HubSpot(_) | ConnectorKind::Salesforce(_))
        && let Some(field) = mapping.if_empty_fields().first()
    {
        return Err(invalid(format!(
            "mapping `{path}` fields.{field}: `update: if_empty` needs a CRM oql-sync can read back (HubSpot, Salesforce); a {} connector cannot be read",
            c.kind.as_str()
        )));
    }
    if let ConnectorKind::HubSpot(_) = c.kind
        && mapping.match_rule.crm_field.is_none() {
            return Err(invalid(format!("mapping `{path}`: HubSpot matches companies by `match: {{ crm_field: domain }}`")));
        }
    Ok(())
}

fn load_connectors(files: &[(PathBuf, Vec<u8>)], errors: &mut Vec<ConfigError>) -> Vec<Connector> {
    let mut out: Vec<Connector> = Vec::new();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (path, bytes) in files {
        let connector = match load_connector(path, bytes) {
            Ok(c) => c,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if let Some(first) = seen.insert(connector.name.clone(), path.clone()) {
            errors.push(ConfigError::File {
                path: path.clone(),
                message: format!("connector name `{}` is already used by {}", connector.name, first.display()),
            });
            continue;
        }
        out.push(connector);
    }
    out
}

fn load_connector(path: &Path, bytes: &[u8]) -> Result<Connector, ConfigError> {
    {
        let path = path.to_path_buf();
        let text = decode(&path, bytes)?;
        let header: ConnectorHeader = parse_lenient(&path, &text)?;
        let file_error = |message: String| ConfigError::File { path: path.clone(), message };
        check_env_names(&path, &text)?;
        let kind = header.kind.ok_or_else(|| file_error("missing required key `kind`".into()))?;
        header.name.ok_or_else(|| file_error("missing required key `name`".into()))?;
        let connector = match kind.as_str() {
            "export" => {
                let e: ExportConnector = parse(&path, &text)?;
                if let Some(Err(message)) = e.path.as_deref().and_then(crate::sources::bucket::Location::parse) {
                    let (line, column) = locate(&text, "path");
                    return Err(ConfigError::Invalid { path: path.clone(), line, column, message });
                }
                Connector {
                    name: e.name.clone(),
                    schedule: e.schedule.0.clone(),
                    path: path.clone(),
                    kind: ConnectorKind::Export(e),
                }
            }
            "hubspot" => {
                let c: HubSpotConfig = parse_lenient(&path, &text)?;
                c.validate(&path).map_err(|(key, message)| {
                    let (line, column) = locate(&text, &key);
                    ConfigError::Invalid { path: path.clone(), line, column, message }
                })?;
                Connector { name: c.name.clone(), schedule: c.schedule.0.clone(), path: path.clone(), kind: ConnectorKind::HubSpot(c) }
            }
            "github" => {
                let c: GitHubConfig = parse_lenient(&path, &text)?;
                c.validate().map_err(|(key, message)| {
                    let (line, column) = locate(&text, &key);
                    ConfigError::Invalid { path: path.clone(), line, column, message }
                })?;
                Connector { name: c.name.clone(), schedule: c.schedule.0.clone(), path: path.clone(), kind: ConnectorKind::GitHub(c) }
            }
            "salesforce" => {
                let c: SalesforceConfig = parse_lenient(&path, &text)?;
                c.validate().map_err(|(key, message)| {
                    let (line, column) = locate(&text, &key);
                    ConfigError::Invalid { path: path.clone(), line, column, message }
                })?;
                Connector { name: c.name.clone(), schedule: c.schedule.0.clone(), path: path.clone(), kind: ConnectorKind::Salesforce(c) }
            }
            "common_room" => {
                let c: CommonRoomConfig = parse_lenient(&path, &text)?;
                c.validate().map_err(|(key, message)| {
                    let (line, column) = locate(&text, &key);
                    ConfigError::Invalid { path: path.clone(), line, column, message }
                })?;
                Connector { name: c.name.clone(), schedule: c.schedule.0.clone(), path: path.clone(), kind: ConnectorKind::CommonRoom(c) }
            }
            "file" => {
                let c: FileConfig = parse_lenient(&path, &text)?;
                Connector { name: c.name.clone(), schedule: c.schedule.0.clone(), path: path.clone(), kind: ConnectorKind::File(c) }
            }
            "webhook" => {
                let c: WebhookConfig = parse_lenient(&path, &text)?;
                c.validate().map_err(|(key, message)| {
                    let (line, column) = locate(&text, &key);
                    ConfigError::Invalid { path: path.clone(), line, column, message }
                })?;
                Connector { name: c.name.clone(), schedule: c.schedule.0.clone(), path: path.clone(), kind: ConnectorKind::Webhook(c) }
            }
            "slack_digest" => {
                let c: crate::sinks::slack::SlackDigestConfig = parse_lenient(&path, &text)?;
                c.validate().map_err(|(key, message)| {
                    let (line, column) = locate(&text, &key);
                    ConfigError::Invalid { path: path.clone(), line, column, message }
                })?;
                Connector { name: c.name.clone(), schedule: c.schedule.0.clone(), path: path.clone(), kind: ConnectorKind::SlackDigest(c) }
            }
            "slack" => {
                let c: SlackConfig = parse_lenient(&path, &text)?;
                c.validate().map_err(|(key, message)| {
                    let (line, column) = locate(&text, &key);
                    ConfigError::Invalid { path: path.clone(), line, column, message }
                })?;
                Connector { name: c.name.clone(), schedule: c.schedule.0.clone(), path: path.clone(), kind: ConnectorKind::Slack(c) }
            }
            "scarf" => {
                let c: ScarfConfig = parse_lenient(&path, &text)?;
                c.validate().map_err(|(key, message)| {
                    let (line, column) = locate(&text, &key);
                    ConfigError::Invalid { path: path.clone(), line, column, message }
                })?;
                Connector { name: c.name.clone(), schedule: c.schedule.0.clone(), path: path.clone(), kind: ConnectorKind::Scarf(c) }
            }
            other => {
                let (line, column) = locate(&text, "kind");
                return Err(ConfigError::Invalid {
                    path,
                    line,
                    column,
                    message: format!(
                        "unknown connector kind `{other}` (expected export, github, slack, scarf, hubspot, salesforce, common_room, webhook, file or slack_digest)"
                    ),
                });
            }
        };
        Ok(connector)
    }
}

/// Two file sinks writing one file would overwrite each other's rows every run.
fn check_shared_outputs(dir: &Path, connectors: &[Connector]) -> Vec<ConfigError> {
    let mut seen: BTreeMap<PathBuf, &Connector> = BTreeMap::new();
    let mut errors = Vec::new();
    for c in connectors {
        let ConnectorKind::File(f) = &c.kind else { continue };
        let out = normalize_path(&dir.join(&f.path));
        if let Some(first) = seen.insert(out.clone(), c) {
            errors.push(ConfigError::File {
                path: c.path.clone(),
                message: format!(
                    "file sink `{}` writes {}, as `{}` ({}) does: each file sink needs its own file",
                    c.name,
                    out.display(),
                    first.name,
                    first.path.display()
                ),
            });
        }
    }
    errors
}

/// `a/./b/../c` as `a/c`, without touching the file system (the file may not exist yet).
fn normalize_path(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Every `*_env` key, at any depth, must name an environment variable: a value that is
/// not a name is most likely the secret itself, and is refused without being echoed.
fn check_env_names(path: &Path, text: &str) -> Result<(), ConfigError> {
    fn walk(value: &serde_json::Value, at: &str) -> Option<String> {
        let serde_json::Value::Object(map) = value else {
            return None;
        };
        map.iter().find_map(|(key, v)| {
            let here = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
            match v {
                serde_json::Value::String(var) if key.ends_with("_env") && !crate::auth::is_env_name(var) => Some(here),
                _ => walk(v, &here),
            }
        })
    }
    let Ok(value) = serde_saphyr::from_str::<serde_json::Value>(text) else {
        return Ok(()); // the typed parse that follows reports it
    };
    match walk(&value, "") {
        None => Ok(()),
        Some(at) => {
            let (line, column) = locate(text, &at);
            let key = at.rsplit('.').next().unwrap_or(&at);
            Err(ConfigError::Invalid { path: path.to_path_buf(), line, column, message: crate::auth::env_name_message(key) })
        }
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Config files are UTF-8 (a leading byte-order mark is fine): anything else is
/// reported with the line and column of the first byte that is not.
fn decode(path: &Path, bytes: &[u8]) -> Result<String, ConfigError> {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(ConfigError::File {
            path: path.to_path_buf(),
            message: "the file is UTF-16; config files must be UTF-8 (convert it with `iconv -f utf-16 -t utf-8`)".into(),
        });
    }
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(bytes);
    match std::str::from_utf8(text) {
        Ok(t) => Ok(t.to_owned()),
        Err(e) => {
            let good = &text[..e.valid_up_to()];
            let line = good.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&good[line_start..]).chars().count() as u64 + 1;
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message: format!(
                    "byte 0x{:02X} is not valid UTF-8; config files must be UTF-8 (convert e.g. Latin-1 with `iconv -f latin1 -t utf-8`)",
                    text[e.valid_up_to()]
                ),
            })
        }
    }
}

/// Parses one YAML file strictly; an empty file (or one holding only comments) is the
/// type's default.
fn parse<T: DeserializeOwned + Default>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---");
    if blank {
        return Ok(T::default());
    }
    serde_saphyr::from_str(text).map_err(|e| located(path, &e))
}

/// Parses only the keys a header needs, ignoring the rest (the typed parse that follows
/// is strict).
fn parse_lenient<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    serde_saphyr::from_str(text).map_err(|e| located(path, &e))
}

fn located(path: &Path, e: &serde_saphyr::Error) -> ConfigError {
    let display = e.to_string();
    let first = display.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // The parser prefixes "line L column C: " to its message; the location is reported
    // in our own `file:line:column:` form instead.
    let message = match first.split_once(": ") {
        Some((loc, rest)) if loc.starts_with("line ") => rest.to_owned(),
        _ => first.to_owned(),
    };
    let message = plain_message(message);
    match e.location() {
        Some(loc) => ConfigError::Invalid {
            path: path.to_path_buf(),
            line: loc.line(),
            column: loc.column(),
            message,
        },
        None => ConfigError::File {
            path: path.to_path_buf(),
            message,
        },
    }
}

/// Keys that would hold a secret inline; secrets come from `*_env` or `*_file` only.
const INLINE_SECRET_KEYS: [&str; 9] =
    ["token", "api_key", "apikey", "access_token", "client_secret", "refresh_token", "password", "secret", "private_key"];

/// The parser's messages, in the operator's words: no parser options, and a secret
/// written inline gets told where secrets go (the value itself is never echoed).
fn plain_message(message: String) -> String {
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(", set DuplicateKeyPolicy").next().unwrap_or(rest);
        return format!("duplicate key `{key}` (each key may appear once)");
    }
    let plain = match message.as_str() {
        "invalid floating point" => Some("expected a number"),
        "invalid integer" => Some("expected a whole number"),
        "expected string scalar" => Some("expected a string"),
        "expected sequence start" => Some("expected a list (`[a, b]`, or one `- item` a line)"),
        "expected mapping start" => Some("expected a mapping (`key: value` lines)"),
        _ => None,
    };
    if let Some(plain) = plain {
        return plain.to_owned();
    }
    if let Some(plain) = without_rust_types(&message) {
        return plain;
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let key = rest.split('`').next().unwrap_or_default();
        let expected = rest.split_once("expected one of ").map_or("", |(_, e)| e);
        let has_env_key = expected.split(", ").any(|k| k.trim_matches('`') == format!("{key}_env"));
        if INLINE_SECRET_KEYS.contains(&key) && has_env_key {
            return format!(
                "`{key}` holds a secret inline; secrets are never written in config: name an environment variable with `{key}_env` or a file with `{key}_file`"
            );
        }
    }
    message
}

/// serde's "invalid value: integer `300`, expected u8" names a Rust type: say the
/// range in numbers instead.
fn without_rust_types(message: &str) -> Option<String> {
    let (head, expected) = message.rsplit_once("expected ")?;
    let expected = expected.trim_end_matches('.').trim_start_matches("a ").trim_start_matches("an ");
    let (nonzero, ty) = match expected.strip_prefix("nonzero ") {
        Some(ty) => (true, ty),
        None => (false, expected),
    };
    let range = match ty {
        "u8" => "a whole number from 0 to 255".to_owned(),
        "u16" => "a whole number from 0 to 65535".to_owned(),
        "u32" | "usize" | "u64" if nonzero => "a whole number of at least 1".to_owned(),
        "u32" | "usize" | "u64" => "a whole number (0 or more)".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "bool" | "a boolean" | "boolean" => "true or false".to_owned(),
        _ => return None,
    };
    let range = if nonzero && !range.contains("at least") { format!("{range}, not 0") } else { range };
    let found = head.split('`').nth(1).map(|v| format!(", found `{v}`")).unwrap_or_default();
    Some(format!("expected {range}{found}"))
}

impl Default for ExportConnector {
    fn default() -> Self {
        ExportConnector {
            name: String::new(),
            kind: "export".into(),
            schedule: Schedule("0 0 * * * *".into()),
            path: None,
            format: ExportFormat::Auto,
            source: None,
            scarf: ScarfSettings::default(),
            settle: default_settle(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn an_empty_dir_is_a_valid_config() {
        let dir = dir_with(&[]);
        let config = Config::load(dir.path()).unwrap();
        assert_eq!(config.model, Model::default());
        assert!(config.connectors.is_empty());
    }

    #[test]
    fn scoring_overrides_apply_and_bad_ones_name_file_line_and_column() {
        let dir = dir_with(&[("scoring.yaml", "# stricter\nthresholds:\n  ongoing_usage_score: 100\n")]);
        let config = Config::load(dir.path()).unwrap();
        assert_eq!(config.model.thresholds.ongoing_usage_score, 100 * crate::scoring::MICRO);

        let dir = dir_with(&[("scoring.yaml", "points:\n  views:\n    low:\n      points: -1\n")]);
        let err = Config::load(dir.path()).unwrap_err().to_string();
        assert!(err.ends_with("scoring.yaml:4:15: -1 is not a number of points from 0 to 1000000000"), "{err}");

        let dir = dir_with(&[("scoring.yaml", "windows:\n  scroe: 30\n")]);
        let err = Config::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("scoring.yaml:2:3: unknown field `scroe`"), "{err}");
    }

    #[test]
    fn connectors_are_checked_strictly() {
        let dir = dir_with(&[(
            "connectors/scarf.yaml",
            "name: scarf\nkind: export\nschedule: \"0 0 * * * *\"\nformat: scarf\nscarf:\n  doc_pixels: [px-1]\n",
        )]);
        let config = Config::load(dir.path()).unwrap();
        let (c, e) = config.export_connectors().next().unwrap();
        assert_eq!(c.name, "scarf");
        assert_eq!(e.scarf.doc_pixels, vec!["px-1".to_string()]);

        let dir = dir_with(&[("connectors/x.yaml", "name: x\nkind: export\nschedule: \"every day\"\n")]);
        let err = Config::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("x.yaml:3:11: `every day` is not a cron expression"), "{err}");

        let dir = dir_with(&[("connectors/x.yaml", "name: x\nkind: export\nschedule: \"0 0 * * * *\"\ntoken: abc\n")]);
        let err = Config::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("x.yaml:4:1: unknown field `token`"), "{err}");
    }
}
