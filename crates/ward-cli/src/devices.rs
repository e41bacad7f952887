//! `ward enroll-token ...` and `ward devices ...`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::Subcommand;
use ward_proto::{CreateEnrollTokenRequest, DeviceQuery, DeviceView};

use crate::args::GlobalArgs;
use crate::commands::{connect, done, print_json};
use crate::error::CliError;
use crate::output::{Output, neutralise, or_dash, yes_no};

type Result<T = ()> = std::result::Result<T, CliError>;

const ENROLL_EXAMPLES: &str = "\
Example:
  ward enroll-token create --site st-marys/icu --class workstation --criticality normal --phi --expires 24h --uses 50

The token is printed once; give it to `ward-agent enroll --token` on each device.";

const FILTER_EXAMPLES: &str = "\
Examples:
  ward devices list --filter 'site within \"st-marys\" and class = \"medical\"'
  ward devices list --filter 'facts.os.version_id < \"22.04\" and online = true'

The selector language is described in docs/selectors.md.";

/// `ward enroll-token ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum EnrollTokenCommand {
    /// Create a token that lets devices enroll into one site
    #[command(after_help = ENROLL_EXAMPLES)]
    Create {
        /// Site the devices join (`hospital` or `hospital/ward`)
        #[arg(long, value_name = "SITE")]
        site: String,
        /// Device class: workstation, mobile, iot-gateway or medical
        #[arg(long, value_name = "CLASS")]
        class: String,
        /// Clinical criticality: life-sustaining, high or normal (default normal)
        #[arg(long, value_name = "LEVEL")]
        criticality: Option<String>,
        /// The devices store or display patient data
        #[arg(long)]
        phi: bool,
        /// Validity: 30m, 24h, 7d ... (default 24h, at most 365d)
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// How many devices may use it (default 1)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
        uses: Option<u32>,
    },
    /// List enrollment tokens
    List,
    /// Revoke a token; enrolled devices keep their identity
    Revoke {
        /// Token id (from `list`)
        id: String,
    },
}

/// `ward devices ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum DevicesCommand {
    /// List devices, optionally filtered by a selector
    #[command(after_help = FILTER_EXAMPLES)]
    List {
        /// Selector, e.g. 'site within "st-marys" and class = "medical"'
        #[arg(long, value_name = "SELECTOR")]
        filter: Option<String>,
        /// Include retired devices
        #[arg(long)]
        include_retired: bool,
    },
    /// Show a device's detail, facts and history (the view is audited)
    Show {
        /// Device id
        id: String,
    },
    /// Revoke a device: its connection is cut at once and its certificate refused
    Revoke {
        /// Device id
        id: String,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
    },
    /// Retire a device: hidden from active views, history kept
    Retire {
        /// Device id
        id: String,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
    },
    /// Export devices as a FHIR R4 Bundle of Device resources
    Fhir {
        /// Selector to export only some devices
        #[arg(long, value_name = "SELECTOR")]
        filter: Option<String>,
        /// Write to this file (mode 0600) instead of standard output
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// Asks before a destructive action; without a terminal, `--yes` is required.
fn confirm(question: &str, yes: bool) -> Result {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(format!(
            "{question}: pass --yes to confirm when not on a terminal"
        )));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::local("io", e))?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(CliError::Usage("not confirmed".into()))
    }
}

pub(crate) async fn enroll_tokens(global: &GlobalArgs, command: EnrollTokenCommand, out: &Output) -> Result {
    let client = connect(global)?;
    match command {
        EnrollTokenCommand::Create {
            site,
            class,
            criticality,
            phi,
            expires,
            uses,
        } => {
            let created = client
                .create_enroll_token(&CreateEnrollTokenRequest {
                    site,
                    class,
                    criticality,
                    phi,
                    expires,
                    uses,
                })
                .await?;
            if out.json {
                return print_json(out, &created);
            }
            let token = &created.token;
            out.fields(&[
                ("id", token.id.clone()),
                ("site", token.site.clone()),
                ("class", token.class.clone()),
                ("criticality", token.criticality.clone()),
                ("phi", yes_no(token.phi)),
                ("expires", token.expires_at.clone()),
                ("uses", format!("0 of {}", token.max_uses)),
            ]);
            out.line(&neutralise(&format!(
                "token (shown only now): {}",
                created.secret
            )));
            out.line(&neutralise(&format!(
                "on each device: ward-agent enroll --server {} --token {} --ca-fingerprint <CA FINGERPRINT>",
                client.base_url().as_str().trim_end_matches('/'),
                created.secret
            )));
            Ok(())
        }
        EnrollTokenCommand::List => {
            let tokens = client.list_enroll_tokens().await?;
            if out.json {
                return print_json(out, &tokens);
            }
            out.table(
                &[
                    "id",
                    "site",
                    "class",
                    "criticality",
                    "phi",
                    "uses",
                    "expires",
                    "revoked",
                ],
                tokens.iter().map(|t| {
                    vec![
                        t.id.clone(),
                        t.site.clone(),
                        t.class.clone(),
                        t.criticality.clone(),
                        yes_no(t.phi),
                        format!("{}/{}", t.uses, t.max_uses),
                        t.expires_at.clone(),
                        or_dash(t.revoked_at.as_deref()),
                    ]
                }),
            );
            Ok(())
        }
        EnrollTokenCommand::Revoke { id } => {
            client.revoke_enroll_token(&id).await?;
            done(out, &format!("enrollment token {id} revoked"))
        }
    }
}

fn device_row(d: &DeviceView) -> Vec<String> {
    vec![
        d.id.clone(),
        d.hostname.clone(),
        d.site.clone(),
        d.class.clone(),
        d.criticality.clone(),
        yes_no(d.phi),
        d.state.clone(),
        yes_no(d.online),
        or_dash(d.last_seen_at.as_deref()),
    ]
}

const DEVICE_HEADER: [&str; 9] = [
    "id",
    "hostname",
    "site",
    "class",
    "criticality",
    "phi",
    "state",
    "online",
    "last seen",
];

pub(crate) async fn devices(global: &GlobalArgs, command: DevicesCommand, out: &Output) -> Result {
    let client = connect(global)?;
    match command {
        DevicesCommand::List {
            filter,
            include_retired,
        } => {
            let devices = client
                .list_devices(&DeviceQuery {
                    filter,
                    include_retired,
                })
                .await?;
            if out.json {
                return print_json(out, &devices);
            }
            out.table(&DEVICE_HEADER, devices.iter().map(device_row));
            Ok(())
        }
        DevicesCommand::Show { id } => {
            let detail = client.get_device(&id).await?;
            if out.json {
                return print_json(out, &detail);
            }
            out.table(&DEVICE_HEADER, [device_row(&detail.device)]);
            out.line("facts:");
            let facts = serde_json::to_string_pretty(&detail.device.facts).unwrap_or_default();
            for line in facts.lines() {
                out.line(&neutralise(&format!("  {line}")));
            }
            out.line("history (newest first):");
            for change in &detail.history {
                out.line(&neutralise(&format!("  {} {}", change.time, change.change)));
            }
            Ok(())
        }
        DevicesCommand::Revoke { id, yes } => {
            let question = format!("revoke device {id}? its connection is cut and its certificate refused");
            confirm(&question, yes)?;
            report_state(out, &client.revoke_device(&id).await?, "revoked")
        }
        DevicesCommand::Retire { id, yes } => {
            confirm(&format!("retire device {id}?"), yes)?;
            report_state(out, &client.retire_device(&id).await?, "retired")
        }
        DevicesCommand::Fhir { filter, output } => {
            let bundle = client
                .devices_fhir(&DeviceQuery {
                    filter,
                    include_retired: false,
                })
                .await?;
            let text = serde_json::to_string_pretty(&bundle).map_err(|e| CliError::local("io", e))?;
            match output {
                Some(path) => {
                    write_private(&path, text.as_bytes()).map_err(|e| CliError::local("io", e))?;
                    done(
                        out,
                        &format!("wrote {} devices to {}", bundle["total"], path.display()),
                    )
                }
                None => {
                    println!("{text}");
                    Ok(())
                }
            }
        }
    }
}

/// Prints a device after a state change.
fn report_state(out: &Output, device: &DeviceView, verb: &str) -> Result {
    if out.json {
        return print_json(out, device);
    }
    done(out, &format!("device {} ({}) {verb}", device.id, device.hostname))
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destructive_actions_need_yes_without_a_terminal() {
        // Tests run without a terminal on stdin.
        assert!(matches!(confirm("revoke?", false), Err(CliError::Usage(_))));
        assert!(confirm("revoke?", true).is_ok());
    }
}
