//! `ward audit ...`: reading, verifying (through the server or offline) and exporting the audit log.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use async_trait::async_trait;
use clap::Subcommand;
use ward_proto::{AuditQuery, VerifyReportView};

use crate::connect::connect;
use crate::error::{CliError, Result};
use crate::files::private_file;
use crate::global::GlobalArgs;
use crate::output::{Output, print_json};
use crate::text::neutralise;

/// Verifies the audit log by opening the store directly, without a running server.
///
/// The binary implements this (it may link the store; this crate may not). Use
/// `#[ward_cli::async_trait]` on the impl.
#[async_trait]
pub trait OfflineAudit: Send + Sync {
    /// Verifies the log in `database` (a database URL) or, failing that, the SQLite store in
    /// `data_dir`; at least one is given. A log that fails verification is an `Ok` report with
    /// `ok: false`; `Err` means the store could not be read at all.
    async fn verify(
        &self,
        database: Option<String>,
        data_dir: Option<PathBuf>,
    ) -> anyhow::Result<VerifyReportView>;
}

/// `ward audit ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum AuditCommand {
    /// List audit entries, oldest first
    List {
        /// Only entries after this sequence number
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        /// At most this many entries (default 100, at most 1000)
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        /// Only entries by this actor
        #[arg(long, value_name = "NAME")]
        actor: Option<String>,
        /// Only this action, or a prefix ending in `.` such as `auth.`
        #[arg(long, value_name = "ACTION")]
        action: Option<String>,
        /// Only entries about this target
        #[arg(long, value_name = "TARGET")]
        target: Option<String>,
    },
    /// Check the log's hash chain and signed checkpoints; exits 4 if it was altered
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify {
        /// Verify this database directly instead of asking the server
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// Verify the SQLite store in this data directory directly instead of asking the server
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Write entries as JSON lines, for archiving or checking elsewhere
    Export {
        /// Only entries after this sequence number
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        /// Write to this file (created 0600) instead of stdout
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// List the signed checkpoints
    Checkpoints,
    /// Show the public key that signs checkpoints
    Key,
}

const VERIFY_EXAMPLES: &str = "\
Examples:
  ward audit verify                              # ask the server to check its log
  ward audit verify --data-dir /var/lib/ward     # check the store directly, without the server
  ward audit verify --database postgres://ward@db/ward

Exit code 4 means the log was altered; the output names the first bad entry.";

pub(crate) async fn audit(
    global: &GlobalArgs,
    command: AuditCommand,
    offline: &dyn OfflineAudit,
    out: &Output,
) -> Result {
    match command {
        AuditCommand::List {
            after,
            limit,
            actor,
            action,
            target,
        } => {
            let query = AuditQuery {
                after,
                limit,
                actor,
                action,
                target,
            };
            let page = connect(global)?.audit(&query).await?;
            if out.json {
                return print_json(out, &page);
            }
            out.table(
                &["seq", "time", "actor", "action", "target", "outcome"],
                page.entries.iter().map(|entry| {
                    vec![
                        entry.seq.to_string(),
                        entry.time.clone(),
                        entry.actor.clone(),
                        entry.action.clone(),
                        entry.target.clone(),
                        entry.outcome.clone(),
                    ]
                }),
            );
            if let Some(next) = page.next_after {
                eprintln!("more entries: pass --after {next}");
            }
            Ok(())
        }
        AuditCommand::Verify { database, data_dir } => {
            let report = if database.is_some() || data_dir.is_some() {
                offline
                    .verify(database, data_dir)
                    .await
                    .map_err(|error| CliError::local("offline_verify", error))?
            } else {
                connect(global)?.audit_verify().await?
            };
            print_report(out, &report)
        }
        AuditCommand::Export { after, output } => export(global, after, output.as_deref(), out).await,
        AuditCommand::Checkpoints => {
            let checkpoints = connect(global)?.audit_checkpoints().await?;
            if out.json {
                return print_json(out, &checkpoints);
            }
            out.table(
                &["tree size", "time", "root", "head hash"],
                checkpoints.iter().map(|checkpoint| {
                    vec![
                        checkpoint.tree_size.to_string(),
                        checkpoint.time.clone(),
                        checkpoint.root.clone(),
                        checkpoint.head_hash.clone(),
                    ]
                }),
            );
            Ok(())
        }
        AuditCommand::Key => {
            let key = connect(global)?.audit_key().await?;
            if out.json {
                return print_json(out, &key);
            }
            out.fields(&[("public key", key.public_key)]);
            Ok(())
        }
    }
}

/// Prints a verification report the same way whether it came from the server or the store,
/// and fails with exit code 4 when the log was altered.
fn print_report(out: &Output, report: &VerifyReportView) -> Result {
    if out.json {
        print_json(out, report)?;
    } else {
        out.fields(&[
            ("result", if report.ok { "ok" } else { "FAILED" }.to_owned()),
            ("entries checked", report.entries_checked.to_string()),
            ("checkpoints checked", report.checkpoints_checked.to_string()),
            ("root", report.root.clone()),
        ]);
    }
    if let Some(message) = verification_failure(report) {
        return Err(CliError::VerificationFailed(message));
    }
    Ok(())
}

fn verification_failure(report: &VerifyReportView) -> Option<String> {
    if report.ok {
        return None;
    }
    Some(match &report.failure {
        Some(failure) => format!(
            "audit log verification failed at entry {}: {}: {}",
            failure.seq, failure.kind, failure.detail
        ),
        None => "audit log verification failed".to_owned(),
    })
}

/// Streams the export to a file or stdout as JSON lines (in both output modes: JSON lines are
/// the format for streams).
async fn export(global: &GlobalArgs, after: Option<u64>, output: Option<&Path>, out: &Output) -> Result {
    let client = connect(global)?;
    let io_error = |error: std::io::Error| CliError::local("io", anyhow::Error::from(error));
    let sink: Box<dyn Write + Send> = match output {
        // The log names people and devices; keep the archive private to its creator.
        Some(path) => Box::new(
            private_file(path)
                .with_context(|| format!("creating {}", path.display()))
                .map_err(|error| CliError::local("io", error))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let mut writer = BufWriter::new(sink);
    let mut export = client.audit_export(after).await?;
    let mut n_entries: u64 = 0;
    while let Some(entry) = export.next_entry().await? {
        serde_json::to_writer(&mut writer, &entry).map_err(|error| CliError::local("io", error))?;
        writer.write_all(b"\n").map_err(io_error)?;
        n_entries += 1;
    }
    writer.flush().map_err(io_error)?;
    if let Some(path) = output
        && !out.json
    {
        eprintln!(
            "exported {n_entries} entries to {}",
            neutralise(&path.display().to_string())
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ward_proto::VerifyFailureView;

    use super::*;

    #[test]
    fn failed_verification_names_the_first_bad_entry_and_exits_4() {
        let report = VerifyReportView {
            ok: false,
            entries_checked: 17,
            checkpoints_checked: 1,
            root: "00".into(),
            failure: Some(VerifyFailureView {
                seq: 12,
                kind: "entry_edited".into(),
                detail: "hash differs".into(),
            }),
        };
        let error = print_report(&Output::new(true), &report).unwrap_err();
        assert_eq!(error.exit_code(), 4);
        assert_eq!(
            error.report(),
            "error: audit log verification failed at entry 12: entry_edited: hash differs (verification_failed)"
        );
        let good = VerifyReportView {
            ok: true,
            failure: None,
            ..report
        };
        assert!(print_report(&Output::new(true), &good).is_ok());
    }
}
