//! Remote actions through the API and the agent channel: queueing, signing, delivery on connect
//! and while connected, acknowledgements, results, wipe proofs, expiry, cancellation, bulk
//! actions, and every refusal.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use ward_domain::command::{CommandKind, VerifiedBatches, WipeProof};
use ward_proto::agent::agent_channel_client::AgentChannelClient;
use ward_proto::agent::{AgentMessage, Command, CommandUpdate, ServerMessage, agent_message, server_message};
use ward_testkit::agent::{channel, hello, msg, next_body, session};
use ward_testkit::{Backend, Enrolled, Kit, Reply, backends};

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
async fn next_command(stream: &mut tonic::Streaming<ServerMessage>) -> Command {
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

async fn queue(kit: &Kit, device: &str, body: Value) -> Reply {
    kit.admin(Method::POST, &format!("/devices/{device}/commands"), Some(body))
        .await
}

/// Queues a command that must be accepted; returns its id.
async fn queued(kit: &Kit, device: &str, body: Value) -> String {
    let reply = queue(kit, device, body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
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

/// Sites and two workstations in `general` (ws-1, ws-2), not connected.
async fn two_workstations(kit: &Kit) -> (Enrolled, Enrolled) {
    kit.create_sites().await;
    let secret = kit
        .enroll_token(json!({"site": "general", "class": "workstation", "uses": 3}))
        .await;
    let device = kit.enrolled(&secret, "ws-1").await;
    let other = kit.enrolled(&secret, "ws-2").await;
    (device, other)
}

/// An open agent session of `device`, past the welcome.
struct Session {
    client: AgentChannelClient<Channel>,
    sender: mpsc::Sender<AgentMessage>,
    stream: tonic::Streaming<ServerMessage>,
}

impl Session {
    async fn open(kit: &Kit, device: &Enrolled) -> Session {
        let client = channel(kit, &device.key_pem, &device.cert_pem).await.unwrap();
        Session::reopen(client).await
    }

    /// A new session on a client that may have had one.
    async fn reopen(mut client: AgentChannelClient<Channel>) -> Session {
        let (sender, mut stream) = session(&mut client, hello(1)).await.unwrap();
        assert!(matches!(
            next_body(&mut stream).await,
            Some(server_message::Body::Welcome(_))
        ));
        Session {
            client,
            sender,
            stream,
        }
    }

    async fn send(&self, body: agent_message::Body) {
        self.sender.send(msg(body)).await.unwrap();
    }

    /// Closes this session and opens another on the same client.
    async fn reconnect(self) -> Session {
        let Session { client, .. } = self;
        tokio::time::sleep(Duration::from_millis(100)).await;
        Session::reopen(client).await
    }
}

/// A lock queued while the device was offline, delivered on connect and reported succeeded:
/// returns the open session and the lock's id.
async fn a_finished_lock(kit: &Kit, device: &Enrolled) -> (Session, String) {
    let lock_id = queued(kit, &device.id, json!({"kind": "lock"})).await;
    let mut session = Session::open(kit, device).await;
    assert_eq!(next_command(&mut session.stream).await.id, lock_id);
    session
        .send(update(&lock_id, "succeeded", "sessions locked"))
        .await;
    wait_state(kit, &lock_id, "succeeded").await;
    (session, lock_id)
}

#[tokio::test]
async fn a_command_queued_offline_is_stored_audited_and_delivered_signed_on_connect() {
    for backend in backends() {
        let kit = Kit::start(&backend).await;
        let (device, _) = two_workstations(&kit).await;
        // Queued while the device is offline: stored first, delivered on connect.
        let lock = queue(&kit, &device.id, json!({"kind": "lock"})).await;
        assert_eq!(lock.status, StatusCode::CREATED, "{:?}", lock.body);
        assert_eq!(lock.body["state"], "queued");
        let lock_id = lock.body["id"].as_str().unwrap().to_owned();
        let created = kit.audit("command.create").await;
        assert!(
            created.iter().any(|e| details(e)["command"] == lock_id.as_str()),
            "{created:?}"
        );
        let mut session = Session::open(&kit, &device).await;
        let pushed = next_command(&mut session.stream).await;
        assert_eq!(
            (pushed.id.as_str(), pushed.kind.as_str()),
            (lock_id.as_str(), "lock")
        );
        let kind = verify(&device, &pushed, &Default::default())
            .expect("the server's signature verifies with the key given at enrollment");
        assert_eq!(kind, CommandKind::Lock);
        wait_state(&kit, &lock_id, "sent").await;
        kit.finish().await;
    }
}

#[tokio::test]
async fn a_command_queued_while_the_device_is_connected_arrives_at_once() {
    for backend in backends() {
        let kit = Kit::start(&backend).await;
        let (device, _) = two_workstations(&kit).await;
        let lock_id = queued(&kit, &device.id, json!({"kind": "lock"})).await;
        let mut session = Session::open(&kit, &device).await;
        assert_eq!(next_command(&mut session.stream).await.id, lock_id);
        // Acknowledged, then a second command arrives on the open stream at once.
        session.send(update(&lock_id, "acknowledged", "")).await;
        wait_state(&kit, &lock_id, "acknowledged").await;
        let message = queue(
            &kit,
            &device.id,
            json!({"kind": "message", "params": {"text": "IT will call you"}}),
        )
        .await;
        assert_eq!(message.status, StatusCode::CREATED, "{:?}", message.body);
        let message_id = message.body["id"].as_str().unwrap().to_owned();
        let pushed = next_command(&mut session.stream).await;
        assert_eq!(pushed.id, message_id);
        assert_eq!(pushed.params_json, r#"{"text":"IT will call you"}"#);
        kit.finish().await;
    }
}

#[tokio::test]
async fn a_reported_success_finishes_the_command_changes_the_device_and_is_audited() {
    for backend in backends() {
        let kit = Kit::start(&backend).await;
        let (device, _) = two_workstations(&kit).await;
        let (_session, lock_id) = a_finished_lock(&kit, &device).await;
        let done = wait_state(&kit, &lock_id, "succeeded").await;
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
        kit.finish().await;
    }
}

#[tokio::test]
async fn a_device_cannot_report_on_another_devices_command() {
    for backend in backends() {
        let kit = Kit::start(&backend).await;
        let (device, other) = two_workstations(&kit).await;
        let foreign_id = queued(&kit, &other.id, json!({"kind": "unlock"})).await;
        let (mut session, _) = a_finished_lock(&kit, &device).await;
        session.send(update(&foreign_id, "succeeded", "not mine")).await;
        // A later report of its own, once finished, shows the foreign one was handled before it.
        let own = queued(&kit, &device.id, json!({"kind": "unlock"})).await;
        assert_eq!(next_command(&mut session.stream).await.id, own);
        session.send(update(&own, "succeeded", "unlocked")).await;
        wait_state(&kit, &own, "succeeded").await;
        assert_eq!(
            kit.admin(Method::GET, &format!("/commands/{foreign_id}"), None)
                .await
                .body["command"]["state"],
            "queued",
            "another device cannot report on this one's commands"
        );
        kit.finish().await;
    }
}

#[tokio::test]
async fn a_finished_command_never_changes() {
    for backend in backends() {
        let kit = Kit::start(&backend).await;
        let (device, _) = two_workstations(&kit).await;
        let (mut session, lock_id) = a_finished_lock(&kit, &device).await;
        // A late repeat of a finished command's result is ignored.
        session.send(update(&lock_id, "failed", "late")).await;
        // A later report, once finished, shows the late one was handled before it.
        let message_id = queued(
            &kit,
            &device.id,
            json!({"kind": "message", "params": {"text": "hello"}}),
        )
        .await;
        assert_eq!(next_command(&mut session.stream).await.id, message_id);
        session.send(update(&message_id, "succeeded", "shown")).await;
        wait_state(&kit, &message_id, "succeeded").await;
        assert_eq!(
            kit.admin(Method::GET, &format!("/commands/{lock_id}"), None)
                .await
                .body["command"]["detail"],
            "sessions locked",
            "a finished command never changes"
        );
        kit.finish().await;
    }
}

#[tokio::test]
async fn on_reconnect_an_unfinished_command_is_delivered_again_and_a_finished_one_is_not() {
    for backend in backends() {
        let kit = Kit::start(&backend).await;
        let (device, _) = two_workstations(&kit).await;
        let (mut session, _lock_id) = a_finished_lock(&kit, &device).await;
        let message_id = queued(
            &kit,
            &device.id,
            json!({"kind": "message", "params": {"text": "IT will call you"}}),
        )
        .await;
        assert_eq!(next_command(&mut session.stream).await.id, message_id);
        wait_state(&kit, &message_id, "sent").await;
        // Reconnect: the sent-but-unfinished message is delivered again; the finished lock is not.
        let mut session = session.reconnect().await;
        assert_eq!(next_command(&mut session.stream).await.id, message_id);
        kit.finish().await;
    }
}

#[tokio::test]
async fn a_command_the_device_refuses_fails_with_its_reason() {
    for backend in backends() {
        let kit = Kit::start(&backend).await;
        let (device, _) = two_workstations(&kit).await;
        let message_id = queued(
            &kit,
            &device.id,
            json!({"kind": "message", "params": {"text": "IT will call you"}}),
        )
        .await;
        let mut session = Session::open(&kit, &device).await;
        assert_eq!(next_command(&mut session.stream).await.id, message_id);
        session
            .send(update(&message_id, "refused", "the signature does not verify"))
            .await;
        let refused = wait_state(&kit, &message_id, "failed").await;
        assert!(
            refused["command"]["detail"]
                .as_str()
                .unwrap()
                .starts_with("refused by the device"),
            "{refused:?}"
        );
        kit.finish().await;
    }
}

#[tokio::test]
async fn a_wipe_completion_record_is_verified_with_the_devices_key_and_kept() {
    for backend in backends() {
        let kit = Kit::start(&backend).await;
        let (device, _) = two_workstations(&kit).await;
        let mut session = Session::open(&kit, &device).await;
        let wipe_id = queued(&kit, &device.id, json!({"kind": "wipe-selective"})).await;
        assert_eq!(next_command(&mut session.stream).await.id, wipe_id);
        let (proof, signature) = signed_proof(&device, &wipe_id);
        session
            .send(agent_message::Body::CommandUpdate(CommandUpdate {
                command_id: wipe_id.clone(),
                status: "succeeded".into(),
                detail: "erased 1 directory".into(),
                proof_json: proof.clone(),
                proof_signature: signature,
                output: String::new(),
            }))
            .await;
        let wiped = wait_state(&kit, &wipe_id, "succeeded").await;
        assert_eq!(wiped["proof"]["erased"], json!(["/srv/ehr-cache"]));
        assert_eq!(wiped["command"]["has_proof"], true);
        assert!(wiped["proof_signature"].as_str().unwrap().len() > 100);
        kit.finish().await;
    }
}

#[tokio::test]
async fn a_wipe_proof_that_does_not_verify_is_not_success() {
    for backend in backends() {
        let kit = Kit::start(&backend).await;
        let (device, _) = two_workstations(&kit).await;
        let mut session = Session::open(&kit, &device).await;
        let earlier_wipe = queued(&kit, &device.id, json!({"kind": "wipe-selective"})).await;
        assert_eq!(next_command(&mut session.stream).await.id, earlier_wipe);
        // A proof edited after signing, or another command's.
        for tamper in ["edited", "other-command"] {
            let id = queued(&kit, &device.id, json!({"kind": "wipe-selective"})).await;
            assert_eq!(next_command(&mut session.stream).await.id, id);
            let (proof, signature) = match tamper {
                "edited" => {
                    let (proof, signature) = signed_proof(&device, &id);
                    (proof.replace("ehr-cache", "nothing"), signature)
                }
                _ => signed_proof(&device, &earlier_wipe),
            };
            session
                .send(agent_message::Body::CommandUpdate(CommandUpdate {
                    command_id: id.clone(),
                    status: "succeeded".into(),
                    proof_json: proof,
                    proof_signature: signature,
                    ..Default::default()
                }))
                .await;
            let failed = wait_state(&kit, &id, "failed").await;
            assert!(
                failed["command"]["detail"]
                    .as_str()
                    .unwrap()
                    .contains("the device reported success but"),
                "{tamper}"
            );
            assert!(failed["proof"].is_null(), "{tamper}");
        }
        kit.finish().await;
    }
}

#[tokio::test]
async fn diagnostics_output_is_kept_and_hostile_detail_text_is_cleaned() {
    for backend in backends() {
        let kit = Kit::start(&backend).await;
        let (device, _) = two_workstations(&kit).await;
        let mut session = Session::open(&kit, &device).await;
        let diag_id = queued(
            &kit,
            &device.id,
            json!({"kind": "collect-diagnostics", "params": {"max_bytes": 4096}}),
        )
        .await;
        let pushed = next_command(&mut session.stream).await;
        assert_eq!(pushed.params_json, r#"{"max_bytes":4096}"#);
        session
            .send(agent_message::Body::CommandUpdate(CommandUpdate {
                command_id: diag_id.clone(),
                status: "succeeded".into(),
                detail: "bundle\u{1b}[2J <b>ok</b>".into(),
                output: json!({"agent_version": "1", "journal": ["x"]}).to_string(),
                ..Default::default()
            }))
            .await;
        let diag = wait_state(&kit, &diag_id, "succeeded").await;
        assert_eq!(diag["output"]["agent_version"], "1");
        assert_eq!(diag["command"]["detail"], "bundle[2J <b>ok</b>");
        kit.finish().await;
    }
}

#[tokio::test]
async fn commands_listed_by_device_are_that_devices_only() {
    for backend in backends() {
        let kit = Kit::start(&backend).await;
        let (device, other) = two_workstations(&kit).await;
        queued(&kit, &device.id, json!({"kind": "lock"})).await;
        queued(
            &kit,
            &device.id,
            json!({"kind": "message", "params": {"text": "IT will call you"}}),
        )
        .await;
        queued(&kit, &other.id, json!({"kind": "unlock"})).await;
        let listed = kit
            .admin(Method::GET, &format!("/commands?device={}", device.id), None)
            .await;
        assert_eq!(listed.body.as_array().unwrap().len(), 2, "{:?}", listed.body);
        kit.finish().await;
    }
}

#[tokio::test]
async fn a_revoked_device_takes_no_new_commands_and_the_refusal_is_audited() {
    for backend in backends() {
        let kit = Kit::start(&backend).await;
        let (device, _) = two_workstations(&kit).await;
        let waiting = queued(&kit, &device.id, json!({"kind": "lock"})).await;
        let revoked = kit
            .admin(
                Method::POST,
                &format!("/devices/{}/revoke", device.id),
                Some(json!({})),
            )
            .await;
        assert_eq!(revoked.status, StatusCode::OK);
        // Queued commands stay on record.
        let kept = kit
            .admin(Method::GET, &format!("/commands/{waiting}"), None)
            .await;
        assert_eq!(kept.status, StatusCode::OK, "{:?}", kept.body);
        let refused = queue(&kit, &device.id, json!({"kind": "lock"})).await;
        assert_eq!(
            (refused.status, refused.code()),
            (StatusCode::CONFLICT, "device_unavailable")
        );
        let denied = kit.audit("command.create").await;
        assert!(
            denied.iter().any(|e| e["outcome"] == "denied"),
            "refusals are audited"
        );
        kit.finish().await;
    }
}

/// Sites and four devices: a workstation, two life-sustaining pumps in the ICU and a tablet
/// whose enrollment allows a full wipe.
struct Fleet {
    laptop: Enrolled,
    infusion: Enrolled,
    infusion2: Enrolled,
    tablet: Enrolled,
}

async fn fleet(kit: &Kit) -> Fleet {
    kit.create_sites().await;
    let ws = kit
        .enroll_token(json!({"site": "general", "class": "workstation", "uses": 5}))
        .await;
    let pump = kit
        .enroll_token(
            json!({"site": "st-marys/icu", "class": "medical", "criticality": "life-sustaining", "uses": 5}),
        )
        .await;
    let wipeable = kit
        .enroll_token(json!({"site": "general", "class": "mobile", "allow_full_wipe": true}))
        .await;
    Fleet {
        laptop: kit.enrolled(&ws, "ws-1").await,
        infusion: kit.enrolled(&pump, "pump-1").await,
        infusion2: kit.enrolled(&pump, "pump-2").await,
        tablet: kit.enrolled(&wipeable, "tab-1").await,
    }
}

#[tokio::test]
async fn bad_command_requests_are_refused_with_their_codes() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let Fleet { laptop, .. } = fleet(&kit).await;
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
    assert_eq!(
        kit.admin(Method::GET, "/commands?state=bogus", None).await.code(),
        "invalid_input"
    );
    kit.finish().await;
}

#[tokio::test]
async fn a_full_wipe_needs_an_enrollment_that_allows_it_and_the_hostname_typed_out() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let Fleet { tablet, .. } = fleet(&kit).await;
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
    kit.finish().await;
}

#[tokio::test]
async fn a_life_sustaining_device_is_not_shut_down_without_a_named_clinician() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let Fleet { infusion, .. } = fleet(&kit).await;
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
    kit.finish().await;
}

#[tokio::test]
async fn helpdesk_may_not_act_and_a_ward_operator_cannot_reach_another_site() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let Fleet { laptop, .. } = fleet(&kit).await;
    queued(&kit, &laptop.id, json!({"kind": "lock"})).await;
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
    kit.finish().await;
}

#[tokio::test]
async fn a_bulk_command_needs_a_valid_filter_and_a_dry_run_only_counts() {
    let kit = Kit::start(&Backend::Sqlite).await;
    fleet(&kit).await;
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
    kit.finish().await;
}

#[tokio::test]
async fn a_bulk_command_on_life_sustaining_devices_needs_a_clinician_and_both_outcomes_are_audited() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let Fleet {
        infusion, infusion2, ..
    } = fleet(&kit).await;
    let bulk = |body: Value| kit.admin(Method::POST, "/commands", Some(body));
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
    kit.finish().await;
}

#[tokio::test]
async fn a_command_is_cancelled_only_before_delivery() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let Fleet { infusion, .. } = fleet(&kit).await;
    let first = queued(&kit, &infusion.id, json!({"kind": "lock"})).await;
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
    kit.finish().await;
}

#[tokio::test]
async fn a_command_nobody_picked_up_expires() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let Fleet { infusion2, .. } = fleet(&kit).await;
    let second = queued(&kit, &infusion2.id, json!({"kind": "lock", "expires": "30m"})).await;
    kit.clock.advance_ms(31 * 60_000);
    assert!(ward_core::commands::expire_now(&kit.server.state).await >= 1);
    let expired = kit.admin(Method::GET, &format!("/commands/{second}"), None).await;
    assert_eq!(expired.body["command"]["state"], "expired");
    assert!(!kit.audit("command.expire").await.is_empty());
    kit.finish().await;
}
