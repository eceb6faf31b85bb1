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

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use tokio::sync::watch;

use crate::config::Config;
use crate::cycle::{CycleError, polls, run_connector, score_and_persist, today};
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
}

#[derive(Default)]
pub struct Status {
    pub connectors: BTreeMap<String, ConnectorStatus>,
    pub started: Option<String>,
}

pub type SharedStatus = Arc<Mutex<Status>>;

/// The next times of a cron expression (validated at config load).
pub fn next_runs(schedule: &str, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    cron::Schedule::from_str(schedule).map(|s| s.after(&after).take(n).collect()).unwrap_or_default()
}

/// Runs connectors on their schedules until a shutdown signal.
pub async fn run_daemon(store: Store, config: Arc<Config>, listen: Option<std::net::SocketAddr>, as_of: Option<NaiveDate>) -> Result<(), CycleError> {
    let status: SharedStatus = Arc::new(Mutex::new(Status { started: Some(Utc::now().to_rfc3339()), ..Default::default() }));
    for c in &config.connectors {
        if polls(c) || c.is_sink() {
            status.lock().expect("status lock").connectors.insert(
                c.name.clone(),
                ConnectorStatus { kind: c.kind.as_str(), schedule: c.schedule.clone(), ..Default::default() },
            );
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(addr) = listen {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| CycleError::Listen { addr, source })?;
        let app = crate::health::router(store.clone(), config.clone(), status.clone());
        let mut stop = stop_rx.clone();
        tracing::info!(%addr, "health and metrics endpoint listening");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        });
    }
    let mut tasks = Vec::new();
    for c in config.connectors.iter().filter(|c| polls(c) || c.is_sink()).cloned() {
        let (store, config, status, stop) = (store.clone(), config.clone(), status.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(async move { connector_loop(c, store, config, status, stop, as_of).await }));
    }
    {
        let (store, config, stop) = (store.clone(), config.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(async move { daily_rescore(store, config, stop, as_of).await }));
    }
    wait_for_signal().await;
    tracing::info!("shutting down: no new runs; waiting for runs in flight");
    let _ = stop_tx.send(true);
    let all = futures_util::future::join_all(tasks);
    tokio::select! {
        _ = all => tracing::info!("stopped cleanly"),
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("runs still in flight after the grace period; exiting"),
        _ = wait_for_signal() => {
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        }
    }
    Ok(())
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
                Ok(true) => "ok".into(),
                Ok(false) => "failed".into(),
                Err(e) => format!("error: {e}"),
            });
            if !matches!(outcome, Ok(true)) {
                s.failures += 1;
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
