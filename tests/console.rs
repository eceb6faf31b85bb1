//! The web console, in a real browser (headless Chromium through WebDriver) against the
//! real daemon on the quickstart data, plus a webhook sink whose receiver refuses every
//! company so that the sync log holds dead records. Screenshots of each page are kept
//! under `target/console-screenshots/`.

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use common::Env;
use serde_json::Value;
use webdriver::{Browser, free_port};

const AS_OF: &str = "2026-10-31";
/// What the refusing receiver says: an address and an IP the pages must not show.
const REFUSAL: &str = "contact jane.doe@example.com from 203.0.113.77 is not allowed";
const TOKEN: &str = "console-token-0123456789abcdef";

/// A webhook receiver that answers 422 with `REFUSAL` to everything.
fn refusing_receiver() -> (String, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let app = axum::Router::new().route("/hook", post(|| async { (StatusCode::UNPROCESSABLE_ENTITY, REFUSAL) }));
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rt)
}

/// The quickstart config and data, plus the refusing webhook sink (dead after one try),
/// after one full cycle: imported, scored, synced.
fn quickstart(hook: &str) -> Env {
    let env = Env::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    for dir in ["connectors", "mappings", "data"] {
        for entry in std::fs::read_dir(src.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            env.write(&format!("{dir}/{}", path.file_name().unwrap().to_str().unwrap()), std::fs::read(&path).unwrap());
        }
    }
    env.write(
        "connectors/hook.yaml",
        format!("name: hook\nkind: webhook\nschedule: \"0 0 3 1 1 *\"\nmapping: mappings/hook.yaml\nurl: {hook}\ndead_after: 1\nretry: {{ base_delay_ms: 10 }}\n"),
    );
    env.write("mappings/hook.yaml", "object: rows\nmatch: { crm_field: domain }\nfields:\n  stage: { from: stage }\n");
    // Exits 1: the hook refused every company.
    let r = env.run(&["run", "--once", "--as-of", AS_OF]);
    assert!(r.stdout.contains("hook:") && r.stdout.contains("crm-file:"), "{}\n{}", r.stdout, r.stderr);
    env
}

struct Daemon {
    child: Child,
    base: String,
}

impl Daemon {
    fn start(env: &Env, listen_host: &str, token: Option<&str>) -> Daemon {
        let port = free_port();
        let mut args = vec!["run".to_owned(), "--as-of".into(), AS_OF.into(), "--listen".into(), format!("{listen_host}:{port}")];
        let mut cmd = env.command(&[]);
        if let Some(t) = token {
            args.extend(["--console-token-env".into(), "OQL_TEST_CONSOLE_TOKEN".into()]);
            cmd.env("OQL_TEST_CONSOLE_TOKEN", t);
        }
        let child = cmd.args(&args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while common::http_get(&format!("{base}/readyz")).is_none_or(|(code, _)| code != 200) {
            assert!(Instant::now() < deadline, "the daemon did not get ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        Daemon { child, base }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots")
}

/// Loads a page, insists the browser logged no error, keeps a screenshot.
fn visit(b: &Browser, url: &str, shot: &str) -> String {
    b.goto(url);
    let h1 = b.text(&b.find("main h1"));
    assert!(!h1.is_empty(), "{url} has a heading");
    let errors: Vec<_> = b.console_log().into_iter().filter(|(level, _)| level == "SEVERE" || level == "WARNING").collect();
    assert!(errors.is_empty(), "{url}: the browser logged {errors:?}");
    b.screenshot(&screenshots().join(format!("{shot}.png")));
    let source = b.source();
    for never in ["jane.doe@example.com", "203.0.113.77", TOKEN] {
        assert!(!source.contains(never), "{url} shows {never}");
    }
    source
}

#[test]
fn the_console_agrees_with_the_cli_and_retries_a_dead_record_in_a_real_browser() {
    let (hook, _receiver) = refusing_receiver();
    let env = quickstart(&hook);
    let companies: Vec<Value> = serde_json::from_str(&env.ok(&["companies", "--as-of", AS_OF, "--format", "json"])).unwrap();
    let dead: Vec<Value> = serde_json::from_str::<Value>(&env.ok(&["log", "--connector", "hook", "--status", "dead", "--format", "json"])).unwrap()["records"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!dead.is_empty(), "the refusing receiver leaves dead records");
    let daemon = Daemon::start(&env, "127.0.0.1", None);
    let b = Browser::start();
    // The log reader sees errors: a page whose image fails logs one.
    b.goto(&format!("data:text/html,<title>x</title><img src='{}/missing.png' alt='x'>", daemon.base));
    std::thread::sleep(Duration::from_millis(300));
    assert!(b.console_log().iter().any(|(level, _)| level == "SEVERE"), "the browser log reports a failed load");

    // The funnel: each stage's count is what `companies --format json` counts.
    visit(&b, &format!("{}/", daemon.base), "funnel");
    for stage in ["interest", "investigation", "experimentation", "ongoing_usage", "inactive"] {
        let expected = companies.iter().filter(|c| c["stage"] == stage).count();
        let shown = b.text(&b.find(&format!("#funnel td[data-stage='{stage}']")));
        assert_eq!(shown, expected.to_string(), "{stage}");
    }
    // Recorded history: the chart has a line for the stages present.
    assert!(b.source().contains("<polyline"), "the history chart draws lines");

    // Keyboard: the first Tab lands on the skip link.
    b.press("\u{E004}");
    assert_eq!(b.text(&b.focused()), "Skip to the content");

    // A search finds a company.
    visit(&b, &format!("{}/companies", daemon.base), "companies");
    let rows = b.find_all("#companies tbody tr");
    assert_eq!(rows.len(), companies.len().min(50));
    let wanted = companies[companies.len() / 2]["domain"].as_str().unwrap().to_owned();
    let q = b.find("#q");
    b.type_into(&q, &wanted);
    b.click(&b.find("form[role=search] button[type=submit]"));
    let found: Vec<String> = b.find_all("#companies tbody tr td:first-child a").iter().map(|a| b.text(a)).collect();
    assert!(found.contains(&wanted), "searching {wanted} found {found:?}");
    assert!(b.url().contains("q="), "{}", b.url());

    // A company's page says what `explain` says.
    let top = companies[0]["domain"].as_str().unwrap();
    let explained: Value = serde_json::from_str(&env.ok(&["explain", top, "--as-of", AS_OF, "--format", "json"])).unwrap();
    visit(&b, &format!("{}/companies/{top}", daemon.base), "company");
    let score: f64 = b.text(&b.find("#facts dd[data-field=score]")).parse().unwrap();
    assert!((score - explained["score"]["score"].as_f64().unwrap()).abs() < 0.005, "{score} vs {}", explained["score"]["score"]);
    assert_eq!(b.attribute(&b.find("#facts dd[data-field=stage]"), "data-value").as_deref(), explained["score"]["stage"].as_str());
    assert_eq!(b.find_all("ol.changes li").len(), explained["timeline"].as_array().unwrap().len());

    // Retry moves a dead record back to pending.
    let domain = dead[0]["domain"].as_str().unwrap().to_owned();
    visit(&b, &format!("{}/sync", daemon.base), "sync");
    assert_eq!(b.find_all("#dead-records tbody tr").len(), dead.len());
    b.click(&b.find(&format!("#dead-records tr[data-domain='{domain}'] button")));
    assert!(b.url().contains("/sync?retried="), "{}", b.url());
    assert_eq!(b.find_all(&format!("#pending-records tr[data-domain='{domain}']")).len(), 1, "{domain} is pending");
    assert_eq!(b.find_all(&format!("#dead-records tr[data-domain='{domain}']")).len(), 0, "{domain} is no longer dead");
    assert!(b.console_log().into_iter().all(|(level, _)| level != "SEVERE"));
    let still_dead = env.ok(&["log", "--connector", "hook", "--status", "dead", "--format", "json"]);
    assert!(!still_dead.contains(&format!("\"{domain}\"")), "{still_dead}");
    b.screenshot(&screenshots().join("sync-after-retry.png"));

    visit(&b, &format!("{}/sources", daemon.base), "sources");
    assert!(b.source().contains("scarf-export.csv"), "the export files read are listed");
}

fn client() -> (tokio::runtime::Runtime, reqwest::Client) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    (rt, reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap())
}

#[test]
fn off_loopback_the_console_needs_the_token_and_its_forms_need_the_csrf_token() {
    let (hook, _receiver) = refusing_receiver();
    let env = quickstart(&hook);
    let (rt, http) = client();
    let status = |r: reqwest::RequestBuilder| rt.block_on(async { r.send().await.unwrap().status().as_u16() });

    // No token: every console page answers 401; the metrics stay open.
    {
        let daemon = Daemon::start(&env, "0.0.0.0", None);
        for page in ["/", "/companies", "/sync", "/sources", "/companies/atlas-systems.com", "/companies?format=csv"] {
            assert_eq!(status(http.get(format!("{}{page}", daemon.base))), 401, "{page}");
        }
        assert_eq!(status(http.get(format!("{}/metrics", daemon.base)).header("authorization", format!("Bearer {TOKEN}"))), 200);
        assert_eq!(status(http.get(format!("{}/companies", daemon.base)).header("authorization", format!("Bearer {TOKEN}"))), 401);
    }

    // With a token: bearer or login session.
    let daemon = Daemon::start(&env, "0.0.0.0", Some(TOKEN));
    let base = &daemon.base;
    assert_eq!(status(http.get(format!("{base}/companies"))), 401);
    assert_eq!(status(http.get(format!("{base}/companies")).header("authorization", "Bearer not-the-token-at-all")), 401);
    assert_eq!(status(http.get(format!("{base}/companies")).header("authorization", format!("Bearer {TOKEN}"))), 200);
    let csv = rt.block_on(async {
        http.get(format!("{base}/companies?format=csv")).header("authorization", format!("Bearer {TOKEN}")).send().await.unwrap().text().await.unwrap()
    });
    assert_eq!(csv, env.ok(&["companies", "--as-of", AS_OF, "--format", "csv"]), "the CSV download is the CLI's CSV");

    assert_eq!(status(http.post(format!("{base}/login")).form(&[("token", "wrong-token-wrong-token")])), 401);
    let login = rt.block_on(async { http.post(format!("{base}/login")).form(&[("token", TOKEN)]).send().await.unwrap() });
    assert_eq!(login.status().as_u16(), 303);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    let page = rt.block_on(async { http.get(format!("{base}/sync")).header("cookie", &session).send().await.unwrap().text().await.unwrap() });
    assert!(page.contains("id=\"dead-records\""), "{page}");
    assert!(!page.contains("jane.doe@example.com") && !page.contains("203.0.113.77") && !page.contains(TOKEN));

    // A retry without the form's CSRF token (another site's form) is refused.
    let dead: Value = serde_json::from_str(&env.ok(&["log", "--connector", "hook", "--status", "dead", "--format", "json"])).unwrap();
    let domain = dead["records"][0]["domain"].as_str().unwrap();
    let forged = [("connector", "hook"), ("domain", domain), ("csrf", "0000")];
    assert_eq!(status(http.post(format!("{base}/sync/retry")).header("cookie", &session).form(&forged)), 403);
    assert_eq!(status(http.post(format!("{base}/sync/retry")).form(&forged)), 401);
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap();
    let real = [("connector", "hook"), ("domain", domain), ("csrf", csrf)];
    assert_eq!(status(http.post(format!("{base}/sync/retry")).header("cookie", &session).form(&real)), 303);
    let after = env.ok(&["log", "--connector", "hook", "--status", "dead", "--format", "json"]);
    assert!(!after.contains(&format!("\"{domain}\"")), "{after}");

    // A short token is refused before anything runs.
    let r = env.run_with(&["run", "--listen", "127.0.0.1:0", "--console-token-env", "SHORT"], &[("SHORT", "abc")]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}
