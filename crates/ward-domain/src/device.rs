//! Devices: their class, clinical criticality and lifecycle state, and enrollment-token rules.

use crate::ValidationError;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize, ::serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::ValidationError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                $name::ALL.iter().copied().find(|v| v.as_str() == text).ok_or_else(|| {
                    let all: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                    $crate::ValidationError::new($field, format!("must be one of {}", all.join(", ")))
                })
            }
        }
    };
}

pub(crate) use string_enum;

string_enum!(
    /// What kind of device, which decides its channel and its containment.
    DeviceClass, "class", {
        Workstation => "workstation",
        Mobile => "mobile",
        IotGateway => "iot-gateway",
        Medical => "medical",
    }
);

string_enum!(
    /// Clinical criticality: life-sustaining devices are never powered off or wiped by a mass action.
    Criticality, "criticality", {
        LifeSustaining => "life-sustaining",
        High => "high",
        Normal => "normal",
    }
);

string_enum!(
    /// Where a device is in its life.
    DeviceState, "state", {
        Active => "active",
        Locked => "locked",
        Quarantined => "quarantined",
        Wiped => "wiped",
        Lost => "lost",
        /// Taken out of service: hidden from active views, history kept.
        Retired => "retired",
        /// Its certificate is refused on every connection.
        Revoked => "revoked",
    }
);

impl DeviceState {
    /// Whether a device in this state may connect at all.
    pub fn may_connect(self) -> bool {
        !matches!(self, DeviceState::Revoked | DeviceState::Retired)
    }
}

/// How often agents send a heartbeat.
pub const HEARTBEAT_INTERVAL_MS: i64 = 30_000;

/// Whether a device last heard from at `last_seen_ms` counts as online at `now_ms`, with
/// heartbeats every `heartbeat_ms` (offline after three missed).
pub fn is_online(last_seen_ms: Option<i64>, now_ms: i64, heartbeat_ms: i64) -> bool {
    last_seen_ms.is_some_and(|seen| now_ms - seen < 3 * heartbeat_ms)
}

/// Why an enrollment token cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    Revoked,
    Expired,
    UsedUp,
}

impl TokenRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRefusal::Unknown => "unknown",
            TokenRefusal::Revoked => "revoked",
            TokenRefusal::Expired => "expired",
            TokenRefusal::UsedUp => "used up",
        }
    }
}

/// Checks an enrollment token's state at `now_ms`.
pub fn check_enroll_token(
    revoked: bool,
    expires_ms: i64,
    uses: u32,
    max_uses: u32,
    now_ms: i64,
) -> Result<(), TokenRefusal> {
    if revoked {
        Err(TokenRefusal::Revoked)
    } else if now_ms >= expires_ms {
        Err(TokenRefusal::Expired)
    } else if uses >= max_uses {
        Err(TokenRefusal::UsedUp)
    } else {
        Ok(())
    }
}

/// Parses a duration like `30m`, `24h`, `7d` into milliseconds (1 minute to 365 days).
pub fn parse_duration_ms(text: &str) -> Result<i64, ValidationError> {
    let invalid = || {
        ValidationError::new(
            "expires",
            "must be a number followed by m, h or d (e.g. 24h), up to 365d",
        )
    };
    let text = text.trim();
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| invalid())?;
    let unit_ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(invalid()),
    };
    let ms = n.checked_mul(unit_ms).ok_or_else(invalid)?;
    if !(60_000..=365 * 86_400_000).contains(&ms) {
        return Err(invalid());
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_and_refuse_unknown_values() {
        for class in DeviceClass::ALL {
            assert_eq!(class.as_str().parse::<DeviceClass>().unwrap(), *class);
        }
        assert_eq!(
            "iot-gateway".parse::<DeviceClass>().unwrap(),
            DeviceClass::IotGateway
        );
        let err = "toaster".parse::<DeviceClass>().unwrap_err();
        assert_eq!(err.field, "class");
        assert!("life-sustaining".parse::<Criticality>().is_ok());
        assert_eq!(
            serde_json::to_value(Criticality::LifeSustaining).unwrap(),
            "life-sustaining"
        );
        assert!(!DeviceState::Revoked.may_connect());
        assert!(is_online(Some(0), 89_999, HEARTBEAT_INTERVAL_MS));
        assert!(!is_online(Some(0), 90_000, HEARTBEAT_INTERVAL_MS));
        assert!(!is_online(None, 0, HEARTBEAT_INTERVAL_MS));
    }

    #[test]
    fn token_checks() {
        assert_eq!(check_enroll_token(false, 100, 0, 1, 50), Ok(()));
        assert_eq!(
            check_enroll_token(true, 100, 0, 1, 50),
            Err(TokenRefusal::Revoked)
        );
        assert_eq!(
            check_enroll_token(false, 100, 0, 1, 100),
            Err(TokenRefusal::Expired)
        );
        assert_eq!(
            check_enroll_token(false, 100, 1, 1, 50),
            Err(TokenRefusal::UsedUp)
        );
    }

    #[test]
    fn durations_parse_with_limits() {
        assert_eq!(parse_duration_ms("24h").unwrap(), 86_400_000);
        assert_eq!(parse_duration_ms("30m").unwrap(), 1_800_000);
        for bad in [
            "",
            "h",
            "24",
            "0m",
            "366d",
            "1y",
            "-5h",
            "99999999999999999d",
            "5 h",
        ] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }
}
