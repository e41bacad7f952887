//! `ward bench commands`: how long a command takes from the admin's request to the device's
//! acknowledgement, on loopback. Each command goes the whole real way: the HTTP request, the
//! signed command stored durably with its audit entry, the push on the agent's open stream, the
//! device's checks (signature, addressee, not-after) and its fsync'd journal entry, the ack, and
//! the server storing the acknowledged state.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use tokio::sync::mpsc;
use ward_domain::command::{CommandState, VerifiedBatches};
use ward_proto::agent::{AgentMessage, CommandUpdate, ServerMessage, agent_message, server_message};

use crate::devices::{Bench, enroll_many, median, open_agent};

/// `ward bench commands`.
#[derive(Debug, Clone, clap::Args)]
pub struct CommandsArgs {
    /// Commands sent one after another per run.
    #[arg(long, default_value_t = 500)]
    pub commands: usize,
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Connect the device over the gRPC transport (ALPN h2) instead of the framed one agents use.
    #[arg(long)]
    pub grpc: bool,
}

/// Median and 99th percentile, milliseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Latency {
    pub median_ms: f64,
    pub p99_ms: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or(0.0)
}

/// The device side: verifies each command as the agent does, journals it with an fsync, acks.
async fn fake_agent(
    mut incoming: mpsc::Receiver<ServerMessage>,
    sender: mpsc::Sender<AgentMessage>,
    device_id: String,
    key: ed25519_dalek::VerifyingKey,
    journal: std::path::PathBuf,
) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(journal)?;
    let batches = VerifiedBatches::default();
    while let Some(message) = incoming.recv().await {
        let Some(server_message::Body::Command(command)) = message.body else {
            continue;
        };
        ward_agent_channel::verify_pushed(&key, &device_id, &command, &batches)
            .map_err(|why| anyhow::anyhow!("command refused: {why}"))?;
        writeln!(file, "{{\"id\":\"{}\",\"phase\":\"accepted\"}}", command.id)?;
        file.sync_data()?;
        let ack = CommandUpdate {
            command_id: command.id,
            status: "acknowledged".into(),
            ..Default::default()
        };
        sender
            .send(AgentMessage {
                body: Some(agent_message::Body::CommandUpdate(ack)),
            })
            .await?;
    }
    Ok(())
}

/// Request-to-acknowledgement latency of commands to one connected device.
pub async fn commands(args: &CommandsArgs, progress: &mut dyn FnMut(&str)) -> anyhow::Result<Latency> {
    let mut medians = Vec::new();
    let mut p99s = Vec::new();
    for run in 0..args.runs.max(1) {
        let bench = Bench::start().await?;
        let (_, identities) = enroll_many(&bench, 1, 1).await?;
        let (key_pem, cert_pem) = identities.first().context("no device")?.clone();
        let server = bench.server()?;
        let devices = server.state.store.list_devices(false).await?;
        let device_id = devices.first().context("no device")?.id.clone();
        let connection = open_agent(
            server.agent_addr,
            &server.ca_cert_pem,
            (&key_pem, &cert_pem),
            args.grpc,
            16,
        )
        .await?;
        let (sender, stream) = (connection.sender.clone(), connection.incoming);
        let journal = tempfile::NamedTempFile::new()?;
        let agent = tokio::spawn(fake_agent(
            stream,
            sender,
            device_id.clone(),
            server.state.keys.command_key.verifying_key(),
            journal.path().to_owned(),
        ));
        let url = format!("{}/api/v1/devices/{device_id}/commands", bench.url);
        let mut latencies = Vec::with_capacity(args.commands);
        for _ in 0..args.commands {
            let started = Instant::now();
            let response = bench
                .http
                .post(&url)
                .bearer_auth(&bench.token)
                .json(&json!({"kind": "message", "params": {"text": "benchmark"}}))
                .send()
                .await?;
            if !response.status().is_success() {
                bail!("queueing a command: {}", response.status());
            }
            let created: serde_json::Value = response.json().await?;
            let id = created["id"].as_str().context("no command id")?.to_owned();
            loop {
                let command = server
                    .state
                    .store
                    .command(&id)
                    .await?
                    .context("command vanished")?;
                if command.state == CommandState::Acknowledged {
                    break;
                }
                if started.elapsed() > Duration::from_secs(10) {
                    bail!("command {id} not acknowledged in 10 s ({})", command.state);
                }
                tokio::task::yield_now().await;
            }
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        agent.abort();
        latencies.sort_by(|a, b| a.total_cmp(b));
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        progress(&format!(
            "run {}/{}: {} commands, request to acknowledgement median {p50:.2} ms, p99 {p99:.2} ms",
            run + 1,
            args.runs,
            args.commands
        ));
        medians.push(p50);
        p99s.push(p99);
        bench.shutdown().await;
    }
    Ok(Latency {
        median_ms: median(medians),
        p99_ms: median(p99s),
    })
}
