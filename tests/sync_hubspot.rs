//! `oql-sync sync` against a HubSpot emulator: the real binary, a fresh store, and an
//! axum server that speaks HubSpot's CRM v3 paths, bodies, status codes and rate-limit
//! headers (tests/common/hubspot.rs).

mod common;

use std::time::{Duration, Instant};

use common::Env;
use common::hubspot_crm::{Fault, HubSpot, Running};
use serde_json::{Value, json};

const TOKEN: &str = "pat-na1-test-0000-secret-token";

fn crm() -> Running {
    HubSpot::running(TOKEN)
}

/// `n` companies with one release download on 2026-09-15 (investigation until 60 days
/// later), and `mover.com`, whose download on 2026-09-01 turns it inactive on 2026-10-31:
/// between a sync at 10-30 and one at 10-31 only its stage changes.
fn activities(n: usize) -> String {
    let mut out = String::new();
    let mut line = |domain: &str, day: &str| {
        out.push_str(
            &json!({
                "source": "scarf", "id": format!("{domain}-{day}"), "kind": "download",
                "occurred_at": format!("{day}T10:00:00Z"), "company_domain": domain,
                "package": "oqldb", "version": "1.0.0",
            })
            .to_string(),
        );
        out.push('\n');
    };
    for i in 0..n {
        line(&format!("c{i}.com"), "2026-09-15");
    }
    line("mover.com", "2026-09-01");
    out
}

const MAPPING: &str = r#"
object: companies
match: { crm_field: domain }
stages: [investigation, experimentation, ongoing_usage, inactive]
fields:
  oql_stage:
    from: stage
    values: { interest: Interest, investigation: Investigation, experimentation: Experimentation,
              ongoing_usage: Ongoing Usage, inactive: Inactive }
  oql_score: { from: score, round: 0 }
  oql_last_activity: { from: last_seen, format: date }
triggers:
  - when: { to: inactive }
    action: { hubspot_list: "LIST" }
"#;

fn connector(url: &str, extra: &str) -> String {
    let retry = if extra.contains("retry:") { "" } else { "retry: { base_delay_ms: 20, max_delay_ms: 200 }\n" };
    format!(
        "name: hubspot\nkind: hubspot\nschedule: \"0 */15 * * * *\"\nbase_url: {url}\ntoken_env: HS_TEST_TOKEN\n\
         mapping: mappings/hubspot.yaml\n{retry}{extra}"
    )
}

/// A config dir with the HubSpot connector, the mapping and `n` companies imported.
fn setup(hs: &HubSpot, n: usize, extra: &str) -> (Env, String) {
    let env = Env::new();
    let list = hs.add_list("MANUAL");
    env.write("mappings/hubspot.yaml", MAPPING.replace("LIST", &list));
    env.write("connectors/hubspot.yaml", connector(&hs.url, extra));
    let data = env.write("data.ndjson", activities(n));
    env.ok(&["import", data.to_str().unwrap()]);
    (env, list)
}

fn sync(env: &Env, as_of: &str) -> common::Run {
    env.run_with(&["sync", "--as-of", as_of], &[("HS_TEST_TOKEN", TOKEN)])
}

fn sync_ok(env: &Env, as_of: &str) -> String {
    let r = sync(env, as_of);
    assert_eq!(r.code, 0, "sync failed:\n{}\n{}", r.stdout, r.stderr);
    r.stdout
}

fn seed(hs: &HubSpot, n: usize) -> Vec<String> {
    let mut ids: Vec<String> = (0..n).map(|i| hs.add_company(&[("domain", &format!("c{i}.com")), ("name", &format!("C{i}"))])).collect();
    ids.push(hs.add_company(&[("domain", "www.mover.com"), ("name", "Mover")]));
    hs.add_company(&[("domain", "unrelated.com"), ("name", "Unrelated")]);
    ids
}

fn calls(hs: &HubSpot, path: &str) -> Vec<common::hubspot_crm::Recorded> {
    hs.requests().into_iter().filter(|r| r.path == path).collect()
}

#[test]
fn first_sync_creates_the_properties_and_writes_exactly_the_mapped_fields() {
    let c = crm();
    let ids = seed(&c.hs, 250);
    let (env, _) = setup(&c.hs, 250, "");
    let out = sync_ok(&env, "2026-10-30");
    assert!(out.contains("hubspot: 251 planned, 251 sent, 251 accepted"), "{out}");

    // The custom properties, typed, in the `oql` group.
    let stage = c.hs.property("oql_stage").expect("oql_stage created");
    assert_eq!((stage["type"].as_str(), stage["groupName"].as_str()), (Some("enumeration"), Some("oql")));
    let options: Vec<&str> = stage["options"].as_array().unwrap().iter().map(|o| o["value"].as_str().unwrap()).collect();
    assert!(options.contains(&"Ongoing Usage") && options.contains(&"Inactive"), "{options:?}");
    assert_eq!(c.hs.property("oql_score").unwrap()["type"], "number");
    assert_eq!(c.hs.property("oql_last_activity").unwrap()["type"], "date");

    // Every matched company holds the mapped values; the unrelated one is untouched.
    let c7 = c.hs.company(&ids[7]).unwrap();
    assert_eq!(c7["oql_stage"], "Investigation");
    assert_eq!(c7["oql_score"], "5");
    assert_eq!(c7["oql_last_activity"], "2026-09-15");
    assert_eq!(c.hs.company(&ids[250]).unwrap()["oql_stage"], "Investigation", "www.mover.com matched mover.com");
    let unrelated = c.hs.companies().into_iter().find(|(_, p)| p["domain"] == "unrelated.com").unwrap();
    assert!(!unrelated.1.contains_key("oql_stage"));

    // Requests: bearer auth on every call, batches of at most 100, searches with IN.
    let all = c.hs.requests();
    assert!(all.iter().all(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}")[..])));
    let updates = calls(&c.hs, "/crm/v3/objects/companies/batch/update");
    let sizes: Vec<usize> = updates.iter().map(|r| r.body["inputs"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, [100, 100, 51]);
    assert_eq!(
        updates[0].body["inputs"][0]["properties"],
        json!({"oql_stage": "Investigation", "oql_score": "5", "oql_last_activity": "2026-09-15"})
    );
    let searches = calls(&c.hs, "/crm/v3/objects/companies/search");
    assert!(!searches.is_empty());
    for s in &searches {
        let filter = &s.body["filterGroups"][0]["filters"][0];
        assert_eq!((filter["propertyName"].as_str(), filter["operator"].as_str()), (Some("domain"), Some("IN")));
        assert!(filter["values"].as_array().unwrap().len() <= 100);
        assert!(s.body["limit"].as_u64().unwrap() <= 200);
    }
    // 251 domains, 50 a search: 6 searches, 3 updates, and the property setup.
    assert_eq!(searches.len(), 6);
}

#[test]
fn second_sync_without_changes_makes_no_write_calls() {
    let c = crm();
    seed(&c.hs, 30);
    let (env, _) = setup(&c.hs, 30, "");
    sync_ok(&env, "2026-10-30");
    c.hs.clear_requests();
    let out = sync_ok(&env, "2026-10-30");
    assert!(out.contains("0 planned, 0 sent"), "{out}");
    assert_eq!(c.hs.write_calls(), 0);
    assert!(c.hs.requests().is_empty(), "nothing to do means no call at all: {:?}", c.hs.requests().len());
}

#[test]
fn a_changed_stage_sends_one_field_of_one_company_and_fires_its_trigger_once() {
    let c = crm();
    let ids = seed(&c.hs, 40);
    let (env, list) = setup(&c.hs, 40, "");
    sync_ok(&env, "2026-10-30");
    c.hs.clear_requests();
    let out = sync_ok(&env, "2026-10-31");
    assert!(out.contains("1 planned, 1 sent, 1 accepted") && out.contains("1 triggers fired"), "{out}");
    let updates = calls(&c.hs, "/crm/v3/objects/companies/batch/update");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].body, json!({"inputs": [{"id": ids[40], "properties": {"oql_stage": "Inactive"}}]}));
    assert_eq!(c.hs.list_members(&list), [ids[40].clone()]);
    // Again: nothing changed, nothing fires.
    sync_ok(&env, "2026-10-31");
    let adds = calls(&c.hs, &format!("/crm/v3/lists/{list}/memberships/add"));
    assert_eq!(adds.len(), 1);
    assert_eq!(adds[0].body, json!([ids[40]]));
}

#[test]
fn a_trigger_fires_once_across_a_crash_between_the_crm_write_and_the_store_update() {
    let c = crm();
    let ids = seed(&c.hs, 5);
    let (env, list) = setup(&c.hs, 5, "");
    sync_ok(&env, "2026-10-30");
    // HubSpot applies the update, then the answer is slow; the process dies meanwhile.
    c.hs.fail_next("/crm/v3/objects/companies/batch/update", Fault::DelayAfterApply(Duration::from_secs(30)), 1);
    let mut child = env
        .command(&["sync", "--as-of", "2026-10-31"])
        .env("HS_TEST_TOKEN", TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while c.hs.company(&ids[5]).unwrap()["oql_stage"] != "Inactive" {
        assert!(started.elapsed() < Duration::from_secs(20), "the update never reached HubSpot");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(c.hs.list_members(&list).is_empty(), "the store never saw the write, so nothing fired yet");

    // The restart re-sends the unconfirmed write (an idempotent update), then fires once.
    let out = sync_ok(&env, "2026-10-31");
    assert!(out.contains("1 accepted") && out.contains("1 triggers fired"), "{out}");
    sync_ok(&env, "2026-10-31");
    assert_eq!(c.hs.list_members(&list), [ids[5].clone()]);
    assert_eq!(calls(&c.hs, &format!("/crm/v3/lists/{list}/memberships/add")).len(), 1);
}

#[test]
fn rate_limit_storms_slow_the_sync_but_lose_nothing() {
    let c = crm();
    let ids = seed(&c.hs, 120);
    let (env, _) = setup(&c.hs, 120, "");
    c.hs.fail_next("/crm/v3/objects/companies/batch/update", Fault::RateLimited { retry_after_secs: Some(1) }, 2);
    c.hs.fail_next("/crm/v3/objects/companies/search", Fault::RateLimited { retry_after_secs: None }, 3);
    let started = Instant::now();
    let out = sync_ok(&env, "2026-10-30");
    assert!(started.elapsed() >= Duration::from_secs(2), "Retry-After: 1 was honoured twice");
    assert!(out.contains("121 accepted") && out.contains("0 failed"), "{out}");
    assert!(ids.iter().all(|id| c.hs.company(id).unwrap()["oql_stage"] == "Investigation"));
    let log = env.ok(&["log", "--format", "json"]);
    let log: Value = serde_json::from_str(&log).unwrap();
    assert!(log["runs"][0]["rate_limit_waits"].as_i64().unwrap() >= 5, "{}", log["runs"][0]);
}

#[test]
fn the_configured_rate_is_never_exceeded() {
    let c = crm();
    seed(&c.hs, 600);
    // HubSpot's own limits, enforced: a 429 from them would mean we went over.
    c.hs.set_limits(100, 5);
    let (env, _) = setup(
        &c.hs,
        600,
        "rate_limit: { requests: 10, per_seconds: 1 }\nsearch_rate_limit: { requests: 2, per_seconds: 1 }\n",
    );
    let started = Instant::now();
    let out = sync_ok(&env, "2026-10-30");
    let elapsed = started.elapsed();
    assert!(out.contains("601 accepted"), "{out}");
    assert_eq!(c.hs.rate_limited_count(), 0, "HubSpot never had to say 429");
    assert!(c.hs.max_in_window("", Duration::from_secs(1)) <= 10, "{}", c.hs.max_in_window("", Duration::from_secs(1)));
    assert!(c.hs.max_in_window("/crm/v3/objects/companies/search", Duration::from_secs(1)) <= 2);
    eprintln!("601 records in {:.2}s with {} calls", elapsed.as_secs_f64(), c.hs.requests().len());
}

#[test]
fn partial_failures_are_retried_then_parked_as_dead_and_revived_on_request() {
    let c = crm();
    let ids = seed(&c.hs, 10);
    let (env, _) = setup(&c.hs, 10, "dead_after: 2\n");
    c.hs.reject_ids(&[&ids[3]]);
    let r = sync(&env, "2026-10-30");
    assert_eq!(r.code, 1, "a failed record fails the run: {}", r.stdout);
    assert!(r.stdout.contains("10 accepted") && r.stdout.contains("1 failed"), "{}", r.stdout);
    assert!(c.hs.company(&ids[3]).unwrap().get("oql_stage").is_none());
    assert_eq!(c.hs.company(&ids[4]).unwrap()["oql_stage"], "Investigation");

    // The next run sends only the failed record; its second failure parks it.
    c.hs.clear_requests();
    let r = sync(&env, "2026-10-30");
    assert!(r.stdout.contains("1 planned, 1 sent, 0 accepted") && r.stdout.contains("now dead: c3.com"), "{}", r.stdout);
    let updates = calls(&c.hs, "/crm/v3/objects/companies/batch/update");
    assert_eq!(updates[0].body["inputs"].as_array().unwrap().len(), 1);
    let dead = env.ok(&["log", "--status", "dead"]);
    assert!(dead.contains("c3.com") && dead.contains("after 2 attempts"), "{dead}");

    // Dead records are left alone until someone asks.
    c.hs.clear_requests();
    sync_ok(&env, "2026-10-30");
    assert_eq!(c.hs.write_calls(), 0);
    c.hs.reject_ids(&[]);
    let out = env.run_with(&["sync", "--as-of", "2026-10-30", "--retry-dead"], &[("HS_TEST_TOKEN", TOKEN)]);
    assert!(out.stdout.contains("1 accepted"), "{}", out.stdout);
    assert_eq!(c.hs.company(&ids[3]).unwrap()["oql_stage"], "Investigation");
    assert!(!env.ok(&["log", "--status", "dead"]).contains("c3.com"));
}

#[test]
fn a_domain_on_several_records_writes_none_and_is_logged_as_ambiguous() {
    let c = crm();
    seed(&c.hs, 3);
    let a = c.hs.add_company(&[("domain", "c1.com"), ("name", "C1 duplicate")]);
    let (env, _) = setup(&c.hs, 3, "");
    let out = sync_ok(&env, "2026-10-30");
    assert!(out.contains("1 ambiguous") && out.contains("3 accepted"), "{out}");
    let c1: Vec<_> = c.hs.companies().into_iter().filter(|(_, p)| p["domain"] == "c1.com").collect();
    assert_eq!(c1.len(), 2);
    assert!(c1.iter().all(|(_, p)| !p.contains_key("oql_stage")));
    let log = env.ok(&["log", "--status", "ambiguous"]);
    assert!(log.contains("c1.com") && log.contains(&a), "{log}");
}

#[test]
fn dry_runs_write_nothing_and_live_dry_runs_show_the_true_diff() {
    let c = crm();
    let ids = seed(&c.hs, 4);
    let (env, _) = setup(&c.hs, 4, "");
    let plan = env.run_with(&["sync", "--as-of", "2026-10-30", "--dry-run", "--format", "json"], &[("HS_TEST_TOKEN", TOKEN)]);
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(plan[0]["items"].as_array().unwrap().len(), 5);
    assert!(c.hs.requests().is_empty(), "a dry run against the store makes no call");
    assert_eq!(env.ok(&["log"]), "the sync log has no matching entries\n");

    sync_ok(&env, "2026-10-30");
    // Someone edits a record in HubSpot by hand.
    c.hs.set_property(&ids[2], "oql_stage", "Experimentation");
    c.hs.clear_requests();
    let stored = env.run_with(&["sync", "--as-of", "2026-10-30", "--dry-run"], &[("HS_TEST_TOKEN", TOKEN)]);
    assert!(stored.stdout.contains("0 companies"), "{}", stored.stdout);
    let live = env.run_with(&["sync", "--as-of", "2026-10-30", "--dry-run", "--live"], &[("HS_TEST_TOKEN", TOKEN)]);
    assert!(live.stdout.contains("1 companies, 1 fields would change"), "{}", live.stdout);
    assert!(live.stdout.contains("c2.com") && live.stdout.contains("oql_stage: Experimentation → Investigation"), "{}", live.stdout);
    assert_eq!(c.hs.write_calls(), 0);
    assert!(c.hs.requests().iter().all(|r| r.path.ends_with("/search") || r.path.ends_with("/batch/read")));
}

#[test]
fn a_bad_token_fails_clearly_and_never_prints_the_token() {
    let c = crm();
    seed(&c.hs, 2);
    let (env, _) = setup(&c.hs, 2, "");
    let r = env.run_with(&["sync", "--as-of", "2026-10-30"], &[("HS_TEST_TOKEN", "pat-na1-wrong-secret")]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("HubSpot refused the credentials (HTTP 401)"), "{}", r.stdout);
    assert!(!r.stdout.contains("wrong-secret") && !r.stderr.contains("wrong-secret"));
    let log = env.ok(&["log", "--status", "failed"]);
    assert!(log.contains("HTTP 401") && !log.contains("wrong-secret"), "{log}");

    let missing = env.run(&["sync", "--as-of", "2026-10-30"]);
    assert_eq!(missing.code, 1);
    assert!(missing.stdout.contains("`token_env`: environment variable HS_TEST_TOKEN is not set"), "{}", missing.stdout);
}

#[test]
fn a_property_type_mismatch_fails_those_records_and_nothing_else_stops() {
    let c = crm();
    let ids = seed(&c.hs, 3);
    // Someone made oql_last_activity a number in HubSpot.
    c.hs.define_property("oql_last_activity", "number", &[]);
    let (env, _) = setup(&c.hs, 3, "");
    env.write("mappings/file.yaml", "object: rows\nmatch: { crm_field: domain }\nfields:\n  stage: { from: stage }\n");
    env.write("connectors/file.yaml", "name: rows\nkind: file\nschedule: \"0 0 * * * *\"\nmapping: mappings/file.yaml\npath: out/rows.csv\n");
    let r = sync(&env, "2026-10-30");
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("hubspot: 4 planned, 4 sent, 0 accepted") && r.stdout.contains("4 failed"), "{}", r.stdout);
    assert!(r.stdout.contains("rows: 4 planned, 4 sent, 4 accepted"), "the file sink still ran: {}", r.stdout);
    let log = env.ok(&["log", "--status", "failed", "--connector", "hubspot"]);
    assert!(log.contains("VALIDATION_ERROR") && log.contains("oql_last_activity"), "{log}");
    assert!(c.hs.company(&ids[0]).unwrap().get("oql_stage").is_none());
}

#[test]
fn oauth_refresh_tokens_mint_access_tokens_and_mint_again_when_they_expire() {
    let c = crm();
    let ids = seed(&c.hs, 3);
    c.hs.oauth_client("client-1", "client-secret-1", "refresh-1");
    let env = Env::new();
    let list = c.hs.add_list("MANUAL");
    env.write("mappings/hubspot.yaml", MAPPING.replace("LIST", &list));
    env.write(
        "connectors/hubspot.yaml",
        format!(
            "name: hubspot\nkind: hubspot\nschedule: \"0 */15 * * * *\"\nbase_url: {}\nmapping: mappings/hubspot.yaml\n\
             oauth:\n  client_id: client-1\n  client_secret_env: HS_SECRET\n  refresh_token_env: HS_REFRESH\n",
            c.hs.url
        ),
    );
    let data = env.write("data.ndjson", activities(3));
    env.ok(&["import", data.to_str().unwrap()]);
    let envs = [("HS_SECRET", "client-secret-1"), ("HS_REFRESH", "refresh-1")];
    let r = env.run_with(&["sync", "--as-of", "2026-10-30"], &envs);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(c.hs.company(&ids[0]).unwrap()["oql_stage"], "Investigation");

    // The access token expires mid-run: the write gets 401, a new token is minted, and
    // the write goes through.
    c.hs.fail_next("/crm/v3/objects/companies/batch/update", Fault::Unauthorized, 1);
    let r = env.run_with(&["sync", "--as-of", "2026-10-31"], &envs);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let token_calls = calls(&c.hs, "/oauth/v3/token");
    assert_eq!(token_calls.len(), 3, "one token per process, and one after the 401");
    assert!(token_calls.iter().all(|t| t.body.to_string().contains("refresh_token")));
    assert_eq!(c.hs.company(&ids[3]).unwrap()["oql_stage"], "Inactive");
}

#[test]
fn create_missing_creates_unmatched_companies_with_every_field_once() {
    let c = crm();
    let ids = seed(&c.hs, 3);
    let env = Env::new();
    env.write("mappings/hubspot.yaml", MAPPING.replace("LIST", "1").replace("create_missing: false", "").replace("object: companies", "object: companies\ncreate_missing: true"));
    c.hs.add_list("MANUAL");
    env.write("connectors/hubspot.yaml", connector(&c.hs.url, ""));
    let data = env.write("data.ndjson", activities(5));
    env.ok(&["import", data.to_str().unwrap()]);
    let out = sync_ok(&env, "2026-10-30");
    assert!(out.contains("6 accepted (2 created)"), "{out}");
    let creates = calls(&c.hs, "/crm/v3/objects/companies/batch/create");
    assert_eq!(creates.len(), 1);
    let created: Vec<_> = c.hs.companies().into_iter().filter(|(id, _)| !ids.contains(id) && !id.is_empty()).filter(|(_, p)| p["domain"] != "unrelated.com").collect();
    let domains: Vec<&str> = created.iter().map(|(_, p)| p["domain"].as_str()).collect();
    assert_eq!(domains.len(), 2);
    assert!(domains.contains(&"c3.com") && domains.contains(&"c4.com"), "{domains:?}");
    for (_, p) in &created {
        assert_eq!((p["oql_stage"].as_str(), p["oql_score"].as_str(), p["name"].as_str()), ("Investigation", "5", p["domain"].as_str()));
    }
    c.hs.clear_requests();
    sync_ok(&env, "2026-10-30");
    assert_eq!(c.hs.write_calls(), 0, "created ids are cached: nothing to create twice");
}

#[test]
fn server_errors_timeouts_and_truncated_answers_are_retried_without_losing_records() {
    let c = crm();
    let ids = seed(&c.hs, 150);
    let (env, _) = setup(&c.hs, 150, "retry: { base_delay_ms: 20, max_delay_ms: 100, timeout_ms: 1000 }\n");
    c.hs.fail_next("/crm/v3/objects/companies/search", Fault::ServerError(502), 2);
    // Slower than the 1 s timeout: the client gives up on it and sends it again.
    c.hs.fail_next("/crm/v3/objects/companies/batch/update", Fault::Delay(Duration::from_secs(3)), 1);
    c.hs.fail_next("/crm/v3/objects/companies/batch/update", Fault::ServerError(503), 1);
    let out = sync_ok(&env, "2026-10-30");
    assert!(out.contains("151 accepted") && out.contains("0 failed"), "{out}");
    assert!(ids.iter().all(|id| c.hs.company(id).unwrap()["oql_stage"] == "Investigation"));

    // A truncated answer cannot be read: the record counts as failed and is sent again
    // next run (HubSpot already applied it; the update is idempotent).
    c.hs.fail_next("/crm/v3/objects/companies/batch/update", Fault::TruncatedJson, 1);
    c.hs.clear_requests();
    let r = sync(&env, "2026-10-31");
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("1 failed"), "{}", r.stdout);
    let out = sync_ok(&env, "2026-10-31");
    assert!(out.contains("1 accepted"), "{out}");
    sync_ok(&env, "2026-10-31");
    assert_eq!(calls(&c.hs, "/crm/v3/objects/companies/batch/update").len(), 2);
    assert_eq!(c.hs.company(&ids[150]).unwrap()["oql_stage"], "Inactive");
    let failed = env.ok(&["log", "--status", "failed"]);
    assert!(failed.contains("mover.com") && failed.contains("cannot read the response"), "{failed}");
}

/// A config whose mapping creates the companies HubSpot lacks.
fn setup_creating(hs: &HubSpot, n: usize, extra: &str) -> (Env, String) {
    let env = Env::new();
    let list = hs.add_list("MANUAL");
    env.write("mappings/hubspot.yaml", MAPPING.replace("LIST", &list).replace("object: companies", "object: companies\ncreate_missing: true"));
    env.write("connectors/hubspot.yaml", connector(&hs.url, extra));
    let data = env.write("data.ndjson", activities(n));
    env.ok(&["import", data.to_str().unwrap()]);
    (env, list)
}

#[test]
fn every_request_body_fits_hubspots_published_schemas() {
    let c = crm();
    // The emulator holds bodies to the spec: a batch create input without the required
    // `associations` is refused the way HubSpot refuses it.
    let problem = common::hubspot_crm::schema::check(
        &common::hubspot_crm::schema::BATCH_CREATE,
        &json!({"inputs": [{"properties": {"domain": "a.com"}}]}),
    );
    assert!(problem.as_deref().is_some_and(|p| p.contains("[associations]")), "{problem:?}");
    let search = json!({"filterGroups": [], "properties": [], "sorts": [{"propertyName": "hs_object_id"}], "limit": 10});
    let problem = common::hubspot_crm::schema::check(&common::hubspot_crm::schema::SEARCH, &search);
    assert!(problem.as_deref().is_some_and(|p| p.contains("[after]")), "{problem:?}");
    let read = json!({"inputs": [{"id": 1}], "properties": []});
    let problem = common::hubspot_crm::schema::check(&common::hubspot_crm::schema::BATCH_READ, &read).unwrap_or_default();
    assert!(problem.contains("[propertiesWithHistory]") && problem.contains("`.inputs[0].id`"), "{problem}");

    // A run that uses every kind of request: properties and their group, search, batch
    // create and update, list membership; then a live dry run (batch read).
    let ids = seed(&c.hs, 3);
    let (env, list) = setup_creating(&c.hs, 6, "");
    let out = sync_ok(&env, "2026-10-30");
    assert!(out.contains("7 accepted (3 created)"), "{out}");
    let out = sync_ok(&env, "2026-10-31");
    assert!(out.contains("1 accepted") && out.contains("1 triggers fired"), "{out}");
    assert_eq!(c.hs.list_members(&list), [ids[3].clone()]);
    c.hs.set_property(&ids[0], "oql_stage", "Experimentation");
    let live = env.run_with(&["sync", "--as-of", "2026-10-31", "--dry-run", "--live"], &[("HS_TEST_TOKEN", TOKEN)]);
    assert!(live.stdout.contains("oql_stage: Experimentation → Investigation"), "{}\n{}", live.stdout, live.stderr);

    let all = c.hs.requests();
    for path in ["/batch/create", "/batch/update", "/batch/read", "/search", "/groups", "/memberships/add"] {
        assert!(all.iter().any(|r| r.path.ends_with(path)), "no {path} request was made");
    }
    let refused: Vec<String> = all.iter().filter(|r| r.status == 400).map(|r| format!("{} {}", r.method, r.path)).collect();
    assert!(refused.is_empty(), "HubSpot refused bodies: {refused:?}");
    let create = all.iter().find(|r| r.path == "/crm/v3/objects/companies/batch/create").unwrap();
    assert!(create.body["inputs"].as_array().unwrap().iter().all(|i| i["associations"] == json!([])), "{}", create.body);
    let read = all.iter().find(|r| r.path.ends_with("/batch/read")).unwrap();
    assert_eq!(read.body["propertiesWithHistory"], json!([]));
}

#[test]
fn a_create_hubspot_refuses_fails_only_its_own_record_in_one_call() {
    let c = crm();
    seed(&c.hs, 2);
    c.hs.reject_domains(&["c4.com"]);
    let (env, _) = setup_creating(&c.hs, 8, "");
    let r = sync(&env, "2026-10-30");
    assert_eq!(r.code, 1, "a refused record fails the run: {}", r.stdout);
    assert!(r.stdout.contains("8 accepted (5 created), 1 failed"), "{}", r.stdout);
    // One request: HubSpot named the refused input by its trace id (207), so nothing was
    // split and sent again.
    let creates = calls(&c.hs, "/crm/v3/objects/companies/batch/create");
    assert_eq!(creates.len(), 1, "{:?}", creates.iter().map(|r| r.status).collect::<Vec<_>>());
    assert_eq!(creates[0].status, 207);
    let traces: Vec<&str> = creates[0].body["inputs"].as_array().unwrap().iter().map(|i| i["objectWriteTraceId"].as_str().unwrap()).collect();
    assert_eq!(traces.len(), 6);
    assert_eq!(traces.iter().collect::<std::collections::HashSet<_>>().len(), 6, "trace ids are unique in a request");
    let failed = env.ok(&["log", "--status", "failed"]);
    assert!(failed.contains("c4.com") && failed.contains("Blocked by a validation rule"), "{failed}");
    for d in ["c2.com", "c3.com", "c5.com", "c6.com", "c7.com"] {
        let found = c.hs.companies().into_iter().find(|(_, p)| p["domain"] == d).map(|(_, p)| p["oql_stage"].clone());
        assert_eq!(found.as_deref(), Some("Investigation"), "{d}");
    }
    assert!(!c.hs.companies().iter().any(|(_, p)| p["domain"] == "c4.com"));
}

#[test]
fn a_429_with_retry_after_waits_what_the_server_says_not_the_whole_window() {
    let c = crm();
    seed(&c.hs, 5);
    let (env, _) = setup(&c.hs, 5, "");
    // HubSpot's refusal says come back in 1 s, and its headers say the ten-second window
    // is spent (remaining 0, interval 10 000 ms).
    c.hs.fail_next("/crm/v3/objects/companies/batch/update", Fault::RateLimited { retry_after_secs: Some(1) }, 1);
    let started = Instant::now();
    let out = sync_ok(&env, "2026-10-30");
    let elapsed = started.elapsed();
    assert!(out.contains("6 accepted"), "{out}");
    let updates = calls(&c.hs, "/crm/v3/objects/companies/batch/update");
    assert_eq!(updates.iter().map(|r| r.status).collect::<Vec<_>>(), [429, 200]);
    let gap = updates[1].at.duration_since(updates[0].at);
    assert!(gap >= Duration::from_millis(950), "Retry-After: 1 was honoured: {gap:?}");
    assert!(gap < Duration::from_secs(3), "the retry waited {gap:?}, not the 1 s HubSpot asked for");
    assert!(elapsed < Duration::from_secs(6), "the run took {elapsed:?}");
}

#[test]
fn server_waits_and_pacing_waits_are_counted_apart_in_the_summary_the_log_and_metrics() {
    let c = crm();
    seed(&c.hs, 150);
    // A slow configured pace (own waits), and two refusals by HubSpot (server waits).
    let (env, _) = setup(&c.hs, 150, "rate_limit: { requests: 5, per_seconds: 1 }\nsearch_rate_limit: { requests: 2, per_seconds: 1 }\n");
    c.hs.fail_next("/crm/v3/objects/companies/batch/update", Fault::RateLimited { retry_after_secs: Some(1) }, 2);
    let out = sync_ok(&env, "2026-10-30");
    assert!(out.contains("151 accepted"), "{out}");
    let summary = out.lines().find(|l| l.starts_with("hubspot:")).unwrap();
    assert!(summary.contains(" 2 server rate-limit waits, "), "{summary}");
    let pacing: i64 = summary.rsplit(", ").next().unwrap().trim_end_matches(" pacing waits").parse().unwrap();
    assert!(pacing >= 3, "{summary}");

    let log: Value = serde_json::from_str(&env.ok(&["log", "--format", "json"])).unwrap();
    let run = &log["runs"][0];
    assert_eq!(run["server_waits"], 2, "{run}");
    assert_eq!(run["pacing_waits"], pacing, "{run}");
    assert_eq!(run["rate_limit_waits"], 2 + pacing, "{run}");
    let table = env.ok(&["log", "--wide"]);
    let header = table.lines().next().unwrap();
    assert!(header.contains("server waits") && header.contains("pacing"), "{table}");

    // /metrics carries both, per connector.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut daemon = env
        .command(&["run", "--listen", &format!("127.0.0.1:{port}")])
        .env("HS_TEST_TOKEN", TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let metrics = loop {
        assert!(started.elapsed() < Duration::from_secs(30), "no /metrics");
        std::thread::sleep(Duration::from_millis(200));
        let got = c.rt.block_on(async { reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.ok()?.text().await.ok() });
        if let Some(text) = got.filter(|t| t.contains("oql_runs_total")) {
            break text;
        }
    };
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert!(metrics.contains("oql_server_waits_total{connector=\"hubspot\"} 2"), "{metrics}");
    assert!(metrics.contains(&format!("oql_pacing_waits_total{{connector=\"hubspot\"}} {pacing}")), "{metrics}");
}

/// The mapping, with its list trigger firing for companies entering investigation (every
/// company of `activities` on its first sync, which `first_sync: fire` counts).
fn on_investigation(env: &Env, list: &str, create: bool) {
    let mut mapping = format!("first_sync: fire\n{}", MAPPING.replace("LIST", list).replace("{ to: inactive }", "{ to: investigation }"));
    if create {
        mapping = mapping.replace("object: companies", "object: companies\ncreate_missing: true");
    }
    env.write("mappings/hubspot.yaml", mapping);
}

#[test]
fn a_list_trigger_fires_in_the_run_that_created_the_company() {
    let c = crm();
    let ids = seed(&c.hs, 2);
    let (env, list) = setup_creating(&c.hs, 5, "");
    on_investigation(&env, &list, true);
    let out = sync_ok(&env, "2026-10-30");
    assert!(out.contains("6 accepted (3 created)") && out.contains("6 triggers fired;"), "{out}");
    let mut members = c.hs.list_members(&list);
    members.sort();
    let mut expected: Vec<String> = c
        .hs
        .companies()
        .into_iter()
        .filter(|(_, p)| p.get("oql_stage").is_some_and(|s| s == "Investigation"))
        .map(|(id, _)| id)
        .collect();
    expected.sort();
    assert_eq!(expected.len(), 6);
    assert!(expected.contains(&ids[0]));
    assert_eq!(members, expected, "the 3 companies created in this run are members too");
    assert!(env.ok(&["log", "--status", "failed"]).contains("no matching entries"), "no trigger failed");
    // Nothing is left to fire next run.
    c.hs.clear_requests();
    let out = sync_ok(&env, "2026-10-30");
    assert!(out.contains("0 triggers fired"), "{out}");
    assert!(c.hs.requests().is_empty());
}

#[test]
fn list_triggers_add_every_company_of_a_run_in_one_call() {
    let c = crm();
    let ids = seed(&c.hs, 145);
    let (env, list) = setup(&c.hs, 145, "");
    on_investigation(&env, &list, false);
    let out = sync_ok(&env, "2026-10-30");
    assert!(out.contains("146 accepted") && out.contains("146 triggers fired;"), "{out}");
    let adds = calls(&c.hs, &format!("/crm/v3/lists/{list}/memberships/add"));
    assert_eq!(adds.len(), 1, "146 firings, one membership call");
    assert_eq!(adds[0].body.as_array().unwrap().len(), 146);
    let mut members = c.hs.list_members(&list);
    members.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(members, want);
    assert_eq!(calls(&c.hs, &format!("/crm/v3/lists/{list}")).len(), 1, "the list is read once");
}

#[test]
fn created_records_without_their_trace_id_are_matched_by_domain() {
    let c = crm();
    seed(&c.hs, 1);
    c.hs.omit_trace_ids();
    let (env, _) = setup_creating(&c.hs, 4, "");
    let out = sync_ok(&env, "2026-10-30");
    assert!(out.contains("5 accepted (3 created), 0 failed"), "{out}");
    c.hs.clear_requests();
    let out = sync_ok(&env, "2026-10-30");
    assert!(out.contains("0 planned"), "the created ids were cached: {out}");
    assert_eq!(c.hs.write_calls(), 0);
}
