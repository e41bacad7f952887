//! `ward enroll-token ...` and `ward devices ...`: enrolling devices, inspecting and retiring them.

use std::path::PathBuf;

use clap::Subcommand;
use ward_client::{Trust, parse_fingerprint, pem_certificate_fingerprint};
use ward_proto::{CreateEnrollTokenRequest, CreatedEnrollToken, DeviceDetail, DeviceQuery, DeviceView};

use crate::actions::{ActionCommand, action};
use crate::connect::{connect, connect_with_trust};
use crate::error::{CliError, Result};
use crate::files::write_private_json;
use crate::global::GlobalArgs;
use crate::output::{Output, done, print_json};
use crate::prompt::confirm;
use crate::text::{neutralise, or_dash, yes_no};

const ENROLL_EXAMPLES: &str = "\
Example:
  ward enroll-token create --site st-marys/icu --class medical --criticality high --phi --expires 24h --uses 50

The token's secret is printed only once, with the `ward-agent enroll` line to run on each device.";

const FILTER_EXAMPLES: &str = "\
Examples:
  ward devices list --filter 'site within \"st-marys\" and class = \"medical\"'
  ward devices list --filter 'facts.os.version_id < \"22.04\"' --include-retired

Quote the whole selector for the shell; string values inside it take double quotes.
A selector the server cannot parse is reported with its column, e.g.
  error: filter: at column 12: expected a value, found end of input (invalid_input)";

/// `ward enroll-token ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum EnrollTokenCommand {
    /// Create a token that lets devices enroll into one site (its secret is shown only once)
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
        /// How long the token is valid: 30m, 24h, 7d ... (default 24h, at most 365d)
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// How many devices may enroll with it, 1 to 100000 (default 1)
        // Checked here too: 0 can only be a mistake, and clap's message names the flag.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
        uses: Option<u32>,
        /// Devices enrolled with this token may be fully wiped (their agent config must allow it too)
        #[arg(long)]
        allow_full_wipe: bool,
    },
    /// List enrollment tokens (never their secrets)
    List,
    /// Revoke a token so no more devices can enroll with it; enrolled devices are unaffected
    Revoke {
        /// Token id, as shown by `ward enroll-token list`
        id: String,
    },
}

/// `ward devices ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum DevicesCommand {
    /// List devices, optionally only those matching a selector
    #[command(after_help = FILTER_EXAMPLES)]
    List {
        /// Selector, e.g. 'site within "st-marys" and class = "medical"'
        #[arg(long, value_name = "SELECTOR")]
        filter: Option<String>,
        /// Include retired devices
        #[arg(long)]
        include_retired: bool,
    },
    /// Show a device: its key fields, current facts and recent fact changes (the view is audited)
    Show {
        /// Device id
        id: String,
    },
    /// Revoke a device: its connection is cut at once and its certificate refused from then on
    Revoke {
        /// Device id
        id: String,
        /// Do not ask for confirmation (required when not on a terminal)
        #[arg(long)]
        yes: bool,
    },
    /// Retire a device: hidden from active views, its history kept
    Retire {
        /// Device id
        id: String,
        /// Do not ask for confirmation (required when not on a terminal)
        #[arg(long)]
        yes: bool,
    },
    #[command(flatten)]
    Action(ActionCommand),
    /// Export devices as a FHIR R4 Bundle of Device resources
    #[command(
        after_help = "Example:\n  ward devices fhir --filter 'class = \"medical\"' --output devices.fhir.json"
    )]
    Fhir {
        /// Selector to export only matching devices
        #[arg(long, value_name = "SELECTOR")]
        filter: Option<String>,
        /// Include retired devices
        #[arg(long)]
        include_retired: bool,
        /// Write the Bundle to this file (created 0600) instead of standard output
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

pub(crate) async fn enroll_tokens(global: &GlobalArgs, command: EnrollTokenCommand, out: &Output) -> Result {
    match command {
        EnrollTokenCommand::Create {
            site,
            class,
            criticality,
            phi,
            expires,
            uses,
            allow_full_wipe,
        } => {
            let (client, trust) = connect_with_trust(global)?;
            let created = client
                .create_enroll_token(&CreateEnrollTokenRequest {
                    site,
                    class,
                    criticality,
                    phi,
                    expires,
                    uses,
                    allow_full_wipe,
                })
                .await?;
            if out.json {
                return print_json(out, &created);
            }
            let server = client.base_url().as_str().trim_end_matches('/').to_owned();
            for line in enroll_instructions(&created, &server, ca_fingerprint(&trust).as_deref()) {
                out.line(&line);
            }
            Ok(())
        }
        EnrollTokenCommand::List => {
            let tokens = connect(global)?.list_enroll_tokens().await?;
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
                    "created by",
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
                        t.created_by.clone(),
                    ]
                }),
            );
            Ok(())
        }
        EnrollTokenCommand::Revoke { id } => {
            connect(global)?.revoke_enroll_token(&id).await?;
            done(out, &format!("enrollment token {id} revoked"))
        }
    }
}

/// The hex SHA-256 devices should pin: the CA this CLI itself trusts, when it has one. With
/// system trust there is nothing Ward-specific to pin, so the flag is left out.
fn ca_fingerprint(trust: &Trust) -> Option<String> {
    let pin = match trust {
        Trust::CaPem(pem) => pem_certificate_fingerprint(pem).ok()?,
        Trust::Fingerprint(pin) => parse_fingerprint(pin).ok()?,
        Trust::System => return None,
    };
    Some(pin.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// The human answer to `enroll-token create`, every line neutralised (the secret and names come
/// from the server).
fn enroll_instructions(created: &CreatedEnrollToken, server: &str, fingerprint: Option<&str>) -> Vec<String> {
    let token = &created.token;
    let mut command = format!(
        "ward-agent enroll --server {} --token {}",
        shell_word(server),
        shell_word(&created.secret)
    );
    if let Some(fingerprint) = fingerprint {
        command.push_str(&format!(" --ca-fingerprint {}", shell_word(fingerprint)));
    }
    let devices = if token.max_uses == 1 { "device" } else { "devices" };
    let mut lines = vec![
        format!(
            "Enrollment token {} for {} ({}, criticality {}, phi {}), valid until {} for {} {devices}.",
            token.id,
            token.site,
            token.class,
            token.criticality,
            yes_no(token.phi),
            token.expires_at,
            token.max_uses
        ),
        String::new(),
        "The token is shown only once; it cannot be retrieved later. On each device, run:".to_owned(),
        String::new(),
        format!("  {command}"),
    ];
    if fingerprint.is_none() {
        lines.push(String::new());
        lines.push(
            "(No CA is saved for this server, so --ca-fingerprint is left out; add it with the \
             fingerprint the server printed at first start unless its certificate is publicly trusted.)"
                .to_owned(),
        );
    }
    lines.iter().map(|line| neutralise(line)).collect()
}

/// Quotes `word` for a POSIX shell when needed, so the printed command can be pasted as is.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,:/@%+=".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
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

pub(crate) async fn devices(global: &GlobalArgs, command: DevicesCommand, out: &Output) -> Result {
    if let DevicesCommand::Action(command) = command {
        return action(global, command, out).await;
    }
    let client = connect(global)?;
    match command {
        DevicesCommand::Action(_) => Ok(()),
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
            print_detail(out, &detail)
        }
        DevicesCommand::Revoke { id, yes } => {
            confirm(
                &format!("revoke device {id} (its connection is cut and its certificate refused)"),
                yes,
            )?;
            report_state(out, &client.revoke_device(&id).await?, "revoked")
        }
        DevicesCommand::Retire { id, yes } => {
            confirm(&format!("retire device {id}"), yes)?;
            report_state(out, &client.retire_device(&id).await?, "retired")
        }
        DevicesCommand::Fhir {
            filter,
            include_retired,
            output,
        } => {
            let bundle = client
                .devices_fhir(&DeviceQuery {
                    filter,
                    include_retired,
                })
                .await?;
            match output {
                Some(path) => {
                    // Fetched in full first, so a failed request leaves no half-written file.
                    write_private_json(&path, &bundle).map_err(|error| CliError::local("io", error))?;
                    let entries = bundle
                        .get("entry")
                        .and_then(serde_json::Value::as_array)
                        .map_or(0, Vec::len);
                    done(out, &format!("wrote {entries} devices to {}", path.display()))
                }
                // The Bundle is the one JSON document, with or without --json.
                None => print_json(out, &bundle),
            }
        }
    }
}

fn print_detail(out: &Output, detail: &DeviceDetail) -> Result {
    let d = &detail.device;
    out.fields(&[
        ("id", d.id.clone()),
        ("hostname", d.hostname.clone()),
        ("site", d.site.clone()),
        ("class", d.class.clone()),
        ("criticality", d.criticality.clone()),
        ("phi", yes_no(d.phi)),
        ("state", d.state.clone()),
        ("online", yes_no(d.online)),
        ("last seen", or_dash(d.last_seen_at.as_deref())),
        ("enrolled", d.enrolled_at.clone()),
        ("certificate expires", d.certificate_expires_at.clone()),
    ]);
    out.line("facts:");
    let facts = serde_json::to_string_pretty(&d.facts).map_err(|error| CliError::local("io", error))?;
    // serde_json escapes C0 controls inside strings, but not C1 or bidi overrides; neutralise
    // each line so device-reported facts cannot rewrite the terminal.
    for line in facts.lines() {
        out.line(&neutralise(&format!("  {line}")));
    }
    out.line("history (newest first):");
    if detail.history.is_empty() {
        out.line("  (none)");
    }
    for change in &detail.history {
        out.line(&neutralise(&format!("  {}  {}", change.time, change.change)));
    }
    Ok(())
}

/// Prints a device after a state change.
fn report_state(out: &Output, device: &DeviceView, verb: &str) -> Result {
    if out.json {
        return print_json(out, device);
    }
    done(
        out,
        &format!(
            "device {} ({}) {verb}; state is now {}",
            device.id, device.hostname, device.state
        ),
    )
}

#[cfg(test)]
mod tests {
    use ward_client::ClientError;
    use ward_proto::{EnrollTokenView, ErrorCode};

    use super::*;

    fn created(secret: &str) -> CreatedEnrollToken {
        CreatedEnrollToken {
            token: EnrollTokenView {
                id: "et-1".into(),
                site: "st-marys/icu".into(),
                class: "medical".into(),
                criticality: "high".into(),
                phi: true,
                created_by: "alice".into(),
                created_at: "2026-01-01T00:00:00Z".into(),
                expires_at: "2026-01-02T00:00:00Z".into(),
                max_uses: 50,
                uses: 0,
                revoked_at: None,
            },
            secret: secret.into(),
        }
    }

    #[test]
    fn enroll_instructions_give_the_exact_agent_command() {
        let fp = "ab".repeat(32);
        let lines = enroll_instructions(&created("wardenroll_x_y"), "https://ward.example:8443", Some(&fp));
        assert!(lines.iter().any(|l| l.contains("shown only once")));
        assert!(lines.contains(&format!(
            "  ward-agent enroll --server https://ward.example:8443 --token wardenroll_x_y --ca-fingerprint {fp}"
        )));

        let lines = enroll_instructions(&created("wardenroll_x_y"), "http://[::1]:8443", None);
        assert!(
            lines.contains(
                &"  ward-agent enroll --server 'http://[::1]:8443' --token wardenroll_x_y".to_owned()
            )
        );
        assert!(lines.iter().any(|l| l.contains("No CA is saved")));
    }

    #[test]
    fn hostile_secret_is_quoted_and_neutralised() {
        let lines = enroll_instructions(&created("a'b\x1b[2J; rm -rf ~"), "https://w", None);
        let command = lines.iter().find(|l| l.contains("ward-agent")).unwrap();
        assert!(!command.chars().any(char::is_control), "{command}");
        assert!(
            command.contains("--token 'a'\\''b\\u{1b}[2J; rm -rf ~'"),
            "{command}"
        );
    }

    #[test]
    fn fingerprint_comes_from_the_trusted_ca() {
        let pin = "AB:".repeat(31) + "AB";
        assert_eq!(ca_fingerprint(&Trust::Fingerprint(pin)), Some("ab".repeat(32)));
        assert_eq!(ca_fingerprint(&Trust::System), None);
        assert_eq!(ca_fingerprint(&Trust::CaPem("not a pem".into())), None);
    }

    #[test]
    fn bad_selector_is_reported_as_is_and_exits_1() {
        let error = CliError::from(ClientError::Api {
            status: 422,
            code: ErrorCode::InvalidInput,
            message: "filter: at column 12: expected a value, found end of input".into(),
            request_id: None,
        });
        assert_eq!(error.exit_code(), 1);
        assert_eq!(
            error.report(),
            "error: filter: at column 12: expected a value, found end of input (invalid_input)"
        );
    }
}
