//! The benchmark data generator: deterministic, and a mix of every persona and stage.

mod common;

use common::Env;

#[test]
fn generated_data_is_deterministic_and_covers_every_stage() {
    let env = Env::new();
    let a = env.path().join("a.ndjson");
    let b = env.path().join("b.ndjson");
    env.ok(&["generate", "--activities", "20000", "--companies", "300", "--out", a.to_str().unwrap()]);
    env.ok(&["generate", "--activities", "20000", "--companies", "300", "--out", b.to_str().unwrap()]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "same arguments, same bytes");
    let out = env.ok(&["import", a.to_str().unwrap()]);
    assert!(out.contains("20000 imported, 0 duplicate, 0 quarantined"), "{out}");
    let companies = env.companies_json("2026-10-31");
    let stages: std::collections::BTreeSet<&str> = companies.as_array().unwrap().iter().map(|c| c["stage"].as_str().unwrap()).collect();
    assert_eq!(stages.len(), 5, "every stage appears: {stages:?}");
    let help = env.ok(&["--help"]);
    assert!(!help.contains("generate"), "hidden from the main help");
}
