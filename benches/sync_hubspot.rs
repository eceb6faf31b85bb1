//! Sync throughput against the HubSpot emulator at the default rate limits:
//! `cargo bench --bench sync_hubspot [-- COMPANIES]` (default 1,000).
//!
//! Reports API calls per 1,000 changed companies and records per second for a first
//! sync (companies matched by search, then written) and for a sync of changed stages
//! (ids cached, writes only). The binary is the release build of this crate.

#[path = "../tests/common/hubspot_crm.rs"]
mod hubspot_crm;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

const TOKEN: &str = "bench-token";

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1000);
    let status = Command::new("cargo").args(["build", "--release", "--quiet"]).status().expect("cargo runs");
    assert!(status.success());
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/oql-sync");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let hs = rt.block_on(hubspot_crm::HubSpot::start());
    hs.accept_token(TOKEN);
    hs.set_limits(100, 5);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "connectors/hubspot.yaml",
        format!("name: hubspot\nkind: hubspot\nschedule: \"0 */15 * * * *\"\nbase_url: {}\ntoken_env: BENCH_TOKEN\nmapping: mappings/hubspot.yaml\n", hs.url),
    );
    write(
        "mappings/hubspot.yaml",
        "object: companies\nmatch: { crm_field: domain }\nfields:\n  oql_stage: { from: stage }\n  oql_score: { from: score, round: 0 }\n  oql_last_activity: { from: last_seen }\n".into(),
    );
    let mut data = String::new();
    for i in 0..n {
        hs.add_company(&[("domain", &format!("c{i}.com"))]);
        data.push_str(&format!(
            "{{\"source\":\"b\",\"id\":\"{i}\",\"kind\":\"download\",\"occurred_at\":\"2026-09-15T10:00:00Z\",\"company_domain\":\"c{i}.com\",\"version\":\"1.0\"}}\n"
        ));
    }
    write("data.ndjson", data);
    let run = |args: &[&str]| {
        let out = Command::new(&bin).arg("--config-dir").arg(dir.path()).args(args).env("BENCH_TOKEN", TOKEN).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["import", dir.path().join("data.ndjson").to_str().unwrap()]);

    println!("HubSpot sync, {n} companies, default limits (100 requests/10 s, 4 searches/s), {} cores", std::thread::available_parallelism().map_or(1, |p| p.get()));
    println!("{:<28} {:>8} {:>10} {:>16} {:>10}", "step", "calls", "seconds", "calls/1k changed", "records/s");
    for (step, as_of) in [("first sync (search + write)", "2026-10-30"), ("stage change (writes only)", "2026-11-20")] {
        hs.clear_requests();
        let started = Instant::now();
        run(&["sync", "--as-of", as_of]);
        let secs = started.elapsed().as_secs_f64();
        let calls = hs.requests().len();
        println!(
            "{step:<28} {calls:>8} {secs:>10.2} {:>16.1} {:>10.0}",
            calls as f64 * 1000.0 / n as f64,
            n as f64 / secs
        );
        assert_eq!(hs.rate_limited_count(), 0);
    }
}
