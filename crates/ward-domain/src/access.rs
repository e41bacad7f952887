//! Admin roles, what each may do, and site scoping.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ValidationError;
use crate::site::SiteSlug;

/// An admin account's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including accounts.
    Admin,
    /// Incident response: containment, audit reading; no account management.
    Security,
    /// Day-to-day device administration and sites.
    Operator,
    /// Reads devices and sites; helps users.
    Helpdesk,
    /// Reads everything, including the audit log; changes nothing.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Security,
        Role::Operator,
        Role::Helpdesk,
        Role::Auditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Security => "security",
            Role::Operator => "operator",
            Role::Helpdesk => "helpdesk",
            Role::Auditor => "auditor",
        }
    }

    /// Whether this role may do `permission` (site scope is checked separately).
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Security => matches!(
                permission,
                ViewSites
                    | ViewUsers
                    | ViewAudit
                    | ManageOwnCredentials
                    | ViewDevices
                    | ManageDevices
                    | ViewPolicies
                    | ManagePolicies
            ),
            Role::Operator => matches!(
                permission,
                ViewSites
                    | ManageSites
                    | ManageOwnCredentials
                    | ViewDevices
                    | ManageDevices
                    | ManageEnrollment
                    | ViewPolicies
            ),
            Role::Helpdesk => matches!(
                permission,
                ViewSites | ManageOwnCredentials | ViewDevices | ViewPolicies
            ),
            Role::Auditor => {
                matches!(
                    permission,
                    ViewSites | ViewUsers | ViewAudit | ManageOwnCredentials | ViewDevices | ViewPolicies
                )
            }
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ValidationError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| {
                ValidationError::new(
                    "role",
                    "must be one of admin, security, operator, helpdesk, auditor",
                )
            })
    }
}

/// Things an admin can be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ViewSites,
    ManageSites,
    ViewUsers,
    ManageUsers,
    ViewAudit,
    /// Own password, TOTP and API tokens.
    ManageOwnCredentials,
    ViewDevices,
    /// Revoke, retire (and, later, act on) devices.
    ManageDevices,
    /// Create and revoke enrollment tokens.
    ManageEnrollment,
    /// Read policies, compliance and groups.
    ViewPolicies,
    /// Apply policies and edit groups (fleet-wide: needs an unrestricted site scope too).
    ManagePolicies,
}

/// The sites an account may act on: all of them, or the listed sites and everything beneath them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SiteScope(Vec<SiteSlug>);

impl SiteScope {
    /// No restriction.
    pub fn all() -> Self {
        Self(Vec::new())
    }

    pub fn new(sites: Vec<SiteSlug>) -> Self {
        let mut sites = sites;
        sites.sort();
        sites.dedup();
        Self(sites)
    }

    pub fn is_unrestricted(&self) -> bool {
        self.0.is_empty()
    }

    pub fn sites(&self) -> &[SiteSlug] {
        &self.0
    }

    /// Whether `site` is within scope.
    pub fn covers(&self, site: &SiteSlug) -> bool {
        self.0.is_empty() || self.0.iter().any(|scope| scope.contains(site))
    }

    /// Whether every site of `other` is within this scope (granting never widens access).
    pub fn covers_scope(&self, other: &SiteScope) -> bool {
        if self.is_unrestricted() {
            return true;
        }
        !other.is_unrestricted() && other.0.iter().all(|site| self.covers(site))
    }
}

/// A validated account name: 2–64 characters of `a-z`, `0-9`, `.`, `_`, `-`, starting with a letter.
pub fn validate_username(name: &str) -> Result<String, ValidationError> {
    let ok_len = (2..=64).contains(&name.len());
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    let ok_start = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    if ok_len && ok_chars && ok_start {
        Ok(name.to_owned())
    } else {
        Err(ValidationError::new(
            "username",
            "must be 2 to 64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter",
        ))
    }
}

/// Minimum password policy: 12 to 1024 characters (NIST SP 800-63B: length over composition).
pub fn validate_password(password: &str) -> Result<(), ValidationError> {
    let n = password.chars().count();
    if n < 12 {
        return Err(ValidationError::new("password", "must be at least 12 characters"));
    }
    if password.len() > 1024 {
        return Err(ValidationError::new("password", "must be at most 1024 bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slug(s: &str) -> SiteSlug {
        SiteSlug::parse(s).unwrap()
    }

    #[test]
    fn roles_round_trip_and_reject_unknown() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn auditors_change_nothing() {
        assert!(Role::Auditor.allows(Permission::ViewAudit));
        assert!(!Role::Auditor.allows(Permission::ManageSites));
        assert!(!Role::Auditor.allows(Permission::ManageUsers));
        assert!(!Role::Helpdesk.allows(Permission::ViewAudit));
        assert!(Role::Helpdesk.allows(Permission::ViewDevices));
        assert!(!Role::Helpdesk.allows(Permission::ManageDevices));
        assert!(!Role::Auditor.allows(Permission::ManageEnrollment));
    }

    #[test]
    fn scope_covers_children_only() {
        let scope = SiteScope::new(vec![slug("st-marys")]);
        assert!(scope.covers(&slug("st-marys/icu")));
        assert!(!scope.covers(&slug("general")));
        assert!(SiteScope::all().covers(&slug("general")));
        assert!(scope.covers_scope(&SiteScope::new(vec![slug("st-marys/icu")])));
        assert!(!scope.covers_scope(&SiteScope::all()));
    }

    #[test]
    fn usernames_and_passwords_are_checked() {
        assert!(validate_username("alice").is_ok());
        for bad in ["", "a", "Alice", "1abc", "al ice", "a'--", &"a".repeat(65)] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
        assert!(validate_password("short").is_err());
        assert!(validate_password("long enough password").is_ok());
    }
}
