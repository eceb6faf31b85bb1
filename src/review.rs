//! `oql-sync attribution review`: what no rule places yet, largest first, with the
//! score each identity would bring, a company when one is likely, and the line of
//! `attribution.yaml` that would place it. It reads the store and the config and
//! writes nothing: the operator decides, in git, what becomes a rule.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::Serialize;

use crate::attribution::AttributionRules;
use crate::scoring::{Model, ScoringActivity, score_company};
use crate::store::{Store, StoreError};

/// One identity the rules leave unattributed, or a pair of companies that look like
/// one under two domains.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// `actor`, `github_login`, `slack_user`, `scarf_origin` or `alias`.
    pub kind: &'static str,
    pub identity: String,
    pub activities: usize,
    /// The score these activities alone would give a company at the as-of date.
    #[serde(serialize_with = "crate::scoring::signals::serialize_centi_points")]
    pub score: i64,
    pub suggestion: Option<String>,
    /// Why the suggestion (empty without one).
    pub why: String,
    /// The `attribution.yaml` entry that would apply it.
    pub yaml: String,
}

/// The review, most activities first; `limit` cuts the list.
pub async fn review(store: &Store, rules: &AttributionRules, model: &Model, as_of: NaiveDate, limit: usize) -> Result<Vec<Finding>, StoreError> {
    let rows = store.unattributed_activities(crate::scoring::end_of(as_of)).await?;
    let mut by_actor: BTreeMap<(String, String), Vec<ScoringActivity>> = BTreeMap::new();
    for (actor, email, a) in rows {
        // Without an actor, the (free-mail, personal or cloud) email domain is all there is.
        let key = match (actor.filter(|a| !a.is_empty()), email) {
            (Some(actor), _) => (a.source.clone(), actor),
            (None, Some(email)) => ("email".to_owned(), email),
            (None, None) => continue,
        };
        by_actor.entry(key).or_default().push(a);
    }
    let mut groups: Vec<((String, String), Vec<ScoringActivity>)> = by_actor.into_iter().collect();
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
    groups.truncate(limit);
    let names = store.company_names().await?;
    let mut out = Vec::new();
    for ((source, actor), acts) in groups {
        let kind = match source.as_str() {
            "github" => "github_login",
            "slack" => "slack_user",
            "scarf" => "scarf_origin",
            "email" => "email_domain",
            _ => "actor",
        };
        let score = score_company("unattributed", &acts, model, as_of).map_or(0, |s| s.score);
        let (suggestion, why, yaml) = if kind == "email_domain" {
            (None, format!("{actor} never names a company; place its people by actor"), String::new())
        } else {
            suggest(store, rules, &names, kind, &actor).await?
        };
        out.push(Finding { kind, identity: actor, activities: acts.len(), score, suggestion, why, yaml });
    }
    if out.len() < limit {
        out.extend(alias_candidates(store, rules).await?.into_iter().take(limit - out.len()));
    }
    Ok(out)
}

/// A likely company for an actor: where its other activities are placed, the `@org` or
/// company name of its GitHub profile.
async fn suggest(store: &Store, rules: &AttributionRules, names: &HashMap<String, String>, kind: &str, actor: &str) -> Result<(Option<String>, String, String), StoreError> {
    let line = |domain: &str| format!("actors: {{ {}: {domain} }}", yaml_key(actor));
    if let Some((domain, n)) = store.actor_companies(actor).await?.into_iter().next() {
        let what = if n == 1 { "activity" } else { "activities" };
        return Ok((Some(domain.clone()), format!("{n} other {what} of this actor placed there"), line(&domain)));
    }
    if kind == "github_login"
        && let Some((profile, _)) = store.github_profile(actor).await?
        && let Some(company) = profile.company.as_deref().map(str::trim).filter(|c| !c.is_empty())
    {
        for part in company.split([',', ' ', '/']) {
            if let Some(handle) = part.strip_prefix('@').filter(|h| !h.is_empty() && rules.github_org(h).is_none()) {
                let guess = names.get(&handle.to_lowercase()).cloned().or_else(|| guess_domain(store_names(names), handle));
                let yaml = format!("github_orgs: {{ \"@{handle}\": {} }}", guess.as_deref().unwrap_or("COMPANY-DOMAIN"));
                return Ok((guess, format!("the GitHub profile names the org @{handle}"), yaml));
            }
        }
        if let Some(domain) = guess_domain(store_names(names), company) {
            return Ok((Some(domain.clone()), format!("the GitHub profile's company `{company}` matches a known company"), line(&domain)));
        }
    }
    Ok((None, String::new(), line("COMPANY-DOMAIN")))
}

fn store_names(names: &HashMap<String, String>) -> impl Iterator<Item = &str> {
    names.values().map(String::as_str)
}

/// A known company whose first label is the name (`Acme Inc` → `acme.com`), when only
/// one matches.
fn guess_domain<'a>(domains: impl Iterator<Item = &'a str>, name: &str) -> Option<String> {
    let word: String = name.trim_start_matches('@').split([' ', ',', '-', '_']).next()?.to_lowercase();
    if word.len() < 3 {
        return None;
    }
    let mut hits: Vec<&str> = domains.filter(|d| d.split('.').next() == Some(word.as_str())).collect();
    hits.sort_unstable();
    hits.dedup();
    (hits.len() == 1).then(|| hits[0].to_owned())
}

/// Companies under two domains with the same first label (`acme.de`, `acme.com`): the
/// smaller is suggested as an alias of the larger.
async fn alias_candidates(store: &Store, rules: &AttributionRules) -> Result<Vec<Finding>, StoreError> {
    let sizes = store.company_sizes().await?;
    let mut by_label: BTreeMap<&str, Vec<(&str, i64)>> = BTreeMap::new();
    for (domain, n) in &sizes {
        if *n == 0 || rules.aliases().contains_key(domain) || rules.families().0.contains_key(domain) {
            continue;
        }
        if let Some(label) = domain.split('.').next().filter(|l| l.len() >= 3) {
            by_label.entry(label).or_default().push((domain, *n));
        }
    }
    let mut out = Vec::new();
    for group in by_label.values().filter(|g| g.len() > 1) {
        let mut g = group.clone();
        g.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let canonical = g[0].0;
        for &(alias, n) in &g[1..] {
            out.push(Finding {
                kind: "alias",
                identity: alias.to_owned(),
                activities: n as usize,
                score: 0,
                suggestion: Some(canonical.to_owned()),
                why: format!("same name as {canonical}, which has more activities"),
                yaml: format!("aliases: {{ {alias}: {canonical} }}"),
            });
        }
    }
    out.sort_by(|a, b| b.activities.cmp(&a.activities).then_with(|| a.identity.cmp(&b.identity)));
    Ok(out)
}

/// An actor as a YAML key: quoted when plain YAML would read it otherwise.
fn yaml_key(actor: &str) -> String {
    let plain = actor.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) && !actor.is_empty();
    if plain { actor.to_owned() } else { serde_json::to_string(actor).unwrap_or_default() }
}

/// The review as a table for people.
pub fn render(findings: &[Finding], counts: &crate::store::AttributionCounts) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "{} activities unattributed, {} ignored, of {}.\n\n",
        counts.unattributed, counts.ignored, counts.total
    );
    if findings.is_empty() {
        out.push_str("Nothing to review.\n");
        return out;
    }
    let _ = writeln!(out, "{:<13} {:<24} {:>10} {:>7}  {:<22} attribution.yaml", "kind", "identity", "activities", "score", "suggestion");
    for f in findings {
        let identity = if f.identity.chars().count() > 24 { format!("{}…", f.identity.chars().take(23).collect::<String>()) } else { f.identity.clone() };
        let _ = writeln!(
            out,
            "{:<13} {:<24} {:>10} {:>7.2}  {:<22} {}",
            f.kind,
            identity,
            f.activities,
            f.score as f64 / crate::scoring::MICRO as f64,
            f.suggestion.as_deref().unwrap_or("-"),
            f.yaml
        );
    }
    out.push_str("\nAdd a line to attribution.yaml (merging it into the key's map), then run `oql-sync check` and the next cycle rescores the companies it touches.\n");
    out
}
