//! `ward demo` and `ward sim`: Ward in one command, and a simulated fleet for an existing server.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ward_client::{Client, Trust};
use ward_core::config::TlsMode;
use ward_proto::{ChangePasswordRequest, LoginRequest};
use ward_server::Config;

/// `ward demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps its server and devices (kept between runs)
    #[arg(long, default_value = "./ward-demo")]
    pub data_dir: PathBuf,
    /// Start from nothing: delete the demo directory first
    #[arg(long)]
    pub fresh: bool,
    /// Simulated devices
    #[arg(long, default_value_t = 300)]
    pub devices: usize,
    /// Address of the HTTPS API
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: String,
    /// Address of the agent channel
    #[arg(long, default_value = "127.0.0.1:8444")]
    pub agent_listen: String,
}

/// `ward sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// The server, https://HOST:PORT
    #[arg(long, env = "WARD_SERVER")]
    pub server: String,
    /// An admin API token (the simulator creates sites and enrollment tokens)
    #[arg(long, env = "WARD_TOKEN", hide_env_values = true)]
    pub token: String,
    /// SHA-256 fingerprint of the server's CA (printed by `ward server` at start)
    #[arg(long, env = "WARD_CA_FINGERPRINT")]
    pub ca_fingerprint: String,
    /// Virtual devices to run
    #[arg(long, default_value_t = 200)]
    pub devices: usize,
    /// Where the devices keep their state (kept: a second run reconnects the same devices)
    #[arg(long, default_value = "./ward-sim")]
    pub dir: PathBuf,
    /// Enrollments in flight at once
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Hostname prefix, so several simulators can share a server
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Devices per second that drop their connection and reconnect, picked at random
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub churn: f64,
    /// Connect the devices from N loopback addresses (127.20.0.1 and up) in turn, for a server
    /// on loopback: one source address reaches a server port from ~28 000 ports at most, so
    /// 100 000 devices need at least 4 (0: the system picks)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub source_addresses: u32,
    /// Simulated LwM2M devices (in-repo LwM2M clients) to provision and register as well
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub lwm2m: usize,
    /// The server's LwM2M gateway: its DTLS address (`ward server` prints it), or its plain
    /// UDP address with --lwm2m-plain
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5684")]
    pub lwm2m_gateway: std::net::SocketAddr,
    /// Register the LwM2M devices over plain UDP (the gateway accepts it on loopback only, by
    /// default) instead of DTLS with pre-shared keys
    #[arg(long)]
    pub lwm2m_plain: bool,
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// Runs the simulator until Ctrl-C.
pub async fn sim(args: SimArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let lwm2m_options = ward_sim::lwm2m::Lwm2mOptions {
        server: args.server.clone(),
        token: args.token.clone(),
        ca_fingerprint: args.ca_fingerprint.clone(),
        gateway: args.lwm2m_gateway,
        devices: args.lwm2m,
        prefix: args.prefix.clone(),
        lifetime: 300,
        dtls: !args.lwm2m_plain,
        keys_file: Some(args.dir.join("lwm2m-keys.json")),
    };
    let options = ward_sim::SimOptions {
        server: args.server,
        token: args.token,
        ca_fingerprint: args.ca_fingerprint,
        devices: args.devices,
        dir: args.dir,
        concurrency: args.concurrency,
        prefix: args.prefix,
        churn: args.churn,
        source_addresses: args.source_addresses,
        idle_executions: false,
    };
    let fleet = ward_sim::start(&options, &mut |line| eprintln!("{line}"))
        .await
        .map_err(anyhow::Error::msg)?;
    let lwm2m = if lwm2m_options.devices > 0 {
        Some(
            ward_sim::lwm2m::start(&lwm2m_options, &mut |line| eprintln!("{line}"))
                .await
                .map_err(anyhow::Error::msg)?,
        )
    } else {
        None
    };
    eprintln!(
        "{} simulated devices and {} LwM2M devices running; Ctrl-C to stop",
        fleet.len(),
        lwm2m.as_ref().map_or(0, ward_sim::lwm2m::Lwm2mFleet::len)
    );
    ward_server::shutdown_signal().await;
    drop(lwm2m);
    drop(fleet);
    Ok(())
}

/// Runs the server and a simulated hospital in this process until Ctrl-C.
pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    if args.fresh && args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir)
            .with_context(|| format!("removing {}", args.data_dir.display()))?;
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let mut config = Config::for_data_dir(&args.data_dir.join("server"));
    config.listen = args
        .listen
        .parse()
        .with_context(|| format!("--listen {}: not an address like 127.0.0.1:8443", args.listen))?;
    config.agent_listen = args
        .agent_listen
        .parse()
        .with_context(|| format!("--agent-listen {}: not an address", args.agent_listen))?;
    config.tls = TlsMode::OwnCa { extra_names: vec![] };
    let server = ward_server::start(config).await.with_context(|| {
        format!(
            "starting the server on {} (is another Ward running? try --listen)",
            args.listen
        )
    })?;
    let url = server.url();
    let client = Client::new(&url, &Trust::CaPem(server.ca_cert_pem.clone()))?;
    let login_file = args.data_dir.join("demo-login.txt");
    let password = match &server.initial_admin {
        Some((username, one_time)) => {
            // First run: replace the one-time password with one the demo keeps for the next run.
            let token = client
                .cli_login(&LoginRequest {
                    username: username.clone(),
                    password: one_time.clone(),
                    totp_code: None,
                    recovery_code: None,
                    token_name: Some("demo".into()),
                    expires_in_days: None,
                })
                .await?;
            let password = format!("demo-{:016x}", rand::random::<u64>());
            client
                .clone()
                .with_token(token.secret)
                .change_password(&ChangePasswordRequest {
                    current_password: one_time.clone(),
                    new_password: password.clone(),
                })
                .await?;
            write_private(&login_file, &password)?;
            password
        }
        None => std::fs::read_to_string(&login_file)
            .with_context(|| {
                format!(
                    "reading {} (run with --fresh to start over)",
                    login_file.display()
                )
            })?
            .trim()
            .to_owned(),
    };
    let token = client
        .cli_login(&LoginRequest {
            username: "admin".into(),
            password: password.clone(),
            totp_code: None,
            recovery_code: None,
            token_name: Some("demo simulator".into()),
            expires_in_days: Some(1),
        })
        .await
        .context("logging in as the demo admin")?;
    let admin = client.clone().with_token(token.secret.clone());
    let options = ward_sim::SimOptions {
        server: url.clone(),
        token: token.secret,
        ca_fingerprint: server.ca_fingerprint.clone(),
        devices: args.devices,
        dir: args.data_dir.join("fleet"),
        concurrency: 16,
        prefix: String::new(),
        churn: 0.0,
        source_addresses: 0,
        idle_executions: false,
    };
    eprintln!("starting a simulated hospital of {} devices ...", args.devices);
    let fleet = ward_sim::start(&options, &mut |line| eprintln!("  {line}"))
        .await
        .map_err(anyhow::Error::msg)?;
    if server.initial_admin.is_some() {
        // First run: the shipped healthcare baseline, so compliance has something to show.
        let applied = admin
            .apply_policies(&ward_proto::ApplyPoliciesRequest {
                files: ward_service::baseline::files(),
                dry_run: false,
                prune: false,
            })
            .await
            .context("applying the baseline policies")?;
        eprintln!(
            "applied the healthcare baseline: {} policies; {} devices changed compliance",
            applied.versions.len(),
            applied.compliance_changes_total
        );
    }
    eprintln!();
    eprintln!(
        "Ward demo is running ({} simulated devices, data in {}).",
        fleet.len(),
        args.data_dir.display()
    );
    eprintln!("  console / API:  {url}  (API reference: {url}/api/v1/openapi.json)");
    eprintln!("  login:          admin / {password}");
    eprintln!("  CA fingerprint: {}", server.ca_fingerprint);
    eprintln!();
    eprintln!("In another terminal:");
    eprintln!(
        "  ward login --server {url} --ca-fingerprint {} --username admin",
        server.ca_fingerprint
    );
    eprintln!("  ward devices list --filter 'criticality = \"life-sustaining\"'");
    eprintln!("  ward compliance summary");
    eprintln!("  ward devices list --filter 'compliance.status = \"non_compliant\" and phi = true'");
    eprintln!("  ward incident declare --title 'Ransomware in ED' --scope 'site within \"st-marys/ed\"'");
    eprintln!();
    eprintln!("Ctrl-C stops the demo; the next `ward demo` resumes it (`--fresh` starts over).");
    ward_server::shutdown_signal().await;
    eprintln!("stopping");
    drop(fleet);
    server.shutdown().await;
    Ok(())
}
