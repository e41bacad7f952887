//! The console in a real browser: Debian's headless Chromium driven through chromedriver, against a
//! real server and a simulated fleet of real, sandboxed agents. Covers login with MFA, device
//! search, a lock on a sandboxed agent, and the incident flow from declare to report with two
//! people. With `WARD_SCREENSHOTS=DIR` it also saves the screenshots shown in the README.
//!
//! Without chromedriver and chromium on the machine the test is skipped with a printed reason,
//! unless `WARD_TEST_BROWSER` is set (`.ci/run` sets it), which makes a missing browser a failure.
//! When they are installed the test runs, and a browser that does not start fails it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use ward_client::Trust;
use ward_proto::{ChangePasswordRequest, LoginRequest};

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first of chromedriver and chromium that is not installed, with how to install it.
fn missing_browser() -> Option<String> {
    ["chromedriver", "chromium"].into_iter().find_map(|program| {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        (!found).then(|| format!("{program} is not installed (apt-get install chromium chromium-driver)"))
    })
}

/// Starts chromedriver (installed: a failure to start it fails the test).
fn start_driver() -> (Driver, String) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start listening");
        std::thread::sleep(Duration::from_millis(100));
    }
    (driver, format!("http://127.0.0.1:{port}"))
}

async fn browser(webdriver: &str) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--lang=en-GB"]}),
    );
    // The test server's certificate comes from its own CA, which this browser does not know.
    caps.insert("acceptInsecureCerts".into(), json!(true));
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(webdriver)
        .await
        .expect("a chromedriver session")
}

struct Shots(Option<PathBuf>);

impl Shots {
    async fn take(&self, client: &Client, name: &str) {
        if let Some(dir) = &self.0 {
            let png = client.screenshot().await.unwrap();
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }
}

async fn fill(client: &Client, id: &str, text: &str) {
    let field = client.find(Locator::Id(id)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn submit(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn body(client: &Client) -> String {
    client.source().await.unwrap()
}

async fn login(client: &Client, base: &str, username: &str, password: &str, code: Option<String>) {
    client.goto(&format!("{base}/login")).await.unwrap();
    fill(client, "username", username).await;
    fill(client, "password", password).await;
    if let Some(code) = code {
        fill(client, "code", &code).await;
    }
    submit(client, "form[action='/login'] button[type=submit]").await;
}

/// Waits for a navigation to `path`.
async fn wait_path(client: &Client, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if client.current_url().await.unwrap().path() == path {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never got to {path}: {}",
            body(client).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (without reloading) until the page contains `text`.
async fn wait_text(client: &Client, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let page = body(client).await;
        if page.contains(text) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed {text:?}: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reloads until the page contains `text`.
async fn wait_for(client: &Client, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = body(client).await;
        if page.contains(text) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed {text:?}: {page}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.refresh().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_browser() {
    let required = std::env::var_os("WARD_TEST_BROWSER").is_some_and(|v| !v.is_empty());
    if let Some(missing) = missing_browser() {
        assert!(!required, "WARD_TEST_BROWSER is set but {missing}");
        // Straight to stderr: the harness would hide an eprintln! of a passing test.
        std::io::stderr()
            .write_all(
                format!("skipping the_console_in_a_browser: WARD_TEST_BROWSER is not set and {missing}\n")
                    .as_bytes(),
            )
            .unwrap();
        return;
    }
    let (_driver, webdriver) = start_driver();
    let shots = Shots(std::env::var_os("WARD_SCREENSHOTS").map(PathBuf::from));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let config = ward_server::Config::for_data_dir(&dir.path().join("server"));
    let server = ward_server::start(config).await.unwrap();
    let base = server.url();
    let (_, one_time) = server.initial_admin.clone().unwrap();

    // The admin's password is set through the console itself (the one-time password forces it).
    let admin = browser(&webdriver).await;
    login(&admin, &base, "admin", &one_time, None).await;
    wait_path(&admin, "/password").await;
    fill(&admin, "current_password", &one_time).await;
    fill(&admin, "new_password", "admin password 123").await;
    fill(&admin, "repeat_password", "admin password 123").await;
    submit(&admin, "form[action='/password'] button[type=submit]").await;
    wait_path(&admin, "/").await;

    // Through the API: TOTP for the admin, a security colleague, a fleet, the baseline policies.
    let api = ward_client::Client::new(&base, &Trust::CaPem(server.ca_cert_pem.clone())).unwrap();
    let token = api
        .cli_login(&LoginRequest {
            username: "admin".into(),
            password: "admin password 123".into(),
            totp_code: None,
            recovery_code: None,
            token_name: Some("e2e".into()),
            expires_in_days: Some(1),
        })
        .await
        .unwrap();
    let api = api.with_token(token.secret.clone());
    let options = ward_sim::SimOptions {
        server: base.clone(),
        token: token.secret.clone(),
        ca_fingerprint: server.ca_fingerprint.clone(),
        devices: 24,
        dir: dir.path().join("fleet"),
        concurrency: 8,
        prefix: String::new(),
        churn: 0.0,
        source_addresses: 0,
        idle_executions: false,
    };
    let fleet = ward_sim::start(&options, &mut |_| {}).await.unwrap();
    api.apply_policies(&ward_proto::ApplyPoliciesRequest {
        files: ward_service::baseline::files(),
        dry_run: false,
        prune: false,
    })
    .await
    .unwrap();
    let created = api
        .create_user(&serde_json::from_value(json!({"username": "sam", "role": "security"})).unwrap())
        .await
        .unwrap();
    let sam_password = created.initial_password.unwrap();
    {
        let sam = ward_client::Client::new(&base, &Trust::CaPem(server.ca_cert_pem.clone())).unwrap();
        let sam_token = sam
            .cli_login(&LoginRequest {
                username: "sam".into(),
                password: sam_password.clone(),
                totp_code: None,
                recovery_code: None,
                token_name: None,
                expires_in_days: None,
            })
            .await
            .unwrap();
        sam.with_token(sam_token.secret)
            .change_password(&ChangePasswordRequest {
                current_password: sam_password,
                new_password: "sam password 1234".into(),
            })
            .await
            .unwrap();
    }
    let enrolment = api.totp_enrol().await.unwrap();
    let secret = totp_rs::Secret::try_from_base32(&enrolment.secret)
        .unwrap()
        .as_ref()
        .to_vec();
    let clock = ward_core::state::SystemClock;
    let now = || ward_domain::clock::Clock::now_ms(&clock);
    api.totp_confirm(&ward_proto::TotpConfirmRequest {
        code: ward_core::auth::totp_now(&secret, now()),
    })
    .await
    .unwrap();

    // Login with MFA: without the code the page asks for it; the next period's code gets in.
    admin.goto(&format!("{base}/login")).await.unwrap();
    login(&admin, &base, "admin", "admin password 123", None).await;
    wait_text(&admin, "needs a TOTP code").await;
    shots.take(&admin, "login").await;
    tokio::time::sleep(Duration::from_millis((30_000 - now() % 30_000 + 200) as u64)).await;
    login(
        &admin,
        &base,
        "admin",
        "admin password 123",
        Some(ward_core::auth::totp_now(&secret, now())),
    )
    .await;
    let page = wait_text(&admin, "Riskiest devices").await;
    assert!(page.contains("open incidents"));
    shots.take(&admin, "dashboard").await;

    // Device search with the selector language, a parse error shown inline first.
    admin.goto(&format!("{base}/devices")).await.unwrap();
    fill(&admin, "filter", "class = ").await;
    submit(&admin, "form.filter button[type=submit]").await;
    wait_text(&admin, "id=\"filter-error\"").await;
    fill(
        &admin,
        "filter",
        "class = \"workstation\" and site within \"st-marys\"",
    )
    .await;
    submit(&admin, "form.filter button[type=submit]").await;
    let page = wait_text(&admin, "ws-00000").await;
    assert!(!page.contains("pump-"), "only workstations are listed");
    shots.take(&admin, "devices").await;

    // Lock the sandboxed workstation through the confirm step; its agent records the lock.
    admin
        .find(Locator::LinkText("ws-00000"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&admin, "Settings pushed").await;
    shots.take(&admin, "device").await;
    admin
        .find(Locator::LinkText("Lock"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&admin, "Lock: ws-00000?").await;
    submit(&admin, "form button.danger").await;
    let page = wait_text(&admin, "lock queued").await;
    assert!(page.contains("<td>lock</td>"));
    wait_for(&admin, "succeeded").await;
    let sandbox = fleet.sandbox_dir(0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_dir(&sandbox)
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("\"lock\"")))
        })
        .unwrap_or(false)
    {
        assert!(
            Instant::now() < deadline,
            "the agent never recorded the lock in {}",
            sandbox.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // An incident from declare to report: the admin declares, the security colleague approves
    // and contains, the admin lifts, closes and reads the report.
    admin.goto(&format!("{base}/incidents")).await.unwrap();
    fill(&admin, "title", "Ransomware on ICU workstations").await;
    fill(&admin, "scope", "site within \"st-marys/icu\"").await;
    fill(&admin, "description", "Encrypted files found on a nurse station").await;
    submit(&admin, "form[action='/incidents'] button[type=submit]").await;
    let page = wait_text(&admin, "Clinical impact first").await;
    assert!(page.contains("life-sustaining"));
    let incident_url = admin.current_url().await.unwrap().to_string();
    shots.take(&admin, "incident-preview").await;
    submit(&admin, "#approve").await;
    wait_text(&admin, "refused: the declarer may not approve").await;

    let sam = browser(&webdriver).await;
    login(&sam, &base, "sam", "sam password 1234", None).await;
    wait_path(&sam, "/").await;
    sam.goto(&incident_url).await.unwrap();
    submit(&sam, "#approve").await;
    wait_text(&sam, "id=\"incident-state\">approved").await;
    submit(&sam, "#contain").await;
    wait_text(&sam, "containment started").await;
    let page = wait_for(&sam, "outstanding (0 offline)").await;
    assert!(page.contains("containment started"), "{page}");
    wait_for(&sam, " 0 outstanding").await;
    shots.take(&sam, "incident-contained").await;
    sam.close().await.unwrap();

    admin.goto(&incident_url).await.unwrap();
    submit(&admin, "#lift").await;
    wait_text(&admin, "lifting").await;
    fill(
        &admin,
        "nature",
        "Ransomware encrypted files on two ICU workstations",
    )
    .await;
    fill(&admin, "contact_point", "dpo@st-marys.example").await;
    fill(
        &admin,
        "likely_consequences",
        "Delayed care; no evidence of exfiltration",
    )
    .await;
    fill(&admin, "data_subjects", "120").await;
    submit(&admin, "#close").await;
    wait_text(&admin, "id=\"incident-state\">closed").await;
    admin
        .find(Locator::Id("report-link"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let page = wait_text(&admin, "id=\"report\"").await;
    assert!(page.contains("dpo@st-marys.example"));
    shots.take(&admin, "report").await;

    // The other main pages, for the record.
    admin.goto(&format!("{base}/policies")).await.unwrap();
    wait_for(&admin, "phi-disk-encryption").await;
    shots.take(&admin, "policies").await;
    admin.goto(&format!("{base}/audit")).await.unwrap();
    wait_for(&admin, "incident.close").await;
    shots.take(&admin, "audit").await;
    admin.close().await.unwrap();
    drop(fleet);
}
