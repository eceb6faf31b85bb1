//! Renders sync plans, run summaries and the sync log for people (tables) and tools (JSON).

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::mapping::as_text;
use super::sync::SyncReport;
use crate::output::{Column, TERMINAL_WIDTH, fit_table, wrap};
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

/// The plan of a dry run as a table, in 80 columns unless `wide`: the changes column is
/// shortened with `…` (`--wide` or `--format json` shows it whole).
pub fn plan_table(reports: &[SyncReport], wide: bool) -> String {
    const COLUMNS: [Column; 3] = [Column::left("company", 0), Column::left("stage", 0), Column::elided("changes")];
    let width = (!wide).then_some(TERMINAL_WIDTH);
    let mut out = String::new();
    for r in reports {
        let against = if r.live || r.reconcile { "the CRM's current values" } else { "the last accepted state" };
        // Companies that match no record (or several) are not written: they change no field.
        let (skipped, written): (Vec<_>, Vec<_>) = r.plan.items.iter().partition(|i| r.unmatched.contains_key(&i.domain));
        let fields: usize = written.iter().map(|i| i.after.len()).sum();
        let mut head = format!("{} ({}): {} companies, {fields} fields would change", r.connector, r.kind, written.len());
        if !skipped.is_empty() {
            let ambiguous = skipped.iter().filter(|i| !r.unmatched[&i.domain].is_empty()).count();
            let _ = write!(head, "; {} not found and {ambiguous} ambiguous would be skipped", skipped.len() - ambiguous);
        }
        let _ = write!(head, " (dry run against {against})");
        out.push_str(&fit_text(&head, width));
        if let Some(e) = &r.error {
            out.push_str(&fit_text(&format!("  error: {e}"), width));
        }
        if let Some(p) = &r.paused {
            out.push_str(&fit_text(&format!("  paused: {p}"), width));
        }
        let rows: Vec<Vec<String>> = r
            .plan
            .items
            .iter()
            .map(|item| {
                let before = serde_json::to_value(&item.before).unwrap_or(Value::Null);
                let after = serde_json::to_value(&item.after).unwrap_or(Value::Null);
                let (stage, what) = match (r.unmatched.get(&item.domain), item.accepted_stage) {
                    (Some(ids), _) if ids.is_empty() => (
                        format!("not found: {}", item.stage.as_str()),
                        "skipped: no CRM record holds this domain and create_missing is off".to_owned(),
                    ),
                    (Some(ids), _) => (format!("ambiguous: {}", item.stage.as_str()), format!("skipped: matches CRM records {}", ids.join(", "))),
                    (None, Some(s)) if s != item.stage => (format!("{} → {}", s.as_str(), item.stage.as_str()), changes_text(&before, &after)),
                    (None, Some(s)) => (s.as_str().to_owned(), changes_text(&before, &after)),
                    (None, None) => (format!("new: {}", item.stage.as_str()), changes_text(&before, &after)),
                };
                vec![item.domain.clone(), stage, what]
            })
            .collect();
        if !rows.is_empty() {
            let (table, _) = fit_table(&COLUMNS, &rows, width.map(|w| w - 2));
            for line in table.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        if !r.plan.skipped_dead.is_empty() {
            out.push_str(&fit_text(&format!("  skipped (dead, see `log --status dead`): {}", r.plan.skipped_dead.join(", ")), width));
        }
        if !r.triggers.is_empty() {
            const TRIGGER_COLUMNS: [Column; 3] = [Column::left("company", 0), Column::left("action", 0), Column::elided("target")];
            let count: usize = r.triggers.values().map(Vec::len).sum();
            out.push_str(&fit_text(&format!("  triggers that would fire: {count}"), width));
            let rows: Vec<Vec<String>> = r
                .triggers
                .iter()
                .flat_map(|(domain, list)| {
                    list.iter().map(move |t| {
                        let action = if t.retry { format!("{} (retry)", t.action) } else { t.action.clone() };
                        vec![domain.clone(), action, t.target.clone()]
                    })
                })
                .collect();
            let (table, _) = fit_table(&TRIGGER_COLUMNS, &rows, width.map(|w| w - 4));
            for line in table.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    out
}

/// A line of prose: wrapped to the terminal's width under its own indentation, or whole
/// with `--wide`.
fn fit_text(text: &str, width: Option<usize>) -> String {
    let Some(width) = width else {
        return format!("{text}\n");
    };
    let body = text.trim_start_matches(' ');
    let indent = &text[..text.len() - body.len()];
    wrap(body, width.saturating_sub(indent.len()).max(20)).lines().map(|l| format!("{indent}{l}\n")).collect()
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
        reconcile: bool,
        skipped_dead: &'a [String],
        /// Pending firings of companies without a change in this plan.
        triggers_pending: Vec<Pending<'a>>,
    }
    #[derive(serde::Serialize)]
    struct Pending<'a> {
        domain: &'a str,
        #[serde(flatten)]
        trigger: &'a super::triggers::TriggerPreview,
    }
    #[derive(serde::Serialize)]
    struct Item<'a> {
        accepted_stage: Option<crate::scoring::Stage>,
        changes: std::collections::BTreeMap<&'a str, Change<'a>>,
        /// The records an ambiguous domain matches.
        #[serde(skip_serializing_if = "Option::is_none")]
        crm_ids: Option<&'a [String]>,
        domain: &'a str,
        /// `not_found` or `ambiguous`: a real run skips the company.
        #[serde(skip_serializing_if = "Option::is_none")]
        lookup: Option<&'static str>,
        new_record: bool,
        stage: crate::scoring::Stage,
        /// The triggers a real run would fire for this company.
        triggers: &'a [super::triggers::TriggerPreview],
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
            reconcile: r.reconcile,
            error: &r.error,
            triggers_pending: r
                .triggers
                .iter()
                .filter(|(d, _)| !r.plan.items.iter().any(|i| &i.domain == *d))
                .flat_map(|(domain, list)| list.iter().map(move |trigger| Pending { domain, trigger }))
                .collect(),
            items: r
                .plan
                .items
                .iter()
                .map(|i| Item {
                    crm_ids: r.unmatched.get(&i.domain).filter(|ids| !ids.is_empty()).map(Vec::as_slice),
                    lookup: r.unmatched.get(&i.domain).map(|ids| if ids.is_empty() { "not_found" } else { "ambiguous" }),
                    domain: &i.domain,
                    stage: i.stage,
                    accepted_stage: i.accepted_stage,
                    new_record: i.new_record,
                    triggers: r.triggers.get(&i.domain).map(Vec::as_slice).unwrap_or(&[]),
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

/// An error as the summary, the logs and the sync log keep it: a CRM's or a hook's
/// answer may echo a secret or personal data (an owner's email, a client's IP).
pub fn loggable(error: &str) -> String {
    crate::personal_data::redact_personal_data(&crate::redaction::redact(error)).into_owned()
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
    if r.unmatched_waiting > 0 {
        let _ = write!(line, "; {} unmatched as last looked up (not asked again yet)", r.unmatched_waiting);
    }
    let _ = write!(line, "; {} API calls, {} server rate-limit waits, {} pacing waits", t.api_calls, t.server_waits, t.pacing_waits);
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
    crate::redaction::redact(&line).into_owned()
}

/// The sync log for people: runs, then records, each a table in 80 columns unless
/// `wide` (the least needed columns are left out and the fields or error shortened;
/// a last line says what `--wide` adds).
pub fn log_table(runs: &[RunRow], records: &[RecordRow], wide: bool) -> String {
    const RUNS: [Column; 11] = [
        Column::right("run", 0),
        Column::elided("connector"),
        Column::left("started (UTC)", 0),
        Column::left("status", 0),
        Column::right("planned", 3),
        Column::right("sent", 0),
        Column::right("accepted", 4),
        Column::right("failed", 0),
        Column::right("api calls", 1),
        // Waits the CRM asked for (429, Retry-After), then oql-sync's own pacing.
        Column::right("server waits", 2),
        Column::right("pacing", 5),
    ];
    const RECORDS: [Column; 6] = [
        Column::right("run", 0),
        Column::left("connector", 2),
        Column::left("company", 0),
        Column::left("crm id", 1),
        Column::left("outcome", 0),
        Column::elided("fields"),
    ];
    let width = (!wide).then_some(TERMINAL_WIDTH);
    let mut out = String::new();
    let mut hidden: Vec<&str> = Vec::new();
    if !runs.is_empty() {
        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    r.connector.clone(),
                    short_time(&r.started_at),
                    r.status.clone(),
                    r.planned.to_string(),
                    r.sent.to_string(),
                    r.accepted.to_string(),
                    r.failed.to_string(),
                    r.api_calls.to_string(),
                    r.server_waits.to_string(),
                    r.pacing_waits.to_string(),
                ]
            })
            .collect();
        let (table, dropped) = fit_table(&RUNS, &rows, width);
        out.push_str(&table);
        hidden.extend(dropped);
        for r in runs.iter().filter(|r| r.error.is_some()) {
            out.push_str(&fit_text(&format!("run {} error: {}", r.id, r.error.as_deref().unwrap_or_default()), width));
        }
    }
    if !records.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        // Fields are shortened to fit; an error is the one thing an operator must read
        // whole, so it goes on its own wrapped lines under its record.
        let mut errors: Vec<Option<&str>> = Vec::new();
        let rows: Vec<Vec<String>> = records
            .iter()
            .map(|r| {
                let mut what = changes_text(&r.before, &r.after);
                if let Some(t) = r.after.get("trigger").and_then(|t| t.as_str()) {
                    what = t.to_owned();
                }
                errors.push(r.error.as_deref());
                vec![r.run_id.to_string(), r.connector.clone(), r.domain.clone(), r.crm_id.clone().unwrap_or_else(|| "-".into()), r.outcome.clone(), what]
            })
            .collect();
        let (table, dropped) = fit_table(&RECORDS, &rows, width);
        let mut lines = table.lines();
        if let Some(header) = lines.next() {
            let _ = writeln!(out, "{header}");
        }
        for (line, error) in lines.zip(&errors) {
            let _ = writeln!(out, "{line}");
            if let Some(e) = error {
                out.push_str(&fit_text(&format!("      error: {e}"), width));
            }
        }
        hidden.extend(dropped);
        if width.is_some() && rows.iter().any(|r| r[5].chars().count() > 30) {
            hidden.push("whole fields");
        }
    }
    if out.is_empty() {
        out.push_str("the sync log has no matching entries\n");
    } else if !hidden.is_empty() {
        out.push_str(&fit_text(&format!("(--wide shows {}; --format json shows everything)", hidden.join(", ")), width));
    }
    out
}

/// `2026-10-31T12:00:00.123Z` as `2026-10-31 12:00:00`.
fn short_time(t: &str) -> String {
    t.get(..19).map(|s| s.replacen('T', " ", 1)).unwrap_or_else(|| t.to_owned())
}

pub fn log_json(runs: &[RunRow], records: &[RecordRow]) -> String {
    let mut text = serde_json::to_string_pretty(&json!({ "runs": runs, "records": records })).unwrap_or_default();
    text.push('\n');
    text
}
