//! Incidents through the API with connected devices that acknowledge and carry out their commands:
//! declare, preview (clinical impact first), the second-approver rule, contain, progress and
//! time-to-contain, lift, close and the breach report — and every refusal on the way.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use ward_proto::agent::{CommandUpdate, agent_message, server_message};

use ward_domain::command::VerifiedBatches;

use ward_testkit::agent::{channel, hello, msg, next_body, session};
use ward_testkit::{Backend, Enrolled, Kit, Reply};

use crate::commands::verify;

/// A device that checks every command as the agent does (a containment's and a lift's are signed
/// as batches), then acknowledges it and reports success, like a sandboxed agent; it refuses one
/// that does not verify or was not signed as one of a batch.
async fn obedient_device(kit: &Kit, enrolled: Enrolled) -> tokio::task::JoinHandle<()> {
    let mut client = channel(kit, &enrolled.key_pem, &enrolled.cert_pem).await.unwrap();
    let (sender, mut stream) = session(&mut client, hello(1)).await.unwrap();
    assert!(matches!(
        next_body(&mut stream).await,
        Some(server_message::Body::Welcome(_))
    ));
    let batches = VerifiedBatches::default();
    tokio::spawn(async move {
        let _client = client;
        while let Ok(Some(message)) = stream.message().await {
            let Some(server_message::Body::Command(command)) = message.body else {
                continue;
            };
            let checked = match verify(&enrolled, &command, &batches) {
                Ok(_) if command.batch_proof.is_empty() => Err("not signed as one of a batch".to_owned()),
                checked => checked,
            };
            let done = format!("{} done", command.kind);
            let replies = match checked {
                Ok(_) => vec![("acknowledged", done.clone()), ("succeeded", done)],
                Err(why) => vec![("refused", why)],
            };
            for (status, detail) in replies {
                let update = CommandUpdate {
                    command_id: command.id.clone(),
                    status: status.into(),
                    detail,
                    ..Default::default()
                };
                if sender
                    .send(msg(agent_message::Body::CommandUpdate(update)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    })
}

async fn wait_status(kit: &Kit, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let reply = kit
            .admin(Method::GET, &format!("/incidents/{id}/status"), None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        if done(&reply.body) {
            return reply.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("incident {id} never got there");
}

/// A hospital of obedient devices in St Mary's — 3 life-sustaining pumps and 2 high-criticality
/// scanners, 10 PHI workstations in the ICU, 4 PHI tablets — one more workstation that stays
/// offline, and one workstation in General.
struct Hospital {
    kit: Kit,
    agents: Vec<tokio::task::JoinHandle<()>>,
    offline: Enrolled,
}

impl Hospital {
    async fn start() -> Hospital {
        let kit = Kit::start(&Backend::Sqlite).await;
        kit.create_sites().await;
        let pumps = kit.enroll_token(json!({"site": "st-marys/icu", "class": "medical", "criticality": "life-sustaining", "phi": true, "uses": 10})).await;
        let scanners = kit
            .enroll_token(json!({"site": "st-marys", "class": "medical", "criticality": "high", "uses": 10}))
            .await;
        let stations = kit
            .enroll_token(json!({"site": "st-marys/icu", "class": "workstation", "phi": true, "uses": 20}))
            .await;
        let tablets = kit
            .enroll_token(json!({"site": "st-marys", "class": "mobile", "phi": true, "uses": 10}))
            .await;
        let elsewhere = kit
            .enroll_token(json!({"site": "general", "class": "workstation", "uses": 2}))
            .await;
        let mut agents = Vec::new();
        for (secret, prefix, count) in [
            (&pumps, "pump", 3),
            (&scanners, "ct", 2),
            (&stations, "ws", 10),
            (&tablets, "tab", 4),
        ] {
            for i in 0..count {
                let device = kit.enrolled(secret, &format!("{prefix}-{i}")).await;
                agents.push(obedient_device(&kit, device).await);
            }
        }
        // One device in scope stays offline: its commands wait.
        let offline = kit.enrolled(&stations, "ws-offline").await;
        kit.enrolled(&elsewhere, "gen-1").await;
        Hospital { kit, agents, offline }
    }

    async fn declare(&self, body: Value) -> Reply {
        self.kit.admin(Method::POST, "/incidents", Some(body)).await
    }

    /// Declares the ransomware incident over St Mary's; returns its id.
    async fn declared(&self) -> String {
        declared(&self.kit).await
    }

    /// The incident's preview.
    async fn preview(&self, id: &str) -> Value {
        let preview = self
            .kit
            .admin(Method::GET, &format!("/incidents/{id}/preview"), None)
            .await;
        assert_eq!(preview.status, StatusCode::OK, "{:?}", preview.body);
        preview.body
    }

    /// Approved by a second person (a security user) with a clinician's confirmation.
    async fn approve(&self, id: &str) -> Reply {
        let security = self.kit.user("sam", "security", &[]).await;
        self.kit
            .call(
                Method::POST,
                &format!("/incidents/{id}/approve"),
                Some(&security),
                Some(json!({"clinician": {"name": "Dr A. Byrne", "reason": "scanners idle, no patients"}})),
            )
            .await
    }

    async fn post(&self, id: &str, action: &str, body: Value) -> Reply {
        self.kit
            .admin(Method::POST, &format!("/incidents/{id}/{action}"), Some(body))
            .await
    }

    /// Declared, approved and contained, with every online device done: returns the id and the
    /// status, in which the offline station's two commands are still outstanding.
    async fn contained(&self) -> (String, Value) {
        let id = self.declared().await;
        let approved = self.approve(&id).await;
        assert_eq!(approved.status, StatusCode::OK, "{:?}", approved.body);
        let contained = self.post(&id, "contain", json!({})).await;
        assert_eq!(contained.status, StatusCode::OK, "{:?}", contained.body);
        let done = wait_status(&self.kit, &id, |s| s["contain"]["outstanding"] == 2).await;
        (id, done)
    }

    /// Contained, then lifted everywhere with every lift done: returns the id.
    async fn lifted(&self) -> String {
        let (id, _) = self.contained().await;
        let all = self.post(&id, "lift", json!({})).await;
        assert_eq!(all.body["state"], "lifted", "{:?}", all.body);
        wait_status(&self.kit, &id, |s| {
            s["lift"]["outstanding"] == 0 && s["lift"]["succeeded"].as_u64() > Some(0)
        })
        .await;
        id
    }

    async fn finish(self) {
        for agent in self.agents {
            agent.abort();
        }
        self.kit.finish().await;
    }
}

/// Declares the ransomware incident over St Mary's; returns the answer.
async fn declare_ransomware(kit: &Kit) -> Reply {
    kit.admin(
        Method::POST,
        "/incidents",
        Some(json!({
            "title": "Ransomware on St Mary's network", "severity": "critical",
            "description": "Encrypted shares found on <b>ICU</b> workstations",
            "discovered_at": "2026-09-21T08:00:00Z", "aware_at": "2026-09-21T09:00:00Z",
            "scope": "site within \"st-marys\"",
        })),
    )
    .await
}

/// Declares the ransomware incident over St Mary's; returns its id.
async fn declared(kit: &Kit) -> String {
    let declared = declare_ransomware(kit).await;
    assert_eq!(declared.status, StatusCode::CREATED, "{:?}", declared.body);
    declared.body["id"].as_str().unwrap().to_owned()
}

/// A kit with the standard sites and one enrolled life-sustaining pump in the ICU (not connected):
/// enough for declarations to have a scope.
async fn one_pump() -> Kit {
    let kit = Kit::start(&Backend::Sqlite).await;
    kit.create_sites().await;
    kit.enrolled_device("st-marys/icu", "medical", "pump-0").await;
    kit
}

/// The report's fields, as the closing form sends them.
fn report_fields() -> Value {
    json!({
        "nature": "Ransomware encrypted file shares", "data_subject_categories": ["patients"],
        "data_subjects": 1200, "records": 5400, "phi_types": ["names", "diagnoses"],
        "contact_point": "dpo@st-marys.example", "likely_consequences": "Delayed care; possible disclosure",
        "measures": "Backups restored", "revoke_certificates": false,
    })
}

#[tokio::test]
async fn bad_incident_declarations_are_refused_with_their_codes() {
    let kit = one_pump().await;
    let declare = |body: Value| kit.admin(Method::POST, "/incidents", Some(body));
    for (body, code) in [
        (json!({"title": "x", "scope": " "}), "invalid_input"),
        (
            json!({"title": "x", "scope": "hostname = \"nobody\""}),
            "invalid_input",
        ),
        (json!({"title": "x", "scope": "class = "}), "invalid_input"),
        (
            json!({"title": "", "scope": "class = \"medical\""}),
            "invalid_input",
        ),
        (
            json!({"title": "x", "scope": "class = \"medical\"", "severity": "apocalyptic"}),
            "invalid_input",
        ),
        (
            json!({"title": "x", "scope": "class = \"medical\"", "plan": "nonexistent"}),
            "invalid_input",
        ),
        (
            json!({"title": "x", "scope": "class = \"medical\"", "plan": "../etc"}),
            "invalid_input",
        ),
        (
            json!({"title": "x", "scope": "class = \"medical\"", "aware_at": "yesterday"}),
            "invalid_input",
        ),
        (
            json!({"title": "x", "scope": "class = \"medical\"", "bogus": 1}),
            "malformed_json",
        ),
    ] {
        assert_eq!(declare(body.clone()).await.code(), code, "{body}");
    }
    // The same scope is accepted: the refusals above are for what was wrong with each.
    let good = declare(json!({"title": "x", "scope": "class = \"medical\""})).await;
    assert_eq!(good.status, StatusCode::CREATED, "{:?}", good.body);
    kit.finish().await;
}

#[tokio::test]
async fn a_plan_naming_unknown_actions_or_classes_is_refused_when_it_is_used() {
    let kit = one_pump().await;
    let plans = kit.server.state.config.data_dir.join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    std::fs::write(
        plans.join("bad-action.yaml"),
        "name: bad\nrules:\n  - actions: [format-disk]\n",
    )
    .unwrap();
    std::fs::write(
        plans.join("bad-class.yaml"),
        "name: bad\nrules:\n  - when: { class: toaster }\n    actions: [lock]\n",
    )
    .unwrap();
    for plan in ["bad-action", "bad-class"] {
        let reply = kit
            .admin(
                Method::POST,
                "/incidents",
                Some(json!({"title": "x", "scope": "class = \"medical\"", "plan": plan})),
            )
            .await;
        assert_eq!(reply.code(), "invalid_input", "{plan}: {:?}", reply.body);
    }
    kit.finish().await;
}

#[tokio::test]
async fn a_declared_incident_has_its_notification_deadlines() {
    let kit = one_pump().await;
    let declared = declare_ransomware(&kit).await;
    assert_eq!(declared.status, StatusCode::CREATED, "{:?}", declared.body);
    let declared = declared.body;
    assert_eq!(declared["deadlines"]["gdpr"], "2026-09-24T09:00:00.000Z");
    assert_eq!(
        declared["deadlines"]["nis2_early_warning"],
        "2026-09-22T09:00:00.000Z"
    );
    kit.finish().await;
}

#[tokio::test]
async fn the_preview_puts_clinical_impact_first_and_isolates_life_sustaining_devices_only() {
    let hospital = Hospital::start().await;
    let id = hospital.declared().await;
    let preview = hospital.preview(&id).await;
    let impact = &preview["clinical_impact"];
    assert_eq!(
        (impact["life_sustaining"].as_u64(), impact["high"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(
        impact["wards"][0]["site"], "st-marys/icu",
        "the ward with life support first"
    );
    assert!(
        impact["losses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["loses"].as_str().unwrap().contains("alarms"))
    );
    let devices = preview["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 20);
    assert_eq!(devices[0]["criticality"], "life-sustaining");
    for device in devices.iter().filter(|d| d["criticality"] == "life-sustaining") {
        assert_eq!(device["actions"], json!(["quarantine"]));
    }
    let scanner = devices.iter().find(|d| d["hostname"] == "ct-0").unwrap();
    assert_eq!(
        scanner["withheld"][0]["action"], "shutdown",
        "shutdown only after a clinician confirms"
    );
    assert_eq!(preview["offline"], 1);
    assert_eq!(preview["actions"]["lock"], 15);
    assert_eq!(preview["needs_second_approval"], false);
    hospital.finish().await;
}

#[tokio::test]
async fn neither_the_declarer_nor_an_operator_approves_and_nothing_is_lifted_before_containment() {
    let kit = one_pump().await;
    let id = declared(&kit).await;
    let operator = kit.user("olga", "operator", &[]).await;
    let reply = kit
        .call(
            Method::POST,
            &format!("/incidents/{id}/approve"),
            Some(&operator),
            Some(json!({})),
        )
        .await;
    assert_eq!(reply.code(), "forbidden");
    let reply = kit
        .admin(Method::POST, &format!("/incidents/{id}/approve"), Some(json!({})))
        .await;
    assert_eq!(reply.code(), "forbidden", "self-approval: {:?}", reply.body);
    let lift_early = kit
        .admin(Method::POST, &format!("/incidents/{id}/lift"), Some(json!({})))
        .await;
    assert_eq!(lift_early.code(), "conflict", "lift before contain");
    kit.finish().await;
}

#[tokio::test]
async fn a_second_person_approves_with_a_clinicians_confirmation() {
    let hospital = Hospital::start().await;
    let id = hospital.declared().await;
    // A clinician's confirmation brings in the scanners' shutdown, which makes the plan need a second
    // approver? No: two shutdowns are under the threshold, but life-sustaining devices never get more
    // than isolation — a clinician cannot change the plan's rule for them.
    let approved = hospital.approve(&id).await;
    assert_eq!(approved.status, StatusCode::OK, "{:?}", approved.body);
    assert_eq!(approved.body["state"], "approved");
    assert!(
        approved.body["approved_by"]
            .as_str()
            .unwrap()
            .starts_with("user:sam")
    );
    hospital.finish().await;
}

#[tokio::test]
async fn containment_reaches_every_online_device_and_asking_again_queues_nothing_twice() {
    let hospital = Hospital::start().await;
    let id = hospital.declared().await;
    let preview = hospital.preview(&id).await;
    let devices = preview["devices"].as_array().unwrap();
    let approved = hospital.approve(&id).await;
    assert_eq!(approved.status, StatusCode::OK, "{:?}", approved.body);
    let contained = hospital.post(&id, "contain", json!({})).await;
    assert_eq!(contained.status, StatusCode::OK, "{:?}", contained.body);
    let again = hospital.post(&id, "contain", json!({})).await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "contain again resumes: {:?}",
        again.body
    );
    assert_eq!(
        again.body["contain"]["outstanding"], 0,
        "nothing was missing, nothing is queued twice"
    );
    let done = wait_status(&hospital.kit, &id, |s| s["contain"]["outstanding"] == 2).await;
    // 3 pumps × quarantine, 2 scanners × (quarantine + shutdown), 14 stations/tablets × (lock + quarantine),
    // and the offline station's two, which wait for it.
    assert_eq!(done["contain"]["commands"], 3 + 4 + 28 + 2);
    assert_eq!(done["contain"]["offline"], 2);
    assert_eq!(done["time_to_contain"]["count"], 3 + 4 + 28);
    // The server's clock did not move: every acknowledgement came at the instant of "go".
    assert_eq!(done["time_to_contain"]["max_ms"], 0, "{done}");
    let pump_commands = hospital
        .kit
        .admin(Method::GET, "/commands?state=succeeded&limit=1000", None)
        .await;
    assert!(
        !pump_commands
            .body
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "shutdown"
                && devices
                    .iter()
                    .any(|d| d["id"] == c["device_id"] && d["criticality"] == "life-sustaining")),
        "no life-sustaining device was shut down"
    );
    hospital.finish().await;
}

#[tokio::test]
async fn an_interrupted_containment_is_completed_by_asking_again_without_duplicates() {
    let hospital = Hospital::start().await;
    let (id, _) = hospital.contained().await;
    let again = hospital.post(&id, "contain", json!({})).await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    // A fan-out interrupted half-way (simulated: the offline station's commands never stored)
    // is completed by asking again, without duplicating what exists.
    let store = hospital.kit.raw_store().await;
    store
        .execute_unchecked(&format!(
            "DELETE FROM commands WHERE state = 'queued' AND batch_id = 'incident:{id}'"
        ))
        .await
        .unwrap();
    let resumed = hospital.post(&id, "contain", json!({})).await;
    assert_eq!(resumed.body["contain"]["outstanding"], 2, "{:?}", resumed.body);
    assert_eq!(resumed.body["contain"]["commands"], 3 + 4 + 28 + 2);
    assert_eq!(hospital.kit.audit("incident.contain_resumed").await.len(), 2);
    store.close().await;
    hospital.finish().await;
}

#[tokio::test]
async fn time_to_contain_runs_from_go_to_each_acknowledgement() {
    let hospital = Hospital::start().await;
    let (id, _) = hospital.contained().await;
    // The offline station connects a minute and a half after "go" and acknowledges its two.
    hospital.kit.clock.advance_ms(90_000);
    let late = obedient_device(&hospital.kit, hospital.offline.clone()).await;
    let done = wait_status(&hospital.kit, &id, |s| s["contain"]["outstanding"] == 0).await;
    let ttc = &done["time_to_contain"];
    assert_eq!(ttc["count"], 3 + 4 + 28 + 2, "{done}");
    assert_eq!(
        (
            ttc["p50_ms"].as_i64(),
            ttc["p99_ms"].as_i64(),
            ttc["max_ms"].as_i64()
        ),
        (Some(0), Some(90_000), Some(90_000)),
        "{ttc}"
    );
    late.abort();
    hospital.finish().await;
}

#[tokio::test]
async fn containment_progress_is_streamed_as_server_sent_events() {
    let hospital = Hospital::start().await;
    let (id, _) = hospital.contained().await;
    let kit = &hospital.kit;
    let response = kit
        .http
        .get(kit.url(&format!("/incidents/{id}/events")))
        .bearer_auth(&kit.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut response = response;
    let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(
        text.contains("event: progress") && text.contains("time_to_contain"),
        "{text}"
    );
    drop(response);
    hospital.finish().await;
}

#[tokio::test]
async fn a_report_before_close_is_a_draft() {
    let kit = one_pump().await;
    let id = declared(&kit).await;
    let draft = kit
        .admin(Method::GET, &format!("/incidents/{id}/report"), None)
        .await;
    assert_eq!(draft.body["draft"], true);
    kit.finish().await;
}

#[tokio::test]
async fn containment_is_lifted_for_one_device_then_everywhere_but_never_for_one_not_contained() {
    let hospital = Hospital::start().await;
    let (id, _) = hospital.contained().await;
    let preview = hospital.preview(&id).await;
    let first = preview["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["hostname"] == "ws-0")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let one = hospital.post(&id, "lift", json!({"devices": [first]})).await;
    assert_eq!(one.status, StatusCode::OK, "{:?}", one.body);
    assert_eq!(one.body["state"], "containing");
    let stranger = hospital
        .post(&id, "lift", json!({"devices": [hospital.offline.id]}))
        .await;
    assert_eq!(
        stranger.code(),
        "invalid_input",
        "the offline device was never contained"
    );
    let all = hospital.post(&id, "lift", json!({})).await;
    assert_eq!(all.body["state"], "lifted", "{:?}", all.body);
    wait_status(&hospital.kit, &id, |s| {
        s["lift"]["outstanding"] == 0 && s["lift"]["succeeded"].as_u64() > Some(0)
    })
    .await;
    hospital.finish().await;
}

#[tokio::test]
async fn closing_needs_the_reports_fields_and_happens_once() {
    let hospital = Hospital::start().await;
    let id = hospital.lifted().await;
    let incomplete = hospital
        .post(
            &id,
            "close",
            json!({"nature": "", "contact_point": "dpo@st-marys.example", "likely_consequences": "x"}),
        )
        .await;
    assert_eq!(incomplete.code(), "invalid_input");
    let closed = hospital.post(&id, "close", report_fields()).await;
    assert_eq!(closed.status, StatusCode::OK, "{:?}", closed.body);
    assert_eq!(closed.body["state"], "closed");
    let twice = hospital
        .post(
            &id,
            "close",
            json!({"nature": "x", "contact_point": "x", "likely_consequences": "x"}),
        )
        .await;
    assert_eq!(twice.code(), "conflict");
    hospital.finish().await;
}

#[tokio::test]
async fn the_breach_report_has_the_regulators_fields_and_the_whole_timeline() {
    let hospital = Hospital::start().await;
    let id = hospital.lifted().await;
    let closed = hospital.post(&id, "close", report_fields()).await;
    assert_eq!(closed.status, StatusCode::OK, "{:?}", closed.body);
    let kit = &hospital.kit;
    let report = kit
        .admin(Method::GET, &format!("/incidents/{id}/report"), None)
        .await;
    let r = &report.body;
    assert_eq!(r["draft"], false);
    assert_eq!(
        r["gdpr_article_33_3"]["approximate_number_of_data_subjects"],
        1200
    );
    assert_eq!(r["hipaa"]["major_breach_500_or_more"], true);
    assert_eq!(r["deadlines"]["gdpr_72h"], "2026-09-24T09:00:00.000Z");
    assert_eq!(r["devices"].as_array().unwrap().len(), 20);
    assert!(r["devices_with_phi"].as_u64().unwrap() >= 17);
    assert_eq!(r["audit"]["verification"]["ok"], true);
    let actions: Vec<&str> = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for wanted in [
        "incident.declare",
        "incident.approve",
        "incident.contain",
        "incident.lift",
        "incident.close",
    ] {
        assert!(actions.contains(&wanted), "{wanted} in {actions:?}");
    }
    let markdown = kit
        .http
        .get(kit.url(&format!("/incidents/{id}/report?format=markdown")))
        .bearer_auth(&kit.admin_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(markdown.starts_with("# Breach report: Ransomware"), "{markdown}");
    assert!(markdown.contains("| GDPR Art. 33 / ICO (72 h) | 2026-09-24T09:00:00.000Z |"));
    assert_eq!(
        kit.admin(Method::GET, &format!("/incidents/{id}/report?format=pdf"), None)
            .await
            .code(),
        "invalid_input"
    );
    hospital.finish().await;
}

#[tokio::test]
async fn a_plan_that_does_more_to_life_sustaining_devices_needs_a_second_approver() {
    let hospital = Hospital::start().await;
    let plans = hospital.kit.server.state.config.data_dir.join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    std::fs::write(
        plans.join("harsh.yaml"),
        "name: harsh\nrules:\n  - actions: [lock, quarantine]\n",
    )
    .unwrap();
    let harsh = hospital
        .declare(json!({"title": "Harsh", "scope": "criticality = \"life-sustaining\"", "plan": "harsh"}))
        .await;
    let harsh_id = harsh.body["id"].as_str().unwrap().to_owned();
    let preview = hospital.preview(&harsh_id).await;
    assert_eq!(preview["needs_second_approval"], true, "{preview:?}");
    let refused = hospital.post(&harsh_id, "contain", json!({})).await;
    assert_eq!(refused.code(), "conflict");
    assert!(refused.message().contains("second approver"));
    let denied = hospital.kit.audit("incident.contain").await;
    assert!(denied.iter().any(|e| e["outcome"] == "denied"));
    hospital.finish().await;
}
