//! Watched export folders: an `export` connector with a `path` (a folder, or a file
//! pattern with `*` in its last part) imports every new or changed file once. A file's
//! size and content hash are kept after its import, so a nightly drop of Scarf exports
//! needs no person, and an unchanged file is never read twice. A file that grew is
//! imported again whole: activity ids make the lines already in the store duplicates.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::attribution::AttributionRules;
use crate::config::ExportConnector;
use crate::import::{FileSummary, import_file};
use crate::sources::export::ExportOptions;
use crate::store::Store;

/// The files a connector's `path` names now, sorted.
pub fn matching_files(dir: &Path, pattern: &str) -> std::io::Result<Vec<PathBuf>> {
    let full = dir.join(pattern);
    let (folder, name_pattern) = if full.is_dir() {
        (full, "*".to_owned())
    } else {
        let name = full.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        (full.parent().map(Path::to_path_buf).unwrap_or_default(), name)
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(&folder)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| p.file_name().is_some_and(|n| matches(&name_pattern, &n.to_string_lossy())))
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    out.sort();
    Ok(out)
}

/// `*` matches any run of characters; everything else matches itself.
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else { return false };
            (0..=tail.len()).filter(|i| tail.is_char_boundary(*i)).any(|i| matches(rest, &tail[i..]))
        }
    }
}

/// Imports the new and changed files of one export connector. Returns the summaries of
/// the files imported (unchanged ones are skipped).
pub async fn poll_folder(
    store: &Store,
    dir: &Path,
    name: &str,
    connector: &ExportConnector,
    rules: &AttributionRules,
) -> Result<Vec<FileSummary>, String> {
    let Some(pattern) = &connector.path else {
        return Ok(Vec::new());
    };
    let files = matching_files(dir, pattern).map_err(|e| format!("cannot list {}: {e}", dir.join(pattern).display()))?;
    let options = ExportOptions { format: connector.format, source: connector.source.clone(), scarf: connector.scarf.clone() };
    let mut out = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let hash: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        let key = file.display().to_string();
        if store.export_file(name, &key).await.map_err(|e| e.to_string())?.is_some_and(|(_, h)| h == hash) {
            continue;
        }
        let summary = import_file(store, &file, &options, rules).await.map_err(|e| e.to_string())?;
        if summary.error.is_none() {
            store.export_file_done(name, &key, bytes.len() as i64, &hash).await.map_err(|e| e.to_string())?;
        }
        out.push(summary);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns_match_like_a_shell() {
        assert!(matches("*.csv", "scarf-2026-10-01.csv"));
        assert!(matches("scarf-*.csv", "scarf-1.csv"));
        assert!(!matches("scarf-*.csv", "other-1.csv"));
        assert!(!matches("*.csv", "x.ndjson"));
        assert!(matches("*", "anything"));
    }
}
