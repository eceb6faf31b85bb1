//! The `quarantine` table: invalid export lines with file, line, reason and raw text.
//! Keyed by (file, line, hash of the text) so re-importing a file adds nothing.

use sha2::{Digest, Sha256};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::{Store, StoreError};

/// Raw text kept per line: enough to see what was wrong, bounded for huge lines.
const MAX_RAW_CHARS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedLine {
    pub file: String,
    pub line: u64,
    pub reason: String,
    pub raw: String,
}

pub(super) async fn insert_quarantined(
    conn: &mut SqliteConnection,
    lines: &[QuarantinedLine],
    now: i64,
) -> Result<u64, sqlx::Error> {
    let mut inserted = 0;
    for chunk in lines.chunks(500) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO quarantine (file, line, raw_hash, reason, raw, quarantined_at) ");
        qb.push_values(chunk, |mut row, q| {
            let hash: String = Sha256::digest(q.raw.as_bytes())[..16].iter().map(|b| format!("{b:02x}")).collect();
            let raw: String = q.raw.chars().take(MAX_RAW_CHARS).collect();
            row.push_bind(q.file.as_str())
                .push_bind(q.line as i64)
                .push_bind(hash)
                .push_bind(q.reason.as_str())
                .push_bind(raw)
                .push_bind(now);
        });
        qb.push(" ON CONFLICT DO NOTHING");
        inserted += qb.build().execute(&mut *conn).await?.rows_affected();
    }
    Ok(inserted)
}

impl Store {
    /// Files lines under another name: a bucket's object is read from a scratch copy,
    /// and its lines are the object's. A line already filed under `to` stays once.
    pub async fn rename_quarantined(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE OR IGNORE quarantine SET file = ? WHERE file = ?").bind(to).bind(from).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM quarantine WHERE file = ?").bind(from).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Quarantined lines, oldest file first, at most `limit`.
    pub async fn quarantined(&self, limit: i64) -> Result<Vec<QuarantinedLine>, StoreError> {
        let rows = sqlx::query("SELECT file, line, reason, raw FROM quarantine ORDER BY file, line LIMIT ?")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| QuarantinedLine {
                file: r.get(0),
                line: r.get::<i64, _>(1) as u64,
                reason: r.get(2),
                raw: r.get(3),
            })
            .collect())
    }
}
