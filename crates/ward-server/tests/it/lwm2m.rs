//! The LwM2M gateway end to end on 127.0.0.1: provisioning through the API (key shown once),
//! the in-repo LwM2M client registering, facts from /3 and /4, commands through the durable queue
//! (reboot, lock, wipe, unsupported kinds, devices without object 8), an incident containing an
//! LwM2M device, lifetime expiry with a controlled clock, and the hostile cases (unknown endpoint,
//! unsupported version, register flood, malformed and oversized datagrams, a silent device).
//! Firmware updates through /5 (success, a failure Update Result, no /5, a timeout), and a
//! Register from Debian's libcoap `coap-client` (skipped, saying so, when it is not installed and
//! `WARD_TEST_COAP` is not set; a failure when it is set).

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use ward_lwm2m::client::{
    self, ClientConfig, ClientEvent, ClientHandle, DeviceInfo, FirmwareProgress, ObjectStore,
};
use ward_lwm2m::coap::{self, Packet, ResponseType, TransmissionParams};
use ward_lwm2m::link::Link;
use ward_lwm2m::objects::firmware::UpdateResult;
use ward_lwm2m::registration::Register;
use ward_lwm2m::server::response_code;

use ward_testkit::{Backend, Kit, backends};

const WAIT: Duration = Duration::from_secs(15);

async fn start(backend: &Backend, adjust: impl FnOnce(&mut ward_server::Config)) -> Kit {
    let kit = Kit::start_with(backend, |config| {
        config.lwm2m.ack_timeout_ms = 40;
        config.lwm2m.sweep_interval_ms = 20;
        adjust(config);
    })
    .await;
    kit.create_sites().await;
    kit
}

fn gateway(kit: &Kit) -> SocketAddr {
    kit.server.lwm2m_addr.expect("the gateway listens")
}

async fn provision(kit: &Kit, endpoint: &str, class: &str, criticality: &str) -> Value {
    let reply = kit
        .admin(
            Method::POST,
            "/lwm2m/endpoints",
            Some(
                json!({"endpoint": endpoint, "site": "st-marys/icu", "class": class,
                        "criticality": criticality, "phi": true}),
            ),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body
}

struct Device {
    handle: ClientHandle,
    events: mpsc::Receiver<ClientEvent>,
    _task: tokio::task::JoinHandle<()>,
}

impl Device {
    async fn start(kit: &Kit, endpoint: &str, lock_wipe: bool) -> Device {
        Self::start_with(kit, endpoint, lock_wipe, |_| {}).await
    }

    async fn start_with(
        kit: &Kit,
        endpoint: &str,
        lock_wipe: bool,
        adjust: impl FnOnce(&mut ClientConfig),
    ) -> Device {
        let removed: &[u16] = if lock_wipe { &[] } else { &[8] };
        Self::start_without(kit, endpoint, removed, adjust).await
    }

    /// A device without the objects in `removed`.
    async fn start_without(
        kit: &Kit,
        endpoint: &str,
        removed: &[u16],
        adjust: impl FnOnce(&mut ClientConfig),
    ) -> Device {
        let mut store = ObjectStore::standard(DeviceInfo {
            manufacturer: "Acme\u{1b}[31m Medical".into(),
            model: "Infusion Pump".into(),
            serial: format!("SN-{endpoint}"),
            firmware_version: "2.4.1".into(),
        });
        for object in removed {
            store.remove_object(*object);
        }
        let config = ClientConfig {
            lifetime: 60,
            params: TransmissionParams {
                ack_timeout: Duration::from_millis(100),
                ..TransmissionParams::default()
            },
            ..ClientConfig::new(endpoint)
        };
        let mut config = config;
        adjust(&mut config);
        let (handle, mut events, task) =
            client::spawn(config, store, SocketAddr::from(([127, 0, 0, 1], 0)), gateway(kit))
                .await
                .unwrap();
        match next_event(&mut events).await {
            ClientEvent::Registered { .. } => {}
            other => panic!("expected registration, got {other:?}"),
        }
        Device {
            handle,
            events,
            _task: task,
        }
    }

    /// The next event other than a write of a plain resource.
    async fn action(&mut self) -> ClientEvent {
        loop {
            match next_event(&mut self.events).await {
                ClientEvent::Written { .. } => {}
                other => return other,
            }
        }
    }
}

async fn next_event(events: &mut mpsc::Receiver<ClientEvent>) -> ClientEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("a client event in time")
        .expect("the client is running")
}

/// Polls the device until `done` holds.
async fn wait_device(kit: &Kit, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..300 {
        let reply = kit.admin(Method::GET, &format!("/devices/{id}"), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        if done(&reply.body["device"]) {
            return reply.body["device"].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("device {id} never got there");
}

async fn command(kit: &Kit, device: &str, body: Value) -> String {
    let reply = kit
        .admin(Method::POST, &format!("/devices/{device}/commands"), Some(body))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

/// Waits for a command to finish; returns its view.
async fn finished(kit: &Kit, id: &str) -> Value {
    for _ in 0..300 {
        let reply = kit.admin(Method::GET, &format!("/commands/{id}"), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        let state = reply.body["command"]["state"].as_str().unwrap_or_default();
        if state == "succeeded" || state == "failed" {
            return reply.body["command"].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("command {id} never finished");
}

fn clinician() -> Value {
    json!({"name": "Dr A. Byrne", "reason": "pump idle, patient moved"})
}

const PUMP: &str = "urn:dev:pump-0001";

/// Provisions the life-sustaining pump [`PUMP`]; returns the answer and the device id.
async fn provisioned_pump(kit: &Kit) -> (Value, String) {
    let created = provision(kit, PUMP, "medical", "life-sustaining").await;
    let device_id = created["endpoint"]["device_id"].as_str().unwrap().to_owned();
    (created, device_id)
}

/// The pump provisioned and registered, its /3 and /4 read into its facts.
async fn registered_pump(kit: &Kit) -> (Device, String) {
    let (_, device_id) = provisioned_pump(kit).await;
    let pump = Device::start(kit, PUMP, true).await;
    wait_device(kit, &device_id, |d| {
        d["facts"]["lwm2m"]["device"]["serial_number"].is_string()
            && d["facts"]["lwm2m"]["connectivity"].is_object()
    })
    .await;
    (pump, device_id)
}

/// The battery level changes on the device; returns the device once its facts say so.
async fn battery_changed(kit: &Kit, pump: &Device, device_id: &str, level: i64) -> Value {
    // The gateway keeps no copy of quiet facts (after a few sweeps it reads them from the store).
    tokio::time::sleep(Duration::from_millis(200)).await;
    pump.handle
        .set(
            ward_lwm2m::content::Path::resource(3, 0, 9),
            ward_lwm2m::content::Value::Integer(level),
        )
        .await
        .unwrap();
    wait_device(kit, device_id, |d| {
        d["facts"]["lwm2m"]["device"]["battery_level"] == level
    })
    .await
}

#[tokio::test]
async fn provisioning_shows_the_key_once_and_refuses_duplicates_bad_input_and_auditors() {
    for backend in backends() {
        let kit = start(&backend, |_| {}).await;
        let (created, _) = provisioned_pump(&kit).await;
        let psk = created["psk"].as_str().unwrap();
        assert_eq!(psk.len(), 32, "16 bytes, hex");
        assert_eq!(created["psk_identity"], PUMP);
        // Shown once: the list never has it.
        let list = kit.admin(Method::GET, "/lwm2m/endpoints", None).await;
        assert_eq!(list.status, StatusCode::OK);
        assert!(!list.body.to_string().contains(psk), "{}", list.body);
        assert_eq!(list.body[0]["has_psk"], true);
        assert_eq!(list.body[0]["registered"], false);
        let again = kit
            .admin(
                Method::POST,
                "/lwm2m/endpoints",
                Some(json!({"endpoint": PUMP, "site": "st-marys/icu", "class": "medical"})),
            )
            .await;
        assert_eq!(again.code(), "conflict", "{:?}", again.body);
        for body in [
            json!({"endpoint": "bad name", "site": "st-marys/icu", "class": "medical"}),
            json!({"endpoint": "ok", "site": "nowhere", "class": "medical"}),
            json!({"endpoint": "ok", "site": "st-marys", "class": "toaster"}),
        ] {
            let reply = kit
                .admin(Method::POST, "/lwm2m/endpoints", Some(body.clone()))
                .await;
            assert_eq!(reply.code(), "invalid_input", "{body}: {:?}", reply.body);
        }
        let auditor = kit.user("ann", "auditor", &[]).await;
        let refused = kit
            .call(Method::GET, "/lwm2m/endpoints", Some(&auditor), None)
            .await;
        assert_eq!(refused.code(), "forbidden");
        assert_eq!(kit.audit("lwm2m.provision").await.len(), 1);
        kit.finish().await;
    }
}

#[tokio::test]
async fn a_registered_pump_reports_objects_3_and_4_as_cleaned_facts() {
    for backend in backends() {
        let kit = start(&backend, |_| {}).await;
        let (_pump, device_id) = registered_pump(&kit).await;
        let device = wait_device(&kit, &device_id, |d| d["online"] == true).await;
        assert_eq!(device["online"], true);
        assert_eq!(device["hostname"], PUMP);
        let facts = &device["facts"]["lwm2m"];
        assert_eq!(
            facts["device"]["manufacturer"], "Acme[31m Medical",
            "control characters stripped"
        );
        assert_eq!(facts["device"]["firmware_version"], "2.4.1");
        assert_eq!(facts["device"]["battery_level"], 100);
        assert_eq!(facts["connectivity"]["radio_signal_strength"], -70);
        assert_eq!(facts["lifetime_s"], 60);
        assert!(facts["objects"].as_array().unwrap().contains(&json!("/8/0")));
        let list = kit.admin(Method::GET, "/lwm2m/endpoints", None).await;
        assert_eq!(list.body[0]["registered"], true);
        kit.finish().await;
    }
}

#[tokio::test]
async fn an_observed_change_reaches_the_facts_keeps_what_was_read_before_and_can_be_filtered_on() {
    for backend in backends() {
        let kit = start(&backend, |_| {}).await;
        let (pump, device_id) = registered_pump(&kit).await;
        // The battery is observed: a change on the device reaches the facts, and the change
        // keeps everything read before.
        let device = battery_changed(&kit, &pump, &device_id, 42).await;
        let facts = &device["facts"]["lwm2m"];
        assert_eq!(facts["device"]["serial_number"], "SN-urn:dev:pump-0001");
        assert_eq!(facts["connectivity"]["radio_signal_strength"], -70);
        assert_eq!(facts["lifetime_s"], 60);
        // Policies can check what the gateway reports.
        let filtered = kit
            .admin(
                Method::GET,
                "/devices?filter=facts.lwm2m.device.battery_level%20%3C%2050",
                None,
            )
            .await;
        assert_eq!(filtered.status, StatusCode::OK, "{:?}", filtered.body);
        assert_eq!(filtered.body.as_array().map(Vec::len), Some(1));
        kit.finish().await;
    }
}

#[tokio::test]
async fn commands_reach_an_lwm2m_pump_and_a_kind_it_cannot_do_is_refused_clearly() {
    for backend in backends() {
        let kit = start(&backend, |_| {}).await;
        let (mut pump, device_id) = registered_pump(&kit).await;
        // Reboot (a life-sustaining device: the clinician rule applies as for any device).
        let reboot = command(
            &kit,
            &device_id,
            json!({"kind": "reboot", "clinician": clinician()}),
        )
        .await;
        assert_eq!(pump.action().await, ClientEvent::Reboot);
        let view = finished(&kit, &reboot).await;
        assert_eq!(view["state"], "succeeded", "{view}");
        assert!(view["acknowledged_at"].is_string());
        let lock = command(&kit, &device_id, json!({"kind": "lock"})).await;
        assert!(matches!(pump.action().await, ClientEvent::Lock { state: 2, .. }));
        assert_eq!(finished(&kit, &lock).await["state"], "succeeded");
        let wipe = command(
            &kit,
            &device_id,
            json!({"kind": "wipe-selective", "clinician": clinician()}),
        )
        .await;
        assert!(matches!(pump.action().await, ClientEvent::Wipe { .. }));
        assert_eq!(finished(&kit, &wipe).await["state"], "succeeded");
        // A kind the platform cannot carry out is refused before anything is stored.
        let message = kit
            .admin(
                Method::POST,
                &format!("/devices/{device_id}/commands"),
                Some(json!({"kind": "message", "params": {"text": "hi"}})),
            )
            .await;
        assert_eq!(
            (message.status, message.code()),
            (StatusCode::CONFLICT, "device_unavailable"),
            "{:?}",
            message.body
        );
        // The reason names the kind and the platform (its wording is the service's).
        let reason = message.message();
        assert!(
            reason.starts_with("message ") && reason.contains("LwM2M"),
            "{:?}",
            message.body
        );
        let results = kit.audit("command.result").await;
        assert_eq!(results.len(), 3, "one audited result per command");
        assert!(
            results
                .iter()
                .all(|e| e["actor"] == format!("device:{device_id}"))
        );
        kit.finish().await;
    }
}

#[tokio::test]
async fn an_lwm2m_registration_ends_with_its_lifetime_and_the_facts_stay() {
    for backend in backends() {
        let kit = start(&backend, |_| {}).await;
        let (pump, device_id) = registered_pump(&kit).await;
        battery_changed(&kit, &pump, &device_id, 42).await;
        // Lifetime expiry (server clock): offline, and the registration is gone.
        kit.clock.advance_ms(61_000);
        let device = wait_device(&kit, &device_id, |d| d["facts"]["lwm2m"]["registered"] == false).await;
        assert_eq!(device["online"], false);
        assert_eq!(device["facts"]["lwm2m"]["device"]["battery_level"], 42);
        let list = kit.admin(Method::GET, "/lwm2m/endpoints", None).await;
        assert_eq!(list.body[0]["registered"], false);
        kit.finish().await;
    }
}

#[tokio::test]
async fn devices_without_object_8_and_an_incident_with_lwm2m_devices() {
    let kit = start(&Backend::Sqlite, |_| {}).await;
    let monitor = provision(&kit, "urn:dev:monitor-1", "medical", "high").await;
    let monitor_id = monitor["endpoint"]["device_id"].as_str().unwrap().to_owned();
    let pump = provision(&kit, "urn:dev:pump-2", "medical", "life-sustaining").await;
    let pump_id = pump["endpoint"]["device_id"].as_str().unwrap().to_owned();
    let _bare = Device::start(&kit, "urn:dev:monitor-1", false).await;
    let mut full = Device::start(&kit, "urn:dev:pump-2", true).await;
    for id in [&monitor_id, &pump_id] {
        wait_device(&kit, id, |d| d["online"] == true).await;
    }
    let lock = command(&kit, &monitor_id, json!({"kind": "lock"})).await;
    let view = finished(&kit, &lock).await;
    assert_eq!(
        (view["state"].as_str(), view["detail"].as_str()),
        (Some("failed"), Some("device lacks object 8 (Lock and Wipe)"))
    );
    let wipe = command(
        &kit,
        &monitor_id,
        json!({"kind": "wipe-selective", "clinician": clinician()}),
    )
    .await;
    assert_eq!(
        finished(&kit, &wipe).await["detail"],
        "device lacks object 8 (Lock and Wipe)"
    );

    // An incident over both: quarantine is recorded; the pump with /8 is also locked.
    let declared = kit
        .admin(
            Method::POST,
            "/incidents",
            Some(json!({"title": "Compromised pump firmware", "scope": "class = \"medical\""})),
        )
        .await;
    assert_eq!(declared.status, StatusCode::CREATED, "{:?}", declared.body);
    let id = declared.body["id"].as_str().unwrap().to_owned();
    let security = kit.user("sam", "security", &[]).await;
    let approved = kit
        .call(
            Method::POST,
            &format!("/incidents/{id}/approve"),
            Some(&security),
            Some(json!({})),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{:?}", approved.body);
    let contained = kit
        .admin(Method::POST, &format!("/incidents/{id}/contain"), Some(json!({})))
        .await;
    assert_eq!(contained.status, StatusCode::OK, "{:?}", contained.body);
    assert!(matches!(full.action().await, ClientEvent::Lock { state: 2, .. }));
    let commands = kit
        .admin(Method::GET, &format!("/commands?batch=incident:{id}"), None)
        .await;
    assert_eq!(commands.status, StatusCode::OK, "{:?}", commands.body);
    let ids: Vec<String> = commands
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{:?}", commands.body);
    for command_id in ids {
        let view = finished(&kit, &command_id).await;
        assert_eq!(view["kind"], "quarantine");
        assert_eq!(view["state"], "succeeded", "{view}");
        let detail = view["detail"].as_str().unwrap();
        assert!(detail.starts_with("network isolation must be enforced by the hospital network"));
        assert_eq!(
            detail.ends_with("/8 lock applied"),
            view["device_id"] == pump_id.as_str(),
            "{detail}"
        );
    }
    let device = wait_device(&kit, &monitor_id, |d| d["state"] == "quarantined").await;
    assert_eq!(device["state"], "quarantined");
    kit.finish().await;
}

/// A raw CoAP peer on loopback.
struct Raw {
    socket: UdpSocket,
    gateway: SocketAddr,
    next_id: u16,
}

impl Raw {
    async fn new(kit: &Kit) -> Raw {
        Self::new_at(kit, "127.0.0.1:0").await
    }

    async fn new_at(kit: &Kit, bind: &str) -> Raw {
        Raw {
            socket: UdpSocket::bind(bind).await.unwrap(),
            gateway: gateway(kit),
            next_id: 100,
        }
    }

    async fn send(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.gateway).await.unwrap();
    }

    /// Sends a Register and returns the gateway's answer to it.
    async fn register(&mut self, endpoint: &str, version: &str) -> Packet {
        self.next_id += 1;
        let mut register = Register::new(
            endpoint,
            vec![Link::to_path(&ward_lwm2m::content::Path::instance(3, 0))],
        );
        register.lifetime = 60;
        let mut packet = register.to_packet(self.next_id, vec![1, 2, 3, 4]);
        if version != "1.1" {
            packet.clear_option(coap::CoapOption::UriQuery);
            coap::add_queries(
                &mut packet,
                &[
                    format!("ep={endpoint}"),
                    "lt=60".into(),
                    format!("lwm2m={version}"),
                ],
            );
        }
        self.send(&coap::serialize(&packet).unwrap()).await;
        self.answer_to(self.next_id).await
    }

    /// Registers with these objects; returns the gateway's answer.
    async fn register_objects(&mut self, endpoint: &str, objects: &[(u16, u16)]) -> Packet {
        self.next_id += 1;
        let links = objects
            .iter()
            .map(|(object, instance)| Link::to_path(&ward_lwm2m::content::Path::instance(*object, *instance)))
            .collect();
        let mut register = Register::new(endpoint, links);
        register.lifetime = 60;
        let packet = register.to_packet(self.next_id, vec![5, 6, 7, self.next_id as u8]);
        self.send(&coap::serialize(&packet).unwrap()).await;
        self.answer_to(self.next_id).await
    }

    /// Waits for a request from the gateway to `path` (`8/0/3`); None if none comes in `within`.
    async fn request_to(&self, path: &str, within: Duration) -> Option<Packet> {
        let mut buf = vec![0u8; 4096];
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (n, _) = tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf))
                .await
                .ok()?
                .unwrap();
            let packet = coap::parse(&buf[..n]).unwrap();
            let segments = coap::string_options(&packet, coap::CoapOption::UriPath).unwrap_or_default();
            if matches!(packet.header.code, coap::MessageClass::Request(_)) && segments.join("/") == path {
                return Some(packet);
            }
        }
    }

    /// The next datagram that answers message `id` (requests from the gateway are skipped).
    async fn answer_to(&self, id: u16) -> Packet {
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, _) = tokio::time::timeout(WAIT, self.socket.recv_from(&mut buf))
                .await
                .expect("an answer in time")
                .unwrap();
            let packet = coap::parse(&buf[..n]).unwrap();
            if packet.header.message_id == id
                && packet.header.get_type() == coap::MessageType::Acknowledgement
            {
                return packet;
            }
        }
    }
}

#[tokio::test]
async fn hostile_and_silent_peers_are_refused_without_harm() {
    let kit = start(&Backend::Sqlite, |config| {
        config.lwm2m.max_registrations_per_minute = 4;
    })
    .await;
    let mut raw = Raw::new(&kit).await;
    // Garbage, a truncated header, a CoAP version 2 and an oversized datagram: ignored.
    raw.send(b"\xff\x00garbage").await;
    raw.send(&[0x40]).await;
    raw.send(&[0x80, 1, 0, 0]).await;
    raw.send(&vec![0x40; 20_000]).await;
    // An unknown endpoint: 4.03, audited.
    let refused = raw.register("urn:dev:stranger", "1.1").await;
    assert_eq!(response_code(&refused), Some(ResponseType::Forbidden));
    let denied = kit.audit("device.connect").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["outcome"], "denied");
    assert!(
        denied[0]["details"]
            .as_str()
            .unwrap()
            .contains("unknown endpoint"),
        "{:?}",
        denied[0]
    );
    // A version the gateway does not speak: 4.12.
    provision(&kit, "urn:dev:silent", "iot-gateway", "normal").await;
    let future = raw.register("urn:dev:silent", "2.0").await;
    assert_eq!(response_code(&future), Some(ResponseType::PreconditionFailed));

    // A device that registers, then never answers: its command fails, clearly.
    let created = raw.register("urn:dev:silent", "1.1").await;
    assert_eq!(response_code(&created), Some(ResponseType::Created));
    let silent = kit.admin(Method::GET, "/lwm2m/endpoints", None).await;
    let silent_id = silent.body[0]["device_id"].as_str().unwrap().to_owned();
    let reboot = command(&kit, &silent_id, json!({"kind": "reboot"})).await;
    let view = finished(&kit, &reboot).await;
    assert_eq!(
        (view["state"].as_str(), view["detail"].as_str()),
        (Some("failed"), Some("no answer from the device"))
    );

    // A register flood from one address is cut off (4 a minute here; 2 counted so far: the one
    // in a version the gateway does not speak was refused before that).
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(response_code(&raw.register("urn:dev:stranger", "1.1").await));
    }
    assert_eq!(
        codes,
        [
            Some(ResponseType::Forbidden),
            Some(ResponseType::Forbidden),
            Some(ResponseType::TooManyRequests),
            Some(ResponseType::TooManyRequests)
        ]
    );
    assert_eq!(
        kit.audit("device.connect").await.len(),
        3,
        "refusals for flooding are not written to the audit log"
    );

    // Still serving: a device from another address registers.
    provision(&kit, "urn:dev:after", "iot-gateway", "normal").await;
    let mut other = Raw::new_at(&kit, "127.0.0.2:0").await;
    let created = other.register("urn:dev:after", "1.1").await;
    assert_eq!(response_code(&created), Some(ResponseType::Created));
    kit.finish().await;
}

#[tokio::test]
async fn unknown_endpoints_are_quarantined_when_auto_create_is_on_and_deregister_ends_presence() {
    let kit = start(&Backend::Sqlite, |config| {
        config.lwm2m.auto_create = true;
        config.lwm2m.auto_create_site = Some(ward_domain::site::SiteSlug::parse("st-marys").unwrap());
    })
    .await;
    let device_client = Device::start(&kit, "urn:dev:found-in-a-drawer", true).await;
    let list = kit.admin(Method::GET, "/lwm2m/endpoints", None).await;
    assert_eq!(list.body[0]["endpoint"], "urn:dev:found-in-a-drawer");
    assert_eq!(list.body[0]["has_psk"], false);
    let id = list.body[0]["device_id"].as_str().unwrap().to_owned();
    let device = wait_device(&kit, &id, |d| d["online"] == true).await;
    assert_eq!(
        (device["state"].as_str(), device["criticality"].as_str()),
        (Some("quarantined"), Some("life-sustaining"))
    );
    assert_eq!(kit.audit("lwm2m.auto_create").await.len(), 1);
    // De-register: offline at once, without waiting for the lifetime.
    device_client.handle.shutdown().await.unwrap();
    let device = wait_device(&kit, &id, |d| d["facts"]["lwm2m"]["registered"] == false).await;
    assert_eq!(device["online"], false);
    kit.finish().await;
}

#[tokio::test]
async fn a_queue_mode_device_gets_its_commands_at_its_next_update() {
    let kit = start(&Backend::Sqlite, |config| config.lwm2m.queue_awake_ms = 300).await;
    let sensor = provision(&kit, "urn:dev:sensor-q", "iot-gateway", "normal").await;
    let id = sensor["endpoint"]["device_id"].as_str().unwrap().to_owned();
    // Lifetime 2 s: the client sends an Update about every second, and listens 300 ms after it.
    let mut device = Device::start_with(&kit, "urn:dev:sensor-q", true, |config| {
        config.lifetime = 2;
        config.queue_mode = true;
    })
    .await;
    let device_view = wait_device(&kit, &id, |d| d["facts"]["lwm2m"]["queue_mode"] == true).await;
    assert_eq!(device_view["facts"]["lwm2m"]["binding"], "UQ");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reboot = command(&kit, &id, json!({"kind": "reboot"})).await;
    assert_eq!(
        device.action().await,
        ClientEvent::Updated,
        "held until the Update"
    );
    assert_eq!(device.action().await, ClientEvent::Reboot);
    assert_eq!(finished(&kit, &reboot).await["state"], "succeeded");
    kit.finish().await;
}

const FIRMWARE_URI: &str = "coap://127.0.0.1:9/pump-2.5.0.bin";

fn firmware_update() -> Value {
    json!({"kind": "firmware-update", "params": {"uri": FIRMWARE_URI}, "clinician": clinician()})
}

/// Waits for the client to be asked to download (after the gateway wrote /5/0/1).
async fn download_asked(device: &mut Device) {
    match device.action().await {
        ClientEvent::FirmwareDownload { uri } => assert_eq!(uri, FIRMWARE_URI),
        other => panic!("expected a firmware download, got {other:?}"),
    }
}

/// Waits for the client to be asked to apply the package (after the gateway executed /5/0/2).
async fn update_asked(device: &mut Device) {
    match device.action().await {
        ClientEvent::FirmwareUpdate { uri } => assert_eq!(uri, FIRMWARE_URI),
        other => panic!("expected a firmware update, got {other:?}"),
    }
}

#[tokio::test]
async fn firmware_updates_go_through_object_5_and_report_the_update_result() {
    let kit = start(&Backend::Sqlite, |config| {
        config.lwm2m.firmware_timeout_ms = 10_000
    })
    .await;
    let pump = provision(&kit, "urn:dev:pump-fw", "medical", "life-sustaining").await;
    let id = pump["endpoint"]["device_id"].as_str().unwrap().to_owned();
    let mut device = Device::start(&kit, "urn:dev:pump-fw", true).await;
    wait_device(&kit, &id, |d| {
        d["facts"]["lwm2m"]["device"]["firmware_version"] == "2.4.1"
    })
    .await;

    // It restarts the device: a clinician must confirm it on a life-sustaining pump; and the
    // URI is checked.
    let path = format!("/devices/{id}/commands");
    let body = json!({"kind": "firmware-update", "params": {"uri": FIRMWARE_URI}});
    let refused = kit.admin(Method::POST, &path, Some(body)).await;
    assert_eq!(
        refused.code(),
        "clinician_confirmation_required",
        "{:?}",
        refused.body
    );
    let body = json!({"kind": "firmware-update", "params": {"uri": "ftp://x/fw"}, "clinician": clinician()});
    let refused = kit.admin(Method::POST, &path, Some(body)).await;
    assert_eq!(refused.code(), "invalid_input", "{:?}", refused.body);

    // Success: write /5/0/1, download, Execute /5/0/2, Update Result 1, new /3/0/3 read.
    let update = command(&kit, &id, firmware_update()).await;
    download_asked(&mut device).await;
    device
        .handle
        .firmware(FirmwareProgress::Downloaded)
        .await
        .unwrap();
    update_asked(&mut device).await;
    device
        .handle
        .set(
            ward_lwm2m::content::Path::resource(3, 0, 3),
            ward_lwm2m::content::Value::String("2.5.0".into()),
        )
        .await
        .unwrap();
    device.handle.firmware(FirmwareProgress::Updated).await.unwrap();
    let view = finished(&kit, &update).await;
    assert_eq!(view["state"], "succeeded", "{view}");
    assert!(view["acknowledged_at"].is_string());
    let detail = view["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("firmware version now 2.5.0"), "{detail}");
    let facts = wait_device(&kit, &id, |d| {
        d["facts"]["lwm2m"]["device"]["firmware_version"] == "2.5.0"
    })
    .await["facts"]["lwm2m"]
        .clone();
    assert_eq!(facts["firmware"]["update_result"], 1, "{facts}");
    assert_eq!(facts["firmware"]["state"], 0, "{facts}");

    // Failure: the package does not apply (Update Result 8).
    let update = command(&kit, &id, firmware_update()).await;
    download_asked(&mut device).await;
    device
        .handle
        .firmware(FirmwareProgress::Downloaded)
        .await
        .unwrap();
    update_asked(&mut device).await;
    device
        .handle
        .firmware(FirmwareProgress::UpdateFailed(UpdateResult::UpdateFailed))
        .await
        .unwrap();
    let view = finished(&kit, &update).await;
    assert_eq!(
        (view["state"].as_str(), view["detail"].as_str()),
        (
            Some("failed"),
            Some("firmware update failed: /5/0/5 Update Result 8 (firmware update failed)")
        )
    );
    let results = kit.audit("command.result").await;
    assert_eq!(results.len(), 2, "one audited result per command");
    assert!(results.iter().all(|e| e["actor"] == format!("device:{id}")));

    // A device without object 5 cannot take one.
    let sensor = provision(&kit, "urn:dev:no-fw", "medical", "normal").await;
    let sensor_id = sensor["endpoint"]["device_id"].as_str().unwrap().to_owned();
    let _sensor = Device::start_without(&kit, "urn:dev:no-fw", &[5], |_| {}).await;
    wait_device(&kit, &sensor_id, |d| d["online"] == true).await;
    let update = command(&kit, &sensor_id, firmware_update()).await;
    let view = finished(&kit, &update).await;
    assert_eq!(
        (view["state"].as_str(), view["detail"].as_str()),
        (Some("failed"), Some("device lacks object 5 (Firmware Update)"))
    );
    kit.finish().await;
}

#[tokio::test]
async fn a_firmware_download_that_never_completes_times_out() {
    let kit = start(&Backend::Sqlite, |config| {
        config.lwm2m.firmware_timeout_ms = 1_000
    })
    .await;
    let pump = provision(&kit, "urn:dev:pump-slow", "iot-gateway", "normal").await;
    let id = pump["endpoint"]["device_id"].as_str().unwrap().to_owned();
    let mut device = Device::start(&kit, "urn:dev:pump-slow", true).await;
    let update = command(
        &kit,
        &id,
        json!({"kind": "firmware-update", "params": {"uri": FIRMWARE_URI}}),
    )
    .await;
    download_asked(&mut device).await;
    let view = finished(&kit, &update).await;
    assert_eq!(
        (view["state"].as_str(), view["detail"].as_str()),
        (
            Some("failed"),
            Some("firmware update timed out after 1 s (/5/0/3 State 1)")
        )
    );
    let facts = wait_device(&kit, &id, |d| d["facts"]["lwm2m"]["firmware"]["state"] == 1).await;
    assert_eq!(facts["facts"]["lwm2m"]["firmware"]["update_result"], 0);
    kit.finish().await;
}

/// The first of Debian's libcoap command-line clients (package libcoap3-bin; bookworm names them
/// after their TLS library) that is installed. `None` (the test is skipped, saying so) when none
/// is and `WARD_TEST_COAP` is not set; when it is set (CI sets it), a missing client fails the test.
fn coap_client(names: &[&str]) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        names
            .iter()
            .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            !ward_testkit::required("WARD_TEST_COAP"),
            "WARD_TEST_COAP is set but none of {names:?} is installed (apt-get install libcoap3-bin)"
        );
        ward_testkit::say_skipped(
            &ward_testkit::current_test(),
            &format!(
                "WARD_TEST_COAP is not set and none of {names:?} is installed (apt-get install libcoap3-bin)"
            ),
        );
    }
    found
}

/// Registers with `coap-client` (`-t 40`: link format; `-v 7` logs the response's code and
/// options; `-B 5`: never hang) and returns its log once it succeeded.
async fn coap_register(coap_client: std::path::PathBuf, security: &[&str], uri: String) -> String {
    let mut args: Vec<String> = ["-m", "post", "-t", "40", "-e", "</1/0>,</3/0>"]
        .iter()
        .chain(security)
        .chain(&["-B", "5", "-v", "7"])
        .map(|a| (*a).to_owned())
        .collect();
    args.push(uri);
    let output =
        tokio::task::spawn_blocking(move || std::process::Command::new(coap_client).args(args).output())
            .await
            .unwrap()
            .expect("coap-client runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{}: {log}", output.status);
    assert!(log.contains("c:2.01"), "2.01 Created: {log}");
    log
}

#[tokio::test]
async fn debians_coap_client_registers_a_provisioned_endpoint() {
    let Some(coap_client) = coap_client(&[
        "coap-client",
        "coap-client-notls",
        "coap-client-gnutls",
        "coap-client-openssl",
    ]) else {
        return;
    };
    let kit = start(&Backend::Sqlite, |_| {}).await;
    let created = provision(&kit, "urn:dev:libcoap-1", "iot-gateway", "normal").await;
    let id = created["endpoint"]["device_id"].as_str().unwrap().to_owned();
    let uri = format!(
        "coap://127.0.0.1:{}/rd?ep=urn:dev:libcoap-1&lt=300&lwm2m=1.1&b=U",
        gateway(&kit).port()
    );
    let log = coap_register(coap_client, &[], uri).await;
    assert!(log.contains("Location-Path:rd"), "a registration location: {log}");
    let device = wait_device(&kit, &id, |d| d["facts"]["lwm2m"]["registered"] == true).await;
    assert_eq!(device["online"], true);
    assert_eq!(device["facts"]["lwm2m"]["objects"], json!(["/1/0", "/3/0"]));
    // The gateway's read of /3/0 goes to a port nobody listens on any more: it times out
    // without harm, and the registration stays.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let list = kit.admin(Method::GET, "/lwm2m/endpoints", None).await;
    assert_eq!(list.body[0]["registered"], true, "{:?}", list.body);
    let device = wait_device(&kit, &id, |d| d["online"] == true).await;
    assert_eq!(device["facts"]["lwm2m"]["endpoint"], "urn:dev:libcoap-1");
    kit.finish().await;
}

// --- DTLS with pre-shared keys -------------------------------------------------------------

fn dtls_gateway(kit: &Kit) -> SocketAddr {
    kit.server.lwm2m_dtls_addr.expect("the gateway listens for DTLS")
}

fn psk_of(created: &Value) -> Vec<u8> {
    hex::decode(created["psk"].as_str().unwrap()).unwrap()
}

/// A pump's objects (/3, /4, /5, /8) with this serial number and firmware version.
fn pump_store(serial: &str, firmware_version: &str) -> ObjectStore {
    ObjectStore::standard(DeviceInfo {
        manufacturer: "Acme Medical".into(),
        model: "Infusion Pump".into(),
        serial: serial.into(),
        firmware_version: firmware_version.into(),
    })
}

/// A client registering over DTLS as `identity` with `key` under the endpoint name `endpoint`;
/// returns it with its first event.
async fn secure_client(
    kit: &Kit,
    endpoint: &str,
    identity: &str,
    key: &[u8],
) -> (Device, Option<ClientEvent>) {
    let store = pump_store(&format!("SN-{endpoint}"), "2.4.1");
    let config = ClientConfig {
        lifetime: 60,
        params: TransmissionParams {
            ack_timeout: Duration::from_millis(200),
            ..TransmissionParams::default()
        },
        ..ClientConfig::new(endpoint)
    };
    let security = client::Security::Psk {
        identity: identity.as_bytes().to_vec(),
        key: key.to_vec(),
    };
    let (handle, mut events, task) = client::spawn_with(
        config,
        store,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        dtls_gateway(kit),
        security,
    )
    .await
    .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(3), events.recv())
        .await
        .ok()
        .flatten();
    (
        Device {
            handle,
            events,
            _task: task,
        },
        first,
    )
}

#[tokio::test]
async fn a_device_registers_over_dtls_and_is_reached_only_through_its_session() {
    let kit = start(&Backend::Sqlite, |_| {}).await;
    let created = provision(&kit, "urn:dev:secure-1", "medical", "high").await;
    let id = created["endpoint"]["device_id"].as_str().unwrap().to_owned();
    let (mut pump, first) =
        secure_client(&kit, "urn:dev:secure-1", "urn:dev:secure-1", &psk_of(&created)).await;
    let Some(ClientEvent::Registered { location }) = first else {
        panic!("expected a registration over DTLS, got {first:?}");
    };
    // The gateway's reads of /3/0 went through the session.
    let device = wait_device(&kit, &id, |d| {
        d["facts"]["lwm2m"]["device"]["serial_number"].is_string()
    })
    .await;
    assert_eq!(device["online"], true);
    assert_eq!(device["facts"]["lwm2m"]["security"], "psk");
    assert_eq!(
        device["facts"]["lwm2m"]["device"]["serial_number"],
        "SN-urn:dev:secure-1"
    );
    // Commands too.
    let reboot = command(&kit, &id, json!({"kind": "reboot", "clinician": clinician()})).await;
    assert_eq!(pump.action().await, ClientEvent::Reboot);
    assert_eq!(finished(&kit, &reboot).await["state"], "succeeded");

    // A plain datagram naming the registration's location cannot end it.
    let mut raw = Raw::new(&kit).await;
    raw.next_id += 1;
    let deregister = ward_lwm2m::registration::Deregister {
        location: location.clone(),
    }
    .to_packet(raw.next_id, vec![9, 9]);
    raw.send(&coap::serialize(&deregister).unwrap()).await;
    let answer = raw.answer_to(raw.next_id).await;
    assert_eq!(response_code(&answer), Some(ResponseType::NotFound));
    let lock = command(&kit, &id, json!({"kind": "lock"})).await;
    assert!(matches!(pump.action().await, ClientEvent::Lock { state: 2, .. }));
    assert_eq!(finished(&kit, &lock).await["state"], "succeeded");
    let list = kit.admin(Method::GET, "/lwm2m/endpoints", None).await;
    assert_eq!(list.body[0]["registered"], true, "{:?}", list.body);

    // Revocation ends the registration and the session; the key no longer gets it back in.
    let revoked = kit
        .admin(
            Method::POST,
            &format!("/devices/{id}/revoke"),
            Some(json!({"reason": "stolen"})),
        )
        .await;
    assert!(revoked.status.is_success(), "{:?}", revoked.body);
    wait_device(&kit, &id, |d| d["online"] == false).await;
    pump.handle.shutdown().await.ok();
    let (_again, first) =
        secure_client(&kit, "urn:dev:secure-1", "urn:dev:secure-1", &psk_of(&created)).await;
    assert!(
        !matches!(first, Some(ClientEvent::Registered { .. })),
        "a revoked device registered again: {first:?}"
    );
    kit.finish().await;
}

#[tokio::test]
async fn wrong_keys_and_borrowed_identities_are_refused_and_audited() {
    let kit = start(&Backend::Sqlite, |_| {}).await;
    let pump = provision(&kit, "urn:dev:pump-a", "medical", "life-sustaining").await;
    let monitor = provision(&kit, "urn:dev:monitor-b", "medical", "high").await;
    let pump_id = pump["endpoint"]["device_id"].as_str().unwrap().to_owned();
    let monitor_id = monitor["endpoint"]["device_id"].as_str().unwrap().to_owned();

    // The right identity with a wrong key: the handshake never completes, nothing registers.
    let (wrong, first) = secure_client(&kit, "urn:dev:pump-a", "urn:dev:pump-a", b"0123456789abcdef").await;
    assert!(first.is_none(), "{first:?}");
    drop(wrong);

    // The monitor's key and identity used to register as the pump: 4.03, audited.
    let (thief, first) = secure_client(&kit, "urn:dev:pump-a", "urn:dev:monitor-b", &psk_of(&monitor)).await;
    assert!(
        matches!(&first, Some(ClientEvent::RegistrationFailed { reason }) if reason.contains("4.03")),
        "{first:?}"
    );
    drop(thief);
    let denied = kit.audit("device.connect").await;
    assert!(
        denied.iter().any(|e| e["target"] == format!("device:{pump_id}")
            && e["outcome"] == "denied"
            && e["details"]
                .as_str()
                .unwrap_or_default()
                .contains("urn:dev:monitor-b")),
        "{denied:?}"
    );
    for id in [&pump_id, &monitor_id] {
        let device = kit.admin(Method::GET, &format!("/devices/{id}"), None).await;
        assert_eq!(device.body["device"]["online"], false, "{:?}", device.body);
    }

    // A key given at provisioning (a device's factory key) must be hex of 16 to 64 bytes.
    for (psk, problem) in [
        ("zz", "hexadecimal"),
        ("00ff", "2 bytes"),
        (&"ab".repeat(65)[..], "65 bytes"),
    ] {
        let reply = kit
            .admin(
                Method::POST,
                "/lwm2m/endpoints",
                Some(json!({"endpoint": "urn:dev:factory", "site": "st-marys/icu", "class": "medical", "psk": psk})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", reply.body);
        assert!(
            reply.body.to_string().contains(problem),
            "{psk}: {:?}",
            reply.body
        );
    }
    kit.finish().await;
}

#[tokio::test]
async fn debians_coap_client_registers_over_dtls_with_a_factory_key() {
    let Some(coap_client) = coap_client(&["coap-client-openssl", "coap-client-gnutls"]) else {
        return;
    };
    let kit = start(&Backend::Sqlite, |_| {}).await;
    // libcoap takes the key as text on its command line: a factory key of printable bytes.
    let key = "ward-interop-psk";
    let reply = kit
        .admin(
            Method::POST,
            "/lwm2m/endpoints",
            Some(
                json!({"endpoint": "urn:dev:libcoap-dtls", "site": "st-marys/icu", "class": "iot-gateway",
                        "psk": hex::encode(key)}),
            ),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["psk"], hex::encode(key));
    let id = reply.body["endpoint"]["device_id"].as_str().unwrap().to_owned();
    let uri = format!(
        "coaps://127.0.0.1:{}/rd?ep=urn:dev:libcoap-dtls&lt=300&lwm2m=1.1&b=U",
        dtls_gateway(&kit).port()
    );
    coap_register(coap_client, &["-u", "urn:dev:libcoap-dtls", "-k", key], uri).await;
    let device = wait_device(&kit, &id, |d| d["facts"]["lwm2m"]["registered"] == true).await;
    assert_eq!(device["facts"]["lwm2m"]["security"], "psk");
    assert_eq!(device["online"], true);
    kit.finish().await;
}

#[tokio::test]
async fn a_wipe_cut_short_by_a_restart_is_not_repeated_and_a_reboot_counts_as_done() {
    // Time enough to register again before the gateway gives up on an unanswered request.
    let kit = start(&Backend::Sqlite, |config| config.lwm2m.ack_timeout_ms = 1000).await;
    let created = provision(&kit, "urn:dev:restarts", "iot-gateway", "normal").await;
    let id = created["endpoint"]["device_id"].as_str().unwrap().to_owned();
    let mut raw = Raw::new(&kit).await;
    let objects = [(3, 0), (8, 0)];
    let answer = raw.register_objects("urn:dev:restarts", &objects).await;
    assert_eq!(response_code(&answer), Some(ResponseType::Created));

    // The wipe's Execute reaches the device, which restarts instead of answering.
    let wipe = command(&kit, &id, json!({"kind": "wipe-selective"})).await;
    assert!(raw.request_to("8/0/3", WAIT).await.is_some(), "the wipe is sent");
    let answer = raw.register_objects("urn:dev:restarts", &objects).await;
    assert_eq!(response_code(&answer), Some(ResponseType::Created));
    let view = finished(&kit, &wipe).await;
    assert_eq!(view["state"], "failed", "{view}");
    assert!(
        view["detail"].as_str().unwrap().contains("not repeated"),
        "{view}"
    );
    assert!(
        raw.request_to("8/0/3", Duration::from_millis(1500))
            .await
            .is_none(),
        "a wipe is never sent twice"
    );

    // A reboot whose answer was lost the same way: the device registering again is its effect.
    let reboot = command(&kit, &id, json!({"kind": "reboot"})).await;
    assert!(
        raw.request_to("3/0/4", WAIT).await.is_some(),
        "the reboot is sent"
    );
    let answer = raw.register_objects("urn:dev:restarts", &objects).await;
    assert_eq!(response_code(&answer), Some(ResponseType::Created));
    let view = finished(&kit, &reboot).await;
    assert_eq!(view["state"], "succeeded", "{view}");
    assert!(
        view["detail"].as_str().unwrap().contains("registered again"),
        "{view}"
    );
    assert!(
        raw.request_to("3/0/4", Duration::from_millis(1500))
            .await
            .is_none()
    );
    let results = kit.audit("command.result").await;
    assert_eq!(results.len(), 2, "both outcomes audited: {results:?}");
    kit.finish().await;
}

#[tokio::test]
async fn a_firmware_update_finishes_on_the_registration_after_the_devices_restart() {
    let kit = start(&Backend::Sqlite, |config| {
        config.lwm2m.firmware_timeout_ms = 10_000
    })
    .await;
    let pump = provision(&kit, "urn:dev:pump-restart", "medical", "high").await;
    let id = pump["endpoint"]["device_id"].as_str().unwrap().to_owned();
    let mut device = Device::start(&kit, "urn:dev:pump-restart", true).await;
    wait_device(&kit, &id, |d| {
        d["facts"]["lwm2m"]["device"]["firmware_version"] == "2.4.1"
    })
    .await;
    let update = command(&kit, &id, firmware_update()).await;
    download_asked(&mut device).await;
    device
        .handle
        .firmware(FirmwareProgress::Downloaded)
        .await
        .unwrap();
    update_asked(&mut device).await;
    // The pump restarts to apply the package (no De-register, no answer) and comes back
    // running 2.5.0 with Update Result 1 (success), from a new address.
    device._task.abort();
    let mut store = pump_store("SN-restart", "2.5.0");
    store
        .set(
            ward_lwm2m::content::Path::resource(5, 0, 5),
            ward_lwm2m::content::Value::Integer(1),
        )
        .unwrap();
    let config = ClientConfig {
        lifetime: 60,
        ..ClientConfig::new("urn:dev:pump-restart")
    };
    let (_handle, mut events, _task) = client::spawn(
        config,
        store,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        gateway(&kit),
    )
    .await
    .unwrap();
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::Registered { .. }
    ));
    let view = finished(&kit, &update).await;
    assert_eq!(view["state"], "succeeded", "{view}");
    let detail = view["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("firmware version now 2.5.0"), "{detail}");
    kit.finish().await;
}

/// The gateway drops its copy of a device's facts once the facts writer has answered a flush
/// asked for after them: the answer must mean the store has them.
#[tokio::test]
async fn the_facts_writer_answers_a_flush_once_what_came_before_is_stored() {
    for backend in backends() {
        let kit = start(&backend, |_| {}).await;
        let created = provision(&kit, "urn:dev:flushed", "medical", "normal").await;
        let device_id = created["endpoint"]["device_id"].as_str().unwrap().to_owned();
        let state = &kit.server.state;
        for level in [10, 20, 30] {
            let update = ward_store::FactsUpdate {
                device_id: device_id.clone(),
                facts: json!({"lwm2m": {"device": {"battery_level": level}}}).to_string(),
                change: json!({"changed": {"lwm2m.device.battery_level": level}, "removed": []}).to_string(),
                time_ms: state.now_ms(),
            };
            let work = ward_core::facts::FactsWork::Update(update);
            state.facts_writer.send(work).await.unwrap();
        }
        let (ask, answer) = tokio::sync::oneshot::channel();
        let flush = ward_core::facts::FactsWork::Flush(ask);
        state.facts_writer.send(flush).await.unwrap();
        tokio::time::timeout(WAIT, answer).await.unwrap().unwrap();
        let device = state.store.device(&device_id).await.unwrap().unwrap();
        let facts: Value = serde_json::from_str(&device.facts).unwrap();
        assert_eq!(facts["lwm2m"]["device"]["battery_level"], 30);
        kit.finish().await;
    }
}
