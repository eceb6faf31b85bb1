//! Source positions (cursors), GitHub profiles and imported export files: what lets a
//! poll resume exactly where the last one stopped.

use sqlx::{Row, SqliteConnection};

use super::{Store, StoreError, bump_data_version, now_nanos};

pub(super) async fn set_cursor(
    tx: &mut SqliteConnection,
    connector: &str,
    key: &str,
    value: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO source_cursors (connector, key, value, updated_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (connector, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(connector)
    .bind(key)
    .bind(value)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// How far a watched folder imported one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportFileState {
    /// The bytes imported: up to the end of the last complete line or row, or the whole
    /// file when it is not `resumable`.
    pub imported_bytes: u64,
    /// SHA-256 (hex) of those bytes: when they changed, the file is read again whole.
    pub sha256: String,
    /// Lines in those bytes, for the line numbers of what follows.
    pub lines: u64,
    /// Whether a grown file is read from `imported_bytes` on (else whole again).
    pub resumable: bool,
    /// The file's size and modification time (nanoseconds) when it was last read to
    /// its end: a file showing both still is not read again.
    pub seen: Option<(u64, i64)>,
}

/// What a GitHub profile says about its owner's company.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GithubProfile {
    pub login: String,
    pub etag: Option<String>,
    pub email_domain: Option<String>,
    pub blog_domain: Option<String>,
    pub company: Option<String>,
}

impl Store {
    pub async fn cursor(&self, connector: &str, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM source_cursors WHERE connector = ? AND key = ?")
            .bind(connector)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Moves a cursor with no activity to go with it (e.g. a page that held none).
    pub async fn set_cursor(&self, connector: &str, key: &str, value: &str) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        set_cursor(&mut conn, connector, key, value, now_nanos()).await?;
        Ok(())
    }

    pub async fn github_profile(&self, login: &str) -> Result<Option<(GithubProfile, i64)>, StoreError> {
        let row = sqlx::query("SELECT login, etag, email_domain, blog_domain, company, fetched_at FROM github_profiles WHERE login = ?")
            .bind(login)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| {
            (
                GithubProfile { login: r.get(0), etag: r.get(1), email_domain: r.get(2), blog_domain: r.get(3), company: r.get(4) },
                r.get(5),
            )
        }))
    }

    pub async fn save_github_profile(&self, p: &GithubProfile) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO github_profiles (login, etag, email_domain, blog_domain, company, fetched_at) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (login) DO UPDATE SET etag = excluded.etag, email_domain = excluded.email_domain, \
             blog_domain = excluded.blog_domain, company = excluded.company, fetched_at = excluded.fetched_at",
        )
        .bind(&p.login)
        .bind(&p.etag)
        .bind(&p.email_domain)
        .bind(&p.blog_domain)
        .bind(&p.company)
        .bind(now_nanos())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn github_logins(&self) -> Result<std::collections::BTreeSet<String>, StoreError> {
        let rows = sqlx::query("SELECT login FROM github_profiles").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    /// Profiles last checked before `before` (nanoseconds): due for revalidation.
    pub async fn github_logins_checked_before(&self, before: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT login FROM github_profiles WHERE fetched_at < ?").bind(before).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    /// Marks a cached profile as checked now (a 304 said it did not change).
    pub async fn touch_github_profile(&self, login: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE github_profiles SET fetched_at = ? WHERE login = ?")
            .bind(now_nanos())
            .bind(login)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Attribution rule 4: GitHub activities no earlier rule placed take the company of
    /// their actor's profile, given as `(login, domain)` pairs; activities a profile no
    /// longer places are released. Returns how many activities moved.
    pub async fn apply_profile_attribution(&self, placements: &[(String, Option<String>)]) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut moved = 0;
        let mut companies = std::collections::BTreeMap::new();
        let mut left: Vec<String> = Vec::new();
        for (login, domain) in placements {
            let before = sqlx::query(
                "SELECT DISTINCT company_domain FROM activities WHERE source = 'github' AND actor = ? AND company_domain IS NOT NULL \
                 AND (attributed_by IS NULL OR attributed_by = 'github_profile')",
            )
            .bind(login)
            .fetch_all(&mut *tx)
            .await?;
            left.extend(before.into_iter().map(|r| r.get::<String, _>(0)).filter(|d| Some(d) != domain.as_ref()));
            // The company is created (for its id) only when activities move to it.
            let movable: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM activities WHERE source = 'github' AND actor = ? AND source_domain IS NULL \
                 AND (attributed_by IS NULL OR attributed_by = 'github_profile') AND company_domain IS NOT ?",
            )
            .bind(login)
            .bind(domain)
            .fetch_one(&mut *tx)
            .await?;
            if movable == 0 {
                continue;
            }
            let company_id = match domain {
                Some(d) => super::companies::upsert_companies(&mut tx, [(d.as_str(), None)], now_nanos(), None).await?.first().copied(),
                None => None,
            };
            let done = sqlx::query(
                "UPDATE activities SET company_domain = ?, company_id = ?, \
                 attributed_by = CASE WHEN ? IS NULL THEN NULL ELSE 'github_profile' END \
                 WHERE source = 'github' AND actor = ? AND source_domain IS NULL \
                 AND (attributed_by IS NULL OR attributed_by = 'github_profile') AND company_domain IS NOT ?",
            )
            .bind(domain)
            .bind(company_id)
            .bind(domain)
            .bind(login)
            .bind(domain)
            .execute(&mut *tx)
            .await?;
            moved += done.rows_affected();
            if let Some(d) = domain {
                companies.insert(d.as_str(), None::<&str>);
            }
        }
        if moved > 0 {
            bump_data_version(&mut *tx).await?;
            let touched: Vec<&str> = companies.keys().copied().chain(left.iter().map(String::as_str)).collect();
            super::mark_changed(&mut tx, &touched).await?;
        }
        tx.commit().await?;
        Ok(moved)
    }

    /// Known company names (lower case) → domain, for matching a profile's `company`.
    pub async fn company_names(&self) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let rows = sqlx::query("SELECT lower(name), domain FROM companies WHERE name IS NOT NULL").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// What a watched folder knows of a file it imported before.
    pub async fn export_file(&self, connector: &str, path: &str) -> Result<Option<ExportFileState>, StoreError> {
        let row = sqlx::query("SELECT size, sha256, lines, resumable, seen_size, seen_mtime FROM export_files WHERE connector = ? AND path = ?")
            .bind(connector)
            .bind(path)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| ExportFileState {
            imported_bytes: r.get::<i64, _>(0) as u64,
            sha256: r.get(1),
            lines: r.get::<i64, _>(2) as u64,
            resumable: r.get(3),
            seen: r.get::<Option<i64>, _>(4).zip(r.get::<Option<i64>, _>(5)).map(|(size, mtime)| (size as u64, mtime)),
        }))
    }

    /// Records how far a file was imported, once its activities are committed.
    pub async fn save_export_file(&self, connector: &str, path: &str, state: &ExportFileState) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO export_files (connector, path, size, sha256, imported_at, lines, resumable, seen_size, seen_mtime) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (connector, path) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256, \
             imported_at = excluded.imported_at, lines = excluded.lines, resumable = excluded.resumable, \
             seen_size = excluded.seen_size, seen_mtime = excluded.seen_mtime",
        )
        .bind(connector)
        .bind(path)
        .bind(state.imported_bytes as i64)
        .bind(&state.sha256)
        .bind(now_nanos())
        .bind(state.lines as i64)
        .bind(state.resumable)
        .bind(state.seen.map(|(size, _)| size as i64))
        .bind(state.seen.map(|(_, mtime)| mtime))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
