//! The `ward` binary: thin glue over the server (`ward server`, `ward admin`, `ward bench`) and the
//! admin command line (everything else, in `ward-cli`).

use std::path::PathBuf;
use std::process::ExitCode;

/// jemalloc instead of the system allocator: the server builds and drops large JSON trees for
/// every inventory report, and glibc's malloc spent a quarter of the ingest time on them. Measured
/// in BENCHMARKS.md: ingest 5 975 → 10 474 reports/s; memory per idle connection 40.7 → 55.1 KiB
/// (mimalloc: faster still, but 86 KiB).
///
/// The `system-allocator` feature leaves glibc's malloc in place, for heap profilers that
/// intercept it (`heaptrack`, valgrind's massif); see BENCHMARKS.md.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's start-up options (the C string it reads as `malloc_conf`; a pointer to a
/// NUL-terminated array). A background thread returns freed memory to the system on jemalloc's
/// decay schedule; without it the purge only happens when something allocates, so a server that
/// went quiet after a burst (devices registering) kept the burst's pages: LwM2M memory per
/// registration 12.2 → 6.2 KiB, ingest rate unchanged (BENCHMARKS.md). `_RJEM_MALLOC_CONF` in the
/// environment still overrides it.
#[cfg(not(feature = "system-allocator"))]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 48] = b"background_thread:true,max_background_threads:1\0";

mod bench_contain;
mod bench_lwm2m;
mod bench_mqtt;
mod demo;

use clap::{Parser, Subcommand};
use ward_cli::{AdminCommand, GlobalArgs, OfflineAudit};
use ward_server::config::ConfigError;
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
    #[command(subcommand)]
    Bench(BenchCommand),
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

#[derive(Subcommand)]
enum BenchCommand {
    /// Audit log append and verify rates (medians of several runs)
    Audit(ward_server::bench::BenchArgs),
    /// Enrollment rate through the HTTP path (devices/s, median)
    Enroll(ward_server::bench_devices::EnrollArgs),
    /// Full inventory reports ingested through the agent channel (reports/s, median)
    Ingest(ward_server::bench_devices::IngestArgs),
    /// Server memory per idle connected agent (a child `ward server` process's RSS)
    Connections(ward_server::bench_devices::ConnectionsArgs),
    /// Command latency: request to the connected device's acknowledgement, durable writes included
    Commands(ward_server::bench_commands::CommandsArgs),
    /// Containment fan-out: one incident over N simulated devices, contain to every acknowledgement
    Contain(bench_contain::ContainArgs),
    /// Baseline: a local MQTT broker delivering one QoS 1 message to N subscribers
    MqttBaseline(bench_mqtt::MqttArgs),
    /// Policy evaluation rate: device x check evaluations per second over a simulated fleet
    Policy(ward_server::bench_policy::PolicyBenchArgs),
    /// LwM2M registrations one node holds on loopback, and server memory per registration
    Lwm2m(bench_lwm2m::Lwm2mArgs),
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
        Ok(ward_server::api::report_view(&report))
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
            Command::Bench(BenchCommand::Audit(args)) => {
                let mut progress = |line: &str| eprintln!("{line}");
                match ward_server::bench::audit(&args, &mut progress).await {
                    Ok(result) if args.json => {
                        println!("{}", serde_json::to_string_pretty(&result).unwrap_or_default());
                        ExitCode::SUCCESS
                    }
                    Ok(result) => {
                        println!("| measurement ({}, {} entries, batches of {}, median of {} runs) | entries/s |", result.backend, result.entries, result.batch, result.runs);
                        println!("|---|---:|");
                        println!("| append, batched | {:.0} |", result.append_batched_per_s);
                        println!("| append, one transaction per entry | {:.0} |", result.append_per_request_per_s);
                        println!("| verify, reading from the store | {:.0} |", result.verify_from_store_per_s);
                        println!("| verify, entries in memory | {:.0} |", result.verify_in_memory_per_s);
                        ExitCode::SUCCESS
                    }
                    Err(err) => fail(&err),
                }
            }
            Command::Bench(BenchCommand::Lwm2m(args)) => {
                let mut progress = |line: &str| eprintln!("{line}");
                match bench_lwm2m::run(&args, &mut progress).await {
                    Ok(result) if args.json => {
                        println!("{}", serde_json::to_string_pretty(&result).unwrap_or_default());
                        ExitCode::SUCCESS
                    }
                    Ok(r) => {
                        println!("| LwM2M endpoints | transport | registered | server RSS before | after | per registration | time to register all | /3 and /4 read (sampled) |");
                        println!("|---:|---|---:|---:|---:|---:|---:|---:|");
                        println!(
                            "| {} | {} | {} | {} KiB | {} KiB | {:.2} KiB | {:.1} s | {} of {} |",
                            r.endpoints, r.transport, r.registered, r.rss_before_kib, r.rss_after_kib, r.kib_per_registration, r.seconds_to_register, r.sampled_with_facts, r.sampled
                        );
                        ExitCode::SUCCESS
                    }
                    Err(err) => fail(&err),
                }
            }
            Command::Bench(BenchCommand::Policy(args)) => {
                let mut progress = |line: &str| eprintln!("{line}");
                match ward_server::bench_policy::run(&args, &mut progress) {
                    Ok(result) if args.json => {
                        println!("{}", serde_json::to_string_pretty(&result).unwrap_or_default());
                        ExitCode::SUCCESS
                    }
                    Ok(r) => {
                        println!("| policy evaluation ({} devices, {} policies, {:.1} checks/device, median of {} runs) | |", r.devices, r.policies, r.checks_per_device, r.runs);
                        println!("|---|---:|");
                        println!("| evaluations/s, {} threads | {:.0} |", r.threads, r.evaluations_per_s);
                        println!("| evaluations/s, one thread | {:.0} |", r.evaluations_per_s_one_thread);
                        println!("| whole fleet re-evaluated, {} threads | {:.3} s |", r.threads, r.fleet_seconds);
                        println!("| devices/s incl. building subjects, one thread | {:.0} |", r.devices_per_s_with_subjects);
                        println!("| checks failing | {:.1} % |", r.non_compliant_percent);
                        ExitCode::SUCCESS
                    }
                    Err(err) => fail(&err),
                }
            }
            Command::Bench(BenchCommand::Enroll(args)) => {
                let mut progress = |line: &str| eprintln!("{line}");
                match ward_server::bench_devices::enroll(&args, &mut progress).await {
                    Ok(rate) => {
                        println!("enrollment: {rate:.0} devices/s (median of {} runs of {} devices, {} in flight)", args.runs, args.devices, args.concurrency);
                        ExitCode::SUCCESS
                    }
                    Err(err) => fail(&err),
                }
            }
            Command::Bench(BenchCommand::Ingest(args)) => {
                let mut progress = |line: &str| eprintln!("{line}");
                match ward_server::bench_devices::ingest(&args, &mut progress).await {
                    Ok(rate) => {
                        println!("ingest: {rate:.0} full inventory reports/s (median of {} runs, {} devices x {} reports)", args.runs, args.devices, args.reports);
                        ExitCode::SUCCESS
                    }
                    Err(err) => fail(&err),
                }
            }
            Command::Bench(BenchCommand::Connections(args)) => {
                let mut progress = |line: &str| eprintln!("{line}");
                match ward_server::bench_devices::connections(&args, &mut progress).await {
                    Ok(per) => {
                        println!("memory: {:.1} KiB per idle agent connection ({} connections)", per / 1024.0, args.connections);
                        ExitCode::SUCCESS
                    }
                    Err(err) => fail(&err),
                }
            }
            Command::Bench(BenchCommand::Commands(args)) => {
                let mut progress = |line: &str| eprintln!("{line}");
                match ward_server::bench_commands::commands(&args, &mut progress).await {
                    Ok(latency) => {
                        println!("commands: request to acknowledgement median {:.2} ms, p99 {:.2} ms (median of {} runs of {} commands)", latency.median_ms, latency.p99_ms, args.runs, args.commands);
                        ExitCode::SUCCESS
                    }
                    Err(err) => fail(&err),
                }
            }
            Command::Bench(BenchCommand::MqttBaseline(args)) => {
                let mut progress = |line: &str| eprintln!("{line}");
                match bench_mqtt::baseline(&args, &mut progress).await {
                    Ok(r) => {
                        println!("| subscribers | received | lost | p50 ms | p99 ms | max ms |");
                        println!("|---:|---:|---:|---:|---:|---:|");
                        println!("| {} | {} | {} | {:.1} | {:.1} | {:.1} |", r.subscribers, r.received, r.lost, r.p50_ms, r.p99_ms, r.max_ms);
                        ExitCode::SUCCESS
                    }
                    Err(err) => fail(&err),
                }
            }
            Command::Bench(BenchCommand::Contain(args)) => {
                let mut progress = |line: &str| eprintln!("{line}");
                match bench_contain::contain(&args, &mut progress).await {
                    Ok(result) => {
                        bench_contain::print(&result, args.json);
                        ExitCode::SUCCESS
                    }
                    Err(err) => fail(&err),
                }
            }
            Command::Api(command) => ward_cli::run(cli.global, command, &Offline).await,
        }
    })
}
