//! What the web console reads beyond the CLI's queries: one company's CRM records and
//! identities, the sources' cursors and files, unattributed identities, and the retry
//! of one dead record. Raw strings go out as stored: the console redacts what it shows.

use sqlx::Row;

use super::{Store, StoreError, now_nanos};

/// What one sink knows of one company.
#[derive(Clone, Debug, Default)]
pub struct CompanySink {
    pub connector: String,
    pub crm_id: Option<String>,
    /// The fields the CRM last accepted (a JSON object), and when.
    pub accepted: Option<serde_json::Value>,
    pub accepted_at: Option<i64>,
    pub stage: Option<String>,
    pub attempts: i64,
    pub dead: bool,
    pub last_error: Option<String>,
}

/// Who an attributed activity came from and which rule placed it.
#[derive(Clone, Debug)]
pub struct IdentityRow {
    pub rule: Option<String>,
    pub source: String,
    pub actor: Option<String>,
    pub email_domain: Option<String>,
    pub activities: i64,
    pub last: i64,
}

/// An activity of a company, for its page.
#[derive(Clone, Debug)]
pub struct RecentActivity {
    pub occurred_at: i64,
    pub source: String,
    pub kind: String,
    pub detail: Option<String>,
}

#[derive(Clone, Debug)]
pub struct CursorRow {
    pub connector: String,
    pub key: String,
    pub value: String,
    pub updated_at: i64,
}

#[derive(Clone, Debug)]
pub struct ExportFileRow {
    pub connector: String,
    pub path: String,
    pub size: i64,
    pub lines: i64,
    pub imported_at: i64,
}

/// An identity no rule places in a company yet.
#[derive(Clone, Debug)]
pub struct UnattributedRow {
    pub source: String,
    pub actor: Option<String>,
    pub email_domain: Option<String>,
    pub activities: i64,
}

impl Store {
    /// Every sink's record of `domain`: id, accepted values, failure.
    pub async fn company_sinks(&self, domain: &str) -> Result<Vec<CompanySink>, StoreError> {
        let mut out: std::collections::BTreeMap<String, CompanySink> = Default::default();
        fn sink(out: &mut std::collections::BTreeMap<String, CompanySink>, c: String) -> &mut CompanySink {
            out.entry(c.clone()).or_insert_with(|| CompanySink { connector: c, ..Default::default() })
        }
        for r in sqlx::query("SELECT connector, crm_id FROM crm_records WHERE domain = ?").bind(domain).fetch_all(&self.pool).await? {
            sink(&mut out, r.get(0)).crm_id = r.get(1);
        }
        for r in sqlx::query("SELECT connector, fields, stage, accepted_at FROM crm_state WHERE domain = ?").bind(domain).fetch_all(&self.pool).await? {
            let s = sink(&mut out, r.get(0));
            s.accepted = serde_json::from_str(&r.get::<String, _>(1)).ok();
            s.stage = r.get(2);
            s.accepted_at = r.get(3);
        }
        for r in sqlx::query("SELECT connector, attempts, dead, last_error FROM sync_failures WHERE domain = ?").bind(domain).fetch_all(&self.pool).await? {
            let s = sink(&mut out, r.get(0));
            s.attempts = r.get(1);
            s.dead = r.get::<i64, _>(2) != 0;
            s.last_error = r.get(3);
        }
        Ok(out.into_values().collect())
    }

    /// The identities behind a company's activities, by the rule that placed them.
    pub async fn company_identities(&self, domain: &str, limit: i64) -> Result<Vec<IdentityRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.attributed_by, a.source, a.actor, a.email_domain, count(*), max(a.occurred_at) FROM activities a \
             WHERE a.company_id = (SELECT id FROM companies WHERE domain = ?) \
             GROUP BY a.attributed_by, a.source, a.actor, a.email_domain ORDER BY count(*) DESC LIMIT ?",
        )
        .bind(domain)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| IdentityRow { rule: r.get(0), source: r.get(1), actor: r.get(2), email_domain: r.get(3), activities: r.get(4), last: r.get(5) })
            .collect())
    }

    /// A company's latest activities, newest first.
    pub async fn recent_activities(&self, domain: &str, until: i64, limit: i64) -> Result<Vec<RecentActivity>, StoreError> {
        let rows = sqlx::query(
            "SELECT occurred_at, source, kind, coalesce(url, package || coalesce(' ' || version, '')) FROM activities \
             WHERE company_id = (SELECT id FROM companies WHERE domain = ?) AND occurred_at < ? \
             ORDER BY occurred_at DESC LIMIT ?",
        )
        .bind(domain)
        .bind(until)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| RecentActivity { occurred_at: r.get(0), source: r.get(1), kind: r.get(2), detail: r.get(3) }).collect())
    }

    /// Every source cursor (GitHub pages and ETags, Slack windows).
    pub async fn cursors(&self, limit: i64) -> Result<Vec<CursorRow>, StoreError> {
        let rows = sqlx::query("SELECT connector, key, value, updated_at FROM source_cursors ORDER BY connector, key LIMIT ?")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| CursorRow { connector: r.get(0), key: r.get(1), value: r.get(2), updated_at: r.get(3) }).collect())
    }

    /// The export files read, newest first.
    pub async fn export_files(&self, limit: i64) -> Result<Vec<ExportFileRow>, StoreError> {
        let rows = sqlx::query("SELECT connector, path, size, lines, imported_at FROM export_files ORDER BY imported_at DESC LIMIT ?")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| ExportFileRow { connector: r.get(0), path: r.get(1), size: r.get(2), lines: r.get(3), imported_at: r.get(4) })
            .collect())
    }

    /// The identities with the most activities no rule places, most first.
    pub async fn top_unattributed(&self, limit: i64) -> Result<Vec<UnattributedRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT source, actor, email_domain, count(*) FROM activities WHERE company_id IS NULL \
             GROUP BY source, actor, email_domain ORDER BY count(*) DESC, source, actor LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| UnattributedRow { source: r.get(0), actor: r.get(1), email_domain: r.get(2), activities: r.get(3) }).collect())
    }

    /// Records waiting for their next attempt after failing (not dead): (connector, domain, attempts, error).
    pub async fn pending_failures(&self, limit: i64) -> Result<Vec<(String, String, i64, String)>, StoreError> {
        let rows = sqlx::query("SELECT connector, domain, attempts, last_error FROM sync_failures WHERE dead = 0 ORDER BY updated_at DESC LIMIT ?")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect())
    }

    /// One dead record gets a fresh set of attempts (the console's retry; `sync
    /// --retry-dead` does it for a whole connector). False when it was not dead.
    pub async fn revive_dead_record(&self, connector: &str, domain: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE sync_failures SET dead = 0, attempts = 0, updated_at = ? WHERE connector = ? AND domain = ? AND dead = 1")
            .bind(now_nanos())
            .bind(connector)
            .bind(domain)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// How many lines are in quarantine.
    pub async fn quarantined_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT count(*) FROM quarantine").fetch_one(&self.pool).await?.get(0))
    }
}
