//! Looking after the store's files: the bulk-load lifecycle, the checkpoint at exit,
//! backups, and the checks of `oql-sync doctor`.
//!
//! In WAL mode committed data lives in `<store>-wal` until a checkpoint copies it into
//! the store's file. A process that exits without one leaves most of a fresh store
//! there: a copy of `oql.db` alone is then empty, and a WAL deleted by hand takes the
//! data with it. So every clean exit checkpoints (`TRUNCATE`: the WAL is emptied), and
//! `backup` writes one self-contained file.

use std::path::Path;
use std::time::Duration;

use sqlx::Row;
use tokio::sync::watch;

use super::{Store, StoreError};

/// How long the checkpoint at exit waits for other processes' readers and writers: it
/// holds up their writes meanwhile, so it gives up early (the next exit does it).
const EXIT_CHECKPOINT_WAIT: &str = "PRAGMA busy_timeout = 2000";
/// `BUSY_TIMEOUT` again.
const RESTORE_BUSY_TIMEOUT: &str = "PRAGMA busy_timeout = 30000";
const _: () = assert!(super::BUSY_TIMEOUT.as_millis() == 30_000, "RESTORE_BUSY_TIMEOUT says BUSY_TIMEOUT");

/// A bulk load in progress (`Store::bulk_load`): the company index possibly dropped,
/// and a task checkpointing beside the inserts. `finish` ends it on every path, the
/// error path included; one dropped unfinished leaves the index to the next open.
pub struct BulkLoad {
    store: Store,
    dropped_index: bool,
    stop: watch::Sender<bool>,
    checkpoints: Option<tokio::task::JoinHandle<()>>,
}

impl Store {
    /// Starts a bulk load of about `expected` activities (see `begin_bulk_load`).
    pub async fn bulk_load(&self, expected: u64) -> Result<BulkLoad, StoreError> {
        let dropped_index = self.begin_bulk_load(expected).await?;
        let (stop, mut stopped) = watch::channel(false);
        let checkpoints = dropped_index.then(|| {
            let store = self.clone();
            tokio::spawn(async move {
                while tokio::time::timeout(Duration::from_millis(200), stopped.changed()).await.is_err() {
                    if let Err(e) = store.checkpoint().await {
                        tracing::debug!(error = %e, "checkpoint during a bulk load");
                    }
                }
            })
        });
        Ok(BulkLoad { store: self.clone(), dropped_index, stop, checkpoints })
    }

    /// Empties the WAL into the store's file, waiting a little for other processes;
    /// returns whether it completed.
    pub async fn checkpoint_truncate(&self) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query(EXIT_CHECKPOINT_WAIT).execute(&mut *conn).await?;
        let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *conn).await;
        sqlx::query(RESTORE_BUSY_TIMEOUT).execute(&mut *conn).await?;
        Ok(row?.get::<i64, _>(0) == 0)
    }

    /// The end of a process's use of the store: checkpoint, then close every
    /// connection (the last process to close also removes the `-wal` and `-shm` files).
    pub async fn shutdown(self) {
        if !self.read_only {
            match self.checkpoint_truncate().await {
                Ok(true) => {}
                Ok(false) => tracing::debug!("other processes were busy with the store; its WAL is left for them to checkpoint"),
                Err(e) => tracing::debug!(error = %e, "checkpoint at exit"),
            }
        }
        // A run still in flight after the grace period may hold a connection.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.pool.close()).await;
    }

    /// Writes a consistent copy of the store (as of now, WAL included) to `to`, which
    /// must not exist yet.
    pub async fn backup(&self, to: &Path) -> Result<(), StoreError> {
        sqlx::query("VACUUM INTO ?").bind(to.display().to_string()).execute(&self.pool).await?;
        super::restrict_files(to);
        Ok(())
    }

    /// What `doctor` reports.
    pub async fn checkup(&self, file: Option<&Path>) -> Result<Checkup, StoreError> {
        // A damaged page can fail the check itself: that is a finding, not an error.
        let problems: Vec<String> = match sqlx::query("PRAGMA integrity_check(20)").fetch_all(&self.pool).await {
            Ok(rows) => rows.into_iter().map(|r| r.get::<String, _>(0)).filter(|line| line != "ok").collect(),
            Err(e) => vec![StoreError::from(e).to_string()],
        };
        let (schema, latest) = super::open::schema_versions(&self.pool).await?;
        let wal_bytes = file.and_then(|f| std::fs::metadata(format!("{}-wal", f.display())).ok()).map_or(0, |m| m.len());
        let count = |sql: &'static str| async move { sqlx::query(sql).fetch_one(&self.pool).await.ok().map(|r| r.get::<i64, _>(0)) };
        let tables: Vec<String> = sqlx::query("SELECT name FROM sqlite_schema WHERE type = 'table'").fetch_all(&self.pool).await?.into_iter().map(|r| r.get(0)).collect();
        let has = |name: &str| tables.iter().any(|t| t == name);
        let (activities, unattributed, quarantined) = if has("activities") {
            (
                count("SELECT count(*) FROM activities").await,
                count("SELECT count(*) FROM activities WHERE company_id IS NULL").await,
                count("SELECT count(*) FROM quarantine").await,
            )
        } else {
            (Some(0), Some(0), Some(0))
        };
        let leases = if has("leases") { self.leases().await.unwrap_or_default() } else { Vec::new() };
        Ok(Checkup { problems, schema, latest, wal_bytes, activities, unattributed, quarantined, leases })
    }

    /// A quick structural check (`quick_check`): the damaged pages of a store are
    /// otherwise only found when something reads them.
    pub async fn quick_check(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query("PRAGMA quick_check(20)")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| r.get::<String, _>(0))
            .filter(|line| line != "ok")
            .collect())
    }
}

impl BulkLoad {
    /// Whether the company index was dropped (and so is built again, reading every
    /// activity, at `finish`).
    pub fn rebuilds_index(&self) -> bool {
        self.dropped_index
    }

    /// Stops the checkpoint task and builds the company index again if it was dropped.
    pub async fn finish(mut self) -> Result<(), StoreError> {
        let _ = self.stop.send(true);
        if let Some(task) = self.checkpoints.take() {
            let _ = task.await;
        }
        if self.dropped_index {
            self.dropped_index = false;
            self.store.end_bulk_load().await?;
        }
        Ok(())
    }
}

impl Drop for BulkLoad {
    fn drop(&mut self) {
        if let Some(task) = self.checkpoints.take() {
            task.abort();
        }
    }
}

/// The state of a store, for `oql-sync doctor`.
#[derive(Debug, Clone)]
pub struct Checkup {
    /// `integrity_check` findings; empty when the store is sound.
    pub problems: Vec<String>,
    /// The newest migration applied, and the newest this binary knows.
    pub schema: i64,
    pub latest: i64,
    pub wal_bytes: u64,
    /// Counts, `None` where damage kept them from being read.
    pub activities: Option<i64>,
    pub unattributed: Option<i64>,
    pub quarantined: Option<i64>,
    /// Each lease, and whether it is live.
    pub leases: Vec<(super::Held, bool)>,
}

impl Checkup {
    /// What makes the store unhealthy: damage, or a schema newer than this binary.
    pub fn faults(&self) -> Vec<String> {
        let mut out: Vec<String> = self.problems.iter().map(|p| format!("integrity: {p}")).collect();
        if self.schema > self.latest {
            out.push(format!("schema {} is newer than this oql-sync knows ({}); run the newer version", self.schema, self.latest));
        }
        out
    }

    pub fn render(&self, location: &str) -> String {
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
        let mut out = format!("store: {location}\n");
        out.push_str(&format!("integrity: {}\n", if self.problems.is_empty() { "ok".to_owned() } else { format!("{} problems", self.problems.len()) }));
        for p in &self.problems {
            out.push_str(&format!("  {p}\n"));
        }
        out.push_str(&format!(
            "schema: {} of {}{}\n",
            self.schema,
            self.latest,
            match self.schema.cmp(&self.latest) {
                std::cmp::Ordering::Less => " (the next command that writes upgrades it)",
                std::cmp::Ordering::Equal => " (up to date)",
                std::cmp::Ordering::Greater => " (newer than this oql-sync)",
            }
        ));
        out.push_str(&format!("wal: {}\n", mib(self.wal_bytes)));
        let n = |v: Option<i64>| v.map_or("unreadable".to_owned(), |v| v.to_string());
        out.push_str(&format!("activities: {} ({} unattributed)\n", n(self.activities), n(self.unattributed)));
        out.push_str(&format!("quarantined lines: {}\n", n(self.quarantined)));
        if self.leases.is_empty() {
            out.push_str("leases: none\n");
        }
        for (held, live) in &self.leases {
            out.push_str(&format!("lease {}: {}{}\n", held.name, held, if *live { format!(", until {}", held.expires) } else { " (stale: free to take)".into() }));
        }
        let faults = self.faults();
        if faults.is_empty() {
            out.push_str("healthy\n");
        } else {
            out.push_str(&format!("unhealthy: {}\n", faults.join("; ")));
        }
        out
    }
}
