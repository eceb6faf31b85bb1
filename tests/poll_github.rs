//! `oql-sync poll` against a GitHub emulator and a watched export folder.

mod common;

use std::time::{Duration, Instant};

use common::Env;
use common::github_api::{Fault, GitHub};

const TOKEN: &str = "ghp_emulated_token_secret";

struct Hub {
    gh: GitHub,
    _rt: tokio::runtime::Runtime,
}

fn hub() -> Hub {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let gh = rt.block_on(GitHub::start(TOKEN));
    Hub { gh, _rt: rt }
}

fn day(i: usize) -> String {
    let d = chrono::NaiveDate::from_ymd_opt(2026, 6, 1).unwrap() + chrono::TimeDelta::days((i % 120) as i64);
    format!("{d}T{:02}:{:02}:00Z", i % 24, i % 60)
}

/// `acme/db` with 250 stars (3 pages), forks, issues, pull requests and comments.
fn seed(h: &Hub) {
    h.gh.add_repo("acme/db");
    for i in 0..250 {
        h.gh.star("acme/db", &format!("user{i}"), &day(i));
    }
    h.gh.fork("acme/db", "forker", "2026-07-01T10:00:00Z");
    let issue = h.gh.issue("acme/db", "reporter", "2026-07-02T10:00:00Z", false);
    h.gh.react("acme/db", issue, "fan", "2026-07-05T10:00:00Z");
    h.gh.issue("acme/db", "contributor", "2026-07-03T10:00:00Z", true);
    h.gh.comment("acme/db", "reporter", "2026-07-04T10:00:00Z");
    h.gh.user("user1", Some("user1@initech.io"), "", None);
    h.gh.user("user2", Some("user2@gmail.com"), "https://user2.dev", None);
    h.gh.user("contributor", None, "", Some("@acme-inc"));
    h.gh.user("reporter", None, "https://reporter.github.io", Some("Freelance"));
}

fn setup(h: &Hub, repos: &str, extra: &str) -> Env {
    let env = Env::new();
    env.write(
        "connectors/github.yaml",
        format!("name: github\nkind: github\nschedule: \"0 */10 * * * *\"\nbase_url: {}\ntoken_env: GH_TOKEN\nrepos: [{repos}]\nretry: {{ base_delay_ms: 10, max_delay_ms: 50 }}\nrate_limit: {{ requests: 200, per_seconds: 1 }}\n{extra}", h.gh.url),
    );
    env.write("attribution.yaml", "github_orgs:\n  \"@acme-inc\": acme.com\n");
    env
}

fn poll(env: &Env) -> common::Run {
    env.run_with(&["poll"], &[("GH_TOKEN", TOKEN)])
}

fn activity_count(env: &Env) -> i64 {
    let db = env.path().join("oql.db");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM activities").fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    })
}

#[test]
fn a_first_poll_pages_through_every_endpoint_and_attributes_by_profile() {
    let h = hub();
    seed(&h);
    let env = setup(&h, "acme/db", "");
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("github: 256 fetched, 255 new activities"), "{}", r.stdout);
    assert_eq!(activity_count(&env), 255, "250 stars, a fork, an issue, a pull request, a comment, a reaction");
    let stars = h.gh.requests().iter().filter(|q| q.path.ends_with("/stargazers")).count();
    assert_eq!(stars, 3, "250 stars are three pages of 100");
    let companies = env.companies_json("2026-10-30");
    let domains: Vec<&str> = companies.as_array().unwrap().iter().map(|c| c["domain"].as_str().unwrap()).collect();
    assert!(domains.contains(&"initech.io"), "public email domain: {domains:?}");
    assert!(domains.contains(&"user2.dev"), "blog domain when the email is free mail: {domains:?}");
    assert!(domains.contains(&"acme.com"), "@acme-inc through github_orgs: {domains:?}");
    assert!(!domains.iter().any(|d| d.contains("github.io")), "a github.io blog says nothing: {domains:?}");
}

#[test]
fn a_re_poll_with_nothing_new_costs_one_free_conditional_request_per_endpoint() {
    let h = hub();
    seed(&h);
    let env = setup(&h, "acme/db", "");
    assert_eq!(poll(&env).code, 0);
    h.gh.clear_requests();
    let counted = h.gh.counted();
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let requests = h.gh.requests();
    assert_eq!(requests.len(), 5, "stars, forks, issues, pulls, comments: {requests:?}");
    assert!(requests.iter().all(|q| q.conditional && q.status == 304), "{requests:?}");
    assert_eq!(h.gh.counted(), counted, "304s are not counted against the rate limit");
    assert!(r.stdout.contains("0 new activities"), "{}", r.stdout);

    // A new star lands on the last page: the page is read again, the star comes in.
    h.gh.star("acme/db", "latecomer", "2026-10-20T10:00:00Z");
    h.gh.comment("acme/db", "latecomer", "2026-10-21T10:00:00Z");
    let r = poll(&env);
    assert!(r.stdout.contains("2 new activities"), "{}", r.stdout);
    assert_eq!(activity_count(&env), 257);
}

#[test]
fn a_poll_killed_in_the_middle_resumes_exactly() {
    let h = hub();
    seed(&h);
    let env = setup(&h, "acme/db", "");
    // The second page of stars is slow: the poll is killed while waiting for it.
    h.gh.fail_next("/repos/acme/db/stargazers", Fault::Delay(Duration::from_millis(1)), 1);
    h.gh.fail_next("/repos/acme/db/stargazers", Fault::Delay(Duration::from_secs(30)), 1);
    let mut child = env
        .command(&["poll"])
        .env("GH_TOKEN", TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !env.path().join("oql.db").exists() || activity_count(&env) < 100 {
        assert!(started.elapsed() < Duration::from_secs(20), "the first page never landed");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(activity_count(&env), 100, "the first page and its cursor were committed together");
    h.gh.clear_requests();
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(activity_count(&env), 255);
    let pages: Vec<String> = h.gh.requests().iter().filter(|q| q.path.ends_with("/stargazers")).map(|q| q.query.clone()).collect();
    assert!(pages[0].contains("page=2"), "resumed at the page it was reading: {pages:?}");
    assert_eq!(pages.len(), 2, "pages 2 and 3 only: {pages:?}");
}

#[test]
fn a_missing_repo_or_a_token_without_scope_is_reported_and_the_rest_goes_on() {
    let h = hub();
    seed(&h);
    let env = setup(&h, "acme/db, acme/gone", "");
    let r = poll(&env);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("acme/gone stars: Not Found (HTTP 404)"), "{}", r.stdout);
    assert_eq!(activity_count(&env), 255, "acme/db was polled all the same");
    let log = env.ok(&["log", "--status", "failed"]);
    assert!(log.contains("acme/gone"), "{log}");

    h.gh.read_only_token("ghp_read_only_secret");
    let env = setup(&h, "acme/db", "");
    let r = env.run_with(&["poll"], &[("GH_TOKEN", "ghp_read_only_secret")]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("Resource not accessible by personal access token (HTTP 403)"), "{}", r.stdout);
    assert!(!r.stdout.contains("ghp_read_only_secret") && !r.stderr.contains("ghp_read_only_secret"));
}

#[test]
fn secondary_rate_limits_wait_for_retry_after() {
    let h = hub();
    seed(&h);
    let env = setup(&h, "acme/db", "");
    h.gh.fail_next("/repos/acme/db/forks", Fault::SecondaryLimit { retry_after_secs: 1 }, 1);
    let started = Instant::now();
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(activity_count(&env), 255);
}

#[test]
fn backfill_days_bound_a_first_poll() {
    let h = hub();
    h.gh.add_repo("acme/db");
    let recent = (chrono::Utc::now() - chrono::TimeDelta::days(3)).format("%Y-%m-%dT10:00:00Z").to_string();
    h.gh.star("acme/db", "old", "2020-01-01T10:00:00Z");
    h.gh.star("acme/db", "new", &recent);
    h.gh.issue("acme/db", "old", "2020-01-02T10:00:00Z", false);
    let env = setup(&h, "acme/db", "backfill_days: 30\n");
    let r = poll(&env);
    assert!(r.stdout.contains("1 new activities"), "{}", r.stdout);
}

#[test]
fn a_watched_export_folder_imports_new_and_changed_files_once() {
    let env = Env::new();
    env.write("connectors/drops.yaml", "name: drops\nkind: export\nschedule: \"0 0 3 * * *\"\npath: drops/*.ndjson\n");
    let line = |id: &str, day: &str| format!("{{\"source\":\"web\",\"id\":\"{id}\",\"kind\":\"page_view\",\"occurred_at\":\"{day}T10:00:00Z\",\"company_domain\":\"acme.com\",\"url\":\"/docs\"}}\n");
    env.write("drops/2026-10-01.ndjson", line("a", "2026-10-01"));
    env.write("drops/notes.txt", "not an export");
    let r = env.ok(&["poll"]);
    assert!(r.contains("drops: 1 fetched, 1 new activities"), "{r}");
    let r = env.ok(&["poll"]);
    assert!(r.contains("drops: 0 fetched, 0 new activities"), "an unchanged file is not read again: {r}");
    env.write("drops/2026-10-01.ndjson", line("a", "2026-10-01") + &line("b", "2026-10-02"));
    env.write("drops/2026-10-02.ndjson", line("c", "2026-10-02"));
    let r = env.ok(&["poll"]);
    assert!(r.contains("drops: 2 fetched, 2 new activities"), "a grown file (read from where it ended) and a new one: {r}");
    assert_eq!(activity_count(&env), 3);
}

#[test]
fn a_changed_profile_moves_its_activities() {
    let h = hub();
    h.gh.add_repo("acme/db");
    h.gh.star("acme/db", "mover", "2026-10-01T10:00:00Z");
    h.gh.user("mover", Some("mover@initech.io"), "", None);
    let env = setup(&h, "acme/db", "profile_refresh_days: 0\n");
    assert_eq!(poll(&env).code, 0);
    let domains = |env: &Env| -> Vec<String> {
        env.companies_json("2026-10-30").as_array().unwrap().iter().map(|c| c["domain"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(domains(&env), ["initech.io"]);
    // The same profile again: a conditional request, answered 304.
    h.gh.clear_requests();
    assert_eq!(poll(&env).code, 0);
    let profile = h.gh.requests().into_iter().find(|q| q.path == "/users/mover").unwrap();
    assert!(profile.conditional && profile.status == 304);
    // The user moves to another company: the next poll re-attributes the star.
    h.gh.user("mover", Some("mover@hooli.com"), "", None);
    assert_eq!(poll(&env).code, 0);
    assert_eq!(domains(&env), ["hooli.com"]);
}

#[test]
fn a_malformed_page_is_reported_and_read_again_next_time() {
    let h = hub();
    seed(&h);
    let env = setup(&h, "acme/db", "");
    h.gh.fail_next("/repos/acme/db/forks", Fault::Malformed, 1);
    let r = poll(&env);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("acme/db forks: unreadable page"), "{}", r.stdout);
    assert_eq!(activity_count(&env), 254, "everything but the fork");
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(activity_count(&env), 255);
}
