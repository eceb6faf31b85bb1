//! The `activities` table: idempotent batch inserts keyed by `(source, id)`,
//! re-attribution when the rules change, and the ordered read scoring needs.

use std::collections::BTreeMap;

use sqlx::Row;

use super::quarantine::{QuarantinedLine, insert_quarantined};
use super::raw::{Handle, Param, Row as RawRow, Statement};
use super::{Store, StoreError, bump_data_version, now_nanos, set_meta};
use crate::activity::{Action, Activity, Kind, Tier};
use crate::attribution::{AttributionRules, Rule};
use crate::scoring::{ActivityRef, ScoringActivity};

type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// An activity with the company attribution placed it at (if any).
#[derive(Debug, Clone)]
pub struct NewActivity {
    pub activity: Activity,
    pub company: Option<(String, Rule)>,
}

/// Activities in all, set aside by an ignore, and placed by no rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributionCounts {
    pub total: i64,
    pub ignored: i64,
    pub unattributed: i64,
}

/// What one batch did to the store.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InsertOutcome {
    pub inserted: u64,
    pub duplicate: u64,
    /// Inserted activities no rule could attribute.
    pub unattributed: u64,
    pub quarantined: u64,
}

/// One prepared insert, stepped once per activity inside the batch's transaction.
const INSERT_ACTIVITY: &str = "INSERT INTO activities (source, id, kind, action, occurred_at, tier, source_domain, \
     company_domain, company_id, attributed_by, company_name, actor, email_domain, package, version, url, properties, imported_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) ON CONFLICT (source, id) DO NOTHING";

/// What scoring reads of every attributed activity, one rowid range of the table at a
/// time: read front to back in storage order, which is far cheaper than walking the
/// company index and looking every row up; the full rescore needs the rows in no
/// order. (`+` keeps the planner off the partial company index.)
const SCAN_RANGE: &str = "SELECT company_id, occurred_at, kind, action, tier, actor, package, version, url \
     FROM activities WHERE seq BETWEEN ?2 AND ?3 AND +company_id IS NOT NULL AND occurred_at < ?1";

/// The same for the companies changed after a data version, through the company index.
const SCAN_CHANGED: &str = "SELECT company_id, occurred_at, kind, action, tier, actor, package, version, url \
     FROM activities WHERE company_id IN (SELECT id FROM companies WHERE changed_version > ?2) AND occurred_at < ?1";

/// The company index, as migration 0006 defines it: dropped for a bulk load and built
/// again after it, and built at open if a bulk load was killed before it could.
pub(super) const COMPANY_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS activities_by_company ON activities (company_id) WHERE company_id IS NOT NULL";

/// Imports expected to add at least this many activities, and at least half as many as
/// the store holds, load without the company index.
const BULK_LOAD_MIN: u64 = 250_000;

/// Activities with the order the store inserts them in, each with its company's place
/// in a list of the batch's companies. Built where the activities are parsed, so that
/// the sorting and the company lookups run beside the inserts (on the parsing core)
/// instead of before them. The order is a permutation: the activities themselves,
/// a few hundred bytes each, are never moved.
#[derive(Debug, Default)]
pub struct SortedActivities {
    activities: Vec<NewActivity>,
    /// Indexes into `activities` in (source, id) order.
    order: Vec<u32>,
    /// Per activity: its company's index in `companies`, `u32::MAX` for none.
    company_of: Vec<u32>,
    /// The batch's companies by domain, each with the first name an activity gave it.
    companies: Vec<(String, Option<String>)>,
}

impl SortedActivities {
    pub fn new(activities: Vec<NewActivity>) -> SortedActivities {
        let mut places: FastMap<&str, u32> = FastMap::default();
        let mut found: Vec<(&str, Option<&str>)> = Vec::new();
        let mut company_of: Vec<u32> = Vec::with_capacity(activities.len());
        for new in &activities {
            let Some((domain, _)) = new.company.as_ref().filter(|(_, r)| *r != Rule::Ignored) else {
                company_of.push(u32::MAX);
                continue;
            };
            let at = *places.entry(domain.as_str()).or_insert_with(|| {
                found.push((domain.as_str(), None));
                found.len() as u32 - 1
            });
            let name = &mut found[at as usize].1;
            if name.is_none() {
                *name = new.activity.company_name.as_deref();
            }
            company_of.push(at);
        }
        drop(places);
        // Companies by domain: their index pages are then visited in order.
        let mut by_domain: Vec<u32> = (0..found.len() as u32).collect();
        by_domain.sort_unstable_by_key(|&i| found[i as usize].0);
        let mut renumber = vec![0u32; found.len()];
        for (new, &old) in by_domain.iter().enumerate() {
            renumber[old as usize] = new as u32;
        }
        let companies = by_domain.iter().map(|&i| (found[i as usize].0.to_owned(), found[i as usize].1.map(str::to_owned))).collect();
        drop(found);
        for c in company_of.iter_mut().filter(|c| **c != u32::MAX) {
            *c = renumber[*c as usize];
        }
        // In (source, id) order the key index's pages are written one after another
        // instead of at random; a stable sort keeps "first import wins" within the batch.
        let mut order: Vec<u32> = (0..activities.len() as u32).collect();
        let key = |i: &u32| {
            let a = &activities[*i as usize].activity;
            (a.source.as_str(), a.id.as_str())
        };
        order.sort_by(|x, y| key(x).cmp(&key(y)));
        SortedActivities { activities, order, company_of, companies }
    }

    pub fn len(&self) -> usize {
        self.activities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.activities.is_empty()
    }
}

impl Store {
    /// Inserts activities and quarantined lines in one transaction. Activities whose
    /// `(source, id)` is already stored are left as they are (first import wins).
    pub async fn insert_batch(
        &self,
        activities: &[NewActivity],
        quarantined: &[QuarantinedLine],
    ) -> Result<InsertOutcome, StoreError> {
        self.insert_with_cursor(activities, quarantined, None).await
    }

    /// Inserts activities and, in the same transaction, moves a source's cursor
    /// `(connector, key, value)`: a crash leaves both or neither.
    pub async fn insert_with_cursor(
        &self,
        activities: &[NewActivity],
        quarantined: &[QuarantinedLine],
        cursor: Option<(&str, &str, &str)>,
    ) -> Result<InsertOutcome, StoreError> {
        let mut insert = self.begin_insert().await?;
        if let Some((connector, key, value)) = cursor {
            super::cursors::set_cursor(&mut insert.tx, connector, key, value, now_nanos()).await?;
        }
        let outcome = insert.insert(&SortedActivities::new(activities.to_vec()), quarantined).await?;
        insert.commit().await?;
        Ok(outcome)
    }

    /// Starts a transaction that several batches insert into before one commit: an
    /// import's. Each company is written once a transaction, not once a batch (a
    /// batch of 100k activities names most of the companies of a store), and the
    /// data version moves once.
    pub async fn begin_insert(&self) -> Result<Insert, StoreError> {
        let mut tx = self.begin_write().await?;
        let next = next_version(&mut tx).await?;
        Ok(Insert { tx, next, activities: 0, inserted: 0, known: FastMap::default() })
    }
}

/// The data version a transaction that inserts anything commits, read under the
/// write lock (which the first write takes) so that it cannot change before then.
///
/// The companies are created (for their ids) before the activities, so they are
/// marked changed at this version before it is known whether any activity is new. A
/// transaction of nothing but duplicates leaves its companies marked at a version not
/// yet reached, which costs the next incremental rescore those companies and changes
/// no result.
async fn next_version(tx: &mut sqlx::SqliteConnection) -> Result<i64, StoreError> {
    super::claim_write(tx).await?;
    Ok(super::data_version_in(tx).await? + 1)
}

/// Companies a transaction wrote already: id, and whether it gave them a name.
type Known = FastMap<Box<str>, (i64, bool)>;

/// Batches inserted in one transaction (`Store::begin_insert`); nothing is stored
/// until `commit`, and dropping it rolls all of them back.
pub struct Insert {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    next: i64,
    activities: u64,
    inserted: u64,
    known: Known,
}

impl Insert {
    pub async fn insert(&mut self, batch: &SortedActivities, quarantined: &[QuarantinedLine]) -> Result<InsertOutcome, StoreError> {
        self.activities += batch.len() as u64;
        let outcome = insert_in(&mut self.tx, batch, quarantined, self.next, &mut self.known).await?;
        self.inserted += outcome.inserted;
        Ok(outcome)
    }

    /// The transaction, for rows of other tables that must commit with the batches
    /// (a source's position and bookkeeping).
    pub(super) fn conn(&mut self) -> &mut sqlx::SqliteConnection {
        &mut self.tx
    }

    /// Activities handed to `insert` so far (inserted or not).
    pub fn activities(&self) -> u64 {
        self.activities
    }

    pub async fn commit(mut self) -> Result<(), StoreError> {
        if self.inserted > 0 {
            bump_data_version(&mut *self.tx).await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}

async fn insert_in(
    tx: &mut sqlx::SqliteConnection,
    batch: &SortedActivities,
    quarantined: &[QuarantinedLine],
    next: i64,
    known: &mut Known,
) -> Result<InsertOutcome, StoreError> {
    let now = now_nanos();
    // Companies this transaction has not written yet (or now gives a name).
    let mut ids: Vec<Option<i64>> = batch.companies.iter().map(|(d, n)| known.get(d.as_str()).filter(|(_, named)| *named || n.is_none()).map(|(id, _)| *id)).collect();
    let missing: Vec<usize> = (0..ids.len()).filter(|&i| ids[i].is_none()).collect();
    let companies = missing.iter().map(|&i| (batch.companies[i].0.as_str(), batch.companies[i].1.as_deref()));
    let written = super::companies::upsert_companies(tx, companies, now, Some(next)).await?;
    for (&i, id) in missing.iter().zip(written) {
        ids[i] = Some(id);
        let (domain, name) = &batch.companies[i];
        known.insert(domain.as_str().into(), (id, name.is_some()));
    }
    let mut outcome = InsertOutcome::default();
    {
        let mut locked = tx.lock_handle().await?;
        let mut handle = Handle::of(&mut locked);
        let mut insert = Statement::prepare(&mut handle, INSERT_ACTIVITY)?;
        for &i in &batch.order {
            let (new, at) = (&batch.activities[i as usize], batch.company_of[i as usize]);
            let a = &new.activity;
            let (company, rule) = stored_placement(new.company.as_ref());
            let n = insert.execute(&[
                Param::Text(Some(a.source.as_str())),
                Param::Text(Some(a.id.as_str())),
                Param::Text(Some(a.kind.as_str())),
                Param::Text(a.action.map(Action::as_str)),
                Param::Int(a.occurred_at),
                Param::Text(a.tier.map(Tier::as_str)),
                Param::Text(a.company_domain.as_deref()),
                Param::Text(company),
                Param::MaybeInt(ids.get(at as usize).copied().flatten()),
                Param::Text(rule),
                Param::Text(a.company_name.as_deref()),
                Param::Text(a.actor.as_deref()),
                Param::Text(a.email_domain.as_deref()),
                Param::Text(a.package.as_deref()),
                Param::Text(a.version.as_deref()),
                Param::Text(a.url.as_deref()),
                Param::Text(a.properties.as_deref()),
                Param::Int(now),
            ])?;
            outcome.inserted += n;
            if rule.is_none() {
                outcome.unattributed += n;
            }
        }
    }
    outcome.duplicate = batch.activities.len() as u64 - outcome.inserted;
    outcome.quarantined = insert_quarantined(tx, quarantined, now).await?;
    Ok(outcome)
}

impl Store {

    /// Starts a bulk load of about `expected` activities: when it is large against the
    /// store, the company index is dropped, because keeping it up to date costs a random
    /// page write per activity (the index is not in arrival order), while building it
    /// afresh is one sort. Returns whether it was dropped; `end_bulk_load` builds it.
    /// Queries stay correct meanwhile, only slower.
    pub async fn begin_bulk_load(&self, expected: u64) -> Result<bool, StoreError> {
        if expected < BULK_LOAD_MIN {
            return Ok(false);
        }
        let (existing, _) = self.activity_counts().await?;
        if (expected as i64) < existing / 2 {
            return Ok(false);
        }
        sqlx::query("DROP INDEX IF EXISTS activities_by_company").execute(&self.pool).await?;
        Ok(true)
    }

    /// Copies what the WAL holds into the database file without waiting for anyone
    /// (`PASSIVE`), on a connection of its own: during a bulk load this runs beside the
    /// inserts, on the other core, instead of inside every few commits.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&self.pool).await?;
        Ok(())
    }

    /// Builds the company index again (a sort on both cores) after a bulk load. The
    /// sort spills to temporary files, not memory, and each sorter thread's buffer is
    /// sized from `cache_size`, so the cache is small while it runs: otherwise the sort
    /// would hold the index in RAM, once per thread.
    pub async fn end_bulk_load(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let steps = ["PRAGMA temp_store = FILE", "PRAGMA cache_size = -32768", "PRAGMA threads = 2", COMPANY_INDEX, "PRAGMA threads = 0", super::RESTORE_CACHE_SIZE, "PRAGMA temp_store = MEMORY"];
        for sql in steps {
            sqlx::query(sql).execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Re-runs attribution rules 1 to 3, aliases and ignores over every activity when
    /// the rules changed since the last run (rule 4, GitHub profiles, is the caller's). Returns how many
    /// activities moved (to a company, to another one, or back to none).
    pub async fn sync_attribution(&self, rules: &AttributionRules) -> Result<u64, StoreError> {
        let fingerprint = rules.fingerprint();
        if self.meta("attribution_rules").await?.as_deref() == Some(fingerprint.as_str()) {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "SELECT source, id, actor, email_domain, company_domain, source_domain, occurred_at, attributed_by FROM activities",
        )
        .fetch_all(&mut *tx)
        .await?;
        // Where each activity goes, first: the companies it moves to are created (for
        // their ids) before any activity points at them.
        let mut moves: Vec<(usize, Option<(String, Rule)>)> = Vec::new();
        let mut left: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        for (i, row) in rows.iter().enumerate() {
            let actor: Option<String> = row.get(2);
            let email: Option<String> = row.get(3);
            let current: Option<String> = row.get(4);
            let source_domain: Option<String> = row.get(5);
            let by: Option<String> = row.get(7);
            let placed = rules.attribute(source_domain.as_deref(), actor.as_deref(), email.as_deref(), row.get(6));
            let (domain, rule) = stored_placement(placed.as_ref());
            if domain == current.as_deref() && rule == by.as_deref() {
                continue;
            }

            if let Some(old) = current {
                left.insert(old);
            }
            moves.push((i, placed));
        }
        let companies: BTreeMap<&str, Option<&str>> = moves.iter().filter_map(|(_, p)| stored_placement(p.as_ref()).0).map(|d| (d, None)).collect();
        let ids = super::companies::upsert_companies(&mut tx, companies.iter().map(|(d, n)| (*d, *n)), now_nanos(), None).await?;
        let id_of: BTreeMap<&str, i64> = companies.keys().copied().zip(ids).collect();
        for (i, placed) in &moves {
            let row = &rows[*i];
            let (domain, rule) = stored_placement(placed.as_ref());
            sqlx::query("UPDATE activities SET company_domain = ?, company_id = ?, attributed_by = ? WHERE source = ? AND id = ?")
                .bind(domain)
                .bind(domain.and_then(|d| id_of.get(d).copied()))
                .bind(rule)
                .bind(row.get::<String, _>(0))
                .bind(row.get::<String, _>(1))
                .execute(&mut *tx)
                .await?;
        }
        let moved = moves.len() as u64;
        if moved > 0 {
            bump_data_version(&mut *tx).await?;
            let touched: Vec<&str> = companies.keys().copied().chain(left.iter().map(String::as_str)).collect();
            super::mark_changed(&mut tx, &touched).await?;
        }
        set_meta(&mut *tx, "attribution_rules", &fingerprint).await?;
        tx.commit().await?;
        Ok(moved)
    }

    /// Records the `parents:` of the config: when they differ from those last recorded,
    /// every company named in either (and, at the next rescore, their families) is
    /// rescored. The parents are created as companies, so that a parent with no activity
    /// of its own is scored on its children's.
    pub async fn sync_parents(&self, rules: &AttributionRules) -> Result<bool, StoreError> {
        let now = rules.families().to_lines();
        let before = self.meta("attribution_parents").await?.unwrap_or_default();
        if before == now {
            return Ok(false);
        }
        let mut tx = self.begin_write().await?;
        let named: std::collections::BTreeSet<&str> =
            before.lines().chain(now.lines()).flat_map(|l| l.split('>')).filter(|d| !d.is_empty()).collect();
        let parents: std::collections::BTreeSet<&str> = rules.parents().values().map(String::as_str).collect();
        super::companies::upsert_companies(&mut tx, parents.iter().map(|d| (*d, None)), now_nanos(), None).await?;
        bump_data_version(&mut *tx).await?;
        super::mark_changed(&mut tx, &named.into_iter().collect::<Vec<_>>()).await?;
        set_meta(&mut *tx, "attribution_parents", &now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The families scoring folds together, as `sync_parents` last recorded them.
    pub async fn families(&self) -> Result<crate::attribution::Families, StoreError> {
        Ok(crate::attribution::Families::from_lines(&self.meta("attribution_parents").await?.unwrap_or_default()))
    }

    /// Marks companies changed at the current data version (without moving it): the
    /// members of a family, so that an incremental rescore reads all of it.
    pub async fn mark_families_changed(&self, domains: &[&str]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        super::mark_changed(&mut tx, domains).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The ids of known companies among `domains`.
    pub async fn company_ids(&self, domains: &[&str]) -> Result<BTreeMap<String, u32>, StoreError> {
        let mut out = BTreeMap::new();
        for d in domains {
            let id: Option<i64> = sqlx::query_scalar("SELECT id FROM companies WHERE domain = ?").bind(*d).fetch_optional(&self.pool).await?;
            if let Some(id) = id.and_then(|i| u32::try_from(i).ok()) {
                out.insert((*d).to_owned(), id);
            }
        }
        Ok(out)
    }

    /// How many activities up to `until` each rule placed at these companies, by
    /// (company, rule): what `explain` tells.
    pub async fn rule_counts(&self, domains: &[&str], until: i64) -> Result<Vec<(String, String, i64)>, StoreError> {
        let mut out = Vec::new();
        for d in domains {
            let rows = sqlx::query(
                "SELECT coalesce(attributed_by, 'source'), COUNT(*) FROM activities \
                 WHERE company_id = (SELECT id FROM companies WHERE domain = ?) AND occurred_at < ? GROUP BY 1 ORDER BY 1",
            )
            .bind(*d)
            .bind(until)
            .fetch_all(&self.pool)
            .await?;
            out.extend(rows.iter().map(|r| ((*d).to_owned(), r.get::<String, _>(0), r.get::<i64, _>(1))));
        }
        Ok(out)
    }

    /// Calls `each` with every attributed activity up to `until` (UTC nanoseconds,
    /// exclusive) and its company's id, in no particular order; with `changed_since`,
    /// only those of companies whose activities changed after that data version. The
    /// full scan splits the table into as many rowid ranges as there are `parts`, each
    /// read on a thread and connection of its own into its part. Returns the rows read.
    pub async fn scan_scoring<S: Send>(
        &self,
        until: i64,
        changed_since: Option<i64>,
        parts: &mut [S],
        each: impl Fn(&mut S, u32, &ActivityRef<'_>) + Sync,
    ) -> Result<u64, StoreError> {
        let ranges: Vec<(&'static str, Vec<Param<'static>>)> = match changed_since {
            Some(v) => vec![(SCAN_CHANGED, vec![Param::Int(until), Param::Int(v)])],
            None => {
                let (lo, hi): (Option<i64>, Option<i64>) = sqlx::query_as(
                    // Two subqueries: SQLite answers one min() or max() from the end of
                    // the table, but both in one SELECT with a full scan.
                    "SELECT (SELECT min(seq) FROM activities), (SELECT max(seq) FROM activities)",
                ).fetch_one(&self.pool).await?;
                let (lo, hi) = (lo.unwrap_or(1), hi.unwrap_or(0));
                let count = parts.len().max(1) as i64;
                let width = ((hi - lo + 1).max(0) + count - 1) / count;
                let width = width.max(1);
                (0..count)
                    .map(|i| (SCAN_RANGE, vec![Param::Int(until), Param::Int(lo + i * width), Param::Int((lo + (i + 1) * width - 1).min(hi))]))
                    .collect()
            }
        };
        let used = ranges.len().min(parts.len());
        let parts = &mut parts[..used];
        let mut conns = Vec::with_capacity(parts.len());
        for _ in 0..parts.len() {
            conns.push(self.pool.acquire().await?);
        }
        let mut locked = Vec::with_capacity(conns.len());
        for conn in conns.iter_mut() {
            locked.push(conn.lock_handle().await?);
        }
        let handles: Vec<Handle<'_>> = locked.iter_mut().map(Handle::of).collect();
        let each = &each;
        let results: Vec<Result<u64, StoreError>> = std::thread::scope(|scope| {
            let threads: Vec<_> = handles
                .into_iter()
                .zip(parts.iter_mut())
                .zip(&ranges)
                .map(|((mut handle, part), (sql, params))| {
                    scope.spawn(move || {
                        // A scan reads each page once: a large cache would only hold
                        // pages of the table no one reads again (and count in RSS).
                        Statement::prepare(&mut handle, "PRAGMA cache_size = -8192")?.execute(&[])?;
                        let mut rows = 0u64;
                        let scanned = Statement::prepare(&mut handle, sql)?.query(params, |row| {
                            let company = u32::try_from(row.int(0)).map_err(|_| StoreError::Corrupt { what: "activities.company_id", value: row.int(0).to_string() })?;
                            each(part, company, &activity_ref(row)?);
                            rows += 1;
                            Ok(())
                        });
                        Statement::prepare(&mut handle, super::RESTORE_CACHE_SIZE)?.execute(&[])?;
                        scanned.map(|()| rows)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().expect("scan thread")).collect()
        });
        results.into_iter().sum()
    }

    /// The domains of the companies (those changed after `changed_since`, if given),
    /// indexed by company id: what the scan's ids are named by.
    pub async fn company_domains(&self, changed_since: Option<i64>) -> Result<Vec<Option<Box<str>>>, StoreError> {
        let mut domains: Vec<Option<Box<str>>> = Vec::new();
        let mut keep = |row: &RawRow<'_>| {
            let id = usize::try_from(row.int(0)).map_err(|_| StoreError::Corrupt { what: "companies.id", value: row.int(0).to_string() })?;
            if domains.len() <= id {
                domains.resize(id + 1, None);
            }
            domains[id] = row.text(1)?.map(Box::from);
            Ok(())
        };
        match changed_since {
            None => self.query_raw("SELECT id, domain FROM companies", &[], &mut keep).await?,
            Some(v) => self.query_raw("SELECT id, domain FROM companies WHERE changed_version > ?1", &[Param::Int(v)], &mut keep).await?,
        }
        Ok(domains)
    }

    /// The floor under `scan_scoring`: the same statement over every row, each column
    /// read and nothing else done with it. Returns the rows read.
    pub async fn bare_scan(&self, until: i64) -> Result<u64, StoreError> {
        let (mut rows, mut bytes) = (0u64, 0usize);
        self.query_raw(SCAN_RANGE, &[Param::Int(until), Param::Int(i64::MIN), Param::Int(i64::MAX)], |row| {
            bytes += (row.int(0) ^ row.int(1)) as usize & 1;
            for column in [2, 3, 4, 5, 6, 7, 8] {
                bytes += row.text(column)?.map_or(0, str::len);
            }
            rows += 1;
            Ok(())
        })
        .await?;
        std::hint::black_box(bytes);
        Ok(rows)
    }

    /// How SQLite runs the full scan (`EXPLAIN QUERY PLAN` details): a guard that it
    /// stays a range of the table, not a walk of an index.
    pub async fn scan_plan(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {SCAN_RANGE}"))).bind(0i64).bind(0i64).bind(0i64).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(3)).collect())
    }

    async fn query_raw(&self, sql: &'static str, params: &[Param<'_>], each: impl FnMut(&RawRow<'_>) -> Result<(), StoreError>) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut locked = conn.lock_handle().await?;
        Statement::prepare(&mut Handle::of(&mut locked), sql)?.query(params, each)
    }

    /// One company's activities up to `until` (UTC nanoseconds, exclusive), in scoring order.
    pub async fn company_activities(&self, domain: &str, until: i64) -> Result<Vec<ScoringActivity>, StoreError> {
        let rows = sqlx::query(
            "SELECT company_domain, occurred_at, source, id, kind, action, tier, actor, package, version, url \
             FROM activities WHERE company_id = (SELECT id FROM companies WHERE domain = ?) AND occurred_at < ? \
             ORDER BY occurred_at, source, id",
        )
        .bind(domain)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(scoring_activity).collect()
    }

    /// How the store's activities stand with attribution.
    pub async fn attribution_counts(&self) -> Result<AttributionCounts, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE attributed_by = 'ignored'), \
             COUNT(*) FILTER (WHERE company_domain IS NULL AND attributed_by IS NULL) FROM activities",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(AttributionCounts { total: row.get(0), ignored: row.get(1), unattributed: row.get(2) })
    }

    /// Totals of the store, for summaries.
    pub async fn activity_counts(&self) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE company_domain IS NULL) FROM activities",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.get(0), row.get(1)))
    }
}

/// The company domain and rule a placement is stored as: an ignored activity keeps its
/// rule and no company.
fn stored_placement(placed: Option<&(String, Rule)>) -> (Option<&str>, Option<&'static str>) {
    match placed {
        Some((_, Rule::Ignored)) => (None, Some(Rule::Ignored.as_str())),
        Some((d, r)) => (Some(d.as_str()), Some(r.as_str())),
        None => (None, None),
    }
}

fn scoring_activity(row: &sqlx::sqlite::SqliteRow) -> Result<ScoringActivity, StoreError> {
    let kind_text: &str = row.get(4);
    let kind = Kind::parse(kind_text).ok_or_else(|| StoreError::Corrupt {
        what: "activities.kind",
        value: kind_text.to_owned(),
    })?;
    let action = match row.get::<Option<&str>, _>(5) {
        Some(a) => Some(Action::parse(a).ok_or_else(|| StoreError::Corrupt {
            what: "activities.action",
            value: a.to_owned(),
        })?),
        None => None,
    };
    let tier = match row.get::<Option<&str>, _>(6) {
        Some(t) => Some(Tier::parse(t).ok_or_else(|| StoreError::Corrupt {
            what: "activities.tier",
            value: t.to_owned(),
        })?),
        None => None,
    };
    Ok(ScoringActivity {
        occurred_at: row.get(1),
        source: row.get(2),
        id: row.get(3),
        kind,
        action,
        tier,
        actor: row.get(7),
        package: row.get(8),
        version: row.get(9),
        url: row.get(10),
    })
}

fn activity_ref<'r>(row: &'r RawRow<'_>) -> Result<ActivityRef<'r>, StoreError> {
    let corrupt = |what: &'static str, value: &str| StoreError::Corrupt { what, value: value.to_owned() };
    let kind_text = row.text(2)?.unwrap_or_default();
    let kind = Kind::parse(kind_text).ok_or_else(|| corrupt("activities.kind", kind_text))?;
    let action = match row.text(3)? {
        Some(a) => Some(Action::parse(a).ok_or_else(|| corrupt("activities.action", a))?),
        None => None,
    };
    let tier = match row.text(4)? {
        Some(t) => Some(Tier::parse(t).ok_or_else(|| corrupt("activities.tier", t))?),
        None => None,
    };
    Ok(ActivityRef {
        occurred_at: row.int(1),
        kind,
        action,
        tier,
        actor: row.text(5)?,
        package: row.text(6)?,
        version: row.text(7)?,
        url: row.text(8)?,
    })
}
