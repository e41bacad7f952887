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
}

pub async fn contain(
    args: &ContainArgs,
    progress: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<ContainResult> {
    // The simulated devices' journals go to memory when it can: on a real fleet every device
    // fsyncs its own disk in parallel; here a thousand would queue on this machine's one disk and
    // measure the disk, not Ward.
    // The server's database stays on disk.
    let fleet_dir = match std::path::Path::new("/dev/shm") {
        shm if shm.is_dir() => tempfile::tempdir_in(shm)?,
        _ => tempfile::tempdir()?,
    };
    let dir = tempfile::tempdir()?;
    let mut config = Config::for_data_dir(&dir.path().join("server"));
    config.heartbeat_ms = 30_000;
    let server = ward_server::start(config).await?;
    let (username, one_time) = server.initial_admin.clone().context("no initial admin")?;
    let url = server.url();
    let client = Client::new(&url, &Trust::CaPem(server.ca_cert_pem.clone()))?;
    let login = |password: String| LoginRequest {
        username: username.clone(),
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
    let token = client.cli_login(&login("benchmark admin 1".into())).await?.secret;
    let admin = client.with_token(token.clone());
    let options = ward_sim::SimOptions {
        server: url,
        token,
        ca_fingerprint: server.ca_fingerprint.clone(),
        devices: args.devices,
        dir: fleet_dir.path().join("fleet"),
        concurrency: 16,
        prefix: String::new(),
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
    let go = Instant::now();
    admin
        .contain_incident(&incident.id, &IncidentActionRequest::default())
        .await?;
    progress(&format!(
        "contain request answered after {} ms",
        go.elapsed().as_millis()
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
    server.shutdown().await;
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
    })
}

/// Prints a result as a table row (or JSON).
pub fn print(result: &ContainResult, json_out: bool) {
    if json_out {
        let value: Value = serde_json::to_value(result).unwrap_or(json!({}));
        println!("{value:#}");
        return;
    }
    println!("| devices | commands | acknowledged | lost | p50 ms | p95 ms | p99 ms | max ms |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {} | {} | {} | {} | {} |",
        result.devices,
        result.commands,
        result.acknowledged,
        result.lost,
        result.p50_ms,
        result.p95_ms,
        result.p99_ms,
        result.max_ms
    );
}
