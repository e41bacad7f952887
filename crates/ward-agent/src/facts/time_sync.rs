//! Whether the clock is kept synchronised, and by which service.
//!
//! - **systemd-timesyncd**: it creates run/systemd/timesync/synchronized once it has synchronised
//!   (systemd ≥ 239) and keeps run/systemd/timesync/ while running, so: the marker means
//!   synchronised, the directory without the marker means running but not (yet) synchronised, and
//!   only etc/systemd/timesyncd.conf means installed, state unknown.
//! - **chrony**: etc/chrony.conf or etc/chrony/ means installed; on the live system
//!   `chronyc -n tracking` (with the command timeout) tells synchronised from not by its
//!   `Leap status` line.
//! - **ntpd**: etc/ntp.conf means installed, state unknown (no query is run).
//!
//! Overall `synchronized` is true if any service says so, false if one says not and none says so,
//! and unknown otherwise.

use serde::{Deserialize, Serialize};

use super::read;
use super::{CollectError, Context, command};

const MAX_CHRONYC_OUTPUT: u64 = 64 * 1024;

/// Clock synchronisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeSync {
    pub synchronized: Option<bool>,
    /// The services found, in a fixed order: systemd-timesyncd, chrony, ntpd.
    pub services: Vec<TimeSyncService>,
}

/// One time-synchronisation service that was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeSyncService {
    /// `systemd-timesyncd`, `chrony` or `ntpd`.
    pub name: String,
    pub synchronized: Option<bool>,
}

/// `Ok(None)` when no time service is found at all.
pub fn time_sync(cx: &mut Context<'_>) -> Result<Option<TimeSync>, CollectError> {
    let root = cx.root;
    let mut services = Vec::new();

    let timesyncd = if read::exists(root, "run/systemd/timesync/synchronized") {
        Some(Some(true))
    } else if read::exists(root, "run/systemd/timesync") {
        Some(Some(false))
    } else if read::exists(root, "etc/systemd/timesyncd.conf") {
        Some(None)
    } else {
        None
    };
    if let Some(synchronized) = timesyncd {
        services.push(TimeSyncService {
            name: "systemd-timesyncd".to_owned(),
            synchronized,
        });
    }

    if read::exists(root, "etc/chrony.conf") || read::exists(root, "etc/chrony") {
        let synchronized = if cx.live && command::find_program("chronyc").is_some() {
            let args = ["-n", "tracking"];
            match command::run("chronyc", &args, cx.options.command_timeout, MAX_CHRONYC_OUTPUT) {
                Ok(output) => parse_chronyc_tracking(&output),
                Err(error) => {
                    cx.soft_error("time_sync", error.to_string());
                    None
                }
            }
        } else {
            None
        };
        services.push(TimeSyncService {
            name: "chrony".to_owned(),
            synchronized,
        });
    }

    if read::exists(root, "etc/ntp.conf") {
        services.push(TimeSyncService {
            name: "ntpd".to_owned(),
            synchronized: None,
        });
    }

    if services.is_empty() {
        return Ok(None);
    }
    let synchronized = if services.iter().any(|s| s.synchronized == Some(true)) {
        Some(true)
    } else if services.iter().any(|s| s.synchronized == Some(false)) {
        Some(false)
    } else {
        None
    };
    Ok(Some(TimeSync {
        synchronized,
        services,
    }))
}

/// `Leap status : Normal` (or an announced leap second) means synchronised; `Not synchronised`
/// means not. chronyc is run with `LC_ALL=C`, so the wording is stable.
pub fn parse_chronyc_tracking(output: &str) -> Option<bool> {
    output.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "Leap status").then(|| value.trim() != "Not synchronised")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chronyc_tracking_is_parsed() {
        assert_eq!(
            parse_chronyc_tracking("Reference ID    : C0000201\nLeap status     : Normal\n"),
            Some(true)
        );
        assert_eq!(
            parse_chronyc_tracking("Leap status     : Not synchronised\n"),
            Some(false)
        );
        assert_eq!(parse_chronyc_tracking("506 Cannot talk to daemon\n"), None);
    }
}
