//! `oql-sync sync` against the Common Room emulator: a contact per company with custom
//! fields, stage changes as upserted activities, and Common Room's errors and limits.

mod common;

use std::time::{Duration, Instant};

use common::Env;
use common::common_room_crm::{CommonRoom, Fault};
use serde_json::json;

const TOKEN: &str = "cr-test-token-secret";

struct Room {
    cr: CommonRoom,
    _rt: tokio::runtime::Runtime,
}

fn room() -> Room {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cr = rt.block_on(CommonRoom::start());
    cr.accept_token(TOKEN);
    cr.add_source(77);
    cr.add_custom_field(11, "OQL Stage", "enum", &["Interest", "Investigation", "Experimentation", "Ongoing Usage", "Inactive"]);
    cr.add_custom_field(12, "OQL Score", "number", &[]);
    cr.add_custom_field(13, "OQL Activity Change", "number", &[]);
    Room { cr, _rt: rt }
}

const MAPPING: &str = "object: contacts\nmatch: { crm_field: companyDomain }\nfields:\n  OQL Stage: { from: stage, values: { interest: Interest, investigation: Investigation, experimentation: Experimentation, ongoing_usage: Ongoing Usage, inactive: Inactive } }\n  OQL Score: { from: score }\n";

fn setup(r: &Room, source: u64, mapping: &str) -> Env {
    let env = Env::new();
    env.write("mappings/cr.yaml", mapping);
    env.write(
        "connectors/cr.yaml",
        format!(
            "name: cr\nkind: common_room\nschedule: \"0 0 * * * *\"\nbase_url: {}\ntoken_env: CR_TOKEN\ndestination_source_id: {source}\nmapping: mappings/cr.yaml\nretry: {{ base_delay_ms: 10, max_delay_ms: 50 }}\n",
            r.cr.url
        ),
    );
    let lines: String = [("acme.com", "2026-10-01"), ("acme.com", "2026-10-03"), ("initech.io", "2026-09-01")]
        .iter()
        .map(|(d, day)| {
            json!({"source": "scarf", "id": format!("{d}-{day}"), "kind": "download", "occurred_at": format!("{day}T10:00:00Z"), "company_domain": d, "package": "oqldb", "version": "1.1.0"})
                .to_string()
                + "\n"
        })
        .collect();
    let file = env.write("data.ndjson", lines);
    env.ok(&["import", file.to_str().unwrap()]);
    env
}

fn sync(env: &Env, as_of: &str) -> common::Run {
    env.run_with(&["sync", "--as-of", as_of], &[("CR_TOKEN", TOKEN)])
}

#[test]
fn each_company_is_a_contact_with_custom_fields_and_its_stage_changes_are_activities() {
    let r = room();
    let env = setup(&r, 77, MAPPING);
    let out = sync(&env, "2026-10-30");
    assert_eq!(out.code, 0, "{}", out.stdout);
    let acme = r.cr.user("oql:acme.com").expect("a contact for acme.com");
    assert_eq!((acme["companyDomain"].as_str(), acme["companyName"].as_str()), (Some("acme.com"), Some("acme.com")));
    assert_eq!(r.cr.field_of("oql:acme.com", 11), Some(json!("Investigation")));
    assert_eq!(r.cr.field_of("oql:acme.com", 12), Some(json!(10.0)));
    let activities = r.cr.activities();
    assert_eq!(activities.len(), 2, "one stage activity per company");
    let a = activities.iter().find(|a| a["user"]["companyDomain"] == "acme.com").unwrap();
    assert_eq!(a["activityType"], "oql_stage_changed");
    assert_eq!(a["activityTitle"], json!({"type": "text", "value": "OQL stage: Investigation"}), "the mapping's label");
    assert_eq!(a["id"], "oql-stage:acme.com:investigation:2026-10-01");

    // initech.io goes inactive on 2026-10-31: one contact update and one activity.
    r.cr.clear_requests();
    let out = sync(&env, "2026-10-31");
    assert!(out.stdout.contains("1 planned, 1 sent, 1 accepted"), "{}", out.stdout);
    let posts: Vec<String> = r.cr.requests().iter().filter(|q| q.method == "POST").map(|q| q.path.clone()).collect();
    assert_eq!(posts, ["/community/v1/source/77/user", "/community/v1/source/77/activity"]);
    assert_eq!(r.cr.field_of("oql:initech.io", 11), Some(json!("Inactive")));
    assert_eq!(r.cr.activities().len(), 3);
    let moved = r.cr.requests().into_iter().find(|q| q.path.ends_with("/activity")).unwrap();
    assert_eq!(moved.body["activityTitle"]["value"], "OQL stage: Investigation → Inactive");
}

#[test]
fn custom_field_ids_and_int_values_go_out_as_integers_and_titles_use_the_mapping_rounding() {
    let r = room();
    r.cr.add_custom_field(14, "OQL Downloads", "int", &[]);
    let mapping = MAPPING.replace("OQL Score: { from: score }", "OQL Score: { from: score, round: 0 }") + "  OQL Downloads: { from: downloads_30d }\n";
    let env = setup(&r, 77, &mapping);
    let out = sync(&env, "2026-10-30");
    assert_eq!(out.code, 0, "{}", out.stdout);
    let user = r.requests_user("acme.com");
    let fields = user["customFields"].as_array().unwrap();
    assert_eq!(fields.len(), 3);
    assert!(fields.iter().all(|f| f["id"].is_u64()), "ids are integers, not 11.0: {fields:?}");
    let downloads = fields.iter().find(|f| f["id"] == 14).unwrap();
    assert!(downloads["value"]["value"].is_u64(), "{downloads}");
    assert_eq!(r.cr.field_of("oql:acme.com", 14), Some(json!(2)));
    let activity = r.cr.activities().into_iter().find(|a| a["user"]["companyDomain"] == "acme.com").unwrap();
    let content = activity["content"]["value"].as_str().unwrap().to_owned();
    let score = r.cr.field_of("oql:acme.com", 12).unwrap();
    assert!(content.contains(&format!("is in **Investigation** since 2026-10-01 (OQL score {score})")), "{content}");
    assert!(!content.contains(".0)"), "{content}");
}

#[test]
fn a_destination_source_that_404s_stops_the_run_and_charges_no_record() {
    let r = room();
    let env = setup(&r, 999, MAPPING);
    for _ in 0..6 {
        r.cr.clear_requests();
        let out = sync(&env, "2026-10-30");
        assert_eq!(out.code, 1);
        assert!(out.stdout.contains("0 failed") && out.stdout.contains("configuration error: destination source 999 does not exist"), "{}", out.stdout);
        assert_eq!(r.cr.write_calls(), 1, "stopped at the first 404");
    }
    let log: serde_json::Value = serde_json::from_str(&env.ok(&["log", "--status", "failed", "--format", "json"])).unwrap();
    assert_eq!(log["records"].as_array().map_or(0, Vec::len), 0, "no record walks toward dead: {log}");
    assert!(env.ok(&["log", "--status", "dead"]).contains("no matching entries"));
}

#[test]
fn custom_fields_that_cannot_take_the_mapped_values_stop_the_run_before_any_write() {
    let r = room();
    r.cr.add_custom_field(15, "OQL Last Activity", "date", &[]);
    let mapping = MAPPING.replace("OQL Score: { from: score }", "OQL Score: { from: stage }") + "  OQL Last Activity: { from: last_seen, format: epoch_ms }\n";
    let env = setup(&r, 77, &mapping);
    let out = sync(&env, "2026-10-30");
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("configuration error: Common Room custom fields do not take the mapping's values: ")
            && out.stdout.contains("OQL Last Activity is a date field and the mapping writes numbers")
            && out.stdout.contains("OQL Score is a number field and the mapping writes text"),
        "{}",
        out.stdout
    );
    assert_eq!(r.cr.write_calls(), 0);
}

#[test]
fn fields_only_another_source_may_write_point_at_the_destination_source_id() {
    let r = room();
    r.cr.add_source(78);
    r.cr.add_source_custom_field(77, 21, "OQL Tier", "string");
    let env = setup(&r, 78, &format!("{MAPPING}  OQL Tier: {{ from: peak_stage }}\n"));
    let out = sync(&env, "2026-10-30");
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("configuration error: destination source 78 may not write the contact custom fields OQL Tier")
            && out.stdout.contains("check destination_source_id"),
        "{}",
        out.stdout
    );
    assert_eq!(r.cr.write_calls(), 0);
}

#[test]
fn a_resent_stage_change_upserts_the_same_activity() {
    let r = room();
    let env = setup(&r, 77, MAPPING);
    let connector = std::fs::read_to_string(env.path().join("connectors/cr.yaml")).unwrap();
    env.write("connectors/cr.yaml", connector.replace("max_delay_ms: 50 }", "max_delay_ms: 50, timeout_ms: 500, max_retries: 0 }"));
    // The first activity is stored, but its answer comes too late: the record fails and
    // is sent again by the next run, with the same activity id.
    r.cr.fail_next("/community/v1/source/77/activity", Fault::DelayAfterApply(Duration::from_secs(2)), 1);
    let first = sync(&env, "2026-10-30");
    assert_eq!(first.code, 1, "{}", first.stdout);
    let second = sync(&env, "2026-10-30");
    assert_eq!(second.code, 0, "{}", second.stdout);
    let posts = r.cr.requests().iter().filter(|q| q.path.ends_with("/activity")).count();
    assert!(posts >= 3, "the unconfirmed activity was sent again ({posts} activity posts)");
    assert_eq!(r.cr.activities().len(), 2, "Common Room upserts by id and type: still one activity per company");
}

#[test]
fn rate_limits_wait_for_the_retry_after_date_time() {
    let r = room();
    let env = setup(&r, 77, MAPPING);
    r.cr.fail_next("/community/v1/source/77/user", Fault::RateLimited { wait_ms: 1500 }, 1);
    let started = Instant::now();
    let out = sync(&env, "2026-10-30");
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(started.elapsed() >= Duration::from_millis(1000), "waited for Retry-After: {:?}", started.elapsed());
    let log: serde_json::Value = serde_json::from_str(&env.ok(&["log", "--format", "json"])).unwrap();
    assert!(log["runs"][0]["rate_limit_waits"].as_i64().unwrap() >= 1);
    // The one 429 counts as a server wait; the client's own pacing is counted apart.
    assert_eq!(log["runs"][0]["server_waits"], 1, "{}", log["runs"][0]);
    assert!(out.stdout.contains("1 server rate-limit waits"), "{}", out.stdout);
}

#[test]
fn an_unknown_source_a_bad_token_and_a_missing_custom_field_fail_clearly() {
    let r = room();
    let env = setup(&r, 999, MAPPING);
    let out = sync(&env, "2026-10-30");
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("destination source 999 does not exist in this Common Room (HTTP 404)"), "{}", out.stdout);
    let log = env.ok(&["log", "--status", "failed"]);
    assert!(log.contains("destination source 999"), "{log}");

    let env = setup(&r, 77, MAPPING);
    let bad = env.run_with(&["sync", "--as-of", "2026-10-30"], &[("CR_TOKEN", "wrong-secret-token")]);
    assert!(bad.stdout.contains("Common Room refused the API token (HTTP 401)"), "{}", bad.stdout);
    assert!(!bad.stdout.contains("wrong-secret-token") && !bad.stderr.contains("wrong-secret-token"));

    let env = setup(&r, 77, &format!("{MAPPING}  OQL Peak: {{ from: peak_stage }}\n"));
    let out = sync(&env, "2026-10-30");
    assert!(out.stdout.contains("Common Room has no contact custom field named OQL Peak"), "{}", out.stdout);
}

#[test]
fn a_missing_signal_value_clears_a_custom_field_only_when_asked() {
    let r = room();
    let mapping = format!("{MAPPING}  OQL Activity Change: {{ from: events_mom, clear_when_missing: true }}\n");
    let env = setup(&r, 77, &mapping);
    assert_eq!(sync(&env, "2026-10-30").code, 0);
    let user = r.requests_user("acme.com");
    let change = user["customFields"].as_array().unwrap().iter().find(|f| f["id"] == 13).cloned();
    assert_eq!(change, None, "a field never written is not cleared");
}

trait RoomExt {
    fn requests_user(&self, domain: &str) -> serde_json::Value;
}

impl RoomExt for Room {
    fn requests_user(&self, domain: &str) -> serde_json::Value {
        self.cr
            .requests()
            .into_iter()
            .rev()
            .find(|q| q.path.ends_with("/user") && q.body["companyDomain"] == domain)
            .map(|q| q.body)
            .unwrap()
    }
}
