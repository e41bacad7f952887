//! `ward bench contain`: containment fan-out. A real server (in-process, SQLite, TLS) and N
//! simulated devices (real agents, sandboxed actions) in one process; one incident over all of
//! them; the clock runs from "contain" to every device's acknowledgement. Reports the server's
//! time-to-contain percentiles and how many commands were lost (never acknowledged).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use ward_client::{Client, Trust};
use ward_proto::{ChangePasswordRequest, DeclareIncidentRequest, IncidentActionRequest, LoginRequest};
use ward_server::Config;

/// `ward bench contain`.
#[derive(Debug, Clone, clap::Args)]
pub struct ContainArgs {
    /// Simulated devices (raise `ulimit -n` above 2.5 × this first)
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Seconds to wait for every acknowledgement before counting the rest as lost
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
    /// Run the server in this process instead of as a child `ward server` (at most ~9 000
    /// devices then: the server's and the devices' sockets share one open-file limit)
    #[arg(long)]
    pub in_process: bool,
}

enum Served {
    InProcess(Box<ward_server::Server>),
    Child(std::process::Child),
}

/// Starts `ward server` as a child process on free loopback ports; returns it with its URL, CA
/// fingerprint and the admin's one-time password.
pub(crate) async fn spawn_server(
    data_dir: &std::path::Path,
    lwm2m_listen: &str,
    lwm2m_dtls_listen: &str,
) -> anyhow::Result<(std::process::Child, String, String, String)> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--agent-listen",
            "127.0.0.1:0",
            "--lwm2m-listen",
            lwm2m_listen,
            "--lwm2m-dtls-listen",
            lwm2m_dtls_listen,
            "--data-dir",
        ])
        .arg(data_dir)
        .env("WARD_LOG", "error,ward_service::incident_steps=info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("no stderr")?;
    let (url, fingerprint, password) = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stderr).lines();
        let (mut url, mut fingerprint, mut password) = (String::new(), String::new(), String::new());
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("Ward server listening on ") {
                url = rest.trim().to_owned();
            } else if let Some(rest) = line.strip_prefix("CA fingerprint (SHA-256): ") {
                fingerprint = rest.trim().to_owned();
            } else if let Some(rest) = line.trim().strip_prefix("password: ") {
                password = rest.trim().to_owned();
                break;
            }
        }
        // Errors, and the containment's timing line, pass through.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("server: {line}");
            }
        });
        (url, fingerprint, password)
    })
    .await?;
    if password.is_empty() {
        bail!("the server did not start");
    }
    Ok((child, url, fingerprint, password))
}

/// Replaces the first admin's one-time password and returns an API token for the admin.
pub(crate) async fn admin_token(client: &Client, one_time: String) -> anyhow::Result<String> {
    let login = |password: String| LoginRequest {
        username: "admin".into(),
        password,
        totp_code: None,
        recovery_code: None,
        token_name: None,
        expires_in_days: None,
    };
    let first = client.cli_login(&login(one_time.clone())).await?;
    client
        .clone()
        .with_token(first.secret)
        .change_password(&ChangePasswordRequest {
            current_password: one_time,
            new_password: "benchmark admin 1".into(),
        })
        .await?;
    Ok(client.cli_login(&login("benchmark admin 1".into())).await?.secret)
}

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ContainResult {
    pub devices: usize,
    pub commands: u64,
    pub acknowledged: u64,
    pub lost: u64,
    pub p50_ms: i64,
    pub p95_ms: i64,
    pub p99_ms: i64,
    pub max_ms: i64,
    /// Wall time from the contain request to the last acknowledgement, as the client saw it.
    pub wall_ms: u128,
    /// Processor time the server used from the contain request to its answer (the fan-out),
    /// per command, in microseconds; `None` when the server runs in this process.
    pub server_cpu_us_per_command: Option<u64>,
    /// Processor time the simulated devices (this process) used in the same window, per command:
    /// the machine's cores are shared, so these two say where the time went whatever else the
    /// machine was doing.
    pub sim_cpu_us_per_command: Option<u64>,
}

pub async fn contain(
    args: &ContainArgs,
    progress: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<ContainResult> {
    // The simulated devices' journals go to memory when it can: on a real fleet every device
    // fsyncs its own disk in parallel; here a thousand would queue on this machine's one disk and
    // measure the disk, not Ward.
    let dir = tempfile::tempdir()?;
    let (server, url, fingerprint, ca_pem, one_time) = if args.in_process {
        let mut config = Config::for_data_dir(&dir.path().join("server"));
        config.heartbeat_ms = 30_000;
        let server = ward_server::start(config).await?;
        let (_, one_time) = server.initial_admin.clone().context("no initial admin")?;
        let (url, fingerprint, ca) = (
            server.url(),
            server.ca_fingerprint.clone(),
            server.ca_cert_pem.clone(),
        );
        (
            Served::InProcess(Box::new(server)),
            url,
            fingerprint,
            ca,
            one_time,
        )
    } else {
        let (child, url, fingerprint, one_time) =
            spawn_server(&dir.path().join("server"), "off", "off").await?;
        let ca =
            std::fs::read_to_string(dir.path().join("server/ca.crt")).context("reading the server's CA")?;
        (Served::Child(child), url, fingerprint, ca, one_time)
    };
    // The simulated devices' journals go to memory when it can: on a real fleet every device
    // fsyncs its own disk in parallel; here thousands would queue on this machine's one disk and
    // measure the disk, not Ward. The server's database stays on disk.
    let fleet_dir = match std::path::Path::new("/dev/shm") {
        shm if shm.is_dir() => tempfile::tempdir_in(shm)?,
        _ => tempfile::tempdir()?,
    };
    let client = Client::new(&url, &Trust::CaPem(ca_pem))?;
    let token = admin_token(&client, one_time).await?;
    let admin = client.with_token(token.clone());
    let options = ward_sim::SimOptions {
        server: url,
        token,
        ca_fingerprint: fingerprint,
        devices: args.devices,
        dir: fleet_dir.path().join("fleet"),
        concurrency: 16,
        prefix: String::new(),
        churn: 0.0,
        // Beyond ~28 000 devices one source address runs out of ports.
        source_addresses: args.devices.div_ceil(20_000) as u32,
        // The devices' actions (after their acknowledgements) would run on their own processors.
        idle_executions: true,
    };
    let fleet = ward_sim::start(&options, progress)
        .await
        .map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    loop {
        let online = admin
            .list_devices(&ward_proto::DeviceQuery::default())
            .await?
            .iter()
            .filter(|d| d.online)
            .count();
        if online == args.devices {
            break;
        }
        if started.elapsed() > Duration::from_secs(args.timeout) {
            bail!("only {online} of {} devices came online", args.devices);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    progress(&format!(
        "{} devices online; declaring and containing",
        args.devices
    ));
    let incident = admin
        .declare_incident(&DeclareIncidentRequest {
            title: "Benchmark: contain the whole fleet".into(),
            severity: Some("critical".into()),
            description: String::new(),
            situation: None,
            discovered_at: None,
            aware_at: None,
            scope: "site within \"st-marys\" or site within \"general\"".into(),
            plan: None,
        })
        .await?;
    let server_pid = match &server {
        Served::Child(child) => Some(child.id()),
        Served::InProcess(_) => None,
    };
    let cpu = |pid: Option<u32>| pid.and_then(|pid| crate::devices::cpu_ms(pid).ok());
    // In one process the server's time and the devices' cannot be told apart: neither is shown.
    let own_pid = server_pid.is_some().then(std::process::id);
    let cpu_before = (cpu(server_pid), cpu(own_pid));
    let go = Instant::now();
    let answer = admin
        .contain_incident(&incident.id, &IncidentActionRequest::default())
        .await?;
    let cpu_after = (cpu(server_pid), cpu(own_pid));
    let per_command = |before: Option<u64>, after: Option<u64>| {
        Some((after? - before?) * 1000 / answer.contain.commands.max(1))
    };
    let server_cpu = per_command(cpu_before.0, cpu_after.0);
    let sim_cpu = per_command(cpu_before.1, cpu_after.1);
    progress(&format!(
        "contain request answered after {} ms{}",
        go.elapsed().as_millis(),
        match (server_cpu, sim_cpu) {
            (Some(server), Some(sim)) => format!(
                "; processor time meanwhile per command: server {server} µs, simulated devices {sim} µs"
            ),
            _ => String::new(),
        }
    ));
    let status = loop {
        let status = admin.incident_status(&incident.id).await?;
        if status.contain.outstanding == 0 || go.elapsed() > Duration::from_secs(args.timeout) {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let wall_ms = go.elapsed().as_millis();
    drop(fleet);
    match server {
        Served::InProcess(server) => server.shutdown().await,
        Served::Child(mut child) => {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let t = &status.time_to_contain;
    Ok(ContainResult {
        devices: args.devices,
        commands: status.contain.commands,
        acknowledged: status.contain.acknowledged,
        lost: status.contain.commands - status.contain.acknowledged,
        p50_ms: t.p50_ms,
        p95_ms: t.p95_ms,
        p99_ms: t.p99_ms,
        max_ms: t.max_ms,
        wall_ms,
        server_cpu_us_per_command: server_cpu,
        sim_cpu_us_per_command: sim_cpu,
    })
}

/// Prints a result as a table row (or JSON).
pub fn print(result: &ContainResult, json_out: bool) {
    if json_out {
        let value: Value = serde_json::to_value(result).unwrap_or(json!({}));
        println!("{value:#}");
        return;
    }
    let shown = |us: Option<u64>| us.map_or_else(|| "-".to_owned(), |us| us.to_string());
    println!(
        "| devices | commands | acknowledged | lost | p50 ms | p95 ms | p99 ms | max ms | server µs/command | devices µs/command |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        result.devices,
        result.commands,
        result.acknowledged,
        result.lost,
        result.p50_ms,
        result.p95_ms,
        result.p99_ms,
        result.max_ms,
        shown(result.server_cpu_us_per_command),
        shown(result.sim_cpu_us_per_command),
    );
}
