//! Self-tests for the HubSpot emulator in tests/common/hubspot.rs.

#[path = "common/hubspot.rs"]
mod hubspot;

use std::time::Duration;

use hubspot::{Fault, HubSpot};
use serde_json::{Value, json};

const TOKEN: &str = "pat-na1-test";

async fn emulator() -> HubSpot {
    let hs = HubSpot::start().await;
    hs.accept_token(TOKEN);
    hs
}

async fn post(hs: &HubSpot, path: &str, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
    send(hs, reqwest::Method::POST, path, Some(body), TOKEN).await
}

async fn send(hs: &HubSpot, method: reqwest::Method, path: &str, body: Option<Value>, token: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{}", hs.url, path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn search_body(domains: &[&str], limit: u64, after: Option<&str>) -> Value {
    let mut b = json!({
        "filterGroups": [{"filters": [{"propertyName": "domain", "operator": "IN", "values": domains}]}],
        "properties": ["name", "domain"],
        "limit": limit,
    });
    if let Some(a) = after {
        b["after"] = json!(a);
    }
    b
}

#[tokio::test]
async fn unauthenticated_and_unknown_tokens_get_401() {
    let hs = emulator().await;
    let r = reqwest::Client::new().get(format!("{}/crm/v3/properties/companies", hs.url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["category"], "INVALID_AUTHENTICATION");
    assert_eq!(body["status"], "error");
    let (status, _, _) = send(&hs, reqwest::Method::GET, "/crm/v3/properties/companies", None, "nope").await;
    assert_eq!(status, 401);
    let (status, headers, body) = send(&hs, reqwest::Method::GET, "/crm/v3/properties/companies", None, TOKEN).await;
    assert_eq!(status, 200);
    assert!(body["results"].as_array().unwrap().iter().any(|p| p["name"] == "domain"));
    assert_eq!(headers["x-hubspot-ratelimit-interval-milliseconds"], "10000");
    assert!(headers.contains_key("x-hubspot-ratelimit-daily-remaining"));
    assert_eq!(hs.requests().len(), 3);
    assert_eq!(hs.requests()[0].status, 401);
}

#[tokio::test]
async fn search_pages_through_matches_in_id_order() {
    let hs = emulator().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(hs.add_company(&[("name", &format!("C{i}")), ("domain", &format!("c{i}.com"))]));
    }
    hs.add_company(&[("name", "Other"), ("domain", "other.com")]);
    hs.add_company(&[("name", "Upper"), ("domain", "Upper.io")]);
    let domains = ["c0.com", "c1.com", "c2.com", "c3.com", "c4.com", "upper.io", "missing.com"];
    let (status, headers, page1) = post(&hs, "/crm/v3/objects/companies/search", search_body(&domains, 2, None)).await;
    assert_eq!(status, 200);
    assert!(!headers.contains_key("x-hubspot-ratelimit-remaining"), "search sends no rate-limit headers");
    assert_eq!(page1["total"], 6);
    assert_eq!(page1["results"][0]["id"], ids[0].as_str());
    assert_eq!(page1["results"][0]["properties"]["domain"], "c0.com");
    assert_eq!(page1["results"][0]["properties"]["hs_object_id"], ids[0].as_str());
    assert_eq!(page1["results"][0]["archived"], false);
    let mut seen: Vec<String> = page1["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    let mut after = page1["paging"]["next"]["after"].as_str().map(str::to_owned);
    while let Some(a) = after {
        let (status, _, page) = post(&hs, "/crm/v3/objects/companies/search", search_body(&domains, 2, Some(&a))).await;
        assert_eq!(status, 200);
        seen.extend(page["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        after = page["paging"]["next"]["after"].as_str().map(str::to_owned);
    }
    assert_eq!(seen.len(), 6);
    // IN values must be lowercase: an uppercase value finds nothing.
    let (_, _, upper) = post(&hs, "/crm/v3/objects/companies/search", search_body(&["Upper.io"], 10, None)).await;
    assert_eq!(upper["total"], 0);
    // Limits.
    let (status, _, body) = post(&hs, "/crm/v3/objects/companies/search", search_body(&domains, 201, None)).await;
    assert_eq!((status, body["category"].as_str()), (400, Some("VALIDATION_ERROR")));
    let many: Vec<String> = (0..101).map(|i| format!("d{i}.com")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let (status, _, _) = post(&hs, "/crm/v3/objects/companies/search", search_body(&many, 10, None)).await;
    assert_eq!(status, 400);
    let (status, _, _) = post(&hs, "/crm/v3/objects/companies/search", search_body(&domains, 10, Some("10000"))).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn batch_update_applies_and_validates_types() {
    let hs = emulator().await;
    hs.define_property("oql_score", "number", &[]);
    hs.define_property("oql_stage", "enumeration", &["new", "engaged"]);
    hs.define_property("oql_seen", "date", &[]);
    let a = hs.add_company(&[("name", "A")]);
    let b = hs.add_company(&[("name", "B")]);
    let body = json!({"inputs": [
        {"id": a, "properties": {"oql_score": "42", "oql_stage": "engaged", "oql_seen": "1714521600000"}},
        {"id": b, "properties": {"oql_score": "7.5"}},
    ]});
    let (status, headers, resp) = post(&hs, "/crm/v3/objects/companies/batch/update", body).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["status"], "COMPLETE");
    assert_eq!(resp["results"].as_array().unwrap().len(), 2);
    assert!(headers.contains_key("x-hubspot-ratelimit-remaining"));
    assert_eq!(hs.company(&a).unwrap()["oql_score"], "42");
    assert_eq!(hs.company(&a).unwrap()["oql_seen"], "2024-05-01");
    assert_eq!(hs.company(&b).unwrap()["oql_score"], "7.5");

    // A bad value anywhere fails the whole batch; nothing is written.
    let body = json!({"inputs": [
        {"id": a, "properties": {"oql_score": "1"}},
        {"id": b, "properties": {"oql_score": "lots"}},
    ]});
    let (status, _, resp) = post(&hs, "/crm/v3/objects/companies/batch/update", body).await;
    assert_eq!(status, 400);
    assert_eq!(resp["category"], "VALIDATION_ERROR");
    assert!(resp["message"].as_str().unwrap().starts_with("Property values were not valid"));
    assert_eq!(hs.company(&a).unwrap()["oql_score"], "42");
    let (status, _, resp) = post(&hs, "/crm/v3/objects/companies/batch/update", json!({"inputs": [{"id": a, "properties": {"nope": "x"}}]})).await;
    assert_eq!(status, 400);
    assert!(resp["message"].as_str().unwrap().contains("PROPERTY_DOESNT_EXIST"));
    let (status, _, _) = post(&hs, "/crm/v3/objects/companies/batch/update", json!({"inputs": [{"id": a, "properties": {"oql_seen": "1714521600001"}}]})).await;
    assert_eq!(status, 400);
    let (status, _, _) = post(&hs, "/crm/v3/objects/companies/batch/update", json!({"inputs": [{"id": a, "properties": {"oql_stage": "bogus"}}]})).await;
    assert_eq!(status, 400);
    let too_many: Vec<Value> = (0..101).map(|_| json!({"id": a, "properties": {}})).collect();
    let (status, _, _) = post(&hs, "/crm/v3/objects/companies/batch/update", json!({"inputs": too_many})).await;
    assert_eq!(status, 400);
    assert_eq!(hs.write_calls(), 6);

    // batch/create and batch/read.
    let (status, _, created) = post(&hs, "/crm/v3/objects/companies/batch/create", json!({"inputs": [{"properties": {"name": "New", "domain": "new.io"}}]})).await;
    assert_eq!(status, 201);
    let new_id = created["results"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(hs.company(&new_id).unwrap()["domain"], "new.io");
    let (status, _, read) = post(&hs, "/crm/v3/objects/companies/batch/read", json!({"properties": ["domain"], "inputs": [{"id": new_id}, {"id": "5"}]})).await;
    assert_eq!(status, 207);
    assert_eq!(read["results"][0]["properties"]["domain"], "new.io");
    assert_eq!(read["errors"][0]["context"]["ids"], json!(["5"]));
}

#[tokio::test]
async fn batch_update_partial_failure_is_207() {
    let hs = emulator().await;
    hs.define_property("oql_stage", "string", &[]);
    let a = hs.add_company(&[("name", "A")]);
    let b = hs.add_company(&[("name", "B")]);
    let c = hs.add_company(&[("name", "C")]);
    hs.reject_ids(&[&b]);
    let body = json!({"inputs": [
        {"id": a, "properties": {"oql_stage": "x"}},
        {"id": b, "properties": {"oql_stage": "x"}},
        {"id": c, "properties": {"oql_stage": "x"}},
        {"id": "999", "properties": {"oql_stage": "x"}},
    ]});
    let (status, _, resp) = post(&hs, "/crm/v3/objects/companies/batch/update", body).await;
    assert_eq!(status, 207, "{resp}");
    assert_eq!(resp["numErrors"], 2);
    assert_eq!(resp["results"].as_array().unwrap().len(), 2);
    let errors = resp["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e["category"] == "OBJECT_NOT_FOUND" && e["context"]["ids"] == json!(["999"])));
    assert!(errors.iter().any(|e| e["context"]["ids"] == json!([b])));
    assert_eq!(hs.company(&a).unwrap()["oql_stage"], "x");
    assert!(!hs.company(&b).unwrap().contains_key("oql_stage"));
    assert_eq!(hs.company(&c).unwrap()["oql_stage"], "x");
}

#[tokio::test]
async fn limits_are_enforced_with_429_bodies_and_headers() {
    let hs = emulator().await;
    hs.set_limits(3, 1);
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let (status, headers, body) = send(&hs, reqwest::Method::GET, "/crm/v3/properties/companies", None, TOKEN).await;
        statuses.push(status);
        last = Some((headers, body));
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    let (headers, body) = last.unwrap();
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(headers["x-hubspot-ratelimit-remaining"], "0");
    assert_eq!(headers["x-hubspot-ratelimit-max"], "3");
    assert_eq!(hs.rate_limited_count(), 2);
    assert_eq!(hs.max_in_window("/crm/v3/properties", Duration::from_secs(10)), 5);

    // Search: one per second.
    let hs = emulator().await;
    hs.set_limits(100, 1);
    let (s1, _, _) = post(&hs, "/crm/v3/objects/companies/search", json!({})).await;
    let (s2, _, body) = post(&hs, "/crm/v3/objects/companies/search", json!({})).await;
    assert_eq!((s1, s2), (200, 429));
    assert_eq!(body["policyName"], "SECONDLY");
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let (s3, _, _) = post(&hs, "/crm/v3/objects/companies/search", json!({})).await;
    assert_eq!(s3, 200);
    assert_eq!(hs.rate_limited_count(), 1);
}

#[tokio::test]
async fn oauth_refresh_issues_tokens_that_expire() {
    let hs = HubSpot::start().await;
    hs.oauth_client("cid", "secret", "refresh-1");
    let client = reqwest::Client::new();
    let form = [("grant_type", "refresh_token"), ("client_id", "cid"), ("client_secret", "secret"), ("refresh_token", "refresh-1")];
    let r = client.post(format!("{}/oauth/v1/token", hs.url)).form(&form).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let tok: Value = r.json().await.unwrap();
    assert_eq!(tok["token_type"], "bearer");
    assert_eq!(tok["expires_in"], 1800);
    assert_eq!(tok["refresh_token"], "refresh-1");
    let access = tok["access_token"].as_str().unwrap().to_owned();
    let (status, headers, _) = send(&hs, reqwest::Method::GET, "/crm/v3/properties/companies", None, &access).await;
    assert_eq!(status, 200);
    assert!(!headers.contains_key("x-hubspot-ratelimit-daily"), "OAuth calls carry no daily headers");
    hs.expire_access_tokens();
    let (status, _, body) = send(&hs, reqwest::Method::GET, "/crm/v3/properties/companies", None, &access).await;
    assert_eq!(status, 401);
    assert_eq!(body["category"], "EXPIRED_AUTHENTICATION");
    let bad = [("grant_type", "refresh_token"), ("client_id", "cid"), ("client_secret", "secret"), ("refresh_token", "wrong")];
    let r = client.post(format!("{}/oauth/v1/token", hs.url)).form(&bad).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "BAD_REFRESH_TOKEN");
    assert_eq!(hs.tokens_issued(), 1);
    assert_eq!(hs.requests()[0].body["client_id"], "cid");
}

#[tokio::test]
async fn properties_groups_and_lists() {
    let hs = emulator().await;
    let (status, _, _) = send(&hs, reqwest::Method::GET, "/crm/v3/properties/companies/oql_stage", None, TOKEN).await;
    assert_eq!(status, 404);
    let (status, _, _) = post(&hs, "/crm/v3/properties/companies/groups", json!({"name": "oql", "label": "OQL", "displayOrder": -1})).await;
    assert_eq!(status, 201);
    let def = json!({"name": "oql_stage", "label": "OQL stage", "type": "enumeration", "fieldType": "select", "groupName": "oql",
        "options": [{"label": "Engaged", "value": "engaged"}]});
    let (status, _, created) = post(&hs, "/crm/v3/properties/companies", def.clone()).await;
    assert_eq!(status, 201);
    assert_eq!(created["options"][0]["value"], "engaged");
    assert_eq!(hs.property("oql_stage").unwrap()["groupName"], "oql");
    let (status, _, conflict) = post(&hs, "/crm/v3/properties/companies", def).await;
    assert_eq!(status, 409);
    assert_eq!(conflict["category"], "OBJECT_ALREADY_EXISTS");
    let (status, _, _) = post(&hs, "/crm/v3/properties/companies", json!({"name": "x_bad", "label": "X", "type": "number", "fieldType": "select", "groupName": "oql"})).await;
    assert_eq!(status, 400);

    let manual = hs.add_list("MANUAL");
    let dynamic = hs.add_list("DYNAMIC");
    let a = hs.add_company(&[("name", "A")]);
    let (status, _, list) = send(&hs, reqwest::Method::GET, &format!("/crm/v3/lists/{manual}"), None, TOKEN).await;
    assert_eq!(status, 200);
    assert_eq!(list["list"]["processingType"], "MANUAL");
    assert_eq!(list["list"]["objectTypeId"], "0-2");
    let path = format!("/crm/v3/lists/{manual}/memberships/add");
    let (status, _, resp) = send(&hs, reqwest::Method::PUT, &path, Some(json!([a, "42"])), TOKEN).await;
    assert_eq!(status, 200);
    assert_eq!(resp["recordsIdsAdded"], json!([a]));
    assert_eq!(resp["recordIdsMissing"], json!(["42"]));
    let (_, _, again) = send(&hs, reqwest::Method::PUT, &path, Some(json!([a])), TOKEN).await;
    assert_eq!(again["recordsIdsAdded"], json!([]));
    assert_eq!(hs.list_members(&manual), vec![a.clone()]);
    let (status, _, _) = send(&hs, reqwest::Method::PUT, &format!("/crm/v3/lists/{dynamic}/memberships/add"), Some(json!([a])), TOKEN).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn faults_are_consumed_in_order() {
    let hs = emulator().await;
    let a = hs.add_company(&[("name", "A")]);
    hs.fail_next("/crm/v3/objects", Fault::RateLimited { retry_after_secs: Some(2) }, 1);
    hs.fail_next("", Fault::ServerError(502), 1);
    hs.fail_next("/crm/v3/objects", Fault::TruncatedJson, 1);
    hs.fail_next("/crm/v3/objects", Fault::ResetConnection, 1);
    hs.fail_next("", Fault::Unauthorized, 1);
    let body = json!({"inputs": [{"id": a, "properties": {"name": "B"}}]});
    let (s1, h1, b1) = post(&hs, "/crm/v3/objects/companies/batch/update", body.clone()).await;
    assert_eq!((s1, h1["retry-after"].to_str().unwrap(), b1["policyName"].as_str()), (429, "2", Some("TEN_SECONDLY_ROLLING")));
    let (s2, _, _) = post(&hs, "/crm/v3/objects/companies/batch/update", body.clone()).await;
    assert_eq!(s2, 502);
    assert_eq!(hs.company(&a).unwrap()["name"], "A");
    let (s3, _, b3) = post(&hs, "/crm/v3/objects/companies/batch/update", body.clone()).await;
    assert_eq!(s3, 200);
    assert!(b3.is_string(), "truncated body does not parse");
    assert_eq!(hs.company(&a).unwrap()["name"], "B", "truncated responses are applied");
    let reset = reqwest::Client::new()
        .post(format!("{}/crm/v3/objects/companies/batch/update", hs.url))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await;
    // The connection is dropped before any response byte: send() itself fails.
    assert!(reset.is_err(), "a reset connection delivers no response");
    let (s5, _, _) = post(&hs, "/crm/v3/objects/companies/batch/update", body.clone()).await;
    assert_eq!(s5, 401);
    let (s6, _, _) = post(&hs, "/crm/v3/objects/companies/batch/update", body).await;
    assert_eq!(s6, 200);
    assert_eq!(hs.rate_limited_count(), 0);
    let statuses: Vec<u16> = hs.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 502, 200, 0, 401, 200]);
}

#[tokio::test]
async fn reset_after_apply_commits_then_drops_the_connection() {
    let hs = emulator().await;
    let a = hs.add_company(&[("name", "A")]);
    hs.fail_next("/crm/v3/objects/companies/batch/update", Fault::ResetAfterApply, 1);
    let r = reqwest::Client::new()
        .post(format!("{}/crm/v3/objects/companies/batch/update", hs.url))
        .bearer_auth(TOKEN)
        .json(&json!({"inputs": [{"id": a, "properties": {"name": "B"}}]}))
        .send()
        .await;
    assert!(r.is_err());
    assert_eq!(hs.company(&a).unwrap()["name"], "B");
    assert_eq!(hs.write_calls(), 1);
}

#[tokio::test]
async fn delay_fault_sleeps_then_answers() {
    let hs = emulator().await;
    hs.fail_next("/crm/v3/properties", Fault::Delay(Duration::from_millis(300)), 1);
    let t = std::time::Instant::now();
    let (status, _, _) = send(&hs, reqwest::Method::GET, "/crm/v3/properties/companies", None, TOKEN).await;
    assert_eq!(status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
}
