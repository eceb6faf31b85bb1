//! Kill points for the crash suites: seeded pseudo-random delays (reproducible with
//! `OQL_CRASH_SEED`), a child killed with SIGKILL once its delay is up, and reads of the
//! store the binary left behind (through sqlx, as the binary opens it).

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// SplitMix64: a tiny, well-mixed generator, so a seed names the same delays everywhere.
pub struct KillPoints {
    pub seed: u64,
    state: u64,
}

impl KillPoints {
    /// The seed is `OQL_CRASH_SEED` when set, else a fixed one per scenario.
    pub fn new(scenario: &str) -> KillPoints {
        let seed = std::env::var("OQL_CRASH_SEED")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| scenario.bytes().fold(0x5eed_0000_u64, |h, b| h.rotate_left(5) ^ b as u64));
        KillPoints { seed, state: seed }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A delay spread evenly over `[0, span)`.
    pub fn delay(&mut self, span: Duration) -> Duration {
        let micros = span.as_micros().max(1) as u64;
        Duration::from_micros(self.next() % micros)
    }
}

/// How long an uninterrupted run of the command takes; it must succeed.
pub fn measure(cmd: &mut Command) -> Duration {
    let started = Instant::now();
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "the uninterrupted run failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    started.elapsed()
}

/// Spawns the command and sends it SIGKILL after `delay`; returns whether it was still
/// running then (false: it finished first, so the point was no kill).
pub fn kill_after(cmd: &mut Command, delay: Duration) -> bool {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(delay);
    if child.try_wait().unwrap().is_some() {
        return false;
    }
    // `Child::kill` is SIGKILL on unix: no handler runs, nothing is flushed.
    child.kill().unwrap();
    child.wait().unwrap();
    true
}

fn on_store<T>(db: &Path, query: impl FnOnce(sqlx::SqlitePool) -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>>) -> T {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db).create_if_missing(false);
        let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
        let out = query(pool.clone()).await;
        pool.close().await;
        out
    })
}

/// One integer from a query (e.g. a count).
pub fn scalar(db: &Path, sql: &'static str) -> i64 {
    on_store(db, |pool| Box::pin(async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap() }))
}

/// The text column of every row, in the query's order.
pub fn texts(db: &Path, sql: &'static str) -> Vec<String> {
    on_store(db, |pool| Box::pin(async move { sqlx::query_scalar::<_, String>(sql).fetch_all(&pool).await.unwrap() }))
}

/// `PRAGMA integrity_check` of the store: `["ok"]` when it is sound.
pub fn integrity(db: &Path) -> Vec<String> {
    texts(db, "PRAGMA integrity_check")
}

/// Copies a store (and its WAL, if one is left) into another config dir.
pub fn copy_store(from: &Path, to: &Path) {
    for suffix in ["", "-wal"] {
        let src = from.join(format!("oql.db{suffix}"));
        if src.exists() {
            std::fs::copy(&src, to.join(format!("oql.db{suffix}"))).unwrap();
        }
    }
}
