//! One sync run of one sink: plan the changed fields of changed companies against the
//! accepted state, match new companies to CRM records, write in batches of the API's
//! maximum, commit each record's confirmed outcome (and the trigger firings its stage
//! change owes) in one transaction per batch, then fire pending triggers.
//!
//! Nothing is taken as accepted before the CRM confirmed it, so a crash anywhere re-sends
//! at most the unconfirmed batch; updates are idempotent, so that costs nothing but a call.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::{Value, json};

use super::mapping::{Desired, Mapping};
use super::plan::{PlanItem, SyncPlan, plan_changes};
use super::{Match, Sink, SinkError, WriteOutcome, WriteRecord, same_crm_value};
use crate::config::{Config, Connector, ConnectorKind};
use crate::scoring::insight::{Insight, insight};
use crate::scoring::{CompanyScore, Model, end_of, score_breakdown};
use crate::store::{Firing, Outcome, RecordResult, RunTotals, Store, StoreError};
use super::triggers::{self, TriggerPreview};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{connector}: {source}")]
    Sink { connector: String, source: SinkError },
}

#[derive(Clone, Debug, Default)]
pub struct SyncOptions {
    pub dry_run: bool,
    /// With `dry_run`: diff against the CRM's current values (read calls only).
    pub live: bool,
    pub retry_dead: bool,
    /// Plan against the CRM's current values (a live read) instead of the accepted
    /// state, so values edited by hand are written over (`update: if_empty` fields
    /// excepted).
    pub reconcile: bool,
    /// Only these companies (normalized domains): their changes and pending triggers.
    pub domains: Option<Arc<BTreeSet<String>>>,
}

impl SyncOptions {
    fn takes(&self, domain: &str) -> bool {
        self.domains.as_ref().is_none_or(|d| d.contains(domain))
    }
}

/// What one run of one sink did (or, dry, would do).
#[derive(Clone, Debug, Serialize)]
pub struct SyncReport {
    pub connector: String,
    pub kind: &'static str,
    pub dry_run: bool,
    pub live: bool,
    pub reconcile: bool,
    pub plan: SyncPlan,
    /// Dry runs: the triggers a real run would fire, by company (those the plan's
    /// stage changes owe, and firings left pending by earlier runs).
    pub triggers: BTreeMap<String, Vec<TriggerPreview>>,
    pub totals: RunTotals,
    pub created: i64,
    pub ambiguous: i64,
    pub not_found: i64,
    pub dead: Vec<String>,
    pub triggers_fired: i64,
    pub triggers_failed: i64,
    pub error: Option<String>,
    /// Why the connector paused (not a failure: it resumes by itself).
    pub paused: Option<String>,
    /// The first record failure of the run, `company: error`, for the summary line.
    pub first_failure: Option<String>,
    /// Companies of the plan that match no CRM record (no ids) or several, by domain: a
    /// dry run shows what a real run would do with them.
    pub unmatched: std::collections::BTreeMap<String, Vec<String>>,
    /// Companies left out because their last lookup found no record, or several, and
    /// neither their values nor the re-check time came since.
    pub unmatched_waiting: i64,
}

/// What a run works from.
#[derive(Clone, Copy)]
pub struct SyncInput<'a> {
    pub store: &'a Store,
    pub config: &'a Config,
    pub scores: &'a [CompanyScore],
    pub as_of: NaiveDate,
}

/// Runs one sink connector once.
pub async fn sync_connector(input: &SyncInput<'_>, connector: &Connector, opts: SyncOptions) -> Result<SyncReport, SyncError> {
    let mapping = input.config.mapping_of(connector).expect("sink mappings are checked at load");
    let mut report = SyncReport {
        connector: connector.name.clone(),
        kind: connector.kind.as_str(),
        dry_run: opts.dry_run,
        live: opts.live,
        reconcile: opts.reconcile,
        plan: SyncPlan::default(),
        triggers: BTreeMap::new(),
        totals: RunTotals::default(),
        created: 0,
        ambiguous: 0,
        not_found: 0,
        dead: Vec::new(),
        triggers_fired: 0,
        triggers_failed: 0,
        error: None,
        paused: None,
        first_failure: None,
        unmatched: Default::default(),
        unmatched_waiting: 0,
    };
    let enriched;
    let input = if mapping.needs_insight() {
        enriched = with_insight(input, &connector.name, &mapping).await?;
        &SyncInput { scores: &enriched, ..*input }
    } else {
        input
    };
    let run_id = if opts.dry_run { None } else { Some(input.store.start_run(&connector.name).await?) };
    let built = build_and_run(input, connector, &mapping, &opts, run_id, &mut report).await;
    match &built {
        Err(SyncError::Sink { source: SinkError::Paused(why), .. }) => {
            // Said once, by the summary or the plan; the daemon's log (info) keeps it too.
            tracing::info!(connector = %connector.name, "sync paused: {why}");
            report.paused = Some(why.clone());
        }
        Err(e) => {
            // What reaches the sync log and the summary passes the secret redaction. A
            // run in the sync log says it in its summary below, once; a store error is
            // returned, and said once where it ends up.
            let error = super::report::loggable(&e.to_string());
            if run_id.is_none() && !matches!(e, SyncError::Store(_)) {
                tracing::error!(connector = %connector.name, error = %error, "sync failed");
            }
            report.error = Some(error);
        }
        Ok(()) => {}
    }
    if let Some(run_id) = run_id {
        let status = if report.paused.is_some() { Some("paused") } else { None };
        let note = report.error.clone().or_else(|| report.paused.clone().map(|p| format!("paused: {p}")));
        input.store.finish_run(run_id, &report.totals, note.as_deref(), status).await?;
        // The summary's level is the run's: an INFO line saying `failed=0` after the
        // run's ERROR would tell a log alert that all went well.
        macro_rules! summary {
            ($level:expr, $status:expr) => {
                tracing::event!(
                    $level,
                    connector = %connector.name,
                    status = $status,
                    planned = report.totals.planned,
                    sent = report.totals.sent,
                    accepted = report.totals.accepted,
                    failed = report.totals.failed,
                    triggers_failed = report.triggers_failed,
                    api_calls = report.totals.api_calls,
                    server_waits = report.totals.server_waits,
                    pacing_waits = report.totals.pacing_waits,
                    error = %note.as_deref().unwrap_or(""),
                    "sync run done"
                )
            };
        }
        // A pause is no failure, and its summary line already says it once: at INFO the
        // daemon's log keeps it, a one-shot command does not repeat it.
        if report.paused.is_some() {
            summary!(tracing::Level::INFO, "paused");
        } else if report.error.is_some() || report.totals.failed > 0 || report.triggers_failed > 0 {
            summary!(tracing::Level::ERROR, "failed");
        } else {
            summary!(tracing::Level::INFO, "ok");
        }
    }
    match built {
        Err(SyncError::Store(e)) => Err(SyncError::Store(e)),
        _ => Ok(report),
    }
}

async fn build_and_run(
    input: &SyncInput<'_>,
    connector: &Connector,
    mapping: &Mapping,
    opts: &SyncOptions,
    run_id: Option<i64>,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    if opts.dry_run && !opts.live && !opts.reconcile {
        // Planning against the store needs no credentials and no sink.
        let stored = input.store.crm_states(&connector.name).await?;
        let failures = input.store.sync_failures(&connector.name).await?;
        report.plan = plan_changes(input.scores, mapping, &stored, &failures);
        keep_only(&mut report.plan, opts);
        report.totals.planned = report.plan.items.len() as i64;
        // What the last lookups found, as a real run would act on it (no call here).
        let ids = input.store.crm_ids(&connector.name).await?;
        let planned: std::collections::HashSet<&str> = report.plan.items.iter().map(|i| i.domain.as_str()).collect();
        for (domain, known) in input.store.unmatched(&connector.name).await? {
            if !ids.contains_key(&domain) && planned.contains(domain.as_str()) {
                report.unmatched.insert(domain, known.ids);
            }
        }
        report.triggers = preview_triggers(input.store, &connector.name, mapping, &report.plan, &report.unmatched, opts).await?;
        return Ok(());
    }
    let sink_error = |source: SinkError| SyncError::Sink { connector: connector.name.clone(), source };
    match &connector.kind {
        ConnectorKind::HubSpot(c) => {
            let mut sink = super::hubspot::HubSpotSink::build(c, &connector.path, mapping).map_err(sink_error)?;
            run(&mut sink, input, connector, mapping, opts, run_id, c.dead_after, report).await
        }
        ConnectorKind::Salesforce(c) => {
            let mut sink = super::salesforce::SalesforceSink::build(c, &connector.path, mapping).map_err(sink_error)?;
            run(&mut sink, input, connector, mapping, opts, run_id, c.dead_after, report).await
        }
        ConnectorKind::CommonRoom(c) => {
            let mut sink = super::common_room::CommonRoomSink::build(c, &connector.path, mapping).map_err(sink_error)?;
            run(&mut sink, input, connector, mapping, opts, run_id, c.dead_after, report).await
        }
        ConnectorKind::Webhook(c) => {
            let mut sink = super::webhook::WebhookSink::build(c, &connector.path).map_err(sink_error)?;
            run(&mut sink, input, connector, mapping, opts, run_id, c.dead_after, report).await
        }
        ConnectorKind::File(c) => {
            let mut sink = super::file::FileSink::build(c, &input.config.dir, mapping);
            run(&mut sink, input, connector, mapping, opts, run_id, super::webhook::default_dead_after(), report).await
        }
        ConnectorKind::Export(_) | ConnectorKind::GitHub(_) | ConnectorKind::Slack(_) | ConnectorKind::Scarf(_) => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run<S: Sink>(
    sink: &mut S,
    input: &SyncInput<'_>,
    connector: &Connector,
    mapping: &Mapping,
    opts: &SyncOptions,
    run_id: Option<i64>,
    dead_after: u32,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    let name = connector.name.as_str();
    let store = input.store;
    let sink_error = |source: SinkError| SyncError::Sink { connector: name.to_owned(), source };
    if opts.retry_dead && !opts.dry_run {
        let revived = store.revive_dead(name).await?;
        if revived > 0 {
            tracing::info!(connector = name, revived, "dead records get a new round of attempts");
        }
    }
    let stored = store.crm_states(name).await?;
    let mut failures = store.sync_failures(name).await?;
    if opts.retry_dead {
        failures.retain(|_, f| !f.dead);
    }
    let scores: HashMap<&str, &CompanyScore> = input.scores.iter().map(|s| (s.domain.as_str(), s)).collect();

    if opts.reconcile {
        sink.reads_back().map_err(|why| sink_error(SinkError::Config(format!("--reconcile needs a live read: {why}"))))?;
    }
    let live = if (opts.dry_run && opts.live) || opts.reconcile {
        // The schema first (a read), so a misfit shows as the one message a real run
        // would stop with, not as a failed read; a dry run keeps no record of it.
        if sink.schema_fingerprint().is_some() {
            sink.check_schema().await.map_err(sink_error)?;
        }
        let ids = store.crm_ids(name).await?;
        let (live, found) = live_state(sink, input.scores, mapping, &stored, &ids, opts, &mut report.unmatched).await.map_err(sink_error)?;
        if opts.reconcile && !opts.dry_run {
            // The records the read found need no second lookup by the write.
            store.set_crm_ids(name, &found).await?;
        }
        Some(live)
    } else {
        None
    };
    // Reconciling plans against what the CRM holds where it was read, and against the
    // accepted state where it was not (no record yet, or one not matched).
    let base = match (&live, opts.reconcile) {
        (Some(live), true) => {
            let mut merged = stored.clone();
            merged.extend(live.iter().map(|(d, s)| (d.clone(), s.clone())));
            Some(merged)
        }
        (live, _) => live.clone(),
    };
    let mut plan = plan_changes(input.scores, mapping, base.as_ref().unwrap_or(&stored), &failures);
    keep_only(&mut plan, opts);
    if !opts.dry_run {
        report.unmatched_waiting = hold_back_unmatched(store, name, mapping, &mut plan).await?;
    }
    report.totals.planned = plan.items.len() as i64;
    let result = if opts.dry_run {
        report.triggers = preview_triggers(store, name, mapping, &plan, &report.unmatched, opts).await?;
        Ok(())
    } else {
        let run_id = run_id.expect("runs that write have a run id");
        let ctx = WriteContext {
            input,
            name,
            mapping,
            scores: &scores,
            stored: &stored,
            live: live.as_ref(),
            only: opts.domains.as_deref(),
            run_id,
            dead_after: dead_after as i64,
        };
        write_plan(sink, &ctx, &plan, report).await
    };
    report.plan = plan;
    let counts = sink.stats();
    report.totals.api_calls = counts.calls;
    report.totals.server_waits = counts.server_waits;
    report.totals.pacing_waits = counts.pacing_waits;
    report.totals.rate_limit_waits = counts.server_waits + counts.pacing_waits;
    result
}

/// Keeps the companies `--domain` names, when it does.
fn keep_only(plan: &mut SyncPlan, opts: &SyncOptions) {
    plan.items.retain(|i| opts.takes(&i.domain));
    plan.skipped_dead.retain(|d| opts.takes(d));
}

/// What a dry run lists as the triggers a real run would fire: those the plan's stage
/// changes owe (none for a company no record would be written for), then the firings
/// earlier runs left pending, which the run retries.
async fn preview_triggers(
    store: &Store,
    name: &str,
    mapping: &Mapping,
    plan: &SyncPlan,
    unmatched: &BTreeMap<String, Vec<String>>,
    opts: &SyncOptions,
) -> Result<BTreeMap<String, Vec<TriggerPreview>>, StoreError> {
    let mut out: BTreeMap<String, Vec<TriggerPreview>> = BTreeMap::new();
    for item in plan.items.iter().filter(|i| i.stage_changed() && !unmatched.contains_key(&i.domain)) {
        for (_, t) in triggers::owed(mapping, item.accepted_stage, item.stage) {
            let action = serde_json::to_value(&t.action).unwrap_or(Value::Null);
            out.entry(item.domain.clone()).or_default().push(TriggerPreview::of(&action, false));
        }
    }
    for firing in store.pending_firings(name).await? {
        if opts.takes(&firing.domain) {
            out.entry(firing.domain.clone()).or_default().push(TriggerPreview::of(&firing.action, true));
        }
    }
    Ok(out)
}

/// The CRM's current values as if they were the accepted state (`--dry-run --live`,
/// `--reconcile`), and the records found by a lookup on the way.
#[allow(clippy::type_complexity)]
async fn live_state<S: Sink>(
    sink: &mut S,
    scores: &[CompanyScore],
    mapping: &Mapping,
    accepted: &HashMap<String, crate::store::AcceptedState>,
    cached: &HashMap<String, String>,
    opts: &SyncOptions,
    unmatched: &mut std::collections::BTreeMap<String, Vec<String>>,
) -> Result<(HashMap<String, crate::store::AcceptedState>, Vec<(String, String)>), SinkError> {
    let in_scope: Vec<&CompanyScore> = scores
        .iter()
        .filter(|s| (accepted.contains_key(&s.domain) || mapping.pushes(s.stage)) && opts.takes(&s.domain))
        .collect();
    let mut ids: Vec<(String, String)> = Vec::new();
    let unknown: Vec<String> = in_scope
        .iter()
        .filter_map(|s| match cached.get(&s.domain) {
            Some(id) => {
                ids.push((s.domain.clone(), id.clone()));
                None
            }
            None => Some(s.domain.clone()),
        })
        .collect();
    let mut found = Vec::new();
    let resolved = if unknown.is_empty() { HashMap::new() } else { sink.resolve(&unknown).await? };
    for (domain, m) in resolved {
        match m {
            Match::Found(id) => {
                found.push((domain.clone(), id.clone()));
                ids.push((domain, id));
            }
            Match::Ambiguous(found) => {
                unmatched.insert(domain, found);
            }
            Match::Missing if !mapping.create_missing => {
                unmatched.insert(domain, Vec::new());
            }
            Match::Missing => {}
        }
    }
    let fields: Vec<String> = mapping.fields.keys().cloned().collect();
    let current = sink.read(&ids, &fields).await?;
    let mut out = HashMap::new();
    for s in in_scope {
        let Some(values) = current.get(&s.domain) else { continue };
        // Values that mean the same in the CRM count as equal to the desired ones, so the
        // plan shows only true differences.
        let desired = mapping.desired(s);
        let fields: Desired = values
            .iter()
            .map(|(k, v)| match desired.get(k) {
                Some(d) if same_crm_value(d, v) => (k.clone(), d.clone()),
                _ => (k.clone(), v.clone()),
            })
            .collect();
        out.insert(s.domain.clone(), crate::store::AcceptedState { fields, stage: accepted.get(&s.domain).and_then(|a| a.stage), changes: 0 });
    }
    Ok((out, found))
}

/// Takes out of the plan the companies whose last lookup found no CRM record, or
/// several, when neither their values changed nor `recheck_unmatched_hours` passed
/// since: asking again would only get the same answer. Returns how many.
async fn hold_back_unmatched(store: &Store, name: &str, mapping: &Mapping, plan: &mut SyncPlan) -> Result<i64, StoreError> {
    let known = store.unmatched(name).await?;
    if known.is_empty() {
        return Ok(0);
    }
    let ids = store.crm_ids(name).await?;
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let recheck = mapping.match_rule.recheck_unmatched_hours as i64 * 3_600 * 1_000_000_000;
    let before = plan.items.len();
    plan.items.retain(|item| {
        let waiting = !ids.contains_key(&item.domain)
            && known.get(&item.domain).is_some_and(|u| u.desired == lookup_key(mapping, item) && now - u.checked_at < recheck);
        !waiting
    });
    Ok((before - plan.items.len()) as i64)
}

/// What a company's lookup is remembered with: the values (and stage) it should carry,
/// and how the mapping matches and whether it creates (a change of either asks anew).
fn lookup_key(mapping: &Mapping, item: &PlanItem) -> String {
    let rule = &mapping.match_rule;
    let how = (&rule.crm_field, &rule.external_id, mapping.create_missing);
    serde_json::to_string(&(how, item.stage.as_str(), &item.after)).unwrap_or_default()
}

/// What writing a plan needs besides the plan.
struct WriteContext<'a> {
    input: &'a SyncInput<'a>,
    name: &'a str,
    mapping: &'a Mapping,
    scores: &'a HashMap<&'a str, &'a CompanyScore>,
    /// The accepted state the run started from.
    stored: &'a HashMap<String, crate::store::AcceptedState>,
    /// What a live read found in the CRM (`--reconcile`), by domain.
    live: Option<&'a HashMap<String, crate::store::AcceptedState>>,
    /// `--domain`: the only companies whose pending triggers fire.
    only: Option<&'a BTreeSet<String>>,
    run_id: i64,
    dead_after: i64,
}

async fn write_plan<S: Sink>(sink: &mut S, ctx: &WriteContext<'_>, plan: &SyncPlan, report: &mut SyncReport) -> Result<(), SyncError> {
    let WriteContext { input, name, mapping, scores, run_id, dead_after, .. } = *ctx;
    let store = input.store;
    let sink_error = |source: SinkError| SyncError::Sink { connector: name.to_owned(), source };
    if plan.items.is_empty() && !store.pending_firings(name).await?.iter().any(|f| ctx.only.is_none_or(|o| o.contains(&f.domain))) {
        return Ok(());
    }
    sink.prepare().await.map_err(sink_error)?;
    if let Some(fingerprint) = sink.schema_fingerprint()
        && store.schema_checked(name).await?.as_deref() != Some(fingerprint.as_str())
    {
        sink.check_schema().await.map_err(sink_error)?;
        store.set_schema_checked(name, &fingerprint).await?;
    }
    let all_desired: Vec<(String, Desired)> = input
        .scores
        .iter()
        .filter(|s| mapping.pushes(s.stage) || plan.items.iter().any(|i| i.domain == s.domain))
        .map(|s| (s.domain.clone(), mapping.desired(s)))
        .collect();
    sink.snapshot(&all_desired).await.map_err(sink_error)?;

    // Match the companies the store holds no CRM id for.
    let mut ids = store.crm_ids(name).await?;
    let unknown: Vec<String> = plan.items.iter().filter(|i| !ids.contains_key(&i.domain)).map(|i| i.domain.clone()).collect();
    let matches = if unknown.is_empty() { HashMap::new() } else { sink.resolve(&unknown).await.map_err(sink_error)? };
    let found: Vec<(String, String)> = matches
        .iter()
        .filter_map(|(d, m)| match m {
            Match::Found(id) => Some((d.clone(), id.clone())),
            _ => None,
        })
        .collect();
    store.set_crm_ids(name, &found).await?;
    // Remember what matched nothing (or too much), so an unchanged company is not looked
    // up again on every run.
    let remembered: Vec<(String, Vec<String>, String)> = plan
        .items
        .iter()
        .filter_map(|item| match matches.get(&item.domain)? {
            Match::Ambiguous(found) => Some((item.domain.clone(), found.clone(), lookup_key(mapping, item))),
            Match::Missing if !mapping.create_missing => Some((item.domain.clone(), Vec::new(), lookup_key(mapping, item))),
            _ => None,
        })
        .collect();
    store.remember_unmatched(name, &remembered).await?;
    store.forget_unmatched(name, &found.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>()).await?;
    ids.extend(found);

    let mut unmatched: Vec<RecordResult> = Vec::new();
    let mut stage_only: Vec<&PlanItem> = Vec::new();
    let mut writes: Vec<(&PlanItem, WriteRecord)> = Vec::new();
    for item in &plan.items {
        let score = scores[item.domain.as_str()];
        let crm_id = ids.get(&item.domain).cloned();
        if crm_id.is_none() {
            match matches.get(&item.domain) {
                Some(Match::Ambiguous(found)) => {
                    report.ambiguous += 1;
                    unmatched.push(result(item, None, Outcome::Ambiguous { ids: found.clone() }));
                    continue;
                }
                _ if !mapping.create_missing => {
                    report.not_found += 1;
                    unmatched.push(result(item, None, Outcome::NotFound));
                    continue;
                }
                _ => {}
            }
        }
        if item.after.is_empty() {
            stage_only.push(item);
            continue;
        }
        // A record being created gets every field, not only the changed ones.
        let desired = mapping.desired(score);
        let fields = if crm_id.is_none() { desired.clone() } else { item.after.clone() };
        let stage_change = item.stage_changed().then_some((item.accepted_stage, item.stage));
        let record = WriteRecord {
            domain: item.domain.clone(),
            crm_id,
            fields,
            desired,
            event: signals_json(score),
            stage_change,
            new_record: item.new_record,
            company_name: None,
        };
        writes.push((item, record));
    }
    let kept = keep_filled_values(sink, ctx, &mut writes).await.map_err(sink_error)?;
    // A record left with nothing to write (every changed field held a value by hand) is
    // accepted as it is, like a stage change with no field.
    let (settled, mut writes): (Vec<_>, Vec<_>) = writes.into_iter().partition(|(_, w)| w.fields.is_empty());
    stage_only.extend(settled.into_iter().map(|(item, _)| item));
    // Any write may create a record (an upsert whose record was deleted since): each
    // carries the company's name, read locally.
    let domains: Vec<String> = writes.iter().map(|(_, w)| w.domain.clone()).collect();
    if !domains.is_empty() {
        let mut names = store.names_of(&domains).await?;
        for (_, w) in &mut writes {
            w.company_name = names.remove(&w.domain);
        }
    }
    store.commit_batch(run_id, name, &unmatched, &[], dead_after).await?;

    // A stage change with no field to write is accepted as it is, so its triggers fire.
    let mut results = Vec::new();
    let mut firings = Vec::new();
    for item in stage_only {
        let accepted = Outcome::Accepted { created: false, stage: item.stage };
        firings.extend(firings_for(ctx, item, ids.get(&item.domain).map(String::as_str)).await?);
        let mut r = result(item, ids.get(&item.domain).cloned(), accepted);
        r.after.clear();
        r.kept = kept.get(&item.domain).cloned().unwrap_or_default();
        results.push(r);
    }
    store.commit_batch(run_id, name, &results, &firings, dead_after).await?;

    // Creates and updates go in separate requests; each batch is committed on its own.
    let (creates, updates): (Vec<_>, Vec<_>) = writes.into_iter().partition(|(_, w)| w.crm_id.is_none());
    let mut first_error: Option<SinkError> = None;
    'groups: for group in [creates, updates] {
        for chunk in group.chunks(sink.batch_size().max(1)) {
            let batch: Vec<WriteRecord> = chunk.iter().map(|(_, w)| w.clone()).collect();
            let outcomes = match sink.write(&batch).await {
                Ok(o) => o,
                // A paused connector sends nothing more this run; what it did not send
                // is still unaccepted, so the next run sends it.
                Err(SinkError::Paused(why)) => {
                    first_error = Some(SinkError::Paused(why));
                    break 'groups;
                }
                // A configuration the CRM cannot take stops the run; the records are not
                // at fault, so none is charged an attempt, and the schema is checked
                // again next run.
                Err(SinkError::Config(why)) => {
                    store.forget_schema_check(name).await?;
                    return Err(sink_error(SinkError::Config(why)));
                }
                Err(e) => {
                    let message = super::report::loggable(&e.to_string());
                    tracing::warn!(connector = name, error = %message, records = batch.len(), "batch failed");
                    first_error.get_or_insert(e);
                    vec![WriteOutcome::Failed(message); batch.len()]
                }
            };
            report.totals.sent += batch.len() as i64;
            let mut results = Vec::with_capacity(chunk.len());
            let mut firings = Vec::new();
            for ((item, record), outcome) in chunk.iter().zip(outcomes) {
                let outcome = match outcome {
                    WriteOutcome::Written { crm_id, created } => {
                        report.totals.accepted += 1;
                        // A record created now can take its trigger actions in this run.
                        ids.insert(item.domain.clone(), crm_id.clone());
                        report.created += created as i64;
                        firings.extend(firings_for(ctx, item, Some(&crm_id)).await?);
                        let mut r = result(item, Some(crm_id), Outcome::Accepted { created, stage: item.stage });
                        r.after = record.fields.clone();
                        r.kept = kept.get(&item.domain).cloned().unwrap_or_default();
                        results.push(r);
                        continue;
                    }
                    WriteOutcome::Failed(error) => {
                        let error = super::report::loggable(&error);
                        report.first_failure.get_or_insert_with(|| format!("{}: {error}", item.domain));
                        Outcome::Failed { error }
                    }
                    WriteOutcome::Gone(error) => {
                        let error = super::report::loggable(&error);
                        report.first_failure.get_or_insert_with(|| format!("{}: {error}", item.domain));
                        store.forget_crm_id(name, &item.domain).await?;
                        Outcome::Failed { error }
                    }
                };
                report.totals.failed += 1;
                results.push(result(item, record.crm_id.clone(), outcome));
            }
            report.dead.extend(store.commit_batch(run_id, name, &results, &firings, dead_after).await?);
        }
    }

    if let Some(SinkError::Paused(why)) = first_error {
        return Err(sink_error(SinkError::Paused(why)));
    }
    // Fire what accepted stage changes owe, including firings a crashed run left pending.
    let (fired, failed) = triggers::fire_pending(sink, store, name, run_id, dead_after, &ids, ctx.only).await?;
    report.triggers_fired = fired;
    report.triggers_failed = failed;
    match first_error {
        Some(e) if report.totals.accepted == 0 => Err(sink_error(e)),
        _ => Ok(()),
    }
}

fn result(item: &PlanItem, crm_id: Option<String>, outcome: Outcome) -> RecordResult {
    RecordResult { domain: item.domain.clone(), crm_id, before: item.before.clone(), after: item.after.clone(), kept: Desired::new(), outcome }
}

/// `update: if_empty`: takes out of the updates the fields whose CRM value is not empty,
/// read live (batched by the sink, paced by its rate limit) unless `--reconcile` read it
/// already. Returns the values kept out, by domain. A record the read does not return
/// (deleted since, or to be created by an upsert) holds nothing, and gets every field.
async fn keep_filled_values<S: Sink>(sink: &mut S, ctx: &WriteContext<'_>, writes: &mut [(&PlanItem, WriteRecord)]) -> Result<HashMap<String, Desired>, SinkError> {
    let only_if_empty = ctx.mapping.if_empty_fields();
    let mut kept: HashMap<String, Desired> = HashMap::new();
    let touches = |w: &WriteRecord| w.crm_id.is_some() && w.fields.keys().any(|k| only_if_empty.contains(k));
    if !writes.iter().any(|(_, w)| touches(w)) {
        return Ok(kept);
    }
    sink.reads_back().map_err(|why| SinkError::Config(format!("`update: if_empty` needs a live read: {why}")))?;
    let unread: Vec<(String, String)> = writes
        .iter()
        .filter(|(_, w)| touches(w) && ctx.live.is_none_or(|l| !l.contains_key(&w.domain)))
        .filter_map(|(_, w)| Some((w.domain.clone(), w.crm_id.clone()?)))
        .collect();
    let read = if unread.is_empty() { HashMap::new() } else { sink.read(&unread, &only_if_empty).await? };
    for (_, w) in writes.iter_mut().filter(|(_, w)| touches(w)) {
        let Some(held) = ctx.live.and_then(|l| l.get(&w.domain)).map(|s| &s.fields).or_else(|| read.get(&w.domain)) else { continue };
        for field in &only_if_empty {
            if held.get(field).is_some_and(|v| !super::mapping::as_text(v).trim().is_empty())
                && let Some(value) = w.fields.remove(field)
            {
                kept.entry(w.domain.clone()).or_default().insert(field.clone(), value);
            }
        }
    }
    Ok(kept)
}

/// The signals of a score as the webhook event and trigger payloads carry them.
fn signals_json(score: &CompanyScore) -> Value {
    triggers::signals_of(score)
}

/// The firings an accepted item owes: one per matching trigger when its stage changed.
async fn firings_for(ctx: &WriteContext<'_>, item: &PlanItem, crm_id: Option<&str>) -> Result<Vec<Firing>, StoreError> {
    if !item.stage_changed() || triggers::owed(ctx.mapping, item.accepted_stage, item.stage).next().is_none() {
        return Ok(Vec::new());
    }
    let input = ctx.input;
    let score = ctx.scores[item.domain.as_str()];
    let (breakdown, insight) = breakdown(input.store, &input.config.model, score, input.as_of).await?;
    let changes = ctx.stored.get(&item.domain).map_or(0, |s| s.changes);
    let score = CompanyScore { insight: Some(std::sync::Arc::new(insight)), ..score.clone() };
    Ok(triggers::firings(ctx.name, ctx.mapping, item, changes, crm_id, &score, breakdown, input.as_of))
}

/// What a trigger's event tells beside the signals: the score's breakdown, and the
/// insight signals its messages may name.
async fn breakdown(store: &Store, model: &Model, score: &CompanyScore, as_of: NaiveDate) -> Result<(Value, Insight), StoreError> {
    let acts = store.company_activities(&score.domain, end_of(as_of)).await?;
    Ok((json!(score_breakdown(&acts, model, as_of)), insight(score, &acts, model, as_of)))
}

/// The scores with their insight signals, for a mapping whose fields read them: each
/// company a run may write (a pushed stage, or a record the CRM holds) is read once.
async fn with_insight(input: &SyncInput<'_>, connector: &str, mapping: &Mapping) -> Result<Vec<CompanyScore>, StoreError> {
    let known = input.store.crm_states(connector).await?;
    let mut out = Vec::with_capacity(input.scores.len());
    for s in input.scores {
        let mut s = s.clone();
        if mapping.pushes(s.stage) || known.contains_key(&s.domain) {
            let acts = input.store.company_activities(&s.domain, end_of(input.as_of)).await?;
            s.insight = Some(std::sync::Arc::new(insight(&s, &acts, &input.config.model, input.as_of)));
        }
        out.push(s);
    }
    Ok(out)
}
