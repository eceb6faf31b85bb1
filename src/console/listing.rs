//! The `/companies` list: search, filters, sort and pages over the scores `companies`
//! prints, so the console and the CLI count the same companies.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde::Deserialize;

use crate::scoring::{CompanyScore, Stage};

/// Rows a page shows.
pub const PAGE: usize = 50;

/// The list's query string (every field optional: a bare `/companies` lists all).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListQuery {
    /// Part of a domain or a company name, any case.
    pub q: Option<String>,
    pub stage: Option<String>,
    /// `yes` or `no`.
    pub churn: Option<String>,
    pub sort: Option<String>,
    /// `asc` or `desc`.
    pub dir: Option<String>,
    pub page: Option<usize>,
    /// `csv` downloads the filtered list.
    pub format: Option<String>,
}

/// The sortable columns: (key, header).
pub const COLUMNS: [(&str, &str); 9] = [
    ("domain", "Domain"),
    ("name", "Name"),
    ("stage", "Stage"),
    ("score", "Score"),
    ("stage_since", "Stage since"),
    ("last_seen", "Last seen"),
    ("events_30d", "Activities, 30 days"),
    ("actors_90d", "People, 90 days"),
    ("churn_risk", "Churn risk"),
];

impl ListQuery {
    pub fn stage(&self) -> Option<Stage> {
        self.stage.as_deref().and_then(Stage::parse)
    }

    pub fn churn(&self) -> Option<bool> {
        match self.churn.as_deref() {
            Some("yes") => Some(true),
            Some("no") => Some(false),
            _ => None,
        }
    }

    /// The sort column (a known one; score by default) and whether it descends.
    pub fn sort(&self) -> (&'static str, bool) {
        let key = COLUMNS.iter().map(|(k, _)| *k).find(|k| Some(*k) == self.sort.as_deref()).unwrap_or("score");
        let desc = match self.dir.as_deref() {
            Some("asc") => false,
            Some("desc") => true,
            // Numbers and dates read best largest first; names from A.
            _ => !matches!(key, "domain" | "name" | "stage"),
        };
        (key, desc)
    }

    pub fn search(&self) -> Option<String> {
        self.q.as_deref().map(str::trim).filter(|q| !q.is_empty()).map(str::to_lowercase)
    }

    /// This query's string with some keys changed (`None` drops a key); `page` resets
    /// unless given.
    pub fn with(&self, changes: &[(&str, Option<String>)]) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        let current = [
            ("q", self.q.clone()),
            ("stage", self.stage.clone()),
            ("churn", self.churn.clone()),
            ("sort", self.sort.clone()),
            ("dir", self.dir.clone()),
            ("page", None),
        ];
        for (k, v) in current {
            let v = changes.iter().find(|(ck, _)| *ck == k).map_or(v, |(_, cv)| cv.clone());
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                pairs.push((k, v));
            }
        }
        for (k, v) in changes {
            if !pairs.iter().any(|(pk, _)| pk == k) && let Some(v) = v {
                pairs.push((k, v.clone()));
            }
        }
        let encoded: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
        if encoded.is_empty() { String::new() } else { format!("?{}", encoded.join("&")) }
    }
}

pub use crate::redaction::percent_encode as encode;

fn compare(a: &CompanyScore, b: &CompanyScore, key: &str, names: &HashMap<String, String>) -> Ordering {
    match key {
        "domain" => a.domain.cmp(&b.domain),
        "name" => names.get(&a.domain).map(|n| n.to_lowercase()).cmp(&names.get(&b.domain).map(|n| n.to_lowercase())),
        "stage" => a.stage.cmp(&b.stage),
        "stage_since" => a.stage_since.cmp(&b.stage_since),
        "last_seen" => a.last_seen.cmp(&b.last_seen),
        "events_30d" => a.events_30d.cmp(&b.events_30d),
        "actors_90d" => a.actors_90d.cmp(&b.actors_90d),
        "churn_risk" => a.churn_risk.cmp(&b.churn_risk),
        _ => a.score.cmp(&b.score),
    }
}

/// The companies the query selects, in its order. `scores` come in the CLI's order
/// (score descending, then domain), which ties keep.
pub fn select<'s>(scores: &'s [CompanyScore], names: &HashMap<String, String>, q: &ListQuery) -> Vec<&'s CompanyScore> {
    let (stage, churn, search) = (q.stage(), q.churn(), q.search());
    let mut out: Vec<&CompanyScore> = scores
        .iter()
        .filter(|s| stage.is_none_or(|st| s.stage == st))
        .filter(|s| churn.is_none_or(|c| s.churn_risk == c))
        .filter(|s| {
            search.as_deref().is_none_or(|q| s.domain.contains(q) || names.get(&s.domain).is_some_and(|n| n.to_lowercase().contains(q)))
        })
        .collect();
    let (key, desc) = q.sort();
    if !(key == "score" && desc) {
        out.sort_by(|a, b| {
            let o = compare(a, b, key, names);
            if desc { o.reverse() } else { o }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn score(domain: &str, stage: Stage, points: i64, churn: bool) -> CompanyScore {
        let d = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        CompanyScore {
            domain: domain.into(),
            stage,
            peak_stage: stage,
            stage_since: d,
            score: points,
            first_seen: d,
            last_seen: d,
            downloads_30d: 0,
            views_30d: 0,
            community_30d: 0,
            telemetry_30d: 0,
            actors_90d: 0,
            versions_90d: 0,
            upgrading: false,
            churn_risk: churn,
            events_30d: 0,
            actors_30d: 0,
            events_mom: None,
            events_wow: None,
            scarf_stage: None,
            scarf_stage_since: None,
            insight: None,
        }
    }

    #[test]
    fn search_filters_and_sorts_as_asked() {
        let scores = vec![score("b.com", Stage::Investigation, 30, false), score("a.io", Stage::Interest, 20, true), score("c.net", Stage::Investigation, 10, true)];
        let names: HashMap<String, String> = [("c.net".to_owned(), "Acme Corp".to_owned())].into();
        let q = |s: &str| -> ListQuery { serde_json::from_str(s).unwrap() };
        let domains = |v: Vec<&CompanyScore>| v.iter().map(|s| s.domain.clone()).collect::<Vec<_>>();
        assert_eq!(domains(select(&scores, &names, &q("{}"))), ["b.com", "a.io", "c.net"]);
        assert_eq!(domains(select(&scores, &names, &q(r#"{"q":"ACME"}"#))), ["c.net"]);
        assert_eq!(domains(select(&scores, &names, &q(r#"{"q":"a.i"}"#))), ["a.io"]);
        assert_eq!(domains(select(&scores, &names, &q(r#"{"stage":"investigation","churn":"yes"}"#))), ["c.net"]);
        assert_eq!(domains(select(&scores, &names, &q(r#"{"sort":"domain"}"#))), ["a.io", "b.com", "c.net"]);
        assert_eq!(domains(select(&scores, &names, &q(r#"{"sort":"score","dir":"asc"}"#))), ["c.net", "a.io", "b.com"]);
        let query = q(r#"{"q":"a b&c","stage":"interest"}"#);
        assert_eq!(query.with(&[("sort", Some("domain".into()))]), "?q=a%20b%26c&stage=interest&sort=domain");
        assert_eq!(query.with(&[("page", Some("2".into()))]), "?q=a%20b%26c&stage=interest&page=2");
    }
}
