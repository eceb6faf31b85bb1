//! One poll → rescore → sync cycle and its steps, shared by the CLI (`poll`, `score`,
//! `sync`, `run --once`) and the daemon's scheduled runs.
//!
//! Every step that runs a connector holds that connector's lease (`store/leases.rs`)
//! for its whole run, so the same connector never runs in two processes at once: a
//! run that finds it held is recorded as `skipped`, which is no failure. A sink's
//! scores are read after its lease is taken, so it plans from the latest accepted
//! state and the latest scores at once.

use chrono::{NaiveDate, Utc};
use sha2::{Digest, Sha256};

use crate::config::{Config, Connector, ConnectorKind};
use crate::import::{FileSummary, file_summary};
use crate::scoring::{CompanyScore, History, Model, ScanPart, end_of};
use crate::sinks::sync::{SyncError, SyncInput, SyncOptions, SyncReport, sync_connector};
use crate::sources::folder::poll_folder;
use crate::sources::github::GitHubSource;
use crate::sources::scarf::ScarfSource;
use crate::sources::slack::SlackSource;
use crate::store::{Held, RunTotals, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The daemon's health endpoint cannot take its address.
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    /// The health endpoint's address is not one it can listen on.
    #[error("{0}")]
    Health(String),
}

/// What became of a connector's run.
pub enum Ran<T> {
    Done(T),
    /// Another process holds the connector; the run was recorded as skipped.
    Skipped(Held),
}

impl<T> Ran<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Ran<U> {
        match self {
            Ran::Done(t) => Ran::Done(f(t)),
            Ran::Skipped(held) => Ran::Skipped(held),
        }
    }
}

pub fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// Re-attributes what the config's attribution rules place differently from the ones
/// the store was last attributed with (at open, and when the daemon reloads).
pub async fn apply_attribution(store: &Store, config: &Config) -> Result<(), StoreError> {
    if store.sync_parents(&config.attribution).await? {
        crate::logging::notice("attribution parents changed: their families are rescored");
    }
    let mut moved = store.sync_attribution(&config.attribution).await?;
    if moved > 0 {
        // Rules 2 and 3 were re-run over unplaced activities: put rule 4 back on top.
        let logins = store.github_logins().await?;
        moved += crate::sources::github::attribute_profiles(store, &config.attribution, &logins).await?;
        crate::logging::notice(&format!("attribution rules changed: {moved} activities re-attributed"));
    }
    Ok(())
}

/// Whether the daemon runs this connector on its schedule (a source that polls, a sink).
pub fn runs_on_schedule(c: &Connector) -> bool {
    polls(c) || c.is_sink()
}

/// Whether a connector is a source that polls (GitHub, Slack, Scarf, a watched export folder).
pub fn polls(c: &Connector) -> bool {
    match &c.kind {
        ConnectorKind::GitHub(_) | ConnectorKind::Slack(_) | ConnectorKind::Scarf(_) => true,
        ConnectorKind::Export(e) => e.path.is_some(),
        _ => false,
    }
}

/// The lease a connector's runs hold.
fn lease_name(c: &Connector) -> String {
    format!("connector:{}", c.name)
}

async fn skipped(store: &Store, c: &Connector, held: &Held) -> Result<(), StoreError> {
    tracing::info!(connector = %c.name, holder_pid = held.pid, holder_host = %held.host, "skipped: another process is running this connector");
    store.record_skipped(&c.name, &format!("skipped: another process runs this connector ({held})")).await
}

/// The summary line of a skipped run.
pub fn skipped_line(name: &str, held: &Held) -> String {
    format!("{name}: skipped: another process runs this connector ({held})\n")
}

/// One full cycle (`run --once`): poll every source, rescore, sync every sink. Returns
/// the printed summary and whether every connector succeeded (a skip is no failure).
pub async fn run_once(store: &Store, config: &Config, as_of: Option<NaiveDate>) -> Result<(String, bool), CycleError> {
    let mut out = String::new();
    let mut ok = true;
    for c in config.connectors.iter().filter(|c| polls(c)) {
        let (line, good) = poll_and_record(store, config, c).await?;
        out.push_str(&line);
        ok &= good;
    }
    let as_of = as_of.unwrap_or_else(today);
    let rescored = rescore(store, &config.model, as_of).await?;
    tracing::info!(rescored, "scores up to date");
    for c in config.connectors.iter().filter(|c| c.is_sink()) {
        match sync_leased(store, config, c, Some(as_of), SyncOptions::default()).await? {
            Ran::Done(report) => {
                ok &= succeeded(&report);
                out.push_str(&crate::sinks::report::summary(&report));
            }
            Ran::Skipped(held) => out.push_str(&skipped_line(&c.name, &held)),
        }
    }
    let (_, scores) = current_scores(store, &config.model, Some(as_of)).await?;
    out.push_str(&format!("scored {}\n", crate::output::stage_summary(&scores, as_of)));
    Ok((out, ok))
}

/// Whether a sync run went without a failure.
pub fn succeeded(report: &SyncReport) -> bool {
    report.error.is_none() && report.totals.failed == 0 && report.triggers_failed == 0
}

/// How a scheduled run of the daemon went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
    /// Another process was running the connector: neither a success nor a failure.
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One scheduled run of the daemon: a source polls and rescores; a sink syncs.
pub async fn run_connector(c: &Connector, store: &Store, config: &Config, as_of: Option<NaiveDate>) -> Result<Outcome, CycleError> {
    let ran = if polls(c) {
        let ran = poll_leased_or_skip(store, config, c).await?;
        if let Ran::Done(_) = ran {
            // Only the companies this poll touched are recomputed (all, on a new day).
            rescore(store, &config.model, as_of.unwrap_or_else(today)).await?;
        }
        ran.map(|(_, ok)| ok)
    } else {
        sync_leased(store, config, c, as_of, SyncOptions::default()).await?.map(|report| succeeded(&report))
    };
    Ok(match ran {
        Ran::Done(true) => Outcome::Ok,
        Ran::Done(false) => Outcome::Failed,
        Ran::Skipped(_) => Outcome::Skipped,
    })
}

/// Syncs one sink holding its lease, from the scores current once the lease is held.
/// A dry run writes nothing and takes no lease.
pub async fn sync_leased(store: &Store, config: &Config, c: &Connector, as_of: Option<NaiveDate>, options: SyncOptions) -> Result<Ran<SyncReport>, CycleError> {
    let lease = if options.dry_run {
        None
    } else {
        match store.take_lease(&lease_name(c)).await? {
            Ok(lease) => Some(lease),
            Err(held) => {
                skipped(store, c, &held).await?;
                return Ok(Ran::Skipped(held));
            }
        }
    };
    let result = async {
        let (as_of, scores) = current_scores(store, &config.model, as_of).await?;
        let input = SyncInput { store, config, scores: &scores, as_of };
        Ok::<_, CycleError>(sync_connector(&input, c, options).await?)
    }
    .await;
    if let Some(lease) = lease {
        lease.release().await;
    }
    Ok(Ran::Done(result?))
}

/// Polls one source holding its lease and records the run in the sync log; returns
/// its summary line and whether it went without error (a skipped run is no error).
pub async fn poll_and_record(store: &Store, config: &Config, c: &Connector) -> Result<(String, bool), CycleError> {
    Ok(match poll_leased_or_skip(store, config, c).await? {
        Ran::Done(polled) => polled,
        Ran::Skipped(held) => (skipped_line(&c.name, &held), true),
    })
}

async fn poll_leased_or_skip(store: &Store, config: &Config, c: &Connector) -> Result<Ran<(String, bool)>, CycleError> {
    let lease = match store.take_lease(&lease_name(c)).await? {
        Ok(lease) => lease,
        Err(held) => {
            skipped(store, c, &held).await?;
            return Ok(Ran::Skipped(held));
        }
    };
    let result = poll_leased(store, config, c).await;
    lease.release().await;
    result.map(Ran::Done)
}

async fn poll_leased(store: &Store, config: &Config, c: &Connector) -> Result<(String, bool), CycleError> {
    let run_id = store.start_run(&c.name).await?;
    let (totals, errors) = poll_source(store, config, c).await;
    let error = (!errors.is_empty()).then(|| errors.join("; "));
    store.finish_run(run_id, &totals, error.as_deref(), None).await?;
    // An INFO line never says "ok" after an error of the same run: a failed poll is an ERROR.
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
        ConnectorKind::Scarf(sc) => {
            let polled = match ScarfSource::build(sc, &c.path, store, &config.attribution) {
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
            totals.server_waits = s.server_waits;
            totals.pacing_waits = s.pacing_waits;
            (totals, s.errors)
        }
        Err(e) => (totals, vec![e.to_string()]),
    }
}

/// Recomputes every score at `as_of` and persists them.
pub async fn score_and_persist(store: &Store, model: &Model, as_of: NaiveDate) -> Result<Vec<CompanyScore>, StoreError> {
    // The inputs are read first: a change landing while scores are computed moves the
    // data version past them, so the next rescore sees it.
    let inputs = score_inputs(store, model).await?;
    let blank = History::new(as_of, HISTORY_DAYS, MOVE_DAYS);
    let (mut scores, history) = scan_and_score_recording(store, model, as_of, None, Some(&blank)).await?;
    sort_scores(&mut scores);
    store.replace_scores(as_of, &inputs, &scores).await?;
    if let Some(history) = history {
        store.record_history(as_of, &history).await?;
    }
    Ok(scores)
}

/// Days of stage counts a full rescore records (the console's chart), and of stage moves.
pub const HISTORY_DAYS: u32 = 180;
pub const MOVE_DAYS: u32 = 7;

/// Brings the persisted scores up to date at `as_of`: when they are for that date and
/// model, only the companies whose activities changed since are recomputed; otherwise
/// everything is. Returns how many companies were recomputed.
pub async fn rescore(store: &Store, model: &Model, as_of: NaiveDate) -> Result<usize, StoreError> {
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
    let mut changed = store.companies_changed_since(version).await?;
    let families = store.families().await?;
    let affected: Vec<&str> = families.affected(&changed).into_iter().filter(|d| changed.binary_search_by(|c| c.as_str().cmp(d)).is_err()).collect();
    if !affected.is_empty() {
        store.mark_families_changed(&affected).await?;
        changed = store.companies_changed_since(version).await?;
    }
    let scores = scan_and_score(store, model, as_of, Some(version)).await?;
    let scored: std::collections::HashSet<&str> = scores.iter().map(|s| s.domain.as_str()).collect();
    let removed: Vec<String> = changed.iter().filter(|d| !scored.contains(d.as_str())).cloned().collect();
    store.update_scores(as_of, &now, &scores, &removed).await?;
    Ok(changed.len())
}

/// What persisted scores depend on: the store's data and the model.
pub async fn score_inputs(store: &Store, model: &Model) -> Result<String, StoreError> {
    let model_hash: String = Sha256::digest(format!("{model:?}").as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("data-v{}-model-{model_hash}", store.data_version().await?))
}

/// Scores of every company at `as_of`, by score descending then domain.
pub async fn compute_scores(store: &Store, model: &Model, as_of: NaiveDate) -> Result<Vec<CompanyScore>, StoreError> {
    let mut scores = scan_and_score(store, model, as_of, None).await?;
    sort_scores(&mut scores);
    Ok(scores)
}

/// Scores every company (or those changed after a data version) from one scan. The
/// full scan runs on every core, a range of the table each; the scan of changed
/// companies goes through the company index on one thread (a few thousand rows).
async fn scan_and_score(store: &Store, model: &Model, as_of: NaiveDate, changed_since: Option<i64>) -> Result<Vec<CompanyScore>, StoreError> {
    Ok(scan_and_score_recording(store, model, as_of, changed_since, None).await?.0)
}

/// `scan_and_score`, also filling a copy of `history` when given.
async fn scan_and_score_recording(
    store: &Store,
    model: &Model,
    as_of: NaiveDate,
    changed_since: Option<i64>,
    history: Option<&History>,
) -> Result<(Vec<CompanyScore>, Option<History>), StoreError> {
    let cores = match changed_since {
        None => std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4),
        Some(_) => 1,
    };
    let mut parts: Vec<ScanPart> = (0..cores).map(|_| ScanPart::new(model)).collect();
    let ancestors = ancestor_ids(store).await?;
    store
        .scan_scoring(end_of(as_of), changed_since, &mut parts, |part, company, a| {
            part.push(company, a);
            // A descendant's activity counts for each of its ancestors too.
            if let Some(up) = ancestors.get(&company) {
                for &p in up {
                    part.push(p, a);
                }
            }
        })
        .await?;
    // Named after the scan: every company it read is in the table by then.
    let domains = store.company_domains(changed_since).await?;
    Ok(crate::scoring::score_parts_recording(parts, &domains, as_of, history))
}

/// Each child's ancestors by company id (nearest first), from the recorded families.
async fn ancestor_ids(store: &Store) -> Result<std::collections::HashMap<u32, Vec<u32>>, StoreError> {
    let families = store.families().await?;
    if families.is_empty() {
        return Ok(Default::default());
    }
    let named: Vec<&str> = families.0.iter().flat_map(|(c, p)| [c.as_str(), p.as_str()]).collect();
    let ids = store.company_ids(&named).await?;
    Ok(families
        .0
        .keys()
        .filter_map(|c| Some((*ids.get(c)?, families.ancestors(c).iter().filter_map(|a| ids.get(*a).copied()).collect())))
        .collect())
}

fn sort_scores(scores: &mut [CompanyScore]) {
    scores.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.domain.cmp(&b.domain)));
}

/// Persisted scores when they are for that date and still current; computed otherwise.
/// Scarf's stages are joined in either way (they are read, not scored).
pub async fn current_scores(store: &Store, model: &Model, as_of: Option<NaiveDate>) -> Result<(NaiveDate, Vec<CompanyScore>), StoreError> {
    let as_of = as_of.unwrap_or_else(today);
    let mut scores = match store.stored_scores().await? {
        Some(mut stored) if stored.as_of == as_of && stored.inputs == score_inputs(store, model).await? => {
            sort_scores(&mut stored.scores);
            stored.scores
        }
        _ => compute_scores(store, model, as_of).await?,
    };
    join_scarf_stages(store, &mut scores).await?;
    Ok((as_of, scores))
}

/// Puts Scarf's own stage (from its company rollup) beside ours, for the `scarf_stage`
/// and `scarf_stage_since` signals.
pub async fn join_scarf_stages(store: &Store, scores: &mut [CompanyScore]) -> Result<(), StoreError> {
    let stages = store.scarf_stages().await?;
    if stages.is_empty() {
        return Ok(());
    }
    for s in scores.iter_mut() {
        if let Some(scarf) = stages.get(&s.domain) {
            s.scarf_stage = Some(scarf.stage.clone());
            s.scarf_stage_since = scarf.since;
        }
    }
    Ok(())
}
