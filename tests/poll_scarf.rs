//! `oql-sync poll` against the Scarf API emulator: day-by-day reads, a settle window
//! for days Scarf fills late, at-least-once rows, and a position that never passes a
//! day that failed (429s, 5xx, an expired token, a CSV without a needed column).

mod common;

use common::Env;
use common::crash::{scalar, texts};
use common::scarf_api::{EVENT_COLUMNS, Fault, Scarf};

const TOKEN: &str = "scarf-emulated-secret-token";
const OWNER: &str = "acme-oss";

fn day(days_ago: i64) -> String {
    (chrono::Utc::now().date_naive() - chrono::TimeDelta::days(days_ago)).format("%Y-%m-%d").to_string()
}

fn scarf_yaml(scarf: &Scarf, owner: &str, extra: &str) -> String {
    format!(
        "name: scarf\nkind: scarf\nschedule: \"0 0 * * * *\"\nbase_url: {}\ntoken_env: SCARF_TOKEN\nowner: {owner}\n\
         retry: {{ max_retries: 1, base_delay_ms: 10, max_delay_ms: 50 }}\nrate_limit: {{ requests: 1000, per_seconds: 1 }}\n{extra}",
        scarf.url
    )
}

fn poll(env: &Env) -> common::Run {
    env.run_with(&["poll"], &[("SCARF_TOKEN", TOKEN)])
}

fn db(env: &Env) -> std::path::PathBuf {
    env.path().join("oql.db")
}

fn activities(env: &Env) -> i64 {
    scalar(&db(env), "SELECT COUNT(*) FROM activities WHERE source = 'scarf'")
}

fn position(env: &Env, entity: &str) -> Option<String> {
    let all = texts(&db(env), "SELECT key || '=' || value FROM source_cursors WHERE connector = 'scarf'");
    all.iter().find_map(|kv| kv.strip_prefix(&format!("events:{entity}=")).map(str::to_owned))
}

fn event_days(scarf: &Scarf) -> Vec<String> {
    scarf.requests().iter().filter(|r| r.path.ends_with("/events")).map(|r| r.query["start_date"].clone()).collect()
}

/// Twenty events over a month, packages and pixels, a few companies.
fn month(scarf: &Scarf) {
    for i in 0..20 {
        let entity = if i % 3 == 0 { "tracking-pixels" } else { "packages" };
        let domain = ["acme.com", "initech.io", "umbrella.org"][i % 3];
        scarf.event(entity, &day(1 + i as i64 * 3 / 2), &format!("evt-{i:03}"), domain);
    }
}

#[test]
fn a_first_poll_reads_the_backfill_day_by_day_and_later_polls_only_unsettled_days() {
    let (scarf, _rt) = Scarf::running(TOKEN, OWNER);
    month(&scarf);
    let env = Env::new();
    env.write("connectors/scarf.yaml", scarf_yaml(&scarf, OWNER, "backfill_days: 30\n"));
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(activities(&env), 20, "each event once, its at-least-once copies de-duplicated: {}", r.stdout);
    assert!(r.stdout.contains("20 new activities"), "{}", r.stdout);
    // 31 days (30 back through today) of each entity, one request a day, oldest first.
    let days = event_days(&scarf);
    assert_eq!(days.len(), 62, "{days:?}");
    assert_eq!(days[0], day(30));
    assert_eq!(days[30], day(0));
    for r in scarf.requests().iter().filter(|r| r.path.ends_with("/events")) {
        assert_eq!(r.query["start_date"], r.query["end_date"], "one day a request");
    }
    assert!(r.stdout.contains("scarf: 40 fetched, 20 new activities; 63 API calls"), "62 days and the company rollup: {}", r.stdout);
    // What a 30-day poll costs, for the record (`-- --nocapture` shows it).
    println!("$ oql-sync poll\n{}", r.stdout);
    for q in scarf.requests() {
        let query: Vec<String> = q.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("  GET {}?{} -> {}", q.path, query.join("&"), q.status);
    }
    println!("$ oql-sync log --connector scarf\n{}", env.ok(&["log", "--connector", "scarf"]));
    // Settled: older than two days.
    assert_eq!(position(&env, "packages").as_deref(), Some(day(3).as_str()));
    assert_eq!(position(&env, "tracking_pixels").as_deref(), Some(day(3).as_str()));

    // Scarf fills yesterday late; a settled day is not asked again.
    scarf.event("packages", &day(1), "evt-late", "acme.com");
    scarf.clear_requests();
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("1 new activities"), "{}", r.stdout);
    let days = event_days(&scarf);
    assert_eq!(days, [day(2), day(1), day(0), day(2), day(1), day(0)], "only the unsettled days");
    assert_eq!(activities(&env), 21);
}

#[test]
fn a_failed_day_holds_the_position_and_the_next_poll_reads_from_it() {
    let (scarf, _rt) = Scarf::running(TOKEN, OWNER);
    month(&scarf);
    let env = Env::new();
    env.write("connectors/scarf.yaml", scarf_yaml(&scarf, OWNER, "backfill_days: 30\nentities: [packages]\n"));
    // Day 20 fails past the retries; 429s with and without Retry-After are waited out.
    scarf.fail_day("/v2/packages", &day(20), Fault::Status(503), 2);
    scarf.fail_day("/v2/packages", &day(25), Fault::RateLimited(Some(1)), 1);
    scarf.fail_day("/v2/packages", &day(24), Fault::RateLimited(None), 2);
    let r = poll(&env);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(&format!("packages {}: ", day(20))), "the failed day is named: {}", r.stdout);
    assert_eq!(position(&env, "packages").as_deref(), Some(day(21).as_str()), "never past the failed day");
    assert_eq!(activities(&env), 4, "the packages of the days before the failed one");

    scarf.clear_requests();
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(event_days(&scarf)[0], day(20), "read again from the failed day");
    // Packages are 13 of the 20 events (pixels are every third).
    assert_eq!(activities(&env), 13, "nothing lost, nothing twice");
    assert_eq!(position(&env, "packages").as_deref(), Some(day(3).as_str()));
}

#[test]
fn columns_added_or_dropped_are_read_by_name_and_a_missing_needed_one_fails_the_day() {
    let (scarf, _rt) = Scarf::running(TOKEN, OWNER);
    month(&scarf);
    let env = Env::new();
    env.write("connectors/scarf.yaml", scarf_yaml(&scarf, OWNER, "backfill_days: 30\nentities: [packages]\n"));
    // An old export without `platform`, `pixel`, `endpoint_id`, plus a column not yet known.
    let mut columns: Vec<&str> = EVENT_COLUMNS.iter().copied().filter(|c| !matches!(*c, "platform" | "pixel" | "endpoint_id")).collect();
    columns.insert(3, "origin_asn");
    scarf.columns(&columns);
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(activities(&env), 13);
    let domains = texts(&db(&env), "SELECT DISTINCT company_domain FROM activities ORDER BY 1");
    assert_eq!(domains, ["initech.io", "umbrella.org"], "acme.com only views pixels");

    // Without `time` no row can be placed on a day: the day fails, nothing moves.
    let env = Env::new();
    env.write("connectors/scarf.yaml", scarf_yaml(&scarf, OWNER, "backfill_days: 30\nentities: [packages]\n"));
    let columns: Vec<&str> = EVENT_COLUMNS.iter().copied().filter(|c| *c != "time").collect();
    scarf.columns(&columns);
    let r = poll(&env);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("missing column `time`"), "{}", r.stdout);
    assert_eq!(position(&env, "packages"), None);
    assert_eq!(activities(&env), 0);
}

#[test]
fn empty_days_as_bare_headers_or_empty_bodies_are_days_without_events() {
    let (scarf, _rt) = Scarf::running(TOKEN, OWNER);
    scarf.event("packages", &day(5), "evt-only", "acme.com");
    let env = Env::new();
    env.write("connectors/scarf.yaml", scarf_yaml(&scarf, OWNER, "backfill_days: 10\n"));
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    scarf.empty_bodies(true);
    let env = Env::new();
    env.write("connectors/scarf.yaml", scarf_yaml(&scarf, OWNER, "backfill_days: 10\n"));
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(activities(&env), 1);
    assert_eq!(position(&env, "tracking_pixels").as_deref(), Some(day(3).as_str()));
}

#[test]
fn an_expired_token_stops_the_poll_naming_its_variable_and_a_new_one_resumes() {
    let (scarf, _rt) = Scarf::running(TOKEN, OWNER);
    month(&scarf);
    let env = Env::new();
    env.write("connectors/scarf.yaml", scarf_yaml(&scarf, OWNER, "backfill_days: 30\n"));
    scarf.expire_token_after(10);
    let r = poll(&env);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("the environment variable SCARF_TOKEN (HTTP 401"), "{}", r.stdout);
    assert!(r.stdout.contains("polling stopped"), "{}", r.stdout);
    assert!(!r.stdout.contains(TOKEN) && !r.stderr.contains(TOKEN));
    assert_eq!(position(&env, "packages").as_deref(), Some(day(21).as_str()), "ten days were read");
    assert_eq!(position(&env, "tracking_pixels"), None, "the pixels were not reached");
    let requests = scarf.requests().len();
    assert_eq!(requests, 11, "no request after the 401");

    scarf.set_token(TOKEN);
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(activities(&env), 20);
}

#[test]
fn an_unknown_owner_and_a_plan_without_exports_are_told_apart_from_a_bad_token() {
    let (scarf, _rt) = Scarf::running(TOKEN, OWNER);
    let env = Env::new();
    env.write("connectors/scarf.yaml", scarf_yaml(&scarf, "nobody-here", ""));
    let r = poll(&env);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("unknown owner `nobody-here` (HTTP 404: Owner nobody-here not found)"), "{}", r.stdout);
    assert_eq!(scarf.requests().len(), 1, "one answer is enough");

    env.write("connectors/scarf.yaml", scarf_yaml(&scarf, OWNER, ""));
    scarf.not_eligible(true);
    let r = poll(&env);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("owner `acme-oss` is not eligible for export"), "{}", r.stdout);
    assert!(r.stdout.contains("is not the problem"), "the plan, not the token: {}", r.stdout);
}

#[test]
fn scarfs_company_rollup_becomes_the_scarf_stage_signals_beside_ours() {
    let (scarf, _rt) = Scarf::running(TOKEN, OWNER);
    month(&scarf);
    scarf.rollup_row("initech.io", "ongoing-usage", &day(40));
    scarf.rollup_row("umbrella.org", "Evaluation", "");
    scarf.rollup_row("not-seen-by-us.com", "interest", &day(2));
    let env = Env::new();
    env.write("connectors/scarf.yaml", scarf_yaml(&scarf, OWNER, "backfill_days: 30\n"));
    env.write("connectors/rows.yaml", "name: rows\nkind: file\nschedule: \"0 0 0 1 1 *\"\nmapping: mappings/rows.yaml\npath: out/rows.csv\n");
    env.write(
        "mappings/rows.yaml",
        "object: rows\nmatch: { crm_field: domain }\nfields:\n  stage: { from: stage }\n  scarf: { from: scarf_stage, values: { interest: Interest, investigation: Investigation, \
         experimentation: Experimentation, ongoing_usage: Ongoing Usage, inactive: Inactive } }\n  scarf_since: { from: scarf_stage_since }\n",
    );
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let rollups = scarf.requests().iter().filter(|q| q.path == format!("/v2/packages/{OWNER}/company-rollup")).count();
    assert_eq!(rollups, 1);

    let companies = env.companies_json(&day(0));
    let initech = companies.as_array().unwrap().iter().find(|c| c["domain"] == "initech.io").unwrap();
    assert_eq!(initech["scarf_stage"], "ongoing_usage", "Scarf's spelling made ours");
    assert_eq!(initech["scarf_stage_since"], day(40));
    assert_ne!(initech["stage"], initech["scarf_stage"], "ours comes from our model: {initech}");
    let acme = companies.as_array().unwrap().iter().find(|c| c["domain"] == "acme.com").unwrap();
    assert!(acme.get("scarf_stage").is_none(), "not in Scarf's rollup: {acme}");

    let explained = env.ok(&["explain", "initech.io", "--as-of", &day(0)]);
    assert!(explained.contains(&format!("Scarf's own stage: ongoing_usage since {}", day(40))), "{explained}");

    env.ok(&["sync", "--connector", "rows", "--as-of", &day(0)]);
    let rows = std::fs::read_to_string(env.path().join("out/rows.csv")).unwrap();
    let line = |domain: &str| rows.lines().find(|l| l.contains(domain)).unwrap_or_default().to_owned();
    assert!(line("initech.io").contains(&format!("Ongoing Usage,{}", day(40))), "{rows}");
    assert!(line("umbrella.org").contains("Evaluation"), "a stage of Scarf's not ours goes as Scarf spells it: {rows}");

    // Read once a day: a second poll asks again for the unsettled days only.
    scarf.clear_requests();
    poll(&env);
    assert!(scarf.requests().iter().all(|q| !q.path.ends_with("company-rollup")));
}

#[test]
fn check_live_reads_one_day_and_says_what_to_fix() {
    let (scarf, _rt) = Scarf::running(TOKEN, OWNER);
    let env = Env::new();
    env.write("connectors/scarf.yaml", scarf_yaml(&scarf, OWNER, ""));
    let r = env.run_with(&["check", "--live"], &[("SCARF_TOKEN", TOKEN)]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let text = |out: &str| out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(text(&r.stdout).contains("the events of `acme-oss` are readable"), "{}", r.stdout);
    assert_eq!(scarf.requests().len(), 2, "one day of each entity");

    scarf.not_eligible(true);
    let r = env.run_with(&["check", "--live"], &[("SCARF_TOKEN", TOKEN)]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(text(&r.stdout).contains("not eligible for export") && text(&r.stdout).contains("Scarf's plan, not the token"), "{}", r.stdout);
    let r = env.run_with(&["check", "--live"], &[("SCARF_TOKEN", "wrong")]);
    assert!(text(&r.stdout).contains("Scarf refused the token (HTTP 401"), "{}", r.stdout);
}

#[test]
fn a_poll_killed_anywhere_loses_no_day_behind_its_position() {
    let (scarf, _rt) = Scarf::running(TOKEN, OWNER);
    month(&scarf);
    scarf.delay_answers(std::time::Duration::from_millis(15));
    let env = Env::new();
    env.write("connectors/scarf.yaml", scarf_yaml(&scarf, OWNER, "backfill_days: 30\n"));
    let mut points = common::crash::KillPoints::new("scarf-poll");
    let command = || {
        let mut c = env.command(&["poll"]);
        c.env("SCARF_TOKEN", TOKEN);
        c
    };
    let full = common::crash::measure(&mut command());
    // Start again from no store: the store, its WAL and lock files.
    for e in std::fs::read_dir(env.path()).unwrap() {
        let path = e.unwrap().path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("oql.db")) {
            std::fs::remove_file(path).unwrap();
        }
    }
    for _ in 0..6 {
        common::crash::kill_after(&mut command(), points.delay(full));
        if !db(&env).exists() {
            continue;
        }
        // Every event of a day at or before an entity's position is stored.
        let stored = texts(&db(&env), "SELECT id FROM activities");
        for i in 0..20usize {
            let (entity, key) = if i % 3 == 0 { ("pixels", "tracking_pixels") } else { ("packages", "packages") };
            let day_of = day(1 + i as i64 * 3 / 2);
            if position(&env, key).is_some_and(|p| day_of <= p) {
                assert!(stored.contains(&format!("evt-{i:03}")), "{entity} evt-{i:03} of {day_of} lost behind the position (seed {})", points.seed);
            }
        }
    }
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(activities(&env), 20, "seed {}", points.seed);
    assert_eq!(common::crash::integrity(&db(&env)), ["ok"]);
}
