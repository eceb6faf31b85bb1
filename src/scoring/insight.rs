//! The signals a sales rep reads beside the score: a one-sentence `reason`, a `trend`,
//! the score's change over 30 days, and the page and package that drew the most
//! activity. They are not part of the output contract of `spec/scoring.md` (the
//! `companies --format json` array stays as the spec fixes it); mappings and message
//! templates read them. Pure like the rest of scoring: the activities and the as-of
//! date are arguments.
//!
//! They read the activities' URLs and package names, which the compact form the full
//! rescore holds leaves out, so they are computed per company, for the companies a
//! sync or a trigger needs them for.

use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDate;
use serde::Serialize;

use super::{CompanyScore, Micro, Model, ScoringActivity, Stage, award_walk, day_number, score_company};
use crate::activity::{Action, Kind, date_of};

/// The longest `reason`: a HubSpot single-line text and a Salesforce Text(255) take it.
pub const REASON_MAX: usize = 255;

/// Where `trend` changes from one word to the next (`scoring.yaml`, `trend:`).
/// Percentages are in tenths of a percent, like `events_mom` and `events_wow`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrendThresholds {
    /// `surging`: `events_wow` at least this (100%)...
    pub surging_wow: i64,
    /// ...and the last 7 days hold at least this many activities (5).
    pub surging_min_7d: u32,
    /// `heating`: `events_mom` at least this (25%).
    pub heating_mom: i64,
    /// `cooling`: `events_mom` at most this (-25%).
    pub cooling_mom: i64,
}

impl Default for TrendThresholds {
    fn default() -> Self {
        TrendThresholds { surging_wow: 1000, surging_min_7d: 5, heating_mom: 250, cooling_mom: -250 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    Cold,
    New,
    Surging,
    Heating,
    Cooling,
    Steady,
}

impl Trend {
    pub fn as_str(self) -> &'static str {
        match self {
            Trend::Cold => "cold",
            Trend::New => "new",
            Trend::Surging => "surging",
            Trend::Heating => "heating",
            Trend::Cooling => "cooling",
            Trend::Steady => "steady",
        }
    }
}

/// A company's insight signals at an as-of date.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Insight {
    pub reason: String,
    pub trend: Trend,
    /// Score at D minus score at D-30, in millionths of a point.
    #[serde(serialize_with = "super::signals::serialize_centi_points")]
    pub score_change_30d: Micro,
    /// The URL path viewed most in the last 30 days.
    pub top_page_30d: Option<String>,
    /// The package downloaded most in the last 90 days, with the newest version seen.
    pub top_package_90d: Option<String>,
}

/// The first rule that holds at D, in the order of `docs/signals.md`. A percentage
/// that is `None` (nothing to compare to) meets no threshold.
pub fn trend(score: &CompanyScore, prior_30: u32, last_7: u32, t: &TrendThresholds) -> Trend {
    if score.events_30d == 0 {
        Trend::Cold
    } else if prior_30 == 0 {
        Trend::New
    } else if score.events_wow.is_some_and(|w| w >= t.surging_wow) && last_7 >= t.surging_min_7d {
        Trend::Surging
    } else if score.events_mom.is_some_and(|m| m >= t.heating_mom) {
        Trend::Heating
    } else if score.events_mom.is_some_and(|m| m <= t.cooling_mom) {
        Trend::Cooling
    } else {
        Trend::Steady
    }
}

/// The insight signals of `score` (the company's score at `as_of`) from its activities.
pub fn insight(score: &CompanyScore, activities: &[ScoringActivity], model: &Model, as_of: NaiveDate) -> Insight {
    let end = day_number(as_of);
    let day = |a: &ScoringActivity| day_number(date_of(a.occurred_at));
    let within = |n: i32| move |a: &&ScoringActivity| (end - n + 1..=end).contains(&day(a));
    let prior_30 = activities.iter().filter(|a| (end - 59..=end - 30).contains(&day(a))).count() as u32;
    let last_7 = activities.iter().filter(within(7)).count() as u32;
    let before = as_of - chrono::TimeDelta::days(30);
    let then = score_company(&score.domain, activities, model, before).map_or(0, |s| s.score);

    let views: Vec<&ScoringActivity> = activities.iter().filter(within(30)).filter(|a| a.kind.is_view()).collect();
    let top_page_30d = most_common(views.iter().filter_map(|a| a.url.as_deref().map(url_path))).map(|(p, _)| p);
    let top_package_90d = top_package(activities.iter().filter(within(90)).filter(|a| a.kind == Kind::Download).collect());

    Insight {
        reason: reason(score, activities, model, as_of),
        trend: trend(score, prior_30, last_7, &model.trend),
        score_change_30d: score.score - then,
        top_page_30d,
        top_package_90d: top_package_90d.map(|(p, _)| p),
    }
}

/// The most frequent value, ties to the smallest; with its count.
fn most_common(values: impl Iterator<Item = String>) -> Option<(String, u32)> {
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    let best = counts.values().copied().max()?;
    counts.into_iter().find(|(_, n)| *n == best)
}

/// `oqldb 3.2.0`: the package downloaded most (ties to the smallest name) and the
/// highest version of it seen; with its downloads.
fn top_package(downloads: Vec<&ScoringActivity>) -> Option<(String, u32)> {
    let (package, n) = most_common(downloads.iter().filter_map(|a| a.package.clone()))?;
    let newest = downloads
        .iter()
        .filter(|a| a.package.as_deref() == Some(package.as_str()))
        .filter_map(|a| a.version.as_deref())
        .max_by(|x, y| version_order(x, y));
    Some((newest.map_or(package.clone(), |v| format!("{package} {v}")), n))
}

/// Versions compared by their numeric parts (`3.10.0` after `3.9.1`), then as text.
fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |v: &str| -> Vec<u64> {
        v.trim_start_matches(['v', 'V']).split(['.', '-', '+']).map_while(|p| p.parse().ok()).collect()
    };
    parts(a).cmp(&parts(b)).then_with(|| a.cmp(b))
}

/// The path of a URL (`https://x.io/pricing?a=1` → `/pricing`), without a trailing
/// slash; a bare path is kept as it is.
pub fn url_path(url: &str) -> String {
    let rest = match url.find("://") {
        Some(i) => {
            let after = &url[i + 3..];
            after.find('/').map_or("/", |j| &after[j..])
        }
        None => url,
    };
    let path = rest.split(['?', '#']).next().unwrap_or("/");
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() { "/".into() } else { trimmed.to_owned() }
}

fn stage_label(stage: Stage) -> &'static str {
    match stage {
        Stage::Interest => "Interest",
        Stage::Investigation => "Investigation",
        Stage::Experimentation => "Experimentation",
        Stage::OngoingUsage => "Ongoing usage",
        Stage::Inactive => "Inactive",
    }
}

fn plural(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One plain sentence of at most `REASON_MAX` characters: the stage and its start,
/// then the contributions of the last 90 days that earned the most points (at most
/// three), e.g. `Ongoing usage since 2026-10-28: 27 downloads of oqldb 3.2.0 from 4
/// machines; 3 views of /pricing; 2 issues opened in the last 90 days.`
pub fn reason(score: &CompanyScore, activities: &[ScoringActivity], model: &Model, as_of: NaiveDate) -> String {
    let end = day_number(as_of);
    let head = format!("{} since {}", stage_label(score.stage), score.stage_since);
    // (points, order, clause): points decide, the fixed order breaks ties.
    let mut clauses: Vec<(Micro, usize, String)> = Vec::new();
    let walk: Vec<_> = award_walk(activities, model, as_of).into_iter().filter(|a| a.day > end - 90).collect();
    let points_of = |f: &dyn Fn(&ScoringActivity) -> bool| walk.iter().filter(|a| f(a.activity)).map(|a| a.award).sum::<Micro>();
    let recent: Vec<&ScoringActivity> = walk.iter().map(|a| a.activity).collect();

    let downloads: Vec<&ScoringActivity> = recent.iter().copied().filter(|a| a.kind == Kind::Download).collect();
    if !downloads.is_empty() {
        let machines = downloads.iter().filter_map(|a| a.actor.as_deref()).collect::<HashSet<_>>().len() as u32;
        let mut text = plural(downloads.len() as u32, "download", "downloads");
        if let Some((package, _)) = top_package(downloads.clone()) {
            text.push_str(&format!(" of {package}"));
        }
        if machines > 0 {
            text.push_str(&format!(" from {}", plural(machines, "machine", "machines")));
        }
        clauses.push((points_of(&|a| a.kind == Kind::Download), 0, text));
    }
    let telemetry = recent.iter().filter(|a| a.kind == Kind::Telemetry).count() as u32;
    if telemetry > 0 {
        clauses.push((points_of(&|a| a.kind == Kind::Telemetry), 1, plural(telemetry, "telemetry event", "telemetry events")));
    }
    let views: Vec<&ScoringActivity> = recent.iter().copied().filter(|a| a.kind.is_view()).collect();
    if !views.is_empty() {
        let top = most_common(views.iter().filter_map(|a| a.url.as_deref().map(url_path)));
        let text = match top {
            Some((path, n)) if n as usize == views.len() => format!("{} of {path}", plural(n, "view", "views")),
            Some((path, n)) => format!("{} ({n} of {path})", plural(views.len() as u32, "page view", "page views")),
            None => plural(views.len() as u32, "page view", "page views"),
        };
        clauses.push((points_of(&|a| a.kind.is_view()), 2, text));
    }
    for (i, action) in Action::ALL.into_iter().enumerate() {
        let n = recent.iter().filter(|a| a.kind == Kind::Community && a.action == Some(action)).count() as u32;
        if n == 0 {
            continue;
        }
        let text = match action {
            Action::Star => plural(n, "star", "stars"),
            Action::Fork => plural(n, "fork", "forks"),
            Action::Reaction => plural(n, "reaction", "reactions"),
            Action::Comment => plural(n, "comment", "comments"),
            Action::IssueOpened => plural(n, "issue opened", "issues opened"),
            Action::PrOpened => plural(n, "pull request opened", "pull requests opened"),
            Action::DiscussionOpened => plural(n, "discussion opened", "discussions opened"),
            Action::SlackJoin => plural(n, "Slack join", "Slack joins"),
            Action::SlackMessage => plural(n, "Slack message", "Slack messages"),
        };
        clauses.push((points_of(&|a| a.kind == Kind::Community && a.action == Some(action)), 3 + i, text));
    }
    let other = recent.iter().filter(|a| a.kind == Kind::Community && a.action.is_none()).count() as u32;
    if other > 0 {
        clauses.push((points_of(&|a| a.kind == Kind::Community && a.action.is_none()), 20, plural(other, "community activity", "community activities")));
    }
    clauses.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    clauses.truncate(3);
    if clauses.is_empty() {
        return fit(format!("{head}: no activity in the last 90 days (last seen {}).", score.last_seen));
    }
    // Clauses go from the end until the sentence fits.
    while !clauses.is_empty() {
        let texts: Vec<&str> = clauses.iter().map(|c| c.2.as_str()).collect();
        let sentence = format!("{head}: {} in the last 90 days.", texts.join("; "));
        if sentence.chars().count() <= REASON_MAX || clauses.len() == 1 {
            return fit(sentence);
        }
        clauses.pop();
    }
    fit(format!("{head}."))
}

/// Cuts a sentence to `REASON_MAX` characters (never inside a character), ending with `…`.
fn fit(s: String) -> String {
    if s.chars().count() <= REASON_MAX {
        return s;
    }
    let mut out: String = s.chars().take(REASON_MAX - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::Tier;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn act(date: &str, kind: Kind, n: usize) -> ScoringActivity {
        let nanos = chrono::DateTime::parse_from_rfc3339(&format!("{date}T12:00:00Z")).unwrap().timestamp_nanos_opt().unwrap();
        ScoringActivity {
            occurred_at: nanos,
            source: "s".into(),
            id: format!("{date}-{n}"),
            kind,
            action: None,
            tier: None,
            actor: Some(format!("m{}", n % 4)),
            package: Some("oqldb".into()),
            version: Some(if n % 2 == 0 { "3.10.0" } else { "3.9.1" }.into()),
            url: None,
        }
    }

    fn view(date: &str, url: &str, n: usize) -> ScoringActivity {
        ScoringActivity { url: Some(url.into()), package: None, version: None, ..act(date, Kind::PageView, n) }
    }

    fn community(date: &str, action: Action, n: usize) -> ScoringActivity {
        ScoringActivity { action: Some(action), tier: Some(Tier::Medium), package: None, version: None, ..act(date, Kind::Community, n) }
    }

    fn run(acts: &[ScoringActivity], as_of: &str) -> (CompanyScore, Insight) {
        let model = Model::default();
        let s = score_company("acme.com", acts, &model, d(as_of)).unwrap();
        let i = insight(&s, acts, &model, d(as_of));
        (s, i)
    }

    #[test]
    fn reason_names_the_stage_and_the_top_contributions_of_90_days() {
        let mut acts: Vec<ScoringActivity> = (0..27).map(|n| act(&format!("2026-10-{:02}", 1 + n % 28), Kind::Download, n)).collect();
        acts.extend((0..3).map(|n| view("2026-10-20", "https://oql.dev/pricing?utm=x", 100 + n)));
        acts.push(view("2026-10-21", "https://oql.dev/docs/", 200));
        acts.extend((0..2).map(|n| community("2026-10-22", Action::IssueOpened, 300 + n)));
        let (s, i) = run(&acts, "2026-10-30");
        assert_eq!(
            i.reason,
            format!(
                "{} since {}: 27 downloads of oqldb 3.10.0 from 4 machines; 2 issues opened; 4 page views (3 of /pricing) in the last 90 days.",
                stage_label(s.stage),
                s.stage_since
            )
        );
        assert_eq!(i.top_page_30d.as_deref(), Some("/pricing"));
        assert_eq!(i.top_package_90d.as_deref(), Some("oqldb 3.10.0"), "3.10.0 is newer than 3.9.1");
    }

    #[test]
    fn reason_never_exceeds_255_characters() {
        let long = format!("pkg-{}", "x".repeat(300));
        let acts: Vec<ScoringActivity> =
            (0..3).map(|n| ScoringActivity { package: Some(long.clone()), ..act("2026-10-01", Kind::Download, n) }).collect();
        let (_, i) = run(&acts, "2026-10-30");
        assert_eq!(i.reason.chars().count(), REASON_MAX);
        assert!(i.reason.ends_with('…'));
    }

    #[test]
    fn a_company_without_recent_activity_says_when_it_was_last_seen() {
        let acts = [act("2026-01-05", Kind::Download, 0)];
        let (_, i) = run(&acts, "2026-06-30");
        assert_eq!(i.reason, "Inactive since 2026-03-06: no activity in the last 90 days (last seen 2026-01-05).");
        assert_eq!(i.trend, Trend::Cold);
        assert_eq!(i.score_change_30d, 0);
        assert_eq!((i.top_page_30d, i.top_package_90d), (None, None));
    }

    #[test]
    fn trend_takes_the_first_rule_that_holds() {
        // Nothing in D-59..D-30: new, whatever the last week did.
        let fresh: Vec<ScoringActivity> = (0..8).map(|n| act("2026-06-28", Kind::Download, n)).collect();
        assert_eq!(run(&fresh, "2026-06-30").1.trend, Trend::New);
        // Prior 30 days: 4 activities; last 30: 10 of which 8 in the last 7 days and 2 the week before.
        let mut acts: Vec<ScoringActivity> = (0..4).map(|n| act("2026-05-15", Kind::Download, n)).collect();
        acts.extend((0..2).map(|n| act("2026-06-20", Kind::Download, 10 + n)));
        acts.extend((0..8).map(|n| act("2026-06-28", Kind::Download, 20 + n)));
        let (s, i) = run(&acts, "2026-06-30");
        assert_eq!(s.events_wow, Some(3000));
        assert_eq!(i.trend, Trend::Surging);
        // The same counts with a 4-activity week: +150% mom, not surging: heating.
        let t = TrendThresholds::default();
        assert_eq!(trend(&s, 4, 4, &t), Trend::Heating);
        let cooling = CompanyScore { events_mom: Some(-250), events_wow: None, ..s.clone() };
        assert_eq!(trend(&cooling, 4, 0, &t), Trend::Cooling);
        let steady = CompanyScore { events_mom: Some(-249), ..cooling.clone() };
        assert_eq!(trend(&steady, 4, 0, &t), Trend::Steady);
        let unknown = CompanyScore { events_mom: None, ..cooling };
        assert_eq!(trend(&unknown, 4, 0, &t), Trend::Steady, "a null percentage meets no threshold");
    }

    #[test]
    fn score_change_compares_with_the_score_30_days_before() {
        // 2026-05-20: one download (5 points); 2026-06-25: two more (10). At 2026-06-30
        // the score is 15, at 2026-05-31 it was 5.
        let acts = [act("2026-05-20", Kind::Download, 0), act("2026-06-25", Kind::Download, 1), act("2026-06-25", Kind::Download, 2)];
        let (s, i) = run(&acts, "2026-06-30");
        assert_eq!(s.score - i.score_change_30d, 5 * super::super::MICRO);
        // A company with nothing by D-30 had score 0 then.
        let (s, i) = run(&acts[1..], "2026-06-30");
        assert_eq!(i.score_change_30d, s.score);
    }

    #[test]
    fn url_paths_drop_host_query_and_trailing_slash() {
        assert_eq!(url_path("https://oql.dev/pricing/?a=1#b"), "/pricing");
        assert_eq!(url_path("https://oql.dev"), "/");
        assert_eq!(url_path("/docs/install"), "/docs/install");
    }
}
