//! Security guarantees, end to end through the real binary: tokens never reach any
//! output, log or the store; the store and its WAL are owner-only; no email or IP
//! address is stored (activities, properties, quarantine, scores); the daemon's
//! endpoints listen on loopback and show no personal data.

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Env;
use common::hubspot_crm::{Fault, HubSpot, Running};

/// Fake secrets, each unique, so any leak is found by a plain search.
const TOKEN_ENV: &str = "tok-LEAK-CANARY-1234";
const TOKEN_FILE: &str = "tok-LEAK-CANARY-5678";
const HOOK_SECRET: &str = "tok-LEAK-CANARY-9999";
const CANARY: &str = "LEAK-CANARY";

/// Email addresses (also URL-encoded) in `text`: an independent, strict scan.
fn emails_in(text: &str) -> Vec<String> {
    let text = text.replace("%40", "@").replace("%2540", "@");
    let b = text.as_bytes();
    let mut found = Vec::new();
    for (i, _) in text.match_indices('@') {
        let local = b[..i].iter().rev().take_while(|c| c.is_ascii_alphanumeric() || b"._%+-".contains(c)).count();
        let domain: String = text[i + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-').collect();
        let domain = domain.trim_end_matches('.');
        let tld = domain.rsplit('.').next().unwrap_or_default();
        if local > 0 && domain.contains('.') && tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()) {
            found.push(text[i - local..i + 1 + domain.len()].to_owned());
        }
    }
    found
}

/// IP addresses in `text`: every run of digits and dots, or hex digits and colons, that
/// parses as one (no exceptions: test data holds no four-part version numbers).
fn ips_in(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for token in text.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':')) {
        let token = token.trim_matches(|c| c == '.' || c == ':');
        let is_ip = match token.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => true,
            Ok(IpAddr::V6(_)) => token.matches(':').count() >= 2 && token.chars().any(|c| c.is_ascii_digit()),
            Err(_) => false,
        };
        if is_ip {
            found.push(token.to_owned());
        }
    }
    found
}

fn personal_data_in(text: &str) -> Vec<String> {
    let mut all = emails_in(text);
    all.extend(ips_in(text));
    all
}

/// Every text cell of every table of the store, as (table, column value).
fn text_cells(db: &Path) -> Vec<(String, String)> {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = oql_sync::store::Store::open(db.to_str().unwrap()).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'").fetch_all(store.pool()).await.unwrap();
        let mut cells = Vec::new();
        for table in tables {
            let columns: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_table_info(?)").bind(&table).fetch_all(store.pool()).await.unwrap();
            for column in columns {
                let values: Vec<Option<Vec<u8>>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT CAST(\"{column}\" AS BLOB) FROM \"{table}\"")))
                    .fetch_all(store.pool())
                    .await
                    .unwrap();
                cells.extend(values.into_iter().flatten().map(|v| (format!("{table}.{column}"), String::from_utf8_lossy(&v).into_owned())));
            }
        }
        store.close().await;
        cells
    })
}

/// The store's files as text, for a search of their raw bytes.
fn store_bytes(db: &Path) -> String {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|s| std::fs::read(format!("{}{s}", db.display())).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

fn hubspot() -> Running {
    HubSpot::running(TOKEN_ENV)
}

const MAPPING: &str = "object: companies\nmatch: { crm_field: domain }\nfirst_sync: fire\nstages: [interest, investigation, experimentation, ongoing_usage, inactive]\nfields:\n  oql_score: { from: score, round: 0 }\ntriggers:\n  - when: { to: investigation }\n    action: { webhook: { url_env: CHURN_HOOK } }\n";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn tokens_never_reach_output_debug_logs_the_sync_log_or_the_store() {
    let c = hubspot();
    c.hs.add_company(&[("domain", "acme.com"), ("name", "Acme")]);
    // The first write fails twice with a 500 (retried, logged at debug), then succeeds.
    c.hs.fail_next("/crm/v3/objects/companies/batch/update", Fault::ServerError(500), 2);
    let env = Env::new();
    env.write("mappings/hubspot.yaml", MAPPING);
    let retry = "retry: { base_delay_ms: 10, max_delay_ms: 20, max_retries: 2 }\n";
    env.write(
        "connectors/hubspot.yaml",
        format!("name: hubspot\nkind: hubspot\nschedule: \"0 0 * * * *\"\nbase_url: {}\ntoken_env: HS_TOKEN\nmapping: mappings/hubspot.yaml\n{retry}", c.hs.url),
    );
    // A token the CRM refuses (401), read from a file.
    env.write("secrets/hubspot-2.token", format!("{TOKEN_FILE}\n"));
    env.write(
        "connectors/hubspot-2.yaml",
        format!("name: hubspot-2\nkind: hubspot\nschedule: \"0 0 * * * *\"\nbase_url: {}\ntoken_file: secrets/hubspot-2.token\nmapping: mappings/hubspot.yaml\n{retry}", c.hs.url),
    );
    // A webhook sink whose URL carries a secret and points at a closed port (the
    // connection error is printed), and a trigger webhook with a secret in its URL that
    // the server refuses.
    let hook = format!("http://127.0.0.1:{}/hook?key={HOOK_SECRET}", free_port());
    let trigger_hook = format!("{}/hook?key={HOOK_SECRET}", c.hs.url);
    env.write("mappings/events.yaml", "object: events\nmatch: { crm_field: domain }\nfields:\n  stage: { from: stage }\n");
    env.write(
        "connectors/hook.yaml",
        format!("name: hook\nkind: webhook\nschedule: \"0 0 * * * *\"\nmapping: mappings/events.yaml\nurl_env: HOOK_URL\n{retry}"),
    );
    env.write(
        "connectors/export.yaml",
        "name: drops\nkind: export\nschedule: \"0 0 * * * *\"\npath: data\n",
    );
    env.write(
        "data/acme.ndjson",
        r#"{"source":"web","id":"1","kind":"download","occurred_at":"2026-10-20T00:00:00Z","company_domain":"acme.com","version":"1.0"}"#,
    );
    let secrets = [("HS_TOKEN", TOKEN_ENV), ("HOOK_URL", hook.as_str()), ("CHURN_HOOK", trigger_hook.as_str()), ("RUST_LOG", "debug")];
    let run = env.run_with(&["--log-format", "json", "run", "--once", "--as-of", "2026-10-30", "--listen", "none"], &secrets);
    assert_eq!(run.code, 1, "hubspot-2, the webhook and the trigger fail:\n{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.lines().any(|l| l.starts_with('{') && l.contains("\"level\":\"DEBUG\"")), "debug JSON logs: {}", run.stderr);
    assert!(c.hs.requests().iter().any(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN_ENV}")[..])), "the env token was used");
    assert!(c.hs.requests().iter().any(|r| r.status == 401), "the file token was used and refused");
    assert!(c.hs.requests().iter().any(|r| r.status == 500), "the injected 500 was answered");
    let all_output = format!("{}{}", run.stdout, run.stderr);
    assert!(all_output.contains("401"), "the refusal is reported: {all_output}");
    assert!(all_output.contains("connection failed"), "the webhook failure is reported: {all_output}");
    assert!(c.hs.requests().iter().any(|r| r.path == "/hook" && r.query.contains(HOOK_SECRET)), "the trigger webhook was called");
    let sync = env.run_with(&["--log-format", "json", "sync", "--as-of", "2026-10-30"], &secrets);
    let log_json = env.run_with(&["log", "--format", "json"], &secrets);
    let log_failed = env.run_with(&["log", "--status", "failed"], &secrets);
    for (what, text) in [
        ("run stdout", run.stdout.as_str()),
        ("run stderr", run.stderr.as_str()),
        ("sync stdout", sync.stdout.as_str()),
        ("sync stderr", sync.stderr.as_str()),
        ("log --format json", log_json.stdout.as_str()),
        ("log --status failed", log_failed.stdout.as_str()),
        ("store files", &store_bytes(&env.path().join("oql.db"))),
    ] {
        assert!(!text.contains(CANARY), "{what} holds a token:\n{text}");
        assert!(!text.contains("key="), "{what} holds the webhook URL's query string:\n{text}");
    }
}

#[test]
fn debug_of_a_loaded_config_and_of_its_credentials_prints_no_secret() {
    let env = Env::new();
    env.write("mappings/hubspot.yaml", MAPPING);
    env.write("secrets/token", TOKEN_FILE);
    env.write(
        "connectors/hubspot.yaml",
        "name: hubspot\nkind: hubspot\nschedule: \"0 0 * * * *\"\ntoken_file: secrets/token\nmapping: mappings/hubspot.yaml\n",
    );
    let config = oql_sync::config::Config::load(env.path()).unwrap();
    assert!(!format!("{config:?}").contains(CANARY));
    let secret = oql_sync::auth::SecretSource::File(env.path().join("secrets/token")).read(Path::new("c.yaml"), "token").unwrap();
    let shown = format!("{secret:?}");
    assert!(!shown.contains(CANARY), "{shown}");
}

/// Activities full of personal data, valid and invalid, in all three formats.
fn personal_data_files(env: &Env) -> Vec<String> {
    let ndjson = [
        r#"{"source":"web","id":"p1","kind":"page_view","occurred_at":"2026-10-01T10:00:00Z","actor":"198.51.100.23","actor_email":"Jane.Doe@Acme.com","url":"https://oqldb.dev/docs?email=jane.doe%40acme.com&ip=198.51.100.23&ok=1","company_name":"Acme (ask bob@acme.com)"}"#,
        r#"{"source":"web","id":"p2","kind":"download","occurred_at":"2026-10-02T10:00:00Z","actor":"2001:db8::7","package":"oqldb","version":"2.0","properties":{"client_ip":"203.0.113.9","contact":{"email":"ops@initech.io","list":["x 2001:db8:0:0:1::5 y","z"]},"forwarded":"for=192.0.2.60;proto=https","carol@globex.example":"a key"}}"#,
        r#"{"source":"web","id":"p3","kind":"page_view","occurred_at":"2026-10-03T10:00:00Z","actor":"dave@initech.io","remote_addr":"192.0.2.44","referrer":"http://192.0.2.45/login?user=erin%40globex.example"}"#,
        r#"{"source":"web","id":"eve@globex.example","kind":"page_view","occurred_at":"2026-10-03T11:00:00Z"}"#,
        // invalid: quarantined with their raw text; reasons quote values
        r#"{"source":"web","id":"q1","kind":"frank@initech.io","occurred_at":"2026-10-03T10:00:00Z","actor":"198.51.100.77"}"#,
        r#"{"source":"web","id":"q2","kind":"page_view","occurred_at":"grace@acme.com","actor_email":"grace@acme.com"}"#,
        // valid, with no company: an address is never a company domain
        r#"{"source":"web","id":"q3","kind":"page_view","occurred_at":"2026-10-03T10:00:00Z","company_domain":"198.51.100.78"}"#,
        // invalid: an email address whose domain is an address
        r#"{"source":"web","id":"q4","kind":"page_view","occurred_at":"2026-10-03T10:00:00Z","actor_email":"heidi@[198.51.100.79]"}"#,
        r#"{"source":"web","id":"q5","kind":"page_view","actor_email":"ivan@acme.com" BROKEN"#,
    ];
    let csv = "id,source,kind,occurred_at,actor,actor_email,email,ip\n\
               c1,web,page_view,2026-10-04T10:00:00Z,judy@acme.com,judy@acme.com,judy@acme.com,198.51.100.30\n\
               c2,web,page_view,not-a-time,198.51.100.31,mallory@initech.io,mallory@initech.io,2001:db8::31\n";
    let scarf = "id,type,package,pixel,version,time,referer,user_agent,platform,variables,origin_id,origin_latitude,origin_longitude,origin_country,origin_city,origin_postal,origin_connection_type,origin_company,origin_domain,dnt,confidence,endpoint_id,origin_state,mtc_quota_exceeded,ip\n\
                 s1,binary-download,oqldb,,2.0,2026-10-05T10:00:00Z,https://x.dev/?u=oscar@acme.com,curl/8.5.0 (from 198.51.100.40),linux,user=peggy@acme.com,o1,1.0,2.0,US,Austin,78701,business,Acme,acme.com,false,0.9,ep1,Texas,false,198.51.100.41\n\
                 s2,weird-event,oqldb,,2.0,2026-10-05T10:00:00Z,,Mozilla (198.51.100.42),linux,trent@acme.com,o2,,,US,,,business,Acme,acme.com,false,0.9,ep2,,false,198.51.100.43\n";
    vec![
        env.write("data/people.ndjson", ndjson.join("\n")).to_str().unwrap().to_owned(),
        env.write("data/people.csv", csv).to_str().unwrap().to_owned(),
        env.write("data/scarf-people.csv", scarf).to_str().unwrap().to_owned(),
    ]
}

#[test]
fn no_email_or_ip_address_is_stored_or_printed_from_imported_activities() {
    let env = Env::new();
    let files = personal_data_files(&env);
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    let run = env.run_with(&args, &[("RUST_LOG", "debug")]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let (import, import_logs) = (run.stdout, run.stderr);
    assert!(import.contains("people.ndjson (ndjson): 5 imported, 0 duplicate, 4 quarantined"), "{import}");
    assert!(import.contains("people.csv (csv): 1 imported, 0 duplicate, 1 quarantined"), "{import}");
    assert!(import.contains("scarf-people.csv (scarf): 1 imported, 0 duplicate, 1 quarantined"), "{import}");
    env.ok(&["score", "--as-of", "2026-10-31"]);
    let companies = env.ok(&["companies", "--as-of", "2026-10-31", "--format", "json"]);
    assert!(companies.contains("\"domain\": \"acme.com\""), "email domains still attribute: {companies}");
    let explain = env.ok(&["explain", "acme.com", "--as-of", "2026-10-31"]);
    for (what, text) in [
        ("import summary", import.as_str()),
        ("import debug logs", import_logs.as_str()),
        ("companies", companies.as_str()),
        ("explain", explain.as_str()),
    ] {
        let found = personal_data_in(text);
        assert!(found.is_empty(), "{what} shows {found:?}:\n{text}");
    }
    let db = env.path().join("oql.db");
    let cells = text_cells(&db);
    assert!(cells.iter().any(|(t, _)| t == "quarantine.raw"), "the quarantine was scanned too");
    let leaks: Vec<(String, Vec<String>)> =
        cells.into_iter().map(|(t, v)| (t, personal_data_in(&v))).filter(|(_, found)| !found.is_empty()).collect();
    assert!(leaks.is_empty(), "personal data in the store: {leaks:?}");
    let bytes = store_bytes(&db);
    for planted in ["jane.doe", "Jane.Doe", "bob@", "ops@", "carol@", "dave@", "eve@", "frank@", "grace@", "heidi@", "ivan@", "judy@", "mallory@", "oscar@", "peggy@", "trent@", "198.51.100.", "203.0.113.9", "192.0.2.", "2001:db8"] {
        assert!(!bytes.contains(planted), "the store's bytes hold `{planted}`");
    }
}

#[test]
fn a_running_daemon_keeps_its_store_files_owner_only_and_its_endpoints_on_loopback_without_personal_data() {
    let help = Env::new().ok(&["run", "--help"]);
    assert!(help.contains("[default: 127.0.0.1:9464]"), "the endpoint listens on loopback by default:\n{help}");

    let env = Env::new();
    personal_data_files(&env);
    env.write("connectors/drops.yaml", "name: drops\nkind: export\nschedule: \"* * * * * *\"\npath: data\n");
    let port = free_port();
    // umask 000: the owner-only modes come from oql-sync, not from the environment.
    let mut command = std::process::Command::new("sh");
    let binary = env!("CARGO_BIN_EXE_oql-sync");
    command
        .arg("-c")
        .arg(format!(
            "umask 000; exec '{binary}' --config-dir '{}' run --as-of 2026-10-31 --listen 127.0.0.1:{port}",
            env.path().display()
        ))
        .env_remove("OQL_DB")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = command.spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let get = |path: &str| -> Option<(u16, String)> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let r = reqwest::get(format!("{base}{path}")).await.ok()?;
            Some((r.status().as_u16(), r.text().await.ok()?))
        })
    };
    let started = Instant::now();
    let metrics = loop {
        assert!(started.elapsed() < Duration::from_secs(30), "the daemon never imported the drops");
        std::thread::sleep(Duration::from_millis(200));
        if let Some((200, text)) = get("/metrics") {
            if text.contains("oql_activities{source=\"scarf\"} 1") && text.contains("oql_activities{source=\"web\"} 6") {
                break text;
            }
        }
    };
    let db = env.path().join("oql.db");
    let modes: Vec<(String, u32)> = ["", "-wal", "-shm"]
        .iter()
        .map(|s| {
            use std::os::unix::fs::PermissionsExt;
            let path = format!("{}{s}", db.display());
            let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            (s.to_string(), meta.permissions().mode() & 0o777)
        })
        .collect();
    let (_, health) = get("/healthz").unwrap();
    let (_, status) = get("/status").unwrap();
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(modes, [("".to_string(), 0o600), ("-wal".to_string(), 0o600), ("-shm".to_string(), 0o600)]);
    assert!(status.contains("acme.com") || status.contains("companies_by_stage"), "{status}");
    for (what, text) in [("/metrics", &metrics), ("/healthz", &health), ("/status", &status)] {
        let found = personal_data_in(text);
        assert!(found.is_empty(), "{what} shows {found:?}:\n{text}");
    }
}

/// The personal-data corpus of issue 16: (text planted, the spellings that would show
/// it was kept). Each entry is one literal; a literal leaks when any of its spellings
/// is found anywhere.
const CORPUS: &[(&str, &[&str])] = &[
    // An IP with a port, after `-`, `/`, `:` or `%3D`, in a URL, zero-padded.
    ("198.51.100.99:8443", &["198.51.100.99"]),
    ("id-203.0.113.77", &["203.0.113.77"]),
    ("/api/clients/2001:db8:85a3::8a2e:370:7334/stats", &["2001:db8:85a3::8a2e:370:7334", "8a2e:370:7334"]),
    ("ip:::ffff:198.51.100.23", &["198.51.100.23", "ffff:198.51"]),
    ("q%3D203.0.113.88", &["203.0.113.88"]),
    ("192.168.010.021", &["192.168.010.021", "192.168.10.21"]),
    ("http://198.51.100.120:8080/x", &["198.51.100.120"]),
    ("host_198.51.100.131", &["198.51.100.131"]),
    ("to 203.0.113.200.", &["203.0.113.200"]),
    ("10.0.0.1", &["10.0.0.1"]),
    // IPv6: uppercase, full, bracketed with a port, with a zone, IPv4-mapped in hex.
    ("2001:DB8:0:0:8:800:200C:417A", &["200C:417A", "200c:417a"]),
    ("2001:0db8:0000:0000:0000:ff00:0042:8329", &["0042:8329"]),
    ("[2001:db8::ff00:42:7777]:443", &["ff00:42:7777"]),
    ("fe80::1ff:fe23:4567:890a%eth0", &["fe23:4567:890a"]),
    ("::ffff:c633:6417", &["c633:6417"]),
    // Emails: internationalized, punycode, encoded once, twice and three times, upper
    // case, fullwidth `＠`, `[at]`, sub-domains with a plus tag.
    ("jöhn.müller@exämple.de", &["jöhn.müller", "j%C3%B6hn"]),
    ("li.wei@例子.中国", &["li.wei"]),
    ("ivan@example.xn--p1ai", &["ivan"]),
    ("jane%2540double.com", &["jane"]),
    ("otto%252540triple.example", &["otto"]),
    ("pct.user%40encoded.example", &["pct.user"]),
    ("MIXED.Case@Example.COM", &["MIXED.Case", "mixed.case"]),
    ("kimfw＠fullwidth.example", &["kimfw"]),
    ("frank[at]initech.example", &["frank"]),
    ("first.last+tag@mail.sub.example.co.uk", &["first.last"]),
];

/// Every field of an activity, and where an extra one goes: each literal is planted in
/// each, on a line of its own (lines that become invalid are quarantined: their raw text
/// and reason are stored too).
const FIELDS: &[&str] = &[
    "source", "id", "kind", "action", "occurred_at", "tier", "company_domain", "company_name", "actor", "actor_email",
    "package", "version", "url", "extra", "properties",
];

fn corpus_files(env: &Env) -> Vec<String> {
    let mut lines = Vec::new();
    for (n, (planted, _)) in CORPUS.iter().enumerate() {
        for field in FIELDS {
            let mut line = serde_json::json!({
                "source": "web", "id": format!("c{n}-{field}"), "kind": "download",
                "occurred_at": format!("2026-10-{:02}T10:00:00Z", 1 + n % 28), "company_domain": "acme.com",
            });
            match *field {
                "properties" => line["properties"] = serde_json::json!({ "note": planted, *planted: [planted] }),
                "action" => {
                    line["kind"] = "community".into();
                    line["action"] = (*planted).into();
                }
                f => line[f] = (*planted).into(),
            }
            lines.push(line.to_string());
        }
    }
    // A CSV row of each: every column holds the literal.
    let mut csv = String::from("id,source,kind,occurred_at,company_domain,company_name,actor,actor_email,package,version,url,note\n");
    for (n, (planted, _)) in CORPUS.iter().enumerate() {
        let q = format!("\"{}\"", planted.replace('"', "\"\""));
        csv.push_str(&format!("csv{n},{q},download,2026-10-20T10:00:00Z,{q},{q},{q},{q},{q},{q},{q},{q}\n"));
        csv.push_str(&format!("csvok{n},web,download,2026-10-20T10:00:00Z,acme.com,{q},{q},,{q},{q},{q},{q}\n"));
    }
    vec![
        env.write("data/corpus.ndjson", lines.join("\n")).to_str().unwrap().to_owned(),
        env.write("data/corpus.csv", csv).to_str().unwrap().to_owned(),
    ]
}

/// The literals of the corpus found in `text`.
fn corpus_leaks(text: &str) -> Vec<&'static str> {
    CORPUS
        .iter()
        .filter(|(_, needles)| needles.iter().any(|n| text.contains(n) || text.to_lowercase().contains(&n.to_lowercase())))
        .map(|(planted, _)| *planted)
        .collect()
}

#[test]
fn no_literal_of_the_personal_data_corpus_reaches_the_store_or_any_output() {
    let env = Env::new();
    let files = corpus_files(&env);
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    let import = env.run_with(&args, &[("RUST_LOG", "debug")]);
    assert_eq!(import.code, 0, "{}{}", import.stdout, import.stderr);
    let score = env.run_with(&["score", "--as-of", "2026-10-31"], &[("RUST_LOG", "debug")]);
    assert_eq!(score.code, 0, "{}{}", score.stdout, score.stderr);
    let companies = env.ok(&["companies", "--as-of", "2026-10-31", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&companies).unwrap();
    let domains: Vec<String> = listed.as_array().unwrap().iter().map(|c| c["domain"].as_str().unwrap().to_owned()).collect();
    assert!(domains.contains(&"acme.com".to_owned()), "the valid lines were imported: {companies}");
    let mut outputs = vec![
        ("import stdout".to_owned(), import.stdout),
        ("import stderr (debug)".to_owned(), import.stderr),
        ("score".to_owned(), format!("{}{}", score.stdout, score.stderr)),
        ("companies json".to_owned(), companies),
        ("companies table".to_owned(), env.ok(&["companies", "--as-of", "2026-10-31", "--wide"])),
        ("companies csv".to_owned(), env.ok(&["companies", "--as-of", "2026-10-31", "--format", "csv"])),
        ("log".to_owned(), env.ok(&["log", "--format", "json"])),
    ];
    for domain in &domains {
        let explain = env.run(&["explain", domain, "--as-of", "2026-10-31"]);
        outputs.push((format!("explain {domain}"), format!("{}{}", explain.stdout, explain.stderr)));
    }
    let db = env.path().join("oql.db");
    outputs.push(("store files (db, WAL)".to_owned(), store_bytes(&db)));
    let mut leaked: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (what, text) in &outputs {
        for literal in corpus_leaks(text) {
            leaked.entry(literal).or_default().push(what.clone());
        }
    }
    eprintln!("personal-data corpus: {} literals, {} leaked", CORPUS.len(), leaked.len());
    assert!(leaked.is_empty(), "{} of {} literals leaked: {leaked:#?}", leaked.len(), CORPUS.len());
    // No company is an address in any spelling.
    for domain in &domains {
        assert!(psl_like_host(domain), "`{domain}` is listed as a company");
    }
}

/// A host name, not an address: its last label is no number.
fn psl_like_host(domain: &str) -> bool {
    domain.parse::<IpAddr>().is_err() && domain.rsplit('.').next().is_some_and(|l| !l.chars().all(|c| c.is_ascii_digit()))
}

/// Secret canaries: where each comes from, and its value. Each is unique, so a plain
/// search finds every copy.
const SECRET_CANARIES: &[(&str, &str)] = &[
    ("HubSpot token (env)", "pat-na1-CANARYtoken001"),
    ("OAuth client secret (env)", "CANARYclientsecret002"),
    ("OAuth refresh token (file)", "CANARYrefresh003"),
    ("webhook URL path segment", "T0CANARYpath004"),
    ("webhook URL path segment", "B0CANARYpath005"),
    ("webhook URL query value", "CANARYquery006"),
    ("trigger URL path segment", "CANARYtrigpath007"),
    ("trigger URL query value", "CANARYtrigquery008"),
];

/// A service as hostile as real ones get: HubSpot's API answers 401 quoting the bearer
/// token it was sent; its token endpoint refuses the grant quoting the client secret and
/// refresh token; anything else (the webhooks) answers 500 or 400 echoing the URL,
/// query string included.
fn echoing_service(rt: &tokio::runtime::Runtime) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::IntoResponse;
    let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = hits.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: String| async move {
        let path = uri.path().to_owned();
        seen.lock().unwrap().push(path.clone());
        if path.starts_with("/oauth/") && path.ends_with("/token") {
            let form = common::emulator::form_decode(&body);
            let description = format!(
                "client_secret {} does not match refresh_token {}",
                form.get("client_secret").cloned().unwrap_or_default(),
                form.get("refresh_token").cloned().unwrap_or_default()
            );
            let body = serde_json::json!({ "error": "invalid_client", "error_description": description, "status": "BAD_CLIENT_ID" });
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
        if path.starts_with("/crm/") {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let body = serde_json::json!({
                "status": "error",
                "message": format!("Authentication credentials not valid: {auth} (portal owner ops.owner@acme.example, from 198.51.100.201)"),
                "correlationId": "5e1c9d2a-0000-4000-8000-000000000000",
                "category": "INVALID_AUTHENTICATION",
            });
            return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
        }
        // The trigger's hook refuses (not retried, so the test stays quick); the sink's fails.
        let status = if path.starts_with("/trigger/") { StatusCode::BAD_REQUEST } else { StatusCode::INTERNAL_SERVER_ERROR };
        (status, format!("upstream failed for POST {uri}: {body}")).into_response()
    });
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits)
}

#[test]
fn secret_canaries_in_urls_and_echoed_error_bodies_never_reach_output_at_debug_or_the_store() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (service, hits) = echoing_service(&rt);
    let c = |label: &str| SECRET_CANARIES.iter().filter(|(l, _)| *l == label).map(|(_, v)| *v).collect::<Vec<_>>();
    let env = Env::new();
    let retry = "retry: { base_delay_ms: 10, max_delay_ms: 20, max_retries: 1 }\n";
    env.write(
        "mappings/hubspot.yaml",
        "object: companies\nmatch: { crm_field: domain }\nstages: [interest, investigation, experimentation, ongoing_usage, inactive]\nfields:\n  oql_score: { from: score, round: 0 }\n",
    );
    env.write(
        "connectors/hubspot.yaml",
        format!("name: hubspot\nkind: hubspot\nschedule: \"0 0 * * * *\"\nbase_url: {service}\ntoken_env: HS_TOKEN\nmapping: mappings/hubspot.yaml\n{retry}"),
    );
    env.write("secrets/refresh", format!("{}\n", c("OAuth refresh token (file)")[0]));
    env.write(
        "connectors/hubspot-oauth.yaml",
        format!(
            "name: hubspot-oauth\nkind: hubspot\nschedule: \"0 0 * * * *\"\nbase_url: {service}\nmapping: mappings/hubspot.yaml\n\
             oauth: {{ client_id: app-1, client_secret_env: HS_CLIENT_SECRET, refresh_token_file: secrets/refresh }}\n{retry}"
        ),
    );
    env.write("mappings/events.yaml", "object: events\nmatch: { crm_field: domain }\nfields:\n  stage: { from: stage }\n");
    // A sink that accepts the company, so its trigger fires (and the trigger's webhook fails).
    env.write(
        "mappings/rows.yaml",
        "object: rows\nmatch: { crm_field: domain }\nfirst_sync: fire\nfields:\n  stage: { from: stage }\ntriggers:\n  - when: { to: investigation }\n    action: { webhook: { url_env: CHURN_HOOK } }\n",
    );
    env.write("connectors/rows.yaml", "name: rows\nkind: file\nschedule: \"0 0 * * * *\"\nmapping: mappings/rows.yaml\npath: out/rows.csv\n");
    env.write("connectors/hook.yaml", format!("name: hook\nkind: webhook\nschedule: \"0 0 * * * *\"\nmapping: mappings/events.yaml\nurl_env: HOOK_URL\n{retry}"));
    env.write(
        "data/acme.ndjson",
        r#"{"source":"web","id":"1","kind":"download","occurred_at":"2026-10-20T00:00:00Z","company_domain":"acme.com","version":"1.0"}"#,
    );
    env.ok(&["import", env.path().join("data/acme.ndjson").to_str().unwrap()]);
    let hook_path = c("webhook URL path segment");
    let hook = format!("{service}/services/{}/{}?key={}", hook_path[0], hook_path[1], c("webhook URL query value")[0]);
    let trigger = format!("{service}/trigger/{}?token={}", c("trigger URL path segment")[0], c("trigger URL query value")[0]);
    let vars = [
        ("HS_TOKEN", c("HubSpot token (env)")[0]),
        ("HS_CLIENT_SECRET", c("OAuth client secret (env)")[0]),
        ("HOOK_URL", hook.as_str()),
        ("CHURN_HOOK", trigger.as_str()),
        ("RUST_LOG", "debug"),
    ];
    let mut outputs: Vec<(String, String)> = Vec::new();
    for format in ["human", "json"] {
        let run = env.run_with(&["--log-format", format, "run", "--once", "--as-of", "2026-10-30", "--listen", "none"], &vars);
        assert_eq!(run.code, 1, "every sink fails:\n{}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.lines().filter(|l| l.contains("DEBUG")).count() > 5, "debug logs are on:\n{}", run.stderr);
        outputs.push((format!("run --once ({format}) stdout"), run.stdout));
        outputs.push((format!("run --once ({format}) stderr"), run.stderr));
        let sync = env.run_with(&["--log-format", format, "sync", "--as-of", "2026-10-30"], &vars);
        outputs.push((format!("sync ({format})"), format!("{}{}", sync.stdout, sync.stderr)));
    }
    for args in [&["log"][..], &["log", "--format", "json"], &["log", "--status", "failed"]] {
        let r = env.run_with(args, &vars);
        outputs.push((args.join(" "), format!("{}{}", r.stdout, r.stderr)));
    }
    outputs.push(("store files (db, WAL)".to_owned(), store_bytes(&env.path().join("oql.db"))));
    let all: String = outputs.iter().map(|(_, t)| t.as_str()).collect();
    let hits = hits.lock().unwrap().clone();
    for path in ["/crm/", "/oauth/", "/services/", "/trigger/"] {
        assert!(hits.iter().any(|h| h.starts_with(path)), "{path} was called: {hits:?}");
    }
    // The hostile service was reached and its echoes were reported.
    for answer in ["401", "500", "invalid_client"] {
        assert!(all.contains(answer), "`{answer}` is reported:\n{all}");
    }
    let mut found = Vec::new();
    for (label, canary) in SECRET_CANARIES {
        for (what, text) in &outputs {
            let n = text.matches(canary).count();
            if n > 0 {
                found.push(format!("{label} `{canary}`: {n} in {what}"));
            }
        }
    }
    // Nor does the personal data the CRM's answer carried.
    for (what, text) in &outputs {
        for person in ["ops.owner", "198.51.100.201"] {
            if text.contains(person) {
                found.push(format!("personal data `{person}` in {what}"));
            }
        }
    }
    let occurrences: usize = SECRET_CANARIES.iter().map(|(_, canary)| all.matches(canary).count()).sum();
    let leaked = SECRET_CANARIES.iter().filter(|(_, canary)| all.contains(canary)).count();
    eprintln!("secret canaries: {}, leaked {leaked}, occurrences {occurrences}", SECRET_CANARIES.len());
    assert!(found.is_empty(), "secrets in output or the store:\n{}", found.join("\n"));
}

/// What hostile APIs hand the pollers: GitHub logins and Slack member ids that are
/// addresses, profiles whose email, blog and company hold them.
const POLLED_PERSONAL_DATA: &[(&str, &[&str])] = &[
    ("198.51.100.61", &["198.51.100.61"]),
    ("octo.cat@acme.example", &["octo.cat"]),
    ("pii.user@192.168.010.021", &["pii.user", "192.168.010.021", "192.168.10.21"]),
    ("http://203.0.113.62:8080/", &["203.0.113.62"]),
    ("Acme (ask jane%2540acme.example)", &["jane"]),
    ("U-198.51.100.63", &["198.51.100.63"]),
    ("mia.slack@acme.example", &["mia.slack"]),
    ("tom.slack@[198.51.100.64]", &["tom.slack", "198.51.100.64"]),
];

#[test]
fn github_and_slack_activities_go_through_the_same_redaction() {
    use common::github_api::GitHub;
    use common::slack_api::Slack;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let gh = rt.block_on(GitHub::start("ghp_security_token"));
    let slack = rt.block_on(Slack::start("xoxb-security-token"));
    let p = |i: usize| POLLED_PERSONAL_DATA[i].0;
    gh.add_repo("acme/db");
    gh.star("acme/db", p(0), "2026-10-01T10:00:00Z");
    gh.star("acme/db", p(1), "2026-10-02T10:00:00Z");
    gh.star("acme/db", "pii-user", "2026-10-03T10:00:00Z");
    gh.comment("acme/db", p(1), "2026-10-04T10:00:00Z");
    gh.user("pii-user", Some(p(2)), p(3), Some(p(4)));
    slack.member(p(5), Some("li.wei@例子.中国"), false);
    slack.member(p(6), Some("x@192.168.010.021"), false);
    slack.member("U07", Some(p(7)), false);
    slack.channel("C01", true);
    for (i, user) in [p(5), p(6), "U07"].iter().enumerate() {
        slack.message("C01", &format!("17900000{i:02}.000100"), user);
    }
    let env = Env::new();
    env.write(
        "connectors/github.yaml",
        format!("name: github\nkind: github\nschedule: \"0 */10 * * * *\"\nbase_url: {}\ntoken_env: GH_TOKEN\nrepos: [acme/db]\nretry: {{ base_delay_ms: 10, max_delay_ms: 50 }}\n", gh.url),
    );
    env.write(
        "connectors/slack.yaml",
        format!("name: slack\nkind: slack\nschedule: \"0 */5 * * * *\"\nbase_url: {}\ntoken_env: SLACK_TOKEN\nchannels: [C01]\nretry: {{ base_delay_ms: 10, max_delay_ms: 50 }}\n", slack.url),
    );
    let vars = [("GH_TOKEN", "ghp_security_token"), ("SLACK_TOKEN", "xoxb-security-token"), ("RUST_LOG", "debug")];
    let poll = env.run_with(&["poll"], &vars);
    assert_eq!(poll.code, 0, "{}\n{}", poll.stdout, poll.stderr);
    assert!(poll.stdout.contains("github: ") && poll.stdout.contains("slack: "), "{}", poll.stdout);
    let stored = |sql: &str| -> i64 {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let store = oql_sync::store::Store::open(env.path().join("oql.db").to_str().unwrap()).await.unwrap();
            let n = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(store.pool()).await.unwrap();
            store.close().await;
            n
        })
    };
    assert_eq!(stored("SELECT COUNT(*) FROM activities WHERE source = 'github'"), 4, "every GitHub activity was kept");
    assert_eq!(stored("SELECT COUNT(*) FROM activities WHERE source = 'slack'"), 3, "every Slack message was kept");
    env.ok(&["score", "--as-of", "2026-10-30"]);
    let companies = env.ok(&["companies", "--as-of", "2026-10-30", "--format", "json"]);
    let mut outputs = vec![("poll stdout", poll.stdout), ("poll stderr (debug)", poll.stderr), ("companies", companies.clone())];
    outputs.push(("store files (db, WAL)", store_bytes(&env.path().join("oql.db"))));
    let mut leaked = Vec::new();
    for (planted, needles) in POLLED_PERSONAL_DATA {
        for (what, text) in &outputs {
            // Debug logs show the requests made, and GitHub's profile URL names the login.
            if what.starts_with("poll stderr") && *planted == "pii-user" {
                continue;
            }
            if needles.iter().any(|n| text.contains(n)) {
                leaked.push(format!("`{planted}` in {what}"));
            }
        }
    }
    eprintln!("polled personal data: {} literals, {} leaks", POLLED_PERSONAL_DATA.len(), leaked.len());
    assert!(leaked.is_empty(), "{leaked:#?}");
    let listed: serde_json::Value = serde_json::from_str(&companies).unwrap();
    for c in listed.as_array().unwrap() {
        assert!(psl_like_host(c["domain"].as_str().unwrap()), "{c}");
    }
}

#[test]
fn a_sync_log_written_before_secrets_were_redacted_is_shown_without_them() {
    const OLD_LEAK: &str = "pat-na1-CANARYold009";
    let env = Env::new();
    env.write("mappings/hubspot.yaml", MAPPING);
    env.write(
        "connectors/hubspot.yaml",
        "name: hubspot\nkind: hubspot\nschedule: \"0 0 * * * *\"\ntoken_env: HS_TOKEN\nmapping: mappings/hubspot.yaml\n",
    );
    // A run an earlier version logged with the token HubSpot echoed.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = oql_sync::store::Store::open(env.path().join("oql.db").to_str().unwrap()).await.unwrap();
        store.record_skipped("hubspot", &format!("HTTP 401: credentials not valid: Bearer {OLD_LEAK}")).await.unwrap();
        store.close().await;
    });
    for args in [&["log"][..], &["log", "--format", "json"]] {
        let r = env.run_with(args, &[("HS_TOKEN", OLD_LEAK)]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("[REDACTED]"), "{args:?}: {}", r.stdout);
        assert!(!r.stdout.contains(OLD_LEAK), "{args:?}: {}", r.stdout);
    }
}
