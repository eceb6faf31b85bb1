//! The golden cases of `spec/golden/` through the pure engine (no store, no binary):
//! the fastest signal that a scoring rule broke. `cli_golden.rs` runs them end to end.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use oql_sync::activity::Activity;
use oql_sync::scoring::{Model, ScoringActivity, score_company};

fn golden_cases() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".asof").map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[test]
fn every_golden_case_matches_through_the_engine() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let cases = golden_cases();
    assert!(cases.len() >= 8, "golden cases missing: {cases:?}");
    for name in cases {
        let as_of = NaiveDate::parse_from_str(std::fs::read_to_string(dir.join(format!("{name}.asof"))).unwrap().trim(), "%Y-%m-%d").unwrap();
        let mut by_company: BTreeMap<String, Vec<ScoringActivity>> = BTreeMap::new();
        for line in std::fs::read_to_string(dir.join(format!("{name}.ndjson"))).unwrap().lines() {
            let obj = serde_json::from_str::<serde_json::Value>(line).unwrap().as_object().unwrap().clone();
            let a = Activity::from_object(obj).unwrap();
            let Some(domain) = a.company_domain.clone() else { continue };
            by_company.entry(domain).or_default().push(ScoringActivity {
                occurred_at: a.occurred_at,
                source: a.source,
                id: a.id,
                kind: a.kind,
                action: a.action,
                tier: a.tier,
                actor: a.actor,
                package: a.package,
                version: a.version,
                url: a.url,
            });
        }
        let model = Model::default();
        let mut scores: Vec<_> = by_company
            .iter()
            .filter_map(|(d, acts)| score_company(d, acts, &model, as_of))
            .collect();
        scores.sort_by(|a, b| b.score.cmp(&a.score).then(a.domain.cmp(&b.domain)));
        let got = serde_json::to_value(&scores).unwrap();
        let want: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.expected.json"))).unwrap()).unwrap();
        if got != want {
            let (g, w) = (got.as_array().unwrap(), want.as_array().unwrap());
            for (x, y) in g.iter().zip(w) {
                if x != y {
                    panic!("{name}: first differing company:\n got {x}\nwant {y}");
                }
            }
            panic!("{name}: {} companies, expected {}", g.len(), w.len());
        }
    }
}
