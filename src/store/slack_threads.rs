//! Slack threads followed for new replies (migration 0008): what each thread's parent
//! last announced (`latest_reply`) and how far its replies were read (`read_to`), moved
//! in the transaction that stores the page it covers, so a poll killed anywhere
//! resumes where the store says with no gap.

use sqlx::{Row, SqliteConnection};

use super::activities::{InsertOutcome, NewActivity, SortedActivities};
use super::{Store, StoreError, cursors, now_nanos};

/// One followed thread, as the store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackThread {
    pub thread_ts: String,
    pub latest_reply: String,
    pub read_to: String,
}

/// What a page taught about a thread: the reply its parent announced, and (a page of
/// its replies) the newest reply now stored. Neither ever moves back.
#[derive(Debug, Clone)]
pub struct ThreadMark {
    pub thread_ts: String,
    pub latest_reply: String,
    pub read_to: Option<String>,
}

async fn mark(tx: &mut SqliteConnection, connector: &str, channel: &str, m: &ThreadMark) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO slack_threads (connector, channel, thread_ts, latest_reply, read_to) VALUES (?1, ?2, ?3, ?4, coalesce(?5, ?3)) \
         ON CONFLICT (connector, channel, thread_ts) DO UPDATE SET latest_reply = max(latest_reply, excluded.latest_reply), \
         read_to = max(read_to, excluded.read_to)",
    )
    .bind(connector)
    .bind(channel)
    .bind(&m.thread_ts)
    .bind(&m.latest_reply)
    .bind(&m.read_to)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl Store {
    /// One page of a Slack channel or thread: its activities, what it taught about
    /// threads, and a cursor of the connector (`(key, value)`), in one transaction.
    pub async fn insert_slack_page(
        &self,
        connector: &str,
        channel: &str,
        activities: &[NewActivity],
        threads: &[ThreadMark],
        cursor: Option<(&str, &str)>,
    ) -> Result<InsertOutcome, StoreError> {
        let mut insert = self.begin_insert().await?;
        for m in threads {
            mark(insert.conn(), connector, channel, m).await?;
        }
        if let Some((key, value)) = cursor {
            cursors::set_cursor(insert.conn(), connector, key, value, now_nanos()).await?;
        }
        let outcome = insert.insert(&SortedActivities::new(activities.to_vec()), &[]).await?;
        insert.commit().await?;
        Ok(outcome)
    }

    /// The threads of a channel whose replies are to be asked for: those whose parent
    /// announced a reply not yet read, and those still active since `window_start`
    /// whose parent (at or before `seen_after`) this poll's history did not show.
    pub async fn slack_threads_due(
        &self,
        connector: &str,
        channel: &str,
        window_start: &str,
        seen_after: &str,
    ) -> Result<Vec<SlackThread>, StoreError> {
        let rows = sqlx::query(
            "SELECT thread_ts, latest_reply, read_to FROM slack_threads WHERE connector = ? AND channel = ? \
             AND (latest_reply > read_to OR (max(latest_reply, read_to) >= ? AND thread_ts <= ?)) ORDER BY thread_ts",
        )
        .bind(connector)
        .bind(channel)
        .bind(window_start)
        .bind(seen_after)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| SlackThread { thread_ts: r.get(0), latest_reply: r.get(1), read_to: r.get(2) }).collect())
    }

    /// Stops following threads read to the end and quiet since before `window_start`,
    /// and a thread Slack no longer has (`thread_ts` given).
    pub async fn forget_slack_threads(&self, connector: &str, channel: &str, window_start: &str, thread_ts: Option<&str>) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM slack_threads WHERE connector = ? AND channel = ? \
             AND (thread_ts = ? OR (latest_reply <= read_to AND read_to < ?))",
        )
        .bind(connector)
        .bind(channel)
        .bind(thread_ts)
        .bind(window_start)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
