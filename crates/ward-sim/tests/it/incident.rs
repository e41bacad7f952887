//! The incident flow over a simulated hospital of 220 sandboxed agents of mixed classes, against
//! a real server: the clinical-impact preview, the refusal without a second approver, containment
//! to 100% acknowledged with time-to-contain, lifting, closing and the breach report.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use ward_sim::{SimOptions, sandbox_records};

/// A real server in a temporary directory, with the admin's password changed and logged in. Not
/// `ward_testkit::Kit`: the simulated agents live in real time (heartbeats, reconnects, measured
/// time to contain), so this server keeps the system clock where the kit's is manual.
pub struct Running {
    pub dir: tempfile::TempDir,
    pub server: ward_server::Server,
    pub api: Api,
    /// The admin's session token.
    pub admin: String,
}

impl Running {
    pub async fn start(adjust: impl FnOnce(&mut ward_core::config::Config)) -> Running {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let mut config = ward_core::config::Config::for_data_dir(&dir.path().join("server"));
        adjust(&mut config);
        let server = ward_server::start(config).await.unwrap();
        let (_, password) = server.initial_admin.clone().unwrap();
        let api = Api {
            http: ward_testkit::client_for(&server.ca_cert_pem),
            url: server.url(),
        };
        let admin = api.login("admin", &password).await;
        let (status, _) = api
            .post(
                "/auth/password",
                &admin,
                json!({"current_password": password, "new_password": "simulated admin 1"}),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        Running {
            dir,
            server,
            api,
            admin,
        }
    }
}

pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
}

impl Api {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/api/v1{path}", self.url))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body)).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, token, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    pub async fn login(&self, username: &str, password: &str) -> String {
        let (status, body) = self
            .post(
                "/auth/cli-login",
                "",
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["secret"].as_str().unwrap().to_owned()
    }

    pub async fn wait(&self, what: &str, path: &str, token: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let body = self.get(path, token).await;
            if done(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

const DEVICES: usize = 220;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_is_contained_across_a_simulated_hospital_and_reported() {
    let Running {
        dir,
        server,
        api,
        admin,
    } = Running::start(|config| config.heartbeat_ms = 2_000).await;
    let (status, _) = api
        .post(
            "/users",
            &admin,
            json!({"username": "sam", "role": "security", "password": "security password 1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let sam = api.login("sam", "security password 1").await;

    let options = SimOptions {
        server: server.url(),
        token: admin.clone(),
        ca_fingerprint: server.ca_fingerprint.clone(),
        devices: DEVICES,
        dir: dir.path().join("fleet"),
        concurrency: 8,
        prefix: String::new(),
        churn: 0.0,
        // The devices connect from four loopback addresses, as a 100 000-device run does.
        source_addresses: 4,
        idle_executions: false,
    };
    let fleet = ward_sim::start(&options, &mut |line| eprintln!("{line}"))
        .await
        .unwrap();
    assert_eq!(fleet.len(), DEVICES);
    api.wait("every device online", "/devices", &admin, |d| {
        d.as_array()
            .unwrap()
            .iter()
            .filter(|d| d["online"] == true)
            .count()
            == DEVICES
    })
    .await;

    // Declare over both hospitals with the default plan.
    let (status, incident) = api
        .post(
            "/incidents",
            &admin,
            json!({"title": "Ransomware spreading from ED workstations", "severity": "critical",
                   "scope": "site within \"st-marys\" or site within \"general\""}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{incident}");
    let id = incident["id"].as_str().unwrap().to_owned();

    let preview = api.get(&format!("/incidents/{id}/preview"), &admin).await;
    let impact = &preview["clinical_impact"];
    assert_eq!(impact["life_sustaining"].as_u64(), Some(3 * DEVICES as u64 / 20));
    assert_eq!(impact["wards"][0]["site"], "st-marys/icu", "{impact}");
    assert_eq!(preview["devices"].as_array().unwrap().len(), DEVICES);
    assert_eq!(
        preview["devices"][0]["criticality"], "life-sustaining",
        "clinical impact first"
    );
    assert_eq!(preview["needs_second_approval"], false);
    // High-criticality medical devices (scanners, monitors) are shut down only after a clinician confirms.
    assert_eq!(
        preview["needs_clinician"].as_u64(),
        Some(3 * DEVICES as u64 / 20),
        "shutdowns withheld"
    );

    // With the clinician's go-ahead, 33 scanners and monitors would be shut down: more than the
    // plan's threshold of 10, so the declarer alone may not contain.
    let clinician = json!({"name": "Dr A. Byrne (radiology lead)", "reason": "no patients in the scanners"});
    let (status, refused) = api
        .post(
            &format!("/incidents/{id}/contain"),
            &admin,
            json!({"clinician": clinician}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("second approver")
    );
    let (status, _) = api
        .post(
            &format!("/incidents/{id}/approve"),
            &admin,
            json!({"clinician": clinician}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no self-approval");
    let (status, approved) = api
        .post(
            &format!("/incidents/{id}/approve"),
            &sam,
            json!({"clinician": clinician}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{approved}");

    let (status, started) = api
        .post(&format!("/incidents/{id}/contain"), &admin, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let contained = api
        .wait(
            "100% acknowledged",
            &format!("/incidents/{id}/status"),
            &admin,
            |s| s["contain"]["commands"].as_u64() > Some(0) && s["contain"]["outstanding"] == 0,
        )
        .await;
    let ttc = &contained["time_to_contain"];
    eprintln!("time to contain over {DEVICES} devices: {ttc}");
    assert_eq!(
        contained["contain"]["acknowledged"], contained["contain"]["commands"],
        "none lost"
    );
    assert_eq!(ttc["count"], contained["contain"]["commands"]);
    assert!(ttc["p99_ms"].as_i64().unwrap() >= ttc["p50_ms"].as_i64().unwrap());
    api.wait("all succeeded", &format!("/incidents/{id}/status"), &admin, |s| {
        s["contain"]["succeeded"] == s["contain"]["commands"]
    })
    .await;

    // What the devices were told: a pump only isolation, a scanner isolation and shutdown.
    let by_name = |name: &str| {
        fleet
            .devices
            .iter()
            .position(|(h, _)| h.starts_with(name))
            .unwrap()
    };
    let kinds = |index: usize| {
        let mut kinds: Vec<String> = sandbox_records(&fleet.sandbox_dir(index).unwrap())
            .iter()
            .map(|r| r["kind"].as_str().unwrap().to_owned())
            .collect();
        kinds.sort();
        kinds
    };
    assert_eq!(kinds(by_name("pump")), ["quarantine"]);
    assert_eq!(kinds(by_name("vent")), ["quarantine"]);
    assert_eq!(kinds(by_name("ct")), ["quarantine", "shutdown"]);
    assert_eq!(kinds(by_name("ws")), ["lock", "quarantine"]);

    // Lift, close, report.
    let (status, lifted) = api
        .post(&format!("/incidents/{id}/lift"), &admin, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{lifted}");
    api.wait("lifted", &format!("/incidents/{id}/status"), &admin, |s| {
        s["lift"]["commands"].as_u64() > Some(0) && s["lift"]["outstanding"] == 0
    })
    .await;
    // Acknowledged comes before carried out (the simulator runs commands on a background thread).
    api.wait(
        "lift succeeded",
        &format!("/incidents/{id}/status"),
        &admin,
        |s| s["lift"]["succeeded"] == s["lift"]["commands"],
    )
    .await;
    assert_eq!(kinds(by_name("ws")), ["lock", "quarantine", "release", "unlock"]);
    let (status, closed) = api
        .post(
            &format!("/incidents/{id}/close"),
            &admin,
            json!({"nature": "Ransomware", "data_subjects": 350, "records": 900, "phi_types": ["names"],
                   "contact_point": "dpo@st-marys.example", "likely_consequences": "Delayed care"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{closed}");
    let report = api.get(&format!("/incidents/{id}/report"), &admin).await;
    assert_eq!(report["draft"], false);
    assert_eq!(report["devices"].as_array().unwrap().len(), DEVICES);
    assert_eq!(report["hipaa"]["major_breach_500_or_more"], false);
    assert_eq!(report["audit"]["verification"]["ok"], true);
    assert!(
        report["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["encrypted"] == false)
    );
    drop(fleet);
    server.shutdown().await;
}
