//! The console's HTML: one function a page, over data the handlers gathered. Every
//! string from the store passes through `shown` (emails, IPs and known secrets out);
//! maud escapes it.

use std::collections::HashMap;

use chrono::NaiveDate;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::charts;
use super::listing::{COLUMNS, ListQuery, PAGE, encode};
use crate::scoring::explain::Explanation;
use crate::scoring::{CompanyScore, Stage};
use crate::store::{CompanySink, CursorRow, ExportFileRow, IdentityRow, QuarantinedLine, RecentActivity, RecordRow, RunRow, StageMove, UnattributedRow};

/// Text from the store as a page may show it: no email, IP address or known secret.
pub fn shown(text: &str) -> String {
    let personal = crate::personal_data::redact_personal_data(text);
    crate::redaction::redact(&personal).into_owned()
}

/// At most `n` characters of `text`, shown.
fn short(text: &str, n: usize) -> String {
    let s = shown(text);
    if s.chars().count() > n { format!("{}…", s.chars().take(n).collect::<String>()) } else { s }
}

/// A time in nanoseconds since the epoch, to the second, UTC.
pub fn time(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// What every page shares.
pub struct Frame<'a> {
    pub as_of: NaiveDate,
    pub csrf: String,
    /// A session to end (a logout button).
    pub session: bool,
    pub active: &'a str,
}

const NAV: [(&str, &str); 5] = [("/", "Funnel"), ("/companies", "Companies"), ("/sync", "Sync"), ("/sources", "Sources"), ("/status", "Status (JSON)")];

pub fn layout(frame: &Frame, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · oql-sync" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/assets/console.css";
            }
            body {
                a class="skip" href="#main" { "Skip to the content" }
                header {
                    nav aria-label="Console" {
                        ul {
                            @for (href, name) in NAV {
                                li { a href=(href) aria-current=[(href == frame.active).then_some("page")] { (name) } }
                            }
                        }
                    }
                    p class="asof" { "Scores as of " strong { (frame.as_of) } }
                    @if frame.session {
                        form method="post" action="/logout" class="logout" {
                            input type="hidden" name="csrf" value=(frame.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
                footer {
                    p { "oql-sync " (env!("CARGO_PKG_VERSION")) ". Endpoints for machines: "
                        @for (i, p) in ["/livez", "/readyz", "/healthz", "/metrics", "/status"].iter().enumerate() {
                            a href=(p) { (p) } @if i < 4 { ", " }
                        }
                    }
                }
            }
        }
    }
}

pub fn login(error: Option<&str>, has_token: bool) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Log in · oql-sync" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/assets/console.css";
            }
            body {
                main id="main" {
                    h1 { "oql-sync console" }
                    @if !has_token {
                        p role="alert" { "This console listens beyond this machine and has no token: start the daemon with "
                            code { "--console-token-env VAR" } " (VAR holding a long random token) to open it, or listen on 127.0.0.1." }
                    } @else {
                        @if let Some(e) = error { p role="alert" class="error" { (e) } }
                        form method="post" action="/login" {
                            p {
                                label for="token" { "Console token" }
                                input id="token" name="token" type="password" autocomplete="current-password" required autofocus;
                            }
                            button type="submit" { "Log in" }
                        }
                    }
                }
            }
        }
    }
}

pub fn error(frame: &Frame, why: &str) -> Markup {
    layout(frame, "Something went wrong", html! { p role="alert" class="error" { (shown(why)) } })
}

/// A connector's line on the funnel page.
pub struct ConnectorLine {
    pub name: String,
    pub kind: &'static str,
    pub schedule: String,
    pub health: String,
    pub healthy: bool,
    pub last_run: Option<RunRow>,
    pub next_run: Option<String>,
}

pub struct Funnel<'a> {
    pub counts: [u64; 5],
    pub history: &'a [(NaiveDate, [u64; 5])],
    pub from: NaiveDate,
    pub moves_as_of: Option<String>,
    pub moves: &'a [StageMove],
    pub new_leads: Vec<&'a CompanyScore>,
    pub churn_risk: usize,
    pub connectors: Vec<ConnectorLine>,
}

fn company_link(domain: &str) -> Markup {
    html! { a href=(format!("/companies/{}", encode(domain))) { (shown(domain)) } }
}

/// Whether a move goes down the funnel: to inactive, or to a lower stage.
fn is_down(m: &StageMove) -> bool {
    m.to == Stage::Inactive || m.from.is_some_and(|f| f != Stage::Inactive && m.to < f)
}

fn move_list(moves: &[&StageMove], empty: &str) -> Markup {
    html! {
        @if moves.is_empty() { p { (empty) } } @else {
            ul class="moves" {
                @for m in moves.iter().take(30) {
                    li { (company_link(&m.domain)) ": " (m.from.map_or("new", charts::label)) " → " (charts::label(m.to)) " on " (m.day) }
                }
            }
            @if moves.len() > 30 { p { "and " (moves.len() - 30) " more." } }
        }
    }
}

pub fn funnel(frame: &Frame, f: &Funnel) -> Markup {
    let total: u64 = f.counts.iter().sum();
    let ups: Vec<&StageMove> = f.moves.iter().filter(|m| m.from.is_some() && !is_down(m)).collect();
    let downs: Vec<&StageMove> = f.moves.iter().filter(|m| m.from.is_some() && is_down(m)).collect();
    layout(frame, "Funnel", html! {
        section aria-labelledby="now" {
            h2 id="now" { "Now: " (total) " companies" }
            (charts::funnel(&f.counts))
            table id="funnel" {
                caption { "Companies by stage, as of " (frame.as_of) }
                thead { tr { th scope="col" { "Stage" } th scope="col" class="num" { "Companies" } } }
                tbody {
                    @for (i, s) in Stage::ALL.iter().enumerate() {
                        tr {
                            th scope="row" { a href=(format!("/companies?stage={}", s.as_str())) { (charts::label(*s)) } }
                            td class="num" data-stage=(s.as_str()) { (f.counts[i]) }
                        }
                    }
                }
            }
        }
        section aria-labelledby="days" {
            h2 id="days" { "Stage counts per day" }
            (charts::history(f.history, f.from, frame.as_of))
            details {
                summary { "The counts as a table" }
                table {
                    caption { "Companies by stage per day (recorded by the daily rescore; earlier days back-filled from the store)" }
                    thead { tr { th scope="col" { "Day" } @for s in Stage::ALL { th scope="col" class="num" { (charts::label(s)) } } } }
                    tbody { @for (d, c) in f.history.iter().rev() { tr { th scope="row" { (d) } @for n in c { td class="num" { (n) } } } } }
                }
            }
        }
        section aria-labelledby="week" {
            h2 id="week" { "This week" }
            p { @if let Some(a) = &f.moves_as_of { "Stage moves of the 7 days to " (a) " (the last full rescore)." } @else { "No full rescore has recorded stage moves yet." } }
            div class="cols" {
                section aria-labelledby="new" { h3 id="new" { "New leads (" (f.new_leads.len()) ")" }
                    @if f.new_leads.is_empty() { p { "None first seen in the last 7 days." } } @else {
                        ul class="moves" { @for s in f.new_leads.iter().take(30) { li { (company_link(&s.domain)) ", " (charts::label(s.stage)) ", first seen " (s.first_seen) } } }
                    }
                }
                section aria-labelledby="ups" { h3 id="ups" { "Moved up (" (ups.len()) ")" } (move_list(&ups, "None.")) }
                section aria-labelledby="downs" { h3 id="downs" { "Moved down (" (downs.len()) ")" } (move_list(&downs, "None.")) }
                section aria-labelledby="churn" { h3 id="churn" { "Churn risk" }
                    p { a href="/companies?churn=yes" { (f.churn_risk) " companies" } " show a churn risk now." }
                }
            }
        }
        section aria-labelledby="connectors" {
            h2 id="connectors" { "Connectors" }
            table {
                caption { "Each connector's health, last run and next run" }
                thead { tr { th scope="col" { "Connector" } th scope="col" { "Kind" } th scope="col" { "Health" } th scope="col" { "Last run" } th scope="col" { "Next run" } th scope="col" { "Schedule" } } }
                tbody {
                    @for c in &f.connectors {
                        tr {
                            th scope="row" { (c.name) }
                            td { (c.kind) }
                            td class=(if c.healthy { "ok" } else { "bad" }) { (shown(&c.health)) }
                            td { @if let Some(r) = &c.last_run { (r.started_at) " " (r.status) @if let Some(e) = &r.error { br; span class="error" { (short(e, 200)) } } } @else { "never" } }
                            td { (c.next_run.as_deref().unwrap_or("not scheduled")) }
                            td { code { (c.schedule) } }
                        }
                    }
                }
            }
        }
    })
}

pub fn companies(frame: &Frame, q: &ListQuery, rows: &[&CompanyScore], names: &HashMap<String, String>) -> Markup {
    let pages = rows.len().div_ceil(PAGE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let shown_rows = &rows[((page - 1) * PAGE).min(rows.len())..(page * PAGE).min(rows.len())];
    let (sort, desc) = q.sort();
    let stage = q.stage();
    layout(frame, "Companies", html! {
        form method="get" action="/companies" role="search" class="filters" {
            p {
                label for="q" { "Domain or name" }
                input id="q" name="q" type="search" value=(q.q.as_deref().unwrap_or(""));
            }
            p {
                label for="stage" { "Stage" }
                select id="stage" name="stage" {
                    option value="" selected[stage.is_none()] { "any" }
                    @for s in Stage::ALL { option value=(s.as_str()) selected[stage == Some(s)] { (charts::label(s)) } }
                }
            }
            p {
                label for="churn" { "Churn risk" }
                select id="churn" name="churn" {
                    option value="" selected[q.churn().is_none()] { "any" }
                    option value="yes" selected[q.churn() == Some(true)] { "yes" }
                    option value="no" selected[q.churn() == Some(false)] { "no" }
                }
            }
            @if let Some(s) = &q.sort { input type="hidden" name="sort" value=(s); }
            @if let Some(d) = &q.dir { input type="hidden" name="dir" value=(d); }
            p { button type="submit" { "Filter" } }
        }
        p {
            a href=(format!("/companies{}", q.with(&[("format", Some("csv".into()))]))) download="companies.csv" { "Download these " (rows.len()) " companies as CSV" }
        }
        table id="companies" {
            caption { (rows.len()) " companies match; page " (page) " of " (pages) }
            thead {
                tr {
                    @for (key, header) in COLUMNS {
                        @let sorted = key == sort;
                        @let next_dir = if sorted && desc { "asc" } else if sorted { "desc" } else { "" };
                        th scope="col" aria-sort=[sorted.then_some(if desc { "descending" } else { "ascending" })] {
                            a href=(format!("/companies{}", q.with(&[("sort", Some(key.into())), ("dir", (!next_dir.is_empty()).then(|| next_dir.to_owned()))]))) {
                                (header) @if sorted { span aria-hidden="true" { @if desc { " ▼" } @else { " ▲" } } }
                            }
                        }
                    }
                }
            }
            tbody {
                @for s in shown_rows {
                    tr {
                        td { (company_link(&s.domain)) }
                        td { (shown(names.get(&s.domain).map_or("", |n| n.as_str()))) }
                        td data-stage=(s.stage.as_str()) { (charts::label(s.stage)) }
                        td class="num" { (crate::output::score_text(s.score)) }
                        td { (s.stage_since) }
                        td { (s.last_seen) }
                        td class="num" { (s.events_30d) }
                        td class="num" { (s.actors_90d) }
                        td { @if s.churn_risk { "yes" } @else { "no" } }
                    }
                }
            }
        }
        nav aria-label="Pages" class="pages" {
            @if page > 1 { a href=(format!("/companies{}", q.with(&[("page", Some((page - 1).to_string()))]))) rel="prev" { "← Previous page" } }
            " Page " (page) " of " (pages) " "
            @if page < pages { a href=(format!("/companies{}", q.with(&[("page", Some((page + 1).to_string()))]))) rel="next" { "Next page →" } }
        }
    })
}

pub struct CompanyPage<'a> {
    pub name: Option<String>,
    pub explanation: &'a Explanation,
    pub recent: &'a [RecentActivity],
    pub identities: &'a [IdentityRow],
    pub sinks: Vec<(CompanySink, Option<RunRow>)>,
}

fn json_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => shown(s),
        serde_json::Value::Null => "(empty)".into(),
        other => shown(&other.to_string()),
    }
}

pub fn company(frame: &Frame, p: &CompanyPage) -> Markup {
    let e = p.explanation;
    let s = &e.score;
    let title = shown(&s.domain);
    let changes: Vec<(NaiveDate, Stage)> = e.timeline.iter().map(|c| (c.date, c.stage)).collect();
    layout(frame, &title, html! {
        @if let Some(n) = &p.name { p class="lead" { (shown(n)) } }
        dl class="facts" id="facts" {
            dt { "Stage" } dd data-field="stage" data-value=(s.stage.as_str()) { (charts::label(s.stage)) " since " (s.stage_since) }
            dt { "Score" } dd data-field="score" { (crate::output::score_text(s.score)) }
            dt { "Peak stage" } dd { (charts::label(s.peak_stage)) }
            dt { "First and last seen" } dd { (s.first_seen) " – " (s.last_seen) }
            dt { "Activities and people, 30 days" } dd { (s.events_30d) " activities by " (s.actors_30d) " people" }
            dt { "Churn risk" } dd { @if s.churn_risk { "yes: activity fell against the 30 days before" } @else { "no" } }
            dt { "Upgrading" } dd { @if s.upgrading { "yes (" (s.versions_90d) " versions in 90 days)" } @else { "no" } }
        }
        section aria-labelledby="timeline" {
            h2 id="timeline" { "Stage timeline" }
            (charts::timeline(&changes, frame.as_of))
            ol class="changes" { @for c in &e.timeline { li { (c.date) ": " (charts::label(c.stage)) } } }
        }
        section aria-labelledby="points" {
            h2 id="points" { "Points in the score window, by category and tier" }
            table {
                caption { "What the score is made of, and what the caps held back" }
                thead { tr { th scope="col" { "Category" } th scope="col" { "Tier" } th scope="col" class="num" { "Activities" } th scope="col" class="num" { "Points" } th scope="col" class="num" { "Held back by caps" } th scope="col" { "Caps (a day, a month)" } } }
                tbody {
                    @for b in &e.points {
                        tr { th scope="row" { (b.category) } td { (b.tier) } td class="num" { (b.activities) } td class="num" { (format!("{:.2}", b.points)) } td class="num" { (format!("{:.2}", b.capped)) } td { (b.day_cap) ", " (b.month_cap) } }
                    }
                }
            }
        }
        section aria-labelledby="gates" {
            h2 id="gates" { "Stage gates" }
            p { "The first gate that holds, from the top, decides; inactive overrides." }
            ul class="gates" {
                @for g in &e.gates {
                    li class=(if g.held { "held" } else { "open" }) { strong { (charts::label(g.stage)) ": " @if g.held { "holds" } @else { "does not hold" } } " — " (shown(&g.rule)) }
                }
            }
        }
        section aria-labelledby="top" {
            h2 id="top" { "Activities that earned the most" }
            table {
                caption { "Top activities of the score window" }
                thead { tr { th scope="col" { "Day" } th scope="col" { "What" } th scope="col" { "Tier" } th scope="col" { "Source" } th scope="col" class="num" { "Points" } } }
                tbody { @for t in &e.top_activities { tr { td { (t.date) } td { (short(&t.what, 160)) } td { (t.tier) } td { (shown(&t.source)) } td class="num" { (format!("{:.2}", t.points)) } } } }
            }
        }
        section aria-labelledby="recent" {
            h2 id="recent" { "Recent activities" }
            table {
                caption { "The latest activities up to the as-of date" }
                thead { tr { th scope="col" { "When (UTC)" } th scope="col" { "Kind" } th scope="col" { "Source" } th scope="col" { "Detail" } } }
                tbody { @for a in p.recent { tr { td { (time(a.occurred_at)) } td { (a.kind) } td { (shown(&a.source)) } td { (short(a.detail.as_deref().unwrap_or(""), 160)) } } } }
            }
        }
        section aria-labelledby="identities" {
            h2 id="identities" { "Identities and the rules that placed them" }
            table {
                caption { "Who the activities came from (email addresses are never stored: only their domain)" }
                thead { tr { th scope="col" { "Rule" } th scope="col" { "Source" } th scope="col" { "Actor" } th scope="col" { "Email domain" } th scope="col" class="num" { "Activities" } th scope="col" { "Last (UTC)" } } }
                tbody { @for i in p.identities { tr { td { (shown(i.rule.as_deref().unwrap_or("unknown"))) } td { (shown(&i.source)) } td { (shown(i.actor.as_deref().unwrap_or("—"))) } td { (shown(i.email_domain.as_deref().unwrap_or("—"))) } td class="num" { (i.activities) } td { (time(i.last)) } } } }
            }
        }
        section aria-labelledby="sinks" {
            h2 id="sinks" { "In each CRM" }
            @if p.sinks.is_empty() { p { "No sink has matched, written or failed this company yet." } }
            @for (sink, run) in &p.sinks {
                section aria-label=(format!("Sink {}", sink.connector)) class="sink" {
                    h3 { (sink.connector) }
                    dl class="facts" {
                        dt { "CRM record id" } dd { (shown(sink.crm_id.as_deref().unwrap_or("not matched yet"))) }
                        dt { "Last accepted" } dd { @if let Some(t) = sink.accepted_at { (time(t)) @if let Some(st) = &sink.stage { " (stage " (st) ")" } } @else { "never" } }
                        dt { "Connector's last run" } dd { @if let Some(r) = run { (r.started_at) " " (r.status) } @else { "never" } }
                        dt { "Failure" } dd class=(if sink.last_error.is_some() { "bad" } else { "ok" }) {
                            @if let Some(err) = &sink.last_error { (if sink.dead { "dead" } else { "failing" }) " after " (sink.attempts) " attempts: " (short(err, 300)) } @else { "none" }
                        }
                    }
                    @if let Some(serde_json::Value::Object(fields)) = &sink.accepted {
                        table {
                            caption { "The values " (sink.connector) " last accepted" }
                            thead { tr { th scope="col" { "Field" } th scope="col" { "Value" } } }
                            tbody { @for (k, v) in fields { tr { th scope="row" { (shown(k)) } td { (json_value(v)) } } } }
                        }
                    }
                }
            }
        }
    })
}

/// The fields a record changed: `field: before → after`.
fn diff(before: &serde_json::Value, after: &serde_json::Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let Some(a) = after.as_object() else { return Vec::new() };
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| format!("{}: {} → {}", shown(k), b.get(k).map_or("(none)".into(), json_value), json_value(v)))
        .collect()
}

fn runs_table(caption: &str, runs: &[RunRow]) -> Markup {
    html! {
        table {
            caption { (caption) }
            thead { tr { th scope="col" { "Run" } th scope="col" { "Connector" } th scope="col" { "Started (UTC)" } th scope="col" { "Status" } th scope="col" class="num" { "Planned" } th scope="col" class="num" { "Sent" } th scope="col" class="num" { "Accepted" } th scope="col" class="num" { "Failed" } th scope="col" class="num" { "API calls" } th scope="col" { "Error" } } }
            tbody {
                @for r in runs.iter().rev() {
                    tr class=(if r.status == "failed" { "bad" } else { "" }) {
                        td { (r.id) } td { (r.connector) } td { (r.started_at) } td { (r.status) } td class="num" { (r.planned) } td class="num" { (r.sent) } td class="num" { (r.accepted) } td class="num" { (r.failed) } td class="num" { (r.api_calls) }
                        td { (short(r.error.as_deref().unwrap_or(""), 240)) }
                    }
                }
            }
        }
    }
}

pub struct SyncPage<'a> {
    pub runs: &'a [RunRow],
    pub records: &'a [RecordRow],
    pub failed: &'a [RecordRow],
    pub dead: &'a [RecordRow],
    pub pending: &'a [(String, String, i64, String)],
    pub notice: Option<String>,
}

pub fn sync(frame: &Frame, p: &SyncPage) -> Markup {
    layout(frame, "Sync", html! {
        @if let Some(n) = &p.notice { p role="status" class="notice" { (n) } }
        section aria-labelledby="dead" {
            h2 id="dead" { "Dead records (" (p.dead.len()) ")" }
            p { "Records that failed every attempt. A retry gives one a new round of attempts at its connector's next run." }
            table id="dead-records" {
                caption { "Dead records and their last error" }
                thead { tr { th scope="col" { "Connector" } th scope="col" { "Company" } th scope="col" { "When (UTC)" } th scope="col" { "Error" } th scope="col" { "Action" } } }
                tbody {
                    @for r in p.dead.iter().rev() {
                        tr data-domain=(r.domain) {
                            td { (r.connector) } td { (company_link(&r.domain)) } td { (r.at) } td { (short(r.error.as_deref().unwrap_or(""), 300)) }
                            td {
                                form method="post" action="/sync/retry" {
                                    input type="hidden" name="csrf" value=(frame.csrf);
                                    input type="hidden" name="connector" value=(r.connector);
                                    input type="hidden" name="domain" value=(r.domain);
                                    button type="submit" aria-label=(format!("Retry {} in {}", shown(&r.domain), r.connector)) { "Retry" }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="pending" {
            h2 id="pending" { "Waiting for another attempt (" (p.pending.len()) ")" }
            table id="pending-records" {
                caption { "Failed records the next run sends again" }
                thead { tr { th scope="col" { "Connector" } th scope="col" { "Company" } th scope="col" class="num" { "Attempts" } th scope="col" { "Last error" } } }
                tbody { @for (c, d, n, e) in p.pending { tr data-domain=(d) { td { (c) } td { (company_link(d)) } td class="num" { (n) } td { (short(e, 300)) } } } }
            }
        }
        section aria-labelledby="failed" {
            h2 id="failed" { "Failed, dead, ambiguous and unmatched records" }
            table {
                caption { "The latest records that did not reach their CRM" }
                thead { tr { th scope="col" { "When (UTC)" } th scope="col" { "Connector" } th scope="col" { "Company" } th scope="col" { "Outcome" } th scope="col" { "Error" } } }
                tbody { @for r in p.failed.iter().rev() { tr { td { (r.at) } td { (r.connector) } td { (company_link(&r.domain)) } td { (r.outcome) } td { (short(r.error.as_deref().unwrap_or(""), 300)) } } } }
            }
        }
        section aria-labelledby="runs" {
            h2 id="runs" { "Sync runs" }
            (runs_table("The latest runs of the sink connectors, newest first", p.runs))
        }
        section aria-labelledby="records" {
            h2 id="records" { "Records" }
            table {
                caption { "The latest records written, with the fields they changed" }
                thead { tr { th scope="col" { "When (UTC)" } th scope="col" { "Run" } th scope="col" { "Connector" } th scope="col" { "Company" } th scope="col" { "CRM id" } th scope="col" { "Outcome" } th scope="col" { "Changes" } } }
                tbody {
                    @for r in p.records.iter().rev() {
                        tr {
                            td { (r.at) } td { (r.run_id) } td { (r.connector) } td { (company_link(&r.domain)) } td { (shown(r.crm_id.as_deref().unwrap_or(""))) } td { (r.outcome) }
                            td { @let changes = diff(&r.before, &r.after); @if changes.is_empty() { "—" } @else { ul class="diff" { @for c in changes { li { (c) } } } } }
                        }
                    }
                }
            }
        }
    })
}

pub struct SourcesPage<'a> {
    pub runs: &'a [RunRow],
    pub cursors: &'a [CursorRow],
    pub files: &'a [ExportFileRow],
    pub quarantined: &'a [QuarantinedLine],
    pub quarantined_total: i64,
    pub unattributed: &'a [UnattributedRow],
}

pub fn sources(frame: &Frame, p: &SourcesPage) -> Markup {
    layout(frame, "Sources", html! {
        section aria-labelledby="polls" {
            h2 id="polls" { "Poll runs" }
            (runs_table("The latest poll runs of the source connectors, newest first (planned: fetched; accepted: new activities)", p.runs))
        }
        section aria-labelledby="cursors" {
            h2 id="cursors" { "Cursors" }
            table {
                caption { "Where each source resumes" }
                thead { tr { th scope="col" { "Connector" } th scope="col" { "Key" } th scope="col" { "Value" } th scope="col" { "Updated (UTC)" } } }
                tbody { @for c in p.cursors { tr { td { (c.connector) } td { (short(&c.key, 120)) } td { code { (short(&c.value, 200)) } } td { (time(c.updated_at)) } } } }
            }
            table {
                caption { "Export files read" }
                thead { tr { th scope="col" { "Connector" } th scope="col" { "File" } th scope="col" class="num" { "Bytes" } th scope="col" class="num" { "Lines" } th scope="col" { "Read (UTC)" } } }
                tbody { @for f in p.files { tr { td { (f.connector) } td { (short(&f.path, 160)) } td class="num" { (f.size) } td class="num" { (f.lines) } td { (time(f.imported_at)) } } } }
            }
        }
        section aria-labelledby="quarantine" {
            h2 id="quarantine" { "Quarantined lines (" (p.quarantined_total) ")" }
            table {
                caption { "Export lines that were not valid activities, and why" }
                thead { tr { th scope="col" { "File" } th scope="col" class="num" { "Line" } th scope="col" { "Reason" } th scope="col" { "Text" } } }
                tbody { @for q in p.quarantined { tr { td { (short(&q.file, 120)) } td class="num" { (q.line) } td { (short(&q.reason, 240)) } td { code { (short(&q.raw, 200)) } } } } }
            }
        }
        section aria-labelledby="unattributed" {
            h2 id="unattributed" { "Top unattributed identities" }
            p { "Activities no attribution rule places in a company: an " code { "attribution.yaml" } " rule for the largest would count them." }
            table {
                caption { "Identities with the most unattributed activities" }
                thead { tr { th scope="col" { "Source" } th scope="col" { "Actor" } th scope="col" { "Email domain" } th scope="col" class="num" { "Activities" } } }
                tbody { @for u in p.unattributed { tr { td { (shown(&u.source)) } td { (shown(u.actor.as_deref().unwrap_or("—"))) } td { (shown(u.email_domain.as_deref().unwrap_or("—"))) } td class="num" { (u.activities) } } } }
            }
        }
    })
}

/// The console's style sheet: system fonts, AA contrast, visible focus.
pub const CSS: PreEscaped<&str> = PreEscaped(
    r#":root{color-scheme:light;--fg:#1b1b1b;--muted:#4a4a4a;--link:#0b4fbf;--bad:#a11b1b;--ok:#1d6b2a;--line:#c8c8c8;--focus:#1a4fd6}
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:#fff}
a{color:var(--link)}a:visited{color:#5a2ca0}
:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
.skip{position:absolute;left:-999px;top:0;background:#fff;padding:.5rem}.skip:focus{left:.5rem}
header{display:flex;flex-wrap:wrap;align-items:center;gap:1rem;padding:.5rem 1rem;border-bottom:1px solid var(--line)}
nav ul{list-style:none;display:flex;gap:1rem;margin:0;padding:0;flex-wrap:wrap}
nav a[aria-current=page]{font-weight:700;text-decoration-thickness:3px}
.asof{margin:0 0 0 auto;color:var(--muted)}
main{padding:0 1rem 2rem;max-width:80rem}
footer{padding:1rem;border-top:1px solid var(--line);color:var(--muted)}
table{border-collapse:collapse;margin:1rem 0;min-width:20rem}
caption{text-align:left;font-weight:600;padding:.25rem 0}
th,td{border-bottom:1px solid var(--line);padding:.3rem .6rem;text-align:left;vertical-align:top}
.num{text-align:right;font-variant-numeric:tabular-nums}
.chart{max-width:min(100%,46rem);height:auto;display:block}
.chart .axis{font-size:13px;fill:var(--fg)}.chart .value{font-size:13px;fill:var(--fg)}.chart .grid{stroke:#d0d0d0}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(16rem,1fr));gap:1rem}
.bad,.error{color:var(--bad)}.ok{color:var(--ok)}
.filters{display:flex;flex-wrap:wrap;gap:1rem;align-items:end}.filters p{margin:0}
label{display:block;font-weight:600}
input,select,button{font:inherit;padding:.3rem .5rem;border:1px solid #6b6b6b;border-radius:3px;background:#fff;color:var(--fg)}
button{background:#0b4fbf;color:#fff;border-color:#0b4fbf;cursor:pointer}
.logout button{background:#fff;color:var(--link)}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}.facts dt{font-weight:600}.facts dd{margin:0}
.gates li.held strong{color:var(--ok)}
.notice{border-left:4px solid var(--ok);padding:.5rem}
@media print{header nav,.logout,.filters,.skip{display:none}}
"#,
);
