//! Corrections of `attribution.yaml` through the real import, re-attribution and
//! scoring: an alias is exactly a rewrite of the data (a property), parents fold their
//! descendants in, affiliations place by date, ignores set activities aside and give
//! them back when removed, and a change rescores incrementally to the full result.

use std::path::Path;

use chrono::NaiveDate;
use oql_sync::app::{compute_scores, rescore};
use oql_sync::config::Config;
use oql_sync::import::import_file;
use oql_sync::output;
use oql_sync::sources::export::ExportOptions;
use oql_sync::store::Store;
use proptest::prelude::*;

fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 6, 30).unwrap()
}

/// A config dir holding only `attribution.yaml` (none when `yaml` is empty).
fn config(dir: &Path, yaml: &str) -> Config {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("attribution.yaml");
    if yaml.is_empty() {
        let _ = std::fs::remove_file(&path);
    } else {
        std::fs::write(&path, yaml).unwrap();
    }
    Config::load(dir).unwrap()
}

/// Imports `lines` under `yaml`'s rules, then (when `later` is given) switches to those
/// rules the way a command does after the file changed; returns the companies JSON.
fn companies(lines: &[String], yaml: &str, later: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = Store::open(dir.path().join("oql.db").to_str().unwrap()).await.unwrap();
        let cfg = config(&dir.path().join("cfg"), yaml);
        oql_sync::cycle::apply_attribution(&store, &cfg).await.unwrap();
        let path = dir.path().join("in.ndjson");
        std::fs::write(&path, lines.join("\n")).unwrap();
        import_file(&store, &path, &ExportOptions::default(), &cfg.attribution).await.unwrap();
        if let Some(later) = later {
            let cfg = config(&dir.path().join("cfg"), later);
            oql_sync::cycle::apply_attribution(&store, &cfg).await.unwrap();
        }
        output::json(&compute_scores(&store, &cfg.model, as_of()).await.unwrap())
    })
}

/// One activity line: company named by the source (or not), an actor and email, a kind.
fn line(i: usize, company: Option<&str>, actor: &str, email: Option<&str>, kind: u8, day: u32) -> String {
    let date = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap() + chrono::TimeDelta::days(day as i64);
    let mut o = serde_json::json!({ "id": format!("e{i}"), "source": "web", "occurred_at": format!("{date}T12:00:00Z"), "actor": actor });
    match kind % 3 {
        0 => {
            o["kind"] = "page_view".into();
            o["url"] = if kind % 2 == 0 { "/pricing" } else { "/docs/install" }.into();
        }
        1 => {
            o["kind"] = "download".into();
            o["package"] = "oqldb".into();
            o["version"] = format!("1.{}.0", kind % 4).into();
        }
        _ => o["kind"] = "doc_view".into(),
    }
    if let Some(c) = company {
        o["company_domain"] = c.into();
    }
    if let Some(e) = email {
        o["actor_email"] = format!("{actor}@{e}").into();
    }
    o.to_string()
}

const COMPANIES: [Option<&str>; 4] = [Some("acme.de"), Some("acme.com"), Some("globex.com"), None];
const EMAILS: [Option<&str>; 4] = [Some("acme.de"), Some("gmail.com"), Some("initech.io"), None];

fn activities() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec((0usize..4, 0usize..4, 0u8..5, 0u8..6, 0u32..120), 1..60).prop_map(|rows| {
        rows.into_iter()
            .enumerate()
            .map(|(i, (c, e, a, k, d))| line(i, COMPANIES[c], &format!("u{a}"), EMAILS[e], k, d))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn an_alias_scores_exactly_as_if_the_data_named_the_canonical_domain(lines in activities()) {
        let rewritten: Vec<String> = lines.iter().map(|l| l.replace("acme.de", "acme.com")).collect();
        let expected = companies(&rewritten, "", None);
        prop_assert_eq!(&companies(&lines, "aliases:\n  acme.de: acme.com\n", None), &expected);
        // The same when the alias is added after the import (re-attribution).
        prop_assert_eq!(&companies(&lines, "", Some("aliases:\n  acme.de: acme.com\n")), &expected);
    }
}

fn scores_by_domain(json: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
    let v: Vec<serde_json::Value> = serde_json::from_str(json).unwrap();
    v.into_iter().map(|c| (c["domain"].as_str().unwrap().to_owned(), c)).collect()
}

fn sample() -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..40 {
        let company = ["acme.com", "widgets-acme.com", "gadgets.widgets-acme.com", "globex.com"][i % 4];
        out.push(line(i, Some(company), &format!("u{}", i % 7), None, (i % 6) as u8, (i * 3 % 120) as u32));
    }
    out
}

#[test]
fn a_parent_is_scored_on_its_own_and_every_descendants_activities_and_children_keep_theirs() {
    let lines = sample();
    let yaml = "parents:\n  widgets-acme.com: acme.com\n  gadgets.widgets-acme.com: widgets-acme.com\n";
    let with = scores_by_domain(&companies(&lines, yaml, None));
    let without = scores_by_domain(&companies(&lines, "", None));
    // The parent equals the union: every descendant's activity rewritten to it.
    let union: Vec<String> = lines.iter().map(|l| l.replace("gadgets.widgets-acme.com", "acme.com").replace("widgets-acme.com", "acme.com")).collect();
    let union = scores_by_domain(&companies(&union, "", None));
    assert_eq!(with["acme.com"], union["acme.com"]);
    // The middle company folds in its child only.
    let middle: Vec<String> = lines.iter().map(|l| l.replace("gadgets.widgets-acme.com", "widgets-acme.com")).collect();
    assert_eq!(with["widgets-acme.com"], scores_by_domain(&companies(&middle, "", None))["widgets-acme.com"]);
    // A company without children is scored on its own activities.
    assert_eq!(with["gadgets.widgets-acme.com"], without["gadgets.widgets-acme.com"]);
    assert_eq!(with["globex.com"], without["globex.com"]);
    assert_ne!(with["acme.com"], without["acme.com"]);
}

#[test]
fn an_affiliation_places_an_actors_activity_by_its_utc_date() {
    // u9 uses free mail: no other rule places it.
    let lines: Vec<String> = (0..20).map(|i| line(i, None, "u9", Some("gmail.com"), 0, i as u32 * 5)).collect();
    let yaml = "actors:\n  u9:\n    - { company: acme.com, until: 2026-04-01 }\n    - { company: globex.com, from: 2026-04-01 }\n";
    let got = scores_by_domain(&companies(&lines, yaml, None));
    // Days 0..30 (March) go to acme.com: activities 0..=6 (day 0, 5, ..., 30).
    let before: Vec<String> = lines.iter().take(7).map(|l| l.replace("\"actor_email\"", "\"company_domain\":\"acme.com\",\"x\"")).collect();
    let after: Vec<String> = lines.iter().skip(7).map(|l| l.replace("\"actor_email\"", "\"company_domain\":\"globex.com\",\"x\"")).collect();
    let expected = scores_by_domain(&companies(&[before, after].concat(), "", None));
    assert_eq!(got["acme.com"], expected["acme.com"]);
    assert_eq!(got["globex.com"], expected["globex.com"]);
    assert_eq!(got.len(), 2);
}

#[test]
fn ignored_activities_are_kept_count_for_no_company_and_come_back_when_the_ignore_goes() {
    let mut lines = sample();
    lines.extend((100..120).map(|i| line(i, Some("globex.com"), "dependabot[bot]", None, 1, i as u32 - 100)));
    lines.extend((200..210).map(|i| line(i, Some("example.com"), "u1", None, 0, i as u32 - 200)));
    let plain = companies(&lines, "", None);
    let yaml = "ignore:\n  actors: [\"dependabot[bot]\"]\n  domains: [example.com]\n";
    let ignored = scores_by_domain(&companies(&lines, yaml, None));
    let without_bot: Vec<String> = lines.iter().filter(|l| !l.contains("dependabot") && !l.contains("example.com")).cloned().collect();
    assert_eq!(ignored, scores_by_domain(&companies(&without_bot, "", None)));
    assert!(!ignored.contains_key("example.com"));
    // Removing the ignore restores the scores exactly.
    assert_eq!(companies(&lines, yaml, Some("")), plain);
    // And the activities were kept meanwhile (the store still has every one).
    let dir = tempfile::tempdir().unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = Store::open(dir.path().join("oql.db").to_str().unwrap()).await.unwrap();
        let cfg = config(&dir.path().join("cfg"), yaml);
        oql_sync::cycle::apply_attribution(&store, &cfg).await.unwrap();
        let path = dir.path().join("in.ndjson");
        std::fs::write(&path, lines.join("\n")).unwrap();
        import_file(&store, &path, &ExportOptions::default(), &cfg.attribution).await.unwrap();
        let counts = store.attribution_counts().await.unwrap();
        assert_eq!(counts.ignored, 30);
        assert_eq!(counts.total, lines.len() as i64);
    });
}

#[test]
fn a_change_of_the_file_rescores_incrementally_to_the_full_result() {
    let dir = tempfile::tempdir().unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = Store::open(dir.path().join("oql.db").to_str().unwrap()).await.unwrap();
        let cfg_dir = dir.path().join("cfg");
        let cfg = config(&cfg_dir, "");
        oql_sync::cycle::apply_attribution(&store, &cfg).await.unwrap();
        let path = dir.path().join("in.ndjson");
        let mut lines = sample();
        lines.extend((300..310).map(|i| line(i, Some("acme.de"), "u2", None, 1, i as u32 - 300)));
        std::fs::write(&path, lines.join("\n")).unwrap();
        import_file(&store, &path, &ExportOptions::default(), &cfg.attribution).await.unwrap();
        let model = cfg.model.clone();
        rescore(&store, &model, as_of()).await.unwrap();
        for yaml in [
            "aliases:\n  acme.de: acme.com\n",
            "aliases:\n  acme.de: acme.com\nparents:\n  widgets-acme.com: acme.com\n",
            "aliases:\n  acme.de: acme.com\nparents:\n  gadgets.widgets-acme.com: globex.com\n",
            "",
        ] {
            let cfg = config(&cfg_dir, yaml);
            oql_sync::cycle::apply_attribution(&store, &cfg).await.unwrap();
            let recomputed = rescore(&store, &model, as_of()).await.unwrap();
            // Only the touched companies (and their families), never all five.
            assert!(recomputed <= 4, "{yaml}: {recomputed} companies recomputed");
            let mut stored = store.stored_scores().await.unwrap().unwrap().scores;
            stored.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.domain.cmp(&b.domain)));
            assert_eq!(output::json(&stored), output::json(&compute_scores(&store, &model, as_of()).await.unwrap()), "{yaml}");
        }
    });
}
