//! `oql-sync poll` against a Slack emulator, and one config polling GitHub, Slack and an
//! export folder into one store: threads and their replies, people who left or belong
//! to other organizations, exact timestamps, and the restricted pace of apps outside
//! the Marketplace.

mod common;

use std::time::Duration;

use common::Env;
use common::crash::{scalar, texts};
use common::github_api::GitHub;
use common::slack_api::{Fault, Slack, ts_days_ago};

const TOKEN: &str = "xoxb-emulated-secret";

struct Workspace {
    slack: Slack,
    rt: tokio::runtime::Runtime,
}

fn workspace() -> Workspace {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let slack = rt.block_on(Slack::start(TOKEN));
    slack.member("U01", Some("ann@acme.com"), false);
    slack.member("U02", Some("bob@gmail.com"), false);
    slack.member("U03", Some("cy@initech.io"), false);
    slack.member("B01", None, true);
    slack.channel("C01", true);
    for (i, user) in ["U01", "U02", "U03", "U01", "B01"].iter().enumerate() {
        slack.message("C01", &format!("17900000{i:02}.000100"), user);
    }
    Workspace { slack, rt }
}

fn slack_yaml(w: &Workspace, channels: &str, extra: &str) -> String {
    format!(
        "name: slack\nkind: slack\nschedule: \"0 */5 * * * *\"\nbase_url: {}\ntoken_env: SLACK_TOKEN\nchannels: [{channels}]\n\
         rate_limit: {{ requests: 100, per_seconds: 1 }}\nretry: {{ base_delay_ms: 10, max_delay_ms: 50 }}\n{extra}",
        w.slack.url
    )
}

fn poll(env: &Env) -> common::Run {
    env.run_with(&["poll"], &[("SLACK_TOKEN", TOKEN), ("GH_TOKEN", "ghp_token")])
}

fn domains(env: &Env) -> Vec<String> {
    env.companies_json("2026-10-30").as_array().unwrap().iter().map(|c| c["domain"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn messages_are_attributed_by_member_email_and_joins_are_new_members() {
    let w = workspace();
    let env = Env::new();
    env.write("connectors/slack.yaml", slack_yaml(&w, "C01", ""));
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("4 new activities"), "bots are not members, the first poll is a baseline: {}", r.stdout);
    let d = domains(&env);
    assert_eq!(d.len(), 2, "gmail.com is free mail: {d:?}");
    assert!(d.contains(&"acme.com".to_string()) && d.contains(&"initech.io".to_string()));

    // A new member and a new message; nothing old comes in twice.
    w.slack.member("U04", Some("dee@umbrella.org"), false);
    w.slack.message("C01", "1790000099.000100", "U04");
    w.slack.clear_requests();
    let r = poll(&env);
    assert!(r.stdout.contains("2 new activities"), "a join and a message: {}", r.stdout);
    let history = w.slack.requests().into_iter().find(|q| q.method == "conversations.history").unwrap();
    assert_eq!(history.query["oldest"], "1790000004.000100", "read from the last message seen");
    assert!(domains(&env).contains(&"umbrella.org".to_string()));
}

#[test]
fn long_channels_page_with_cursors() {
    let w = workspace();
    for i in 0..450 {
        w.slack.message("C01", &format!("1790001{i:03}.000100"), "U01");
    }
    let env = Env::new();
    env.write("connectors/slack.yaml", slack_yaml(&w, "C01", ""));
    let r = poll(&env);
    assert!(r.stdout.contains("454 new activities"), "{}", r.stdout);
    let pages = w.slack.requests().iter().filter(|q| q.method == "conversations.history").count();
    assert_eq!(pages, 3, "200 a page");
}

#[test]
fn slack_errors_are_reported_and_the_other_channels_go_on() {
    let w = workspace();
    w.slack.channel("C02", false);
    let env = Env::new();
    env.write("connectors/slack.yaml", slack_yaml(&w, "C02, C01, C99", ""));
    let r = poll(&env);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("C02: conversations.history: not_in_channel"), "{}", r.stdout);
    assert!(r.stdout.contains("C99: conversations.history: channel_not_found"), "{}", r.stdout);
    assert!(r.stdout.contains("4 new activities"), "C01 was read: {}", r.stdout);
    let bad = env.run_with(&["poll"], &[("SLACK_TOKEN", "xoxb-wrong-secret")]);
    assert!(bad.stdout.contains("users.list: invalid_auth"), "{}", bad.stdout);
    assert!(!bad.stdout.contains("xoxb-wrong-secret") && !bad.stderr.contains("xoxb-wrong-secret"));
}

#[test]
fn an_app_outside_the_marketplace_is_detected_and_paced() {
    let w = workspace();
    for i in 0..20 {
        w.slack.message("C01", &format!("1790002{i:03}.000100"), "U03");
    }
    w.slack.channel("C02", true);
    w.slack.message("C02", "1790003000.000100", "U01");
    // Slack lets one history call through per second here (one a minute for real).
    w.slack.restrict(Duration::from_secs(1), 1);
    let env = Env::new();
    env.write("connectors/slack.yaml", slack_yaml(&w, "C02, C01", "restricted_rate_limit: { requests: 1, per_seconds: 1 }\n"));
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("25 new activities"), "{}", r.stdout);
    let limits: Vec<String> = w.slack.requests().iter().filter(|q| q.method == "conversations.history" && q.status == 200).map(|q| q.query["limit"].clone()).collect();
    // C02 (one call), then C01: its first call gets 429 and is retried as it was; every
    // later call asks for 15.
    assert_eq!(limits, ["200", "200", "15"], "{limits:?}");
}

#[test]
fn github_slack_and_an_export_folder_poll_into_one_store() {
    let w = workspace();
    let gh = w.rt.block_on(GitHub::start("ghp_token"));
    gh.add_repo("acme/db");
    gh.star("acme/db", "octo", "2026-10-01T10:00:00Z");
    gh.user("octo", Some("octo@hooli.com"), "", None);
    let env = Env::new();
    env.write("connectors/slack.yaml", slack_yaml(&w, "C01", ""));
    env.write(
        "connectors/github.yaml",
        format!("name: github\nkind: github\nschedule: \"0 */10 * * * *\"\nbase_url: {}\ntoken_env: GH_TOKEN\nrepos: [acme/db]\nrate_limit: {{ requests: 100, per_seconds: 1 }}\n", gh.url),
    );
    env.write("connectors/drops.yaml", "name: drops\nkind: export\nschedule: \"0 0 3 * * *\"\npath: drops\n");
    env.write(
        "drops/web.ndjson",
        "{\"source\":\"web\",\"id\":\"w1\",\"kind\":\"download\",\"occurred_at\":\"2026-10-05T10:00:00Z\",\"company_domain\":\"piedpiper.com\",\"version\":\"1.2.0\"}\n",
    );
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let d = domains(&env);
    for want in ["acme.com", "initech.io", "hooli.com", "piedpiper.com"] {
        assert!(d.contains(&want.to_string()), "{want} missing from {d:?}");
    }
}

fn db(env: &Env) -> std::path::PathBuf {
    env.path().join("oql.db")
}

fn calls(w: &Workspace, method: &str) -> Vec<common::slack_api::Recorded> {
    w.slack.requests().into_iter().filter(|q| q.method == method).collect()
}

/// Slack message ids in the store, sorted (a duplicate would show twice).
fn message_ids(env: &Env) -> Vec<String> {
    texts(&db(env), "SELECT id FROM activities WHERE source = 'slack' AND action = 'slack_message' ORDER BY id")
}

#[test]
fn thread_replies_are_read_across_pages_and_each_message_is_stored_once() {
    let w = workspace();
    let parent = ts_days_ago(1.0, 1);
    w.slack.message("C01", &parent, "U01");
    for i in 0..250 {
        w.slack.reply("C01", &parent, &ts_days_ago(0.5, 10 + i), ["U02", "U03"][i as usize % 2]);
    }
    // "Also send to #channel": in the history and in the thread, one message.
    w.slack.broadcast_reply("C01", &parent, &ts_days_ago(0.4, 1), "U03");
    let env = Env::new();
    env.write("connectors/slack.yaml", slack_yaml(&w, "C01", ""));
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("256 new activities"), "4 messages, the parent, 250 replies and the broadcast reply: {}", r.stdout);
    let replies = calls(&w, "conversations.replies");
    assert_eq!(replies.len(), 2, "the parent and 199 replies, then the rest: {replies:?}");
    assert_eq!(replies[0].query["ts"], parent);
    assert!(!replies[1].query["cursor"].is_empty(), "the second page follows the cursor");
    let ids = message_ids(&env);
    assert_eq!(ids.len(), 256);
    assert!(ids.contains(&format!("msg:C01:{parent}")));

    // Nothing moved: the thread is not asked again, nothing is stored twice.
    w.slack.clear_requests();
    let r = poll(&env);
    assert!(r.stdout.contains("0 new activities"), "{}", r.stdout);
    assert!(calls(&w, "conversations.replies").is_empty(), "a parent whose latest reply was read needs no call");
    assert_eq!(message_ids(&env), ids);
}

/// A parent older than the 7-day thread window with a reply inside it: still followed.
fn old_active_thread(w: &Workspace) -> String {
    let old = ts_days_ago(20.0, 1);
    w.slack.message("C01", &old, "U01");
    w.slack.reply("C01", &old, &ts_days_ago(2.0, 1), "U02");
    old
}

#[test]
fn new_replies_on_old_parents_are_read_on_later_polls() {
    let w = workspace();
    let old = old_active_thread(&w);
    // Read first without replies; its first reply comes later.
    let recent = ts_days_ago(3.0, 1);
    w.slack.message("C01", &recent, "U03");
    let env = Env::new();
    env.write("connectors/slack.yaml", slack_yaml(&w, "C01", ""));
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("7 new activities"), "4 messages, 2 parents and a reply: {}", r.stdout);

    w.slack.reply("C01", &old, &ts_days_ago(0.2, 1), "U03");
    w.slack.reply("C01", &recent, &ts_days_ago(0.1, 1), "U01");
    // Slack refuses the first thread's replies once (HTTP 200, `ok: false`): the
    // threads keep their positions and the next poll reads them.
    w.slack.fail_next("conversations.replies", Fault::Refused("internal_error"), 1);
    w.slack.clear_requests();
    let r = poll(&env);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("C01: conversations.replies: internal_error"), "{}", r.stdout);
    let history = calls(&w, "conversations.history");
    let window_start: i64 = chrono::Utc::now().timestamp() - 7 * 86_400;
    let oldest: f64 = history[0].query["oldest"].parse().unwrap();
    assert!((oldest as i64 - window_start).abs() < 60, "history is read again from the window's start: {oldest}");

    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("2 new activities"), "a reply on the old parent and the first reply of the other: {}", r.stdout);
    assert_eq!(message_ids(&env).len(), 9);
    assert!(poll(&env).stdout.contains("0 new activities"));
}

#[test]
fn messages_and_replies_landing_between_two_requests_are_read_once() {
    let w = workspace();
    let parent = ts_days_ago(1.0, 1);
    w.slack.message("C01", &parent, "U01");
    for i in 0..300 {
        w.slack.reply("C01", &parent, &ts_days_ago(0.9, 1 + i), "U02");
    }
    for i in 0..250 {
        w.slack.message("C01", &ts_days_ago(2.0, 1 + i), "U03");
    }
    // Posted while the poll is between two pages of history, and of the thread.
    let late_message = ts_days_ago(0.1, 1);
    w.slack.land_after("conversations.history", 1, "C01", None, &late_message, "U01");
    w.slack.land_after("conversations.replies", 1, "C01", Some(&parent), &ts_days_ago(0.05, 1), "U03");
    let env = Env::new();
    env.write("connectors/slack.yaml", slack_yaml(&w, "C01", ""));
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(calls(&w, "conversations.history").len(), 2);
    assert_eq!(calls(&w, "conversations.replies").len(), 2);
    assert!(r.stdout.contains("556 new activities"), "the late reply is on the thread's second page: {}", r.stdout);
    let r = poll(&env);
    assert!(r.stdout.contains("1 new activities"), "the message posted behind the first page: {}", r.stdout);
    let ids = message_ids(&env);
    assert_eq!(ids.len(), 4 + 1 + 300 + 250 + 2);
    assert!(ids.contains(&format!("msg:C01:{late_message}")));
}

#[test]
fn messages_of_deactivated_members_and_slack_connect_people_are_kept() {
    let w = workspace();
    w.slack.deactivated("U05", Some("dee@umbrella.org"));
    w.slack.external("W01", "T0GLOBEX", Some("eve@globex.com"));
    w.slack.external("W02", "T0HOOLI", None);
    w.slack.hidden_external("W03");
    w.slack.member("B02", None, true);
    for (i, user) in ["U05", "W01", "W02", "W03", "W01"].iter().enumerate() {
        w.slack.message("C01", &format!("17900001{i:02}.000100"), user);
    }
    w.slack.bot_message("C01", "1790000199.000100", "B02");
    let env = Env::new();
    env.write("connectors/slack.yaml", slack_yaml(&w, "C01", ""));
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("9 new activities"), "4 + 5 by people, none by bots: {}", r.stdout);
    let d = domains(&env);
    assert!(d.contains(&"umbrella.org".to_string()) && d.contains(&"globex.com".to_string()), "{d:?}");
    let unattributed = scalar(&db(&env), "SELECT COUNT(*) FROM activities WHERE source = 'slack' AND actor IN ('W02', 'W03') AND company_domain IS NULL");
    assert_eq!(unattributed, 2, "people whose email Slack does not give are kept unattributed");
    let mut looked_up: Vec<String> = calls(&w, "users.info").iter().map(|q| q.query["user"].clone()).collect();
    looked_up.sort();
    assert_eq!(looked_up, ["W01", "W02", "W03"], "only people users.list does not list are looked up");

    // A member deactivated since is no join; people looked up are remembered.
    w.slack.deactivated("U06", Some("fay@umbrella.org"));
    w.slack.message("C01", "1790000200.000100", "W01");
    w.slack.clear_requests();
    let r = poll(&env);
    assert!(r.stdout.contains("1 new activities"), "{}", r.stdout);
    assert!(calls(&w, "users.info").is_empty());
}

#[test]
fn occurred_at_is_the_message_ts_to_the_microsecond() {
    let w = workspace();
    // Through an f64 this ts is 208 ns late.
    w.slack.message("C01", "1790000010.123454", "U01");
    let parent = ts_days_ago(1.0, 0);
    let (secs, _) = parent.split_once('.').unwrap();
    w.slack.message("C01", &parent, "U01");
    w.slack.reply("C01", &parent, &format!("{secs}.999999"), "U03");
    let env = Env::new();
    env.write("connectors/slack.yaml", slack_yaml(&w, "C01", ""));
    assert_eq!(poll(&env).code, 0);
    assert_eq!(scalar(&db(&env), "SELECT occurred_at FROM activities WHERE id = 'msg:C01:1790000010.123454'"), 1_790_000_010_123_454_000);
    let reply = texts(&db(&env), "SELECT id || ' ' || occurred_at FROM activities WHERE id LIKE '%.999999'");
    assert_eq!(reply, [format!("msg:C01:{secs}.999999 {secs}999999000")]);
}

#[test]
fn after_the_switch_to_the_restricted_pace_the_next_call_waits_instead_of_meeting_a_second_429() {
    let w = workspace();
    for i in 0..40 {
        w.slack.message("C01", &format!("1790002{i:03}.000100"), "U03");
    }
    let parent = ts_days_ago(1.0, 1);
    w.slack.message("C01", &parent, "U01");
    for i in 0..20 {
        w.slack.reply("C01", &parent, &ts_days_ago(0.5, 1 + i), "U02");
    }
    // One call of each method a second here (a minute for real), Retry-After 1.
    w.slack.restrict(Duration::from_secs(1), 1);
    let env = Env::new();
    env.write("connectors/slack.yaml", slack_yaml(&w, "C01", "restricted_rate_limit: { requests: 1, per_seconds: 1 }\n"));
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let history = calls(&w, "conversations.history");
    let statuses: Vec<u16> = history.iter().map(|q| q.status).collect();
    // The first page comes at once; the second call meets the limit, waits and is
    // sent again; from then on every call waits its turn.
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 1, "{statuses:?}");
    assert_eq!(statuses[..3], [200, 429, 200], "{statuses:?}");
    assert!(r.stdout.contains("65 new activities"), "{}", r.stdout);
    let replies = calls(&w, "conversations.replies");
    assert!(replies.iter().all(|q| q.status == 200 && q.query["limit"] == "15"), "replies keep the restricted pace: {replies:?}");
    assert_eq!(replies.len(), 2, "the parent and 14 replies, then 6");
}

#[test]
fn a_first_429_on_replies_switches_auto_pacing_too_and_no_reply_is_lost() {
    let w = workspace();
    let parent = ts_days_ago(1.0, 1);
    w.slack.message("C01", &parent, "U01");
    for i in 0..30 {
        w.slack.reply("C01", &parent, &ts_days_ago(0.5, 1 + i), "U02");
    }
    let second = ts_days_ago(0.9, 1);
    w.slack.message("C01", &second, "U03");
    for i in 0..3 {
        w.slack.reply("C01", &second, &ts_days_ago(0.4, 1 + i), "U01");
    }
    w.slack.fail_next("conversations.replies", Fault::RateLimited(1), 1);
    let env = Env::new();
    env.write("connectors/slack.yaml", slack_yaml(&w, "C01", "restricted_rate_limit: { requests: 1, per_seconds: 1 }\n"));
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("39 new activities"), "{}", r.stdout);
    let limits: Vec<(u16, &str)> = calls(&w, "conversations.replies").iter().map(|q| (q.status, if q.query["limit"] == "15" { "15" } else { "200" })).collect();
    // The 429 is waited out and the call sent again as it was; the next thread is
    // asked for 15 at a time.
    assert_eq!(limits, [(429, "200"), (200, "200"), (200, "15")]);
    let members = texts(&db(&env), "SELECT value FROM source_cursors WHERE key = 'members'");
    assert!(members[0].contains("\"pacing\":\"restricted\""), "remembered: {members:?}");
}

#[test]
fn a_thread_slack_no_longer_has_is_no_longer_followed() {
    let w = workspace();
    let old = old_active_thread(&w);
    let env = Env::new();
    env.write("connectors/slack.yaml", slack_yaml(&w, "C01", ""));
    assert!(poll(&env).stdout.contains("6 new activities"));
    assert_eq!(scalar(&db(&env), "SELECT COUNT(*) FROM slack_threads"), 1);
    w.slack.delete_thread("C01", &old);
    let r = poll(&env);
    assert_eq!(r.code, 0, "thread_not_found ends the thread, not the poll: {}", r.stdout);
    assert_eq!(scalar(&db(&env), "SELECT COUNT(*) FROM slack_threads"), 0);
    assert_eq!(message_ids(&env).len(), 6, "what was read stays");
}
