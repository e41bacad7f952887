//! Remote actions through real `ward server` and `ward-agent` processes on loopback, the agent in
//! sandbox mode (actions recorded in a directory, same code path up to the last step): every
//! action, redelivery after the agent is killed mid-command, a server restart with commands
//! queued, and an executor that fails.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::e2e::{ADMIN_PASSWORD, AGENT, Proc, Server, agent, ward_binary};

/// Enrolls a device with a fresh single-use token; returns its state directory's path text.
fn enroll(server: &Server, dir: &Path, class: &str, hostname: &str, full_wipe: bool) -> String {
    let created = server.post(
        "/enroll-tokens",
        json!({"site": "general", "class": class, "expires": "1h", "uses": 1, "allow_full_wipe": full_wipe}),
    );
    let token = created["secret"].as_str().unwrap().to_owned();
    let state = dir.to_str().unwrap().to_owned();
    let enrolled = agent(&[
        "enroll",
        "--server",
        &server.url,
        "--token",
        &token,
        "--ca-fingerprint",
        &server.fingerprint,
        "--state-dir",
        &state,
        "--hostname",
        hostname,
    ]);
    assert!(
        enrolled.status.success(),
        "{}",
        String::from_utf8_lossy(&enrolled.stderr)
    );
    state
}

/// `ward-agent run` with a config file, in the sandbox unless `sandbox` is None.
fn run_agent(state: &str, config: &Path, sandbox: Option<&Path>, env: &[(&str, &str)]) -> Proc {
    let mut command = Command::new(AGENT);
    command
        .args(["run", "--facts-interval", "1", "--state-dir", state, "--config"])
        .arg(config);
    if let Some(sandbox) = sandbox {
        command.arg("--sandbox").arg(sandbox);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    Proc(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn device_id(server: &Server, hostname: &str) -> String {
    let devices = server.wait_for(&format!("{hostname} online"), |d| {
        d.as_array()
            .unwrap()
            .iter()
            .any(|d| d["hostname"] == hostname && d["online"] == true)
    });
    devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["hostname"] == hostname)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn queue(server: &Server, device: &str, body: Value) -> String {
    let created = server.post(&format!("/devices/{device}/commands"), body);
    created["id"].as_str().unwrap().to_owned()
}

/// Polls a command until its state is one of `states`.
fn wait_command(server: &Server, id: &str, states: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let detail = server.get(&format!("/commands/{id}"));
        if states.iter().any(|s| detail["command"]["state"] == *s) {
            return detail;
        }
        assert!(
            Instant::now() < deadline,
            "command {id} never reached {states:?}: {detail}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write_config(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn every_action_runs_in_the_sandbox_through_real_processes() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&data.path().join("server"));
    server.post("/sites", json!({"slug": "general", "name": "General"}));
    let state = enroll(&server, &data.path().join("agent"), "mobile", "tab-1", true);
    let managed = data.path().join("managed");
    std::fs::create_dir_all(managed.join("cache")).unwrap();
    std::fs::write(managed.join("cache/record.txt"), "patient data").unwrap();
    let config = data.path().join("agent.toml");
    write_config(
        &config,
        &format!(
            "managed_dirs = [{:?}]\nallow_full_wipe = true\ndns_resolvers = [\"127.0.0.53\"]\n",
            managed.to_str().unwrap()
        ),
    );
    let sandbox = data.path().join("sandbox");
    let _agent = run_agent(&state, &config, Some(&sandbox), &[]);
    let device = device_id(&server, "tab-1");

    let actions = [
        json!({"kind": "lock"}),
        json!({"kind": "unlock"}),
        json!({"kind": "message", "params": {"text": "IT will call you at 10:00"}}),
        json!({"kind": "reboot"}),
        json!({"kind": "shutdown"}),
        json!({"kind": "quarantine"}),
        json!({"kind": "release"}),
        json!({"kind": "collect-diagnostics", "params": {"max_bytes": 4096}}),
        json!({"kind": "lost-mode"}),
        json!({"kind": "wipe-selective"}),
        json!({"kind": "wipe-full", "params": {"confirm_hostname": "tab-1"}}),
    ];
    let mut ids = Vec::new();
    for action in &actions {
        let kind = action["kind"].as_str().unwrap();
        let id = queue(&server, &device, action.clone());
        let done = wait_command(&server, &id, &["succeeded", "failed"]);
        assert_eq!(done["command"]["state"], "succeeded", "{kind}: {done}");
        let record = sandbox.join(format!("{id}.json"));
        let text = std::fs::read_to_string(&record)
            .unwrap_or_else(|e| panic!("{kind}: no sandbox record {}: {e}", record.display()));
        assert!(text.contains(kind), "{kind}: {text}");
        match kind {
            "quarantine" => assert!(
                text.contains("ward_quarantine"),
                "the ruleset is recorded: {text}"
            ),
            "wipe-selective" | "wipe-full" => {
                assert!(done["proof"]["erased"].is_array(), "{kind}: {done}");
                assert_eq!(done["proof"]["device_id"], device.as_str());
                assert!(done["proof_signature"].is_string());
            }
            "collect-diagnostics" => {
                let output = &done["output"];
                assert!(output.is_object(), "{done}");
                assert!(output.to_string().len() <= 4096 + 64, "bounded by max_bytes");
            }
            _ => {}
        }
        ids.push(id);
    }
    // The sandbox recorded, not erased.
    assert!(managed.join("cache/record.txt").exists());
    let records = std::fs::read_dir(&sandbox).unwrap().count();
    assert!(records >= actions.len(), "one record per command: {records}");
    let shown = server.get(&format!("/devices/{device}"));
    assert_eq!(shown["device"]["state"], "wiped", "{shown}");
    let results = server.get("/audit?action=command.result&limit=100");
    assert_eq!(results["entries"].as_array().unwrap().len(), actions.len());

    // The CLI's bulk form: a script must say --yes; then it queues, waits for the acknowledgement
    // and reports the batch.
    let home = data.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let cli = |args: &[&str]| {
        Command::new(ward_binary())
            .args([
                "--server",
                &server.url,
                "--token",
                &server.token,
                "--ca-fingerprint",
                &server.fingerprint,
            ])
            .args(args)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &home)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let filter = "hostname = \"tab-1\"";
    let unconfirmed = cli(&["device", "lock", "--filter", filter]);
    assert_eq!(
        unconfirmed.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&unconfirmed.stderr)
    );
    let bulk = cli(&["device", "lock", "--filter", filter, "--yes", "--json"]);
    assert!(bulk.status.success(), "{}", String::from_utf8_lossy(&bulk.stderr));
    let report: Value = serde_json::from_slice(&bulk.stdout).unwrap();
    assert_eq!(report["queued"]["matched"], 1);
    let states: Vec<&str> = report["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state"].as_str().unwrap())
        .collect();
    assert!(
        states.iter().all(|s| *s == "acknowledged" || *s == "succeeded"),
        "the CLI waits for the acknowledgement: {states:?}"
    );
    let none = cli(&["device", "lock", "--filter", "hostname = \"nobody\"", "--yes"]);
    assert!(none.status.success());
    assert!(String::from_utf8_lossy(&none.stdout).contains("no devices match"));
    let listed = cli(&["commands", "list", "--device", &device]);
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).contains("wipe-full"));
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn commands_survive_kills_and_restarts_and_run_exactly_once() {
    let data = tempfile::tempdir().unwrap();
    let (api, channel) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let server_dir = data.path().join("server");
    let server = Server::start_on(&server_dir, &api, &channel, None);
    server.post("/sites", json!({"slug": "general", "name": "General"}));
    let state = enroll(&server, &data.path().join("agent"), "workstation", "ws-1", false);
    let config = data.path().join("agent.toml");
    write_config(&config, "dns_resolvers = [\"127.0.0.53\"]\n");
    let sandbox = data.path().join("sandbox");

    // Killed mid-command: the command was acknowledged (journaled) but its action not done.
    let slow = run_agent(
        &state,
        &config,
        Some(&sandbox),
        &[("WARD_AGENT_SANDBOX_DELAY_MS", "4000")],
    );
    let device = device_id(&server, "ws-1");
    let lock = queue(&server, &device, json!({"kind": "lock"}));
    wait_command(&server, &lock, &["acknowledged"]);
    drop(slow);
    assert!(
        !sandbox.join(format!("{lock}.json")).exists(),
        "killed before acting"
    );
    let agent_process = run_agent(&state, &config, Some(&sandbox), &[]);
    let done = wait_command(&server, &lock, &["succeeded", "failed"]);
    assert_eq!(done["command"]["state"], "succeeded", "{done}");
    let records: Vec<_> = std::fs::read_dir(&sandbox)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&lock))
        .collect();
    assert_eq!(records.len(), 1, "redelivered and executed once");

    // Queued while the agent is down, then the server restarts: all delivered, in order.
    drop(agent_process);
    let queued: Vec<String> = ["first", "second", "third"]
        .iter()
        .map(|text| {
            queue(
                &server,
                &device,
                json!({"kind": "message", "params": {"text": text}}),
            )
        })
        .collect();
    drop(server);
    let server = Server::start_on(&server_dir, &api, &channel, Some(ADMIN_PASSWORD));
    for id in &queued {
        assert_eq!(
            server.get(&format!("/commands/{id}"))["command"]["state"],
            "queued"
        );
    }
    let agent_process = run_agent(&state, &config, Some(&sandbox), &[]);
    let mut finished = Vec::new();
    for id in &queued {
        let done = wait_command(&server, id, &["succeeded", "failed"]);
        assert_eq!(done["command"]["state"], "succeeded", "{done}");
        finished.push(done["command"]["finished_at"].as_str().unwrap().to_owned());
    }
    let journal = std::fs::read_to_string(Path::new(&state).join("commands.journal")).unwrap();
    let positions: Vec<usize> = queued
        .iter()
        .map(|id| journal.find(id.as_str()).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "executed in the order queued"
    );
    assert!(finished.windows(2).all(|w| w[0] <= w[1]));

    // An executor that fails is reported as failed, with the reason.
    drop(agent_process);
    write_config(
        &config,
        "dns_resolvers = [\"127.0.0.53\"]\n[tools]\nloginctl = \"/nonexistent/loginctl\"\n",
    );
    let _real = run_agent(&state, &config, None, &[]);
    let lock = queue(&server, &device, json!({"kind": "lock"}));
    let failed = wait_command(&server, &lock, &["succeeded", "failed"]);
    assert_eq!(failed["command"]["state"], "failed", "{failed}");
    assert!(
        failed["command"]["detail"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/loginctl"),
        "{failed}"
    );
}

/// Policies through the `ward` CLI and a real agent in the sandbox: the dry run changes nothing,
/// apply pushes the settings, the agent writes them (under the sandbox root), reports what it
/// applied and a denied package it has, and when someone removes the USB block the drift is
/// reported and the device turns non-compliant.
#[test]
fn policy_settings_reach_a_real_agent_and_drift_is_reported() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&data.path().join("server"));
    server.post("/sites", json!({"slug": "general", "name": "General"}));
    let state = enroll(
        &server,
        &data.path().join("agent"),
        "workstation",
        "ws-pol",
        false,
    );
    let sandbox = data.path().join("sandbox");
    let config = data.path().join("agent.toml");
    write_config(&config, "");
    let fixture = crate::fixture_root("ws01");
    let mut command = Command::new(AGENT);
    command
        .args(["run", "--facts-interval", "1", "--state-dir", &state, "--config"])
        .arg(&config)
        .arg("--sandbox")
        .arg(&sandbox)
        .arg("--facts-root")
        .arg(&fixture);
    let _agent = Proc(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let device = device_id(&server, "ws-pol");

    let policies = data.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("hardening.yaml"),
        "name: hardening\nscope: 'class = \"workstation\"'\nchecks:\n  - id: settings-held\n    expr: 'facts.settings.drift != \"usb_storage_blocked\"'\n  - id: no-openssl\n    expr: 'facts.settings.denied_packages != \"openssl\"'\nsettings:\n  usb_storage_blocked: true\n  screen_lock_timeout_seconds: 300\n  packages:\n    denied: [openssl]\n",
    )
    .unwrap();
    let home = data.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let cli = |args: &[&str]| {
        Command::new(ward_binary())
            .args([
                "--server",
                &server.url,
                "--token",
                &server.token,
                "--ca-fingerprint",
                &server.fingerprint,
            ])
            .args(args)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &home)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let dir = policies.to_str().unwrap();
    let dry = cli(&["policy", "apply", "-f", dir, "--dry-run"]);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        text.contains("added") && text.contains("hardening") && text.contains("dry run"),
        "{text}"
    );
    assert_eq!(server.get("/policies"), json!([]), "the dry run stored nothing");

    let applied = cli(&["policy", "apply", "-f", dir, "--json"]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let applied: Value = serde_json::from_slice(&applied.stdout).unwrap();
    assert_eq!(applied["versions"], json!([{"name": "hardening", "version": 1}]));

    // The agent applies the settings in its sandbox root and reports them.
    let root = sandbox.join("root");
    let deadline = Instant::now() + Duration::from_secs(30);
    let compliance = loop {
        let compliance = server.get(&format!("/devices/{device}/compliance"));
        let reported = server.get(&format!("/devices/{device}"));
        if reported["device"]["facts"]["settings"]["digest"].is_string() && compliance["status"] != "unknown"
        {
            break compliance;
        }
        assert!(Instant::now() < deadline, "settings never reported: {reported}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let usb = std::fs::read_to_string(root.join("etc/modprobe.d/ward-usb-storage.conf")).unwrap();
    assert!(usb.contains("install usb-storage /bin/false"));
    let lock = std::fs::read_to_string(root.join("etc/dconf/db/local.d/00-ward-screen-lock")).unwrap();
    assert!(lock.contains("idle-delay=uint32 300"));
    // The fixture has openssl installed: reported, not removed.
    assert_eq!(compliance["status"], "non_compliant", "{compliance}");
    let failing: Vec<&str> = compliance["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "fail")
        .map(|r| r["check"].as_str().unwrap())
        .collect();
    assert_eq!(failing, vec!["no-openssl"]);
    let shown = cli(&["compliance", "show", &device]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("no-openssl"));

    // Someone removes the USB block: the next collection reports the drift.
    std::fs::remove_file(root.join("etc/modprobe.d/ward-usb-storage.conf")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let compliance = server.get(&format!("/devices/{device}/compliance"));
        let drift = compliance["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["check"] == "settings-held" && r["status"] == "fail");
        if drift {
            break;
        }
        assert!(Instant::now() < deadline, "drift never reported: {compliance}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let summary = cli(&["compliance", "summary", "--json"]);
    let summary: Value = serde_json::from_slice(&summary.stdout).unwrap();
    assert_eq!(summary["total"]["non_compliant"], 1);
    let history = cli(&["policy", "history", "hardening"]);
    assert!(String::from_utf8_lossy(&history.stdout).contains("user:admin"));
    let bad = cli(&[
        "policy",
        "apply",
        "-f",
        data.path().join("missing").to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("missing"));
}
