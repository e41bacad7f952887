//! `ward bench enroll` and `ward bench ingest`: enrollment rate through the real HTTP path and
//! inventory ingest rate through the real agent channel, against an in-process server on a
//! temporary SQLite database. Medians of several runs.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rcgen::{CertificateParams, KeyPair};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use ward_proto::agent::agent_channel_client::AgentChannelClient;
use ward_proto::agent::{AgentMessage, Heartbeat, Hello, Inventory, ServerMessage, agent_message};
use ward_proto::fragments::fragmenting;
use ward_proto::framed::{self, FrameReader};

use ward_core::config::TlsMode;
use ward_server::Config;

/// `ward bench enroll`.
#[derive(Debug, Clone, clap::Args)]
pub struct EnrollArgs {
    /// Devices enrolled per run.
    #[arg(long, default_value_t = 2000)]
    pub devices: usize,
    /// Concurrent enrollments in flight.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// `ward bench ingest`.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Connected devices (one stream each).
    #[arg(long, default_value_t = 50)]
    pub devices: usize,
    /// Full inventory reports each device sends.
    #[arg(long, default_value_t = 40)]
    pub reports: usize,
    /// Connect over the gRPC transport (ALPN h2) instead of the framed one agents use.
    #[arg(long)]
    pub grpc: bool,
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// An in-process server with a logged-in admin and one site.
pub(crate) struct Bench {
    pub(crate) server: Option<ward_server::Server>,
    pub(crate) url: String,
    pub(crate) http: reqwest::Client,
    pub(crate) token: String,
    _dir: tempfile::TempDir,
}

impl Bench {
    pub(crate) async fn start() -> anyhow::Result<Bench> {
        let dir = tempfile::tempdir()?;
        let mut config = Config::for_data_dir(dir.path());
        // Plain HTTP on loopback: the benchmark measures the server, not the client's TLS.
        config.tls = TlsMode::Plaintext;
        let server = ward_server::start(config).await?;
        let (_, password) = server.initial_admin.clone().context("no initial admin")?;
        let url = server.url();
        let bench = Bench::login(Some(server), url, &password, dir).await?;
        bench
            .post("/sites", json!({"slug": "bench", "name": "Bench"}))
            .await?;
        Ok(bench)
    }

    /// Logs in as the first admin and changes its one-time password.
    async fn login(
        server: Option<ward_server::Server>,
        url: String,
        password: &str,
        dir: tempfile::TempDir,
    ) -> anyhow::Result<Bench> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let mut bench = Bench {
            server,
            url,
            http,
            token: String::new(),
            _dir: dir,
        };
        let login = bench
            .post(
                "/auth/cli-login",
                json!({"username": "admin", "password": password}),
            )
            .await?;
        bench.token = login["secret"].as_str().context("no token")?.to_owned();
        bench
            .post(
                "/auth/password",
                json!({"current_password": password, "new_password": "benchmark admin 1"}),
            )
            .await?;
        Ok(bench)
    }

    pub(crate) fn server(&self) -> anyhow::Result<&ward_server::Server> {
        self.server.as_ref().context("no in-process server")
    }

    pub(crate) async fn shutdown(self) {
        if let Some(server) = self.server {
            server.shutdown().await;
        }
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("{path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub(crate) async fn enroll_token(&self, uses: usize) -> anyhow::Result<String> {
        let created = self
            .post(
                "/enroll-tokens",
                json!({"site": "bench", "class": "workstation", "uses": uses, "expires": "1h"}),
            )
            .await?;
        Ok(created["secret"].as_str().context("no secret")?.to_owned())
    }
}

fn csr(key: &KeyPair) -> anyhow::Result<String> {
    Ok(CertificateParams::new(Vec::<String>::new())?
        .serialize_request(key)?
        .pem()?)
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Enrolls `count` devices with `concurrency` requests in flight; returns (elapsed, certificates).
pub(crate) async fn enroll_many(
    bench: &Bench,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<(Duration, Vec<(String, String)>)> {
    let token = bench.enroll_token(count).await?;
    // Keys and CSRs are the devices' work, not the server's: made before the clock starts.
    let keys: Vec<KeyPair> = (0..count)
        .map(|_| KeyPair::generate())
        .collect::<Result<_, _>>()?;
    let requests: Vec<(usize, Value)> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            Ok((
                i,
                json!({"token": token, "csr_pem": csr(key)?, "hostname": format!("bench-{i}")}),
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let url = format!("{}/api/v1/enroll", bench.url);
    let (sender, receiver) = async_channel_pair(requests);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (http, url, receiver) = (bench.http.clone(), url.clone(), receiver.clone());
        workers.push(tokio::spawn(async move {
            let mut certificates = Vec::new();
            loop {
                let next = receiver.lock().await.recv().await;
                let Some((index, body)) = next else { break };
                let response = http.post(&url).json(&body).send().await?;
                if !response.status().is_success() {
                    bail!("enroll: {}", response.status());
                }
                let reply: Value = response.json().await?;
                certificates.push((
                    index,
                    reply["certificate_pem"].as_str().unwrap_or_default().to_owned(),
                ));
            }
            Ok::<_, anyhow::Error>(certificates)
        }));
    }
    drop(sender);
    let mut certificates = Vec::new();
    for worker in workers {
        certificates.extend(worker.await??);
    }
    let elapsed = started.elapsed();
    // Workers finish in any order: put each certificate back beside its key.
    certificates.sort_by_key(|(index, _)| *index);
    let pairs = keys
        .iter()
        .map(|k| k.serialize_pem())
        .zip(certificates.into_iter().map(|(_, cert)| cert))
        .collect();
    Ok((elapsed, pairs))
}

type Shared<T> = std::sync::Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<T>>>;

/// A work queue filled up front.
fn async_channel_pair<T>(items: Vec<T>) -> (mpsc::UnboundedSender<T>, Shared<T>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    for item in items {
        let _ = sender.send(item);
    }
    (sender, std::sync::Arc::new(tokio::sync::Mutex::new(receiver)))
}

/// Enrollment rate, devices per second (median).
pub async fn enroll(args: &EnrollArgs, progress: &mut dyn FnMut(&str)) -> anyhow::Result<f64> {
    let mut rates = Vec::new();
    for run in 0..args.runs.max(1) {
        let bench = Bench::start().await?;
        let (elapsed, _) = enroll_many(&bench, args.devices, args.concurrency).await?;
        let rate = args.devices as f64 / elapsed.as_secs_f64();
        progress(&format!(
            "run {}/{}: {} devices in {:.2?} = {rate:.0} devices/s",
            run + 1,
            args.runs,
            args.devices,
            elapsed
        ));
        rates.push(rate);
        bench.shutdown().await;
    }
    Ok(median(rates))
}

/// A realistic full inventory: the shape the agent sends, with 500 packages (~50 KB).
fn sample_facts(report: usize) -> String {
    let packages: Vec<Value> = (0..500)
        .map(|i| json!({"name": format!("package-{i}"), "version": format!("1.{i}.0-1")}))
        .collect();
    json!({
        "agent_version": "0.1.0",
        "hostname": "bench-host",
        "os": {"id": "debian", "version_id": "12", "pretty_name": "Debian GNU/Linux 12 (bookworm)"},
        "kernel": {"release": "6.1.0-18-amd64"},
        "memory": {"total_bytes": 16_000_000_000u64, "available_bytes": 8_000_000_000u64},
        "listening": [{"proto": "tcp", "address": "0.0.0.0", "port": 22}],
        "packages": {"manager": "dpkg", "items": packages},
        "report": report,
    })
    .to_string()
}

/// Ingest rate, full reports per second (median).
pub async fn ingest(args: &IngestArgs, progress: &mut dyn FnMut(&str)) -> anyhow::Result<f64> {
    let mut rates = Vec::new();
    for run in 0..args.runs.max(1) {
        let bench = Bench::start().await?;
        let (_, identities) = enroll_many(&bench, args.devices, 8).await?;
        let reports: Vec<String> = (0..args.reports).map(sample_facts).collect();
        let server = bench.server()?;
        let mut agents = Vec::new();
        for (key, cert) in &identities {
            let agent = open_agent(
                server.agent_addr,
                &server.ca_cert_pem,
                (key, cert),
                args.grpc,
                args.reports + 2,
            )
            .await?;
            agents.push(agent);
        }
        let senders: Vec<_> = agents.iter().map(|agent| agent.sender.clone()).collect();
        let started = Instant::now();
        for sender in &senders {
            for report in &reports {
                sender
                    .send(AgentMessage {
                        body: Some(agent_message::Body::Inventory(Inventory {
                            facts_json: report.clone(),
                        })),
                    })
                    .await?;
            }
        }
        // Done when every device's stored facts carry the last report's number.
        let last = (args.reports - 1) as u64;
        loop {
            let devices = server.state.store.list_devices(false).await?;
            let finished = devices
                .iter()
                .filter(|d| {
                    serde_json::from_str::<Value>(&d.facts)
                        .ok()
                        .and_then(|f| f["report"].as_u64())
                        == Some(last)
                })
                .count();
            if finished == args.devices {
                break;
            }
            if started.elapsed() > Duration::from_secs(600) {
                bail!(
                    "ingest did not finish in 10 minutes ({finished}/{} devices)",
                    args.devices
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        let total = args.devices * args.reports;
        let rate = total as f64 / elapsed.as_secs_f64();
        progress(&format!(
            "run {}/{}: {total} reports in {elapsed:.2?} = {rate:.0} reports/s",
            run + 1,
            args.runs
        ));
        rates.push(rate);
        drop(senders);
        drop(agents);
        bench.shutdown().await;
    }
    Ok(median(rates))
}

/// `ward bench connections`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionsArgs {
    /// Idle agent connections to open.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Seconds to wait after enrolling, before opening the connections: time to attach a heap
    /// profiler to the server (its process id is printed), e.g. `heaptrack --pid PID`.
    #[arg(long, default_value_t = 0)]
    pub pause_before_connect: u64,
    /// Send only hello, not the full inventory (500 packages) an agent sends on connecting.
    #[arg(long)]
    pub hello_only: bool,
    /// Connect over the gRPC transport (ALPN h2) instead of the framed one agents use.
    #[arg(long)]
    pub grpc: bool,
}

/// A benchmark's agent connection, welcomed: what is sent on `sender` goes out in order; what the
/// server sends arrives on `incoming` (dropped when nobody takes it). Dropping it closes the
/// connection.
pub(crate) struct BenchAgent {
    pub sender: mpsc::Sender<AgentMessage>,
    pub incoming: mpsc::Receiver<ServerMessage>,
    _tasks: Vec<AbortOnDrop>,
    _grpc: Option<Box<dyn std::any::Any + Send>>,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn hello() -> AgentMessage {
    AgentMessage {
        body: Some(agent_message::Body::Hello(Hello {
            protocol_version: 1,
            agent_version: "bench".into(),
            hostname: "b".into(),
        })),
    }
}

/// Connects one enrolled device to the agent port at `agent` as an agent does (`grpc`: over the
/// gRPC transport), says hello and waits for the welcome. `queue` messages can wait to be sent.
pub(crate) async fn open_agent(
    agent: std::net::SocketAddr,
    ca_pem: &str,
    (key, cert): (&str, &str),
    grpc: bool,
    queue: usize,
) -> anyhow::Result<BenchAgent> {
    let (sender, mut receiver) = mpsc::channel(queue.max(2));
    let (deliver, incoming) = mpsc::channel(64);
    sender.send(hello()).await?;
    if grpc {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .identity(Identity::from_pem(cert, key))
            .domain_name("localhost");
        let channel = Channel::from_shared(format!("https://{agent}"))?
            .tls_config(tls)?
            .connect()
            .await?;
        let mut client = AgentChannelClient::new(channel).max_encoding_message_size(8 * 1024 * 1024);
        let mut stream = client
            .session(fragmenting(ReceiverStream::new(receiver)))
            .await?
            .into_inner();
        stream.message().await?.context("closed before welcome")?;
        let reading = tokio::spawn(async move {
            while let Ok(Some(message)) = stream.message().await {
                let _ = deliver.try_send(message);
            }
        });
        return Ok(BenchAgent {
            sender,
            incoming,
            _tasks: vec![AbortOnDrop(reading)],
            _grpc: Some(Box::new(client)),
        });
    }
    let config = framed::client_config(ca_pem, cert, key).map_err(anyhow::Error::msg)?;
    let stream = framed::connect_to(config, agent, "localhost", None).await?;
    let (read, mut write) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        while let Some(message) = receiver.recv().await {
            if framed::write_message(&mut write, &message).await.is_err() {
                return;
            }
        }
    });
    let mut reader = FrameReader::new(read, 64 * 1024);
    reader
        .message::<ServerMessage>()
        .await?
        .context("closed before welcome")?;
    let reading = tokio::spawn(async move {
        while let Ok(Some(message)) = reader.message::<ServerMessage>().await {
            let _ = deliver.try_send(message);
        }
    });
    Ok(BenchAgent {
        sender,
        incoming,
        _tasks: vec![AbortOnDrop(writer), AbortOnDrop(reading)],
        _grpc: None,
    })
}

/// The resident memory of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    let kib: u64 = line.split_whitespace().nth(1).context("bad VmRSS")?.parse()?;
    Ok(kib * 1024)
}

/// Processor time process `pid` has used so far (all its threads, user and system), in
/// milliseconds; `/proc` counts it in ticks of 10 ms.
pub fn cpu_ms(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("no command name")?
        .1
        .split_whitespace()
        .collect();
    let ticks = |n: usize| -> anyhow::Result<u64> { Ok(fields.get(n).context("short stat")?.parse()?) };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Ok((ticks(11)? + ticks(12)?) * 10)
}

/// Server memory per idle connected agent, in bytes: the real `ward server` runs as a child
/// process so only its memory is counted.
pub async fn connections(args: &ConnectionsArgs, progress: &mut dyn FnMut(&str)) -> anyhow::Result<f64> {
    use std::io::BufRead;
    let dir = tempfile::tempdir()?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--agent-listen",
            "127.0.0.1:0",
            "--lwm2m-listen",
            "off",
            "--lwm2m-dtls-listen",
            "off",
            "--insecure-http",
            "--data-dir",
        ])
        .arg(dir.path().join("server"))
        .env("WARD_LOG", "error")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let stderr = child.stderr.take().context("no stderr")?;
    let (url, agent, password) = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stderr).lines();
        let (mut url, mut agent, mut password) = (String::new(), String::new(), String::new());
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("Ward server listening on ") {
                url = rest.trim().to_owned();
            } else if let Some(rest) = line.strip_prefix("Agent channel (mutual TLS) on ") {
                agent = rest.trim().to_owned();
            } else if let Some(rest) = line.trim().strip_prefix("password: ") {
                password = rest.trim().to_owned();
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        (url, agent, password)
    })
    .await?;
    let result = async {
        let bench = Bench::login(None, url, &password, tempfile::tempdir()?).await?;
        bench
            .post("/sites", json!({"slug": "bench", "name": "Bench"}))
            .await?;
        progress(&format!("enrolling {} devices", args.connections));
        let (_, identities) = enroll_many(&bench, args.connections, 16).await?;
        let ca_pem = bench
            .http
            .get(format!("{}/api/v1/ca.pem", bench.url))
            .send()
            .await?
            .text()
            .await?;
        let agent: std::net::SocketAddr = agent.parse().context("the server's agent address")?;
        if args.pause_before_connect > 0 {
            progress(&format!(
                "server process {pid}: waiting {} s before connecting",
                args.pause_before_connect
            ));
            tokio::time::sleep(Duration::from_secs(args.pause_before_connect)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = rss_bytes(pid)?;
        progress(&format!(
            "server RSS before: {} KiB; opening {} connections",
            before / 1024,
            args.connections
        ));
        // The same inventory for every device, built once.
        let inventory = (!args.hello_only).then(|| sample_facts(0));
        let mut open = Vec::with_capacity(identities.len());
        for chunk in identities.chunks(200) {
            let mut tasks = tokio::task::JoinSet::new();
            for (key, cert) in chunk {
                let (key, cert) = (key.clone(), cert.clone());
                let (ca_pem, grpc) = (ca_pem.clone(), args.grpc);
                let inventory = inventory.clone();
                tasks.spawn(async move {
                    let connection = open_agent(agent, &ca_pem, (&key, &cert), grpc, 2).await?;
                    let sender = connection.sender.clone();
                    if let Some(facts_json) = inventory {
                        sender
                            .send(AgentMessage {
                                body: Some(agent_message::Body::Inventory(Inventory { facts_json })),
                            })
                            .await?;
                    }
                    // Heartbeats, as an agent sends them (the server drops a session silent for
                    // three heartbeat intervals, and opening 10 000 takes a while).
                    let beating = sender.clone();
                    tokio::spawn(async move {
                        for seq in 1.. {
                            tokio::time::sleep(Duration::from_secs(20)).await;
                            let beat = AgentMessage {
                                body: Some(agent_message::Body::Heartbeat(Heartbeat { seq })),
                            };
                            if beating.send(beat).await.is_err() {
                                break;
                            }
                        }
                    });
                    Ok::<_, anyhow::Error>(connection)
                });
            }
            while let Some(joined) = tasks.join_next().await {
                open.push(joined??);
            }
        }
        // With inventories: the server keeps a device's parsed facts for a while after its last
        // message, and jemalloc returns freed pages on a 10 s decay; an idle agent is measured
        // once both have passed.
        let settle = if args.hello_only { 2 } else { 25 };
        progress(&format!(
            "{} connections open; settling for {settle} s",
            open.len()
        ));
        tokio::time::sleep(Duration::from_secs(settle)).await;
        let after = rss_bytes(pid)?;
        let per = after.saturating_sub(before) as f64 / open.len() as f64;
        progress(&format!(
            "server RSS after: {} KiB with {} idle agents",
            after / 1024,
            open.len()
        ));
        Ok::<_, anyhow::Error>(per)
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}
