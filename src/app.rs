//! Runs one CLI command: load and validate the config first (nothing runs on a broken
//! config), open the store, bring attribution up to date, then do the command's work.

use std::io::Write;

use crate::cli::{Cli, Command, OutputFormat, PlanFormat};
use crate::config::{Config, ConfigError, Connector, ConnectorKind};
use crate::cycle::{CycleError, Ran, current_scores, poll_and_record, score_and_persist, sync_leased, today};
use crate::import::{FileSummary, ImportError, file_summary, import_file};
use crate::scoring::{day_number, end_of};
use crate::sinks::report;
use crate::sinks::sync::SyncOptions;
use crate::sources::export::ExportOptions;
use crate::store::{LogFilter, Store, StoreError};
use crate::output;

// Kept here for the tests and benches that score through the CLI's layer.
pub use crate::cycle::{compute_scores, rescore};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Cycle(#[from] CycleError),
    #[error("{0}")]
    Failed(String),
    /// Another process holds what this command needs (the store's daemon lease).
    #[error("{0}")]
    Conflict(String),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl AppError {
    /// Exit codes of the CLI contract: 2 for usage and config errors, 1 at run time.
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Config(_) | AppError::Usage(_) | AppError::Conflict(_) => 2,
            _ => 1,
        }
    }
}

pub async fn run(cli: Cli) -> Result<(), AppError> {
    if let Command::Generate { activities, companies, end, seed, touch, out } = &cli.command {
        let write = |w: &mut dyn std::io::Write| -> std::io::Result<()> {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, w);
            match touch {
                Some(touched) => crate::generate::generate_update(&mut w, *activities, *touched, *companies, *end, *seed)?,
                None => crate::generate::generate(&mut w, *activities, *companies, *end, *seed)?,
            };
            w.flush()
        };
        return if out.as_os_str() == "-" {
            write(&mut std::io::stdout().lock()).map_err(AppError::Output)
        } else {
            write(&mut std::fs::File::create(out)?).map_err(AppError::Output)
        };
    }
    match &cli.command {
        Command::Completions { shell } => {
            crate::cli::write_completions(*shell, &mut std::io::stdout().lock());
            return Ok(());
        }
        Command::Man => return crate::cli::write_man_page(&mut std::io::stdout().lock()).map_err(AppError::Output),
        Command::Schema { file } => {
            let text = serde_json::to_string_pretty(&crate::schema::schema(*file)).unwrap_or_default();
            return writeln!(std::io::stdout().lock(), "{text}").map_err(AppError::Output);
        }
        _ => {}
    }
    if let Command::Health { listen } = &cli.command {
        return crate::health::probe(listen).await.map(|line| println!("{line}")).map_err(AppError::Failed);
    }
    if let Command::Init { dir, state_dir } = &cli.command {
        let dir = dir.as_deref().unwrap_or(&cli.config_dir);
        let report = crate::init::write_starter(dir, state_dir.as_deref())?;
        print!("{}", report.render());
        return Ok(());
    }
    let config = Config::load(&cli.config_dir)?;
    let db = Db::of(&cli);
    let mut opened = None;
    let result = dispatch(cli.command, &config, &db, &mut opened).await;
    // A clean exit leaves the store in its file, not in its WAL.
    if let Some(store) = opened {
        store.shutdown().await;
    }
    result
}

/// Where the store is, and who said so (errors name it: the fix is made there).
struct Db {
    url: String,
    origin: &'static str,
}

impl Db {
    fn of(cli: &Cli) -> Db {
        match &cli.db {
            Some(url) => {
                let flag = std::env::args().any(|a| a == "--db" || a.starts_with("--db="));
                Db { url: url.clone(), origin: if flag { "set by --db" } else { "set by OQL_DB" } }
            }
            None => Db { url: cli.config_dir.join("oql.db").display().to_string(), origin: "the default: oql.db in the config dir" },
        }
    }

    /// Opens the store for a command that writes, bringing attribution up to date.
    async fn open(&self, config: &Config, opened: &mut Option<Store>) -> Result<Store, AppError> {
        let store = Store::open(&self.url).await.map_err(|e| e.with_origin(self.origin))?;
        *opened = Some(store.clone());
        crate::cycle::apply_attribution(&store, config).await?;
        Ok(store)
    }

    /// Opens the store for a command that only reads; a read-only store will do.
    async fn open_for_reading(&self, config: Option<&Config>, opened: &mut Option<Store>) -> Result<Store, AppError> {
        let store = Store::open_for_reading(&self.url).await.map_err(|e| e.with_origin(self.origin))?;
        *opened = Some(store.clone());
        if let Some(config) = config {
            if store.is_read_only() {
                if store.attribution_changed(&config.attribution).await? {
                    crate::logging::warning("the attribution rules changed, and the store is read-only here: companies are shown as last attributed");
                }
            } else {
                crate::cycle::apply_attribution(&store, config).await?;
            }
        }
        Ok(store)
    }

    /// Opens the store as it is: nothing created, upgraded or written.
    async fn inspect(&self, opened: &mut Option<Store>) -> Result<Store, AppError> {
        let store = Store::inspect(&self.url).await.map_err(|e| e.with_origin(self.origin))?;
        *opened = Some(store.clone());
        Ok(store)
    }
}

async fn dispatch(command: Command, config: &Config, db: &Db, opened: &mut Option<Store>) -> Result<(), AppError> {
    match command {
        Command::Import { files, connector } => {
            let options = export_options(config, connector.as_deref())?;
            let store = db.open(config, opened).await?;
            import(&store, config, &files, &options).await
        }
        Command::Score { as_of } => {
            let store = db.open(config, opened).await?;
            let as_of = as_of.unwrap_or_else(today);
            let scores = score_and_persist(&store, &config.model, as_of).await?;
            println!("scored {}", output::stage_summary(&scores, as_of));
            Ok(())
        }
        Command::Companies { as_of, stage, format, limit, wide } => {
            let store = db.open_for_reading(Some(config), opened).await?;
            let (as_of, mut scores) = current_scores(&store, &config.model, as_of).await?;
            let total = scores.len();
            if let Some(stage) = stage {
                scores.retain(|s| s.stage == stage);
            }
            let text = match format {
                // Tools get what they asked for: `--limit` cuts, nothing else is said.
                OutputFormat::Json => output::json(&scores[..limit.map_or(scores.len(), |l| l.min(scores.len()))]),
                OutputFormat::Csv => output::csv(&scores[..limit.map_or(scores.len(), |l| l.min(scores.len()))]),
                OutputFormat::Table => output::table(&scores, as_of, &output::Listing { stage, total, limit, wide }),
            };
            std::io::stdout().lock().write_all(text.as_bytes())?;
            Ok(())
        }
        Command::Init { .. } | Command::Generate { .. } | Command::Health { .. } | Command::Completions { .. } | Command::Man | Command::Schema { .. } => Ok(()),
        Command::Explain { domain, as_of, format } => {
            let store = db.open_for_reading(Some(config), opened).await?;
            let as_of = as_of.unwrap_or_else(today);
            let domain = crate::activity::normalize_domain(&domain).ok_or_else(|| AppError::Usage(format!("`{domain}` is not a domain")))?;
            let until = end_of(as_of);
            let acts = store.company_activities(&domain, until).await?;
            let mut explanation = crate::scoring::explain::explain(&domain, &acts, &config.model, as_of)
                .ok_or_else(|| AppError::Failed(format!("{domain} has no attributed activity on or before {as_of}")))?;
            crate::cycle::join_scarf_stages(&store, std::slice::from_mut(&mut explanation.score)).await?;
            let text = match format {
                PlanFormat::Table => crate::scoring::explain::render(&explanation, as_of),
                PlanFormat::Json => serde_json::to_string_pretty(&explanation).unwrap_or_default() + "\n",
            };
            std::io::stdout().lock().write_all(text.as_bytes())?;
            Ok(())
        }
        Command::Check { live } => {
            for w in &config.warnings {
                crate::logging::warning(w);
            }
            if let Some(e) = crate::config::ConfigError::from_list(crate::preflight::missing_secrets(config)) {
                return Err(e.into());
            }
            print!("{}", crate::init::check_report(config, chrono::Utc::now()));
            if live {
                let verdicts = crate::live_check::check_all(config).await;
                print!("{}", crate::live_check::render(&verdicts));
                if verdicts.iter().any(|v| v.outcome.is_err()) {
                    return Err(AppError::Usage("the live check found connectors that need a fix (above)".into()));
                }
            }
            Ok(())
        }
        Command::Run { once, as_of, listen, unready_after, console_token_env } => {
            // SIGHUP's default action ends the process. The daemon answers it once its
            // schedules run; until then (opening, migrating a large store) it is taken
            // and ignored: tokio keeps the handler installed for the process's life.
            #[cfg(unix)]
            if !once {
                let _ = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
            }
            // A secret missing now would fail every run of its connector while the
            // health endpoint says ok: refuse to start instead.
            if let Some(e) = crate::config::ConfigError::from_list(crate::preflight::missing_secrets(config)) {
                return Err(e.into());
            }
            for w in &config.warnings {
                tracing::warn!("{w}");
            }
            let listen = crate::health::parse_listen(&listen).map_err(AppError::Usage)?;
            let console_token = match &console_token_env {
                None => None,
                Some(var) => match std::env::var(var) {
                    // Short tokens fall to guessing, even at one login a half second.
                    Ok(t) if t.trim().len() >= 16 => {
                        crate::redaction::register(t.trim());
                        Some(t.trim().to_owned())
                    }
                    Ok(_) => return Err(AppError::Usage(format!("--console-token-env {var}: the token in {var} is shorter than 16 characters; use a long random one (e.g. `openssl rand -hex 32`)"))),
                    Err(_) => return Err(AppError::Usage(format!("--console-token-env {var}: {var} is not set (or not UTF-8)"))),
                },
            };
            let store = db.open(config, opened).await?;
            // One daemon a store: two would race each other's schedules all day.
            let lease = store.take_lease("run").await?.map_err(|held| {
                AppError::Conflict(format!(
                    "another `oql-sync run` is using this store: pid {} on host {} since {}; stop it first (for a one-off run use `oql-sync poll` or `oql-sync sync`)",
                    held.pid, held.host, held.since
                ))
            })?;
            let result = if once {
                match crate::cycle::run_once(&store, config, as_of).await {
                    Ok((text, ok)) => {
                        print!("{text}");
                        if ok { Ok(()) } else { Err(AppError::Failed("some connectors failed (see `oql-sync log --status failed`)".into())) }
                    }
                    Err(e) => Err(e.into()),
                }
            } else {
                crate::logging::daemon_start(config, &db.url);
                crate::daemon::run_daemon(store, std::sync::Arc::new(config.clone()), listen, as_of, unready_after, console_token).await.map_err(AppError::from)
            };
            lease.release().await;
            result
        }
        Command::Poll { connector } => {
            let sources = source_connectors(config, connector.as_deref())?;
            let store = db.open(config, opened).await?;
            let mut failed = Vec::new();
            for c in sources {
                let (line, ok) = poll_and_record(&store, config, c).await?;
                print!("{line}");
                if !ok {
                    failed.push(c.name.clone());
                }
            }
            if failed.is_empty() {
                Ok(())
            } else {
                Err(AppError::Failed(format!("poll had errors in {} (see `oql-sync log --status failed`)", failed.join(", "))))
            }
        }
        Command::Sync { connector, dry_run, live, retry_dead, reconcile, domains, as_of, format, wide } => {
            let sinks = sink_connectors(config, connector.as_deref())?;
            let store = db.open(config, opened).await?;
            let domains = if domains.is_empty() { None } else { Some(std::sync::Arc::new(known_domains(&store, &domains).await?)) };
            let options = SyncOptions { dry_run, live, retry_dead, reconcile, domains };
            let mut reports = Vec::new();
            for c in sinks {
                match sync_leased(&store, config, c, as_of, options.clone()).await? {
                    Ran::Done(report) => {
                        if !dry_run {
                            print!("{}", report::summary(&report));
                        }
                        reports.push(report);
                    }
                    Ran::Skipped(held) => print!("{}", crate::cycle::skipped_line(&c.name, &held)),
                }
            }
            if dry_run {
                let text = match format {
                    PlanFormat::Table => report::plan_table(&reports, wide),
                    PlanFormat::Json => report::plan_json(&reports),
                };
                std::io::stdout().lock().write_all(text.as_bytes())?;
            }
            let failed: Vec<&str> = reports.iter().filter(|r| !crate::cycle::succeeded(r)).map(|r| r.connector.as_str()).collect();
            if failed.is_empty() {
                Ok(())
            } else {
                Err(AppError::Failed(format!(
                    "sync failed for {} (see `oql-sync log --status failed`)",
                    failed.join(", ")
                )))
            }
        }
        Command::Log { connector, status, since, limit, format, wide } => {
            let store = db.open_for_reading(None, opened).await?;
            let filter = LogFilter {
                connector,
                status,
                since: since.map(|d| (day_number(d) as i64) * 86_400 * 1_000_000_000),
                limit,
            };
            let runs_only_filter = filter.status.as_deref().is_none_or(|s| matches!(s, "ok" | "failed" | "paused" | "running" | "skipped"));
            let runs = if runs_only_filter { store.sync_runs(&filter).await? } else { Vec::new() };
            let records = store.sync_records(&filter).await?;
            let text = match format {
                PlanFormat::Table => report::log_table(&runs, &records, wide),
                PlanFormat::Json => report::log_json(&runs, &records),
            };
            // A log written before secrets were redacted is shown without them.
            std::io::stdout().lock().write_all(crate::redaction::redact(&text).as_bytes())?;
            Ok(())
        }
        Command::Backup { file } => {
            if file.exists() {
                return Err(AppError::Usage(format!("{} exists; a backup writes a new file (move the old one away, or name another)", file.display())));
            }
            let store = db.inspect(opened).await?;
            // Created here (SQLite writes into an empty file) so that a folder that is
            // missing or not writable is said in those words.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&file)
                .map_err(|e| AppError::Failed(format!("cannot write the backup {}: {e}", file.display())))?;
            if let Err(e) = store.backup(&file).await {
                let _ = std::fs::remove_file(&file);
                return Err(e.into());
            }
            let size = std::fs::metadata(&file).map_or(0, |m| m.len());
            println!(
                "wrote a backup of the store to {} ({:.1} MiB); to restore it, stop oql-sync and copy it over the store's file",
                file.display(),
                size as f64 / (1024.0 * 1024.0)
            );
            Ok(())
        }
        Command::Doctor => {
            let store = db.inspect(opened).await?;
            let location = crate::store::file_of(&db.url);
            let checkup = match store.checkup(location.as_deref()).await {
                Ok(c) => c,
                // Too damaged to read its schema: that is the finding.
                Err(e) => {
                    println!("store: {}\nunhealthy: {e}", db.url);
                    return Err(AppError::Failed("the store is unhealthy (see above)".into()));
                }
            };
            print!("{}", checkup.render(&location.map_or(db.url.clone(), |p| p.display().to_string())));
            if checkup.faults().is_empty() {
                Ok(())
            } else {
                Err(AppError::Failed("the store is unhealthy (see above)".into()))
            }
        }
    }
}

/// The source connectors a poll runs: the named one, or all that poll (GitHub, export
/// connectors with a `path`).
pub fn source_connectors<'c>(config: &'c Config, name: Option<&str>) -> Result<Vec<&'c Connector>, AppError> {
    let polls = |c: &&Connector| match &c.kind {
        ConnectorKind::GitHub(_) | ConnectorKind::Slack(_) | ConnectorKind::Scarf(_) => true,
        ConnectorKind::Export(e) => e.path.is_some(),
        _ => false,
    };
    let sources: Vec<&Connector> = config.connectors.iter().filter(polls).collect();
    match name {
        Some(name) => sources.iter().find(|c| c.name == name).map(|c| vec![*c]).ok_or_else(|| {
            let known: Vec<&str> = sources.iter().map(|c| c.name.as_str()).collect();
            AppError::Usage(format!(
                "--connector {name}: no source connector of that name that polls (known: {})",
                if known.is_empty() { "none".into() } else { known.join(", ") }
            ))
        }),
        None if sources.is_empty() => Err(AppError::Usage(format!(
            "no source connectors to poll (kind github or slack, or export with a `path`) in {}",
            config.dir.join("connectors").display()
        ))),
        None => Ok(sources),
    }
}

/// The sink connectors a sync runs: the named one, or all.
pub fn sink_connectors<'c>(config: &'c Config, name: Option<&str>) -> Result<Vec<&'c Connector>, AppError> {
    let sinks: Vec<&Connector> = config.connectors.iter().filter(|c| c.is_sink()).collect();
    let known = || {
        let names: Vec<&str> = sinks.iter().map(|c| c.name.as_str()).collect();
        if names.is_empty() { "none".to_string() } else { names.join(", ") }
    };
    match name {
        Some(name) => match sinks.iter().find(|c| c.name == name) {
            Some(c) => Ok(vec![*c]),
            None => Err(AppError::Usage(format!(
                "--connector {name}: no sink connector of that name in {} (known sinks: {})",
                config.dir.join("connectors").display(),
                known()
            ))),
        },
        None if sinks.is_empty() => Err(AppError::Usage(format!(
            "no sink connectors (kind hubspot, webhook or file) in {}",
            config.dir.join("connectors").display()
        ))),
        None => Ok(sinks),
    }
}

/// The settings `import` reads files with: those of the named export connector, or of
/// the only export connector when there is exactly one, else the defaults.
fn export_options(config: &Config, name: Option<&str>) -> Result<ExportOptions, AppError> {
    let exports: Vec<_> = config.export_connectors().collect();
    let chosen = match name {
        Some(name) => Some(exports.iter().find(|(c, _)| c.name == name).ok_or_else(|| {
            let known: Vec<&str> = exports.iter().map(|(c, _)| c.name.as_str()).collect();
            AppError::Usage(format!(
                "--connector {name}: no export connector of that name in {} (known: {})",
                config.dir.join("connectors").display(),
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        })?),
        None if exports.len() == 1 => exports.first(),
        None => None,
    };
    Ok(chosen
        .map(|(_, e)| ExportOptions {
            format: e.format,
            source: e.source.clone(),
            scarf: e.scarf.clone(),
        })
        .unwrap_or_default())
}

async fn import(
    store: &Store,
    config: &Config,
    files: &[std::path::PathBuf],
    options: &ExportOptions,
) -> Result<(), AppError> {
    let started = std::time::Instant::now();
    // About 200 bytes a line in NDJSON, CSV and Scarf exports alike.
    let bytes: u64 = files.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    let bulk = store.bulk_load(bytes / 200).await?;
    let mut summaries: Vec<FileSummary> = Vec::new();
    let mut failure = None;
    for path in files {
        match import_file(store, path, options, &config.attribution).await {
            Ok(s) => summaries.push(s),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let rebuilt = bulk.rebuilds_index();
    let ended = bulk.finish().await;
    if let Some(ImportError::Store { committed, error }) = failure {
        return Err(stopped(&summaries, &committed, files, error));
    }
    ended?;
    // A store damaged where an import does not look takes its activities all the same:
    // say so now, not at the next read of the damaged pages. A bulk load's index build
    // has just read every activity (and the store is mostly this import), so a check
    // would only repeat it; elsewhere it costs about 0.5 s a million activities stored.
    let problems = if rebuilt { Vec::new() } else { store.quick_check().await? };
    if !problems.is_empty() {
        return Err(AppError::Failed(format!(
            "the activities were imported, but the store is damaged ({}); see `oql-sync doctor` and restore the last backup",
            problems.join("; ")
        )));
    }
    let elapsed = started.elapsed();
    let mut out = String::new();
    for s in &summaries {
        out.push_str(&file_summary(s));
    }
    let total = |f: fn(&FileSummary) -> u64| summaries.iter().map(f).sum::<u64>();
    let (imported, lines) = (total(|s| s.imported), total(|s| s.imported + s.duplicate + s.quarantined));
    if summaries.len() > 1 {
        out.push_str(&format!(
            "total: {imported} imported, {} duplicate, {} quarantined, {} unattributed\n",
            total(|s| s.duplicate),
            total(|s| s.quarantined),
            total(|s| s.unattributed),
        ));
    }
    let rate = lines as f64 / elapsed.as_secs_f64().max(1e-9);
    out.push_str(&format!("read {lines} lines in {:.2}s ({rate:.0} lines/s)\n", elapsed.as_secs_f64()));
    print!("{out}");
    let failed: Vec<&FileSummary> = summaries.iter().filter(|s| s.error.is_some()).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(AppError::Failed(format!(
            "{} of {} files could not be imported completely",
            failed.len(),
            summaries.len()
        )))
    }
}

/// An import the store stopped (a full disk): what is stored, and how to go on. The
/// files done are printed as usual; the cause is said once, in the error.
fn stopped(done: &[FileSummary], committed: &FileSummary, files: &[std::path::PathBuf], error: StoreError) -> AppError {
    for s in done {
        print!("{}", file_summary(s));
    }
    let stored: u64 = done.iter().map(|s| s.imported).sum::<u64>() + committed.imported;
    let rest = files.len() - done.len() - 1;
    let resume = if error.is_disk_full() { "free some space, then run" } else { "once that is fixed, run" };
    AppError::Failed(format!(
        "{error}. The import stopped in {}: {stored} activities are committed ({} of them from that file, {} complete{}); {resume} the same `oql-sync import` again: what is stored already is skipped as duplicates",
        committed.path.display(),
        committed.imported,
        if done.len() == 1 { "1 file".to_owned() } else { format!("{} files", done.len()) },
        if rest > 0 { format!(", {rest} not started") } else { String::new() },
    ))
}

/// `sync --domain`: each domain normalized, and known to the store (a typo would
/// otherwise sync nothing and say nothing).
async fn known_domains(store: &Store, given: &[String]) -> Result<std::collections::BTreeSet<String>, AppError> {
    let mut out = std::collections::BTreeSet::new();
    for d in given {
        let domain = crate::activity::normalize_domain(d).ok_or_else(|| AppError::Usage(format!("--domain `{d}` is not a domain")))?;
        if store.company_activities(&domain, i64::MAX).await?.is_empty() {
            return Err(AppError::Usage(format!("--domain {domain}: no activity of this company in the store (`oql-sync companies` lists them)")));
        }
        out.insert(domain);
    }
    Ok(out)
}
