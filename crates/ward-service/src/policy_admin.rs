//! Policies as code (apply with dry run, every version kept, diffs), compliance results and
//! summaries, and dynamic groups.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use ward_core::caller::Caller;
use ward_core::devices::{load, select_records};
use ward_core::error::{ServiceError, ServiceResult};
use ward_core::policies::{self, Plan};
use ward_core::state::AppState;
use ward_core::views::rfc3339;
use ward_domain::access::Permission;
use ward_domain::audit::Outcome;
use ward_domain::policy::{ComplianceStatus, PolicySpec, validate_name};
use ward_domain::selector::Selector;
use ward_proto::{
    ApplyPoliciesRequest, ApplyPoliciesResponse, CheckResultView, CheckView, ComplianceSummary,
    ComplianceSummaryRow, DeviceComplianceView, DeviceQuery, GroupView, PolicyDiffQuery, PolicyDiffView,
    PolicyVersionRef, PolicyView, PutGroupRequest, SettingConflictView,
};
use ward_store::{GroupRecord, PolicyVersionRecord};

/// Largest request to `/policies/apply`.
pub const MAX_APPLY_BYTES: usize = 4 * 1024 * 1024;
/// Most compliance changes listed in an apply's answer.
const MAX_CHANGES_LISTED: usize = 200;

/// Requires `ManagePolicies` and an unrestricted site scope (policies reach every site).
async fn authorize_manage(
    state: &AppState,
    caller: &Caller,
    action: &str,
    target: &str,
) -> ServiceResult<()> {
    state
        .authorize(caller, Permission::ManagePolicies, action, target)
        .await?;
    if !caller.user.sites.is_unrestricted() {
        return Err(state
            .deny(
                caller,
                ward_proto::ErrorCode::ForbiddenSite,
                action,
                target,
                "policies and groups apply to every site; this account is limited to some sites",
            )
            .await);
    }
    Ok(())
}

/// Validate, preview and apply policy files.
pub async fn apply(
    state: &AppState,
    caller: &Caller,
    request: ApplyPoliciesRequest,
) -> ServiceResult<ApplyPoliciesResponse> {
    authorize_manage(state, caller, "policy.apply", "policies").await?;
    if request.files.is_empty() {
        return Err(ServiceError::invalid("files: give at least one policy file"));
    }
    let compiled = crate::policy_files::compile_files(&request).map_err(|problems| {
        ServiceError::invalid(format!(
            "{} problem(s) in the policy files; nothing was applied:\n{}",
            problems.len(),
            problems.join("\n")
        ))
    })?;
    let current = state.policy.snapshot();
    let mut plan = Plan {
        compiled,
        added: Vec::new(),
        changed: Vec::new(),
        removed: Vec::new(),
        unchanged: Vec::new(),
    };
    for (policy, source) in &plan.compiled {
        let name = policy.name().to_owned();
        match current.policies.iter().find(|p| p.policy.name() == name) {
            None => plan.added.push(name),
            Some(loaded) if loaded.policy.spec == policy.spec && loaded.record.source == *source => {
                plan.unchanged.push(name)
            }
            Some(_) => plan.changed.push(name),
        }
    }
    if request.prune {
        plan.removed = current
            .policies
            .iter()
            .map(|p| p.policy.name().to_owned())
            .filter(|name| !plan.compiled.iter().any(|(p, _)| p.name() == name))
            .collect();
    }
    let details = json!({
        "added": plan.added, "changed": plan.changed, "removed": plan.removed,
        "files": request.files.iter().map(|f| f.path.clone()).collect::<Vec<_>>(),
    });
    let actor = caller
        .record("policy.apply", "policies", Outcome::Success, json!({}))
        .actor;
    let (outcome, versions) =
        policies::apply(state, &plan, request.prune, request.dry_run, &actor, details).await?;
    let mut warnings = Vec::new();
    for (name, count) in &outcome.in_scope {
        if *count == 0 && plan.compiled.iter().any(|(p, _)| p.name() == name) {
            warnings.push(format!("policy `{name}`: its scope matches no device"));
        }
    }
    for conflict in &outcome.conflicts {
        warnings.push(conflict_warning(conflict));
    }
    let total = outcome.changes.len() as u64;
    Ok(ApplyPoliciesResponse {
        dry_run: request.dry_run,
        applied: !request.dry_run && !versions.is_empty(),
        added: plan.added,
        changed: plan.changed,
        removed: plan.removed,
        unchanged: plan.unchanged,
        versions: if request.dry_run {
            Vec::new()
        } else {
            versions
                .iter()
                .map(|v| PolicyVersionRef {
                    name: v.name.clone(),
                    version: v.version,
                })
                .collect()
        },
        warnings,
        conflicts: outcome.conflicts,
        compliance_changes: outcome.changes.into_iter().take(MAX_CHANGES_LISTED).collect(),
        compliance_changes_total: total,
    })
}

fn conflict_warning(conflict: &SettingConflictView) -> String {
    let values: Vec<String> = conflict
        .values
        .iter()
        .map(|(policy, value)| format!("{policy}: {value}"))
        .collect();
    format!(
        "setting `{}` differs between policies ({}) on {} device(s); the strictest, {}, applies",
        conflict.setting,
        values.join(", "),
        conflict.devices,
        conflict.applied
    )
}

fn policy_view(record: &PolicyVersionRecord, devices_in_scope: Option<u64>) -> PolicyView {
    let spec: Option<PolicySpec> = serde_json::from_str(&record.spec).ok();
    let (description, scope, checks, settings, remediation) = match spec {
        Some(spec) => (
            spec.description,
            spec.scope,
            spec.checks
                .into_iter()
                .map(|c| CheckView {
                    id: c.id,
                    description: c.description,
                    severity: c.severity.to_string(),
                    expr: c.expr,
                    hint: c.hint,
                })
                .collect(),
            serde_json::to_value(&spec.settings).unwrap_or(Value::Null),
            serde_json::to_value(&spec.remediation).unwrap_or(Value::Null),
        ),
        None => (String::new(), String::new(), Vec::new(), Value::Null, Value::Null),
    };
    PolicyView {
        name: record.name.clone(),
        version: record.version,
        removed: record.removed,
        description,
        scope,
        checks,
        settings,
        remediation,
        created_at: rfc3339(record.created_ms),
        created_by: record.created_by.clone(),
        source: record.source.clone(),
        devices_in_scope,
    }
}

/// Current policies with the number of devices (visible to the caller) in scope of each.
pub async fn list(state: &AppState, caller: &Caller) -> ServiceResult<Vec<PolicyView>> {
    state
        .authorize(caller, Permission::ViewPolicies, "policy.list", "policies")
        .await?;
    let devices = select_records(state, caller, &DeviceQuery::default()).await?;
    let subjects: Vec<Value> = devices
        .iter()
        .map(|(_, view)| serde_json::to_value(view).unwrap_or(Value::Null))
        .collect();
    let snapshot = state.policy.snapshot();
    Ok(snapshot
        .policies
        .iter()
        .map(|loaded| {
            let count = subjects.iter().filter(|s| loaded.policy.applies_to(s)).count() as u64;
            policy_view(&loaded.record, Some(count))
        })
        .collect())
}

async fn history_of(state: &AppState, name: &str) -> ServiceResult<Vec<PolicyVersionRecord>> {
    validate_name(name).map_err(|_| ServiceError::not_found(format!("policy {name:?}")))?;
    let versions = state.store.policy_versions(Some(name)).await?;
    if versions.is_empty() {
        return Err(ServiceError::not_found(format!("policy {name:?}")));
    }
    Ok(versions)
}

/// The newest version of one policy (also when it was removed).
pub async fn show(state: &AppState, caller: &Caller, name: String) -> ServiceResult<PolicyView> {
    state
        .authorize(caller, Permission::ViewPolicies, "policy.view", "policies")
        .await?;
    let versions = history_of(state, &name).await?;
    let latest = versions
        .last()
        .ok_or_else(|| ServiceError::not_found(format!("policy {name:?}")))?;
    Ok(policy_view(latest, None))
}

/// Every version of one policy, oldest first.
pub async fn history(state: &AppState, caller: &Caller, name: String) -> ServiceResult<Vec<PolicyView>> {
    state
        .authorize(caller, Permission::ViewPolicies, "policy.history", "policies")
        .await?;
    let versions = history_of(state, &name).await?;
    Ok(versions.iter().map(|v| policy_view(v, None)).collect())
}

/// A unified diff between two versions' YAML.
pub async fn diff(
    state: &AppState,
    caller: &Caller,
    name: String,
    query: PolicyDiffQuery,
) -> ServiceResult<PolicyDiffView> {
    state
        .authorize(caller, Permission::ViewPolicies, "policy.diff", "policies")
        .await?;
    let versions = history_of(state, &name).await?;
    let find = |version: i64| {
        versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| ServiceError::not_found(format!("version {version} of policy {name:?}")))
    };
    let (from, to) = (find(query.from)?, find(query.to)?);
    let diff = similar::TextDiff::from_lines(&from.source, &to.source)
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("{name} v{}", from.version),
            &format!("{name} v{}", to.version),
        )
        .to_string();
    Ok(PolicyDiffView {
        name: name.clone(),
        from: from.version,
        to: to.version,
        diff,
    })
}

/// One device's check results and effective settings.
pub async fn device_compliance(
    state: &AppState,
    caller: &Caller,
    id: String,
) -> ServiceResult<DeviceComplianceView> {
    let device = load(state, caller, &id, Permission::ViewPolicies, "device.compliance").await?;
    let snapshot = state.policy.snapshot();
    let (records, brief) = state.policy.results_with_brief(&id);
    let results: Vec<CheckResultView> = records
        .into_iter()
        .map(|r| {
            let check = snapshot
                .policies
                .iter()
                .find(|p| p.policy.name() == r.policy)
                .and_then(|p| p.policy.checks.iter().find(|c| c.id == r.check_id));
            CheckResultView {
                severity: check.map(|c| c.severity.to_string()).unwrap_or_default(),
                description: check.map(|c| c.description.clone()).unwrap_or_default(),
                hint: check.map(|c| c.hint.clone()).unwrap_or_default(),
                policy: r.policy,
                policy_version: r.policy_version,
                check: r.check_id,
                status: r.status.to_string(),
                since: rfc3339(r.since_ms),
                evaluated_at: rfc3339(r.evaluated_ms),
            }
        })
        .collect();
    let (settings, conflicts) = policies::device_settings(state, &device);
    Ok(DeviceComplianceView {
        device_id: id.clone(),
        status: brief.status,
        results,
        settings: serde_json::to_value(&settings).unwrap_or(Value::Null),
        conflicts: conflicts
            .into_iter()
            .map(|c| SettingConflictView {
                setting: c.setting,
                values: c.values,
                applied: c.applied,
                devices: 1,
            })
            .collect(),
    })
}

fn row(site: &str, class: &str) -> ComplianceSummaryRow {
    ComplianceSummaryRow {
        site: site.to_owned(),
        class: class.to_owned(),
        devices: 0,
        compliant: 0,
        non_compliant: 0,
        unknown: 0,
        not_applicable: 0,
        percent: None,
    }
}

fn count(row: &mut ComplianceSummaryRow, status: &str) {
    row.devices += 1;
    match status.parse::<ComplianceStatus>() {
        Ok(ComplianceStatus::Compliant) => row.compliant += 1,
        Ok(ComplianceStatus::NonCompliant) => row.non_compliant += 1,
        Ok(ComplianceStatus::Unknown) => row.unknown += 1,
        _ => row.not_applicable += 1,
    }
    let assessed = row.devices - row.not_applicable;
    row.percent = (assessed > 0).then(|| (row.compliant as f64 * 1000.0 / assessed as f64).round() / 10.0);
}

/// Compliance per site and class over the devices the caller can see.
pub async fn summary(
    state: &AppState,
    caller: &Caller,
    query: DeviceQuery,
) -> ServiceResult<ComplianceSummary> {
    state
        .authorize(caller, Permission::ViewPolicies, "compliance.summary", "devices")
        .await?;
    let devices = select_records(state, caller, &query).await?;
    let mut total = row("*", "*");
    let mut rows: BTreeMap<(String, String), ComplianceSummaryRow> = BTreeMap::new();
    for (_, view) in &devices {
        count(&mut total, &view.compliance.status);
        count(
            rows.entry((view.site.clone(), view.class.clone()))
                .or_insert_with(|| row(&view.site, &view.class)),
            &view.compliance.status,
        );
    }
    Ok(ComplianceSummary {
        total,
        rows: rows.into_values().collect(),
    })
}

fn group_view(group: &GroupRecord, devices: u64) -> GroupView {
    GroupView {
        name: group.name.clone(),
        selector: group.selector.clone(),
        description: group.description.clone(),
        devices,
        created_at: rfc3339(group.created_ms),
        updated_at: rfc3339(group.updated_ms),
    }
}

/// Dynamic groups with their current size (devices the caller can see).
pub async fn list_groups(state: &AppState, caller: &Caller) -> ServiceResult<Vec<GroupView>> {
    state
        .authorize(caller, Permission::ViewPolicies, "group.list", "groups")
        .await?;
    let devices = select_records(state, caller, &DeviceQuery::default()).await?;
    let groups = state.store.groups().await?;
    Ok(groups
        .iter()
        .map(|g| {
            let n = devices.iter().filter(|(_, v)| v.groups.contains(&g.name)).count() as u64;
            group_view(g, n)
        })
        .collect())
}

/// Creates or replaces a group. Its selector may not use `groups` or `compliance`.
pub async fn put_group(
    state: &AppState,
    caller: &Caller,
    name: String,
    request: PutGroupRequest,
) -> ServiceResult<GroupView> {
    let target = format!("group:{name}");
    authorize_manage(state, caller, "group.put", &target).await?;
    validate_name(&name).map_err(|e| ServiceError::invalid(format!("group name: {}", e.reason)))?;
    let selector =
        Selector::parse(&request.selector).map_err(|e| ServiceError::invalid(format!("selector: {e}")))?;
    let mut problems = ward_domain::policy::schema::check_selector(&selector);
    if let Some(field) = selector
        .fields()
        .into_iter()
        .find(|f| f == "groups" || f.starts_with("compliance"))
    {
        problems.push(format!(
            "`{field}` cannot be used in a group (groups are computed before it)"
        ));
    }
    if !problems.is_empty() {
        return Err(ServiceError::invalid(format!(
            "selector: {}",
            problems.join("; ")
        )));
    }
    if request.description.chars().count() > 500 || request.description.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "description: at most 500 characters, no control characters",
        ));
    }
    let now = state.now_ms();
    let existing = state.store.groups().await?.into_iter().find(|g| g.name == name);
    let group = GroupRecord {
        name: name.clone(),
        selector: selector.to_string(),
        description: request.description.clone(),
        created_ms: existing.as_ref().map_or(now, |g| g.created_ms),
        updated_ms: now,
    };
    let record = caller.record(
        "group.put",
        &target,
        Outcome::Success,
        json!({ "selector": group.selector, "previous": existing.map(|g| g.selector) }),
    );
    state.store.put_group(&group, state.audit(record)).await?;
    policies::reload_groups(state).await?;
    let devices = select_records(state, caller, &DeviceQuery::default()).await?;
    let n = devices.iter().filter(|(_, v)| v.groups.contains(&name)).count() as u64;
    Ok(group_view(&group, n))
}

/// Deletes a group (audited) and re-evaluates what it selected.
pub async fn delete_group(state: &AppState, caller: &Caller, name: String) -> ServiceResult<()> {
    let target = format!("group:{name}");
    authorize_manage(state, caller, "group.delete", &target).await?;
    let record = caller.record("group.delete", &target, Outcome::Success, json!({}));
    state.store.delete_group(&name, state.audit(record)).await?;
    ward_core::policies::reload_groups(state).await?;
    Ok(())
}
