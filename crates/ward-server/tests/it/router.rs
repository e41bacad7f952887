//! The error answers of every API route, driven in-process through the HTTP application
//! (`tower::ServiceExt::oneshot`, no network): without credentials, with a read-only token on a
//! change, with a body that is not JSON or not of the expected shape, with an id that names
//! nothing, and from an admin whose sites do not cover the target. Every answer must be
//! `{"error": {"code", "message", "request_id"}}` with the status docs/errors.md gives its code.
//!
//! The routes are one table per family; `every_api_route_is_in_a_table` checks the tables against
//! the routes the OpenAPI document lists, so a new route without error tests fails here.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Request, header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use ward_proto::ErrorCode;
use ward_testkit::{Backend, Kit};

/// Who makes a request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Nobody,
    Admin,
    /// A read-only API token of the admin.
    ReadToken,
    /// An admin whose scope is the `general` site only.
    GeneralAdmin,
}

/// A server with something behind every kind of id, all of it in `st-marys` (outside the scoped
/// admin's sites).
struct Fixture {
    kit: Kit,
    read_token: String,
    general_admin: String,
    device: String,
    command: String,
    incident: String,
    enroll_token: String,
    api_token: String,
}

const POLICY: &str = "name: encryption\nscope: 'phi = true'\nchecks:\n  - id: root-encrypted\n    expr: 'facts.disks.root_filesystem.encrypted = true'\n";

impl Fixture {
    async fn start() -> Fixture {
        let kit = Kit::start(&Backend::Sqlite).await;
        kit.create_sites().await;
        let device = kit
            .enrolled_device("st-marys/icu", "workstation", "ws-icu")
            .await
            .id;
        let command = kit
            .admin(
                Method::POST,
                &format!("/devices/{device}/commands"),
                Some(json!({"kind": "lock"})),
            )
            .await;
        assert_eq!(command.status, StatusCode::CREATED, "{:?}", command.body);
        let incident = kit
            .admin(
                Method::POST,
                "/incidents",
                Some(json!({"title": "Ransomware", "scope": "site within \"st-marys\""})),
            )
            .await;
        assert_eq!(incident.status, StatusCode::CREATED, "{:?}", incident.body);
        let enroll_token = kit
            .admin(
                Method::POST,
                "/enroll-tokens",
                Some(json!({"site": "st-marys/icu", "class": "medical"})),
            )
            .await;
        assert_eq!(
            enroll_token.status,
            StatusCode::CREATED,
            "{:?}",
            enroll_token.body
        );
        let api_token = kit
            .admin(Method::POST, "/tokens", Some(json!({"name": "spare"})))
            .await;
        assert_eq!(api_token.status, StatusCode::CREATED, "{:?}", api_token.body);
        let policy = kit
            .admin(
                Method::POST,
                "/policies/apply",
                Some(json!({"files": [{"path": "encryption.yaml", "text": POLICY}]})),
            )
            .await;
        assert_eq!(policy.status, StatusCode::OK, "{:?}", policy.body);
        let group = kit
            .admin(
                Method::PUT,
                "/groups/icu",
                Some(json!({"selector": "site within \"st-marys/icu\""})),
            )
            .await;
        assert_eq!(group.status, StatusCode::OK, "{:?}", group.body);
        kit.user("olive", "operator", &["st-marys"]).await;
        Fixture {
            read_token: kit.api_token("read").await,
            general_admin: kit.user("gail", "admin", &["general"]).await,
            device,
            command: command.body["id"].as_str().unwrap().to_owned(),
            incident: incident.body["id"].as_str().unwrap().to_owned(),
            enroll_token: enroll_token.body["token"]["id"].as_str().unwrap().to_owned(),
            api_token: api_token.body["token"]["id"].as_str().unwrap().to_owned(),
            kit,
        }
    }

    fn token(&self, who: Who) -> Option<&str> {
        match who {
            Who::Nobody => None,
            Who::Admin => Some(&self.kit.admin_token),
            Who::ReadToken => Some(&self.read_token),
            Who::GeneralAdmin => Some(&self.general_admin),
        }
    }

    /// Sends one request through the application in-process.
    async fn send(&self, method: &Method, path: &str, who: Who, body: Option<String>) -> Answer {
        let mut request = Request::builder()
            .method(method.as_str())
            .uri(format!("/api/v1{path}"));
        if let Some(token) = self.token(who) {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(text) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(text)),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.kit.app().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        // An event stream never ends: what arrived in a second is enough to judge the answer.
        let body = axum::body::to_bytes(response.into_body(), usize::MAX);
        let bytes = match tokio::time::timeout(std::time::Duration::from_secs(1), body).await {
            Ok(bytes) => bytes.unwrap(),
            Err(_) => "(a stream that stayed open)".into(),
        };
        Answer {
            status,
            content_type: header_text(&headers, header::CONTENT_TYPE.as_str()),
            request_id: header_text(&headers, "x-request-id"),
            body: serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
        }
    }
}

fn header_text(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    content_type: Option<String>,
    request_id: Option<String>,
    body: Value,
}

/// The documented status of every code: the table in docs/errors.md.
fn documented_statuses() -> BTreeMap<String, u16> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut table = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if let [_, code, status, ..] = cells.as_slice()
            && let Some(code) = code.strip_prefix('`').and_then(|c| c.strip_suffix('`'))
            && let Ok(status) = status.parse::<u16>()
        {
            table.insert(code.to_owned(), status);
        }
    }
    assert!(table.len() >= 20, "docs/errors.md has its table: {table:?}");
    table
}

/// What is wrong with an answer that should be the error `code` with `status`, if anything.
fn problems(
    answer: &Answer,
    status: StatusCode,
    code: &str,
    documented: &BTreeMap<String, u16>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if answer.status != status {
        problems.push(format!("status {} instead of {status}", answer.status));
    }
    if answer.content_type.as_deref() != Some("application/json") {
        problems.push(format!("content-type {:?}", answer.content_type));
    }
    let error = &answer.body["error"];
    let fields: BTreeSet<&str> = error
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    if fields != BTreeSet::from(["code", "message", "request_id"]) {
        problems.push(format!("not an error body: {}", answer.body));
        return problems;
    }
    if error["code"] != code {
        problems.push(format!("code {} instead of {code}", error["code"]));
    }
    match serde_json::from_value::<ErrorCode>(error["code"].clone()) {
        Ok(known) if known.http_status() != answer.status.as_u16() => problems.push(format!(
            "{} is sent with {} but ward_proto says {}",
            error["code"],
            answer.status,
            known.http_status()
        )),
        Ok(_) => {}
        Err(_) => problems.push(format!("{} is not an ErrorCode", error["code"])),
    }
    let code_text = error["code"].as_str().unwrap_or_default();
    if documented.get(code_text) != Some(&answer.status.as_u16()) {
        problems.push(format!(
            "{code_text} with {} where docs/errors.md says {:?}",
            answer.status,
            documented.get(code_text)
        ));
    }
    if error["message"].as_str().is_none_or(str::is_empty) {
        problems.push("no message".into());
    }
    let request_id = error["request_id"].as_str();
    if request_id.is_none_or(|id| id.len() != 36) || request_id != answer.request_id.as_deref() {
        problems.push(format!(
            "request id {request_id:?} in the body, {:?} in x-request-id",
            answer.request_id
        ));
    }
    problems
}

/// One error case: a request and the answer docs/errors.md says it gets.
#[derive(Debug, Clone)]
struct Case {
    what: &'static str,
    method: Method,
    path: String,
    who: Who,
    body: Option<String>,
    status: StatusCode,
    code: &'static str,
}

/// A route and what it needs for its error cases.
struct Route {
    method: Method,
    /// As the OpenAPI document names it.
    template: &'static str,
    /// The path to call, with ids that exist.
    path: String,
    /// Whether the route needs a caller.
    auth: bool,
    /// A valid JSON body, for routes that read one.
    body: Option<Value>,
    /// The body with a field of the wrong type.
    wrong_type: Option<Value>,
    /// The path with an id that names nothing.
    unknown: Option<String>,
    /// Path and body by which the `general` admin reaches into `st-marys`.
    foreign: Option<(String, Option<Value>)>,
    /// Route-specific error cases.
    extra: Vec<Case>,
}

impl Route {
    fn new(method: Method, template: &'static str, path: impl Into<String>) -> Route {
        Route {
            method,
            template,
            path: path.into(),
            auth: true,
            body: None,
            wrong_type: None,
            unknown: None,
            foreign: None,
            extra: Vec::new(),
        }
    }

    fn get(template: &'static str, path: impl Into<String>) -> Route {
        Route::new(Method::GET, template, path)
    }

    fn post(template: &'static str, path: impl Into<String>) -> Route {
        Route::new(Method::POST, template, path)
    }

    fn public(mut self) -> Route {
        self.auth = false;
        self
    }

    fn body(mut self, body: Value, wrong_type: Value) -> Route {
        self.body = Some(body);
        self.wrong_type = Some(wrong_type);
        self
    }

    fn unknown(mut self, path: impl Into<String>) -> Route {
        self.unknown = Some(path.into());
        self
    }

    fn foreign(mut self, path: impl Into<String>, body: Option<Value>) -> Route {
        self.foreign = Some((path.into(), body));
        self
    }

    /// A route-specific case: the admin (or `who`) sends `path` with `body`.
    fn extra(
        mut self,
        what: &'static str,
        who: Who,
        path: impl Into<String>,
        body: Option<Value>,
        status: StatusCode,
        code: &'static str,
    ) -> Route {
        self.extra.push(Case {
            what,
            method: self.method.clone(),
            path: path.into(),
            who,
            body: body.map(|b| b.to_string()),
            status,
            code,
        });
        self
    }

    /// Every error case of this route.
    fn cases(&self) -> Vec<Case> {
        let case = |what, path: &str, who, body: Option<String>, status, code| Case {
            what,
            method: self.method.clone(),
            path: path.to_owned(),
            who,
            body,
            status,
            code,
        };
        let valid = self.body.as_ref().map(Value::to_string);
        let mut cases = Vec::new();
        if self.auth {
            cases.push(case(
                "no credentials",
                &self.path,
                Who::Nobody,
                valid.clone(),
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
            ));
            if self.method != Method::GET {
                cases.push(case(
                    "a read-only token on a change",
                    &self.path,
                    Who::ReadToken,
                    valid.clone(),
                    StatusCode::FORBIDDEN,
                    "token_scope",
                ));
            }
        }
        if let Some(body) = &self.body {
            let mut unexpected = body.clone();
            unexpected["unexpected"] = json!(true);
            for (what, text) in [
                ("a body that is not JSON", "{\"".to_owned()),
                ("a JSON array for an object", "[1, 2]".to_owned()),
                (
                    "a field of the wrong type",
                    self.wrong_type.as_ref().unwrap().to_string(),
                ),
                ("an unknown field", unexpected.to_string()),
            ] {
                cases.push(case(
                    what,
                    &self.path,
                    Who::Admin,
                    Some(text),
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                ));
            }
        }
        if let Some(unknown) = &self.unknown {
            cases.push(case(
                "an id that names nothing",
                unknown,
                Who::Admin,
                valid.clone(),
                StatusCode::NOT_FOUND,
                "not_found",
            ));
        }
        if let Some((path, body)) = &self.foreign {
            cases.push(case(
                FOREIGN,
                path,
                Who::GeneralAdmin,
                body.as_ref().map(Value::to_string).or(valid),
                StatusCode::FORBIDDEN,
                "forbidden_site",
            ));
        }
        cases.extend(self.extra.iter().cloned());
        cases
    }
}

/// Answers the handlers give today that are not the documented ones. They are reported, not
/// fixed here (the handlers belong to ward-http and ward-service); each is checked to still
/// answer exactly this way, so fixing one makes this test fail until its entry goes:
/// (method, route, case, status, error code or "" for a success).
const KNOWN_WRONG: &[(&str, &str, &str, u16, &str)] = &[
    // Incidents are not scoped to sites: an admin of `general` reads, approves, contains (its
    // plan then reaches none of the devices, which it cannot see), lifts and closes an incident
    // over `st-marys`, and reads its breach report.
    ("GET", "/incidents/{id}", FOREIGN, 200, ""),
    ("GET", "/incidents/{id}/preview", FOREIGN, 200, ""),
    ("GET", "/incidents/{id}/status", FOREIGN, 200, ""),
    ("GET", "/incidents/{id}/events", FOREIGN, 200, ""),
    ("GET", "/incidents/{id}/report", FOREIGN, 200, ""),
    ("POST", "/incidents/{id}/approve", FOREIGN, 200, ""),
    ("POST", "/incidents/{id}/contain", FOREIGN, 200, ""),
    ("POST", "/incidents/{id}/lift", FOREIGN, 200, ""),
    ("POST", "/incidents/{id}/close", FOREIGN, 200, ""),
    // A method a path does not take is answered 405 with the code `not_found`, which
    // docs/errors.md and `ErrorCode::http_status` give as 404.
    ("DELETE", "/health", "an unknown method", 405, "not_found"),
    ("PUT", "/sites", "an unknown method", 405, "not_found"),
];

const FOREIGN: &str = "a site outside the caller's scope";

/// Runs every case of these routes; fails listing every answer that is not as documented.
async fn check(fixture: &Fixture, routes: Vec<Route>) {
    for route in &routes {
        assert!(
            !route.cases().is_empty(),
            "{} {} has no error case",
            route.method,
            route.template
        );
    }
    let cases = routes
        .iter()
        .flat_map(|route| route.cases().into_iter().map(|case| (route.template, case)))
        .collect();
    check_cases(fixture, cases).await;
}

/// Sends each case (with the route it belongs to); fails listing every answer that is not as
/// documented, or that changed from its [`KNOWN_WRONG`] entry.
async fn check_cases(fixture: &Fixture, cases: Vec<(&str, Case)>) {
    let documented = documented_statuses();
    let mut failures = Vec::new();
    let n_cases = cases.len();
    for (template, case) in cases {
        let answer = fixture
            .send(&case.method, &case.path, case.who, case.body.clone())
            .await;
        let known = KNOWN_WRONG.iter().find(|(method, route, what, _, _)| {
            *method == case.method.as_str() && *route == template && *what == case.what
        });
        let found = match known {
            Some((_, _, _, status, code)) => {
                let now = (
                    answer.status.as_u16(),
                    answer.body["error"]["code"].as_str().unwrap_or(""),
                );
                if now == (*status, *code) {
                    Vec::new()
                } else {
                    vec!["no longer the known wrong answer: update or remove its KNOWN_WRONG entry".into()]
                }
            }
            None => problems(&answer, case.status, case.code, &documented),
        };
        if !found.is_empty() {
            failures.push(format!(
                "{} {} ({}, {:?}): {}\n    answer: {} {}",
                case.method,
                case.path,
                case.what,
                case.who,
                found.join("; "),
                answer.status,
                answer.body
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n_cases} error answers are not as documented:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn auth_routes(_: &Fixture) -> Vec<Route> {
    let login = json!({"username": "admin", "password": "not the password"});
    let login_wrong = json!({"username": "admin", "password": 123});
    vec![
        Route::post("/auth/login", "/auth/login")
            .public()
            .body(login.clone(), login_wrong.clone())
            .extra(
                "a wrong password",
                Who::Nobody,
                "/auth/login",
                Some(login.clone()),
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
            ),
        Route::post("/auth/cli-login", "/auth/cli-login")
            .public()
            .body(login.clone(), login_wrong)
            .extra(
                "a wrong password",
                Who::Nobody,
                "/auth/cli-login",
                Some(login),
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
            ),
        Route::post("/auth/logout", "/auth/logout"),
        Route::get("/auth/whoami", "/auth/whoami"),
        Route::post("/auth/password", "/auth/password")
            .body(
                json!({"current_password": "not the password", "new_password": "a new password 123"}),
                json!({"current_password": ["x"], "new_password": "a new password 123"}),
            )
            .extra(
                "a wrong current password",
                Who::Admin,
                "/auth/password",
                Some(json!({"current_password": "not the password", "new_password": "a new password 123"})),
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
            ),
        Route::post("/auth/totp/enrol", "/auth/totp/enrol"),
        Route::post("/auth/totp/confirm", "/auth/totp/confirm")
            .body(json!({"code": "000000"}), json!({"code": 0})),
    ]
}

fn user_and_token_routes(fixture: &Fixture) -> Vec<Route> {
    let new_user = json!({"username": "newbie", "role": "operator", "sites": ["st-marys"]});
    let api_token = &fixture.api_token;
    vec![
        Route::get("/users", "/users"),
        Route::post("/users", "/users")
            .body(new_user.clone(), json!({"username": "newbie", "role": 7}))
            .foreign("/users", Some(new_user))
            .extra(
                "an invalid field",
                Who::Admin,
                "/users",
                Some(json!({"username": "Bad Name", "role": "operator"})),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            ),
        // Any account is shown to a caller with the right to view accounts, whatever its sites
        // (as the handler documents): no site case.
        Route::get("/users/{username}", "/users/olive").unknown("/users/nobody"),
        Route::new(Method::PATCH, "/users/{username}", "/users/olive")
            .body(json!({"display_name": "Olive"}), json!({"disabled": "yes"}))
            .unknown("/users/nobody")
            .foreign("/users/olive", None),
        Route::post("/users/{username}/reset-password", "/users/olive/reset-password")
            .unknown("/users/nobody/reset-password")
            .foreign("/users/olive/reset-password", None),
        Route::get("/tokens", "/tokens").extra(
            "a bad query",
            Who::Admin,
            "/tokens?all=maybe",
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        Route::post("/tokens", "/tokens")
            .body(
                json!({"name": "x"}),
                json!({"name": "x", "expires_in_days": "soon"}),
            )
            .extra(
                "an invalid field",
                Who::Admin,
                "/tokens",
                Some(json!({"name": "x", "expires_in_days": 0})),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            ),
        Route::new(Method::DELETE, "/tokens/{id}", format!("/tokens/{api_token}"))
            .unknown("/tokens/no-such-token"),
    ]
}

fn site_and_audit_routes(_: &Fixture) -> Vec<Route> {
    vec![
        Route::get("/sites", "/sites"),
        Route::post("/sites", "/sites")
            .body(
                json!({"slug": "st-marys/er", "name": "ER"}),
                json!({"slug": "st-marys/er", "name": 1}),
            )
            .foreign("/sites", None)
            .extra(
                "an invalid slug",
                Who::Admin,
                "/sites",
                Some(json!({"slug": "../etc", "name": "x"})),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            )
            .extra(
                "a slug that exists",
                Who::Admin,
                "/sites",
                Some(json!({"slug": "general", "name": "x"})),
                StatusCode::CONFLICT,
                "conflict",
            ),
        Route::get("/sites/{slug}", "/sites/st-marys/icu")
            .unknown("/sites/nowhere")
            .foreign("/sites/st-marys/icu", None),
        Route::new(Method::PATCH, "/sites/{slug}", "/sites/st-marys/icu")
            .body(json!({"name": "Intensive care"}), json!({"name": false}))
            .unknown("/sites/nowhere")
            .foreign("/sites/st-marys/icu", None),
        Route::new(Method::DELETE, "/sites/{slug}", "/sites/st-marys/icu")
            .unknown("/sites/nowhere")
            .foreign("/sites/st-marys/icu", None)
            .extra(
                "a hospital that has wards",
                Who::Admin,
                "/sites/st-marys",
                None,
                StatusCode::CONFLICT,
                "conflict",
            ),
        Route::get("/audit", "/audit").extra(
            "a bad query",
            Who::Admin,
            "/audit?limit=abc",
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        Route::get("/audit/verify", "/audit/verify"),
        Route::get("/audit/checkpoints", "/audit/checkpoints"),
        Route::get("/audit/key", "/audit/key"),
        Route::get("/audit/export", "/audit/export").extra(
            "a bad query",
            Who::Admin,
            "/audit/export?after=abc",
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
    ]
}

fn enrollment_and_device_routes(fixture: &Fixture) -> Vec<Route> {
    let device = &fixture.device;
    let enroll_token = &fixture.enroll_token;
    let token_body = json!({"site": "st-marys/icu", "class": "medical"});
    let command = json!({"kind": "lock"});
    vec![
        Route::post("/enroll-tokens", "/enroll-tokens")
            .body(
                token_body.clone(),
                json!({"site": "st-marys/icu", "class": "medical", "phi": "yes"}),
            )
            .foreign("/enroll-tokens", Some(token_body)),
        Route::get("/enroll-tokens", "/enroll-tokens"),
        Route::new(
            Method::DELETE,
            "/enroll-tokens/{id}",
            format!("/enroll-tokens/{enroll_token}"),
        )
        .unknown("/enroll-tokens/no-such-token")
        .foreign(format!("/enroll-tokens/{enroll_token}"), None),
        Route::post("/enroll", "/enroll")
            .public()
            .body(
                json!({"token": "wardenroll_nonsense", "csr_pem": "x", "hostname": "x"}),
                json!({"token": "wardenroll_nonsense", "csr_pem": "x", "hostname": 1}),
            )
            .extra(
                "a token that is not an enrollment token",
                Who::Nobody,
                "/enroll",
                Some(json!({"token": "wardenroll_nonsense", "csr_pem": "x", "hostname": "x"})),
                StatusCode::UNAUTHORIZED,
                "token_invalid",
            ),
        Route::get("/devices", "/devices").extra(
            "a bad filter",
            Who::Admin,
            "/devices?filter=site%20%3D",
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        Route::get("/devices/fhir", "/devices/fhir").extra(
            "a bad filter",
            Who::Admin,
            "/devices/fhir?filter=site%20%3D",
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        Route::get("/devices/{id}", format!("/devices/{device}"))
            .unknown("/devices/no-such-device")
            .foreign(format!("/devices/{device}"), None),
        Route::post("/devices/{id}/revoke", format!("/devices/{device}/revoke"))
            .unknown("/devices/no-such-device/revoke")
            .foreign(format!("/devices/{device}/revoke"), None),
        Route::post("/devices/{id}/retire", format!("/devices/{device}/retire"))
            .unknown("/devices/no-such-device/retire")
            .foreign(format!("/devices/{device}/retire"), None),
        Route::get(
            "/devices/{id}/compliance",
            format!("/devices/{device}/compliance"),
        )
        .unknown("/devices/no-such-device/compliance")
        .foreign(format!("/devices/{device}/compliance"), None),
        Route::post("/devices/{id}/commands", format!("/devices/{device}/commands"))
            .body(command.clone(), json!({"kind": ["lock"]}))
            .unknown("/devices/no-such-device/commands")
            .foreign(format!("/devices/{device}/commands"), Some(command))
            .extra(
                "an unknown kind",
                Who::Admin,
                format!("/devices/{device}/commands"),
                Some(json!({"kind": "format-disk"})),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            ),
        Route::get("/lwm2m/endpoints", "/lwm2m/endpoints"),
        Route::post("/lwm2m/endpoints", "/lwm2m/endpoints")
            .body(
                json!({"endpoint": "urn:dev:x", "site": "st-marys/icu", "class": "medical"}),
                json!({"endpoint": 5, "site": "st-marys/icu", "class": "medical"}),
            )
            .foreign("/lwm2m/endpoints", None),
    ]
}

fn command_and_incident_routes(fixture: &Fixture) -> Vec<Route> {
    let command = &fixture.command;
    let incident = &fixture.incident;
    let action = json!({});
    let action_wrong = json!({"devices": "all"});
    let close = json!({"nature": "x", "contact_point": "x", "likely_consequences": "x"});
    let close_wrong = json!({"nature": "x", "contact_point": "x", "likely_consequences": "x", "records": -1});
    let mut routes = vec![
        Route::get("/commands", "/commands").extra(
            "a bad query",
            Who::Admin,
            "/commands?state=bogus",
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        Route::post("/commands", "/commands")
            .body(
                json!({"filter": "site within \"st-marys\"", "kind": "lock", "dry_run": true}),
                json!({"filter": "site within \"st-marys\"", "kind": "lock", "dry_run": "yes"}),
            )
            .extra(
                "a bad filter",
                Who::Admin,
                "/commands",
                Some(json!({"filter": "class = ", "kind": "lock"})),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            ),
        Route::get("/commands/{id}", format!("/commands/{command}"))
            .unknown("/commands/no-such-command")
            .foreign(format!("/commands/{command}"), None),
        Route::post("/commands/{id}/cancel", format!("/commands/{command}/cancel"))
            .unknown("/commands/no-such-command/cancel")
            .foreign(format!("/commands/{command}/cancel"), None),
        Route::get("/incidents", "/incidents"),
        Route::post("/incidents", "/incidents")
            .body(
                json!({"title": "x", "scope": "site within \"st-marys\""}),
                json!({"title": 1, "scope": "site within \"st-marys\""}),
            )
            // Devices outside the caller's sites are invisible to it, so a scope over them
            // matches nothing: the documented refusal of such a scope, not `forbidden_site`.
            .extra(
                "a scope over another site's devices",
                Who::GeneralAdmin,
                "/incidents",
                Some(json!({"title": "x", "scope": "site within \"st-marys\""})),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            )
            .extra(
                "a scope that matches nothing",
                Who::Admin,
                "/incidents",
                Some(json!({"title": "x", "scope": "hostname = \"nobody\""})),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            ),
    ];
    for (template, suffix) in [
        ("/incidents/{id}", ""),
        ("/incidents/{id}/preview", "/preview"),
        ("/incidents/{id}/status", "/status"),
        ("/incidents/{id}/events", "/events"),
        ("/incidents/{id}/report", "/report"),
    ] {
        routes.push(
            Route::get(template, format!("/incidents/{incident}{suffix}"))
                .unknown(format!("/incidents/no-such-incident{suffix}"))
                .foreign(format!("/incidents/{incident}{suffix}"), None),
        );
    }
    for (template, suffix) in [
        ("/incidents/{id}/approve", "/approve"),
        ("/incidents/{id}/contain", "/contain"),
        ("/incidents/{id}/lift", "/lift"),
    ] {
        routes.push(
            Route::post(template, format!("/incidents/{incident}{suffix}"))
                .body(action.clone(), action_wrong.clone())
                .unknown(format!("/incidents/no-such-incident{suffix}"))
                .foreign(format!("/incidents/{incident}{suffix}"), None),
        );
    }
    routes.push(
        Route::post("/incidents/{id}/close", format!("/incidents/{incident}/close"))
            .body(close, close_wrong)
            .unknown("/incidents/no-such-incident/close")
            .foreign(format!("/incidents/{incident}/close"), None),
    );
    if let Some(report) = routes.iter_mut().find(|r| r.template == "/incidents/{id}/report") {
        report.extra.push(Case {
            what: "an unknown format",
            method: Method::GET,
            path: format!("/incidents/{incident}/report?format=pdf"),
            who: Who::Admin,
            body: None,
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_input",
        });
    }
    routes
}

fn policy_and_group_routes(_: &Fixture) -> Vec<Route> {
    let files = json!({"files": [{"path": "encryption.yaml", "text": POLICY}], "dry_run": true});
    vec![
        Route::post("/policies/apply", "/policies/apply")
            .body(files.clone(), json!({"files": "encryption.yaml"}))
            .foreign("/policies/apply", Some(files))
            .extra(
                "a policy that does not parse",
                Who::Admin,
                "/policies/apply",
                Some(json!({"files": [{"path": "bad.yaml", "text": ": : :\n"}]})),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            ),
        Route::get("/policies", "/policies"),
        Route::get("/policies/{name}", "/policies/encryption").unknown("/policies/nothing"),
        Route::get("/policies/{name}/history", "/policies/encryption/history")
            .unknown("/policies/nothing/history"),
        Route::get("/policies/{name}/diff", "/policies/encryption/diff?from=1&to=1")
            .unknown("/policies/nothing/diff?from=1&to=1")
            .extra(
                "a bad query",
                Who::Admin,
                "/policies/encryption/diff?from=x&to=1",
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            ),
        Route::get("/compliance/summary", "/compliance/summary").extra(
            "a bad filter",
            Who::Admin,
            "/compliance/summary?filter=site%20%3D",
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        Route::get("/groups", "/groups"),
        Route::new(Method::PUT, "/groups/{name}", "/groups/wards")
            .body(json!({"selector": "phi = true"}), json!({"selector": true}))
            .extra(
                "a selector on groups",
                Who::Admin,
                "/groups/wards",
                Some(json!({"selector": "groups = \"icu\""})),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            ),
        Route::new(Method::DELETE, "/groups/{name}", "/groups/icu").unknown("/groups/nothing"),
    ]
}

fn public_routes(_: &Fixture) -> Vec<Route> {
    vec![
        Route::get("/health", "/health").public(),
        Route::get("/ca.pem", "/ca.pem").public(),
        Route::get("/openapi.json", "/openapi.json").public(),
    ]
}

/// Requests that match no route, or a route with another method.
fn unmatched_cases() -> Vec<Case> {
    let case = |what, method: Method, path: &str, who| Case {
        what,
        method,
        path: path.to_owned(),
        who,
        body: None,
        status: StatusCode::NOT_FOUND,
        code: "not_found",
    };
    vec![
        case("an unknown path", Method::GET, "/no/such/thing", Who::Admin),
        case("an unknown path", Method::GET, "/no/such/thing", Who::Nobody),
        case("an unknown method", Method::DELETE, "/health", Who::Admin),
        case("an unknown method", Method::PUT, "/sites", Who::Admin),
    ]
}

#[tokio::test]
async fn auth_routes_answer_errors_as_documented() {
    let fixture = Fixture::start().await;
    check(&fixture, auth_routes(&fixture)).await;
    fixture.kit.finish().await;
}

#[tokio::test]
async fn user_and_token_routes_answer_errors_as_documented() {
    let fixture = Fixture::start().await;
    check(&fixture, user_and_token_routes(&fixture)).await;
    fixture.kit.finish().await;
}

#[tokio::test]
async fn site_and_audit_routes_answer_errors_as_documented() {
    let fixture = Fixture::start().await;
    check(&fixture, site_and_audit_routes(&fixture)).await;
    fixture.kit.finish().await;
}

#[tokio::test]
async fn enrollment_device_and_lwm2m_routes_answer_errors_as_documented() {
    let fixture = Fixture::start().await;
    check(&fixture, enrollment_and_device_routes(&fixture)).await;
    fixture.kit.finish().await;
}

#[tokio::test]
async fn command_and_incident_routes_answer_errors_as_documented() {
    let fixture = Fixture::start().await;
    check(&fixture, command_and_incident_routes(&fixture)).await;
    fixture.kit.finish().await;
}

#[tokio::test]
async fn policy_and_group_routes_answer_errors_as_documented() {
    let fixture = Fixture::start().await;
    check(&fixture, policy_and_group_routes(&fixture)).await;
    fixture.kit.finish().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_not_found_as_documented() {
    let fixture = Fixture::start().await;
    let cases = unmatched_cases();
    let paths: Vec<String> = cases.iter().map(|case| case.path.clone()).collect();
    check_cases(&fixture, paths.iter().map(String::as_str).zip(cases).collect()).await;
    fixture.kit.finish().await;
}

#[tokio::test]
async fn every_api_route_is_in_a_table() {
    let fixture = Fixture::start().await;
    let openapi = fixture
        .send(&Method::GET, "/openapi.json", Who::Nobody, None)
        .await;
    let mut documented = BTreeSet::new();
    for (path, operations) in openapi.body["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            documented.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let mut tested = BTreeSet::new();
    for routes in [
        auth_routes(&fixture),
        user_and_token_routes(&fixture),
        site_and_audit_routes(&fixture),
        enrollment_and_device_routes(&fixture),
        command_and_incident_routes(&fixture),
        policy_and_group_routes(&fixture),
        public_routes(&fixture),
    ] {
        for route in routes {
            tested.insert(format!("{} {}", route.method, route.template));
        }
    }
    let untested: Vec<_> = documented.difference(&tested).collect();
    assert!(untested.is_empty(), "routes without error tests: {untested:?}");
    // The routes outside the document are the two served beside it.
    let undocumented: Vec<_> = tested.difference(&documented).collect();
    assert_eq!(
        undocumented,
        ["GET /ca.pem", "GET /openapi.json"],
        "routes tested that the OpenAPI document does not list"
    );
    fixture.kit.finish().await;
}
