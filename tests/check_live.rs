//! `oql-sync check --live` against the emulated services: one line per connector, each
//! problem with its fix, exit 2 when any connector needs one; nothing is written.

mod common;

use common::Env;
use common::github_api::GitHub;
use common::hubspot_crm::HubSpot;

const TOKEN: &str = "pat-na1-live-check-token";
const MAPPING: &str = "object: companies\nmatch: { crm_field: domain }\nfields:\n  oql_stage: { from: stage }\n  oql_score: { from: score, round: 0 }\n";

struct Services {
    hs: HubSpot,
    gh: GitHub,
    _rt: tokio::runtime::Runtime,
}

fn services() -> Services {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let hs = rt.block_on(HubSpot::start());
    hs.accept_token(TOKEN);
    let gh = rt.block_on(GitHub::start("ghp_live"));
    gh.add_repo("acme/widgets");
    Services { hs, gh, _rt: rt }
}

fn hubspot_connector(env: &Env, s: &Services, extra: &str) {
    env.write(
        "connectors/hubspot.yaml",
        format!("name: hubspot\nkind: hubspot\nschedule: \"0 */15 * * * *\"\nmapping: mappings/hubspot.yaml\nbase_url: {}\ntoken_env: HS_TOKEN\n{extra}", s.hs.url),
    );
}

fn line_of<'a>(out: &'a str, connector: &str) -> &'a str {
    out.lines().find(|l| l.starts_with(connector)).unwrap_or_else(|| panic!("no line for {connector}:\n{out}"))
}

#[test]
fn every_connector_gets_a_line_and_a_config_that_works_passes() {
    let s = services();
    let env = Env::new();
    env.write("mappings/hubspot.yaml", MAPPING);
    hubspot_connector(&env, &s, "");
    env.write("connectors/gh.yaml", format!("name: gh\nkind: github\nschedule: \"0 0 * * * *\"\nbase_url: {}\ntoken_env: GH_TOKEN\nrepos: [acme/widgets]\n", s.gh.url));
    env.write("connectors/drops.yaml", "name: drops\nkind: export\nschedule: \"0 0 3 * * *\"\npath: data\n");
    std::fs::create_dir_all(env.path().join("data")).unwrap();
    env.write("connectors/hook.yaml", "name: hook\nkind: webhook\nschedule: \"0 0 * * * *\"\nmapping: mappings/hubspot.yaml\nurl_env: HOOK_URL\n");
    let secrets = [("HS_TOKEN", TOKEN), ("GH_TOKEN", "ghp_live"), ("HOOK_URL", "http://127.0.0.1:9/hook")];

    let r = env.run_with(&["check", "--live"], &secrets);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let hubspot = line_of(&r.stdout, "hubspot");
    assert!(hubspot.contains("ok") && hubspot.contains("token accepted"), "{}", r.stdout);
    let text = r.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(text.contains("oql_score, oql_stage created by the first sync") || text.contains("oql_stage, oql_score created by the first sync"), "{text}");
    assert!(line_of(&r.stdout, "gh").contains("1 repositories readable"), "{}", r.stdout);
    assert!(line_of(&r.stdout, "drops").contains("watches"), "{}", r.stdout);
    assert!(line_of(&r.stdout, "hook").contains("not called"), "{}", r.stdout);
    assert!(r.stdout.contains("live check: all 4 connectors work"), "{}", r.stdout);
    assert_eq!(s.hs.write_calls(), 0, "the live check wrote to HubSpot");
    assert!(s.hs.property("oql_stage").is_none(), "the live check created a property");
    for line in r.stdout.lines() {
        assert!(line.chars().count() <= 80, "{line}");
    }
}

#[test]
fn each_problem_is_named_with_its_fix_and_the_check_exits_2() {
    let s = services();
    let env = Env::new();
    // A list that does not exist, a property HubSpot lacks with creation off.
    env.write("mappings/hubspot.yaml", format!("{MAPPING}triggers:\n  - when: {{ to: experimentation }}\n    action: {{ hubspot_list: \"999\" }}\n"));
    hubspot_connector(&env, &s, "create_properties: false\n");
    env.write("connectors/gh.yaml", format!("name: gh\nkind: github\nschedule: \"0 0 * * * *\"\nbase_url: {}\ntoken_env: GH_TOKEN\nrepos: [acme/widgets, acme/gone]\n", s.gh.url));
    env.write("connectors/drops.yaml", "name: drops\nkind: export\nschedule: \"0 0 3 * * *\"\npath: incoming\n");
    let secrets = [("HS_TOKEN", TOKEN), ("GH_TOKEN", "ghp_live")];

    let r = env.run_with(&["check", "--live"], &secrets);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(line_of(&r.stdout, "hubspot").contains("FAIL"), "{}", r.stdout);
    // Problems wrap at 80 columns: read them as one text.
    let out = &r.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(out.contains("HubSpot lacks the company properties oql_stage, oql_score") || out.contains("HubSpot lacks the company properties oql_score, oql_stage"), "{out}");
    assert!(out.contains("create_properties: true"), "{out}");
    assert!(out.contains("list 999 does not exist"), "{out}");
    assert!(line_of(&r.stdout, "gh").contains("FAIL") && out.contains("acme/gone: not visible with this token"), "{out}");
    assert!(line_of(&r.stdout, "drops").contains("FAIL") && out.contains("incoming does not exist"), "{out}");
    assert!(out.contains("live check: 3 of 3 connectors need a fix"), "{out}");

    // A token HubSpot refuses: the fix names the scopes; the token never shows.
    let wrong = [("HS_TOKEN", "pat-na1-not-this-one"), ("GH_TOKEN", "ghp_live")];
    let r = env.run_with(&["check", "--live"], &wrong);
    assert_eq!(r.code, 2);
    let out = r.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(out.contains("HubSpot refused the credentials (HTTP 401)") && out.contains("crm.objects.companies.read"), "{out}");
    assert!(!r.stdout.contains("pat-na1-not-this-one") && !r.stderr.contains("pat-na1-not-this-one"));
    assert_eq!(s.hs.write_calls(), 0);
}

/// Salesforce: the describe names a mapped field the org lacks, and a campaign a trigger
/// names is read by id; with both right, the line says ok. Nothing is written.
#[test]
fn salesforce_fields_and_campaigns_are_checked_by_reading_them() {
    use common::salesforce_crm::{Salesforce, jwt_connector, test_keypair};
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let sf = rt.block_on(Salesforce::start());
    sf.define_field("OQL_Stage__c", "string");
    sf.jwt_app("app-1", "int@example.com", &test_keypair().1);
    let campaign = sf.add_campaign();
    let env = Env::new();
    env.write("keys/sf.key", test_keypair().0);
    env.write("connectors/sf.yaml", jwt_connector(&sf.url, ""));
    let mapping = |fields: &str, campaign: &str| {
        format!("object: Account\nmatch: {{ crm_field: Website }}\nfields:\n{fields}triggers:\n  - when: {{ to: experimentation }}\n    action: {{ salesforce_campaign: {{ id: \"{campaign}\" }} }}\n")
    };
    env.write("mappings/sf.yaml", mapping("  OQL_Stage__c: { from: stage }\n  OQL_Score__c: { from: score }\n", "701000000000999"));
    let r = env.run(&["check", "--live"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let out = r.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(line_of(&r.stdout, "sf").contains("FAIL") && out.contains("OQL_Score__c does not exist"), "{out}");

    env.write("mappings/sf.yaml", mapping("  OQL_Stage__c: { from: stage }\n", "701000000000999"));
    let r = env.run(&["check", "--live"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    let out = r.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(out.contains("no Campaign 701000000000999 in the org"), "{out}");

    env.write("mappings/sf.yaml", mapping("  OQL_Stage__c: { from: stage }\n", &campaign));
    let r = env.run(&["check", "--live"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(line_of(&r.stdout, "sf").contains("ok"), "{}", r.stdout);
    assert_eq!(sf.write_calls(), 0, "the live check wrote to Salesforce");
}
