//! Policies as code: a scope (a selector), checks (selectors over a device's facts that must
//! hold), settings pushed to the devices in scope, and what to do after a grace period when a
//! device stays non-compliant.
//!
//! A policy file is parsed (YAML, by the server) into a [`PolicySpec`], then compiled by
//! [`Policy::compile`], which parses every expression and checks its fields against
//! [`schema`]. Evaluation is pure: [`Policy::evaluate`] gives one [`CheckStatus`] per check for a
//! device's selector subject. Settings of several policies that reach the same device are merged
//! by [`merge_settings`]: the strictest value wins, and every disagreement is reported.

pub mod schema;
mod settings;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::ValidationError;
use crate::device::string_enum;
use crate::selector::{Selector, Truth};

pub use settings::{PackageRules, SettingConflict, Settings, merge_settings, settings_digest};

/// Most checks in one policy.
pub const MAX_CHECKS: usize = 100;
/// Longest policy or check name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest description or hint.
pub const MAX_TEXT_LEN: usize = 2000;
/// Longest grace period: 90 days.
pub const MAX_GRACE_SECONDS: u64 = 90 * 86_400;

string_enum!(
    /// How much a failed check matters.
    CheckSeverity, "severity", {
        Low => "low",
        Medium => "medium",
        High => "high",
        Critical => "critical",
    }
);

string_enum!(
    /// What happens to a device still non-compliant after the grace period.
    RemediationAction, "action", {
        /// Tell the device's user (a message on screen) and raise the webhook; nothing is blocked.
        Notify => "notify",
        /// Isolate from the network (the Ward channel stays up).
        Quarantine => "quarantine",
        /// Lock the screen.
        Lock => "lock",
    }
);

string_enum!(
    /// The result of one check on one device.
    CheckStatus, "status", {
        Pass => "pass",
        Fail => "fail",
        /// The device does not report what the check needs.
        Unknown => "unknown",
    }
);

string_enum!(
    /// A device's overall compliance.
    ComplianceStatus, "compliance", {
        Compliant => "compliant",
        /// At least one check fails.
        NonCompliant => "non_compliant",
        /// No check fails but some cannot be decided.
        Unknown => "unknown",
        /// No policy applies.
        NotApplicable => "not_applicable",
    }
);

impl ComplianceStatus {
    /// The overall status from every check result of every policy that applies.
    pub fn of(results: impl IntoIterator<Item = CheckStatus>) -> Self {
        let mut status = ComplianceStatus::NotApplicable;
        for result in results {
            status = match (status, result) {
                (_, CheckStatus::Fail) | (ComplianceStatus::NonCompliant, _) => {
                    ComplianceStatus::NonCompliant
                }
                (_, CheckStatus::Unknown) | (ComplianceStatus::Unknown, _) => ComplianceStatus::Unknown,
                _ => ComplianceStatus::Compliant,
            };
        }
        status
    }
}

/// A policy as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Which devices the policy is for (selector text).
    pub scope: String,
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
    #[serde(default, skip_serializing_if = "Settings::is_empty")]
    pub settings: Settings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<RemediationSpec>,
}

/// One check as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    pub id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_severity")]
    pub severity: CheckSeverity,
    /// What must hold (selector text).
    pub expr: String,
    /// How to fix a failure, shown with it.
    #[serde(default)]
    pub hint: String,
}

fn default_severity() -> CheckSeverity {
    CheckSeverity::Medium
}

/// What to do after the grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemediationSpec {
    pub action: RemediationAction,
    /// How long a device may stay non-compliant first: `30m`, `24h`, `7d` (default `24h`).
    #[serde(default = "default_grace")]
    pub grace: String,
}

fn default_grace() -> String {
    "24h".into()
}

/// A problem found while compiling a policy: where (`checks[2].expr`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    pub location: String,
    pub message: String,
}

impl std::fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// A compiled check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub id: String,
    pub description: String,
    pub severity: CheckSeverity,
    pub expr: Selector,
    pub hint: String,
}

/// A compiled, validated policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub spec: PolicySpec,
    pub scope: Selector,
    pub checks: Vec<Check>,
    /// The remediation's grace period in seconds, when there is a remediation.
    pub grace_seconds: Option<u64>,
}

impl Policy {
    /// Validates `spec` and parses its expressions. Every problem is reported, not just the first.
    pub fn compile(spec: PolicySpec) -> Result<Policy, Vec<PolicyProblem>> {
        let mut problems = Vec::new();
        let mut problem =
            |location: String, message: String| problems.push(PolicyProblem { location, message });

        if let Err(err) = validate_name(&spec.name) {
            problem("name".into(), err.reason);
        }
        if spec.description.chars().count() > MAX_TEXT_LEN {
            problem(
                "description".into(),
                format!("longer than {MAX_TEXT_LEN} characters"),
            );
        }
        let scope = compile_expr(&spec.scope, "scope", &mut problem);
        if spec.checks.is_empty() && spec.settings.is_empty() {
            problem(
                "checks".into(),
                "a policy needs at least one check or one setting".into(),
            );
        }
        if spec.checks.len() > MAX_CHECKS {
            problem("checks".into(), format!("more than {MAX_CHECKS} checks"));
        }
        let mut checks = Vec::with_capacity(spec.checks.len());
        for (index, check) in spec.checks.iter().enumerate() {
            let at = format!("checks[{index}]");
            if let Err(err) = validate_name(&check.id) {
                problem(format!("{at}.id"), err.reason);
            } else if spec.checks[..index].iter().any(|other| other.id == check.id) {
                problem(
                    format!("{at}.id"),
                    format!("check `{}` is defined twice", check.id),
                );
            }
            for (field, text) in [("description", &check.description), ("hint", &check.hint)] {
                if text.chars().count() > MAX_TEXT_LEN {
                    problem(
                        format!("{at}.{field}"),
                        format!("longer than {MAX_TEXT_LEN} characters"),
                    );
                }
            }
            if let Some(expr) = compile_expr(&check.expr, &format!("{at}.expr"), &mut problem) {
                checks.push(Check {
                    id: check.id.clone(),
                    description: check.description.clone(),
                    severity: check.severity,
                    expr,
                    hint: check.hint.clone(),
                });
            }
        }
        for err in spec.settings.validate() {
            problem(format!("settings.{}", err.field), err.reason);
        }
        let grace_seconds = match &spec.remediation {
            Some(remediation) => match parse_duration(&remediation.grace) {
                Ok(seconds) if seconds <= MAX_GRACE_SECONDS => Some(seconds),
                Ok(_) => {
                    problem("remediation.grace".into(), "at most 90 days".into());
                    None
                }
                Err(err) => {
                    problem("remediation.grace".into(), err.reason);
                    None
                }
            },
            None => None,
        };
        match scope {
            Some(scope) if problems.is_empty() => Ok(Policy {
                spec,
                scope,
                checks,
                grace_seconds,
            }),
            _ => Err(problems),
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Whether the policy is for the device with selector subject `subject`.
    pub fn applies_to(&self, subject: &serde_json::Value) -> bool {
        self.scope.matches(subject)
    }

    /// One status per check, in the policy's order.
    pub fn evaluate(&self, subject: &serde_json::Value) -> Vec<CheckStatus> {
        self.checks
            .iter()
            .map(|check| check_status(check.expr.evaluate(subject)))
            .collect()
    }
}

/// A check holds when its expression is true, fails when it is false, and is unknown when the
/// device does not report what it needs.
pub fn check_status(truth: Truth) -> CheckStatus {
    match truth {
        Truth::True => CheckStatus::Pass,
        Truth::False => CheckStatus::Fail,
        Truth::Unknown => CheckStatus::Unknown,
    }
}

fn compile_expr(text: &str, at: &str, problem: &mut impl FnMut(String, String)) -> Option<Selector> {
    match Selector::parse(text) {
        Ok(selector) => {
            let mut found = schema::check_selector(&selector);
            if let Some(field) = selector
                .fields()
                .into_iter()
                .find(|f| f.starts_with("compliance"))
            {
                found.push(format!(
                    "`{field}` is the result of policies; a policy cannot depend on it"
                ));
            }
            if found.is_empty() {
                Some(selector)
            } else {
                for message in found {
                    problem(at.to_owned(), message);
                }
                None
            }
        }
        Err(err) => {
            problem(at.to_owned(), err.to_string());
            None
        }
    }
}

/// Policy and check names: 1 to 64 of `a-z 0-9 - _ .`, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), ValidationError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if valid {
        Ok(())
    } else {
        Err(ValidationError::new(
            "name",
            format!("1 to {MAX_NAME_LEN} of a-z, 0-9, '-', '_', '.', starting with a letter or digit"),
        ))
    }
}

/// `90s`, `30m`, `24h`, `7d` (or a combination such as `1d12h`) in seconds.
pub fn parse_duration(text: &str) -> Result<u64, ValidationError> {
    let bad = || {
        ValidationError::new(
            "duration",
            format!("{text:?} is not a duration such as 30m, 24h or 7d"),
        )
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let value: u64 = digits.parse().map_err(|_| bad())?;
        total = value
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(total)
}
