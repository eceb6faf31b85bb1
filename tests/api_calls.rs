//! API calls per 1,000 changed companies, counted by the emulators: the first sync, a
//! sync after every company changed (ids cached), and an unchanged second sync, with
//! domains that match no record and domains that match several present.
//!
//! `cargo test --test api_calls -- --nocapture` prints the figures.

mod common;

use common::Env;
use common::common_room_crm::CommonRoom;
use common::salesforce_crm::{Salesforce, jwt_connector, test_keypair};
use serde_json::json;

const COMPANIES: usize = 1_000;
const NOT_FOUND: usize = 30;
const AMBIGUOUS: usize = 20;

/// One download per company on 2026-10-01: investigation at 2026-10-30, inactive at
/// 2026-12-15, so every company changes between the two.
fn data() -> String {
    (0..COMPANIES)
        .map(|i| {
            json!({"source": "scarf", "id": format!("c{i}"), "kind": "download", "occurred_at": "2026-10-01T10:00:00Z",
                   "company_domain": format!("c{i}.com"), "package": "oqldb", "version": "2.0.0"})
            .to_string()
                + "\n"
        })
        .collect()
}

/// Calls to the REST API (the token endpoint is not one).
fn sf_calls(sf: &Salesforce) -> usize {
    sf.requests().iter().filter(|r| r.path.starts_with("/services/data/")).count()
}

/// Records the last run charged a failed attempt.
fn charged(env: &Env) -> usize {
    let log: serde_json::Value = serde_json::from_str(&env.ok(&["log", "--status", "failed", "--format", "json", "--limit", "1000000"])).unwrap();
    let records = log["records"].as_array().cloned().unwrap_or_default();
    records.iter().filter(|r| r["outcome"] == "failed" || r["outcome"] == "dead").count()
}

const SF_MAPPING: &str = "object: Account\nmatch: { crm_field: Website }\nfields:\n  OQL_Stage__c: { from: stage }\n  OQL_Score__c: { from: score, round: 0 }\n";

/// An org holding the companies (but `NOT_FOUND` of them; `AMBIGUOUS` twice), and a
/// config dir syncing them with `mapping`.
fn salesforce(rt: &tokio::runtime::Runtime, mapping: &str) -> (Salesforce, Env) {
    let sf = rt.block_on(Salesforce::start());
    sf.define_field("OQL_Stage__c", "string");
    sf.define_field("OQL_Score__c", "double");
    sf.jwt_app("app-1", "int@example.com", &test_keypair().1);
    for i in 0..COMPANIES - NOT_FOUND {
        sf.add_account(&[("Name", &format!("C{i}")), ("Website", &format!("https://c{i}.com"))]);
        if i < AMBIGUOUS {
            sf.add_account(&[("Name", &format!("C{i} (duplicate)")), ("Website", &format!("www.c{i}.com"))]);
        }
    }
    let env = Env::new();
    env.write("keys/sf.key", test_keypair().0);
    env.write("mappings/sf.yaml", mapping);
    env.write("connectors/sf.yaml", jwt_connector(&sf.url, "rate_limit: { requests: 1000, per_seconds: 1 }\n"));
    let file = env.write("data.ndjson", data());
    env.ok(&["import", file.to_str().unwrap()]);
    (sf, env)
}

#[test]
fn salesforce_calls_per_thousand_changed_companies() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (sf, env) = salesforce(&rt, SF_MAPPING);
    let mut figures = Vec::new();
    for (what, as_of) in [("first sync", "2026-10-30"), ("all changed, ids cached", "2026-12-15"), ("unchanged second sync", "2026-12-15")] {
        sf.clear_requests();
        let r = env.run(&["sync", "--as-of", as_of]);
        assert!(r.stdout.starts_with("sf: "), "{}\n{}", r.stdout, r.stderr);
        figures.push((what, sf_calls(&sf)));
    }
    println!("Salesforce, {COMPANIES} companies ({NOT_FOUND} not found, {AMBIGUOUS} ambiguous):");
    for (what, calls) in &figures {
        println!("  {what}: {calls} API calls");
    }
    // Limits, describe, 10 lookups of 100 domains, 5 collections of 200 (950 matched).
    assert!(figures[0].1 <= 17, "{figures:?}");
    // Limits, one lookup of the 50 unmatched (their values changed), 5 collections.
    assert!(figures[1].1 <= 7, "{figures:?}");
    assert_eq!(figures[2].1, 0, "an unchanged sync asks nothing, unmatched domains included");
}

#[test]
fn salesforce_calls_when_a_mapped_field_is_missing() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (sf, env) = salesforce(&rt, &format!("{SF_MAPPING}  OQL_Tier__c: {{ from: peak_stage }}\n"));
    let r = env.run(&["sync", "--as-of", "2026-10-30"]);
    let (calls, charged) = (sf_calls(&sf), charged(&env));
    println!("Salesforce, {COMPANIES} companies, a mapped field missing in the org: {calls} API calls, {charged} records charged a failure");
    assert_eq!(r.code, 1);
    assert_eq!((calls, charged), (2, 0), "limits and describe, then the run stops");
}

const CR_MAPPING: &str = "object: contacts\nmatch: { crm_field: companyDomain }\nfields:\n  OQL Stage: { from: stage }\n  OQL Score: { from: score, round: 0 }\n";

fn common_room(rt: &tokio::runtime::Runtime, source: u64) -> (CommonRoom, Env) {
    let cr = rt.block_on(CommonRoom::start());
    cr.accept_token("cr-token");
    cr.add_source(77);
    cr.add_custom_field(11, "OQL Stage", "string", &[]);
    cr.add_custom_field(12, "OQL Score", "number", &[]);
    let env = Env::new();
    env.write("mappings/cr.yaml", CR_MAPPING);
    env.write(
        "connectors/cr.yaml",
        format!(
            "name: cr\nkind: common_room\nschedule: \"0 0 * * * *\"\nbase_url: {}\ntoken_env: CR_TOKEN\ndestination_source_id: {source}\nmapping: mappings/cr.yaml\nrate_limit: {{ requests: 1000, per_seconds: 1 }}\n",
            cr.url
        ),
    );
    let file = env.write("data.ndjson", data());
    env.ok(&["import", file.to_str().unwrap()]);
    (cr, env)
}

#[test]
fn common_room_calls_per_thousand_changed_companies() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (cr, env) = common_room(&rt, 77);
    let mut figures = Vec::new();
    for (what, as_of) in [("first sync", "2026-10-30"), ("all changed", "2026-12-15"), ("unchanged second sync", "2026-12-15")] {
        cr.clear_requests();
        let r = env.run_with(&["sync", "--as-of", as_of], &[("CR_TOKEN", "cr-token")]);
        assert!(r.stdout.starts_with("cr: "), "{}\n{}", r.stdout, r.stderr);
        figures.push((what, cr.requests().len()));
    }
    println!("Common Room, {COMPANIES} companies:");
    for (what, calls) in &figures {
        println!("  {what}: {calls} API calls");
    }
    // Custom fields and activity types, then a contact and a stage activity per company.
    assert_eq!((figures[0].1, figures[1].1, figures[2].1), (2 + 2 * COMPANIES, 2 + 2 * COMPANIES, 0));
}

#[test]
fn common_room_calls_with_a_wrong_destination_source() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (cr, env) = common_room(&rt, 999);
    let r = env.run_with(&["sync", "--as-of", "2026-10-30"], &[("CR_TOKEN", "cr-token")]);
    let (calls, charged) = (cr.requests().len(), charged(&env));
    println!("Common Room, {COMPANIES} companies, a wrong destination_source_id: {calls} API calls, {charged} records charged a failure");
    assert_eq!(r.code, 1);
    assert_eq!((calls, charged), (3, 0), "custom fields, activity types, one 404, then the run stops");
}
