//! The fast paths the scale benchmark relies on, held to the slow ones: the full
//! rescore's table scan against each company read through its index, the incremental
//! rescore against a full one, and the update generator against its base data set.

mod common;

use std::collections::BTreeSet;

use chrono::NaiveDate;
use common::Env;
use oql_sync::scoring::{Model, end_of, score_company};
use oql_sync::store::Store;

fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 31).unwrap()
}

fn domains(ndjson: &str) -> BTreeSet<String> {
    ndjson
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["company_domain"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn an_update_file_touches_exactly_the_asked_number_of_existing_companies() {
    let env = Env::new();
    let base = env.path().join("base.ndjson");
    let update = env.path().join("update.ndjson");
    env.ok(&["generate", "--activities", "5000", "--companies", "400", "--out", base.to_str().unwrap()]);
    env.ok(&["generate", "--activities", "300", "--companies", "400", "--touch", "60", "--out", update.to_str().unwrap()]);
    let (base_text, update_text) = (std::fs::read_to_string(&base).unwrap(), std::fs::read_to_string(&update).unwrap());
    assert_eq!(update_text.lines().count(), 300);
    let touched = domains(&update_text);
    assert_eq!(touched.len(), 60, "every line names one of 60 companies");
    // The same companies as the base data set (same personas, same names), even those
    // the base draw happened to give no activity.
    let named: BTreeSet<String> = domains(&base_text);
    assert!(touched.iter().filter(|d| named.contains(*d)).count() >= 50, "{touched:?}");
    assert!(update_text.lines().all(|l| l.contains("\"id\":\"u")), "update ids never collide with base ids");
    env.ok(&["import", base.to_str().unwrap()]);
    let out = env.ok(&["import", update.to_str().unwrap()]);
    assert!(out.contains("300 imported, 0 duplicate"), "{out}");
}

#[test]
fn the_table_scan_and_the_company_index_give_every_company_the_same_score() {
    let env = Env::new();
    let data = env.path().join("data.ndjson");
    env.ok(&["generate", "--activities", "20000", "--companies", "500", "--out", data.to_str().unwrap()]);
    env.ok(&["import", data.to_str().unwrap()]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(env.path().join("oql.db").to_str().unwrap()).await.unwrap();
        let model = Model::default();
        let scanned = oql_sync::app::compute_scores(&store, &model, as_of()).await.unwrap();
        assert!(scanned.len() > 300, "{} companies", scanned.len());
        for s in &scanned {
            let acts = store.company_activities(&s.domain, end_of(as_of())).await.unwrap();
            assert_eq!(score_company(&s.domain, &acts, &model, as_of()).as_ref(), Some(s), "{}", s.domain);
        }
        let rows = store.bare_scan(end_of(as_of())).await.unwrap();
        let (total, unattributed) = store.activity_counts().await.unwrap();
        assert_eq!(rows as i64, total - unattributed, "the bare scan reads every attributed activity");
    });
}

#[test]
fn the_full_scan_reads_the_table_in_storage_order_not_through_an_index() {
    let env = Env::new();
    env.ok(&["import", common::golden_dir().join("mix-7.ndjson").to_str().unwrap()]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(env.path().join("oql.db").to_str().unwrap()).await.unwrap();
        let plan = store.scan_plan().await.unwrap();
        // A range of the table itself, by rowid: a search through the company index
        // would cost a row lookup per activity.
        assert_eq!(plan, ["SEARCH activities USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"]);
    });
}

async fn has_company_index(store: &Store) -> bool {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'activities_by_company'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    n == 1
}

#[test]
fn a_bulk_load_builds_the_company_index_again_and_an_open_after_a_kill_mid_load_does_too() {
    let env = Env::new();
    let data = env.path().join("data.ndjson");
    env.ok(&["generate", "--activities", "3000", "--companies", "100", "--out", data.to_str().unwrap()]);
    let db = env.path().join("oql.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(db.to_str().unwrap()).await.unwrap();
        assert!(!store.begin_bulk_load(1000).await.unwrap(), "a small import keeps the index");
        assert!(store.begin_bulk_load(1_000_000).await.unwrap(), "a large one into an empty store drops it");
        assert!(!has_company_index(&store).await);
        let rules = oql_sync::attribution::AttributionRules::default();
        oql_sync::import::import_file(&store, &data, &Default::default(), &rules).await.unwrap();
        let model = Model::default();
        let without = oql_sync::app::compute_scores(&store, &model, as_of()).await.unwrap();
        store.end_bulk_load().await.unwrap();
        assert!(has_company_index(&store).await);
        assert_eq!(oql_sync::app::compute_scores(&store, &model, as_of()).await.unwrap(), without);
        // A load into a store already larger than it keeps the index.
        assert!(!store.begin_bulk_load(1400).await.unwrap());
        // Killed between the drop and the rebuild: the next open builds it.
        assert!(store.begin_bulk_load(2_000_000).await.unwrap());
        store.close().await;
        let store = Store::open(db.to_str().unwrap()).await.unwrap();
        assert!(has_company_index(&store).await);
        let acts = store.company_activities(&without[0].domain, end_of(as_of())).await.unwrap();
        assert_eq!(score_company(&without[0].domain, &acts, &model, as_of()).as_ref(), Some(&without[0]));
    });
}

/// A store made before migration 0006 (companies keyed by domain, activities by their
/// key) holding the golden mix: opening it migrates it, every activity carries its
/// company's id, and the scores are those of a store made today.
#[test]
fn a_store_from_before_integer_ids_migrates_and_scores_the_same() {
    let today = Env::new();
    let golden = common::golden_dir();
    today.ok(&["import", golden.join("mix-7.ndjson").to_str().unwrap()]);
    let as_of = std::fs::read_to_string(golden.join("mix-7.asof")).unwrap().trim().to_owned();
    let expected = today.companies_json(&as_of);

    let old = Env::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlx::ConnectOptions;
        let db = old.path().join("oql.db");
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).create_if_missing(true).connect().await.unwrap();
        let migrations = sqlx::migrate::Migrator::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations")).await.unwrap();
        migrations.run_to(5, &mut conn).await.unwrap();
        let source = today.path().join("oql.db");
        sqlx::query(sqlx::AssertSqlSafe(format!("ATTACH DATABASE '{}' AS today", source.display()))).execute(&mut conn).await.unwrap();
        for copy in [
            "INSERT INTO companies (domain, name, created_at, changed_version) SELECT domain, name, created_at, changed_version FROM today.companies",
            "INSERT INTO activities (source, id, kind, action, occurred_at, tier, source_domain, company_domain, attributed_by, company_name, \
             actor, email_domain, package, version, url, properties, imported_at) SELECT source, id, kind, action, occurred_at, tier, \
             source_domain, company_domain, attributed_by, company_name, actor, email_domain, package, version, url, properties, imported_at \
             FROM today.activities",
            "INSERT INTO meta (key, value) SELECT key, value FROM today.meta WHERE key NOT LIKE 'scores_%'",
        ] {
            sqlx::query(copy).execute(&mut conn).await.unwrap();
        }
        let copied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM activities").fetch_one(&mut conn).await.unwrap();
        assert!(copied > 1000, "{copied}");
    });

    assert_eq!(old.companies_json(&as_of), expected);
    rt.block_on(async {
        let store = Store::open(old.path().join("oql.db").to_str().unwrap()).await.unwrap();
        let mismatched: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM activities a LEFT JOIN companies c ON c.id = a.company_id \
             WHERE (a.company_domain IS NULL) != (a.company_id IS NULL) OR c.domain IS NOT a.company_domain",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(mismatched, 0, "every attributed activity names its company by id too");
        assert!(has_company_index(&store).await);
    });
}

fn activity(id: &str, domain: &str, name: Option<&str>, day: &str) -> oql_sync::store::NewActivity {
    let mut line = serde_json::json!({"source": "scarf", "id": id, "kind": "download", "occurred_at": format!("{day}T10:00:00Z"), "company_domain": domain, "package": "oqldb", "version": "1.0.0"});
    if let Some(n) = name {
        line["company_name"] = n.into();
    }
    let serde_json::Value::Object(obj) = line else { unreachable!() };
    let activity = oql_sync::activity::Activity::from_object(obj).unwrap();
    let company = oql_sync::attribution::AttributionRules::default().attribute(activity.company_domain.as_deref(), None, None, activity.occurred_at);
    oql_sync::store::NewActivity { activity, company }
}

/// An import's transaction spans several batches: a company met again in a later batch
/// is not written again but keeps its id, a name a later batch brings is still filled
/// in, a duplicate across batches is caught, the data version moves once, and dropping
/// the transaction stores nothing.
#[test]
fn batches_in_one_import_transaction_share_their_companies() {
    use oql_sync::store::SortedActivities;
    let env = Env::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(env.path().join("oql.db").to_str().unwrap()).await.unwrap();
        let before = store.data_version().await.unwrap();
        let mut insert = store.begin_insert().await.unwrap();
        let first = SortedActivities::new(vec![activity("1", "acme.com", None, "2026-10-01"), activity("2", "globex.com", Some("Globex"), "2026-10-02")]);
        let second = SortedActivities::new(vec![activity("3", "acme.com", Some("Acme"), "2026-10-03"), activity("2", "globex.com", None, "2026-10-04"), activity("4", "globex.com", None, "2026-10-05")]);
        assert_eq!(insert.insert(&first, &[]).await.unwrap().inserted, 2);
        let outcome = insert.insert(&second, &[]).await.unwrap();
        assert_eq!((outcome.inserted, outcome.duplicate), (2, 1));
        assert_eq!(insert.activities(), 5);
        insert.commit().await.unwrap();
        assert_eq!(store.data_version().await.unwrap(), before + 1, "one version for the transaction");

        let pool = store.pool();
        let companies: Vec<(i64, String, Option<String>, i64)> =
            sqlx::query_as("SELECT id, domain, name, changed_version FROM companies ORDER BY domain").fetch_all(pool).await.unwrap();
        assert_eq!(companies.len(), 2);
        assert_eq!((companies[0].1.as_str(), companies[0].2.as_deref()), ("acme.com", Some("Acme")), "a later batch's name is filled in");
        assert!(companies.iter().all(|c| c.3 == before + 1), "marked changed at the version committed: {companies:?}");
        let ids: Vec<(String, i64)> = sqlx::query_as("SELECT id, company_id FROM activities ORDER BY id").fetch_all(pool).await.unwrap();
        let id_of = |d: &str| companies.iter().find(|c| c.1 == d).unwrap().0;
        assert_eq!(ids, [("1".into(), id_of("acme.com")), ("2".into(), id_of("globex.com")), ("3".into(), id_of("acme.com")), ("4".into(), id_of("globex.com"))]);

        let mut dropped = store.begin_insert().await.unwrap();
        dropped.insert(&SortedActivities::new(vec![activity("5", "initech.io", None, "2026-10-06")]), &[]).await.unwrap();
        drop(dropped);
        assert_eq!(store.activity_counts().await.unwrap().0, 4, "a transaction dropped before its commit stores nothing");
        assert_eq!(store.data_version().await.unwrap(), before + 1);
    });
}
