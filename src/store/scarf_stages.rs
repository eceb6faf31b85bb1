//! Scarf's funnel stage of each company (migration 0024), from Scarf's company rollup:
//! stored as read, replaced by each newer rollup, and joined beside our scores when
//! they are read out. Scoring never sees it.

use std::collections::HashMap;

use chrono::NaiveDate;
use sqlx::Row;

use super::{Store, StoreError, cursors, now_nanos};

/// One company's stage as Scarf's rollup gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScarfStage {
    pub domain: String,
    pub stage: String,
    pub since: Option<NaiveDate>,
}

impl Store {
    /// Stores a rollup: with `whole`, it replaces everything the connector read before
    /// (the API's rollup lists every company); otherwise its companies are updated (a
    /// bucket's rollup files, read one by one). The cursor `(key, value)` moves in the
    /// same transaction.
    pub async fn save_scarf_stages(&self, connector: &str, rows: &[ScarfStage], whole: bool, cursor: Option<(&str, &str)>) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let now = now_nanos();
        if whole {
            sqlx::query("DELETE FROM scarf_stages WHERE connector = ?").bind(connector).execute(&mut *tx).await?;
        }
        for r in rows {
            sqlx::query(
                "INSERT INTO scarf_stages (connector, domain, stage, since, read_at) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (connector, domain) DO UPDATE SET stage = excluded.stage, since = excluded.since, read_at = excluded.read_at",
            )
            .bind(connector)
            .bind(&r.domain)
            .bind(&r.stage)
            .bind(r.since.map(|d| d.format("%Y-%m-%d").to_string()))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        if let Some((key, value)) = cursor {
            cursors::set_cursor(&mut *tx, connector, key, value, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Scarf's stage of every company, by domain; when two connectors read one company,
    /// the later read wins.
    pub async fn scarf_stages(&self) -> Result<HashMap<String, ScarfStage>, StoreError> {
        let rows = sqlx::query("SELECT domain, stage, since FROM scarf_stages ORDER BY read_at").fetch_all(&self.pool).await?;
        let mut out = HashMap::new();
        for r in rows {
            let since: Option<String> = r.get(2);
            let stage = ScarfStage { domain: r.get(0), stage: r.get(1), since: since.and_then(|s| NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok()) };
            out.insert(stage.domain.clone(), stage);
        }
        Ok(out)
    }
}
