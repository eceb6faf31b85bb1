//! Charts drawn on the server as SVG: no script, printable, readable by screen readers
//! (a title and a description on each chart, a title on each mark) and by tests as text.

use chrono::NaiveDate;
use maud::{Markup, html};

use crate::scoring::Stage;

/// Each stage's colour: at least 4.5:1 against white, and told apart by more than hue
/// (the legend and each mark's title name the stage).
pub fn colour(stage: Stage) -> &'static str {
    match stage {
        Stage::Interest => "#7a5c00",
        Stage::Investigation => "#1f5fa8",
        Stage::Experimentation => "#a63d12",
        Stage::OngoingUsage => "#2a6e2f",
        Stage::Inactive => "#555555",
    }
}

/// The stage's name for people.
pub fn label(stage: Stage) -> &'static str {
    match stage {
        Stage::Interest => "interest",
        Stage::Investigation => "investigation",
        Stage::Experimentation => "experimentation",
        Stage::OngoingUsage => "ongoing usage",
        Stage::Inactive => "inactive",
    }
}

/// A round upper bound for an axis.
fn nice_max(max: u64) -> u64 {
    let max = max.max(1);
    let mut step = 1;
    while step * 10 < max {
        step *= 10;
    }
    max.div_ceil(step) * step
}

/// Companies per stage now, as horizontal bars.
pub fn funnel(counts: &[u64; 5]) -> Markup {
    let (w, row, left) = (640.0, 34.0, 150.0);
    let h = row * 5.0 + 10.0;
    let max = *counts.iter().max().unwrap_or(&0).max(&1) as f64;
    let total: u64 = counts.iter().sum();
    html! {
        svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="funnel-title funnel-desc" viewBox=(format!("0 0 {w} {h}")) class="chart" {
            title id="funnel-title" { "Companies by stage now" }
            desc id="funnel-desc" {
                (total) " companies: "
                @for (i, s) in Stage::ALL.iter().enumerate() { (label(*s)) " " (counts[i]) @if i < 4 { ", " } }
            }
            @for (i, s) in Stage::ALL.iter().enumerate() {
                @let y = 5.0 + i as f64 * row;
                @let bw = ((w - left - 70.0) * counts[i] as f64 / max).max(if counts[i] > 0 { 2.0 } else { 0.0 });
                g {
                    title { (label(*s)) ": " (counts[i]) " companies" }
                    text x=(left - 8.0) y=(y + row / 2.0 + 5.0) text-anchor="end" class="axis" { (label(*s)) }
                    rect x=(left) y=(y + 4.0) width=(format!("{bw:.1}")) height=(row - 10.0) fill=(colour(*s)) {}
                    text x=(left + bw + 6.0) y=(y + row / 2.0 + 5.0) class="value" { (counts[i]) }
                }
            }
        }
    }
}

/// Companies per stage on each day, one line a stage.
pub fn history(days: &[(NaiveDate, [u64; 5])], from: NaiveDate, to: NaiveDate) -> Markup {
    let (w, h, left, right, top, bottom) = (740.0, 280.0, 56.0, 150.0, 12.0, 40.0);
    let span = ((to - from).num_days().max(1)) as f64;
    let max = nice_max(days.iter().flat_map(|(_, c)| c.iter().copied()).max().unwrap_or(0));
    let x = |d: NaiveDate| left + (w - left - right) * ((d - from).num_days() as f64 / span);
    let y = |n: u64| top + (h - top - bottom) * (1.0 - n as f64 / max as f64);
    let ticks = [0, max / 2, max];
    html! {
        svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="history-title history-desc" viewBox=(format!("0 0 {w} {h}")) class="chart" {
            title id="history-title" { "Companies by stage per day, " (from) " to " (to) }
            desc id="history-desc" {
                @if days.is_empty() { "No day recorded yet: the daily rescore records one a day." }
                @else { (days.len()) " days recorded; the table below the chart lists them." }
            }
            @for t in ticks {
                line x1=(left) x2=(w - right) y1=(y(t)) y2=(y(t)) class="grid" {}
                text x=(left - 6.0) y=(y(t) + 4.0) text-anchor="end" class="axis" { (t) }
            }
            @for d in [from, from + (to - from) / 2, to] {
                text x=(x(d)) y=(h - bottom + 18.0) text-anchor="middle" class="axis" { (d) }
            }
            @for (i, s) in Stage::ALL.iter().enumerate() {
                @let points: Vec<String> = days.iter().map(|(d, c)| format!("{:.1},{:.1}", x(*d), y(c[i]))).collect();
                g {
                    title { (label(*s)) }
                    @if points.len() == 1 {
                        circle cx=(x(days[0].0)) cy=(y(days[0].1[i])) r="3" fill=(colour(*s)) {}
                    } @else if !points.is_empty() {
                        polyline points=(points.join(" ")) fill="none" stroke=(colour(*s)) stroke-width="2" {}
                    }
                    rect x=(w - right + 12.0) y=(top + i as f64 * 20.0) width="12" height="12" fill=(colour(*s)) {}
                    text x=(w - right + 30.0) y=(top + i as f64 * 20.0 + 11.0) class="axis" { (label(*s)) }
                }
            }
        }
    }
}

/// A company's stage over time: one lane a stage, a bar for each span spent in it.
pub fn timeline(changes: &[(NaiveDate, Stage)], as_of: NaiveDate) -> Markup {
    let (w, lane, left, right) = (720.0, 26.0, 130.0, 16.0);
    let h = lane * 5.0 + 34.0;
    let Some(&(first, _)) = changes.first() else {
        return html! { p { "No stage yet." } };
    };
    let span = ((as_of - first).num_days() + 1).max(1) as f64;
    let x = |d: NaiveDate| left + (w - left - right) * ((d - first).num_days() as f64 / span);
    let lanes = [Stage::OngoingUsage, Stage::Experimentation, Stage::Investigation, Stage::Interest, Stage::Inactive];
    let lane_of = |s: Stage| lanes.iter().position(|l| *l == s).unwrap_or(0) as f64;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="timeline-title timeline-desc" viewBox=(format!("0 0 {w} {h}")) class="chart" {
            title id="timeline-title" { "Stage timeline, " (first) " to " (as_of) }
            desc id="timeline-desc" {
                @for (i, (d, s)) in changes.iter().enumerate() { (label(*s)) " from " (d) @if i + 1 < changes.len() { "; " } }
            }
            @for (i, s) in lanes.iter().enumerate() {
                text x=(left - 8.0) y=(i as f64 * lane + lane / 2.0 + 5.0) text-anchor="end" class="axis" { (label(*s)) }
                line x1=(left) x2=(w - right) y1=((i + 1) as f64 * lane) y2=((i + 1) as f64 * lane) class="grid" {}
            }
            @for (i, (d, s)) in changes.iter().enumerate() {
                @let end = changes.get(i + 1).map_or(as_of + chrono::TimeDelta::days(1), |(e, _)| *e);
                @let (x0, x1) = (x(*d), x(end));
                rect x=(format!("{x0:.1}")) y=(lane_of(*s) * lane + 4.0) width=(format!("{:.1}", (x1 - x0).max(2.0))) height=(lane - 8.0) fill=(colour(*s)) {
                    title { (label(*s)) " from " (d) " to " (end - chrono::TimeDelta::days(1)) }
                }
            }
            text x=(left) y=(h - 8.0) class="axis" { (first) }
            text x=(w - right) y=(h - 8.0) text-anchor="end" class="axis" { (as_of) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn charts_name_what_they_show_in_text() {
        let f = funnel(&[3, 2, 1, 0, 4]).into_string();
        assert!(f.contains("<title id=\"funnel-title\">") && f.contains("10 companies: interest 3, investigation 2"), "{f}");
        assert!(f.contains("<title>inactive: 4 companies</title>"), "{f}");
        let t = timeline(&[(d("2026-01-01"), Stage::Interest), (d("2026-01-10"), Stage::Investigation)], d("2026-02-01")).into_string();
        assert!(t.contains("<title>interest from 2026-01-01 to 2026-01-09</title>"), "{t}");
        assert!(t.contains("<title>investigation from 2026-01-10 to 2026-02-01</title>"), "{t}");
        let h = history(&[(d("2026-01-01"), [1, 0, 0, 0, 0]), (d("2026-01-02"), [1, 1, 0, 0, 0])], d("2025-07-06"), d("2026-01-02")).into_string();
        assert!(h.contains("2 days recorded") && h.contains("<polyline"), "{h}");
    }
}
