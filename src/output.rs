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

pub fn score_text(micro: i64) -> String {
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

/// A column of a terminal table: its header, whether numbers align right, and how soon
/// it is dropped when the table is too wide (higher `drop_rank` goes first; 0 never).
pub struct Column {
    pub header: &'static str,
    pub right: bool,
    pub drop_rank: u8,
    /// The one column that may be shortened with `…` when even the kept ones are too wide.
    pub elide: bool,
}

impl Column {
    pub const fn left(header: &'static str, drop_rank: u8) -> Column {
        Column { header, right: false, drop_rank, elide: false }
    }
    pub const fn right(header: &'static str, drop_rank: u8) -> Column {
        Column { header, right: true, drop_rank, elide: false }
    }
    pub const fn elided(header: &'static str) -> Column {
        Column { header, right: false, drop_rank: 0, elide: true }
    }
}

/// Terminal tables fit this many columns unless `--wide` asks for every column.
pub const TERMINAL_WIDTH: usize = 80;

/// Renders rows under `columns`, aligned, two spaces apart. With a `width`, columns are
/// dropped by rank until the table fits, then the elidable column is shortened; the
/// dropped headers are returned so the caller can say `--wide` shows them.
pub fn fit_table(columns: &[Column], rows: &[Vec<String>], width: Option<usize>) -> (String, Vec<&'static str>) {
    let cell_width = |i: usize| rows.iter().map(|r| r[i].chars().count()).chain([columns[i].header.len()]).max().unwrap_or(0);
    let mut widths: Vec<usize> = (0..columns.len()).map(cell_width).collect();
    let mut kept: Vec<usize> = (0..columns.len()).collect();
    let total = |kept: &[usize], widths: &[usize]| kept.iter().map(|&i| widths[i]).sum::<usize>() + 2 * kept.len().saturating_sub(1);
    let mut dropped = Vec::new();
    if let Some(limit) = width {
        while total(&kept, &widths) > limit {
            let Some((pos, _)) = kept.iter().enumerate().filter(|(_, i)| columns[**i].drop_rank > 0).max_by_key(|(pos, i)| (columns[**i].drop_rank, *pos)) else {
                break;
            };
            dropped.push(columns[kept[pos]].header);
            kept.remove(pos);
        }
        let over = total(&kept, &widths).saturating_sub(limit);
        if over > 0 {
            if let Some(&i) = kept.iter().find(|i| columns[**i].elide) {
                widths[i] = widths[i].saturating_sub(over).max(columns[i].header.len()).max(8);
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (n, &i) in kept.iter().enumerate() {
            if n > 0 {
                l.push_str("  ");
            }
            let w = widths[i];
            let cell = elide(cells[i], w);
            if columns[i].right {
                let _ = write!(l, "{cell:>w$}");
            } else {
                let _ = write!(l, "{cell:<w$}");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(columns.iter().map(|c| c.header).collect());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    dropped.reverse();
    (out, dropped)
}

/// `text` cut to `width` characters, its end replaced by `…` when cut.
fn elide(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// How a `companies` listing was narrowed, so the summary can say it.
#[derive(Debug, Default, Clone)]
pub struct Listing {
    /// `--stage` given.
    pub stage: Option<Stage>,
    /// Companies before `--stage` and `--limit`.
    pub total: usize,
    /// `--limit` given.
    pub limit: Option<usize>,
    /// `--wide`: every column, whatever the width.
    pub wide: bool,
}

/// A table for a terminal (80 columns unless `--wide`), then one line counting
/// companies by stage, and what was left out.
pub fn table(scores: &[CompanyScore], as_of: chrono::NaiveDate, listing: &Listing) -> String {
    const COLUMNS: [Column; 12] = [
        Column::elided("DOMAIN"),
        Column::left("STAGE", 0),
        Column::right("SCORE", 0),
        Column::left("SINCE", 2),
        Column::left("PEAK", 6),
        Column::left("LAST SEEN", 3),
        Column::right("DL 30D", 4),
        Column::right("VIEWS 30D", 5),
        Column::right("COMM 30D", 8),
        Column::right("TELEM 30D", 9),
        Column::right("ACTORS 90D", 7),
        Column::left("SIGNALS", 1),
    ];
    let shown = &scores[..listing.limit.map_or(scores.len(), |l| l.min(scores.len()))];
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|s| {
            let mut flags = Vec::new();
            if s.upgrading {
                flags.push("upgrading");
            }
            if s.churn_risk {
                flags.push("churn risk");
            }
            vec![
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
    let (mut out, dropped) = fit_table(&COLUMNS, &rows, (!listing.wide).then_some(TERMINAL_WIDTH));
    out.push('\n');
    let mut notes = vec![stage_summary(scores, as_of)];
    if let Some(stage) = listing.stage {
        notes.push(format!("filtered: --stage {} ({} of {} companies)", stage.as_str(), scores.len(), listing.total));
    }
    if shown.len() < scores.len() {
        notes.push(format!("showing the top {} of {} (--limit)", shown.len(), scores.len()));
    }
    if !dropped.is_empty() {
        notes.push(format!("--wide shows {}", dropped.join(", ")));
    }
    for note in notes {
        out.push_str(&wrap(&note, TERMINAL_WIDTH));
    }
    out
}

/// Words of `text` in lines of at most `width` characters, later lines indented by two.
pub fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.trim().is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = "  ".to_owned();
        } else if !line.trim().is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(line.trim_end());
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

    #[test]
    fn tables_drop_columns_by_rank_then_elide_to_fit() {
        let columns = [Column::elided("NAME"), Column::right("N", 0), Column::left("EXTRA", 1)];
        let rows = vec![vec!["a-very-long-company-domain.example.com".to_owned(), "12".to_owned(), "something".to_owned()]];
        let (text, dropped) = fit_table(&columns, &rows, Some(20));
        assert_eq!(dropped, ["EXTRA"]);
        assert!(text.lines().all(|l| l.chars().count() <= 20), "{text}");
        assert!(text.contains("a-very-long-com…  12"), "{text}");
        let (wide, none) = fit_table(&columns, &rows, None);
        assert!(none.is_empty() && wide.contains("something"));
    }
}
