//! Renders company scores for people (table) and tools (JSON, CSV).
//! JSON follows the output contract of `spec/scoring.md`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::scoring::signals::centi_points;
use crate::scoring::{CompanyScore, Stage};

/// JSON with one-space indents, like the spec's golden files.
pub fn json(scores: &[CompanyScore]) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    scores.serialize(&mut ser).expect("scores serialize");
    let mut text = String::from_utf8(out).expect("JSON is UTF-8");
    text.push('\n');
    text
}

const CSV_COLUMNS: [&str; 19] = [
    "domain", "stage", "peak_stage", "stage_since", "score", "first_seen", "last_seen", "downloads_30d",
    "views_30d", "community_30d", "telemetry_30d", "actors_90d", "versions_90d", "upgrading", "churn_risk",
    "events_30d", "actors_30d", "events_mom", "events_wow",
];

fn score_text(micro: i64) -> String {
    let c = centi_points(micro);
    format!("{}.{:02}", c / 100, c % 100)
}

fn tenths_text(t: Option<i64>) -> String {
    t.map(|t| format!("{}{}.{}", if t < 0 { "-" } else { "" }, t.abs() / 10, t.abs() % 10))
        .unwrap_or_default()
}

pub fn csv(scores: &[CompanyScore]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_COLUMNS).expect("in-memory write");
    for s in scores {
        w.write_record([
            s.domain.clone(),
            s.stage.as_str().into(),
            s.peak_stage.as_str().into(),
            s.stage_since.to_string(),
            score_text(s.score),
            s.first_seen.to_string(),
            s.last_seen.to_string(),
            s.downloads_30d.to_string(),
            s.views_30d.to_string(),
            s.community_30d.to_string(),
            s.telemetry_30d.to_string(),
            s.actors_90d.to_string(),
            s.versions_90d.to_string(),
            s.upgrading.to_string(),
            s.churn_risk.to_string(),
            s.events_30d.to_string(),
            s.actors_30d.to_string(),
            tenths_text(s.events_mom),
            tenths_text(s.events_wow),
        ])
        .expect("in-memory write");
    }
    String::from_utf8(w.into_inner().expect("in-memory flush")).expect("CSV is UTF-8")
}

/// A table for a terminal, then one line counting companies by stage.
pub fn table(scores: &[CompanyScore], as_of: chrono::NaiveDate) -> String {
    let headers = ["DOMAIN", "STAGE", "SCORE", "SINCE", "PEAK", "LAST SEEN", "DL 30D", "VIEWS 30D", "COMM 30D", "TELEM 30D", "ACTORS 90D", "SIGNALS"];
    let rows: Vec<[String; 12]> = scores
        .iter()
        .map(|s| {
            let mut flags = Vec::new();
            if s.upgrading {
                flags.push("upgrading");
            }
            if s.churn_risk {
                flags.push("churn risk");
            }
            [
                s.domain.clone(),
                s.stage.as_str().into(),
                score_text(s.score),
                s.stage_since.to_string(),
                s.peak_stage.as_str().into(),
                s.last_seen.to_string(),
                s.downloads_30d.to_string(),
                s.views_30d.to_string(),
                s.community_30d.to_string(),
                s.telemetry_30d.to_string(),
                s.actors_90d.to_string(),
                flags.join(", "),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let numeric = |i: usize| (2..=2).contains(&i) || (6..=10).contains(&i);
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            if numeric(i) {
                let _ = write!(l, "{cell:>w$}");
            } else {
                let _ = write!(l, "{cell:<w$}");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out.push('\n');
    out.push_str(&stage_summary(scores, as_of));
    out.push('\n');
    out
}

/// "36 companies as of 2026-10-31: 5 ongoing_usage, 4 experimentation, …"
pub fn stage_summary(scores: &[CompanyScore], as_of: chrono::NaiveDate) -> String {
    let order = [Stage::OngoingUsage, Stage::Experimentation, Stage::Investigation, Stage::Interest, Stage::Inactive];
    let parts: Vec<String> = order
        .iter()
        .map(|st| format!("{} {}", scores.iter().filter(|s| s.stage == *st).count(), st.as_str()))
        .collect();
    format!(
        "{} {} as of {as_of}: {}",
        scores.len(),
        if scores.len() == 1 { "company" } else { "companies" },
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_render_with_fixed_decimals() {
        assert_eq!(score_text(283_250_000), "283.25");
        assert_eq!(score_text(0), "0.00");
        assert_eq!(tenths_text(Some(-983)), "-98.3");
        assert_eq!(tenths_text(Some(-5)), "-0.5");
        assert_eq!(tenths_text(None), "");
    }
}
