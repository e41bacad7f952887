//! Enrollment, the devices API and the agent channel (gRPC and framed), with their bad-input cases.

use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use ward_proto::agent::agent_channel_client::AgentChannelClient;
use ward_proto::agent::{
    AgentMessage, Fragment, Heartbeat, Inventory, ServerMessage, agent_message, server_message,
};
use ward_proto::fragments::fragment;
use ward_proto::framed::{self, FrameReader};
use ward_testkit::agent::{channel, hello, msg, next_body, session};
use ward_testkit::{Backend, Enrolled, Kit, Reply, csr};

/// The device's stored facts once they say `os.id = debian` (or as they are after 5 s).
async fn stored_debian_facts(kit: &Kit, device_id: &str) -> Value {
    let mut stored = Value::Null;
    for _ in 0..50 {
        let reply = kit
            .admin(Method::GET, &format!("/devices/{device_id}"), None)
            .await;
        stored = reply.body["device"]["facts"].clone();
        if stored["os"]["id"] == "debian" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stored
}

/// A kit with the standard sites.
async fn kit_with_sites() -> Kit {
    let kit = Kit::start(&Backend::Sqlite).await;
    kit.create_sites().await;
    kit
}

/// Enrolls twice with a single-use token; returns the second attempt's refusal.
async fn used_up_token_refusal(kit: &Kit) -> Reply {
    let single = kit
        .enroll_token(
            json!({"site": "st-marys/icu", "class": "medical", "criticality": "life-sustaining", "uses": 1}),
        )
        .await;
    kit.enrolled(&single, "pump-1").await;
    kit.enroll(&single, "pump-2").await.err().unwrap()
}

/// Enrolls with a token a minute after it expired; returns the refusal.
async fn expired_token_refusal(kit: &Kit) -> Reply {
    let expiring = kit
        .enroll_token(json!({"site": "general", "class": "workstation", "expires": "1m", "uses": 5}))
        .await;
    kit.clock.advance_ms(61_000);
    kit.enroll(&expiring, "ws").await.err().unwrap()
}

/// Enrolls with a revoked token; returns the refusal.
async fn revoked_token_refusal(kit: &Kit) -> Reply {
    let revocable = kit
        .admin(
            Method::POST,
            "/enroll-tokens",
            Some(json!({"site": "general", "class": "mobile"})),
        )
        .await;
    let id = revocable.body["token"]["id"].as_str().unwrap();
    assert_eq!(
        kit.admin(Method::DELETE, &format!("/enroll-tokens/{id}"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    kit.enroll(revocable.body["secret"].as_str().unwrap(), "tab")
        .await
        .err()
        .unwrap()
}

/// Enrolls with tokens that are not enrollment tokens; each must be refused as `token_invalid`.
async fn refuse_unknown_tokens(kit: &Kit) {
    for bad in ["", "wardenroll_nonsense", &kit.admin_token] {
        assert_eq!(
            kit.enroll(bad, "x").await.err().unwrap().code(),
            "token_invalid",
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_single_use_enrollment_token_is_used_up_after_one_device() {
    let kit = kit_with_sites().await;
    let used = used_up_token_refusal(&kit).await;
    assert_eq!(
        (used.status, used.code()),
        (StatusCode::UNAUTHORIZED, "token_invalid")
    );
    assert!(used.message().contains("used up"));
    kit.finish().await;
}

#[tokio::test]
async fn an_expired_enrollment_token_is_refused() {
    let kit = kit_with_sites().await;
    let expired = expired_token_refusal(&kit).await;
    assert!(expired.message().contains("expired"));
    kit.finish().await;
}

#[tokio::test]
async fn a_revoked_enrollment_token_is_refused() {
    let kit = kit_with_sites().await;
    let revoked = revoked_token_refusal(&kit).await;
    assert!(revoked.message().contains("revoked"));
    kit.finish().await;
}

#[tokio::test]
async fn a_token_that_is_not_an_enrollment_token_is_refused() {
    let kit = kit_with_sites().await;
    refuse_unknown_tokens(&kit).await;
    kit.finish().await;
}

#[tokio::test]
async fn every_refused_enrollment_is_audited() {
    let kit = kit_with_sites().await;
    used_up_token_refusal(&kit).await;
    expired_token_refusal(&kit).await;
    revoked_token_refusal(&kit).await;
    refuse_unknown_tokens(&kit).await;
    // Six refusals above.
    let failures: Vec<Value> = kit
        .audit("device.enroll")
        .await
        .into_iter()
        .filter(|e| e["outcome"] == "failure")
        .collect();
    assert!(
        failures.len() >= 6,
        "every refused enrollment is audited: {failures:?}"
    );
    kit.finish().await;
}

#[tokio::test]
async fn an_enrollment_csr_must_be_a_valid_request_signed_by_its_own_key() {
    let kit = kit_with_sites().await;
    let good = kit
        .enroll_token(json!({"site": "general", "class": "workstation", "uses": 10}))
        .await;
    for bad_csr in [
        "",
        "not a csr",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    ] {
        let reply = kit
            .call(
                Method::POST,
                "/enroll",
                None,
                Some(json!({"token": good, "csr_pem": bad_csr, "hostname": "x"})),
            )
            .await;
        assert_eq!(reply.code(), "invalid_input", "{bad_csr}");
    }
    let key = KeyPair::generate().unwrap();
    let mut der = CertificateParams::new(vec![])
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec();
    let last = der.len() - 1;
    der[last] ^= 0x55;
    let forged = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der)
    );
    let reply = kit
        .call(
            Method::POST,
            "/enroll",
            None,
            Some(json!({"token": good, "csr_pem": forged, "hostname": "x"})),
        )
        .await;
    assert_eq!(reply.code(), "invalid_input", "{:?}", reply.body);
    kit.finish().await;
}

#[tokio::test]
async fn enrollment_token_creation_names_every_invalid_field() {
    let kit = kit_with_sites().await;
    for (body, field) in [
        (json!({"site": "nowhere", "class": "medical"}), "site"),
        (json!({"site": "general", "class": "toaster"}), "class"),
        (
            json!({"site": "general", "class": "medical", "criticality": "meh"}),
            "criticality",
        ),
        (
            json!({"site": "general", "class": "medical", "expires": "forever"}),
            "expires",
        ),
        (json!({"site": "general", "class": "medical", "uses": 0}), "uses"),
    ] {
        let reply = kit.admin(Method::POST, "/enroll-tokens", Some(body)).await;
        assert_eq!(reply.code(), "invalid_input", "{field}");
        assert!(reply.message().starts_with(field), "{:?}", reply.body);
    }
    kit.finish().await;
}

#[tokio::test]
async fn enrollment_token_creation_respects_roles_and_site_scopes() {
    let kit = kit_with_sites().await;
    let operator = kit.user("olive", "operator", &["st-marys"]).await;
    let outside = kit
        .call(
            Method::POST,
            "/enroll-tokens",
            Some(&operator),
            Some(json!({"site": "general", "class": "medical"})),
        )
        .await;
    assert_eq!(outside.code(), "forbidden_site");
    let auditor = kit.user("audrey", "auditor", &[]).await;
    let refused = kit
        .call(
            Method::POST,
            "/enroll-tokens",
            Some(&auditor),
            Some(json!({"site": "general", "class": "medical"})),
        )
        .await;
    assert_eq!(refused.code(), "forbidden");
    kit.finish().await;
}

/// Sites, a life-sustaining pump in the ICU and a workstation with a hostile hostname in General.
async fn pump_and_hostile_workstation(kit: &Kit) -> Enrolled {
    kit.create_sites().await;
    let icu = kit.enroll_token(json!({"site": "st-marys/icu", "class": "medical", "criticality": "life-sustaining", "phi": true, "uses": 5})).await;
    let general = kit
        .enroll_token(json!({"site": "general", "class": "workstation", "uses": 5}))
        .await;
    let pump = kit.enrolled(&icu, "pump-1").await;
    kit.enrolled(&general, "<script>alert(1)</script>\u{1b}[2J").await;
    pump
}

#[tokio::test]
async fn devices_are_listed_with_control_characters_removed_and_filtered_by_selector() {
    let kit = Kit::start(&Backend::Sqlite).await;
    pump_and_hostile_workstation(&kit).await;
    let all = kit.admin(Method::GET, "/devices", None).await;
    assert_eq!(all.body.as_array().unwrap().len(), 2);
    let hostile = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["site"] == "general")
        .unwrap();
    assert_eq!(
        hostile["hostname"], "<script>alert(1)</script>[2J",
        "control characters removed, text kept"
    );
    let medical = kit.admin(Method::GET, "/devices?filter=site%20within%20%22st-marys%22%20and%20criticality%20%3D%20%22life-sustaining%22", None).await;
    assert_eq!(medical.body.as_array().unwrap().len(), 1, "{:?}", medical.body);
    let bad = kit
        .admin(Method::GET, "/devices?filter=site%20%3D%3D%20%22x%22", None)
        .await;
    assert_eq!(bad.code(), "invalid_input");
    assert!(bad.message().contains("column 6"), "{:?}", bad.body);
    kit.finish().await;
}

#[tokio::test]
async fn a_device_view_is_audited_and_limited_to_the_callers_sites() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let pump = pump_and_hostile_workstation(&kit).await;
    let detail = kit
        .admin(Method::GET, &format!("/devices/{}", pump.id), None)
        .await;
    assert_eq!(detail.body["device"]["class"], "medical");
    assert_eq!(kit.audit("device.view").await.len(), 1, "the view is audited");
    let scoped = kit.user("gina", "helpdesk", &["general"]).await;
    let hidden = kit
        .call(Method::GET, &format!("/devices/{}", pump.id), Some(&scoped), None)
        .await;
    assert_eq!(hidden.code(), "forbidden_site");
    let only_general = kit.call(Method::GET, "/devices", Some(&scoped), None).await;
    assert_eq!(only_general.body.as_array().unwrap().len(), 1);
    let cannot_revoke = kit
        .call(
            Method::POST,
            &format!("/devices/{}/revoke", pump.id),
            Some(&scoped),
            Some(json!({})),
        )
        .await;
    assert_eq!(cannot_revoke.status, StatusCode::FORBIDDEN);
    kit.finish().await;
}

#[tokio::test]
async fn devices_are_exported_as_a_fhir_bundle() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let pump = pump_and_hostile_workstation(&kit).await;
    let fhir = kit
        .admin(
            Method::GET,
            "/devices/fhir?filter=class%20%3D%20%22medical%22",
            None,
        )
        .await;
    assert_eq!(fhir.body["resourceType"], "Bundle");
    let device = &fhir.body["entry"][0]["resource"];
    assert_eq!(device["resourceType"], "Device");
    assert_eq!(device["identifier"][0]["value"], pump.id.as_str());
    assert_eq!(device["status"], "active");
    assert_eq!(device["location"]["display"], "st-marys/icu");
    assert_eq!(device["property"][0]["valueCode"][0]["text"], "life-sustaining");
    kit.finish().await;
}

#[tokio::test]
async fn a_retired_device_leaves_active_views_but_keeps_its_record() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let pump = pump_and_hostile_workstation(&kit).await;
    let retired = kit
        .admin(
            Method::POST,
            &format!("/devices/{}/retire", pump.id),
            Some(json!({})),
        )
        .await;
    assert_eq!(retired.body["state"], "retired");
    assert_eq!(
        kit.admin(Method::GET, "/devices", None)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1,
        "retired devices leave active views"
    );
    let with_retired = kit
        .admin(Method::GET, "/devices?include_retired=true", None)
        .await;
    assert_eq!(
        with_retired.body.as_array().unwrap().len(),
        2,
        "but keep their records"
    );
    kit.finish().await;
}

/// Sites, and two enrolled workstations in `general` (ws-1, ws-2).
async fn two_workstations(kit: &Kit) -> (Enrolled, Enrolled) {
    kit.create_sites().await;
    let many = kit
        .enroll_token(json!({"site": "general", "class": "workstation", "uses": 10}))
        .await;
    let device = kit.enrolled(&many, "ws-1").await;
    let other = kit.enrolled(&many, "ws-2").await;
    (device, other)
}

/// A key and certificate for `device_id` signed by a CA that is not the server's (PEM).
fn foreign_certificate(device_id: &str) -> (String, String) {
    let rogue_key = KeyPair::generate().unwrap();
    let mut rogue_ca = CertificateParams::new(vec![]).unwrap();
    rogue_ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    rogue_ca.distinguished_name.push(DnType::CommonName, "Ward CA");
    let issuer = Issuer::new(rogue_ca, &rogue_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec![]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, device_id);
    let leaf = leaf.signed_by(&leaf_key, &issuer).unwrap();
    (leaf_key.serialize_pem(), leaf.pem())
}

/// Revokes `device_id` through the API.
async fn revoke(kit: &Kit, device_id: &str) -> Reply {
    kit.admin(
        Method::POST,
        &format!("/devices/{device_id}/revoke"),
        Some(json!({})),
    )
    .await
}

/// A gRPC session of `device` past hello and a welcome naming it.
async fn welcomed_as(
    kit: &Kit,
    device: &Enrolled,
) -> (
    AgentChannelClient<Channel>,
    mpsc::Sender<AgentMessage>,
    tonic::Streaming<ServerMessage>,
) {
    let mut client = channel(kit, &device.key_pem, &device.cert_pem).await.unwrap();
    let (sender, mut stream) = session(&mut client, hello(1)).await.unwrap();
    assert!(
        matches!(next_body(&mut stream).await, Some(server_message::Body::Welcome(w)) if w.device_id == device.id)
    );
    (client, sender, stream)
}

/// True when the stream's next message is a refusal with this code.
async fn refused_with(stream: &mut tonic::Streaming<ServerMessage>, code: &str) -> bool {
    matches!(next_body(stream).await, Some(server_message::Body::Refusal(r)) if r.code == code)
}

#[tokio::test]
async fn an_agent_session_stores_bounded_cleaned_facts_and_puts_the_device_online() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let (device, _) = two_workstations(&kit).await;
    // A good session: hello, welcome, inventory with hostile strings, heartbeat.
    let (_client, sender, _stream) = welcomed_as(&kit, &device).await;
    let facts =
        json!({"hostname": format!("<b>x</b>\u{7}{}", "h".repeat(1_000_000)), "os": {"id": "debian"}});
    sender
        .send(msg(agent_message::Body::Inventory(Inventory {
            facts_json: facts.to_string(),
        })))
        .await
        .unwrap();
    sender
        .send(msg(agent_message::Body::Heartbeat(Heartbeat { seq: 1 })))
        .await
        .unwrap();
    let stored = stored_debian_facts(&kit, &device.id).await;
    let hostname = stored["hostname"].as_str().expect("facts stored");
    assert!(
        hostname.starts_with("<b>x</b>h") && hostname.len() == 4096,
        "bounded and cleaned"
    );
    assert_eq!(
        kit.admin(Method::GET, "/devices?filter=online%20%3D%20true", None)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    kit.finish().await;
}

#[tokio::test]
async fn an_oversized_agent_message_cuts_only_its_own_stream() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let (device, other) = two_workstations(&kit).await;
    let (_client, sender, _stream) = welcomed_as(&kit, &device).await;
    let (_big_client, big_sender, mut big_stream) = welcomed_as(&kit, &other).await;
    let huge = "x".repeat(5 * 1024 * 1024);
    // The server may cut the stream while this is being sent: how the stream ends is checked below.
    let _ = big_sender
        .send(msg(agent_message::Body::Inventory(Inventory {
            facts_json: huge,
        })))
        .await;
    let ended = tokio::time::timeout(Duration::from_secs(10), big_stream.message())
        .await
        .unwrap();
    assert!(!matches!(
        ended,
        Ok(Some(ServerMessage {
            body: Some(server_message::Body::Welcome(_))
        }))
    ));
    // Other devices keep being served.
    sender
        .send(msg(agent_message::Body::Heartbeat(Heartbeat { seq: 2 })))
        .await
        .unwrap();
    assert_eq!(
        kit.call(Method::GET, "/health", None, None).await.status,
        StatusCode::OK
    );
    kit.finish().await;
}

#[tokio::test]
async fn agent_protocol_errors_end_the_stream_with_a_stated_reason() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let (_, other) = two_workstations(&kit).await;
    let mut client = channel(&kit, &other.key_pem, &other.cert_pem).await.unwrap();
    let (_s, mut refused) = session(&mut client, hello(99)).await.unwrap();
    assert!(refused_with(&mut refused, "unsupported_version").await);
    let (_s, mut refused) = session(
        &mut client,
        msg(agent_message::Body::Heartbeat(Heartbeat { seq: 1 })),
    )
    .await
    .unwrap();
    assert!(refused_with(&mut refused, "bad_message").await);
    let (bad_sender, mut bad) = session(&mut client, hello(1)).await.unwrap();
    next_body(&mut bad).await;
    bad_sender
        .send(msg(agent_message::Body::Inventory(Inventory {
            facts_json: "[1,2".into(),
        })))
        .await
        .unwrap();
    assert!(refused_with(&mut bad, "bad_message").await);
    kit.finish().await;
}

#[tokio::test]
async fn an_agent_certificate_from_another_ca_never_gets_past_tls() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let (device, _) = two_workstations(&kit).await;
    let (rogue_key, rogue_cert) = foreign_certificate(&device.id);
    let foreign = match channel(&kit, &rogue_key, &rogue_cert).await {
        Err(_) => true,
        Ok(mut client) => session(&mut client, hello(1)).await.is_err(),
    };
    assert!(foreign, "a certificate from another CA is refused");
    kit.finish().await;
}

#[tokio::test]
async fn revocation_closes_the_live_agent_stream_and_refuses_the_certificate_after() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let (device, _) = two_workstations(&kit).await;
    let (_client, _sender, mut stream) = welcomed_as(&kit, &device).await;
    let revoked = revoke(&kit, &device.id).await;
    assert_eq!(revoked.body["state"], "revoked");
    assert!(refused_with(&mut stream, "revoked").await);
    let mut again = channel(&kit, &device.key_pem, &device.cert_pem).await.unwrap();
    let Err(status) = session(&mut again, hello(1)).await else {
        panic!("a revoked certificate must be refused")
    };
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let denied = kit.audit("device.connect").await;
    assert!(
        denied
            .iter()
            .any(|e| e["details"].as_str().unwrap().contains("revoked"))
    );
    kit.finish().await;
}

#[tokio::test]
async fn an_agent_reconnect_flood_is_cut_off() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let (_, other) = two_workstations(&kit).await;
    let mut flood = channel(&kit, &other.key_pem, &other.cert_pem).await.unwrap();
    let mut limited = false;
    for _ in 0..30 {
        if let Err(status) = session(&mut flood, hello(1)).await
            && status.code() == tonic::Code::ResourceExhausted
        {
            limited = true;
            break;
        }
    }
    assert!(limited, "reconnect flood refused");
    kit.finish().await;
}

/// A session past hello and welcome.
async fn welcomed(
    client: &mut AgentChannelClient<Channel>,
) -> (mpsc::Sender<AgentMessage>, tonic::Streaming<ServerMessage>) {
    let (sender, mut stream) = session(client, hello(1)).await.unwrap();
    next_body(&mut stream).await;
    (sender, stream)
}

fn fragment_msg(data: Vec<u8>, more: bool) -> AgentMessage {
    msg(agent_message::Body::Fragment(Fragment { data, more }))
}

#[tokio::test]
async fn the_agent_channel_joins_fragments_and_refuses_bad_ones() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let (device, _) = two_workstations(&kit).await;
    let mut client = channel(&kit, &device.key_pem, &device.cert_pem).await.unwrap();

    // A 70 KB inventory as 2 KiB fragments is stored whole.
    let (sender, _stream) = welcomed(&mut client).await;
    let packages: Vec<Value> = (0..1500)
        .map(|i| json!({"name": format!("package-{i}"), "version": "1.0"}))
        .collect();
    let facts = json!({"os": {"id": "debian"}, "packages": {"manager": "dpkg", "items": packages}});
    let parts = fragment(msg(agent_message::Body::Inventory(Inventory {
        facts_json: facts.to_string(),
    })));
    assert!(parts.len() > 20, "{} fragments", parts.len());
    for part in parts {
        sender.send(part).await.unwrap();
    }
    let stored = stored_debian_facts(&kit, &device.id).await;
    assert_eq!(stored["packages"]["items"].as_array().map(Vec::len), Some(1500));
    drop(sender);

    // Something else between the fragments of one message.
    let (sender, mut stream) = welcomed(&mut client).await;
    sender.send(fragment_msg(vec![1, 2, 3], true)).await.unwrap();
    sender
        .send(msg(agent_message::Body::Heartbeat(Heartbeat { seq: 1 })))
        .await
        .unwrap();
    assert!(refused_with(&mut stream, "bad_message").await);

    // Fragments that join into something that is not a message.
    let (sender, mut stream) = welcomed(&mut client).await;
    sender.send(fragment_msg(vec![0xff; 10], false)).await.unwrap();
    assert!(refused_with(&mut stream, "bad_message").await);

    // Fragments each under the message limit that together exceed it.
    let (sender, mut stream) = welcomed(&mut client).await;
    for _ in 0..5 {
        if sender
            .send(fragment_msg(vec![b'x'; 1024 * 1024], true))
            .await
            .is_err()
        {
            break;
        }
    }
    assert!(refused_with(&mut stream, "too_large").await);
    assert_eq!(
        kit.call(Method::GET, "/health", None, None).await.status,
        StatusCode::OK
    );
    kit.finish().await;
}

#[tokio::test]
async fn certificates_renew_with_a_new_key_and_the_old_one_stops_working() {
    let kit = Kit::start(&Backend::Sqlite).await;
    kit.create_sites().await;
    let device = kit.enrolled_device("general", "mobile", "tablet-7").await;
    let mut client = channel(&kit, &device.key_pem, &device.cert_pem).await.unwrap();

    let bad = client
        .renew(ward_proto::agent::RenewRequest {
            csr_pem: "garbage".into(),
        })
        .await;
    assert_eq!(bad.map(|_| ()).unwrap_err().code(), tonic::Code::InvalidArgument);

    let new_key = KeyPair::generate().unwrap();
    let renewed = client
        .renew(ward_proto::agent::RenewRequest {
            csr_pem: csr(&new_key),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(renewed.not_after_ms > 0);
    let mut fresh = channel(&kit, &new_key.serialize_pem(), &renewed.certificate_pem)
        .await
        .unwrap();
    let (_sender, mut stream) = session(&mut fresh, hello(1)).await.unwrap();
    assert!(matches!(
        next_body(&mut stream).await,
        Some(server_message::Body::Welcome(_))
    ));

    let mut stale = channel(&kit, &device.key_pem, &device.cert_pem).await.unwrap();
    let Err(status) = session(&mut stale, hello(1)).await else {
        panic!("the old certificate must be refused")
    };
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(status.message().contains("superseded"));
    assert_eq!(kit.audit("device.renew_certificate").await.len(), 1);
    kit.finish().await;
}

/// A framed-channel connection (what `ward-agent` uses): TLS with ALPN `ward-agent/2`.
type Framed = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;
type FramedReader = FrameReader<tokio::io::ReadHalf<Framed>>;
type FramedWriter = tokio::io::WriteHalf<Framed>;

async fn framed_connect(kit: &Kit, key_pem: &str, cert_pem: &str) -> std::io::Result<Framed> {
    let config = framed::client_config(&kit.server.ca_cert_pem, cert_pem, key_pem).unwrap();
    framed::connect_to(config, kit.server.agent_addr, "localhost", None).await
}

/// The next message the server sends on a framed connection, `None` when it closed it.
async fn framed_next(reader: &mut FramedReader) -> Option<server_message::Body> {
    tokio::time::timeout(Duration::from_secs(10), reader.message::<ServerMessage>())
        .await
        .expect("the server answers within 10 s")
        .ok()?
        .and_then(|m| m.body)
}

/// True when the server's next framed message is a refusal with this code.
async fn framed_refused_with(reader: &mut FramedReader, code: &str) -> bool {
    matches!(framed_next(reader).await, Some(server_message::Body::Refusal(r)) if r.code == code)
}

/// A framed connection split into its reading and writing halves.
async fn framed_open(kit: &Kit, key_pem: &str, cert_pem: &str) -> (FramedReader, FramedWriter) {
    let stream = framed_connect(kit, key_pem, cert_pem).await.unwrap();
    let (read, write) = tokio::io::split(stream);
    (FrameReader::new(read, 64 * 1024), write)
}

/// A framed session past hello and welcome.
async fn framed_welcomed(kit: &Kit, device: &Enrolled) -> (FramedReader, FramedWriter) {
    let (mut reader, mut write) = framed_open(kit, &device.key_pem, &device.cert_pem).await;
    framed::write_message(&mut write, &hello(1)).await.unwrap();
    assert!(
        matches!(framed_next(&mut reader).await, Some(server_message::Body::Welcome(w)) if w.device_id == device.id)
    );
    (reader, write)
}

async fn framed_heartbeat(write: &mut FramedWriter, seq: u64) {
    framed::write_message(write, &msg(agent_message::Body::Heartbeat(Heartbeat { seq })))
        .await
        .unwrap();
}

/// A length prefix over the limit: refused as too large, the connection closed.
async fn framed_length_over_the_limit(kit: &Kit, device: &Enrolled) {
    use tokio::io::AsyncWriteExt;
    let (mut big_reader, mut big_write) = framed_welcomed(kit, device).await;
    big_write
        .write_all(&(5u32 * 1024 * 1024).to_be_bytes())
        .await
        .unwrap();
    big_write.flush().await.unwrap();
    assert!(framed_refused_with(&mut big_reader, "too_large").await);
    assert!(
        framed_next(&mut big_reader).await.is_none(),
        "closed after the refusal"
    );
}

/// Bytes that are not a message: refused as a bad message.
async fn framed_bytes_that_are_not_a_message(kit: &Kit, device: &Enrolled) {
    use tokio::io::AsyncWriteExt;
    let (mut bad_reader, mut bad_write) = framed_welcomed(kit, device).await;
    bad_write
        .write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    bad_write.flush().await.unwrap();
    assert!(framed_refused_with(&mut bad_reader, "bad_message").await);
}

/// A message that is not hello first, and a wrong version: each refused with its code.
async fn framed_bad_openings(kit: &Kit, device: &Enrolled) {
    for (first, code) in [
        (
            msg(agent_message::Body::Heartbeat(Heartbeat { seq: 1 })),
            "bad_message",
        ),
        (hello(99), "unsupported_version"),
    ] {
        let (mut reader, mut write) = framed_open(kit, &device.key_pem, &device.cert_pem).await;
        framed::write_message(&mut write, &first).await.unwrap();
        assert!(framed_refused_with(&mut reader, code).await, "{code}");
    }
}

/// A frame cut off by a close ends the session.
async fn framed_cut_off_frame(kit: &Kit, device: &Enrolled) {
    use tokio::io::AsyncWriteExt;
    let (mut cut_reader, mut write) = framed_open(kit, &device.key_pem, &device.cert_pem).await;
    write.write_all(&[0, 0, 1, 0, 1, 2]).await.unwrap();
    write.shutdown().await.unwrap();
    assert!(
        framed_next(&mut cut_reader).await.is_none(),
        "a cut-off frame ends the session"
    );
}

#[tokio::test]
async fn the_framed_channel_stores_a_large_inventory_whole_and_records_heartbeats() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let (device, _) = two_workstations(&kit).await;
    // A good session: a 70 KB inventory whole (no fragments needed), a heartbeat, online.
    let (_reader, mut first) = framed_welcomed(&kit, &device).await;
    let packages: Vec<Value> = (0..1500)
        .map(|i| json!({"name": format!("package-{i}"), "version": "1.0"}))
        .collect();
    let facts = json!({"hostname": "<script>x</script>\u{1b}[2J", "os": {"id": "debian"}, "packages": {"manager": "dpkg", "items": packages}});
    let inventory = msg(agent_message::Body::Inventory(Inventory {
        facts_json: facts.to_string(),
    }));
    framed::write_message(&mut first, &inventory).await.unwrap();
    framed_heartbeat(&mut first, 1).await;
    let stored = stored_debian_facts(&kit, &device.id).await;
    assert_eq!(stored["packages"]["items"].as_array().map(Vec::len), Some(1500));
    assert_eq!(
        stored["hostname"], "<script>x</script>[2J",
        "control characters removed"
    );
    let online = kit
        .admin(Method::GET, "/devices?filter=online%20%3D%20true", None)
        .await;
    assert_eq!(online.body.as_array().unwrap().len(), 1);
    // Heartbeats are written in batches, about a second later: a later one moves presence on.
    kit.clock.advance_ms(45_000);
    let heard = ward_domain::clock::Clock::now_ms(kit.clock.as_ref());
    framed_heartbeat(&mut first, 2).await;
    let mut last_seen = Value::Null;
    for _ in 0..100 {
        last_seen = kit
            .admin(Method::GET, &format!("/devices/{}", device.id), None)
            .await
            .body["device"]["last_seen_at"]
            .clone();
        if last_seen == ward_core::views::rfc3339(heard) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        last_seen,
        ward_core::views::rfc3339(heard),
        "the heartbeat was recorded"
    );
    kit.finish().await;
}

#[tokio::test]
async fn a_framed_length_prefix_over_the_limit_is_refused_and_the_connection_closed() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let (_, other) = two_workstations(&kit).await;
    framed_length_over_the_limit(&kit, &other).await;
    kit.finish().await;
}

#[tokio::test]
async fn framed_bytes_that_are_not_a_message_are_refused() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let (_, other) = two_workstations(&kit).await;
    framed_bytes_that_are_not_a_message(&kit, &other).await;
    kit.finish().await;
}

#[tokio::test]
async fn a_framed_session_must_open_with_a_hello_in_a_supported_version() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let (_, other) = two_workstations(&kit).await;
    framed_bad_openings(&kit, &other).await;
    kit.finish().await;
}

#[tokio::test]
async fn a_framed_frame_cut_off_by_a_close_ends_the_session() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let (_, other) = two_workstations(&kit).await;
    framed_cut_off_frame(&kit, &other).await;
    kit.finish().await;
}

#[tokio::test]
async fn bad_framed_peers_do_not_disturb_a_good_session() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let (device, other) = two_workstations(&kit).await;
    let (_reader, mut first) = framed_welcomed(&kit, &device).await;
    framed_length_over_the_limit(&kit, &other).await;
    framed_bytes_that_are_not_a_message(&kit, &other).await;
    framed_bad_openings(&kit, &other).await;
    framed_cut_off_frame(&kit, &other).await;
    // The first session was served throughout.
    framed_heartbeat(&mut first, 2).await;
    assert_eq!(
        kit.call(Method::GET, "/health", None, None).await.status,
        StatusCode::OK
    );
    kit.finish().await;
}

#[tokio::test]
async fn the_framed_channel_speaks_only_its_protocols_and_trusts_only_its_ca() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let (device, _) = two_workstations(&kit).await;
    // An unknown application protocol, and a certificate from another CA, fail the handshake.
    let mut config =
        (*framed::client_config(&kit.server.ca_cert_pem, &device.cert_pem, &device.key_pem).unwrap()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(kit.server.agent_addr)
        .await
        .unwrap();
    let wrong_protocol = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await;
    assert!(wrong_protocol.is_err(), "only ward-agent/2 and h2 are spoken");
    let (rogue_key, rogue_cert) = foreign_certificate(&device.id);
    let foreign = match framed_connect(&kit, &rogue_key, &rogue_cert).await {
        Err(_) => true,
        // TLS 1.3: the client may finish before the server refuses its certificate, so this
        // write may fail or not; what counts is that no message comes back.
        Ok(stream) => {
            let (read, mut write) = tokio::io::split(stream);
            let mut reader = FrameReader::new(read, 64 * 1024);
            let _ = framed::write_message(&mut write, &hello(1)).await;
            reader.message::<ServerMessage>().await.is_err()
        }
    };
    assert!(foreign, "a certificate from another CA is refused");
    kit.finish().await;
}

#[tokio::test]
async fn revocation_ends_a_framed_session_with_a_reason_and_refuses_the_certificate_after() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let (device, _) = two_workstations(&kit).await;
    let (mut reader, _first) = framed_welcomed(&kit, &device).await;
    let revoked = revoke(&kit, &device.id).await;
    assert_eq!(revoked.body["state"], "revoked");
    assert!(framed_refused_with(&mut reader, "revoked").await);
    let (mut again, mut write) = framed_open(&kit, &device.key_pem, &device.cert_pem).await;
    // The server may refuse before reading the hello, so the write may fail; the refusal is checked.
    let _ = framed::write_message(&mut write, &hello(1)).await;
    assert!(
        matches!(framed_next(&mut again).await, Some(server_message::Body::Refusal(r)) if r.code == "revoked" && r.message.contains("revoked"))
    );
    kit.finish().await;
}

#[tokio::test]
async fn a_framed_reconnect_flood_is_throttled_with_its_own_code() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let (_, other) = two_workstations(&kit).await;
    let mut throttled = false;
    for _ in 0..30 {
        let (mut reader, mut write) = framed_open(&kit, &other.key_pem, &other.cert_pem).await;
        // A throttled connection may be closed before the hello is read; the answer is checked.
        let _ = framed::write_message(&mut write, &hello(1)).await;
        if framed_refused_with(&mut reader, "throttled").await {
            throttled = true;
            break;
        }
    }
    assert!(throttled, "reconnect flood refused");
    kit.finish().await;
}
