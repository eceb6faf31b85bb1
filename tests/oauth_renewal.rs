//! OAuth access tokens are minted again ahead of their expiry, from the token answer's
//! `expires_in` (HubSpot) or the org's session timeout (Salesforce, whose answers name
//! no lifetime), not after the API refused an expired one: HubSpot's usage guidelines
//! say a 401 is no valid sign that a new token is needed. The emulators mint tokens
//! that really expire, refuse expired ones with 401, and count every mint.

mod common;

use std::time::{Duration, Instant};

use common::Env;
use common::hubspot_crm::HubSpot;
use common::salesforce_crm::{Salesforce, test_keypair};
use serde_json::json;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn data(domains: &[String]) -> String {
    domains
        .iter()
        .map(|d| {
            json!({"source": "scarf", "id": d, "kind": "download", "occurred_at": "2026-10-01T10:00:00Z",
                   "company_domain": d, "package": "oqldb", "version": "2.0.0"})
            .to_string()
                + "\n"
        })
        .collect()
}

#[test]
fn hubspot_tokens_are_renewed_from_expires_in_before_they_expire() {
    let rt = runtime();
    let hs = rt.block_on(HubSpot::start());
    hs.oauth_client("client-1", "client-secret-1", "refresh-1");
    // Tokens live 3 s; a run paced at one request a second outlives several.
    hs.set_token_lifetime(Duration::from_secs(3));
    let domains: Vec<String> = (0..6).map(|i| format!("c{i}.com")).collect();
    let ids: Vec<String> = domains.iter().map(|d| hs.add_company(&[("domain", d)])).collect();
    let env = Env::new();
    env.write(
        "mappings/hubspot.yaml",
        "object: companies\nmatch: { crm_field: domain }\nfields:\n  oql_stage: { from: stage }\n  oql_score: { from: score, round: 0 }\n",
    );
    env.write(
        "connectors/hubspot.yaml",
        format!(
            "name: hubspot\nkind: hubspot\nschedule: \"0 0 * * * *\"\nbase_url: {}\nmapping: mappings/hubspot.yaml\n\
             rate_limit: {{ requests: 1, per_seconds: 1 }}\n\
             oauth:\n  client_id: client-1\n  client_secret_env: HS_SECRET\n  refresh_token_env: HS_REFRESH\n",
            hs.url
        ),
    );
    let file = env.write("data.ndjson", data(&domains));
    env.ok(&["import", file.to_str().unwrap()]);
    let started = Instant::now();
    let r = env.run_with(&["sync", "--as-of", "2026-10-30"], &[("HS_SECRET", "client-secret-1"), ("HS_REFRESH", "refresh-1")]);
    let took = started.elapsed();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("6 accepted"), "{}", r.stdout);
    assert!(ids.iter().all(|id| hs.company(id).unwrap()["oql_stage"] == "investigation"));

    assert!(took > Duration::from_secs(4), "the run outlived its first token ({took:?})");
    assert_eq!(hs.expired_token_refusals(), 0, "no request went out with an expired token");
    assert!(hs.tokens_minted() >= 2, "the token was renewed during the run ({} minted)", hs.tokens_minted());
    let mints: Vec<_> = hs.requests().into_iter().filter(|r| r.path.starts_with("/oauth/")).collect();
    assert!(mints.iter().all(|m| m.path == "/oauth/v3/token"), "OAuth v3 by default: {:?}", mints.iter().map(|m| &m.path).collect::<Vec<_>>());
    assert_eq!(mints[0].body["grant_type"], "refresh_token");
    assert_eq!((mints[0].body["client_id"].as_str(), mints[0].body["refresh_token"].as_str()), (Some("client-1"), Some("refresh-1")));
    // Renewed ahead of time, not once per request.
    assert!(hs.tokens_minted() <= took.as_secs() as usize, "{} tokens in {took:?}", hs.tokens_minted());
}

/// A Salesforce sync paced at one request a second, whose sessions end after 3 s.
fn salesforce_run(flow: &str) {
    let rt = runtime();
    let sf = rt.block_on(Salesforce::start());
    sf.define_field("OQL_Stage__c", "string");
    sf.set_session_timeout(Duration::from_secs(3));
    sf.set_page_size(1);
    let domains: Vec<String> = (0..5).map(|i| format!("c{i}.com")).collect();
    let ids: Vec<String> = domains.iter().map(|d| sf.add_account(&[("Name", d), ("Website", d)])).collect();
    let env = Env::new();
    let auth = match flow {
        "jwt_bearer" => {
            sf.jwt_app("app-1", "int@example.com", &test_keypair().1);
            env.write("keys/sf.key", test_keypair().0);
            format!("  flow: jwt_bearer\n  login_url: {}\n  client_id: app-1\n  username: int@example.com\n  private_key_file: keys/sf.key\n", sf.url)
        }
        "client_credentials" => {
            sf.client_credentials_app("app-1", "secret-1");
            format!("  flow: client_credentials\n  my_domain_url: {}\n  client_id: app-1\n  client_secret_env: SF_SECRET\n", sf.url)
        }
        _ => {
            sf.refresh_app("app-1", "secret-1", "refresh-1");
            format!("  flow: refresh_token\n  login_url: {}\n  client_id: app-1\n  client_secret_env: SF_SECRET\n  refresh_token_env: SF_REFRESH\n", sf.url)
        }
    };
    env.write("mappings/sf.yaml", "object: Account\nmatch: { crm_field: Website }\nfields:\n  OQL_Stage__c: { from: stage }\n");
    env.write(
        "connectors/sf.yaml",
        format!(
            "name: sf\nkind: salesforce\nschedule: \"0 0 * * * *\"\nmapping: mappings/sf.yaml\nsession_timeout: 3s\n\
             rate_limit: {{ requests: 1, per_seconds: 1 }}\nauth:\n{auth}"
        ),
    );
    let file = env.write("data.ndjson", data(&domains));
    env.ok(&["import", file.to_str().unwrap()]);
    let started = Instant::now();
    let r = env.run_with(&["sync", "--as-of", "2026-10-30"], &[("SF_SECRET", "secret-1"), ("SF_REFRESH", "refresh-1")]);
    let took = started.elapsed();
    assert_eq!(r.code, 0, "{flow}: {}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("5 accepted"), "{flow}: {}", r.stdout);
    assert!(ids.iter().all(|id| sf.account(id).unwrap()["OQL_Stage__c"] == "investigation"), "{flow}");
    assert!(took > Duration::from_secs(4), "{flow}: the run outlived its first session ({took:?})");
    let refused: Vec<_> = sf.requests().into_iter().filter(|r| r.status == 401).map(|r| r.path).collect();
    assert!(refused.is_empty(), "{flow}: requests went out with an ended session: {refused:?}");
    assert!(sf.tokens_issued() >= 2, "{flow}: the session was renewed during the run ({} minted)", sf.tokens_issued());
}

#[test]
fn salesforce_jwt_bearer_sessions_are_renewed_before_the_session_timeout() {
    salesforce_run("jwt_bearer");
}

#[test]
fn salesforce_client_credentials_sessions_are_renewed_before_the_session_timeout() {
    salesforce_run("client_credentials");
}

#[test]
fn salesforce_refresh_token_sessions_are_renewed_before_the_session_timeout() {
    salesforce_run("refresh_token");
}
