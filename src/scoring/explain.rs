//! Why a company has its stage and score, in words a sales rep can follow: points by
//! category and tier with the caps that bit, every gate of every stage with the counts
//! behind it, the stage timeline, and the activities that earned the most. Pure, like
//! the rest of scoring.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use serde::Serialize;

use super::stages::week_of;
use super::{CompanyScore, MICRO, Micro, Model, ScoringActivity, Stage, award_walk, date_of_day, day_number, score_company, stage_changes};
use crate::activity::Kind;

#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub score: CompanyScore,
    pub points: Vec<Bucket>,
    pub gates: Vec<Gate>,
    pub timeline: Vec<Change>,
    pub top_activities: Vec<Top>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Bucket {
    pub category: &'static str,
    pub tier: &'static str,
    pub activities: u32,
    /// Points awarded in the score window, and what the caps held back.
    pub points: f64,
    pub capped: f64,
    pub day_cap: f64,
    pub month_cap: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Gate {
    pub stage: Stage,
    pub rule: String,
    pub held: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub date: NaiveDate,
    pub stage: Stage,
}

#[derive(Clone, Debug, Serialize)]
pub struct Top {
    pub date: NaiveDate,
    pub source: String,
    pub what: String,
    pub tier: &'static str,
    pub points: f64,
}

fn pts(m: Micro) -> f64 {
    (m as f64 / MICRO as f64 * 100.0).round() / 100.0
}

/// Explains a company at `as_of`; `None` when it has no activity by then.
pub fn explain(domain: &str, activities: &[ScoringActivity], model: &Model, as_of: NaiveDate) -> Option<Explanation> {
    let score = score_company(domain, activities, model, as_of)?;
    let end = day_number(as_of);
    let w = &model.windows;
    let t = &model.thresholds;
    let walk = award_walk(activities, model, as_of);
    let in_days = |n: i32| move |day: i32| day > end - n;

    // Points by bucket over the score window.
    let mut points = Vec::new();
    for category in super::model::Category::ALL {
        for tier in crate::activity::Tier::ALL {
            let rows: Vec<_> = walk.iter().filter(|a| a.category == category && a.tier == tier && in_days(w.score)(a.day)).collect();
            if rows.is_empty() {
                continue;
            }
            let rule = model.tier_points(category, tier);
            let awarded: Micro = rows.iter().map(|a| a.award).sum();
            let uncapped: Micro = rows.iter().map(|a| a.points).sum();
            points.push(Bucket {
                category: category.as_str(),
                tier: tier.as_str(),
                activities: rows.len() as u32,
                points: pts(awarded),
                capped: pts(uncapped - awarded),
                day_cap: pts(rule.day_cap),
                month_cap: pts(rule.month_cap),
            });
        }
    }

    // The counts the gates read.
    let count = |n: i32, f: &dyn Fn(Kind) -> bool| walk.iter().filter(|a| in_days(n)(a.day) && f(a.activity.kind)).count() as u32;
    let views = |n| count(n, &|k: Kind| k.is_view());
    let usage = |n| count(n, &|k: Kind| k.is_usage());
    let any = |n| count(n, &|_| true);
    let s = score.score;
    let weeks: BTreeSet<i32> = walk.iter().filter(|a| a.activity.kind.is_view() && in_days(w.view_weeks)(a.day)).map(|a| week_of(a.day)).collect();
    let view_weeks = weeks.iter().any(|wk| weeks.contains(&(wk + 1)));
    let periods: Vec<bool> = (0..w.ongoing_periods)
        .map(|p| {
            let (hi, lo) = (end - p * w.ongoing_period, end - (p + 1) * w.ongoing_period);
            walk.iter().any(|a| a.day <= hi && a.day > lo && (a.activity.kind.is_view() || a.activity.kind.is_usage()))
        })
        .collect();
    let score_text = |need: Micro| format!("score {:.2} ≥ {:.2}", pts(s), pts(need));
    let gates = vec![
        Gate {
            stage: Stage::OngoingUsage,
            rule: format!(
                "{} and each of the last {} periods of {} days holds a view, download or telemetry ({})",
                score_text(t.ongoing_usage_score),
                w.ongoing_periods,
                w.ongoing_period,
                periods.iter().map(|p| if *p { "yes" } else { "no" }).collect::<Vec<_>>().join(", ")
            ),
            held: s >= t.ongoing_usage_score && periods.iter().all(|p| *p),
        },
        Gate {
            stage: Stage::Experimentation,
            rule: format!(
                "{}, active in the last {} days ({} activities), and either {} usage ≥ {} with {} views ≥ {} in {} days, or {} usage ≥ {} with {} views ≥ {} in {} days",
                score_text(t.experimentation_score),
                w.recent,
                any(w.recent),
                usage(w.recent),
                t.experimentation_recent_usage,
                views(w.recent),
                t.experimentation_recent_views,
                w.recent,
                usage(w.extended),
                t.experimentation_extended_usage,
                views(w.extended),
                t.experimentation_extended_views,
                w.extended
            ),
            held: s >= t.experimentation_score
                && any(w.recent) > 0
                && ((usage(w.recent) >= t.experimentation_recent_usage && views(w.recent) >= t.experimentation_recent_views)
                    || (usage(w.extended) >= t.experimentation_extended_usage && views(w.extended) >= t.experimentation_extended_views)),
        },
        Gate {
            stage: Stage::Investigation,
            rule: format!(
                "{}, or {} downloads/telemetry ≥ {} in {} days, or views in two consecutive weeks of the last {} days ({})",
                score_text(t.investigation_score),
                usage(w.investigation_usage),
                t.investigation_usage,
                w.investigation_usage,
                w.view_weeks,
                if view_weeks { "yes" } else { "no" }
            ),
            held: s >= t.investigation_score || usage(w.investigation_usage) >= t.investigation_usage || view_weeks,
        },
        Gate {
            stage: Stage::Inactive,
            rule: format!(
                "no activity in the last {} days ({} there), or a former lead (peak {}) whose activity no longer reaches investigation",
                w.inactive,
                any(w.inactive),
                score.peak_stage.as_str()
            ),
            held: score.stage == Stage::Inactive,
        },
    ];

    let timeline = stage_changes(activities, model, as_of).into_iter().map(|(date, stage)| Change { date, stage }).collect();
    let mut top: Vec<_> = walk.iter().filter(|a| in_days(w.score)(a.day) && a.award > 0).collect();
    top.sort_by(|a, b| b.award.cmp(&a.award).then(b.day.cmp(&a.day)));
    let top_activities = top
        .into_iter()
        .take(10)
        .map(|a| {
            let act = a.activity;
            let detail = act.url.clone().or_else(|| act.package.clone().map(|p| format!("{p} {}", act.version.clone().unwrap_or_default()).trim().to_owned()));
            Top {
                date: date_of_day(a.day),
                source: act.source.clone(),
                what: format!(
                    "{}{}{}",
                    act.kind.as_str(),
                    act.action.map(|x| format!(" ({})", x.as_str())).unwrap_or_default(),
                    detail.map(|d| format!(": {d}")).unwrap_or_default()
                ),
                tier: a.tier.as_str(),
                points: pts(a.award),
            }
        })
        .collect();
    Some(Explanation { score, points, gates, timeline, top_activities })
}

/// The explanation as text for people.
pub fn render(e: &Explanation, as_of: NaiveDate) -> String {
    use std::fmt::Write as _;
    let s = &e.score;
    let mut out = format!(
        "{} is in {} since {} with a score of {:.2} (as of {as_of}; peak stage {}).\n",
        s.domain,
        s.stage.as_str(),
        s.stage_since,
        pts(s.score),
        s.peak_stage.as_str()
    );
    if let Some(scarf) = &s.scarf_stage {
        let since = s.scarf_stage_since.map(|d| format!(" since {d}")).unwrap_or_default();
        let _ = writeln!(out, "Scarf's own stage: {scarf}{since} (Scarf's rules, from its company rollup; never an input to ours).");
    }
    out.push_str("\nPoints in the last 90 days:\n");
    for b in &e.points {
        let caps = if b.capped > 0.0 { format!("; {:.2} held back by the caps ({} a day, {} a month)", b.capped, b.day_cap, b.month_cap) } else { String::new() };
        let _ = writeln!(out, "  {:<10} {:<6} {:>4} activities  {:>7.2} points{caps}", b.category, b.tier, b.activities, b.points);
    }
    out.push_str("\nStage gates (the first that holds, from the top, decides; inactive overrides):\n");
    for g in &e.gates {
        let _ = writeln!(out, "  [{}] {}: {}", if g.held { "x" } else { " " }, g.stage.as_str(), g.rule);
    }
    out.push_str("\nStage timeline:\n");
    for c in &e.timeline {
        let _ = writeln!(out, "  {}  {}", c.date, c.stage.as_str());
    }
    out.push_str("\nActivities that earned the most:\n");
    for t in &e.top_activities {
        let _ = writeln!(out, "  {}  {:>5.2}  {} [{}] via {}", t.date, t.points, t.what, t.tier, t.source);
    }
    out
}
