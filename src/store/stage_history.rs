//! `stage_history` and `stage_moves`: companies by stage on each day, and the last
//! week's stage changes, as full rescores saw them (migrations/0021).

use chrono::NaiveDate;
use sqlx::Row;

use super::{Store, StoreError, set_meta};
use crate::scoring::{History, Stage, date_of_day};

/// One stage change of the last week.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageMove {
    pub day: NaiveDate,
    pub domain: String,
    pub from: Option<Stage>,
    pub to: Stage,
}

fn stage(s: String) -> Result<Stage, StoreError> {
    Stage::parse(&s).ok_or(StoreError::Corrupt { what: "stage_history.stage", value: s })
}

impl Store {
    /// Records a full rescore's history at `as_of`: that day's counts replace the
    /// recorded ones; earlier days are filled only where none were recorded.
    pub async fn record_history(&self, as_of: NaiveDate, history: &History) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let today = as_of.to_string();
        for (i, row) in history.counts.iter().enumerate() {
            let day = date_of_day(history.first_day + i as i32).to_string();
            let sql = if day == today {
                "INSERT OR REPLACE INTO stage_history (day, stage, companies) VALUES (?, ?, ?)"
            } else {
                "INSERT OR IGNORE INTO stage_history (day, stage, companies) VALUES (?, ?, ?)"
            };
            for (stage, n) in Stage::ALL.iter().zip(row) {
                sqlx::query(sql)
                    .bind(&day)
                    .bind(stage.as_str())
                    .bind(*n as i64)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query("DELETE FROM stage_moves").execute(&mut *tx).await?;
        for m in &history.moves {
            sqlx::query("INSERT OR REPLACE INTO stage_moves (day, domain, from_stage, to_stage) VALUES (?, ?, ?, ?)")
                .bind(date_of_day(m.day).to_string())
                .bind(&m.domain)
                .bind(m.from.map(Stage::as_str))
                .bind(m.to.as_str())
                .execute(&mut *tx)
                .await?;
        }
        set_meta(&mut *tx, "stage_moves_as_of", &today).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Companies by stage (in `Stage::ALL` order) on each recorded day of `from..=to`.
    pub async fn stage_history(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<(NaiveDate, [u64; 5])>, StoreError> {
        let rows = sqlx::query("SELECT day, stage, companies FROM stage_history WHERE day >= ? AND day <= ? ORDER BY day")
            .bind(from.to_string())
            .bind(to.to_string())
            .fetch_all(&self.pool)
            .await?;
        let mut out: Vec<(NaiveDate, [u64; 5])> = Vec::new();
        for r in rows {
            let day: String = r.get(0);
            let day = NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|_| StoreError::Corrupt { what: "stage_history.day", value: day.clone() })?;
            let s = stage(r.get(1))?;
            if out.last().is_none_or(|(d, _)| *d != day) {
                out.push((day, [0; 5]));
            }
            if let Some((_, counts)) = out.last_mut() {
                counts[s as usize] = r.get::<i64, _>(2) as u64;
            }
        }
        Ok(out)
    }

    /// The stage moves recorded by the last full rescore, newest first, and its as-of date.
    pub async fn stage_moves(&self) -> Result<(Option<String>, Vec<StageMove>), StoreError> {
        let rows = sqlx::query("SELECT day, domain, from_stage, to_stage FROM stage_moves ORDER BY day DESC, domain")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let day: String = r.get(0);
            out.push(StageMove {
                day: NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|_| StoreError::Corrupt { what: "stage_moves.day", value: day.clone() })?,
                domain: r.get(1),
                from: r.get::<Option<String>, _>(2).map(stage).transpose()?,
                to: stage(r.get(3))?,
            });
        }
        Ok((self.meta("stage_moves_as_of").await?, out))
    }
}
