//! Settings pushed to devices, and how the settings of several policies are merged.
//!
//! The rule is deterministic and errs on the safe side: the **strictest** value wins (the shortest
//! screen-lock timeout, blocking over allowing, the fewest offline hours, the shortest report
//! interval, a package denied anywhere stays denied). Every setting on which two policies disagree
//! is reported as a [`SettingConflict`], naming the policies and the value that applies.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// Most package names in one list.
pub const MAX_PACKAGES: usize = 500;

/// What a policy asks devices to enforce. Every field is optional: a policy sets only what it
/// cares about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Lock the screen after this many idle seconds (1 to 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen_lock_timeout_seconds: Option<u32>,
    /// Block USB mass storage (the kernel module is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usb_storage_blocked: Option<bool>,
    /// Keep a host firewall running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall_required: Option<bool>,
    #[serde(default, skip_serializing_if = "PackageRules::is_empty")]
    pub packages: PackageRules,
    /// Lock the device after this many hours without reaching the server (1 to 720).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_lock_hours: Option<u32>,
    /// How often the device reports its facts, in seconds (60 to 86 400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_interval_seconds: Option<u32>,
}

/// Packages that must not be installed (`denied`), and exceptions that policies explicitly allow.
/// Names are exact package names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageRules {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub allowed: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub denied: BTreeSet<String>,
}

impl PackageRules {
    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty() && self.denied.is_empty()
    }
}

impl Settings {
    pub fn is_empty(&self) -> bool {
        *self == Settings::default()
    }

    /// Every out-of-range value, named by its setting.
    pub fn validate(&self) -> Vec<ValidationError> {
        let mut problems = Vec::new();
        let mut range = |field: &'static str, value: Option<u32>, low: u32, high: u32| {
            if let Some(value) = value
                && !(low..=high).contains(&value)
            {
                problems.push(ValidationError::new(
                    field,
                    format!("{value} is outside {low} to {high}"),
                ));
            }
        };
        range(
            "screen_lock_timeout_seconds",
            self.screen_lock_timeout_seconds,
            1,
            3600,
        );
        range("offline_lock_hours", self.offline_lock_hours, 1, 720);
        range(
            "report_interval_seconds",
            self.report_interval_seconds,
            60,
            86_400,
        );
        for (field, names) in [
            ("packages.allowed", &self.packages.allowed),
            ("packages.denied", &self.packages.denied),
        ] {
            if names.len() > MAX_PACKAGES {
                problems.push(ValidationError::new(
                    field,
                    format!("more than {MAX_PACKAGES} packages"),
                ));
            }
            if let Some(bad) = names.iter().find(|name| !valid_package_name(name)) {
                problems.push(ValidationError::new(
                    field,
                    format!(
                        "{bad:?} is not a package name (1 to 128 of a-z, A-Z, 0-9, '+', '-', '.', '_', ':')"
                    ),
                ));
            }
        }
        if let Some(both) = self.packages.allowed.intersection(&self.packages.denied).next() {
            problems.push(ValidationError::new(
                "packages",
                format!("{both:?} is both allowed and denied"),
            ));
        }
        problems
    }
}

fn valid_package_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._:".contains(&b))
}

/// A short stable digest of effective settings (hex SHA-256 of their canonical JSON, 16 bytes):
/// the server compares it with what it last sent, the agent reports what it applied.
pub fn settings_digest(settings: &Settings) -> String {
    use sha2::{Digest, Sha256};
    let text = serde_json::to_string(settings).unwrap_or_default();
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

/// Two or more policies setting one thing differently for the same device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingConflict {
    pub setting: String,
    /// (policy, the value it asks for), by policy name.
    pub values: Vec<(String, String)>,
    /// The value that applies.
    pub applied: String,
}

/// Merges the settings of the policies that apply to one device (`(policy name, settings)`, in
/// any order: the result does not depend on it). Returns the effective settings and the conflicts.
pub fn merge_settings<'a>(
    policies: impl IntoIterator<Item = (&'a str, &'a Settings)>,
) -> (Settings, Vec<SettingConflict>) {
    let mut policies: Vec<(&str, &Settings)> = policies.into_iter().collect();
    policies.sort_by_key(|(name, _)| *name);
    let mut merged = Settings::default();
    let mut conflicts = Vec::new();

    merge_scalar(
        &policies,
        "screen_lock_timeout_seconds",
        |s| s.screen_lock_timeout_seconds,
        Ord::min,
        &mut merged.screen_lock_timeout_seconds,
        &mut conflicts,
    );
    merge_scalar(
        &policies,
        "usb_storage_blocked",
        |s| s.usb_storage_blocked,
        Ord::max,
        &mut merged.usb_storage_blocked,
        &mut conflicts,
    );
    merge_scalar(
        &policies,
        "firewall_required",
        |s| s.firewall_required,
        Ord::max,
        &mut merged.firewall_required,
        &mut conflicts,
    );
    merge_scalar(
        &policies,
        "offline_lock_hours",
        |s| s.offline_lock_hours,
        Ord::min,
        &mut merged.offline_lock_hours,
        &mut conflicts,
    );
    merge_scalar(
        &policies,
        "report_interval_seconds",
        |s| s.report_interval_seconds,
        Ord::min,
        &mut merged.report_interval_seconds,
        &mut conflicts,
    );

    for (_, settings) in &policies {
        merged
            .packages
            .denied
            .extend(settings.packages.denied.iter().cloned());
    }
    for (name, settings) in &policies {
        for package in &settings.packages.allowed {
            if merged.packages.denied.contains(package) {
                let mut values = vec![(name.to_string(), "allowed".to_string())];
                values.extend(
                    policies
                        .iter()
                        .filter(|(_, other)| other.packages.denied.contains(package))
                        .map(|(other, _)| (other.to_string(), "denied".to_string())),
                );
                values.sort();
                conflicts.push(SettingConflict {
                    setting: format!("packages.{package}"),
                    values,
                    applied: "denied".into(),
                });
            } else {
                merged.packages.allowed.insert(package.clone());
            }
        }
    }
    (merged, conflicts)
}

fn merge_scalar<T: Copy + Ord + ToString>(
    policies: &[(&str, &Settings)],
    setting: &str,
    get: impl Fn(&Settings) -> Option<T>,
    strictest: fn(T, T) -> T,
    out: &mut Option<T>,
    conflicts: &mut Vec<SettingConflict>,
) {
    let values: Vec<(&str, T)> = policies
        .iter()
        .filter_map(|(name, settings)| get(settings).map(|value| (*name, value)))
        .collect();
    let Some(applied) = values.iter().map(|(_, value)| *value).reduce(strictest) else {
        return;
    };
    *out = Some(applied);
    if values.iter().any(|(_, value)| *value != applied) {
        conflicts.push(SettingConflict {
            setting: setting.to_owned(),
            values: values
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            applied: applied.to_string(),
        });
    }
}
