//! `ward-agent run`: one long-lived stream to the server over mutual TLS (the framed channel,
//! [`ward_proto::framed`]) — hello, full inventory,
//! heartbeats, inventory diffs when facts change, commands and their results — reconnecting with
//! jittered exponential backoff. Commands run one at a time, in the order received, on a worker
//! beside the stream (heartbeats go on while a wipe runs); the journal in [`crate::commands`]
//! makes redelivery safe.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use ward_proto::agent::agent_channel_client::AgentChannelClient;
use ward_proto::agent::{
    AgentMessage, Heartbeat, Hello, Inventory, InventoryDiff, PROTOCOL_VERSION, ServerMessage, agent_message,
    server_message,
};
use ward_proto::framed::{self, FrameReader};

use crate::actions::Mode;
use crate::commands::{Accepted, Runner};
use crate::config::AgentConfig;
use crate::facts::{self, CollectOptions, Facts};
use crate::identity::StateDir;

pub use ward_domain::command::VerifiedBatches;

/// Largest message accepted from the server (commands are small; a settings bundle fits).
const MAX_SERVER_MESSAGE_BYTES: usize = 64 * 1024;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub state_dir: PathBuf,
    /// Root of the file tree facts are read from (`/` on a real device).
    pub facts_root: PathBuf,
    /// How often facts are collected again and changes sent.
    pub facts_interval: Duration,
    /// Managed directories, quarantine resolvers, offline self-lock, full-wipe opt-in.
    pub config: AgentConfig,
    /// Do actions for real, or record them in a directory (tests, simulator, demos).
    pub mode: Mode,
    /// Report these facts instead of collecting them (the fleet simulator's virtual devices).
    pub synthetic_facts: Option<Arc<Facts>>,
    /// Where commands are checked and carried out.
    pub threads: Threads,
    /// The local address to connect from (`None`: the system picks). The fleet simulator spreads
    /// its devices over loopback addresses: one source address reaches one server port from at
    /// most ~28 000 ephemeral ports.
    pub local_address: Option<std::net::IpAddr>,
    /// Batch signatures already checked. A device keeps its own; the fleet simulator gives all
    /// its virtual devices one (see `ward_domain::command::VerifiedBatches`).
    pub verified_batches: Arc<VerifiedBatches>,
}

/// Where a session checks commands (signature, journal: the path to the acknowledgement) and
/// carries out the ones it accepted. Both block (an fsync, an executor), so neither runs on the
/// async threads.
#[derive(Debug, Clone, Default)]
pub enum Threads {
    /// On tokio's blocking pool: a real device, whose processors are its own.
    #[default]
    Blocking,
    /// On fixed pools shared by every session given them.
    Shared {
        checks: Background,
        executions: Background,
    },
}

/// A fixed pool of threads taking jobs in order from one queue. The fleet simulator gives all its
/// virtual devices one pool for checking commands and one thread for carrying them out: on a real
/// fleet every device has its own processor, so one device carrying out a quarantine never delays
/// another device acknowledging its command; thousands of virtual devices sharing one machine's
/// cores would otherwise split them evenly (and start a blocking thread for hundreds of them at
/// once), and a containment would measure the whole fleet's executions and thread start-ups
/// before the last acknowledgement.
#[derive(Clone)]
pub struct Background {
    queue: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Background")
    }
}

impl Background {
    /// Starts `threads` threads (at least one), each running `init` first (to lower its priority,
    /// say); they end when every clone of the handle has been dropped.
    pub fn start(name: &str, threads: usize, init: fn()) -> std::io::Result<Self> {
        let (queue, work) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let work = Arc::new(std::sync::Mutex::new(work));
        for n in 0..threads.max(1) {
            let work = work.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    init();
                    loop {
                        let job = match work.lock() {
                            Ok(queue) => match queue.recv() {
                                Ok(job) => job,
                                Err(_) => return,
                            },
                            Err(_) => return,
                        };
                        // A panicking job must not take the other devices' work with it (its own
                        // waiter sees the dropped result and reports the failure).
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })?;
        }
        Ok(Self { queue })
    }

    /// Runs `job` on the thread and waits for its result (`None` if the thread has gone).
    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job = Box::new(move || {
            let _ = done.send(job());
        });
        self.queue.send(job).ok()?;
        result.await.ok()
    }
}

impl Threads {
    /// Runs a command's check (signature, journal).
    async fn check<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
        let pool = match self {
            Threads::Blocking => None,
            Threads::Shared { checks, .. } => Some(checks),
        };
        run_on(pool, job).await
    }

    /// Carries out an accepted command.
    async fn execute<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let pool = match self {
            Threads::Blocking => None,
            Threads::Shared { executions, .. } => Some(executions),
        };
        run_on(pool, job).await
    }
}

/// Runs `job` on `pool`, or on tokio's blocking pool without one.
async fn run_on<T: Send + 'static>(
    pool: Option<&Background>,
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    match pool {
        None => tokio::task::spawn_blocking(job)
            .await
            .map_err(|err| err.to_string()),
        Some(pool) => pool
            .run(job)
            .await
            .ok_or_else(|| "the command threads have stopped".to_owned()),
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What sessions share for the life of the process.
struct Shared {
    runner: Arc<Runner>,
    /// One command executes at a time across sessions (a reconnect must not start a second
    /// worker beside one still finishing a wipe).
    executing: Arc<tokio::sync::Mutex<()>>,
    threads: Threads,
}

/// Where the time of the last contact with the server is kept (for offline self-lock).
fn last_contact_path(state: &StateDir) -> PathBuf {
    state.0.join("last-contact")
}

fn read_last_contact(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn write_last_contact(path: &Path, now_ms: i64) {
    let temp = path.with_extension("tmp");
    if std::fs::write(&temp, now_ms.to_string()).is_ok() {
        let _ = std::fs::rename(&temp, path);
    }
}

/// Checks every minute whether the server has been out of reach for too long (offline self-lock).
async fn offline_guard(runner: Arc<Runner>, path: PathBuf) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let now = wall_clock_ms();
        // Never heard from the server since the agent started: count from now, once.
        let last = match read_last_contact(&path) {
            Some(last) => last,
            None => {
                write_last_contact(&path, now);
                now
            }
        };
        let runner = runner.clone();
        if let Ok(Some(what)) = tokio::task::spawn_blocking(move || runner.check_offline(now, last)).await {
            eprintln!("ward-agent: {what}");
        }
    }
}

/// Why a session ended.
#[derive(Debug)]
pub enum Ended {
    /// The server refused this device (revoked, unsupported version): retrying will not help soon.
    Refused { code: String, message: String },
    /// The connection failed or closed: retry.
    Lost(String),
}

/// Runs sessions forever, backing off between them.
pub async fn run(options: RunOptions) -> Result<(), String> {
    let state = StateDir(options.state_dir.clone());
    let (enrollment, ..) = state.load()?;
    let hostname = if enrollment.hostname.is_empty() {
        crate::enroll::local_hostname(&options.facts_root)
    } else {
        enrollment.hostname.clone()
    };
    let runner = Runner::new(
        state.clone(),
        enrollment,
        options.config.clone(),
        options.mode.clone(),
        hostname,
        options.facts_root.clone(),
        options.verified_batches.clone(),
    )?;
    let runner = Arc::new(runner);
    // A quarantine survives restarts: it is re-applied before anything else.
    match runner.restore() {
        Ok(Some(what)) => eprintln!("ward-agent: {what}"),
        Ok(None) => {}
        Err(why) => eprintln!("ward-agent: re-applying the quarantine failed: {why}"),
    }
    // Stops with this future (a simulator aborts its devices' `run`).
    let _guard = AbortOnDrop(tokio::spawn(offline_guard(
        runner.clone(),
        last_contact_path(&state),
    )));
    let shared = Shared {
        runner,
        executing: Arc::new(tokio::sync::Mutex::new(())),
        threads: options.threads.clone(),
    };
    let mut failures: u32 = 0;
    loop {
        let started = std::time::Instant::now();
        let ended = session(&state, &options, &shared).await;
        if started.elapsed() > Duration::from_secs(60) {
            failures = 0;
        }
        let delay = match &ended {
            Ended::Refused { code, message } => {
                eprintln!("ward-agent: refused by the server ({code}): {message}");
                if code == "revoked" || code == "unsupported_version" {
                    Duration::from_secs(600)
                } else {
                    backoff(failures)
                }
            }
            Ended::Lost(why) => {
                eprintln!("ward-agent: connection lost: {why}");
                backoff(failures)
            }
        };
        failures = failures.saturating_add(1);
        tokio::time::sleep(delay).await;
    }
}

/// Exponential backoff from 1 s to 5 min with ±50% jitter, so a fleet does not reconnect in step.
pub fn backoff(failures: u32) -> Duration {
    let base = 1000u64.saturating_mul(1 << failures.min(9)).min(300_000);
    let factor = 500 + u64::from(rand::random::<u16>()) % 1000; // 0.5 .. 1.5
    Duration::from_millis(base * factor / 1000)
}

fn message(body: agent_message::Body) -> AgentMessage {
    AgentMessage { body: Some(body) }
}

/// How often facts are collected: a policy's `report_interval_seconds` when one was applied,
/// else the command line's.
fn facts_interval(options: &RunOptions) -> Duration {
    crate::settings::applied(&options.state_dir)
        .and_then(|applied| applied.settings.report_interval_seconds)
        .map(|seconds| Duration::from_secs(seconds.into()))
        .unwrap_or(options.facts_interval)
}

/// Collects facts off the async runtime (collectors read files and may run commands).
async fn collect_facts(options: &RunOptions) -> Result<Facts, Ended> {
    let mut facts = if let Some(facts) = &options.synthetic_facts {
        facts.as_ref().clone()
    } else {
        let root = options.facts_root.clone();
        let collect = CollectOptions::for_root(&root);
        tokio::task::spawn_blocking(move || facts::collect(&root, &collect))
            .await
            .map_err(|err| Ended::Lost(format!("collecting facts failed: {err}")))?
    };
    let installed: Option<Vec<String>> = facts
        .packages
        .as_ref()
        .map(|packages| packages.items.iter().map(|p| p.name.clone()).collect());
    facts.settings = crate::settings::state(&options.mode, &options.state_dir, installed.as_deref());
    Ok(facts)
}

/// Runs accepted commands one at a time, sending each result on the stream. A result that cannot
/// be sent (the stream is gone) is in the journal and answers the redelivery.
fn spawn_worker(
    shared: &Shared,
    sender: mpsc::Sender<AgentMessage>,
    inventory_now: mpsc::Sender<()>,
) -> mpsc::UnboundedSender<crate::commands::Job> {
    let (jobs, mut queue) = mpsc::unbounded_channel::<crate::commands::Job>();
    let runner = shared.runner.clone();
    let executing = shared.executing.clone();
    let threads = shared.threads.clone();
    tokio::spawn(async move {
        while let Some(job) = queue.recv().await {
            let _turn = executing.lock().await;
            // Lost mode and new settings change what the device reports: send it at once.
            let lost_mode = matches!(
                job.kind(),
                ward_domain::command::CommandKind::LostMode
                    | ward_domain::command::CommandKind::ApplySettings
            );
            let runner = runner.clone();
            let update = match threads
                .execute(move || runner.execute(job, wall_clock_ms()))
                .await
            {
                Ok(update) => update,
                Err(err) => {
                    eprintln!("ward-agent: carrying out a command failed: {err}");
                    continue;
                }
            };
            if lost_mode && update.status == "succeeded" {
                let _ = inventory_now.try_send(());
            }
            if sender
                .send(message(agent_message::Body::CommandUpdate(update)))
                .await
                .is_err()
            {
                // The session ended; keep executing what was accepted (it is journaled).
            }
        }
    });
    jobs
}

/// One connection: returns when it ends.
async fn session(state: &StateDir, options: &RunOptions, shared: &Shared) -> Ended {
    let (enrollment, key, cert, ca) = match state.load() {
        Ok(loaded) => loaded,
        Err(why) => {
            return Ended::Refused {
                code: "not_enrolled".into(),
                message: why,
            };
        }
    };
    let config = match framed::client_config(&ca, &cert, &key) {
        Ok(config) => config,
        Err(why) => return Ended::Lost(why),
    };
    let stream = match framed::connect(
        config,
        &enrollment.server_host,
        enrollment.agent_port,
        options.local_address,
        Duration::from_secs(10),
    )
    .await
    {
        Ok(stream) => stream,
        Err(err) => return Ended::Lost(format!("connecting: {err}")),
    };
    let (read, mut write) = tokio::io::split(stream);
    let mut inbound = FrameReader::new(read, MAX_SERVER_MESSAGE_BYTES);
    let (sender, mut receiver) = mpsc::channel::<AgentMessage>(16);
    // Sends what the session and the command worker queue, in order, whatever has queued up in
    // one write (the acknowledgements of a containment's commands leave together); stops with the
    // session.
    let _writer = AbortOnDrop(tokio::spawn(async move {
        let mut queued = Vec::new();
        while receiver.recv_many(&mut queued, 16).await > 0 {
            if framed::write_messages(&mut write, &queued).await.is_err() {
                return;
            }
            queued.clear();
        }
    }));
    let hostname = match collect_facts(options).await {
        Ok(facts) => facts,
        Err(ended) => return ended,
    };
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").into(),
        hostname: hostname.hostname.clone().unwrap_or_default(),
    };
    if sender
        .send(message(agent_message::Body::Hello(hello)))
        .await
        .is_err()
    {
        return Ended::Lost("stream closed".into());
    }
    let heartbeat = match inbound.message::<ServerMessage>().await {
        Ok(Some(reply)) => match reply.body {
            Some(server_message::Body::Welcome(welcome)) => {
                Duration::from_secs(u64::from(welcome.heartbeat_seconds.max(1)))
            }
            Some(server_message::Body::Refusal(refusal)) => {
                return Ended::Refused {
                    code: refusal.code,
                    message: refusal.message,
                };
            }
            _ => return Ended::Lost("the server did not welcome us".into()),
        },
        Ok(None) => return Ended::Lost("closed before welcome".into()),
        Err(err) => return Ended::Lost(err.to_string()),
    };
    write_last_contact(&last_contact_path(state), wall_clock_ms());
    if crate::identity::needs_renewal(wall_clock_ms(), enrollment.not_after_ms) {
        return match renew(state, options, &enrollment, (&key, &cert, &ca)).await {
            Ok(()) => Ended::Lost("certificate renewed; reconnecting with it".into()),
            Err(why) => Ended::Lost(format!("certificate renewal failed: {why}")),
        };
    }
    let mut last_sent = hostname;
    let full = |facts: &Facts| {
        message(agent_message::Body::Inventory(Inventory {
            facts_json: serde_json::to_string(facts).unwrap_or_default(),
        }))
    };
    if sender.send(full(&last_sent)).await.is_err() {
        return Ended::Lost("stream closed".into());
    }
    let mut heartbeats = tokio::time::interval(heartbeat);
    heartbeats.tick().await;
    let mut interval = facts_interval(options);
    let mut recollect = tokio::time::interval(interval);
    recollect.tick().await;
    let mut seq = 0u64;
    let (inventory_now, mut inventory_wanted) = mpsc::channel::<()>(1);
    let jobs = spawn_worker(shared, sender.clone(), inventory_now);
    loop {
        tokio::select! {
            Some(()) = inventory_wanted.recv() => {
                // Lost mode: where the device is now (addresses, networks) goes out at once.
                last_sent = match collect_facts(options).await {
                    Ok(facts) => facts,
                    Err(ended) => return ended,
                };
                if sender.send(full(&last_sent)).await.is_err() {
                    return Ended::Lost("stream closed".into());
                }
                // Settings may have changed the report interval.
                if facts_interval(options) != interval {
                    interval = facts_interval(options);
                    recollect = tokio::time::interval(interval);
                    recollect.tick().await;
                }
            }
            _ = heartbeats.tick() => {
                write_last_contact(&last_contact_path(state), wall_clock_ms());
                seq += 1;
                if sender.send(message(agent_message::Body::Heartbeat(Heartbeat { seq }))).await.is_err() {
                    return Ended::Lost("stream closed".into());
                }
            }
            _ = recollect.tick() => {
                let now = match collect_facts(options).await {
                    Ok(facts) => facts,
                    Err(ended) => return ended,
                };
                let change = facts::diff(&last_sent, &now);
                if !change.is_empty() {
                    let diff_json = serde_json::to_string(&change).unwrap_or_default();
                    if sender.send(message(agent_message::Body::InventoryDiff(InventoryDiff { diff_json }))).await.is_err() {
                        return Ended::Lost("stream closed".into());
                    }
                    last_sent = now;
                }
            }
            reply = inbound.message::<ServerMessage>() => match reply {
                Ok(Some(reply)) => match reply.body {
                    Some(server_message::Body::Refusal(refusal)) => {
                        return Ended::Refused { code: refusal.code, message: refusal.message };
                    }
                    Some(server_message::Body::Command(command)) => {
                        let runner = shared.runner.clone();
                        let now = wall_clock_ms();
                        let accepted = match shared.threads.check(move || runner.accept(&command, now)).await {
                            Ok(accepted) => accepted,
                            Err(err) => return Ended::Lost(format!("checking a command failed: {err}")),
                        };
                        match accepted {
                            Accepted::Answer(updates) => {
                                for update in updates {
                                    if sender.send(message(agent_message::Body::CommandUpdate(update))).await.is_err() {
                                        return Ended::Lost("stream closed".into());
                                    }
                                }
                            }
                            Accepted::Run(job, ack) => {
                                if sender.send(message(agent_message::Body::CommandUpdate(ack))).await.is_err() {
                                    return Ended::Lost("stream closed".into());
                                }
                                let _ = jobs.send(job);
                            }
                        }
                    }
                    Some(server_message::Body::RequestInventory(_)) => {
                        last_sent = match collect_facts(options).await {
                            Ok(facts) => facts,
                            Err(ended) => return ended,
                        };
                        if sender.send(full(&last_sent)).await.is_err() {
                            return Ended::Lost("stream closed".into());
                        }
                    }
                    _ => {}
                },
                Ok(None) => return Ended::Lost("the server closed the stream".into()),
                Err(err) => return Ended::Lost(err.to_string()),
            }
        }
    }
}

/// The system time; the agent binary is glue and the one place it is read.
#[allow(clippy::disallowed_methods, reason = "certificate expiry is wall-clock time")]
fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Rotates the device key: a new key pair and CSR, signed by the server over the agent port's
/// gRPC service (a unary call, made only for this), authenticated with the current certificate.
async fn renew(
    state: &StateDir,
    options: &RunOptions,
    enrollment: &crate::identity::Enrollment,
    (key_pem, cert_pem, ca): (&str, &str, &str),
) -> Result<(), String> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(cert_pem, key_pem))
        .domain_name(enrollment.server_host.clone());
    let url = format!(
        "https://{}:{}",
        host_for_url(&enrollment.server_host),
        enrollment.agent_port
    );
    let channel = Channel::from_shared(url)
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(10))
        .local_address(options.local_address)
        .connect()
        .await
        .map_err(|err| format!("connecting: {err}"))?;
    let mut client = AgentChannelClient::new(channel).max_decoding_message_size(64 * 1024);
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|params| params.serialize_request(&key))
        .and_then(|request| request.pem())
        .map_err(|e| e.to_string())?;
    let response = client
        .renew(ward_proto::agent::RenewRequest { csr_pem: csr })
        .await
        .map_err(|status| status.message().to_owned())?
        .into_inner();
    let mut renewed = enrollment.clone();
    renewed.not_after_ms = response.not_after_ms;
    state
        .save_renewal(&renewed, &key.serialize_pem(), &response.certificate_pem)
        .map_err(|e| e.to_string())
}

/// IPv6 literals need brackets in URLs.
fn host_for_url(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let first = backoff(0);
        assert!(first >= Duration::from_millis(500) && first <= Duration::from_millis(1500));
        let late = backoff(30);
        assert!(late <= Duration::from_millis(450_000) && late >= Duration::from_millis(150_000));
        assert_eq!(host_for_url("::1"), "[::1]");
    }
}
