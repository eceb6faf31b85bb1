//! Attribution of an activity to a company domain: rules 1 to 3 of
//! `spec/activity-format.md` (rule 4, GitHub profiles, comes with the GitHub source).
//!
//! Rules 2 and 3 depend on config, so the store keeps what they need (actor, email
//! domain) and re-runs them whenever the rules' fingerprint changes: an override added
//! later places activities that were imported unattributed.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::Domain;

/// Free-mail and no-reply domains: an address there says nothing about the company.
pub const FREE_MAIL: [&str; 14] = [
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "yahoo.com",
    "icloud.com",
    "me.com",
    "proton.me",
    "protonmail.com",
    "gmx.de",
    "qq.com",
    "163.com",
    "users.noreply.github.com",
];

/// Hosts of personal pages, link lists, blogs and social profiles: a profile `blog` (or
/// any URL) there names a person, never their employer. Each entry covers its
/// subdomains too (`medium.com` covers `me.medium.com`, `github.io` every Pages site).
pub const PERSONAL_HOSTS: [&str; 40] = [
    "about.me",
    "behance.net",
    "bio.link",
    "blogspot.com",
    "bsky.app",
    "carrd.co",
    "codeberg.page",
    "codepen.io",
    "dev.to",
    "dribbble.com",
    "facebook.com",
    "fly.dev",
    "ghost.io",
    "github.com",
    "github.io",
    "gitlab.com",
    "gitlab.io",
    "hashnode.dev",
    "herokuapp.com",
    "instagram.com",
    "keybase.io",
    "linkedin.com",
    "linktr.ee",
    "mastodon.social",
    "medium.com",
    "netlify.app",
    "notion.site",
    "pages.dev",
    "read.cv",
    "replit.app",
    "sites.google.com",
    "stackoverflow.com",
    "substack.com",
    "t.me",
    "tumblr.com",
    "twitter.com",
    "vercel.app",
    "wordpress.com",
    "x.com",
    "youtube.com",
];

/// Reverse-DNS and hosting domains of cloud providers: a visitor resolved to one is a
/// machine somewhere in a data centre, never the company running it.
pub const CLOUD_HOSTS: [&str; 10] = [
    "amazonaws.com",
    "azurewebsites.net",
    "cloudapp.azure.com",
    "cloudapp.net",
    "cloudfront.net",
    "googleusercontent.com",
    "linodeusercontent.com",
    "vultrusercontent.com",
    "your-server.de",
    "compute.internal",
];

/// Which rule placed an activity; kept in the store so that `explain` can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    /// The source named the company.
    Source,
    /// An `actors:` override.
    ActorOverride,
    /// An `actors:` affiliation whose date range holds the activity's day.
    Affiliation,
    /// An `email_domains:` override.
    EmailOverride,
    /// The domain of the actor's email address.
    EmailDomain,
    /// An `ignore:` entry: the activity is kept and counts for no company (the domain
    /// that goes with it is empty).
    Ignored,
}

impl Rule {
    pub const ALL: [Rule; 6] = [Rule::Source, Rule::ActorOverride, Rule::Affiliation, Rule::EmailOverride, Rule::EmailDomain, Rule::Ignored];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Source => "source",
            Rule::ActorOverride => "actor_override",
            Rule::Affiliation => "affiliation",
            Rule::EmailOverride => "email_override",
            Rule::EmailDomain => "email_domain",
            Rule::Ignored => "ignored",
        }
    }
}

/// The shape of `attribution.yaml`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributionFile {
    /// actor (login, Slack user id, origin hash) → company domain, or a list of
    /// affiliations over time (`{company, from?, until?}`, UTC dates, `until` exclusive)
    #[serde(default)]
    pub actors: BTreeMap<String, ActorRule>,
    /// email domain → company domain (e.g. a subsidiary's mail domain)
    #[serde(default)]
    pub email_domains: BTreeMap<Domain, Domain>,
    /// more free-mail domains, beside the built-in list
    #[serde(default)]
    pub free_mail: Vec<Domain>,
    /// more personal-page hosts, beside the built-in list (`PERSONAL_HOSTS`)
    #[serde(default)]
    pub personal_hosts: Vec<PersonalHost>,
    /// GitHub org handle (as in a profile's `company: "@acme-inc"`) → company domain
    #[serde(default)]
    pub github_orgs: BTreeMap<String, Domain>,
    /// domain → canonical domain (acquisitions, rebrands, regional sites): applied after
    /// every rule; the alias is no longer a company. Chains resolve; cycles are errors.
    #[serde(default)]
    pub aliases: BTreeMap<Domain, Domain>,
    /// child → parent: a parent is scored on its own and all its descendants' activities.
    #[serde(default)]
    pub parents: BTreeMap<Domain, Domain>,
    /// actors and domains whose activities count for no company (kept, shown as ignored)
    #[serde(default)]
    pub ignore: IgnoreList,
}

/// `ignore:` of `attribution.yaml`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IgnoreList {
    /// actors (bots, CI runners): an ignore wins over every rule
    #[serde(default)]
    pub actors: Vec<String>,
    /// domains: activities attributed there (after aliases) count for no company
    #[serde(default)]
    pub domains: Vec<Domain>,
}

/// An `actors:` value: a company domain, or affiliations over time.
#[derive(Debug, Clone, PartialEq, Eq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ActorRule {
    Company(Domain),
    Affiliations(Vec<Affiliation>),
}

impl<'de> Deserialize<'de> for ActorRule {
    // By hand rather than `untagged`: an untagged enum hides the inner error (a bad
    // domain, a bad date) behind "did not match any variant".
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = ActorRule;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a company domain or a list of {company, from, until}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ActorRule, E> {
                Domain::try_from(v.to_owned()).map(ActorRule::Company).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<ActorRule, A::Error> {
                Vec::<Affiliation>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(ActorRule::Affiliations)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// One affiliation of an actor: `company` from `from` (inclusive) until `until`
/// (exclusive), UTC dates; an open end is unbounded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Affiliation {
    pub company: Domain,
    #[serde(default)]
    pub from: Option<UtcDate>,
    #[serde(default)]
    pub until: Option<UtcDate>,
}

/// A calendar date (`2026-05-01`), read as a UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct UtcDate(pub chrono::NaiveDate);

impl TryFrom<String> for UtcDate {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map(UtcDate).map_err(|_| format!("`{s}` is not a date (YYYY-MM-DD)"))
    }
}

/// A problem `serde` cannot see: where (keys from the top of the file) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub at: Vec<String>,
    pub message: String,
}

impl AttributionFile {
    /// Overlapping or empty date ranges, alias and parent cycles.
    pub fn validate(&self) -> Result<(), RuleError> {
        for (actor, rule) in &self.actors {
            let ActorRule::Affiliations(list) = rule else { continue };
            let at = |i: usize| vec!["actors".to_owned(), actor.clone(), format!("company#{i}")];
            let mut ranges: Vec<(usize, Option<UtcDate>, Option<UtcDate>)> = list.iter().enumerate().map(|(i, a)| (i, a.from, a.until)).collect();
            for &(i, from, until) in &ranges {
                if let (Some(f), Some(u)) = (from, until)
                    && f >= u
                {
                    return Err(RuleError { at: at(i), message: format!("the range of `{actor}` from {} until {} is empty (`until` is exclusive)", f.0, u.0) });
                }
            }
            // `None` as `from` sorts first: an open start is the earliest.
            ranges.sort_by_key(|&(_, from, _)| from);
            for w in ranges.windows(2) {
                let (_, _, until) = w[0];
                let (j, from, _) = w[1];
                let overlaps = match (until, from) {
                    (None, _) | (_, None) => true,
                    (Some(u), Some(f)) => u > f,
                };
                if overlaps {
                    return Err(RuleError { at: at(j), message: format!("the affiliations of `{actor}` overlap: each day may belong to one company only") });
                }
            }
        }
        for (name, map) in [("aliases", &self.aliases), ("parents", &self.parents)] {
            if let Some(start) = find_cycle(map) {
                let mut chain = vec![start.0.clone()];
                let mut d = &map[start];
                while d != start {
                    chain.push(d.0.clone());
                    d = &map[d];
                }
                chain.push(start.0.clone());
                return Err(RuleError { at: vec![name.to_owned(), start.0.clone()], message: format!("{name} form a cycle: {}", chain.join(" -> ")) });
            }
        }
        Ok(())
    }
}

/// A key of `map` that following the map leads back to, the smallest such.
fn find_cycle(map: &BTreeMap<Domain, Domain>) -> Option<&Domain> {
    map.keys().find(|start| {
        let mut d = *start;
        for _ in 0..=map.len() {
            match map.get(d) {
                Some(next) if next == *start => return true,
                Some(next) => d = next,
                None => return false,
            }
        }
        false
    })
}

/// One affiliation as the rules hold it: days since 1970, `until` exclusive.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Span {
    from: Option<i64>,
    until: Option<i64>,
    company: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttributionRules {
    actors: BTreeMap<String, String>,
    affiliations: BTreeMap<String, Vec<Span>>,
    email_domains: BTreeMap<String, String>,
    free_mail: BTreeSet<String>,
    personal_hosts: BTreeSet<String>,
    github_orgs: BTreeMap<String, String>,
    /// Alias → canonical domain, chains already followed.
    aliases: BTreeMap<String, String>,
    /// Child → parent, both canonical.
    parents: BTreeMap<String, String>,
    ignored_actors: BTreeSet<String>,
    ignored_domains: BTreeSet<String>,
}

impl Default for AttributionRules {
    fn default() -> Self {
        AttributionRules::from_file(AttributionFile::default())
    }
}

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

fn day_of(date: UtcDate) -> i64 {
    (date.0 - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")).num_days()
}

impl AttributionRules {
    /// The rules of a file; call `AttributionFile::validate` first (a cycle left in is
    /// cut where it closes).
    pub fn from_file(file: AttributionFile) -> Self {
        let raw_aliases: BTreeMap<String, String> = file.aliases.into_iter().map(|(k, v)| (k.0, v.0)).collect();
        let canonical = |d: &str| -> String {
            let mut d = d;
            for _ in 0..=raw_aliases.len() {
                match raw_aliases.get(d) {
                    Some(next) => d = next,
                    None => break,
                }
            }
            d.to_owned()
        };
        let aliases = raw_aliases.keys().map(|k| (k.clone(), canonical(k))).filter(|(k, v)| k != v).collect();
        let parents = file.parents.into_iter().map(|(k, v)| (canonical(&k.0), canonical(&v.0))).filter(|(k, v)| k != v).collect();
        let mut actors = BTreeMap::new();
        let mut affiliations = BTreeMap::new();
        for (actor, rule) in file.actors {
            match rule {
                ActorRule::Company(d) => {
                    actors.insert(actor, d.0);
                }
                ActorRule::Affiliations(list) => {
                    let spans = list.into_iter().map(|a| Span { from: a.from.map(day_of), until: a.until.map(day_of), company: a.company.0 }).collect();
                    affiliations.insert(actor, spans);
                }
            }
        }
        AttributionRules {
            actors,
            affiliations,
            email_domains: file.email_domains.into_iter().map(|(k, v)| (k.0, v.0)).collect(),
            free_mail: FREE_MAIL
                .iter()
                .map(|s| s.to_string())
                .chain(file.free_mail.into_iter().map(|d| d.0))
                .collect(),
            personal_hosts: PERSONAL_HOSTS.iter().map(|s| s.to_string()).chain(file.personal_hosts.into_iter().map(|h| h.0)).collect(),
            github_orgs: file
                .github_orgs
                .into_iter()
                .map(|(k, v)| (k.trim_start_matches('@').to_lowercase(), v.0))
                .collect(),
            aliases,
            parents,
            ignored_actors: file.ignore.actors.into_iter().collect(),
            ignored_domains: file.ignore.domains.into_iter().map(|d| d.0).collect(),
        }
    }

    /// The company of a GitHub org handle (`acme-inc` or `@acme-inc`), if configured.
    pub fn github_org(&self, handle: &str) -> Option<&str> {
        self.github_orgs.get(&handle.trim_start_matches('@').to_lowercase()).map(String::as_str)
    }

    /// The first rule that yields a domain wins; then the alias applies, and an ignored
    /// actor or domain turns the placement into `Rule::Ignored` (with an empty domain).
    /// `occurred_at` (UTC nanoseconds) picks an actor's affiliation.
    pub fn attribute(
        &self,
        source_domain: Option<&str>,
        actor: Option<&str>,
        email_domain: Option<&str>,
        occurred_at: i64,
    ) -> Option<(String, Rule)> {
        if actor.is_some_and(|a| self.ignored_actors.contains(a)) {
            return Some((String::new(), Rule::Ignored));
        }
        let (domain, rule) = self.first_rule(source_domain, actor, email_domain, occurred_at)?;
        let domain = self.canonical(&domain);
        if self.ignored_domains.contains(domain) {
            return Some((String::new(), Rule::Ignored));
        }
        (!self.never_a_company(domain)).then(|| (domain.to_owned(), rule))
    }

    fn first_rule(&self, source_domain: Option<&str>, actor: Option<&str>, email_domain: Option<&str>, occurred_at: i64) -> Option<(String, Rule)> {
        if let Some(d) = source_domain {
            return Some((d.to_owned(), Rule::Source));
        }
        if let Some(a) = actor {
            if let Some(d) = self.actors.get(a) {
                return Some((d.clone(), Rule::ActorOverride));
            }
            let day = occurred_at.div_euclid(NANOS_PER_DAY);
            let held = self.affiliations.get(a).and_then(|spans| {
                spans.iter().find(|s| s.from.is_none_or(|f| f <= day) && s.until.is_none_or(|u| day < u))
            });
            if let Some(s) = held {
                return Some((s.company.clone(), Rule::Affiliation));
            }
        }
        let email = email_domain?;
        if let Some(d) = self.email_domains.get(email) {
            return Some((d.clone(), Rule::EmailOverride));
        }
        (!self.is_free_mail(email)).then(|| (email.to_owned(), Rule::EmailDomain))
    }

    /// What a domain some rule found ends as: its canonical domain, or `None` when that
    /// is ignored or never a company (rule 4, GitHub profiles, goes through here too).
    pub fn company(&self, domain: &str) -> Option<String> {
        let d = self.canonical(domain);
        (!self.ignored_domains.contains(d) && !self.never_a_company(d)).then(|| d.to_owned())
    }

    /// The canonical domain of an alias (chains followed), or the domain itself.
    pub fn canonical<'a>(&'a self, domain: &'a str) -> &'a str {
        self.aliases.get(domain).map_or(domain, String::as_str)
    }

    /// Free-mail, personal-page and cloud hosts: never a company, whichever rule named them.
    pub fn never_a_company(&self, domain: &str) -> bool {
        self.is_free_mail(domain) || self.is_personal_host(domain) || CLOUD_HOSTS.iter().any(|c| domain == *c || domain.ends_with(&format!(".{c}")))
    }

    /// Aliases (alias → canonical, chains followed).
    pub fn aliases(&self) -> &BTreeMap<String, String> {
        &self.aliases
    }

    /// Parents (child → parent, canonical domains).
    pub fn parents(&self) -> &BTreeMap<String, String> {
        &self.parents
    }

    /// The parents as families.
    pub fn families(&self) -> Families {
        Families(self.parents.clone())
    }

    /// Whether the actor is on the ignore list.
    pub fn is_ignored_actor(&self, actor: &str) -> bool {
        self.ignored_actors.contains(actor)
    }

    /// A free-mail domain or any subdomain of one (`x.users.noreply.github.com`).
    pub fn is_free_mail(&self, domain: &str) -> bool {
        within(&self.free_mail, domain)
    }

    /// A personal-page host or any subdomain of one (`me.substack.com`): a URL there
    /// never names a company.
    pub fn is_personal_host(&self, host: &str) -> bool {
        within(&self.personal_hosts, host)
    }

    /// Identifies the rules that place activities: when it changes, stored attributions
    /// are recomputed. (Parents place nothing: scoring reads them from the config.)
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for (k, v) in &self.actors {
            h.update(format!("a\0{k}\0{v}\n"));
        }
        for (k, spans) in &self.affiliations {
            for s in spans {
                h.update(format!("t\0{k}\0{:?}\0{:?}\0{}\n", s.from, s.until, s.company));
            }
        }
        for (k, v) in &self.email_domains {
            h.update(format!("e\0{k}\0{v}\n"));
        }
        for d in &self.free_mail {
            h.update(format!("f\0{d}\n"));
        }
        for (k, v) in &self.github_orgs {
            h.update(format!("g\0{k}\0{v}\n"));
        }
        for d in &self.personal_hosts {
            h.update(format!("p\0{d}\n"));
        }
        for (k, v) in &self.aliases {
            h.update(format!("l\0{k}\0{v}\n"));
        }
        for d in &self.ignored_actors {
            h.update(format!("ia\0{d}\n"));
        }
        for d in &self.ignored_domains {
            h.update(format!("id\0{d}\n"));
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Companies and their parents (child → parent): scoring folds a company's descendants
/// into it. The store records them as `child>parent` lines, one a line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Families(pub BTreeMap<String, String>);

impl Families {
    pub fn to_lines(&self) -> String {
        self.0.iter().map(|(c, p)| format!("{c}>{p}\n")).collect()
    }

    pub fn from_lines(text: &str) -> Families {
        Families(text.lines().filter_map(|l| l.split_once('>')).map(|(c, p)| (c.to_owned(), p.to_owned())).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A company's ancestors, nearest first (a cycle, refused at load, is cut).
    pub fn ancestors<'a>(&'a self, domain: &'a str) -> Vec<&'a str> {
        let mut out: Vec<&str> = Vec::new();
        let mut d = domain;
        while let Some(p) = self.0.get(d) {
            if p == domain || out.contains(&p.as_str()) {
                break;
            }
            out.push(p.as_str());
            d = p;
        }
        out
    }

    /// A company's descendants at any depth, sorted.
    pub fn descendants(&self, domain: &str) -> Vec<&str> {
        self.0.keys().filter(|c| self.ancestors(c).contains(&domain)).map(String::as_str).collect()
    }

    /// Every company whose score depends on one of `changed`: the changed ones, their
    /// ancestors, and (because an ancestor is scored on them) the ancestors' descendants.
    pub fn affected<'a>(&'a self, changed: &'a [String]) -> BTreeSet<&'a str> {
        let mut out = BTreeSet::new();
        for d in changed {
            if !self.0.contains_key(d.as_str()) && !self.0.values().any(|p| p == d) {
                continue;
            }
            for a in std::iter::once(d.as_str()).chain(self.ancestors(d)) {
                out.insert(a);
                out.extend(self.descendants(a));
            }
        }
        out
    }
}

/// Whether `domain` is in `set` or a subdomain of an entry.
fn within(set: &BTreeSet<String>, domain: &str) -> bool {
    let mut d = domain;
    loop {
        if set.contains(d) {
            return true;
        }
        match d.split_once('.') {
            Some((_, rest)) if rest.contains('.') => d = rest,
            _ => return false,
        }
    }
}

/// A `personal_hosts:` entry: a domain, optionally written as a wildcard
/// (`*.mysite.dev`), which means the same (an entry always covers its subdomains).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PersonalHost(pub String);

impl TryFrom<String> for PersonalHost {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bare = s.trim().trim_start_matches("*.");
        crate::activity::normalize_domain(bare).map(PersonalHost).ok_or_else(|| format!("`{s}` is not a host name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> AttributionRules {
        let file: AttributionFile = serde_saphyr::from_str(
            "actors:\n  octocat: https://www.Initech-Labs.com\nemail_domains:\n  acme-mail.com: acme.com\nfree_mail: [mailbox.org]\n",
        )
        .unwrap();
        AttributionRules::from_file(file)
    }

    #[test]
    fn rules_apply_in_order() {
        let r = rules();
        assert_eq!(r.attribute(Some("given.com"), Some("octocat"), Some("acme-mail.com"), 0), Some(("given.com".into(), Rule::Source)));
        assert_eq!(r.attribute(None, Some("octocat"), Some("acme-mail.com"), 0), Some(("initech-labs.com".into(), Rule::ActorOverride)));
        assert_eq!(r.attribute(None, Some("x"), Some("acme-mail.com"), 0), Some(("acme.com".into(), Rule::EmailOverride)));
        assert_eq!(r.attribute(None, None, Some("initech.io"), 0), Some(("initech.io".into(), Rule::EmailDomain)));
    }

    #[test]
    fn free_mail_never_attributes() {
        let r = rules();
        assert_eq!(r.attribute(None, None, Some("gmail.com"), 0), None);
        assert_eq!(r.attribute(None, None, Some("mailbox.org"), 0), None);
        assert_eq!(r.attribute(None, None, Some("12345.users.noreply.github.com"), 0), None);
        assert_eq!(r.attribute(None, None, None, 0), None);
    }

    #[test]
    fn personal_hosts_cover_their_subdomains_and_extend_from_the_file() {
        let file: AttributionFile = serde_saphyr::from_str("personal_hosts: [mysite.dev, \"*.pages.example\"]\n").unwrap();
        let r = AttributionRules::from_file(file);
        for host in ["dev.to", "linktr.ee", "me.medium.com", "x.netlify.app", "me.substack.com", "me.github.io", "a.vercel.app", "mysite.dev", "me.mysite.dev", "a.pages.example"] {
            assert!(r.is_personal_host(host), "{host}");
        }
        for host in ["acme.com", "devto.com", "netlify.com", "example"] {
            assert!(!r.is_personal_host(host), "{host}");
        }
        assert_ne!(r.fingerprint(), AttributionRules::default().fingerprint());
        assert!(serde_saphyr::from_str::<AttributionFile>("personal_hosts: [\"not a host\"]\n").is_err());
    }

    fn nanos(date: &str) -> i64 {
        let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
        d.and_hms_opt(23, 59, 59).unwrap().and_utc().timestamp_nanos_opt().unwrap()
    }

    fn rules_of(yaml: &str) -> AttributionRules {
        let file: AttributionFile = serde_saphyr::from_str(yaml).unwrap();
        file.validate().unwrap();
        AttributionRules::from_file(file)
    }

    #[test]
    fn affiliations_place_by_utc_day_until_exclusive_from_inclusive() {
        let r = rules_of("actors:\n  octocat:\n    - { company: acme.com, until: 2026-05-01 }\n    - { company: globex.com, from: 2026-05-01, until: 2026-06-01 }\n");
        let at = |d: &str| r.attribute(None, Some("octocat"), Some("initech.io"), nanos(d));
        assert_eq!(at("2026-04-30"), Some(("acme.com".into(), Rule::Affiliation)));
        assert_eq!(at("2026-05-01"), Some(("globex.com".into(), Rule::Affiliation)));
        assert_eq!(at("2026-05-31"), Some(("globex.com".into(), Rule::Affiliation)));
        // Outside every range the other rules apply.
        assert_eq!(at("2026-06-01"), Some(("initech.io".into(), Rule::EmailDomain)));
    }

    #[test]
    fn aliases_apply_after_every_rule_and_chains_resolve() {
        let r = rules_of("aliases:\n  acme.de: acme.eu\n  acme.eu: acme.com\nactors:\n  hubot: acme.de\n");
        assert_eq!(r.attribute(Some("acme.de"), None, None, 0), Some(("acme.com".into(), Rule::Source)));
        assert_eq!(r.attribute(None, Some("hubot"), None, 0), Some(("acme.com".into(), Rule::ActorOverride)));
        assert_eq!(r.attribute(None, None, Some("acme.eu"), 0), Some(("acme.com".into(), Rule::EmailDomain)));
        assert_eq!(r.company("acme.de").as_deref(), Some("acme.com"));
    }

    #[test]
    fn an_ignore_wins_over_every_rule() {
        let r = rules_of("actors:\n  \"dependabot[bot]\": acme.com\nignore:\n  actors: [\"dependabot[bot]\"]\n  domains: [example.com]\naliases:\n  example.org: example.com\n");
        assert_eq!(r.attribute(Some("acme.com"), Some("dependabot[bot]"), None, 0), Some((String::new(), Rule::Ignored)));
        assert_eq!(r.attribute(None, None, Some("example.org"), 0), Some((String::new(), Rule::Ignored)));
        assert_eq!(r.company("example.com"), None);
    }

    #[test]
    fn hosts_of_people_and_machines_are_never_companies() {
        let r = rules_of("personal_hosts: [mysite.dev]\n");
        for d in ["gmail.com", "me.mysite.dev", "ec2-1-2-3-4.compute-1.amazonaws.com", "x.github.io"] {
            assert_eq!(r.attribute(Some(d), None, None, 0), None, "{d}");
        }
    }

    #[test]
    fn families_fold_descendants_at_any_depth() {
        let r = rules_of("parents:\n  a.com: b.com\n  b.com: c.com\n  d.com: c.com\n");
        let f = r.families();
        assert_eq!(f.ancestors("a.com"), vec!["b.com", "c.com"]);
        assert_eq!(f.descendants("c.com"), vec!["a.com", "b.com", "d.com"]);
        let changed = vec!["a.com".to_owned()];
        assert_eq!(f.affected(&changed).into_iter().collect::<Vec<_>>(), vec!["a.com", "b.com", "c.com", "d.com"]);
        assert_eq!(Families::from_lines(&f.to_lines()), f);
    }

    #[test]
    fn fingerprint_changes_with_any_rule() {
        assert_ne!(rules().fingerprint(), AttributionRules::default().fingerprint());
        assert_eq!(rules().fingerprint(), rules().fingerprint());
    }
}
