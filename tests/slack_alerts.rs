//! The `slack` trigger action against the Slack emulator (`common/slack_api.rs`): a
//! Block Kit message per stage change, by bot token or incoming webhook, one a second
//! per channel, once per change; Slack's refusals fail the firing clearly, the other
//! firings go on, and a failed firing is posted by a later run.

mod common;

use common::Env;
use common::slack_api::Slack;
use serde_json::{Value, json};

const TOKEN: &str = "xoxb-emulated-bot-token";

struct World {
    slack: Slack,
    _rt: tokio::runtime::Runtime,
}

fn slack() -> World {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let slack = rt.block_on(Slack::start(TOKEN));
    slack.named_channel("C0LEADS", "leads", true);
    slack.named_channel("C0PRIVATE", "private", false);
    World { slack, _rt: rt }
}

/// Companies that reach experimentation on 2026-10-10: eight days of downloads and doc
/// views each.
fn data(domains: &[&str]) -> String {
    let mut out = String::new();
    for domain in domains {
        for (i, day) in ["01", "02", "05", "06", "07", "08", "09", "10"].iter().enumerate() {
            let at = format!("2026-10-{day}T09:00:00Z");
            out.push_str(&format!("{}\n", json!({"source": "web", "id": format!("{domain}-d{i}"), "kind": "download", "occurred_at": at, "company_domain": domain, "actor": format!("m{}", i % 3), "package": "oqldb", "version": "1.2.0"})));
            out.push_str(&format!("{}\n", json!({"source": "web", "id": format!("{domain}-v{i}"), "kind": "doc_view", "occurred_at": at, "company_domain": domain, "url": "https://oql.dev/docs/start"})));
        }
    }
    out
}

fn setup(actions: &str, domains: &[&str]) -> Env {
    let env = Env::new();
    env.write(
        "mappings/rows.yaml",
        format!("object: rows\nmatch: {{ crm_field: domain }}\nstages: [experimentation]\nfirst_sync: fire\nfields:\n  stage: {{ from: stage }}\ntriggers:\n{actions}"),
    );
    env.write("connectors/rows.yaml", "name: rows\nkind: file\nschedule: \"0 0 * * * *\"\nmapping: mappings/rows.yaml\npath: out/rows.ndjson\n");
    let file = env.write("data.ndjson", data(domains));
    env.ok(&["import", file.to_str().unwrap()]);
    env
}

fn bot_action(w: &World, channel: &str) -> String {
    format!(
        "  - when: {{ to: experimentation }}\n    action:\n      slack:\n        token_env: SLACK_BOT_TOKEN\n        channel: \"{channel}\"\n        api_url: {}\n        \
         text: \"*{{{{ company }}}}* is experimenting ({{{{ trend }}}}, {{{{ top_package_90d }}}})\"\n        record_url: \"https://crm.example/companies/{{{{ crm_id }}}}\"\n",
        w.slack.url
    )
}

fn header(m: &Value) -> &str {
    m["blocks"][0]["text"]["text"].as_str().unwrap()
}

#[test]
fn a_stage_change_posts_one_block_kit_message_with_a_bot_token() {
    let w = slack();
    let env = setup(&bot_action(&w, "#leads"), &["busy.com"]);
    let vars = [("SLACK_BOT_TOKEN", TOKEN)];
    let run = env.run_with(&["sync", "--as-of", "2026-10-30"], &vars);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("1 triggers fired"), "{}", run.stdout);
    let posted = w.slack.posted();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].channel, "C0LEADS");
    let m = &posted[0].body;
    assert_eq!(header(m), "busy.com: new → experimentation");
    assert_eq!(m["text"], "*busy.com* is experimenting (new, oqldb 1.2.0)");
    let fields: Vec<&str> = m["blocks"][1]["fields"].as_array().unwrap().iter().map(|f| f["text"].as_str().unwrap()).collect();
    assert!(fields[0].starts_with("*Score*\n") && fields[1] == "*Trend*\nnew", "{fields:?}");
    let why = m["blocks"][2]["text"]["text"].as_str().unwrap();
    assert!(why.starts_with("*Why:* Experimentation since ") && why.contains("8 downloads of oqldb 1.2.0 from 3 machines"), "{why}");
    assert_eq!(m["blocks"][3]["elements"][0]["url"], "https://crm.example/companies/busy.com");

    // Delivered once per change: a second run posts nothing.
    env.run_with(&["sync", "--as-of", "2026-10-30"], &vars);
    assert_eq!(w.slack.posted().len(), 1);
}

#[test]
fn messages_to_one_channel_are_a_second_apart() {
    let w = slack();
    let env = setup(&bot_action(&w, "C0LEADS"), &["a.com", "b.com", "c.com"]);
    let run = env.run_with(&["sync", "--as-of", "2026-10-30"], &[("SLACK_BOT_TOKEN", TOKEN)]);
    assert!(run.stdout.contains("3 triggers fired"), "{}{}", run.stdout, run.stderr);
    let posted = w.slack.posted();
    assert_eq!(posted.len(), 3);
    for pair in posted.windows(2) {
        assert!(pair[1].at.duration_since(pair[0].at) >= std::time::Duration::from_millis(990), "{:?}", pair[1].at.duration_since(pair[0].at));
    }
    assert!(w.slack.requests().iter().all(|r| r.status == 200), "no post was refused for its pace");
}

#[test]
fn an_incoming_webhook_posts_and_its_refusals_fail_per_record_until_fixed() {
    let w = slack();
    let good = w.slack.webhook("C0LEADS");
    let gone = w.slack.webhook("C0GONE");
    w.slack.break_webhook(&gone, "channel_not_found");
    let actions = "  - when: { to: experimentation }\n    action: { slack: { webhook_url_env: LEADS_HOOK } }\n  \
                   - when: { to: experimentation }\n    action: { slack: { webhook_url_env: GONE_HOOK } }\n";
    let env = setup(actions, &["busy.com", "other.com"]);
    let vars = [("LEADS_HOOK", good.as_str()), ("GONE_HOOK", gone.as_str())];
    let run = env.run_with(&["sync", "--as-of", "2026-10-30"], &vars);
    assert_eq!(run.code, 1, "a failed trigger fails the run: {}", run.stdout);
    assert!(run.stdout.contains("2 triggers fired"), "the good webhook delivered both: {}", run.stdout);
    let posted = w.slack.posted();
    assert_eq!(posted.len(), 2);
    assert!(posted.iter().all(|p| p.webhook && p.channel == "C0LEADS"));
    assert_eq!(posted[0].body["text"], format!("{}: new → experimentation, score {}", header(&posted[0].body).split(':').next().unwrap(), posted[0].body["blocks"][1]["fields"][0]["text"].as_str().unwrap().trim_start_matches("*Score*\n")));
    let log = env.ok(&["log", "--status", "failed"]).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(log.contains("Slack: channel_not_found: the channel of the incoming webhook in GONE_HOOK is gone or archived"), "{log}");
    assert!(log.contains("busy.com") && log.contains("other.com"), "each record says it: {log}");
    assert!(!log.contains(&gone), "the webhook URL is a secret: {log}");

    // Fixed: the next run posts the two failed firings, and only those.
    let fixed = w.slack.webhook("C0OTHER");
    w.slack.named_channel("C0OTHER", "other", true);
    let vars = [("LEADS_HOOK", good.as_str()), ("GONE_HOOK", fixed.as_str())];
    let again = env.run_with(&["sync", "--as-of", "2026-10-30"], &vars);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    let posted = w.slack.posted();
    assert_eq!(posted.len(), 4);
    assert!(posted[2..].iter().all(|p| p.channel == "C0OTHER"));
}

#[test]
fn a_missing_channel_or_a_revoked_token_fails_each_firing_with_the_fix() {
    let w = slack();
    let env = setup(&bot_action(&w, "#nowhere"), &["busy.com", "other.com"]);
    let vars = [("SLACK_BOT_TOKEN", TOKEN)];
    let run = env.run_with(&["sync", "--as-of", "2026-10-30"], &vars);
    assert_eq!(run.code, 1);
    let log = env.ok(&["log", "--status", "failed"]).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(log.contains("Slack: channel_not_found: channel #nowhere does not exist, or is private and the app is not in it"), "{log}");
    let posts = |w: &World| w.slack.requests().iter().filter(|r| r.method == "chat.postMessage").count();
    assert_eq!(posts(&w), 1, "the second firing for the same channel failed without a call");

    let env = setup(&bot_action(&w, "#leads"), &["busy.com", "other.com"]);
    w.slack.revoke_token();
    let before = posts(&w);
    let run = env.run_with(&["sync", "--as-of", "2026-10-30"], &vars);
    assert_eq!(run.code, 1);
    let log = env.ok(&["log", "--status", "failed"]).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(log.contains("Slack: token_revoked: Slack refused the token in SLACK_BOT_TOKEN"), "{log}");
    assert!(!log.contains(TOKEN) && !run.stderr.contains(TOKEN), "the token stays secret");
    assert_eq!(posts(&w) - before, 1);
    assert!(w.slack.posted().is_empty());
}

#[test]
fn a_slack_action_without_a_way_to_post_is_refused_at_load() {
    let env = Env::new();
    env.write(
        "mappings/rows.yaml",
        "object: rows\nmatch: { crm_field: domain }\nfields:\n  stage: { from: stage }\ntriggers:\n  - when: { to: experimentation }\n    action:\n      slack:\n        token_env: SLACK_BOT_TOKEN\n",
    );
    env.write("connectors/rows.yaml", "name: rows\nkind: file\nschedule: \"0 0 * * * *\"\nmapping: mappings/rows.yaml\npath: out/rows.csv\n");
    let r = env.run(&["check"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("rows.yaml:9:") && r.stderr.contains("a bot token needs `channel`"), "{}", r.stderr);
}

fn digest_setup(destination: &str, domains: &[&str]) -> Env {
    let env = Env::new();
    env.write(
        "mappings/digest.yaml",
        "object: digest\nmatch: { crm_field: domain }\nstages: [investigation, experimentation, ongoing_usage, inactive]\nfields:\n  stage: { from: stage }\n  score: { from: score }\n",
    );
    env.write("connectors/digest.yaml", format!("name: digest\nkind: slack_digest\nschedule: \"0 0 9 * * *\"\nmapping: mappings/digest.yaml\n{destination}"));
    let file = env.write("data.ndjson", data(domains));
    env.ok(&["import", file.to_str().unwrap()]);
    env
}

fn section_texts(m: &Value) -> Vec<String> {
    m["blocks"].as_array().unwrap().iter().filter(|b| b["type"] == "section").map(|b| b["text"]["text"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn the_slack_digest_lists_the_stage_changes_since_its_last_run() {
    let w = slack();
    let env = digest_setup(&format!("token_env: SLACK_BOT_TOKEN\nchannel: \"#leads\"\napi_url: {}\n", w.slack.url), &["busy.com", "other.com"]);
    let vars = [("SLACK_BOT_TOKEN", TOKEN)];
    let run = env.run_with(&["sync", "--as-of", "2026-10-30"], &vars);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let posted = w.slack.posted();
    assert_eq!(posted.len(), 1, "one message for the run");
    assert_eq!(posted[0].body["text"], "OQL stage changes: 2 companies");
    let sections = section_texts(&posted[0].body);
    assert_eq!(sections.len(), 1);
    assert!(sections[0].starts_with("*→ experimentation* (2)\n• busy.com: new → experimentation, score "), "{sections:?}");
    assert!(sections[0].contains("\n• other.com: new → experimentation, score "), "{sections:?}");

    // A day later nothing changed stage (scores may move): no message.
    env.run_with(&["sync", "--as-of", "2026-10-31"], &vars);
    assert_eq!(w.slack.posted().len(), 1);
    // Both go inactive 61 days after their last activity.
    env.run_with(&["sync", "--as-of", "2026-12-10"], &vars);
    let posted = w.slack.posted();
    assert_eq!(posted.len(), 2);
    let sections = section_texts(&posted[1].body);
    assert!(sections[0].starts_with("*→ inactive* (2)\n• busy.com: experimentation → inactive"), "{sections:?}");
}

#[test]
fn a_refused_digest_is_listed_again_by_the_next_run() {
    let w = slack();
    let hook = w.slack.webhook("C0LEADS");
    w.slack.break_webhook(&hook, "invalid_token");
    let env = digest_setup("webhook_url_env: DIGEST_HOOK\n", &["busy.com"]);
    let run = env.run_with(&["sync", "--as-of", "2026-10-30"], &[("DIGEST_HOOK", hook.as_str())]);
    assert_eq!(run.code, 1);
    let log = env.ok(&["log", "--status", "failed"]).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(log.contains("Slack: invalid_token: Slack no longer takes the incoming webhook in DIGEST_HOOK"), "{log}");
    let fixed = w.slack.webhook("C0LEADS");
    let again = env.run_with(&["sync", "--as-of", "2026-10-30"], &[("DIGEST_HOOK", fixed.as_str())]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    let posted = w.slack.posted();
    assert_eq!(posted.len(), 1);
    assert!(section_texts(&posted[0].body)[0].contains("busy.com: new → experimentation"));
}
