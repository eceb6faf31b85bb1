//! The insight signals (`reason`, `trend`, `score_change_30d`, `top_page_30d`,
//! `top_package_90d`) reach a CRM through a mapping like any signal, while
//! `companies --format json` keeps the output contract's keys only.

mod common;

use common::Env;
use serde_json::Value;

/// acme.com at 2026-10-30: two downloads in the 30 days before the last 30, then four
/// downloads of a newer version and three page views in the last 30 days, none in the
/// last week.
fn acme() -> String {
    let line = |id: &str, kind: &str, at: &str, extra: &str| {
        format!(r#"{{"id":"{id}","source":"t","kind":"{kind}","occurred_at":"{at}T10:00:00Z","company_domain":"acme.com"{extra}}}"#)
    };
    let dl = |id: &str, at: &str, actor: &str, v: &str| line(id, "download", at, &format!(r#","actor":"{actor}","package":"oqldb","version":"{v}""#));
    let view = |id: &str, url: &str| line(id, "page_view", "2026-10-21", &format!(r#","url":"{url}""#));
    [
        dl("1", "2026-09-15", "m1", "3.1.0"),
        dl("2", "2026-09-15", "m1", "3.1.0"),
        dl("3", "2026-10-20", "m1", "3.2.0"),
        dl("4", "2026-10-20", "m2", "3.2.0"),
        dl("5", "2026-10-20", "m2", "3.2.0"),
        dl("6", "2026-10-20", "m2", "3.2.0"),
        view("7", "https://oql.dev/pricing?utm_source=x"),
        view("8", "https://oql.dev/pricing/"),
        view("9", "https://oql.dev/docs/install"),
    ]
    .join("\n")
        + "\n"
}

#[test]
fn insight_signals_are_mappable_and_stay_out_of_the_contract_json() {
    let env = Env::new();
    env.write("acme.ndjson", acme());
    env.write(
        "connectors/out.yaml",
        "name: out\nkind: file\nschedule: \"0 0 * * * *\"\nmapping: mappings/out.yaml\npath: out/crm.ndjson\n",
    );
    env.write(
        "mappings/out.yaml",
        "object: companies\nmatch: { crm_field: domain }\nfields:\n  oql_reason: { from: reason }\n  oql_trend: { from: trend }\n  oql_change: { from: score_change_30d }\n  oql_change_int: { from: score_change_30d, round: 0 }\n  oql_page: { from: top_page_30d }\n  oql_package: { from: top_package_90d }\n",
    );
    env.ok(&["import", env.path().join("acme.ndjson").to_str().unwrap()]);
    let companies = env.companies_json("2026-10-30");
    let acme = &companies[0];
    let keys: Vec<&str> = acme.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 19, "the contract's keys only: {keys:?}");
    assert!(!keys.contains(&"reason"));
    // downloads 10 + 10 (day caps), views 1 + 1 (/pricing is high) + 0.5 (/docs).
    assert_eq!(acme["score"], serde_json::json!(22.5));

    env.ok(&["sync", "--as-of", "2026-10-30"]);
    let text = std::fs::read_to_string(env.path().join("out/crm.ndjson")).unwrap();
    let row: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let stage = acme["stage"].as_str().unwrap();
    let label = match stage {
        "ongoing_usage" => "Ongoing usage".to_owned(),
        s => s[..1].to_uppercase() + &s[1..],
    };
    assert_eq!(
        row["oql_reason"],
        format!("{label} since {}: 6 downloads of oqldb 3.2.0 from 2 machines; 3 page views (2 of /pricing) in the last 90 days.", acme["stage_since"].as_str().unwrap())
    );
    // 7 activities in the last 30 days against 2 in the 30 before: +250%; the last
    // week is empty, so not surging.
    assert_eq!(row["oql_trend"], "heating");
    // 22.5 now against 10 (the September downloads) at 2026-09-30.
    assert_eq!(row["oql_change"], serde_json::json!(12.5));
    assert_eq!(row["oql_change_int"], serde_json::json!(13));
    assert_eq!(row["oql_page"], "/pricing");
    assert_eq!(row["oql_package"], "oqldb 3.2.0");
}

#[test]
fn trend_thresholds_come_from_scoring_yaml() {
    let env = Env::new();
    env.write("acme.ndjson", acme());
    env.write("connectors/out.yaml", "name: out\nkind: file\nschedule: \"0 0 * * * *\"\nmapping: mappings/out.yaml\npath: out/crm.ndjson\n");
    env.write("mappings/out.yaml", "object: companies\nmatch: { crm_field: domain }\nfields:\n  oql_trend: { from: trend }\n");
    // +250% is below a heating threshold of 300%: steady.
    env.write("scoring.yaml", "trend: { heating_mom: 300, cooling_mom: -40.5 }\n");
    env.ok(&["import", env.path().join("acme.ndjson").to_str().unwrap()]);
    env.ok(&["sync", "--as-of", "2026-10-30"]);
    let text = std::fs::read_to_string(env.path().join("out/crm.ndjson")).unwrap();
    let row: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(row["oql_trend"], "steady");
    env.write("scoring.yaml", "trend: { heating_mom: 12.25 }\n");
    let refused = env.run(&["check"]);
    assert_eq!(refused.code, 2);
    assert!(refused.stderr.contains("scoring.yaml") && refused.stderr.contains("more than 1 decimal"), "{}", refused.stderr);
}
