//! User-visible flows and their bad-input cases.

use reqwest::{Method, StatusCode};
use serde_json::json;

use ward_domain::clock::Clock;

use ward_testkit::{Backend, Kit, Reply, backends};

/// Runs `test` on a fresh kit with the standard sites, on every backend.
async fn on_every_backend_with_sites<F: std::future::Future<Output = ()>>(test: impl Fn(Kit) -> F) {
    for backend in backends() {
        let kit = Kit::start(&backend).await;
        kit.create_sites().await;
        test(kit).await;
    }
}

#[tokio::test]
async fn health_answers_and_sites_are_created_and_shown_with_their_kind_and_parent() {
    on_every_backend_with_sites(|kit| async move {
        let health = kit.call(Method::GET, "/health", None, None).await;
        assert_eq!(health.status, StatusCode::OK);
        let shown = kit.admin(Method::GET, "/sites/st-marys/icu", None).await;
        assert_eq!(shown.body["kind"], "ward");
        assert_eq!(shown.body["parent"], "st-marys");
        kit.finish().await;
    })
    .await;
}

#[tokio::test]
async fn a_site_scoped_operator_changes_sites_in_scope_only_and_a_refusal_is_audited() {
    on_every_backend_with_sites(|kit| async move {
        // An operator scoped to St Mary's may add a ward there but not touch General.
        let operator = kit.user("olive", "operator", &["st-marys"]).await;
        let ok = kit
            .call(
                Method::POST,
                "/sites",
                Some(&operator),
                Some(json!({"slug": "st-marys/er", "name": "ER"})),
            )
            .await;
        assert_eq!(ok.status, StatusCode::CREATED, "{:?}", ok.body);
        let denied = kit
            .call(
                Method::PATCH,
                "/sites/general",
                Some(&operator),
                Some(json!({"name": "Mine"})),
            )
            .await;
        assert_eq!(
            (denied.status, denied.code()),
            (StatusCode::FORBIDDEN, "forbidden_site")
        );
        let listed = kit.call(Method::GET, "/sites", Some(&operator), None).await;
        let slugs: Vec<_> = listed
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["slug"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            slugs,
            ["st-marys", "st-marys/er", "st-marys/icu"],
            "scoped listing"
        );
        let audit = kit.audit("site.update").await;
        let refusal = audit
            .iter()
            .find(|e| e["outcome"] == "denied")
            .expect("the refusal is audited");
        assert_eq!(
            refusal["actor"].as_str().unwrap().split(' ').next(),
            Some("user:olive")
        );
        assert_eq!(refusal["target"], "site:general");
        kit.finish().await;
    })
    .await;
}

#[tokio::test]
async fn an_auditor_reads_and_verifies_but_changes_nothing_and_the_refusal_is_audited() {
    on_every_backend_with_sites(|kit| async move {
        let auditor = kit.user("audrey", "auditor", &[]).await;
        let refused = kit
            .call(
                Method::POST,
                "/sites",
                Some(&auditor),
                Some(json!({"slug": "x", "name": "X"})),
            )
            .await;
        assert_eq!(
            (refused.status, refused.code()),
            (StatusCode::FORBIDDEN, "forbidden")
        );
        assert!(
            kit.audit("site.create")
                .await
                .iter()
                .any(|e| e["outcome"] == "denied")
        );
        let verify = kit.call(Method::GET, "/audit/verify", Some(&auditor), None).await;
        assert_eq!(verify.body["ok"], true, "{:?}", verify.body);
        kit.finish().await;
    })
    .await;
}

#[tokio::test]
async fn a_scoped_admin_cannot_grant_wider_access_than_their_own() {
    on_every_backend_with_sites(|kit| async move {
        let scoped_admin = kit.user("sam", "admin", &["st-marys"]).await;
        let wide = kit
            .call(
                Method::POST,
                "/users",
                Some(&scoped_admin),
                Some(json!({"username": "wide", "role": "operator"})),
            )
            .await;
        assert_eq!(
            (wide.status, wide.code()),
            (StatusCode::FORBIDDEN, "forbidden_site")
        );
        kit.finish().await;
    })
    .await;
}

#[tokio::test]
async fn a_generated_password_is_shown_once_and_must_be_changed() {
    on_every_backend_with_sites(|kit| async move {
        let created = kit
            .admin(
                Method::POST,
                "/users",
                Some(json!({"username": "gen", "role": "helpdesk"})),
            )
            .await;
        assert_eq!(created.body["user"]["must_change_password"], true);
        assert_eq!(created.body["initial_password"].as_str().unwrap().len(), 23);
        kit.finish().await;
    })
    .await;
}

#[tokio::test]
async fn a_duplicate_site_conflicts_and_a_hospital_with_wards_is_not_deleted() {
    on_every_backend_with_sites(|kit| async move {
        let conflict = kit
            .admin(
                Method::POST,
                "/sites",
                Some(json!({"slug": "general", "name": "Again"})),
            )
            .await;
        assert_eq!(
            (conflict.status, conflict.code()),
            (StatusCode::CONFLICT, "conflict")
        );
        let has_wards = kit.admin(Method::DELETE, "/sites/st-marys", None).await;
        assert_eq!(has_wards.code(), "conflict");
        assert_eq!(
            kit.admin(Method::DELETE, "/sites/general", None).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            kit.admin(Method::GET, "/sites/general", None).await.code(),
            "not_found"
        );
        kit.finish().await;
    })
    .await;
}

#[tokio::test]
async fn bad_logins_are_refused_audited_and_throttled() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let wrong = kit
        .call(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"username": "admin", "password": "not the password"})),
        )
        .await;
    assert_eq!(
        (wrong.status, wrong.code()),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    let unknown = kit
        .call(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"username": "nobody", "password": "whatever it is"})),
        )
        .await;
    assert_eq!(
        unknown.code(),
        "invalid_credentials",
        "unknown users look the same"
    );
    for _ in 0..4 {
        kit.call(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"username": "admin", "password": "guess guess"})),
        )
        .await;
    }
    let throttled = kit
        .call(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"username": "admin", "password": "admin password 123"})),
        )
        .await;
    assert_eq!(
        (throttled.status, throttled.code()),
        (StatusCode::TOO_MANY_REQUESTS, "login_throttled")
    );
    let logins = kit.audit("auth.login").await;
    assert!(logins.iter().filter(|e| e["outcome"] == "failure").count() >= 6);
    assert!(
        logins
            .iter()
            .any(|e| e["outcome"] == "denied" && e["details"].as_str().unwrap().contains("throttled"))
    );
    assert!(logins.iter().all(|e| e["source"] == "127.0.0.1"));
    // After the lockout window the right password works again.
    kit.clock.advance_ms(16 * 60_000);
    let ok = kit
        .call(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"username": "admin", "password": "admin password 123"})),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    kit.finish().await;
}

#[tokio::test]
async fn sessions_use_safe_cookies_and_expire_when_idle() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let login = kit
        .call(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"username": "admin", "password": "admin password 123"})),
        )
        .await;
    let cookie = login.set_cookie.expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let pair = cookie.split(';').next().unwrap().to_owned();
    let whoami = |kit: &Kit, pair: String| {
        let request = kit.http.get(kit.url("/auth/whoami")).header("cookie", pair);
        async move { Kit::reply(request.send().await.unwrap()).await }
    };
    assert_eq!(whoami(&kit, pair.clone()).await.body["via"], "session");
    kit.clock.advance_ms(14 * 60_000);
    assert_eq!(
        whoami(&kit, pair.clone()).await.status,
        StatusCode::OK,
        "activity keeps it alive"
    );
    kit.clock.advance_ms(15 * 60_000);
    let expired = whoami(&kit, pair.clone()).await;
    assert_eq!(
        (expired.status, expired.code()),
        (StatusCode::UNAUTHORIZED, "session_expired")
    );
    assert_eq!(
        whoami(&kit, pair).await.code(),
        "unauthenticated",
        "the session is gone"
    );
    assert!(!kit.audit("auth.session_expired").await.is_empty());
    // A cross-site form post with a valid cookie is refused.
    let login = kit
        .call(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"username": "admin", "password": "admin password 123"})),
        )
        .await;
    let pair = login.set_cookie.unwrap().split(';').next().unwrap().to_owned();
    let cross = kit
        .http
        .post(kit.url("/sites"))
        .header("cookie", pair)
        .header("origin", "https://evil.example")
        .json(&json!({"slug": "x", "name": "X"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    kit.finish().await;
}

#[tokio::test]
async fn tokens_are_scoped_revocable_and_expire() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let created = kit
        .admin(
            Method::POST,
            "/tokens",
            Some(json!({"name": "reporting", "scope": "read", "expires_in_days": 1})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let read_token = created.body["secret"].as_str().unwrap().to_owned();
    let id = created.body["token"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        kit.call(Method::GET, "/sites", Some(&read_token), None)
            .await
            .status,
        StatusCode::OK
    );
    let write = kit
        .call(
            Method::POST,
            "/sites",
            Some(&read_token),
            Some(json!({"slug": "a", "name": "A"})),
        )
        .await;
    assert_eq!(
        (write.status, write.code()),
        (StatusCode::FORBIDDEN, "token_scope")
    );

    // Token use for a mutation is audited with the token named.
    kit.admin(Method::POST, "/sites", Some(json!({"slug": "b", "name": "B"})))
        .await;
    let entry = kit.audit("site.create").await.pop().unwrap();
    assert!(entry["actor"].as_str().unwrap().contains("token:"), "{entry}");

    kit.clock.advance_ms(86_400_000);
    let expired = kit.call(Method::GET, "/sites", Some(&read_token), None).await;
    assert_eq!(
        (expired.status, expired.code()),
        (StatusCode::UNAUTHORIZED, "token_invalid")
    );
    assert_eq!(
        kit.admin(Method::DELETE, &format!("/tokens/{id}"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );

    let second = kit
        .admin(Method::POST, "/tokens", Some(json!({"name": "other"})))
        .await;
    let second_token = second.body["secret"].as_str().unwrap().to_owned();
    let second_id = second.body["token"]["id"].as_str().unwrap();
    kit.admin(Method::DELETE, &format!("/tokens/{second_id}"), None)
        .await;
    let revoked = kit.call(Method::GET, "/sites", Some(&second_token), None).await;
    assert_eq!(revoked.code(), "token_invalid");
    for bad in ["garbage", "ward_0123456789abcdef0123456789abcdef_wrong", ""] {
        let reply = kit.call(Method::GET, "/sites", Some(bad), None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{bad}");
    }
    let bad_days = kit
        .admin(
            Method::POST,
            "/tokens",
            Some(json!({"name": "x", "expires_in_days": 0})),
        )
        .await;
    assert_eq!(bad_days.code(), "invalid_input");
    assert!(
        kit.audit("auth.token")
            .await
            .iter()
            .any(|e| e["details"].as_str().unwrap().contains("revoked"))
    );
    kit.finish().await;
}

#[tokio::test]
async fn totp_enrolment_replay_and_recovery_codes() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let enrol = kit.admin(Method::POST, "/auth/totp/enrol", None).await;
    assert_eq!(enrol.status, StatusCode::OK, "{:?}", enrol.body);
    let secret = totp_secret_bytes(enrol.body["secret"].as_str().unwrap());
    let recovery = enrol.body["recovery_codes"][0].as_str().unwrap().to_owned();
    let wrong = kit
        .admin(
            Method::POST,
            "/auth/totp/confirm",
            Some(json!({"code": "000000"})),
        )
        .await;
    assert_eq!(wrong.code(), "mfa_invalid");
    let code = ward_core::auth::totp_now(&secret, kit.clock.now_ms());
    let confirmed = kit
        .admin(Method::POST, "/auth/totp/confirm", Some(json!({"code": code})))
        .await;
    assert_eq!(confirmed.status, StatusCode::NO_CONTENT, "{:?}", confirmed.body);

    let login = |body: serde_json::Value| kit.call(Method::POST, "/auth/login", None, Some(body));
    let base = json!({"username": "admin", "password": "admin password 123"});
    assert_eq!(login(base.clone()).await.code(), "mfa_required");
    let mut with_code = base.clone();
    with_code["totp_code"] = json!(code);
    assert_eq!(
        login(with_code.clone()).await.code(),
        "mfa_invalid",
        "the confirming code cannot be replayed"
    );
    kit.clock.advance_ms(30_000);
    with_code["totp_code"] = json!(ward_core::auth::totp_now(&secret, kit.clock.now_ms()));
    assert_eq!(login(with_code.clone()).await.status, StatusCode::OK);
    assert_eq!(
        login(with_code).await.code(),
        "mfa_invalid",
        "replayed code refused"
    );
    let mut with_recovery = base.clone();
    with_recovery["recovery_code"] = json!(recovery.to_uppercase());
    assert_eq!(login(with_recovery.clone()).await.status, StatusCode::OK);
    assert_eq!(
        login(with_recovery).await.code(),
        "mfa_invalid",
        "recovery codes work once"
    );
    kit.finish().await;
}

fn totp_secret_bytes(base32: &str) -> Vec<u8> {
    totp_rs::Secret::try_from_base32(base32)
        .unwrap()
        .as_ref()
        .to_vec()
}

/// Posts this text as the JSON body of a new site, as the admin.
async fn post_site_raw(kit: &Kit, body: String) -> Reply {
    let request = kit
        .http
        .post(kit.url("/sites"))
        .bearer_auth(&kit.admin_token)
        .header("content-type", "application/json")
        .body(body);
    Kit::reply(request.send().await.unwrap()).await
}

#[tokio::test]
async fn malformed_unknown_and_oversized_json_bodies_get_clear_errors() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let malformed = post_site_raw(&kit, "{\"slug\": ".into()).await;
    assert_eq!(
        (malformed.status, malformed.code()),
        (StatusCode::BAD_REQUEST, "malformed_json")
    );
    assert!(
        malformed.body["error"]["request_id"]
            .as_str()
            .is_some_and(|id| id.len() == 36)
    );
    let unknown_field =
        post_site_raw(&kit, "{\"slug\": \"a\", \"name\": \"A\", \"admin\": true}".into()).await;
    assert_eq!(unknown_field.code(), "malformed_json");
    let huge = post_site_raw(
        &kit,
        format!("{{\"slug\": \"a\", \"name\": \"{}\"}}", "x".repeat(100_000)),
    )
    .await;
    assert_eq!(
        (huge.status, huge.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    kit.finish().await;
}

const SQL: &str = "x'); DROP TABLE sites;--";

#[tokio::test]
async fn hostile_site_input_is_refused_as_a_slug_and_kept_as_text_in_a_name() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let bad_slug = kit
        .admin(Method::POST, "/sites", Some(json!({"slug": SQL, "name": "X"})))
        .await;
    assert_eq!(
        (bad_slug.status, bad_slug.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input")
    );
    assert!(bad_slug.message().starts_with("slug:"));
    let hostile_name = format!("{SQL} <script>alert(1)</script> \" % _ \\");
    let stored = kit
        .admin(
            Method::POST,
            "/sites",
            Some(json!({"slug": "safe", "name": hostile_name})),
        )
        .await;
    assert_eq!(stored.status, StatusCode::CREATED);
    assert_eq!(
        kit.admin(Method::GET, "/sites/safe", None).await.body["name"],
        hostile_name.as_str()
    );
    let control = kit
        .admin(
            Method::POST,
            "/sites",
            Some(json!({"slug": "ctl", "name": "a\u{0}b"})),
        )
        .await;
    assert_eq!(control.code(), "invalid_input");
    kit.finish().await;
}

#[tokio::test]
async fn a_new_users_invalid_fields_are_named() {
    let kit = Kit::start(&Backend::Sqlite).await;
    for (body, field) in [
        (json!({"username": "Bad Name", "role": "admin"}), "username"),
        (json!({"username": "okname", "role": "root"}), "role"),
        (
            json!({"username": "okname", "role": "admin", "sites": ["nowhere"]}),
            "sites",
        ),
        (
            json!({"username": "okname", "role": "admin", "password": "short"}),
            "password",
        ),
    ] {
        let reply = kit.admin(Method::POST, "/users", Some(body)).await;
        assert_eq!(reply.code(), "invalid_input", "{field}");
        assert!(reply.message().starts_with(field), "{:?}", reply.body);
    }
    kit.finish().await;
}

#[tokio::test]
async fn hostile_paths_and_queries_find_nothing_and_bad_queries_are_named() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let users = kit
        .admin(Method::GET, &format!("/users/{}", urlencode(SQL)), None)
        .await;
    assert_eq!(users.code(), "not_found");
    let query = kit.admin(Method::GET, "/audit?limit=abc", None).await;
    assert_eq!(query.code(), "invalid_input");
    let filtered = kit
        .admin(Method::GET, &format!("/audit?actor={}", urlencode(SQL)), None)
        .await;
    assert_eq!(filtered.body["entries"].as_array().unwrap().len(), 0);
    let nowhere = kit.admin(Method::GET, "/no/such/thing", None).await;
    assert_eq!(nowhere.code(), "not_found");
    let unauthenticated = kit.call(Method::GET, "/users", None, None).await;
    assert_eq!(
        (unauthenticated.status, unauthenticated.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    kit.finish().await;
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn a_change_whose_audit_write_fails_does_not_happen() {
    for backend in backends() {
        let kit = Kit::start(&backend).await;
        let raw = kit.raw_store().await;
        raw.execute_unchecked("ALTER TABLE audit_entries RENAME TO audit_entries_off")
            .await
            .unwrap();
        let reply = kit
            .admin(
                Method::POST,
                "/sites",
                Some(json!({"slug": "lost", "name": "Lost"})),
            )
            .await;
        raw.execute_unchecked("ALTER TABLE audit_entries_off RENAME TO audit_entries")
            .await
            .unwrap();
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        );
        assert_eq!(
            kit.admin(Method::GET, "/sites/lost", None).await.code(),
            "not_found"
        );
        raw.close().await;
        kit.finish().await;
    }
}

#[tokio::test]
async fn audit_verify_names_tampered_entries_and_export_streams() {
    for backend in backends() {
        let kit = Kit::start(&backend).await;
        for i in 0..5 {
            kit.admin(
                Method::POST,
                "/sites",
                Some(json!({"slug": format!("h{i}"), "name": "H"})),
            )
            .await;
        }
        let checkpoint = ward_server::checkpoint_now(&kit.server.state)
            .await
            .unwrap()
            .expect("log grew");
        let checkpoints = kit.admin(Method::GET, "/audit/checkpoints", None).await;
        assert_eq!(checkpoints.body[0]["tree_size"], checkpoint.tree_size);
        let export = kit
            .http
            .get(kit.url("/audit/export"))
            .bearer_auth(&kit.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(export.headers()["content-type"], "application/x-ndjson");
        let lines = export.text().await.unwrap();
        let entries: Vec<serde_json::Value> =
            lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(entries.len() as u64 >= checkpoint.tree_size);
        assert!(
            entries.windows(2).all(|w| w[0]["hash"] == w[1]["prev_hash"]),
            "exported chain links"
        );

        let raw = kit.raw_store().await;
        raw.execute_unchecked("UPDATE audit_entries SET target = 'site:forged' WHERE seq = 4")
            .await
            .unwrap();
        let report = kit.admin(Method::GET, "/audit/verify", None).await;
        assert_eq!(report.body["ok"], false);
        assert_eq!(report.body["failure"]["seq"], 4);
        assert_eq!(report.body["failure"]["kind"], "entry_edited");
        let key = kit.admin(Method::GET, "/audit/key", None).await;
        assert_eq!(key.body["public_key"].as_str().unwrap().len(), 64);
        raw.close().await;
        kit.finish().await;
    }
}

#[tokio::test]
async fn break_glass_use_raises_alerts_and_openapi_and_metrics_are_served() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let created = kit
        .admin(
            Method::POST,
            "/users",
            Some(json!({"username": "glass", "role": "admin", "break_glass": true, "password": "emergency access 1"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let token = kit.cli_login("glass", "emergency access 1").await;
    kit.call(Method::GET, "/sites", Some(&token), None).await;
    assert_eq!(kit.audit("alert.break_glass_login").await[0]["outcome"], "alert");
    assert!(!kit.audit("alert.break_glass_use").await.is_empty());

    let openapi = kit.call(Method::GET, "/openapi.json", None, None).await;
    for path in [
        "/auth/login",
        "/users",
        "/sites/{slug}",
        "/audit/verify",
        "/tokens/{id}",
    ] {
        assert!(openapi.body["paths"][path].is_object(), "{path} documented");
    }
    assert!(openapi.body["components"]["schemas"]["ErrorCode"].is_object());
    let metrics = kit
        .http
        .get(format!("{}/metrics", kit.server.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("ward_http_requests_total"), "{metrics}");
    let ca = kit.call(Method::GET, "/ca.pem", None, None).await;
    assert!(
        ca.body
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    kit.finish().await;
}

#[tokio::test]
async fn plain_http_serves_on_loopback_and_provided_certificates_work() {
    let kit = Kit::start_with(&Backend::Sqlite, |config| {
        config.tls = ward_core::config::TlsMode::Plaintext;
    })
    .await;
    assert_eq!(kit.server.scheme, "http");
    kit.finish().await;
}
