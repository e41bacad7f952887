//! Policies through the API with connected devices: dry run with no side effects, apply
//! (versioned, audited), evaluation when facts change, settings pushed as signed commands,
//! remediation after the grace period with a controlled clock (life-sustaining devices only
//! notified), HMAC-signed webhooks, dynamic groups, compliance filters and summaries, and the
//! bad-input cases.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use ward_testkit::agent::SimulatedDevice;
use ward_testkit::{Backend, Kit, Reply};

const SECRET: &str = "webhook secret 0123456789";

fn facts(encrypted: bool) -> Value {
    json!({"agent_version": "0.1.0", "os": {"id": "debian", "version_id": "12"},
           "disks": {"devices": [], "crypt_mappings": [], "root_filesystem": {"device": "/dev/sda2", "fs_type": "ext4", "encrypted": encrypted}},
           "firewall": {"active": true, "backends": []}})
}

const POLICY_V1: &str = "\
# Patient data at rest is encrypted.
name: encryption
description: PHI devices encrypt their disks
scope: 'phi = true'
checks:
  - id: root-encrypted
    description: The root filesystem is encrypted
    severity: critical
    expr: 'facts.disks.root_filesystem.encrypted = true'
    hint: Re-image with LUKS
settings:
  usb_storage_blocked: true
  screen_lock_timeout_seconds: 600
remediation:
  action: quarantine
  grace: 1h
";

const STRICTER: &str = "\
name: screen-lock
scope: 'class = \"workstation\"'
settings:
  screen_lock_timeout_seconds: 300
";

fn files(list: &[(&str, &str)]) -> Value {
    Value::Array(
        list.iter()
            .map(|(path, text)| json!({"path": path, "text": text}))
            .collect(),
    )
}

async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    for _ in 0..150 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}

async fn status_of(kit: &Kit, id: &str) -> String {
    let reply = kit
        .admin(Method::GET, &format!("/devices/{id}/compliance"), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body["status"].as_str().unwrap().to_owned()
}

/// Receives webhook POSTs on loopback, checking each signature; returns the verified bodies.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buffer).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let headers = text[..end].to_ascii_lowercase();
                    let header = |name: &str| {
                        headers
                            .lines()
                            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(|v| v.trim().to_owned()))
                    };
                    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                    if buffer.len() < end + 4 + length {
                        continue;
                    }
                    let body = &buffer[end + 4..end + 4 + length];
                    let timestamp: i64 = header("x-ward-timestamp")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let signature = header("x-ward-signature").unwrap_or_default();
                    let valid = ward_core::webhooks::verify(SECRET, timestamp, body, &signature);
                    let answer: &[u8] = if valid {
                        store
                            .lock()
                            .unwrap()
                            .push(serde_json::from_slice(body).unwrap_or(Value::Null));
                        b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"
                    } else {
                        b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    };
                    let _ = socket.write_all(answer).await;
                    return;
                }
            });
        }
    });
    (url, received)
}

/// Four connected devices that reported their facts, on a server that checks remediation every
/// second and sends webhooks to a receiver that checks their signatures.
struct PolicyFleet {
    kit: Kit,
    hooks: Arc<Mutex<Vec<Value>>>,
    /// A PHI workstation in the ICU with an encrypted disk.
    good: SimulatedDevice,
    /// A PHI workstation in the ICU without.
    bad: SimulatedDevice,
    /// A life-sustaining PHI pump in the ICU without.
    pump: SimulatedDevice,
    /// A workstation in General (no PHI) without.
    kiosk: SimulatedDevice,
}

async fn policy_fleet() -> PolicyFleet {
    let (hook_url, hooks) = webhook_receiver().await;
    let kit = Kit::start_with(&Backend::Sqlite, |config| {
        config.policy.remediation_interval_ms = 1000;
        config.policy.webhooks = vec![ward_core::config::WebhookConfig {
            url: hook_url.clone(),
            secret: SECRET.into(),
        }];
    })
    .await;
    kit.create_sites().await;
    let stations = kit
        .enroll_token(json!({"site": "st-marys/icu", "class": "workstation", "phi": true, "uses": 5}))
        .await;
    let pumps = kit
        .enroll_token(
            json!({"site": "st-marys/icu", "class": "medical", "criticality": "life-sustaining", "phi": true, "uses": 5}),
        )
        .await;
    let kiosks = kit
        .enroll_token(json!({"site": "general", "class": "workstation", "uses": 5}))
        .await;
    let good = SimulatedDevice::connect(&kit, kit.enrolled(&stations, "ws-good").await).await;
    let bad = SimulatedDevice::connect(&kit, kit.enrolled(&stations, "ws-bad").await).await;
    let pump = SimulatedDevice::connect(&kit, kit.enrolled(&pumps, "pump-1").await).await;
    let kiosk = SimulatedDevice::connect(&kit, kit.enrolled(&kiosks, "kiosk-1").await).await;
    good.report(facts(true)).await;
    bad.report(facts(false)).await;
    pump.report(facts(false)).await;
    kiosk.report(facts(false)).await;
    eventually("facts stored", || async {
        let reply = kit
            .admin(Method::GET, &format!("/devices/{}", bad.id), None)
            .await;
        reply.body["device"]["facts"]["disks"].is_object()
    })
    .await;
    PolicyFleet {
        kit,
        hooks,
        good,
        bad,
        pump,
        kiosk,
    }
}

/// Applies these policy files (or only previews them).
async fn apply(kit: &Kit, list: &[(&str, &str)], dry_run: bool) -> Reply {
    let mut body = json!({"files": files(list)});
    if dry_run {
        body["dry_run"] = json!(true);
    }
    kit.admin(Method::POST, "/policies/apply", Some(body)).await
}

/// Both policies, version 1.
const BOTH: [(&str, &str); 2] = [("p/encryption.yaml", POLICY_V1), ("p/screen-lock.yaml", STRICTER)];

/// Applies [`BOTH`]; the apply must succeed.
async fn apply_both(kit: &Kit) -> Reply {
    let applied = apply(kit, &BOTH, false).await;
    assert_eq!(applied.status, StatusCode::OK, "{:?}", applied.body);
    applied
}

/// Moves the clock past the encryption policy's grace period and waits for its remediation:
/// the bad workstation quarantined, the pump sent a message.
async fn remediated(fleet: &PolicyFleet) {
    fleet.kit.clock.advance_ms(61 * 60_000);
    eventually("remediated", || async {
        !fleet.bad.got("quarantine").is_empty() && !fleet.pump.got("message").is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_policy_dry_run_reports_the_diff_the_compliance_changes_and_the_conflicts() {
    let PolicyFleet { kit, good, bad, .. } = policy_fleet().await;
    // Dry run: the diff and the compliance that would change.
    let dry = apply(&kit, &BOTH, true).await;
    assert_eq!(dry.status, StatusCode::OK, "{:?}", dry.body);
    assert_eq!(dry.body["added"], json!(["encryption", "screen-lock"]));
    assert_eq!(dry.body["applied"], json!(false));
    assert_eq!(
        dry.body["compliance_changes_total"],
        json!(3),
        "the kiosk only gets settings"
    );
    let after = |id: &str| {
        dry.body["compliance_changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["device_id"] == id)
            .map(|c| c["after"].as_str().unwrap().to_owned())
    };
    assert_eq!(after(&good.id).as_deref(), Some("compliant"));
    assert_eq!(after(&bad.id).as_deref(), Some("non_compliant"));
    let conflicts = dry.body["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0]["setting"], "screen_lock_timeout_seconds");
    assert_eq!(conflicts[0]["applied"], "300");
    assert_eq!(
        conflicts[0]["devices"], 2,
        "the two PHI workstations get both policies"
    );
    kit.finish().await;
}

#[tokio::test]
async fn a_policy_dry_run_stores_audits_and_pushes_nothing() {
    let PolicyFleet { kit, bad, .. } = policy_fleet().await;
    let audit_before = kit.audit("policy.apply").await.len();
    let dry = apply(&kit, &BOTH, true).await;
    assert_eq!(dry.status, StatusCode::OK, "{:?}", dry.body);
    let policies = kit.admin(Method::GET, "/policies", None).await;
    assert_eq!(policies.body, json!([]), "a dry run stores nothing");
    assert_eq!(
        kit.audit("policy.apply").await.len(),
        audit_before,
        "a dry run is not a change"
    );
    assert_eq!(status_of(&kit, &bad.id).await, "not_applicable");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(bad.got("apply-settings").is_empty(), "a dry run pushes nothing");
    kit.finish().await;
}

#[tokio::test]
async fn a_policy_apply_with_an_error_changes_nothing_and_names_file_line_and_column() {
    let kit = Kit::start(&Backend::Sqlite).await;
    for (text, expected) in [
        (
            "name: x\nscope: 'phi = true'\nchecks:\n  - id: a\n    expr: 'phi = true'\n    colour: red\n",
            "bad.yaml:6:5: ",
        ),
        (
            "name: x\nscope: 'phi = '\nchecks:\n  - id: a\n    expr: 'phi = true'\n",
            "bad.yaml:2:9: scope: at column 7",
        ),
        (
            "name: x\nscope: 'phi = true'\nchecks:\n  - id: a\n    expr: 'facts.nope = 1'\n",
            "unknown field `facts.nope`",
        ),
        (
            "name: x\nscope: 'phi = true'\nchecks:\n  - id: a\n    expr: 'phi = \"yes\"'\n",
            "is true or false",
        ),
        (
            "name: x\nscope: 'phi = true'\nsettings:\n  screen_lock_timeout_seconds: 99999\n",
            "outside 1 to 3600",
        ),
        (": : :\n", "bad.yaml:"),
    ] {
        let reply = kit
            .admin(
                Method::POST,
                "/policies/apply",
                Some(json!({"files": files(&[("bad.yaml", text)])})),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{text}: {:?}",
            reply.body
        );
        let message = reply.message();
        assert!(message.contains(expected), "{text}: {message}");
    }
    let policies = kit.admin(Method::GET, "/policies", None).await;
    assert_eq!(policies.body, json!([]), "nothing was applied");
    kit.finish().await;
}

#[tokio::test]
async fn a_policy_scope_that_matches_no_device_is_a_warning_not_an_error() {
    let kit = Kit::start(&Backend::Sqlite).await;
    kit.create_sites().await;
    let nothing =
        "name: ghosts\nscope: 'site within \"nowhere\"'\nchecks:\n  - id: a\n    expr: 'phi = true'\n";
    let warned = apply(&kit, &[("ghosts.yaml", nothing)], true).await;
    assert_eq!(warned.status, StatusCode::OK, "{:?}", warned.body);
    assert_eq!(
        warned.body["warnings"],
        json!(["policy `ghosts`: its scope matches no device"])
    );
    kit.finish().await;
}

#[tokio::test]
async fn an_empty_policy_set_or_an_unknown_request_key_is_refused() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let empty = kit
        .admin(Method::POST, "/policies/apply", Some(json!({"files": []})))
        .await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown_key = kit
        .admin(
            Method::POST,
            "/policies/apply",
            Some(json!({"files": [], "force": true})),
        )
        .await;
    assert_eq!(unknown_key.code(), "malformed_json");
    kit.finish().await;
}

#[tokio::test]
async fn applying_policies_stores_version_1_audits_once_and_evaluates_every_device() {
    let PolicyFleet {
        kit,
        good,
        bad,
        kiosk,
        ..
    } = policy_fleet().await;
    let audit_before = kit.audit("policy.apply").await.len();
    // Apply: v1 of both, one audit entry, results per device.
    let applied = apply_both(&kit).await;
    assert_eq!(
        applied.body["versions"],
        json!([{"name": "encryption", "version": 1}, {"name": "screen-lock", "version": 1}])
    );
    let audit = kit.audit("policy.apply").await;
    assert_eq!(audit.len(), audit_before + 1);
    assert!(
        audit.last().unwrap()["actor"]
            .as_str()
            .unwrap()
            .starts_with("user:admin")
    );
    assert_eq!(status_of(&kit, &good.id).await, "compliant");
    assert_eq!(status_of(&kit, &bad.id).await, "non_compliant");
    assert_eq!(status_of(&kit, &kiosk.id).await, "not_applicable");
    let detail = kit
        .admin(Method::GET, &format!("/devices/{}/compliance", bad.id), None)
        .await;
    assert_eq!(detail.body["results"][0]["check"], "root-encrypted");
    assert_eq!(detail.body["results"][0]["status"], "fail");
    assert_eq!(detail.body["results"][0]["hint"], "Re-image with LUKS");
    assert_eq!(detail.body["settings"]["screen_lock_timeout_seconds"], 300);
    kit.finish().await;
}

#[tokio::test]
async fn devices_filter_on_compliance_and_the_summary_counts_it() {
    let PolicyFleet { kit, bad, pump, .. } = policy_fleet().await;
    apply_both(&kit).await;
    let listed = kit
        .admin(
            Method::GET,
            "/devices?filter=compliance.status%20%3D%20%22non_compliant%22",
            None,
        )
        .await;
    let ids: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "the bad workstation and the pump: {ids:?}");
    assert!(ids.contains(&bad.id.as_str()) && ids.contains(&pump.id.as_str()));
    let summary = kit.admin(Method::GET, "/compliance/summary", None).await;
    assert_eq!(summary.body["total"]["devices"], 4);
    assert_eq!(summary.body["total"]["compliant"], 1);
    assert_eq!(summary.body["total"]["non_compliant"], 2);
    assert_eq!(
        summary.body["total"]["not_applicable"], 1,
        "the kiosk gets settings, no checks"
    );
    assert_eq!(summary.body["total"]["percent"], 33.3);
    kit.finish().await;
}

#[tokio::test]
async fn settings_reach_devices_as_signed_commands_and_the_strictest_wins() {
    let PolicyFleet { kit, bad, kiosk, .. } = policy_fleet().await;
    apply_both(&kit).await;
    // Strictest screen lock, USB blocked.
    eventually("settings pushed", || async {
        !bad.got("apply-settings").is_empty()
    })
    .await;
    let settings = &bad.got("apply-settings")[0];
    assert_eq!(settings["settings"]["screen_lock_timeout_seconds"], 300);
    assert_eq!(settings["settings"]["usb_storage_blocked"], true);
    assert_eq!(settings["digest"].as_str().unwrap().len(), 32);
    eventually("kiosk settings", || async {
        !kiosk.got("apply-settings").is_empty()
    })
    .await;
    assert_eq!(
        kiosk.got("apply-settings")[0]["settings"],
        json!({"screen_lock_timeout_seconds": 300})
    );
    kit.finish().await;
}

#[tokio::test]
async fn new_facts_are_evaluated_as_they_arrive() {
    let PolicyFleet { kit, bad, .. } = policy_fleet().await;
    apply_both(&kit).await;
    // The bad workstation gets encrypted, then loses it again.
    bad.report(facts(true)).await;
    eventually("re-evaluated", || async {
        status_of(&kit, &bad.id).await == "compliant"
    })
    .await;
    bad.report(facts(false)).await;
    eventually("re-evaluated", || async {
        status_of(&kit, &bad.id).await == "non_compliant"
    })
    .await;
    kit.finish().await;
}

#[tokio::test]
async fn remediation_waits_for_the_grace_period_then_quarantines_once_and_only_notifies_life_support() {
    let fleet = policy_fleet().await;
    apply_both(&fleet.kit).await;
    assert_eq!(status_of(&fleet.kit, &fleet.bad.id).await, "non_compliant");
    // Within the grace period nothing happens; after it, quarantine (the pump is only notified).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        fleet.bad.got("quarantine").is_empty(),
        "still in the grace period"
    );
    remediated(&fleet).await;
    let PolicyFleet {
        kit, good, bad, pump, ..
    } = fleet;
    assert!(
        pump.got("quarantine").is_empty(),
        "a life-sustaining device is never auto-isolated"
    );
    assert!(
        pump.got("message")[0]["text"]
            .as_str()
            .unwrap()
            .contains("encryption")
    );
    assert!(good.got("quarantine").is_empty());
    let remediations = kit.audit("policy.remediate").await;
    assert_eq!(remediations.len(), 2);
    assert!(remediations.iter().all(|r| r["actor"] == "policy:encryption"));
    // Once per lapse: the next rounds start nothing new.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(kit.audit("policy.remediate").await.len(), 2);
    assert_eq!(bad.got("quarantine").len(), 1);
    kit.finish().await;
}

#[tokio::test]
async fn a_new_policy_version_is_kept_in_history_with_a_diff() {
    let kit = Kit::start(&Backend::Sqlite).await;
    apply_both(&kit).await;
    let v2 = POLICY_V1.replace("grace: 1h", "grace: 2h");
    let applied = apply(&kit, &[("p/encryption.yaml", &v2)], false).await;
    assert_eq!(applied.body["changed"], json!(["encryption"]));
    assert_eq!(
        applied.body["versions"],
        json!([{"name": "encryption", "version": 2}])
    );
    let again = apply(&kit, &[("p/encryption.yaml", &v2)], false).await;
    assert_eq!(again.body["unchanged"], json!(["encryption"]));
    assert_eq!(
        again.body["applied"],
        json!(false),
        "applying the same text stores nothing"
    );
    let history = kit.admin(Method::GET, "/policies/encryption/history", None).await;
    assert_eq!(history.body.as_array().unwrap().len(), 2);
    let diff = kit
        .admin(Method::GET, "/policies/encryption/diff?from=1&to=2", None)
        .await;
    let text = diff.body["diff"].as_str().unwrap();
    assert!(
        text.contains("-  grace: 1h") && text.contains("+  grace: 2h"),
        "{text}"
    );
    let missing = kit
        .admin(Method::GET, "/policies/encryption/diff?from=1&to=9", None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let bad_query = kit
        .admin(Method::GET, "/policies/encryption/diff?from=x&to=2", None)
        .await;
    assert_eq!(bad_query.status, StatusCode::UNPROCESSABLE_ENTITY);
    let nobody = kit.admin(Method::GET, "/policies/..%2Fetc/history", None).await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND);
    kit.finish().await;
}

#[tokio::test]
async fn pruning_removes_what_the_files_no_longer_hold_and_the_removal_is_a_version() {
    let PolicyFleet { kit, .. } = policy_fleet().await;
    apply_both(&kit).await;
    let pruned = kit
        .admin(
            Method::POST,
            "/policies/apply",
            Some(json!({"files": files(&[("p/encryption.yaml", POLICY_V1)]), "prune": true})),
        )
        .await;
    assert_eq!(pruned.body["removed"], json!(["screen-lock"]));
    let history = kit
        .admin(Method::GET, "/policies/screen-lock/history", None)
        .await;
    assert_eq!(history.body[1]["removed"], true);
    let listed = kit.admin(Method::GET, "/policies", None).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert_eq!(listed.body[0]["devices_in_scope"], 3);
    kit.finish().await;
}

#[tokio::test]
async fn a_group_is_usable_in_device_filters_and_is_deleted_once() {
    let PolicyFleet { kit, .. } = policy_fleet().await;
    // Usable in device filters (and so in incident scope).
    let group = kit
        .admin(
            Method::PUT,
            "/groups/icu",
            Some(json!({"selector": "site within \"st-marys/icu\"", "description": "ICU"})),
        )
        .await;
    assert_eq!(group.status, StatusCode::OK, "{:?}", group.body);
    assert_eq!(group.body["devices"], 3);
    let in_group = kit
        .admin(Method::GET, "/devices?filter=groups%20%3D%20%22icu%22", None)
        .await;
    assert_eq!(in_group.body.as_array().unwrap().len(), 3);
    let deleted = kit.admin(Method::DELETE, "/groups/icu", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let deleted = kit.admin(Method::DELETE, "/groups/icu", None).await;
    assert_eq!(deleted.status, StatusCode::NOT_FOUND);
    kit.finish().await;
}

#[tokio::test]
async fn group_selectors_on_compliance_or_groups_and_bad_group_names_are_refused() {
    let kit = Kit::start(&Backend::Sqlite).await;
    for bad_selector in [
        "compliance.status = \"compliant\"",
        "groups = \"icu\"",
        "colour = 1",
        "site =",
    ] {
        let reply = kit
            .admin(
                Method::PUT,
                "/groups/loop",
                Some(json!({"selector": bad_selector})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad_selector}");
    }
    let reply = kit
        .admin(
            Method::PUT,
            "/groups/Bad%20Name",
            Some(json!({"selector": "phi = true"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    kit.finish().await;
}

#[tokio::test]
async fn helpdesk_reads_policies_but_neither_helpdesk_nor_a_site_limited_user_may_apply() {
    let kit = Kit::start(&Backend::Sqlite).await;
    kit.create_sites().await;
    let helpdesk = kit.user("helen", "helpdesk", &[]).await;
    let reply = kit.call(Method::GET, "/policies", Some(&helpdesk), None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = kit
        .call(
            Method::POST,
            "/policies/apply",
            Some(&helpdesk),
            Some(json!({"files": files(&[("a.yaml", STRICTER)])})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let limited = kit.user("sam", "security", &["general"]).await;
    let reply = kit
        .call(
            Method::POST,
            "/policies/apply",
            Some(&limited),
            Some(json!({"files": files(&[("a.yaml", STRICTER)])})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    kit.finish().await;
}

#[tokio::test]
async fn compliance_changes_and_remediations_arrive_as_signed_webhooks() {
    let fleet = policy_fleet().await;
    apply_both(&fleet.kit).await;
    remediated(&fleet).await;
    // The receiver refuses bad signatures, so what it kept was signed.
    let (hooks, bad) = (&fleet.hooks, &fleet.bad);
    eventually("webhooks", || async {
        let hooks = hooks.lock().unwrap();
        let events: Vec<&Value> = hooks
            .iter()
            .flat_map(|b| b["events"].as_array().unwrap().iter())
            .collect();
        events
            .iter()
            .any(|e| e["event"] == "compliance.changed" && e["device_id"] == bad.id.as_str())
            && events
                .iter()
                .any(|e| e["event"] == "compliance.remediated" && e["action"] == "quarantine")
    })
    .await;
    fleet.kit.finish().await;
}
