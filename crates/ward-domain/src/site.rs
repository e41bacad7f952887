//! Sites: hospitals and their wards/departments, addressed by a path-like slug (`st-marys/icu`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// A validated site slug: one segment for a hospital (`st-marys`), two for a ward or department
/// (`st-marys/icu`). Segments are 1–48 characters of `a-z`, `0-9` and `-`, not starting or ending
/// with `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SiteSlug(String);

impl SiteSlug {
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let invalid =
            |why: &str| ValidationError::new("slug", format!("{why} (got {:?})", truncate_for_message(text)));
        let segments: Vec<&str> = text.split('/').collect();
        if segments.len() > 2 {
            return Err(invalid("a site slug has at most two segments, hospital/ward"));
        }
        for segment in &segments {
            if segment.is_empty() || segment.len() > 48 {
                return Err(invalid("each segment must be 1 to 48 characters"));
            }
            if !segment
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(invalid("only a-z, 0-9 and - are allowed"));
            }
            if segment.starts_with('-') || segment.ends_with('-') {
                return Err(invalid("a segment may not start or end with -"));
            }
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hospital this site belongs to (itself for a hospital).
    pub fn hospital(&self) -> SiteSlug {
        match self.0.split_once('/') {
            Some((hospital, _)) => SiteSlug(hospital.to_owned()),
            None => self.clone(),
        }
    }

    /// The parent hospital of a ward, `None` for a hospital.
    pub fn parent(&self) -> Option<SiteSlug> {
        self.0
            .split_once('/')
            .map(|(hospital, _)| SiteSlug(hospital.to_owned()))
    }

    /// Whether `other` is this site or lies beneath it.
    pub fn contains(&self, other: &SiteSlug) -> bool {
        other.0 == self.0
            || other
                .0
                .strip_prefix(&self.0)
                .is_some_and(|rest| rest.starts_with('/'))
    }

    pub fn kind(&self) -> SiteKind {
        if self.0.contains('/') {
            SiteKind::Ward
        } else {
            SiteKind::Hospital
        }
    }
}

/// Shortens hostile input before it is echoed in an error message.
pub(crate) fn truncate_for_message(text: &str) -> String {
    text.chars().take(64).collect()
}

impl std::str::FromStr for SiteSlug {
    type Err = ValidationError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl TryFrom<String> for SiteSlug {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SiteSlug> for String {
    fn from(value: SiteSlug) -> Self {
        value.0
    }
}

impl fmt::Display for SiteSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Hospital or ward/department.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteKind {
    Hospital,
    Ward,
}

/// A site record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub slug: SiteSlug,
    /// Human name, 1–200 characters.
    pub name: String,
    pub created_ms: i64,
}

/// Validates a human-readable name (sites, users): trimmed, 1–200 characters, no control characters.
pub fn validate_name(field: &'static str, name: &str) -> Result<String, ValidationError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 200 {
        return Err(ValidationError::new(field, "must be 1 to 200 characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ValidationError::new(field, "must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_parse_and_nest() {
        let hospital = SiteSlug::parse("st-marys").unwrap();
        let ward = SiteSlug::parse("st-marys/icu").unwrap();
        assert!(hospital.contains(&ward));
        assert!(hospital.contains(&hospital));
        assert!(!ward.contains(&hospital));
        assert!(!hospital.contains(&SiteSlug::parse("st-marys-annex").unwrap()));
        assert_eq!(ward.parent(), Some(hospital.clone()));
        assert_eq!(ward.kind(), SiteKind::Ward);
    }

    #[test]
    fn bad_slugs_are_refused_with_reasons() {
        for bad in [
            "",
            "A",
            "a/b/c",
            "-a",
            "a-",
            "a b",
            "a/",
            "x'; DROP TABLE sites;--",
            "ü",
        ] {
            let err = SiteSlug::parse(bad).unwrap_err();
            assert_eq!(err.field, "slug", "{bad}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(validate_name("name", "  ICU  ").unwrap(), "ICU");
        assert!(validate_name("name", "").is_err());
        assert!(validate_name("name", "a\u{7}b").is_err());
        assert!(validate_name("name", &"x".repeat(201)).is_err());
    }
}
