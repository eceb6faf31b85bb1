//! The spec's golden cases, end to end through the real binary: `import` then
//! `companies --as-of D --format json`, compared byte for byte.

mod common;

use common::{Env, golden_dir};

#[test]
fn every_golden_case_is_reproduced_exactly_by_the_binary() {
    let mut names: Vec<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".asof").map(str::to_owned))
        .collect();
    names.sort();
    assert!(names.len() >= 8, "golden cases missing: {names:?}");
    for name in names {
        let env = Env::new();
        let dir = golden_dir();
        let ndjson = dir.join(format!("{name}.ndjson"));
        env.ok(&["import", ndjson.to_str().unwrap()]);
        let as_of = std::fs::read_to_string(dir.join(format!("{name}.asof"))).unwrap();
        let got = env.ok(&["companies", "--as-of", as_of.trim(), "--format", "json"]);
        let want = std::fs::read_to_string(dir.join(format!("{name}.expected.json"))).unwrap();
        let (g, w): (serde_json::Value, serde_json::Value) =
            (serde_json::from_str(&got).unwrap(), serde_json::from_str(&want).unwrap());
        assert_eq!(g, w, "golden case {name}");
        assert_eq!(got.trim_end(), want.trim_end(), "golden case {name}: same values, different text");
    }
}

#[test]
fn persisted_scores_match_the_computed_ones() {
    let env = Env::new();
    env.ok(&["import", golden_dir().join("mix-7.ndjson").to_str().unwrap()]);
    let out = env.ok(&["score", "--as-of", "2026-06-30"]);
    assert!(out.contains("45 companies as of 2026-06-30: 15 ongoing_usage, 5 experimentation, 13 investigation, 2 interest, 10 inactive"), "{out}");
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden_dir().join("mix-7.expected.json")).unwrap()).unwrap();
    assert_eq!(env.companies_json("2026-06-30"), want);
    let stage = env.ok(&["companies", "--as-of", "2026-06-30", "--stage", "experimentation", "--format", "csv"]);
    let lines: Vec<&str> = stage.lines().collect();
    assert_eq!(lines.len(), 6, "{stage}");
    assert!(lines[0].starts_with("domain,stage,peak_stage,stage_since,score,"));
    assert!(lines[1].starts_with("evaluator-7-21.com,experimentation,experimentation,2026-06-22,69.00,"), "{stage}");
}
