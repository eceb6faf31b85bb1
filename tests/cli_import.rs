//! `import` as a user runs it: bad input is quarantined with file and line, valid lines
//! are never lost, re-imports change nothing, attribution overrides apply later.

mod common;

use common::{Env, golden_dir};

const GOOD_1: &str = r#"{"id":"g1","source":"scarf","kind":"download","occurred_at":"2026-06-20T12:00:00Z","company_domain":"acme.com","package":"oqldb","version":"1.0.0"}"#;
const GOOD_2: &str = r#"{"id":"g2","source":"web","kind":"page_view","occurred_at":"2026-06-21T12:00:00Z","actor_email":"jane@initech.io","url":"/docs"}"#;
const GOOD_3: &str = r#"{"id":"g3","source":"web","kind":"page_view","occurred_at":"2026-06-22T12:00:00Z","actor":"octocat","actor_email":"octo@gmail.com"}"#;

fn bad_file() -> String {
    [
        GOOD_1,
        r#"{"id":"b1","source":"web","kind":"page_view","occurred_at":"21/06/2026"}"#,
        r#"{"id":"b2","source":"web","kind":"click","occurred_at":"2026-06-21T12:00:00Z"}"#,
        r#"["not", "an", "object"]"#,
        GOOD_2,
        r#"{"id":"b3","source":"web","kind":"page_view""#,
        GOOD_3,
    ]
    .join("\n")
}

#[test]
fn bad_lines_are_quarantined_with_line_numbers_and_valid_lines_kept() {
    let env = Env::new();
    let file = env.write("data/mixed.ndjson", bad_file());
    let r = env.run(&["import", file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("mixed.ndjson (ndjson): 3 imported, 0 duplicate, 4 quarantined, 1 unattributed"), "{}", r.stdout);
    assert!(r.stdout.contains("mixed.ndjson:2: field `occurred_at` is not an RFC 3339 timestamp with offset: `21/06/2026`"), "{}", r.stdout);
    assert!(r.stdout.contains("mixed.ndjson:3: unknown kind `click`"), "{}", r.stdout);
    assert!(r.stdout.contains("mixed.ndjson:4: line is a JSON array, not an object"), "{}", r.stdout);
    assert!(r.stdout.contains("mixed.ndjson:6: not valid JSON"), "{}", r.stdout);
    let companies = env.companies_json("2026-06-30");
    let domains: Vec<&str> = companies.as_array().unwrap().iter().map(|c| c["domain"].as_str().unwrap()).collect();
    assert_eq!(domains, vec!["acme.com", "initech.io"]);
}

#[test]
fn reimporting_the_same_file_changes_nothing() {
    let env = Env::new();
    let file = env.write("data/mixed.ndjson", bad_file());
    env.ok(&["import", file.to_str().unwrap()]);
    let before = env.companies_json("2026-06-30");
    let db = env.path().join("oql.db");
    let size_rows = |sql: &'static str| -> i64 {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let store = oql_sync::store::Store::open(db.to_str().unwrap()).await.unwrap();
            let n: i64 = sqlx::query_scalar(sql).fetch_one(store.pool()).await.unwrap();
            store.close().await;
            n
        })
    };
    let counts_before = (size_rows("SELECT COUNT(*) FROM activities"), size_rows("SELECT COUNT(*) FROM quarantine"));
    let again = env.ok(&["import", file.to_str().unwrap()]);
    assert!(again.contains("0 imported, 3 duplicate, 4 quarantined"), "{again}");
    assert_eq!(env.companies_json("2026-06-30"), before);
    let counts_after = (size_rows("SELECT COUNT(*) FROM activities"), size_rows("SELECT COUNT(*) FROM quarantine"));
    assert_eq!(counts_before, counts_after);
    assert_eq!(counts_after, (3, 4));
}

#[test]
fn unattributed_activities_are_placed_when_an_override_appears() {
    let env = Env::new();
    let file = env.write("data/mixed.ndjson", bad_file());
    env.ok(&["import", file.to_str().unwrap()]);
    assert_eq!(env.companies_json("2026-06-30").as_array().unwrap().len(), 2);
    env.write("attribution.yaml", "actors:\n  octocat: https://www.Globex.example/\n");
    let r = env.run(&["companies", "--as-of", "2026-06-30", "--format", "json"]);
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("1 activities re-attributed"), "{}", r.stderr);
    let companies: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let domains: Vec<&str> = companies.as_array().unwrap().iter().map(|c| c["domain"].as_str().unwrap()).collect();
    // by score: a download (5), a docs view (0.5), a page view without a URL (0.25)
    assert_eq!(domains, vec!["acme.com", "initech.io", "globex.example"]);
    // Marking initech.io as free mail takes its activity back out.
    env.write("attribution.yaml", "actors:\n  octocat: globex.example\nfree_mail: [initech.io]\n");
    let companies = env.companies_json("2026-06-30");
    let domains: Vec<&str> = companies.as_array().unwrap().iter().map(|c| c["domain"].as_str().unwrap()).collect();
    assert_eq!(domains, vec!["acme.com", "globex.example"]);
}

#[test]
fn a_csv_with_a_missing_column_is_reported_and_other_files_still_import() {
    let env = Env::new();
    let broken = env.write("data/broken.csv", "source,kind,id\nweb,page_view,1\n");
    let good = env.write(
        "data/good.csv",
        "id,source,kind,occurred_at,company_domain,url\nc1,web,page_view,2026-06-29T10:00:00Z,acme.com,/pricing\nc2,web,page_view,not-a-time,acme.com,/\n",
    );
    let r = env.run(&["import", broken.to_str().unwrap(), good.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("broken.csv:1: activity CSV is missing column `occurred_at` (header has: source, kind, id)"), "{}", r.stderr);
    assert!(r.stdout.contains("good.csv (csv): 1 imported, 0 duplicate, 1 quarantined, 0 unattributed"), "{}", r.stdout);
    assert!(r.stdout.contains("good.csv:3: field `occurred_at` is not an RFC 3339 timestamp"), "{}", r.stdout);
    assert_eq!(env.companies_json("2026-06-30")[0]["score"], 1.0);
}

#[test]
fn missing_files_and_bad_arguments_have_clear_errors_and_exit_codes() {
    let env = Env::new();
    let r = env.run(&["import", "/no/such/file.ndjson"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("/no/such/file.ndjson: No such file or directory"), "{}", r.stderr);

    let r = env.run(&["companies", "--as-of", "2026-13-01"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("`2026-13-01` is not a date (expected YYYY-MM-DD)"), "{}", r.stderr);

    let r = env.run(&["companies", "--stage", "hot"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("`hot` is not a stage"), "{}", r.stderr);
}

#[test]
fn a_broken_config_is_rejected_before_anything_runs() {
    let env = Env::new();
    env.write("scoring.yaml", "thresholds:\n  ongoing_usage_score: lots\n");
    let file = golden_dir().join("single-download.ndjson");
    let r = env.run(&["import", file.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("scoring.yaml:2:24: expected a number"), "{}", r.stderr);
    assert!(!env.path().join("oql.db").exists(), "nothing may run on a broken config");
}

#[test]
fn scarf_exports_import_with_the_export_connectors_settings() {
    let env = Env::new();
    env.write(
        "connectors/scarf.yaml",
        "name: scarf\nkind: export\nschedule: \"0 0 3 * * *\"\nformat: auto\nscarf:\n  min_confidence: 0.6\n  doc_pixels: [px-docs]\n",
    );
    let header = "id,type,package,pixel,version,time,referer,user_agent,platform,variables,origin_id,origin_latitude,origin_longitude,origin_country,origin_city,origin_postal,origin_connection_type,origin_company,origin_domain,dnt,confidence,endpoint_id,origin_state,mtc_quota_exceeded";
    let rows = [
        "s1,binary-download,oqldb,,2.0.0,2026-06-20T10:00:00Z,,curl/8,linux,,o1,1.0,2.0,US,Austin,78701,business,Acme,acme.com,false,0.9,ep1,Texas,false",
        "s1,binary-download,oqldb,,2.0.0,2026-06-20T10:00:00Z,,curl/8,linux,,o1,1.0,2.0,US,Austin,78701,business,Acme,acme.com,false,0.9,ep1,Texas,false",
        "s2,pixel-fetch,,px-docs,,2026-06-21T10:00:00Z,https://oqldb.dev/docs/start,Mozilla,linux,,o2,,,US,,,business,Acme,acme.com,false,0.9,ep2,,false",
        "s3,binary-download,oqldb,,2.0.0,2026-06-21T10:00:00Z,,curl/8,linux,,o3,,,US,,,business,Maybe,maybe.com,false,0.55,ep3,,false",
        "s4,weird-event,oqldb,,2.0.0,2026-06-21T10:00:00Z,,curl/8,linux,,o4,,,US,,,business,Acme,acme.com,false,0.9,ep4,,false",
    ];
    let file = env.write("data/scarf-events.csv", format!("{header}\n{}\n", rows.join("\n")));
    let out = env.ok(&["import", file.to_str().unwrap()]);
    assert!(out.contains("scarf-events.csv (scarf): 3 imported, 1 duplicate, 1 quarantined, 1 unattributed"), "{out}");
    assert!(out.contains("scarf-events.csv:6: unknown Scarf event type `weird-event`"), "{out}");
    let companies = env.companies_json("2026-06-30");
    assert_eq!(companies.as_array().unwrap().len(), 1);
    // a medium download (5) and a doc view (0.5; a page view of the same URL would be too)
    assert_eq!(companies[0]["domain"], "acme.com");
    assert_eq!(companies[0]["score"], 5.5);
    assert_eq!(companies[0]["views_30d"], 1);
}

/// The progress bar an import draws on a terminal: run under a pseudo-terminal 80
/// columns wide (`script`), every frame fits it, and the bar counts activities.
#[test]
fn the_progress_bar_fits_80_columns_and_counts_activities() {
    let env = Env::new();
    let long = "exports-from-the-marketing-site-and-the-docs-site-of-october-2026-with-a-long-name";
    let mut text = String::new();
    for i in 0..60_000 {
        text.push_str(&format!(
            "{{\"source\":\"web\",\"id\":\"{i}\",\"kind\":\"page_view\",\"occurred_at\":\"2026-10-{:02}T00:00:00Z\",\"company_domain\":\"c{}.com\",\"path\":\"/docs/{i}\"}}\n",
            1 + i % 28,
            i % 500
        ));
    }
    let file = env.write(&format!("{long}.ndjson"), text);
    let bin = env!("CARGO_BIN_EXE_oql-sync");
    let command = format!(
        "stty cols 80 rows 24; {bin} --config-dir {} import {}",
        env.path().display(),
        file.display()
    );
    let out = std::process::Command::new("script").args(["-qec", &command, "/dev/null"]).output().expect("script (util-linux)");
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{raw}");
    // Frames are redrawn in place: split on carriage returns and newlines, drop escapes.
    let ansi = |s: &str| {
        let mut out = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    while let Some(n) = chars.next() {
                        if n.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
                continue;
            }
            out.push(c);
        }
        out
    };
    let frames: Vec<String> = raw.split(['\r', '\n']).map(ansi).filter(|l| l.contains('[') && l.contains(']')).collect();
    assert!(!frames.is_empty(), "no progress frame drawn:\n{raw}");
    for f in &frames {
        assert!(f.chars().count() <= 80, "a frame is {} columns wide: {f:?}", f.chars().count());
    }
    assert!(frames.iter().any(|f| f.contains(" activities")), "no frame counts activities: {frames:?}");
}
