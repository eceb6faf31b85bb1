//! The console benchmark: how long each page of the web console takes at 20,000 and
//! 200,000 companies, against the real daemon.
//!
//! ```sh
//! cargo bench --bench console -- [--companies 20000,200000] [--per-company 10] [--work DIR]
//! ```
//!
//! For each size it generates deterministic activities with the binary's hidden
//! `generate` command (N companies, `--per-company` activities each, plus the
//! generator's unattributed noise), imports and scores them, runs a file sink's sync so
//! the sync log holds a record per pushed company, then starts `oql-sync run` and asks
//! each page 1 + 20 times over HTTP: the first answer (which reads the scores into
//! memory for the list pages) is reported apart from the median and the worst of the
//! next 20. A size's store is kept in the work dir and reused by the next run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const AS_OF: &str = "2026-10-31";
const REPEATS: usize = 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mut sizes = vec![20_000u32, 200_000];
    let mut per_company = 10u64;
    let mut work = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-console");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--companies" => sizes = it.next().expect("--companies N[,N…]").split(',').map(|n| n.replace('_', "").parse().expect("a number")).collect(),
            "--per-company" => per_company = it.next().expect("--per-company N").parse().expect("a number"),
            "--work" => work = PathBuf::from(it.next().expect("--work DIR")),
            other => panic!("unknown argument {other}; see the top of benches/console.rs"),
        }
    }
    let mut report = format!(
        "oql-sync console benchmark: {} cores, release build, as of {AS_OF}, {} (`cargo bench --bench console -- --companies {}`)\n\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        chrono::Utc::now().format("%Y-%m-%d"),
        sizes.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    );
    let mut tables = Vec::new();
    for &n in &sizes {
        let dir = work.join(format!("{n}"));
        prepare(&dir, n, n as u64 * per_company);
        tables.push((n, time_pages(&dir)));
    }
    report.push_str("| page |");
    for (n, _) in &tables {
        report.push_str(&format!(" {n} companies: first | median | worst |"));
    }
    report.push_str("\n|---|");
    for _ in &tables {
        report.push_str("---:|---:|---:|");
    }
    report.push('\n');
    for (i, (page, _)) in tables[0].1.iter().enumerate() {
        report.push_str(&format!("| `{page}` |"));
        for (_, rows) in &tables {
            let (_, (first, median, worst)) = &rows[i];
            report.push_str(&format!(" {first:.1} ms | {median:.1} ms | {worst:.1} ms |"));
        }
        report.push('\n');
    }
    println!("{report}");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("results.md"), &report).unwrap();
    println!("written to {}", work.join("results.md").display());
}

fn bin() -> PathBuf {
    // The release binary cargo built for this bench.
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("oql-sync")
}

fn oql(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(bin()).arg("--config-dir").arg(dir).args(args).env_remove("OQL_DB").output().unwrap();
    // `sync` exits 1 when a record failed; the bench only needs the log filled.
    if !out.status.success() && args[0] != "sync" {
        panic!("oql-sync {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A config dir with a file sink and a store of `companies` companies, scored and synced.
fn prepare(dir: &Path, companies: u32, activities: u64) {
    if dir.join("ready").exists() {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("connectors")).unwrap();
    std::fs::create_dir_all(dir.join("mappings")).unwrap();
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    std::fs::copy(quickstart.join("mappings/crm.yaml"), dir.join("mappings/crm.yaml")).unwrap();
    std::fs::write(dir.join("connectors/crm-file.yaml"), "name: crm-file\nkind: file\nschedule: \"0 0 3 1 1 *\"\nmapping: mappings/crm.yaml\npath: out/crm.csv\n").unwrap();
    let data = dir.join("activities.ndjson");
    let started = Instant::now();
    oql(dir, &["generate", "--activities", &activities.to_string(), "--companies", &companies.to_string(), "--end", AS_OF, "--out", data.to_str().unwrap()]);
    oql(dir, &["import", data.to_str().unwrap()]);
    oql(dir, &["score", "--as-of", AS_OF]);
    oql(dir, &["sync", "--as-of", AS_OF]);
    std::fs::remove_file(&data).unwrap();
    std::fs::write(dir.join("ready"), "").unwrap();
    eprintln!("prepared {companies} companies ({activities} activities) in {:.0}s", started.elapsed().as_secs_f64());
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Each page: (path, (first, median, worst) in milliseconds).
fn time_pages(dir: &Path) -> Vec<(String, (f64, f64, f64))> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(bin())
        .arg("--config-dir")
        .arg(dir)
        .args(["run", "--as-of", AS_OF, "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("OQL_DB")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _daemon = Daemon(child);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let get = |path: &str| -> (u16, String, f64) {
        rt.block_on(async {
            let started = Instant::now();
            let r = http.get(format!("{base}{path}")).send().await.unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            (status, body, started.elapsed().as_secs_f64() * 1000.0)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let ready = rt.block_on(async { http.get(format!("{base}/readyz")).send().await.map(|r| r.status().as_u16()).ok() });
        if ready == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "the daemon did not get ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    let time = |p: &str| {
        let (status, _, first) = get(p);
        assert_eq!(status, 200, "{p}");
        let mut times: Vec<f64> = (0..REPEATS).map(|_| get(p).2).collect();
        times.sort_by(f64::total_cmp);
        let label = if p.starts_with("/companies/") { "/companies/{domain}".to_owned() } else { p.to_owned() };
        (label, (first, times[REPEATS / 2], times[REPEATS - 1]))
    };
    // The funnel first: its first answer reads the scores into memory.
    let mut out = vec![time("/")];
    // A company from the middle of the list.
    let list = get("/companies?sort=domain&page=3").1;
    let domain = list.split("href=\"/companies/").nth(1).and_then(|s| s.split('"').next()).expect("a company link").to_owned();
    for p in [
        "/companies".to_owned(),
        "/companies?q=data&stage=investigation&sort=last_seen&page=2".into(),
        "/companies?sort=domain&dir=desc&page=40".into(),
        format!("/companies/{domain}"),
        "/sync".into(),
        "/sources".into(),
    ] {
        out.push(time(&p));
    }
    out
}
