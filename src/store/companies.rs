//! The `companies` table (one row per normalized domain) and the persisted `scores`.

use chrono::NaiveDate;
use futures_util::TryStreamExt;
use sqlx::{Row, SqliteConnection};

use super::raw::{Handle, Param, Statement};
use super::{Store, StoreError, set_meta};
use crate::scoring::{CompanyScore, Stage};

/// Creates the companies not yet known and fills in names that were missing; with
/// `changed_at`, also marks every one of them as changed at that data version. Returns
/// their ids, in the order given. One prepared statement stepped per company: an import
/// batch touches tens of thousands.
pub(super) async fn upsert_companies<'a>(
    conn: &mut SqliteConnection,
    companies: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    now: i64,
    changed_at: Option<i64>,
) -> Result<Vec<i64>, StoreError> {
    let mut locked = conn.lock_handle().await?;
    let mut handle = Handle::of(&mut locked);
    let mut upsert = Statement::prepare(&mut handle, UPSERT_COMPANY)?;
    let mut ids = Vec::new();
    for (domain, name) in companies {
        upsert.query(&[Param::Text(Some(domain)), Param::Text(name), Param::Int(now), Param::MaybeInt(changed_at)], |row| {
            ids.push(row.int(0));
            Ok(())
        })?;
    }
    Ok(ids)
}

const UPSERT_COMPANY: &str = "INSERT INTO companies (domain, name, created_at, changed_version) VALUES (?1, ?2, ?3, coalesce(?4, 0)) \
     ON CONFLICT (domain) DO UPDATE SET name = coalesce(excluded.name, companies.name), \
     changed_version = coalesce(?4, companies.changed_version) RETURNING id";

/// Scores as `score` persisted them.
#[derive(Debug, Clone)]
pub struct StoredScores {
    pub as_of: NaiveDate,
    /// The inputs fingerprint they were computed from (data version and model).
    pub inputs: String,
    pub scores: Vec<CompanyScore>,
}

fn parse_stage(s: &str) -> Result<Stage, StoreError> {
    Stage::parse(s).ok_or_else(|| StoreError::Corrupt {
        what: "scores.stage",
        value: s.to_owned(),
    })
}

fn parse_date(s: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| StoreError::Corrupt {
        what: "scores date",
        value: s.to_owned(),
    })
}

impl Store {
    /// Replaces the persisted scores with those of one as-of date, in one transaction.
    pub async fn replace_scores(
        &self,
        as_of: NaiveDate,
        inputs: &str,
        scores: &[CompanyScore],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM scores").execute(&mut *tx).await?;
        write_scores(&mut tx, as_of, inputs, scores).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The persisted scores, if `score` ever ran.
    pub async fn stored_scores(&self) -> Result<Option<StoredScores>, StoreError> {
        let (Some(as_of), Some(inputs)) = (self.meta("scores_as_of").await?, self.meta("scores_inputs").await?) else {
            return Ok(None);
        };
        // Streamed: at 200k companies the rows as sqlx holds them weigh several times
        // the scores made of them.
        let mut rows = sqlx::query(
            "SELECT domain, stage, peak_stage, stage_since, score_micro, first_seen, last_seen, downloads_30d, \
             views_30d, community_30d, telemetry_30d, actors_90d, versions_90d, upgrading, churn_risk, \
             events_30d, actors_30d, events_mom, events_wow FROM scores",
        )
        .fetch(&self.pool);
        let count = |r: &sqlx::sqlite::SqliteRow, i: usize| r.get::<i64, _>(i) as u32;
        let mut scores = Vec::new();
        while let Some(r) = rows.try_next().await? {
            let r = &r;
            scores.push(CompanyScore {
                domain: r.get(0),
                stage: parse_stage(r.get(1))?,
                peak_stage: parse_stage(r.get(2))?,
                stage_since: parse_date(r.get(3))?,
                score: r.get(4),
                first_seen: parse_date(r.get(5))?,
                last_seen: parse_date(r.get(6))?,
                downloads_30d: count(r, 7),
                views_30d: count(r, 8),
                community_30d: count(r, 9),
                telemetry_30d: count(r, 10),
                actors_90d: count(r, 11),
                versions_90d: count(r, 12),
                upgrading: r.get(13),
                churn_risk: r.get(14),
                events_30d: count(r, 15),
                actors_30d: count(r, 16),
                events_mom: r.get(17),
                events_wow: r.get(18),
                scarf_stage: None,
                scarf_stage_since: None,
                insight: None,
            });
        }
        Ok(Some(StoredScores {
            as_of: parse_date(&as_of)?,
            inputs,
            scores,
        }))
    }
}

const INSERT_SCORE: &str = "INSERT INTO scores (domain, as_of, stage, peak_stage, stage_since, score_micro, first_seen, \
     last_seen, downloads_30d, views_30d, community_30d, telemetry_30d, actors_90d, versions_90d, \
     upgrading, churn_risk, events_30d, actors_30d, events_mom, events_wow) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)";

/// Inserts score rows (their old rows already deleted) and records the as-of date and
/// inputs fingerprint they were computed at.
async fn write_scores(tx: &mut SqliteConnection, as_of: NaiveDate, inputs: &str, scores: &[CompanyScore]) -> Result<(), StoreError> {
    let as_of_text = as_of.to_string();
    let as_of_text = as_of_text.as_str();
    {
        let mut locked = tx.lock_handle().await?;
        let mut handle = Handle::of(&mut locked);
        let mut insert = Statement::prepare(&mut handle, INSERT_SCORE)?;
        // In key order the table's pages fill one after another instead of at random.
        let mut by_domain: Vec<&CompanyScore> = scores.iter().collect();
        by_domain.sort_unstable_by(|a, b| a.domain.cmp(&b.domain));
        for s in by_domain {
            let dates = [s.stage_since, s.first_seen, s.last_seen].map(|d| d.to_string());
            let count = |n: u32| Param::Int(n as i64);
            insert.execute(&[
                Param::Text(Some(s.domain.as_str())),
                Param::Text(Some(as_of_text)),
                Param::Text(Some(s.stage.as_str())),
                Param::Text(Some(s.peak_stage.as_str())),
                Param::Text(Some(&dates[0])),
                Param::Int(s.score),
                Param::Text(Some(&dates[1])),
                Param::Text(Some(&dates[2])),
                count(s.downloads_30d),
                count(s.views_30d),
                count(s.community_30d),
                count(s.telemetry_30d),
                count(s.actors_90d),
                count(s.versions_90d),
                Param::Int(s.upgrading as i64),
                Param::Int(s.churn_risk as i64),
                count(s.events_30d),
                count(s.actors_30d),
                Param::MaybeInt(s.events_mom),
                Param::MaybeInt(s.events_wow),
            ])?;
        }
    }
    set_meta(&mut *tx, "scores_as_of", as_of_text).await?;
    set_meta(&mut *tx, "scores_inputs", inputs).await?;
    Ok(())
}

impl Store {
    /// The as-of date and inputs fingerprint of the persisted scores, without reading them.
    pub async fn scores_meta(&self) -> Result<Option<(String, String)>, StoreError> {
        Ok(match (self.meta("scores_as_of").await?, self.meta("scores_inputs").await?) {
            (Some(a), Some(i)) => Some((a, i)),
            _ => None,
        })
    }

    /// Companies whose activities changed after data version `version`.
    pub async fn companies_changed_since(&self, version: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT domain FROM companies WHERE changed_version > ? ORDER BY domain").bind(version).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    /// Replaces the persisted scores of some companies (and drops those with none),
    /// leaving the others, in one transaction.
    pub async fn update_scores(&self, as_of: NaiveDate, inputs: &str, scores: &[CompanyScore], removed: &[String]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for d in scores.iter().map(|s| &s.domain).chain(removed) {
            sqlx::query("DELETE FROM scores WHERE domain = ?").bind(d).execute(&mut *tx).await?;
        }
        write_scores(&mut tx, as_of, inputs, scores).await?;
        tx.commit().await?;
        Ok(())
    }
}
