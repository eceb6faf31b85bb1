//! Self-tests of the Salesforce emulator (tests/common/salesforce.rs): the emulator must
//! answer like Salesforce before other tests may trust it.

#[path = "common/emulator.rs"]
mod emulator;
#[path = "common/salesforce.rs"]
mod salesforce;

use std::time::Duration;

use reqwest::StatusCode;
use salesforce::{Fault, Salesforce};
use serde_json::{Value, json};

const V: &str = "/services/data/v64.0";

struct Answer {
    status: StatusCode,
    usage: Option<String>,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

async fn token_call(sf: &Salesforce, form: &str) -> Answer {
    let r = reqwest::Client::new()
        .post(format!("{}/services/oauth2/token", sf.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .unwrap();
    Answer { status: r.status(), usage: None, text: r.text().await.unwrap() }
}

async fn call(sf: &Salesforce, token: &str, method: reqwest::Method, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Answer {
    let url = if path.starts_with("/services/") { format!("{}{path}", sf.url) } else { format!("{}{V}{path}", sf.url) };
    let mut req = reqwest::Client::new().request(method, url).bearer_auth(token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let usage = r.headers().get("sforce-limit-info").map(|v| v.to_str().unwrap().to_owned());
    Answer { status: r.status(), usage, text: r.text().await.unwrap() }
}

async fn get(sf: &Salesforce, token: &str, path: &str) -> Answer {
    call(sf, token, reqwest::Method::GET, path, None, &[]).await
}

fn q(soql: &str) -> String {
    let enc: String = soql
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("/query?q={enc}")
}

/// An emulator with a client-credentials app and a token for it.
async fn session() -> (Salesforce, String) {
    let sf = Salesforce::start().await;
    sf.client_credentials_app("cc-id", "cc-secret");
    let a = token_call(&sf, "grant_type=client_credentials&client_id=cc-id&client_secret=cc-secret").await;
    assert_eq!(a.status, 200, "{}", a.text);
    let token = a.json()["access_token"].as_str().unwrap().to_owned();
    (sf, token)
}

#[tokio::test]
async fn jwt_bearer_accepts_the_right_key_and_refuses_others() {
    let sf = Salesforce::start().await;
    let (private, public) = Salesforce::test_keypair();
    let (other_private, _) = Salesforce::other_test_keypair();
    sf.jwt_app("app-1", "int@example.com", &public);
    let grant = |jwt: String| format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={jwt}");

    let ok = token_call(&sf, &grant(Salesforce::sign_assertion(&private, "app-1", "int@example.com", &sf.url, 170))).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let body = ok.json();
    assert_eq!(body["instance_url"], sf.url);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body.get("refresh_token").is_none(), "JWT bearer never returns a refresh token");
    assert!(body["access_token"].as_str().unwrap().contains('!'));
    for key in ["scope", "id", "issued_at", "signature"] {
        assert!(body[key].is_string(), "{key} missing: {body}");
    }
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(get(&sf, token, "/limits").await.status, 200);

    let refusals = [
        (Salesforce::sign_assertion(&other_private, "app-1", "int@example.com", &sf.url, 170), "invalid_grant", "invalid assertion"),
        (Salesforce::sign_assertion(&private, "app-1", "int@example.com", "https://login.salesforce.com", 170), "invalid_grant", "audience is invalid"),
        (Salesforce::sign_assertion(&private, "app-1", "int@example.com", &sf.url, 600), "invalid_grant", "expired authorization code"),
        (Salesforce::sign_assertion(&private, "app-1", "int@example.com", &sf.url, -5), "invalid_grant", "expired authorization code"),
        (Salesforce::sign_assertion(&private, "app-1", "someone@example.com", &sf.url, 170), "invalid_grant", "user hasn't approved this consumer"),
        (Salesforce::sign_assertion(&private, "app-2", "int@example.com", &sf.url, 170), "invalid_client_id", "client identifier invalid"),
        ("not.a.jwt".to_owned(), "invalid_grant", "invalid assertion"),
    ];
    for (jwt, error, description) in refusals {
        let a = token_call(&sf, &grant(jwt)).await;
        assert_eq!(a.status, 400, "{}", a.text);
        assert_eq!(a.json(), json!({"error": error, "error_description": description}));
    }
    assert_eq!(sf.tokens_issued(), 1);
    let recorded = sf.requests();
    assert_eq!(recorded[0].body["grant_type"], "urn:ietf:params:oauth:grant-type:jwt-bearer", "form fields are recorded as an object");
}

#[tokio::test]
async fn client_credentials_and_refresh_token_grants() {
    let sf = Salesforce::start().await;
    sf.client_credentials_app("cc", "secret");
    sf.refresh_app("web", "websecret", "5Aep861rt");
    assert_eq!(token_call(&sf, "grant_type=client_credentials&client_id=cc&client_secret=secret").await.status, 200);
    let wrong = token_call(&sf, "grant_type=client_credentials&client_id=cc&client_secret=nope").await;
    assert_eq!((wrong.status.as_u16(), wrong.json()["error"].clone()), (400, json!("invalid_client")));
    // Credentials in a Basic header ("cc:secret").
    let basic = reqwest::Client::new()
        .post(format!("{}/services/oauth2/token", sf.url))
        .header("authorization", "Basic Y2M6c2VjcmV0")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    let fresh = token_call(&sf, "grant_type=refresh_token&client_id=web&client_secret=websecret&refresh_token=5Aep861rt").await;
    assert_eq!(fresh.status, 200, "{}", fresh.text);
    assert!(fresh.json().get("refresh_token").is_none());
    let stale = token_call(&sf, "grant_type=refresh_token&client_id=web&client_secret=websecret&refresh_token=old").await;
    assert_eq!(stale.json(), json!({"error": "invalid_grant", "error_description": "expired access/refresh token"}));
    assert_eq!(token_call(&sf, "grant_type=password").await.json()["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn query_pages_with_next_records_url_and_honours_batch_size() {
    let (sf, token) = session().await;
    sf.define_field("OQL_Domain__c", "external_id");
    let ids: Vec<String> = (0..450).map(|i| sf.add_account(&[("Website", &format!("site{i}.com")), ("OQL_Domain__c", &format!("site{i}.com"))])).collect();
    assert!(ids.iter().all(|id| id.len() == 18 && id.starts_with("001")));

    let soql = q("SELECT Id, Website FROM Account WHERE Website LIKE 'site%'");
    let first = call(&sf, &token, reqwest::Method::GET, &soql, None, &[("Sforce-Query-Options", "batchSize=200")]).await;
    let page = first.json();
    assert_eq!((page["totalSize"].clone(), page["done"].clone()), (json!(450), json!(false)));
    assert_eq!(page["records"].as_array().unwrap().len(), 200);
    let row = &page["records"][0];
    assert_eq!(row["attributes"]["type"], "Account");
    assert_eq!(row["attributes"]["url"], format!("/services/data/v64.0/sobjects/Account/{}", ids[0]));
    assert_eq!((row["Id"].clone(), row["Website"].clone()), (json!(ids[0]), json!("site0.com")));
    let mut seen = 200;
    let mut next = page["nextRecordsUrl"].as_str().unwrap().to_owned();
    assert!(next.starts_with("/services/data/v64.0/query/01g"), "{next}");
    loop {
        let p = call(&sf, &token, reqwest::Method::GET, &next, None, &[("Sforce-Query-Options", "batchSize=200")]).await.json();
        seen += p["records"].as_array().unwrap().len();
        if p["done"] == json!(true) {
            assert!(p.get("nextRecordsUrl").is_none());
            break;
        }
        next = p["nextRecordsUrl"].as_str().unwrap().to_owned();
    }
    assert_eq!(seen, 450);
    // Without the header: one page of up to 2000. batchSize below 200 counts as 200.
    assert_eq!(get(&sf, &token, &soql).await.json()["done"], true);
    let small = call(&sf, &token, reqwest::Method::GET, &soql, None, &[("Sforce-Query-Options", "batchSize=10")]).await.json();
    assert_eq!(small["records"].as_array().unwrap().len(), 200);
    // The server may answer fewer rows than asked.
    sf.set_page_size(7);
    assert_eq!(get(&sf, &token, &soql).await.json()["records"].as_array().unwrap().len(), 7);
    sf.set_page_size(2000);

    // IN and = are case-insensitive on text; the external id is queryable; Id literals are checked.
    let hits = get(&sf, &token, &q("SELECT Id FROM Account WHERE Website IN ('SITE1.com', 'site2.com', 'nope.com')")).await.json();
    assert_eq!(hits["totalSize"], 2);
    let by_ext = get(&sf, &token, &q("select id, oql_domain__c from account where OQL_Domain__c in ('site7.com')")).await.json();
    assert_eq!(by_ext["records"][0]["OQL_Domain__c"], "site7.com", "names come back in the schema's casing");
    let one = get(&sf, &token, &q(&format!("SELECT Id, OwnerId FROM Account WHERE Id = '{}'", &ids[3][..15]))).await.json();
    assert_eq!((one["totalSize"].clone(), one["records"][0]["OwnerId"].clone()), (json!(1), json!(sf.default_user())));
    let bad_id = get(&sf, &token, &q("SELECT Id FROM Account WHERE Id = 'x'")).await;
    assert_eq!((bad_id.status.as_u16(), bad_id.json()[0]["errorCode"].clone()), (400, json!("INVALID_QUERY_FILTER_OPERATOR")));
    let escaped = get(&sf, &token, &q(r"SELECT Id FROM Account WHERE Website LIKE 'site1\_%'")).await.json();
    assert_eq!(escaped["totalSize"], 0);

    // Contacts of an account.
    let c1 = sf.add_contact(&ids[0]);
    sf.add_contact(&ids[1]);
    let contacts = get(&sf, &token, &q(&format!("SELECT Id FROM Contact WHERE AccountId = '{}'", ids[0]))).await.json();
    assert_eq!(contacts["records"], json!([{"attributes": {"type": "Contact", "url": format!("/services/data/v64.0/sobjects/Contact/{c1}")}, "Id": c1}]));

    // Unknown field, unknown object, bad syntax.
    let unknown = get(&sf, &token, &q("SELECT Id, Foo__c FROM Account")).await;
    assert_eq!(unknown.status, 400);
    let e = &unknown.json()[0];
    assert_eq!(e["errorCode"], "INVALID_FIELD");
    assert!(e["message"].as_str().unwrap().contains("No such column 'Foo__c' on entity 'Account'"), "{e}");
    assert!(e["message"].as_str().unwrap().contains("ERROR at Row:1:Column:12"), "{e}");
    assert_eq!(get(&sf, &token, &q("SELECT Id FROM Acount")).await.json()[0]["errorCode"], "INVALID_TYPE");
    assert_eq!(get(&sf, &token, &q("SELECT Id FROM Account WHERE")).await.json()[0]["errorCode"], "MALFORMED_QUERY");
    assert_eq!(get(&sf, &token, "/query/01gBOGUS-200").await.json()[0]["errorCode"], "INVALID_QUERY_LOCATOR");
    // A URI over 16,384 bytes.
    let long = q(&format!("SELECT Id FROM Account WHERE Website IN ({})", vec!["'abcdefghij.com'"; 1200].join(",")));
    assert_eq!(get(&sf, &token, &long).await.status, 414);
}

#[tokio::test]
async fn collection_update_reports_per_record_errors_in_order() {
    let (sf, token) = session().await;
    sf.define_field("OQL_Score__c", "double");
    sf.define_field("OQL_Stage__c", "picklist");
    sf.define_field("OQL_Last_Activity__c", "date");
    sf.define_field("OQL_Customer__c", "boolean");
    let a = sf.add_account(&[("Website", "a.com")]);
    let b = sf.add_account(&[("Website", "b.com")]);
    let c = sf.add_account(&[("Website", "c.com")]);
    let d = sf.add_account(&[("Website", "d.com")]);
    let contact = sf.add_contact(&a);
    sf.delete_account(&b);
    sf.reject_ids(&[&d]);
    let rec = |id: &str, extra: Value| {
        let mut r = json!({"attributes": {"type": "Account"}, "id": id});
        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        r
    };
    let body = json!({"allOrNone": false, "records": [
        rec(&a, json!({"OQL_Score__c": 42.5, "OQL_Stage__c": "Engaged", "OQL_Last_Activity__c": "2025-06-30", "OQL_Customer__c": true})),
        rec(&b, json!({"OQL_Score__c": 1})),
        rec(&c, json!({"OQL_Score__c": "lots"})),
        rec(&d, json!({"OQL_Score__c": 2})),
        rec(&contact, json!({"OQL_Score__c": 3})),
        rec(&c, json!({"OQL_Last_Activity__c": "30/06/2025"})),
        rec(&c, json!({"OQL_Customer__c": null})),
        rec(&c, json!({"OQL_Score__c": "17", "OQL_Stage__c": null})),
    ]});
    let a1 = call(&sf, &token, reqwest::Method::PATCH, "/composite/sobjects", Some(body), &[]).await;
    assert_eq!(a1.status, 200, "{}", a1.text);
    let results = a1.json();
    let codes: Vec<Value> = results.as_array().unwrap().iter().map(|r| r["errors"][0]["statusCode"].clone()).collect();
    assert_eq!(
        codes,
        [
            Value::Null,
            json!("ENTITY_IS_DELETED"),
            json!("INVALID_TYPE_ON_FIELD_IN_RECORD"),
            json!("FIELD_CUSTOM_VALIDATION_EXCEPTION"),
            json!("MALFORMED_ID"),
            json!("INVALID_TYPE_ON_FIELD_IN_RECORD"),
            json!("INVALID_TYPE_ON_FIELD_IN_RECORD"),
            Value::Null,
        ]
    );
    assert_eq!(results[0], json!({"id": a, "success": true, "errors": []}));
    assert_eq!(results[2], json!({"success": false, "errors": [{"statusCode": "INVALID_TYPE_ON_FIELD_IN_RECORD", "message": "OQL Score: value not of required type: \"lots\"", "fields": ["OQL_Score__c"]}]}));
    assert_eq!(results[4]["errors"][0]["message"], format!("Account ID: id value of incorrect type: {contact}"));
    let stored = sf.account(&a).unwrap();
    assert_eq!((stored["OQL_Score__c"].clone(), stored["OQL_Last_Activity__c"].clone(), stored["OQL_Customer__c"].clone()), (json!(42.5), json!("2025-06-30"), json!(true)));
    assert_eq!(sf.account(&c).unwrap()["OQL_Score__c"], json!(17.0), "numeric strings are taken as numbers");
    assert!(sf.account(&b).is_none());

    // A field the org lacks fails the whole request; nothing is written.
    let before = sf.accounts();
    let bad = json!({"allOrNone": false, "records": [rec(&a, json!({"OQL_Score__c": 1})), rec(&c, json!({"Nope__c": 1}))]});
    let a2 = call(&sf, &token, reqwest::Method::PATCH, "/composite/sobjects", Some(bad), &[]).await;
    assert_eq!(a2.status, 400);
    assert_eq!(a2.json(), json!([{"message": "No such column 'Nope__c' on sobject of type Account", "errorCode": "INVALID_FIELD"}]));
    assert_eq!(sf.accounts(), before);

    // Strict deserialization: a wrong type fails the whole request.
    sf.json_parser_errors(true);
    let strict = json!({"records": [rec(&a, json!({"OQL_Score__c": "lots"}))]});
    let a3 = call(&sf, &token, reqwest::Method::PATCH, "/composite/sobjects", Some(strict), &[]).await;
    assert_eq!((a3.status.as_u16(), a3.json()[0]["errorCode"].clone()), (400, json!("JSON_PARSER_ERROR")));
    sf.json_parser_errors(false);

    // allOrNone: true rolls everything back.
    let all = json!({"allOrNone": true, "records": [rec(&a, json!({"OQL_Score__c": 99})), rec(&b, json!({"OQL_Score__c": 1}))]});
    let a4 = call(&sf, &token, reqwest::Method::PATCH, "/composite/sobjects", Some(all), &[]).await.json();
    assert_eq!(a4[0]["errors"][0]["statusCode"], "ALL_OR_NONE_OPERATION_ROLLED_BACK");
    assert_eq!(sf.account(&a).unwrap()["OQL_Score__c"], json!(42.5));

    // More than 200 records.
    let many: Vec<Value> = (0..201).map(|_| rec(&a, json!({}))).collect();
    let a5 = call(&sf, &token, reqwest::Method::PATCH, "/composite/sobjects", Some(json!({"records": many})), &[]).await;
    assert_eq!(a5.json(), json!([{"message": "record limit reached. cannot submit more than 200 records into this call", "errorCode": "EXCEEDED_ID_LIMIT"}]));
}

#[tokio::test]
async fn collection_create_and_upsert_by_external_id() {
    let (sf, token) = session().await;
    sf.define_field("OQL_Domain__c", "external_id");
    sf.define_field("OQL_Stage__c", "string");
    let existing = sf.add_account(&[("Website", "old.com"), ("OQL_Domain__c", "old.com")]);
    let upsert = json!({"allOrNone": false, "records": [
        {"attributes": {"type": "Account"}, "OQL_Domain__c": "OLD.com", "OQL_Stage__c": "Engaged"},
        {"attributes": {"type": "Account"}, "OQL_Domain__c": "new.com", "Name": "new.com", "OQL_Stage__c": "Aware"},
        {"attributes": {"type": "Account"}, "OQL_Domain__c": "nameless.com"},
        {"attributes": {"type": "Account"}, "OQL_Stage__c": "x"},
    ]});
    let r = call(&sf, &token, reqwest::Method::PATCH, "/composite/sobjects/Account/OQL_Domain__c", Some(upsert), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = r.json();
    assert_eq!(r[0], json!({"id": existing, "success": true, "errors": [], "created": false}));
    assert_eq!((r[1]["success"].clone(), r[1]["created"].clone()), (json!(true), json!(true)));
    assert_eq!(r[2]["errors"][0]["statusCode"], "REQUIRED_FIELD_MISSING");
    assert_eq!(r[3]["errors"][0]["statusCode"], "MISSING_ARGUMENT");
    assert_eq!(sf.account(&existing).unwrap()["OQL_Stage__c"], "Engaged");
    assert_eq!(sf.accounts().len(), 2);
    let not_ext = call(&sf, &token, reqwest::Method::PATCH, "/composite/sobjects/Account/OQL_Stage__c", Some(json!({"records": []})), &[]).await;
    assert_eq!(not_ext.status, 400);

    let create = json!({"records": [
        {"attributes": {"type": "Account"}, "Name": "Acme", "Website": "acme.com"},
        {"attributes": {"type": "Account"}, "Name": "Dup", "OQL_Domain__c": "new.com"},
        {"attributes": {"type": "Account"}, "Id": existing, "Name": "x"},
    ]});
    let c = call(&sf, &token, reqwest::Method::POST, "/composite/sobjects", Some(create), &[]).await.json();
    assert_eq!(c[0]["success"], true);
    assert!(c[0].get("created").is_none());
    assert_eq!(c[1]["errors"][0]["statusCode"], "DUPLICATE_VALUE");
    assert_eq!(c[2]["errors"][0]["statusCode"], "INVALID_FIELD_FOR_INSERT_UPDATE");
    let acme = sf.account(c[0]["id"].as_str().unwrap()).unwrap();
    assert_eq!(acme["OwnerId"], json!(sf.default_user()));
}

#[tokio::test]
async fn limit_header_limits_resource_and_request_limit_exceeded() {
    let (sf, token) = session().await;
    sf.set_daily_limit(4, 1);
    let a = get(&sf, &token, "/limits").await;
    assert_eq!(a.usage.as_deref(), Some("api-usage=2/4"));
    assert_eq!(a.json()["DailyApiRequests"], json!({"Max": 4, "Remaining": 2}));
    assert_eq!(get(&sf, &token, &q("SELECT Id FROM Account")).await.usage.as_deref(), Some("api-usage=3/4"));
    assert_eq!(get(&sf, &token, &q("SELECT Id FROM Account")).await.usage.as_deref(), Some("api-usage=4/4"));
    let refused = get(&sf, &token, "/limits").await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.usage.as_deref(), Some("api-usage=4/4"));
    assert_eq!(refused.json(), json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]));
    assert_eq!(sf.daily_usage(), (4, 4));

    sf.set_daily_limit(100, 0);
    sf.fail_next("/services/data/v64.0/limits", Fault::RateLimited, 1);
    assert_eq!(get(&sf, &token, "/limits").await.json()[0]["message"], "TotalRequests Limit exceeded.");
    assert_eq!(get(&sf, &token, "/limits").await.status, 200);

    sf.set_rate_limit(2);
    let statuses: Vec<u16> = futures_statuses(&sf, &token, 3).await;
    assert_eq!(statuses.iter().filter(|s| **s == 403).count(), 1, "{statuses:?}");
    assert!(sf.max_in_window("/services/data/v64.0/limits", Duration::from_secs(1)) >= 3);
    sf.set_rate_limit(0);
}

async fn futures_statuses(sf: &Salesforce, token: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(sf, token, "/limits").await.status.as_u16());
    }
    out
}

#[tokio::test]
async fn expired_sessions_answer_401_invalid_session_id() {
    let (sf, token) = session().await;
    assert_eq!(get(&sf, &token, "/limits").await.status, 200);
    sf.expire_sessions();
    let a = get(&sf, &token, "/limits").await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json(), json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]));
    assert_eq!(get(&sf, "garbage", "/limits").await.status, 401);

    let fresh = token_call(&sf, "grant_type=client_credentials&client_id=cc-id&client_secret=cc-secret").await.json();
    let fresh = fresh["access_token"].as_str().unwrap().to_owned();
    assert_eq!(get(&sf, &fresh, "/limits").await.status, 200);
    // The fault revokes the presented token: retrying with it fails again.
    sf.fail_next("", Fault::SessionExpired, 1);
    assert_eq!(get(&sf, &fresh, "/limits").await.status, 401);
    assert_eq!(get(&sf, &fresh, "/limits").await.status, 401);
    assert_eq!(sf.tokens_issued(), 2);
}

#[tokio::test]
async fn campaign_members_tasks_and_faults() {
    let (sf, token) = session().await;
    let account = sf.add_account(&[("Website", "a.com")]);
    let contact = sf.add_contact(&account);
    let campaign = sf.add_campaign();
    let member = json!({"CampaignId": campaign, "ContactId": contact, "Status": "Responded"});
    let first = call(&sf, &token, reqwest::Method::POST, "/sobjects/CampaignMember", Some(member.clone()), &[]).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert!(first.json()["id"].as_str().unwrap().starts_with("00v"));
    let again = call(&sf, &token, reqwest::Method::POST, "/sobjects/CampaignMember", Some(member), &[]).await;
    assert_eq!(again.status, 400);
    assert_eq!(again.json(), json!([{"message": "Already a campaign member.", "errorCode": "DUPLICATE_VALUE", "fields": []}]));
    assert_eq!(sf.campaign_members(&campaign), vec![(contact.clone(), "Responded".to_owned())]);

    let task = json!({"WhatId": account, "OwnerId": sf.default_user(), "Subject": "Follow up", "ActivityDate": "2025-07-01", "Priority": "High"});
    let t = call(&sf, &token, reqwest::Method::POST, "/sobjects/Task", Some(task), &[]).await;
    assert_eq!(t.status, 201, "{}", t.text);
    let tasks = sf.tasks();
    assert_eq!((tasks[0]["Subject"].clone(), tasks[0]["Status"].clone(), tasks[0]["Priority"].clone()), (json!("Follow up"), json!("Not Started"), json!("High")));
    let bad_owner = json!({"WhatId": account, "OwnerId": account, "Subject": "x"});
    assert_eq!(call(&sf, &token, reqwest::Method::POST, "/sobjects/Task", Some(bad_owner), &[]).await.status, 400);

    // Faults: a server error applies nothing; a truncated answer applies; DelayAfterApply applies before answering.
    sf.fail_next("/services/data/v64.0/composite", Fault::ServerError(503), 1);
    let body = json!({"records": [{"attributes": {"type": "Account"}, "id": account, "Website": "b.com"}]});
    let e = call(&sf, &token, reqwest::Method::PATCH, "/composite/sobjects", Some(body.clone()), &[]).await;
    assert_eq!((e.status.as_u16(), e.json()[0]["errorCode"].clone()), (503, json!("SERVER_UNAVAILABLE")));
    assert_eq!(sf.account(&account).unwrap()["Website"], "a.com");
    sf.fail_next("/services/data/v64.0/composite", Fault::TruncatedJson, 1);
    let cut = call(&sf, &token, reqwest::Method::PATCH, "/composite/sobjects", Some(body.clone()), &[]).await;
    assert!(serde_json::from_str::<Value>(&cut.text).is_err());
    assert_eq!(sf.account(&account).unwrap()["Website"], "b.com");
    sf.fail_next("", Fault::DelayAfterApply(Duration::from_millis(300)), 1);
    let slow = reqwest::Client::builder().timeout(Duration::from_millis(100)).build().unwrap();
    let body2 = json!({"records": [{"attributes": {"type": "Account"}, "id": account, "Website": "c.com"}]});
    let timed_out = slow.patch(format!("{}{V}/composite/sobjects", sf.url)).bearer_auth(&token).json(&body2).send().await;
    assert!(timed_out.is_err());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(sf.account(&account).unwrap()["Website"], "c.com");
    assert_eq!(sf.write_calls(), 7);
    let last = sf.requests().into_iter().last().unwrap();
    assert_eq!((last.method.as_str(), last.status, last.authorization.unwrap()), ("PATCH", 200, format!("Bearer {token}")));
}
