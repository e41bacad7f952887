//! Ward's domain: the pure types and rules (sites, roles, the audit log's hashing and verification).
//! No IO, no async; time and randomness come in as parameters.

pub mod access;
pub mod audit;
pub mod clock;
pub mod command;
pub mod device;
pub mod incident;
pub mod merkle;
pub mod policy;
pub mod selector;
pub mod site;

use std::fmt;

/// Input that breaks a domain rule, naming the field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub field: &'static str,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ValidationError {}
