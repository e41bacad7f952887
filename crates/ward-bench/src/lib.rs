//! Ward's benchmarks, run as `ward bench …` (the `ward` binary's `bench` feature). Each one
//! drives the real server, store or protocol and prints medians; results go to BENCHMARKS.md.

pub mod audit;
pub mod commands;
pub mod contain;
pub mod devices;
pub mod lwm2m;
pub mod mqtt;
pub mod policy;

/// `ward bench …`.
#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Audit log append and verify rates (medians of several runs)
    Audit(audit::BenchArgs),
    /// Enrollment rate through the HTTP path (devices/s, median)
    Enroll(devices::EnrollArgs),
    /// Full inventory reports ingested through the agent channel (reports/s, median)
    Ingest(devices::IngestArgs),
    /// Server memory per idle connected agent (a child `ward server` process's RSS)
    Connections(devices::ConnectionsArgs),
    /// Command latency: request to the connected device's acknowledgement, durable writes included
    Commands(commands::CommandsArgs),
    /// Containment fan-out: one incident over N simulated devices, contain to every acknowledgement
    Contain(contain::ContainArgs),
    /// Baseline: a local MQTT broker delivering one QoS 1 message to N subscribers
    MqttBaseline(mqtt::MqttArgs),
    /// Policy evaluation rate: device x check evaluations per second over a simulated fleet
    Policy(policy::PolicyBenchArgs),
    /// LwM2M registrations one node holds on loopback, and server memory per registration
    Lwm2m(lwm2m::Lwm2mArgs),
}

/// Runs one benchmark, printing progress on stderr and the result (a Markdown table row or JSON)
/// on stdout.
pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Audit(args) => {
            let mut progress = |line: &str| eprintln!("{line}");
            match audit::audit(&args, &mut progress).await {
                Ok(result) if args.json => {
                    println!("{}", serde_json::to_string_pretty(&result).unwrap_or_default());
                    Ok(())
                }
                Ok(result) => {
                    println!(
                        "| measurement ({}, {} entries, batches of {}, median of {} runs) | entries/s |",
                        result.backend, result.entries, result.batch, result.runs
                    );
                    println!("|---|---:|");
                    println!("| append, batched | {:.0} |", result.append_batched_per_s);
                    println!(
                        "| append, one transaction per entry | {:.0} |",
                        result.append_per_request_per_s
                    );
                    println!(
                        "| verify, reading from the store | {:.0} |",
                        result.verify_from_store_per_s
                    );
                    println!(
                        "| verify, entries in memory | {:.0} |",
                        result.verify_in_memory_per_s
                    );
                    Ok(())
                }
                Err(err) => Err(err),
            }
        }
        BenchCommand::Lwm2m(args) => {
            let mut progress = |line: &str| eprintln!("{line}");
            match lwm2m::run(&args, &mut progress).await {
                Ok(result) if args.json => {
                    println!("{}", serde_json::to_string_pretty(&result).unwrap_or_default());
                    Ok(())
                }
                Ok(r) => {
                    println!(
                        "| LwM2M endpoints | transport | registered | server RSS before | after | per registration | time to register all | /3 and /4 read (sampled) |"
                    );
                    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
                    println!(
                        "| {} | {} | {} | {} KiB | {} KiB | {:.2} KiB | {:.1} s | {} of {} |",
                        r.endpoints,
                        r.transport,
                        r.registered,
                        r.rss_before_kib,
                        r.rss_after_kib,
                        r.kib_per_registration,
                        r.seconds_to_register,
                        r.sampled_with_facts,
                        r.sampled
                    );
                    Ok(())
                }
                Err(err) => Err(err),
            }
        }
        BenchCommand::Policy(args) => {
            let mut progress = |line: &str| eprintln!("{line}");
            match policy::run(&args, &mut progress) {
                Ok(result) if args.json => {
                    println!("{}", serde_json::to_string_pretty(&result).unwrap_or_default());
                    Ok(())
                }
                Ok(r) => {
                    println!(
                        "| policy evaluation ({} devices, {} policies, {:.1} checks/device, median of {} runs) | |",
                        r.devices, r.policies, r.checks_per_device, r.runs
                    );
                    println!("|---|---:|");
                    println!(
                        "| evaluations/s, {} threads | {:.0} |",
                        r.threads, r.evaluations_per_s
                    );
                    println!(
                        "| evaluations/s, one thread | {:.0} |",
                        r.evaluations_per_s_one_thread
                    );
                    println!(
                        "| whole fleet re-evaluated, {} threads | {:.3} s |",
                        r.threads, r.fleet_seconds
                    );
                    println!(
                        "| devices/s incl. building subjects, one thread | {:.0} |",
                        r.devices_per_s_with_subjects
                    );
                    println!("| checks failing | {:.1} % |", r.non_compliant_percent);
                    Ok(())
                }
                Err(err) => Err(err),
            }
        }
        BenchCommand::Enroll(args) => {
            let mut progress = |line: &str| eprintln!("{line}");
            match devices::enroll(&args, &mut progress).await {
                Ok(rate) => {
                    println!(
                        "enrollment: {rate:.0} devices/s (median of {} runs of {} devices, {} in flight)",
                        args.runs, args.devices, args.concurrency
                    );
                    Ok(())
                }
                Err(err) => Err(err),
            }
        }
        BenchCommand::Ingest(args) => {
            let mut progress = |line: &str| eprintln!("{line}");
            match devices::ingest(&args, &mut progress).await {
                Ok(rate) => {
                    println!(
                        "ingest: {rate:.0} full inventory reports/s (median of {} runs, {} devices x {} reports)",
                        args.runs, args.devices, args.reports
                    );
                    Ok(())
                }
                Err(err) => Err(err),
            }
        }
        BenchCommand::Connections(args) => {
            let mut progress = |line: &str| eprintln!("{line}");
            match devices::connections(&args, &mut progress).await {
                Ok(per) => {
                    println!(
                        "memory: {:.1} KiB per idle agent connection ({} connections)",
                        per / 1024.0,
                        args.connections
                    );
                    Ok(())
                }
                Err(err) => Err(err),
            }
        }
        BenchCommand::Commands(args) => {
            let mut progress = |line: &str| eprintln!("{line}");
            match commands::commands(&args, &mut progress).await {
                Ok(latency) => {
                    println!(
                        "commands: request to acknowledgement median {:.2} ms, p99 {:.2} ms (median of {} runs of {} commands)",
                        latency.median_ms, latency.p99_ms, args.runs, args.commands
                    );
                    Ok(())
                }
                Err(err) => Err(err),
            }
        }
        BenchCommand::MqttBaseline(args) => {
            let mut progress = |line: &str| eprintln!("{line}");
            match mqtt::baseline(&args, &mut progress).await {
                Ok(r) => {
                    println!("| subscribers | received | lost | p50 ms | p99 ms | max ms |");
                    println!("|---:|---:|---:|---:|---:|---:|");
                    println!(
                        "| {} | {} | {} | {:.1} | {:.1} | {:.1} |",
                        r.subscribers, r.received, r.lost, r.p50_ms, r.p99_ms, r.max_ms
                    );
                    Ok(())
                }
                Err(err) => Err(err),
            }
        }
        BenchCommand::Contain(args) => {
            let mut progress = |line: &str| eprintln!("{line}");
            match contain::contain(&args, &mut progress).await {
                Ok(result) => {
                    contain::print(&result, args.json);
                    Ok(())
                }
                Err(err) => Err(err),
            }
        }
    }
}
