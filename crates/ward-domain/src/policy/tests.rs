#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use super::*;

fn spec(scope: &str, checks: &[(&str, &str)]) -> PolicySpec {
    PolicySpec {
        name: "baseline".into(),
        description: String::new(),
        scope: scope.into(),
        checks: checks
            .iter()
            .map(|(id, expr)| CheckSpec {
                id: (*id).into(),
                description: String::new(),
                severity: CheckSeverity::High,
                expr: (*expr).into(),
                hint: String::new(),
            })
            .collect(),
        settings: Settings::default(),
        remediation: None,
    }
}

fn problems(spec: PolicySpec) -> Vec<String> {
    Policy::compile(spec)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn device(encrypted: Option<bool>, firewall: bool) -> serde_json::Value {
    let mut facts = json!({"firewall": {"active": firewall}, "os": {"id": "ubuntu", "version_id": "22.04"}});
    if let Some(encrypted) = encrypted {
        facts["disks"] = json!({"root_filesystem": {"encrypted": encrypted}});
    }
    json!({"id": "d1", "site": "st-marys/icu", "class": "workstation", "phi": true, "facts": facts})
}

#[test]
fn evaluates_pass_fail_and_unknown() {
    let policy = Policy::compile(spec(
        "phi = true",
        &[
            ("encrypted", "facts.disks.root_filesystem.encrypted = true"),
            ("firewall", "facts.firewall.active = true"),
            ("os-floor", "facts.os.version_id >= \"22.04\""),
        ],
    ))
    .unwrap();
    let subject = device(Some(false), true);
    assert!(policy.applies_to(&subject));
    assert_eq!(
        policy.evaluate(&subject),
        vec![CheckStatus::Fail, CheckStatus::Pass, CheckStatus::Pass]
    );
    // A device that does not report its disks is unknown on that check, not failed or passed.
    assert_eq!(
        policy.evaluate(&device(None, false)),
        vec![CheckStatus::Unknown, CheckStatus::Fail, CheckStatus::Pass]
    );
    assert!(!policy.applies_to(&json!({"phi": false})));
}

#[test]
fn overall_status() {
    use CheckStatus::*;
    assert_eq!(ComplianceStatus::of([]), ComplianceStatus::NotApplicable);
    assert_eq!(ComplianceStatus::of([Pass, Pass]), ComplianceStatus::Compliant);
    assert_eq!(ComplianceStatus::of([Pass, Unknown]), ComplianceStatus::Unknown);
    assert_eq!(
        ComplianceStatus::of([Fail, Unknown]),
        ComplianceStatus::NonCompliant
    );
    assert_eq!(
        ComplianceStatus::of([Unknown, Fail, Pass]),
        ComplianceStatus::NonCompliant
    );
}

#[test]
fn unknown_fields_are_refused_with_a_suggestion() {
    let found = problems(spec(
        "phi = true",
        &[("enc", "facts.disk.root_filesystem.encrypted = true")],
    ));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("checks[0].expr: unknown field `facts.disk.root_filesystem.encrypted`"));
    assert!(
        found[0].contains("did you mean `facts.disks.root_filesystem.encrypted`"),
        "{}",
        found[0]
    );
    let found = problems(spec("colour = \"red\"", &[("ok", "phi = true")]));
    assert!(found[0].starts_with("scope: unknown field `colour`"), "{found:?}");
}

#[test]
fn type_mismatches_are_refused() {
    for (expr, expected) in [
        (
            "facts.firewall.active = \"yes\"",
            "is true or false, but is compared with \"yes\"",
        ),
        ("facts.firewall.active > 1", "cannot be ordered"),
        (
            "facts.memory.total_bytes = \"lots\"",
            "is a number, but is compared with \"lots\"",
        ),
        ("facts.uptime_seconds ~ \"1*\"", "take text fields"),
        ("facts.disks = true", "is a group of fields"),
        ("phi in [true, \"x\"]", "compared with \"x\""),
    ] {
        let found = problems(spec("phi = true", &[("c", expr)]));
        assert!(found.iter().any(|p| p.contains(expected)), "{expr}: {found:?}");
    }
    // Allowed: numbers against versions, numeric strings against numbers, null, exists on groups.
    for expr in [
        "facts.os.version_id >= 22",
        "facts.memory.total_bytes > \"1000\"",
        "facts.screen_lock = null",
        "facts.disks exists",
        "facts.packages.items.name not in [\"telnetd\"]",
    ] {
        Policy::compile(spec("phi = true", &[("c", expr)])).unwrap_or_else(|e| panic!("{expr}: {e:?}"));
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut bad = spec(
        "phi = ",
        &[("Bad Id", "facts.firewall.active = true"), ("x", "nonsense ==")],
    );
    bad.name = "Not A Name".into();
    bad.remediation = Some(RemediationSpec {
        action: RemediationAction::Lock,
        grace: "soon".into(),
    });
    bad.settings.screen_lock_timeout_seconds = Some(0);
    let found = problems(bad);
    for location in [
        "name:",
        "scope:",
        "checks[0].id:",
        "checks[1].expr:",
        "remediation.grace:",
        "settings.screen_lock_timeout_seconds:",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(location)),
            "{location} missing in {found:?}"
        );
    }
}

#[test]
fn policies_cannot_depend_on_compliance() {
    let found = problems(spec("compliance.status = \"compliant\"", &[("a", "phi = true")]));
    assert_eq!(
        found,
        vec!["scope: `compliance.status` is the result of policies; a policy cannot depend on it"]
    );
}

#[test]
fn duplicate_checks_and_empty_policies_are_refused() {
    let found = problems(spec("phi = true", &[("a", "phi = true"), ("a", "phi = false")]));
    assert_eq!(found, vec!["checks[1].id: check `a` is defined twice"]);
    let found = problems(spec("phi = true", &[]));
    assert!(found[0].contains("at least one check or one setting"));
}

#[test]
fn durations() {
    assert_eq!(parse_duration("90s").unwrap(), 90);
    assert_eq!(parse_duration("30m").unwrap(), 1800);
    assert_eq!(parse_duration("1d12h").unwrap(), 129_600);
    assert_eq!(parse_duration("0s").unwrap(), 0);
    for bad in ["", "12", "h", "1w", "-1h", "99999999999999999999d", "1.5h"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
    let mut long = spec("phi = true", &[("a", "phi = true")]);
    long.remediation = Some(RemediationSpec {
        action: RemediationAction::Notify,
        grace: "91d".into(),
    });
    assert_eq!(problems(long), vec!["remediation.grace: at most 90 days"]);
}

#[test]
fn settings_validation() {
    let mut settings = Settings {
        screen_lock_timeout_seconds: Some(7200),
        report_interval_seconds: Some(5),
        offline_lock_hours: Some(0),
        ..Settings::default()
    };
    settings.packages.denied.insert("rm -rf /".into());
    settings.packages.allowed.insert("telnet".into());
    settings.packages.denied.insert("telnet".into());
    let fields: Vec<&str> = settings.validate().iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        vec![
            "screen_lock_timeout_seconds",
            "offline_lock_hours",
            "report_interval_seconds",
            "packages.denied",
            "packages"
        ]
    );
}

#[test]
fn strictest_setting_wins_and_conflicts_are_reported() {
    let a = Settings {
        screen_lock_timeout_seconds: Some(300),
        usb_storage_blocked: Some(false),
        report_interval_seconds: Some(600),
        packages: PackageRules {
            allowed: ["telnet".to_string()].into(),
            denied: ["ftp".to_string()].into(),
        },
        ..Settings::default()
    };
    let b = Settings {
        screen_lock_timeout_seconds: Some(900),
        usb_storage_blocked: Some(true),
        report_interval_seconds: Some(600),
        packages: PackageRules {
            allowed: Default::default(),
            denied: ["telnet".to_string()].into(),
        },
        ..Settings::default()
    };
    let (merged, conflicts) = merge_settings([("b-policy", &b), ("a-policy", &a)]);
    assert_eq!(merged.screen_lock_timeout_seconds, Some(300));
    assert_eq!(merged.usb_storage_blocked, Some(true));
    assert_eq!(merged.report_interval_seconds, Some(600));
    assert!(merged.packages.allowed.is_empty());
    assert_eq!(merged.packages.denied.len(), 2);
    let settings: Vec<&str> = conflicts.iter().map(|c| c.setting.as_str()).collect();
    assert_eq!(
        settings,
        vec![
            "screen_lock_timeout_seconds",
            "usb_storage_blocked",
            "packages.telnet"
        ]
    );
    assert_eq!(
        conflicts[0].values,
        vec![
            ("a-policy".to_string(), "300".to_string()),
            ("b-policy".to_string(), "900".to_string())
        ]
    );
    assert_eq!(conflicts[2].applied, "denied");
    // The order policies come in does not change anything.
    assert_eq!(
        merge_settings([("a-policy", &a), ("b-policy", &b)]),
        (merged, conflicts)
    );
}

#[test]
fn spec_round_trips_through_json() {
    let mut original = spec("phi = true", &[("a", "phi = true")]);
    original.settings.firewall_required = Some(true);
    let text = serde_json::to_string(&original).unwrap();
    assert_eq!(serde_json::from_str::<PolicySpec>(&text).unwrap(), original);
    let unknown = serde_json::from_str::<PolicySpec>(r#"{"name":"a","scope":"phi = true","colour":1}"#);
    assert!(
        unknown
            .unwrap_err()
            .to_string()
            .contains("unknown field `colour`")
    );
}
