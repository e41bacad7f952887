//! The real thing: a `ward server` process and `ward-agent` processes over loopback — enrollment,
//! live inventory of this machine, online/offline, and revocation cutting the device off.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const AGENT: &str = env!("CARGO_BIN_EXE_ward-agent");

/// The `ward` binary, built by `cargo test --workspace` beside this crate's binaries.
pub fn ward_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let ward = dir.join("ward");
    assert!(
        ward.exists(),
        "{} is missing: run `cargo build -p ward` (cargo test --workspace builds it)",
        ward.display()
    );
    ward
}

pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The admin password the harness sets at first start.
pub const ADMIN_PASSWORD: &str = "agent test admin 1";

pub struct Server {
    _process: Proc,
    pub url: String,
    pub fingerprint: String,
    http: reqwest::blocking::Client,
    pub token: String,
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Self::start_on(data_dir, "127.0.0.1:0", "127.0.0.1:0", None)
    }

    /// Starts on fixed addresses; `password` is the admin's when the data directory already has
    /// one (a restart), else the one-time password printed at first start is changed.
    pub fn start_on(data_dir: &Path, listen: &str, agent_listen: &str, known: Option<&str>) -> Server {
        let mut child = Command::new(ward_binary())
            .args([
                "server",
                "--listen",
                listen,
                "--agent-listen",
                agent_listen,
                "--lwm2m-listen",
                "off",
                "--lwm2m-dtls-listen",
                "off",
                "--heartbeat-seconds",
                "1",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .env("WARD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (mut url, mut fingerprint, mut password) = (String::new(), String::new(), String::new());
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("Ward server listening on ") {
                url = rest.trim().to_owned();
            } else if let Some(rest) = line.strip_prefix("CA fingerprint (SHA-256): ") {
                fingerprint = rest.trim().to_owned();
                if known.is_some() {
                    break; // a restart prints no new password
                }
            } else if let Some(rest) = line.trim().strip_prefix("password: ") {
                password = rest.trim().to_owned();
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = std::fs::read(data_dir.join("ca.crt")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_slice(&ca).unwrap())
            .unwrap();
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .unwrap();
        let mut server = Server {
            _process: Proc(child),
            url,
            fingerprint,
            http,
            token: String::new(),
        };
        let password = known.map_or(password, str::to_owned);
        let login = server.post(
            "/auth/cli-login",
            json!({"username": "admin", "password": password}),
        );
        server.token = login["secret"].as_str().unwrap().to_owned();
        if password != ADMIN_PASSWORD {
            server.post(
                "/auth/password",
                json!({"current_password": password, "new_password": ADMIN_PASSWORD}),
            );
        }
        server
    }

    pub fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .unwrap();
        let status = response.status();
        let text = response.text().unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().unwrap()
    }

    /// Waits until the device list satisfies `check`.
    pub fn wait_for(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let devices = self.get("/devices");
            if check(&devices) {
                return devices;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {devices}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

pub fn agent(args: &[&str]) -> Output {
    Command::new(AGENT)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn spawn_agent(state_dir: &Path) -> Proc {
    Proc(
        Command::new(AGENT)
            .args(["run", "--facts-interval", "1", "--state-dir"])
            .arg(state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn an_agent_enrolls_streams_inventory_goes_offline_and_is_cut_off_by_revocation() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&data.path().join("server"));
    server.post("/sites", json!({"slug": "st-marys", "name": "St Mary's"}));
    server.post("/sites", json!({"slug": "st-marys/icu", "name": "ICU"}));
    let created = server.post(
        "/enroll-tokens",
        json!({"site": "st-marys/icu", "class": "workstation", "criticality": "high", "phi": true, "expires": "1h", "uses": 1}),
    );
    let token = created["secret"].as_str().unwrap().to_owned();
    let state_dir = data.path().join("agent");
    let state = state_dir.to_str().unwrap();

    // Bad input first: a wrong token and a wrong CA pin enroll nothing.
    let wrong = agent(&[
        "enroll",
        "--server",
        &server.url,
        "--token",
        "wardenroll_00000000000000000000000000000000_x",
        "--ca-fingerprint",
        &server.fingerprint,
        "--state-dir",
        state,
    ]);
    assert_eq!(
        wrong.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    let pin = agent(&[
        "enroll",
        "--server",
        &server.url,
        "--token",
        &token,
        "--ca-fingerprint",
        &"0".repeat(64),
        "--state-dir",
        state,
    ]);
    assert_eq!(
        pin.status.code(),
        Some(1),
        "a wrong CA pin is refused before the token is sent"
    );

    let enrolled = agent(&[
        "enroll",
        "--server",
        &server.url,
        "--token",
        &token,
        "--ca-fingerprint",
        &server.fingerprint,
        "--state-dir",
        state,
        "--hostname",
        "icu-ws-01",
    ]);
    assert_eq!(
        enrolled.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&enrolled.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(state_dir.join("device.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(key_mode, 0o600, "the device key stays private");
    let again = agent(&[
        "enroll",
        "--server",
        &server.url,
        "--token",
        &token,
        "--ca-fingerprint",
        &server.fingerprint,
        "--state-dir",
        data.path().join("other").to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1), "a single-use token is spent");

    // Online with this machine's real inventory.
    let running = spawn_agent(&state_dir);
    let devices = server.wait_for("online with facts", |d| {
        d[0]["online"] == true && d[0]["facts"]["kernel"].is_object() && d[0]["facts"]["hostname"].is_string()
    });
    let device = &devices[0];
    assert_eq!(device["hostname"], "icu-ws-01");
    assert_eq!(device["site"], "st-marys/icu");
    assert_eq!(
        (device["class"].as_str(), device["phi"].as_bool()),
        (Some("workstation"), Some(true))
    );
    assert!(
        device["facts"]["memory"]["total_bytes"].as_u64().unwrap_or(0) > 0,
        "{}",
        device["facts"]
    );
    let id = device["id"].as_str().unwrap().to_owned();
    let filtered = server.get("/devices?filter=class%20%3D%20%22workstation%22%20and%20phi%20%3D%20true");
    assert_eq!(filtered.as_array().unwrap().len(), 1);

    // Offline after missed heartbeats, online again on reconnect.
    drop(running);
    server.wait_for("offline", |d| d[0]["online"] == false);
    let running = spawn_agent(&state_dir);
    server.wait_for("online again", |d| d[0]["online"] == true);

    // Revocation cuts the live stream and refuses every later connection.
    server.post(&format!("/devices/{id}/revoke"), json!({}));
    server.wait_for("offline after revocation", |d| {
        d[0]["online"] == false && d[0]["state"] == "revoked"
    });
    drop(running);
    let retry = Command::new(AGENT)
        .args(["run", "--state-dir", state])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut retry = Proc(retry);
    let mut stderr = BufReader::new(retry.0.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("refused") && line.contains("revoked"), "{line}");
    let audit = server.get("/audit?action=device.&limit=1000");
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for wanted in ["device.enroll", "device.revoke", "device.connect"] {
        assert!(actions.contains(&wanted), "{wanted} audited: {actions:?}");
    }
}
