//! Crash safety: the real binary killed with SIGKILL at seeded pseudo-random points
//! (spread over the measured length of an uninterrupted run) during an import, a GitHub
//! poll, a Slack poll reading history and thread replies, and a HubSpot sync whose writes land in the CRM before their answer does; after
//! each kill the command runs again, and the store and the CRM must equal those of the
//! uninterrupted run: every activity once, the same cursors, every CRM record in its
//! desired state, at most the unconfirmed records re-sent, each trigger fired once, and
//! `PRAGMA integrity_check` clean.
//!
//! A failure names its seed and delay; `OQL_CRASH_SEED=<seed>` replays the same points.
//! `--nocapture` shows how many kill points each scenario survived.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Env;
use common::crash::{KillPoints, copy_store, integrity, kill_after, measure, scalar, texts};

/// Kill points each scenario must survive (points where the run had already finished
/// before its delay are not counted and a further point is drawn).
const KILLS: usize = 50;

/// Runs `kill_point(delay)` until `KILLS` of them killed the process; every point's
/// checks run inside it, and a failure says which seed and delay to replay.
fn survive(scenario: &str, span: Duration, kill_point: impl FnMut(Duration) -> bool) -> usize {
    survive_kills(scenario, KILLS, span, kill_point)
}

/// `survive` with its own number of kill points (a scenario whose every point costs a
/// second or more).
fn survive_kills(scenario: &str, kills: usize, span: Duration, mut kill_point: impl FnMut(Duration) -> bool) -> usize {
    let mut points = KillPoints::new(scenario);
    let (mut killed, mut finished_first) = (0, 0);
    while killed < kills {
        assert!(finished_first < 4 * kills, "{scenario}: too many runs finished before their kill point");
        let delay = points.delay(span);
        let started = std::time::Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kill_point(delay)));
        match outcome {
            Ok(true) => {
                killed += 1;
                if std::env::var_os("OQL_CRASH_VERBOSE").is_some() {
                    eprintln!("{scenario}: kill point {killed} at {delay:?} survived ({:?})", started.elapsed());
                }
            }
            Ok(false) => finished_first += 1,
            Err(e) => {
                eprintln!("{scenario}: kill point {} failed: OQL_CRASH_SEED={} delay={delay:?}", killed + 1, points.seed);
                std::panic::resume_unwind(e);
            }
        }
    }
    eprintln!(
        "{scenario}: survived {killed} SIGKILLs (seed {}, delays over {span:?}; {finished_first} runs finished before their point)",
        points.seed
    );
    killed
}

/// The quickest of three uninterrupted runs, each from a fresh start (the first one
/// warms the caches; a busy machine slows any one of them), and the last run's state.
fn quickest<T>(mut run: impl FnMut() -> (T, Duration)) -> (T, Duration) {
    let (mut last, mut span) = run();
    for _ in 0..2 {
        let (state, took) = run();
        (last, span) = (state, span.min(took));
    }
    (last, span)
}

fn db(env: &Env) -> PathBuf {
    env.path().join("oql.db")
}

fn assert_sound(db: &Path) {
    assert_eq!(integrity(db), ["ok"], "PRAGMA integrity_check");
}

/// `source:id` of every activity, sorted; duplicates would show twice.
fn activity_keys(db: &Path) -> Vec<String> {
    texts(db, "SELECT source || ':' || id FROM activities ORDER BY source, id")
}

/// Every cursor, with the API's address (a cursor may hold a next-page URL) as `{api}`.
fn cursors(db: &Path, api: &str) -> Vec<String> {
    texts(db, "SELECT connector || ' ' || key || ' ' || value FROM source_cursors ORDER BY connector, key")
        .into_iter()
        .map(|c| c.replace(api, "{api}"))
        .collect()
}

/// One release download per (domain, day), as NDJSON.
fn downloads(domains: impl Iterator<Item = (String, &'static str)>) -> String {
    domains
        .enumerate()
        .map(|(i, (domain, day))| {
            format!(
                "{{\"source\":\"scarf\",\"id\":\"a{i}\",\"kind\":\"download\",\"occurred_at\":\"{day}T10:00:00Z\",\"company_domain\":\"{domain}\",\"package\":\"oqldb\",\"version\":\"1.0.0\"}}\n"
            )
        })
        .collect()
}

#[test]
fn an_import_killed_anywhere_leaves_every_activity_exactly_once() {
    let data_dir = Env::new();
    let data = data_dir.path().join("data.ndjson");
    data_dir.ok(&["generate", "--activities", "4000", "--companies", "40", "--end", "2026-10-31", "--out", data.to_str().unwrap()]);
    let file = data.to_str().unwrap();
    let (reference, span) = quickest(|| {
        let env = Env::new();
        let took = measure(&mut env.command(&["import", file]));
        (env, took)
    });
    let want_keys = activity_keys(&db(&reference));
    let want_companies = reference.companies_json("2026-10-31");
    assert_eq!(want_keys.len(), 4000);

    survive("import", span, |delay| {
        let env = Env::new();
        if !kill_after(&mut env.command(&["import", file]), delay) {
            return false;
        }
        let out = env.ok(&["import", file]);
        let keys = activity_keys(&db(&env));
        assert_eq!(keys.len(), want_keys.len(), "every activity once: {out}");
        assert!(keys == want_keys, "the same activities as an uninterrupted import");
        assert_sound(&db(&env));
        assert_eq!(env.companies_json("2026-10-31"), want_companies, "scores as after an uninterrupted import");
        true
    });
}

mod poll {
    use super::*;
    use common::github_api::GitHub;

    const TOKEN: &str = "ghp_crash_suite_token";

    fn config(gh: &GitHub) -> Env {
        let env = Env::new();
        env.write(
            "connectors/github.yaml",
            format!(
                "name: github\nkind: github\nschedule: \"0 */10 * * * *\"\nbase_url: {}\ntoken_env: GH_TOKEN\nrepos: [acme/db, acme/ui]\n\
                 retry: {{ base_delay_ms: 10, max_delay_ms: 50 }}\nrate_limit: {{ requests: 2000, per_seconds: 1 }}\n",
                gh.url
            ),
        );
        env
    }

    /// Two repos with two pages of stars (the same stargazers, so one profile each and a
    /// short run), a fork, an issue with a reaction, a pull request and a comment.
    fn github(rt: &tokio::runtime::Runtime) -> GitHub {
        let gh = rt.block_on(GitHub::start(TOKEN));
        for repo in ["acme/db", "acme/ui"] {
            gh.add_repo(repo);
            for i in 0..150 {
                let day = chrono::NaiveDate::from_ymd_opt(2026, 6, 1).unwrap() + chrono::TimeDelta::days(i % 120);
                gh.star(repo, &format!("user{i}"), &format!("{day}T10:{:02}:00Z", i % 60));
            }
            gh.fork(repo, "forker", "2026-07-01T10:00:00Z");
            let issue = gh.issue(repo, "reporter", "2026-07-02T10:00:00Z", false);
            gh.react(repo, issue, "fan", "2026-07-05T10:00:00Z");
            gh.issue(repo, "contributor", "2026-07-03T10:00:00Z", true);
            gh.comment(repo, "reporter", "2026-07-04T10:00:00Z");
        }
        gh.user("reporter", Some("reporter@initech.io"), "", None);
        gh
    }

    fn poll(env: &Env) -> std::process::Command {
        let mut c = env.command(&["poll"]);
        c.env("GH_TOKEN", TOKEN);
        c
    }

    #[test]
    fn a_poll_killed_anywhere_resumes_with_no_gap_no_repeat_and_the_same_cursors() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let ((gh, reference), span) = quickest(|| {
            let gh = github(&rt);
            let env = config(&gh);
            let took = measure(&mut poll(&env));
            ((gh, env), took)
        });
        let want_keys = activity_keys(&db(&reference));
        let want_cursors = cursors(&db(&reference), &gh.url);
        assert_eq!(want_keys.len(), 2 * 155);

        survive("github poll", span, |delay| {
            // A fresh GitHub each time: a shared one would spend its hourly 5,000 calls.
            let gh = github(&rt);
            let env = config(&gh);
            if !kill_after(&mut poll(&env), delay) {
                return false;
            }
            let out = poll(&env).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
            let keys = activity_keys(&db(&env));
            assert_eq!(keys.len(), want_keys.len(), "no gap and nothing twice");
            assert!(keys == want_keys, "the same activities as an uninterrupted poll");
            assert_eq!(cursors(&db(&env), &gh.url), want_cursors, "the cursors of an uninterrupted poll");
            assert_sound(&db(&env));
            true
        });
    }
}

/// A Slack poll killed while it reads channel history (newest first, the channel's
/// position moved after the last page) and thread replies (each page committed with the
/// thread's position): the restart stores exactly what an uninterrupted poll does.
mod poll_slack {
    use super::*;
    use common::slack_api::{Slack, ts_days_ago};

    const TOKEN: &str = "xoxb-crash-suite-token";
    /// Each point is a killed poll and its restart against the real binary: fewer than
    /// the other scenarios keep the suite quick.
    const SLACK_KILLS: usize = 25;

    /// Two channels: three pages of history in one, and threads of one to three pages
    /// of replies; a deactivated member and a Slack Connect user among the speakers.
    fn workspace(rt: &tokio::runtime::Runtime) -> Slack {
        let slack = rt.block_on(Slack::start(TOKEN));
        for (id, email) in [("U01", "ann@acme.com"), ("U02", "bob@initech.io"), ("U03", "cy@gmail.com")] {
            slack.member(id, Some(email), false);
        }
        slack.deactivated("U04", Some("dee@umbrella.org"));
        slack.external("W01", "T0GLOBEX", Some("eve@globex.com"));
        let people = ["U01", "U02", "U03", "U04", "W01"];
        for channel in ["C01", "C02"] {
            slack.channel(channel, true);
        }
        // Timestamps within three seconds posted days ago: inside the thread window.
        let second = |days: f64| ts_days_ago(days, 0).split_once('.').unwrap().0.to_owned();
        let (c01, c02, replied) = (second(3.0), second(2.0), second(1.0));
        for i in 0..450 {
            slack.message("C01", &format!("{c01}.{i:06}"), people[i % 5]);
        }
        for i in 0..40 {
            slack.message("C02", &format!("{c02}.{i:06}"), people[i % 5]);
        }
        for (channel, parent, first, replies) in [("C01", &c01, 10, 450), ("C01", &c01, 300, 5), ("C01", &c01, 449, 220), ("C02", &c02, 7, 30)] {
            let parent = format!("{parent}.{first:06}");
            for r in 0..replies {
                slack.reply(channel, &parent, &format!("{replied}.{:06}", first * 1000 + r), people[r % 5]);
            }
        }
        slack
    }

    fn config(slack: &Slack) -> Env {
        let env = Env::new();
        env.write(
            "connectors/slack.yaml",
            format!(
                "name: slack\nkind: slack\nschedule: \"0 */5 * * * *\"\nbase_url: {}\ntoken_env: SLACK_TOKEN\nchannels: [C01, C02]\n\
                 rate_limit: {{ requests: 2000, per_seconds: 1 }}\nhistory_rate_limit: {{ requests: 2000, per_seconds: 1 }}\n\
                 retry: {{ base_delay_ms: 10, max_delay_ms: 50 }}\n",
                slack.url
            ),
        );
        env
    }

    fn poll(env: &Env) -> std::process::Command {
        let mut c = env.command(&["poll"]);
        c.env("SLACK_TOKEN", TOKEN);
        c
    }

    fn threads(db: &Path) -> Vec<String> {
        texts(db, "SELECT channel || ' ' || thread_ts || ' ' || latest_reply || ' ' || read_to FROM slack_threads ORDER BY channel, thread_ts")
    }

    #[test]
    fn a_slack_poll_killed_anywhere_resumes_with_no_gap_no_repeat_and_the_same_positions() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        // One workspace for every point: a poll changes nothing in it.
        let slack = workspace(&rt);
        let (reference, span) = quickest(|| {
            let env = config(&slack);
            let took = measure(&mut poll(&env));
            (env, took)
        });
        let want_keys = activity_keys(&db(&reference));
        let want_cursors = cursors(&db(&reference), &slack.url);
        let want_threads = threads(&db(&reference));
        assert_eq!(want_keys.len(), 450 + 40 + 450 + 5 + 220 + 30, "every message and every reply");
        assert_eq!(want_threads.len(), 4);

        survive_kills("slack poll", SLACK_KILLS, span, |delay| {
            let env = config(&slack);
            if !kill_after(&mut poll(&env), delay) {
                return false;
            }
            let out = poll(&env).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
            let keys = activity_keys(&db(&env));
            assert_eq!(keys.len(), want_keys.len(), "no gap and nothing twice");
            assert!(keys == want_keys, "the same activities as an uninterrupted poll");
            assert_eq!(cursors(&db(&env), &slack.url), want_cursors, "the channels' positions of an uninterrupted poll");
            assert_eq!(threads(&db(&env)), want_threads, "the threads' positions of an uninterrupted poll");
            assert_sound(&db(&env));
            true
        });
    }
}

mod sync {
    use super::*;
    use common::hubspot_crm::{Fault, HubSpot};

    const TOKEN: &str = "pat-crash-suite-token";
    const UPDATE: &str = "/crm/v3/objects/companies/batch/update";
    /// 100 companies in investigation and 20 gone inactive (on 2026-10-31): two update
    /// batches (100 and 20), and a trigger for each inactive one. Few enough calls that
    /// a killed run and its restart stay inside HubSpot's 100 requests per 10 s.
    const ACTIVE: usize = 100;
    const INACTIVE: usize = 20;

    fn domains() -> impl Iterator<Item = (String, &'static str)> {
        (0..ACTIVE).map(|i| (format!("c{i}.com"), "2026-09-15")).chain((0..INACTIVE).map(|i| (format!("m{i}.com"), "2026-09-01")))
    }

    /// A HubSpot with the companies, and HubSpot's answer to each batch slow after it
    /// applied the batch: the window between a CRM write and its acknowledgement.
    fn crm(rt: &tokio::runtime::Runtime) -> (HubSpot, String) {
        let hs = rt.block_on(HubSpot::start());
        hs.accept_token(TOKEN);
        for (domain, _) in domains() {
            hs.add_company(&[("domain", &domain)]);
        }
        let list = hs.add_list("MANUAL");
        hs.fail_next(UPDATE, Fault::DelayAfterApply(Duration::from_millis(100)), 2);
        (hs, list)
    }

    fn configure(env: &Env, hs: &HubSpot, list: &str) {
        env.write(
            "mappings/crm.yaml",
            format!(
                "object: companies\nmatch: {{ crm_field: domain }}\nfirst_sync: fire\nfields:\n  oql_stage: {{ from: stage }}\n  oql_score: {{ from: score, round: 0 }}\n\
                 triggers:\n  - when: {{ to: inactive }}\n    action: {{ hubspot_list: \"{list}\" }}\n"
            ),
        );
        env.write(
            "connectors/crm.yaml",
            format!(
                "name: crm\nkind: hubspot\nschedule: \"0 */15 * * * *\"\nbase_url: {}\ntoken_env: CRM_TOKEN\nmapping: mappings/crm.yaml\n\
                 rate_limit: {{ requests: 1000, per_seconds: 1 }}\nretry: {{ base_delay_ms: 20, max_delay_ms: 200 }}\n",
                hs.url
            ),
        );
    }

    fn sync(env: &Env) -> std::process::Command {
        let mut c = env.command(&["sync", "--as-of", "2026-10-31"]);
        c.env("CRM_TOKEN", TOKEN);
        c
    }

    /// Records sent in batch updates.
    fn records_sent(hs: &HubSpot) -> usize {
        hs.requests().iter().filter(|r| r.path == UPDATE).map(|r| r.body["inputs"].as_array().map_or(0, Vec::len)).sum()
    }

    /// Record ids sent to the list (memberships go in batches).
    fn list_adds(hs: &HubSpot, list: &str) -> usize {
        let path = format!("/crm/v3/lists/{list}/memberships/add");
        hs.requests().iter().filter(|r| r.path == path).map(|r| r.body.as_array().map_or(0, Vec::len)).sum()
    }

    #[test]
    fn a_sync_killed_between_crm_writes_and_their_answers_converges_and_fires_each_trigger_once() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let total = ACTIVE + INACTIVE;
        // The imported store every kill point starts from.
        let template = Env::new();
        let file = template.write("data.ndjson", downloads(domains()));
        template.ok(&["import", file.to_str().unwrap()]);

        let (want_hs, want_list) = crm(&rt);
        let reference = Env::new();
        copy_store(template.path(), reference.path());
        configure(&reference, &want_hs, &want_list);
        let span = measure(&mut sync(&reference));
        let want: BTreeMap<String, BTreeMap<String, String>> = want_hs.companies().into_iter().collect();
        let stages = want.values().filter_map(|c| c.get("oql_stage").map(String::as_str));
        assert_eq!(stages.filter(|s| *s == "inactive").count(), INACTIVE, "{want:?}");
        assert_eq!(want_hs.list_members(&want_list).len(), INACTIVE);

        let mut resent_most = 0;
        survive("hubspot sync", span, |delay| {
            let (hs, list) = crm(&rt);
            let env = Env::new();
            copy_store(template.path(), env.path());
            configure(&env, &hs, &list);
            if !kill_after(&mut sync(&env), delay) {
                return false;
            }
            let confirmed = scalar(&db(&env), "SELECT COUNT(*) FROM crm_state") as usize;
            let fired_before = scalar(&db(&env), "SELECT COUNT(*) FROM trigger_firings WHERE status = 'fired'") as usize;
            let (sent_before, adds_before) = (records_sent(&hs), list_adds(&hs, &list));
            let out = sync(&env).output().unwrap();
            assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

            // Every record in its desired state, as after an uninterrupted sync.
            let got: BTreeMap<String, BTreeMap<String, String>> = hs.companies().into_iter().collect();
            assert!(got == want, "the CRM's records equal those of an uninterrupted sync");
            // The restart sent exactly the records the store had not seen confirmed.
            let resent = records_sent(&hs) - sent_before;
            assert_eq!(resent, total - confirmed, "only unconfirmed records are sent again");
            assert!(sent_before + resent <= total + 100, "at most one batch was written twice");
            resent_most = resent_most.max(sent_before + resent - total);
            // Each stage change fired its trigger once: one firing row each, all fired;
            // list adds repeat only when the kill came between the membership call and
            // its record (HubSpot takes a member added twice as a no-op).
            assert_eq!(scalar(&db(&env), "SELECT COUNT(*) FROM trigger_firings") as usize, INACTIVE);
            assert_eq!(scalar(&db(&env), "SELECT COUNT(*) FROM trigger_firings WHERE status = 'fired'") as usize, INACTIVE);
            let adds = list_adds(&hs, &list);
            assert_eq!(adds - adds_before, INACTIVE - fired_before, "the restart fires only what was not recorded as fired");
            assert!(adds <= 2 * INACTIVE, "{adds} list adds for {INACTIVE} stage changes");
            assert_eq!(hs.list_members(&list).len(), INACTIVE);
            assert_sound(&db(&env));
            // Nothing is left to do: every record accepted, nothing failing or pending.
            assert_eq!(scalar(&db(&env), "SELECT COUNT(*) FROM crm_state") as usize, total);
            assert_eq!(scalar(&db(&env), "SELECT COUNT(*) FROM sync_failures"), 0);
            assert!(scalar(&db(&env), "SELECT COUNT(*) FROM sync_runs WHERE status = 'running'") <= 1, "only the killed run never finished");
            true
        });
        eprintln!("hubspot sync: at most {resent_most} records were written twice at one kill point");
    }
}

/// Common Room writes one contact a call (and a stage activity for each change), with
/// webhook triggers: the restart sends only the unconfirmed contacts, upserts make no
/// duplicate, and each stage change reaches the webhook once
/// (twice only when the kill came between the POST and its record, with the same key).
mod sync_common_room {
    use super::*;
    use common::common_room_crm::{CommonRoom, Fault};

    const TOKEN: &str = "cr-crash-suite-token";
    const USER: &str = "/community/v1/source/4242/user";
    const ACTIVE: usize = 6;
    const INACTIVE: usize = 4;

    fn domains() -> impl Iterator<Item = (String, &'static str)> {
        (0..ACTIVE).map(|i| (format!("c{i}.com"), "2026-09-15")).chain((0..INACTIVE).map(|i| (format!("m{i}.com"), "2026-09-01")))
    }

    /// The contact writes land before their (slow) answers.
    fn crm(rt: &tokio::runtime::Runtime) -> CommonRoom {
        let cr = rt.block_on(CommonRoom::start());
        cr.accept_token(TOKEN);
        cr.add_source(4242);
        cr.add_custom_field(901, "OQL Stage", "string", &[]);
        cr.add_custom_field(902, "OQL Score", "number", &[]);
        cr.fail_next(USER, Fault::DelayAfterApply(Duration::from_millis(25)), ACTIVE + INACTIVE);
        cr
    }

    fn configure(env: &Env, cr: &CommonRoom) {
        let origin = cr.url.trim_end_matches("/community/v1");
        env.write(
            "mappings/crm.yaml",
            format!(
                "object: contacts\nmatch: {{ crm_field: companyDomain }}\nfirst_sync: fire\nfields:\n  OQL Stage: {{ from: stage }}\n  OQL Score: {{ from: score, round: 0 }}\n\
                 triggers:\n  - when: {{ to: inactive }}\n    action: {{ webhook: {{ url: \"{origin}/webhook\" }} }}\n"
            ),
        );
        env.write(
            "connectors/crm.yaml",
            format!(
                "name: crm\nkind: common_room\nschedule: \"0 */15 * * * *\"\nbase_url: {}\ntoken_env: CR_TOKEN\ndestination_source_id: 4242\n\
                 mapping: mappings/crm.yaml\nrate_limit: {{ requests: 100, per_seconds: 1 }}\nretry: {{ base_delay_ms: 20, max_delay_ms: 200 }}\n",
                cr.url
            ),
        );
    }

    fn sync(env: &Env) -> std::process::Command {
        let mut c = env.command(&["sync", "--as-of", "2026-10-31"]);
        c.env("CR_TOKEN", TOKEN);
        c
    }

    /// (contact id, stage) of every contact, and the ids of the stage activities.
    fn crm_state(cr: &CommonRoom) -> (Vec<(String, String)>, Vec<String>) {
        let users = cr.users().iter().map(|u| (u["id"].to_string(), cr.field_of(u["id"].as_str().unwrap_or_default(), 901).map(|v| v.to_string()).unwrap_or_default())).collect();
        let mut activities: Vec<String> = cr.activities().iter().map(|a| a["id"].to_string()).collect();
        activities.sort();
        (users, activities)
    }

    #[test]
    fn a_common_room_sync_killed_between_upserts_and_their_answers_converges_and_fires_each_webhook_once() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let total = ACTIVE + INACTIVE;
        let template = Env::new();
        let file = template.write("data.ndjson", downloads(domains()));
        template.ok(&["import", file.to_str().unwrap()]);

        let want_cr = crm(&rt);
        let reference = Env::new();
        copy_store(template.path(), reference.path());
        configure(&reference, &want_cr);
        let span = measure(&mut sync(&reference));
        let want = crm_state(&want_cr);
        assert_eq!((want.0.len(), want.1.len()), (total, total), "a contact and a stage activity each: {want:?}");
        assert_eq!(want_cr.webhooks().len(), INACTIVE);

        survive("common room sync", span, |delay| {
            let cr = crm(&rt);
            let env = Env::new();
            copy_store(template.path(), env.path());
            configure(&env, &cr);
            if !kill_after(&mut sync(&env), delay) {
                return false;
            }
            let confirmed = scalar(&db(&env), "SELECT COUNT(*) FROM crm_state") as usize;
            let fired_before = scalar(&db(&env), "SELECT COUNT(*) FROM trigger_firings WHERE status = 'fired'") as usize;
            let users_before = cr.requests().iter().filter(|r| r.path == USER).count();
            let hooks_before = cr.webhooks().len();
            let out = sync(&env).output().unwrap();
            assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert_eq!(crm_state(&cr), want, "the contacts and activities of an uninterrupted sync");
            let resent = cr.requests().iter().filter(|r| r.path == USER).count() - users_before;
            assert_eq!(resent, total - confirmed, "only unconfirmed contacts are sent again");
            // Common Room's batches hold 50 contacts, committed when all are written.
            assert!(users_before + resent <= total + 50, "at most the unconfirmed batch was written twice");
            assert_eq!(scalar(&db(&env), "SELECT COUNT(*) FROM trigger_firings WHERE status = 'fired'") as usize, INACTIVE);
            let hooks = cr.webhooks();
            assert_eq!(hooks.len() - hooks_before, INACTIVE - fired_before, "the restart fires only what was not recorded as fired");
            assert!(hooks.len() <= INACTIVE + 1, "{} webhook deliveries for {INACTIVE} stage changes", hooks.len());
            let mut keys: Vec<String> = hooks.iter().map(|h| h.body["id"].to_string()).collect();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), INACTIVE, "a repeated delivery carries the same event id");
            assert_sound(&db(&env));
            assert_eq!(scalar(&db(&env), "SELECT COUNT(*) FROM crm_state") as usize, total);
            assert_eq!(scalar(&db(&env), "SELECT COUNT(*) FROM sync_failures"), 0);
            true
        });
    }
}
