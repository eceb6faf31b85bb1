//! What a HubSpot sync costs in API calls, per 1,000 changed companies:
//! `cargo test --test hubspot_calls -- --nocapture` prints the figures.
//!
//! 1,000 companies that match one HubSpot record each, 50 that match none and 20 that
//! match two, with a list trigger on `inactive`. Three runs: the first sync (matching,
//! property setup, writes), a sync where every company's stage changed (ids cached,
//! 1,000 list memberships), and a second sync with nothing changed.

mod common;

use common::Env;
use common::hubspot_crm::HubSpot;
use serde_json::json;

const TOKEN: &str = "pat-na1-calls-0000";
const MATCHED: usize = 1000;
const UNMATCHED: usize = 50;
const AMBIGUOUS: usize = 20;

#[test]
fn api_calls_per_thousand_changed_companies() {
    let crm = HubSpot::running(TOKEN);
    let hs = &crm.hs;
    let mut domains = Vec::new();
    for i in 0..MATCHED {
        let d = format!("m{i}.com");
        hs.add_company(&[("domain", &d), ("name", &d)]);
        domains.push(d);
    }
    for i in 0..AMBIGUOUS {
        let d = format!("a{i}.com");
        hs.add_company(&[("domain", &d), ("name", &d)]);
        hs.add_company(&[("domain", &d), ("name", &format!("{d} (2)"))]);
        domains.push(d);
    }
    domains.extend((0..UNMATCHED).map(|i| format!("u{i}.com")));
    let list = hs.add_list("MANUAL");

    let env = Env::new();
    env.write(
        "mappings/hubspot.yaml",
        format!(
            "object: companies\nmatch: {{ crm_field: domain }}\nstages: [investigation, experimentation, ongoing_usage, inactive]\n\
             fields:\n  oql_stage: {{ from: stage }}\n  oql_score: {{ from: score, round: 0 }}\n  oql_last_activity: {{ from: last_seen, format: date }}\n\
             triggers:\n  - when: {{ to: inactive }}\n    action: {{ hubspot_list: \"{list}\" }}\n"
        ),
    );
    // A generous pace: the figures count calls, not the time they take.
    env.write(
        "connectors/hubspot.yaml",
        format!(
            "name: hubspot\nkind: hubspot\nschedule: \"0 */15 * * * *\"\nbase_url: {}\ntoken_env: HS_TOKEN\nmapping: mappings/hubspot.yaml\n\
             rate_limit: {{ requests: 1000, per_seconds: 1 }}\nsearch_rate_limit: {{ requests: 100, per_seconds: 1 }}\n",
            hs.url
        ),
    );
    let data: String = domains
        .iter()
        .map(|d| {
            json!({"source": "scarf", "id": d, "kind": "download", "occurred_at": "2026-09-15T10:00:00Z", "company_domain": d,
                   "package": "oqldb", "version": "1.0.0"})
            .to_string()
                + "\n"
        })
        .collect();
    let file = env.write("data.ndjson", data);
    env.ok(&["import", file.to_str().unwrap()]);

    let mut figures = Vec::new();
    // Investigation on 2026-10-30; every company gone inactive by 2026-11-20.
    for (what, as_of) in [("first sync", "2026-10-30"), ("every stage changed, ids cached", "2026-11-20"), ("nothing changed", "2026-11-20")] {
        hs.clear_requests();
        let r = env.run_with(&["sync", "--as-of", as_of], &[("HS_TOKEN", TOKEN)]);
        let summary = r.stdout.lines().find(|l| l.starts_with("hubspot:")).unwrap_or_default().to_owned();
        let requests = hs.requests();
        let count = |f: &dyn Fn(&str) -> bool| requests.iter().filter(|q| f(&q.path)).count();
        let calls = requests.len();
        let searches = count(&|p| p.ends_with("/search"));
        let writes = count(&|p| p.ends_with("/batch/update") || p.ends_with("/batch/create"));
        let lists = count(&|p| p.contains("/memberships/"));
        let per_thousand = calls as f64 * 1000.0 / MATCHED as f64;
        eprintln!("{what}: {calls} calls ({searches} searches, {writes} batch writes, {lists} list calls), {per_thousand:.1} per 1,000 changed companies\n  {summary}");
        figures.push((calls, searches, lists, summary));
    }
    assert!(figures[0].3.contains(&format!("{MATCHED} accepted")), "{}", figures[0].3);
    assert!(figures[1].3.contains(&format!("{MATCHED} accepted")), "{}", figures[1].3);
    assert_eq!(hs.list_members(&list).len(), MATCHED);
    assert_eq!(figures[1].2, MATCHED.div_ceil(500), "list memberships go 500 a call");
    assert!(figures[1].0 <= 20, "{} calls when every stage changed", figures[1].0);
    assert_eq!(figures[2].0, 0, "nothing changed, no call");
}
