//! The agent's command runner on its own: verification and refusals, the journal's exactly-once
//! answers, wipe proofs, executor failures, quarantine restore and the offline self-lock with a
//! controlled clock.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use serde_json::Value;
use ward_agent::actions::Mode;
use ward_agent::commands::{Accepted, Runner};
use ward_agent::config::AgentConfig;
use ward_agent::identity::{Enrollment, StateDir};
use ward_domain::command::{CommandFields, WipeProof, sign_batch, sign_command};
use ward_proto::agent::{Command, CommandUpdate};

const DEVICE: &str = "device-1";
const NOW: i64 = 1_800_000_000_000;

struct Fixture {
    dir: tempfile::TempDir,
    server_key: SigningKey,
    device_key: rcgen::KeyPair,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let device_key = rcgen::KeyPair::generate().unwrap();
        let state = StateDir(dir.path().join("state"));
        std::fs::create_dir_all(&state.0).unwrap();
        std::fs::write(state.key(), device_key.serialize_pem()).unwrap();
        Fixture {
            dir,
            server_key: SigningKey::from_bytes(&[9; 32]),
            device_key,
        }
    }

    fn state(&self) -> StateDir {
        StateDir(self.dir.path().join("state"))
    }

    fn sandbox(&self) -> PathBuf {
        self.dir.path().join("sandbox")
    }

    fn enrollment(&self, allow_full_wipe: bool) -> Enrollment {
        Enrollment {
            version: 1,
            device_id: DEVICE.into(),
            server_host: "10.77.1.1".into(),
            server_port: 8443,
            agent_port: 8444,
            command_key: hex::encode(self.server_key.verifying_key().as_bytes()),
            allow_full_wipe,
            hostname: "tab-1".into(),
            not_after_ms: NOW + 1_000_000,
        }
    }

    fn runner_with(&self, config: AgentConfig, mode: Mode, allow_full_wipe: bool) -> Runner {
        Runner::new(
            self.state(),
            self.enrollment(allow_full_wipe),
            config,
            mode,
            "tab-1".into(),
            self.dir.path().to_owned(),
            Default::default(),
        )
        .unwrap()
    }

    fn runner(&self) -> Runner {
        let config = AgentConfig {
            dns_resolvers: vec!["10.0.0.53".parse().unwrap()],
            managed_dirs: vec![self.dir.path().join("managed")],
            allow_full_wipe: true,
            ..AgentConfig::default()
        };
        self.runner_with(config, Mode::Sandbox(self.sandbox()), true)
    }

    fn command(&self, id: &str, kind: &str, params: &str) -> Command {
        self.command_for(id, DEVICE, kind, params, NOW + 60_000)
    }

    fn command_for(&self, id: &str, device: &str, kind: &str, params: &str, not_after: i64) -> Command {
        Command {
            id: id.into(),
            device_id: device.into(),
            kind: kind.into(),
            params_json: params.into(),
            not_after_ms: not_after,
            signature: sign_command(
                &self.server_key,
                &CommandFields::new(id, device, kind, params, not_after),
            ),
            batch_proof: Vec::new(),
        }
    }

    /// Commands for this device signed together as one batch (as a containment sends them).
    fn batch(&self, commands: &[(&str, &str)]) -> Vec<Command> {
        let all: Vec<CommandFields<'_>> = commands
            .iter()
            .map(|(id, kind)| CommandFields::new(id, DEVICE, kind, "{}", NOW + 60_000))
            .collect();
        let (signature, proofs) = sign_batch(&self.server_key, &all);
        commands
            .iter()
            .zip(proofs)
            .map(|((id, kind), batch_proof)| Command {
                id: (*id).into(),
                device_id: DEVICE.into(),
                kind: (*kind).into(),
                params_json: "{}".into(),
                not_after_ms: NOW + 60_000,
                signature: signature.clone(),
                batch_proof,
            })
            .collect()
    }

    fn records(&self) -> usize {
        std::fs::read_dir(self.sandbox()).map(|d| d.count()).unwrap_or(0)
    }
}

/// Accepts and runs a command, returning the acknowledgement and the result.
fn run(runner: &Runner, command: &Command) -> (CommandUpdate, CommandUpdate) {
    match runner.accept(command, NOW) {
        Accepted::Run(job, ack) => (ack, runner.execute(job, NOW)),
        Accepted::Answer(updates) => panic!("expected to run, got {updates:?}"),
    }
}

fn refused(runner: &Runner, command: &Command) -> String {
    match runner.accept(command, NOW) {
        Accepted::Answer(updates) => {
            assert_eq!(updates.len(), 1);
            assert_eq!(updates[0].status, "refused", "{updates:?}");
            updates[0].detail.clone()
        }
        Accepted::Run(..) => panic!("expected a refusal"),
    }
}

#[test]
fn every_kind_runs_in_the_sandbox_and_is_recorded_once() {
    let fixture = Fixture::new();
    std::fs::create_dir_all(fixture.dir.path().join("managed/cache")).unwrap();
    std::fs::write(fixture.dir.path().join("managed/cache/x"), "phi").unwrap();
    let runner = fixture.runner();
    for (i, (kind, params)) in [
        ("lock", "{}"),
        ("unlock", "{}"),
        ("message", r#"{"text":"hello"}"#),
        ("reboot", "{}"),
        ("shutdown", "{}"),
        ("quarantine", "{}"),
        ("release", "{}"),
        ("wipe-selective", "{}"),
        ("wipe-full", r#"{"confirm_hostname":"tab-1"}"#),
        ("collect-diagnostics", r#"{"max_bytes":2048}"#),
        ("lost-mode", r#"{"text":"please return"}"#),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("c{i}");
        let (ack, result) = run(&runner, &fixture.command(&id, kind, params));
        assert_eq!(ack.status, "acknowledged");
        assert_eq!(result.status, "succeeded", "{kind}: {result:?}");
        let record = std::fs::read_to_string(fixture.sandbox().join(format!("{id}.json"))).unwrap();
        assert!(record.contains(kind), "{record}");
        if kind == "collect-diagnostics" {
            assert!(result.output.len() <= 2048, "bounded: {}", result.output.len());
            let bundle: Value = serde_json::from_str(&result.output).unwrap();
            assert_eq!(bundle["device_id"], DEVICE);
        }
    }
    assert_eq!(fixture.records(), 11);
    assert!(
        fixture.dir.path().join("managed/cache/x").exists(),
        "the sandbox records a wipe, it does not erase"
    );
}

#[test]
fn a_redelivered_command_is_answered_from_the_journal() {
    let fixture = Fixture::new();
    let runner = fixture.runner();
    let lock = fixture.command("c1", "lock", "{}");
    let (_, first) = run(&runner, &lock);
    std::fs::remove_file(fixture.sandbox().join("c1.json")).unwrap();
    for runner in [&runner, &fixture.runner()] {
        match runner.accept(&lock, NOW + 120_000) {
            Accepted::Answer(updates) => assert_eq!(
                updates,
                vec![first.clone()],
                "the stored result, even past not-after"
            ),
            Accepted::Run(..) => panic!("a finished command ran again"),
        }
    }
    assert_eq!(fixture.records(), 0, "not executed again");
}

#[test]
fn a_command_interrupted_mid_action_runs_again_once() {
    let fixture = Fixture::new();
    let lock = fixture.command("c1", "lock", "{}");
    {
        let runner = fixture.runner();
        let Accepted::Run(_job, _) = runner.accept(&lock, NOW) else {
            panic!("expected to run")
        };
        // The agent dies here: accepted, never executed.
    }
    let runner = fixture.runner();
    let (_, result) = run(&runner, &lock);
    assert_eq!(result.status, "succeeded");
    assert_eq!(fixture.records(), 1);
    assert!(matches!(runner.accept(&lock, NOW), Accepted::Answer(_)));
}

#[test]
fn forged_expired_misaddressed_and_malformed_commands_are_refused() {
    let fixture = Fixture::new();
    let runner = fixture.runner();
    let mut tampered = fixture.command("c1", "lock", "{}");
    tampered.kind = "wipe-full".into();
    assert!(refused(&runner, &tampered).contains("signature"));
    let mut tampered = fixture.command("c2", "message", r#"{"text":"hi"}"#);
    tampered.params_json = r#"{"text":"rm -rf"}"#.into();
    assert!(refused(&runner, &tampered).contains("signature"));
    let mut forged = fixture.command("c3", "lock", "{}");
    forged.signature = sign_command(
        &SigningKey::from_bytes(&[1; 32]),
        &CommandFields::new("c3", DEVICE, "lock", "{}", NOW + 60_000),
    );
    assert!(refused(&runner, &forged).contains("signature"));
    let mut short = fixture.command("c4", "lock", "{}");
    short.signature.truncate(10);
    assert!(refused(&runner, &short).contains("signature"));
    let expired = fixture.command_for("c5", DEVICE, "lock", "{}", NOW - 1);
    assert!(refused(&runner, &expired).contains("expired"));
    let other = fixture.command_for("c6", "device-2", "lock", "{}", NOW + 60_000);
    assert!(refused(&runner, &other).contains("another device"));
    let unknown = fixture.command("c7", "format-disk", "{}");
    assert!(refused(&runner, &unknown).contains("unknown command kind"));
    let bad = fixture.command("c8", "message", r#"{"text":5}"#);
    assert!(refused(&runner, &bad).contains("bad parameters"));
    let junk = fixture.command("c9", "lock", "not json");
    assert!(refused(&runner, &junk).contains("bad parameters"));
    assert_eq!(fixture.records(), 0, "nothing refused was executed");
    // A replay of a refused id is still refused, and never journaled as accepted.
    assert!(refused(&runner, &tampered).contains("signature"));
    let journal = std::fs::read_to_string(fixture.state().0.join("commands.journal")).unwrap_or_default();
    assert!(journal.is_empty(), "{journal}");
}

#[test]
fn a_full_wipe_needs_both_opt_ins_and_the_hostname() {
    let fixture = Fixture::new();
    let sandbox = Mode::Sandbox(fixture.sandbox());
    let owner_allows = AgentConfig {
        allow_full_wipe: true,
        ..AgentConfig::default()
    };
    for (i, (config, enrollment, hostname)) in [
        (AgentConfig::default(), true, "tab-1"),
        (owner_allows.clone(), false, "tab-1"),
        (owner_allows.clone(), true, "tab-2"),
    ]
    .into_iter()
    .enumerate()
    {
        let runner = fixture.runner_with(config, sandbox.clone(), enrollment);
        let params = format!(r#"{{"confirm_hostname":"{hostname}"}}"#);
        let (_, result) = run(&runner, &fixture.command(&format!("w{i}"), "wipe-full", &params));
        assert_eq!(result.status, "failed", "{result:?}");
        assert!(result.detail.starts_with("refused"), "{}", result.detail);
    }
    assert_eq!(fixture.records(), 0);
}

#[test]
fn wipe_proofs_verify_with_the_device_key_and_real_wipes_erase() {
    let fixture = Fixture::new();
    let managed = fixture.dir.path().join("managed");
    std::fs::create_dir_all(managed.join("sub")).unwrap();
    std::fs::write(managed.join("sub/record.txt"), "patient").unwrap();
    let config = AgentConfig {
        managed_dirs: vec![managed.clone()],
        ..AgentConfig::default()
    };
    let runner = fixture.runner_with(config, Mode::Real, false);
    let data_key = fixture.state().0.join("data.key");
    assert!(data_key.exists(), "the data key is created at start");
    let (_, result) = run(&runner, &fixture.command("w1", "wipe-selective", "{}"));
    assert_eq!(result.status, "succeeded", "{result:?}");
    assert!(!managed.join("sub").exists() && managed.exists());
    assert!(!data_key.exists(), "the data key is erased");
    let proof: WipeProof = serde_json::from_str(&result.proof_json).unwrap();
    assert_eq!(
        (proof.command_id.as_str(), proof.device_id.as_str()),
        ("w1", DEVICE)
    );
    assert!(proof.erased.iter().any(|p| p.ends_with("data.key")), "{proof:?}");
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_ASN1,
        fixture.device_key.public_key_raw(),
    );
    public
        .verify(result.proof_json.as_bytes(), &result.proof_signature)
        .expect("signed by the device key");
    let edited = result.proof_json.replace("w1", "w2");
    assert!(public.verify(edited.as_bytes(), &result.proof_signature).is_err());
}

#[test]
fn a_failing_executor_is_reported_as_failed_with_its_reason() {
    let fixture = Fixture::new();
    let mut config = AgentConfig::default();
    config.tools.loginctl = "/nonexistent/loginctl".into();
    config.tools.systemctl = "false".into();
    let runner = fixture.runner_with(config, Mode::Real, false);
    let (_, result) = run(&runner, &fixture.command("c1", "lock", "{}"));
    assert_eq!(result.status, "failed");
    assert!(
        result.detail.contains("/nonexistent/loginctl"),
        "{}",
        result.detail
    );
    // Power actions are journaled as done before the program runs; a failure replaces that.
    let (_, result) = run(&runner, &fixture.command("c2", "reboot", "{}"));
    assert_eq!(result.status, "failed", "{result:?}");
    match runner.accept(&fixture.command("c2", "reboot", "{}"), NOW) {
        Accepted::Answer(updates) => assert_eq!(updates[0].status, "failed", "the journal keeps the failure"),
        Accepted::Run(..) => panic!("ran again"),
    }
}

fn record(sandbox: &Path, id: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(sandbox.join(format!("{id}.json"))).unwrap()).unwrap()
}

#[test]
fn quarantine_is_restored_after_a_restart_until_released() {
    let fixture = Fixture::new();
    let runner = fixture.runner();
    assert_eq!(runner.restore().unwrap(), None, "nothing to restore");
    let (_, result) = run(&runner, &fixture.command("q1", "quarantine", "{}"));
    assert_eq!(result.status, "succeeded", "{result:?}");
    let ruleset = record(&fixture.sandbox(), "q1")["plan"]["steps"][0]["stdin"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        ruleset.contains("ip daddr 10.77.1.1 tcp dport { 8443, 8444 } accept"),
        "{ruleset}"
    );
    assert!(ruleset.contains("ip daddr 10.0.0.53 udp dport 53 accept"));
    assert!(ruleset.contains("policy drop"));
    let restarted = fixture.runner();
    assert!(restarted.restore().unwrap().is_some());
    assert_eq!(
        record(&fixture.sandbox(), "restore-quarantine")["plan"]["steps"][0]["stdin"],
        ruleset.as_str()
    );
    let (_, result) = run(&restarted, &fixture.command("r1", "release", "{}"));
    assert_eq!(result.status, "succeeded");
    assert_eq!(fixture.runner().restore().unwrap(), None, "released for good");
}

#[test]
fn the_offline_self_lock_acts_once_per_offline_period() {
    let fixture = Fixture::new();
    let config = AgentConfig {
        offline_lock_hours: Some(4),
        offline_quarantine: true,
        dns_resolvers: vec!["10.0.0.53".parse().unwrap()],
        ..AgentConfig::default()
    };
    let runner = fixture.runner_with(config.clone(), Mode::Sandbox(fixture.sandbox()), false);
    let hour = 3_600_000;
    let contact = NOW;
    assert_eq!(
        runner.check_offline(contact + 4 * hour - 1, contact),
        None,
        "not yet"
    );
    let done = runner
        .check_offline(contact + 4 * hour, contact)
        .expect("locks at four hours");
    assert!(done.contains("lock+quarantine"), "{done}");
    let plan = &record(&fixture.sandbox(), &format!("self-lock-{contact}"))["plan"];
    assert_eq!(plan["steps"][0]["argv"][1], "lock-sessions");
    assert!(
        plan["steps"][1]["stdin"]
            .as_str()
            .unwrap()
            .contains("ward_quarantine")
    );
    assert_eq!(
        runner.check_offline(contact + 5 * hour, contact),
        None,
        "once per period"
    );
    let restarted = fixture.runner_with(config, Mode::Sandbox(fixture.sandbox()), false);
    assert_eq!(
        restarted.check_offline(contact + 6 * hour, contact),
        None,
        "not again after a restart"
    );
    assert!(
        restarted.restore().unwrap().is_some(),
        "the self-quarantine survives restarts"
    );
    let later = contact + 10 * hour;
    assert_eq!(restarted.check_offline(later + hour, later), None);
    assert!(
        restarted.check_offline(later + 4 * hour, later).is_some(),
        "a new offline period"
    );
    let without = fixture.runner_with(AgentConfig::default(), Mode::Sandbox(fixture.sandbox()), false);
    assert_eq!(
        without.check_offline(NOW + 1000 * hour, NOW),
        None,
        "off unless configured"
    );
}

#[test]
fn commands_signed_as_a_batch_run_and_tampered_proofs_are_refused() {
    let fixture = Fixture::new();
    let runner = fixture.runner();
    let batch = fixture.batch(&[("b1", "lock"), ("b2", "quarantine"), ("b3", "lock")]);
    let (ack, done) = run(&runner, &batch[0]);
    assert_eq!(
        (ack.status.as_str(), done.status.as_str()),
        ("acknowledged", "succeeded"),
        "{done:?}"
    );
    // Another command's proof, a proof cut short, fields changed under a valid proof, and the
    // batch's signature without any proof: all refused, nothing run.
    let mut swapped = batch[1].clone();
    swapped.batch_proof = batch[2].batch_proof.clone();
    assert!(refused(&runner, &swapped).contains("signature"));
    let mut cut = batch[1].clone();
    cut.batch_proof.truncate(cut.batch_proof.len() - 32);
    assert!(refused(&runner, &cut).contains("signature"));
    let mut changed = batch[2].clone();
    changed.kind = "wipe-full".into();
    assert!(refused(&runner, &changed).contains("signature"));
    let mut bare = batch[2].clone();
    bare.batch_proof.clear();
    assert!(refused(&runner, &bare).contains("signature"));
    let mut junk = batch[2].clone();
    junk.batch_proof = vec![0xff; 7];
    assert!(refused(&runner, &junk).contains("signature"));
    // The untouched ones still run.
    assert_eq!(run(&runner, &batch[2]).1.status, "succeeded");
}
