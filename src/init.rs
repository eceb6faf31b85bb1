//! `oql-sync init DIR` (a commented starter config) and `oql-sync check` (what the config
//! says, with each connector's next runs).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::app::AppError;
use crate::config::Config;

/// The starter files: a working export source and file sink, and every other connector
/// as a disabled example (`.yaml.disabled` is not loaded; rename it to enable it).
const STARTER: [(&str, &str); 13] = [
    ("connectors/exports.yaml", include_str!("../examples/starter/exports.yaml")),
    ("connectors/crm-file.yaml", include_str!("../examples/starter/crm-file.yaml")),
    ("mappings/crm.yaml", include_str!("../examples/quickstart/mappings/crm.yaml")),
    ("connectors/hubspot.yaml.disabled", include_str!("../connectors/hubspot.yaml")),
    ("connectors/salesforce.yaml.disabled", include_str!("../connectors/salesforce.yaml")),
    ("connectors/common-room.yaml.disabled", include_str!("../connectors/common-room.yaml")),
    ("connectors/github.yaml.disabled", include_str!("../connectors/github.yaml")),
    ("connectors/slack.yaml.disabled", include_str!("../connectors/slack.yaml")),
    ("connectors/webhook.yaml.disabled", include_str!("../examples/starter/webhook.yaml")),
    ("mappings/hubspot.yaml", include_str!("../mappings/hubspot.yaml")),
    ("mappings/salesforce.yaml", include_str!("../mappings/salesforce.yaml")),
    ("mappings/common-room.yaml", include_str!("../mappings/common-room.yaml")),
    ("data/README", "Drop export files (NDJSON, CSV, Scarf CSV) here: `oql-sync poll` or the daemon imports each new or changed file once.\n"),
];

/// Writes the starter config; files that exist are left alone. Returns what was written.
pub fn write_starter(dir: &Path) -> Result<Vec<PathBuf>, AppError> {
    let mut written = Vec::new();
    for (name, text) in STARTER {
        let path = dir.join(name);
        if path.exists() {
            continue;
        }
        std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// What `check` prints: every connector with its kind, schedule and next three runs.
pub fn check_report(config: &Config, now: DateTime<Utc>) -> String {
    let mut out = format!("config {} is valid: {} connectors, {} mappings\n", config.dir.display(), config.connectors.len(), config.mappings.len());
    for c in &config.connectors {
        let next: Vec<String> = crate::daemon::next_runs(&c.schedule, now, 3).iter().map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).collect();
        let _ = writeln!(out, "  {:<16} {:<12} \"{}\"  next: {} UTC", c.name, c.kind.as_str(), c.schedule, next.join(", "));
        if let Some(m) = c.mapping_path() {
            let _ = writeln!(out, "  {:<16} {:<12} mapping {m}", "", "");
        }
    }
    out
}
