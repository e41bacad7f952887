//! Write-Attributes notification attributes (LwM2M 1.1 Core §5.1.2): `pmin`, `pmax`, `gt`, `lt`,
//! `st`, carried as Uri-Query options of a PUT without payload.
//!
//! `name=value` sets an attribute and a bare `name` removes it. Only `pmin`/`pmax` drive
//! notifications in this crate's client; `gt`/`lt`/`st` are validated and stored.

use thiserror::Error;

/// Notification attributes attached to a path.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Attributes {
    /// Minimum period between notifications, seconds.
    pub pmin: Option<u32>,
    /// Maximum period between notifications, seconds.
    pub pmax: Option<u32>,
    /// Greater-than threshold.
    pub gt: Option<f64>,
    /// Less-than threshold.
    pub lt: Option<f64>,
    /// Step.
    pub st: Option<f64>,
}

/// A Write-Attributes query the client refuses (answered with 4.00).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AttributeError {
    /// An attribute this crate does not know.
    #[error("unknown attribute {0:?}")]
    Unknown(String),
    /// A value that does not parse or is out of range.
    #[error("invalid value in {0:?}")]
    BadValue(String),
    /// pmin greater than pmax.
    #[error("pmin is greater than pmax")]
    PminAbovePmax,
}

/// Longest period accepted for pmin/pmax: 366 days, in seconds.
const MAX_PERIOD: u32 = 366 * 86_400;

impl Attributes {
    /// True if no attribute is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Applies Write-Attributes queries; on error nothing changes.
    pub fn apply_queries<S: AsRef<str>>(&mut self, queries: &[S]) -> Result<(), AttributeError> {
        let mut next = *self;
        for q in queries {
            let q = q.as_ref();
            let (name, value) = match q.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (q, None),
            };
            let bad = || AttributeError::BadValue(q.to_owned());
            match name {
                "pmin" => next.pmin = value.map(|v| parse_period(v).ok_or_else(bad)).transpose()?,
                "pmax" => next.pmax = value.map(|v| parse_period(v).ok_or_else(bad)).transpose()?,
                "gt" => next.gt = value.map(|v| parse_number(v).ok_or_else(bad)).transpose()?,
                "lt" => next.lt = value.map(|v| parse_number(v).ok_or_else(bad)).transpose()?,
                "st" => {
                    next.st = value
                        .map(|v| parse_number(v).filter(|s| *s >= 0.0).ok_or_else(bad))
                        .transpose()?
                }
                other => return Err(AttributeError::Unknown(other.to_owned())),
            }
        }
        if let (Some(min), Some(max)) = (next.pmin, next.pmax)
            && min > max
        {
            return Err(AttributeError::PminAbovePmax);
        }
        *self = next;
        Ok(())
    }

    /// Parses queries into fresh attributes.
    pub fn from_queries<S: AsRef<str>>(queries: &[S]) -> Result<Self, AttributeError> {
        let mut a = Self::default();
        a.apply_queries(queries)?;
        Ok(a)
    }

    /// The set attributes as `name=value` queries.
    pub fn to_queries(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(v) = self.pmin {
            out.push(format!("pmin={v}"));
        }
        if let Some(v) = self.pmax {
            out.push(format!("pmax={v}"));
        }
        for (name, v) in [("gt", self.gt), ("lt", self.lt), ("st", self.st)] {
            if let Some(v) = v {
                out.push(format!("{name}={v}"));
            }
        }
        out
    }

    /// Fills unset attributes from `parent` (attributes are inherited down the path).
    pub fn inherit(&self, parent: &Self) -> Self {
        Self {
            pmin: self.pmin.or(parent.pmin),
            pmax: self.pmax.or(parent.pmax),
            gt: self.gt.or(parent.gt),
            lt: self.lt.or(parent.lt),
            st: self.st.or(parent.st),
        }
    }
}

fn parse_period(v: &str) -> Option<u32> {
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|p| *p <= MAX_PERIOD)
}

fn parse_number(v: &str) -> Option<f64> {
    if v.len() > 32 {
        return None;
    }
    v.parse::<f64>().ok().filter(|f| f.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_set_clear_and_validate() -> Result<(), AttributeError> {
        let mut a = Attributes::from_queries(&["pmin=1", "pmax=10", "gt=20.5"])?;
        assert_eq!((a.pmin, a.pmax, a.gt), (Some(1), Some(10), Some(20.5)));
        assert_eq!(Attributes::from_queries(&a.to_queries())?, a);
        a.apply_queries(&["pmin"])?;
        assert_eq!(a.pmin, None);
        assert_eq!(a.apply_queries(&["pmin=11"]), Err(AttributeError::PminAbovePmax));
        assert_eq!(a.pmin, None, "unchanged on error");
        assert_eq!(
            a.apply_queries(&["pmax=-1"]),
            Err(AttributeError::BadValue("pmax=-1".into()))
        );
        assert_eq!(
            a.apply_queries(&["foo=1"]),
            Err(AttributeError::Unknown("foo".into()))
        );
        assert!(a.apply_queries(&["gt=NaN"]).is_err());
        Ok(())
    }
}
