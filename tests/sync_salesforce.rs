//! `oql-sync sync` against the Salesforce emulator: auth flows, matching on Website and
//! by external id, per-record results, the daily API allocation, and trigger actions.

mod common;

use common::Env;
use common::salesforce_crm::{Fault, Salesforce, test_keypair};
use serde_json::json;

struct Org {
    sf: Salesforce,
    _rt: tokio::runtime::Runtime,
}

fn org() -> Org {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let sf = rt.block_on(Salesforce::start());
    sf.define_field("OQL_Stage__c", "string");
    sf.define_field("OQL_Score__c", "double");
    sf.define_field("OQL_Last_Activity__c", "date");
    sf.define_external_id("OQL_Domain__c");
    Org { sf, _rt: rt }
}

const MAPPING: &str = "object: Account\nmatch: { crm_field: Website }\nfields:\n  OQL_Stage__c: { from: stage }\n  OQL_Score__c: { from: score, round: 0 }\n  OQL_Last_Activity__c: { from: last_seen }\n";

fn data(domains: &[(&str, &str)]) -> String {
    domains
        .iter()
        .map(|(d, day)| {
            json!({"source": "scarf", "id": format!("{d}-{day}"), "kind": "download", "occurred_at": format!("{day}T10:00:00Z"),
                   "company_domain": d, "package": "oqldb", "version": "2.0.0"})
            .to_string()
                + "\n"
        })
        .collect()
}

fn jwt_connector(url: &str, extra: &str) -> String {
    common::salesforce_crm::jwt_connector(url, &format!("retry: {{ base_delay_ms: 10, max_delay_ms: 50 }}\n{extra}"))
}

fn setup(o: &Org, mapping: &str, extra: &str, companies: &[(&str, &str)]) -> Env {
    o.sf.jwt_app("app-1", "int@example.com", &test_keypair().1);
    let env = Env::new();
    env.write("keys/sf.key", test_keypair().0);
    env.write("mappings/sf.yaml", mapping);
    env.write("connectors/sf.yaml", jwt_connector(&o.sf.url, extra));
    let file = env.write("data.ndjson", data(companies));
    env.ok(&["import", file.to_str().unwrap()]);
    env
}

#[test]
fn accounts_are_matched_on_website_and_written_with_typed_values() {
    let o = org();
    let acme = o.sf.add_account(&[("Name", "Acme"), ("Website", "https://www.acme.com/en")]);
    let initech = o.sf.add_account(&[("Name", "Initech"), ("Website", "initech.io")]);
    o.sf.add_account(&[("Name", "Not Acme"), ("Website", "notacme.com")]);
    o.sf.set_page_size(1);
    let env = setup(&o, MAPPING, "", &[("acme.com", "2026-10-01"), ("initech.io", "2026-10-02"), ("unknown.org", "2026-10-03")]);
    let out = env.ok(&["sync", "--as-of", "2026-10-30"]);
    assert!(out.contains("2 accepted (0 created), 0 failed, 0 ambiguous, 1 not found"), "{out}");
    let a = o.sf.account(&acme).unwrap();
    assert_eq!((a["OQL_Stage__c"].clone(), a["OQL_Score__c"].clone(), a["OQL_Last_Activity__c"].clone()), (json!("investigation"), json!(5), json!("2026-10-01")));
    assert_eq!(o.sf.account(&initech).unwrap()["OQL_Stage__c"], "investigation");
    let writes: Vec<_> = o.sf.requests().into_iter().filter(|r| r.path.ends_with("/composite/sobjects")).collect();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].method, "PATCH");
    assert_eq!(writes[0].body["allOrNone"], false);
    assert_eq!(writes[0].body["records"][0]["attributes"]["type"], "Account");
    let queries = o.sf.requests().into_iter().filter(|r| r.path.contains("/query")).count();
    assert!(queries >= 3, "one row a page: nextRecordsUrl was followed ({queries} query calls)");
    let log = env.ok(&["log", "--status", "not_found"]);
    assert!(log.contains("unknown.org"), "{log}");
}

#[test]
fn external_id_upserts_create_and_update_without_lookups() {
    let o = org();
    let mapping = MAPPING.replace("match: { crm_field: Website }", "match: { external_id: OQL_Domain__c }\ncreate_missing: true");
    let env = setup(&o, &mapping, "", &[("acme.com", "2026-10-01"), ("initech.io", "2026-10-02")]);
    let out = env.ok(&["sync", "--as-of", "2026-10-30"]);
    assert!(out.contains("2 accepted (2 created)"), "{out}");
    assert!(o.sf.requests().iter().all(|r| !r.path.contains("/query")), "upserts need no query");
    let upsert = o.sf.requests().into_iter().find(|r| r.path.ends_with("/composite/sobjects/Account/OQL_Domain__c")).unwrap();
    assert_eq!(upsert.method, "PATCH");
    assert_eq!(upsert.body["records"][0]["OQL_Domain__c"], "acme.com");
    let accounts = o.sf.accounts();
    assert_eq!(accounts.len(), 2);
    // A later change upserts onto the same accounts.
    let out = env.ok(&["sync", "--as-of", "2026-12-15"]);
    assert!(out.contains("2 accepted (0 created)"), "{out}");
    assert_eq!(o.sf.accounts().len(), 2);
    assert!(o.sf.accounts().iter().all(|(_, a)| a["OQL_Stage__c"] == "inactive"));
}

#[test]
fn per_record_errors_land_the_rest_of_the_batch() {
    let o = org();
    let gone = o.sf.add_account(&[("Website", "gone.com")]);
    let fine = o.sf.add_account(&[("Website", "fine.com")]);
    let blocked = o.sf.add_account(&[("Website", "blocked.com")]);
    let env = setup(&o, MAPPING, "", &[("gone.com", "2026-10-01"), ("fine.com", "2026-10-01"), ("blocked.com", "2026-10-01")]);
    o.sf.reject_ids(&[&blocked]);
    let first = env.run(&["sync", "--as-of", "2026-10-30"]);
    assert!(first.stdout.contains("2 accepted") && first.stdout.contains("1 failed"), "{}", first.stdout);
    o.sf.delete_account(&gone);
    // The account is deleted after its id was cached: the write says ENTITY_IS_DELETED.
    let second = env.run(&["sync", "--as-of", "2026-12-15"]);
    assert_eq!(second.code, 1);
    assert!(second.stdout.contains("1 accepted") && second.stdout.contains("2 failed"), "{}", second.stdout);
    assert_eq!(o.sf.account(&fine).unwrap()["OQL_Stage__c"], "inactive");
    let log = env.ok(&["log", "--status", "failed"]);
    assert!(log.contains("ENTITY_IS_DELETED: entity is deleted"), "{log}");
    assert!(log.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION: Blocked by a validation rule"), "{log}");
    // The deleted account's id is forgotten: the next run looks for the domain again.
    let third = env.run(&["sync", "--as-of", "2026-12-15"]);
    assert!(third.stdout.contains("1 not found"), "{}", third.stdout);
}

fn rest_calls(o: &Org, path_end: &str) -> usize {
    o.sf.requests().iter().filter(|r| r.path.starts_with("/services/data/") && r.path.ends_with(path_end)).count()
}

fn failed_records(env: &Env) -> usize {
    let log: serde_json::Value = serde_json::from_str(&env.ok(&["log", "--status", "failed", "--format", "json"])).unwrap();
    log["records"].as_array().map_or(0, Vec::len)
}

#[test]
fn a_mapping_the_org_cannot_take_stops_the_run_before_any_write_naming_every_field() {
    let o = org();
    o.sf.define_field("OQL_Score__c", "string");
    let companies: Vec<(String, &str)> = (0..103).map(|i| (format!("c{i}.com"), "2026-10-01")).collect();
    for (d, _) in &companies {
        o.sf.add_account(&[("Website", d)]);
    }
    let companies: Vec<(&str, &str)> = companies.iter().map(|(d, day)| (d.as_str(), *day)).collect();
    let mapping = format!("{MAPPING}  OQL_Tier__c: {{ from: peak_stage }}\n");
    let env = setup(&o, &mapping, "", &companies);
    for _ in 0..2 {
        o.sf.clear_requests();
        let r = env.run(&["sync", "--as-of", "2026-10-30"]);
        assert_eq!(r.code, 1, "{}", r.stdout);
        assert!(
            r.stdout.contains("configuration error: Salesforce Account does not fit the mapping: ")
                && r.stdout.contains("OQL_Tier__c does not exist")
                && r.stdout.contains("OQL_Score__c is of type string, which does not take a number"),
            "{}",
            r.stdout
        );
        assert_eq!(o.sf.write_calls(), 0, "nothing written, nothing bisected");
        assert_eq!(rest_calls(&o, ""), 2, "the daily limits and one describe");
    }
    assert_eq!(failed_records(&env), 0, "no record is at fault, none walks toward dead");
    // A live dry run says the same, from the describe (no failed query).
    let dry = env.run(&["sync", "--dry-run", "--live", "--wide", "--as-of", "2026-10-30"]);
    assert!(dry.stdout.contains("configuration error: Salesforce Account does not fit the mapping") && dry.stdout.contains("OQL_Tier__c does not exist"), "{}", dry.stdout);
}

#[test]
fn the_describe_is_cached_by_mapping_and_a_field_removed_later_stops_the_run_without_bisecting() {
    let o = org();
    let companies: Vec<(String, &str)> = (0..10).map(|i| (format!("c{i}.com"), "2026-10-01")).collect();
    for (d, _) in &companies {
        o.sf.add_account(&[("Website", d)]);
    }
    let companies: Vec<(&str, &str)> = companies.iter().map(|(d, day)| (d.as_str(), *day)).collect();
    let env = setup(&o, MAPPING, "", &companies);
    assert!(env.ok(&["sync", "--as-of", "2026-10-30"]).contains("10 accepted"));
    assert_eq!(rest_calls(&o, "/describe"), 1);

    // An admin deletes a mapped field after the check passed: the write is refused whole
    // (INVALID_FIELD), once, and the run stops without charging the records.
    o.sf.remove_field("OQL_Stage__c");
    o.sf.clear_requests();
    let r = env.run(&["sync", "--as-of", "2026-12-15"]);
    assert_eq!(r.code, 1);
    assert_eq!(rest_calls(&o, "/describe"), 0, "the check is remembered for this mapping");
    assert_eq!(rest_calls(&o, "/composite/sobjects"), 1, "not bisected: {}", r.stdout);
    assert!(r.stdout.contains("INVALID_FIELD") && r.stdout.contains("oql-sync check --live"), "{}", r.stdout);
    assert_eq!(failed_records(&env), 0);

    // The next run describes again and names the field before writing.
    o.sf.clear_requests();
    let r = env.run(&["sync", "--as-of", "2026-12-15"]);
    assert!(r.stdout.contains("OQL_Stage__c does not exist"), "{}", r.stdout);
    assert_eq!((rest_calls(&o, "/describe"), rest_calls(&o, "/composite/sobjects")), (1, 0));

    // A changed mapping is checked anew.
    o.sf.define_field("OQL_Stage__c", "string");
    env.write("mappings/sf.yaml", MAPPING.replace("round: 0", "round: 1"));
    o.sf.clear_requests();
    assert!(env.ok(&["sync", "--as-of", "2026-12-15"]).contains("10 accepted"));
    assert_eq!(rest_calls(&o, "/describe"), 1);
}

#[test]
fn the_daily_allocation_reserve_pauses_the_connector_and_it_resumes_later() {
    let o = org();
    for i in 0..450 {
        o.sf.add_account(&[("Website", &format!("c{i}.com"))]);
    }
    let companies: Vec<(String, &str)> = (0..450).map(|i| (format!("c{i}.com"), "2026-10-01")).collect();
    let companies: Vec<(&str, &str)> = companies.iter().map(|(d, day)| (d.as_str(), *day)).collect();
    let env = setup(&o, MAPPING, "api_reserve_percent: 20\n", &companies);
    // 100 calls a day, 72 used, 20 kept in reserve: the limits check, the describe, 5
    // queries and one write fit.
    o.sf.set_daily_limit(100, 72);
    let r = env.run(&["sync", "--as-of", "2026-10-30"]);
    assert_eq!(r.code, 0, "a pause is not a failure: {}", r.stdout);
    assert!(r.stdout.contains("paused: daily API allocation: 80 of 100 calls used; 20% is kept in reserve"), "{}", r.stdout);
    assert!(r.stdout.contains("200 accepted"), "{}", r.stdout);
    let runs = env.ok(&["log", "--status", "paused"]);
    assert!(runs.contains("paused"), "{runs}");
    // A new day: the rest goes out, nothing twice.
    o.sf.set_daily_limit(100, 0);
    let r = env.run(&["sync", "--as-of", "2026-10-30"]);
    assert!(r.stdout.contains("250 planned, 250 sent, 250 accepted"), "{}", r.stdout);
}

#[test]
fn request_limit_exceeded_pauses_instead_of_failing() {
    let o = org();
    o.sf.add_account(&[("Website", "acme.com")]);
    let env = setup(&o, MAPPING, "", &[("acme.com", "2026-10-01")]);
    o.sf.set_daily_limit(100, 100);
    let r = env.run(&["sync", "--as-of", "2026-10-30"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("REQUEST_LIMIT_EXCEEDED") && r.stdout.contains("paused until the allocation renews"), "{}", r.stdout);
    assert_eq!(o.sf.requests().iter().filter(|r| r.path.starts_with("/services/data/")).count(), 1, "no retry loop");
    let runs = env.ok(&["log", "--status", "paused"]);
    assert!(runs.contains("REQUEST_LIMIT_EXCEEDED"), "{runs}");
}

#[test]
fn campaign_and_task_triggers_reach_the_account() {
    let o = org();
    let acme = o.sf.add_account(&[("Website", "acme.com"), ("OwnerId", "005OWNER0000001AAA")]);
    let c1 = o.sf.add_contact(&acme);
    let c2 = o.sf.add_contact(&acme);
    let campaign = o.sf.add_campaign();
    let mapping = format!(
        "{MAPPING}first_sync: fire\ntriggers:\n  - when: {{ to: investigation }}\n    action: {{ salesforce_campaign: {{ id: \"{campaign}\", status: Responded }} }}\n  - when: {{ to: investigation }}\n    action: {{ salesforce_task: {{ subject: \"New OQL lead: {{{{ company }}}} ({{{{ trend }}}})\" }} }}\n"
    );
    let env = setup(&o, &mapping, "", &[("acme.com", "2026-10-01")]);
    let out = env.ok(&["sync", "--as-of", "2026-10-30"]);
    assert!(out.contains("2 triggers fired"), "{out}");
    let mut members = o.sf.campaign_members(&campaign);
    members.sort();
    let mut expected = vec![(c1, "Responded".to_string()), (c2, "Responded".to_string())];
    expected.sort();
    assert_eq!(members, expected);
    let tasks = o.sf.tasks();
    assert_eq!(tasks.len(), 1);
    assert_eq!((tasks[0]["WhatId"].as_str(), tasks[0]["OwnerId"].as_str()), (Some(acme.as_str()), Some("005OWNER0000001AAA")));
    assert_eq!(tasks[0]["Subject"], "New OQL lead: acme.com (new)", "the subject is a template");
}

#[test]
fn expired_sessions_mint_a_new_token_once_and_go_on() {
    let o = org();
    let acme = o.sf.add_account(&[("Website", "acme.com")]);
    o.sf.client_credentials_app("cc-app", "cc-secret");
    let env = Env::new();
    env.write("mappings/sf.yaml", MAPPING);
    env.write(
        "connectors/sf.yaml",
        format!("name: sf\nkind: salesforce\nschedule: \"0 0 * * * *\"\nmapping: mappings/sf.yaml\nauth:\n  flow: client_credentials\n  my_domain_url: {}\n  client_id: cc-app\n  client_secret_env: SF_SECRET\n", o.sf.url),
    );
    let file = env.write("data.ndjson", data(&[("acme.com", "2026-10-01")]));
    env.ok(&["import", file.to_str().unwrap()]);
    o.sf.fail_next("/services/data/v64.0/composite/sobjects", Fault::SessionExpired, 1);
    let r = env.run_with(&["sync", "--as-of", "2026-10-30"], &[("SF_SECRET", "cc-secret")]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(o.sf.tokens_issued(), 2, "one token, and one more after INVALID_SESSION_ID");
    assert_eq!(o.sf.account(&acme).unwrap()["OQL_Stage__c"], "investigation");
    let wrong = env.run_with(&["sync", "--as-of", "2026-12-15"], &[("SF_SECRET", "not-the-secret")]);
    assert_eq!(wrong.code, 1);
    assert!(wrong.stdout.contains("OAuth token request failed: invalid_grant"), "{}", wrong.stdout);
    assert!(!wrong.stdout.contains("not-the-secret") && !wrong.stderr.contains("not-the-secret"));
}

#[test]
fn a_missing_or_broken_key_file_is_a_clear_error() {
    let o = org();
    let env = setup(&o, MAPPING, "", &[("acme.com", "2026-10-01")]);
    env.write("keys/sf.key", "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n");
    let r = env.run(&["sync", "--as-of", "2026-10-30"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("`auth.private_key_file`: cannot read") && r.stdout.contains("not an RSA private key in PEM form"), "{}", r.stdout);
    std::fs::remove_file(env.path().join("keys/sf.key")).unwrap();
    let r = env.run(&["sync", "--as-of", "2026-10-30"]);
    assert!(r.stdout.contains("keys/sf.key") && r.stdout.contains("not found"), "{}", r.stdout);
}

#[test]
fn a_request_level_error_is_bisected_so_the_good_records_land() {
    let o = org();
    let ids: Vec<String> = (0..10).map(|i| o.sf.add_account(&[("Website", &format!("c{i}.com"))])).collect();
    let companies: Vec<(String, &str)> = (0..10).map(|i| (format!("c{i}.com"), "2026-10-01")).collect();
    let companies: Vec<(&str, &str)> = companies.iter().map(|(d, day)| (d.as_str(), *day)).collect();
    let env = setup(&o, MAPPING, "", &companies);
    o.sf.poison_ids(&[&ids[6]]);
    let r = env.run(&["sync", "--as-of", "2026-10-30"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("9 accepted") && r.stdout.contains("1 failed"), "{}", r.stdout);
    assert!(r.stdout.contains("c6.com: HTTP 400: JSON_PARSER_ERROR"), "{}", r.stdout);
    assert!(ids.iter().enumerate().all(|(i, id)| (i == 6) == o.sf.account(id).unwrap().get("OQL_Stage__c").is_none()));
}

#[test]
fn a_live_dry_run_shows_unmatched_domains_as_a_real_sync_would_treat_them() {
    let o = org();
    o.sf.add_account(&[("Name", "Acme"), ("Website", "acme.com")]);
    let dup1 = o.sf.add_account(&[("Name", "Dup"), ("Website", "dup.com")]);
    let dup2 = o.sf.add_account(&[("Name", "Dup (2)"), ("Website", "www.dup.com")]);
    let env = setup(&o, MAPPING, "", &[("acme.com", "2026-10-01"), ("dup.com", "2026-10-01"), ("lost.com", "2026-10-01")]);
    let r = env.run(&["sync", "--dry-run", "--live", "--wide", "--as-of", "2026-10-30"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("1 companies, 3 fields would change; 1 not found and 1 ambiguous would be skipped"), "{}", r.stdout);
    let line = |d: &str| r.stdout.lines().find(|l| l.trim_start().starts_with(d)).unwrap_or_default().to_owned();
    assert!(line("lost.com").contains("not found: investigation") && line("lost.com").contains("skipped"), "{}", r.stdout);
    assert!(!line("lost.com").contains("new:") && !line("dup.com").contains("new:"), "{}", r.stdout);
    assert!(line("dup.com").contains("ambiguous: investigation") && line("dup.com").contains(&format!("{dup1}, {dup2}")), "{}", r.stdout);
    let json = env.ok(&["sync", "--dry-run", "--live", "--as-of", "2026-10-30", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    let lookups: Vec<(&str, Option<&str>)> = plan[0]["items"].as_array().unwrap().iter().map(|i| (i["domain"].as_str().unwrap(), i["lookup"].as_str())).collect();
    assert_eq!(lookups, [("acme.com", None), ("dup.com", Some("ambiguous")), ("lost.com", Some("not_found"))]);

    // The reserve is reached: the pause is said once, by the plan or the summary.
    for args in [&["sync", "--dry-run", "--live", "--as-of", "2026-10-30"][..], &["sync", "--as-of", "2026-10-30"][..]] {
        o.sf.set_daily_limit(100, 79);
        let r = env.run(args);
        let said = format!("{}{}", r.stdout, r.stderr).matches("daily API allocation: 80 of 100 calls used").count();
        assert_eq!(said, 1, "{args:?}:\n{}\n{}", r.stdout, r.stderr);
    }
}

#[test]
fn upserts_by_external_id_create_accounts_named_after_the_company_and_keep_edited_names() {
    let o = org();
    let mapping = MAPPING.replace("match: { crm_field: Website }", "match: { external_id: OQL_Domain__c }\ncreate_missing: true");
    let env = setup(&o, &mapping, "", &[("initech.io", "2026-10-02")]);
    // acme.com's activity names the company.
    let named = json!({"source": "scarf", "id": "acme-1", "kind": "download", "occurred_at": "2026-10-01T10:00:00Z",
                       "company_domain": "acme.com", "company_name": "Acme Inc", "package": "oqldb", "version": "2.0.0"});
    let file = env.write("named.ndjson", format!("{named}\n"));
    env.ok(&["import", file.to_str().unwrap()]);
    let out = env.ok(&["sync", "--as-of", "2026-10-30"]);
    assert!(out.contains("2 accepted (2 created), 0 failed"), "{out}");
    let names: std::collections::BTreeMap<String, String> = o
        .sf
        .accounts()
        .into_iter()
        .map(|(_, a)| (a["OQL_Domain__c"].as_str().unwrap().to_owned(), a["Name"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(names.get("acme.com").map(String::as_str), Some("Acme Inc"));
    assert_eq!(names.get("initech.io").map(String::as_str), Some("initech.io"), "no company name: the domain");

    // Later writes leave Name alone: a name edited in Salesforce stays.
    let acme = o.sf.accounts().into_iter().find(|(_, a)| a["OQL_Domain__c"] == "acme.com").unwrap().0;
    o.sf.clear_requests();
    let out = env.ok(&["sync", "--as-of", "2026-12-15"]);
    assert!(out.contains("2 accepted (0 created)"), "{out}");
    let upsert = o.sf.requests().into_iter().find(|r| r.path.ends_with("/Account/OQL_Domain__c")).unwrap();
    assert!(upsert.body["records"].as_array().unwrap().iter().all(|r| r.get("Name").is_none()), "{}", upsert.body);
    assert_eq!(o.sf.account(&acme).unwrap()["Name"], "Acme Inc");

    // Someone deletes an account: the next upsert creates it again, named.
    o.sf.delete_account(&acme);
    let out = env.ok(&["sync", "--as-of", "2026-12-31"]);
    assert!(out.contains("0 failed"), "{out}");
    let again = o.sf.accounts().into_iter().find(|(_, a)| a["OQL_Domain__c"] == "acme.com").expect("created again").1;
    assert_eq!(again["Name"], "Acme Inc");
}

#[test]
fn record_name_domain_names_created_accounts_by_domain() {
    let o = org();
    let mapping = MAPPING.replace("match: { crm_field: Website }", "match: { crm_field: Website }\ncreate_missing: true");
    let env = setup(&o, &mapping, "record_name: domain\n", &[]);
    let named = json!({"source": "scarf", "id": "acme-1", "kind": "download", "occurred_at": "2026-10-01T10:00:00Z",
                       "company_domain": "acme.com", "company_name": "Acme Inc", "package": "oqldb", "version": "2.0.0"});
    let file = env.write("named.ndjson", format!("{named}\n"));
    env.ok(&["import", file.to_str().unwrap()]);
    let out = env.ok(&["sync", "--as-of", "2026-10-30"]);
    assert!(out.contains("1 accepted (1 created)"), "{out}");
    let accounts = o.sf.accounts();
    assert_eq!((accounts[0].1["Name"].as_str(), accounts[0].1["Website"].as_str()), (Some("acme.com"), Some("acme.com")));
}
