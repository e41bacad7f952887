//! Incidents through the API with connected devices that acknowledge and carry out their commands:
//! declare, preview (clinical impact first), the second-approver rule, contain, progress and
//! time-to-contain, lift, close and the breach report — and every refusal on the way.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use ward_proto::agent::{CommandUpdate, agent_message, server_message};

use ward_domain::command::VerifiedBatches;

use crate::agent::{Enrolled, channel, enroll, hello, msg, next_body, session, setup_sites, token};
use crate::commands::verify;
use crate::kit::Kit;

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

#[tokio::test]
async fn an_incident_is_declared_previewed_approved_contained_lifted_closed_and_reported() {
    let kit = Kit::start(&crate::kit::Backend::Sqlite).await;
    setup_sites(&kit).await;
    let pumps = token(&kit, json!({"site": "st-marys/icu", "class": "medical", "criticality": "life-sustaining", "phi": true, "uses": 10})).await;
    let scanners = token(
        &kit,
        json!({"site": "st-marys", "class": "medical", "criticality": "high", "uses": 10}),
    )
    .await;
    let stations = token(
        &kit,
        json!({"site": "st-marys/icu", "class": "workstation", "phi": true, "uses": 20}),
    )
    .await;
    let tablets = token(
        &kit,
        json!({"site": "st-marys", "class": "mobile", "phi": true, "uses": 10}),
    )
    .await;
    let elsewhere = token(
        &kit,
        json!({"site": "general", "class": "workstation", "uses": 2}),
    )
    .await;
    let mut agents = Vec::new();
    for (secret, prefix, count) in [
        (&pumps, "pump", 3),
        (&scanners, "ct", 2),
        (&stations, "ws", 10),
        (&tablets, "tab", 4),
    ] {
        for i in 0..count {
            let device = enroll(&kit, secret, &format!("{prefix}-{i}"))
                .await
                .map_err(|r| r.body)
                .unwrap();
            agents.push(obedient_device(&kit, device).await);
        }
    }
    // One device in scope stays offline: its commands wait.
    let offline = enroll(&kit, &stations, "ws-offline")
        .await
        .map_err(|r| r.body)
        .unwrap();
    enroll(&kit, &elsewhere, "gen-1")
        .await
        .map_err(|r| r.body)
        .unwrap();

    // Bad declarations.
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
    // A plan naming unknown actions or classes is refused when it is used.
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
        let reply = declare(json!({"title": "x", "scope": "class = \"medical\"", "plan": plan})).await;
        assert_eq!(reply.code(), "invalid_input", "{plan}: {:?}", reply.body);
    }

    let declared = declare(json!({
        "title": "Ransomware on St Mary's network", "severity": "critical",
        "description": "Encrypted shares found on <b>ICU</b> workstations",
        "discovered_at": "2026-09-21T08:00:00Z", "aware_at": "2026-09-21T09:00:00Z",
        "scope": "site within \"st-marys\"",
    }))
    .await;
    assert_eq!(declared.status, StatusCode::CREATED, "{:?}", declared.body);
    let id = declared.body["id"].as_str().unwrap().to_owned();
    assert_eq!(declared.body["deadlines"]["gdpr"], "2026-09-24T09:00:00.000Z");
    assert_eq!(
        declared.body["deadlines"]["nis2_early_warning"],
        "2026-09-22T09:00:00.000Z"
    );

    // Preview: clinical impact first; life-sustaining devices get isolation only.
    let preview = kit
        .admin(Method::GET, &format!("/incidents/{id}/preview"), None)
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{:?}", preview.body);
    let impact = &preview.body["clinical_impact"];
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
    let devices = preview.body["devices"].as_array().unwrap();
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
    assert_eq!(preview.body["offline"], 1);
    assert_eq!(preview.body["actions"]["lock"], 15);
    assert_eq!(preview.body["needs_second_approval"], false);

    // Approval rules: not by the declarer, not by an operator.
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

    // A clinician's confirmation brings in the scanners' shutdown, which makes the plan need a second
    // approver? No: two shutdowns are under the threshold, but life-sustaining devices never get more
    // than isolation — a clinician cannot change the plan's rule for them.
    let security = kit.user("sam", "security", &[]).await;
    let approved = kit
        .call(
            Method::POST,
            &format!("/incidents/{id}/approve"),
            Some(&security),
            Some(json!({"clinician": {"name": "Dr A. Byrne", "reason": "scanners idle, no patients"}})),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{:?}", approved.body);
    assert_eq!(approved.body["state"], "approved");
    assert!(
        approved.body["approved_by"]
            .as_str()
            .unwrap()
            .starts_with("user:sam")
    );

    let contained = kit
        .admin(Method::POST, &format!("/incidents/{id}/contain"), Some(json!({})))
        .await;
    assert_eq!(contained.status, StatusCode::OK, "{:?}", contained.body);
    let again = kit
        .admin(Method::POST, &format!("/incidents/{id}/contain"), Some(json!({})))
        .await;
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
    let done = wait_status(&kit, &id, |s| s["contain"]["outstanding"] == 2).await;
    // A fan-out interrupted half-way (simulated: the offline station's commands never stored)
    // is completed by asking again, without duplicating what exists.
    let store = kit.raw_store().await;
    store
        .execute_unchecked(&format!(
            "DELETE FROM commands WHERE state = 'queued' AND batch_id = 'incident:{id}'"
        ))
        .await
        .unwrap();
    let resumed = kit
        .admin(Method::POST, &format!("/incidents/{id}/contain"), Some(json!({})))
        .await;
    assert_eq!(resumed.body["contain"]["outstanding"], 2, "{:?}", resumed.body);
    assert_eq!(resumed.body["contain"]["commands"], 3 + 4 + 28 + 2);
    assert_eq!(kit.audit("incident.contain_resumed").await.len(), 2);
    // 3 pumps × quarantine, 2 scanners × (quarantine + shutdown), 14 stations/tablets × (lock + quarantine),
    // and the offline station's two, which wait for it.
    assert_eq!(done["contain"]["commands"], 3 + 4 + 28 + 2);
    assert_eq!(done["contain"]["offline"], 2);
    assert_eq!(done["time_to_contain"]["count"], 3 + 4 + 28);
    assert!(done["time_to_contain"]["p99_ms"].as_i64().unwrap() >= 0);
    let pump_commands = kit
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

    // Server-sent events: a progress event arrives.
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

    // Report before close is a draft.
    let draft = kit
        .admin(Method::GET, &format!("/incidents/{id}/report"), None)
        .await;
    assert_eq!(draft.body["draft"], true);

    // Lift: one device first, then everything.
    let first = devices.iter().find(|d| d["hostname"] == "ws-0").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let one = kit
        .admin(
            Method::POST,
            &format!("/incidents/{id}/lift"),
            Some(json!({"devices": [first]})),
        )
        .await;
    assert_eq!(one.status, StatusCode::OK, "{:?}", one.body);
    assert_eq!(one.body["state"], "containing");
    let stranger = kit
        .admin(
            Method::POST,
            &format!("/incidents/{id}/lift"),
            Some(json!({"devices": [offline.id]})),
        )
        .await;
    assert_eq!(
        stranger.code(),
        "invalid_input",
        "the offline device was never contained"
    );
    let all = kit
        .admin(Method::POST, &format!("/incidents/{id}/lift"), Some(json!({})))
        .await;
    assert_eq!(all.body["state"], "lifted", "{:?}", all.body);
    wait_status(&kit, &id, |s| {
        s["lift"]["outstanding"] == 0 && s["lift"]["succeeded"].as_u64() > Some(0)
    })
    .await;

    // Close with the report's fields, then the report.
    let incomplete = kit
        .admin(
            Method::POST,
            &format!("/incidents/{id}/close"),
            Some(json!({"nature": "", "contact_point": "dpo@st-marys.example", "likely_consequences": "x"})),
        )
        .await;
    assert_eq!(incomplete.code(), "invalid_input");
    let closed = kit
        .admin(
            Method::POST,
            &format!("/incidents/{id}/close"),
            Some(json!({
                "nature": "Ransomware encrypted file shares", "data_subject_categories": ["patients"],
                "data_subjects": 1200, "records": 5400, "phi_types": ["names", "diagnoses"],
                "contact_point": "dpo@st-marys.example", "likely_consequences": "Delayed care; possible disclosure",
                "measures": "Backups restored", "revoke_certificates": false,
            })),
        )
        .await;
    assert_eq!(closed.status, StatusCode::OK, "{:?}", closed.body);
    assert_eq!(closed.body["state"], "closed");
    let twice = kit
        .admin(
            Method::POST,
            &format!("/incidents/{id}/close"),
            Some(json!({"nature": "x", "contact_point": "x", "likely_consequences": "x"})),
        )
        .await;
    assert_eq!(twice.code(), "conflict");
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

    // A second incident over life-sustaining devices with a plan that would do more needs approval.
    std::fs::write(
        plans.join("harsh.yaml"),
        "name: harsh\nrules:\n  - actions: [lock, quarantine]\n",
    )
    .unwrap();
    let harsh =
        declare(json!({"title": "Harsh", "scope": "criticality = \"life-sustaining\"", "plan": "harsh"}))
            .await;
    let harsh_id = harsh.body["id"].as_str().unwrap().to_owned();
    let preview = kit
        .admin(Method::GET, &format!("/incidents/{harsh_id}/preview"), None)
        .await;
    assert_eq!(preview.body["needs_second_approval"], true, "{:?}", preview.body);
    let refused = kit
        .admin(
            Method::POST,
            &format!("/incidents/{harsh_id}/contain"),
            Some(json!({})),
        )
        .await;
    assert_eq!(refused.code(), "conflict");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("second approver")
    );
    let denied = kit.audit("incident.contain").await;
    assert!(denied.iter().any(|e| e["outcome"] == "denied"));
    for agent in agents {
        agent.abort();
    }
    kit.finish().await;
}
