//! What each sink's CRM holds as far as we know: matched record ids, the last accepted
//! field values and stage, failing records, and the trigger firings a stage change owes.
//!
//! A batch's confirmed outcome is committed in one transaction: accepted values, the
//! stage change it carried, the trigger firings that change owes and the sync log rows.
//! A crash before that commit leaves the store as if the batch had not been sent, so the
//! next run re-sends it (an idempotent update) and enqueues the firings then.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::{Row, SqliteConnection};

use super::{Store, StoreError, now_nanos};
use crate::scoring::Stage;
use crate::sinks::mapping::Desired;

/// The last values a CRM confirmed for one company.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AcceptedState {
    pub fields: Desired,
    pub stage: Option<Stage>,
    /// How many stage changes were accepted so far (numbers trigger firings).
    pub changes: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub attempts: i64,
    pub dead: bool,
    pub last_error: String,
}

/// The outcome of one record of a batch, as the CRM reported it.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Written (or created, with `created`); `stage` is the OQL stage the record now carries.
    Accepted { created: bool, stage: Stage },
    Failed { error: String },
    /// Several CRM records hold the domain; none was written.
    Ambiguous { ids: Vec<String> },
    /// No CRM record holds the domain and the mapping does not create one.
    NotFound,
}

/// One record's line in a batch commit.
#[derive(Clone, Debug)]
pub struct RecordResult {
    pub domain: String,
    pub crm_id: Option<String>,
    /// Values of the sent fields before (as last accepted) and after.
    pub before: Desired,
    pub after: Desired,
    /// Values not sent because the CRM field already held one (`update: if_empty`):
    /// accepted as settled, so the field is planned again only when its value changes.
    pub kept: Desired,
    pub outcome: Outcome,
}

/// A trigger firing owed by an accepted stage change.
#[derive(Clone, Debug, PartialEq)]
pub struct Firing {
    pub key: String,
    pub domain: String,
    pub trigger: usize,
    pub action: Value,
    pub from: Option<Stage>,
    pub to: Stage,
    pub event: Value,
}

/// Run totals for the sync log.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunTotals {
    pub planned: i64,
    pub sent: i64,
    pub accepted: i64,
    pub failed: i64,
    pub api_calls: i64,
    /// Every rate-limit wait: `server_waits + pacing_waits` where both are known.
    pub rate_limit_waits: i64,
    /// Waits the API imposed (429, `Retry-After`, secondary limits).
    pub server_waits: i64,
    /// Waits of the connector's own pacing.
    pub pacing_waits: i64,
}

fn json(v: &Desired) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

fn parse_fields(text: String) -> Result<Desired, StoreError> {
    serde_json::from_str(&text).map_err(|_| StoreError::Corrupt { what: "crm_state.fields", value: text })
}

fn parse_stage(s: Option<String>) -> Result<Option<Stage>, StoreError> {
    s.map(|s| Stage::parse(&s).ok_or(StoreError::Corrupt { what: "crm_state.stage", value: s }))
        .transpose()
}

impl Store {
    pub async fn crm_ids(&self, connector: &str) -> Result<HashMap<String, String>, StoreError> {
        let rows = sqlx::query("SELECT domain, crm_id FROM crm_records WHERE connector = ?")
            .bind(connector)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn set_crm_ids(&self, connector: &str, ids: &[(String, String)]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for (domain, id) in ids {
            sqlx::query(
                "INSERT INTO crm_records (connector, domain, crm_id, matched_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (connector, domain) DO UPDATE SET crm_id = excluded.crm_id, matched_at = excluded.matched_at",
            )
            .bind(connector)
            .bind(domain)
            .bind(id)
            .bind(now_nanos())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forgets a cached id the CRM no longer knows (the record was deleted or merged).
    pub async fn forget_crm_id(&self, connector: &str, domain: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM crm_records WHERE connector = ? AND domain = ?")
            .bind(connector)
            .bind(domain)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn crm_states(&self, connector: &str) -> Result<HashMap<String, AcceptedState>, StoreError> {
        let rows = sqlx::query("SELECT domain, fields, stage, changes FROM crm_state WHERE connector = ?")
            .bind(connector)
            .fetch_all(&self.pool)
            .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in rows {
            out.insert(
                r.get::<String, _>(0),
                AcceptedState { fields: parse_fields(r.get(1))?, stage: parse_stage(r.get(2))?, changes: r.get(3) },
            );
        }
        Ok(out)
    }

    pub async fn sync_failures(&self, connector: &str) -> Result<HashMap<String, Failure>, StoreError> {
        let rows = sqlx::query("SELECT domain, attempts, dead, last_error FROM sync_failures WHERE connector = ?")
            .bind(connector)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), Failure { attempts: r.get(1), dead: r.get::<i64, _>(2) != 0, last_error: r.get(3) }))
            .collect())
    }

    /// `sync --retry-dead`: dead records get a fresh set of attempts.
    pub async fn revive_dead(&self, connector: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("UPDATE sync_failures SET dead = 0, attempts = 0 WHERE connector = ? AND dead = 1")
            .bind(connector)
            .execute(&self.pool)
            .await?;
        sqlx::query("UPDATE trigger_firings SET status = 'pending', attempts = 0 WHERE connector = ? AND status = 'dead'")
            .bind(connector)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn start_run(&self, connector: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("INSERT INTO sync_runs (connector, started_at, status) VALUES (?, ?, 'running') RETURNING id")
            .bind(connector)
            .bind(now_nanos())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.get(0))
    }

    /// Records a run that did not happen because another process holds the connector.
    pub async fn record_skipped(&self, connector: &str, why: &str) -> Result<(), StoreError> {
        let now = now_nanos();
        sqlx::query("INSERT INTO sync_runs (connector, started_at, finished_at, status, error) VALUES (?, ?, ?, 'skipped', ?)")
            .bind(connector)
            .bind(now)
            .bind(now)
            .bind(why)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Closes a run: `ok`, `failed` (an error or a failed record), or the given status.
    pub async fn finish_run(&self, run_id: i64, totals: &RunTotals, error: Option<&str>, status: Option<&str>) -> Result<(), StoreError> {
        let status = status.unwrap_or(if error.is_some() || totals.failed > 0 { "failed" } else { "ok" });
        sqlx::query(
            "UPDATE sync_runs SET finished_at = ?, status = ?, planned = ?, sent = ?, accepted = ?, failed = ?, \
             api_calls = ?, rate_limit_waits = ?, server_waits = ?, pacing_waits = ?, error = ? WHERE id = ?",
        )
        .bind(now_nanos())
        .bind(status)
        .bind(totals.planned)
        .bind(totals.sent)
        .bind(totals.accepted)
        .bind(totals.failed)
        .bind(totals.api_calls)
        .bind(totals.rate_limit_waits)
        .bind(totals.server_waits)
        .bind(totals.pacing_waits)
        .bind(error)
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Commits what the CRM confirmed of one batch, with the firings the accepted stage
    /// changes owe, in one transaction. Returns the records that became dead.
    pub async fn commit_batch(
        &self,
        run_id: i64,
        connector: &str,
        results: &[RecordResult],
        firings: &[Firing],
        dead_after: i64,
    ) -> Result<Vec<String>, StoreError> {
        let now = now_nanos();
        let mut tx = self.begin_write().await?;
        let mut dead = Vec::new();
        for r in results {
            let (outcome, error) = match &r.outcome {
                Outcome::Accepted { created, stage } => {
                    accept(&mut tx, connector, r, *stage, now).await?;
                    (if *created { "created" } else { "accepted" }, None)
                }
                Outcome::Failed { error } => {
                    let attempts = fail(&mut tx, connector, &r.domain, error, dead_after, now).await?;
                    if attempts >= dead_after {
                        dead.push(r.domain.clone());
                        ("dead", Some(format!("{error} (after {attempts} attempts)")))
                    } else {
                        ("failed", Some(error.clone()))
                    }
                }
                Outcome::Ambiguous { ids } => ("ambiguous", Some(format!("domain matches CRM records {}", ids.join(", ")))),
                Outcome::NotFound => ("not_found", Some("no CRM record holds this domain and create_missing is off".into())),
            };
            log_record(&mut tx, run_id, connector, r, outcome, error.as_deref(), now).await?;
        }
        for f in firings {
            sqlx::query(
                "INSERT INTO trigger_firings (key, connector, domain, trigger, action, from_stage, to_stage, event, status, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT (key) DO NOTHING",
            )
            .bind(&f.key)
            .bind(connector)
            .bind(&f.domain)
            .bind(f.trigger as i64)
            .bind(f.action.to_string())
            .bind(f.from.map(Stage::as_str))
            .bind(f.to.as_str())
            .bind(f.event.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(dead)
    }

    /// Firings not yet done, oldest first.
    pub async fn pending_firings(&self, connector: &str) -> Result<Vec<Firing>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, domain, trigger, action, from_stage, to_stage, event FROM trigger_firings \
             WHERE connector = ? AND status IN ('pending', 'failed') ORDER BY created_at, key",
        )
        .bind(connector)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let to: String = r.get(5);
            let corrupt = |what, value: String| StoreError::Corrupt { what, value };
            out.push(Firing {
                key: r.get(0),
                domain: r.get(1),
                trigger: r.get::<i64, _>(2) as usize,
                action: serde_json::from_str(&r.get::<String, _>(3)).map_err(|_| corrupt("trigger_firings.action", r.get(3)))?,
                from: parse_stage(r.get(4))?,
                to: Stage::parse(&to).ok_or_else(|| corrupt("trigger_firings.to_stage", to.clone()))?,
                event: serde_json::from_str(&r.get::<String, _>(6)).map_err(|_| corrupt("trigger_firings.event", r.get(6)))?,
            });
        }
        Ok(out)
    }

    /// Records a firing's outcome (and its line in the sync log).
    pub async fn firing_done(
        &self,
        run_id: i64,
        connector: &str,
        firing: &Firing,
        error: Option<&str>,
        dead_after: i64,
    ) -> Result<(), StoreError> {
        let now = now_nanos();
        let mut tx = self.begin_write().await?;
        let (status, attempts) = match error {
            None => ("fired", 0),
            Some(_) => {
                let row = sqlx::query("SELECT attempts FROM trigger_firings WHERE key = ?")
                    .bind(&firing.key)
                    .fetch_one(&mut *tx)
                    .await?;
                let attempts = row.get::<i64, _>(0) + 1;
                (if attempts >= dead_after { "dead" } else { "failed" }, attempts)
            }
        };
        sqlx::query("UPDATE trigger_firings SET status = ?, attempts = ?, last_error = ?, fired_at = ? WHERE key = ?")
            .bind(status)
            .bind(attempts)
            .bind(error)
            .bind(error.is_none().then_some(now))
            .bind(&firing.key)
            .execute(&mut *tx)
            .await?;
        let what = format!(
            "trigger {} ({} → {}): {}{}",
            firing.trigger,
            firing.from.map(Stage::as_str).unwrap_or("none"),
            firing.to.as_str(),
            firing.action,
            if status == "fired" { String::new() } else { format!(" [{status}]") },
        );
        sqlx::query(
            "INSERT INTO sync_records (run_id, connector, domain, outcome, error, after, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(run_id)
        .bind(connector)
        .bind(&firing.domain)
        .bind(if error.is_none() { "trigger" } else if status == "dead" { "dead" } else { "failed" })
        .bind(error)
        .bind(serde_json::json!({ "trigger": what }).to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn accept(
    tx: &mut SqliteConnection,
    connector: &str,
    r: &RecordResult,
    stage: Stage,
    now: i64,
) -> Result<(), StoreError> {
    let row = sqlx::query("SELECT fields, stage, changes FROM crm_state WHERE connector = ? AND domain = ?")
        .bind(connector)
        .bind(&r.domain)
        .fetch_optional(&mut *tx)
        .await?;
    let (mut fields, old_stage, changes) = match row {
        Some(row) => (parse_fields(row.get(0))?, parse_stage(row.get(1))?, row.get::<i64, _>(2)),
        None => (Desired::new(), None, 0),
    };
    fields.extend(r.after.iter().chain(&r.kept).map(|(k, v)| (k.clone(), v.clone())));
    let changes = changes + (old_stage != Some(stage)) as i64;
    sqlx::query(
        "INSERT INTO crm_state (connector, domain, fields, stage, changes, accepted_at) VALUES (?, ?, ?, ?, ?, ?) \
         ON CONFLICT (connector, domain) DO UPDATE SET fields = excluded.fields, stage = excluded.stage, \
         changes = excluded.changes, accepted_at = excluded.accepted_at",
    )
    .bind(connector)
    .bind(&r.domain)
    .bind(json(&fields))
    .bind(stage.as_str())
    .bind(changes)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if let Some(id) = &r.crm_id {
        sqlx::query(
            "INSERT INTO crm_records (connector, domain, crm_id, matched_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (connector, domain) DO UPDATE SET crm_id = excluded.crm_id",
        )
        .bind(connector)
        .bind(&r.domain)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("DELETE FROM sync_failures WHERE connector = ? AND domain = ?")
        .bind(connector)
        .bind(&r.domain)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Counts a failed attempt; returns the attempts so far.
async fn fail(
    tx: &mut SqliteConnection,
    connector: &str,
    domain: &str,
    error: &str,
    dead_after: i64,
    now: i64,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO sync_failures (connector, domain, attempts, dead, last_error, updated_at) VALUES (?, ?, 1, 0, ?, ?) \
         ON CONFLICT (connector, domain) DO UPDATE SET attempts = attempts + 1, last_error = excluded.last_error, \
         updated_at = excluded.updated_at RETURNING attempts",
    )
    .bind(connector)
    .bind(domain)
    .bind(error)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let attempts: i64 = row.get(0);
    if attempts >= dead_after {
        sqlx::query("UPDATE sync_failures SET dead = 1 WHERE connector = ? AND domain = ?")
            .bind(connector)
            .bind(domain)
            .execute(&mut *tx)
            .await?;
    }
    Ok(attempts)
}

async fn log_record(
    tx: &mut SqliteConnection,
    run_id: i64,
    connector: &str,
    r: &RecordResult,
    outcome: &str,
    error: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sync_records (run_id, connector, domain, crm_id, before, after, outcome, error, at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(run_id)
    .bind(connector)
    .bind(&r.domain)
    .bind(&r.crm_id)
    .bind(json(&r.before))
    .bind(json(&r.after))
    .bind(outcome)
    .bind(error)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
