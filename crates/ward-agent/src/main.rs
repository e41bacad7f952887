//! `ward-agent`: enrolls a Linux device with Ward and keeps its live channel (see CLI.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ward_agent::identity::StateDir;

#[derive(Parser)]
#[command(
    name = "ward-agent",
    version,
    about = "Ward's device agent: enrollment, inventory and the live channel"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enroll this device: create its key, get a certificate from the server's CA
    #[command(
        after_help = "Example:\n  ward-agent enroll --server https://ward.example:8443 --token wardenroll_... --ca-fingerprint 3f9a..."
    )]
    Enroll {
        /// The Ward server, https://HOST:PORT
        #[arg(long, env = "WARD_SERVER")]
        server: String,
        /// Enrollment token from `ward enroll-token create`
        #[arg(long, env = "WARD_ENROLL_TOKEN", hide_env_values = true)]
        token: String,
        /// SHA-256 fingerprint of the server's CA, pinned on first contact
        #[arg(long)]
        ca_fingerprint: Option<String>,
        /// Where the key, certificate and settings are kept
        #[arg(long, default_value = "/var/lib/ward-agent", env = "WARD_AGENT_STATE_DIR")]
        state_dir: PathBuf,
        /// Report this hostname instead of the machine's
        #[arg(long)]
        hostname: Option<String>,
    },
    /// Run in the foreground: keep the channel to the server open (systemd-friendly)
    Run {
        #[arg(long, default_value = "/var/lib/ward-agent", env = "WARD_AGENT_STATE_DIR")]
        state_dir: PathBuf,
        /// Root of the file tree facts are read from (tests and containers)
        #[arg(long, default_value = "/")]
        facts_root: PathBuf,
        /// Seconds between fact collections (changes are sent as diffs)
        #[arg(long, default_value_t = 300)]
        facts_interval: u64,
        /// Agent settings (TOML): managed_dirs, dns_resolvers, offline_lock_hours, offline_quarantine,
        /// allow_full_wipe, full_wipe_devices
        #[arg(long, value_name = "FILE", env = "WARD_AGENT_CONFIG")]
        config: Option<PathBuf>,
        /// Record actions in this directory instead of doing them (tests, simulator, demos)
        #[arg(long, value_name = "DIR")]
        sandbox: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: starting the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Enroll {
                server,
                token,
                ca_fingerprint,
                state_dir,
                hostname,
            } => {
                let state = StateDir(state_dir);
                let hostname =
                    hostname.unwrap_or_else(|| ward_agent::enroll::local_hostname(std::path::Path::new("/")));
                match ward_agent::enroll::enroll(
                    &server,
                    &token,
                    ca_fingerprint.as_deref(),
                    &state,
                    &hostname,
                )
                .await
                {
                    Ok(enrollment) => {
                        println!("enrolled as device {}", enrollment.device_id);
                        ExitCode::SUCCESS
                    }
                    Err(err) => {
                        eprintln!("error: {err}");
                        ExitCode::from(1)
                    }
                }
            }
            Command::Run {
                state_dir,
                facts_root,
                facts_interval,
                config,
                sandbox,
            } => {
                let config = match ward_agent::config::AgentConfig::load(config.as_deref()) {
                    Ok(config) => config,
                    Err(err) => {
                        eprintln!("error: {err}");
                        return ExitCode::from(2);
                    }
                };
                let mode = match sandbox {
                    Some(dir) => ward_agent::actions::Mode::Sandbox(dir),
                    None => ward_agent::actions::Mode::Real,
                };
                let options = ward_agent::session::RunOptions {
                    state_dir,
                    facts_root,
                    facts_interval: Duration::from_secs(facts_interval.max(1)),
                    config,
                    mode,
                    synthetic_facts: None,
                    threads: Default::default(),
                    local_address: None,
                    verified_batches: Default::default(),
                };
                match ward_agent::session::run(options).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(err) => {
                        eprintln!("error: {err}");
                        ExitCode::from(1)
                    }
                }
            }
        }
    })
}
