//! Figures for `/metrics` and `/status`, read from the store at scrape time so they stay
//! true across restarts.

use sqlx::Row;

use super::{Store, StoreError};

#[derive(Debug, Default, Clone)]
pub struct StoreFigures {
    pub activities_by_source: Vec<(String, i64)>,
    pub companies_by_stage: Vec<(String, i64)>,
    pub scores_as_of: Option<String>,
    /// (connector, outcome, records)
    pub sync_records: Vec<(String, String, i64)>,
    /// (connector, status, runs, api calls, rate-limit waits)
    pub runs: Vec<(String, String, i64, i64, i64)>,
    /// (connector, waits the API imposed, waits of the connector's own pacing)
    pub waits: Vec<(String, i64, i64)>,
    pub last_run_seconds: Vec<(String, f64)>,
}

impl Store {
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn figures(&self) -> Result<StoreFigures, StoreError> {
        let pairs = |rows: Vec<sqlx::sqlite::SqliteRow>| rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
        let activities_by_source = pairs(sqlx::query("SELECT source, COUNT(*) FROM activities GROUP BY source ORDER BY source").fetch_all(&self.pool).await?);
        let companies_by_stage = pairs(sqlx::query("SELECT stage, COUNT(*) FROM scores GROUP BY stage ORDER BY stage").fetch_all(&self.pool).await?);
        let scores_as_of = sqlx::query("SELECT max(as_of) FROM scores").fetch_one(&self.pool).await?.get(0);
        let sync_records = sqlx::query("SELECT connector, outcome, COUNT(*) FROM sync_records GROUP BY connector, outcome ORDER BY 1, 2")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let runs = sqlx::query(
            "SELECT connector, status, COUNT(*), SUM(api_calls), SUM(rate_limit_waits) FROM sync_runs GROUP BY connector, status ORDER BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
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
        Ok(StoreFigures { activities_by_source, companies_by_stage, scores_as_of, sync_records, runs, waits, last_run_seconds })
    }
}
