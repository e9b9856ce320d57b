//! The admin API in-process: who may call it, the resources' conventions, bad input,
//! and the audit trail each change leaves.

use crate::testing::{TestApp, CALLBACK, NOW, SECRET};
use axum::http::{header, StatusCode};
use serde_json::{json, Value};

/// `(status, type, field)` of a problem document, after checking its media type.
fn problem(a: &crate::testing::Answer) -> (u16, String, String) {
    assert_eq!(a.headers.get(header::CONTENT_TYPE).unwrap(), "application/problem+json", "{}", a.text);
    assert_eq!(a.body["status"], a.status.as_u16(), "{}", a.text);
    assert!(a.body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{}", a.text);
    let text = |k: &str| a.body[k].as_str().unwrap_or_default().to_string();
    (a.status.as_u16(), text("type"), text("field"))
}

fn www_authenticate(a: &crate::testing::Answer) -> String {
    a.headers.get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

fn etag(a: &crate::testing::Answer) -> String {
    a.headers.get(header::ETAG).and_then(|v| v.to_str().ok()).expect("an ETag").to_string()
}

fn web_client() -> Value {
    json!({
        "client_id": "portal",
        "client_name": "Cổng sinh viên",
        "redirect_uris": [CALLBACK],
        "scope": "openid profile email",
        "skip_consent": true,
    })
}

#[tokio::test]
async fn only_live_admin_tokens_of_the_right_scope_get_in() {
    let app = TestApp::new().await;
    let admin = app.admin_token("ops", "khoa:admin").await;
    let reader = app.admin_token("auditor", "khoa:admin.read").await;
    let other = app.admin_token("billing", "api:read").await;
    let (_, web_secret) = app.client("web", |_| {}).await;
    let user_token =
        app.tokens_of_web(&web_secret.unwrap(), "code-1").await["access_token"].as_str().unwrap().to_string();

    let none = app.admin("GET", "/admin/clients", None, None).await;
    assert_eq!(problem(&none), (401, "urn:khoa:problem:unauthorized".into(), String::new()));
    assert_eq!(www_authenticate(&none), "Bearer realm=\"khoa-admin\"");
    for bad in ["garbage", user_token.as_str()] {
        let a = app.admin("GET", "/admin/clients", Some(bad), None).await;
        assert_eq!(problem(&a).0, 401);
        assert_eq!(a.body["error"], "invalid_token");
        assert!(www_authenticate(&a).contains("error=\"invalid_token\""), "{}", www_authenticate(&a));
    }
    let basic = app
        .send_admin(
            axum::http::Request::get("/admin/clients")
                .header(header::AUTHORIZATION, "Basic b3BzOnNlY3JldA==")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(problem(&basic).0, 401);

    let a = app.admin("GET", "/admin/clients", Some(&other), None).await;
    assert_eq!(problem(&a).0, 403);
    assert_eq!(a.body["error"], "insufficient_scope");
    assert_eq!(app.admin("GET", "/admin/clients", Some(&reader), None).await.status, StatusCode::OK);
    let write = app.admin("POST", "/admin/clients", Some(&reader), Some(web_client())).await;
    assert_eq!(problem(&write).0, 403);
    assert!(www_authenticate(&write).contains("scope=\"khoa:admin\""), "{}", www_authenticate(&write));
    assert_eq!(app.rows("clients").await, 4, "the refused creation wrote nothing");
    assert_eq!(app.admin("GET", "/admin/clients", Some(&admin), None).await.status, StatusCode::OK);

    // Revoked: refused at once.
    let revoked = app.admin_token("ops2", "khoa:admin").await;
    let r = app.post_form("/oauth2/revoke", &[("token", &revoked)], Some(("ops2", SECRET))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.admin("GET", "/admin/clients", Some(&revoked), None).await.body["error"], "invalid_token");

    // The scope taken from the client: its live token stops working at once.
    let patch = json!({"scope": "khoa:admin.read"});
    let a = app.admin("PATCH", "/admin/clients/ops", Some(&admin), Some(patch)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(app.admin("GET", "/admin/clients", Some(&admin), None).await.body["error"], "invalid_token");

    // Expired.
    app.clock.advance(3601);
    assert_eq!(app.admin("GET", "/admin/clients", Some(&reader), None).await.body["error"], "invalid_token");
}

#[tokio::test]
async fn clients_are_created_read_replaced_patched_and_deleted() {
    let app = TestApp::new().await;
    let token = app.admin_token("ops", "khoa:admin").await;
    let t = Some(token.as_str());

    let created = app.admin("POST", "/admin/clients", t, Some(web_client())).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.location(), "/admin/clients/portal");
    assert_eq!(created.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    let secret = created.body["client_secret"].as_str().expect("the secret, once").to_string();
    assert_eq!(created.body["client_secret_expires_at"], 0);
    assert_eq!(created.body["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(created.body["grant_types"], json!(["authorization_code", "refresh_token"]));
    assert_eq!(created.body["scope"], "email openid profile");
    assert_eq!(created.body["client_id_issued_at"], NOW);
    // The new client works at once, with the secret shown.
    let cc = app.post_form("/oauth2/token", &[("grant_type", "client_credentials")], Some(("portal", &secret))).await;
    assert_eq!(cc.error().1, "unauthorized_client", "authenticated, but not allowed this grant: {}", cc.text);

    let shown = app.admin("GET", "/admin/clients/portal", t, None).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(shown.body.get("client_secret").is_none(), "{}", shown.text);
    assert!(!shown.text.contains(&secret));
    let tag = etag(&shown);
    assert_eq!(tag, etag(&created));

    let again = app.admin("POST", "/admin/clients", t, Some(web_client())).await;
    assert_eq!(problem(&again), (409, "urn:khoa:problem:conflict".into(), String::new()));

    // PATCH (RFC 7396): given members change, null resets, the rest stays.
    let patch = |body: Value, if_match: Option<&str>| {
        let mut req = axum::http::Request::patch("/admin/clients/portal")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/merge-patch+json");
        if let Some(tag) = if_match {
            req = req.header(header::IF_MATCH, tag);
        }
        app.send_admin(req.body(axum::body::Body::from(body.to_string())).unwrap())
    };
    let patched =
        patch(json!({"client_name": "Portal", "skip_consent": null, "lifetimes": {"access_token": 600}}), Some(&tag))
            .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.body["client_name"], "Portal");
    assert_eq!(patched.body["skip_consent"], false);
    assert_eq!(patched.body["lifetimes"]["access_token"], 600);
    assert_eq!(patched.body["redirect_uris"], json!([CALLBACK]));
    let new_tag = etag(&patched);
    assert_ne!(new_tag, tag);
    // A lost update: the old ETag is refused, and nothing changes.
    let lost = patch(json!({"client_name": "Lost"}), Some(&tag)).await;
    assert_eq!(problem(&lost).0, 412);
    assert_eq!(app.admin("GET", "/admin/clients/portal", t, None).await.body["client_name"], "Portal");

    // PUT replaces the whole: what is not given is the default again. The document as
    // read (read-only members included) can be sent back.
    let mut doc = app.admin("GET", "/admin/clients/portal", t, None).await.body;
    doc["client_name"] = json!("Portal 2");
    let mut req = axum::http::Request::put("/admin/clients/portal")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::IF_MATCH, &new_tag);
    let replaced = app.send_admin(req.body(axum::body::Body::from(doc.to_string())).unwrap()).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
    assert_eq!(replaced.body["lifetimes"]["access_token"], 600);
    req = axum::http::Request::put("/admin/clients/portal")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::IF_MATCH, &new_tag);
    let stale = app.send_admin(req.body(axum::body::Body::from(web_client().to_string())).unwrap()).await;
    assert_eq!(problem(&stale).0, 412);
    let whole = app.admin("PUT", "/admin/clients/portal", t, Some(json!({"redirect_uris": [CALLBACK]}))).await;
    assert_eq!(whole.status, StatusCode::OK, "{}", whole.text);
    assert_eq!(whole.body["client_name"], Value::Null);
    assert_eq!(whole.body["lifetimes"]["access_token"], Value::Null);
    assert_eq!(whole.body["scope"], "email offline_access openid phone profile");
    // The secret survived every update.
    let cc = app.post_form("/oauth2/token", &[("grant_type", "client_credentials")], Some(("portal", &secret))).await;
    assert_eq!(cc.error().1, "unauthorized_client", "{}", cc.text);

    // Public → the secret is gone; confidential again → a new secret, shown once.
    let public =
        app.admin("PATCH", "/admin/clients/portal", t, Some(json!({"token_endpoint_auth_method": "none"}))).await;
    assert_eq!(public.body["token_endpoint_auth_method"], "none", "{}", public.text);
    let back = app
        .admin("PATCH", "/admin/clients/portal", t, Some(json!({"token_endpoint_auth_method": "client_secret_post"})))
        .await;
    assert!(back.body["client_secret"].as_str().is_some_and(|s| s != secret), "{}", back.text);

    let nobody = app.admin("PUT", "/admin/clients/nobody", t, Some(json!({"redirect_uris": [CALLBACK]}))).await;
    assert_eq!(problem(&nobody).0, 404);
    let deleted = app.admin("DELETE", "/admin/clients/portal", t, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.admin("DELETE", "/admin/clients/portal", t, None).await.status,
        StatusCode::NO_CONTENT,
        "idempotent"
    );
    let gone = app.admin("GET", "/admin/clients/portal", t, None).await;
    assert_eq!(problem(&gone), (404, "urn:khoa:problem:not-found".into(), String::new()));
}

#[tokio::test]
async fn a_rotated_secret_overlaps_for_the_time_asked() {
    let app = TestApp::new().await;
    let token = app.admin_token("ops", "khoa:admin").await;
    let t = Some(token.as_str());
    let body = json!({"client_id": "m2m", "grant_types": ["client_credentials"], "scope": "api:read"});
    let old =
        app.admin("POST", "/admin/clients", t, Some(body)).await.body["client_secret"].as_str().unwrap().to_string();
    let rotated = app.admin("POST", "/admin/clients/m2m/secret", t, Some(json!({"keep_old_for": 600}))).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    let new = rotated.body["client_secret"].as_str().unwrap().to_string();
    assert_eq!(rotated.body["previous_secret_expires_at"], NOW + 600);
    let works = |secret: String| {
        let app = &app;
        async move {
            app.post_form("/oauth2/token", &[("grant_type", "client_credentials")], Some(("m2m", &secret))).await.status
        }
    };
    assert_eq!(works(old.clone()).await, StatusCode::OK);
    assert_eq!(works(new.clone()).await, StatusCode::OK);
    app.clock.advance(601);
    assert_eq!(works(old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(works(new).await, StatusCode::OK);
    let bad = app.admin("POST", "/admin/clients/m2m/secret", t, Some(json!({"keep_old_for": -1}))).await;
    assert_eq!(problem(&bad).2, "keep_old_for");
    let public = json!({"client_id": "spa", "token_endpoint_auth_method": "none", "redirect_uris": [CALLBACK]});
    assert_eq!(app.admin("POST", "/admin/clients", t, Some(public)).await.status, StatusCode::CREATED);
    let refused = app.admin("POST", "/admin/clients/spa/secret", t, None).await;
    assert_eq!(problem(&refused).2, "client_secret");
    assert_eq!(app.admin("POST", "/admin/clients/none/secret", t, None).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_input_gets_a_problem_naming_the_field() {
    let app = TestApp::new().await;
    let token = app.admin_token("ops", "khoa:admin").await;
    let t = Some(token.as_str());
    let with = |member: &str, value: Value| {
        let mut body = web_client();
        body[member] = value;
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("redirect_uri", json!([CALLBACK])), "redirect_uri"),
        (with("redirect_uris", json!("https://a.example/cb")), "redirect_uris"),
        (with("redirect_uris", json!(["https://a.example/cb#frag"])), "redirect_uris"),
        (with("redirect_uris", json!([])), "redirect_uris"),
        (with("skip_consent", json!("yes")), "skip_consent"),
        (with("lifetimes", json!({"access_token": 0})), "lifetimes.access_token"),
        (with("lifetimes", json!({"access_tokens": 60})), "lifetimes.access_tokens"),
        (with("grant_types", json!(["implicit"])), "grant_types"),
        (with("scope", json!("openid khoa:root")), "scope"),
        (with("scope", json!("khoa:admin")), "scope"),
        (with("token_endpoint_auth_method", json!("private_key_jwt")), "token_endpoint_auth_method"),
        (with("id_token_signed_response_alg", json!("HS256")), "id_token_signed_response_alg"),
        (with("metadata", json!([1])), "metadata"),
        (with("client_id", json!("12345")), "client_id"),
        (with("client_id", json!(7)), "client_id"),
        (with("client_secret", json!("short")), "client_secret"),
        (with("client_name", json!(" ")), "client_name"),
        (with("backchannel_logout_uri", json!("ftp://x")), "backchannel_logout_uri"),
        (with("contacts", json!([""])), "contacts"),
    ];
    for (body, field) in cases {
        let a = app.admin("POST", "/admin/clients", t, Some(body.clone())).await;
        assert_eq!(
            problem(&a),
            (400, "urn:khoa:problem:invalid-field".into(), field.to_string()),
            "{body}: {}",
            a.text
        );
    }
    let raw = |method: &str, path: &str, content_type: &str, body: &str| {
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        app.send_admin(req)
    };
    assert_eq!(
        problem(&raw("POST", "/admin/clients", "application/json", "{\"a\":").await).1,
        "urn:khoa:problem:malformed-request"
    );
    assert_eq!(
        problem(&raw("POST", "/admin/clients", "application/json", "[1]").await).1,
        "urn:khoa:problem:malformed-request"
    );
    assert_eq!(problem(&raw("POST", "/admin/clients", "application/json", "\u{0}\u{ff}").await).0, 400);
    assert_eq!(problem(&raw("POST", "/admin/clients", "text/plain", "{}").await).0, 415);
    assert_eq!(problem(&raw("PATCH", "/admin/clients/ops", "application/xml", "{}").await).0, 415);
    let big = format!("{{\"client_name\": \"{}\"}}", "x".repeat(70 * 1024));
    assert_eq!(raw("POST", "/admin/clients", "application/json", &big).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=x", "limit"),
        ("cursor=%%%", "cursor"),
        ("cursor=AAAA_", "cursor"),
        ("page=2", "page"),
        ("limit=1&limit=2", "limit"),
    ] {
        let a = app.admin("GET", &format!("/admin/clients?{query}"), t, None).await;
        assert_eq!(problem(&a).2, field, "{query}: {}", a.text);
    }
    app.admin("POST", "/admin/clients", t, Some(web_client())).await;
    let secret = app.admin("PATCH", "/admin/clients/portal", t, Some(json!({"client_secret": SECRET}))).await;
    assert_eq!(problem(&secret).2, "client_secret");
    let renamed = app.admin("PUT", "/admin/clients/portal", t, Some(with("client_id", json!("other")))).await;
    assert_eq!(problem(&renamed).2, "client_id");
    let audit = app.admin("GET", "/admin/audit-events?user=me", t, None).await;
    assert_eq!(problem(&audit).2, "user");
    assert_eq!(problem(&app.admin("GET", "/admin/nothing", t, None).await).0, 404);
    assert_eq!(problem(&app.admin("POST", "/admin/clients/portal", t, None).await).0, 405);
    // Nothing of it was stored: the admin client and the one good creation.
    assert_eq!(app.rows("clients").await, 2);
}

#[tokio::test]
async fn listings_are_paged_by_cursor() {
    let app = TestApp::new().await;
    let token = app.admin_token("ops", "khoa:admin.read").await;
    for i in 0..11 {
        app.client(&format!("app-{i:02}"), |_| {}).await;
    }
    let mut seen = vec![];
    let mut path = "/admin/clients?limit=4".to_string();
    let mut pages = 0;
    loop {
        let a = app.admin("GET", &path, Some(&token), None).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        pages += 1;
        for item in a.body["items"].as_array().unwrap() {
            seen.push(item["client_id"].as_str().unwrap().to_string());
            assert!(item.get("client_secret").is_none());
        }
        match a.body["next"].as_str() {
            Some(next) => path = format!("/admin/clients?limit=4&cursor={next}"),
            None => break,
        }
    }
    let mut expected: Vec<String> = (0..11).map(|i| format!("app-{i:02}")).collect();
    expected.push("ops".into());
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn every_change_is_audited_and_no_secret_reaches_the_trail() {
    let app = TestApp::new().await;
    let token = app.admin_token("ops", "khoa:admin").await;
    let t = Some(token.as_str());
    let given = "a-secret-the-operator-chose-0123456789";
    let mut body = web_client();
    body["client_secret"] = json!(given);
    let created = app.admin("POST", "/admin/clients", t, Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert!(created.body.get("client_secret").is_none(), "an operator's own secret is not echoed");
    app.admin("PATCH", "/admin/clients/portal", t, Some(json!({"client_name": "Portal"}))).await;
    let rotated = app.admin("POST", "/admin/clients/portal/secret", t, None).await;
    let new_secret = rotated.body["client_secret"].as_str().unwrap().to_string();
    app.admin("DELETE", "/admin/clients/portal", t, None).await;
    app.admin("DELETE", "/admin/clients/portal", t, None).await;

    let trail = app.admin("GET", "/admin/audit-events?client=portal", t, None).await;
    assert_eq!(trail.status, StatusCode::OK, "{}", trail.text);
    let items = trail.body["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["client.deleted", "client.secret_rotated", "client.updated", "client.created"]);
    for e in items {
        assert_eq!(e["actor"], "admin_client:ops");
        assert_eq!(e["address"], "192.0.2.7");
        assert_eq!(e["at"], NOW);
    }
    let update = &items[2]["detail"]["changes"];
    assert_eq!(update, &json!({"client_name": {"before": "Cổng sinh viên", "after": "Portal"}}));
    assert_eq!(items[3]["detail"]["changes"]["redirect_uris"], json!({"before": null, "after": [CALLBACK]}));
    let everything = app.admin("GET", "/admin/audit-events?limit=500", t, None).await.text;
    let stored =
        app.state.store.audit_events(&khoa_store::AuditFilter { limit: 500, ..Default::default() }).await.unwrap();
    let stored = format!("{stored:?}");
    for secret in [given, new_secret.as_str(), SECRET, token.as_str()] {
        assert!(!everything.contains(secret) && !stored.contains(secret), "a secret in the trail");
    }
    assert!(!everything.contains("$argon2") && !everything.contains("client_secret_hash"));
    let only_updates = app.admin("GET", "/admin/audit-events?type=client.updated", t, None).await;
    assert_eq!(only_updates.body["items"].as_array().unwrap().len(), 1);
    let later = app.admin("GET", &format!("/admin/audit-events?since={}", NOW + 1), t, None).await;
    assert_eq!(later.body["items"], json!([]));
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = TestApp::new().await;
    let a = app.admin("GET", "/admin/openapi.json", None, None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["openapi"], "3.1.0");
    let paths = a.body["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/admin/clients", &["get", "post"][..]),
        ("/admin/clients/{client_id}", &["get", "put", "patch", "delete"]),
        ("/admin/clients/{client_id}/secret", &["post"]),
        ("/admin/audit-events", &["get"]),
    ] {
        for m in methods {
            assert!(paths[path].get(*m).is_some(), "{m} {path}");
        }
    }
    let flow = &a.body["components"]["securitySchemes"]["admin"]["flows"]["clientCredentials"];
    assert_eq!(flow["tokenUrl"], "https://sso.example.vn/oauth2/token");
}

#[tokio::test]
async fn audit_events_are_kept_for_the_retention_then_cleaned_up() {
    let app = TestApp::with_settings(|s| {
        s.audit_retention = 86_400;
        s.cleanup_batch = 2;
    })
    .await;
    let token = app.admin_token("ops", "khoa:admin").await;
    let before = app.rows("audit_events").await;
    for i in 0..5 {
        let body = json!({"client_id": format!("c{i}"), "redirect_uris": [CALLBACK]});
        assert_eq!(app.admin("POST", "/admin/clients", Some(&token), Some(body)).await.status, StatusCode::CREATED);
    }
    assert!(crate::app::cleanup::run_once(&app.state, "test").await.unwrap());
    assert_eq!(app.rows("audit_events").await, before + 5, "younger than the retention");
    app.clock.advance(86_401);
    let recent = khoa_core::audit::Event::new(NOW + 86_401, "client.updated", khoa_core::audit::Actor::CommandLine);
    app.state.store.record(&recent).await.unwrap();
    // Two lease holders cannot both run; the same one may run again once its lease ends.
    app.clock.advance(3600);
    assert!(crate::app::cleanup::run_once(&app.state, "test").await.unwrap());
    assert_eq!(app.rows("audit_events").await, 1, "the old ones went, in batches of two; the recent one stays");
}

fn student(username: &str) -> Value {
    json!({
        "username": username,
        "password": "a long enough password",
        "email": format!("{username}@hutech.edu.vn"),
        "email_verified": true,
        "name": "Nguyễn Văn A",
        "phone_number": "+84 976 535 298",
        "attributes": {"student_id": "2280600348", "faculty": "IT"},
    })
}

#[tokio::test]
async fn users_are_created_searched_patched_disabled_and_deleted() {
    let app = TestApp::new().await;
    let token = app.admin_token("ops", "khoa:admin").await;
    let t = Some(token.as_str());
    let created = app.admin("POST", "/admin/users", t, Some(student("sv01"))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_i64().unwrap();
    assert_eq!(created.location(), format!("/admin/users/{id}"));
    assert_eq!(created.body["phone_number"], "+84976535298");
    assert_eq!(created.body["attributes"], json!({"student_id": "2280600348", "faculty": "IT"}));
    assert_eq!(created.body["has_password"], true);
    assert!(!created.text.contains("a long enough password") && !created.text.contains("argon2"));
    let again = app.admin("POST", "/admin/users", t, Some(student("sv01"))).await;
    assert_eq!(problem(&again).0, 409);
    let nopass = app.admin("POST", "/admin/users", t, Some(json!({"username": "sv02", "email": "B@Example.vn"}))).await;
    assert_eq!(nopass.body["has_password"], false, "{}", nopass.text);
    for i in 3..=9 {
        app.admin("POST", "/admin/users", t, Some(json!({"username": format!("gv{i}")}))).await;
    }
    let names = |a: &crate::testing::Answer| -> Vec<String> {
        a.body["items"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names(&app.admin("GET", "/admin/users?username=SV", t, None).await), ["sv01", "sv02"]);
    assert_eq!(names(&app.admin("GET", "/admin/users?email=b%40ex", t, None).await), ["sv02"]);
    assert_eq!(
        names(&app.admin("GET", "/admin/users?username=%25", t, None).await),
        Vec::<String>::new(),
        "% is literal"
    );
    let page = app.admin("GET", "/admin/users?limit=4", t, None).await;
    assert_eq!(names(&page), ["sv01", "sv02", "gv3", "gv4"]);
    let next = page.body["next"].as_str().unwrap();
    let rest = app.admin("GET", &format!("/admin/users?limit=4&cursor={next}"), t, None).await;
    assert_eq!(names(&rest), ["gv5", "gv6", "gv7", "gv8"]);

    // A merge patch: attributes merge by name, null removes.
    let path = format!("/admin/users/{id}");
    let tag = etag(&app.admin("GET", &path, t, None).await);
    let patch = json!({"name": "Trần Thị B", "attributes": {"faculty": null, "class": "22DTHA1"}});
    let patched = app.admin("PATCH", &path, t, Some(patch)).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.body["attributes"], json!({"student_id": "2280600348", "class": "22DTHA1"}));
    assert_eq!(patched.body["email"], "sv01@hutech.edu.vn");
    let taken = app.admin("PATCH", &path, t, Some(json!({"username": "sv02"}))).await;
    assert_eq!(problem(&taken).0, 409);
    let mut req = axum::http::Request::patch(path.as_str())
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/merge-patch+json")
        .header(header::IF_MATCH, &tag);
    let lost = app.send_admin(req.body(axum::body::Body::from("{\"name\": \"Lost\"}")).unwrap()).await;
    assert_eq!(problem(&lost).0, 412);
    for (body, field) in [
        (json!({"attributes": {"email": "x"}}), "attributes"),
        (json!({"attributes": {"k": 1}}), "attributes.k"),
        (json!({"email": "not-an-email"}), "email"),
        (json!({"phone_number": "0976"}), "phone_number"),
        (json!({"username": "has space"}), "username"),
        (json!({"password": "new password 123"}), "password"),
        (json!({"nickname": "x"}), "nickname"),
    ] {
        let a = app.admin("PATCH", &path, t, Some(body.clone())).await;
        assert_eq!(problem(&a).2, field, "{body}: {}", a.text);
    }

    // Disable: sessions end, tokens are revoked; enable again.
    app.client("web", |_| {}).await;
    app.state.store.grant_consent(id, "web", "openid profile", NOW).await.unwrap();
    let session = khoa_core::session::Session {
        id_hash: "h".into(),
        sid: "sid-9".into(),
        user_id: id,
        auth_time: NOW,
        amr: vec!["pwd".into()],
        created_at: NOW,
        expires_at: NOW + 3600,
        ended_at: None,
        device: None,
        address: None,
        last_used_at: 0,
    };
    app.state.store.insert_session(&session).await.unwrap();
    let sessions = app.admin("GET", &format!("{path}/sessions"), t, None).await;
    assert_eq!(sessions.body["items"][0]["sid"], "sid-9", "{}", sessions.text);
    let consents = app.admin("GET", &format!("{path}/consents"), t, None).await;
    assert_eq!(consents.body["items"], json!([{"client_id": "web", "scope": "openid profile", "granted_at": NOW}]));
    req = axum::http::Request::post(format!("{path}/disable")).header(header::AUTHORIZATION, format!("Bearer {token}"));
    let disabled = app.send_admin(req.body(axum::body::Body::empty()).unwrap()).await;
    assert_eq!(disabled.body["disabled"], true, "{}", disabled.text);
    assert_eq!(disabled.body["disabled_at"], NOW);
    assert_eq!(app.admin("GET", &format!("{path}/sessions"), t, None).await.body["items"], json!([]));
    let enabled = app.admin("POST", &format!("{path}/enable"), t, None).await;
    assert_eq!(enabled.body["disabled"], false);

    // A new password ends the sessions it had.
    app.state
        .store
        .insert_session(&khoa_core::session::Session { sid: "sid-10".into(), id_hash: "h2".into(), ..session })
        .await
        .unwrap();
    let set = app.admin("PUT", &format!("{path}/password"), t, Some(json!({"password": "short"}))).await;
    assert_eq!(problem(&set).2, "password");
    let set =
        app.admin("PUT", &format!("{path}/password"), t, Some(json!({"password": "another long password"}))).await;
    assert_eq!(set.body, json!({"sessions_ended": 1, "tokens_revoked": 0, "backchannel_notices": 0}), "{}", set.text);
    let revoked = app.admin("POST", &format!("{path}/revoke-sessions"), t, None).await;
    assert_eq!(revoked.body["sessions_ended"], 0);

    assert_eq!(problem(&app.admin("GET", "/admin/users/abc", t, None).await).0, 404);
    assert_eq!(problem(&app.admin("GET", "/admin/users/999999", t, None).await).0, 404);
    assert_eq!(app.admin("DELETE", &path, t, None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.admin("DELETE", &path, t, None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(problem(&app.admin("GET", &path, t, None).await).0, 404);

    let trail = app.admin("GET", &format!("/admin/audit-events?user={id}"), t, None).await;
    let kinds: Vec<&str> =
        trail.body["items"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "user.deleted",
            "user.sessions_revoked",
            "user.password_changed",
            "user.enabled",
            "user.disabled",
            "user.updated",
            "user.created"
        ]
    );
    assert!(!trail.text.contains("long password") && !trail.text.contains("argon2"), "{}", trail.text);
    assert_eq!(trail.body["items"][0]["detail"]["username"], "sv01");
}

#[tokio::test]
async fn keys_are_listed_and_rotated() {
    let app = TestApp::new().await;
    let token = app.admin_token("ops", "khoa:admin").await;
    let t = Some(token.as_str());
    let keys = app.admin("GET", "/admin/keys", t, None).await;
    assert_eq!(keys.status, StatusCode::OK, "{}", keys.text);
    let items = keys.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|k| k["state"] == "active" && k["generation"] == 1), "{}", keys.text);
    let rotated =
        app.admin("POST", "/admin/keys/rotate", t, Some(json!({"algorithms": ["ES256"], "immediately": true}))).await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.text);
    let new = &rotated.body["items"][0];
    assert_eq!(
        (new["alg"].as_str(), new["generation"].as_i64(), new["state"].as_str()),
        (Some("ES256"), Some(2), Some("active"))
    );
    // This process signs with it at once.
    let kid = new["kid"].as_str().unwrap();
    assert!(app.state.keys.snapshot().timelines.iter().any(|t| t.kid == kid));
    let later = app.admin("POST", "/admin/keys/rotate", t, None).await;
    assert_eq!(later.body["items"].as_array().unwrap().len(), 3);
    assert!(later.body["items"].as_array().unwrap().iter().all(|k| k["state"] == "pending"), "{}", later.text);
    let bad = app.admin("POST", "/admin/keys/rotate", t, Some(json!({"algorithms": ["HS256"]}))).await;
    assert_eq!(problem(&bad).2, "algorithms");
    let trail = app.admin("GET", "/admin/audit-events?type=key.rotated", t, None).await;
    let events = trail.body["items"].as_array().unwrap();
    assert_eq!(events.len(), 4);
    assert!(events.iter().all(|e| e["actor"] == "admin_client:ops" && e["detail"]["kid"].is_string()));
    assert!(!trail.text.contains("BEGIN") && !trail.text.contains("\"d\""), "no private key material");
}

#[tokio::test]
async fn partners_are_created_with_their_key_shown_once() {
    let app = TestApp::new().await;
    let token = app.admin_token("ops", "khoa:admin").await;
    let t = Some(token.as_str());
    app.client("acme-app", |_| {}).await;
    app.client("spa", |r| r.secret = khoa_core::client::SecretChoice::Public).await;
    let created = app.admin("POST", "/admin/partners", t, Some(json!({"code": "ACME", "client_id": "acme-app"}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.location(), "/admin/partners/ACME");
    let key = created.body["key_hex"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 64);
    let shown = app.admin("GET", "/admin/partners/ACME", t, None).await;
    assert!(shown.body.get("key_hex").is_none() && !shown.text.contains(&key));
    assert!(!app.admin("GET", "/admin/partners", t, None).await.text.contains(&key));
    let own = json!({"code": "B2", "client_id": "acme-app", "key_hex": "00".repeat(32), "require_nonce": true});
    let given = app.admin("POST", "/admin/partners", t, Some(own)).await;
    assert!(given.body.get("key_hex").is_none(), "an operator's own key is not echoed: {}", given.text);
    for (body, status, field) in [
        (json!({"code": "ACME", "client_id": "acme-app"}), 409, ""),
        (json!({"code": "has space", "client_id": "acme-app"}), 400, "code"),
        (json!({"code": "C", "client_id": "spa"}), 400, "client_id"),
        (json!({"code": "C", "client_id": "nobody"}), 400, "client_id"),
        (json!({"code": "C", "client_id": "acme-app", "key_hex": "zz"}), 400, "key_hex"),
        (json!({"code": "C"}), 400, "client_id"),
    ] {
        let a = app.admin("POST", "/admin/partners", t, Some(body.clone())).await;
        assert_eq!((problem(&a).0, problem(&a).2), (status, field.to_string()), "{body}: {}", a.text);
    }
    assert_eq!(app.admin("DELETE", "/admin/partners/ACME", t, None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.admin("DELETE", "/admin/partners/ACME", t, None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(problem(&app.admin("GET", "/admin/partners/ACME", t, None).await).0, 404);
    let trail = app.admin("GET", "/admin/audit-events?client=acme-app", t, None).await;
    let kinds: Vec<&str> =
        trail.body["items"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["partner.deleted", "partner.created", "partner.created", "client.created"]);
    assert!(!trail.text.contains(&key) && !trail.text.contains(&"00".repeat(32)));
}

#[tokio::test]
async fn backchannel_deliveries_are_listed_and_retried() {
    let app = TestApp::new().await;
    let token = app.admin_token("ops", "khoa:admin").await;
    let t = Some(token.as_str());
    let (_, secret) = app.client("web", |r| r.backchannel_logout_uri = Some("https://app.example/bc".into())).await;
    app.tokens_of_web(&secret.unwrap(), "code-1").await;
    let session = app.state.store.session_by_sid("sid-1").await.unwrap().unwrap();
    let reason = crate::service::logout::LogoutReason::RpInitiated;
    crate::service::logout::end_session(&app.state, &session, reason, Some("web"), None).await.unwrap();
    let listed = app.admin("GET", "/admin/backchannel-deliveries?status=pending", t, None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let item = &listed.body["items"][0];
    assert_eq!((item["client_id"].as_str(), item["sid"].as_str()), (Some("web"), Some("sid-1")));
    let id = item["id"].as_str().unwrap().to_string();
    // It fails for good, then an operator retries it.
    let claimed = app.state.store.claim_deliveries("w", NOW, NOW + 30, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let failed = khoa_store::AttemptRecord::Failed { status: Some(400), error: "refused".into() };
    app.state.store.record_attempt(&id, "w", NOW, &failed).await.unwrap();
    assert_eq!(
        app.admin("GET", "/admin/backchannel-deliveries?status=failed", t, None).await.body["items"][0]["id"],
        json!(id)
    );
    let retried = app.admin("POST", &format!("/admin/backchannel-deliveries/{id}/retry"), t, None).await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.text);
    let again = &app.admin("GET", "/admin/backchannel-deliveries", t, None).await.body["items"][0];
    assert_eq!((again["status"].as_str(), again["attempts"].as_i64()), (Some("pending"), Some(0)));
    assert_eq!(app.state.store.claim_deliveries("w", NOW, NOW + 30, 10).await.unwrap().len(), 1, "due at once");
    let delivered = khoa_store::AttemptRecord::Delivered { status: 200 };
    app.state.store.record_attempt(&id, "w", NOW, &delivered).await.unwrap();
    assert_eq!(problem(&app.admin("POST", &format!("/admin/backchannel-deliveries/{id}/retry"), t, None).await).0, 409);
    assert_eq!(problem(&app.admin("POST", "/admin/backchannel-deliveries/nope/retry", t, None).await).0, 404);
    assert_eq!(problem(&app.admin("GET", "/admin/backchannel-deliveries?status=lost", t, None).await).2, "status");
    let logout = app.admin("GET", "/admin/audit-events?type=logout", t, None).await;
    let event = &logout.body["items"][0];
    assert_eq!(event["detail"], json!({"sid": "sid-1", "reason": "rp_initiated", "frontchannel": 0, "backchannel": 1}));
    assert_eq!(event["client_id"], "web");
}

#[tokio::test]
async fn attacks_on_codes_and_refresh_tokens_are_recorded() {
    let app = TestApp::new().await;
    let token = app.admin_token("ops", "khoa:admin.read").await;
    let (_, secret) = app.client("web", |r| r.always_issue_refresh_token = true).await;
    let secret = secret.unwrap();
    app.tokens_of_web(&secret, "code-1").await;
    let form = [("grant_type", "authorization_code"), ("code", "code-1"), ("redirect_uri", CALLBACK)];
    let replay = app.post_form("/oauth2/token", &form, Some(("web", &secret))).await;
    assert_eq!(replay.error().1, "invalid_grant");
    let trail = app.admin("GET", "/admin/audit-events?type=code.replayed", Some(&token), None).await;
    let event = &trail.body["items"][0];
    assert_eq!(
        (event["actor"].as_str(), event["client_id"].as_str()),
        (Some("client:web"), Some("web")),
        "{}",
        trail.text
    );
    assert!(event["detail"]["tokens_revoked"].as_u64().unwrap() >= 1);

    let tokens = app.tokens_of_web(&secret, "code-2").await;
    let refresh = tokens["refresh_token"].as_str().expect("a refresh token").to_string();
    let rotate = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())];
    assert_eq!(app.post_form("/oauth2/token", &rotate, Some(("web", &secret))).await.status, StatusCode::OK);
    app.clock.advance(60);
    let reuse = app.post_form("/oauth2/token", &rotate, Some(("web", &secret))).await;
    assert_eq!(reuse.error().1, "invalid_grant", "{}", reuse.text);
    let trail = app.admin("GET", "/admin/audit-events?type=refresh_token.reused", Some(&token), None).await;
    assert_eq!(trail.body["items"].as_array().unwrap().len(), 1, "{}", trail.text);
    assert!(trail.body["items"][0]["user_id"].is_i64());
    for secret_value in [refresh.as_str(), tokens["access_token"].as_str().unwrap(), "code-1", "code-2"] {
        let all = app.admin("GET", "/admin/audit-events?limit=500", Some(&token), None).await.text;
        assert!(!all.contains(secret_value));
    }
}

/// Hashes other systems made (Python's hashlib, the crypt_blowfish vectors), with
/// their passwords.
fn foreign_users() -> Vec<(&'static str, String, &'static str)> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    let params = argon2::Params::new(4096, 3, 1, None).unwrap();
    let argon2i = argon2::Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x13, params)
        .hash_password("lètmein".as_bytes(), &salt)
        .unwrap()
        .to_string();
    vec![
        ("bcrypt-2a", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW".into(), "U*U"),
        ("bcrypt-2b", "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW".into(), "U*U"),
        ("bcrypt-2y", "$2y$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK".into(), "U*U*"),
        ("django", "pbkdf2_sha256$30000$seasalt2$a75qzbogeVhNFeMqhdgyyoqGKpIzYUo651sq57RERew=".into(), "lètmein"),
        (
            "pbkdf2",
            "$pbkdf2-sha256$i=25000,l=32$a2hvYS1pbXBvcnQtc2FsdA$L72/oLT1NZn8p/vZA/jIwV3SohGQzcHqIYv/mrOasoQ".into(),
            "lètmein",
        ),
        (
            "scrypt",
            "$scrypt$ln=12,r=8,p=1$a2hvYS1pbXBvcnQtc2FsdA$/qxYk/lpA5omQlk/yXy6BAIlRcHyjp8BFygvmZAtCY8".into(),
            "lètmein",
        ),
        ("argon2i", argon2i, "lètmein"),
    ]
}

#[tokio::test]
async fn users_are_imported_with_their_hashes_and_upgraded_at_first_login() {
    let app = TestApp::new().await;
    let token = app.admin_token("ops", "khoa:admin").await;
    let users = foreign_users();
    let mut body: Vec<String> = users
        .iter()
        .map(|(name, hash, _)| {
            json!({"username": name, "password_hash": hash, "email": format!("{name}@hutech.edu.vn"), "email_verified": true,
                   "name": "Nguyễn Văn A", "phone": "+84 976 535 298", "attributes": {"student_id": format!("id-{name}")}})
            .to_string()
        })
        .collect();
    let bad = [
        ("{\"username\": ", ""),
        ("{\"username\": \"x1\"}", "password_hash"),
        ("{\"username\": \"x2\", \"password_hash\": \"$1$md5$abc\"}", "password_hash"),
        ("{\"username\": \"x3\", \"password_hash\": \"plain text password\"}", "password_hash"),
        ("{\"username\": \"x4\", \"password_hash\": \"$2b$31$abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyza\"}", "password_hash"),
        ("{\"username\": \"x5 space\", \"password_hash\": \"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW\"}", "username"),
        ("{\"username\": \"x6\", \"email\": \"no-at\", \"password_hash\": \"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW\"}", "email"),
        ("{\"username\": \"x7\", \"shoe_size\": 42, \"password_hash\": \"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW\"}", "shoe_size"),
        ("[1, 2]", ""),
    ];
    body.insert(2, String::new()); // an empty line is skipped
    for (line, _) in bad {
        body.push(line.to_string());
    }
    // The same username twice in one file: the second is reported, not duplicated.
    body.push(json!({"username": "bcrypt-2a", "password_hash": users[0].1}).to_string());
    let import = |text: String| {
        let req = axum::http::Request::post("/admin/users/import")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/x-ndjson")
            .body(axum::body::Body::from(text))
            .unwrap();
        app.send_admin(req)
    };
    let report = import(body.join("\n")).await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.text);
    assert_eq!(report.body["created"], 7, "{}", report.text);
    let failed = report.body["failed"].as_array().unwrap();
    let fields: Vec<&str> = failed.iter().map(|f| f["field"].as_str().unwrap_or("")).collect();
    assert_eq!(fields, bad.iter().map(|(_, f)| *f).collect::<Vec<_>>(), "{}", report.text);
    assert_eq!(failed[0]["line"], 9, "lines are counted as in the file");
    assert_eq!(report.body["existing"].as_array().unwrap().len(), 1);
    assert!(!report.text.contains("CCCCCCCC") && !report.text.contains("seasalt2"), "no hash in the report");
    // A second run creates nothing.
    let again = import(body.join("\n")).await;
    assert_eq!((again.body["created"].as_i64(), again.body["existing"].as_array().map(Vec::len)), (Some(0), Some(8)));
    let wrong_type = app.admin("POST", "/admin/users/import", Some(&token), Some(json!({}))).await;
    assert_eq!(problem(&wrong_type).0, 415);

    // Each verifies at login, and is then argon2id; the second login verifies that.
    let origin = khoa_core::throttle::LoginOrigin::Browser { address: crate::testing::PEER.ip(), device: None };
    for (name, hash, password) in &users {
        let wrong = crate::service::password_login::password_login(&app.state, name, "wrong password", origin, "web");
        assert!(matches!(wrong.await.unwrap(), crate::service::password_login::LoginOutcome::Failed), "{name}");
        let right = crate::service::password_login::password_login(&app.state, name, password, origin, "web").await;
        assert!(matches!(right.unwrap(), crate::service::password_login::LoginOutcome::Succeeded(_)), "{name}");
        let stored = app.state.store.user_by_username(name).await.unwrap().unwrap();
        let stored_hash = stored.password_hash.clone().unwrap_or_default();
        assert!(stored_hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{name}: {stored_hash}");
        assert_ne!(&stored_hash, hash);
        assert_eq!(stored.attributes["student_id"], format!("id-{name}"));
        let again = crate::service::password_login::password_login(&app.state, name, password, origin, "web").await;
        assert!(matches!(again.unwrap(), crate::service::password_login::LoginOutcome::Succeeded(_)), "{name}");
    }
    let upgraded = app.admin("GET", "/admin/audit-events?type=user.password_upgraded", Some(&token), None).await;
    let froms: Vec<&str> =
        upgraded.body["items"].as_array().unwrap().iter().map(|e| e["detail"]["from"].as_str().unwrap()).collect();
    assert_eq!(froms, ["argon2i", "scrypt", "pbkdf2-sha256", "django pbkdf2_sha256", "bcrypt", "bcrypt", "bcrypt"]);
    let imported = app.admin("GET", "/admin/audit-events?type=user.imported", Some(&token), None).await;
    assert_eq!(imported.body["items"].as_array().unwrap().len(), 7);
    assert!(!imported.text.contains("CCCCCCCC"), "no hash in the trail");
}

/// The review's cost bombs: hashes whose parameters would make one login allocate
/// 128 GiB or pin a core for hours are refused at import, by line, field and
/// parameter; one already stored (by an older version) is never computed: a login
/// against it is refused after the same work as any wrong password.
#[tokio::test]
async fn cost_bombs_are_refused_at_import_and_never_computed() {
    let app = TestApp::new().await;
    let token = app.admin_token("ops", "khoa:admin").await;
    let tail = "$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
    let bombs = [
        ("$scrypt$ln=1,r=1,p=1073741823", "the scrypt hash's p=1073741823 is beyond what khoa verifies (at most 16)"),
        (
            "$argon2id$v=19$m=8,t=4294967295,p=1",
            "the argon2 hash's t=4294967295 is beyond what khoa verifies (at most 64)",
        ),
        (
            "$argon2id$v=19$m=65536,t=64,p=1",
            "the argon2 hash's m·t=4194304 is beyond what khoa verifies (at most 1048576)",
        ),
        ("$argon2i$v=19$m=4096,t=1,p=255", "the argon2 hash's p=255 is beyond what khoa verifies (at most 16)"),
        (
            "$scrypt$ln=17,r=8,p=16",
            "the scrypt hash's 128·r·N·p=2147483648 is beyond what khoa verifies (at most 1073741824)",
        ),
    ];
    let body: Vec<String> = bombs
        .iter()
        .enumerate()
        .map(|(i, (params, _))| {
            json!({"username": format!("bomb{i}"), "password_hash": format!("{params}{tail}")}).to_string()
        })
        .collect();
    let req = axum::http::Request::post("/admin/users/import")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(axum::body::Body::from(body.join("\n")))
        .unwrap();
    let report = app.send_admin(req).await;
    assert_eq!((report.status, report.body["created"].as_i64()), (StatusCode::OK, Some(0)), "{}", report.text);
    let failed = report.body["failed"].as_array().unwrap();
    for (i, (_, detail)) in bombs.iter().enumerate() {
        assert_eq!(failed[i]["line"], i + 1);
        assert_eq!(failed[i]["field"], "password_hash");
        assert_eq!(failed[i]["detail"], *detail);
    }
    // Planted as an older version's import would have stored them.
    let origin = khoa_core::throttle::LoginOrigin::Browser { address: crate::testing::PEER.ip(), device: None };
    for (i, (params, _)) in bombs.iter().enumerate() {
        let user = khoa_core::user::Profile { username: format!("old{i}"), ..Default::default() }
            .into_new_user(Some(format!("{params}{tail}")), 0);
        let event = khoa_core::audit::Event::new(0, "user.imported", khoa_core::audit::Actor::System);
        app.state.store.insert_user(&user, &event).await.unwrap();
        let started = std::time::Instant::now();
        let outcome =
            crate::service::password_login::password_login(&app.state, &user.username, "any password", origin, "web");
        assert!(matches!(outcome.await.unwrap(), crate::service::password_login::LoginOutcome::Failed));
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{params}: {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn an_import_may_be_larger_than_other_requests() {
    let app = TestApp::new().await;
    let token = app.admin_token("ops", "khoa:admin").await;
    let hash = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
    let body: Vec<String> = (0..12_000)
        .map(|i| {
            json!({"username": format!("u{i:05}"), "password_hash": hash, "email": format!("u{i:05}@hutech.edu.vn"),
                        "name": "Nguyễn Văn A", "attributes": {"student_id": format!("{i:010}")}})
            .to_string()
        })
        .collect();
    let body = body.join("\n");
    assert!(body.len() > 2 * 1024 * 1024, "beyond axum's default limit and the 64 KiB of other routes");
    let req = axum::http::Request::post("/admin/users/import")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(axum::body::Body::from(body))
        .unwrap();
    let report = app.send_admin(req).await;
    assert_eq!(report.status, StatusCode::OK, "{}", &report.text[..report.text.len().min(300)]);
    assert_eq!(report.body["created"], 12_000);
    assert_eq!(app.rows("users").await, 12_000);
}

/// A verification mail on creation, when asked for: by the API, one user at a time or
/// each unverified user of an import; refused by name where no mail can be sent.
#[tokio::test]
async fn created_users_are_sent_a_verification_mail_when_asked() {
    let without = TestApp::new().await;
    let token = without.admin_token("ops", "khoa:admin").await;
    let body = json!({"username": "sv10", "email": "sv10@hutech.edu.vn", "send_verification": true});
    let refused = without.admin("POST", "/admin/users", Some(&token), Some(body.clone())).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["field"], "send_verification");
    assert_eq!(without.rows("users").await, 0, "nothing created");
    let app = TestApp::with_settings(|s| {
        s.smtp =
            Some(crate::app::mail::SmtpSettings { url: "smtp://127.0.0.1:2525".into(), from: "sso@example.vn".into() });
    })
    .await;
    let token = app.admin_token("ops", "khoa:admin").await;
    let created = app.admin("POST", "/admin/users", Some(&token), Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["email_verified"], false);
    let not_a_flag = json!({"username": "sv11", "send_verification": "yes"});
    assert_eq!(
        app.admin("POST", "/admin/users", Some(&token), Some(not_a_flag)).await.body["field"],
        "send_verification"
    );
    let hash = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
    let lines = [
        json!({"username": "imp1", "password_hash": hash, "email": "imp1@hutech.edu.vn"}),
        json!({"username": "imp2", "password_hash": hash, "email": "imp2@hutech.edu.vn", "email_verified": true}),
        json!({"username": "imp3", "password_hash": hash}),
    ];
    let body: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let req = axum::http::Request::post("/admin/users/import?send_verification=true")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::ACCEPT_LANGUAGE, "en")
        .body(axum::body::Body::from(body.join("\n")))
        .unwrap();
    assert_eq!(app.send_admin(req).await.body["created"], 3);
    let mut sent = vec![];
    for _ in 0..200 {
        sent = app.mails.0.lock().unwrap().clone();
        if sent.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let to: Vec<(&str, &str)> = sent.iter().map(|m| (m.to.as_str(), m.subject.as_str())).collect();
    assert_eq!(
        to,
        [
            ("sv10@hutech.edu.vn", "Xác minh địa chỉ email · khoa"),
            ("imp1@hutech.edu.vn", "Verify your email address · khoa")
        ],
        "only to addresses not verified yet, in the language asked"
    );
    assert!(sent[0].text.contains("https://sso.example.vn/account/email/verify?token="));
}

/// Every operation that takes a body answers 415 to a body of another media type, as
/// the document says of each of them.
#[tokio::test]
async fn every_body_of_the_wrong_media_type_is_refused_with_415() {
    let app = TestApp::new().await;
    let token = app.admin_token("ops", "khoa:admin").await;
    app.admin(
        "POST",
        "/admin/clients",
        Some(&token),
        Some(json!({"client_id": "web", "redirect_uris": ["https://app.example/cb"]})),
    )
    .await;
    let user = app.admin("POST", "/admin/users", Some(&token), Some(json!({"username": "sv01"}))).await;
    let id = user.body["id"].as_i64().unwrap();
    let doc = serde_json::to_value(crate::routes::admin::openapi::build("https://sso.example.vn")).unwrap();
    let mut tried = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if operation.get("requestBody").is_none() {
                continue;
            }
            let path = path.replace("{client_id}", "web").replace("{id}", &id.to_string());
            let req = axum::http::Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&path)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "text/plain")
                .body(axum::body::Body::from("{\"a\": 1}"))
                .unwrap();
            let a = app.send_admin(req).await;
            assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{method} {path}: {}", a.text);
            tried += 1;
        }
    }
    assert_eq!(tried, 10);
}

/// A person who lost their factors: an administrator lists their methods (never a
/// secret) and resets them; a read-only token may list, not reset.
#[tokio::test]
async fn second_factors_are_listed_without_secrets_and_reset() {
    let app = TestApp::new().await;
    let admin = app.admin_token("ops", "khoa:admin").await;
    let reader = app.admin_token("auditor", "khoa:admin.read").await;
    app.user_with_password("a password of some length").await;
    let user = app.state.store.user_by_username("sv01").await.unwrap().unwrap();
    let secret = khoa_core::totp::new_secret();
    let code = khoa_core::totp::code_at(&secret, app.state.now()).unwrap();
    let actor = khoa_core::audit::Actor::System;
    crate::service::signin::add_totp(&app.state, &user, &secret, &code, actor, app.state.now()).await.unwrap();
    let path = format!("/admin/users/{}/methods", user.id);
    let listed = app.admin("GET", &path, Some(&reader), None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 12);
    assert_eq!(items.iter().filter(|m| m["kind"] == "password").count(), 1);
    assert_eq!(items.iter().filter(|m| m["kind"] == "totp").count(), 1);
    assert_eq!(items.iter().filter(|m| m["kind"] == "recovery_code").count(), 10);
    let stored = app.state.store.credentials(user.id).await.unwrap();
    for c in &stored {
        for secretish in [Some(c.data.as_str()).filter(|d| !d.is_empty()), c.lookup.as_deref()].into_iter().flatten() {
            assert!(!listed.text.contains(secretish), "a secret in the listing");
        }
    }
    let reset = format!("/admin/users/{}/reset-mfa", user.id);
    assert_eq!(problem(&app.admin("POST", &reset, Some(&reader), None).await).0, 403);
    let done = app.admin("POST", &reset, Some(&admin), None).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.body["removed"], 11);
    let left: Vec<String> =
        app.state.store.credentials(user.id).await.unwrap().iter().map(|c| c.method.as_str().to_string()).collect();
    assert_eq!(left, ["password"], "the password stays");
    let trail = khoa_store::AuditFilter { kind: Some("user.mfa_reset".into()), limit: 5, ..Default::default() };
    let events = app.state.store.audit_events(&trail).await.unwrap();
    assert_eq!((events.len(), events[0].user_id), (1, Some(user.id)));
    assert_eq!(problem(&app.admin("POST", "/admin/users/999/reset-mfa", Some(&admin), None).await).0, 404);
}
