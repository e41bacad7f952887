//! The web console over real HTTPS, as a browser without script would use it: login with TOTP,
//! cookies and security headers, CSRF on every change, hostile device data shown as text, role
//! checks enforced by the server, idle logoff, and the incident flow from declare to report with
//! two people.

use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::json;
use ward_domain::clock::Clock;

use ward_testkit::agent::SimulatedDevice;
use ward_testkit::{ADMIN_PASSWORD, Backend, Kit, USER_PASSWORD, client_builder_for};

/// Form encoding (application/x-www-form-urlencoded).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => (b as char).to_string(),
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// A cookie-keeping HTTPS client that does not follow redirects.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The CSRF token of the page's forms.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form with a CSRF token");
        let rest = &self.body[at + 19..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    /// No script anywhere, no inline styles (the CSP would block them anyway).
    fn assert_safe(&self) {
        assert!(!self.body.contains("<script"), "a console page has a script");
        assert!(
            !self.body.contains(" style="),
            "a console page has an inline style"
        );
        assert_eq!(
            self.headers.get("content-security-policy").unwrap(),
            ward_http::CSP
        );
        assert_eq!(self.headers.get("x-frame-options").unwrap(), "DENY");
        assert_eq!(self.headers.get("cache-control").unwrap(), "no-store");
    }
}

impl Browser {
    fn new(kit: &Kit) -> Browser {
        Browser {
            http: client_builder_for(&kit.server.ca_cert_pem)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: kit.server.url(),
            cookie: None,
        }
    }

    async fn send(&mut self, method: Method, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        if let Some(form) = form {
            let body: Vec<String> = form
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            request = request
                .header("origin", &self.base)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.join("&"));
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        if let Some(set) = headers.get(SET_COOKIE).and_then(|v| v.to_str().ok()) {
            let pair = set.split(';').next().unwrap().to_owned();
            self.cookie = if pair.ends_with('=') { None } else { Some(pair) };
        }
        Page {
            status,
            headers,
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(Method::POST, path, Some(form)).await
    }

    async fn login(&mut self, username: &str, password: &str, code: &str) -> Page {
        self.post(
            "/login",
            &[("username", username), ("password", password), ("code", code)],
        )
        .await
    }

    /// A browser logged in as this user (no TOTP).
    async fn logged_in(kit: &Kit, username: &str, password: &str) -> Browser {
        let mut browser = Browser::new(kit);
        let page = browser.login(username, password, "").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        browser
    }
}

/// A connected PHI workstation in the ICU whose hostname and OS name are markup.
async fn hostile_device(kit: &Kit) -> SimulatedDevice {
    kit.create_sites().await;
    let stations = kit
        .enroll_token(json!({"site": "st-marys/icu", "class": "workstation", "phi": true, "uses": 5}))
        .await;
    let device = SimulatedDevice::connect(kit, kit.enrolled(&stations, HOSTILE).await).await;
    device
        .report(
            json!({"hostname": HOSTILE, "os": {"id": "debian", "pretty_name": "<script>alert(2)</script>"}}),
        )
        .await;
    device
}

#[tokio::test]
async fn every_console_page_sends_a_visitor_who_is_not_logged_in_to_a_safe_login_page() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let mut browser = Browser::new(&kit);
    for path in ["/", "/devices", "/incidents", "/audit", "/admin"] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location(), "/login");
    }
    let login = browser.get("/login").await;
    assert_eq!(login.status, StatusCode::OK);
    login.assert_safe();
    assert!(login.body.contains("<label for=\"password\">"));
    kit.finish().await;
}

#[tokio::test]
async fn a_wrong_console_password_is_refused_and_sets_no_cookie() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let mut browser = Browser::new(&kit);
    let wrong = browser.login("admin", "nope", "").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("wrong username or password"));
    assert!(browser.cookie.is_none());
    kit.finish().await;
}

#[tokio::test]
async fn console_login_asks_for_the_totp_code_and_then_sets_a_safe_cookie() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let mut browser = Browser::new(&kit);
    let enrol = kit.admin(Method::POST, "/auth/totp/enrol", None).await;
    let secret = totp_rs::Secret::try_from_base32(enrol.body["secret"].as_str().unwrap())
        .unwrap()
        .as_ref()
        .to_vec();
    let code = ward_core::auth::totp_now(&secret, kit.clock.now_ms());
    let confirmed = kit
        .admin(Method::POST, "/auth/totp/confirm", Some(json!({"code": code})))
        .await;
    assert_eq!(confirmed.status, StatusCode::NO_CONTENT, "{:?}", confirmed.body);
    let no_code = browser.login("admin", ADMIN_PASSWORD, "").await;
    assert_eq!(no_code.status, StatusCode::UNAUTHORIZED);
    assert!(no_code.body.contains("needs a TOTP code"), "{}", no_code.body);
    assert!(no_code.body.contains("required autofocus"));
    kit.clock.advance_ms(30_000);
    let code = ward_core::auth::totp_now(&secret, kit.clock.now_ms());
    let ok = browser.login("admin", ADMIN_PASSWORD, &code).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(ok.location(), "/");
    let cookie = ok.headers.get(SET_COOKIE).unwrap().to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    kit.finish().await;
}

#[tokio::test]
async fn every_console_page_renders_safely_and_the_audit_log_verifies() {
    let kit = Kit::start(&Backend::Sqlite).await;
    hostile_device(&kit).await;
    let mut browser = Browser::logged_in(&kit, "admin", ADMIN_PASSWORD).await;
    for path in [
        "/",
        "/devices",
        "/incidents",
        "/policies",
        "/audit",
        "/audit?verify=true",
        "/admin",
        "/password",
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        page.assert_safe();
    }
    let verified = browser.get("/audit?verify=true").await;
    assert!(
        verified.body.contains("id=\"verify-result\">Verified"),
        "{}",
        verified.body
    );
    kit.finish().await;
}

#[tokio::test]
async fn device_data_is_shown_as_text_never_as_markup() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let device = hostile_device(&kit).await;
    let mut browser = Browser::logged_in(&kit, "admin", ADMIN_PASSWORD).await;
    let list = browser.get("/devices").await;
    assert!(
        list.body.contains("&#60;img src=x onerror=alert(1)&#62;"),
        "{}",
        list.body
    );
    assert!(!list.body.contains(HOSTILE));
    for _ in 0..50 {
        let detail = browser.get(&format!("/devices/{}", device.id)).await;
        if detail.body.contains("alert(2)") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let detail = browser.get(&format!("/devices/{}", device.id)).await;
    detail.assert_safe();
    assert!(detail.body.contains("&#60;script&#62;alert(2)&#60;/script&#62;"));
    assert!(!detail.body.contains(HOSTILE));
    kit.finish().await;
}

#[tokio::test]
async fn a_bad_selector_is_shown_inline_with_where_it_went_wrong() {
    let kit = Kit::start(&Backend::Sqlite).await;
    hostile_device(&kit).await;
    let mut browser = Browser::logged_in(&kit, "admin", ADMIN_PASSWORD).await;
    let bad = browser.get("/devices?filter=site%20%3D").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.body.contains("role=\"alert\"") && bad.body.contains("expected"),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("aria-invalid=\"true\""));
    let sorted = browser.get("/devices?sort=site&desc=true&page=99").await;
    assert_eq!(sorted.status, StatusCode::OK);
    kit.finish().await;
}

#[tokio::test]
async fn a_console_change_needs_the_sessions_csrf_token() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let device = hostile_device(&kit).await;
    let mut browser = Browser::logged_in(&kit, "admin", ADMIN_PASSWORD).await;
    let confirm = browser
        .get(&format!("/devices/{}/confirm?kind=lock", device.id))
        .await;
    assert_eq!(confirm.status, StatusCode::OK);
    let csrf = confirm.csrf();
    let path = format!("/devices/{}/commands", device.id);
    for forged in ["", "0000000000000000000000000000000000000000"] {
        let refused = browser.post(&path, &[("csrf", forged), ("kind", "lock")]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    }
    assert!(device.got("lock").is_empty(), "no forged command got through");
    let queued = browser.post(&path, &[("csrf", &csrf), ("kind", "lock")]).await;
    assert_eq!(queued.status, StatusCode::SEE_OTHER, "{}", queued.body);
    assert!(
        queued
            .location()
            .starts_with(&format!("/devices/{}?msg=", device.id))
    );
    let shown = browser.get(queued.location()).await;
    assert!(shown.body.contains("lock queued"), "{}", shown.body);
    let created = kit.audit("command.create").await;
    assert!(
        created
            .iter()
            .any(|e| e["actor"].as_str().unwrap().starts_with("user:admin"))
    );
    kit.finish().await;
}

#[tokio::test]
async fn a_console_message_needs_its_text_and_an_unknown_action_is_refused() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let device = hostile_device(&kit).await;
    let mut browser = Browser::logged_in(&kit, "admin", ADMIN_PASSWORD).await;
    let csrf = browser
        .get(&format!("/devices/{}/confirm?kind=lock", device.id))
        .await
        .csrf();
    let path = format!("/devices/{}/commands", device.id);
    // The error comes back on the confirm page.
    let empty = browser
        .post(&path, &[("csrf", &csrf), ("kind", "message"), ("text", "  ")])
        .await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(empty.body.contains("role=\"alert\""));
    let unknown = browser
        .get(&format!("/devices/{}/confirm?kind=explode", device.id))
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    kit.finish().await;
}

/// The admin page's CSRF token, the page checked to be safe.
async fn admin_csrf(browser: &mut Browser) -> String {
    let admin_page = browser.get("/admin").await;
    admin_page.assert_safe();
    admin_page.csrf()
}

#[tokio::test]
async fn an_enrollment_token_made_in_the_console_is_shown_once_with_its_command() {
    let kit = Kit::start(&Backend::Sqlite).await;
    kit.create_sites().await;
    let mut browser = Browser::logged_in(&kit, "admin", ADMIN_PASSWORD).await;
    let csrf = admin_csrf(&mut browser).await;
    let created = browser
        .post(
            "/admin/enroll-tokens",
            &[
                ("csrf", &csrf),
                ("site", "st-marys/icu"),
                ("class", "workstation"),
                ("criticality", "normal"),
                ("phi", "on"),
                ("expires", "24h"),
                ("uses", "3"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    created.assert_safe();
    assert!(
        created.body.contains("id=\"enroll-secret\">wardenroll_"),
        "{}",
        created.body
    );
    assert!(created.body.contains("ward-agent enroll --server https://"));
    let bad_uses = browser
        .post(
            "/admin/enroll-tokens",
            &[
                ("csrf", &csrf),
                ("site", "st-marys/icu"),
                ("class", "workstation"),
                ("uses", "many"),
            ],
        )
        .await;
    assert!(
        browser
            .get(bad_uses.location())
            .await
            .body
            .contains("refused: uses must be a whole number")
    );
    kit.finish().await;
}

#[tokio::test]
async fn a_site_made_in_the_console_is_shown_as_text_and_bad_or_forged_ones_are_refused() {
    let kit = Kit::start(&Backend::Sqlite).await;
    kit.create_sites().await;
    let mut browser = Browser::logged_in(&kit, "admin", ADMIN_PASSWORD).await;
    let csrf = admin_csrf(&mut browser).await;
    let site = browser
        .post(
            "/admin/sites",
            &[("csrf", &csrf), ("slug", "general/x-ray"), ("name", "X-ray <b>")],
        )
        .await;
    let shown = browser.get(site.location()).await;
    assert!(
        shown.body.contains("created site general/x-ray"),
        "{}",
        shown.body
    );
    assert!(shown.body.contains("X-ray &#60;b&#62;"));
    let bad_site = browser
        .post(
            "/admin/sites",
            &[("csrf", &csrf), ("slug", "../etc"), ("name", "x")],
        )
        .await;
    assert!(browser.get(bad_site.location()).await.body.contains("refused:"));
    let forged = browser
        .post(
            "/admin/sites",
            &[("csrf", "x"), ("slug", "general/y"), ("name", "y")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    kit.finish().await;
}

#[tokio::test]
async fn an_api_token_is_revoked_from_the_console() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let mut browser = Browser::logged_in(&kit, "admin", ADMIN_PASSWORD).await;
    let csrf = admin_csrf(&mut browser).await;
    let spare = kit
        .admin(
            Method::POST,
            "/tokens",
            Some(json!({"name": "spare", "scope": "read"})),
        )
        .await;
    let spare_id = spare.body["token"]["id"].as_str().unwrap().to_owned();
    let revoked = browser
        .post(&format!("/admin/tokens/{spare_id}/revoke"), &[("csrf", &csrf)])
        .await;
    assert!(
        browser
            .get(revoked.location())
            .await
            .body
            .contains("token revoked")
    );
    kit.finish().await;
}

#[tokio::test]
async fn helpdesk_sees_devices_without_actions_and_the_server_refuses_their_actions_anyway() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let device = hostile_device(&kit).await;
    let mut admin = Browser::logged_in(&kit, "admin", ADMIN_PASSWORD).await;
    kit.user("helen", "helpdesk", &[]).await;
    let mut helpdesk = Browser::logged_in(&kit, "helen", USER_PASSWORD).await;
    let path = format!("/devices/{}/commands", device.id);
    let page = helpdesk.get(&format!("/devices/{}", device.id)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page.body.contains("/confirm?kind="),
        "no action buttons for helpdesk"
    );
    assert!(!page.body.contains("href=\"/admin\""));
    let csrf = page.csrf();
    let refused = helpdesk.post(&path, &[("csrf", &csrf), ("kind", "lock")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(helpdesk.get("/admin").await.status, StatusCode::FORBIDDEN);
    // Another session's token is no good either.
    let cross = helpdesk
        .post(
            &path,
            &[("csrf", &admin.get("/devices").await.csrf()), ("kind", "lock")],
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert!(device.got("lock").is_empty(), "no refused command got through");
    kit.finish().await;
}

#[tokio::test]
async fn console_logout_ends_the_session() {
    let kit = Kit::start(&Backend::Sqlite).await;
    kit.user("helen", "helpdesk", &[]).await;
    let mut helpdesk = Browser::logged_in(&kit, "helen", USER_PASSWORD).await;
    let csrf = helpdesk.get("/").await.csrf();
    let out = helpdesk.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.location(), "/login");
    assert_eq!(helpdesk.get("/").await.location(), "/login");
    kit.finish().await;
}

#[tokio::test]
async fn an_idle_console_session_is_logged_off() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let mut browser = Browser::logged_in(&kit, "admin", ADMIN_PASSWORD).await;
    assert_eq!(browser.get("/devices").await.status, StatusCode::OK);
    kit.clock.advance_ms(16 * 60_000);
    let idle = browser.get("/devices").await;
    assert_eq!(idle.status, StatusCode::SEE_OTHER);
    assert_eq!(idle.location(), "/login");
    kit.finish().await;
}

#[tokio::test]
async fn a_one_time_password_is_changed_first() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let created = kit
        .admin(
            Method::POST,
            "/users",
            Some(json!({"username": "olga", "role": "operator"})),
        )
        .await;
    let one_time = created.body["initial_password"].as_str().unwrap().to_owned();
    let mut browser = Browser::new(&kit);
    let login = browser.login("olga", &one_time, "").await;
    assert_eq!(login.location(), "/password");
    assert_eq!(browser.get("/devices").await.location(), "/password");
    let form = browser.get("/password").await;
    assert!(form.body.contains("one-time password"));
    let csrf = form.csrf();
    let mismatch = browser
        .post(
            "/password",
            &[
                ("csrf", &csrf),
                ("current_password", &one_time),
                ("new_password", "a new password 1"),
                ("repeat_password", "another one 123"),
            ],
        )
        .await;
    assert_eq!(mismatch.status, StatusCode::UNPROCESSABLE_ENTITY);
    let short = browser
        .post(
            "/password",
            &[
                ("csrf", &csrf),
                ("current_password", &one_time),
                ("new_password", "short"),
                ("repeat_password", "short"),
            ],
        )
        .await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    let changed = browser
        .post(
            "/password",
            &[
                ("csrf", &csrf),
                ("current_password", &one_time),
                ("new_password", "olga's own password"),
                ("repeat_password", "olga's own password"),
            ],
        )
        .await;
    assert_eq!(changed.location(), "/");
    assert_eq!(browser.get("/devices").await.status, StatusCode::OK);
    kit.finish().await;
}

/// Two people in the console — the admin who declares and a security user who approves — and a
/// connected workstation and life-sustaining pump in the ICU.
struct TwoPeople {
    kit: Kit,
    admin: Browser,
    security: Browser,
    ws: SimulatedDevice,
    pump: SimulatedDevice,
}

impl TwoPeople {
    async fn start() -> TwoPeople {
        let kit = Kit::start(&Backend::Sqlite).await;
        kit.create_sites().await;
        let stations = kit
            .enroll_token(json!({"site": "st-marys/icu", "class": "workstation", "phi": true, "uses": 5}))
            .await;
        let ws = SimulatedDevice::connect(&kit, kit.enrolled(&stations, "ws-1").await).await;
        let pumps = kit
            .enroll_token(
                json!({"site": "st-marys/icu", "class": "medical", "criticality": "life-sustaining", "phi": true, "uses": 5}),
            )
            .await;
        let pump = SimulatedDevice::connect(&kit, kit.enrolled(&pumps, "pump-1").await).await;
        kit.user("sam", "security", &[]).await;
        let admin = Browser::logged_in(&kit, "admin", ADMIN_PASSWORD).await;
        let security = Browser::logged_in(&kit, "sam", USER_PASSWORD).await;
        TwoPeople {
            kit,
            admin,
            security,
            ws,
            pump,
        }
    }

    /// Declares the ransomware incident over the ICU as the admin; returns its page's path and
    /// the admin's CSRF token.
    async fn declared(&mut self) -> (String, String) {
        let csrf = self.admin.get("/incidents").await.csrf();
        let declared = self
            .admin
            .post(
                "/incidents",
                &[
                    ("csrf", &csrf),
                    ("title", "Ransomware in ICU <b>"),
                    ("scope", "site within \"st-marys/icu\""),
                    ("severity", "critical"),
                    ("situation", "breach"),
                ],
            )
            .await;
        assert_eq!(declared.status, StatusCode::SEE_OTHER, "{}", declared.body);
        (declared.location().to_owned(), csrf)
    }

    /// Approved and contained by the security user, every device done.
    async fn contained(&mut self, url: &str) {
        let sec_csrf = self.security.get(url).await.csrf();
        let approved = self
            .security
            .post(&format!("{url}/approve"), &[("csrf", &sec_csrf)])
            .await;
        assert!(
            self.security
                .get(approved.location())
                .await
                .body
                .contains("id=\"incident-state\">approved")
        );
        let contained = self
            .security
            .post(&format!("{url}/contain"), &[("csrf", &sec_csrf)])
            .await;
        assert!(
            contained.location().contains("containment%20started"),
            "{}",
            contained.location()
        );
        let mut done = false;
        for _ in 0..100 {
            let page = self.security.get(url).await;
            if page.body.contains("outstanding (0 offline)") && page.body.contains(" 0 outstanding") {
                done = true;
                assert!(
                    !page.body.contains("http-equiv=\"refresh\""),
                    "no refresh once done"
                );
                break;
            }
            assert!(
                page.body.contains("http-equiv=\"refresh\""),
                "live progress while containing"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(done, "containment never completed");
    }
}

#[tokio::test]
async fn a_bad_incident_scope_in_the_console_is_refused_and_the_form_keeps_what_was_typed() {
    let mut people = TwoPeople::start().await;
    let csrf = people.admin.get("/incidents").await.csrf();
    let bad = people
        .admin
        .post(
            "/incidents",
            &[
                ("csrf", &csrf),
                ("title", "Ransomware in ICU"),
                ("scope", "site within"),
                ("severity", "critical"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("id=\"declare-error\""));
    assert!(
        bad.body.contains("value=\"Ransomware in ICU\""),
        "the form keeps what was typed"
    );
    people.kit.finish().await;
}

#[tokio::test]
async fn the_console_preview_puts_clinical_impact_first() {
    let mut people = TwoPeople::start().await;
    let (url, _) = people.declared().await;
    let page = people.admin.get(&url).await;
    page.assert_safe();
    let impact = page.body.find("Clinical impact first").unwrap();
    let devices = page.body.find("Devices and actions").unwrap();
    assert!(impact < devices);
    assert!(page.body.contains("<strong>1</strong> life-sustaining"));
    assert!(page.body.contains("Ransomware in ICU &#60;b&#62;"));
    people.kit.finish().await;
}

#[tokio::test]
async fn in_the_console_the_declarer_may_not_approve_and_a_second_person_approves_and_contains() {
    let mut people = TwoPeople::start().await;
    let (url, csrf) = people.declared().await;
    let refused = people
        .admin
        .post(&format!("{url}/approve"), &[("csrf", &csrf)])
        .await;
    let shown = people.admin.get(refused.location()).await;
    assert!(
        shown.body.contains("refused: the declarer may not approve"),
        "{}",
        shown.body
    );
    people.contained(&url).await;
    assert!(!people.ws.got("quarantine").is_empty());
    assert!(!people.pump.got("quarantine").is_empty());
    assert!(
        people.pump.got("shutdown").is_empty(),
        "the pump is only isolated"
    );
    let audit = people.kit.audit("incident.approve").await;
    assert!(
        audit
            .iter()
            .any(|e| e["actor"].as_str().unwrap().starts_with("user:sam") && e["outcome"] == "success")
    );
    assert!(
        audit
            .iter()
            .any(|e| e["actor"].as_str().unwrap().starts_with("user:admin") && e["outcome"] == "denied")
    );
    people.kit.finish().await;
}

#[tokio::test]
async fn an_incident_is_lifted_closed_and_reported_from_the_console() {
    let mut people = TwoPeople::start().await;
    let (url, csrf) = people.declared().await;
    people.contained(&url).await;
    let admin = &mut people.admin;
    let lifted = admin.post(&format!("{url}/lift"), &[("csrf", &csrf)]).await;
    assert!(lifted.location().contains("lifting"), "{}", lifted.location());
    let bad_close = admin
        .post(
            &format!("{url}/close"),
            &[
                ("csrf", &csrf),
                ("nature", "x"),
                ("contact_point", "dpo"),
                ("likely_consequences", "y"),
                ("data_subjects", "many"),
            ],
        )
        .await;
    assert!(
        admin
            .get(bad_close.location())
            .await
            .body
            .contains("data_subjects: a whole number")
    );
    let closed = admin
        .post(
            &format!("{url}/close"),
            &[
                ("csrf", &csrf),
                ("nature", "Ransomware encrypted two ICU workstations"),
                ("contact_point", "dpo@st-marys.example"),
                ("likely_consequences", "Delayed care; no evidence of exfiltration"),
                ("data_subjects", "120"),
                ("records", "400"),
            ],
        )
        .await;
    assert!(
        admin
            .get(closed.location())
            .await
            .body
            .contains("id=\"incident-state\">closed")
    );
    let report = admin.get(&format!("{url}/report")).await;
    assert_eq!(report.status, StatusCode::OK);
    report.assert_safe();
    assert!(report.body.contains("Ransomware encrypted two ICU workstations"));
    assert!(report.body.contains("dpo@st-marys.example"));
    people.kit.finish().await;
}
