//! The numbers of the OQL model: the defaults of `spec/scoring.md`, and the partial
//! overrides a `scoring.yaml` may carry.
//!
//! Points are kept as integer millionths ([`Micro`]) so that sums and the score gates
//! compare exactly ("comparisons use the exact sum"), whatever decimals an override
//! uses. Overrides are validated while they are deserialized, so a bad number is
//! reported by the YAML parser with its file, line and column.

use serde::Deserialize;

use crate::activity::{Action, Kind, Tier};

/// Points in millionths of a point.
pub type Micro = i64;
pub const MICRO: Micro = 1_000_000;

/// The four point categories; a bucket is (company, category, tier).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Views,
    Downloads,
    Community,
    Telemetry,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::Views,
        Category::Downloads,
        Category::Community,
        Category::Telemetry,
    ];

    pub fn of(kind: Kind) -> Category {
        match kind {
            Kind::PageView | Kind::DocView => Category::Views,
            Kind::Download => Category::Downloads,
            Kind::Community => Category::Community,
            Kind::Telemetry => Category::Telemetry,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Views => "views",
            Category::Downloads => "downloads",
            Category::Community => "community",
            Category::Telemetry => "telemetry",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Points of one bucket and its caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierPoints {
    pub points: Micro,
    pub day_cap: Micro,
    pub month_cap: Micro,
}

/// Window lengths in days.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Windows {
    /// The score sums awards over this many days (90).
    pub score: i32,
    /// No activity for this many days makes a company inactive (60).
    pub inactive: i32,
    /// The short window of the experimentation gate and of `active_N` (30).
    pub recent: i32,
    /// The longer window of the experimentation gate's second branch (60).
    pub extended: i32,
    /// The window of the investigation gate's usage count (90).
    pub investigation_usage: i32,
    /// The window in which two consecutive ISO weeks must hold a view (90).
    pub view_weeks: i32,
    /// Length of each period ongoing usage must be active in (30)...
    pub ongoing_period: i32,
    /// ...and how many consecutive periods (3).
    pub ongoing_periods: i32,
}

/// Gate thresholds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub ongoing_usage_score: Micro,
    pub experimentation_score: Micro,
    pub investigation_score: Micro,
    pub experimentation_recent_usage: u32,
    pub experimentation_recent_views: u32,
    pub experimentation_extended_usage: u32,
    pub experimentation_extended_views: u32,
    pub investigation_usage: u32,
    /// `upgrading` holds from this many distinct versions (2).
    pub upgrading_versions: u32,
    /// `churn_risk`: the last 30 days hold at most this share of the 30 before (0.5)...
    pub churn_ratio: Micro,
    /// ...which held at least this many activities (4).
    pub churn_min_prior: u32,
}

/// How an activity without an explicit tier gets one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierRules {
    /// Views of these paths, or below them, are high.
    pub view_high_paths: Vec<String>,
    /// Views of paths starting with these are medium (as are the home page and doc views).
    pub view_medium_prefixes: Vec<String>,
    /// Downloads whose package or version contains one of these are high.
    pub download_high_markers: Vec<String>,
    /// Downloads with one of these versions (or none) are low.
    pub download_low_versions: Vec<String>,
    /// Community tier per action, indexed like [`Action::ALL`].
    pub community: [Tier; 9],
    pub telemetry: Tier,
}

/// The whole model: defaults from the spec, possibly overridden.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    /// Indexed by [`Category::index`], then [`Tier::index`].
    pub points: [[TierPoints; 3]; 4],
    pub windows: Windows,
    pub thresholds: Thresholds,
    pub tiers: TierRules,
    /// Where the `trend` signal changes word (not part of the spec's model).
    pub trend: super::insight::TrendThresholds,
}

const fn tp(points: Micro, day_cap: Micro, month_cap: Micro) -> TierPoints {
    TierPoints { points, day_cap, month_cap }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Default for Model {
    fn default() -> Self {
        const M: Micro = MICRO;
        Model {
            points: [
                // views
                [tp(M / 4, 2 * M, 10 * M), tp(M / 2, 3 * M, 20 * M), tp(M, 5 * M, 30 * M)],
                // downloads
                [tp(2 * M, 6 * M, 30 * M), tp(5 * M, 10 * M, 50 * M), tp(8 * M, 16 * M, 42 * M)],
                // community
                [tp(2 * M, 2 * M, 10 * M), tp(5 * M, 10 * M, 50 * M), tp(8 * M, 24 * M, 48 * M)],
                // telemetry
                [tp(2 * M, 6 * M, 30 * M), tp(5 * M, 10 * M, 50 * M), tp(8 * M, 16 * M, 42 * M)],
            ],
            windows: Windows {
                score: 90,
                inactive: 60,
                recent: 30,
                extended: 60,
                investigation_usage: 90,
                view_weeks: 90,
                ongoing_period: 30,
                ongoing_periods: 3,
            },
            thresholds: Thresholds {
                ongoing_usage_score: 70 * M,
                experimentation_score: 40 * M,
                investigation_score: 10 * M,
                experimentation_recent_usage: 2,
                experimentation_recent_views: 2,
                experimentation_extended_usage: 1,
                experimentation_extended_views: 2,
                investigation_usage: 1,
                upgrading_versions: 2,
                churn_ratio: M / 2,
                churn_min_prior: 4,
            },
            tiers: TierRules {
                view_high_paths: strings(&["/pricing", "/signup", "/enterprise", "/contact"]),
                view_medium_prefixes: strings(&["/docs"]),
                download_high_markers: strings(&["enterprise"]),
                download_low_versions: strings(&["latest", "nightly", "edge", "main"]),
                community: Action::ALL.map(|a| match a {
                    Action::Star | Action::Reaction | Action::Comment | Action::SlackMessage => {
                        Tier::Low
                    }
                    Action::Fork
                    | Action::IssueOpened
                    | Action::DiscussionOpened
                    | Action::SlackJoin => Tier::Medium,
                    Action::PrOpened => Tier::High,
                }),
                telemetry: Tier::Medium,
            },
            trend: super::insight::TrendThresholds::default(),
        }
    }
}

impl Model {
    pub fn tier_points(&self, category: Category, tier: Tier) -> TierPoints {
        self.points[category.index()][tier.index()]
    }

    /// The longest window any rule looks back over: activities older than this before
    /// the as-of date cannot change the score or the gates (only the timeline).
    pub fn longest_window(&self) -> i32 {
        let w = &self.windows;
        [
            w.score,
            w.inactive,
            w.recent,
            w.extended,
            w.investigation_usage,
            w.view_weeks,
            w.ongoing_period * w.ongoing_periods,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }

    /// Applies the overrides of a `scoring.yaml` onto this model.
    pub fn apply(&mut self, o: ModelOverrides) {
        if let Some(points) = o.points {
            for (category, patch) in [
                (Category::Views, points.views),
                (Category::Downloads, points.downloads),
                (Category::Community, points.community),
                (Category::Telemetry, points.telemetry),
            ] {
                let Some(patch) = patch else { continue };
                for (tier, tier_patch) in [
                    (Tier::Low, patch.low),
                    (Tier::Medium, patch.medium),
                    (Tier::High, patch.high),
                ] {
                    let Some(tier_patch) = tier_patch else { continue };
                    let slot = &mut self.points[category.index()][tier.index()];
                    set(&mut slot.points, tier_patch.points.map(|p| p.0));
                    set(&mut slot.day_cap, tier_patch.day_cap.map(|p| p.0));
                    set(&mut slot.month_cap, tier_patch.month_cap.map(|p| p.0));
                }
            }
        }
        if let Some(w) = o.windows {
            let d = |x: Option<Days>| x.map(|d| d.0);
            let s = &mut self.windows;
            set(&mut s.score, d(w.score));
            set(&mut s.inactive, d(w.inactive));
            set(&mut s.recent, d(w.recent));
            set(&mut s.extended, d(w.extended));
            set(&mut s.investigation_usage, d(w.investigation_usage));
            set(&mut s.view_weeks, d(w.view_weeks));
            set(&mut s.ongoing_period, d(w.ongoing_period));
            set(&mut s.ongoing_periods, d(w.ongoing_periods));
        }
        if let Some(t) = o.thresholds {
            let s = &mut self.thresholds;
            let p = |x: Option<Points>| x.map(|p| p.0);
            set(&mut s.ongoing_usage_score, p(t.ongoing_usage_score));
            set(&mut s.experimentation_score, p(t.experimentation_score));
            set(&mut s.investigation_score, p(t.investigation_score));
            set(&mut s.experimentation_recent_usage, t.experimentation_recent_usage);
            set(&mut s.experimentation_recent_views, t.experimentation_recent_views);
            set(&mut s.experimentation_extended_usage, t.experimentation_extended_usage);
            set(&mut s.experimentation_extended_views, t.experimentation_extended_views);
            set(&mut s.investigation_usage, t.investigation_usage);
            set(&mut s.upgrading_versions, t.upgrading_versions);
            set(&mut s.churn_ratio, t.churn_ratio.map(|r| r.0));
            set(&mut s.churn_min_prior, t.churn_min_prior);
        }
        if let Some(t) = o.tiers {
            let s = &mut self.tiers;
            if let Some(v) = t.views {
                set(&mut s.view_high_paths, v.high_paths.map(lowercase_all));
                set(&mut s.view_medium_prefixes, v.medium_prefixes.map(lowercase_all));
            }
            if let Some(d) = t.downloads {
                set(&mut s.download_high_markers, d.high_markers.map(lowercase_all));
                set(&mut s.download_low_versions, d.low_versions.map(lowercase_all));
            }
            if let Some(c) = t.community {
                for (i, action) in Action::ALL.into_iter().enumerate() {
                    let patch = match action {
                        Action::Star => c.star,
                        Action::Fork => c.fork,
                        Action::Reaction => c.reaction,
                        Action::Comment => c.comment,
                        Action::IssueOpened => c.issue_opened,
                        Action::PrOpened => c.pr_opened,
                        Action::DiscussionOpened => c.discussion_opened,
                        Action::SlackJoin => c.slack_join,
                        Action::SlackMessage => c.slack_message,
                    };
                    set(&mut s.community[i], patch);
                }
            }
            set(&mut s.telemetry, t.telemetry);
        }
        if let Some(t) = o.trend {
            let s = &mut self.trend;
            set(&mut s.surging_wow, t.surging_wow.map(|p| p.0));
            set(&mut s.surging_min_7d, t.surging_min_7d);
            set(&mut s.heating_mom, t.heating_mom.map(|p| p.0));
            set(&mut s.cooling_mom, t.cooling_mom.map(|p| p.0));
        }
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn lowercase_all(v: Vec<String>) -> Vec<String> {
    v.into_iter().map(|s| s.to_lowercase()).collect()
}

/// A non-negative number of points with at most six decimals.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
pub struct Points(pub Micro);

impl TryFrom<f64> for Points {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        let scaled = v * MICRO as f64;
        if !v.is_finite() || !(0.0..=1e9).contains(&v) {
            return Err(format!("{v} is not a number of points from 0 to 1000000000"));
        }
        if (scaled - scaled.round()).abs() > 1e-6 * scaled.abs().max(1.0) {
            return Err(format!("{v} has more than 6 decimals"));
        }
        Ok(Points(scaled.round() as Micro))
    }
}

/// A window length: 1 to 3650 days.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(try_from = "i64")]
pub struct Days(pub i32);

impl TryFrom<i64> for Days {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        if (1..=3650).contains(&v) {
            Ok(Days(v as i32))
        } else {
            Err(format!("{v} is not a number of days from 1 to 3650"))
        }
    }
}

/// A share from 0 to 1.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
pub struct Ratio(pub Micro);

impl TryFrom<f64> for Ratio {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if !(0.0..=1.0).contains(&v) {
            return Err(format!("{v} is not a ratio from 0 to 1"));
        }
        Ok(Ratio(Points::try_from(v)?.0))
    }
}

/// The shape of `scoring.yaml`: every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelOverrides {
    pub points: Option<PointsOverrides>,
    pub windows: Option<WindowOverrides>,
    pub thresholds: Option<ThresholdOverrides>,
    pub tiers: Option<TierOverrides>,
    pub trend: Option<TrendOverrides>,
}

/// `trend:` where the `trend` signal changes word; percentages as in `events_mom`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrendOverrides {
    /// `surging` needs `events_wow` at least this percentage (100)...
    pub surging_wow: Option<Percent>,
    /// ...and at least this many activities in the last 7 days (5).
    pub surging_min_7d: Option<u32>,
    /// `heating`: `events_mom` at least this percentage (25).
    pub heating_mom: Option<Percent>,
    /// `cooling`: `events_mom` at most this percentage (-25).
    pub cooling_mom: Option<Percent>,
}

/// A percentage with at most one decimal, held in tenths.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
pub struct Percent(pub i64);

impl TryFrom<f64> for Percent {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        let tenths = v * 10.0;
        if !v.is_finite() || v.abs() > 1e9 {
            return Err(format!("{v} is not a percentage"));
        }
        if (tenths - tenths.round()).abs() > 1e-6 {
            return Err(format!("{v} has more than 1 decimal"));
        }
        Ok(Percent(tenths.round() as i64))
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PointsOverrides {
    pub views: Option<CategoryOverrides>,
    pub downloads: Option<CategoryOverrides>,
    pub community: Option<CategoryOverrides>,
    pub telemetry: Option<CategoryOverrides>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryOverrides {
    pub low: Option<TierPointsOverrides>,
    pub medium: Option<TierPointsOverrides>,
    pub high: Option<TierPointsOverrides>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TierPointsOverrides {
    pub points: Option<Points>,
    pub day_cap: Option<Points>,
    pub month_cap: Option<Points>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowOverrides {
    pub score: Option<Days>,
    pub inactive: Option<Days>,
    pub recent: Option<Days>,
    pub extended: Option<Days>,
    pub investigation_usage: Option<Days>,
    pub view_weeks: Option<Days>,
    pub ongoing_period: Option<Days>,
    pub ongoing_periods: Option<Days>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdOverrides {
    pub ongoing_usage_score: Option<Points>,
    pub experimentation_score: Option<Points>,
    pub investigation_score: Option<Points>,
    pub experimentation_recent_usage: Option<u32>,
    pub experimentation_recent_views: Option<u32>,
    pub experimentation_extended_usage: Option<u32>,
    pub experimentation_extended_views: Option<u32>,
    pub investigation_usage: Option<u32>,
    pub upgrading_versions: Option<u32>,
    pub churn_ratio: Option<Ratio>,
    pub churn_min_prior: Option<u32>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TierOverrides {
    pub views: Option<ViewTierOverrides>,
    pub downloads: Option<DownloadTierOverrides>,
    pub community: Option<CommunityTierOverrides>,
    pub telemetry: Option<Tier>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewTierOverrides {
    pub high_paths: Option<Vec<String>>,
    pub medium_prefixes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DownloadTierOverrides {
    pub high_markers: Option<Vec<String>>,
    pub low_versions: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommunityTierOverrides {
    pub star: Option<Tier>,
    pub fork: Option<Tier>,
    pub reaction: Option<Tier>,
    pub comment: Option<Tier>,
    pub issue_opened: Option<Tier>,
    pub pr_opened: Option<Tier>,
    pub discussion_opened: Option<Tier>,
    pub slack_join: Option<Tier>,
    pub slack_message: Option<Tier>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_keep_six_decimals_exactly() {
        assert_eq!(Points::try_from(0.25).unwrap().0, 250_000);
        assert_eq!(Points::try_from(0.1).unwrap().0, 100_000);
        assert!(Points::try_from(0.0000001).is_err());
        assert!(Points::try_from(-1.0).is_err());
    }

    #[test]
    fn overrides_change_only_what_they_name() {
        let mut model = Model::default();
        model.apply(ModelOverrides {
            points: Some(PointsOverrides {
                views: Some(CategoryOverrides {
                    low: Some(TierPointsOverrides { points: Some(Points(MICRO)), day_cap: None, month_cap: None }),
                    medium: None,
                    high: None,
                }),
                downloads: None,
                community: None,
                telemetry: None,
            }),
            ..Default::default()
        });
        let low = model.tier_points(Category::Views, Tier::Low);
        assert_eq!(low, tp(MICRO, 2 * MICRO, 10 * MICRO));
        assert_eq!(model.tier_points(Category::Downloads, Tier::Low), Model::default().points[1][0]);
    }
}
