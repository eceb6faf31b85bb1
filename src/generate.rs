//! A deterministic generator of realistic activity NDJSON for benchmarks: N activities
//! over M companies and 180 days, with the persona mix of `spec/golden/mix-7.ndjson`
//! (drive-by visitors, readers, trials, evaluators, production users, maintainers,
//! churners, cold leads, community members) plus unattributed noise. Same arguments,
//! same bytes.

use std::io::Write;

use chrono::NaiveDate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// (persona, share of companies, relative activity per company, first and last active
/// day as fractions of the 180 days, kinds as (kind, weight)).
type Persona = (&'static str, u32, u32, (f64, f64), &'static [(&'static str, u32)]);

const PERSONAS: [Persona; 9] = [
    ("drive", 30, 1, (0.0, 1.0), &[("page_view", 1), ("doc_view", 4)]),
    ("reader", 15, 3, (0.3, 1.0), &[("page_view", 5), ("doc_view", 5)]),
    ("trial", 10, 4, (0.8, 1.0), &[("page_view", 5), ("doc_view", 5), ("download", 3)]),
    ("evaluator", 10, 20, (0.5, 1.0), &[("page_view", 7), ("doc_view", 8), ("download", 6)]),
    ("production", 8, 50, (0.0, 1.0), &[("page_view", 6), ("doc_view", 5), ("download", 6), ("telemetry", 3)]),
    ("maintainer", 5, 80, (0.0, 1.0), &[("page_view", 6), ("doc_view", 5), ("download", 6), ("telemetry", 4)]),
    ("churning", 8, 60, (0.0, 0.6), &[("page_view", 7), ("doc_view", 7), ("download", 9)]),
    ("cold", 8, 10, (0.0, 0.3), &[("page_view", 6), ("doc_view", 5), ("download", 2)]),
    ("community", 6, 8, (0.0, 1.0), &[("community", 1)]),
];

const URLS: [&str; 8] = ["/", "/docs/install", "/docs/quickstart", "/blog/release", "/pricing", "/docs/api", "/enterprise", "/news"];
const VERSIONS: [&str; 6] = ["2.4.1", "2.5.0", "latest", "2.3.9", "2.5.1-enterprise", "nightly"];
const ACTIONS: [&str; 7] = ["star", "fork", "issue_opened", "pr_opened", "comment", "slack_join", "slack_message"];

/// The companies of one generated data set: each has a persona, drawn by share; its
/// weight in the activity draw is the persona's activity level. Built first from the
/// seed, so a later update file sees the same companies.
struct Population {
    persona_of: Vec<u8>,
    cumulative: Vec<u64>,
    total: u64,
}

impl Population {
    fn draw(rng: &mut StdRng, companies: u32) -> Population {
        let share_total: u32 = PERSONAS.iter().map(|p| p.1).sum();
        let mut persona_of = Vec::with_capacity(companies as usize);
        let mut cumulative = Vec::with_capacity(companies as usize);
        let mut total = 0u64;
        for _ in 0..companies.max(1) {
            let mut pick = rng.random_range(0..share_total);
            let index = PERSONAS.iter().position(|p| if pick < p.1 { true } else { pick -= p.1; false }).unwrap_or(0);
            persona_of.push(index as u8);
            total += PERSONAS[index].2 as u64;
            cumulative.push(total);
        }
        Population { persona_of, cumulative, total }
    }

    fn pick(&self, rng: &mut StdRng) -> usize {
        let draw = rng.random_range(0..self.total);
        self.cumulative.partition_point(|&c| c <= draw)
    }
}

/// Writes `activities` lines over `companies` companies ending on `end`; a tenth of the
/// lines carry no company (noise). Returns the lines written.
pub fn generate(out: &mut impl Write, activities: u64, companies: u32, end: NaiveDate, seed: u64) -> std::io::Result<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let population = Population::draw(&mut rng, companies);
    let start = end - chrono::TimeDelta::days(179);
    let mut line = String::with_capacity(256);
    for i in 0..activities {
        let noise = rng.random_range(0..10) == 0;
        let company = if noise { None } else { Some(population.pick(&mut rng)) };
        let persona = company.map(|c| &PERSONAS[population.persona_of[c] as usize]).unwrap_or(&PERSONAS[0]);
        let (from, to) = persona.3;
        let day = rng.random_range((from * 179.0) as i64..=((to * 179.0) as i64).max((from * 179.0) as i64));
        write_line(&mut line, &mut rng, &format!("g{i}"), company, persona, start + chrono::TimeDelta::days(day));
        out.write_all(line.as_bytes())?;
    }
    Ok(activities)
}

/// Writes an update to the data set `generate(…, companies, end, seed)` made: `activities`
/// new lines (ids `u…`, none noise) spread evenly over `touched` of its companies, dated
/// in the last 7 days up to `end`: what a day of polling adds to a large store.
pub fn generate_update(out: &mut impl Write, activities: u64, touched: u32, companies: u32, end: NaiveDate, seed: u64) -> std::io::Result<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let population = Population::draw(&mut rng, companies);
    let companies = population.persona_of.len() as u64;
    let touched = (touched as u64).clamp(1, companies);
    let mut line = String::with_capacity(256);
    for i in 0..activities {
        let company = ((i % touched) * companies / touched) as usize;
        let persona = &PERSONAS[population.persona_of[company] as usize];
        let date = end - chrono::TimeDelta::days(rng.random_range(0..7));
        write_line(&mut line, &mut rng, &format!("u{i}"), Some(company), persona, date);
        out.write_all(line.as_bytes())?;
    }
    Ok(activities)
}

/// One activity line of a persona's kinds (noise when `company` is `None`).
fn write_line(line: &mut String, rng: &mut StdRng, id: &str, company: Option<usize>, persona: &Persona, date: NaiveDate) {
    line.clear();
    let (h, m) = (rng.random_range(0..24), rng.random_range(0..60));
    let kinds = persona.4;
    let weight: u32 = kinds.iter().map(|k| k.1).sum();
    let mut pick = rng.random_range(0..weight);
    let kind = kinds.iter().find(|k| if pick < k.1 { true } else { pick -= k.1; false }).map(|k| k.0).unwrap_or("page_view");
    let source = match kind {
        "telemetry" => "telemetry",
        "community" => "github",
        _ => "scarf",
    };
    line.push_str(&format!("{{\"id\":\"{id}\",\"source\":\"{source}\",\"kind\":\"{kind}\",\"occurred_at\":\"{date}T{h:02}:{m:02}:00Z\""));
    match company {
        Some(c) => line.push_str(&format!(",\"company_domain\":\"{}-{c}.com\",\"actor\":\"a{}\"", persona.0, c * 4 + rng.random_range(0..4))),
        None => line.push_str(&format!(",\"actor\":\"noise{}\"", rng.random_range(0..100_000))),
    }
    match kind {
        "page_view" | "doc_view" => line.push_str(&format!(",\"url\":\"{}\"", URLS[rng.random_range(0..URLS.len())])),
        "community" => line.push_str(&format!(",\"action\":\"{}\"", ACTIONS[rng.random_range(0..ACTIONS.len())])),
        _ => line.push_str(&format!(",\"package\":\"oqldb\",\"version\":\"{}\"", VERSIONS[rng.random_range(0..VERSIONS.len())])),
    }
    line.push_str("}\n");
}
