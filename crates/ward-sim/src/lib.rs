//! Ward's fleet simulator: N virtual devices in one process, each a real agent — its own key pair
//! and certificate from the server's CA, its own mutual-TLS stream, the agent's own session, journal
//! and executors — with two differences from a real device: its facts come from a hospital profile
//! instead of the machine, and its executors run in sandbox mode (actions recorded in its state
//! directory, nothing done to this machine).
//!
//! **Invariant:** links the agent, client and wire types only — never the server or storage.

pub mod lwm2m;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use ward_agent::actions::Mode;
use ward_agent::config::AgentConfig;
use ward_agent::facts::Facts;
use ward_agent::identity::StateDir;
use ward_agent::session::{Background, RunOptions, Threads};
use ward_client::{Client, Trust};
use ward_proto::{CreateEnrollTokenRequest, CreateSiteRequest};

/// What to simulate and where.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The server's API, `https://HOST:PORT`.
    pub server: String,
    /// An admin API token (sites and enrollment tokens are created with it).
    pub token: String,
    /// The server CA's SHA-256 fingerprint, pinned by every virtual device.
    pub ca_fingerprint: String,
    pub devices: usize,
    /// Where each device keeps its state (key, certificate, journal, sandbox records).
    pub dir: PathBuf,
    /// Enrollments in flight at once.
    pub concurrency: usize,
    /// Prefix of hostnames, so several simulators can share a server.
    pub prefix: String,
    /// Devices per second that drop their connection and reconnect (0: none).
    pub churn: f64,
    /// Connect the devices from this many loopback addresses, 127.20.0.1 and up, in turn (0: the
    /// system picks). For a server on loopback: one source address reaches one server port from
    /// at most ~28 000 ephemeral ports, so 100 000 devices need at least four.
    pub source_addresses: u32,
    /// Carry out the devices' actions only when the processor would otherwise be idle (the
    /// idle scheduling class) instead of at nice 19: for benchmarks, where the simulator shares
    /// the server's processors and a real fleet's actions would run on the devices' own. Off, a
    /// busy machine still gives the actions a small share; on, it may give them none for a while.
    pub idle_executions: bool,
}

/// The loopback address device `index` connects from when spreading over `count` addresses.
pub fn source_address(index: usize, count: u32) -> Option<std::net::IpAddr> {
    if count == 0 {
        return None;
    }
    let n = (index % count as usize) as u32;
    Some(std::net::IpAddr::V4(std::net::Ipv4Addr::from(
        u32::from(std::net::Ipv4Addr::new(127, 20, 0, 1)) + n,
    )))
}

/// Source addresses must stay inside 127.0.0.0/8 (and the server must be on loopback to be
/// reached from them).
pub const MAX_SOURCE_ADDRESSES: u32 = 0x00EB_FFFE;

/// One kind of device in the hospital profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    pub name: &'static str,
    pub class: &'static str,
    pub criticality: &'static str,
    pub phi: bool,
    pub site: &'static str,
}

/// The sites of the hospital profile: two hospitals and their wards.
pub const SITES: &[(&str, &str)] = &[
    ("st-marys", "St Mary's Hospital"),
    ("st-marys/icu", "Intensive Care"),
    ("st-marys/ed", "Emergency Department"),
    ("st-marys/radiology", "Radiology"),
    ("st-marys/ward-a", "Ward A (General Medicine)"),
    ("general", "General Hospital"),
    ("general/surgery", "Surgery"),
];

/// A repeating mix of 20 devices, roughly a hospital's: workstations and tablets with patient
/// data, bedside gateways, and medical devices of every criticality.
pub const MIX: &[Model] = &[
    Model {
        name: "ws",
        class: "workstation",
        criticality: "normal",
        phi: true,
        site: "st-marys/ward-a",
    },
    Model {
        name: "ws",
        class: "workstation",
        criticality: "normal",
        phi: true,
        site: "st-marys/icu",
    },
    Model {
        name: "ws",
        class: "workstation",
        criticality: "normal",
        phi: true,
        site: "st-marys/ed",
    },
    Model {
        name: "ws",
        class: "workstation",
        criticality: "normal",
        phi: true,
        site: "general/surgery",
    },
    Model {
        name: "kiosk",
        class: "workstation",
        criticality: "normal",
        phi: false,
        site: "st-marys",
    },
    Model {
        name: "wow",
        class: "workstation",
        criticality: "normal",
        phi: true,
        site: "st-marys/ward-a",
    },
    Model {
        name: "tab",
        class: "mobile",
        criticality: "normal",
        phi: true,
        site: "st-marys/ward-a",
    },
    Model {
        name: "tab",
        class: "mobile",
        criticality: "normal",
        phi: true,
        site: "st-marys/icu",
    },
    Model {
        name: "tab",
        class: "mobile",
        criticality: "normal",
        phi: true,
        site: "general/surgery",
    },
    Model {
        name: "phone",
        class: "mobile",
        criticality: "normal",
        phi: true,
        site: "st-marys/ed",
    },
    Model {
        name: "gw",
        class: "iot-gateway",
        criticality: "high",
        phi: false,
        site: "st-marys/icu",
    },
    Model {
        name: "gw",
        class: "iot-gateway",
        criticality: "high",
        phi: false,
        site: "st-marys/ward-a",
    },
    Model {
        name: "pump",
        class: "medical",
        criticality: "life-sustaining",
        phi: false,
        site: "st-marys/icu",
    },
    Model {
        name: "pump",
        class: "medical",
        criticality: "life-sustaining",
        phi: false,
        site: "st-marys/ward-a",
    },
    Model {
        name: "vent",
        class: "medical",
        criticality: "life-sustaining",
        phi: false,
        site: "st-marys/icu",
    },
    Model {
        name: "monitor",
        class: "medical",
        criticality: "high",
        phi: true,
        site: "st-marys/icu",
    },
    Model {
        name: "monitor",
        class: "medical",
        criticality: "high",
        phi: true,
        site: "st-marys/ed",
    },
    Model {
        name: "ct",
        class: "medical",
        criticality: "high",
        phi: true,
        site: "st-marys/radiology",
    },
    Model {
        name: "triage",
        class: "workstation",
        criticality: "high",
        phi: true,
        site: "st-marys/ed",
    },
    Model {
        name: "tab",
        class: "mobile",
        criticality: "normal",
        phi: false,
        site: "general",
    },
];

/// The model of the `i`-th device.
pub fn model(i: usize) -> Model {
    MIX[i % MIX.len()]
}

/// Facts for the `i`-th device: OS versions and security posture spread so that some devices are
/// out of date, unencrypted or without a firewall (what a policy would flag).
pub fn facts(i: usize, hostname: &str) -> Facts {
    let model = model(i);
    let (os_id, name, version_id) = match (model.class, i % 7) {
        ("medical", _) => ("poky", "Poky (Yocto Project Reference Distro)", "4.0"),
        (_, 0) => ("ubuntu", "Ubuntu", "20.04"),
        (_, 1 | 2) => ("ubuntu", "Ubuntu", "22.04"),
        (_, 3) => ("ubuntu", "Ubuntu", "24.04"),
        _ => ("debian", "Debian GNU/Linux", "12"),
    };
    let encrypted = model.class != "medical" && !i.is_multiple_of(9);
    let value = json!({
        "agent_version": env!("CARGO_PKG_VERSION"),
        "os": {"id": os_id, "name": name, "version_id": version_id, "version": null,
               "pretty_name": format!("{name} {version_id}")},
        "kernel": {"release": if os_id == "poky" { "5.15.0-yocto" } else { "6.1.0-25-amd64" }, "version": null},
        "hostname": hostname,
        "uptime_seconds": 3600 + (i as u64 * 37) % 86_400,
        "cpu": {"model": "Simulated CPU", "logical_cores": 4},
        "memory": {"total_bytes": 8u64 << 30, "available_bytes": 4u64 << 30},
        "disks": {
            "devices": [{"name": "sda", "size_bytes": 256u64 << 30, "removable": false, "rotational": false,
                         "model": "SIM SSD", "encrypted": encrypted, "partitions": []}],
            "crypt_mappings": [],
            "root_filesystem": {"device": "/dev/sda2", "fs_type": "ext4", "encrypted": encrypted},
        },
        "firewall": {"active": !i.is_multiple_of(11), "backends": []},
        "listening": null,
        "usb_storage": if i.is_multiple_of(17) {
            json!([{"bus_id": "1-1", "vendor_id": "0781", "product_id": "5581", "manufacturer": "SanDisk",
                    "product": "Ultra", "serial": null}])
        } else {
            json!([])
        },
        "packages": null,
        "network": null,
        "screen_lock": {"source": "dconf", "lock_enabled": !i.is_multiple_of(19),
                        "idle_delay_seconds": if i.is_multiple_of(5) { 900 } else { 300 },
                        "lock_delay_seconds": 0, "locked_keys": []},
        "time_sync": {"synchronized": !i.is_multiple_of(13), "services": [{"name": "systemd-timesyncd", "synchronized": !i.is_multiple_of(13)}]},
        "errors": [],
    });
    serde_json::from_value(value).unwrap_or_else(|_| minimal_facts(hostname))
}

fn minimal_facts(hostname: &str) -> Facts {
    Facts {
        agent_version: env!("CARGO_PKG_VERSION").into(),
        os: None,
        kernel: None,
        hostname: Some(hostname.to_owned()),
        uptime_seconds: None,
        cpu: None,
        memory: None,
        disks: None,
        firewall: None,
        listening: None,
        usb_storage: None,
        packages: None,
        network: None,
        screen_lock: None,
        time_sync: None,
        settings: None,
        errors: Vec::new(),
    }
}

/// A running simulated fleet; dropping it disconnects every device.
pub struct Fleet {
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    churn: Option<JoinHandle<()>>,
    restarts: Arc<std::sync::atomic::AtomicUsize>,
    /// (hostname, state directory) of each device.
    pub devices: Vec<(String, PathBuf)>,
}

impl Fleet {
    /// How many devices run.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// How many times churn has restarted a device's connection.
    pub fn restarts(&self) -> usize {
        self.restarts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The sandbox records of one device (what it was told to do).
    pub fn sandbox_dir(&self, index: usize) -> Option<PathBuf> {
        self.devices.get(index).map(|(_, dir)| dir.join("sandbox"))
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if let Some(churn) = &self.churn {
            churn.abort();
        }
        for task in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            task.abort();
        }
    }
}

/// Creates the profile's sites (existing ones are kept) and one enrollment token per
/// (site, class, criticality, PHI) group.
async fn prepare(client: &Client, options: &SimOptions) -> Result<BTreeMap<(usize, bool), String>, String> {
    for (slug, name) in SITES {
        let request = CreateSiteRequest {
            slug: (*slug).into(),
            name: (*name).into(),
        };
        if let Err(err) = client.create_site(&request).await
            && !err.to_string().contains("already exists")
        {
            return Err(format!("creating site {slug}: {err}"));
        }
    }
    // Devices per model (index into MIX).
    let mut counts: BTreeMap<usize, u32> = BTreeMap::new();
    for i in 0..options.devices {
        *counts.entry(i % MIX.len()).or_default() += 1;
    }
    let mut tokens = BTreeMap::new();
    for (slot, count) in counts {
        let model = MIX[slot];
        let created = client
            .create_enroll_token(&CreateEnrollTokenRequest {
                site: model.site.into(),
                class: model.class.into(),
                criticality: Some(model.criticality.into()),
                phi: model.phi,
                expires: Some("1h".into()),
                uses: Some(count),
                allow_full_wipe: model.class == "mobile",
            })
            .await
            .map_err(|err| format!("creating an enrollment token: {err}"))?;
        tokens.insert((slot, model.phi), created.secret);
    }
    Ok(tokens)
}

/// Enrolls `options.devices` virtual devices and starts them; returns once every device is enrolled
/// and its session started (connections come up in the background).
pub async fn start(options: &SimOptions, progress: &mut (dyn FnMut(&str) + Send)) -> Result<Fleet, String> {
    if options.source_addresses > MAX_SOURCE_ADDRESSES {
        return Err(format!(
            "at most {MAX_SOURCE_ADDRESSES} source addresses fit in 127.20.0.1–127.255.255.254"
        ));
    }
    if options.source_addresses > 0 && !ward_client::is_loopback_url(&options.server) {
        return Err(format!(
            "source addresses are loopback addresses: the server ({}) must be on 127.0.0.0/8 or localhost",
            options.server
        ));
    }
    let trust = Trust::Fingerprint(options.ca_fingerprint.clone());
    let client = Client::new(&options.server, &trust)
        .map_err(|e| e.to_string())?
        .with_token(options.token.clone());
    let tokens = Arc::new(prepare(&client, options).await?);
    progress(&format!("enrolling {} devices", options.devices));
    let queue = Arc::new(tokio::sync::Mutex::new((0..options.devices).collect::<Vec<_>>()));
    let mut workers = Vec::new();
    for _ in 0..options.concurrency.max(1) {
        let (queue, tokens, options) = (queue.clone(), tokens.clone(), options.clone());
        workers.push(tokio::spawn(async move {
            let mut enrolled = Vec::new();
            loop {
                let Some(i) = queue.lock().await.pop() else { break };
                let model = model(i);
                let hostname = format!("{}{}-{i:05}", options.prefix, model.name);
                let state = StateDir(options.dir.join(format!("device-{i:05}")));
                if !state.is_enrolled() {
                    let token = tokens
                        .get(&(i % MIX.len(), model.phi))
                        .ok_or_else(|| "no enrollment token for a model".to_owned())?;
                    ward_agent::enroll::enroll(
                        &options.server,
                        token,
                        Some(&options.ca_fingerprint),
                        &state,
                        &hostname,
                    )
                    .await
                    .map_err(|err| format!("enrolling {hostname}: {err}"))?;
                }
                // Where its sandboxed actions are recorded, made with the rest of its state.
                let sandbox = state.0.join("sandbox");
                std::fs::create_dir_all(&sandbox).map_err(|err| format!("{}: {err}", sandbox.display()))?;
                enrolled.push((i, hostname, state.0));
            }
            Ok::<_, String>(enrolled)
        }));
    }
    let mut devices = Vec::new();
    for worker in workers {
        devices.extend(worker.await.map_err(|e| e.to_string())??);
    }
    devices.sort_by_key(|(i, _, _)| *i);
    progress(&format!("{} devices enrolled; connecting", devices.len()));
    let mut tasks = Vec::new();
    let mut runs = Vec::new();
    // The virtual devices share this machine's processors; a real fleet does not. Checking
    // commands on a pool as large as the machine and carrying them out on one thread keeps one
    // device's quarantine from delaying another device's acknowledgement (see `Background`).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = |name: &str, threads: usize, init: fn()| {
        Background::start(name, threads, init).map_err(|err| format!("starting the {name} threads: {err}"))
    };
    let threads = Threads::Shared {
        checks: started("sim-checks", cores, || {})?,
        executions: started(
            "sim-executions",
            1,
            if options.idle_executions {
                idle_class
            } else {
                lowest_priority
            },
        )?,
    };
    // One memory of checked batch signatures for every virtual device. Whether a signature
    // verifies depends only on the key, the batch's root and size and the signature, the same
    // bytes for every device the batch reaches: a real fleet checks each on each device's own
    // processor, this machine checks it once. Each device still checks its own command against
    // the batch (the inclusion proof from its own fields), its addressee and its expiry.
    let verified_batches = Arc::new(ward_agent::session::VerifiedBatches::default());
    for (i, hostname, state_dir) in &devices {
        let run = RunOptions {
            state_dir: state_dir.clone(),
            facts_root: PathBuf::from("/nonexistent"),
            facts_interval: Duration::from_secs(3600),
            config: AgentConfig {
                managed_dirs: vec![state_dir.join("managed")],
                dns_resolvers: vec![std::net::IpAddr::from([127, 0, 0, 53])],
                allow_full_wipe: true,
                ..AgentConfig::default()
            },
            mode: Mode::Sandbox(state_dir.join("sandbox")),
            synthetic_facts: Some(Arc::new(facts(*i, hostname))),
            local_address: source_address(*i, options.source_addresses),
            threads: threads.clone(),
            verified_batches: verified_batches.clone(),
        };
        runs.push(run.clone());
        tasks.push(spawn_device(run));
    }
    let tasks = Arc::new(std::sync::Mutex::new(tasks));
    let restarts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let churn = (options.churn > 0.0 && !runs.is_empty())
        .then(|| tokio::spawn(churn(tasks.clone(), runs, options.churn, restarts.clone())));
    Ok(Fleet {
        tasks,
        churn,
        restarts,
        devices: devices.into_iter().map(|(_, h, d)| (h, d)).collect(),
    })
}

fn spawn_device(run: RunOptions) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(err) = ward_agent::session::run(run).await {
            eprintln!("ward sim: a device stopped: {err}");
        }
    })
}

/// Churn: `rate` devices per second, picked at random, drop their connection and start again (as
/// a device does after a reboot or losing Wi-Fi), so the server sees reconnects all the time.
async fn churn(
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    runs: Vec<RunOptions>,
    rate: f64,
    restarts: Arc<std::sync::atomic::AtomicUsize>,
) {
    let mut carry = 0.0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        carry += rate;
        let now = carry.floor() as usize;
        carry -= now as f64;
        let mut tasks = tasks.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..now {
            let index = rand::random_range(0..runs.len());
            tasks[index].abort();
            tasks[index] = spawn_device(runs[index].clone());
            restarts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The devices the profile gives per class, for summaries: (class, count).
pub fn summary(devices: usize) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..devices {
        let m = model(i);
        *counts
            .entry(format!("{} ({})", m.class, m.criticality))
            .or_default() += 1;
    }
    counts.into_iter().collect()
}

/// Reads a device's sandbox records (what it was told to do), for tests and demos.
pub fn sandbox_records(dir: &std::path::Path) -> Vec<Value> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str(&t).ok())
        .collect()
}

/// Gives the calling thread the lowest scheduling priority (nice 19): the simulator's executions
/// then only use processor time no virtual device's acknowledgement is waiting for. Best effort: a
/// system that refuses leaves the thread as it was.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: `gettid` has no preconditions; `setpriority` on this thread's own id only changes
    // its scheduling weight and reports failure through its return value, which is ignored.
    unsafe {
        let tid = libc::gettid();
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
    }
}

/// Nice 19, and then the idle scheduling class (`SCHED_IDLE`): the thread runs only when nothing
/// else wants the processor. Nice 19 alone lowers its share, but a server thread woken while it
/// runs still waits out its time slice; an idle-class thread gives way at once, so the simulator
/// does not slow the server it measures (see BENCHMARKS.md). Best effort, like `lowest_priority`.
fn idle_class() {
    lowest_priority();
    #[cfg(target_os = "linux")]
    // SAFETY: `sched_setscheduler` on the calling thread (0) only changes how it is scheduled and
    // reports failure through its return value, which is ignored; `param` outlives the call.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        let _ = libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_take_source_addresses_in_turn_inside_loopback() {
        assert_eq!(source_address(7, 0), None);
        assert_eq!(source_address(0, 4), Some([127, 20, 0, 1].into()));
        assert_eq!(source_address(5, 4), Some([127, 20, 0, 2].into()));
        assert_eq!(source_address(300, 1000), Some([127, 20, 1, 45].into()));
        let last = source_address(MAX_SOURCE_ADDRESSES as usize - 1, MAX_SOURCE_ADDRESSES);
        assert_eq!(last, Some([127, 255, 255, 254].into()));
    }

    #[test]
    fn source_addresses_need_a_server_on_loopback() {
        for url in [
            "https://127.0.0.1:8443",
            "https://127.3.2.1",
            "https://localhost:8443/",
            "https://[::1]:8443",
        ] {
            assert!(ward_client::is_loopback_url(url), "{url}");
        }
        for url in [
            "https://10.0.0.5:8443",
            "https://ward.example.org",
            "https://[2001:db8::1]:8443",
            "https://localhost.example.org",
            "",
        ] {
            assert!(!ward_client::is_loopback_url(url), "{url}");
        }
    }

    /// The simulated facts must decode into the agent's types (a mistake would silently fall
    /// back to the minimal facts and the demo would show nothing to comply with).
    #[test]
    fn simulated_facts_are_complete_and_varied() {
        let facts: Vec<Facts> = (0..40).map(|i| facts(i, "h")).collect();
        assert!(
            facts
                .iter()
                .all(|f| f.os.is_some() && f.screen_lock.is_some() && f.time_sync.is_some())
        );
        assert!(
            facts
                .iter()
                .any(|f| f.usb_storage.as_ref().is_some_and(|u| !u.is_empty()))
        );
        assert!(
            facts
                .iter()
                .any(|f| f.firewall.as_ref().is_some_and(|fw| !fw.active))
        );
    }
}
