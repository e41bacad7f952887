//! `ward incident declare|list|show|preview|approve|contain|status|lift|close|report`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Subcommand;
use ward_proto::{
    ClinicianConfirmation, CloseIncidentRequest, DeclareIncidentRequest, IncidentActionRequest,
    IncidentPreview, IncidentStatus, IncidentView,
};

use crate::connect::connect;
use crate::error::{CliError, Result};
use crate::files::{private_file, write_private_json};
use crate::global::GlobalArgs;
use crate::output::{Output, done, print_json};
use crate::prompt::confirm;
use crate::text::{neutralise, or_dash};

const DECLARE_EXAMPLES: &str = "\
Examples:
  ward incident declare --title 'Ransomware on ICU workstations' --severity critical \\
      --scope 'site within \"st-marys/icu\"' --aware-at 2026-11-28T09:00:00Z
  ward incident preview <ID>        clinical impact first: what each device will get
  ward incident contain <ID>        asks first; shows progress until devices acknowledge
  ward incident status <ID> --watch
  ward incident lift <ID>
  ward incident close <ID> --nature '...' --contact-point dpo@example.org --likely-consequences '...'
  ward incident report <ID> --format markdown -o report.md";

/// `ward incident ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum IncidentCommand {
    /// Declare an incident over the devices a selector matches
    #[command(after_help = DECLARE_EXAMPLES)]
    Declare {
        /// A short title
        #[arg(long)]
        title: String,
        /// Selector over devices, e.g. 'site within "st-marys"'
        #[arg(long, value_name = "SELECTOR")]
        scope: String,
        /// low, medium, high (default) or critical
        #[arg(long)]
        severity: Option<String>,
        /// breach (default) or lost (lost or stolen devices)
        #[arg(long)]
        situation: Option<String>,
        /// What is known so far
        #[arg(long, default_value = "")]
        description: String,
        /// When the breach was discovered, RFC 3339 (default now)
        #[arg(long, value_name = "TIME")]
        discovered_at: Option<String>,
        /// When the organisation became aware, RFC 3339 (default now); deadlines count from here
        #[arg(long, value_name = "TIME")]
        aware_at: Option<String>,
        /// Containment plan (default `default`)
        #[arg(long, value_name = "NAME")]
        plan: Option<String>,
    },
    /// List incidents, newest first
    List,
    /// Show an incident and its deadlines
    Show {
        /// Incident id
        id: String,
    },
    /// What containment would do: clinical impact first, then devices, offline, excluded
    Preview {
        /// Incident id
        id: String,
    },
    /// Approve as the second person (security or admin, not the declarer)
    Approve {
        /// Incident id
        id: String,
        /// Name of a clinician confirming actions beyond isolation on medical devices
        #[arg(long, value_name = "NAME", requires = "clinical_reason")]
        clinician: Option<String>,
        /// Why the clinician says it is safe for the patients
        #[arg(long, value_name = "TEXT", requires = "clinician")]
        clinical_reason: Option<String>,
    },
    /// Contain: send every device in scope its plan's actions, and follow them
    Contain {
        /// Incident id
        id: String,
        /// Do not ask for confirmation (required when not on a terminal)
        #[arg(long)]
        yes: bool,
        /// Name of a clinician confirming actions beyond isolation on medical devices
        #[arg(long, value_name = "NAME", requires = "clinical_reason")]
        clinician: Option<String>,
        /// Why the clinician says it is safe for the patients
        #[arg(long, value_name = "TEXT", requires = "clinician")]
        clinical_reason: Option<String>,
        /// Return at once instead of following progress
        #[arg(long)]
        no_wait: bool,
        /// Seconds to follow progress
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        wait: u64,
    },
    /// Progress and time-to-contain
    Status {
        /// Incident id
        id: String,
        /// Keep showing progress until nothing is outstanding (Ctrl-C to stop)
        #[arg(long)]
        watch: bool,
    },
    /// Lift containment (release, unlock) for all devices or the ones named
    Lift {
        /// Incident id
        id: String,
        /// Only this device (repeat for more)
        #[arg(long = "device", value_name = "ID")]
        devices: Vec<String>,
        /// Do not ask for confirmation (required when not on a terminal)
        #[arg(long)]
        yes: bool,
    },
    /// Close the incident with what the breach report needs
    Close {
        /// Incident id
        id: String,
        /// Nature of the breach (GDPR Art. 33(3)(a))
        #[arg(long)]
        nature: String,
        /// Data protection officer or other contact point
        #[arg(long, value_name = "CONTACT")]
        contact_point: String,
        /// Likely consequences of the breach
        #[arg(long, value_name = "TEXT")]
        likely_consequences: String,
        /// Approximate number of data subjects (individuals)
        #[arg(long, value_name = "N", default_value_t = 0)]
        data_subjects: u64,
        /// Approximate number of records
        #[arg(long, value_name = "N", default_value_t = 0)]
        records: u64,
        /// A category of data subjects, e.g. patients (repeat for more)
        #[arg(long = "subject-category", value_name = "CATEGORY")]
        subject_categories: Vec<String>,
        /// A type of PHI involved, e.g. diagnoses (repeat for more)
        #[arg(long = "phi-type", value_name = "TYPE")]
        phi_types: Vec<String>,
        /// Other measures taken or proposed
        #[arg(long, default_value = "")]
        measures: String,
        /// Revoke the certificates of every device in scope
        #[arg(long)]
        revoke_certificates: bool,
        /// Do not ask for confirmation (required when not on a terminal)
        #[arg(long)]
        yes: bool,
    },
    /// The breach report (a draft until the incident is closed)
    Report {
        /// Incident id
        id: String,
        /// json (default) or markdown
        #[arg(long, default_value = "json")]
        format: String,
        /// Write it to this file (created 0600) instead of standard output
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

fn clinician(name: Option<String>, reason: Option<String>) -> Option<ClinicianConfirmation> {
    match (name, reason) {
        (Some(name), Some(reason)) => Some(ClinicianConfirmation { name, reason }),
        _ => None,
    }
}

fn show(out: &Output, incident: &IncidentView) {
    out.fields(&[
        ("id", incident.id.clone()),
        ("title", incident.title.clone()),
        ("severity", incident.severity.clone()),
        ("state", incident.state.clone()),
        ("scope", incident.scope.clone()),
        ("plan", incident.plan.clone()),
        ("declared by", incident.declared_by.clone()),
        ("approved by", or_dash(incident.approved_by.as_deref())),
        ("aware", incident.aware_at.clone()),
        ("GDPR deadline (72 h)", incident.deadlines.gdpr.clone()),
        (
            "NIS2 early warning (24 h)",
            incident.deadlines.nis2_early_warning.clone(),
        ),
        ("HIPAA deadline (60 days)", incident.deadlines.hipaa.clone()),
    ]);
}

fn show_preview(out: &Output, preview: &IncidentPreview) {
    let impact = &preview.clinical_impact;
    out.line(&format!(
        "CLINICAL IMPACT: {} life-sustaining and {} high-criticality devices in scope",
        impact.life_sustaining, impact.high
    ));
    out.table(
        &["WARD", "DEVICES", "LIFE-SUSTAINING", "HIGH"],
        impact.wards.iter().map(|w| {
            vec![
                w.site.clone(),
                w.devices.to_string(),
                w.life_sustaining.to_string(),
                w.high.to_string(),
            ]
        }),
    );
    for loss in &impact.losses {
        out.line(&neutralise(&format!(
            "  {} {} device(s), {}: lose {}",
            loss.devices, loss.class, loss.action, loss.loses
        )));
    }
    let actions: Vec<String> = preview.actions.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    out.line(&format!("actions: {}", actions.join(", ")));
    out.line(&format!(
        "{} devices, {} offline (their commands wait), {} with actions withheld until a clinician confirms, {} excluded",
        preview.devices.len(),
        preview.offline,
        preview.needs_clinician,
        preview.excluded.len()
    ));
    for excluded in &preview.excluded {
        out.line(&neutralise(&format!(
            "  excluded {} ({}): {}",
            excluded.hostname, excluded.id, excluded.reason
        )));
    }
    if preview.needs_second_approval {
        out.line(&format!(
            "needs a second approver: {}",
            preview.approval_reasons.join("; ")
        ));
    }
}

fn progress_line(status: &IncidentStatus) -> String {
    let c = &status.contain;
    let t = &status.time_to_contain;
    format!(
        "acknowledged {}/{}, failed {}, outstanding {} ({} offline); time to contain p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
        c.acknowledged,
        c.commands,
        c.failed,
        c.outstanding,
        c.offline,
        t.p50_ms,
        t.p95_ms,
        t.p99_ms,
        t.max_ms
    )
}

/// Follows progress until only offline devices are outstanding (or `wait` runs out): a
/// rewritten line on a terminal, a plain line every few seconds otherwise.
async fn follow(
    client: &ward_client::Client,
    id: &str,
    wait: Option<Duration>,
    out: &Output,
) -> Result<IncidentStatus> {
    let terminal = std::io::stderr().is_terminal() && !out.json;
    let started = Instant::now();
    let mut last_line = Instant::now();
    loop {
        let status = client.incident_status(id).await?;
        let settled = status.contain.outstanding == status.contain.offline
            && status.lift.outstanding == status.lift.offline;
        let over = settled || wait.is_some_and(|w| started.elapsed() >= w);
        if terminal {
            eprint!("\r{}", progress_line(&status));
            if over {
                eprintln!();
            }
        } else if !out.json && (over || last_line.elapsed() >= Duration::from_secs(5)) {
            out.line(&progress_line(&status));
            last_line = Instant::now();
        }
        if over {
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub(crate) async fn incident(global: &GlobalArgs, command: IncidentCommand, out: &Output) -> Result {
    let client = connect(global)?;
    match command {
        IncidentCommand::Declare {
            title,
            scope,
            severity,
            situation,
            description,
            discovered_at,
            aware_at,
            plan,
        } => {
            let incident = client
                .declare_incident(&DeclareIncidentRequest {
                    title,
                    severity,
                    description,
                    situation,
                    discovered_at,
                    aware_at,
                    scope,
                    plan,
                })
                .await?;
            if out.json {
                return print_json(out, &incident);
            }
            show(out, &incident);
            out.line(&format!("next: ward incident preview {}", incident.id));
            Ok(())
        }
        IncidentCommand::List => {
            let incidents = client.list_incidents().await?;
            if out.json {
                return print_json(out, &incidents);
            }
            out.table(
                &["ID", "STATE", "SEVERITY", "TITLE", "DECLARED"],
                incidents.iter().map(|i| {
                    vec![
                        i.id.clone(),
                        i.state.clone(),
                        i.severity.clone(),
                        i.title.clone(),
                        i.created_at.clone(),
                    ]
                }),
            );
            Ok(())
        }
        IncidentCommand::Show { id } => {
            let incident = client.get_incident(&id).await?;
            if out.json {
                return print_json(out, &incident);
            }
            show(out, &incident);
            Ok(())
        }
        IncidentCommand::Preview { id } => {
            let preview = client.preview_incident(&id).await?;
            if out.json {
                return print_json(out, &preview);
            }
            show_preview(out, &preview);
            Ok(())
        }
        IncidentCommand::Approve {
            id,
            clinician: name,
            clinical_reason,
        } => {
            let request = IncidentActionRequest {
                clinician: clinician(name, clinical_reason),
                devices: None,
            };
            let incident = client.approve_incident(&id, &request).await?;
            if out.json {
                return print_json(out, &incident);
            }
            done(
                out,
                &format!(
                    "incident {} approved; contain it with `ward incident contain {}`",
                    incident.id, incident.id
                ),
            )
        }
        IncidentCommand::Contain {
            id,
            yes,
            clinician: name,
            clinical_reason,
            no_wait,
            wait,
        } => {
            let preview = client.preview_incident(&id).await?;
            if !out.json {
                show_preview(out, &preview);
            }
            confirm(
                &format!(
                    "contain {} devices ({} life-sustaining)",
                    preview.devices.len(),
                    preview.clinical_impact.life_sustaining
                ),
                yes,
            )?;
            let request = IncidentActionRequest {
                clinician: clinician(name, clinical_reason),
                devices: None,
            };
            let mut status = client.contain_incident(&id, &request).await?;
            if !no_wait {
                status = follow(&client, &id, Some(Duration::from_secs(wait)), out).await?;
            }
            if out.json {
                return print_json(out, &status);
            }
            out.line(&progress_line(&status));
            Ok(())
        }
        IncidentCommand::Status { id, watch } => {
            let status = if watch {
                follow(&client, &id, None, out).await?
            } else {
                client.incident_status(&id).await?
            };
            if out.json {
                return print_json(out, &status);
            }
            out.line(&format!("state: {}", status.state));
            out.line(&progress_line(&status));
            Ok(())
        }
        IncidentCommand::Lift { id, devices, yes } => {
            let what = if devices.is_empty() {
                "lift containment on every device".to_owned()
            } else {
                format!("lift containment on {} device(s)", devices.len())
            };
            confirm(&format!("{what} of incident {id}"), yes)?;
            let request = IncidentActionRequest {
                clinician: None,
                devices: (!devices.is_empty()).then_some(devices),
            };
            let status = client.lift_incident(&id, &request).await?;
            if out.json {
                return print_json(out, &status);
            }
            done(
                out,
                &format!(
                    "lifting: {} commands queued; state {}",
                    status.lift.commands, status.state
                ),
            )
        }
        IncidentCommand::Close {
            id,
            nature,
            contact_point,
            likely_consequences,
            data_subjects,
            records,
            subject_categories,
            phi_types,
            measures,
            revoke_certificates,
            yes,
        } => {
            if revoke_certificates {
                confirm(
                    &format!("close incident {id} and revoke every device in scope"),
                    yes,
                )?;
            }
            let request = CloseIncidentRequest {
                nature,
                data_subject_categories: subject_categories,
                data_subjects,
                records,
                phi_types,
                contact_point,
                likely_consequences,
                measures,
                revoke_certificates,
            };
            let incident = client.close_incident(&id, &request).await?;
            if out.json {
                return print_json(out, &incident);
            }
            done(
                out,
                &format!(
                    "incident {} closed; `ward incident report {}` for the breach report",
                    incident.id, incident.id
                ),
            )
        }
        IncidentCommand::Report { id, format, output } => {
            match format.as_str() {
                "json" => {
                    let report = client.incident_report(&id).await?;
                    match output {
                        Some(path) => {
                            write_private_json(&path, &report)
                                .map_err(|error| CliError::local("io", error))?;
                            done(out, &format!("wrote the report to {}", path.display()))
                        }
                        None => print_json(out, &report),
                    }
                }
                "markdown" => {
                    let text = client.incident_report_markdown(&id).await?;
                    match output {
                        Some(path) => {
                            let mut file =
                                private_file(&path).map_err(|error| CliError::local("io", error))?;
                            std::io::Write::write_all(&mut file, text.as_bytes())
                                .map_err(|error| CliError::local("io", error))?;
                            done(out, &format!("wrote the report to {}", path.display()))
                        }
                        None => {
                            // Device-reported names are in it: neutralise what a terminal would obey.
                            for line in text.lines() {
                                out.line(&neutralise(line));
                            }
                            Ok(())
                        }
                    }
                }
                other => Err(CliError::Usage(format!(
                    "--format: json or markdown, not {other:?}"
                ))),
            }
        }
    }
}
