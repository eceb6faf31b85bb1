//! The long-running service: every connector on its own cron schedule (UTC), a daily
//! rescore at 00:05 UTC so stages move as days pass (inactivity, window ends), a
//! health/metrics endpoint, and graceful shutdown.
//!
//! Each connector is one task that sleeps until its next time and then runs; a task runs
//! one thing at a time, so a connector never runs twice at once, and a slow connector
//! only delays itself. A source run is followed by a rescore of the companies it
//! touched, so the next sink run pushes what changed. On SIGINT/SIGTERM no new run starts, runs in flight get
//! `SHUTDOWN_GRACE` to finish (everything they commit is transactional), and the process
//! exits 0; a second signal exits at once, which the store survives (WAL, transactions).
//!
//! SIGHUP reloads the config: the new one is loaded and checked as at start; on any
//! error the running one stays (and an ERROR says why); else the runs in flight finish
//! and the new schedules start. Scores older than today at start are brought up to date
//! first, so a daemon started after a day off does not push yesterday's stages.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use tokio::sync::watch;

use crate::config::Config;
use crate::cycle::{CycleError, Outcome, rescore, run_connector, runs_on_schedule, score_and_persist, today};
use crate::store::Store;

/// How long runs in flight may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What the daemon knows of each connector, for `/healthz` and `/status`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ConnectorStatus {
    pub kind: &'static str,
    pub schedule: String,
    pub next_run: Option<String>,
    pub last_started: Option<String>,
    pub last_outcome: Option<String>,
    pub last_duration_ms: Option<u64>,
    pub runs: u64,
    pub failures: u64,
    /// Failed runs since the last good one (seeded from the sync log at start): past
    /// `Status::unready_after`, `/readyz` fails.
    pub failing_in_a_row: u64,
}

#[derive(Default)]
pub struct Status {
    pub connectors: BTreeMap<String, ConnectorStatus>,
    pub started: Option<String>,
    /// True until the scores are brought up to date at start: not ready meanwhile.
    pub starting: bool,
    /// Failed runs in a row of one connector that make the daemon not ready (0: never).
    pub unready_after: u64,
}

impl Status {
    /// The connectors the daemon runs under `config`; what is known of those kept
    /// across a reload stays.
    fn set_connectors(&mut self, config: &Config, streaks: &BTreeMap<String, u64>) {
        let mut old = std::mem::take(&mut self.connectors);
        for c in config.connectors.iter().filter(|c| runs_on_schedule(c)) {
            let mut s = old.remove(&c.name).unwrap_or_else(|| ConnectorStatus {
                failing_in_a_row: streaks.get(&c.name).copied().unwrap_or(0),
                ..Default::default()
            });
            s.kind = c.kind.as_str();
            s.schedule = c.schedule.clone();
            s.next_run = None;
            self.connectors.insert(c.name.clone(), s);
        }
    }
}

pub type SharedStatus = Arc<Mutex<Status>>;

/// The next times of a cron expression (validated at config load).
pub fn next_runs(schedule: &str, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    cron::Schedule::from_str(schedule).map(|s| s.after(&after).take(n).collect()).unwrap_or_default()
}

/// Runs connectors on their schedules until a shutdown signal.
pub async fn run_daemon(
    store: Store,
    config: Arc<Config>,
    listen: Option<String>,
    as_of: Option<NaiveDate>,
    unready_after: u64,
    console_token: Option<String>,
) -> Result<(), CycleError> {
    // First: a SIGHUP before the handler exists would end the process.
    let mut hangups = Hangups::new();
    let status: SharedStatus = Arc::new(Mutex::new(Status { started: Some(Utc::now().to_rfc3339()), starting: true, unready_after, ..Default::default() }));
    let streaks = store.failing_streaks().await?;
    status.lock().expect("status lock").set_connectors(&config, &streaks);
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(addr) = listen {
        let listener = crate::health::bind(&addr).await.map_err(CycleError::Health)?;
        // Off loopback the console asks for the token (and without one refuses).
        let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
        let console = crate::console::ConsoleOptions { token: console_token, loopback, as_of };
        let app = crate::health::router(store.clone(), config.clone(), status.clone(), console);
        let mut stop = stop_rx.clone();
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
        tracing::info!(%addr, console = %format!("http://{addr}/"), "health, metrics and console listening");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        });
    }
    bring_scores_up_to_date(&store, &config, as_of).await;
    status.lock().expect("status lock").starting = false;
    let mut config = config;
    loop {
        let (generation_tx, generation_rx) = watch::channel(false);
        let tasks = spawn_connectors(&store, &config, &status, &generation_rx, as_of);
        // Until a signal ends the process or a SIGHUP brings a config that loads.
        let reloaded = loop {
            tokio::select! {
                _ = wait_for_signal() => break None,
                _ = hangups.recv() => match load_checked(&config.dir) {
                    Ok(new) => break Some(new),
                    Err(why) => tracing::error!(config_dir = %config.dir.display(), "config not reloaded, the running one stays: {why}"),
                },
            }
        };
        let _ = generation_tx.send(true);
        let mut in_flight = std::pin::pin!(futures_util::future::join_all(tasks));
        let Some(new) = reloaded else { break drain(in_flight, stop_tx).await };
        tracing::info!("reloading the config: waiting for runs in flight");
        tokio::select! {
            _ = &mut in_flight => {}
            _ = wait_for_signal() => break drain(in_flight, stop_tx).await,
        }
        if let Err(e) = crate::cycle::apply_attribution(&store, &new).await {
            tracing::error!(error = %e, "re-attribution after the reload failed; the next reload tries again");
        }
        config = Arc::new(new);
        status.lock().expect("status lock").set_connectors(&config, &streaks);
        tracing::info!(connectors = config.connectors.len(), "config reloaded");
        crate::logging::connectors(&config);
        bring_scores_up_to_date(&store, &config, as_of).await;
    }
}

/// The config of `dir`, checked as `run` checks it at start (secrets included).
fn load_checked(dir: &std::path::Path) -> Result<Config, String> {
    let config = Config::load(dir).map_err(|e| e.to_string())?;
    if let Some(e) = crate::config::ConfigError::from_list(crate::preflight::missing_secrets(&config)) {
        return Err(e.to_string());
    }
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    Ok(config)
}

/// Scores persisted for another day or model are recomputed now, not at the next poll.
async fn bring_scores_up_to_date(store: &Store, config: &Config, as_of: Option<NaiveDate>) {
    let as_of = as_of.unwrap_or_else(today);
    let before = store.scores_meta().await.ok().flatten().map(|(a, _)| a);
    match rescore(store, &config.model, as_of).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(companies = n, was_as_of = before.as_deref().unwrap_or("never"), %as_of, "scores brought up to date"),
        Err(e) => tracing::error!(error = %e, "rescoring at start failed; the next run tries again"),
    }
}

fn spawn_connectors(
    store: &Store,
    config: &Arc<Config>,
    status: &SharedStatus,
    stop_rx: &watch::Receiver<bool>,
    as_of: Option<NaiveDate>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for c in config.connectors.iter().filter(|c| runs_on_schedule(c)).cloned() {
        let (store, config, status, stop) = (store.clone(), config.clone(), status.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(async move { connector_loop(c, store, config, status, stop, as_of).await }));
    }
    let (store, config, stop) = (store.clone(), config.clone(), stop_rx.clone());
    tasks.push(tokio::spawn(async move { daily_rescore(store, config, stop, as_of).await }));
    tasks
}

/// After a shutdown signal: runs in flight get the grace period, a second signal ends it.
async fn drain(in_flight: impl std::future::Future, stop_tx: watch::Sender<bool>) -> Result<(), CycleError> {
    tracing::info!("shutting down: no new runs; waiting for runs in flight");
    let _ = stop_tx.send(true);
    tokio::select! {
        _ = in_flight => tracing::info!("stopped cleanly"),
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("runs still in flight after the grace period; exiting"),
        _ = wait_for_signal() => {
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        }
    }
    Ok(())
}

/// SIGHUP, the conventional "reload your config" signal.
struct Hangups {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Hangups {
    fn new() -> Hangups {
        Hangups {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).expect("SIGHUP handler"),
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        self.signal.recv().await;
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Sleeps until `when` or a stop; returns false when stopped.
async fn sleep_until(when: DateTime<Utc>, stop: &mut watch::Receiver<bool>) -> bool {
    let wait = (when - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = stop.wait_for(|s| *s) => return false,
    }
    !*stop.borrow()
}

async fn connector_loop(
    c: crate::config::Connector,
    store: Store,
    config: Arc<Config>,
    status: SharedStatus,
    mut stop: watch::Receiver<bool>,
    as_of: Option<NaiveDate>,
) {
    loop {
        let Some(next) = next_runs(&c.schedule, Utc::now(), 1).into_iter().next() else { return };
        if let Some(s) = status.lock().expect("status lock").connectors.get_mut(&c.name) {
            s.next_run = Some(next.to_rfc3339());
        }
        if !sleep_until(next, &mut stop).await {
            return;
        }
        let started = Instant::now();
        if let Some(s) = status.lock().expect("status lock").connectors.get_mut(&c.name) {
            s.last_started = Some(Utc::now().to_rfc3339());
        }
        let outcome = run_connector(&c, &store, &config, as_of).await;
        let mut guard = status.lock().expect("status lock");
        if let Some(s) = guard.connectors.get_mut(&c.name) {
            s.runs += 1;
            s.last_duration_ms = Some(started.elapsed().as_millis() as u64);
            s.last_outcome = Some(match &outcome {
                Ok(o) => o.as_str().into(),
                Err(e) => format!("error: {e}"),
            });
            match outcome {
                Ok(Outcome::Ok) => s.failing_in_a_row = 0,
                // Another process ran it: that says nothing of how this connector fares.
                Ok(Outcome::Skipped) => {}
                Ok(Outcome::Failed) | Err(_) => {
                    s.failures += 1;
                    s.failing_in_a_row += 1;
                }
            }
        }
    }
}

/// 00:05 UTC every day: windows move with the date, so stages change with no new
/// activity (a company turns `inactive` on its 60th quiet day); the CRM must see it.
async fn daily_rescore(store: Store, config: Arc<Config>, mut stop: watch::Receiver<bool>, as_of: Option<NaiveDate>) {
    loop {
        let Some(next) = next_runs("0 5 0 * * *", Utc::now(), 1).into_iter().next() else { return };
        if !sleep_until(next, &mut stop).await {
            return;
        }
        match score_and_persist(&store, &config.model, as_of.unwrap_or_else(today)).await {
            Ok(scores) => tracing::info!(companies = scores.len(), "daily rescore done"),
            Err(e) => tracing::error!(error = %e, "daily rescore failed"),
        }
    }
}
