//! Stage change → nurture action. A firing is created in the same transaction that
//! records the CRM accepting the stage change, keyed by (connector, company, change
//! number, trigger), so each change fires each matching trigger once; the key travels
//! as the webhook `Idempotency-Key`, so even a crash between sending and recording
//! leaves receivers a way to drop the repeat.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::http::{HttpClient, RateLimit, RetryPolicy};
use serde::Serialize;

use crate::scoring::{CompanyScore, Stage};
use crate::sinks::mapping::{Action, FirstSync, Mapping, Trigger};
use crate::sinks::plan::PlanItem;
use crate::sinks::template::{plain, variables_of};
use crate::sinks::webhook::post_event;
use crate::sinks::{Sink, SinkError};
use crate::store::{Firing, Store, StoreError};

/// The firings an accepted stage change owes. `changes` is how many stage changes the
/// CRM accepted for the company before this one.
#[allow(clippy::too_many_arguments)]
pub fn firings(
    connector: &str,
    mapping: &Mapping,
    item: &PlanItem,
    changes: i64,
    crm_id: Option<&str>,
    score: &CompanyScore,
    breakdown: Value,
    as_of: NaiveDate,
) -> Vec<Firing> {
    let from = item.accepted_stage;
    owed(mapping, from, item.stage)
        .map(|(i, t)| {
            let seed = format!(
                "{connector}\n{}\n{}\n{}\n{}\n{i}",
                item.domain,
                changes + 1,
                from.map(|s| s.as_str()).unwrap_or(""),
                item.stage.as_str()
            );
            let key = idempotency_key(&seed);
            let signals = signals_of(score);
            let event = json!({
                "type": "oql.stage_changed",
                "id": key,
                "connector": connector,
                "company": item.domain,
                "crm_id": crm_id,
                "from": from.map(|s| s.as_str()),
                "to": item.stage.as_str(),
                "score": serde_json::to_value(score).ok().and_then(|v| v.get("score").cloned()),
                "as_of": as_of.format("%Y-%m-%d").to_string(),
                "breakdown": breakdown,
                "signals": signals,
            });
            Firing {
                key,
                domain: item.domain.clone(),
                trigger: i,
                action: serde_json::to_value(&t.action).unwrap_or(Value::Null),
                from,
                to: item.stage,
                event,
            }
        })
        .collect()
}

/// The triggers (with their index) a stage change accepted by the CRM owes. A change
/// from no stage is a company's first accepted sync: with `first_sync: baseline` it
/// records the stage and owes nothing.
pub fn owed(mapping: &Mapping, from: Option<Stage>, to: Stage) -> impl Iterator<Item = (usize, &Trigger)> {
    let baseline = from.is_none() && mapping.first_sync == FirstSync::Baseline;
    mapping.triggers.iter().enumerate().filter(move |(_, t)| !baseline && from != Some(to) && t.matches(from, to))
}

/// A trigger as a dry run lists it: the action's name and what it acts on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TriggerPreview {
    pub action: String,
    pub target: String,
    /// A firing left over from an earlier run (failed, or cut short by a crash), which
    /// the next run retries.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retry: bool,
}

impl TriggerPreview {
    /// Read from the action's serialized form, so every action kind is described the
    /// same way: `{name: "id"}` or `{name: {id|channel|url|subject: ...}}`. A URL or a
    /// token read from the environment is named by its variable, never shown.
    pub fn of(action: &Value, retry: bool) -> TriggerPreview {
        let (name, body) = match action.as_object().and_then(|o| o.iter().next()) {
            Some((name, body)) => (name.clone(), body),
            None => (action.as_str().unwrap_or("?").to_owned(), &Value::Null),
        };
        let target = match body {
            Value::String(s) => s.clone(),
            Value::Object(o) => {
                let shown = ["id", "channel", "subject", "url"].iter().find_map(|k| o.get(*k).and_then(Value::as_str).map(str::to_owned));
                let env = o.iter().find(|(k, _)| k.ends_with("_env")).and_then(|(_, v)| v.as_str()).map(|v| format!("${v}"));
                shown.or(env).unwrap_or_else(|| "the company's record".into())
            }
            _ => "the company's record".into(),
        };
        TriggerPreview { action: name, target, retry }
    }
}

/// The signals of a score as events and templates carry them: the output contract's,
/// then the insight signals when the score has them.
pub fn signals_of(score: &CompanyScore) -> Value {
    let mut signals = serde_json::to_value(score).unwrap_or(Value::Null);
    if let (Some(insight), Value::Object(map)) = (&score.insight, &mut signals)
        && let Ok(Value::Object(extra)) = serde_json::to_value(insight.as_ref())
    {
        map.extend(extra);
    }
    signals
}

/// A stable key for one delivery: 32 hex digits of the SHA-256 of what identifies it.
pub fn idempotency_key(seed: &str) -> String {
    Sha256::digest(seed.as_bytes())[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Fires every pending firing of a connector (of the companies in `only`, when given);
/// returns (fired, failed).
pub async fn fire_pending<S: Sink>(
    sink: &mut S,
    store: &Store,
    connector: &str,
    run_id: i64,
    dead_after: i64,
    ids: &HashMap<String, String>,
    only: Option<&std::collections::BTreeSet<String>>,
) -> Result<(i64, i64), StoreError> {
    let mut pending = store.pending_firings(connector).await?;
    pending.retain(|f| only.is_none_or(|o| o.contains(&f.domain)));
    if pending.is_empty() {
        return Ok((0, 0));
    }
    let mut webhooks: Option<HttpClient> = None;
    let (mut fired, mut failed) = (0, 0);
    let mut record = async |firing: &Firing, outcome: Result<(), SinkError>| -> Result<(), StoreError> {
        let error = outcome.err().map(|e| super::report::loggable(&e.to_string()));
        if let Some(e) = &error {
            tracing::warn!(connector, company = %firing.domain, error = %e, "trigger failed; retried next run");
            failed += 1;
        } else {
            fired += 1;
        }
        store.firing_done(run_id, connector, firing, error.as_deref(), dead_after).await
    };
    // Webhooks are recorded one by one; the sink's own actions go together, so it can
    // batch them (one list membership call for many companies), and are recorded after.
    let mut for_sink: Vec<(&Firing, Option<&str>)> = Vec::new();
    for firing in &pending {
        let outcome = match serde_json::from_value::<Action>(firing.action.clone()) {
            Ok(Action::Webhook(target)) => {
                if webhooks.is_none() {
                    webhooks = HttpClient::new(&format!("{connector}/triggers"), &[("default", RateLimit::new(10, 1))], RetryPolicy::default()).ok();
                }
                let event = match &target.text {
                    None => Ok(firing.event.clone()),
                    Some(t) => t.render(&variables_of(&firing.event), plain).map(|text| {
                        let mut event = firing.event.clone();
                        event["text"] = Value::String(text);
                        event
                    }),
                };
                match (&webhooks, target.resolve(), event) {
                    (_, _, Err(e)) => Err(e),
                    (Some(http), Ok(url), Ok(event)) => post_event(http, &url, &firing.key, &event).await,
                    (None, _, _) => Err(SinkError::Api("cannot build an HTTP client".into())),
                    (_, Err(e), _) => Err(e),
                }
            }
            Ok(_) => {
                for_sink.push((firing, ids.get(&firing.domain).map(String::as_str)));
                continue;
            }
            Err(e) => Err(SinkError::Api(format!("unreadable trigger action: {e}"))),
        };
        record(firing, outcome).await?;
    }
    if !for_sink.is_empty() {
        let outcomes = sink.fire_all(&for_sink).await;
        for ((firing, _), outcome) in for_sink.iter().zip(outcomes) {
            record(firing, outcome).await?;
        }
    }
    Ok((fired, failed))
}
