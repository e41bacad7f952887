//! Churn: simulated devices that keep dropping and re-opening their connection come back online,
//! and the server keeps serving them.

use std::time::Duration;

use ward_sim::SimOptions;

use crate::incident::Running;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churning_devices_reconnect_and_stay_managed() {
    let Running {
        dir,
        server,
        api,
        admin,
    } = Running::start(|config| config.heartbeat_ms = 1_000).await;
    let options = SimOptions {
        server: server.url(),
        token: admin.clone(),
        ca_fingerprint: server.ca_fingerprint.clone(),
        devices: 12,
        dir: dir.path().join("fleet"),
        concurrency: 4,
        prefix: "churn-".into(),
        churn: 4.0,
        source_addresses: 0,
        idle_executions: false,
    };
    let fleet = ward_sim::start(&options, &mut |_| {}).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        fleet.restarts() >= 8,
        "devices were restarted: {}",
        fleet.restarts()
    );
    let devices = api
        .wait("every churning device online", "/devices", &admin, |d| {
            d.as_array()
                .unwrap()
                .iter()
                .filter(|d| d["online"] == true)
                .count()
                == 12
        })
        .await;
    assert!(
        devices
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["hostname"].as_str().unwrap().starts_with("churn-"))
    );
    let connects = api.get("/audit?action=device.connect&limit=1000", &admin).await;
    assert!(
        connects["entries"].as_array().unwrap().is_empty(),
        "no connection was refused: {connects}"
    );
    drop(fleet);
    server.shutdown().await;
}
