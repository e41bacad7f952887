//! Simulated LwM2M devices provision themselves through the API, register with the server's
//! gateway over plain UDP on loopback, report their Device object and take a command.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use ward_sim::lwm2m::Lwm2mOptions;

use crate::incident::Running;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_lwm2m_devices_register_and_are_managed() {
    let Running {
        dir,
        server,
        api,
        admin,
    } = Running::start(|_| {}).await;
    let options = Lwm2mOptions {
        server: server.url(),
        token: admin.clone(),
        ca_fingerprint: server.ca_fingerprint.clone(),
        gateway: server.lwm2m_dtls_addr.unwrap(),
        devices: 4,
        prefix: "sim-".into(),
        lifetime: 120,
        dtls: true,
        keys_file: Some(dir.path().join("lwm2m-keys.json")),
    };
    let fleet = ward_sim::lwm2m::start(&options, &mut |_| {}).await.unwrap();
    assert_eq!(fleet.len(), 4);
    let devices = api
        .wait(
            "every LwM2M device online with its facts",
            "/devices",
            &admin,
            |d| {
                d.as_array()
                    .unwrap()
                    .iter()
                    .filter(|d| {
                        d["online"] == true && d["facts"]["lwm2m"]["device"]["serial_number"].is_string()
                    })
                    .count()
                    == 4
            },
        )
        .await;
    let pump = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["hostname"].as_str().unwrap().contains("infusion-pump"))
        .unwrap();
    assert_eq!(pump["criticality"], "life-sustaining");
    let id = pump["id"].as_str().unwrap();
    let (status, created) = api
        .post(
            &format!("/devices/{id}/commands"),
            &admin,
            json!({"kind": "lock"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let command = created["id"].as_str().unwrap().to_owned();
    api.wait(
        "the lock succeeded",
        &format!("/commands/{command}"),
        &admin,
        |c| c["command"]["state"] == "succeeded",
    )
    .await;
    drop(fleet);
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown().await;
}
