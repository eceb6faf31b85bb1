//! Stage gates and the daily stage timeline.
//!
//! `inactive` (rule 2: a former lead that went cold), `peak_stage` and `stage_since`
//! all look at the raw stage of every day since the company's first activity, so the
//! timeline is computed day by day; each day costs a handful of prefix-sum lookups.

use serde::Serialize;

use super::model::Model;
use super::DailySeries;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Interest,
    Investigation,
    Experimentation,
    OngoingUsage,
    /// Not part of the "higher" order of the gates; sorts last only for convenience.
    Inactive,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Interest,
        Stage::Investigation,
        Stage::Experimentation,
        Stage::OngoingUsage,
        Stage::Inactive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Interest => "interest",
            Stage::Investigation => "investigation",
            Stage::Experimentation => "experimentation",
            Stage::OngoingUsage => "ongoing_usage",
            Stage::Inactive => "inactive",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// ISO week index of a day number: weeks start on Monday, and 1970-01-01 was a
/// Thursday. A running index needs no ISO week-year arithmetic: the weeks around a
/// year change are consecutive numbers like any others.
pub fn week_of(day: i32) -> i32 {
    (day + 3).div_euclid(7)
}

fn week_start(week: i32) -> i32 {
    week * 7 - 3
}

/// True when two consecutive ISO weeks each hold a view dated in the window.
fn view_weeks(series: &DailySeries, from: i32, to: i32) -> bool {
    let from = from.max(series.first_day);
    if from > to {
        return false;
    }
    let mut previous = false;
    for week in week_of(from)..=week_of(to) {
        let start = week_start(week);
        let has = series.views(start.max(from), (start + 6).min(to)) > 0;
        if has && previous {
            return true;
        }
        previous = has;
    }
    false
}

/// `raw_stage(d)`: the first gate that holds.
pub fn raw_stage(series: &DailySeries, model: &Model, d: i32) -> Stage {
    let w = &model.windows;
    let t = &model.thresholds;
    let last = |n: i32| (d - n + 1, d);
    let (s0, s1) = last(w.score);
    let score = series.points(s0, s1);

    let period = w.ongoing_period;
    let every_period_active = (0..w.ongoing_periods).all(|p| {
        let to = d - p * period;
        let from = to - period + 1;
        series.views(from, to) + series.usage(from, to) > 0
    });
    if score >= t.ongoing_usage_score && every_period_active {
        return Stage::OngoingUsage;
    }

    let (r0, r1) = last(w.recent);
    let (e0, e1) = last(w.extended);
    let active_recent = series.events(r0, r1) > 0;
    let recent_branch = series.usage(r0, r1) >= t.experimentation_recent_usage
        && series.views(r0, r1) >= t.experimentation_recent_views;
    let extended_branch = series.usage(e0, e1) >= t.experimentation_extended_usage
        && series.views(e0, e1) >= t.experimentation_extended_views;
    if score >= t.experimentation_score && active_recent && (recent_branch || extended_branch) {
        return Stage::Experimentation;
    }

    let (u0, u1) = last(w.investigation_usage);
    let (v0, v1) = last(w.view_weeks);
    if score >= t.investigation_score
        || series.usage(u0, u1) >= t.investigation_usage
        || view_weeks(series, v0, v1)
    {
        return Stage::Investigation;
    }
    Stage::Interest
}

/// Raw and final stage of every day from the first activity to the as-of date.
pub struct StageTimeline {
    first_day: i32,
    raw: Vec<Stage>,
    stage: Vec<Stage>,
}

impl StageTimeline {
    pub fn build(series: &DailySeries, model: &Model, end: i32) -> StageTimeline {
        let first_day = series.first_day;
        let days = (end - first_day + 1).max(0) as usize;
        let mut raw = Vec::with_capacity(days);
        let mut stage = Vec::with_capacity(days);
        let mut peak_before = Stage::Interest;
        for d in first_day..=end {
            let r = raw_stage(series, model, d);
            let idle = series.events(d - model.windows.inactive + 1, d) == 0;
            let went_cold = r == Stage::Interest && peak_before >= Stage::Investigation;
            stage.push(if idle || went_cold { Stage::Inactive } else { r });
            raw.push(r);
            peak_before = peak_before.max(r);
        }
        StageTimeline { first_day, raw, stage }
    }

    /// `stage(D)`.
    pub fn stage_at_end(&self) -> Stage {
        *self.stage.last().expect("timeline has at least one day")
    }

    /// `peak_stage(D)`: the highest raw stage from the first activity to D.
    pub fn peak(&self) -> Stage {
        self.raw.iter().copied().max().unwrap_or(Stage::Interest)
    }

    /// The earliest day from which the stage has been what it is at D, every day since.
    pub fn stage_since(&self) -> i32 {
        let now = self.stage_at_end();
        let unchanged = self.stage.iter().rev().take_while(|&&s| s == now).count();
        self.first_day + (self.stage.len() - unchanged) as i32
    }

    /// The stage on `day`; `None` before the first activity or after the as-of date.
    pub fn stage_on(&self, day: i32) -> Option<Stage> {
        usize::try_from(day - self.first_day).ok().and_then(|i| self.stage.get(i).copied())
    }

    /// Every change of stage as (first day, stage), oldest first.
    pub fn changes(&self) -> Vec<(i32, Stage)> {
        let mut out: Vec<(i32, Stage)> = Vec::new();
        for (i, &s) in self.stage.iter().enumerate() {
            if out.last().is_none_or(|&(_, prev)| prev != s) {
                out.push((self.first_day + i as i32, s));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::day_number;
    use chrono::NaiveDate;

    fn day(s: &str) -> i32 {
        day_number(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap())
    }

    #[test]
    fn weeks_start_on_monday_across_a_year_change() {
        // 2026-12-28 is a Monday; 2027-01-03 the Sunday of the same ISO week (2026-W53).
        assert_eq!(week_of(day("2026-12-28")), week_of(day("2027-01-03")));
        assert_eq!(week_of(day("2027-01-04")), week_of(day("2027-01-03")) + 1);
        assert_eq!(week_of(day("2026-12-27")) + 1, week_of(day("2026-12-28")));
    }
}
