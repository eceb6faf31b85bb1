//! Finding and opening the store: where a `--db` value points, why that place cannot
//! hold a store (in the operator's words, not SQLite's code 14), and the first open of
//! a new store, serialized between processes.
//!
//! Creating a store switches it to WAL and applies the migrations; two processes doing
//! that at once fail ("database is locked", "table already exists", a duplicate
//! migration row), because the switch takes a lock SQLite cannot wait for and sqlx's
//! migration lock does nothing on SQLite. So every open that may write takes an
//! exclusive lock on `<store>.lock` for that step only (a few milliseconds once the
//! store exists). The lock is a file of its own: a lock taken on the store's file would
//! be released with SQLite's own locks when any descriptor of it is closed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::sqlite::SqliteJournalMode;
use sqlx::{ConnectOptions, Connection, Row};

use super::{MIGRATOR, StoreError};

/// SQLite's message for SQLITE_FULL, as `Sqlite` errors of the raw paths carry it.
pub(super) const DISK_FULL: &str = "the disk holding the store is full";

/// How long an open waits for another process to finish creating or upgrading the store.
const SETUP_WAIT: Duration = Duration::from_secs(300);

/// The store's file, for a `sqlite://path`, `sqlite:path` or plain path; other
/// databases' URLs are refused by name (and never echoed: they may hold a password).
pub(super) fn locate(url: &str) -> Result<PathBuf, StoreError> {
    let refuse = |why: String| StoreError::Open { location: String::new(), origin: None, why };
    if let Some((scheme, _)) = url.split_once("://").filter(|(s, _)| !s.eq_ignore_ascii_case("sqlite") && !s.contains(['/', '\\'])) {
        return Err(refuse(format!(
            "a `{scheme}://` URL names another kind of database; the store is a SQLite file: a path such as /var/lib/oql-sync/oql.db or sqlite:///var/lib/oql-sync/oql.db"
        )));
    }
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" {
        return Err(refuse("an in-memory store would lose everything at exit; name a file, e.g. oql.db".into()));
    }
    Ok(PathBuf::from(path))
}

pub(super) fn place_error(file: &Path, why: &str) -> StoreError {
    StoreError::Open { location: file.display().to_string(), origin: None, why: why.to_owned() }
}

/// Checks the place before SQLite does: a directory, a missing folder, or a folder that
/// cannot be written (for a store that must be created) each get their own sentence.
pub(super) fn check_place(file: &Path, for_writing: bool) -> Result<(), StoreError> {
    let folder = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if file.is_dir() {
        return Err(place_error(file, &format!("it is a directory; name the store's file inside it, e.g. {}", file.join("oql.db").display())));
    }
    match std::fs::metadata(&folder) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(place_error(file, &format!("the folder {} does not exist; create it first (mkdir -p {})", folder.display(), folder.display())));
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(place_error(file, &format!("permission denied: this user cannot reach the folder {}", folder.display())));
        }
        Err(e) => return Err(place_error(file, &format!("cannot look at the folder {}: {e}", folder.display()))),
        Ok(m) if !m.is_dir() => return Err(place_error(file, &format!("{} is a file, not a folder", folder.display()))),
        Ok(_) => {}
    }
    match std::fs::File::open(file) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !access(&folder, true) {
                return Err(place_error(file, &format!("permission denied: there is no store yet and this user cannot create files in {}", folder.display())));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(place_error(file, "permission denied: this user cannot read the file (it is readable by its owner only; run as that user)"));
        }
        Err(e) => return Err(place_error(file, &e.to_string())),
    }
    if for_writing && file.exists() && !writable(file) {
        return Err(place_error(
            file,
            &format!(
                "permission denied: the store is read-only to this user (writing needs the file and its folder {} writable, for the -wal and -shm files); `companies`, `log` and `explain` still read it",
                folder.display()
            ),
        ));
    }
    Ok(())
}

/// Whether this user can write the store: the file, and its folder (SQLite creates the
/// `-wal` and `-shm` files beside it).
pub(super) fn writable(file: &Path) -> bool {
    let folder = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    (!file.exists() || access(file, true)) && access(folder, true)
}

/// access(2) through the file system itself: open for writing (a file) or create and
/// remove a probe (a folder); root's permissions and read-only mounts are both honoured.
fn access(path: &Path, write: bool) -> bool {
    if !write {
        return std::fs::metadata(path).is_ok();
    }
    if path.is_dir() {
        let probe = path.join(format!(".oql-sync-probe-{}-{}", std::process::id(), rand::random::<u32>()));
        let ok = std::fs::OpenOptions::new().write(true).create_new(true).open(&probe).is_ok();
        let _ = std::fs::remove_file(&probe);
        return ok;
    }
    std::fs::OpenOptions::new().write(true).open(path).is_ok()
}

/// What SQLite said on open, in the operator's words.
pub(super) fn open_error(file: &Path, e: &sqlx::Error) -> StoreError {
    place_error(file, &sqlx_words(e))
}

/// The primary SQLite result code of an error, if it is one.
pub(super) fn sqlite_code(e: &sqlx::Error) -> Option<i32> {
    match e {
        sqlx::Error::Database(db) => db.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff),
        _ => None,
    }
}

/// A SQLite result code in words, or None for codes whose own message says it.
pub(super) fn code_words(code: i32) -> Option<&'static str> {
    Some(match code & 0xff {
        5 | 6 => "the store is locked by another process (waited up to 30 s)",
        8 => "the store is read-only to this process (file or folder permissions, or a read-only mount)",
        10 => "the disk or file system reported an I/O error",
        11 => "the store's file is damaged (see `oql-sync doctor`; restore the last backup)",
        13 => DISK_FULL,
        14 => "SQLite cannot open the file (check the folder exists and is writable)",
        23 => "permission denied",
        26 => "the file is not a SQLite database",
        _ => return None,
    })
}

/// A sqlx error in words, the cause said once.
pub(super) fn sqlx_words(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
            match code_words(code) {
                Some(words) => words.to_owned(),
                None => db.message().to_owned(),
            }
        }
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::PoolTimedOut => "no store connection came free in time".into(),
        sqlx::Error::PoolClosed => "the store was closed".into(),
        other => other.to_string(),
    }
}

pub(super) fn migrate_words(e: &sqlx::migrate::MigrateError) -> String {
    use sqlx::migrate::MigrateError as M;
    match e {
        M::Execute(e) => sqlx_words(e),
        M::ExecuteMigration(e, v) => format!("migration {v}: {}", sqlx_words(e)),
        M::VersionMissing(v) => format!("the store was upgraded to schema {v} by a newer oql-sync; run that version (or a newer one)"),
        other => other.to_string(),
    }
}

/// Why the store's schema does not match this binary, if it does not.
pub(super) async fn pending_upgrade(pool: &sqlx::SqlitePool) -> Result<Option<String>, StoreError> {
    let (applied, latest) = schema_versions(pool).await?;
    Ok((applied < latest).then(|| format!("its schema is {applied}, older than this oql-sync's {latest}")))
}

/// The newest migration applied to the store (0 for a new one), and this binary's newest.
pub(super) async fn schema_versions(pool: &sqlx::SqlitePool) -> Result<(i64, i64), StoreError> {
    let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let exists: i64 = sqlx::query("SELECT count(*) FROM sqlite_schema WHERE name = '_sqlx_migrations'").fetch_one(pool).await?.get(0);
    let applied: i64 = if exists > 0 {
        sqlx::query("SELECT coalesce(max(version), 0) FROM _sqlx_migrations WHERE success").fetch_one(pool).await?.get(0)
    } else {
        0
    };
    Ok((applied, latest))
}

/// Creates (WAL) and upgrades the store with the open lock held; other processes wait.
pub(super) async fn setup(file: &Path) -> Result<(), StoreError> {
    let lock = lock_file(file).await?;
    let result = async {
        let mut conn = super::connect_options(file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .connect()
            .await
            .map_err(|e| open_error(file, &e))?;
        let migrated = MIGRATOR.run_direct(None, &mut conn, false).await;
        let _ = conn.close().await;
        migrated.map_err(StoreError::from)
    }
    .await;
    drop(lock);
    result
}

/// Takes the exclusive lock on `<store>.lock`, waiting while another process holds it.
async fn lock_file(file: &Path) -> Result<std::fs::File, StoreError> {
    let path = PathBuf::from(format!("{}.lock", file.display()));
    let handle = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| place_error(file, &format!("cannot create its lock file {}: {e}", path.display())))?;
    super::restrict_files(&path);
    let started = Instant::now();
    let mut said = false;
    loop {
        match handle.try_lock() {
            Ok(()) => return Ok(handle),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(place_error(file, &format!("cannot lock {}: {e}", path.display()))),
        }
        if started.elapsed() > SETUP_WAIT {
            return Err(place_error(file, &format!("another process has been creating or upgrading it for {}s (it holds {})", SETUP_WAIT.as_secs(), path.display())));
        }
        if !said && started.elapsed() > Duration::from_secs(2) {
            tracing::info!("waiting for another process to finish upgrading the store");
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
