//! Quarantine for real: nftables inside network namespaces this test creates. A device namespace
//! has two links, one to a namespace running `ward server`, one to a "second host" namespace
//! running a listener. The admin drives everything with the `ward` CLI from the server's
//! namespace, as a hospital's IT team would from their own network.
//!
//! Needs root, iproute2, nftables and netcat (.ci/run installs them and sets WARD_TEST_NETNS=1);
//! without WARD_TEST_NETNS the test is skipped with a printed reason.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::e2e::{AGENT, Proc, ward_binary};

/// Namespaces created by this test, deleted when it ends however it ends.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn in_ns(ns: &str, program: &str) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns, program]);
    command
}

/// Whether a TCP connection from `ns` to `host:port` succeeds within two seconds.
fn reaches(ns: &str, host: &str, port: u16) -> bool {
    in_ns(ns, "nc")
        .args(["-z", "-w", "2", host, &port.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .status
        .success()
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The `ward` CLI run inside the server's namespace with its own config directory.
struct Cli<'a> {
    ns: &'a str,
    home: &'a Path,
}

impl Cli<'_> {
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = in_ns(self.ns, ward_binary().to_str().unwrap())
            .args(args)
            .env("HOME", self.home)
            .env("XDG_CONFIG_HOME", self.home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], stdin: &str) -> String {
        let output = self.run(args, stdin);
        assert!(
            output.status.success(),
            "ward {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all, "")).unwrap()
    }

    fn device(&self, hostname: &str) -> Option<Value> {
        self.json(&["devices", "list"])
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["hostname"] == hostname)
            .cloned()
    }

    fn wait_online(&self, hostname: &str) -> Value {
        let mut found = None;
        wait_until(&format!("{hostname} online"), Duration::from_secs(30), || {
            found = self.device(hostname).filter(|d| d["online"] == true);
            found.is_some()
        });
        found.unwrap()
    }

    fn wait_command(&self, id: &str, state: &str) {
        wait_until(&format!("command {id} {state}"), Duration::from_secs(30), || {
            let detail = self.json(&["commands", "show", id]);
            assert_ne!(detail["command"]["state"], "failed", "{detail}");
            detail["command"]["state"] == state
        });
    }
}

fn table_exists(ns: &str) -> bool {
    in_ns(ns, "nft")
        .args(["list", "table", "inet", "ward_quarantine"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn quarantine_cuts_a_device_off_but_ward_survives_a_restart_and_is_released() {
    if std::env::var_os("WARD_TEST_NETNS").is_none_or(|value| value.is_empty()) {
        // Straight to stderr: the harness would hide an eprintln! of a passing test.
        std::io::stderr()
            .write_all(
                b"skipping quarantine_cuts_a_device_off_but_ward_survives_a_restart_and_is_released: \
                  WARD_TEST_NETNS is not set (it needs root, iproute2, nftables and netcat; .ci/run sets it)\n",
            )
            .unwrap();
        return;
    }
    let tag = std::process::id() % 100_000;
    let (dev, srv, other) = (format!("wq{tag}d"), format!("wq{tag}s"), format!("wq{tag}o"));
    let _namespaces = Namespaces(vec![dev.clone(), srv.clone(), other.clone()]);
    for ns in [&dev, &srv, &other] {
        ip(&["netns", "add", ns]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    // device <-> server on 10.77.1.0/24, device <-> second host on 10.77.2.0/24.
    for (a, b, peer, a_addr, b_addr) in [
        (
            format!("wq{tag}a"),
            format!("wq{tag}b"),
            &srv,
            "10.77.1.2/24",
            "10.77.1.1/24",
        ),
        (
            format!("wq{tag}c"),
            format!("wq{tag}e"),
            &other,
            "10.77.2.2/24",
            "10.77.2.1/24",
        ),
    ] {
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        ip(&["link", "set", &a, "netns", &dev]);
        ip(&["link", "set", &b, "netns", peer]);
        ip(&["-n", &dev, "addr", "add", a_addr, "dev", &a]);
        ip(&["-n", peer, "addr", "add", b_addr, "dev", &b]);
        ip(&["-n", &dev, "link", "set", &a, "up"]);
        ip(&["-n", peer, "link", "set", &b, "up"]);
    }

    let data = tempfile::tempdir().unwrap();
    let mut server = in_ns(&srv, ward_binary().to_str().unwrap())
        .args([
            "server",
            "--listen",
            "10.77.1.1:8443",
            "--agent-listen",
            "10.77.1.1:8444",
            "--lwm2m-listen",
            "off",
            "--lwm2m-dtls-listen",
            "off",
            "--heartbeat-seconds",
            "1",
            "--data-dir",
        ])
        .arg(data.path().join("server"))
        .env("WARD_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let _server = Proc(server);
    let (mut fingerprint, mut password) = (String::new(), String::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("CA fingerprint (SHA-256): ") {
            fingerprint = rest.trim().to_owned();
        } else if let Some(rest) = line.trim().strip_prefix("password: ") {
            password = rest.trim().to_owned();
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    assert!(!password.is_empty(), "the server printed no admin password");

    let home = data.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let cli = Cli {
        ns: &srv,
        home: &home,
    };
    let url = "https://10.77.1.1:8443";
    cli.ok(
        &[
            "login",
            "--server",
            url,
            "--ca-fingerprint",
            &fingerprint,
            "--username",
            "admin",
            "--password-stdin",
        ],
        &format!("{password}\n"),
    );
    cli.ok(
        &["users", "password", "--password-stdin"],
        &format!("{password}\nquarantine test admin 1\n"),
    );
    cli.ok(&["sites", "create", "general", "--name", "General"], "");
    let created = cli.json(&[
        "enroll-token",
        "create",
        "--site",
        "general",
        "--class",
        "workstation",
    ]);
    let token = created["secret"].as_str().unwrap().to_owned();

    let state = data.path().join("agent");
    let enrolled = in_ns(&dev, AGENT)
        .args([
            "enroll",
            "--server",
            url,
            "--token",
            &token,
            "--ca-fingerprint",
            &fingerprint,
        ])
        .args(["--hostname", "quarantine-1", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        enrolled.status.success(),
        "{}",
        String::from_utf8_lossy(&enrolled.stderr)
    );
    let config = data.path().join("agent.toml");
    std::fs::write(&config, "dns_resolvers = [\"10.77.1.53\"]\n").unwrap();
    let spawn_agent = || {
        Proc(
            in_ns(&dev, AGENT)
                .args(["run", "--facts-interval", "5", "--config"])
                .arg(&config)
                .arg("--state-dir")
                .arg(&state)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };

    // The second host listens; the device reaches it before quarantine.
    let _listener = Proc(
        in_ns(&other, "nc")
            .args(["-lk", "10.77.2.1", "9000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the second host listening", Duration::from_secs(10), || {
        reaches(&dev, "10.77.2.1", 9000)
    });
    let agent = spawn_agent();
    let device = cli.wait_online("quarantine-1");
    let id = device["id"].as_str().unwrap().to_owned();

    // Quarantined: only the Ward server (and loopback, DNS) remain reachable.
    let command = cli.json(&["device", "quarantine", &id, "--yes", "--wait", "30"]);
    cli.wait_command(command["id"].as_str().unwrap(), "succeeded");
    assert!(table_exists(&dev), "Ward's nftables table is loaded");
    assert!(!reaches(&dev, "10.77.2.1", 9000), "the second host is cut off");
    assert!(
        reaches(&dev, "10.77.1.1", 8443),
        "the Ward server stays reachable"
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        cli.device("quarantine-1").unwrap()["online"],
        true,
        "the channel stays up"
    );
    assert_eq!(cli.device("quarantine-1").unwrap()["state"], "quarantined");

    // Restart: the table is gone (as after a reboot) until the agent starts and re-applies it.
    drop(agent);
    let deleted = in_ns(&dev, "nft")
        .args(["delete", "table", "inet", "ward_quarantine"])
        .status()
        .unwrap();
    assert!(deleted.success());
    assert!(
        reaches(&dev, "10.77.2.1", 9000),
        "without the table the host is reachable"
    );
    let _agent = spawn_agent();
    wait_until(
        "the quarantine re-applied at start",
        Duration::from_secs(20),
        || table_exists(&dev),
    );
    assert!(
        !reaches(&dev, "10.77.2.1", 9000),
        "still quarantined after the restart"
    );
    cli.wait_online("quarantine-1");

    // Released: the second host is reachable again.
    let command = cli.json(&["device", "release", &id, "--yes", "--wait", "30"]);
    cli.wait_command(command["id"].as_str().unwrap(), "succeeded");
    assert!(!table_exists(&dev));
    assert!(reaches(&dev, "10.77.2.1", 9000), "reachable after release");
    assert_eq!(cli.device("quarantine-1").unwrap()["state"], "active");
}
