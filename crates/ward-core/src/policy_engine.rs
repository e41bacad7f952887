//! The policy engine's state: the compiled policies and groups every evaluation reads (an `Arc`
//! snapshot swapped whole), the compliance cache loaded at start, and evaluating one device's
//! subject against them. The evaluations that read and write the store are in `policies.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;
use ward_domain::policy::{
    CheckStatus, ComplianceStatus, Policy, PolicySpec, SettingConflict, Settings, merge_settings,
};
use ward_domain::selector::Selector;
use ward_proto::{ComplianceBrief, DeviceView};
use ward_store::{ComplianceRecord, GroupRecord, PolicyVersionRecord, Store, StoreResult};

/// A current policy with its version.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    pub policy: Policy,
    pub record: PolicyVersionRecord,
}

/// The compiled policies and groups every evaluation reads.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub policies: Vec<LoadedPolicy>,
    pub groups: Vec<(String, Selector)>,
}

/// What is remembered between evaluations.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    /// device → (policy, check) → result.
    pub(crate) results: HashMap<String, BTreeMap<(String, String), ComplianceRecord>>,
    /// device → digest of the settings last sent.
    pub(crate) settings_sent: HashMap<String, String>,
    /// (device, policy, failing since) already remediated.
    pub(crate) remediated: HashSet<(String, String, i64)>,
}

/// Work for the background evaluator.
#[derive(Debug, Clone)]
pub enum Work {
    /// These devices' facts changed.
    Devices(Vec<String>),
    /// Everything (policies or groups changed).
    All,
}

pub struct Engine {
    pub(crate) snapshot: RwLock<Arc<Snapshot>>,
    pub(crate) cache: Mutex<Cache>,
    /// Held for a whole evaluation (read, decide, write).
    pub(crate) turn: tokio::sync::Mutex<()>,
}

/// Compiles a stored version.
pub fn compile_record(record: &PolicyVersionRecord) -> Result<Policy, String> {
    let spec: PolicySpec = serde_json::from_str(&record.spec).map_err(|e| e.to_string())?;
    Policy::compile(spec).map_err(|problems| {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Compiles stored groups; a group that no longer parses is skipped with a warning.
pub fn compile_groups(groups: &[GroupRecord]) -> Vec<(String, Selector)> {
    groups
        .iter()
        .filter_map(|group| match Selector::parse(&group.selector) {
            Ok(selector) => Some((group.name.clone(), selector)),
            Err(err) => {
                tracing::warn!(group = %group.name, error = %err, "a stored group does not parse; ignored");
                None
            }
        })
        .collect()
}

/// Compliance results per device, as the engine computes them.
pub(crate) type Results = BTreeMap<(String, String), ComplianceRecord>;

/// One device's evaluation.
pub(crate) struct Evaluated {
    pub(crate) results: Results,
    pub(crate) settings: Settings,
    pub(crate) conflicts: Vec<SettingConflict>,
    /// Indices in the snapshot of the policies whose scope holds the device.
    pub(crate) in_scope: Vec<usize>,
    /// Any policy with settings applies (even if they merge to nothing).
    pub(crate) has_settings: bool,
}

impl Engine {
    /// Loads policies, groups and what was decided before.
    pub async fn load(store: &dyn Store) -> StoreResult<Engine> {
        let mut policies = Vec::new();
        for record in store.current_policies().await? {
            match compile_record(&record) {
                Ok(policy) => policies.push(LoadedPolicy { policy, record }),
                Err(err) => {
                    tracing::error!(policy = %record.name, error = %err, "a stored policy does not compile; ignored")
                }
            }
        }
        let groups = compile_groups(&store.groups().await?);
        let mut cache = Cache::default();
        for result in store.compliance(None).await? {
            cache
                .results
                .entry(result.device_id.clone())
                .or_default()
                .insert((result.policy.clone(), result.check_id.clone()), result);
        }
        cache.settings_sent = store.device_settings().await?.into_iter().collect();
        cache.remediated = store
            .remediations()
            .await?
            .into_iter()
            .map(|r| (r.device_id, r.policy, r.failing_since_ms))
            .collect();
        Ok(Engine {
            snapshot: RwLock::new(Arc::new(Snapshot { policies, groups })),
            cache: Mutex::new(cache),
            turn: tokio::sync::Mutex::new(()),
        })
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    pub(crate) fn set_snapshot(&self, snapshot: Snapshot) {
        let mut guard = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(snapshot);
    }

    pub(crate) fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The overall status and failing checks of a device, from the last evaluation.
    pub fn brief(&self, device_id: &str) -> ComplianceBrief {
        let cache = self.cache();
        match cache.results.get(device_id) {
            Some(results) => brief_of(results),
            None => ComplianceBrief::default(),
        }
    }

    /// A device's results with the status they make, read together (the evaluator may change
    /// them between two separate reads).
    pub fn results_with_brief(&self, device_id: &str) -> (Vec<ComplianceRecord>, ComplianceBrief) {
        let cache = self.cache();
        match cache.results.get(device_id) {
            Some(results) => (results.values().cloned().collect(), brief_of(results)),
            None => (Vec::new(), ComplianceBrief::default()),
        }
    }

    /// Fills in a view's groups and compliance, so selectors and the console see them.
    pub fn annotate(&self, view: &mut DeviceView) {
        let snapshot = self.snapshot();
        annotate_groups(&snapshot, view);
        view.compliance = self.brief(&view.id);
    }
}

pub(crate) fn brief_of(results: &Results) -> ComplianceBrief {
    ComplianceBrief {
        status: ComplianceStatus::of(results.values().map(|r| r.status)).to_string(),
        failing: results
            .values()
            .filter(|r| r.status == CheckStatus::Fail)
            .map(|r| format!("{}/{}", r.policy, r.check_id))
            .collect(),
    }
}

/// Sets the view's groups from the snapshot (groups never depend on groups or compliance).
pub fn annotate_groups(snapshot: &Snapshot, view: &mut DeviceView) {
    view.groups.clear();
    if snapshot.groups.is_empty() {
        return;
    }
    let subject = serde_json::to_value(&*view).unwrap_or(Value::Null);
    view.groups = snapshot
        .groups
        .iter()
        .filter(|(_, selector)| selector.matches(&subject))
        .map(|(name, _)| name.clone())
        .collect();
}

/// Evaluates every policy of `snapshot` on one device's subject.
pub(crate) fn evaluate_subject(
    snapshot: &Snapshot,
    device_id: &str,
    subject: &Value,
    previous: Option<&Results>,
    now_ms: i64,
) -> Evaluated {
    let mut results = Results::new();
    let mut applying: Vec<(&str, &Settings)> = Vec::new();
    let mut in_scope = Vec::new();
    for (index, loaded) in snapshot.policies.iter().enumerate() {
        let policy = &loaded.policy;
        if !policy.applies_to(subject) {
            continue;
        }
        in_scope.push(index);
        if !policy.spec.settings.is_empty() {
            applying.push((policy.name(), &policy.spec.settings));
        }
        for (check, status) in policy.checks.iter().zip(policy.evaluate(subject)) {
            let key = (policy.name().to_owned(), check.id.clone());
            let record = match previous.and_then(|p| p.get(&key)) {
                Some(old) if old.status == status => ComplianceRecord {
                    policy_version: loaded.record.version,
                    ..old.clone()
                },
                _ => ComplianceRecord {
                    device_id: device_id.to_owned(),
                    policy: key.0.clone(),
                    check_id: key.1.clone(),
                    status,
                    since_ms: now_ms,
                    evaluated_ms: now_ms,
                    policy_version: loaded.record.version,
                },
            };
            results.insert(key, record);
        }
    }
    let has_settings = !applying.is_empty();
    let (settings, conflicts) = merge_settings(applying);
    Evaluated {
        results,
        settings,
        in_scope,
        conflicts,
        has_settings,
    }
}
