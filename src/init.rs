//! `oql-sync init DIR` (a commented starter config) and `oql-sync check` (what the config
//! says, with each connector's next runs).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::app::AppError;
use crate::config::Config;
use crate::schema::ConfigFile;

/// The starter files: a working export source and file sink, and every other connector
/// as a disabled example (`.yaml.disabled` is not loaded; rename it to enable it).
/// Nothing is written into the drop folder: whatever sits there is read as an export.
const STARTER: [(&str, &str); 14] = [
    ("connectors/exports.yaml", include_str!("../examples/starter/exports.yaml")),
    ("connectors/crm-file.yaml", include_str!("../examples/starter/crm-file.yaml")),
    ("mappings/crm.yaml", include_str!("../examples/quickstart/mappings/crm.yaml")),
    ("connectors/hubspot.yaml.disabled", include_str!("../connectors/hubspot.yaml")),
    ("connectors/salesforce.yaml.disabled", include_str!("../connectors/salesforce.yaml")),
    ("connectors/common-room.yaml.disabled", include_str!("../connectors/common-room.yaml")),
    ("connectors/github.yaml.disabled", include_str!("../connectors/github.yaml")),
    ("connectors/slack.yaml.disabled", include_str!("../connectors/slack.yaml")),
    ("connectors/webhook.yaml.disabled", include_str!("../examples/starter/webhook.yaml")),
    ("connectors/slack-digest.yaml.disabled", include_str!("../connectors/slack-digest.yaml")),
    ("mappings/hubspot.yaml", include_str!("../mappings/hubspot.yaml")),
    ("mappings/salesforce.yaml", include_str!("../mappings/salesforce.yaml")),
    ("mappings/common-room.yaml", include_str!("../mappings/common-room.yaml")),
    ("mappings/slack-digest.yaml", include_str!("../mappings/slack-digest.yaml")),
];

/// The starter's relative state paths, as its connector files spell them.
const DROP_FOLDER: &str = "data";
const SINK_OUTPUT: &str = "out/crm.csv";

/// What `init` did: files written, files left alone because they existed, folders made.
#[derive(Debug, Default)]
pub struct InitReport {
    pub written: Vec<PathBuf>,
    pub kept: Vec<PathBuf>,
    pub folders: Vec<PathBuf>,
}

impl InitReport {
    pub fn render(&self) -> String {
        let mut out = String::new();
        for p in &self.written {
            let _ = writeln!(out, "wrote {}", p.display());
        }
        for p in &self.folders {
            let _ = writeln!(out, "made  {}/ (the drop folder: export files put here are imported once)", p.display());
        }
        for p in &self.kept {
            let _ = writeln!(out, "kept  {} (exists; not overwritten)", p.display());
        }
        if self.written.is_empty() && !self.kept.is_empty() {
            let _ = writeln!(out, "nothing written: every starter file exists already");
        }
        out
    }
}

/// Writes the starter config into `dir`; files that exist are left alone. With a
/// `state_dir` (a daemon whose config dir is read-only: systemd, Docker), the drop
/// folder and the file sink's output are absolute paths inside it.
pub fn write_starter(dir: &Path, state_dir: Option<&Path>) -> Result<InitReport, AppError> {
    let mut report = InitReport::default();
    let state = match state_dir {
        Some(s) => Some(std::path::absolute(s).map_err(|e| AppError::Usage(format!("--state-dir {}: {e}", s.display())))?),
        None => None,
    };
    for (name, text) in STARTER {
        let path = dir.join(name);
        if path.exists() {
            report.kept.push(path);
            continue;
        }
        let text = match &state {
            Some(state) => {
                let text = with_path(text, DROP_FOLDER, &yaml_string(&state.join(DROP_FOLDER)));
                with_path(&text, SINK_OUTPUT, &yaml_string(&state.join(SINK_OUTPUT)))
            }
            None => text.to_owned(),
        };
        let text = match ConfigFile::of_path(name) {
            Some(file) => file.modeline(name) + &text,
            None => text,
        };
        std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
        std::fs::write(&path, text)?;
        report.written.push(path);
    }
    write_schemas(dir, &mut report)?;
    let drop = state.as_deref().unwrap_or(dir).join(DROP_FOLDER);
    if !drop.exists() {
        std::fs::create_dir_all(&drop)?;
        report.folders.push(drop);
    }
    Ok(report)
}

/// The schemas the starter files point at. They describe this version's loader, so an
/// `init` after an upgrade rewrites them; the YAML files are the operator's and are kept.
fn write_schemas(dir: &Path, report: &mut InitReport) -> Result<(), AppError> {
    for file in ConfigFile::ALL {
        let path = dir.join("schemas").join(file.file_name());
        let text = serde_json::to_string_pretty(&crate::schema::schema(file)).unwrap_or_default() + "\n";
        if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
            report.kept.push(path);
            continue;
        }
        std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
        std::fs::write(&path, text)?;
        report.written.push(path);
    }
    Ok(())
}

/// `text` with the value of its top-level `path: old` line replaced, comment kept.
fn with_path(text: &str, old: &str, new: &str) -> String {
    let key = format!("path: {old}");
    text.lines()
        .map(|line| match line.strip_prefix(&key) {
            Some(rest) if rest.is_empty() || rest.starts_with([' ', '#']) => format!("path: {new}{rest}"),
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// A path as a YAML double-quoted scalar (JSON's escaping is valid there).
fn yaml_string(path: &Path) -> String {
    serde_json::to_string(&path.display().to_string()).unwrap_or_default()
}

/// What `check` prints: every connector with its kind, schedule and next run, in 80
/// columns (the daemon logs every connector's next run at start too).
pub fn check_report(config: &Config, now: DateTime<Utc>) -> String {
    let mut out = format!("config {} is valid: {} connectors, {} mappings\n", config.dir.display(), config.connectors.len(), config.mappings.len());
    let width = config.connectors.iter().map(|c| c.name.len()).max().unwrap_or(0).max(9);
    for c in &config.connectors {
        let next = crate::daemon::next_runs(&c.schedule, now, 1).first().map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default();
        let _ = writeln!(out, "  {:<width$}  {:<11}  {:<16}  next {next}", c.name, c.kind.as_str(), format!("\"{}\"", c.schedule));
        if let Some(m) = c.mapping_path() {
            let _ = writeln!(out, "  {:<width$}  {:<11}  mapping {m}", "", "");
        }
    }
    out
}
