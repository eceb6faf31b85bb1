//! Faults against every emulated CRM, table-driven: each kind of fault (429 storms, 5xx
//! bursts, answers slower than the timeout, connections reset before or after the CRM
//! applied the write, truncated JSON, an access token expiring mid-run, half a batch
//! refused) is injected on the write path of each CRM it applies to. The sync must
//! converge to the desired records, send no record more often than the faults forced,
//! and its log (`log --format json`) must account for every call and every failure.
//!
//! `--nocapture` prints, per CRM and fault kind, the faults injected, the runs needed and
//! the records sent; the totals come last.

mod common;

use std::time::Duration;

use common::Env;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    RateLimitStorm,
    ServerErrorBurst,
    SlowerThanTimeout,
    ResetBeforeApply,
    ResetAfterApply,
    TruncatedJson,
    TokenExpired,
    HalfBatchRefused,
}

/// What the table needs of an emulated CRM.
trait Crm: Sized {
    const NAME: &'static str;
    /// Companies for a run: whole batches, so every write request carries as many.
    const COMPANIES: usize;
    fn start(oauth: bool) -> Self;
    fn seed(&self, domain: &str) -> String;
    fn stage_of(&self, id: &str) -> Option<String>;
    /// The connector and mapping (`retry` tuned short, `timeout_ms: 500`).
    fn configure(&self, env: &Env, oauth: bool);
    fn env(&self) -> Vec<(&'static str, &'static str)>;
    /// Queues `kind` on the record writes; returns how many faults were queued (for a
    /// refused half batch: how many records are refused), or `None` when the CRM has no
    /// such fault (e.g. no OAuth to expire).
    fn inject(&self, kind: Kind, ids: &[String]) -> Option<usize>;
    /// Undoes what `inject` set that is not a queued fault (refused ids).
    fn heal(&self);
    fn faults_pending(&self) -> usize;
    /// Records carried by each record write, in arrival order.
    fn record_writes(&self) -> Vec<usize>;
    /// API requests (what the sync log counts as calls), and access tokens minted.
    fn api_calls(&self) -> usize;
    fn tokens_minted(&self) -> usize;
}

fn data(n: usize) -> String {
    (0..n)
        .map(|i| {
            json!({"source": "scarf", "id": format!("a{i}"), "kind": "download", "occurred_at": "2026-09-15T10:00:00Z",
                   "company_domain": format!("c{i}.com"), "package": "oqldb", "version": "1.0.0"})
            .to_string()
                + "\n"
        })
        .collect()
}

fn converges_under<C: Crm>(kind: Kind) {
    let crm = C::start(kind == Kind::TokenExpired);
    let n = C::COMPANIES;
    let ids: Vec<String> = (0..n).map(|i| crm.seed(&format!("c{i}.com"))).collect();
    let env = Env::new();
    crm.configure(&env, kind == Kind::TokenExpired);
    let file = env.write("data.ndjson", data(n));
    env.ok(&["import", file.to_str().unwrap()]);
    let queued = crm.inject(kind, &ids).unwrap_or_else(|| panic!("{} has no {kind:?} fault", C::NAME));

    // Runs until a run fails nothing; a fault may leave records for the next run.
    let mut runs = 0;
    loop {
        runs += 1;
        assert!(runs <= 3, "{} {kind:?}: still failing after 3 runs", C::NAME);
        let r = env.run_with(&["sync", "--as-of", "2026-10-30"], &crm.env());
        crm.heal();
        if r.code == 0 && r.stdout.contains(" 0 failed") {
            break;
        }
        assert_eq!(r.code, 1, "{} {kind:?}: a failed record exits 1:\n{}\n{}", C::NAME, r.stdout, r.stderr);
    }
    assert_eq!(crm.faults_pending(), 0, "{} {kind:?}: every queued fault was met", C::NAME);
    let injected = queued;

    // The desired state, whatever the faults.
    for id in &ids {
        assert_eq!(crm.stage_of(id).as_deref(), Some("Investigation"), "{} {kind:?}: record {id}", C::NAME);
    }
    // No record sent beyond what the faults forced: a faulted request is sent once more.
    let writes = crm.record_writes();
    let sent: usize = writes.iter().sum();
    let batch = writes[0];
    let forced = match kind {
        Kind::HalfBatchRefused => injected,
        _ => injected * batch,
    };
    assert!(sent >= n && sent <= n + forced, "{} {kind:?}: {sent} records sent for {n} companies; the faults forced at most {forced} more", C::NAME);

    // The log tells what happened: every call the CRM saw, the waits, the failures.
    let log: Value = serde_json::from_str(&env.ok(&["log", "--format", "json", "--limit", "100000"])).unwrap();
    let log_runs = log["runs"].as_array().unwrap();
    assert_eq!(log_runs.len(), runs, "{log}");
    let total = |field: &str| log_runs.iter().map(|r| r[field].as_i64().unwrap()).sum::<i64>() as usize;
    // The emulators record a request when they answer it; the one the client gave up on
    // was dropped unanswered, so it is the only call the log has and they do not.
    let unanswered = if kind == Kind::SlowerThanTimeout { injected } else { 0 };
    assert_eq!(total("api_calls"), crm.api_calls() + unanswered, "{} {kind:?}: the log counts every call the CRM saw", C::NAME);
    assert_eq!(total("accepted"), n, "{} {kind:?}: each record accepted once", C::NAME);
    let failed_records: Vec<&Value> = log["records"].as_array().unwrap().iter().filter(|r| r["outcome"] == "failed").collect();
    assert_eq!(total("failed"), failed_records.len());
    assert!(failed_records.iter().all(|r| r["error"].as_str().is_some_and(|e| !e.is_empty())), "{failed_records:?}");
    match kind {
        Kind::RateLimitStorm => assert!(total("rate_limit_waits") >= injected, "{} waits logged: {log}", total("rate_limit_waits")),
        Kind::TruncatedJson => {
            if runs > 1 {
                assert!(failed_records.iter().any(|r| r["error"].as_str().unwrap().contains("cannot read the response")), "{failed_records:?}");
            }
        }
        Kind::HalfBatchRefused => assert_eq!(failed_records.len(), injected, "{failed_records:?}"),
        Kind::TokenExpired => assert_eq!(crm.tokens_minted(), 2, "one token, and one more after the 401"),
        _ => {}
    }
    let what = if kind == Kind::HalfBatchRefused { "records refused (HTTP 207 / per-record errors)" } else { "faults injected" };
    eprintln!("{} {kind:?}: {injected} {what}; {runs} runs; {sent} records sent for {n}", C::NAME);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

const RETRY: &str = "retry: { base_delay_ms: 20, max_delay_ms: 100, timeout_ms: 500 }\n";

mod hubspot {
    use super::*;
    use common::hubspot_crm::{Fault, HubSpot};

    pub struct Crm {
        hs: HubSpot,
        _rt: tokio::runtime::Runtime,
    }

    const TOKEN: &str = "pat-faults-token";
    pub const UPDATE: &str = "/crm/v3/objects/companies/batch/update";

    impl super::Crm for Crm {
        const NAME: &'static str = "hubspot";
        const COMPANIES: usize = 200;

        fn start(oauth: bool) -> Self {
            let rt = runtime();
            let hs = rt.block_on(HubSpot::start());
            hs.accept_token(TOKEN);
            if oauth {
                hs.oauth_client("client-1", "secret-1", "refresh-1");
            }
            Crm { hs, _rt: rt }
        }
        fn seed(&self, domain: &str) -> String {
            self.hs.add_company(&[("domain", domain)])
        }
        fn stage_of(&self, id: &str) -> Option<String> {
            self.hs.company(id)?.get("oql_stage").cloned()
        }
        fn configure(&self, env: &Env, oauth: bool) {
            env.write("mappings/crm.yaml", "object: companies\nmatch: { crm_field: domain }\nfields:\n  oql_stage: { from: stage, values: { interest: Interest, investigation: Investigation, experimentation: Experimentation, ongoing_usage: Ongoing Usage, inactive: Inactive } }\n  oql_score: { from: score, round: 0 }\n");
            let auth = if oauth {
                "oauth:\n  client_id: client-1\n  client_secret_env: HS_SECRET\n  refresh_token_env: HS_REFRESH\n"
            } else {
                "token_env: CRM_TOKEN\n"
            };
            env.write(
                "connectors/crm.yaml",
                format!("name: crm\nkind: hubspot\nschedule: \"0 */15 * * * *\"\nbase_url: {}\nmapping: mappings/crm.yaml\n{auth}{RETRY}", self.hs.url),
            );
        }
        fn env(&self) -> Vec<(&'static str, &'static str)> {
            vec![("CRM_TOKEN", TOKEN), ("HS_SECRET", "secret-1"), ("HS_REFRESH", "refresh-1")]
        }
        fn inject(&self, kind: Kind, ids: &[String]) -> Option<usize> {
            let (fault, times) = match kind {
                Kind::RateLimitStorm => (Fault::RateLimited { retry_after_secs: None }, 3),
                Kind::ServerErrorBurst => (Fault::ServerError(503), 3),
                Kind::SlowerThanTimeout => (Fault::Delay(Duration::from_millis(1500)), 1),
                Kind::ResetBeforeApply => (Fault::ConnectionReset, 2),
                Kind::ResetAfterApply => (Fault::ResetAfterApply, 2),
                Kind::TruncatedJson => (Fault::TruncatedJson, 1),
                Kind::TokenExpired => (Fault::Unauthorized, 1),
                Kind::HalfBatchRefused => {
                    let half: Vec<&str> = ids[..50].iter().map(String::as_str).collect();
                    self.hs.reject_ids(&half);
                    return Some(half.len());
                }
            };
            self.hs.fail_next(UPDATE, fault, times);
            Some(times)
        }
        fn heal(&self) {
            self.hs.reject_ids(&[]);
        }
        fn faults_pending(&self) -> usize {
            self.hs.faults_pending()
        }
        fn record_writes(&self) -> Vec<usize> {
            self.hs.requests().iter().filter(|r| r.path == UPDATE).map(|r| r.body["inputs"].as_array().unwrap().len()).collect()
        }
        fn api_calls(&self) -> usize {
            self.hs.requests().iter().filter(|r| r.path != "/oauth/v3/token").count()
        }
        fn tokens_minted(&self) -> usize {
            self.hs.requests().iter().filter(|r| r.path == "/oauth/v3/token").count()
        }
    }

    impl Crm {
        pub fn hs(&self) -> &HubSpot {
            &self.hs
        }
    }
}

mod salesforce {
    use super::*;
    use common::salesforce_crm::{Fault, Salesforce, test_keypair};

    pub struct Crm {
        sf: Salesforce,
        _rt: tokio::runtime::Runtime,
    }

    pub const COLLECTIONS: &str = "/services/data/v64.0/composite/sobjects";

    impl super::Crm for Crm {
        const NAME: &'static str = "salesforce";
        const COMPANIES: usize = 400;

        fn start(_oauth: bool) -> Self {
            let rt = runtime();
            let sf = rt.block_on(Salesforce::start());
            sf.jwt_app("3MVG9-faults-app", "integration@example.com", &test_keypair().1);
            sf.define_field("OQL_Stage__c", "string");
            sf.define_field("OQL_Score__c", "double");
            Crm { sf, _rt: rt }
        }
        fn seed(&self, domain: &str) -> String {
            self.sf.add_account(&[("Name", domain), ("Website", &format!("https://www.{domain}/"))])
        }
        fn stage_of(&self, id: &str) -> Option<String> {
            self.sf.account(id)?.get("OQL_Stage__c")?.as_str().map(str::to_owned)
        }
        fn configure(&self, env: &Env, _oauth: bool) {
            env.write("secrets/sf.key", test_keypair().0);
            env.write("mappings/crm.yaml", "object: Account\nmatch: { crm_field: Website }\nfields:\n  OQL_Stage__c: { from: stage, values: { interest: Interest, investigation: Investigation, experimentation: Experimentation, ongoing_usage: Ongoing Usage, inactive: Inactive } }\n  OQL_Score__c: { from: score, round: 0 }\n");
            env.write(
                "connectors/crm.yaml",
                format!(
                    "name: crm\nkind: salesforce\nschedule: \"0 */15 * * * *\"\nmapping: mappings/crm.yaml\nauth:\n  flow: jwt_bearer\n  login_url: {}\n  client_id: 3MVG9-faults-app\n  username: integration@example.com\n  private_key_file: secrets/sf.key\nrate_limit: {{ requests: 100, per_seconds: 1 }}\n{RETRY}",
                    self.sf.url
                ),
            );
        }
        fn env(&self) -> Vec<(&'static str, &'static str)> {
            Vec::new()
        }
        fn inject(&self, kind: Kind, ids: &[String]) -> Option<usize> {
            let (fault, times) = match kind {
                // Salesforce has no 429: its limits pause the connector (sync_salesforce).
                Kind::RateLimitStorm => return None,
                Kind::ServerErrorBurst => (Fault::ServerError(503), 3),
                Kind::SlowerThanTimeout => (Fault::Delay(Duration::from_millis(1500)), 1),
                Kind::ResetBeforeApply => (Fault::ConnectionReset, 2),
                Kind::ResetAfterApply => (Fault::ResetAfterApply, 2),
                Kind::TruncatedJson => (Fault::TruncatedJson, 1),
                Kind::TokenExpired => (Fault::SessionExpired, 1),
                Kind::HalfBatchRefused => {
                    let half: Vec<&str> = ids[..100].iter().map(String::as_str).collect();
                    self.sf.reject_ids(&half);
                    return Some(half.len());
                }
            };
            self.sf.fail_next(COLLECTIONS, fault, times);
            Some(times)
        }
        fn heal(&self) {
            self.sf.reject_ids(&[]);
        }
        fn faults_pending(&self) -> usize {
            self.sf.faults_pending()
        }
        fn record_writes(&self) -> Vec<usize> {
            self.sf.requests().iter().filter(|r| r.path == COLLECTIONS).map(|r| r.body["records"].as_array().unwrap().len()).collect()
        }
        fn api_calls(&self) -> usize {
            self.sf.requests().iter().filter(|r| r.path.starts_with("/services/data/")).count()
        }
        fn tokens_minted(&self) -> usize {
            self.sf.tokens_issued()
        }
    }

    impl Crm {
        pub fn sf(&self) -> &Salesforce {
            &self.sf
        }
    }
}

mod common_room {
    use super::*;
    use common::common_room_crm::{CommonRoom, Fault};

    pub struct Crm {
        cr: CommonRoom,
        _rt: tokio::runtime::Runtime,
    }

    const TOKEN: &str = "cr-faults-token";
    pub const USER: &str = "/community/v1/source/4242/user";

    impl super::Crm for Crm {
        const NAME: &'static str = "common_room";
        const COMPANIES: usize = 8;

        fn start(_oauth: bool) -> Self {
            let rt = runtime();
            let cr = rt.block_on(CommonRoom::start());
            cr.accept_token(TOKEN);
            cr.add_source(4242);
            cr.add_custom_field(901, "OQL Stage", "enum", &["Interest", "Investigation", "Experimentation", "Ongoing Usage", "Inactive"]);
            cr.add_custom_field(902, "OQL Score", "number", &[]);
            Crm { cr, _rt: rt }
        }
        fn seed(&self, domain: &str) -> String {
            format!("oql:{domain}")
        }
        fn stage_of(&self, id: &str) -> Option<String> {
            self.cr.field_of(id, 901)?.as_str().map(str::to_owned)
        }
        fn configure(&self, env: &Env, _oauth: bool) {
            env.write("mappings/crm.yaml", "object: contacts\nmatch: { crm_field: companyDomain }\nfields:\n  OQL Stage: { from: stage, values: { interest: Interest, investigation: Investigation, experimentation: Experimentation, ongoing_usage: Ongoing Usage, inactive: Inactive } }\n  OQL Score: { from: score, round: 0 }\n");
            env.write(
                "connectors/crm.yaml",
                format!(
                    "name: crm\nkind: common_room\nschedule: \"0 */15 * * * *\"\nbase_url: {}\ntoken_env: CR_TOKEN\ndestination_source_id: 4242\nmapping: mappings/crm.yaml\nrate_limit: {{ requests: 50, per_seconds: 1 }}\n{RETRY}",
                    self.cr.url
                ),
            );
        }
        fn env(&self) -> Vec<(&'static str, &'static str)> {
            vec![("CR_TOKEN", TOKEN)]
        }
        fn inject(&self, kind: Kind, ids: &[String]) -> Option<usize> {
            let (fault, times) = match kind {
                Kind::RateLimitStorm => (Fault::RateLimited { wait_ms: 200 }, 3),
                Kind::ServerErrorBurst => (Fault::ServerError(503), 3),
                Kind::SlowerThanTimeout => (Fault::Delay(Duration::from_millis(1500)), 1),
                Kind::ResetBeforeApply => (Fault::ConnectionReset, 2),
                Kind::ResetAfterApply => (Fault::ResetAfterApply, 2),
                Kind::TruncatedJson => (Fault::TruncatedJson, 1),
                // A static API token: nothing to mint again.
                Kind::TokenExpired => return None,
                Kind::HalfBatchRefused => {
                    // One contact a request: half of the records refused.
                    let half: Vec<&str> = ids[..ids.len() / 2].iter().map(String::as_str).collect();
                    self.cr.reject_ids(&half);
                    return Some(half.len());
                }
            };
            self.cr.fail_next(USER, fault, times);
            Some(times)
        }
        fn heal(&self) {
            self.cr.reject_ids(&[]);
        }
        fn faults_pending(&self) -> usize {
            self.cr.faults_pending()
        }
        fn record_writes(&self) -> Vec<usize> {
            self.cr.requests().iter().filter(|r| r.path == USER).map(|_| 1).collect()
        }
        fn api_calls(&self) -> usize {
            self.cr.requests().iter().filter(|r| r.path.starts_with("/community/")).count()
        }
        fn tokens_minted(&self) -> usize {
            0
        }
    }
}

/// One test per fault kind that applies to the CRM (Salesforce has no 429s: its limits
/// pause the connector, see sync_salesforce; Common Room's static token never expires).
macro_rules! fault_table {
    ($module:ident, $crm:ty, [$($name:ident => $kind:ident),* $(,)?]) => {
        mod $module {
            use super::*;
            $(
                #[test]
                fn $name() {
                    converges_under::<$crm>(Kind::$kind);
                }
            )*
        }
    };
}

fault_table!(on_hubspot, hubspot::Crm, [
    a_429_storm_is_waited_out_and_loses_nothing => RateLimitStorm,
    a_5xx_burst_is_retried_and_loses_nothing => ServerErrorBurst,
    an_answer_slower_than_the_timeout_is_sent_again_once => SlowerThanTimeout,
    a_connection_reset_before_the_write_is_sent_again => ResetBeforeApply,
    a_connection_reset_after_the_write_applied_converges => ResetAfterApply,
    a_truncated_answer_is_sent_again_at_most_once => TruncatedJson,
    an_access_token_expiring_mid_run_is_minted_again => TokenExpired,
    a_half_refused_batch_lands_the_rest_and_retries_only_the_refused => HalfBatchRefused,
]);
fault_table!(on_salesforce, salesforce::Crm, [
    a_5xx_burst_is_retried_and_loses_nothing => ServerErrorBurst,
    an_answer_slower_than_the_timeout_is_sent_again_once => SlowerThanTimeout,
    a_connection_reset_before_the_write_is_sent_again => ResetBeforeApply,
    a_connection_reset_after_the_write_applied_converges => ResetAfterApply,
    a_truncated_answer_is_sent_again_at_most_once => TruncatedJson,
    an_expired_session_is_minted_again => TokenExpired,
    a_half_refused_batch_lands_the_rest_and_retries_only_the_refused => HalfBatchRefused,
]);
fault_table!(on_common_room, common_room::Crm, [
    a_429_storm_is_waited_out_and_loses_nothing => RateLimitStorm,
    a_5xx_burst_is_retried_and_loses_nothing => ServerErrorBurst,
    an_answer_slower_than_the_timeout_is_sent_again_once => SlowerThanTimeout,
    a_connection_reset_before_the_write_is_sent_again => ResetBeforeApply,
    a_connection_reset_after_the_write_applied_converges => ResetAfterApply,
    a_truncated_answer_loses_nothing => TruncatedJson,
    a_refused_contact_is_retried_alone => HalfBatchRefused,
]);

/// A create whose answer is lost (the connection reset after the CRM made the record, or
/// the answer slower than the timeout, or a 5xx that may have come after the write) must
/// not be sent again blindly: that would make a second record for the company. The run
/// fails those records; the next one finds what the CRM made and updates it.
mod creates {
    use super::*;

    /// 150 companies the CRM lacks, `create_missing: true`, and one fault on the first
    /// create; `records` lists (domain, stage) of every record the CRM holds at the end.
    fn creates_once<C: Crm>(object: &str, fault: &str, inject: impl Fn(&C), records: impl Fn(&C) -> Vec<(String, Option<String>)>) {
        let crm = C::start(false);
        let env = Env::new();
        crm.configure(&env, false);
        let mapping = std::fs::read_to_string(env.path().join("mappings/crm.yaml")).unwrap();
        env.write("mappings/crm.yaml", mapping.replace(&format!("object: {object}\n"), &format!("object: {object}\ncreate_missing: true\n")));
        let file = env.write("data.ndjson", data(150));
        env.ok(&["import", file.to_str().unwrap()]);
        inject(&crm);
        let mut runs = 0;
        loop {
            runs += 1;
            assert!(runs <= 3, "still failing after 3 runs");
            let r = env.run_with(&["sync", "--as-of", "2026-10-30"], &crm.env());
            if r.code == 0 && r.stdout.contains(" 0 failed") {
                break;
            }
        }
        // A create the client gave up on may still be made after its answer's delay.
        std::thread::sleep(Duration::from_millis(1600));
        let mut per_domain = std::collections::BTreeMap::<String, usize>::new();
        for (domain, stage) in records(&crm) {
            assert_eq!(stage.as_deref(), Some("Investigation"), "{domain}");
            *per_domain.entry(domain).or_default() += 1;
        }
        assert_eq!(per_domain.len(), 150);
        let twice: Vec<_> = per_domain.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "{} {fault}: {} records were created twice: {twice:?}", C::NAME, twice.len());
        assert_eq!(crm.faults_pending(), 0);
        eprintln!("{} create under {fault}: 1 fault injected; {runs} runs; 150 records, each made once", C::NAME);
    }

    fn hubspot_creates_once(fault: common::hubspot_crm::Fault) {
        let name = format!("{fault:?}");
        creates_once::<hubspot::Crm>(
            "companies",
            &name,
            |crm| crm.hs().fail_next("/crm/v3/objects/companies/batch/create", fault.clone(), 1),
            |crm| crm.hs().companies().into_iter().map(|(_, c)| (c["domain"].clone(), c.get("oql_stage").cloned())).collect(),
        );
    }

    #[test]
    fn a_hubspot_create_reset_after_it_applied_makes_one_record() {
        hubspot_creates_once(common::hubspot_crm::Fault::ResetAfterApply);
    }

    #[test]
    fn a_hubspot_create_answered_after_the_timeout_makes_one_record() {
        hubspot_creates_once(common::hubspot_crm::Fault::DelayAfterApply(Duration::from_millis(1500)));
    }

    fn salesforce_creates_once(fault: common::salesforce_crm::Fault) {
        let name = format!("{fault:?}");
        creates_once::<salesforce::Crm>(
            "Account",
            &name,
            |crm| crm.sf().fail_next(salesforce::COLLECTIONS, fault.clone(), 1),
            |crm| {
                let stage = |a: &std::collections::BTreeMap<String, Value>| a.get("OQL_Stage__c").and_then(Value::as_str).map(str::to_owned);
                crm.sf().accounts().into_iter().map(|(_, a)| (a["Website"].as_str().unwrap().to_owned(), stage(&a))).collect()
            },
        );
    }

    #[test]
    fn a_salesforce_create_reset_after_it_applied_makes_one_record() {
        salesforce_creates_once(common::salesforce_crm::Fault::ResetAfterApply);
    }

    #[test]
    fn a_salesforce_create_answered_after_the_timeout_makes_one_record() {
        salesforce_creates_once(common::salesforce_crm::Fault::DelayAfterApply(Duration::from_millis(1500)));
    }
}
