//! Domains that match no CRM record, or several, are remembered: an unchanged sync asks
//! the CRM nothing about them until `recheck_unmatched_hours` passed or the values they
//! should carry changed. Salesforce and HubSpot alike, counted by their emulators.

mod common;

use common::Env;
use common::hubspot_crm::HubSpot;
use common::salesforce_crm::{Salesforce, jwt_connector, test_keypair};
use serde_json::json;

fn data(domains: &[&str]) -> String {
    domains
        .iter()
        .map(|d| {
            json!({"source": "scarf", "id": format!("{d}-1"), "kind": "download", "occurred_at": "2026-10-01T10:00:00Z",
                   "company_domain": d, "package": "oqldb", "version": "2.0.0"})
            .to_string()
                + "\n"
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

const SF_MAPPING: &str = "object: Account\nmatch: { crm_field: Website }\nfields:\n  OQL_Stage__c: { from: stage }\n";

fn salesforce_env(sf: &Salesforce) -> Env {
    sf.define_field("OQL_Stage__c", "string");
    sf.jwt_app("app-1", "int@example.com", &test_keypair().1);
    let env = Env::new();
    env.write("keys/sf.key", test_keypair().0);
    env.write("mappings/sf.yaml", SF_MAPPING);
    env.write("connectors/sf.yaml", jwt_connector(&sf.url, ""));
    let file = env.write("data.ndjson", data(&["found.com", "dup.com", "lost.com"]));
    env.ok(&["import", file.to_str().unwrap()]);
    env
}

#[test]
fn salesforce_an_unchanged_sync_with_unmatched_domains_makes_no_call() {
    let rt = runtime();
    let sf = rt.block_on(Salesforce::start());
    sf.add_account(&[("Name", "Found"), ("Website", "found.com")]);
    sf.add_account(&[("Name", "Dup"), ("Website", "dup.com")]);
    sf.add_account(&[("Name", "Dup (2)"), ("Website", "https://www.dup.com")]);
    let env = salesforce_env(&sf);
    let first = env.ok(&["sync", "--as-of", "2026-10-30"]);
    assert!(first.contains("1 accepted (0 created), 0 failed, 1 ambiguous, 1 not found"), "{first}");

    sf.clear_requests();
    let second = env.ok(&["sync", "--as-of", "2026-10-30"]);
    assert_eq!(sf.requests().len(), 0, "no call at all, not even a token: {:?}", sf.requests().iter().map(|r| &r.path).collect::<Vec<_>>());
    assert!(second.contains("0 planned, 0 sent") && second.contains("2 unmatched as last looked up"), "{second}");
    let log = env.ok(&["log", "--status", "not_found"]);
    assert_eq!(log.matches("lost.com").count(), 1, "logged once, not again: {log}");
    // A dry run (no call) shows them as the last lookups found them, not as new.
    let dry = env.ok(&["sync", "--dry-run", "--as-of", "2026-10-30"]);
    assert!(dry.contains("not found: investigation") && dry.contains("ambiguous: investigation") && !dry.contains("new:"), "{dry}");
    assert_eq!(sf.requests().len(), 0);

    // The companies' values change (they go inactive): the CRM is asked again.
    let third = env.ok(&["sync", "--as-of", "2026-12-15"]);
    assert!(third.contains("1 ambiguous, 1 not found"), "{third}");
    let queries: Vec<String> = sf.requests().iter().filter(|r| r.path.ends_with("/query")).map(|r| r.query.clone()).collect();
    assert!(queries.iter().any(|q| q.contains("lost.com")) && queries.iter().any(|q| q.contains("dup.com")), "{queries:?}");

    // `recheck_unmatched_hours: 0` asks on every run.
    env.write("mappings/sf.yaml", SF_MAPPING.replace("Website }", "Website, recheck_unmatched_hours: 0 }"));
    sf.clear_requests();
    let fourth = env.ok(&["sync", "--as-of", "2026-12-15"]);
    assert!(fourth.contains("1 ambiguous, 1 not found"), "{fourth}");
    assert!(sf.requests().iter().any(|r| r.path.ends_with("/query")));

    // A mapping that now creates missing accounts does not wait for the re-check.
    env.write("mappings/sf.yaml", SF_MAPPING.replace("Website }", "Website }\ncreate_missing: true"));
    let fifth = env.ok(&["sync", "--as-of", "2026-12-15"]);
    assert!(fifth.contains("1 accepted (1 created), 0 failed, 1 ambiguous, 0 not found"), "{fifth}");
}

#[test]
fn hubspot_an_unchanged_sync_with_unmatched_domains_makes_no_call() {
    let rt = runtime();
    let hs = rt.block_on(HubSpot::start());
    hs.accept_token("hs-token");
    hs.add_company(&[("domain", "found.com"), ("name", "Found")]);
    hs.add_company(&[("domain", "dup.com"), ("name", "Dup")]);
    hs.add_company(&[("domain", "www.dup.com"), ("name", "Dup (2)")]);
    let env = Env::new();
    env.write("mappings/hubspot.yaml", "object: companies\nmatch: { crm_field: domain }\nfields:\n  oql_stage: { from: stage }\n");
    env.write(
        "connectors/hubspot.yaml",
        format!("name: hubspot\nkind: hubspot\nschedule: \"0 */15 * * * *\"\nbase_url: {}\ntoken_env: HS_TOKEN\nmapping: mappings/hubspot.yaml\n", hs.url),
    );
    let file = env.write("data.ndjson", data(&["found.com", "dup.com", "lost.com"]));
    env.ok(&["import", file.to_str().unwrap()]);
    let sync = |as_of: &str| {
        let r = env.run_with(&["sync", "--as-of", as_of], &[("HS_TOKEN", "hs-token")]);
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        r.stdout
    };
    let first = sync("2026-10-30");
    assert!(first.contains("1 accepted (0 created), 0 failed, 1 ambiguous, 1 not found"), "{first}");
    hs.clear_requests();
    let second = sync("2026-10-30");
    assert_eq!(hs.requests().len(), 0, "{:?}", hs.requests().iter().map(|r| &r.path).collect::<Vec<_>>());
    assert!(second.contains("2 unmatched as last looked up"), "{second}");
    let third = sync("2026-12-15");
    assert!(third.contains("1 ambiguous, 1 not found"), "{third}");
    assert!(hs.requests().iter().any(|r| r.path.ends_with("/search")), "looked up again once their values changed");
}
