//! Facts about a Linux machine, read from files under a root directory (normally `/`).
//!
//! Each collector is bounded and fails soft: reads are capped in bytes ([`MAX_FILE_BYTES`] and
//! friends), lists in length, helper commands in time ([`CollectOptions::command_timeout`]) and
//! output, strings are cleaned of control characters and cut, and an error in one collector is
//! recorded in [`Facts::errors`] while the others still run. Collectors take the root as a
//! parameter so tests feed them a fixture tree; commands run only when the root is `/`.
//!
//! Time is deliberately absent: the caller knows when it collected and says so on the wire.

mod command;
mod diff;
mod disks;
mod firewall;
mod listening;
mod network;
mod packages;
mod read;
mod screen_lock;
mod system;
mod time_sync;
mod usb;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use diff::{ApplyError, FactsDiff, apply, diff, flatten};
pub use disks::{CryptMapping, Disk, Disks, Partition, RootFilesystem};
pub use firewall::{Firewall, FirewallBackend};
pub use listening::{ListeningSocket, MAX_LISTENING};
pub use network::{Interface, MAX_ADDRESSES_PER_INTERFACE, MAX_INTERFACES, Network};
pub use packages::{MAX_DPKG_STATUS_BYTES, Package, Packages};
pub use read::{MAX_DIR_ENTRIES, MAX_FILE_BYTES, MAX_NAME_BYTES, MAX_TEXT_BYTES, MAX_VALUE_BYTES};
pub use screen_lock::ScreenLock;
pub use system::{Cpu, Kernel, Memory, OsRelease};
pub use time_sync::{TimeSync, TimeSyncService};
pub use usb::{MAX_USB_STORAGE, UsbStorageDevice};

/// Default [`CollectOptions::max_packages`].
pub const DEFAULT_MAX_PACKAGES: usize = 10_000;
/// Most entries kept in [`Facts::errors`]; a broken machine should not produce a huge report.
pub const MAX_ERRORS: usize = 64;

/// Everything collected about one machine. A section is `None` when its collector failed (the
/// reason is in `errors`) or, for `screen_lock` and `time_sync`, when nothing was found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// The version of the agent that collected these facts.
    pub agent_version: String,
    pub os: Option<OsRelease>,
    pub kernel: Option<Kernel>,
    pub hostname: Option<String>,
    pub uptime_seconds: Option<u64>,
    pub cpu: Option<Cpu>,
    pub memory: Option<Memory>,
    pub disks: Option<Disks>,
    pub firewall: Option<Firewall>,
    /// Sorted by port, protocol, address.
    pub listening: Option<Vec<ListeningSocket>>,
    pub usb_storage: Option<Vec<UsbStorageDevice>>,
    pub packages: Option<Packages>,
    pub network: Option<Network>,
    pub screen_lock: Option<ScreenLock>,
    pub time_sync: Option<TimeSync>,
    /// The settings policies pushed and whether they still hold (filled in by the session, which
    /// knows the state directory; absent until settings were applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<crate::settings::SettingsState>,
    /// What went wrong, per collector, in collection order.
    pub errors: Vec<CollectorError>,
}

/// One collector's failure, or a problem it worked around (a malformed line it skipped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectorError {
    /// The collector, named as its section in [`Facts`] (`os`, `listening`, ...).
    pub collector: String,
    pub error: String,
}

/// How to collect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectOptions {
    /// Whether helper commands (`nft`, `ip`, `rpm`, `chronyc`) may be run. They describe the
    /// running system, so they are never run when collecting from a root other than `/`,
    /// whatever this says.
    pub run_commands: bool,
    /// How long one helper command may run before it is killed. Default 2 s.
    pub command_timeout: Duration,
    /// How long `rpm -qa` may run; listing a large rpm database takes seconds. Default 30 s.
    pub package_timeout: Duration,
    /// Most packages listed; more are counted and flagged `truncated`. Default 10 000.
    pub max_packages: usize,
}

impl CollectOptions {
    /// The defaults for collecting from `root`: commands only when it is `/`.
    pub fn for_root(root: &Path) -> Self {
        Self {
            run_commands: is_live(root),
            ..Self::default()
        }
    }
}

impl Default for CollectOptions {
    fn default() -> Self {
        Self {
            run_commands: true,
            command_timeout: Duration::from_secs(2),
            package_timeout: Duration::from_secs(30),
            max_packages: DEFAULT_MAX_PACKAGES,
        }
    }
}

/// What a collector failed on; rendered into [`CollectorError::error`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum CollectError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a regular file")]
    NotRegular { path: String },
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Missing(String),
    #[error("{program}: {reason}")]
    Command { program: String, reason: String },
}

/// What a collector sees: where to read, how, and where to note soft errors.
pub(crate) struct Context<'a> {
    root: &'a Path,
    options: &'a CollectOptions,
    /// Collecting the running system (root `/` and commands allowed).
    live: bool,
    errors: Vec<CollectorError>,
}

impl Context<'_> {
    /// Notes a problem the collector worked around; its result still counts.
    fn soft_error(&mut self, collector: &str, error: String) {
        if self.errors.len() < MAX_ERRORS {
            // Error text can quote device data (a malformed value), so it is cleaned like any.
            let error = read::clean(&error, read::MAX_TEXT_BYTES);
            self.errors.push(CollectorError {
                collector: collector.to_owned(),
                error,
            });
        }
    }

    /// Runs one collector, turning its error (or a panic, which would be a bug) into an entry in
    /// `errors` so the other collectors still run.
    fn run<T>(
        &mut self,
        collector: &str,
        collect: impl FnOnce(&mut Self) -> Result<T, CollectError>,
    ) -> Option<T> {
        match catch_unwind(AssertUnwindSafe(|| collect(self))) {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                self.soft_error(collector, error.to_string());
                None
            }
            Err(_) => {
                self.soft_error(collector, "collector panicked".to_owned());
                None
            }
        }
    }
}

fn is_live(root: &Path) -> bool {
    root == Path::new("/")
}

/// Collects every fact about the machine whose filesystem is at `root`.
pub fn collect(root: &Path, options: &CollectOptions) -> Facts {
    let mut cx = Context {
        root,
        options,
        live: is_live(root) && options.run_commands,
        errors: Vec::new(),
    };
    let os = cx.run("os", |cx| system::os_release(cx.root));
    let kernel = cx.run("kernel", |cx| system::kernel(cx.root));
    let hostname = cx.run("hostname", |cx| system::hostname(cx.root));
    let uptime_seconds = cx.run("uptime_seconds", |cx| system::uptime_seconds(cx.root));
    let cpu = cx.run("cpu", |cx| system::cpu(cx.root));
    let memory = cx.run("memory", |cx| system::memory(cx.root));
    let disks = cx.run("disks", |cx| disks::disks(cx.root));
    let firewall = cx.run("firewall", firewall::firewall);
    let listening = cx.run("listening", listening::listening);
    let usb_storage = cx.run("usb_storage", |cx| usb::usb_storage(cx.root));
    let packages = cx.run("packages", packages::packages);
    let network = cx.run("network", network::network);
    let screen_lock = cx
        .run("screen_lock", |cx| screen_lock::screen_lock(cx.root))
        .flatten();
    let time_sync = cx.run("time_sync", time_sync::time_sync).flatten();
    Facts {
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        os,
        kernel,
        hostname,
        uptime_seconds,
        cpu,
        memory,
        disks,
        firewall,
        listening,
        usb_storage,
        packages,
        network,
        screen_lock,
        time_sync,
        settings: None,
        errors: cx.errors,
    }
}
