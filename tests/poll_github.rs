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
        // A store the binary is still creating has no table yet: nothing stored.
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM activities").fetch_one(&pool).await.unwrap_or(0);
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
    // 258: the issues and comments windows moved, so their new first pages (the newest
    // issue and comment again) are read before an ETag is kept.
    assert!(r.stdout.contains("github: 258 fetched, 255 new activities"), "{}", r.stdout);
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

/// The `(id, occurred_at)` of every stored activity, sorted.
fn activities(env: &Env) -> Vec<(String, String)> {
    let db = env.path().join("oql.db");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT id, occurred_at FROM activities ORDER BY id").fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows.into_iter().map(|(id, at)| (id, chrono::DateTime::from_timestamp_nanos(at).to_rfc3339())).collect()
    })
}

fn ids(env: &Env) -> Vec<String> {
    activities(env).into_iter().map(|(id, _)| id).collect()
}

fn domains(env: &Env) -> Vec<String> {
    env.companies_json("2026-10-30").as_array().unwrap().iter().map(|c| c["domain"].as_str().unwrap().to_owned()).collect()
}

fn last_run(env: &Env) -> serde_json::Value {
    let log: serde_json::Value = serde_json::from_str(&env.ok(&["log", "--format", "json"])).unwrap();
    log["runs"].as_array().unwrap().iter().max_by_key(|r| r["id"].as_i64()).cloned().unwrap()
}

#[test]
fn a_full_last_page_that_answers_304_does_not_hide_the_next_page() {
    let h = hub();
    h.gh.add_repo("acme/db");
    for i in 0..200 {
        h.gh.star("acme/db", &format!("user{i}"), &day(i));
    }
    let env = setup(&h, "acme/db", "");
    assert_eq!(poll(&env).code, 0);
    assert_eq!(activity_count(&env), 200);
    // Page 2 stays the same 100 stars (a 304 to its ETag); the new star is on page 3.
    h.gh.star("acme/db", "star201", "2026-10-20T10:00:00Z");
    h.gh.clear_requests();
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(ids(&env).contains(&"star:acme/db:star201".to_owned()), "the 201st star: {}", r.stdout);
    let pages: Vec<(String, u16)> =
        h.gh.requests().iter().filter(|q| q.path.ends_with("/stargazers")).map(|q| (q.query.clone(), q.status)).collect();
    assert_eq!(pages, [("per_page=100&page=2".to_owned(), 304), ("per_page=100&page=3".to_owned(), 200)], "{pages:?}");
}

#[test]
fn an_item_landing_between_two_requests_is_stored_not_hidden_behind_an_etag() {
    let h = hub();
    h.gh.add_repo("acme/db");
    h.gh.issue("acme/db", "first", "2026-07-01T10:00:00Z", false);
    h.gh.comment("acme/db", "first", "2026-07-01T11:00:00Z");
    // Right after the first issues (and comments) page is answered, one more lands.
    h.gh.after_next("/repos/acme/db/issues?", |gh| {
        gh.issue("acme/db", "between", "2026-07-02T10:00:00Z", false);
    });
    h.gh.after_next("/repos/acme/db/issues/comments", |gh| gh.comment("acme/db", "between", "2026-07-02T11:00:00Z"));
    let env = setup(&h, "acme/db", "");
    assert_eq!(poll(&env).code, 0);
    // The next polls are answered 304 to whatever ETag was kept: it must cover items
    // that were stored, never ones only seen in passing.
    assert_eq!(poll(&env).code, 0);
    assert_eq!(poll(&env).code, 0);
    let got = ids(&env);
    assert!(got.contains(&"issue:acme/db:2".to_owned()), "the issue that landed in between: {got:?}");
    assert_eq!(got.iter().filter(|id| id.starts_with("comment:")).count(), 2, "both comments: {got:?}");
    h.gh.clear_requests();
    assert_eq!(poll(&env).code, 0);
    assert!(h.gh.requests().iter().all(|q| q.status == 304), "settled: every endpoint answers 304 {:?}", h.gh.requests());
}

#[test]
fn profiles_that_failed_are_retried_with_backoff_and_a_missing_one_fails_nothing() {
    let h = hub();
    h.gh.add_repo("acme/db");
    for (i, login) in ["flaky", "flakier", "ghost", "steady"].iter().enumerate() {
        h.gh.star("acme/db", login, &day(i));
    }
    h.gh.user("flaky", Some("flaky@initech.io"), "", None);
    h.gh.user("flakier", Some("flakier@hooli.com"), "", None);
    h.gh.user("steady", Some("steady@acme.com"), "", None);
    h.gh.missing_user("ghost");
    // Each 502 outlasts the client's retries (5): the fetch fails for this poll.
    h.gh.fail_next("/users/flaky", Fault::ServerError(502), 6);
    h.gh.fail_next("/users/flakier", Fault::ServerError(502), 12);
    let env = setup(&h, "acme/db", "");
    let r = poll(&env);
    assert_eq!(r.code, 0, "a missing or failing profile fails nothing: {}\n{}", r.stdout, r.stderr);
    assert_eq!(activity_count(&env), 4);
    assert!(r.stderr.contains("2 profiles not fetched, queued for retry"), "said once: {}", r.stderr);
    assert_eq!(domains(&env), ["acme.com"]);

    h.gh.clear_requests();
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(domains(&env), ["acme.com", "initech.io"], "flaky's profile came on the retry");
    let asked = |h: &Hub, login: &str| h.gh.requests().iter().filter(|q| q.path == format!("/users/{login}")).count();
    assert_eq!(asked(&h, "ghost"), 0, "a 404 is remembered, not asked every poll");
    assert_eq!(asked(&h, "flakier"), 6, "retried on the next poll");

    // flakier failed twice: it waits (15 minutes) before the third try.
    h.gh.clear_requests();
    assert_eq!(poll(&env).code, 0);
    assert_eq!(asked(&h, "flakier"), 0, "backed off");
}

#[test]
fn reactions_whose_fetch_failed_after_their_page_was_stored_are_read_next_poll() {
    let h = hub();
    h.gh.add_repo("acme/db");
    let issue = h.gh.issue("acme/db", "reporter", "2026-07-02T10:00:00Z", false);
    h.gh.react("acme/db", issue, "fan", "2026-07-03T10:00:00Z");
    // A later issue on the same page moves the window past the reacted one.
    h.gh.issue("acme/db", "reporter", "2026-07-04T10:00:00Z", false);
    h.gh.fail_next(&format!("/repos/acme/db/issues/{issue}/reactions"), Fault::ServerError(502), 6);
    let env = setup(&h, "acme/db", "");
    let r = poll(&env);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("reactions of #1"), "{}", r.stdout);
    assert!(!ids(&env).iter().any(|id| id.starts_with("reaction:")));
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(ids(&env).iter().filter(|id| id.starts_with("reaction:")).count(), 1, "{:?}", ids(&env));
    h.gh.clear_requests();
    assert_eq!(poll(&env).code, 0);
    assert!(!h.gh.requests().iter().any(|q| q.path.ends_with("/reactions")), "read once, no longer pending");
}

#[test]
fn a_secondary_limit_without_retry_after_holds_every_request_for_the_wait() {
    let h = hub();
    seed(&h);
    // The limit starts right after the first stars page and lasts 400 ms.
    h.gh.after_next("/repos/acme/db/stargazers", |gh| gh.limit_secondary(Duration::from_millis(400)));
    let env = setup(&h, "acme/db", "");
    env.write(
        "connectors/github.yaml",
        format!("name: github\nkind: github\nschedule: \"0 */10 * * * *\"\nbase_url: {}\ntoken_env: GH_TOKEN\nrepos: [acme/db]\nretry: {{ base_delay_ms: 10, max_delay_ms: 50, secondary_limit_wait_ms: 600 }}\nrate_limit: {{ requests: 200, per_seconds: 1 }}\n", h.gh.url),
    );
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(h.gh.sent_while_limited(), 1, "one request met the limit; none followed it while it lasted");
    assert_eq!(activity_count(&env), 255);
    let limited = h.gh.requests().iter().position(|q| q.status == 403).unwrap();
    let gap = h.gh.requests()[limited + 1].at.duration_since(h.gh.requests()[limited].at);
    assert!(gap >= Duration::from_millis(600), "waited the configured minimum: {gap:?}");
    assert!(last_run(&env)["rate_limit_waits"].as_i64().unwrap() >= 1, "{}", last_run(&env));
}

#[test]
fn a_secondary_limit_that_lasts_stops_the_poll_with_one_message_and_the_next_poll_finishes() {
    let h = hub();
    seed(&h);
    h.gh.after_next("/repos/acme/db/stargazers", |gh| gh.limit_secondary(Duration::from_secs(60)));
    let env = setup(&h, "acme/db", "");
    env.write(
        "connectors/github.yaml",
        format!("name: github\nkind: github\nschedule: \"0 */10 * * * *\"\nbase_url: {}\ntoken_env: GH_TOKEN\nrepos: [acme/db]\nretry: {{ base_delay_ms: 10, max_delay_ms: 50, secondary_limit_wait_ms: 100, max_wait_ms: 1000 }}\nrate_limit: {{ requests: 200, per_seconds: 1 }}\n", h.gh.url),
    );
    let r = poll(&env);
    assert_eq!(r.code, 1, "{}", r.stdout);
    // Waits of 100, 200, 400 and 800 ms; the next (1.6 s) is past max_wait_ms.
    let sent = |h: &Hub| h.gh.requests().iter().map(|q| format!("{} {}", q.path, q.status)).collect::<Vec<_>>();
    assert_eq!(h.gh.sent_while_limited(), 5, "{} requests: {:?}", h.gh.requests().len(), &sent(&h)[..sent(&h).len().min(12)]);
    assert_eq!(h.gh.requests().len(), 6, "nothing more after the poll stopped");
    assert_eq!(r.stdout.matches("rate limited").count(), 1, "one message: {}", r.stdout);
    assert!(r.stdout.contains("polling stopped"), "{}", r.stdout);
    assert_eq!(activity_count(&env), 100, "the first page stays");

    h.gh.limit_secondary(Duration::ZERO);
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(activity_count(&env), 255);
    assert!(domains(&env).contains(&"initech.io".to_owned()), "the profiles of the stopped poll were fetched");
}

#[test]
fn poll_runs_log_the_rate_limit_waits_they_made() {
    let h = hub();
    seed(&h);
    h.gh.fail_next("/repos/acme/db/forks", Fault::PrimaryLimit { reset_in_secs: 1 }, 1);
    let env = setup(&h, "acme/db", "");
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(activity_count(&env), 255);
    let run = last_run(&env);
    assert!(run["rate_limit_waits"].as_i64().unwrap() >= 1, "{run}");
    // The wait GitHub imposed is told apart from the connector's own pacing.
    assert!(run["server_waits"].as_i64().unwrap() >= 1, "{run}");
    assert_eq!(run["rate_limit_waits"].as_i64(), Some(run["server_waits"].as_i64().unwrap() + run["pacing_waits"].as_i64().unwrap()), "{run}");
}

#[test]
fn a_rejected_token_is_reported_once_naming_its_variable_and_stops_the_poll() {
    let h = hub();
    seed(&h);
    h.gh.add_repo("acme/ui");
    let env = setup(&h, "acme/db, acme/ui", "");
    let r = env.run_with(&["poll"], &[("GH_TOKEN", "ghp_revoked")]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout.matches("HTTP 401").count(), 1, "{}", r.stdout);
    assert!(r.stdout.contains("$GH_TOKEN"), "{}", r.stdout);
    assert_eq!(h.gh.requests().len(), 1, "no request after the first 401");
    assert!(!r.stdout.contains("ghp_revoked") && !r.stderr.contains("ghp_revoked"));
}

#[test]
fn backfill_days_bound_every_poll_not_only_the_first() {
    let h = hub();
    h.gh.add_repo("acme/db");
    let recent = |d: i64| (chrono::Utc::now() - chrono::TimeDelta::days(d)).format("%Y-%m-%dT10:00:00Z").to_string();
    h.gh.star("acme/db", "old", "2020-01-01T10:00:00Z");
    h.gh.star("acme/db", "new", &recent(3));
    h.gh.fork("acme/db", "oldforker", "2020-01-03T10:00:00Z");
    let old_issue = h.gh.issue("acme/db", "old", "2020-01-02T10:00:00Z", false);
    let env = setup(&h, "acme/db", "backfill_days: 30\n");
    assert!(poll(&env).stdout.contains("1 new activities"));
    // The stars and forks pages are read again, and the old issue comes back with a new
    // reaction: only the new star, fork and the reaction are inside the window.
    h.gh.star("acme/db", "newer", &recent(1));
    h.gh.fork("acme/db", "newforker", &recent(1));
    h.gh.react("acme/db", old_issue, "fan", &recent(1));
    let r = poll(&env);
    assert!(r.stdout.contains("3 new activities"), "{}", r.stdout);
    let cutoff = (chrono::Utc::now() - chrono::TimeDelta::days(30)).to_rfc3339();
    let old: Vec<_> = activities(&env).into_iter().filter(|(_, at)| *at < cutoff).collect();
    assert!(old.is_empty(), "nothing older than backfill_days: {old:?}");
}

#[test]
fn blogs_on_personal_page_hosts_never_become_companies() {
    let h = hub();
    h.gh.add_repo("acme/db");
    let blogs = [
        ("writer", "https://writer.substack.com"),
        ("links", "https://linktr.ee/links"),
        ("poster", "https://dev.to/poster"),
        ("site", "https://site.netlify.app/"),
        ("mine", "https://mysite.dev/about"),
        ("worker", "https://initech.io"),
    ];
    for (i, (login, blog)) in blogs.iter().enumerate() {
        h.gh.star("acme/db", login, &day(i));
        h.gh.user(login, None, blog, None);
    }
    let env = setup(&h, "acme/db", "");
    env.write("attribution.yaml", "personal_hosts: [mysite.dev]\n");
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(domains(&env), ["initech.io"], "only a company's own site places its author");
}

#[test]
fn a_changed_base_url_moves_every_request_to_the_new_host() {
    let h = hub();
    seed(&h);
    let env = setup(&h, "acme/db", "");
    assert_eq!(poll(&env).code, 0);
    // The same repo behind another host (a proxy, a GitHub Enterprise move).
    let other = hub();
    seed(&other);
    other.gh.star("acme/db", "latecomer", "2026-10-20T10:00:00Z");
    other.gh.fork("acme/db", "lateforker", "2026-10-20T10:00:00Z");
    let moved = setup(&other, "acme/db", "");
    std::fs::copy(moved.path().join("connectors/github.yaml"), env.path().join("connectors/github.yaml")).unwrap();
    h.gh.clear_requests();
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(h.gh.requests().is_empty(), "the old host is not asked: {:?}", h.gh.requests());
    let got = ids(&env);
    assert!(got.contains(&"star:acme/db:latecomer".to_owned()) && got.iter().filter(|i| i.starts_with("fork:")).count() == 2, "{got:?}");
}
