//! The activity store: SQLite through sqlx, WAL mode, migrations from `migrations/`
//! applied on open. One file per table family; queries are plain SQL next to the code
//! that owns the table.

mod activities;
mod companies;
mod crm_lookups;
mod crm_state;
mod cursors;
mod leases;
mod metrics;
mod open;
mod quarantine;
mod raw;
mod scarf_stages;
mod slack_threads;
mod stage_history;
mod console_reads;
mod sync_log;
mod upkeep;

use std::path::Path;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

pub use activities::{AttributionCounts, InsertOutcome, NewActivity, SortedActivities};
pub use companies::StoredScores;
pub use cursors::{ExportFileState, GithubPage, GithubProfile, PendingReactions};
pub use leases::{Held, Lease};
pub use metrics::{ActivityFigures, StoreFigures};
pub use crm_lookups::Unmatched;
pub use upkeep::{BulkLoad, Checkup};
pub use crm_state::{AcceptedState, Failure, Firing, Outcome, RecordResult, RunTotals};
pub use quarantine::QuarantinedLine;
pub use scarf_stages::ScarfStage;
pub use slack_threads::{SlackThread, ThreadMark};
pub use sync_log::{LogFilter, RecordRow, RunRow};
pub use stage_history::StageMove;
pub use console_reads::{CompanySink, CursorRow, ExportFileRow, IdentityRow, RecentActivity, UnattributedRow};

/// The migrations of `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Where the store is cannot hold a store (a directory, a missing folder, another
    /// database's URL), or the file cannot be opened: said in plain words, with where
    /// the location came from (`--db`, `OQL_DB`, the default).
    #[error("cannot open the store{}{}: {why}", if location.is_empty() { String::new() } else { format!(" {location}") }, origin.as_deref().map(|o| format!(" ({o})")).unwrap_or_default())]
    Open { location: String, origin: Option<String>, why: String },
    #[error("cannot upgrade the store's schema: {}", open::migrate_words(.0))]
    Migrate(sqlx::migrate::MigrateError),
    #[error("store: {}", open::sqlx_words(.0))]
    Sql(sqlx::Error),
    #[error("store: {0}")]
    Sqlite(String),
    #[error("store holds an invalid value in {what}: `{value}`")]
    Corrupt { what: &'static str, value: String },
}

// No `#[source]`: the words above already carry the cause, and an error chain printed
// whole would say it two or three times more.
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        StoreError::Sql(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> StoreError {
        StoreError::Migrate(e)
    }
}

impl StoreError {
    /// Names where the store's location came from, for the operator to fix it there.
    pub fn with_origin(self, from: &str) -> StoreError {
        match self {
            StoreError::Open { location, why, .. } => StoreError::Open { location, origin: Some(from.to_owned()), why },
            other => other,
        }
    }

    /// Whether the disk (or the file system's quota) ran out under a write.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Sql(e) => open::sqlite_code(e) == Some(13),
            StoreError::Sqlite(text) => text.contains(open::DISK_FULL),
            _ => false,
        }
    }
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    /// Opened read-only (the file or its folder is not writable by this user).
    read_only: bool,
}

/// The page cache of a connection, as `PRAGMA cache_size` takes it (negative: KiB).
macro_rules! cache_size {
    () => {
        "-262144"
    };
}
/// Puts a connection's page cache back to its size after a step that shrank it.
pub(crate) const RESTORE_CACHE_SIZE: &str = concat!("PRAGMA cache_size = ", cache_size!());

/// How long a statement waits for another process's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection settings every connection of the pool gets. The journal mode is not
/// among them: switching to WAL takes a lock SQLite cannot wait for, so it is set once,
/// when the store is created, under the open lock (`open::setup`).
fn connect_options(file: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(file)
        // WAL with NORMAL is durable across application crashes; only an OS crash can
        // lose the last transactions, never corrupt the file.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
        // 256 MiB of page cache a connection: a 10-million-activity store's indexes stay
        // in memory while an import inserts into them at random.
        .pragma("cache_size", cache_size!())
        // Checkpoint every 80 MB of WAL rather than every 4 MB: a large import re-dirties
        // the same index pages batch after batch, and each checkpoint copies them again.
        .pragma("wal_autocheckpoint", "20000")
        .pragma("journal_size_limit", "67108864")
        .pragma("temp_store", "memory")
        // Full scans run for seconds by design; that is not worth a warning.
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1))
}

impl Store {
    /// Opens (creating if missing) and migrates the store, for commands that write.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let file = open::locate(url)?;
        open::check_place(&file, true)?;
        open::setup(&file).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(connect_options(&file))
            .await
            .map_err(|e| open::open_error(&file, &e))?;
        // A bulk load killed before it rebuilt the company index left it missing.
        sqlx::query(activities::COMPANY_INDEX).execute(&pool).await?;
        restrict_files(&file);
        Ok(Store { pool, read_only: false })
    }

    /// Opens the store for commands that only read (`companies`, `log`, `explain`):
    /// writably when it can (so a first open still creates and upgrades it), else
    /// read-only, as a store on a read-only mount or owned by another user is.
    pub async fn open_for_reading(url: &str) -> Result<Store, StoreError> {
        let file = open::locate(url)?;
        open::check_place(&file, false)?;
        if open::writable(&file) {
            return Store::open(url).await;
        }
        Store::open_read_only(&file).await
    }

    /// Opens without creating, upgrading or writing anything (`doctor`, `backup`).
    pub async fn inspect(url: &str) -> Result<Store, StoreError> {
        let file = open::locate(url)?;
        open::check_place(&file, false)?;
        if !file.exists() {
            return Err(open::place_error(&file, "there is no store there yet (any command that writes creates it)"));
        }
        Store::open_read_only(&file).await
    }

    async fn open_read_only(file: &Path) -> Result<Store, StoreError> {
        let options = connect_options(file).read_only(true);
        let pool = match SqlitePoolOptions::new().max_connections(2).connect_with(options.clone()).await {
            Ok(pool) if sqlx::query("SELECT count(*) FROM sqlite_schema").execute(&pool).await.is_ok() => pool,
            // A WAL store in a folder this user cannot write has no `-shm` file to share
            // with writers, and none can exist: nobody writes it, so read it as a snapshot.
            _ => SqlitePoolOptions::new()
                .max_connections(2)
                .connect_with(options.immutable(true))
                .await
                .map_err(|e| open::open_error(file, &e))?,
        };
        let store = Store { pool, read_only: true };
        if let Some(why) = open::pending_upgrade(&store.pool).await? {
            return Err(open::place_error(file, &format!("{why}; it is read-only here, so run any command that writes once where it is writable")));
        }
        Ok(store)
    }

    /// Whether attribution rules differ from those the store's activities were placed by.
    pub async fn attribution_changed(&self, rules: &crate::attribution::AttributionRules) -> Result<bool, StoreError> {
        Ok(self.meta("attribution_rules").await?.as_deref() != Some(rules.fingerprint().as_str()))
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Starts a transaction that writes. `BEGIN IMMEDIATE` takes the write lock first,
    /// waiting (up to the busy timeout) for another process's writer: a transaction that
    /// read first and asked for the lock later would fail at once with "database is
    /// locked" when another process wrote in between.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }

    /// A counter bumped by every change to the activities scoring reads: persisted
    /// scores computed at another version are stale.
    pub async fn data_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .meta("data_version")
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    pub async fn close(self) {
        self.pool.close().await;
    }
}

/// The store's file for a `--db` value, when it names one.
pub fn file_of(url: &str) -> Option<std::path::PathBuf> {
    open::locate(url).ok()
}

/// The store holds company names and activity details: readable by its owner only.
fn restrict_files(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            if file.exists() {
                let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
            }
        }
    }
}

async fn set_meta<'e, E>(executor: E, key: &str, value: &str) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        .bind(key)
        .bind(value)
        .execute(executor)
        .await?;
    Ok(())
}

async fn bump_data_version<'e, E>(executor: E) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ('data_version', '1') \
         ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// The data version inside a transaction (after `bump_data_version`).
/// Takes the write lock for the transaction (a write that changes nothing), so what it
/// reads next cannot change before it commits.
async fn claim_write(conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO meta (key, value) VALUES ('data_version', '0') ON CONFLICT (key) DO NOTHING").execute(conn).await?;
    Ok(())
}

async fn data_version_in(conn: &mut sqlx::SqliteConnection) -> Result<i64, sqlx::Error> {
    let v: Option<i64> = sqlx::query_scalar("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'data_version'").fetch_optional(conn).await?;
    Ok(v.unwrap_or(0))
}

/// Marks companies as changed at the current data version (after `bump_data_version`).
async fn mark_changed(conn: &mut sqlx::SqliteConnection, domains: &[&str]) -> Result<(), sqlx::Error> {
    for chunk in domains.chunks(500) {
        let mut qb: sqlx::QueryBuilder<sqlx::Sqlite> = sqlx::QueryBuilder::new(
            "UPDATE companies SET changed_version = (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'data_version') WHERE domain IN (",
        );
        let mut sep = qb.separated(", ");
        for d in chunk {
            sep.push_bind(*d);
        }
        qb.push(")");
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}

fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}
