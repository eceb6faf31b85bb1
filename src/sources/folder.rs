//! Watched export folders: an `export` connector with a `path` (a folder, or a file
//! pattern with `*` in its last part) imports the export files there (`.ndjson`,
//! `.jsonl`, `.json`, `.csv`, each also as `.gz`) once each, so a nightly drop of Scarf
//! exports needs no person.
//!
//! Exporters write files while a poll may look at them, so a file is read whole only
//! once it has been left unchanged (size and modification time) for the connector's
//! `settle` interval; before that, only the lines of an NDJSON file that already end
//! with a newline are read, and any other file waits for a later poll. Never is a line
//! cut short by a writer read as if it were complete.
//!
//! After a read the store keeps where the file's last complete line ends and a hash of
//! the bytes up to there. A file whose size and modification time did not change is not
//! read again at all; one that grew after that point is read from there; one whose
//! imported part changed is read again whole, activity ids making the lines already in
//! the store duplicates. Hashes are streamed, so memory stays bounded whatever the size.
//!
//! One file that cannot be read (permissions, a broken gzip, a bad header) is reported
//! with its name and tried again next poll; the others are imported all the same.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::attribution::AttributionRules;
use crate::config::ExportConnector;
use crate::import::{FileSummary, import_span};
use crate::sources::export::{ExportError, ExportFile, ExportFormat, ExportOptions, ResumePoint, Span, is_export_file_name};
use crate::sources::bucket::{Role, role};
use crate::store::{ExportFileState, Store};

/// The export files a connector's `path` names now, sorted; hidden files and files of
/// other extensions (a README, an exporter's `.tmp` or `.part`) are left alone.
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
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                !n.starts_with('.') && is_export_file_name(&n) && matches(&name_pattern, &n) && role(&n) != Role::Ignored
            })
        })
        // Named like an export but a directory (or broken link): said, not skipped in
        // silence. Pipes and sockets are never opened (a read would wait forever).
        .filter(|p| p.is_file() || p.is_dir() || std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()))
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

/// A file's size and times at one look, to tell whether it changed between two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Look {
    size: u64,
    /// Modification time, nanoseconds since the epoch.
    mtime: i64,
    /// The later of the modification and the status change time: a writer that resets
    /// the modification time (`cp -p`, `rsync -t`) still moves the latter.
    changed: i64,
}

impl Look {
    fn of(path: &Path) -> std::io::Result<Look> {
        let meta = std::fs::metadata(path)?;
        if meta.is_dir() {
            return Err(std::io::Error::other("is a directory, not an export file"));
        }
        let nanos = |t: std::io::Result<SystemTime>| {
            t.ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as i64)
        };
        let mtime = nanos(meta.modified());
        #[cfg(unix)]
        let changed = {
            use std::os::unix::fs::MetadataExt;
            mtime.max(meta.ctime().saturating_mul(1_000_000_000).saturating_add(meta.ctime_nsec()))
        };
        #[cfg(not(unix))]
        let changed = mtime;
        Ok(Look { size: meta.len(), mtime, changed })
    }

    /// How long the file has been left as it is.
    fn quiet_for(&self, now: SystemTime) -> Duration {
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        Duration::from_nanos(now.saturating_sub(self.changed).max(0) as u64)
    }
}

/// A file to read this poll.
struct Candidate {
    path: PathBuf,
    key: String,
    stored: Option<ExportFileState>,
    look: Look,
}

/// Imports the new and changed export files of one connector. Returns the summary of
/// each file read or left for later; an unreadable file's summary holds its error. Only
/// a folder that cannot be listed fails the poll as a whole.
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
    if let Some(location) = crate::sources::bucket::Location::parse(pattern) {
        return crate::sources::bucket::poll_bucket(store, name, connector, &location?, rules).await;
    }
    let files = matching_files(dir, pattern).map_err(|e| format!("cannot list {}: {e}", dir.join(pattern).display()))?;
    let options = ExportOptions { format: connector.format, source: connector.source.clone(), scarf: connector.scarf.clone() };
    let failed = |path: &Path, e: String| FileSummary { path: path.to_path_buf(), error: Some(e), ..Default::default() };
    let mut out = Vec::new();

    // First look: files unchanged since they were last read to their end are skipped
    // without being opened.
    let mut candidates = Vec::new();
    for path in files {
        let key = path.display().to_string();
        let look = match Look::of(&path) {
            Ok(look) => look,
            Err(e) => {
                out.push(failed(&path, format!("{}: {e}", path.display())));
                continue;
            }
        };
        let stored = store.export_file(name, &key).await.map_err(|e| e.to_string())?;
        if stored.as_ref().and_then(|s| s.seen) == Some((look.size, look.mtime)) {
            continue;
        }
        candidates.push(Candidate { path, key, stored, look });
    }

    // Files changed within the settle interval are looked at again once it has passed
    // since their last change (one wait for all, at most `settle`).
    let now = SystemTime::now();
    let wait = candidates.iter().map(|c| connector.settle.saturating_sub(c.look.quiet_for(now))).max().unwrap_or_default();
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }

    // A drop of a large backfill loads like `oql-sync import` does: about 200 bytes a line.
    let bytes: u64 = candidates.iter().map(|c| c.look.size.saturating_sub(c.stored.as_ref().map_or(0, |s| s.imported_bytes))).sum();
    let bulk = store.bulk_load(bytes / 200).await.map_err(|e| e.to_string())?;
    let polled = poll_candidates(store, name, candidates, &options, connector.settle, rules).await;
    bulk.finish().await.map_err(|e| e.to_string())?;
    out.extend(polled);
    Ok(out)
}

/// Reads each candidate; a file's failure is its summary's error.
async fn poll_candidates(store: &Store, name: &str, candidates: Vec<Candidate>, options: &ExportOptions, settle: Duration, rules: &AttributionRules) -> Vec<FileSummary> {
    let failed = |path: &Path, e: String| FileSummary { path: path.to_path_buf(), error: Some(e), ..Default::default() };
    let mut out = Vec::new();
    for c in candidates {
        let summary = match Look::of(&c.path) {
            Err(e) => failed(&c.path, format!("{}: {e}", c.path.display())),
            Ok(look) => {
                let stable = look == c.look;
                match poll_file(store, name, &c, look, stable, options, settle, rules).await {
                    Ok(Some(summary)) => summary,
                    Ok(None) => continue,
                    Err(e) => failed(&c.path, e),
                }
            }
        };
        out.push(summary);
    }
    out
}

/// Reads what is new in one file; `None` when nothing was (its content did not change).
#[allow(clippy::too_many_arguments)]
async fn poll_file(
    store: &Store,
    name: &str,
    c: &Candidate,
    look: Look,
    stable: bool,
    options: &ExportOptions,
    settle: Duration,
    rules: &AttributionRules,
) -> Result<Option<FileSummary>, String> {
    let error = |e: &dyn std::fmt::Display| format!("{}: {e}", c.path.display());
    // Where to start: after the part imported before, if that part is still there as it
    // was; the hash of it carries on over what is read now.
    let mut from = ResumePoint::START;
    let mut hashed = (Sha256::new(), 0);
    if let Some(stored) = c.stored.as_ref().filter(|s| s.imported_bytes <= look.size) {
        let prefix = hash_range(&c.path, Sha256::new(), 0, stored.imported_bytes).await.map_err(|e| error(&e))?;
        if hex(&prefix) == stored.sha256 {
            if stored.resumable {
                from = ResumePoint { offset: stored.imported_bytes, lines: stored.lines };
                hashed = (prefix, stored.imported_bytes);
            } else if stored.imported_bytes == look.size {
                // Touched, not changed (a copy again, a new modification time).
                if stable {
                    let state = ExportFileState { seen: Some((look.size, look.mtime)), ..stored.clone() };
                    store.save_export_file(name, &c.key, &state).await.map_err(|e| e.to_string())?;
                }
                return Ok(None);
            }
        }
    }
    let is_rollup = c.path.file_name().is_some_and(|n| role(&n.to_string_lossy()) == Role::ScarfRollup);
    if is_rollup {
        return read_rollup_file(store, name, c, look, stable, settle).await.map(Some);
    }
    let span = Span { from, end: Some(look.size), take_unterminated: stable };
    if !stable && !reads_complete_lines(&c.path, options, span).map_err(|e| e.to_string())? {
        return Ok(Some(FileSummary {
            path: c.path.clone(),
            deferred: Some(format!(
                "still being written (changed within the last {settle:?}); read once unchanged that long"
            )),
            ..Default::default()
        }));
    }
    let summary = import_span(store, &c.path, options, rules, span).await.map_err(|e| e.to_string())?;
    if summary.error.is_some() {
        return Ok(Some(summary));
    }
    let (upto, lines, resumable) = match summary.resume_point {
        Some(p) => (p.offset, p.lines, true),
        None => (look.size, 0, false),
    };
    let (hasher, hashed_to) = if upto >= hashed.1 { hashed } else { (Sha256::new(), 0) };
    let hash = hash_range(&c.path, hasher, hashed_to, upto).await.map_err(|e| error(&e))?;
    let state = ExportFileState {
        imported_bytes: upto,
        sha256: hex(&hash),
        lines,
        resumable,
        // A file read while still changing is looked at again next poll whatever it shows.
        seen: stable.then_some((look.size, look.mtime)),
    };
    store.save_export_file(name, &c.key, &state).await.map_err(|e| e.to_string())?;
    Ok(Some(summary))
}

/// Reads a Scarf company rollup (a copy of Scarf's bucket export) into Scarf's stages,
/// once it is complete: a rollup holds stages, not activities.
async fn read_rollup_file(store: &Store, name: &str, c: &Candidate, look: Look, stable: bool, settle: Duration) -> Result<FileSummary, String> {
    if !stable {
        return Ok(FileSummary {
            path: c.path.clone(),
            deferred: Some(format!("still being written (changed within the last {settle:?}); read once unchanged that long")),
            ..Default::default()
        });
    }
    let error = |e: &dyn std::fmt::Display| format!("{}: {e}", c.path.display());
    let body = std::fs::read(&c.path).map_err(|e| error(&e))?;
    let rows = crate::sources::scarf::read_rollup(&body).map_err(|e| error(&e))?;
    store.save_scarf_stages(name, &rows, false, None).await.map_err(|e| e.to_string())?;
    let hash = hash_range(&c.path, Sha256::new(), 0, look.size).await.map_err(|e| error(&e))?;
    let state = ExportFileState { imported_bytes: look.size, sha256: hex(&hash), lines: 0, resumable: false, seen: Some((look.size, look.mtime)) };
    store.save_export_file(name, &c.key, &state).await.map_err(|e| e.to_string())?;
    Ok(FileSummary { path: c.path.clone(), note: Some(format!("Scarf company rollup: the stages of {} companies", rows.len())), ..Default::default() })
}

/// Whether a file still being written can be read now: plain NDJSON can, up to its
/// last newline. A CSV row may span lines inside quotes, and gzip and UTF-16 text are
/// not read from an offset, so those wait until the file is complete.
fn reads_complete_lines(path: &Path, options: &ExportOptions, span: Span) -> Result<bool, ExportError> {
    let file = ExportFile::open_span(path, options, span)?;
    Ok(file.format == ExportFormat::Ndjson && file.resume_point().is_some())
}

/// Feeds bytes `from..to` of a file into `hasher`, 256 KiB at a time (on a blocking
/// thread: the bytes may be gigabytes).
async fn hash_range(path: &Path, hasher: Sha256, from: u64, to: u64) -> std::io::Result<Sha256> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut hasher = hasher;
        let mut file = std::fs::File::open(&path)?;
        file.seek(SeekFrom::Start(from))?;
        let mut rest = file.take(to.saturating_sub(from));
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = rest.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher)
    })
    .await
    .map_err(std::io::Error::other)?
}

fn hex(hasher: &Sha256) -> String {
    hasher.clone().finalize().iter().map(|b| format!("{b:02x}")).collect()
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

    #[test]
    fn only_export_files_are_watched() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["README", "a.csv", "b.ndjson.gz", "c.csv.part", "d.csv.tmp", ".e.csv", "f.JSONL", "g.json", "h.txt", "i.csv.GZ", "j.gz", "scarf-test.csv"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let names: Vec<String> = super::matching_files(dir.path(), ".")
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.csv", "b.ndjson.gz", "f.JSONL", "g.json", "i.csv.GZ"]);
    }
}
