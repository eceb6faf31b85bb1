//! Figures for `/metrics` and `/status`, read from the store at scrape time so they stay
//! true across restarts.

use sqlx::Row;

use super::{Store, StoreError};

#[derive(Debug, Default, Clone)]
pub struct StoreFigures {
    pub companies_by_stage: Vec<(String, i64)>,
    pub scores_as_of: Option<String>,
    /// (connector, outcome, records)
    pub sync_records: Vec<(String, String, i64)>,
    /// (connector, status, runs, api calls, rate-limit waits)
    pub runs: Vec<(String, String, i64, i64, i64)>,
    /// (connector, waits the API imposed, waits of the connector's own pacing)
    pub waits: Vec<(String, i64, i64)>,
    pub last_run_seconds: Vec<(String, f64)>,
    /// (connector, Unix seconds of its last run that ended ok)
    pub last_success: Vec<(String, f64)>,
    /// Export lines kept in quarantine.
    pub quarantined: i64,
}

/// The counts that read a whole index of the activities (a tenth of a second a million
/// activities): worth keeping while the data version stays.
#[derive(Debug, Default, Clone)]
pub struct ActivityFigures {
    /// The data version they were read at or after.
    pub data_version: i64,
    pub by_source: Vec<(String, i64)>,
    /// Activities no attribution rule placed (yet).
    pub unattributed: i64,
}

impl Store {
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn figures(&self) -> Result<StoreFigures, StoreError> {
        let pairs = |rows: Vec<sqlx::sqlite::SqliteRow>| rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
        let companies_by_stage = pairs(sqlx::query("SELECT stage, COUNT(*) FROM scores GROUP BY stage ORDER BY stage").fetch_all(&self.pool).await?);
        let scores_as_of = sqlx::query("SELECT max(as_of) FROM scores").fetch_one(&self.pool).await?.get(0);
        let sync_records = sqlx::query("SELECT connector, outcome, COUNT(*) FROM sync_records GROUP BY connector, outcome ORDER BY 1, 2")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let runs = sqlx::query(
            "SELECT connector, status, COUNT(*), SUM(api_calls), SUM(rate_limit_waits), MAX(finished_at) FROM sync_runs GROUP BY connector, status ORDER BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await?;
        let last_success = runs
            .iter()
            .filter(|r| r.get::<&str, _>(1) == "ok")
            .filter_map(|r| Some((r.get(0), r.get::<Option<i64>, _>(5)? as f64 / 1e9)))
            .collect();
        let runs = runs.into_iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect();
        let waits = sqlx::query("SELECT connector, SUM(server_waits), SUM(pacing_waits) FROM sync_runs GROUP BY connector ORDER BY 1")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let last_run_seconds = sqlx::query(
            "SELECT connector, (finished_at - started_at) / 1e9 FROM sync_runs r WHERE finished_at IS NOT NULL \
             AND id = (SELECT max(id) FROM sync_runs x WHERE x.connector = r.connector AND x.finished_at IS NOT NULL) ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
        let quarantined = sqlx::query("SELECT COUNT(*) FROM quarantine").fetch_one(&self.pool).await?.get(0);
        Ok(StoreFigures { companies_by_stage, scores_as_of, sync_records, runs, waits, last_run_seconds, last_success, quarantined })
    }

    /// Activities by source and unattributed; `cached` is returned as is when the data
    /// version has not moved since it was read (every insert and re-attribution moves it).
    pub async fn activity_figures(&self, cached: Option<ActivityFigures>) -> Result<ActivityFigures, StoreError> {
        // The version first: counts read after it are at least as new, so a change in
        // between makes the next call read again rather than keep stale counts.
        let data_version = self.data_version().await?;
        if let Some(cached) = cached.filter(|c| c.data_version == data_version) {
            return Ok(cached);
        }
        let by_source = sqlx::query("SELECT source, COUNT(*) FROM activities GROUP BY source ORDER BY source")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        // Total minus attributed: both counts come from indexes (the key, and the
        // company index that holds attributed rows only), not from the table.
        let unattributed = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM activities) - (SELECT COUNT(*) FROM activities WHERE company_id IS NOT NULL)",
        )
        .fetch_one(&self.pool)
        .await?
        .get(0);
        Ok(ActivityFigures { data_version, by_source, unattributed })
    }

    /// Per connector, how many runs failed since its last good one (ok or paused):
    /// read once at start, so a daemon restarted on a failing connector is not ready.
    pub async fn failing_streaks(&self) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        let rows = sqlx::query(
            "WITH good AS (SELECT connector, MAX(id) AS id FROM sync_runs WHERE status IN ('ok', 'paused') GROUP BY connector) \
             SELECT r.connector, COUNT(*) FROM sync_runs r LEFT JOIN good g ON g.connector = r.connector \
             WHERE r.status = 'failed' AND r.id > COALESCE(g.id, 0) GROUP BY r.connector",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get::<i64, _>(1) as u64)).collect())
    }

    /// The error of a connector's last failed run. Read newest first, so a connector
    /// failing now is found in its last rows.
    pub async fn last_run_error(&self, connector: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query("SELECT error FROM sync_runs WHERE connector = ? AND status = 'failed' ORDER BY id DESC LIMIT 1")
            .bind(connector)
            .fetch_optional(&self.pool)
            .await?
            .and_then(|r| r.get(0)))
    }
}
