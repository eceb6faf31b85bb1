//! Sinks: where scores go. Each destination says how to match a company, how to write a
//! batch and how to read each record's outcome; `sync` owns everything else (planning,
//! batching, the accepted state, retries across runs, triggers and the sync log).

pub mod bisect;
pub mod file;
pub mod hubspot;
pub mod mapping;
pub mod plan;
pub mod report;
pub mod salesforce;
pub mod common_room;
pub mod sync;
pub mod template;
pub mod triggers;
pub mod webhook;

use std::collections::HashMap;

use serde_json::Value;

use crate::http::HttpError;
use crate::store::Firing;
use mapping::Desired;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error("{0}")]
    Api(String),
    /// The connector stopped for this run on purpose (e.g. the CRM's daily API
    /// allocation); what it did not send waits for the next run.
    #[error("paused: {0}")]
    Paused(String),
    /// The configuration does not fit the CRM (a mapped field it lacks, a wrong source
    /// id): the run stops at the first sign, and no record is charged a failed attempt,
    /// since none of them is at fault.
    #[error("configuration error: {0}")]
    Config(String),
    #[error("cannot write {path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
}

/// What a domain matched in the CRM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    Found(String),
    Missing,
    Ambiguous(Vec<String>),
}

/// One record of a write batch.
#[derive(Clone, Debug)]
pub struct WriteRecord {
    pub domain: String,
    /// `None`: create the record.
    pub crm_id: Option<String>,
    /// The changed fields, or every field for a record being created.
    pub fields: Desired,
    /// Every value the record should hold, as the mapping renders them (labels,
    /// rounding), for sinks that describe the record in words.
    pub desired: Desired,
    /// The company's full score, for sinks that send events.
    pub event: Value,
    /// (stage the CRM last accepted, stage now) when the stage changed.
    pub stage_change: Option<(Option<crate::scoring::Stage>, crate::scoring::Stage)>,
    /// No value of this record was ever accepted: an upsert may create it.
    pub new_record: bool,
    /// The company's name as its activities gave it, for records that may be created
    /// (a CRM that requires a record name gets it, else the domain).
    pub company_name: Option<String>,
}

/// The CRM's word on one record of a batch, in the batch's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Written { crm_id: String, created: bool },
    Failed(String),
    /// The cached CRM id no longer exists: the record is searched for again next run.
    Gone(String),
}

/// A destination. Async methods run on the sync task; implementations describe requests
/// and read responses, and leave pacing and retrying to `http.rs`.
#[allow(async_fn_in_trait)]
pub trait Sink {
    /// Most records one write request may carry.
    fn batch_size(&self) -> usize;

    /// API calls and waits so far (the server's and the sink's own pacing), for the
    /// sync log.
    fn stats(&self) -> crate::http::CallCounts;

    /// Gets the CRM ready for the mapping (e.g. creates missing custom properties).
    /// Not called by dry runs.
    async fn prepare(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// What `check_schema` depends on (the mapping, the API version): the check runs
    /// again only when it changes. `None`: this sink has no schema to check.
    fn schema_fingerprint(&self) -> Option<String> {
        None
    }

    /// Checks, before any write, that the CRM holds every mapped field with a type that
    /// takes its values; a misfit is a `SinkError::Config` naming every one.
    async fn check_schema(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Finds the CRM records of domains. Read-only.
    async fn resolve(&mut self, domains: &[String]) -> Result<HashMap<String, Match>, SinkError>;

    /// Whether `read` returns what the CRM holds: `update: if_empty` and `--reconcile`
    /// need it. `Err` says why this destination cannot.
    fn reads_back(&self) -> Result<(), String> {
        Err("this connector kind keeps no values oql-sync could read back".into())
    }

    /// The current values of `fields` of matched records, by domain; a record the CRM
    /// no longer holds is left out. Read-only; used by `sync --dry-run --live`,
    /// `--reconcile` and `update: if_empty`.
    async fn read(&mut self, records: &[(String, String)], fields: &[String]) -> Result<HashMap<String, Desired>, SinkError>;

    /// Writes one batch (at most `batch_size` records) and reports each record.
    async fn write(&mut self, batch: &[WriteRecord]) -> Result<Vec<WriteOutcome>, SinkError>;

    /// Runs a trigger action of this sink (a webhook action is run by `triggers`).
    async fn fire(&mut self, firing: &Firing, crm_id: Option<&str>) -> Result<(), SinkError>;

    /// Runs several trigger actions; the outcome of each, in order. Sinks whose API
    /// takes many records in one call (HubSpot list memberships) send fewer requests.
    async fn fire_all(&mut self, firings: &[(&Firing, Option<&str>)]) -> Vec<Result<(), SinkError>> {
        let mut out = Vec::with_capacity(firings.len());
        for (firing, crm_id) in firings {
            out.push(self.fire(firing, *crm_id).await);
        }
        out
    }

    /// Called once with every in-scope record's desired values before writes, for sinks
    /// that keep a full snapshot (the file sink).
    async fn snapshot(&mut self, _rows: &[(String, Desired)]) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Compares values as CRMs store them: `42.5` and `"42.50"` and `"42.5"` are the same
/// number, `null` and `""` are both empty.
pub fn same_crm_value(a: &Value, b: &Value) -> bool {
    let text = |v: &Value| mapping::as_text(v);
    let (ta, tb) = (text(a), text(b));
    if ta == tb {
        return true;
    }
    match (ta.trim().parse::<f64>(), tb.trim().parse::<f64>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
