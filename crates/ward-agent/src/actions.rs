//! The executors. Each action is first turned into a [`Plan`] — the programs to run, the paths to
//! erase, the program to run last — and then carried out: for real, or in sandbox mode recorded in
//! `DIR/<command id>.json` instead. Both modes share everything up to that last step, so tests and
//! the simulator exercise the same planning, checks, journaling and proofs as a real device.

use std::io::{Read, Write};
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::config::{AgentConfig, Tools};
use crate::identity::Enrollment;

/// Real or recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Real,
    /// Record every action in this directory instead of doing it.
    Sandbox(PathBuf),
}

/// Longest any one program may run.
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(30);
/// Most stderr kept in a failure reason.
const MAX_REASON: usize = 500;
/// The nftables table Ward owns.
pub const QUARANTINE_TABLE: &str = "inet ward_quarantine";

/// A program to run, with what goes to its standard input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub argv: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
}

impl Step {
    pub fn new(program: &Path, args: &[&str]) -> Step {
        let mut argv = vec![program.display().to_string()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        Step { argv, stdin: None }
    }

    pub fn with_stdin(mut self, text: impl Into<String>) -> Step {
        self.stdin = Some(text.into());
        self
    }
}

/// What an action will do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Run in order; the first failure stops the action.
    pub steps: Vec<Step>,
    /// Paths removed (files, or directories with everything in them).
    pub erase: Vec<PathBuf>,
    /// Run after the result is journaled (reboot, power off): the process may not survive it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<Step>,
    /// What it does, in words, for the result's detail.
    pub summary: String,
}

/// What the sandbox writes for one action.
#[derive(Serialize)]
struct Record<'a> {
    command_id: &'a str,
    kind: &'a str,
    params: &'a Value,
    plan: &'a Plan,
}

/// Runs `step`, bounded in time; a non-zero exit or a missing program is an error naming the
/// program and what it printed on stderr. Returns standard output (at most `max_output` bytes).
pub fn run_step(step: &Step, max_output: usize) -> Result<String, String> {
    let program = step.argv.first().ok_or("empty command")?;
    let mut child = Command::new(program)
        .args(&step.argv[1..])
        .stdin(if step.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("{program}: cannot run: {err}"))?;
    if let (Some(text), Some(mut stdin)) = (&step.stdin, child.stdin.take()) {
        let _ = stdin.write_all(text.as_bytes());
    }
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        if let Some(pipe) = stdout.as_mut() {
            let _ = pipe.take(max_output as u64).read_to_end(&mut buffer);
            let _ = std::io::copy(pipe, &mut std::io::sink());
        }
        buffer
    });
    let err = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        if let Some(pipe) = stderr.as_mut() {
            let _ = pipe.take(4096).read_to_end(&mut buffer);
            let _ = std::io::copy(pipe, &mut std::io::sink());
        }
        buffer
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > PROGRAM_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program}: timed out after {}s",
                    PROGRAM_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(err) => return Err(format!("{program}: {err}")),
        }
    };
    let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    if status.success() {
        Ok(stdout)
    } else {
        let reason: String = stderr.trim().chars().take(MAX_REASON).collect();
        Err(format!("{program} exited with {status}: {reason}"))
    }
}

/// Carries out the main part of a plan (steps, erasures; not `last`). Sandbox mode writes the
/// record instead (after `WARD_AGENT_SANDBOX_DELAY_MS`, which tests use to kill the agent
/// mid-action). Returns the paths erased.
pub fn perform(
    mode: &Mode,
    id: &str,
    kind: &str,
    params: &Value,
    plan: &Plan,
) -> Result<Vec<String>, String> {
    match mode {
        Mode::Sandbox(dir) => {
            if let Some(delay) = std::env::var("WARD_AGENT_SANDBOX_DELAY_MS")
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
            {
                std::thread::sleep(Duration::from_millis(delay.min(60_000)));
            }
            let record = Record {
                command_id: id,
                kind,
                params,
                plan,
            };
            let text = serde_json::to_string_pretty(&record).map_err(|e| e.to_string())?;
            // Written in place: the record is read after the command's result (a torn one, from a
            // crash mid-write, is rewritten when the unfinished command runs again). The directory
            // is made only when missing: the simulator's thousands of devices write here at once.
            let path = dir.join(format!("{}.json", file_safe(id)));
            let written = match std::fs::write(&path, &text) {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                    std::fs::write(&path, &text)
                }
                written => written,
            };
            written.map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(plan.erase.iter().map(|p| p.display().to_string()).collect())
        }
        Mode::Real => {
            let mut erased = Vec::new();
            for path in &plan.erase {
                let result = match std::fs::symlink_metadata(path) {
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => Err(err),
                    Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
                    Ok(_) => std::fs::remove_file(path),
                };
                result.map_err(|err| {
                    format!(
                        "erasing {} failed after {} erased: {err}",
                        path.display(),
                        erased.len()
                    )
                })?;
                erased.push(path.display().to_string());
            }
            for step in &plan.steps {
                run_step(step, 64 * 1024)?;
            }
            Ok(erased)
        }
    }
}

/// Runs a plan's last step (real mode only; the sandbox recorded it with the plan).
pub fn perform_last(mode: &Mode, plan: &Plan) -> Result<(), String> {
    match (mode, &plan.last) {
        (Mode::Real, Some(step)) => run_step(step, 4096).map(|_| ()),
        _ => Ok(()),
    }
}

/// Command ids are UUIDs from the server, but file names must never follow a hostile one.
fn file_safe(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect()
}

pub fn lock(tools: &Tools) -> Plan {
    Plan {
        steps: vec![Step::new(&tools.loginctl, &["lock-sessions"])],
        summary: "sessions locked".into(),
        ..Plan::default()
    }
}

pub fn unlock(tools: &Tools) -> Plan {
    Plan {
        steps: vec![Step::new(&tools.loginctl, &["unlock-sessions"])],
        summary: "sessions unlocked".into(),
        ..Plan::default()
    }
}

pub fn message(tools: &Tools, text: &str) -> Plan {
    Plan {
        steps: vec![Step::new(&tools.wall, &[]).with_stdin(format!("{text}\n"))],
        summary: "message shown to logged-in users".into(),
        ..Plan::default()
    }
}

pub fn lost_mode(tools: &Tools, text: &str) -> Plan {
    let mut plan = lock(tools);
    plan.steps.extend(message(tools, text).steps);
    plan.summary = "lost mode: sessions locked, message shown, location facts sent".into();
    plan
}

pub fn power(tools: &Tools, verb: &str) -> Plan {
    Plan {
        last: Some(Step::new(&tools.systemctl, &[verb])),
        summary: format!("{verb} started"),
        ..Plan::default()
    }
}

/// The Ward server's addresses, from the enrollment (an IP literal, or the name resolved now).
pub fn server_addresses(enrollment: &Enrollment) -> Result<Vec<IpAddr>, String> {
    if let Ok(ip) = enrollment.server_host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let mut addresses: Vec<IpAddr> = (enrollment.server_host.as_str(), enrollment.server_port)
        .to_socket_addrs()
        .map_err(|err| format!("resolving {}: {err}", enrollment.server_host))?
        .map(|a| a.ip())
        .collect();
    addresses.sort();
    addresses.dedup();
    if addresses.is_empty() {
        return Err(format!("{} has no addresses", enrollment.server_host));
    }
    Ok(addresses)
}

fn family(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "ip" } else { "ip6" }
}

/// The nftables script that replaces Ward's table atomically: drop everything but loopback, the
/// Ward server's ports, DNS to `resolvers`, DHCP and IPv6 neighbour discovery.
pub fn quarantine_ruleset(servers: &[IpAddr], ports: &[u16], resolvers: &[IpAddr]) -> String {
    let ports = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
    let mut input = vec!["iifname \"lo\" accept".to_owned()];
    let mut output = vec!["oifname \"lo\" accept".to_owned()];
    for server in servers {
        let f = family(server);
        input.push(format!("{f} saddr {server} tcp sport {{ {ports} }} accept"));
        output.push(format!("{f} daddr {server} tcp dport {{ {ports} }} accept"));
    }
    for resolver in resolvers {
        let f = family(resolver);
        for proto in ["udp", "tcp"] {
            input.push(format!("{f} saddr {resolver} {proto} sport 53 accept"));
            output.push(format!("{f} daddr {resolver} {proto} dport 53 accept"));
        }
    }
    input.push("udp sport 67 udp dport 68 accept".into());
    output.push("udp sport 68 udp dport 67 accept".into());
    input.push("udp sport 547 udp dport 546 accept".into());
    output.push("udp sport 546 udp dport 547 accept".into());
    let nd =
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept";
    input.push(nd.into());
    output.push(nd.into());
    let chain = |name: &str, rules: &[String]| {
        let mut text =
            format!("  chain {name} {{\n    type filter hook {name} priority filter; policy drop;\n");
        for rule in rules {
            text.push_str(&format!("    {rule}\n"));
        }
        text.push_str("  }\n");
        text
    };
    format!(
        "table {QUARANTINE_TABLE}\ndelete table {QUARANTINE_TABLE}\ntable {QUARANTINE_TABLE} {{\n{}{}}}\n",
        chain("input", &input),
        chain("output", &output)
    )
}

pub fn quarantine(tools: &Tools, ruleset: &str) -> Plan {
    Plan {
        steps: vec![Step::new(&tools.nft, &["-f", "-"]).with_stdin(ruleset)],
        summary: "quarantined: only the Ward server, DNS and loopback are reachable".into(),
        ..Plan::default()
    }
}

pub fn release(tools: &Tools) -> Plan {
    // Declaring the table first makes the delete succeed whether or not it was loaded.
    let script = format!("table {QUARANTINE_TABLE}\ndelete table {QUARANTINE_TABLE}\n");
    Plan {
        steps: vec![Step::new(&tools.nft, &["-f", "-"]).with_stdin(script)],
        summary: "released: the network is open again".into(),
        ..Plan::default()
    }
}

/// Everything inside the managed directories, and the agent's data key.
pub fn wipe_selective(config: &AgentConfig, data_key: &Path) -> Plan {
    let mut erase = Vec::new();
    for dir in &config.managed_dirs {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
            paths.sort();
            erase.extend(paths);
        }
    }
    erase.push(data_key.to_owned());
    Plan {
        erase,
        summary: format!(
            "erased the contents of {} managed directories and the agent's data key",
            config.managed_dirs.len()
        ),
        ..Plan::default()
    }
}

/// Crypto-erases the configured LUKS devices, then powers off.
pub fn wipe_full(config: &AgentConfig) -> Plan {
    let tools = &config.tools;
    Plan {
        steps: config
            .full_wipe_devices
            .iter()
            .map(|dev| {
                Step::new(
                    &tools.cryptsetup,
                    &["luksErase", "--batch-mode", &dev.display().to_string()],
                )
            })
            .collect(),
        last: Some(Step::new(&tools.systemctl, &["poweroff"])),
        summary: format!(
            "crypto-erased {} encrypted devices; powering off",
            config.full_wipe_devices.len()
        ),
        ..Plan::default()
    }
}

/// Creates the agent's data key (32 random bytes, 0600) if it is missing. Applications that keep
/// patient data on the device encrypt it under this key, so erasing it makes that data unreadable.
pub fn ensure_data_key(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    let key: [u8; 32] = rand::random();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(&key)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_allows_only_ward_dns_and_loopback() {
        let rules = quarantine_ruleset(
            &["10.77.1.1".parse().unwrap(), "fd00::1".parse().unwrap()],
            &[8443, 8444],
            &["10.0.0.53".parse().unwrap()],
        );
        assert!(rules.starts_with("table inet ward_quarantine\ndelete table inet ward_quarantine\n"));
        assert!(rules.contains("policy drop;"));
        assert!(rules.contains("ip daddr 10.77.1.1 tcp dport { 8443, 8444 } accept"));
        assert!(rules.contains("ip6 saddr fd00::1 tcp sport { 8443, 8444 } accept"));
        assert!(rules.contains("ip daddr 10.0.0.53 udp dport 53 accept"));
        assert!(rules.contains("oifname \"lo\" accept"));
        assert!(
            !rules.contains("ct state"),
            "existing connections to other hosts are cut too"
        );
    }

    #[test]
    fn programs_fail_with_their_reason_and_time_limits() {
        let missing = run_step(&Step::new(Path::new("/nonexistent/loginctl"), &[]), 100).unwrap_err();
        assert!(missing.contains("/nonexistent/loginctl"), "{missing}");
        let failed =
            run_step(&Step::new(Path::new("sh"), &["-c", "echo nope >&2; exit 3"]), 100).unwrap_err();
        assert!(failed.contains("nope") && failed.contains('3'), "{failed}");
        let echoed = run_step(&Step::new(Path::new("cat"), &[]).with_stdin("hello"), 3).unwrap();
        assert_eq!(echoed, "hel", "output is bounded");
        assert_eq!(file_safe("../../etc/passwd"), "______etc_passwd");
    }

    #[test]
    fn real_erasure_removes_contents_and_reports_them() {
        let dir = tempfile::tempdir().unwrap();
        let managed = dir.path().join("managed");
        std::fs::create_dir_all(managed.join("sub")).unwrap();
        std::fs::write(managed.join("sub/a.txt"), "x").unwrap();
        std::fs::write(managed.join("b.txt"), "y").unwrap();
        let key = dir.path().join("data.key");
        ensure_data_key(&key).unwrap();
        assert_eq!(std::fs::read(&key).unwrap().len(), 32);
        let config = AgentConfig {
            managed_dirs: vec![managed.clone()],
            ..AgentConfig::default()
        };
        let plan = wipe_selective(&config, &key);
        let erased = perform(&Mode::Real, "c1", "wipe-selective", &Value::Null, &plan).unwrap();
        assert_eq!(erased.len(), 3);
        assert!(managed.exists() && std::fs::read_dir(&managed).unwrap().next().is_none());
        assert!(!key.exists());
    }
}
