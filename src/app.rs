//! Runs one CLI command: load and validate the config first (nothing runs on a broken
//! config), open the store, bring attribution up to date, then do the command's work.

use std::io::Write;

use chrono::{NaiveDate, Utc};
use sha2::{Digest, Sha256};

use crate::cli::{Cli, Command, OutputFormat, PlanFormat};
use crate::config::{Config, ConfigError, Connector, ConnectorKind};
use crate::sources::folder::poll_folder;
use crate::sources::github::GitHubSource;
use crate::sources::slack::SlackSource;
use crate::sinks::report;
use crate::sinks::sync::{SyncInput, SyncOptions, sync_connector};
use crate::store::{LogFilter, RunTotals};
use crate::import::{FileSummary, ImportError, import_file};
use crate::scoring::{CompanyScore, Model, ScanPart, day_number, end_of};
use crate::sources::export::ExportOptions;
use crate::store::{Store, StoreError};
use crate::output;

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
    #[error("{0}")]
    Failed(String),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl AppError {
    /// Exit codes of the CLI contract: 2 for usage and config errors, 1 at run time.
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Config(_) | AppError::Usage(_) => 2,
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
    let db = cli
        .db
        .clone()
        .unwrap_or_else(|| cli.config_dir.join("oql.db").display().to_string());
    match cli.command {
        Command::Import { files, connector } => {
            let options = export_options(&config, connector.as_deref())?;
            let store = open(&db, &config).await?;
            import(&store, &config, &files, &options).await
        }
        Command::Score { as_of } => {
            let store = open(&db, &config).await?;
            let as_of = as_of.unwrap_or_else(today);
            let scores = score_and_persist(&store, &config.model, as_of).await?;
            println!("scored {}", output::stage_summary(&scores, as_of));
            Ok(())
        }
        Command::Companies { as_of, stage, format, limit, wide } => {
            let store = open(&db, &config).await?;
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
            let store = open(&db, &config).await?;
            let as_of = as_of.unwrap_or_else(today);
            let domain = crate::activity::normalize_domain(&domain).ok_or_else(|| AppError::Usage(format!("`{domain}` is not a domain")))?;
            let until = end_of(as_of);
            let acts = store.company_activities(&domain, until).await?;
            let explanation = crate::scoring::explain::explain(&domain, &acts, &config.model, as_of)
                .ok_or_else(|| AppError::Failed(format!("{domain} has no attributed activity on or before {as_of}")))?;
            let text = match format {
                PlanFormat::Table => crate::scoring::explain::render(&explanation, as_of),
                PlanFormat::Json => serde_json::to_string_pretty(&explanation).unwrap_or_default() + "\n",
            };
            std::io::stdout().lock().write_all(text.as_bytes())?;
            Ok(())
        }
        Command::Check => {
            for w in &config.warnings {
                crate::logging::warning(w);
            }
            if let Some(e) = crate::config::ConfigError::from_list(crate::preflight::missing_secrets(&config)) {
                return Err(e.into());
            }
            print!("{}", crate::init::check_report(&config, chrono::Utc::now()));
            Ok(())
        }
        Command::Run { once, as_of, listen, unready_after } => {
            // A secret missing now would fail every run of its connector while the
            // health endpoint says ok: refuse to start instead.
            if let Some(e) = crate::config::ConfigError::from_list(crate::preflight::missing_secrets(&config)) {
                return Err(e.into());
            }
            for w in &config.warnings {
                tracing::warn!("{w}");
            }
            let listen = crate::health::parse_listen(&listen).map_err(AppError::Usage)?;
            let store = open(&db, &config).await?;
            if once {
                let (text, ok) = crate::daemon::run_once(&store, &config, as_of).await?;
                print!("{text}");
                return if ok { Ok(()) } else { Err(AppError::Failed("some connectors failed (see `oql-sync log --status failed`)".into())) };
            }
            crate::logging::daemon_start(&config, &db);
            crate::daemon::run_daemon(store, std::sync::Arc::new(config), listen, as_of, unready_after).await
        }
        Command::Poll { connector } => {
            let sources = source_connectors(&config, connector.as_deref())?;
            let store = open(&db, &config).await?;
            let mut failed = Vec::new();
            for c in sources {
                let (line, ok) = poll_and_record(&store, &config, c).await?;
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
        Command::Sync { connector, dry_run, live, retry_dead, as_of, format, wide } => {
            let sinks = sink_connectors(&config, connector.as_deref())?;
            let store = open(&db, &config).await?;
            let (as_of, scores) = current_scores(&store, &config.model, as_of).await?;
            let input = SyncInput { store: &store, config: &config, scores: &scores, as_of };
            let options = SyncOptions { dry_run, live, retry_dead };
            let mut reports = Vec::new();
            for c in sinks {
                let report = sync_connector(&input, c, options).await.map_err(|e| AppError::Failed(e.to_string()))?;
                if !dry_run {
                    print!("{}", report::summary(&report));
                }
                reports.push(report);
            }
            if dry_run {
                let text = match format {
                    PlanFormat::Table => report::plan_table(&reports, wide),
                    PlanFormat::Json => report::plan_json(&reports),
                };
                std::io::stdout().lock().write_all(text.as_bytes())?;
            }
            let failed: Vec<&str> = reports
                .iter()
                .filter(|r| r.error.is_some() || r.totals.failed > 0 || r.triggers_failed > 0)
                .map(|r| r.connector.as_str())
                .collect();
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
            let store = Store::open(&db).await?;
            let filter = LogFilter {
                connector,
                status,
                since: since.map(|d| (day_number(d) as i64) * 86_400 * 1_000_000_000),
                limit,
            };
            let runs_only_filter = filter.status.as_deref().is_none_or(|s| matches!(s, "ok" | "failed" | "paused" | "running"));
            let runs = if runs_only_filter { store.sync_runs(&filter).await? } else { Vec::new() };
            let records = store.sync_records(&filter).await?;
            let text = match format {
                PlanFormat::Table => report::log_table(&runs, &records, wide),
                PlanFormat::Json => report::log_json(&runs, &records),
            };
            std::io::stdout().lock().write_all(text.as_bytes())?;
            Ok(())
        }
    }
}

/// The source connectors a poll runs: the named one, or all that poll (GitHub, export
/// connectors with a `path`).
pub fn source_connectors<'c>(config: &'c Config, name: Option<&str>) -> Result<Vec<&'c Connector>, AppError> {
    let polls = |c: &&Connector| match &c.kind {
        ConnectorKind::GitHub(_) | ConnectorKind::Slack(_) => true,
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

/// Recomputes every score at `as_of` and persists them.
pub async fn score_and_persist(store: &Store, model: &Model, as_of: NaiveDate) -> Result<Vec<CompanyScore>, AppError> {
    // The inputs are read first: a change landing while scores are computed moves the
    // data version past them, so the next rescore sees it.
    let inputs = score_inputs(store, model).await?;
    let scores = compute_scores(store, model, as_of).await?;
    store.replace_scores(as_of, &inputs, &scores).await?;
    Ok(scores)
}

/// Brings the persisted scores up to date at `as_of`: when they are for that date and
/// model, only the companies whose activities changed since are recomputed; otherwise
/// everything is. Returns how many companies were recomputed.
pub async fn rescore(store: &Store, model: &Model, as_of: NaiveDate) -> Result<usize, AppError> {
    let now = score_inputs(store, model).await?;
    let stored = store.scores_meta().await?;
    let incremental = stored.as_ref().and_then(|(stored_as_of, stored_inputs)| {
        if *stored_as_of != as_of.to_string() {
            return None;
        }
        let (version, model_hash) = stored_inputs.strip_prefix("data-v")?.split_once("-model-")?;
        let (_, now_hash) = now.split_once("-model-")?;
        (model_hash == now_hash).then(|| version.parse::<i64>().ok()).flatten()
    });
    if stored.as_ref().is_some_and(|(a, i)| *a == as_of.to_string() && *i == now) {
        return Ok(0);
    }
    let Some(version) = incremental else {
        return Ok(score_and_persist(store, model, as_of).await?.len());
    };
    let changed = store.companies_changed_since(version).await?;
    let scores = scan_and_score(store, model, as_of, Some(version)).await?;
    let scored: std::collections::HashSet<&str> = scores.iter().map(|s| s.domain.as_str()).collect();
    let removed: Vec<String> = changed.iter().filter(|d| !scored.contains(d.as_str())).cloned().collect();
    store.update_scores(as_of, &now, &scores, &removed).await?;
    Ok(changed.len())
}

/// Polls one source and records the run in the sync log; returns its summary line and
/// whether it went without error.
pub async fn poll_and_record(store: &Store, config: &Config, c: &Connector) -> Result<(String, bool), AppError> {
    let run_id = store.start_run(&c.name).await?;
    let (totals, errors) = poll_source(store, config, c).await;
    let error = (!errors.is_empty()).then(|| errors.join("; "));
    store.finish_run(run_id, &totals, error.as_deref(), None).await?;
    match &error {
        None => tracing::info!(connector = %c.name, status = "ok", fetched = totals.planned, new = totals.accepted, api_calls = totals.api_calls, errors = 0, "poll run done"),
        Some(e) => tracing::error!(connector = %c.name, status = "failed", fetched = totals.planned, new = totals.accepted, api_calls = totals.api_calls, errors = errors.len(), error = %e, "poll run done"),
    }
    let line = format!(
        "{}: {} fetched, {} new activities; {} API calls{}\n",
        c.name,
        totals.planned,
        totals.accepted,
        totals.api_calls,
        if errors.is_empty() { String::new() } else { format!("\n  errors: {}", errors.join("\n          ")) }
    );
    Ok((line, errors.is_empty()))
}

/// Polls one source; the totals use the sync log's columns (planned = fetched,
/// accepted = new activities).
async fn poll_source(store: &Store, config: &Config, c: &Connector) -> (RunTotals, Vec<String>) {
    let mut totals = RunTotals::default();
    match &c.kind {
        ConnectorKind::Export(e) => match poll_folder(store, &config.dir, &c.name, e, &config.attribution).await {
            Ok(files) => {
                for f in &files {
                    // A file's error is said once, in the poll's `errors:` lines.
                    if f.error.is_none() || f.format.is_some() {
                        print!("{}", file_summary(&FileSummary { error: None, ..f.clone() }));
                    }
                    totals.planned += (f.imported + f.duplicate + f.quarantined) as i64;
                    totals.accepted += f.imported as i64;
                }
                let errors = files.iter().filter_map(|f| f.error.clone()).collect();
                (totals, errors)
            }
            Err(e) => (totals, vec![e]),
        },
        ConnectorKind::GitHub(g) => {
            let polled = match GitHubSource::build(g, &c.path, store, &config.attribution) {
                Ok(source) => source.poll().await,
                Err(e) => Err(e),
            };
            api_totals(totals, polled)
        }
        ConnectorKind::Slack(sl) => {
            let polled = match SlackSource::build(sl, &c.path, store, &config.attribution) {
                Ok(source) => source.poll().await,
                Err(e) => Err(e),
            };
            api_totals(totals, polled)
        }
        _ => (totals, Vec::new()),
    }
}

/// The totals and errors of an API source's poll.
fn api_totals(mut totals: RunTotals, polled: Result<crate::sources::github::PollSummary, crate::sources::github::PollError>) -> (RunTotals, Vec<String>) {
    match polled {
        Ok(s) => {
            totals.planned = s.fetched as i64;
            totals.accepted = s.inserted as i64;
            totals.api_calls = s.api_calls;
            totals.rate_limit_waits = s.rate_limit_waits;
            (totals, s.errors)
        }
        Err(e) => (totals, vec![e.to_string()]),
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

pub fn today() -> NaiveDate {
    Utc::now().date_naive()
}

pub async fn open(db: &str, config: &Config) -> Result<Store, AppError> {
    let store = Store::open(db).await?;
    apply_attribution(&store, config).await?;
    Ok(store)
}

/// Re-attributes what the config's attribution rules place differently from the ones
/// the store was last attributed with (at open, and when the daemon reloads).
pub async fn apply_attribution(store: &Store, config: &Config) -> Result<(), AppError> {
    let mut moved = store.sync_attribution(&config.attribution).await?;
    if moved > 0 {
        // Rules 2 and 3 were re-run over unplaced activities: put rule 4 back on top.
        let logins = store.github_logins().await?;
        moved += crate::sources::github::attribute_profiles(store, &config.attribution, &logins).await?;
        crate::logging::notice(&format!("attribution rules changed: {moved} activities re-attributed"));
    }
    Ok(())
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
    let bulk = store.begin_bulk_load(bytes / 200).await?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let checkpoints = bulk.then(|| {
        let store = store.clone();
        tokio::spawn(async move {
            while tokio::time::timeout(std::time::Duration::from_millis(200), stopped.changed()).await.is_err() {
                if let Err(e) = store.checkpoint().await {
                    tracing::debug!(error = %e, "checkpoint during a bulk load");
                }
            }
        })
    });
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
    let _ = stop.send(true);
    if let Some(task) = checkpoints {
        let _ = task.await;
    }
    if bulk {
        store.end_bulk_load().await?;
    }
    if let Some(e) = failure {
        return Err(e.into());
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

fn file_summary(s: &FileSummary) -> String {
    if let Some(why) = &s.deferred {
        return format!("{}: {why}\n", s.path.display());
    }
    let mut out = format!(
        "{} ({}): {} imported, {} duplicate, {} quarantined, {} unattributed\n",
        s.path.display(),
        s.format.map(|f| f.as_str()).unwrap_or("unread"),
        s.imported,
        s.duplicate,
        s.quarantined,
        s.unattributed
    );
    for (line, reason) in &s.reasons {
        out.push_str(&format!("  quarantined {}:{line}: {reason}\n", s.path.display()));
    }
    if s.quarantined > s.reasons.len() as u64 {
        out.push_str(&format!("  … and {} more quarantined lines\n", s.quarantined - s.reasons.len() as u64));
    }
    if let Some(e) = &s.error {
        out.push_str(&format!("  error: {e}\n"));
        crate::logging::error(e);
    }
    out
}

/// What persisted scores depend on: the store's data and the model.
async fn score_inputs(store: &Store, model: &Model) -> Result<String, AppError> {
    let model_hash: String = Sha256::digest(format!("{model:?}").as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("data-v{}-model-{model_hash}", store.data_version().await?))
}

/// Scores of every company at `as_of`, by score descending then domain.
pub async fn compute_scores(store: &Store, model: &Model, as_of: NaiveDate) -> Result<Vec<CompanyScore>, AppError> {
    let mut scores = scan_and_score(store, model, as_of, None).await?;
    sort_scores(&mut scores);
    Ok(scores)
}

/// Scores every company (or those changed after a data version) from one scan. The
/// full scan runs on every core, a range of the table each; the scan of changed
/// companies goes through the company index on one thread (a few thousand rows).
async fn scan_and_score(store: &Store, model: &Model, as_of: NaiveDate, changed_since: Option<i64>) -> Result<Vec<CompanyScore>, AppError> {
    let cores = match changed_since {
        None => std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4),
        Some(_) => 1,
    };
    let mut parts: Vec<ScanPart> = (0..cores).map(|_| ScanPart::new(model)).collect();
    store.scan_scoring(end_of(as_of), changed_since, &mut parts, |part, company, a| part.push(company, a)).await?;
    // Named after the scan: every company it read is in the table by then.
    let domains = store.company_domains(changed_since).await?;
    Ok(crate::scoring::score_parts(parts, &domains, as_of))
}

fn sort_scores(scores: &mut [CompanyScore]) {
    scores.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.domain.cmp(&b.domain)));
}

/// Persisted scores when they are for that date and still current; computed otherwise.
pub async fn current_scores(
    store: &Store,
    model: &Model,
    as_of: Option<NaiveDate>,
) -> Result<(NaiveDate, Vec<CompanyScore>), AppError> {
    let as_of = as_of.unwrap_or_else(today);
    if let Some(mut stored) = store.stored_scores().await?
        && stored.as_of == as_of && stored.inputs == score_inputs(store, model).await? {
            sort_scores(&mut stored.scores);
            return Ok((as_of, stored.scores));
        }
    Ok((as_of, compute_scores(store, model, as_of).await?))
}
