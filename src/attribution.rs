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

/// Which rule placed an activity; kept in the store so that `explain` can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The source named the company.
    Source,
    /// An `actors:` override.
    ActorOverride,
    /// An `email_domains:` override.
    EmailOverride,
    /// The domain of the actor's email address.
    EmailDomain,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Source => "source",
            Rule::ActorOverride => "actor_override",
            Rule::EmailOverride => "email_override",
            Rule::EmailDomain => "email_domain",
        }
    }
}

/// The shape of `attribution.yaml`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributionFile {
    /// actor (login, Slack user id, origin hash) → company domain
    #[serde(default)]
    pub actors: BTreeMap<String, Domain>,
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
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttributionRules {
    actors: BTreeMap<String, String>,
    email_domains: BTreeMap<String, String>,
    free_mail: BTreeSet<String>,
    personal_hosts: BTreeSet<String>,
    github_orgs: BTreeMap<String, String>,
}

impl Default for AttributionRules {
    fn default() -> Self {
        AttributionRules::from_file(AttributionFile::default())
    }
}

impl AttributionRules {
    pub fn from_file(file: AttributionFile) -> Self {
        AttributionRules {
            actors: file.actors.into_iter().map(|(k, v)| (k, v.0)).collect(),
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
        }
    }

    /// The company of a GitHub org handle (`acme-inc` or `@acme-inc`), if configured.
    pub fn github_org(&self, handle: &str) -> Option<&str> {
        self.github_orgs.get(&handle.trim_start_matches('@').to_lowercase()).map(String::as_str)
    }

    /// The first rule that yields a domain wins.
    pub fn attribute(
        &self,
        source_domain: Option<&str>,
        actor: Option<&str>,
        email_domain: Option<&str>,
    ) -> Option<(String, Rule)> {
        if let Some(d) = source_domain {
            return Some((d.to_owned(), Rule::Source));
        }
        if let Some(d) = actor.and_then(|a| self.actors.get(a)) {
            return Some((d.clone(), Rule::ActorOverride));
        }
        let email = email_domain?;
        if let Some(d) = self.email_domains.get(email) {
            return Some((d.clone(), Rule::EmailOverride));
        }
        (!self.is_free_mail(email)).then(|| (email.to_owned(), Rule::EmailDomain))
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

    /// Identifies the rules: when it changes, stored attributions are recomputed.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for (k, v) in &self.actors {
            h.update(format!("a\0{k}\0{v}\n"));
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
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
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
            "actors:\n  octocat: https://www.GitHub.com\nemail_domains:\n  acme-mail.com: acme.com\nfree_mail: [mailbox.org]\n",
        )
        .unwrap();
        AttributionRules::from_file(file)
    }

    #[test]
    fn rules_apply_in_order() {
        let r = rules();
        assert_eq!(r.attribute(Some("given.com"), Some("octocat"), Some("acme-mail.com")), Some(("given.com".into(), Rule::Source)));
        assert_eq!(r.attribute(None, Some("octocat"), Some("acme-mail.com")), Some(("github.com".into(), Rule::ActorOverride)));
        assert_eq!(r.attribute(None, Some("x"), Some("acme-mail.com")), Some(("acme.com".into(), Rule::EmailOverride)));
        assert_eq!(r.attribute(None, None, Some("initech.io")), Some(("initech.io".into(), Rule::EmailDomain)));
    }

    #[test]
    fn free_mail_never_attributes() {
        let r = rules();
        assert_eq!(r.attribute(None, None, Some("gmail.com")), None);
        assert_eq!(r.attribute(None, None, Some("mailbox.org")), None);
        assert_eq!(r.attribute(None, None, Some("12345.users.noreply.github.com")), None);
        assert_eq!(r.attribute(None, None, None), None);
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

    #[test]
    fn fingerprint_changes_with_any_rule() {
        assert_ne!(rules().fingerprint(), AttributionRules::default().fingerprint());
        assert_eq!(rules().fingerprint(), rules().fingerprint());
    }
}
