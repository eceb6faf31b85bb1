//! A watched `s3://` location against a local S3-compatible server (moto): Scarf's
//! scheduled exports imported once each by key and ETag, its connectivity file skipped,
//! its company rollups read into Scarf's stages, gzip read, and an upload still in
//! progress never read.

mod common;

use std::io::Write as _;

use common::Env;
use common::crash::scalar;
use common::moto::{Moto, put};
use object_store::path::Path as ObjectPath;

const HEADER: &str = "id,type,package,pixel,version,time,referer,user_agent,platform,variables,origin_id,origin_latitude,origin_longitude,origin_country,origin_city,origin_postal,origin_connection_type,origin_company,origin_domain,dnt,confidence,endpoint_id,origin_state,mtc_quota_exceeded\n";

fn row(id: &str, domain: &str) -> String {
    format!("{id},binary-download,pkg,,1.0.0,2026-11-20 10:00:00,,curl/8,linux,,origin-{id},1,2,DE,Berlin,10115,business,{domain},{domain},false,0.9,ep-{id},BE,false\n")
}

fn poll(env: &Env, moto: &Moto) -> common::Run {
    let vars = moto.env();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.run_with(&["poll"], &vars)
}

fn setup(prefix: &str) -> Env {
    let env = Env::new();
    env.write(
        "connectors/scarf-bucket.yaml",
        format!("name: scarf-bucket\nkind: export\nschedule: \"0 0 * * * *\"\npath: s3://scarf-exports{prefix}\n"),
    );
    env
}

fn activities(env: &Env) -> i64 {
    scalar(&env.path().join("oql.db"), "SELECT COUNT(*) FROM activities")
}

#[test]
fn scarfs_exports_in_a_bucket_are_read_once_each_by_key_and_etag() {
    let Some(moto) = Moto::start() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = rt.block_on(moto.bucket("scarf-exports"));
    let events = "events-scarf-export-2026-11-20-2026-11-20.csv";
    rt.block_on(async {
        put(&bucket, "scarf-test.csv", HEADER).await;
        // At-least-once: a row twice.
        put(&bucket, events, format!("{HEADER}{}{}{}bad,row\n", row("e1", "acme.com"), row("e2", "initech.io"), row("e2", "initech.io"))).await;
        put(
            &bucket,
            "company-rollups-scarf-export-2026-11-20-2026-11-20.csv",
            "company_name,company_domain,funnel_stage,total_events,ongoing_usage_start_date\nAcme,acme.com,ongoing-usage,2,2026-10-01\n",
        )
        .await;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"{\"source\":\"web\",\"id\":\"v1\",\"kind\":\"page_view\",\"occurred_at\":\"2026-11-21T10:00:00Z\",\"company_domain\":\"umbrella.org\"}\n").unwrap();
        put(&bucket, "site-2026-11-21.ndjson.gz", gz.finish().unwrap()).await;
        put(&bucket, "README.txt", "not an export").await;
        put(&bucket, "older/events-scarf-export-2026-01-01-2026-01-01.csv", format!("{HEADER}{}", row("deep", "acme.com"))).await;
    });
    let env = setup("");
    let r = poll(&env, &moto);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(&format!("s3://scarf-exports/{events} (scarf): 2 imported, 1 duplicate, 1 quarantined")), "{}", r.stdout);
    assert!(r.stdout.contains("Scarf company rollup: the stages of 1 companies"), "{}", r.stdout);
    assert!(r.stdout.contains("site-2026-11-21.ndjson.gz (ndjson): 1 imported"), "{}", r.stdout);
    assert!(!r.stdout.contains("scarf-test") && !r.stderr.contains("scarf-test"), "the connectivity file is skipped silently: {}", r.stdout);
    assert!(!r.stdout.contains("README") && !r.stdout.contains("older/"), "{}", r.stdout);
    assert_eq!(activities(&env), 3);
    let quarantined = "SELECT COUNT(*) FROM quarantine WHERE file = 's3://scarf-exports/events-scarf-export-2026-11-20-2026-11-20.csv'";
    assert_eq!(scalar(&env.path().join("oql.db"), quarantined), 1, "a bad row is filed under the object's URL");
    let companies = env.companies_json("2026-11-30");
    let acme = companies.as_array().unwrap().iter().find(|c| c["domain"] == "acme.com").unwrap();
    assert_eq!(acme["scarf_stage"], "ongoing_usage", "{acme}");
    assert_eq!(acme["scarf_stage_since"], "2026-10-01");

    // Nothing changed: nothing is read.
    let r = poll(&env, &moto);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("s3://"), "each object once: {}", r.stdout);

    // Written again under the same key (a new ETag): read again, old rows duplicates.
    rt.block_on(put(&bucket, events, format!("{HEADER}{}{}{}", row("e1", "acme.com"), row("e2", "initech.io"), row("e3", "acme.com"))));
    let r = poll(&env, &moto);
    assert!(r.stdout.contains(&format!("{events} (scarf): 1 imported, 2 duplicate")), "{}", r.stdout);
    assert_eq!(activities(&env), 4);
}

#[test]
fn an_upload_still_in_progress_is_never_read_and_a_broken_object_does_not_stop_the_others() {
    let Some(moto) = Moto::start() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = rt.block_on(moto.bucket("scarf-exports"));
    let events = "daily/events-scarf-export-2026-11-22-2026-11-22.csv";
    let mut upload = rt.block_on(async {
        put(&bucket, "daily/broken.csv.gz", "this is not gzip").await;
        let mut upload = bucket.put_multipart(&ObjectPath::from(events)).await.unwrap();
        upload.put_part(format!("{HEADER}{}{}", row("m1", "acme.com"), row("m2", "initech.io")).into_bytes().into()).await.unwrap();
        upload
    });
    let env = setup("/daily/");
    let r = poll(&env, &moto);
    assert_eq!(r.code, 1, "the broken object is an error: {}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("s3://scarf-exports/daily/broken.csv.gz"), "named by its key: {}", r.stdout);
    assert!(!r.stdout.contains("events-scarf-export"), "not listed before its upload completes: {}", r.stdout);
    assert_eq!(activities(&env), 0);

    rt.block_on(upload.complete()).unwrap();
    let r = poll(&env, &moto);
    assert!(r.stdout.contains("events-scarf-export-2026-11-22-2026-11-22.csv (scarf): 2 imported"), "{}", r.stdout);
    assert!(r.stdout.contains("broken.csv.gz"), "tried again: {}", r.stdout);
}

#[test]
fn a_location_that_is_not_a_bucket_is_refused_at_load() {
    let env = Env::new();
    env.write("connectors/b.yaml", "name: b\nkind: export\nschedule: \"0 0 * * * *\"\npath: az://container/p\n");
    let r = env.run(&["check"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("b.yaml:4:") && r.stderr.contains("`az://` is not a location oql-sync watches"), "{}", r.stderr);
}

#[test]
fn a_watched_folder_treats_scarfs_files_as_a_bucket_does() {
    // A bucket copied down (`aws s3 sync`) into a folder.
    let env = Env::new();
    env.write("drops/scarf-test.csv", HEADER);
    env.write("drops/events-scarf-export-2026-11-20-2026-11-20.csv", format!("{HEADER}{}", row("f1", "acme.com")));
    env.write(
        "drops/company-rollups-scarf-export-2026-11-20-2026-11-20.csv",
        "company_domain,funnel_stage,experimentation_start_date\nacme.com,experimentation,2026-11-01\n",
    );
    env.write("connectors/drops.yaml", "name: drops\nkind: export\nschedule: \"0 0 * * * *\"\npath: drops\nsettle: 0s\n");
    let r = env.run(&["poll"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("scarf-test"), "{}", r.stdout);
    assert!(r.stdout.contains("Scarf company rollup: the stages of 1 companies"), "{}", r.stdout);
    let companies = env.companies_json("2026-11-30");
    assert_eq!(companies[0]["scarf_stage"], "experimentation", "{companies}");
    let r = env.run(&["poll"]);
    assert!(!r.stdout.contains("rollup"), "read once: {}", r.stdout);
}
