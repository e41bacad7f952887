//! The `ward` binary: thin glue over the server (`ward server`, `ward admin`, `ward demo`), the
//! benchmarks (`ward bench`, with the `bench` feature) and the
//! admin command line (everything else, in `ward-cli`).

use std::path::PathBuf;
use std::process::ExitCode;

/// jemalloc instead of the system allocator: the server builds and drops large JSON trees for
/// every inventory report, and jemalloc spends far less of the ingest time on them than glibc's
/// malloc, for somewhat more memory per idle connection (mimalloc is faster still, but needs more
/// memory again). The trade-off is measured in BENCHMARKS.md.
///
/// The `system-allocator` feature leaves glibc's malloc in place, for heap profilers that
/// intercept it (`heaptrack`, valgrind's massif); see BENCHMARKS.md.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's start-up options (the C string it reads as `malloc_conf`; a pointer to a
/// NUL-terminated array). A background thread returns freed memory to the system on jemalloc's
/// decay schedule; without it the purge only happens when something allocates, so a server that
/// goes quiet after a burst (devices registering) would keep the burst's pages (see BENCHMARKS.md,
/// LwM2M registrations). `_RJEM_MALLOC_CONF` in the environment still overrides it.
#[cfg(not(feature = "system-allocator"))]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 48] = b"background_thread:true,max_background_threads:1\0";

mod demo;

use clap::{Parser, Subcommand};
use ward_cli::{AdminCommand, GlobalArgs, OfflineAudit};
use ward_core::config::ConfigError;
use ward_server::{Config, ServerArgs};

#[derive(Parser)]
#[command(
    name = "ward",
    version,
    about = "Ward: device management and breach containment for healthcare",
    long_about = "Ward: device management and breach containment for healthcare.\n\n\
        `ward server` runs the server; the other commands administer a running server over its API \
        (log in first with `ward login`)."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Try Ward: a server on an embedded SQLite plus a simulated hospital, until Ctrl-C
    Demo(demo::DemoArgs),
    /// Run the Ward server (HTTPS API; first start creates keys and the admin account)
    Server(ServerArgs),
    /// Run simulated devices (real agents, sandboxed actions) against a server, until Ctrl-C
    Sim(demo::SimArgs),
    /// Administer the data directory directly, without a running server
    #[command(subcommand)]
    Admin(AdminLocal),
    /// Measure performance (results belong in BENCHMARKS.md)
    #[cfg(feature = "bench")]
    #[command(subcommand)]
    Bench(ward_bench::BenchCommand),
    /// Measure performance (needs a build with `--features bench`)
    #[cfg(not(feature = "bench"))]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
    #[command(flatten)]
    Api(AdminCommand),
}

#[derive(Subcommand)]
enum AdminLocal {
    /// Create an admin account in the server's database and print its one-time password
    #[command(after_help = "Example:\n  ward admin create alice --role security --data-dir /var/lib/ward")]
    Create {
        /// Account name (a-z, 0-9, '.', '_', '-')
        username: String,
        /// Role: admin, security, operator, helpdesk or auditor
        #[arg(long, default_value = "admin")]
        role: String,
        /// Make it a break-glass (emergency) account: every use raises an audit alert
        #[arg(long)]
        break_glass: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Offline verification for `ward audit verify --data-dir/--database`.
struct Offline;

#[async_trait::async_trait]
impl OfflineAudit for Offline {
    async fn verify(
        &self,
        database: Option<String>,
        data_dir: Option<PathBuf>,
    ) -> anyhow::Result<ward_proto::VerifyReportView> {
        let data_dir = data_dir.unwrap_or_else(|| PathBuf::from("./ward-data"));
        let report = ward_server::offline::verify(&data_dir, database).await?;
        Ok(ward_core::views::report_view(&report))
    }
}

fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    // A bad configuration is a usage error (exit 2); anything else failed (exit 1).
    if err.downcast_ref::<ConfigError>().is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: starting the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Demo(args) => match demo::demo(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => fail(&err),
            },
            Command::Sim(args) => match demo::sim(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => fail(&err),
            },
            Command::Server(args) => match ward_server::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => fail(&err),
            },
            Command::Admin(AdminLocal::Create { username, role, break_glass, server }) => {
                let result = async {
                    let role = role.parse()?;
                    let config = Config::load(&server)?;
                    ward_server::offline::admin_create(&config, &username, role, break_glass).await
                }
                .await;
                match result {
                    Ok(password) => {
                        eprintln!("created {username}; its one-time password (shown only now, change it at first login):");
                        println!("{password}");
                        ExitCode::SUCCESS
                    }
                    Err(err) => fail(&err),
                }
            }
            #[cfg(feature = "bench")]
            Command::Bench(command) => match ward_bench::run(command).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => fail(&err),
            },
            #[cfg(not(feature = "bench"))]
            Command::Bench { .. } => {
                eprintln!("error: this ward was built without its benchmarks; build it with `cargo build --release --features bench`");
                ExitCode::from(2)
            }
            Command::Api(command) => ward_cli::run(cli.global, command, &Offline).await,
        }
    })
}
