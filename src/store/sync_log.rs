//! Reading the sync log back for `oql-sync log`: runs, and the records of those runs.

use serde::Serialize;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{Store, StoreError};

#[derive(Clone, Debug, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub connector: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: String,
    pub planned: i64,
    pub sent: i64,
    pub accepted: i64,
    pub failed: i64,
    pub api_calls: i64,
    pub rate_limit_waits: i64,
    /// Of those, the waits the API imposed (429, `Retry-After`, secondary limits)...
    pub server_waits: i64,
    /// ...and those of the connector's own pacing.
    pub pacing_waits: i64,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RecordRow {
    pub run_id: i64,
    pub connector: String,
    pub domain: String,
    pub crm_id: Option<String>,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
    pub outcome: String,
    pub error: Option<String>,
    pub at: String,
}

/// Filters of `oql-sync log`.
#[derive(Clone, Debug, Default)]
pub struct LogFilter {
    pub connector: Option<String>,
    /// `ok`/`failed` select runs by status and records by outcome; other values
    /// (`dead`, `ambiguous`, `not_found`, `accepted`, `created`, `trigger`) select records.
    pub status: Option<String>,
    /// Nanoseconds since the epoch.
    pub since: Option<i64>,
    pub limit: i64,
    /// Records of one run only (the console's run view).
    pub run_id: Option<i64>,
}

fn time(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl Store {
    pub async fn sync_runs(&self, f: &LogFilter) -> Result<Vec<RunRow>, StoreError> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT id, connector, started_at, finished_at, status, planned, sent, accepted, failed, api_calls, \
             rate_limit_waits, error, server_waits, pacing_waits FROM sync_runs WHERE 1 = 1",
        );
        if let Some(c) = &f.connector {
            qb.push(" AND connector = ").push_bind(c.clone());
        }
        if let Some(s) = f.status.as_deref().filter(|s| matches!(*s, "ok" | "failed" | "paused" | "running" | "skipped")) {
            qb.push(" AND status = ").push_bind(s.to_owned());
        }
        if let Some(since) = f.since {
            qb.push(" AND started_at >= ").push_bind(since);
        }
        qb.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit);
        let rows = qb.build().fetch_all(&self.pool).await?;
        let mut out: Vec<RunRow> = rows
            .into_iter()
            .map(|r| RunRow {
                id: r.get(0),
                connector: r.get(1),
                started_at: time(r.get(2)),
                finished_at: r.get::<Option<i64>, _>(3).map(time),
                status: r.get(4),
                planned: r.get(5),
                sent: r.get(6),
                accepted: r.get(7),
                failed: r.get(8),
                api_calls: r.get(9),
                rate_limit_waits: r.get(10),
                error: r.get(11),
                server_waits: r.get(12),
                pacing_waits: r.get(13),
            })
            .collect();
        out.reverse();
        Ok(out)
    }

    pub async fn sync_records(&self, f: &LogFilter) -> Result<Vec<RecordRow>, StoreError> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT r.run_id, r.connector, r.domain, r.crm_id, r.before, r.after, r.outcome, r.error, r.at \
             FROM sync_records r WHERE 1 = 1",
        );
        if let Some(c) = &f.connector {
            qb.push(" AND r.connector = ").push_bind(c.clone());
        }
        match f.status.as_deref() {
            None => {}
            Some("ok") => {
                qb.push(" AND r.outcome IN ('accepted', 'created', 'trigger')");
            }
            Some("failed") => {
                qb.push(" AND r.outcome IN ('failed', 'dead', 'ambiguous', 'not_found')");
            }
            // Records parked now: their last word in the log is `dead` and nothing revived them.
            Some("dead") => {
                qb.push(
                    " AND r.outcome = 'dead' AND EXISTS (SELECT 1 FROM sync_failures x WHERE x.connector = r.connector \
                     AND x.domain = r.domain AND x.dead = 1) AND r.at = (SELECT max(at) FROM sync_records y \
                     WHERE y.connector = r.connector AND y.domain = r.domain AND y.outcome = 'dead')",
                );
            }
            Some(other) => {
                qb.push(" AND r.outcome = ").push_bind(other.to_owned());
            }
        }
        if let Some(since) = f.since {
            qb.push(" AND r.at >= ").push_bind(since);
        }
        if let Some(run) = f.run_id {
            qb.push(" AND r.run_id = ").push_bind(run);
        }
        qb.push(" ORDER BY r.at DESC, r.rowid DESC LIMIT ").push_bind(f.limit);
        let rows = qb.build().fetch_all(&self.pool).await?;
        let parse = |s: Option<String>| {
            s.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(serde_json::Value::Null)
        };
        let mut out: Vec<RecordRow> = rows
            .into_iter()
            .map(|r| RecordRow {
                run_id: r.get(0),
                connector: r.get(1),
                domain: r.get(2),
                crm_id: r.get(3),
                before: parse(r.get(4)),
                after: parse(r.get(5)),
                outcome: r.get(6),
                error: r.get(7),
                at: time(r.get(8)),
            })
            .collect();
        out.reverse();
        Ok(out)
    }
}
