//! Policies, compliance and dynamic groups on the wire.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// One policy file as read by the client: its path (for error messages) and its YAML text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub path: String,
    pub text: String,
}

/// `POST /policies/apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyPoliciesRequest {
    pub files: Vec<PolicyFile>,
    /// Validate and report what would change; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Remove the policies that are not among `files` (the files are the whole desired set).
    #[serde(default)]
    pub prune: bool,
}

/// A new version stored by an apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyVersionRef {
    pub name: String,
    pub version: i64,
}

/// Two or more policies setting one thing differently on the same devices; the strictest applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SettingConflictView {
    pub setting: String,
    /// (policy, value) pairs.
    pub values: Vec<(String, String)>,
    pub applied: String,
    /// How many devices it concerns.
    pub devices: u64,
}

/// A device whose overall compliance an apply changes (or would change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ComplianceChangeView {
    pub device_id: String,
    pub hostname: String,
    pub site: String,
    pub before: String,
    pub after: String,
}

/// The answer to `POST /policies/apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApplyPoliciesResponse {
    pub dry_run: bool,
    /// Whether anything was stored (false for a dry run or when nothing changed).
    pub applied: bool,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
    /// The versions stored.
    pub versions: Vec<PolicyVersionRef>,
    /// Problems that do not stop the apply (a scope that matches no device).
    pub warnings: Vec<String>,
    pub conflicts: Vec<SettingConflictView>,
    /// Devices whose overall compliance changes, at most 200 listed.
    pub compliance_changes: Vec<ComplianceChangeView>,
    pub compliance_changes_total: u64,
}

/// A check of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckView {
    pub id: String,
    pub description: String,
    pub severity: String,
    pub expr: String,
    pub hint: String,
}

/// One version of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyView {
    pub name: String,
    pub version: i64,
    pub removed: bool,
    pub description: String,
    pub scope: String,
    pub checks: Vec<CheckView>,
    /// The settings pushed to devices in scope.
    pub settings: serde_json::Value,
    /// `{"action": ..., "grace": ...}` or null.
    pub remediation: serde_json::Value,
    pub created_at: String,
    pub created_by: String,
    /// The YAML text as applied.
    pub source: String,
    /// Devices in scope now (current versions only).
    pub devices_in_scope: Option<u64>,
}

/// `GET /policies/{name}/diff?from=V1&to=V2`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyDiffView {
    pub name: String,
    pub from: i64,
    pub to: i64,
    /// Unified diff of the two YAML texts.
    pub diff: String,
}

/// Query for the diff.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PolicyDiffQuery {
    pub from: i64,
    pub to: i64,
}

/// The result of one check on one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckResultView {
    pub policy: String,
    pub policy_version: i64,
    pub check: String,
    pub severity: String,
    /// `pass`, `fail` or `unknown`.
    pub status: String,
    /// When the status last changed.
    pub since: String,
    pub evaluated_at: String,
    pub description: String,
    pub hint: String,
}

/// `GET /devices/{id}/compliance`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceComplianceView {
    pub device_id: String,
    /// `compliant`, `non_compliant`, `unknown` or `not_applicable`.
    pub status: String,
    pub results: Vec<CheckResultView>,
    /// The effective settings pushed to the device and what they resolved from.
    pub settings: serde_json::Value,
    pub conflicts: Vec<SettingConflictView>,
}

/// A device's compliance in brief, part of every device view (and so of selectors:
/// `compliance.status = "non_compliant"`, `compliance.failing = "encryption/root"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ComplianceBrief {
    pub status: String,
    /// Failing checks as `policy/check`.
    pub failing: Vec<String>,
}

impl Default for ComplianceBrief {
    fn default() -> Self {
        Self {
            status: "not_applicable".into(),
            failing: Vec::new(),
        }
    }
}

/// One row of `GET /compliance/summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ComplianceSummaryRow {
    /// The site (hospital/ward), or `*` for the total.
    pub site: String,
    /// The device class, or `*` for all classes.
    pub class: String,
    pub devices: u64,
    pub compliant: u64,
    pub non_compliant: u64,
    pub unknown: u64,
    pub not_applicable: u64,
    /// compliant / (devices - not_applicable), in percent; null when no policy applies.
    pub percent: Option<f64>,
}

/// `GET /compliance/summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ComplianceSummary {
    pub total: ComplianceSummaryRow,
    pub rows: Vec<ComplianceSummaryRow>,
}

/// A dynamic group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    pub name: String,
    pub selector: String,
    pub description: String,
    /// Devices the caller can see that are in the group now.
    pub devices: u64,
    pub created_at: String,
    pub updated_at: String,
}

/// `PUT /groups/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutGroupRequest {
    pub selector: String,
    #[serde(default)]
    pub description: String,
}
