//! Self-tests of the Common Room emulator (tests/common/common_room.rs): it must behave as the
//! Core API v1 docs say before the sink is tested against it.

#[path = "common/common_room.rs"]
mod common_room;

use std::time::{Duration, Instant};

use common_room::{CommonRoom, DOCS, Fault, RetryAfterFormat};
use serde_json::{Value, json};

const TOKEN: &str = "cr-test-token";

async fn room() -> (CommonRoom, String) {
    let cr = CommonRoom::start().await;
    cr.accept_token(TOKEN);
    let source = cr.add_source();
    (cr, source)
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_owned())
    }
}

async fn call(method: reqwest::Method, url: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
    let mut rq = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        rq = rq.bearer_auth(t);
    }
    if let Some(b) = body {
        rq = rq.json(b);
    }
    let r = rq.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    Reply { status, headers, text: r.text().await.unwrap() }
}

async fn get(cr: &CommonRoom, path: &str) -> Reply {
    call(reqwest::Method::GET, &format!("{}{path}", cr.url), Some(TOKEN), None).await
}

async fn post(cr: &CommonRoom, path: &str, body: Value) -> Reply {
    call(reqwest::Method::POST, &format!("{}{path}", cr.url), Some(TOKEN), Some(&body)).await
}

fn user(id: &str, domain: &str) -> Value {
    json!({"id": id, "fullName": format!("{domain} (OQL)"), "companyName": "Acme", "companyDomain": domain})
}

fn activity(id: &str, kind: &str, user_id: &str) -> Value {
    let mut a = json!({
        "id": id, "activityType": kind, "user": user("oql:acme.com", "acme.com"),
        "activityTitle": {"type": "text", "value": "OQL stage: Hot"},
        "content": {"type": "markdown", "value": "Moved **Warm → Hot**"},
        "timestamp": "2025-03-01T12:00:00.000Z", "url": "https://example.test/acme.com",
    });
    a["user"]["id"] = json!(user_id);
    a
}

#[tokio::test]
async fn auth_is_checked_on_every_call_and_limit_headers_are_always_sent() {
    let (cr, source) = room().await;
    for (token, want) in [(None, 401), (Some("wrong"), 401), (Some(TOKEN), 200)] {
        let r = call(reqwest::Method::GET, &format!("{}/api-token-status", cr.url), token, None).await;
        assert_eq!(r.status, want, "token {token:?}");
        assert!(r.header("x-ratelimit-limit").is_some() && r.header("x-ratelimit-remaining").is_some(), "{:?}", r.headers);
        if want == 401 {
            assert_eq!(r.json(), json!({"status": "failure", "reason": "Unauthorized"}));
        } else {
            assert!(r.json()["communityId"].is_string());
        }
    }
    let r = call(reqwest::Method::POST, &format!("{}/source/{source}/user", cr.url), Some("wrong"), Some(&user("u1", "acme.com"))).await;
    assert_eq!(r.status, 401);
    assert!(cr.users().is_empty(), "an unauthorized write must not land");

    cr.fail_next("/source/", Fault::Unauthorized, 1);
    assert_eq!(post(&cr, &format!("/source/{source}/user"), user("u1", "acme.com")).await.status, 401);
    assert!(cr.users().is_empty());
    assert_eq!(post(&cr, &format!("/source/{source}/user"), user("u1", "acme.com")).await.status, 202);
    let recorded = cr.requests();
    assert_eq!(recorded.last().unwrap().authorization.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(recorded.last().unwrap().path, format!("/community/v1/source/{source}/user"));
}

#[tokio::test]
async fn writes_upsert_by_user_id_and_by_activity_id_and_type() {
    let (cr, source) = room().await;
    cr.add_activity_type("oql_stage_changed", "OQL stage changed");
    let a = activity("oql-stage:acme.com:Hot:2025-03-01", "oql_stage_changed", "oql:acme.com");
    for _ in 0..3 {
        let r = post(&cr, &format!("/source/{source}/activity"), a.clone()).await;
        assert_eq!(r.status, 202);
        assert!(r.text.is_empty(), "202 has no documented body: {:?}", r.text);
    }
    assert_eq!(cr.activities().len(), 1);
    assert_eq!(cr.users().len(), 1, "the activity's user is upserted too");

    // Same id and type: the latest values win.
    let mut edited = a.clone();
    edited["activityTitle"]["value"] = json!("OQL stage: Hot (edited)");
    assert_eq!(post(&cr, &format!("/source/{source}/activity"), edited).await.status, 202);
    assert_eq!(cr.activities().len(), 1);
    assert_eq!(cr.activity(a["id"].as_str().unwrap(), "oql_stage_changed").unwrap()["activityTitle"]["value"], "OQL stage: Hot (edited)");

    // Same id, other type: another activity.
    let other = activity(a["id"].as_str().unwrap(), "started_training", "oql:acme.com");
    assert_eq!(post(&cr, &format!("/source/{source}/activity"), other).await.status, 202);
    assert_eq!(cr.activities().len(), 2);

    // Users: one per id; fields merge, absent fields are kept.
    assert_eq!(post(&cr, &format!("/source/{source}/user"), json!({"id": "oql:acme.com", "titleAtCompany": "Account"})).await.status, 202);
    let users = cr.users();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["titleAtCompany"], "Account");
    assert_eq!(users[0]["companyDomain"], "acme.com");
    assert_eq!(users[0]["destinationSourceId"].to_string(), source);

    // An unknown activity type is accepted (processing is asynchronous) but never stored.
    assert_eq!(post(&cr, &format!("/source/{source}/activity"), activity("x1", "no_such_type", "oql:acme.com")).await.status, 202);
    assert_eq!(cr.activities().len(), 2);
    assert!(cr.processing_errors().iter().any(|e| e.contains("no_such_type")), "{:?}", cr.processing_errors());
    cr.set_strict(true);
    assert_eq!(post(&cr, &format!("/source/{source}/activity"), activity("x1", "no_such_type", "oql:acme.com")).await.status, 400);
    assert_eq!(cr.write_calls(), 8);
}

#[tokio::test]
async fn unknown_source_is_404_and_nothing_lands() {
    let (cr, source) = room().await;
    let other: u64 = source.parse::<u64>().unwrap() + 1;
    for path in [format!("/source/{other}/user"), format!("/source/{other}/activity"), "/source/not-a-number/user".to_owned()] {
        let body = if path.ends_with("user") { user("u1", "acme.com") } else { activity("a1", "started_training", "u1") };
        let r = post(&cr, &path, body).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json(), json!({"status": "not-found", "reason": "Destination Source Not Found"}));
        assert!(r.header("x-ratelimit-limit").is_some());
    }
    assert!(cr.users().is_empty() && cr.activities().is_empty());
    cr.add_source_id(4242);
    assert_eq!(post(&cr, "/source/4242/user", user("u1", "acme.com")).await.status, 202);
}

#[tokio::test]
async fn schema_violations_are_400_with_the_documented_body() {
    let (cr, source) = room().await;
    let invalid = json!({"reason": "invalid-request-body", "docs": DOCS});
    let good = activity("a1", "started_training", "u1");
    let mut cases: Vec<(&str, Value)> = vec![("user", json!({"fullName": "no id"})), ("user", json!({"id": 12}))];
    for (field, value) in [
        ("id", Value::Null),
        ("activityType", Value::Null),
        ("user", Value::Null),
        ("activityTitle", json!("a plain string")),
        ("content", json!({"type": "html", "value": "<b>x</b>"})),
        ("timestamp", json!("yesterday")),
        ("tags", json!(["OQL"])),
    ] {
        let mut a = good.clone();
        if value.is_null() {
            a.as_object_mut().unwrap().remove(field);
        } else {
            a[field] = value;
        }
        cases.push(("activity", a));
    }
    // A custom field is cleared by omitting `value`, never by `null`.
    cases.push(("user", json!({"id": "u1", "customFields": [{"id": 1, "value": null}]})));
    cases.push(("user", json!({"id": "u1", "customFields": [{"id": 1, "value": {"type": "text", "value": "x"}}]})));
    cases.push(("user", json!({"id": "u1", "email": "not-an-email"})));
    for (kind, body) in cases {
        let r = post(&cr, &format!("/source/{source}/{kind}"), body.clone()).await;
        assert_eq!(r.status, 400, "{kind} {body}");
        assert_eq!(r.json(), invalid);
    }
    let r = call(reqwest::Method::POST, &format!("{}/source/{source}/user", cr.url), Some(TOKEN), None).await;
    assert_eq!(r.status, 400, "an empty body");
    assert!(cr.users().is_empty() && cr.activities().is_empty());

    cr.reject_ids(&["u2"]);
    assert_eq!(post(&cr, &format!("/source/{source}/user"), user("u2", "b.com")).await.status, 400);
    assert_eq!(post(&cr, &format!("/source/{source}/activity"), activity("a2", "started_training", "u2")).await.status, 400);
    assert_eq!(post(&cr, &format!("/source/{source}/activity"), good).await.status, 202);
    assert_eq!(cr.activities().len(), 1);
}

fn parse_retry_after(v: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v)
        .or_else(|_| chrono::DateTime::parse_from_rfc2822(v))
        .map(|d| d.with_timezone(&chrono::Utc))
        .unwrap_or_else(|_| chrono::Utc::now() + chrono::TimeDelta::seconds(v.parse().unwrap()))
}

#[tokio::test]
async fn rate_limit_answers_429_with_date_time_retry_after_and_wait_ms() {
    let (cr, source) = room().await;
    cr.set_rate_limit(3, Duration::from_millis(1500));
    let path = format!("/source/{source}/user");
    let mut remaining = Vec::new();
    for i in 0..3 {
        let r = post(&cr, &path, user(&format!("u{i}"), "acme.com")).await;
        assert_eq!(r.status, 202);
        assert_eq!(r.header("x-ratelimit-limit").as_deref(), Some("3"));
        remaining.push(r.header("x-ratelimit-remaining").unwrap());
        assert!(r.header("retry-after").is_none() && r.header("x-ratelimit-reset").is_none(), "only on 429");
    }
    assert_eq!(remaining, ["2", "1", "0"]);

    let before = chrono::Utc::now();
    let r = post(&cr, &path, user("u9", "acme.com")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("0"));
    let body = r.json();
    assert_eq!(body["reason"], "rate-limited");
    assert_eq!(body["rateLimit"]["intervalLimit"], 3);
    assert_eq!(body["rateLimit"]["intervalRemaining"], 0);
    assert_eq!(body["rateLimit"]["intervalResetSeconds"], 1.5);
    let wait_ms = body["rateLimit"]["waitMs"].as_u64().unwrap();
    assert!(wait_ms > 0 && wait_ms <= 1500, "{wait_ms}");
    let retry_after = r.header("retry-after").unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(&retry_after).unwrap_or_else(|e| panic!("Retry-After {retry_after:?}: {e}"));
    assert!(retry_after.ends_with('Z'), "UTC: {retry_after}");
    let ahead = (at.with_timezone(&chrono::Utc) - before).num_milliseconds();
    assert!((0..=1600).contains(&ahead), "Retry-After {ahead} ms ahead");
    let reset: i64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert!(reset >= at.timestamp() && reset <= at.timestamp() + 1, "epoch seconds, rounded up");
    assert_eq!(cr.rate_limited_count(), 1);
    assert!(cr.user("u9").is_none(), "a 429 applies nothing");

    tokio::time::sleep(Duration::from_millis(wait_ms + 20)).await;
    let r = post(&cr, &path, user("u9", "acme.com")).await;
    assert_eq!(r.status, 202, "a new interval");
    assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("2"));
    assert_eq!(cr.max_in_window("/source/", Duration::from_millis(1000)), 4, "the 429 was sent too");
    assert_eq!(cr.max_in_window("/community/v1/source/", Duration::from_millis(1000)), 4, "full paths match too");
    assert_eq!(cr.max_in_window("/members", Duration::from_millis(1000)), 0);

    // An injected 429, in each Retry-After format.
    for format in [RetryAfterFormat::Rfc3339, RetryAfterFormat::HttpDate, RetryAfterFormat::Seconds] {
        cr.set_retry_after_format(format);
        cr.fail_next("/source/", Fault::RateLimited { wait_ms: 2500 }, 1);
        let now = chrono::Utc::now();
        let r = post(&cr, &path, user("u1", "acme.com")).await;
        assert_eq!(r.status, 429);
        assert_eq!(r.json()["rateLimit"]["waitMs"], 2500);
        let v = r.header("retry-after").unwrap();
        let ahead = (parse_retry_after(&v) - now).num_milliseconds();
        assert!((2400..=3600).contains(&ahead), "{format:?} {v}: {ahead} ms");
        if format == RetryAfterFormat::HttpDate {
            assert!(v.ends_with(" GMT"), "{v}");
        }
    }
    assert_eq!(cr.rate_limited_count(), 1, "injected 429s are not counted");
}

#[tokio::test]
async fn user_upsert_sets_and_clears_custom_fields_and_adds_tags() {
    let (cr, source) = room().await;
    let stage = cr.add_custom_field("OQL stage", "enum", &["Cold", "Warm", "Hot"]);
    let score = cr.add_custom_field("OQL score", "int", &[]);
    let since = cr.add_custom_field("OQL stage since", "date", &[]);

    let fields = get(&cr, &format!("/members/customFields?destinationSourceId={source}")).await;
    assert_eq!(fields.status, 200);
    let fields = fields.json();
    assert_eq!(fields[0], json!({"id": stage, "name": "OQL stage", "type": "enum", "multivalue": false, "values": ["Cold", "Warm", "Hot"]}));
    assert_eq!(fields[1], json!({"id": score, "name": "OQL score", "type": "int", "multivalue": false}));

    let mut body = user("oql:acme.com", "Acme.com");
    body["customFields"] = json!([
        {"id": stage, "value": {"type": "enum", "value": "Hot"}},
        {"id": score, "value": {"type": "int", "value": 87}},
        {"id": since, "value": {"type": "date", "value": "2025-03-01"}},
    ]);
    body["tags"] = json!([{"type": "name", "name": "OQL"}]);
    assert_eq!(post(&cr, &format!("/source/{source}/user"), body).await.status, 202);
    let u = cr.user_by_domain("https://www.acme.com/").expect("found by domain");
    assert_eq!(u["customFieldsByName"], json!({"OQL stage": "Hot", "OQL score": 87, "OQL stage since": "2025-03-01"}));
    assert_eq!(u["customFields"][stage.to_string()], json!({"type": "enum", "value": "Hot"}));
    assert_eq!(u["tags"], json!(["OQL"]));
    assert_eq!(cr.tags(), ["OQL"]);

    // Update one field, clear another by omitting `value`, leave the third alone.
    let body = json!({"id": "oql:acme.com", "customFields": [
        {"id": stage, "value": {"type": "enum", "value": "Warm"}},
        {"id": score},
    ], "tags": [{"type": "name", "name": "OQL"}]});
    assert_eq!(post(&cr, &format!("/source/{source}/user"), body).await.status, 202);
    let u = cr.user("oql:acme.com").unwrap();
    assert_eq!(u["customFieldsByName"], json!({"OQL stage": "Warm", "OQL stage since": "2025-03-01"}));
    assert_eq!(u["tags"], json!(["OQL"]));
    assert_eq!(cr.users().len(), 1);
    assert!(cr.processing_errors().is_empty());

    // Values the field cannot hold are accepted and dropped (the rest still applies) ...
    let body = json!({"id": "oql:acme.com", "titleAtCompany": "OQL", "customFields": [
        {"id": stage, "value": {"type": "enum", "value": "Scorching"}},
        {"id": score, "value": {"type": "string", "value": "87"}},
        {"id": 999_999, "value": {"type": "int", "value": 1}},
        {"id": since, "value": {"type": "date", "value": "2025-03-01T00:00:00Z"}},
    ]});
    assert_eq!(post(&cr, &format!("/source/{source}/user"), body.clone()).await.status, 202);
    let u = cr.user("oql:acme.com").unwrap();
    assert_eq!(u["customFieldsByName"], json!({"OQL stage": "Warm", "OQL stage since": "2025-03-01"}));
    assert_eq!(u["titleAtCompany"], "OQL");
    assert_eq!(cr.processing_errors().len(), 4, "{:?}", cr.processing_errors());
    // ... or refused in strict mode.
    cr.set_strict(true);
    assert_eq!(post(&cr, &format!("/source/{source}/user"), body).await.status, 400);

    // Read back: the deprecated v1 lookup by email, and v2 organization → contacts.
    assert_eq!(post(&cr, &format!("/source/{source}/user"), json!({"id": "oql:acme.com", "email": "oql@acme.com"})).await.status, 202);
    let m = get(&cr, "/members?email=oql%40acme.com").await;
    assert_eq!(m.status, 200);
    assert_eq!(m.json()[0]["custom_fields"][0], json!({"name": "OQL stage", "type": "enum", "value": "Warm"}));
    assert_eq!(get(&cr, "/user/nobody@acme.com").await.status, 404);
    let orgs = call(reqwest::Method::GET, &format!("{}/organizations?primaryDomain=acme.com", cr.url_v2), Some(TOKEN), None).await.json();
    let org = orgs["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(orgs["data"][0]["primaryDomain"], "acme.com");
    let contacts =
        call(reqwest::Method::GET, &format!("{}/contacts?organizationId={org}&cols=cf_*", cr.url_v2), Some(TOKEN), None).await.json();
    assert_eq!(contacts["data"][0]["customFields"][format!("cf_{stage}")], json!({"type": "enum", "value": "Warm"}));
}

#[tokio::test]
async fn faults_fire_on_their_prefix_and_then_stop() {
    let (cr, source) = room().await;
    cr.add_custom_field("OQL stage", "enum", &["Hot"]);
    let path = format!("/source/{source}/user");

    cr.fail_next("/source/", Fault::ServerError(503), 2);
    assert_eq!(post(&cr, &path, user("u1", "a.com")).await.status, 503);
    assert_eq!(post(&cr, &path, user("u1", "a.com")).await.status, 503);
    assert!(cr.users().is_empty());
    assert_eq!(post(&cr, &path, user("u1", "a.com")).await.status, 202);

    cr.fail_next("/members/customFields", Fault::TruncatedJson, 1);
    let r = get(&cr, "/members/customFields").await;
    assert_eq!(r.status, 200);
    assert!(serde_json::from_str::<Value>(&r.text).is_err(), "{:?}", r.text);
    assert!(serde_json::from_str::<Value>(&get(&cr, "/members/customFields").await.text).is_ok());

    cr.fail_next("/source/", Fault::DelayAfterApply(Duration::from_millis(400)), 1);
    let client = reqwest::Client::builder().timeout(Duration::from_millis(150)).build().unwrap();
    let lost = client.post(format!("{}{path}", cr.url)).bearer_auth(TOKEN).json(&user("u2", "b.com")).send().await;
    assert!(lost.is_err(), "the client gave up");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(cr.user("u2").is_some(), "but the write landed");

    cr.fail_next("/source/", Fault::Delay(Duration::from_millis(200)), 1);
    let t = Instant::now();
    assert_eq!(post(&cr, &path, user("u3", "c.com")).await.status, 202);
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert_eq!(cr.users().len(), 3);

    cr.clear_requests();
    assert!(cr.requests().is_empty());
    assert_eq!(cr.write_calls(), 0);
}
