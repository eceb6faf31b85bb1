//! The behaviour every CRM sink owes, written once and run against each emulated CRM:
//! a sync with no change makes no write; one stage change sends one record; 429s and
//! 5xx lose nothing; the configured rate is never exceeded; a trigger fires once.

mod common;

use std::time::Duration;

use common::Env;
use serde_json::json;

/// What the shared tests need of an emulated CRM.
trait Crm {
    fn start() -> Self;
    /// Adds a company record holding `domain`; returns its CRM id.
    fn seed(&self, domain: &str) -> String;
    /// The OQL stage value the record holds, if any.
    fn stage_of(&self, id: &str) -> Option<String>;
    /// The CRM value `oql-sync` writes for the `inactive` stage.
    const INACTIVE: &'static str;
    const INVESTIGATION: &'static str;
    /// Writes the connector and mapping files (with a trigger on `to: inactive`).
    fn configure(&self, env: &Env, extra: &str);
    fn env(&self) -> Vec<(String, String)>;
    fn write_calls(&self) -> usize;
    /// Calls that wrote records (not property setup or triggers), and records in each.
    fn record_writes(&self) -> Vec<usize>;
    fn clear_requests(&self);
    /// The next `n` record writes answer 429 (with a short wait) and then 5xx.
    fn storm(&self, n: usize);
    /// Enforces the CRM's own limit, tighter than the connector's for the test.
    fn rate_limit_extra(&self) -> &'static str;
    /// (most requests seen in any window, the connector's limit for that window).
    fn max_rate(&self) -> (usize, usize);
    /// Trigger actions the CRM received.
    fn triggered(&self) -> usize;
    /// Whether `storm` includes 429s (Salesforce signals limits otherwise).
    const STORM_HAS_429: bool;
    /// Companies for the batch and rate tests: several batches, yet quick at the
    /// connector's pace (Common Room writes one record a call).
    const LARGE: usize;
}

/// One release download on 2026-09-15 per `c{i}.com` (investigation until 60 days
/// later), and `mover.com` (2026-09-01), inactive on 2026-10-31.
fn data(n: usize) -> String {
    let mut out = String::new();
    let mut line = |domain: &str, day: &str| {
        let a = json!({"source": "scarf", "id": format!("{domain}-{day}"), "kind": "download",
            "occurred_at": format!("{day}T10:00:00Z"), "company_domain": domain, "package": "oqldb", "version": "1.0.0"});
        out.push_str(&format!("{a}\n"));
    };
    for i in 0..n {
        line(&format!("c{i}.com"), "2026-09-15");
    }
    line("mover.com", "2026-09-01");
    out
}

struct Setup<C: Crm> {
    crm: C,
    env: Env,
    ids: Vec<String>,
}

impl<C: Crm> Setup<C> {
    fn new(n: usize, extra: &str) -> Setup<C> {
        let crm = C::start();
        let mut ids: Vec<String> = (0..n).map(|i| crm.seed(&format!("c{i}.com"))).collect();
        ids.push(crm.seed("mover.com"));
        let env = Env::new();
        crm.configure(&env, extra);
        let file = env.write("data.ndjson", data(n));
        env.ok(&["import", file.to_str().unwrap()]);
        Setup { crm, env, ids }
    }

    fn sync(&self, as_of: &str) -> String {
        let vars = self.crm.env();
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = self.env.run_with(&["sync", "--as-of", as_of], &vars);
        assert_eq!(r.code, 0, "sync failed:\n{}\n{}", r.stdout, r.stderr);
        r.stdout
    }
}

fn no_change_sync_makes_no_write<C: Crm>() {
    let s = Setup::<C>::new(30, "");
    let out = s.sync("2026-10-30");
    assert!(out.contains("31 accepted"), "{out}");
    assert!(s.ids.iter().all(|id| s.crm.stage_of(id).as_deref() == Some(C::INVESTIGATION)));
    s.crm.clear_requests();
    let out = s.sync("2026-10-30");
    assert!(out.contains("0 planned, 0 sent"), "{out}");
    assert_eq!(s.crm.write_calls(), 0);
}

fn one_stage_change_sends_one_record_and_fires_once<C: Crm>() {
    let s = Setup::<C>::new(30, "");
    s.sync("2026-10-30");
    s.crm.clear_requests();
    let out = s.sync("2026-10-31");
    assert!(out.contains("1 planned, 1 sent, 1 accepted") && out.contains("1 triggers fired"), "{out}");
    assert_eq!(s.crm.record_writes(), [1]);
    assert_eq!(s.crm.stage_of(s.ids.last().unwrap()).as_deref(), Some(C::INACTIVE));
    s.sync("2026-10-31");
    s.sync("2026-10-31");
    assert_eq!(s.crm.triggered(), 1);
}

fn rate_limits_and_server_errors_lose_nothing<C: Crm>() {
    let s = Setup::<C>::new(C::LARGE, "");
    s.crm.storm(2);
    let out = s.sync("2026-10-30");
    assert!(out.contains(&format!("{} accepted", C::LARGE + 1)) && out.contains("0 failed"), "{out}");
    assert!(s.ids.iter().all(|id| s.crm.stage_of(id).as_deref() == Some(C::INVESTIGATION)));
    if C::STORM_HAS_429 {
        let log: serde_json::Value = serde_json::from_str(&s.env.ok(&["log", "--format", "json"])).unwrap();
        assert!(log["runs"][0]["rate_limit_waits"].as_i64().unwrap() >= 1, "{}", log["runs"][0]);
    }
}

fn the_rate_is_never_exceeded<C: Crm>() {
    let crm_extra = C::start().rate_limit_extra();
    let s = Setup::<C>::new(C::LARGE, crm_extra);
    let out = s.sync("2026-10-30");
    assert!(out.contains(&format!("{} accepted", C::LARGE + 1)), "{out}");
    let (seen, limit) = s.crm.max_rate();
    assert!(seen <= limit, "{seen} requests in one window, limit {limit}");
}

macro_rules! behaviour {
    ($module:ident, $crm:ty) => {
        mod $module {
            use super::*;
            #[test]
            fn no_change_sync_makes_no_write() {
                super::no_change_sync_makes_no_write::<$crm>();
            }
            #[test]
            fn one_stage_change_sends_one_record_and_fires_once() {
                super::one_stage_change_sends_one_record_and_fires_once::<$crm>();
            }
            #[test]
            fn rate_limits_and_server_errors_lose_nothing() {
                super::rate_limits_and_server_errors_lose_nothing::<$crm>();
            }
            #[test]
            fn the_rate_is_never_exceeded() {
                super::the_rate_is_never_exceeded::<$crm>();
            }
        }
    };
}

/// The emulators run on their own runtime, so tests stay synchronous.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

mod hubspot_crm {
    use super::*;
    use common::hubspot_crm::{Fault, HubSpot};

    pub struct HubSpotCrm {
        hs: HubSpot,
        list: String,
        _rt: tokio::runtime::Runtime,
    }

    const TOKEN: &str = "pat-behaviour-token";
    const UPDATE: &str = "/crm/v3/objects/companies/batch/update";

    impl Crm for HubSpotCrm {
        const INACTIVE: &'static str = "Inactive";
        const INVESTIGATION: &'static str = "Investigation";
        const STORM_HAS_429: bool = true;
        const LARGE: usize = 250;

        fn start() -> Self {
            let rt = runtime();
            let hs = rt.block_on(HubSpot::start());
            hs.accept_token(TOKEN);
            let list = hs.add_list("MANUAL");
            HubSpotCrm { hs, list, _rt: rt }
        }
        fn seed(&self, domain: &str) -> String {
            self.hs.add_company(&[("domain", domain)])
        }
        fn stage_of(&self, id: &str) -> Option<String> {
            self.hs.company(id)?.get("oql_stage").cloned()
        }
        fn configure(&self, env: &Env, extra: &str) {
            env.write(
                "mappings/crm.yaml",
                format!(
                    "object: companies\nmatch: {{ crm_field: domain }}\nfields:\n  oql_stage: {{ from: stage, values: {{ interest: Interest, investigation: Investigation, experimentation: Experimentation, ongoing_usage: Ongoing Usage, inactive: Inactive }} }}\n  oql_score: {{ from: score, round: 0 }}\ntriggers:\n  - when: {{ to: inactive }}\n    action: {{ hubspot_list: \"{}\" }}\n",
                    self.list
                ),
            );
            env.write(
                "connectors/crm.yaml",
                format!(
                    "name: crm\nkind: hubspot\nschedule: \"0 */15 * * * *\"\nbase_url: {}\ntoken_env: CRM_TOKEN\nmapping: mappings/crm.yaml\nretry: {{ base_delay_ms: 20, max_delay_ms: 200 }}\n{extra}",
                    self.hs.url
                ),
            );
        }
        fn env(&self) -> Vec<(String, String)> {
            vec![("CRM_TOKEN".into(), TOKEN.into())]
        }
        fn write_calls(&self) -> usize {
            self.hs.write_calls()
        }
        fn record_writes(&self) -> Vec<usize> {
            self.hs.requests().iter().filter(|r| r.path == UPDATE).map(|r| r.body["inputs"].as_array().unwrap().len()).collect()
        }
        fn clear_requests(&self) {
            self.hs.clear_requests();
        }
        fn storm(&self, n: usize) {
            self.hs.fail_next(UPDATE, Fault::RateLimited { retry_after_secs: Some(1) }, n);
            self.hs.fail_next(UPDATE, Fault::ServerError(503), n);
        }
        fn rate_limit_extra(&self) -> &'static str {
            "rate_limit: { requests: 5, per_seconds: 1 }\n"
        }
        fn max_rate(&self) -> (usize, usize) {
            (self.hs.max_in_window("", Duration::from_secs(1)), 5)
        }
        fn triggered(&self) -> usize {
            self.hs.requests().iter().filter(|r| r.path.ends_with("/memberships/add")).count()
        }
    }
}

behaviour!(hubspot, hubspot_crm::HubSpotCrm);

mod salesforce_crm {
    use super::*;
    use common::salesforce_crm::{Fault, Salesforce, test_keypair};

    pub struct SalesforceCrm {
        sf: Salesforce,
        campaign: String,
        _rt: tokio::runtime::Runtime,
    }

    const COLLECTIONS: &str = "/services/data/v64.0/composite/sobjects";

    impl Crm for SalesforceCrm {
        const INACTIVE: &'static str = "Inactive";
        const INVESTIGATION: &'static str = "Investigation";
        const STORM_HAS_429: bool = false;
        const LARGE: usize = 450;

        fn start() -> Self {
            let rt = runtime();
            let sf = rt.block_on(Salesforce::start());
            sf.jwt_app("3MVG9-test-app", "integration@example.com", &test_keypair().1);
            sf.define_field("OQL_Stage__c", "string");
            sf.define_field("OQL_Score__c", "double");
            let campaign = sf.add_campaign();
            SalesforceCrm { sf, campaign, _rt: rt }
        }
        fn seed(&self, domain: &str) -> String {
            let id = self.sf.add_account(&[("Name", domain), ("Website", &format!("https://www.{domain}/"))]);
            self.sf.add_contact(&id);
            id
        }
        fn stage_of(&self, id: &str) -> Option<String> {
            self.sf.account(id)?.get("OQL_Stage__c")?.as_str().map(str::to_owned)
        }
        fn configure(&self, env: &Env, extra: &str) {
            env.write("secrets/sf.key", test_keypair().0);
            env.write(
                "mappings/crm.yaml",
                format!(
                    "object: Account\nmatch: {{ crm_field: Website }}\nfields:\n  OQL_Stage__c: {{ from: stage, values: {{ interest: Interest, investigation: Investigation, experimentation: Experimentation, ongoing_usage: Ongoing Usage, inactive: Inactive }} }}\n  OQL_Score__c: {{ from: score, round: 0 }}\ntriggers:\n  - when: {{ to: inactive }}\n    action: {{ salesforce_campaign: {{ id: \"{}\", status: Responded }} }}\n",
                    self.campaign
                ),
            );
            env.write(
                "connectors/crm.yaml",
                format!(
                    "name: crm\nkind: salesforce\nschedule: \"0 */15 * * * *\"\nmapping: mappings/crm.yaml\nauth:\n  flow: jwt_bearer\n  login_url: {}\n  client_id: 3MVG9-test-app\n  username: integration@example.com\n  private_key_file: secrets/sf.key\nretry: {{ base_delay_ms: 20, max_delay_ms: 200 }}\n{extra}",
                    self.sf.url
                ),
            );
        }
        fn env(&self) -> Vec<(String, String)> {
            Vec::new()
        }
        fn write_calls(&self) -> usize {
            self.sf.write_calls()
        }
        fn record_writes(&self) -> Vec<usize> {
            self.sf
                .requests()
                .iter()
                .filter(|r| r.path == COLLECTIONS && r.body["records"][0]["attributes"]["type"] == "Account")
                .map(|r| r.body["records"].as_array().unwrap().len())
                .collect()
        }
        fn clear_requests(&self) {
            self.sf.clear_requests();
        }
        fn storm(&self, n: usize) {
            self.sf.fail_next(COLLECTIONS, Fault::ServerError(503), n);
            self.sf.fail_next(COLLECTIONS, Fault::ServerError(500), n);
        }
        fn rate_limit_extra(&self) -> &'static str {
            "rate_limit: { requests: 5, per_seconds: 1 }\n"
        }
        fn max_rate(&self) -> (usize, usize) {
            (self.sf.max_in_window("/services/data/", Duration::from_secs(1)), 5)
        }
        fn triggered(&self) -> usize {
            self.sf
                .requests()
                .iter()
                .filter(|r| r.path == COLLECTIONS && r.body["records"][0]["attributes"]["type"] == "CampaignMember")
                .count()
        }
    }
}

behaviour!(salesforce, salesforce_crm::SalesforceCrm);

mod common_room_crm {
    use super::*;
    use common::common_room_crm::{CommonRoom, Fault};

    pub struct CommonRoomCrm {
        cr: CommonRoom,
        _rt: tokio::runtime::Runtime,
    }

    const TOKEN: &str = "cr-behaviour-token";
    const USER: &str = "/community/v1/source/4242/user";
    const STAGE: u64 = 901;

    impl Crm for CommonRoomCrm {
        const INACTIVE: &'static str = "Inactive";
        const INVESTIGATION: &'static str = "Investigation";
        const STORM_HAS_429: bool = true;
        const LARGE: usize = 12;

        fn start() -> Self {
            let rt = runtime();
            let cr = rt.block_on(CommonRoom::start());
            cr.accept_token(TOKEN);
            cr.add_source(4242);
            cr.add_custom_field(STAGE, "OQL Stage", "enum", &["Interest", "Investigation", "Experimentation", "Ongoing Usage", "Inactive"]);
            cr.add_custom_field(902, "OQL Score", "number", &[]);
            CommonRoomCrm { cr, _rt: rt }
        }
        fn seed(&self, domain: &str) -> String {
            format!("oql:{domain}")
        }
        fn stage_of(&self, id: &str) -> Option<String> {
            self.cr.field_of(id, STAGE)?.as_str().map(str::to_owned)
        }
        fn configure(&self, env: &Env, extra: &str) {
            let origin = self.cr.url.trim_end_matches("/community/v1");
            env.write(
                "mappings/crm.yaml",
                format!(
                    "object: contacts\nmatch: {{ crm_field: companyDomain }}\nfields:\n  OQL Stage: {{ from: stage, values: {{ interest: Interest, investigation: Investigation, experimentation: Experimentation, ongoing_usage: Ongoing Usage, inactive: Inactive }} }}\n  OQL Score: {{ from: score, round: 0 }}\ntriggers:\n  - when: {{ to: inactive }}\n    action: {{ webhook: {{ url: \"{origin}/webhook\" }} }}\n"
                ),
            );
            env.write(
                "connectors/crm.yaml",
                format!(
                    "name: crm\nkind: common_room\nschedule: \"0 */15 * * * *\"\nbase_url: {}\ntoken_env: CR_TOKEN\ndestination_source_id: 4242\nmapping: mappings/crm.yaml\nretry: {{ base_delay_ms: 20, max_delay_ms: 200 }}\n{extra}",
                    self.cr.url
                ),
            );
        }
        fn env(&self) -> Vec<(String, String)> {
            vec![("CR_TOKEN".into(), TOKEN.into())]
        }
        fn write_calls(&self) -> usize {
            self.cr.write_calls()
        }
        fn record_writes(&self) -> Vec<usize> {
            self.cr.requests().iter().filter(|r| r.path == USER).map(|_| 1).collect()
        }
        fn clear_requests(&self) {
            self.cr.clear_requests();
        }
        fn storm(&self, n: usize) {
            self.cr.fail_next(USER, Fault::RateLimited { wait_ms: 300 }, n);
            self.cr.fail_next(USER, Fault::ServerError(503), n);
        }
        fn rate_limit_extra(&self) -> &'static str {
            self.cr.set_rate_limit(10, Duration::from_secs(1));
            "rate_limit: { requests: 5, per_seconds: 1 }\n"
        }
        fn max_rate(&self) -> (usize, usize) {
            assert_eq!(self.cr.rate_limited_count(), 0);
            (self.cr.max_in_window("/community/", Duration::from_secs(1)), 5)
        }
        fn triggered(&self) -> usize {
            self.cr.webhooks().len()
        }
    }
}

behaviour!(common_room, common_room_crm::CommonRoomCrm);
