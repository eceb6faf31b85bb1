//! What `check`, and `run` before anything runs, verify beyond the config's shape, offline:
//! every secret a connector or one of its mapping's triggers names is there. A config
//! that parses but names an unset variable would otherwise fail every scheduled run while
//! the health endpoint says ok.
//!
//! Secrets are only ever named as `*_env` (a variable) or `*_file` (a path relative to
//! the config dir), at any depth of a connector or mapping file, so the files are walked
//! for those keys rather than each connector type listing its own.

use std::path::Path;

use serde_json::Value;

use crate::config::{Config, ConfigError, locate};

/// Every secret a connector (and its mapping's triggers) names but that is missing, unset,
/// unreadable or, for a private key, not a key. Values are never read into messages.
pub fn missing_secrets(config: &Config) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    let mut mappings_seen = std::collections::BTreeSet::new();
    for connector in &config.connectors {
        problems.extend(check_file(&config.dir, &connector.path));
        if let Some(mapping) = connector.mapping_path() {
            let path = config.dir.join(mapping.trim_start_matches("./"));
            if mappings_seen.insert(path.clone()) {
                problems.extend(check_file(&config.dir, &path));
            }
        }
    }
    problems
}

fn check_file(dir: &Path, path: &Path) -> Vec<ConfigError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new(); // loading the config read it: it went away since, and `run` will say so
    };
    let Ok(value) = serde_saphyr::from_str::<Value>(&text) else {
        return Vec::new();
    };
    let mut refs = Vec::new();
    walk(&value, "", &mut refs);
    refs.into_iter()
        .filter_map(|(at, reference)| {
            let key = at.rsplit('.').next().unwrap_or(&at).to_owned();
            let problem = if key.ends_with("_env") { env_problem(&reference) } else { file_problem(dir, &key, &reference) }?;
            let (line, column) = locate(&text, &at);
            Some(ConfigError::Invalid { path: path.to_path_buf(), line, column, message: format!("`{key}`: {problem}") })
        })
        .collect()
}

/// `(dotted key path, value)` of every string under a `*_env` or `*_file` key.
fn walk(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let here = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
                match v {
                    Value::String(s) if key.ends_with("_env") || key.ends_with("_file") => out.push((here, s.clone())),
                    _ => walk(v, &here, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(v, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn env_problem(var: &str) -> Option<String> {
    match std::env::var_os(var) {
        None => Some(format!("the environment variable {var} is not set (give it to the daemon's environment: the shell, the container's -e, or the systemd unit's EnvironmentFile)")),
        Some(v) if v.is_empty() => Some(format!("the environment variable {var} is empty")),
        Some(_) => None,
    }
}

fn file_problem(dir: &Path, key: &str, name: &str) -> Option<String> {
    let path = dir.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(format!("{} does not exist", path.display())),
        Err(e) if path.is_dir() => return Some(format!("{} is a directory, not a file ({})", path.display(), e.kind())),
        Err(e) => return Some(format!("cannot read {}: {}", path.display(), e.kind())),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Some(format!("{} is empty", path.display()));
    }
    if key == "private_key_file" && jsonwebtoken::EncodingKey::from_rsa_pem(&bytes).is_err() {
        return Some(format!(
            "{} is not an RSA private key in PEM form (`-----BEGIN PRIVATE KEY-----`; make one with `openssl req -x509 -newkey rsa:2048 -nodes -keyout salesforce.key -out salesforce.crt`)",
            path.display()
        ));
    }
    None
}
