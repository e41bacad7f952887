//! Enrollment, the devices API and the agent channel, with their bad-input cases.

use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use ward_proto::agent::agent_channel_client::AgentChannelClient;
use ward_proto::agent::{
    AgentMessage, Fragment, Heartbeat, Hello, Inventory, ServerMessage, agent_message, server_message,
};
use ward_proto::fragments::fragment;
use ward_proto::framed::{self, FrameReader};

use crate::kit::{Backend, Kit};

pub struct Enrolled {
    pub id: String,
    pub key_pem: String,
    pub cert_pem: String,
    pub command_key: String,
}

fn csr(key: &KeyPair) -> String {
    CertificateParams::new(vec![])
        .unwrap()
        .serialize_request(key)
        .unwrap()
        .pem()
        .unwrap()
}

pub async fn setup_sites(kit: &Kit) {
    for (slug, name) in [
        ("st-marys", "St Mary's"),
        ("st-marys/icu", "ICU"),
        ("general", "General"),
    ] {
        kit.admin(Method::POST, "/sites", Some(json!({"slug": slug, "name": name})))
            .await;
    }
}

pub async fn token(kit: &Kit, body: Value) -> String {
    let reply = kit.admin(Method::POST, "/enroll-tokens", Some(body)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body["secret"].as_str().unwrap().to_owned()
}

pub async fn enroll(kit: &Kit, token: &str, hostname: &str) -> Result<Enrolled, crate::kit::Reply> {
    let key = KeyPair::generate().unwrap();
    let reply = kit
        .call(
            Method::POST,
            "/enroll",
            None,
            Some(json!({"token": token, "csr_pem": csr(&key), "hostname": hostname})),
        )
        .await;
    if reply.status != StatusCode::CREATED {
        return Err(reply);
    }
    Ok(Enrolled {
        id: reply.body["device_id"].as_str().unwrap().to_owned(),
        key_pem: key.serialize_pem(),
        cert_pem: reply.body["certificate_pem"].as_str().unwrap().to_owned(),
        command_key: reply.body["command_key"].as_str().unwrap().to_owned(),
    })
}

pub async fn channel(
    kit: &Kit,
    key_pem: &str,
    cert_pem: &str,
) -> Result<AgentChannelClient<Channel>, String> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&kit.server.ca_cert_pem))
        .identity(Identity::from_pem(cert_pem, key_pem))
        .domain_name("localhost");
    let endpoint = Channel::from_shared(format!("https://{}", kit.server.agent_addr))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?;
    let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
    Ok(AgentChannelClient::new(channel).max_encoding_message_size(16 * 1024 * 1024))
}

pub fn msg(body: agent_message::Body) -> AgentMessage {
    AgentMessage { body: Some(body) }
}

pub fn hello(version: u32) -> AgentMessage {
    msg(agent_message::Body::Hello(Hello {
        protocol_version: version,
        agent_version: "test".into(),
        hostname: "h".into(),
    }))
}

/// Opens a session, sends `first`, and returns the sender and the server's stream (or its error).
pub async fn session(
    client: &mut AgentChannelClient<Channel>,
    first: AgentMessage,
) -> Result<(mpsc::Sender<AgentMessage>, tonic::Streaming<ServerMessage>), tonic::Status> {
    let (sender, receiver) = mpsc::channel(8);
    sender.send(first).await.unwrap();
    let response = client.session(ReceiverStream::new(receiver)).await?;
    Ok((sender, response.into_inner()))
}

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

pub async fn next_body(stream: &mut tonic::Streaming<ServerMessage>) -> Option<server_message::Body> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .ok()?
        .ok()?
        .and_then(|m| m.body)
}

#[tokio::test]
async fn enrollment_tokens_refuse_every_bad_use() {
    let kit = Kit::start(&Backend::Sqlite).await;
    setup_sites(&kit).await;
    let single = token(
        &kit,
        json!({"site": "st-marys/icu", "class": "medical", "criticality": "life-sustaining", "uses": 1}),
    )
    .await;
    enroll(&kit, &single, "pump-1").await.map_err(|r| r.body).unwrap();
    let used = enroll(&kit, &single, "pump-2").await.err().unwrap();
    assert_eq!(
        (used.status, used.code()),
        (StatusCode::UNAUTHORIZED, "token_invalid")
    );
    assert!(
        used.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("used up")
    );

    let expiring = token(
        &kit,
        json!({"site": "general", "class": "workstation", "expires": "1m", "uses": 5}),
    )
    .await;
    kit.clock.advance_ms(61_000);
    let expired = enroll(&kit, &expiring, "ws").await.err().unwrap();
    assert!(
        expired.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

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
    let revoked = enroll(&kit, revocable.body["secret"].as_str().unwrap(), "tab")
        .await
        .err()
        .unwrap();
    assert!(
        revoked.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    for bad in ["", "wardenroll_nonsense", &kit.admin_token] {
        assert_eq!(
            enroll(&kit, bad, "x").await.err().unwrap().code(),
            "token_invalid",
            "{bad}"
        );
    }

    // The CSR must be a valid request signed by its own key.
    let good = token(
        &kit,
        json!({"site": "general", "class": "workstation", "uses": 10}),
    )
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

    // Token creation validates every field and respects roles and site scopes.
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
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{:?}",
            reply.body
        );
    }
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
async fn devices_are_listed_filtered_viewed_and_exported() {
    let kit = Kit::start(&Backend::Sqlite).await;
    setup_sites(&kit).await;
    let icu = token(&kit, json!({"site": "st-marys/icu", "class": "medical", "criticality": "life-sustaining", "phi": true, "uses": 5})).await;
    let general = token(
        &kit,
        json!({"site": "general", "class": "workstation", "uses": 5}),
    )
    .await;
    let pump = enroll(&kit, &icu, "pump-1").await.map_err(|r| r.body).unwrap();
    enroll(&kit, &general, "<script>alert(1)</script>\u{1b}[2J")
        .await
        .map_err(|r| r.body)
        .unwrap();

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
    assert!(
        bad.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("column 6"),
        "{:?}",
        bad.body
    );

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
    setup_sites(kit).await;
    let many = token(
        kit,
        json!({"site": "general", "class": "workstation", "uses": 10}),
    )
    .await;
    let device = enroll(kit, &many, "ws-1").await.map_err(|r| r.body).unwrap();
    let other = enroll(kit, &many, "ws-2").await.map_err(|r| r.body).unwrap();
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
pub async fn revoke(kit: &Kit, device_id: &str) -> crate::kit::Reply {
    kit.admin(
        Method::POST,
        &format!("/devices/{device_id}/revoke"),
        Some(json!({})),
    )
    .await
}

#[tokio::test]
async fn the_agent_channel_refuses_bad_certificates_versions_and_messages() {
    let kit = Kit::start(&Backend::Sqlite).await;
    let (device, other) = two_workstations(&kit).await;

    // A good session: hello, welcome, inventory with hostile strings, heartbeat.
    let mut client = channel(&kit, &device.key_pem, &device.cert_pem).await.unwrap();
    let (sender, mut stream) = session(&mut client, hello(1)).await.unwrap();
    assert!(
        matches!(next_body(&mut stream).await, Some(server_message::Body::Welcome(w)) if w.device_id == device.id)
    );
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

    // Oversized message: that stream is cut, other devices keep being served.
    let mut big_client = channel(&kit, &other.key_pem, &other.cert_pem).await.unwrap();
    let (big_sender, mut big_stream) = session(&mut big_client, hello(1)).await.unwrap();
    next_body(&mut big_stream).await;
    let huge = "x".repeat(5 * 1024 * 1024);
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
    sender
        .send(msg(agent_message::Body::Heartbeat(Heartbeat { seq: 2 })))
        .await
        .unwrap();
    assert_eq!(
        kit.call(Method::GET, "/health", None, None).await.status,
        StatusCode::OK
    );

    // Protocol errors end the stream with a stated reason.
    let mut client2 = channel(&kit, &other.key_pem, &other.cert_pem).await.unwrap();
    let (_s, mut refused) = session(&mut client2, hello(99)).await.unwrap();
    assert!(
        matches!(next_body(&mut refused).await, Some(server_message::Body::Refusal(r)) if r.code == "unsupported_version")
    );
    let (_s, mut refused) = session(
        &mut client2,
        msg(agent_message::Body::Heartbeat(Heartbeat { seq: 1 })),
    )
    .await
    .unwrap();
    assert!(
        matches!(next_body(&mut refused).await, Some(server_message::Body::Refusal(r)) if r.code == "bad_message")
    );
    let (bad_sender, mut bad) = session(&mut client2, hello(1)).await.unwrap();
    next_body(&mut bad).await;
    bad_sender
        .send(msg(agent_message::Body::Inventory(Inventory {
            facts_json: "[1,2".into(),
        })))
        .await
        .unwrap();
    assert!(
        matches!(next_body(&mut bad).await, Some(server_message::Body::Refusal(r)) if r.code == "bad_message")
    );

    // A certificate from another CA never gets past TLS.
    let (rogue_key, rogue_cert) = foreign_certificate(&device.id);
    let foreign = match channel(&kit, &rogue_key, &rogue_cert).await {
        Err(_) => true,
        Ok(mut client) => session(&mut client, hello(1)).await.is_err(),
    };
    assert!(foreign, "a certificate from another CA is refused");

    // Revocation closes the live stream at once and refuses the certificate afterwards.
    let revoked = revoke(&kit, &device.id).await;
    assert_eq!(revoked.body["state"], "revoked");
    assert!(
        matches!(next_body(&mut stream).await, Some(server_message::Body::Refusal(r)) if r.code == "revoked")
    );
    let mut again = channel(&kit, &device.key_pem, &device.cert_pem).await.unwrap();
    let Err(status) = session(&mut again, hello(1)).await else {
        panic!("a revoked certificate must be refused")
    };
    assert_eq!(status.code(), tonic::Code::PermissionDenied);

    // A reconnect flood is cut off.
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
    let denied = kit.audit("device.connect").await;
    assert!(
        denied
            .iter()
            .any(|e| e["details"].as_str().unwrap().contains("revoked"))
    );
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
    assert!(
        matches!(next_body(&mut stream).await, Some(server_message::Body::Refusal(r)) if r.code == "bad_message")
    );

    // Fragments that join into something that is not a message.
    let (sender, mut stream) = welcomed(&mut client).await;
    sender.send(fragment_msg(vec![0xff; 10], false)).await.unwrap();
    assert!(
        matches!(next_body(&mut stream).await, Some(server_message::Body::Refusal(r)) if r.code == "bad_message")
    );

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
    assert!(
        matches!(next_body(&mut stream).await, Some(server_message::Body::Refusal(r)) if r.code == "too_large")
    );
    assert_eq!(
        kit.call(Method::GET, "/health", None, None).await.status,
        StatusCode::OK
    );
    kit.finish().await;
}

#[tokio::test]
async fn certificates_renew_with_a_new_key_and_the_old_one_stops_working() {
    let kit = Kit::start(&Backend::Sqlite).await;
    setup_sites(&kit).await;
    let token = token(&kit, json!({"site": "general", "class": "mobile"})).await;
    let device = enroll(&kit, &token, "tablet-7")
        .await
        .map_err(|r| r.body)
        .unwrap();
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

async fn framed_connect(kit: &Kit, key_pem: &str, cert_pem: &str) -> std::io::Result<Framed> {
    let config = framed::client_config(&kit.server.ca_cert_pem, cert_pem, key_pem).unwrap();
    framed::connect_to(config, kit.server.agent_addr, "localhost", None).await
}

/// The next message the server sends on a framed connection, `None` when it closed it.
async fn framed_next(reader: &mut FrameReader<tokio::io::ReadHalf<Framed>>) -> Option<server_message::Body> {
    tokio::time::timeout(Duration::from_secs(10), reader.message::<ServerMessage>())
        .await
        .expect("the server answers within 10 s")
        .ok()?
        .and_then(|m| m.body)
}

/// A framed connection split into its reading and writing halves.
async fn framed_open(
    kit: &Kit,
    key_pem: &str,
    cert_pem: &str,
) -> (
    FrameReader<tokio::io::ReadHalf<Framed>>,
    tokio::io::WriteHalf<Framed>,
) {
    let stream = framed_connect(kit, key_pem, cert_pem).await.unwrap();
    let (read, write) = tokio::io::split(stream);
    (FrameReader::new(read, 64 * 1024), write)
}

/// A framed session past hello and welcome.
async fn framed_welcomed(
    kit: &Kit,
    device: &Enrolled,
) -> (
    FrameReader<tokio::io::ReadHalf<Framed>>,
    tokio::io::WriteHalf<Framed>,
) {
    let (mut reader, mut write) = framed_open(kit, &device.key_pem, &device.cert_pem).await;
    framed::write_message(&mut write, &hello(1)).await.unwrap();
    assert!(
        matches!(framed_next(&mut reader).await, Some(server_message::Body::Welcome(w)) if w.device_id == device.id)
    );
    (reader, write)
}

#[tokio::test]
async fn the_framed_agent_channel_serves_and_refuses_bad_input() {
    use tokio::io::AsyncWriteExt;
    let kit = Kit::start(&Backend::Sqlite).await;
    let (device, other) = two_workstations(&kit).await;

    // A good session: a 70 KB inventory whole (no fragments needed), a heartbeat, online.
    let (mut reader, mut first) = framed_welcomed(&kit, &device).await;
    let packages: Vec<Value> = (0..1500)
        .map(|i| json!({"name": format!("package-{i}"), "version": "1.0"}))
        .collect();
    let facts = json!({"hostname": "<script>x</script>\u{1b}[2J", "os": {"id": "debian"}, "packages": {"manager": "dpkg", "items": packages}});
    let inventory = msg(agent_message::Body::Inventory(Inventory {
        facts_json: facts.to_string(),
    }));
    framed::write_message(&mut first, &inventory).await.unwrap();
    framed::write_message(
        &mut first,
        &msg(agent_message::Body::Heartbeat(Heartbeat { seq: 1 })),
    )
    .await
    .unwrap();
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
    framed::write_message(
        &mut first,
        &msg(agent_message::Body::Heartbeat(Heartbeat { seq: 2 })),
    )
    .await
    .unwrap();
    let mut last_seen = Value::Null;
    for _ in 0..100 {
        last_seen = kit
            .admin(Method::GET, &format!("/devices/{}", device.id), None)
            .await
            .body["device"]["last_seen_at"]
            .clone();
        if last_seen == ward_service::views::rfc3339(heard) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        last_seen,
        ward_service::views::rfc3339(heard),
        "the heartbeat was recorded"
    );

    // A length prefix over the limit: refused as too large, the connection closed.
    let (mut big_reader, mut big_write) = framed_welcomed(&kit, &other).await;
    big_write
        .write_all(&(5u32 * 1024 * 1024).to_be_bytes())
        .await
        .unwrap();
    big_write.flush().await.unwrap();
    assert!(
        matches!(framed_next(&mut big_reader).await, Some(server_message::Body::Refusal(r)) if r.code == "too_large")
    );
    assert!(
        framed_next(&mut big_reader).await.is_none(),
        "closed after the refusal"
    );

    // Bytes that are not a message.
    let (mut bad_reader, mut bad_write) = framed_welcomed(&kit, &other).await;
    bad_write
        .write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    bad_write.flush().await.unwrap();
    assert!(
        matches!(framed_next(&mut bad_reader).await, Some(server_message::Body::Refusal(r)) if r.code == "bad_message")
    );

    // A message that is not hello first, a wrong version, and a frame cut off by a close.
    for (first, code) in [
        (
            msg(agent_message::Body::Heartbeat(Heartbeat { seq: 1 })),
            "bad_message",
        ),
        (hello(99), "unsupported_version"),
    ] {
        let (mut reader, mut write) = framed_open(&kit, &other.key_pem, &other.cert_pem).await;
        framed::write_message(&mut write, &first).await.unwrap();
        assert!(
            matches!(framed_next(&mut reader).await, Some(server_message::Body::Refusal(r)) if r.code == code),
            "{code}"
        );
    }
    let (mut cut_reader, mut write) = framed_open(&kit, &other.key_pem, &other.cert_pem).await;
    write.write_all(&[0, 0, 1, 0, 1, 2]).await.unwrap();
    write.shutdown().await.unwrap();
    assert!(
        framed_next(&mut cut_reader).await.is_none(),
        "a cut-off frame ends the session"
    );

    // The first session was served throughout.
    framed::write_message(
        &mut first,
        &msg(agent_message::Body::Heartbeat(Heartbeat { seq: 2 })),
    )
    .await
    .unwrap();
    assert_eq!(
        kit.call(Method::GET, "/health", None, None).await.status,
        StatusCode::OK
    );

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
        // TLS 1.3: the client may finish before the server refuses its certificate.
        Ok(stream) => {
            let (read, mut write) = tokio::io::split(stream);
            let mut reader = FrameReader::new(read, 64 * 1024);
            let _ = framed::write_message(&mut write, &hello(1)).await;
            reader.message::<ServerMessage>().await.is_err()
        }
    };
    assert!(foreign, "a certificate from another CA is refused");

    // Revocation ends the live session with a stated reason; the certificate is refused after.
    let revoked = revoke(&kit, &device.id).await;
    assert_eq!(revoked.body["state"], "revoked");
    assert!(
        matches!(framed_next(&mut reader).await, Some(server_message::Body::Refusal(r)) if r.code == "revoked")
    );
    let (mut again, mut write) = framed_open(&kit, &device.key_pem, &device.cert_pem).await;
    let _ = framed::write_message(&mut write, &hello(1)).await;
    assert!(
        matches!(framed_next(&mut again).await, Some(server_message::Body::Refusal(r)) if r.code == "revoked" && r.message.contains("revoked"))
    );

    // A reconnect flood is cut off with its own code.
    let mut throttled = false;
    for _ in 0..30 {
        let (mut reader, mut write) = framed_open(&kit, &other.key_pem, &other.cert_pem).await;
        let _ = framed::write_message(&mut write, &hello(1)).await;
        if matches!(framed_next(&mut reader).await, Some(server_message::Body::Refusal(r)) if r.code == "throttled")
        {
            throttled = true;
            break;
        }
    }
    assert!(throttled, "reconnect flood refused");
    kit.finish().await;
}
