//! What an operator controls about a sync, against the HubSpot and Salesforce emulators
//! with the real binary: the first sync records stages without firing (`first_sync`),
//! a dry run lists the triggers it would fire, `update: if_empty` keeps values typed by
//! hand, `--reconcile` writes over hand edits found by a live read, and `--domain`
//! limits a run to the companies named.

mod common;

use common::Env;
use common::hubspot_crm::{HubSpot, Running};
use common::salesforce_crm::{Salesforce, test_keypair};
use serde_json::{Value, json};

const TOKEN: &str = "pat-na1-test-0000-control-token";

/// `old.com` downloaded on 2026-09-01 (inactive from 2026-10-31), `later.com` on
/// 2026-09-02 (inactive from 2026-11-01), `steady.com` and `other.com` on 2026-10-20
/// (investigation throughout).
fn activities() -> String {
    [("old.com", "2026-09-01"), ("later.com", "2026-09-02"), ("steady.com", "2026-10-20"), ("other.com", "2026-10-20")]
        .iter()
        .map(|(d, day)| {
            json!({"source": "scarf", "id": format!("{d}-{day}"), "kind": "download", "occurred_at": format!("{day}T10:00:00Z"),
                   "company_domain": d, "package": "oqldb", "version": "1.0.0"})
            .to_string()
                + "\n"
        })
        .collect()
}

fn hubspot_mapping(list: &str, first_sync: &str, extra_fields: &str) -> String {
    format!(
        "object: companies\nmatch: {{ crm_field: domain }}\n{first_sync}fields:\n  oql_stage: {{ from: stage }}\n  oql_score: {{ from: score, round: 0 }}\n{extra_fields}\
         triggers:\n  - when: {{ to: inactive }}\n    action: {{ hubspot_list: \"{list}\" }}\n"
    )
}

struct Crm {
    run: Running,
    env: Env,
    list: String,
    ids: std::collections::BTreeMap<&'static str, String>,
}

/// A HubSpot holding the four companies (with `props` on `steady.com`), a manual list
/// for the trigger, and a config dir with the activities imported.
fn hubspot(first_sync: &str, extra_fields: &str, props: &[(&str, &str)]) -> Crm {
    let run = HubSpot::running(TOKEN);
    let list = run.hs.add_list("MANUAL");
    let mut ids = std::collections::BTreeMap::new();
    for d in ["old.com", "later.com", "steady.com", "other.com"] {
        let mut p = vec![("domain", d), ("name", d)];
        if d == "steady.com" {
            p.extend_from_slice(props);
        }
        ids.insert(d, run.hs.add_company(&p));
    }
    let env = Env::new();
    env.write("mappings/hubspot.yaml", hubspot_mapping(&list, first_sync, extra_fields));
    env.write(
        "connectors/hubspot.yaml",
        format!(
            "name: hubspot\nkind: hubspot\nschedule: \"0 */15 * * * *\"\nbase_url: {}\ntoken_env: HS_TEST_TOKEN\nmapping: mappings/hubspot.yaml\n\
             retry: {{ base_delay_ms: 20, max_delay_ms: 200 }}\n",
            run.hs.url
        ),
    );
    let data = env.write("data.ndjson", activities());
    env.ok(&["import", data.to_str().unwrap()]);
    Crm { run, env, list, ids }
}

impl Crm {
    fn sync(&self, args: &[&str]) -> common::Run {
        let mut all = vec!["sync"];
        all.extend_from_slice(args);
        self.env.run_with(&all, &[("HS_TEST_TOKEN", TOKEN)])
    }
    fn sync_ok(&self, args: &[&str]) -> String {
        let r = self.sync(args);
        assert_eq!(r.code, 0, "sync {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
        r.stdout
    }
    fn members(&self) -> Vec<String> {
        self.run.hs.list_members(&self.list)
    }
    fn value(&self, domain: &str, field: &str) -> Option<String> {
        self.run.hs.company(&self.ids[domain]).unwrap().get(field).cloned()
    }
    fn calls(&self, path: &str) -> Vec<common::hubspot_crm::Recorded> {
        self.run.hs.requests().into_iter().filter(|r| r.path == path).collect()
    }
}

#[test]
fn the_first_sync_records_stages_without_firing_and_a_later_change_fires_once() {
    let c = hubspot("", "", &[]);
    // Day one: old.com is already inactive, the trigger's stage.
    let out = c.sync_ok(&["--as-of", "2026-10-31"]);
    assert!(out.contains("0 triggers fired"), "{out}");
    assert_eq!(c.value("old.com", "oql_stage").as_deref(), Some("inactive"), "the stage is written");
    assert!(c.members().is_empty(), "the first sync fires nothing: {:?}", c.members());

    // later.com turns inactive the next day: a change, which fires once.
    let out = c.sync_ok(&["--as-of", "2026-11-01"]);
    assert!(out.contains("1 triggers fired"), "{out}");
    assert_eq!(c.members(), [c.ids["later.com"].clone()]);
    let memberships = c.calls(&format!("/crm/v3/lists/{}/memberships/add", c.list)).len();
    assert_eq!(memberships, 1);

    // Again: nothing changed, nothing fires twice.
    let out = c.sync_ok(&["--as-of", "2026-11-01"]);
    assert!(out.contains("0 triggers fired"), "{out}");
    assert_eq!(c.calls(&format!("/crm/v3/lists/{}/memberships/add", c.list)).len(), memberships);
}

#[test]
fn first_sync_fire_fires_on_day_one() {
    let c = hubspot("first_sync: fire\n", "", &[]);
    let out = c.sync_ok(&["--as-of", "2026-10-31"]);
    assert!(out.contains("1 triggers fired"), "{out}");
    assert_eq!(c.members(), [c.ids["old.com"].clone()]);
}

#[test]
fn a_dry_run_lists_the_triggers_that_would_fire_and_writes_nothing() {
    let c = hubspot("", "", &[]);
    // Day one with the baseline default: no trigger would fire.
    let plan: Value = serde_json::from_str(&c.sync_ok(&["--dry-run", "--format", "json", "--as-of", "2026-10-31"])).unwrap();
    let items = plan[0]["items"].as_array().unwrap();
    assert!(items.iter().any(|i| i["domain"] == "old.com"), "{plan}");
    assert!(items.iter().all(|i| i["triggers"] == json!([])), "{plan}");

    c.sync_ok(&["--as-of", "2026-10-31"]);
    c.run.hs.clear_requests();
    let plan: Value = serde_json::from_str(&c.sync_ok(&["--dry-run", "--format", "json", "--as-of", "2026-11-01"])).unwrap();
    let later = plan[0]["items"].as_array().unwrap().iter().find(|i| i["domain"] == "later.com").expect("later.com is planned").clone();
    assert_eq!(later["triggers"], json!([{"action": "hubspot_list", "target": c.list}]));
    let table = c.sync_ok(&["--dry-run", "--wide", "--as-of", "2026-11-01"]);
    assert!(table.contains("triggers that would fire: 1"), "{table}");
    let line = table.lines().find(|l| l.contains("hubspot_list")).unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("later.com") && line.contains(&c.list), "{table}");

    // The emulator saw no call at all: no write, no membership.
    assert_eq!(c.run.hs.write_calls(), 0);
    assert!(c.run.hs.requests().is_empty(), "{:?}", c.run.hs.requests().iter().map(|r| &r.path).collect::<Vec<_>>());
    assert!(c.members().is_empty());

    // A first sync that fires shows the triggers of day one too.
    let f = hubspot("first_sync: fire\n", "", &[]);
    let plan: Value = serde_json::from_str(&f.sync_ok(&["--dry-run", "--format", "json", "--as-of", "2026-10-31"])).unwrap();
    let old = plan[0]["items"].as_array().unwrap().iter().find(|i| i["domain"] == "old.com").unwrap().clone();
    assert_eq!(old["triggers"], json!([{"action": "hubspot_list", "target": f.list}]));
    assert_eq!(f.run.hs.write_calls(), 0);
}

#[test]
fn if_empty_keeps_a_value_typed_by_hand_and_fills_an_empty_one() {
    let field = "  oql_first_seen: { from: first_seen, update: if_empty }\n";
    let c = hubspot("", field, &[("oql_first_seen", "2024-05-01")]);
    c.sync_ok(&["--as-of", "2026-10-30"]);
    assert_eq!(c.value("steady.com", "oql_first_seen").as_deref(), Some("2024-05-01"), "the hand-filled value stays");
    assert_eq!(c.value("other.com", "oql_first_seen").as_deref(), Some("2026-10-20"), "the empty one is filled");
    assert_eq!(c.value("steady.com", "oql_stage").as_deref(), Some("investigation"), "other fields are written");
    // The CRM's values were read live, by id, with the if_empty field only.
    let reads = c.calls("/crm/v3/objects/companies/batch/read");
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].body["properties"], json!(["oql_first_seen"]));
    let updates = c.calls("/crm/v3/objects/companies/batch/update");
    let sent_to_steady = updates
        .iter()
        .flat_map(|u| u.body["inputs"].as_array().unwrap().clone())
        .find(|i| i["id"] == c.ids["steady.com"].as_str())
        .unwrap();
    assert!(sent_to_steady["properties"].get("oql_first_seen").is_none(), "{sent_to_steady}");

    // Settled: the next sync with nothing changed reads and writes nothing.
    c.run.hs.clear_requests();
    c.sync_ok(&["--as-of", "2026-10-30"]);
    assert!(c.run.hs.requests().is_empty(), "{:?}", c.run.hs.requests().iter().map(|r| &r.path).collect::<Vec<_>>());
}

#[test]
fn reconcile_writes_over_a_hand_edit_that_a_plain_sync_leaves() {
    let field = "  oql_first_seen: { from: first_seen, update: if_empty }\n";
    let c = hubspot("", field, &[]);
    c.sync_ok(&["--as-of", "2026-10-30"]);
    c.run.hs.set_property(&c.ids["steady.com"], "oql_stage", "customer");
    c.run.hs.set_property(&c.ids["steady.com"], "oql_first_seen", "2024-05-01");

    // A plain sync plans against the accepted state: the edits stay.
    c.sync_ok(&["--as-of", "2026-10-30"]);
    assert_eq!(c.value("steady.com", "oql_stage").as_deref(), Some("customer"));

    // --reconcile reads what the CRM holds and writes the mapped value back; the
    // if_empty field keeps what someone typed.
    c.run.hs.clear_requests();
    let out = c.sync_ok(&["--reconcile", "--as-of", "2026-10-30"]);
    assert!(out.contains("1 accepted"), "{out}");
    assert_eq!(c.value("steady.com", "oql_stage").as_deref(), Some("investigation"));
    assert_eq!(c.value("steady.com", "oql_first_seen").as_deref(), Some("2024-05-01"));
    let updates = c.calls("/crm/v3/objects/companies/batch/update");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].body["inputs"], json!([{"id": c.ids["steady.com"], "properties": {"oql_stage": "investigation"}}]));
    assert_eq!(c.calls("/crm/v3/objects/companies/batch/read").len(), 1, "one live read, reused for if_empty");
    assert!(c.calls("/crm/v3/objects/companies/search").is_empty(), "records already matched are not looked up again");

    // Reconciled: once more, nothing is written.
    c.run.hs.clear_requests();
    c.sync_ok(&["--reconcile", "--as-of", "2026-10-30"]);
    assert_eq!(c.run.hs.write_calls(), 0);
}

#[test]
fn domain_limits_a_run_to_the_companies_named() {
    let c = hubspot("", "", &[]);
    let out = c.sync_ok(&["--domain", "Steady.com", "--as-of", "2026-10-30"]);
    assert!(out.contains("1 planned, 1 sent, 1 accepted"), "{out}");
    assert_eq!(c.value("steady.com", "oql_stage").as_deref(), Some("investigation"));
    for other in ["old.com", "later.com", "other.com"] {
        assert_eq!(c.value(other, "oql_stage"), None, "{other} untouched");
    }
    let searched: Vec<Value> = c.calls("/crm/v3/objects/companies/search").iter().map(|r| r.body["filterGroups"][0]["filters"][0]["values"].clone()).collect();
    assert_eq!(searched, [json!(["steady.com", "www.steady.com"])]);

    // Two at once, then all.
    let out = c.sync_ok(&["--domain", "old.com", "other.com", "--as-of", "2026-10-30"]);
    assert!(out.contains("2 planned"), "{out}");
    assert_eq!(c.value("later.com", "oql_stage"), None);
    let out = c.sync_ok(&["--as-of", "2026-10-30"]);
    assert!(out.contains("1 planned"), "{out}");

    // A company the store does not know is a usage error, before anything runs.
    c.run.hs.clear_requests();
    let r = c.sync(&["--domain", "nosuch.com", "--as-of", "2026-10-30"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("nosuch.com"), "{}", r.stderr);
    assert!(c.run.hs.requests().is_empty());
}

#[test]
fn domain_leaves_the_pending_triggers_of_other_companies_for_their_own_run() {
    let c = hubspot("first_sync: fire\n", "", &[]);
    let add = format!("/crm/v3/lists/{}/memberships/add", c.list);
    // old.com's membership fails through every retry: its firing stays pending.
    c.run.hs.fail_next(&add, common::hubspot_crm::Fault::ServerError(503), 6);
    let r = c.sync(&["--as-of", "2026-10-31"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(c.members().is_empty());
    assert_eq!(c.run.hs.faults_pending(), 0);
    let tries = c.calls(&add).len();

    // A run for another company does not retry it.
    c.sync_ok(&["--domain", "steady.com", "--as-of", "2026-10-31"]);
    assert_eq!(c.calls(&add).len(), tries);
    assert!(c.members().is_empty());

    // The dry run for old.com names it as a retry; the run for old.com fires it.
    let plan: Value = serde_json::from_str(&c.sync_ok(&["--dry-run", "--format", "json", "--domain", "old.com", "--as-of", "2026-10-31"])).unwrap();
    assert_eq!(plan[0]["triggers_pending"], json!([{"domain": "old.com", "action": "hubspot_list", "target": c.list, "retry": true}]));
    c.sync_ok(&["--domain", "old.com", "--as-of", "2026-10-31"]);
    assert_eq!(c.members(), [c.ids["old.com"].clone()]);
}

// Salesforce: the same live read through SOQL.

struct Org {
    sf: Salesforce,
    _rt: tokio::runtime::Runtime,
    env: Env,
}

fn salesforce(matching: &str) -> Org {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let sf = rt.block_on(Salesforce::start());
    sf.define_field("OQL_Stage__c", "string");
    sf.define_field("OQL_First_Seen__c", "date");
    sf.define_external_id("OQL_Domain__c");
    sf.jwt_app("app-1", "int@example.com", &test_keypair().1);
    let env = Env::new();
    env.write("keys/sf.key", test_keypair().0);
    env.write(
        "mappings/sf.yaml",
        format!("object: Account\nmatch: {matching}\nfields:\n  OQL_Stage__c: {{ from: stage }}\n  OQL_First_Seen__c: {{ from: first_seen, update: if_empty }}\n"),
    );
    env.write("connectors/sf.yaml", common::salesforce_crm::jwt_connector(&sf.url, "retry: { base_delay_ms: 10, max_delay_ms: 50 }\n"));
    let data = env.write("data.ndjson", activities());
    env.ok(&["import", data.to_str().unwrap()]);
    Org { sf, _rt: rt, env }
}

fn queries(sf: &Salesforce) -> Vec<String> {
    sf.requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/query"))
        .map(|r| common::emulator::form_decode(&r.query).get("q").cloned().unwrap_or_default())
        .collect()
}

#[test]
fn salesforce_if_empty_and_reconcile_read_the_accounts_live() {
    let o = salesforce("{ crm_field: Website }");
    let steady = o.sf.add_account(&[("Name", "Steady"), ("Website", "steady.com"), ("OQL_First_Seen__c", "2024-05-01")]);
    let other = o.sf.add_account(&[("Name", "Other"), ("Website", "https://other.com")]);
    o.env.ok(&["sync", "--domain", "steady.com", "other.com", "--as-of", "2026-10-30"]);
    assert_eq!(o.sf.account(&steady).unwrap()["OQL_First_Seen__c"], "2024-05-01");
    assert_eq!(o.sf.account(&other).unwrap()["OQL_First_Seen__c"], "2026-10-20");
    // The if_empty field was read by Account Id with SOQL.
    let read = queries(&o.sf).into_iter().find(|q| q.contains("OQL_First_Seen__c")).unwrap_or_else(|| panic!("{:?}", queries(&o.sf)));
    assert!(read.contains(&steady) && read.contains(&other), "{read}");

    // A hand edit: a plain sync leaves it, --reconcile writes it back.
    o.sf.set_field(&other, "OQL_Stage__c", json!("customer"));
    o.env.ok(&["sync", "--domain", "steady.com", "other.com", "--as-of", "2026-10-30"]);
    assert_eq!(o.sf.account(&other).unwrap()["OQL_Stage__c"], "customer");
    o.env.ok(&["sync", "--reconcile", "--domain", "steady.com", "other.com", "--as-of", "2026-10-30"]);
    assert_eq!(o.sf.account(&other).unwrap()["OQL_Stage__c"], "investigation");
    assert_eq!(o.sf.account(&steady).unwrap()["OQL_First_Seen__c"], "2024-05-01");
}

#[test]
fn salesforce_reads_accounts_known_by_their_external_id() {
    // Upserts through the external id: records are known by `ext:{domain}`, never
    // looked up, so the live read goes by the key field.
    let o = salesforce("{ external_id: OQL_Domain__c }\ncreate_missing: true");
    let steady = o.sf.add_account(&[("Name", "Steady"), ("OQL_Domain__c", "steady.com"), ("OQL_First_Seen__c", "2024-05-01")]);
    let other = o.sf.add_account(&[("Name", "Other"), ("OQL_Domain__c", "other.com")]);
    o.env.ok(&["sync", "--domain", "steady.com", "other.com", "--as-of", "2026-10-30"]);
    let read = queries(&o.sf).into_iter().find(|q| q.contains("OQL_First_Seen__c")).unwrap_or_else(|| panic!("{:?}", queries(&o.sf)));
    assert!(read.contains("WHERE OQL_Domain__c IN ('steady.com', 'other.com')") || read.contains("WHERE OQL_Domain__c IN ('other.com', 'steady.com')"), "{read}");
    assert_eq!(o.sf.account(&steady).unwrap()["OQL_First_Seen__c"], "2024-05-01");
    assert_eq!(o.sf.account(&other).unwrap()["OQL_First_Seen__c"], "2026-10-20");
    assert_eq!(o.sf.account(&other).unwrap()["OQL_Stage__c"], "investigation");
}

#[test]
fn common_room_cannot_keep_values_it_cannot_read_and_says_so() {
    let env = Env::new();
    env.write(
        "mappings/cr.yaml",
        "object: contacts\nmatch: { crm_field: companyDomain }\nfields:\n  OQL Stage: { from: stage, update: if_empty }\n",
    );
    env.write(
        "connectors/cr.yaml",
        "name: cr\nkind: common_room\nschedule: \"0 */15 * * * *\"\nbase_url: http://127.0.0.1:9/community/v1\ntoken_env: CR_TOKEN\ndestination_source_id: 7\nmapping: mappings/cr.yaml\n",
    );
    let r = env.run(&["check"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("cr.yaml") && r.stderr.contains("update: if_empty") && r.stderr.contains("common_room"), "{}", r.stderr);
}
