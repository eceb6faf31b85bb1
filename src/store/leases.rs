//! Leases: a connector runs in one process at a time, and one daemon serves a store.
//!
//! Two processes running the same sink at once both plan from the same accepted state
//! and both send it: the CRM gets every record twice. A lease is a row naming its
//! holder (a random token, with pid and host for people), taken in a write transaction
//! and renewed by a task while the holder runs. It is free when it expired (a holder
//! that stopped renewing, wherever it ran), or when its holder was a process of this
//! host that no longer exists (killed: no need to wait for the expiry). A process
//! never waits for a lease: a run that finds its connector held is skipped, and the
//! holder's next scheduled run does the work.

use std::time::Duration;

use sqlx::Row;

use super::{Store, StoreError, now_nanos};

/// How long a lease lives without renewal; it is renewed every third of that.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// Who holds a lease another process wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub name: String,
    pub pid: i64,
    pub host: String,
    /// RFC 3339, UTC.
    pub since: String,
    pub expires: String,
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "held by pid {} on host {} since {}", self.pid, self.host, self.since)
    }
}

/// A lease this process holds; renewed until released (or dropped, which lets it
/// expire on its own if it could not be released).
pub struct Lease {
    store: Store,
    name: String,
    holder: String,
    renewal: tokio::task::JoinHandle<()>,
}

/// This machine's name, as people know it (`hostname`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Whether a process of this host is still there. Where that cannot be known, it is
/// taken to be, and the lease's expiry frees it.
fn process_exists(pid: i64) -> bool {
    if cfg!(target_os = "linux") {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

fn time(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Store {
    /// Takes the lease `name`, or says who holds it.
    pub async fn take_lease(&self, name: &str) -> Result<Result<Lease, Held>, StoreError> {
        let (pid, host) = (std::process::id() as i64, host_name());
        let holder = format!("{pid}-{:016x}", rand::random::<u64>());
        let now = now_nanos();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT pid, host, acquired_at, expires_at FROM leases WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = row {
            let (held_pid, held_host, since, expires): (i64, String, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
            // This very process holds nothing it does not know of: a row with its pid
            // and host is a previous process's (pids repeat, in containers always).
            let gone = held_host == host && (held_pid == pid || !process_exists(held_pid));
            if expires > now && !gone {
                tx.rollback().await?;
                return Ok(Err(Held { name: name.to_owned(), pid: held_pid, host: held_host, since: time(since), expires: time(expires) }));
            }
        }
        sqlx::query(
            "INSERT INTO leases (name, holder, pid, host, acquired_at, expires_at) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, pid = excluded.pid, host = excluded.host, \
             acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
        )
        .bind(name)
        .bind(&holder)
        .bind(pid)
        .bind(&host)
        .bind(now)
        .bind(now + LEASE_TTL.as_nanos() as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let renewal = {
            let (store, name, holder) = (self.clone(), name.to_owned(), holder.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEASE_TTL / 3).await;
                    match store.renew_lease(&name, &holder).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::error!(lease = %name, "lost the lease (it expired and another process took it)");
                            return;
                        }
                        // A write that failed now (a full disk) may succeed next time,
                        // well within the lease's life.
                        Err(e) => tracing::warn!(lease = %name, error = %e, "could not renew the lease"),
                    }
                }
            })
        };
        Ok(Ok(Lease { store: self.clone(), name: name.to_owned(), holder, renewal }))
    }

    async fn renew_lease(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ?")
            .bind(now_nanos() + LEASE_TTL.as_nanos() as i64)
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every lease row, live or not: for `doctor`.
    pub async fn leases(&self) -> Result<Vec<(Held, bool)>, StoreError> {
        let now = now_nanos();
        let rows = sqlx::query("SELECT name, pid, host, acquired_at, expires_at FROM leases ORDER BY name").fetch_all(&self.pool).await?;
        let host = host_name();
        Ok(rows
            .into_iter()
            .map(|r| {
                let expires: i64 = r.get(4);
                let held = Held { name: r.get(0), pid: r.get(1), host: r.get(2), since: time(r.get(3)), expires: time(expires) };
                let gone = held.host == host && !process_exists(held.pid);
                let live = expires > now && !gone;
                (held, live)
            })
            .collect())
    }
}

impl Lease {
    /// Gives the lease back, so that another process need not wait for its expiry.
    pub async fn release(self) {
        self.renewal.abort();
        let done = sqlx::query("DELETE FROM leases WHERE name = ? AND holder = ?")
            .bind(&self.name)
            .bind(&self.holder)
            .execute(&self.store.pool)
            .await;
        if let Err(e) = done {
            tracing::warn!(lease = %self.name, error = %StoreError::from(e), "could not release the lease; it expires by itself");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}
