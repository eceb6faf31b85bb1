//! The activity store: SQLite through sqlx, WAL mode, migrations from `migrations/`
//! applied on open. One file per table family; queries are plain SQL next to the code
//! that owns the table.

mod activities;
mod companies;
mod crm_state;
mod cursors;
mod metrics;
mod quarantine;
mod raw;
mod slack_threads;
mod sync_log;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

pub use activities::{InsertOutcome, NewActivity, SortedActivities};
pub use companies::StoredScores;
pub use cursors::{ExportFileState, GithubPage, GithubProfile, PendingReactions};
pub use metrics::{ActivityFigures, StoreFigures};
pub use crm_state::{AcceptedState, Failure, Firing, Outcome, RecordResult, RunTotals};
pub use quarantine::QuarantinedLine;
pub use slack_threads::{SlackThread, ThreadMark};
pub use sync_log::{LogFilter, RecordRow, RunRow};

/// The migrations of `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid database URL `{url}`: {source}")]
    Url { url: String, source: sqlx::Error },
    #[error("cannot open the store at {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("cannot migrate the store: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("store: {0}")]
    Sqlite(String),
    #[error("store holds an invalid value in {what}: `{value}`")]
    Corrupt { what: &'static str, value: String },
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// The page cache of a connection, as `PRAGMA cache_size` takes it (negative: KiB).
macro_rules! cache_size {
    () => {
        "-262144"
    };
}
/// Puts a connection's page cache back to its size after a step that shrank it.
pub(crate) const RESTORE_CACHE_SIZE: &str = concat!("PRAGMA cache_size = ", cache_size!());

/// Turns a `--db` value into SQLite options: `sqlite://path`, `sqlite:path` or a plain
/// file path.
fn connect_options(url: &str) -> Result<SqliteConnectOptions, StoreError> {
    let options = if url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url).map_err(|source| StoreError::Url {
            url: url.to_owned(),
            source,
        })?
    } else {
        SqliteConnectOptions::new().filename(Path::new(url))
    };
    Ok(options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // WAL with NORMAL is durable across application crashes; only an OS crash can
        // lose the last transactions, never corrupt the file.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
        // 256 MiB of page cache a connection: a 10-million-activity store's indexes stay
        // in memory while an import inserts into them at random.
        .pragma("cache_size", cache_size!())
        // Checkpoint every 80 MB of WAL rather than every 4 MB: a large import re-dirties
        // the same index pages batch after batch, and each checkpoint copies them again.
        .pragma("wal_autocheckpoint", "20000")
        .pragma("journal_size_limit", "67108864")
        .pragma("temp_store", "memory")
        // Full scans run for seconds by design; that is not worth a warning.
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1)))
}

impl Store {
    /// Opens (creating if missing) and migrates the store.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let options = connect_options(url)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                url: url.to_owned(),
                source,
            })?;
        MIGRATOR.run(&pool).await?;
        // A bulk load killed before it rebuilt the company index left it missing.
        sqlx::query(activities::COMPANY_INDEX).execute(&pool).await?;
        restrict_files(&options_filename(url));
        Ok(Store { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
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

/// The store's file, for a `sqlite://path`, `sqlite:path` or plain path URL.
fn options_filename(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// The store holds company names and activity details: readable by its owner only.
fn restrict_files(path: &Option<std::path::PathBuf>) {
    #[cfg(unix)]
    if let Some(path) = path {
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
