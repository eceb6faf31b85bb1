//! The OQL scoring engine of `spec/scoring.md`: a pure function of (a company's
//! activities, the model, the as-of date). No database, no clock: the as-of date is an
//! argument, so every rule is unit-testable and every output reproducible.
//!
//! The engine works on days: each activity is reduced to its UTC day, its award and its
//! counts, laid out in per-day arrays from the company's first activity to the as-of
//! date. Prefix sums over those arrays answer every "last N days" question in constant
//! time, which is what makes the daily stage timeline (needed by `inactive`, `peak_stage`
//! and `stage_since`) affordable.

pub mod explain;
pub mod insight;
pub mod model;
pub mod points;
pub mod signals;
pub mod stages;

use chrono::NaiveDate;
use serde::Serialize;

use crate::activity::{Action, Kind, Tier, date_of};
pub use model::{Micro, Model, MICRO};
use points::{Awarder, DayMonth, resolve_tier};
pub use stages::Stage;

/// What scoring needs of one activity.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoringActivity {
    pub occurred_at: i64,
    pub source: String,
    pub id: String,
    pub kind: Kind,
    pub action: Option<Action>,
    pub tier: Option<Tier>,
    pub actor: Option<String>,
    pub package: Option<String>,
    pub version: Option<String>,
    pub url: Option<String>,
}

/// One company's stage, score and signals at an as-of date: the output contract.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CompanyScore {
    pub domain: String,
    pub stage: Stage,
    pub peak_stage: Stage,
    pub stage_since: NaiveDate,
    #[serde(serialize_with = "signals::serialize_centi_points")]
    pub score: Micro,
    pub first_seen: NaiveDate,
    pub last_seen: NaiveDate,
    pub downloads_30d: u32,
    pub views_30d: u32,
    pub community_30d: u32,
    pub telemetry_30d: u32,
    pub actors_90d: u32,
    pub versions_90d: u32,
    pub upgrading: bool,
    pub churn_risk: bool,
    pub events_30d: u32,
    pub actors_30d: u32,
    /// Percent change in tenths of a percent, `None` when there is nothing to compare to.
    #[serde(serialize_with = "signals::serialize_tenths")]
    pub events_mom: Option<i64>,
    #[serde(serialize_with = "signals::serialize_tenths")]
    pub events_wow: Option<i64>,
    /// Scarf's own funnel stage of the company (its company rollup) and since when:
    /// joined from the store after scoring (`cycle::join_scarf_stages`), never computed
    /// here, so that Scarf's rules, which are its own, never sway ours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scarf_stage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scarf_stage_since: Option<NaiveDate>,
    /// Signals beyond the output contract (`reason`, `trend`...), filled in for the
    /// companies a sync needs them for; never in the contract's JSON.
    #[serde(skip)]
    pub insight: Option<std::sync::Arc<insight::Insight>>,
}

/// Days since 1970-01-01.
pub fn day_number(date: NaiveDate) -> i32 {
    (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")).num_days() as i32
}

/// The date of a day number.
pub fn date_of_day(day: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date") + chrono::TimeDelta::days(day as i64)
}

/// Per-day totals of one company, indexed from its first activity's day.
pub struct DailySeries {
    pub first_day: i32,
    pub last_day: i32,
    /// Prefix sums (length = days + 1) of: awarded points, views, usage (downloads and
    /// telemetry), all activities.
    points: Vec<Micro>,
    views: Vec<u32>,
    usage: Vec<u32>,
    events: Vec<u32>,
}

impl DailySeries {
    fn range(&self, from: i32, to: i32) -> Option<(usize, usize)> {
        let lo = from.max(self.first_day);
        let hi = to.min(self.last_day);
        (lo <= hi).then(|| ((lo - self.first_day) as usize, (hi - self.first_day) as usize + 1))
    }

    /// Awarded points of the days `from..=to`.
    pub fn points(&self, from: i32, to: i32) -> Micro {
        self.range(from, to).map_or(0, |(a, b)| self.points[b] - self.points[a])
    }

    pub fn views(&self, from: i32, to: i32) -> u32 {
        self.range(from, to).map_or(0, |(a, b)| self.views[b] - self.views[a])
    }

    pub fn usage(&self, from: i32, to: i32) -> u32 {
        self.range(from, to).map_or(0, |(a, b)| self.usage[b] - self.usage[a])
    }

    pub fn events(&self, from: i32, to: i32) -> u32 {
        self.range(from, to).map_or(0, |(a, b)| self.events[b] - self.events[a])
    }
}

fn prefix<T: Copy + std::ops::Add<Output = T> + Default>(daily: &[T]) -> Vec<T> {
    let mut out = Vec::with_capacity(daily.len() + 1);
    let mut acc = T::default();
    out.push(acc);
    for &x in daily {
        acc = acc + x;
        out.push(acc);
    }
    out
}

fn order_key(a: &ScoringActivity) -> (i64, &str, &str) {
    (a.occurred_at, a.source.as_str(), a.id.as_str())
}

/// One activity reduced to what the score, the stages and the signals read: its day and
/// month, kind, resolved tier, and its actor and version as identities (0: none). 24
/// bytes, no heap: the full rescore holds every activity of the store in this form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compact {
    pub actor: u64,
    pub version: u64,
    pub day: i32,
    pub month: u16,
    pub kind: Kind,
    pub tier: Tier,
}

/// Tells distinct actors and versions apart by a 64-bit hash of the string, never 0.
///
/// Why a hash and not a table of the strings: interning every actor of ten million
/// activities costs a lookup in a map of a million keys per activity (a cache miss,
/// most of the rescore's time), and a table shared by the scan's threads would cost
/// more. Two distinct strings get the same identity with probability 2^-64: over a
/// company's actors (at most thousands), and over all companies of a store, far less
/// likely than a memory error. The seed is random per process, so no one can pick
/// logins that collide.
pub fn identity(s: Option<&str>) -> u64 {
    static HASHER: std::sync::OnceLock<foldhash::quality::FixedState> = std::sync::OnceLock::new();
    match s.filter(|s| !s.is_empty()) {
        None => 0,
        Some(s) => {
            let hasher = HASHER.get_or_init(|| foldhash::quality::FixedState::with_seed(std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0x0a11u64)));
            std::hash::BuildHasher::hash_one(hasher, s).max(1)
        }
    }
}

/// An activity as the store reads it, before it is reduced to `Compact`.
#[derive(Clone, Copy, Debug)]
pub struct ActivityRef<'a> {
    pub occurred_at: i64,
    pub kind: Kind,
    pub action: Option<Action>,
    pub tier: Option<Tier>,
    pub actor: Option<&'a str>,
    pub package: Option<&'a str>,
    pub version: Option<&'a str>,
    pub url: Option<&'a str>,
}

impl<'a> ActivityRef<'a> {
    pub fn of(a: &'a ScoringActivity) -> ActivityRef<'a> {
        ActivityRef {
            occurred_at: a.occurred_at,
            kind: a.kind,
            action: a.action,
            tier: a.tier,
            actor: a.actor.as_deref(),
            package: a.package.as_deref(),
            version: a.version.as_deref(),
            url: a.url.as_deref(),
        }
    }
}

/// Reduces activities to `Compact` under one model: the tier rules run here, once per
/// activity, with one reusable buffer instead of an allocation per URL or version.
pub struct Compactor<'m> {
    model: &'m Model,
    scratch: String,
    /// The last day converted to a calendar month, and its month.
    last: (i32, u16),
}

impl<'m> Compactor<'m> {
    pub fn new(model: &'m Model) -> Self {
        Compactor { model, scratch: String::new(), last: (i32::MIN, 0) }
    }

    pub fn compact(&mut self, a: &ActivityRef<'_>) -> Compact {
        let day = a.occurred_at.div_euclid(NANOS_PER_DAY) as i32;
        if self.last.0 != day {
            self.last = (day, DayMonth::of(date_of_day(day)).month as u16);
        }
        let tier = points::resolve_tier_with(&self.model.tiers, a.kind, a.action, a.tier, a.url, a.package, a.version, &mut self.scratch);
        Compact {
            actor: identity(a.actor),
            version: if a.kind.is_usage() { identity(a.version) } else { 0 },
            day,
            month: self.last.1,
            kind: a.kind,
            tier,
        }
    }
}

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// The first instant (UTC nanoseconds) after the as-of date: what the store reads up to.
pub fn end_of(as_of: NaiveDate) -> i64 {
    (day_number(as_of) as i64 + 1) * NANOS_PER_DAY
}

/// A company's activities up to `end` laid out as a daily series; the day of its last
/// activity. `acts` is sorted by day here. The order within a day does not matter:
/// every activity of a bucket earns the same points, so a bucket's award on a day is
/// min(n × points, day room, month room) whichever of them comes first.
fn daily(acts: &mut Vec<Compact>, model: &Model, end: i32) -> Option<(DailySeries, i32)> {
    acts.retain(|a| a.day <= end);
    if acts.is_empty() {
        return None;
    }
    if !acts.is_sorted_by_key(|a| a.day) {
        acts.sort_unstable_by_key(|a| a.day);
    }
    let first_day = acts[0].day;
    let days = (end - first_day + 1) as usize;
    let mut points = vec![0 as Micro; days];
    let mut views = vec![0u32; days];
    let mut usage = vec![0u32; days];
    let mut events = vec![0u32; days];
    let mut awarder = Awarder::new(model);
    for a in acts.iter() {
        let i = (a.day - first_day) as usize;
        let when = DayMonth { day: a.day, month: a.month as i32 };
        points[i] += awarder.award(model::Category::of(a.kind), a.tier, when);
        views[i] += a.kind.is_view() as u32;
        usage[i] += a.kind.is_usage() as u32;
        events[i] += 1;
    }
    let last_day = acts[acts.len() - 1].day;
    let series = DailySeries {
        first_day,
        last_day: end,
        points: prefix(&points),
        views: prefix(&views),
        usage: prefix(&usage),
        events: prefix(&events),
    };
    Some((series, last_day))
}

fn compact_all(activities: &[ScoringActivity], model: &Model) -> Vec<Compact> {
    let mut c = Compactor::new(model);
    activities.iter().map(|a| c.compact(&ActivityRef::of(a))).collect()
}

/// Every stage change from the first activity to `as_of`, with its date.
pub fn stage_changes(activities: &[ScoringActivity], model: &Model, as_of: NaiveDate) -> Vec<(NaiveDate, Stage)> {
    let end = day_number(as_of);
    match daily(&mut compact_all(activities, model), model, end) {
        Some((series, _)) => stages::StageTimeline::build(&series, model, end).changes().into_iter().map(|(d, s)| (date_of_day(d), s)).collect(),
        None => Vec::new(),
    }
}

/// Raw counts of views, usage (downloads and telemetry) and all activities over the
/// last 30, 60 and 90 days at `as_of`: what the stage gates read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowTotals {
    pub views: [u32; 3],
    pub usage: [u32; 3],
    pub events: [u32; 3],
}

pub fn window_totals(activities: &[ScoringActivity], model: &Model, as_of: NaiveDate) -> Option<WindowTotals> {
    let end = day_number(as_of);
    let (series, _) = daily(&mut compact_all(activities, model), model, end)?;
    let over = |f: &dyn Fn(i32, i32) -> u32| [30, 60, 90].map(|n| f(end - n + 1, end));
    Some(WindowTotals {
        views: over(&|a, b| series.views(a, b)),
        usage: over(&|a, b| series.usage(a, b)),
        events: over(&|a, b| series.events(a, b)),
    })
}

/// Scores one company at `as_of`. `None` when it has no activity on or before that date.
pub fn score_company(
    domain: &str,
    activities: &[ScoringActivity],
    model: &Model,
    as_of: NaiveDate,
) -> Option<CompanyScore> {
    score_compact(domain, &mut compact_all(activities, model), model, as_of, &mut Vec::new())
}

/// Scores one company from its compacted activities (any order; sorted here).
/// `scratch` is reused between companies for the distinct counts.
pub fn score_compact(domain: &str, acts: &mut Vec<Compact>, model: &Model, as_of: NaiveDate, scratch: &mut Vec<u64>) -> Option<CompanyScore> {
    score_recording(domain, acts, model, as_of, scratch, None)
}

/// `score_compact`, adding the company's stage timeline to `history` when given.
fn score_recording(
    domain: &str,
    acts: &mut Vec<Compact>,
    model: &Model,
    as_of: NaiveDate,
    scratch: &mut Vec<u64>,
    history: Option<&mut History>,
) -> Option<CompanyScore> {
    let end = day_number(as_of);
    let (series, last_day) = daily(acts, model, end)?;
    let first_day = series.first_day;
    let timeline = stages::StageTimeline::build(&series, model, end);
    if let Some(h) = history {
        h.add(domain, &timeline);
    }
    let counts = signals::WindowCounts::of(acts, end, scratch);
    let score = series.points(end - model.windows.score + 1, end);
    let peak_stage = timeline.peak();
    let versions_90d = counts.versions_90d;
    let t = &model.thresholds;
    let prior_30 = series.events(end - 59, end - 30);
    let churn_risk = peak_stage >= Stage::Investigation
        && counts.events_30d as i64 * MICRO <= t.churn_ratio * prior_30 as i64
        && prior_30 >= t.churn_min_prior;
    Some(CompanyScore {
        domain: domain.to_owned(),
        stage: timeline.stage_at_end(),
        peak_stage,
        stage_since: date_of_day(timeline.stage_since()),
        score,
        first_seen: date_of_day(first_day),
        last_seen: date_of_day(last_day),
        downloads_30d: counts.downloads_30d,
        views_30d: counts.views_30d,
        community_30d: counts.community_30d,
        telemetry_30d: counts.telemetry_30d,
        actors_90d: counts.actors_90d,
        versions_90d,
        upgrading: versions_90d >= t.upgrading_versions,
        churn_risk,
        events_30d: counts.events_30d,
        actors_30d: counts.actors_30d,
        events_mom: signals::percent_change_tenths(counts.events_30d, prior_30),
        events_wow: signals::percent_change_tenths(
            series.events(end - 6, end),
            series.events(end - 13, end - 7),
        ),
        scarf_stage: None,
        scarf_stage_since: None,
        insight: None,
    })
}

/// The activities one thread of the full scan read, each with its company's id, in the
/// order read: appending to an array writes memory in order, where a list per company
/// would cost a random access per activity. Held in chunks, so that growing never
/// copies and grouping can free each chunk as soon as it is moved.
pub struct ScanPart<'m> {
    compactor: Compactor<'m>,
    chunks: Vec<Vec<(u32, Compact)>>,
    /// One more than the largest company id pushed.
    companies: usize,
}

/// Rows per chunk of a `ScanPart`: 32 MiB.
const CHUNK: usize = 1 << 20;

impl<'m> ScanPart<'m> {
    pub fn new(model: &'m Model) -> Self {
        ScanPart { compactor: Compactor::new(model), chunks: Vec::new(), companies: 0 }
    }

    pub fn push(&mut self, company: u32, a: &ActivityRef<'_>) {
        let c = self.compactor.compact(a);
        self.companies = self.companies.max(company as usize + 1);
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push((company, c)),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push((company, c));
                self.chunks.push(chunk);
            }
        }
    }

    /// The part's activities grouped by company (a counting sort: a count, then one
    /// scatter that frees each chunk behind it), as offsets indexed by company id into
    /// one array.
    fn group(self, companies: usize) -> Grouped {
        let mut starts = vec![0u32; companies + 1];
        for &(c, _) in self.chunks.iter().flatten() {
            starts[c as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut next = starts.clone();
        let filler = Compact { actor: 0, version: 0, day: 0, month: 0, kind: Kind::Download, tier: Tier::Low };
        let mut acts = vec![filler; starts[companies] as usize];
        for chunk in self.chunks {
            for (c, a) in chunk {
                let at = &mut next[c as usize];
                acts[*at as usize] = a;
                *at += 1;
            }
        }
        Grouped { starts, acts }
    }
}

struct Grouped {
    starts: Vec<u32>,
    acts: Vec<Compact>,
}

impl Grouped {
    fn of(&self, company: usize) -> &[Compact] {
        &self.acts[self.starts[company] as usize..self.starts[company + 1] as usize]
    }
}

/// How many companies were in each stage on each of the last days, and the stage moves
/// of the last week: the console's history and movements. Gathered by the full rescore,
/// which builds every company's daily timeline anyway (`stage_history` in the store).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// The day number of `counts[0]`.
    pub first_day: i32,
    /// Companies by stage (in `Stage::ALL` order) on each day up to the as-of date; a
    /// company counts from its first activity on.
    pub counts: Vec<[u32; 5]>,
    /// Every stage change on or after `moves_from`; a company's first day is a move from `None`.
    pub moves: Vec<Move>,
    pub moves_from: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub day: i32,
    pub domain: String,
    pub from: Option<Stage>,
    pub to: Stage,
}

impl History {
    /// An empty history of the `days` days and the `move_days` days ending on `as_of`.
    pub fn new(as_of: NaiveDate, days: u32, move_days: u32) -> History {
        let end = day_number(as_of);
        History { first_day: end - days as i32 + 1, counts: vec![[0; 5]; days as usize], moves: Vec::new(), moves_from: end - move_days as i32 + 1 }
    }

    fn add(&mut self, domain: &str, timeline: &stages::StageTimeline) {
        for (i, row) in self.counts.iter_mut().enumerate() {
            if let Some(stage) = timeline.stage_on(self.first_day + i as i32) {
                row[stage as usize] += 1;
            }
        }
        let mut from = None;
        for (day, to) in timeline.changes() {
            if day >= self.moves_from {
                self.moves.push(Move { day, domain: domain.to_owned(), from, to });
            }
            from = Some(to);
        }
    }

    fn merge(&mut self, other: History) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        self.moves.extend(other.moves);
    }
}

/// Scores every company the parts hold activities of, on every core. `domains` names
/// the company ids (a company without a name is not scored).
pub fn score_parts(parts: Vec<ScanPart<'_>>, domains: &[Option<Box<str>>], as_of: NaiveDate) -> Vec<CompanyScore> {
    score_parts_recording(parts, domains, as_of, None).0
}

/// `score_parts`, filling a copy of `history` (empty, from `History::new`) as it goes.
pub fn score_parts_recording(
    parts: Vec<ScanPart<'_>>,
    domains: &[Option<Box<str>>],
    as_of: NaiveDate,
    history: Option<&History>,
) -> (Vec<CompanyScore>, Option<History>) {
    let Some(model) = parts.first().map(|p| p.compactor.model) else {
        return (Vec::new(), history.cloned());
    };
    let companies = parts.iter().map(|p| p.companies).max().unwrap_or(0).max(domains.len());
    let grouped: Vec<Grouped> = std::thread::scope(|s| {
        let handles: Vec<_> = parts.into_iter().map(|p| s.spawn(move || p.group(companies))).collect();
        handles.into_iter().map(|h| h.join().expect("grouping thread")).collect()
    });
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    // Threads take company ids a block at a time: what a company costs depends on the
    // days its history spans more than on its activities, so fixed shares end unevenly.
    const BLOCK: usize = 512;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (grouped, next) = (&grouped, &next);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    let (mut acts, mut scratch) = (Vec::new(), Vec::new());
                    let mut out = Vec::new();
                    let mut mine = history.cloned();
                    loop {
                        let from = next.fetch_add(BLOCK, std::sync::atomic::Ordering::Relaxed);
                        if from >= companies {
                            break (out, mine);
                        }
                        for c in from..(from + BLOCK).min(companies) {
                            let Some(Some(domain)) = domains.get(c) else { continue };
                            acts.clear();
                            for g in grouped {
                                acts.extend_from_slice(g.of(c));
                            }
                            if let Some(score) = score_recording(domain, &mut acts, model, as_of, &mut scratch, mine.as_mut()) {
                                out.push(score);
                            }
                        }
                    }
                })
            })
            .collect();
        let mut scores = Vec::new();
        let mut total = history.cloned();
        for h in handles {
            let (part, mine) = h.join().expect("scoring thread");
            scores.extend(part);
            if let (Some(t), Some(m)) = (total.as_mut(), mine) {
                t.merge(m);
            }
        }
        (scores, total)
    })
}

/// Points of the score window by category and tier: what a score is made of.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreakdownRow {
    pub category: &'static str,
    pub tier: &'static str,
    #[serde(serialize_with = "signals::serialize_centi_points")]
    pub points: Micro,
    /// Activities of the bucket in the window, capped or not.
    pub activities: u32,
}

/// The score of `as_of` split by (category, tier), buckets with activities only. The
/// awards are those of `score_company` (same walk, same caps), so the rows add up to
/// the score.
pub fn score_breakdown(activities: &[ScoringActivity], model: &Model, as_of: NaiveDate) -> Vec<BreakdownRow> {
    let start = day_number(as_of) - model.windows.score + 1;
    let mut buckets = [[(0 as Micro, 0u32); 3]; 4];
    for a in award_walk(activities, model, as_of).iter().filter(|a| a.day >= start) {
        let b = &mut buckets[a.category.index()][a.tier as usize];
        b.0 += a.award;
        b.1 += 1;
    }
    let mut out = Vec::new();
    for category in model::Category::ALL {
        for tier in Tier::ALL {
            let (points, activities) = buckets[category.index()][tier as usize];
            if activities > 0 {
                out.push(BreakdownRow { category: category.as_str(), tier: tier.as_str(), points, activities });
            }
        }
    }
    out
}

/// One activity's award in the scoring walk.
#[derive(Clone, Debug)]
pub struct Awarded<'a> {
    pub activity: &'a ScoringActivity,
    pub day: i32,
    pub category: model::Category,
    pub tier: Tier,
    /// What the bucket pays before caps, and what the caps left.
    pub points: Micro,
    pub award: Micro,
}

/// Every activity up to `as_of` with its award, in scoring order (the walk of
/// `score_company`, same caps).
pub fn award_walk<'a>(activities: &'a [ScoringActivity], model: &Model, as_of: NaiveDate) -> Vec<Awarded<'a>> {
    let end = day_number(as_of);
    let mut acts: Vec<(&ScoringActivity, DayMonth)> = activities
        .iter()
        .map(|a| (a, DayMonth::of(date_of(a.occurred_at))))
        .filter(|(_, dm)| dm.day <= end)
        .collect();
    acts.sort_by(|x, y| order_key(x.0).cmp(&order_key(y.0)));
    let mut awarder = Awarder::new(model);
    acts.into_iter()
        .map(|(a, dm)| {
            let tier = resolve_tier(&model.tiers, a.kind, a.action, a.tier, a.url.as_deref(), a.package.as_deref(), a.version.as_deref());
            let category = model::Category::of(a.kind);
            let award = awarder.award(category, tier, dm);
            Awarded { activity: a, day: dm.day, category, tier, points: model.tier_points(category, tier).points, award }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(date: &str, kind: Kind, id: &str) -> ScoringActivity {
        let nanos = chrono::DateTime::parse_from_rfc3339(&format!("{date}T12:00:00Z"))
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap();
        ScoringActivity {
            occurred_at: nanos,
            source: "s".into(),
            id: id.into(),
            kind,
            action: None,
            tier: None,
            actor: None,
            package: Some("oqldb".into()),
            version: Some("1.0.0".into()),
            url: None,
        }
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn score(acts: &[ScoringActivity], as_of: &str) -> CompanyScore {
        score_company("x.com", acts, &Model::default(), d(as_of)).unwrap()
    }

    #[test]
    fn the_score_window_includes_day_d_minus_89_and_not_d_minus_90() {
        // 2026-06-30 minus 89 days is 2026-04-02.
        let inside = [at("2026-04-02", Kind::Download, "1")];
        assert_eq!(score(&inside, "2026-06-30").score, 5 * MICRO);
        let outside = [at("2026-04-01", Kind::Download, "1")];
        assert_eq!(score(&outside, "2026-06-30").score, 0);
    }

    #[test]
    fn activities_after_the_as_of_date_are_ignored() {
        let acts = [at("2026-06-01", Kind::Download, "1"), at("2026-07-01", Kind::Download, "2")];
        let s = score(&acts, "2026-06-30");
        assert_eq!((s.score, s.last_seen), (5 * MICRO, d("2026-06-01")));
        assert!(score_company("x.com", &acts[1..], &Model::default(), d("2026-06-30")).is_none());
    }

    #[test]
    fn a_company_turns_inactive_on_the_sixtieth_idle_day() {
        let acts = [at("2026-04-01", Kind::Download, "1")];
        // the last 60 days at 2026-05-30 are 2026-04-01..2026-05-30: still active
        assert_eq!(score(&acts, "2026-05-30").stage, Stage::Investigation);
        let s = score(&acts, "2026-05-31");
        assert_eq!((s.stage, s.stage_since), (Stage::Inactive, d("2026-05-31")));
    }

    #[test]
    fn view_weeks_need_two_consecutive_iso_weeks_across_a_year_change() {
        // Thursday 2026-12-31 (ISO week 2026-W53) and Monday 2027-01-04 (2027-W01).
        let consecutive = [at("2026-12-31", Kind::PageView, "1"), at("2027-01-04", Kind::PageView, "2")];
        assert_eq!(score(&consecutive, "2027-01-05").stage, Stage::Investigation);
        // Two views in the same ISO week (Monday 2026-12-28 and Sunday 2027-01-03) are not enough.
        let same_week = [at("2026-12-28", Kind::PageView, "1"), at("2027-01-03", Kind::PageView, "2")];
        assert_eq!(score(&same_week, "2027-01-05").stage, Stage::Interest);
    }

    #[test]
    fn a_late_arriving_activity_re_awards_the_rest_of_its_month() {
        // downloads/medium: 5 points, day cap 10, month cap 50; ten capped days in June.
        let mut acts: Vec<ScoringActivity> = (1..=11)
            .map(|day| at(&format!("2026-06-{day:02}"), Kind::Download, &format!("a{day}")))
            .collect();
        assert_eq!(score(&acts, "2026-06-30").score, 50 * MICRO);
        // Month cap: the 11th download got nothing. Now three earlier downloads of the
        // same month arrive late: the 1st of June is capped at 10 a day...
        acts.push(at("2026-06-01", Kind::Download, "late1"));
        acts.push(at("2026-06-01", Kind::Download, "late2"));
        let s = score(&acts, "2026-06-30");
        assert_eq!(s.score, 50 * MICRO, "the month cap still bounds the month");
        // ...and a late activity in another month is awarded on its own.
        acts.push(at("2026-05-31", Kind::Download, "may"));
        assert_eq!(score(&acts, "2026-06-30").score, 55 * MICRO);
    }

    #[test]
    fn the_breakdown_adds_up_to_the_score() {
        let mut acts: Vec<ScoringActivity> = (1..=25)
            .map(|i| at(&format!("2026-06-{:02}", 1 + i % 20), if i % 4 == 0 { Kind::PageView } else { Kind::Download }, &format!("{i:02}")))
            .collect();
        acts.push(at("2026-01-05", Kind::Download, "old"));
        let s = score(&acts, "2026-06-30");
        let rows = score_breakdown(&acts, &Model::default(), d("2026-06-30"));
        assert_eq!(rows.iter().map(|r| r.points).sum::<Micro>(), s.score);
        assert_eq!(rows.iter().map(|r| r.activities).sum::<u32>(), 25, "the January download is outside the window");
        assert_eq!((rows[0].category, rows[0].tier), ("views", "low"));
    }

    #[test]
    fn input_order_does_not_matter() {
        let mut acts: Vec<ScoringActivity> = (1..=20)
            .map(|i| at(&format!("2026-06-{:02}", 1 + i % 9), if i % 3 == 0 { Kind::PageView } else { Kind::Download }, &format!("{i:02}")))
            .collect();
        let sorted = score(&acts, "2026-06-30");
        acts.reverse();
        assert_eq!(score(&acts, "2026-06-30"), sorted);
    }
}
