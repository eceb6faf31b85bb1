//! `oql-sync poll` against a Slack emulator, and one config polling GitHub, Slack and an
//! export folder into one store.

mod common;

use std::time::Duration;

use common::Env;
use common::github_api::GitHub;
use common::slack_api::Slack;

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
