//! Incidents: containment plans (which actions each kind of device gets), the clinical-safety rule
//! applied to every plan, the second-approver rule, the incident's states, regulatory deadlines and
//! time-to-contain statistics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ValidationError;
use crate::command::{CommandKind, needs_clinician};
use crate::device::{Criticality, DeviceClass, string_enum};

string_enum!(
    /// Where an incident is.
    IncidentState, "state", {
        Declared => "declared",
        Approved => "approved",
        Containing => "containing",
        Lifted => "lifted",
        Closed => "closed",
    }
);

string_enum!(
    /// How serious the incident is.
    Severity, "severity", {
        Low => "low",
        Medium => "medium",
        High => "high",
        Critical => "critical",
    }
);

string_enum!(
    /// What happened, which decides part of the plan (lost devices get lost mode and a wipe).
    Situation, "situation", {
        Breach => "breach",
        Lost => "lost",
    }
);

/// Which devices a rule is for; an empty field matches every value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMatch {
    #[serde(default)]
    pub class: Option<DeviceClass>,
    #[serde(default)]
    pub criticality: Option<Criticality>,
    #[serde(default)]
    pub situation: Option<Situation>,
}

/// One rule of a plan: the first rule matching a device decides its actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRule {
    #[serde(default)]
    pub when: RuleMatch,
    pub actions: Vec<CommandKind>,
    /// Actions added only when a clinician has confirmed (e.g. shutting down a scanner).
    #[serde(default)]
    pub after_confirmation: Vec<CommandKind>,
}

/// A containment plan: rules in order, and how each action is undone when the incident is lifted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainmentPlan {
    pub name: String,
    pub rules: Vec<PlanRule>,
    /// action → the action that lifts it.
    #[serde(default)]
    pub lift: BTreeMap<CommandKind, CommandKind>,
    /// Wipes, shutdowns and reboots (the kinds whose
    /// [`needs_approval_in_bulk`](crate::command::KindInfo::needs_approval_in_bulk) is set) on
    /// more devices than this need a second approver.
    #[serde(default = "default_threshold")]
    pub approval_threshold: u32,
}

fn default_threshold() -> u32 {
    10
}

impl ContainmentPlan {
    /// Checks a plan as loaded: a name, at least one rule, only containment actions, no action
    /// twice in a rule, every lift pairing sensible.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.name.trim().is_empty() || self.name.len() > 64 {
            return Err(ValidationError::new(
                "name",
                "a plan needs a name of 1 to 64 characters",
            ));
        }
        if self.rules.is_empty() {
            return Err(ValidationError::new("rules", "a plan needs at least one rule"));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let all: Vec<CommandKind> = rule
                .actions
                .iter()
                .chain(&rule.after_confirmation)
                .copied()
                .collect();
            for (j, kind) in all.iter().enumerate() {
                if !kind.info().in_containment_plans {
                    return Err(ValidationError::new(
                        "rules",
                        format!("rule {}: {kind} is not a containment action", i + 1),
                    ));
                }
                if all[..j].contains(kind) {
                    return Err(ValidationError::new(
                        "rules",
                        format!("rule {}: {kind} appears twice", i + 1),
                    ));
                }
            }
        }
        for (action, undo) in &self.lift {
            if !undo.info().lifts {
                return Err(ValidationError::new(
                    "lift",
                    format!("{action} can only be lifted by unlock or release, not {undo}"),
                ));
            }
        }
        Ok(())
    }

    /// The first rule for a device of this class and criticality in this situation.
    pub fn rule_for(
        &self,
        class: DeviceClass,
        criticality: Criticality,
        situation: Situation,
    ) -> Option<&PlanRule> {
        self.rules.iter().find(|rule| {
            rule.when.class.is_none_or(|c| c == class)
                && rule.when.criticality.is_none_or(|c| c == criticality)
                && rule.when.situation.is_none_or(|s| s == situation)
        })
    }
}

/// An action the plan wanted for a device but that is withheld, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withheld {
    pub action: CommandKind,
    pub reason: String,
}

/// What one device gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePlan {
    pub actions: Vec<CommandKind>,
    pub withheld: Vec<Withheld>,
}

/// The plan's actions for one device, with the clinical-safety rule applied on top of whatever
/// the plan says: nothing that powers off or wipes a medical or life-sustaining device without a
/// clinician's confirmation.
pub fn plan_device(
    plan: &ContainmentPlan,
    class: DeviceClass,
    criticality: Criticality,
    situation: Situation,
    clinician_confirmed: bool,
) -> DevicePlan {
    let Some(rule) = plan.rule_for(class, criticality, situation) else {
        return DevicePlan::default();
    };
    let mut out = DevicePlan::default();
    let confirmed_extra = rule.after_confirmation.iter().filter(|_| clinician_confirmed);
    for kind in rule.actions.iter().chain(confirmed_extra) {
        if needs_clinician(*kind, class, criticality) && !clinician_confirmed {
            out.withheld.push(Withheld {
                action: *kind,
                reason: format!("{kind} on a {criticality} {class} device needs a clinician's confirmation"),
            });
        } else {
            out.actions.push(*kind);
        }
    }
    if !clinician_confirmed {
        for kind in &rule.after_confirmation {
            out.withheld.push(Withheld {
                action: *kind,
                reason: "only after a clinician's confirmation".into(),
            });
        }
    }
    out
}

/// Why an incident's containment needs a second approver (empty: it does not).
pub fn approval_reasons(plan: &ContainmentPlan, planned: &[(Criticality, &DevicePlan)]) -> Vec<String> {
    let mut reasons = Vec::new();
    let drastic = planned
        .iter()
        .filter(|(_, p)| p.actions.iter().any(|k| k.info().needs_approval_in_bulk))
        .count();
    if drastic as u64 > u64::from(plan.approval_threshold) {
        reasons.push(format!(
            "{drastic} devices would be wiped, shut down or rebooted (more than {})",
            plan.approval_threshold
        ));
    }
    let beyond = planned
        .iter()
        .filter(|(c, p)| {
            *c == Criticality::LifeSustaining && p.actions.iter().any(|k| *k != CommandKind::Quarantine)
        })
        .count();
    if beyond > 0 {
        reasons.push(format!(
            "{beyond} life-sustaining devices would get more than network isolation"
        ));
    }
    reasons
}

/// What a device loses when it gets `kind`, for the clinical-impact preview.
pub fn clinical_loss(class: DeviceClass, kind: CommandKind) -> &'static str {
    match (class, kind) {
        (DeviceClass::Medical, CommandKind::Quarantine) => {
            "network alarms to the central station, remote monitoring and EHR charting from the device"
        }
        (DeviceClass::Medical, CommandKind::Shutdown | CommandKind::Reboot) => {
            "the device stops working at the bedside"
        }
        (DeviceClass::IotGateway, CommandKind::Quarantine) => {
            "the bedside devices behind the gateway lose their link to the network"
        }
        (_, CommandKind::Lock | CommandKind::LostMode) => {
            "staff at the device lose access until it is unlocked"
        }
        (_, CommandKind::Quarantine) => "network access except to Ward (records, printing, messaging)",
        (_, CommandKind::WipeSelective | CommandKind::WipeFull) => "data held on the device",
        (_, CommandKind::Shutdown | CommandKind::Reboot) => "the device until it is started again",
        _ => "nothing clinical",
    }
}

/// Notification deadlines counted from the time the organisation became aware (Unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    /// GDPR Art. 33 / UK GDPR (ICO): 72 hours.
    pub gdpr_ms: i64,
    /// NIS2 Art. 23 early warning: 24 hours.
    pub nis2_early_warning_ms: i64,
    /// HIPAA breach notification: 60 days.
    pub hipaa_ms: i64,
}

pub fn deadlines(aware_ms: i64) -> Deadlines {
    Deadlines {
        gdpr_ms: aware_ms + 72 * 3_600_000,
        nis2_early_warning_ms: aware_ms + 24 * 3_600_000,
        hipaa_ms: aware_ms + 60 * 86_400_000,
    }
}

/// HIPAA: breaches affecting 500 or more individuals are reported to HHS and the media at once.
pub const HIPAA_MAJOR_BREACH: u64 = 500;

/// Time-to-contain statistics, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latencies {
    pub count: usize,
    pub p50_ms: i64,
    pub p95_ms: i64,
    pub p99_ms: i64,
    pub max_ms: i64,
}

/// Nearest-rank percentiles of `samples`.
pub fn latencies(mut samples: Vec<i64>) -> Latencies {
    if samples.is_empty() {
        return Latencies::default();
    }
    samples.sort_unstable();
    let rank = |p: f64| {
        let index = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[index]
    };
    Latencies {
        count: samples.len(),
        p50_ms: rank(0.50),
        p95_ms: rank(0.95),
        p99_ms: rank(0.99),
        max_ms: samples[samples.len() - 1],
    }
}

/// Checks the free-text fields of a declaration.
pub fn validate_title(title: &str) -> Result<String, ValidationError> {
    let title = title.trim();
    if title.is_empty() || title.chars().count() > 200 || title.chars().any(char::is_control) {
        return Err(ValidationError::new(
            "title",
            "must be 1 to 200 characters without control characters",
        ));
    }
    Ok(title.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> ContainmentPlan {
        ContainmentPlan {
            name: "test".into(),
            rules: vec![
                PlanRule {
                    when: RuleMatch {
                        criticality: Some(Criticality::LifeSustaining),
                        ..RuleMatch::default()
                    },
                    // A careless plan: the domain rule must still hold.
                    actions: vec![CommandKind::Quarantine, CommandKind::Shutdown],
                    after_confirmation: vec![],
                },
                PlanRule {
                    when: RuleMatch {
                        class: Some(DeviceClass::Medical),
                        criticality: Some(Criticality::High),
                        ..RuleMatch::default()
                    },
                    actions: vec![CommandKind::Quarantine],
                    after_confirmation: vec![CommandKind::Shutdown],
                },
                PlanRule {
                    when: RuleMatch {
                        class: Some(DeviceClass::Mobile),
                        situation: Some(Situation::Lost),
                        ..RuleMatch::default()
                    },
                    actions: vec![CommandKind::LostMode, CommandKind::WipeSelective],
                    after_confirmation: vec![],
                },
                PlanRule {
                    when: RuleMatch::default(),
                    actions: vec![CommandKind::Lock, CommandKind::Quarantine],
                    after_confirmation: vec![],
                },
            ],
            lift: BTreeMap::from([
                (CommandKind::Lock, CommandKind::Unlock),
                (CommandKind::Quarantine, CommandKind::Release),
            ]),
            approval_threshold: 1,
        }
    }

    #[test]
    fn life_sustaining_devices_are_never_powered_off_without_a_clinician() {
        let plan = plan();
        let pump = plan_device(
            &plan,
            DeviceClass::Medical,
            Criticality::LifeSustaining,
            Situation::Breach,
            false,
        );
        assert_eq!(pump.actions, vec![CommandKind::Quarantine]);
        assert_eq!(pump.withheld[0].action, CommandKind::Shutdown);
        let confirmed = plan_device(
            &plan,
            DeviceClass::Medical,
            Criticality::LifeSustaining,
            Situation::Breach,
            true,
        );
        assert_eq!(
            confirmed.actions,
            vec![CommandKind::Quarantine, CommandKind::Shutdown]
        );
        // Even a workstation marked life-sustaining (a ventilator's console) is protected.
        let console = plan_device(
            &plan,
            DeviceClass::Workstation,
            Criticality::LifeSustaining,
            Situation::Breach,
            false,
        );
        assert_eq!(console.actions, vec![CommandKind::Quarantine]);
    }

    #[test]
    fn rules_match_in_order_with_confirmation_only_extras() {
        let plan = plan();
        let scanner = plan_device(
            &plan,
            DeviceClass::Medical,
            Criticality::High,
            Situation::Breach,
            false,
        );
        assert_eq!(scanner.actions, vec![CommandKind::Quarantine]);
        assert_eq!(scanner.withheld.len(), 1);
        let scanner = plan_device(
            &plan,
            DeviceClass::Medical,
            Criticality::High,
            Situation::Breach,
            true,
        );
        assert_eq!(
            scanner.actions,
            vec![CommandKind::Quarantine, CommandKind::Shutdown]
        );
        let tablet = plan_device(
            &plan,
            DeviceClass::Mobile,
            Criticality::Normal,
            Situation::Lost,
            false,
        );
        assert_eq!(
            tablet.actions,
            vec![CommandKind::LostMode, CommandKind::WipeSelective]
        );
        let laptop = plan_device(
            &plan,
            DeviceClass::Workstation,
            Criticality::Normal,
            Situation::Breach,
            false,
        );
        assert_eq!(laptop.actions, vec![CommandKind::Lock, CommandKind::Quarantine]);
    }

    #[test]
    fn second_approval_is_needed_for_mass_wipes_and_beyond_isolation_on_life_support() {
        let plan = plan();
        let lock = DevicePlan {
            actions: vec![CommandKind::Lock],
            withheld: vec![],
        };
        let wipe = DevicePlan {
            actions: vec![CommandKind::WipeSelective],
            withheld: vec![],
        };
        let isolate = DevicePlan {
            actions: vec![CommandKind::Quarantine],
            withheld: vec![],
        };
        assert!(
            approval_reasons(
                &plan,
                &[
                    (Criticality::Normal, &lock),
                    (Criticality::LifeSustaining, &isolate)
                ]
            )
            .is_empty()
        );
        assert_eq!(
            approval_reasons(
                &plan,
                &[(Criticality::Normal, &wipe), (Criticality::Normal, &wipe)]
            )
            .len(),
            1
        );
        assert_eq!(
            approval_reasons(&plan, &[(Criticality::LifeSustaining, &lock)]).len(),
            1
        );
    }

    #[test]
    fn plans_are_validated() {
        assert!(plan().validate().is_ok());
        let mut bad = plan();
        bad.rules.clear();
        assert!(bad.validate().is_err());
        let mut bad = plan();
        bad.rules[0].actions.push(CommandKind::Message);
        assert!(bad.validate().is_err());
        let mut bad = plan();
        bad.rules[0].actions.push(CommandKind::Quarantine);
        assert!(bad.validate().is_err(), "duplicate action");
        let mut bad = plan();
        bad.lift.insert(CommandKind::Lock, CommandKind::Reboot);
        assert!(bad.validate().is_err());
        let mut bad = plan();
        bad.name = " ".into();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn deadlines_and_percentiles() {
        let d = deadlines(0);
        assert_eq!(d.gdpr_ms, 259_200_000);
        assert_eq!(d.nis2_early_warning_ms, 86_400_000);
        assert_eq!(d.hipaa_ms, 5_184_000_000);
        let l = latencies((1..=100).collect());
        assert_eq!(
            (l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms, l.count),
            (50, 95, 99, 100, 100)
        );
        assert_eq!(latencies(vec![]).count, 0);
        assert_eq!(latencies(vec![7]).p99_ms, 7);
        assert!(validate_title("Ransomware on ICU workstations").is_ok());
        assert!(validate_title("").is_err());
        assert!(validate_title("a\u{1b}b").is_err());
    }
}
