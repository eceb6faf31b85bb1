//! The counted signals reported beside the stage: raw (uncapped) counts over the last
//! 30 and 90 days, distinct actors and versions, and period-over-period changes.

use serde::Serializer;

use super::{Compact, Micro};
use crate::activity::Kind;

/// Raw counts at the as-of date `end` (a day number).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WindowCounts {
    pub downloads_30d: u32,
    pub views_30d: u32,
    pub community_30d: u32,
    pub telemetry_30d: u32,
    pub events_30d: u32,
    pub actors_30d: u32,
    pub actors_90d: u32,
    pub versions_90d: u32,
}

impl WindowCounts {
    /// Counts over a company's compacted activities; activities after `end` must
    /// already be filtered out. `scratch` is reused between companies.
    pub fn of(acts: &[Compact], end: i32, scratch: &mut Vec<u64>) -> Self {
        let mut c = WindowCounts::default();
        for a in acts.iter().filter(|a| a.day > end - 30) {
            c.events_30d += 1;
            match a.kind {
                Kind::Download => c.downloads_30d += 1,
                Kind::PageView | Kind::DocView => c.views_30d += 1,
                Kind::Community => c.community_30d += 1,
                Kind::Telemetry => c.telemetry_30d += 1,
            }
        }
        let mut distinct = |days: i32, of: fn(&Compact) -> u64| {
            scratch.clear();
            scratch.extend(acts.iter().filter(|a| a.day > end - days).map(of).filter(|&id| id != 0));
            scratch.sort_unstable();
            scratch.dedup();
            scratch.len() as u32
        };
        c.actors_30d = distinct(30, |a| a.actor);
        c.actors_90d = distinct(90, |a| a.actor);
        // Compact.version is 0 for activities that are not usage.
        c.versions_90d = distinct(90, |a| a.version);
        c
    }
}

/// Percent change of `now` against `before`, in tenths of a percent rounded half away
/// from zero; `None` when `before` is zero. Integer arithmetic, so `-98.25` cannot
/// become `-98.2` through a binary fraction.
pub fn percent_change_tenths(now: u32, before: u32) -> Option<i64> {
    if before == 0 {
        return None;
    }
    let num = (now as i64 - before as i64) * 1000;
    Some(div_round_half_away(num, before as i64))
}

/// `num / den` rounded half away from zero; `den` > 0.
pub fn div_round_half_away(num: i64, den: i64) -> i64 {
    let q = num / den;
    let r = num % den;
    if 2 * r.abs() >= den { q + num.signum() } else { q }
}

/// Points to two decimals, half away from zero, as a JSON number.
pub fn serialize_centi_points<S: Serializer>(v: &Micro, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(centi_points(*v) as f64 / 100.0)
}

/// Points in hundredths, rounded half away from zero.
pub fn centi_points(v: Micro) -> i64 {
    div_round_half_away(v, super::MICRO / 100)
}

pub fn serialize_tenths<S: Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(t) => s.serialize_f64(*t as f64 / 10.0),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_changes_round_half_away_from_zero() {
        assert_eq!(percent_change_tenths(38, 34), Some(118)); // 11.76 → 11.8
        assert_eq!(percent_change_tenths(1, 60), Some(-983)); // -98.33 → -98.3
        assert_eq!(percent_change_tenths(0, 3), Some(-1000));
        assert_eq!(percent_change_tenths(3, 0), None);
        // exactly half: 1/8 = 12.5% → tenths exactly 125; 1/16 → 6.25% → 6.3
        assert_eq!(percent_change_tenths(17, 16), Some(63));
        assert_eq!(percent_change_tenths(15, 16), Some(-63));
    }

    #[test]
    fn score_rounds_to_two_decimals_half_away_from_zero() {
        assert_eq!(centi_points(283_250_000), 28_325);
        assert_eq!(centi_points(1_125_000 / 100), 1); // 0.01125 → 0.01
        assert_eq!(centi_points(5_000), 1); // 0.005 → 0.01
        assert_eq!(centi_points(4_999), 0);
    }
}
