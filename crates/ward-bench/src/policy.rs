//! `ward bench policy`: how fast policies are evaluated. N synthetic devices (a hospital mix of
//! classes, OS versions and security posture, facts shaped as agents report them) against the
//! shipped healthcare baseline plus extra checks up to `--checks` per device.
//!
//! Two figures, medians of several runs:
//! - **evaluations/s**: device×check evaluations on prepared selector subjects, one thread per
//!   core (`--threads`), the cost a policy change pays per device and check;
//! - **devices/s with subjects**: building each device's subject from its stored record (the
//!   view and its JSON) and evaluating every policy, on one thread: what re-evaluating the fleet
//!   after a policy change costs before any database write.

use std::time::Instant;

use serde_json::{Value, json};
use ward_domain::device::{Criticality, DeviceClass, DeviceState};
use ward_domain::policy::{CheckStatus, Policy};
use ward_domain::site::SiteSlug;
use ward_proto::{ApplyPoliciesRequest, PolicyFile};
use ward_store::DeviceRecord;

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyBenchArgs {
    /// Simulated devices.
    #[arg(long, default_value_t = 100_000)]
    pub devices: usize,
    /// Runs; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Threads for the evaluation rate (default: the machine's cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The medians.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PolicyBenchResult {
    pub devices: usize,
    pub policies: usize,
    /// Checks per device on average (only policies in scope are evaluated).
    pub checks_per_device: f64,
    pub threads: usize,
    pub runs: usize,
    pub evaluations_per_s: f64,
    pub evaluations_per_s_one_thread: f64,
    pub devices_per_s_with_subjects: f64,
    /// Seconds to re-evaluate every device (all threads).
    pub fleet_seconds: f64,
    pub non_compliant_percent: f64,
}

/// Extra checks so that workstations meet about ten checks, as the sizing assumes.
const EXTRA: &str = "\
name: bench-extra
scope: 'class in [\"workstation\", \"mobile\"]'
checks:
  - id: kernel-floor
    expr: 'facts.kernel.release >= \"5.15\"'
  - id: memory
    expr: 'facts.memory.total_bytes >= 4294967296'
  - id: no-telnet
    expr: 'facts.packages.items.name not in [\"telnetd\", \"rsh-server\"]'
";

fn policies() -> anyhow::Result<Vec<Policy>> {
    let mut files: Vec<PolicyFile> = ward_service::baseline::files();
    files.push(PolicyFile {
        path: "bench-extra.yaml".into(),
        text: EXTRA.into(),
    });
    let request = ApplyPoliciesRequest {
        files,
        dry_run: true,
        prune: false,
    };
    ward_service::policy_files::compile_files(&request)
        .map(|compiled| compiled.into_iter().map(|(policy, _)| policy).collect())
        .map_err(|problems| anyhow::anyhow!("{}", problems.join("\n")))
}

const CLASSES: &[(DeviceClass, Criticality, bool)] = &[
    (DeviceClass::Workstation, Criticality::Normal, true),
    (DeviceClass::Workstation, Criticality::Normal, true),
    (DeviceClass::Mobile, Criticality::Normal, true),
    (DeviceClass::IotGateway, Criticality::Normal, false),
    (DeviceClass::Medical, Criticality::LifeSustaining, true),
    (DeviceClass::Medical, Criticality::High, true),
];

fn facts(i: usize, class: DeviceClass) -> Value {
    let (os, version) = match i % 5 {
        0 => ("ubuntu", "20.04"),
        1 | 2 => ("ubuntu", "22.04"),
        3 => ("debian", "12"),
        _ => ("ubuntu", "24.04"),
    };
    let packages: Vec<Value> = [
        "bash",
        "openssl",
        "libc6",
        "systemd",
        "coreutils",
        "openssh-client",
    ]
    .iter()
    .map(|name| json!({"name": name, "version": "1.0", "architecture": "amd64"}))
    .collect();
    json!({
        "agent_version": "0.1.0",
        "os": {"id": os, "version_id": version, "name": os, "pretty_name": format!("{os} {version}")},
        "kernel": {"release": "6.1.0-25-amd64"},
        "hostname": format!("dev-{i}"),
        "memory": {"total_bytes": 8u64 << 30, "available_bytes": 4u64 << 30},
        "disks": {"devices": [], "crypt_mappings": [],
                  "root_filesystem": {"device": "/dev/sda2", "fs_type": "ext4", "encrypted": class != DeviceClass::Medical && !i.is_multiple_of(9)}},
        "firewall": {"active": !i.is_multiple_of(11), "backends": []},
        "usb_storage": if i.is_multiple_of(17) { json!([{"bus_id": "1-1"}]) } else { json!([]) },
        "packages": {"manager": "dpkg", "n_installed": packages.len(), "truncated": false, "items": packages},
        "screen_lock": {"source": "dconf", "lock_enabled": true, "idle_delay_seconds": if i.is_multiple_of(5) { 900 } else { 300 }, "locked_keys": []},
        "time_sync": {"synchronized": !i.is_multiple_of(13), "services": []},
        "settings": {"digest": "0", "applied_at": "2026-11-28T00:00:00Z", "drift": [], "denied_packages": []},
        "errors": [],
    })
}

fn record(i: usize) -> anyhow::Result<DeviceRecord> {
    let (class, criticality, phi) = CLASSES[i % CLASSES.len()];
    let sites = [
        "st-marys/icu",
        "st-marys/ed",
        "st-marys/radiology",
        "general/outpatients",
    ];
    Ok(DeviceRecord {
        id: format!("bench-{i}"),
        site: SiteSlug::parse(sites[i % sites.len()])?,
        class,
        criticality,
        phi,
        hostname: format!("dev-{i}"),
        state: DeviceState::Active,
        cert_fingerprint: String::new(),
        cert_not_after_ms: 1_800_000_000_000,
        enrolled_ms: 1_790_000_000_000,
        last_seen_ms: Some(1_790_000_000_000),
        facts: facts(i, class).to_string(),
        enroll_token_id: String::new(),
        facts_updated_ms: None,
        allow_full_wipe: false,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Evaluates every policy over `subjects`; returns (checks evaluated, checks failed).
fn evaluate(policies: &[Policy], subjects: &[Value]) -> (u64, u64) {
    let mut evaluated = 0u64;
    let mut failed = 0u64;
    for subject in subjects {
        for policy in policies {
            if policy.applies_to(subject) {
                for status in policy.evaluate(subject) {
                    evaluated += 1;
                    failed += u64::from(status == CheckStatus::Fail);
                }
            }
        }
    }
    (evaluated, failed)
}

fn evaluate_parallel(policies: &[Policy], subjects: &[Value], threads: usize) -> (u64, u64) {
    let chunk = subjects.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = subjects
            .chunks(chunk)
            .map(|part| scope.spawn(move || evaluate(policies, part)))
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().ok())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    })
}

/// Runs the benchmark.
pub fn run(args: &PolicyBenchArgs, progress: &mut dyn FnMut(&str)) -> anyhow::Result<PolicyBenchResult> {
    anyhow::ensure!(
        args.devices > 0 && args.runs > 0,
        "devices and runs must be at least 1"
    );
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let policies = policies()?;
    progress(&format!("building {} devices", args.devices));
    let records: Vec<DeviceRecord> = (0..args.devices).map(record).collect::<anyhow::Result<_>>()?;
    let subjects: Vec<Value> = records
        .iter()
        .map(|r| {
            serde_json::to_value(ward_core::devices::device_view(r, 1_790_000_000_000, 30_000))
                .unwrap_or(Value::Null)
        })
        .collect();
    let (mut rates, mut single, mut with_subjects, mut fleet) = (vec![], vec![], vec![], vec![]);
    let (mut evaluated, mut failed) = (0, 0);
    for run in 0..args.runs {
        let started = Instant::now();
        (evaluated, failed) = evaluate_parallel(&policies, &subjects, threads);
        let elapsed = started.elapsed().as_secs_f64();
        rates.push(evaluated as f64 / elapsed);
        fleet.push(elapsed);

        let started = Instant::now();
        let _ = evaluate(&policies, &subjects);
        single.push(evaluated as f64 / started.elapsed().as_secs_f64());

        let started = Instant::now();
        let mut count = 0u64;
        for r in &records {
            let subject = serde_json::to_value(ward_core::devices::device_view(r, 1_790_000_000_000, 30_000))
                .unwrap_or(Value::Null);
            count += evaluate(&policies, std::slice::from_ref(&subject)).0;
        }
        anyhow::ensure!(count == evaluated, "the two measurements disagree");
        with_subjects.push(records.len() as f64 / started.elapsed().as_secs_f64());
        progress(&format!(
            "run {}/{}: {:.0} evaluations/s ({threads} threads), {:.0}/s on one thread, {:.0} devices/s with subjects",
            run + 1,
            args.runs,
            rates[run],
            single[run],
            with_subjects[run]
        ));
    }
    Ok(PolicyBenchResult {
        devices: args.devices,
        policies: policies.len(),
        checks_per_device: evaluated as f64 / args.devices as f64,
        threads,
        runs: args.runs,
        evaluations_per_s: median(rates),
        evaluations_per_s_one_thread: median(single),
        devices_per_s_with_subjects: median(with_subjects),
        fleet_seconds: median(fleet),
        non_compliant_percent: failed as f64 * 100.0 / evaluated.max(1) as f64,
    })
}
