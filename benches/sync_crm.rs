//! Sync cost and throughput against the emulated CRMs at each connector's default rate
//! limit: `cargo bench --bench sync_crm [-- CRM [COMPANIES]]`, CRM one of `hubspot`,
//! `salesforce`, `common_room` or `all` (default), COMPANIES default 1,000.
//!
//! For a first sync (companies matched, then written) and for a sync where every
//! company's stage changed (ids cached), it reports API calls, API calls per 1,000
//! changed companies, and records per second, using the binary cargo builds for the bench.

#[path = "../tests/common/emulator.rs"]
mod emulator;
#[path = "../tests/common/common_room_crm.rs"]
mod common_room_crm;
#[path = "../tests/common/hubspot_crm.rs"]
mod hubspot_crm;
#[path = "../tests/common/salesforce_crm.rs"]
mod salesforce_crm;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// An emulated CRM seeded with `n` companies, and the config that syncs to it.
struct Target {
    name: &'static str,
    connector: String,
    mapping: &'static str,
    env: Vec<(&'static str, String)>,
    files: Vec<(&'static str, String)>,
    calls: Box<dyn Fn() -> usize>,
    clear: Box<dyn Fn()>,
}

fn hubspot(rt: &tokio::runtime::Runtime, n: usize) -> Target {
    let hs = rt.block_on(hubspot_crm::HubSpot::start());
    hs.accept_token("bench");
    hs.set_limits(100, 5);
    for i in 0..n {
        hs.add_company(&[("domain", &format!("c{i}.com"))]);
    }
    let hs = std::rc::Rc::new(hs);
    let (a, b) = (hs.clone(), hs.clone());
    Target {
        name: "hubspot",
        connector: format!("kind: hubspot\nbase_url: {}\ntoken_env: BENCH_TOKEN\n", hs.url),
        mapping: "object: companies\nmatch: { crm_field: domain }\nfields:\n  oql_stage: { from: stage }\n  oql_score: { from: score, round: 0 }\n  oql_last_activity: { from: last_seen }\n",
        env: vec![("BENCH_TOKEN", "bench".into())],
        files: Vec::new(),
        calls: Box::new(move || a.requests().len()),
        clear: Box::new(move || b.clear_requests()),
    }
}

fn salesforce(rt: &tokio::runtime::Runtime, n: usize) -> Target {
    let sf = rt.block_on(salesforce_crm::Salesforce::start());
    let (private, public) = salesforce_crm::test_keypair();
    sf.jwt_app("bench-app", "bench@example.com", &public);
    for f in ["OQL_Stage__c", "OQL_Last_Activity__c"] {
        sf.define_field(f, "string");
    }
    sf.define_field("OQL_Score__c", "double");
    for i in 0..n {
        sf.add_account(&[("Website", &format!("https://www.c{i}.com"))]);
    }
    let sf = std::rc::Rc::new(sf);
    let (a, b) = (sf.clone(), sf.clone());
    Target {
        name: "salesforce",
        connector: format!(
            "kind: salesforce\nauth:\n  flow: jwt_bearer\n  login_url: {}\n  client_id: bench-app\n  username: bench@example.com\n  private_key_file: bench.key\n",
            sf.url
        ),
        mapping: "object: Account\nmatch: { crm_field: Website }\nfields:\n  OQL_Stage__c: { from: stage }\n  OQL_Score__c: { from: score, round: 0 }\n  OQL_Last_Activity__c: { from: last_seen }\n",
        env: Vec::new(),
        files: vec![("bench.key", private)],
        calls: Box::new(move || a.requests().iter().filter(|r| r.path.starts_with("/services/data/")).count()),
        clear: Box::new(move || b.clear_requests()),
    }
}

fn common_room(rt: &tokio::runtime::Runtime, _n: usize) -> Target {
    let cr = rt.block_on(common_room_crm::CommonRoom::start());
    cr.accept_token("bench");
    cr.add_source(1);
    cr.add_custom_field(1, "OQL Stage", "string", &[]);
    cr.add_custom_field(2, "OQL Score", "number", &[]);
    cr.add_custom_field(3, "OQL Last Activity", "date", &[]);
    let cr = std::rc::Rc::new(cr);
    let (a, b) = (cr.clone(), cr.clone());
    Target {
        name: "common_room",
        connector: format!("kind: common_room\nbase_url: {}\ntoken_env: BENCH_TOKEN\ndestination_source_id: 1\n", cr.url),
        mapping: "object: contacts\nmatch: { crm_field: companyDomain }\nfields:\n  OQL Stage: { from: stage }\n  OQL Score: { from: score, round: 0 }\n  OQL Last Activity: { from: last_seen }\n",
        env: vec![("BENCH_TOKEN", "bench".into())],
        files: Vec::new(),
        calls: Box::new(move || a.requests().len()),
        clear: Box::new(move || b.clear_requests()),
    }
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let which = args.next().unwrap_or_else(|| "all".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    // The binary cargo built for this bench (optimized, like a release build).
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_oql-sync"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    println!(
        "CRM sync, {n} companies, each connector's default rate limit, {} cores",
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    println!("{:<12} {:<28} {:>7} {:>9} {:>17} {:>10}", "crm", "step", "calls", "seconds", "calls/1k changed", "records/s");
    let makers: Vec<(&str, fn(&tokio::runtime::Runtime, usize) -> Target)> =
        vec![("hubspot", hubspot), ("salesforce", salesforce), ("common_room", common_room)];
    for (name, make) in makers {
        if which != "all" && which != name {
            continue;
        }
        let t = make(&rt, n);
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write("connectors/crm.yaml", &format!("name: crm\nschedule: \"0 */15 * * * *\"\nmapping: mappings/crm.yaml\n{}", t.connector));
        write("mappings/crm.yaml", t.mapping);
        for (f, text) in &t.files {
            write(f, text);
        }
        let data: String = (0..n)
            .map(|i| format!("{{\"source\":\"b\",\"id\":\"{i}\",\"kind\":\"download\",\"occurred_at\":\"2026-09-15T10:00:00Z\",\"company_domain\":\"c{i}.com\",\"version\":\"1.0\"}}\n"))
            .collect();
        write("data.ndjson", &data);
        let run = |args: &[&str]| {
            let out = Command::new(&bin)
                .arg("--config-dir")
                .arg(dir.path())
                .args(args)
                .envs(t.env.iter().map(|(k, v)| (*k, v.as_str())))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
            text
        };
        run(&["import", dir.path().join("data.ndjson").to_str().unwrap()]);
        for (step, as_of) in [("first sync (match + write)", "2026-10-30"), ("stage change (ids cached)", "2026-11-20")] {
            (t.clear)();
            let started = Instant::now();
            let out = run(&["sync", "--as-of", as_of]);
            let secs = started.elapsed().as_secs_f64();
            assert!(out.contains(&format!("{n} accepted")), "{out}");
            let calls = (t.calls)();
            println!(
                "{:<12} {step:<28} {calls:>7} {secs:>9.2} {:>17.1} {:>10.0}",
                t.name,
                calls as f64 * 1000.0 / n as f64,
                n as f64 / secs
            );
        }
    }
}
