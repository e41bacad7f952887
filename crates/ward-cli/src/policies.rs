//! `ward policy apply|list|show|history|diff`, `ward compliance summary|show` and
//! `ward group list|set|delete`.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use ward_proto::{ApplyPoliciesRequest, ApplyPoliciesResponse, DeviceQuery, PolicyFile, PutGroupRequest};

use crate::connect::connect;
use crate::error::{CliError, Result};
use crate::global::GlobalArgs;
use crate::output::{Output, done, print_json};
use crate::text::{neutralise, or_dash};

/// Most files read from a directory.
const MAX_FILES: usize = 500;

const POLICY_EXAMPLES: &str = "\
Examples:
  ward policy apply -f policies/ --dry-run    what would change, changing nothing
  ward policy apply -f policies/             store a new version of every changed policy
  ward policy apply -f policies/ --prune     ...and remove policies no longer in the directory
  ward policy history disk-encryption
  ward policy diff disk-encryption 1 2
  ward compliance summary
  ward devices list --filter 'compliance.status = \"non_compliant\"'

A shipped healthcare baseline is in policies/baseline/ in the source tree.";

/// `ward policy ...`.
#[derive(Debug, Clone, Subcommand)]
#[command(after_help = POLICY_EXAMPLES)]
pub enum PolicyCommand {
    /// Validate and apply policy files (YAML); --dry-run shows the diff and changes nothing
    Apply {
        /// A policy file, or a directory of *.yaml / *.yml files (not recursive)
        #[arg(short = 'f', long = "file", value_name = "FILE|DIR", required = true)]
        paths: Vec<PathBuf>,
        /// Show what would change (policies, settings conflicts, device compliance) and stop
        #[arg(long)]
        dry_run: bool,
        /// Remove stored policies that are not in the given files
        #[arg(long)]
        prune: bool,
    },
    /// Current policies and how many devices each covers
    List,
    /// The newest version of a policy, with its YAML
    Show { name: String },
    /// Every version of a policy: who applied it and when
    History { name: String },
    /// Unified diff between two versions of a policy
    Diff { name: String, from: i64, to: i64 },
}

/// `ward compliance ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum ComplianceCommand {
    /// Compliance per site and device class
    Summary {
        /// Only devices matching this selector
        #[arg(long, value_name = "SELECTOR")]
        filter: Option<String>,
    },
    /// One device's check results and the settings pushed to it
    Show { id: String },
}

/// `ward group ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum GroupCommand {
    /// Dynamic groups and their current size
    List,
    /// Create or change a group: a named selector usable anywhere as `groups = "NAME"`
    Set {
        name: String,
        /// e.g. 'site within "st-marys/icu" and class = "workstation"'
        #[arg(long, value_name = "SELECTOR")]
        selector: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a group
    Delete { name: String },
}

/// Reads the files named (directories: their *.yaml and *.yml files, sorted).
fn read_files(paths: &[PathBuf]) -> Result<Vec<PolicyFile>> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .map_err(|e| CliError::local("io", anyhow::anyhow!("{}: {e}", path.display())))?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| CliError::local("io", anyhow::anyhow!("{}: {e}", path.display())))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| is_yaml(p) && p.is_file())
                .collect();
            entries.sort();
            if entries.is_empty() {
                return Err(CliError::Usage(format!(
                    "{}: no .yaml or .yml files in it",
                    path.display()
                )));
            }
            for entry in entries {
                files.push(read_one(&entry)?);
            }
        } else {
            files.push(read_one(path)?);
        }
        if files.len() > MAX_FILES {
            return Err(CliError::Usage(format!("more than {MAX_FILES} policy files")));
        }
    }
    Ok(files)
}

fn is_yaml(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

fn read_one(path: &Path) -> Result<PolicyFile> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::local("io", anyhow::anyhow!("{}: {e}", path.display())))?;
    Ok(PolicyFile {
        path: path.display().to_string(),
        text,
    })
}

fn print_apply(out: &Output, result: &ApplyPoliciesResponse) {
    let list = |names: &[String]| {
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        }
    };
    out.fields(&[
        ("added", list(&result.added)),
        ("changed", list(&result.changed)),
        ("removed", list(&result.removed)),
        ("unchanged", list(&result.unchanged)),
    ]);
    for warning in &result.warnings {
        out.line(&format!("warning: {}", neutralise(warning)));
    }
    if result.compliance_changes_total > 0 {
        out.line(&format!(
            "{} device(s) change compliance{}:",
            result.compliance_changes_total,
            if result.compliance_changes_total as usize > result.compliance_changes.len() {
                format!(" (first {} shown)", result.compliance_changes.len())
            } else {
                String::new()
            }
        ));
        out.table(
            &["DEVICE", "HOSTNAME", "SITE", "BEFORE", "AFTER"],
            result.compliance_changes.iter().map(|c| {
                vec![
                    c.device_id.clone(),
                    c.hostname.clone(),
                    c.site.clone(),
                    c.before.clone(),
                    c.after.clone(),
                ]
            }),
        );
    } else {
        out.line("no device changes compliance");
    }
    if result.dry_run {
        out.line("dry run: nothing was changed");
    } else if result.applied {
        let versions: Vec<String> = result
            .versions
            .iter()
            .map(|v| format!("{} v{}", v.name, v.version))
            .collect();
        out.line(&format!("applied: {}", versions.join(", ")));
    } else {
        out.line("nothing to apply: the stored policies already match");
    }
}

pub(crate) async fn policy(global: &GlobalArgs, command: PolicyCommand, out: &Output) -> Result {
    match command {
        PolicyCommand::Apply {
            paths,
            dry_run,
            prune,
        } => {
            // Read and check the files before touching the network: a typo in a path is local.
            let files = read_files(&paths)?;
            let client = connect(global)?;
            let result = client
                .apply_policies(&ApplyPoliciesRequest {
                    files,
                    dry_run,
                    prune,
                })
                .await?;
            if out.json {
                return print_json(out, &result);
            }
            print_apply(out, &result);
            Ok(())
        }
        PolicyCommand::List => {
            let policies = connect(global)?.list_policies().await?;
            if out.json {
                return print_json(out, &policies);
            }
            out.table(
                &[
                    "NAME",
                    "VERSION",
                    "CHECKS",
                    "DEVICES",
                    "REMEDIATION",
                    "APPLIED",
                    "BY",
                ],
                policies.iter().map(|p| {
                    vec![
                        p.name.clone(),
                        p.version.to_string(),
                        p.checks.len().to_string(),
                        p.devices_in_scope.map_or("-".into(), |n| n.to_string()),
                        p.remediation
                            .get("action")
                            .and_then(|a| a.as_str())
                            .map(|a| {
                                format!(
                                    "{a} after {}",
                                    p.remediation.get("grace").and_then(|g| g.as_str()).unwrap_or("?")
                                )
                            })
                            .unwrap_or_else(|| "-".into()),
                        p.created_at.clone(),
                        p.created_by.clone(),
                    ]
                }),
            );
            Ok(())
        }
        PolicyCommand::Show { name } => {
            let policy = connect(global)?.get_policy(&name).await?;
            if out.json {
                return print_json(out, &policy);
            }
            out.fields(&[
                ("name", policy.name.clone()),
                ("version", policy.version.to_string()),
                ("removed", if policy.removed { "yes".into() } else { "no".into() }),
                (
                    "applied",
                    format!("{} by {}", policy.created_at, policy.created_by),
                ),
                ("scope", policy.scope.clone()),
            ]);
            out.line("");
            for line in policy.source.lines() {
                out.line(&neutralise(line));
            }
            Ok(())
        }
        PolicyCommand::History { name } => {
            let versions = connect(global)?.policy_history(&name).await?;
            if out.json {
                return print_json(out, &versions);
            }
            out.table(
                &["VERSION", "APPLIED", "BY", "CHECKS", "REMOVED"],
                versions.iter().map(|v| {
                    vec![
                        v.version.to_string(),
                        v.created_at.clone(),
                        v.created_by.clone(),
                        v.checks.len().to_string(),
                        if v.removed { "yes".into() } else { "no".into() },
                    ]
                }),
            );
            Ok(())
        }
        PolicyCommand::Diff { name, from, to } => {
            let diff = connect(global)?.policy_diff(&name, from, to).await?;
            if out.json {
                return print_json(out, &diff);
            }
            if diff.diff.is_empty() {
                out.line(&format!("versions {from} and {to} of {name} have the same text"));
            }
            for line in diff.diff.lines() {
                out.line(&neutralise(line));
            }
            Ok(())
        }
    }
}

pub(crate) async fn compliance(global: &GlobalArgs, command: ComplianceCommand, out: &Output) -> Result {
    let client = connect(global)?;
    match command {
        ComplianceCommand::Summary { filter } => {
            let summary = client
                .compliance_summary(&DeviceQuery {
                    filter,
                    include_retired: false,
                })
                .await?;
            if out.json {
                return print_json(out, &summary);
            }
            let percent = |p: Option<f64>| p.map_or("-".into(), |p| format!("{p:.1}%"));
            out.table(
                &[
                    "SITE",
                    "CLASS",
                    "DEVICES",
                    "COMPLIANT",
                    "NON-COMPLIANT",
                    "UNKNOWN",
                    "NO POLICY",
                    "%",
                ],
                summary
                    .rows
                    .iter()
                    .chain(std::iter::once(&summary.total))
                    .map(|r| {
                        vec![
                            if r.site == "*" {
                                "all".into()
                            } else {
                                r.site.clone()
                            },
                            if r.class == "*" {
                                "all".into()
                            } else {
                                r.class.clone()
                            },
                            r.devices.to_string(),
                            r.compliant.to_string(),
                            r.non_compliant.to_string(),
                            r.unknown.to_string(),
                            r.not_applicable.to_string(),
                            percent(r.percent),
                        ]
                    }),
            );
            Ok(())
        }
        ComplianceCommand::Show { id } => {
            let view = client.device_compliance(&id).await?;
            if out.json {
                return print_json(out, &view);
            }
            out.fields(&[
                ("device", view.device_id.clone()),
                ("status", view.status.clone()),
            ]);
            out.table(
                &["POLICY", "CHECK", "SEVERITY", "STATUS", "SINCE", "HINT"],
                view.results.iter().map(|r| {
                    vec![
                        format!("{} v{}", r.policy, r.policy_version),
                        r.check.clone(),
                        r.severity.clone(),
                        r.status.clone(),
                        r.since.clone(),
                        if r.status == "pass" {
                            "-".into()
                        } else {
                            or_dash(Some(&r.hint).filter(|h| !h.is_empty()).map(|h| h.as_str()))
                        },
                    ]
                }),
            );
            out.line(&format!("settings: {}", neutralise(&view.settings.to_string())));
            for conflict in &view.conflicts {
                let values: Vec<String> = conflict.values.iter().map(|(p, v)| format!("{p}: {v}")).collect();
                out.line(&neutralise(&format!(
                    "conflict: {} ({}); {} applies",
                    conflict.setting,
                    values.join(", "),
                    conflict.applied
                )));
            }
            Ok(())
        }
    }
}

pub(crate) async fn group(global: &GlobalArgs, command: GroupCommand, out: &Output) -> Result {
    let client = connect(global)?;
    match command {
        GroupCommand::List => {
            let groups = client.list_groups().await?;
            if out.json {
                return print_json(out, &groups);
            }
            out.table(
                &["NAME", "DEVICES", "SELECTOR", "DESCRIPTION"],
                groups.iter().map(|g| {
                    vec![
                        g.name.clone(),
                        g.devices.to_string(),
                        g.selector.clone(),
                        g.description.clone(),
                    ]
                }),
            );
            Ok(())
        }
        GroupCommand::Set {
            name,
            selector,
            description,
        } => {
            let group = client
                .put_group(
                    &name,
                    &PutGroupRequest {
                        selector,
                        description,
                    },
                )
                .await?;
            if out.json {
                return print_json(out, &group);
            }
            out.line(&neutralise(&format!(
                "group {} now holds {} device(s); use it as: groups = \"{}\"",
                group.name, group.devices, group.name
            )));
            Ok(())
        }
        GroupCommand::Delete { name } => {
            client.delete_group(&name).await?;
            done(out, &format!("deleted group {name}"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_yaml_files_of_a_directory_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.yaml"), "name: b").unwrap();
        std::fs::write(dir.path().join("a.yml"), "name: a").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a policy").unwrap();
        let files = read_files(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.text.as_str()).collect();
        assert_eq!(names, vec!["name: a", "name: b"]);
    }

    #[test]
    fn missing_and_empty_paths_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_files(&[dir.path().join("nope.yaml")]).unwrap_err();
        assert!(format!("{err:?}").contains("nope.yaml"), "{err:?}");
        let err = read_files(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(
            matches!(err, CliError::Usage(ref m) if m.contains("no .yaml")),
            "{err:?}"
        );
    }
}
