//! Remote actions through the API and the agent channel: queueing, signing, delivery on connect
//! and while connected, acknowledgements, results, wipe proofs, expiry, cancellation, bulk
//! actions, and every refusal.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use ward_domain::command::{CommandKind, VerifiedBatches, WipeProof};
use ward_proto::agent::{Command, CommandUpdate, agent_message, server_message};

use crate::agent::{Enrolled, channel, enroll, hello, msg, next_body, session, setup_sites, token};
use crate::kit::{Kit, backends};

fn command_key(enrolled: &Enrolled) -> ed25519_dalek::VerifyingKey {
    let bytes: [u8; 32] = hex::decode(&enrolled.command_key).unwrap().try_into().unwrap();
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).unwrap()
}

/// Checks a pushed command as the agent does, with the key the device got at enrollment.
pub(crate) fn verify(
    enrolled: &Enrolled,
    command: &Command,
    batches: &VerifiedBatches,
) -> Result<CommandKind, String> {
    ward_agent_channel::verify_pushed(&command_key(enrolled), &enrolled.id, command, batches)
        .map_err(|refusal| refusal.to_string())
}

/// An audit entry's details (the API sends them as the exact JSON text that was hashed).
fn details(entry: &Value) -> Value {
    serde_json::from_str(entry["details"].as_str().unwrap_or("null")).unwrap()
}

fn update(id: &str, status: &str, detail: &str) -> agent_message::Body {
    agent_message::Body::CommandUpdate(CommandUpdate {
        command_id: id.into(),
        status: status.into(),
        detail: detail.into(),
        ..Default::default()
    })
}

/// Waits for the next command pushed on the stream.
async fn next_command(stream: &mut tonic::Streaming<ward_proto::agent::ServerMessage>) -> Command {
    match next_body(stream).await {
        Some(server_message::Body::Command(command)) => command,
        other => panic!("expected a command, got {other:?}"),
    }
}

/// Polls a command until it reaches `state`.
async fn wait_state(kit: &Kit, id: &str, state: &str) -> Value {
    for _ in 0..100 {
        let reply = kit.admin(Method::GET, &format!("/commands/{id}"), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        if reply.body["command"]["state"] == state {
            return reply.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = kit.admin(Method::GET, &format!("/commands/{id}"), None).await;
    panic!("command {id} never reached {state}: {:?}", last.body);
}

async fn queue(kit: &Kit, device: &str, body: Value) -> crate::kit::Reply {
    kit.admin(Method::POST, &format!("/devices/{device}/commands"), Some(body))
        .await
}

/// Signs a wipe completion record with the device's key, as the agent does.
fn signed_proof(enrolled: &Enrolled, command_id: &str) -> (String, Vec<u8>) {
    let proof = WipeProof {
        command_id: command_id.into(),
        device_id: enrolled.id.clone(),
        kind: "wipe-selective".into(),
        erased: vec!["/srv/ehr-cache".into()],
        completed_ms: 1,
    };
    let text = serde_json::to_string(&proof).unwrap();
    let der = rcgen::KeyPair::from_pem(&enrolled.key_pem)
        .unwrap()
        .serialize_der();
    let rng = ring::rand::SystemRandom::new();
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &der,
        &rng,
    )
    .unwrap();
    let signature = key.sign(&rng, text.as_bytes()).unwrap().as_ref().to_vec();
    (text, signature)
}

#[tokio::test]
async fn commands_are_stored_signed_delivered_and_reported() {
    for backend in backends() {
        let kit = Kit::start(&backend).await;
        delivery_and_results(&kit).await;
        kit.finish().await;
    }
}

async fn delivery_and_results(kit: &Kit) {
    setup_sites(kit).await;
    let secret = token(kit, json!({"site": "general", "class": "workstation", "uses": 3})).await;
    let device = enroll(kit, &secret, "ws-1").await.map_err(|r| r.body).unwrap();
    let other = enroll(kit, &secret, "ws-2").await.map_err(|r| r.body).unwrap();

    // Queued while the device is offline: stored first, delivered on connect.
    let lock = queue(kit, &device.id, json!({"kind": "lock"})).await;
    assert_eq!(lock.status, StatusCode::CREATED, "{:?}", lock.body);
    assert_eq!(lock.body["state"], "queued");
    let lock_id = lock.body["id"].as_str().unwrap().to_owned();
    let created = kit.audit("command.create").await;
    assert!(
        created.iter().any(|e| details(e)["command"] == lock_id.as_str()),
        "{created:?}"
    );

    let mut client = channel(kit, &device.key_pem, &device.cert_pem).await.unwrap();
    let (sender, mut stream) = session(&mut client, hello(1)).await.unwrap();
    assert!(matches!(
        next_body(&mut stream).await,
        Some(server_message::Body::Welcome(_))
    ));
    let pushed = next_command(&mut stream).await;
    assert_eq!(
        (pushed.id.as_str(), pushed.kind.as_str()),
        (lock_id.as_str(), "lock")
    );
    let kind = verify(&device, &pushed, &Default::default())
        .expect("the server's signature verifies with the key given at enrollment");
    assert_eq!(kind, CommandKind::Lock);
    wait_state(kit, &lock_id, "sent").await;

    // Acknowledged, then a second command arrives on the open stream at once.
    sender
        .send(msg(update(&lock_id, "acknowledged", "")))
        .await
        .unwrap();
    wait_state(kit, &lock_id, "acknowledged").await;
    let message = queue(
        kit,
        &device.id,
        json!({"kind": "message", "params": {"text": "IT will call you"}}),
    )
    .await;
    assert_eq!(message.status, StatusCode::CREATED, "{:?}", message.body);
    let message_id = message.body["id"].as_str().unwrap().to_owned();
    let pushed = next_command(&mut stream).await;
    assert_eq!(pushed.id, message_id);
    assert_eq!(pushed.params_json, r#"{"text":"IT will call you"}"#);

    // A report about another device's command changes nothing.
    let foreign = queue(kit, &other.id, json!({"kind": "unlock"})).await;
    let foreign_id = foreign.body["id"].as_str().unwrap().to_owned();
    sender
        .send(msg(update(&foreign_id, "succeeded", "not mine")))
        .await
        .unwrap();

    sender
        .send(msg(update(&lock_id, "succeeded", "sessions locked")))
        .await
        .unwrap();
    let done = wait_state(kit, &lock_id, "succeeded").await;
    assert_eq!(done["command"]["detail"], "sessions locked");
    assert!(done["command"]["finished_at"].is_string());
    let shown = kit
        .admin(Method::GET, &format!("/devices/{}", device.id), None)
        .await;
    assert_eq!(shown.body["device"]["state"], "locked");
    let results = kit.audit("command.result").await;
    assert!(
        results
            .iter()
            .any(|e| e["target"] == format!("command:{lock_id}"))
    );
    assert_eq!(
        kit.admin(Method::GET, &format!("/commands/{foreign_id}"), None)
            .await
            .body["command"]["state"],
        "queued",
        "another device cannot report on this one's commands"
    );
    // A late repeat of a finished command's result is ignored.
    sender
        .send(msg(update(&lock_id, "failed", "late")))
        .await
        .unwrap();

    // Reconnect: the sent-but-unfinished message is delivered again; the finished lock is not.
    drop(sender);
    drop(stream);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (sender, mut stream) = session(&mut client, hello(1)).await.unwrap();
    assert!(matches!(
        next_body(&mut stream).await,
        Some(server_message::Body::Welcome(_))
    ));
    assert_eq!(next_command(&mut stream).await.id, message_id);
    sender
        .send(msg(update(
            &message_id,
            "refused",
            "the signature does not verify",
        )))
        .await
        .unwrap();
    let refused = wait_state(kit, &message_id, "failed").await;
    assert!(
        refused["command"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("refused by the device"),
        "{refused:?}"
    );
    assert_eq!(
        kit.admin(Method::GET, &format!("/commands/{lock_id}"), None)
            .await
            .body["command"]["detail"],
        "sessions locked",
        "a finished command never changes"
    );

    // A wipe's completion record is verified with the device's key and kept.
    let wipe = queue(kit, &device.id, json!({"kind": "wipe-selective"})).await;
    let wipe_id = wipe.body["id"].as_str().unwrap().to_owned();
    assert_eq!(next_command(&mut stream).await.id, wipe_id);
    let (proof, signature) = signed_proof(&device, &wipe_id);
    sender
        .send(msg(agent_message::Body::CommandUpdate(CommandUpdate {
            command_id: wipe_id.clone(),
            status: "succeeded".into(),
            detail: "erased 1 directory".into(),
            proof_json: proof.clone(),
            proof_signature: signature,
            output: String::new(),
        })))
        .await
        .unwrap();
    let wiped = wait_state(kit, &wipe_id, "succeeded").await;
    assert_eq!(wiped["proof"]["erased"], json!(["/srv/ehr-cache"]));
    assert_eq!(wiped["command"]["has_proof"], true);
    assert!(wiped["proof_signature"].as_str().unwrap().len() > 100);

    // A proof that does not verify (edited after signing, or another command's) is not success.
    for tamper in ["edited", "other-command"] {
        let wipe = queue(kit, &device.id, json!({"kind": "wipe-selective"})).await;
        let id = wipe.body["id"].as_str().unwrap().to_owned();
        assert_eq!(next_command(&mut stream).await.id, id);
        let (proof, signature) = match tamper {
            "edited" => {
                let (proof, signature) = signed_proof(&device, &id);
                (proof.replace("ehr-cache", "nothing"), signature)
            }
            _ => signed_proof(&device, &wipe_id),
        };
        sender
            .send(msg(agent_message::Body::CommandUpdate(CommandUpdate {
                command_id: id.clone(),
                status: "succeeded".into(),
                proof_json: proof,
                proof_signature: signature,
                ..Default::default()
            })))
            .await
            .unwrap();
        let failed = wait_state(kit, &id, "failed").await;
        assert!(
            failed["command"]["detail"]
                .as_str()
                .unwrap()
                .contains("the device reported success but")
        );
        assert!(failed["proof"].is_null());
    }

    // Diagnostics output is kept and shown in the detail; hostile detail text is cleaned.
    let diag = queue(
        kit,
        &device.id,
        json!({"kind": "collect-diagnostics", "params": {"max_bytes": 4096}}),
    )
    .await;
    let diag_id = diag.body["id"].as_str().unwrap().to_owned();
    let pushed = next_command(&mut stream).await;
    assert_eq!(pushed.params_json, r#"{"max_bytes":4096}"#);
    sender
        .send(msg(agent_message::Body::CommandUpdate(CommandUpdate {
            command_id: diag_id.clone(),
            status: "succeeded".into(),
            detail: "bundle\u{1b}[2J <b>ok</b>".into(),
            output: json!({"agent_version": "1", "journal": ["x"]}).to_string(),
            ..Default::default()
        })))
        .await
        .unwrap();
    let diag = wait_state(kit, &diag_id, "succeeded").await;
    assert_eq!(diag["output"]["agent_version"], "1");
    assert_eq!(diag["command"]["detail"], "bundle[2J <b>ok</b>");
    let listed = kit
        .admin(Method::GET, &format!("/commands?device={}", device.id), None)
        .await;
    assert_eq!(listed.body.as_array().unwrap().len(), 6, "{:?}", listed.body);

    // Revocation: queued commands stay on record, new ones are refused.
    let revoked = kit
        .admin(
            Method::POST,
            &format!("/devices/{}/revoke", device.id),
            Some(json!({})),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    let refused = queue(kit, &device.id, json!({"kind": "lock"})).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::CONFLICT, "device_unavailable")
    );
    let denied = kit.audit("command.create").await;
    assert!(
        denied.iter().any(|e| e["outcome"] == "denied"),
        "refusals are audited"
    );
}

#[tokio::test]
async fn bad_commands_are_refused_and_safety_rules_hold() {
    let kit = Kit::start(&crate::kit::Backend::Sqlite).await;
    setup_sites(&kit).await;
    let ws = token(
        &kit,
        json!({"site": "general", "class": "workstation", "uses": 5}),
    )
    .await;
    let pump = token(
        &kit,
        json!({"site": "st-marys/icu", "class": "medical", "criticality": "life-sustaining", "uses": 5}),
    )
    .await;
    let wipeable = token(
        &kit,
        json!({"site": "general", "class": "mobile", "allow_full_wipe": true}),
    )
    .await;
    let laptop = enroll(&kit, &ws, "ws-1").await.map_err(|r| r.body).unwrap();
    let infusion = enroll(&kit, &pump, "pump-1").await.map_err(|r| r.body).unwrap();
    let infusion2 = enroll(&kit, &pump, "pump-2").await.map_err(|r| r.body).unwrap();
    let tablet = enroll(&kit, &wipeable, "tab-1")
        .await
        .map_err(|r| r.body)
        .unwrap();

    for (body, code) in [
        (json!({"kind": "format-disk"}), "invalid_input"),
        (
            json!({"kind": "lock", "params": {"force": true}}),
            "invalid_input",
        ),
        (json!({"kind": "lock", "params": [1]}), "invalid_input"),
        (json!({"kind": "message"}), "invalid_input"),
        (
            json!({"kind": "message", "params": {"text": "a\u{7}b"}}),
            "invalid_input",
        ),
        (
            json!({"kind": "message", "params": {"text": "x".repeat(501)}}),
            "invalid_input",
        ),
        (json!({"kind": "lock", "expires": "forever"}), "invalid_input"),
        (json!({"kind": "lock", "surprise": 1}), "malformed_json"),
        (
            json!({"kind": "wipe-full", "params": {"confirm_hostname": "ws-1"}}),
            "device_unavailable",
        ),
        (
            json!({"kind": "collect-diagnostics", "params": {"max_bytes": 999_999_999}}),
            "invalid_input",
        ),
    ] {
        let reply = queue(&kit, &laptop.id, body.clone()).await;
        assert_eq!(reply.code(), code, "{body}: {:?}", reply.body);
    }
    let missing = queue(&kit, "no-such-device", json!({"kind": "lock"})).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // Full wipe: allowed by this enrollment, but only with the hostname typed out.
    let wrong = queue(
        &kit,
        &tablet.id,
        json!({"kind": "wipe-full", "params": {"confirm_hostname": "tab-2"}}),
    )
    .await;
    assert_eq!(wrong.code(), "invalid_input");
    let right = queue(
        &kit,
        &tablet.id,
        json!({"kind": "wipe-full", "params": {"confirm_hostname": "tab-1"}}),
    )
    .await;
    assert_eq!(right.status, StatusCode::CREATED, "{:?}", right.body);

    // Clinical safety: no shutdown or wipe of a life-sustaining device without a clinician.
    let refused = queue(&kit, &infusion.id, json!({"kind": "shutdown"})).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::CONFLICT, "clinician_confirmation_required")
    );
    let isolation = queue(&kit, &infusion.id, json!({"kind": "quarantine"})).await;
    assert_eq!(
        isolation.status,
        StatusCode::CREATED,
        "network isolation needs no clinician"
    );
    let blank = queue(
        &kit,
        &infusion.id,
        json!({"kind": "shutdown", "clinician": {"name": " ", "reason": "x"}}),
    )
    .await;
    assert_eq!(blank.code(), "invalid_input");
    let confirmed = queue(
        &kit,
        &infusion.id,
        json!({"kind": "shutdown", "clinician": {"name": "Dr A. Byrne", "reason": "patient moved to bed 4"}}),
    )
    .await;
    assert_eq!(confirmed.status, StatusCode::CREATED, "{:?}", confirmed.body);
    let created = kit.audit("command.create").await;
    assert!(
        created
            .iter()
            .any(|e| details(e)["clinician"]["name"] == "Dr A. Byrne")
    );

    // Roles and sites: helpdesk may not act; a ward-scoped operator cannot reach another site.
    let helpdesk = kit.user("hana", "helpdesk", &[]).await;
    let reply = kit
        .call(
            Method::POST,
            &format!("/devices/{}/commands", laptop.id),
            Some(&helpdesk),
            Some(json!({"kind": "lock"})),
        )
        .await;
    assert_eq!(reply.code(), "forbidden");
    let icu_operator = kit.user("olga", "operator", &["st-marys/icu"]).await;
    let reply = kit
        .call(
            Method::POST,
            &format!("/devices/{}/commands", laptop.id),
            Some(&icu_operator),
            Some(json!({"kind": "lock"})),
        )
        .await;
    assert_eq!(reply.code(), "forbidden_site");
    let visible = kit
        .call(Method::GET, "/commands", Some(&icu_operator), None)
        .await;
    assert!(
        visible
            .body
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["device_id"] != laptop.id.as_str()),
        "commands of other sites are not listed"
    );

    // Bulk: a filter is required; a dry run counts; life-sustaining devices need the clinician.
    let bulk = |body: Value| kit.admin(Method::POST, "/commands", Some(body));
    assert_eq!(
        bulk(json!({"filter": " ", "kind": "lock"})).await.code(),
        "invalid_input"
    );
    assert_eq!(
        bulk(json!({"filter": "class = ", "kind": "lock"})).await.code(),
        "invalid_input"
    );
    assert_eq!(
        bulk(json!({"filter": "class = \"mobile\"", "kind": "wipe-full", "params": {"confirm_hostname": "tab-1"}}))
            .await
            .code(),
        "invalid_input"
    );
    let preview =
        bulk(json!({"filter": "site within \"st-marys\"", "kind": "reboot", "dry_run": true})).await;
    assert_eq!(preview.status, StatusCode::OK, "{:?}", preview.body);
    assert_eq!(
        (
            preview.body["matched"].as_u64(),
            preview.body["needs_clinician"].as_u64()
        ),
        (Some(2), Some(2))
    );
    assert!(preview.body["batch_id"].is_null(), "a dry run queues nothing");
    let refused = bulk(json!({"filter": "site within \"st-marys\"", "kind": "reboot"})).await;
    assert_eq!(refused.code(), "clinician_confirmation_required");
    let queued = bulk(json!({"filter": "site within \"st-marys\"", "kind": "lock", "expires": "30m"})).await;
    assert_eq!(queued.status, StatusCode::OK, "{:?}", queued.body);
    let batch = queued.body["batch_id"].as_str().unwrap().to_owned();
    assert_eq!(queued.body["command_ids"].as_array().unwrap().len(), 2);
    let listed = kit
        .admin(Method::GET, &format!("/commands?batch={batch}"), None)
        .await;
    let devices: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["device_id"].as_str().unwrap())
        .collect();
    assert!(devices.contains(&infusion.id.as_str()) && devices.contains(&infusion2.id.as_str()));
    let bulk_entries = kit.audit("command.bulk").await;
    let outcomes: Vec<&str> = bulk_entries
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["denied", "success"],
        "the refusal and the action are both recorded"
    );
    assert_eq!(
        kit.admin(Method::GET, "/commands?state=bogus", None).await.code(),
        "invalid_input"
    );

    // Cancel: only before delivery.
    let first = listed.body[0]["id"].as_str().unwrap().to_owned();
    let cancelled = kit
        .admin(
            Method::POST,
            &format!("/commands/{first}/cancel"),
            Some(json!({})),
        )
        .await;
    assert_eq!(cancelled.body["state"], "cancelled", "{:?}", cancelled.body);
    let again = kit
        .admin(
            Method::POST,
            &format!("/commands/{first}/cancel"),
            Some(json!({})),
        )
        .await;
    assert_eq!(again.code(), "conflict");
    let unknown = kit
        .admin(Method::POST, "/commands/nope/cancel", Some(json!({})))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(kit.audit("command.cancel").await.len(), 1);

    // Expiry: the other bulk lock (30 minutes) expires when nobody picked it up.
    let second = listed.body[1]["id"].as_str().unwrap().to_owned();
    kit.clock.advance_ms(31 * 60_000);
    assert!(ward_service::commands::expire_now(&kit.server.state).await >= 1);
    let expired = kit.admin(Method::GET, &format!("/commands/{second}"), None).await;
    assert_eq!(expired.body["command"]["state"], "expired");
    assert!(!kit.audit("command.expire").await.is_empty());
    kit.finish().await;
}
