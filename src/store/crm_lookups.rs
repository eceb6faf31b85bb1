//! What CRMs answered that led to no write: domains no record holds (or several do), and
//! the mapping whose fields the CRM's schema was found to hold. Both are kept so that an
//! unchanged sync asks the CRM nothing.

use std::collections::HashMap;

use sqlx::Row;

use super::{Store, StoreError, now_nanos};

/// A domain that matched no CRM record (`ids` empty) or several.
#[derive(Clone, Debug, PartialEq)]
pub struct Unmatched {
    pub ids: Vec<String>,
    /// The desired values (and stage) the company had at the lookup, as JSON: a change
    /// of them earns a new lookup.
    pub desired: String,
    /// When the CRM was asked, in nanoseconds since the epoch.
    pub checked_at: i64,
}

impl Store {
    pub async fn unmatched(&self, connector: &str) -> Result<HashMap<String, Unmatched>, StoreError> {
        let rows = sqlx::query("SELECT domain, crm_ids, desired, checked_at FROM crm_unmatched WHERE connector = ?")
            .bind(connector)
            .fetch_all(&self.pool)
            .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in rows {
            let ids: String = r.get(1);
            let ids = serde_json::from_str(&ids).map_err(|_| StoreError::Corrupt { what: "crm_unmatched.crm_ids", value: ids })?;
            out.insert(r.get(0), Unmatched { ids, desired: r.get(2), checked_at: r.get(3) });
        }
        Ok(out)
    }

    /// Remembers lookups that found no record or several: (domain, matching ids, desired).
    pub async fn remember_unmatched(&self, connector: &str, rows: &[(String, Vec<String>, String)]) -> Result<(), StoreError> {
        let now = now_nanos();
        let mut tx = self.pool.begin().await?;
        for (domain, ids, desired) in rows {
            sqlx::query(
                "INSERT INTO crm_unmatched (connector, domain, outcome, crm_ids, desired, checked_at) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (connector, domain) DO UPDATE SET outcome = excluded.outcome, crm_ids = excluded.crm_ids, \
                 desired = excluded.desired, checked_at = excluded.checked_at",
            )
            .bind(connector)
            .bind(domain)
            .bind(if ids.is_empty() { "not_found" } else { "ambiguous" })
            .bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
            .bind(desired)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forgets the unmatched lookups of domains now matched (or written).
    pub async fn forget_unmatched(&self, connector: &str, domains: &[String]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for domain in domains {
            sqlx::query("DELETE FROM crm_unmatched WHERE connector = ? AND domain = ?")
                .bind(connector)
                .bind(domain)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The fingerprint of the mapping the CRM's schema last passed the check for.
    pub async fn schema_checked(&self, connector: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT fingerprint FROM crm_schema_checks WHERE connector = ?")
            .bind(connector)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn set_schema_checked(&self, connector: &str, fingerprint: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO crm_schema_checks (connector, fingerprint, checked_at) VALUES (?, ?, ?) \
             ON CONFLICT (connector) DO UPDATE SET fingerprint = excluded.fingerprint, checked_at = excluded.checked_at",
        )
        .bind(connector)
        .bind(fingerprint)
        .bind(now_nanos())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The as-of day (days since 1970-01-01) the connector first synced, if it did.
    pub async fn sync_start(&self, connector: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT day FROM sync_starts WHERE connector = ?").bind(connector).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Records the connector's first sync day; a later call changes nothing.
    pub async fn mark_sync_start(&self, connector: &str, day: i64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO sync_starts (connector, day) VALUES (?, ?) ON CONFLICT (connector) DO NOTHING")
            .bind(connector)
            .bind(day)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The CRM refused a field the check had passed: describe it again next run.
    pub async fn forget_schema_check(&self, connector: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM crm_schema_checks WHERE connector = ?").bind(connector).execute(&self.pool).await?;
        Ok(())
    }

    /// Company names (from the activities that named them), by domain.
    pub async fn names_of(&self, domains: &[String]) -> Result<HashMap<String, String>, StoreError> {
        let list = serde_json::to_string(domains).unwrap_or_else(|_| "[]".into());
        let rows = sqlx::query("SELECT domain, name FROM companies WHERE name IS NOT NULL AND domain IN (SELECT value FROM json_each(?))")
            .bind(list)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
