//! `ward bench audit`: measures audit-log append and verify rates on a fresh store, several runs,
//! and reports medians. Targets live here, not in tests (shared machines are noisy).

use std::time::Instant;

use anyhow::Context;
use ed25519_dalek::SigningKey;
use ward_domain::audit::{AuditEntry, AuditRecord, Checkpoint, Outcome, Verifier};
use ward_store::{Audit, AuditLog, verify_log};
use ward_store_sql::{ConnectOptions, SqlStore, sqlite_url_for};

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Entries appended per run for the batched and verify measurements.
    #[arg(long, default_value_t = 200_000)]
    pub entries: u64,
    /// Entries per transaction in the batched measurement.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Entries appended one transaction each (the per-request rate).
    #[arg(long, default_value_t = 5_000)]
    pub single: u64,
    /// Runs; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// PostgreSQL URL to measure instead of a temporary SQLite file.
    #[arg(long)]
    pub database: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Medians of one benchmark invocation, entries per second.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    pub backend: String,
    pub entries: u64,
    pub batch: usize,
    pub runs: usize,
    pub append_batched_per_s: f64,
    pub append_per_request_per_s: f64,
    pub verify_from_store_per_s: f64,
    pub verify_in_memory_per_s: f64,
}

fn record(i: u64) -> AuditRecord {
    AuditRecord::new(
        "user:bench",
        "site.update",
        format!("site:st-marys/ward-{}", i % 50),
        Outcome::Success,
        serde_json::json!({ "name": format!("Ward {i}"), "reason": "benchmark" }),
    )
    .with_source(Some("127.0.0.1".into()))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

async fn fresh_store(
    args: &BenchArgs,
    dir: &std::path::Path,
    run: usize,
) -> anyhow::Result<(SqlStore, Option<String>)> {
    match &args.database {
        Some(url) => {
            let schema = format!("ward_bench_{}", uuid::Uuid::new_v4().simple());
            let store = SqlStore::connect(
                url,
                ConnectOptions {
                    schema: Some(schema.clone()),
                    ..Default::default()
                },
            )
            .await
            .context("connecting to PostgreSQL")?;
            Ok((store, Some(schema)))
        }
        None => {
            let path = dir.join(format!("bench-{run}.db"));
            Ok((
                SqlStore::connect(&sqlite_url_for(&path), ConnectOptions::default()).await?,
                None,
            ))
        }
    }
}

/// Runs the audit benchmark.
pub async fn audit(args: &BenchArgs, progress: &mut dyn FnMut(&str)) -> anyhow::Result<BenchResult> {
    anyhow::ensure!(
        args.entries > 0 && args.batch > 0 && args.runs > 0,
        "entries, batch and runs must be at least 1"
    );
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let key = SigningKey::from_bytes(&[42u8; 32]);
    let (mut batched, mut single, mut verify_store, mut verify_memory) = (vec![], vec![], vec![], vec![]);
    let mut backend = String::new();
    for run in 0..args.runs {
        let (store, schema) = fresh_store(args, dir.path(), run).await?;
        backend = ward_store::Store::backend(&store).to_owned();

        let started = Instant::now();
        let mut appended = 0;
        while appended < args.entries {
            let n = (args.entries - appended).min(args.batch as u64);
            let records = (appended..appended + n).map(record).collect();
            store
                .append(Audit {
                    time_ms: 1_790_000_000_000 + appended as i64,
                    records,
                })
                .await?;
            appended += n;
        }
        batched.push(args.entries as f64 / started.elapsed().as_secs_f64());

        let started = Instant::now();
        for i in 0..args.single {
            store.append(Audit::one(1_790_000_000_000, record(i))).await?;
        }
        single.push(args.single as f64 / started.elapsed().as_secs_f64());

        let sign = |head: &ward_domain::audit::AuditHead| Checkpoint::sign(head, 1_790_000_000_000, &key);
        store.checkpoint(&sign).await?;
        let started = Instant::now();
        let report = verify_log(&store, key.verifying_key()).await?;
        anyhow::ensure!(
            report.ok(),
            "benchmark log failed verification: {:?}",
            report.failure
        );
        verify_store.push(report.entries_checked as f64 / started.elapsed().as_secs_f64());

        let mut entries: Vec<AuditEntry> = Vec::with_capacity(report.entries_checked as usize);
        let mut after = 0;
        loop {
            let page = store.raw_entries(after, 50_000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            entries.extend(page);
        }
        let checkpoints = store.checkpoints().await?;
        let started = Instant::now();
        let mut verifier = Verifier::new(key.verifying_key(), checkpoints);
        for entry in &entries {
            verifier.feed(entry);
        }
        let report = verifier.finish(Some(entries.len() as u64));
        anyhow::ensure!(report.ok(), "in-memory verification failed");
        verify_memory.push(entries.len() as f64 / started.elapsed().as_secs_f64());

        if let Some(schema) = schema {
            store
                .execute_unchecked(&format!("DROP SCHEMA {schema} CASCADE"))
                .await?;
        }
        store.close().await;
        progress(&format!(
            "run {}/{}: append batched {:.0}/s, per request {:.0}/s, verify from store {:.0}/s, in memory {:.0}/s",
            run + 1,
            args.runs,
            batched[run],
            single[run],
            verify_store[run],
            verify_memory[run]
        ));
    }
    Ok(BenchResult {
        backend,
        entries: args.entries,
        batch: args.batch,
        runs: args.runs,
        append_batched_per_s: median(batched),
        append_per_request_per_s: median(single),
        verify_from_store_per_s: median(verify_store),
        verify_in_memory_per_s: median(verify_memory),
    })
}
