//! Awards: which bucket an activity falls in, and how many points it earns under the
//! day and month caps of that bucket.
//!
//! Awarding is a single walk in (`occurred_at`, `source`, `id`) order, so an award
//! depends only on the activities before it; the caller guarantees that order.

use chrono::Datelike;

use super::model::{Category, Micro, Model, TierRules};
use crate::activity::{Action, Kind, Tier};

/// The tier of an activity: its own when it has one, else the model's rules.
pub fn resolve_tier(
    rules: &TierRules,
    kind: Kind,
    action: Option<Action>,
    explicit: Option<Tier>,
    url: Option<&str>,
    package: Option<&str>,
    version: Option<&str>,
) -> Tier {
    resolve_tier_with(rules, kind, action, explicit, url, package, version, &mut String::new())
}

/// `resolve_tier` with a buffer for the lower-cased path or version, reused across
/// activities so that resolving a tier allocates nothing.
#[allow(clippy::too_many_arguments)]
pub fn resolve_tier_with(
    rules: &TierRules,
    kind: Kind,
    action: Option<Action>,
    explicit: Option<Tier>,
    url: Option<&str>,
    package: Option<&str>,
    version: Option<&str>,
    scratch: &mut String,
) -> Tier {
    if let Some(t) = explicit {
        return t;
    }
    match kind {
        Kind::PageView | Kind::DocView => view_tier(rules, kind, url, scratch),
        Kind::Download => download_tier(rules, package, version, scratch),
        Kind::Community => action
            .map(|a| rules.community[a as usize])
            .unwrap_or(Tier::Low),
        Kind::Telemetry => rules.telemetry,
    }
}

fn view_tier(rules: &TierRules, kind: Kind, url: Option<&str>, scratch: &mut String) -> Tier {
    scratch.clear();
    if let Some(url) = url {
        url_path_into(url, scratch);
    }
    let path = scratch.as_str();
    let below = |base: &str| {
        let base = base.trim_end_matches('/');
        path == base || (path.starts_with(base) && path[base.len()..].starts_with('/'))
    };
    if url.is_some() && rules.view_high_paths.iter().any(|p| below(p)) {
        Tier::High
    } else if (url.is_some() && path == "/")
        || rules.view_medium_prefixes.iter().any(|p| path.starts_with(p.as_str()))
        || kind == Kind::DocView
    {
        Tier::Medium
    } else {
        Tier::Low
    }
}

/// The lower-cased path of a full URL or of a bare path, without query or fragment.
pub fn url_path(url: &str) -> String {
    let mut path = String::new();
    url_path_into(url, &mut path);
    path
}

fn url_path_into(url: &str, out: &mut String) {
    let url = url.trim();
    let after_host = if let Some(pos) = url.find("://") {
        let rest = &url[pos + 3..];
        rest.find(['/', '?', '#']).map(|i| &rest[i..]).unwrap_or("")
    } else if let Some(rest) = url.strip_prefix("//") {
        rest.find(['/', '?', '#']).map(|i| &rest[i..]).unwrap_or("")
    } else {
        url
    };
    let path = &after_host[..after_host.find(['?', '#']).unwrap_or(after_host.len())];
    if !path.starts_with('/') {
        out.push('/');
    }
    lowercase_into(path, out);
}

/// Appends `s` lower-cased (Unicode rules, as `str::to_lowercase`) without allocating
/// when it is ASCII.
fn lowercase_into(s: &str, out: &mut String) {
    if s.is_ascii() {
        out.extend(s.bytes().map(|b| b.to_ascii_lowercase() as char));
    } else {
        out.push_str(&s.to_lowercase());
    }
}

fn download_tier(rules: &TierRules, package: Option<&str>, version: Option<&str>, scratch: &mut String) -> Tier {
    let mut contains_marker = |s: Option<&str>| {
        s.is_some_and(|s| {
            scratch.clear();
            lowercase_into(s, scratch);
            rules.download_high_markers.iter().any(|m| scratch.contains(m.as_str()))
        })
    };
    if contains_marker(package) || contains_marker(version) {
        return Tier::High;
    }
    match version.map(str::trim) {
        None | Some("") => Tier::Low,
        Some(v) if rules.download_low_versions.iter().any(|l| l.eq_ignore_ascii_case(v)) => Tier::Low,
        Some(_) => Tier::Medium,
    }
}

/// Days since 1970-01-01 of a UTC date, and its calendar month as a running index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayMonth {
    pub day: i32,
    pub month: i32,
}

impl DayMonth {
    pub fn of(date: chrono::NaiveDate) -> DayMonth {
        DayMonth {
            day: super::day_number(date),
            month: date.year() * 12 + date.month0() as i32,
        }
    }
}

#[derive(Clone, Copy, Default)]
struct BucketState {
    day: i32,
    day_total: Micro,
    month: i32,
    month_total: Micro,
}

/// Running cap state of every bucket of one company.
pub struct Awarder<'m> {
    model: &'m Model,
    buckets: [[BucketState; 3]; 4],
}

impl<'m> Awarder<'m> {
    pub fn new(model: &'m Model) -> Self {
        Awarder {
            model,
            buckets: [[BucketState { day: i32::MIN, month: i32::MIN, ..Default::default() }; 3]; 4],
        }
    }

    /// The award of the next activity in order: `min(points, day_room, month_room)`.
    pub fn award(&mut self, category: Category, tier: Tier, when: DayMonth) -> Micro {
        let rule = self.model.tier_points(category, tier);
        let state = &mut self.buckets[category.index()][tier.index()];
        if state.day != when.day {
            state.day = when.day;
            state.day_total = 0;
        }
        if state.month != when.month {
            state.month = when.month;
            state.month_total = 0;
        }
        let day_room = rule.day_cap - state.day_total;
        let month_room = rule.month_cap - state.month_total;
        let award = rule.points.min(day_room).min(month_room).max(0);
        state.day_total += award;
        state.month_total += award;
        award
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::model::MICRO;
    use chrono::NaiveDate;

    fn d(s: &str) -> DayMonth {
        DayMonth::of(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap())
    }

    fn view(url: &str) -> Tier {
        resolve_tier(&Model::default().tiers, Kind::PageView, None, None, Some(url), None, None)
    }

    fn download(package: &str, version: Option<&str>) -> Tier {
        resolve_tier(&Model::default().tiers, Kind::Download, None, None, None, Some(package), version)
    }

    #[test]
    fn view_tiers_follow_the_path() {
        assert_eq!(view("https://tiers.example/pricing/enterprise"), Tier::High);
        assert_eq!(view("/PRICING"), Tier::High);
        assert_eq!(view("/contact?from=nav"), Tier::High);
        assert_eq!(view("/pricingfaq"), Tier::Low);
        assert_eq!(view("/"), Tier::Medium);
        assert_eq!(view("https://oqldb.dev"), Tier::Medium);
        assert_eq!(view("/docs/install"), Tier::Medium);
        assert_eq!(view("/blog/launch"), Tier::Low);
        let doc = resolve_tier(&Model::default().tiers, Kind::DocView, None, None, Some("/blog"), None, None);
        assert_eq!(doc, Tier::Medium);
        let doc_no_url = resolve_tier(&Model::default().tiers, Kind::DocView, None, None, None, None, None);
        assert_eq!(doc_no_url, Tier::Medium);
        let page_no_url = resolve_tier(&Model::default().tiers, Kind::PageView, None, None, None, None, None);
        assert_eq!(page_no_url, Tier::Low);
    }

    #[test]
    fn download_tiers_follow_package_and_version() {
        assert_eq!(download("oqldb-Enterprise", Some("1.0")), Tier::High);
        assert_eq!(download("oqldb", Some("2.0-enterprise")), Tier::High);
        assert_eq!(download("oqldb", None), Tier::Low);
        assert_eq!(download("oqldb", Some("Nightly")), Tier::Low);
        assert_eq!(download("oqldb", Some("main")), Tier::Low);
        assert_eq!(download("oqldb", Some("3.1.0")), Tier::Medium);
    }

    #[test]
    fn explicit_tier_wins() {
        let t = resolve_tier(&Model::default().tiers, Kind::PageView, None, Some(Tier::High), Some("/blog"), None, None);
        assert_eq!(t, Tier::High);
    }

    #[test]
    fn day_cap_boundary_is_inclusive_and_fractional() {
        let model = Model::default();
        let mut a = Awarder::new(&model);
        // downloads/medium: 5 points, 10 a day.
        assert_eq!(a.award(Category::Downloads, Tier::Medium, d("2026-06-01")), 5 * MICRO);
        assert_eq!(a.award(Category::Downloads, Tier::Medium, d("2026-06-01")), 5 * MICRO);
        assert_eq!(a.award(Category::Downloads, Tier::Medium, d("2026-06-01")), 0);
        // next day the day cap resets
        assert_eq!(a.award(Category::Downloads, Tier::Medium, d("2026-06-02")), 5 * MICRO);
        // views/low 0.25 with a day cap of 2: the 9th view on a day earns nothing.
        for _ in 0..8 {
            assert_eq!(a.award(Category::Views, Tier::Low, d("2026-06-03")), MICRO / 4);
        }
        assert_eq!(a.award(Category::Views, Tier::Low, d("2026-06-03")), 0);
    }

    #[test]
    fn month_cap_awards_the_remaining_fraction_then_resets() {
        let model = Model::default();
        let mut a = Awarder::new(&model);
        // downloads/high: 8 points, 16 a day, 42 a month → 16 + 16 + 8 + 2 (fraction) + 0.
        let days = ["2026-06-01", "2026-06-01", "2026-06-02", "2026-06-02", "2026-06-03"];
        let got: Vec<Micro> = days.iter().map(|s| a.award(Category::Downloads, Tier::High, d(s))).collect();
        assert_eq!(got, vec![8 * MICRO, 8 * MICRO, 8 * MICRO, 8 * MICRO, 8 * MICRO]);
        assert_eq!(a.award(Category::Downloads, Tier::High, d("2026-06-04")), 2 * MICRO);
        assert_eq!(a.award(Category::Downloads, Tier::High, d("2026-06-30")), 0);
        // a new month, including across a year end, resets the month cap
        assert_eq!(a.award(Category::Downloads, Tier::High, d("2026-07-01")), 8 * MICRO);
        let mut b = Awarder::new(&model);
        for _ in 0..6 {
            b.award(Category::Downloads, Tier::High, d("2026-12-31"));
        }
        assert_eq!(b.award(Category::Downloads, Tier::High, d("2027-01-01")), 8 * MICRO);
    }

    #[test]
    fn buckets_are_separate_per_category_and_tier() {
        let model = Model::default();
        let mut a = Awarder::new(&model);
        for _ in 0..3 {
            a.award(Category::Downloads, Tier::Medium, d("2026-06-01"));
        }
        assert_eq!(a.award(Category::Downloads, Tier::Low, d("2026-06-01")), 2 * MICRO);
        assert_eq!(a.award(Category::Telemetry, Tier::Medium, d("2026-06-01")), 5 * MICRO);
    }
}
