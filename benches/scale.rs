//! The scale benchmark: ingest and rescore millions of activities on one small machine,
//! against the store's own scan speed and against DuckDB.
//!
//! ```sh
//! pip install duckdb        # the reference point; `--no-duckdb` skips it
//! cargo bench --bench scale -- [--activities 1000000,10000000] [--per-company 50] [--work DIR] [--no-duckdb]
//! ```
//!
//! For each N (default 1M and 10M) over N/50 companies it generates deterministic NDJSON
//! with the real binary's hidden `generate` command, then times each step as its own
//! process (so each has its own peak RSS, read from `wait4`):
//!
//! - `import`: `oql-sync import` of the N activities into a fresh store;
//! - `bare scan`: SQLite reading the columns scoring needs, nothing else (the floor);
//! - `full rescore`: `oql-sync score`;
//! - `DuckDB`: `benches/duckdb_reference.py`, the same model in SQL over the same NDJSON
//!   (its own query time; checked against the store's scores for every company);
//! - `sync --dry-run`: planning a file sink's rows for every company;
//! - `incremental rescore`: after importing 10k new activities touching 1k companies,
//!   the daemon's rescore (`app::rescore`, which the daemon runs after every poll).
//!
//! Results print as a table with the machine's core count and go to `WORK/results.md`.
//! The child modes (`--scan`, `--check`, `--rescore`) are this binary run again.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::NaiveDate;

const AS_OF: &str = "2026-10-31";
const UPDATE_ACTIVITIES: u64 = 10_000;
const UPDATE_COMPANIES: u32 = 1_000;
const SEED: u64 = 7;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    match args.first().map(String::as_str) {
        Some("--scan") => return child(|rt| scan(rt, &args[1])),
        Some("--check") => return child(|rt| check(rt, &args[1], Path::new(&args[2]))),
        Some("--rescore") => return child(|rt| rescore(rt, &args[1])),
        _ => {}
    }
    let mut sizes = vec![1_000_000u64, 10_000_000];
    let mut per_company = 50u64;
    let mut work = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-scale");
    let mut duckdb = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--activities" => sizes = it.next().expect("--activities N[,N…]").split(',').map(|n| n.replace('_', "").parse().expect("a number")).collect(),
            "--per-company" => per_company = it.next().expect("--per-company N").parse().expect("a number"),
            "--work" => work = PathBuf::from(it.next().expect("--work DIR")),
            "--no-duckdb" => duckdb = false,
            other => panic!("unknown argument {other}; see the top of benches/scale.rs"),
        }
    }
    std::fs::create_dir_all(&work).unwrap();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut report = format!(
        "oql-sync scale benchmark: {cores} cores, release build, as of {AS_OF}, {} (`cargo bench --bench scale -- --activities {}`)\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        sizes.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
    );
    for &n in &sizes {
        let companies = (n / per_company).max(1) as u32;
        let table = bench_size(&work, n, companies, duckdb);
        println!("{table}");
        report.push('\n');
        report.push_str(&table);
    }
    std::fs::write(work.join("results.md"), &report).unwrap();
    println!("written to {}", work.join("results.md").display());
}

/// One measured step: wall time and the peak RSS of its process.
struct Step {
    seconds: f64,
    rss_kib: u64,
    stdout: String,
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_oql-sync")
}

/// Runs a command to completion; its wall time and peak RSS (from `wait4`, so only that
/// process and nothing else counts).
fn measure(command: &mut Command) -> Step {
    let started = Instant::now();
    let child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    let mut status = 0;
    // SAFETY: `usage` is a plain C struct that wait4 fills; the pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4");
    let seconds = started.elapsed().as_secs_f64();
    let stdout = reader.join().unwrap();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{command:?} failed ({status}):\n{stdout}");
    Step { seconds, rss_kib: usage.ru_maxrss as u64, stdout }
}

fn oql(config: &Path, db: &Path) -> Command {
    let mut c = Command::new(binary());
    c.arg("--config-dir").arg(config).arg("--db").arg(db).env_remove("OQL_DB").env("RUST_LOG", "warn");
    c
}

fn this(mode: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.arg(mode).env("RUST_LOG", "warn");
    c
}

/// The generated data of one size, kept between runs (same arguments, same bytes).
fn data(work: &Path, n: u64, companies: u32) -> (PathBuf, PathBuf) {
    let base = work.join(format!("base-{n}-{companies}.ndjson"));
    let update = work.join(format!("update-{n}-{companies}.ndjson"));
    for (path, extra) in [(&base, None), (&update, Some(UPDATE_COMPANIES))] {
        if path.exists() {
            continue;
        }
        let partial = path.with_extension("partial");
        let mut c = Command::new(binary());
        let activities = if extra.is_some() { UPDATE_ACTIVITIES } else { n };
        c.args(["generate", "--activities", &activities.to_string(), "--companies", &companies.to_string()])
            .args(["--end", AS_OF, "--seed", &SEED.to_string(), "--out"])
            .arg(&partial);
        if let Some(k) = extra {
            c.args(["--touch", &k.to_string()]);
        }
        measure(&mut c);
        std::fs::rename(&partial, path).unwrap();
    }
    (base, update)
}

fn bench_size(work: &Path, n: u64, companies: u32, duckdb: bool) -> String {
    eprintln!("== {n} activities over {companies} companies");
    let (base, update) = data(work, n, companies);
    let config = work.join(format!("config-{n}"));
    let _ = std::fs::remove_dir_all(&config);
    std::fs::create_dir_all(config.join("connectors")).unwrap();
    std::fs::create_dir_all(config.join("mappings")).unwrap();
    std::fs::write(config.join("connectors/crm-file.yaml"), "name: crm-file\nkind: file\nschedule: \"0 */15 * * * *\"\nmapping: mappings/crm.yaml\npath: out/crm.csv\n").unwrap();
    std::fs::write(
        config.join("mappings/crm.yaml"),
        "object: companies\nmatch: { crm_field: domain }\nstages: [interest, investigation, experimentation, ongoing_usage, inactive]\n\
         fields:\n  oql_stage: { from: stage }\n  oql_score: { from: score, round: 0 }\n  oql_last_activity: { from: last_seen, format: date }\n  oql_users_90d: { from: actors_90d }\n",
    )
    .unwrap();
    let db = work.join(format!("store-{n}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let db_text = db.display().to_string();

    eprintln!("import");
    let import = measure(oql(&config, &db).arg("import").arg(&base));
    assert!(import.stdout.contains(&format!("{n} imported")), "{}", import.stdout);
    eprintln!("bare scan");
    let scan = measure(this("--scan").arg(&db_text));
    eprintln!("full rescore");
    let full = measure(oql(&config, &db).args(["score", "--as-of", AS_OF]));
    let scored: u64 = full.stdout.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("`scored N companies`");
    let reference = duckdb.then(|| {
        eprintln!("duckdb");
        let csv = work.join(format!("duckdb-{n}.csv"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/duckdb_reference.py");
        let step = measure(Command::new("python3").arg(script).arg(&base).arg(AS_OF).arg(&csv));
        let query: f64 = step.stdout.trim().strip_prefix("duckdb_seconds=").and_then(|s| s.parse().ok()).expect("duckdb_seconds=");
        eprintln!("check");
        let check = measure(this("--check").arg(&db_text).arg(&csv));
        (Step { seconds: query, ..step }, check.stdout.trim().to_owned())
    });
    eprintln!("sync --dry-run");
    let plan = measure(oql(&config, &db).args(["sync", "--dry-run", "--format", "json", "--as-of", AS_OF]));
    let planned = plan.stdout.matches("\"domain\"").count();
    eprintln!("update import");
    let update_import = measure(oql(&config, &db).arg("import").arg(&update));
    eprintln!("incremental rescore");
    let incremental = measure(this("--rescore").arg(&db_text));

    let mut t = String::new();
    let scan_s = scan.seconds;
    let mib = |s: &Step| format!("{:.0} MiB", s.rss_kib as f64 / 1024.0);
    let vs = |s: f64, base: f64| format!("{:.2}×", s / base);
    let duck_s = reference.as_ref().map(|(d, _)| d.seconds);
    let vs_duck = |s: f64| duck_s.map(|d| vs(s, d)).unwrap_or_else(|| "–".into());
    writeln!(t, "\n### {} activities, {} companies ({scored} scored)\n", thousands(n), thousands(companies as u64)).unwrap();
    writeln!(t, "| step | time | rate | peak RSS | target | vs bare scan | vs DuckDB |").unwrap();
    writeln!(t, "|---|---|---|---|---|---|---|").unwrap();
    let row = |t: &mut String, name: &str, s: &Step, rate: String, target: &str| {
        writeln!(t, "| {name} | {:.2} s | {rate} | {} | {target} | {} | {} |", s.seconds, mib(s), vs(s.seconds, scan_s), vs_duck(s.seconds)).unwrap();
    };
    row(&mut t, "import", &import, format!("{} activities/s", thousands((n as f64 / import.seconds) as u64)), "≥ 300,000/s; RSS < 1 GiB");
    row(&mut t, "bare scan (SQLite, the floor)", &scan, format!("{} rows/s", thousands((n as f64 / scan.seconds) as u64)), "–");
    row(&mut t, "full rescore (`score`)", &full, format!("{} companies/s", thousands((scored as f64 / full.seconds) as u64)), "≤ 2× bare scan, < DuckDB");
    if let Some((d, _)) = &reference {
        row(&mut t, "DuckDB (same model in SQL)", d, format!("{} activities/s", thousands((n as f64 / d.seconds) as u64)), "–");
    }
    row(&mut t, "`sync --dry-run` planning", &plan, format!("{planned} companies planned"), "RSS < 1 GiB");
    row(&mut t, "import of the update (10k)", &update_import, format!("{} activities/s", thousands((UPDATE_ACTIVITIES as f64 / update_import.seconds) as u64)), "–");
    row(&mut t, "incremental rescore", &incremental, incremental.stdout.trim().to_owned(), "< 1 s for 1k companies");
    if let Some((_, agreement)) = &reference {
        writeln!(t, "\nDuckDB agreement: {agreement}").unwrap();
    }
    t
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn as_of() -> NaiveDate {
    NaiveDate::parse_from_str(AS_OF, "%Y-%m-%d").unwrap()
}

/// The child modes: a runtime, the work, an exit code.
fn child(work: impl FnOnce(&tokio::runtime::Runtime) -> Result<String, String>) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    match work(&rt) {
        Ok(out) => println!("{out}"),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

fn open(rt: &tokio::runtime::Runtime, db: &str) -> oql_sync::store::Store {
    rt.block_on(oql_sync::store::Store::open(db)).expect("open the store")
}

fn scan(rt: &tokio::runtime::Runtime, db: &str) -> Result<String, String> {
    let store = open(rt, db);
    let started = Instant::now();
    let rows = rt.block_on(store.bare_scan(oql_sync::scoring::end_of(as_of()))).map_err(|e| e.to_string())?;
    Ok(format!("{rows} rows in {:.2} s", started.elapsed().as_secs_f64()))
}

fn rescore(rt: &tokio::runtime::Runtime, db: &str) -> Result<String, String> {
    let store = open(rt, db);
    let model = oql_sync::scoring::Model::default();
    let started = Instant::now();
    let n = rt.block_on(oql_sync::app::rescore(&store, &model, as_of())).map_err(|e| e.to_string())?;
    let took = started.elapsed();
    if n as u32 != UPDATE_COMPANIES {
        return Err(format!("rescored {n} companies, expected the {UPDATE_COMPANIES} the update touched"));
    }
    Ok(format!("{n} companies recomputed ({})", human(took)))
}

fn human(d: Duration) -> String {
    format!("{:.0} ms in process", d.as_secs_f64() * 1000.0)
}

/// Compares DuckDB's CSV with the store: the persisted scores of `score`, and the
/// engine's window counts, for every company.
fn check(rt: &tokio::runtime::Runtime, db: &str, csv: &Path) -> Result<String, String> {
    let store = open(rt, db);
    let model = oql_sync::scoring::Model::default();
    let stored = rt.block_on(store.stored_scores()).map_err(|e| e.to_string())?.ok_or("no persisted scores")?;
    let mut ours: std::collections::HashMap<String, Vec<i64>> = stored
        .scores
        .iter()
        .map(|s| {
            let row = vec![s.score, s.views_30d as i64, s.downloads_30d as i64, s.community_30d as i64, s.telemetry_30d as i64, s.events_30d as i64];
            (s.domain.clone(), row)
        })
        .collect();
    // The gate counts through the other read path: each company's activities by index.
    for (domain, row) in ours.iter_mut() {
        let acts = rt.block_on(store.company_activities(domain, oql_sync::scoring::end_of(as_of()))).map_err(|e| e.to_string())?;
        let w = oql_sync::scoring::window_totals(&acts, &model, as_of()).ok_or_else(|| format!("{domain}: no activities"))?;
        row.extend([w.views[1], w.views[2], w.usage[0], w.usage[1], w.usage[2], w.events[1], w.events[2]].map(|x| x as i64));
    }
    let text = std::fs::read_to_string(csv).map_err(|e| e.to_string())?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty CSV")?.split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("DuckDB CSV lacks {name}"));
    let order = ["score_micro", "views_30", "downloads_30", "community_30", "telemetry_30", "events_30", "views_60", "views_90", "usage_30", "usage_60", "usage_90", "events_60", "events_90"];
    let cols: Vec<usize> = order.iter().map(|n| col(n)).collect();
    let (mut agree, mut differ, mut theirs) = (0u64, Vec::new(), 0u64);
    for line in lines {
        theirs += 1;
        let cells: Vec<&str> = line.split(',').collect();
        let domain = cells[0];
        let duck: Vec<i64> = cols.iter().map(|&i| cells[i].parse::<f64>().unwrap() as i64).collect();
        match ours.remove(domain) {
            Some(row) if row == duck => agree += 1,
            Some(row) => differ.push(format!("{domain}: oql-sync {row:?}, DuckDB {duck:?}")),
            None => differ.push(format!("{domain}: only DuckDB has it")),
        }
    }
    differ.extend(ours.keys().take(5).map(|d| format!("{d}: only oql-sync has it")));
    if differ.is_empty() {
        Ok(format!("all {agree} companies agree on the exact score and on views, usage and events over 30, 60 and 90 days (and downloads, community, telemetry over 30)"))
    } else {
        Err(format!("{} of {theirs} companies differ ({agree} agree), e.g.:\n{}", differ.len(), differ[..differ.len().min(10)].join("\n")))
    }
}
