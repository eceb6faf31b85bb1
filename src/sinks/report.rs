//! Renders sync plans, run summaries and the sync log for people (tables) and tools (JSON).

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::mapping::as_text;
use super::sync::SyncReport;
use crate::store::{RecordRow, RunRow};

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "∅".into(),
        other => as_text(other),
    }
}

fn changes_text(before: &Value, after: &Value) -> String {
    let Some(after) = after.as_object() else {
        return String::new();
    };
    after
        .iter()
        .map(|(k, v)| match before.get(k) {
            Some(b) => format!("{k}: {} → {}", cell(b), cell(v)),
            None => format!("{k}: {}", cell(v)),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The plan of a dry run as a table.
pub fn plan_table(reports: &[SyncReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let against = if r.live { "the CRM's current values" } else { "the last accepted state" };
        let _ = writeln!(
            out,
            "{} ({}): {} companies, {} fields would change (dry run against {against})",
            r.connector,
            r.kind,
            r.plan.items.len(),
            r.plan.changed_fields()
        );
        if let Some(e) = &r.error {
            let _ = writeln!(out, "  error: {e}");
        }
        let width = r.plan.items.iter().map(|i| i.domain.len()).max().unwrap_or(0).max(7);
        for item in &r.plan.items {
            let stage = match item.accepted_stage {
                Some(s) if s != item.stage => format!("{} → {}", s.as_str(), item.stage.as_str()),
                Some(s) => s.as_str().to_owned(),
                None => format!("new: {}", item.stage.as_str()),
            };
            let before = serde_json::to_value(&item.before).unwrap_or(Value::Null);
            let after = serde_json::to_value(&item.after).unwrap_or(Value::Null);
            let _ = writeln!(out, "  {:width$}  {:34}  {}", item.domain, stage, changes_text(&before, &after));
        }
        if !r.plan.skipped_dead.is_empty() {
            let _ = writeln!(out, "  skipped (dead, see `log --status dead`): {}", r.plan.skipped_dead.join(", "));
        }
    }
    out
}

pub fn plan_json(reports: &[SyncReport]) -> String {
    // Serialized from borrowed views, not through a `serde_json::Value` tree: a plan of
    // every company of a large store would otherwise be held a second time, as maps.
    #[derive(serde::Serialize)]
    // Fields in alphabetical order, as the maps of earlier versions printed them.
    struct Report<'a> {
        connector: &'a str,
        error: &'a Option<String>,
        items: Vec<Item<'a>>,
        kind: &'a str,
        live: bool,
        skipped_dead: &'a [String],
    }
    #[derive(serde::Serialize)]
    struct Item<'a> {
        accepted_stage: Option<crate::scoring::Stage>,
        changes: std::collections::BTreeMap<&'a str, Change<'a>>,
        domain: &'a str,
        new_record: bool,
        stage: crate::scoring::Stage,
    }
    #[derive(serde::Serialize)]
    struct Change<'a> {
        after: &'a Value,
        before: &'a Value,
    }
    let value: Vec<Report> = reports
        .iter()
        .map(|r| Report {
            connector: &r.connector,
            kind: r.kind,
            live: r.live,
            error: &r.error,
            items: r
                .plan
                .items
                .iter()
                .map(|i| Item {
                    domain: &i.domain,
                    stage: i.stage,
                    accepted_stage: i.accepted_stage,
                    new_record: i.new_record,
                    changes: i.after.iter().map(|(k, v)| (k.as_str(), Change { before: i.before.get(k).unwrap_or(&Value::Null), after: v })).collect(),
                })
                .collect(),
            skipped_dead: &r.plan.skipped_dead,
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// One line per sink run.
pub fn summary(r: &SyncReport) -> String {
    let t = &r.totals;
    let mut line = format!(
        "{}: {} planned, {} sent, {} accepted ({} created), {} failed, {} ambiguous, {} not found, {} triggers fired",
        r.connector, t.planned, t.sent, t.accepted, r.created, t.failed, r.ambiguous, r.not_found, r.triggers_fired
    );
    if r.triggers_failed > 0 {
        let _ = write!(line, " ({} failed)", r.triggers_failed);
    }
    let _ = write!(line, "; {} API calls, {} rate-limit waits", t.api_calls, t.rate_limit_waits);
    if !r.dead.is_empty() {
        let _ = write!(line, "; now dead: {}", r.dead.join(", "));
    }
    if let Some(e) = &r.error {
        let _ = write!(line, "\n  error: {e}");
    } else if let Some(f) = &r.first_failure {
        let more = if r.totals.failed > 1 { format!(" (and {} more; `oql-sync log --status failed`)", r.totals.failed - 1) } else { String::new() };
        let _ = write!(line, "\n  failed: {f}{more}");
    }
    if let Some(p) = &r.paused {
        let _ = write!(line, "\n  paused: {p}");
    }
    line.push('\n');
    crate::secrets::redact(&line).into_owned()
}

pub fn log_table(runs: &[RunRow], records: &[RecordRow]) -> String {
    let mut out = String::new();
    if !runs.is_empty() {
        let _ = writeln!(
            out,
            "{:>5}  {:16}  {:24}  {:8}  {:>7}  {:>5}  {:>8}  {:>6}  {:>9}  {:>10}",
            "run", "connector", "started", "status", "planned", "sent", "accepted", "failed", "api_calls", "rate_waits"
        );
        for r in runs {
            let _ = writeln!(
                out,
                "{:>5}  {:16}  {:24}  {:8}  {:>7}  {:>5}  {:>8}  {:>6}  {:>9}  {:>10}",
                r.id, r.connector, r.started_at, r.status, r.planned, r.sent, r.accepted, r.failed, r.api_calls, r.rate_limit_waits
            );
            if let Some(e) = &r.error {
                let _ = writeln!(out, "       error: {e}");
            }
        }
    }
    if !records.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(out, "{:>5}  {:16}  {:24}  {:12}  {:10}  fields / error", "run", "connector", "company", "crm_id", "outcome");
        for r in records {
            let mut what = changes_text(&r.before, &r.after);
            if let Some(t) = r.after.get("trigger").and_then(|t| t.as_str()) {
                what = t.to_owned();
            }
            if let Some(e) = &r.error {
                what = if what.is_empty() { e.clone() } else { format!("{what} — {e}") };
            }
            let _ = writeln!(
                out,
                "{:>5}  {:16}  {:24}  {:12}  {:10}  {what}",
                r.run_id,
                r.connector,
                r.domain,
                r.crm_id.as_deref().unwrap_or("-"),
                r.outcome
            );
        }
    }
    if out.is_empty() {
        out.push_str("the sync log has no matching entries\n");
    }
    out
}

pub fn log_json(runs: &[RunRow], records: &[RecordRow]) -> String {
    let mut text = serde_json::to_string_pretty(&json!({ "runs": runs, "records": records })).unwrap_or_default();
    text.push('\n');
    text
}
