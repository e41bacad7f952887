//! Settings pushed by policies: applied to the machine, remembered, and checked again on every
//! fact collection so that drift (someone deleted the USB block, loosened the screen lock) is
//! reported back to the server as facts under `settings`.
//!
//! What each setting does on a device:
//! - `screen_lock_timeout_seconds`: a dconf keyfile and its lock file under
//!   `etc/dconf/db/local.d/` (GNOME's system-wide, user-proof settings), then `dconf update`.
//! - `usb_storage_blocked`: `etc/modprobe.d/ward-usb-storage.conf` refusing the `usb-storage`
//!   module (removed again when a policy no longer asks for it).
//! - `firewall_required`: `systemctl enable --now nftables`.
//! - `offline_lock_hours`: overrides the agent configuration's offline self-lock.
//! - `report_interval_seconds`: how often facts are collected.
//! - `packages.denied`: reported when installed (the agent never removes software on its own).
//!
//! Files are written under a root: `/` for real, `SANDBOX/root` in sandbox mode, where programs
//! are recorded instead of run. Drift is read back from the same root.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use ward_domain::policy::Settings;

use crate::actions::{Mode, Plan, Step};
use crate::config::Tools;

const SCREEN_LOCK_FILE: &str = "etc/dconf/db/local.d/00-ward-screen-lock";
const SCREEN_LOCK_LOCKS: &str = "etc/dconf/db/local.d/locks/00-ward-screen-lock";
const USB_BLOCK_FILE: &str = "etc/modprobe.d/ward-usb-storage.conf";
const USB_BLOCK_TEXT: &str = "# Written by ward-agent: a policy blocks USB mass storage.\n\
                              blacklist usb-storage\ninstall usb-storage /bin/false\n";
/// Where the applied settings are remembered, in the state directory.
const STATE_FILE: &str = "settings.json";

/// What the agent remembers of the last settings it applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub digest: String,
    pub settings: Settings,
    pub applied_ms: i64,
}

/// What is reported under `facts.settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsState {
    pub digest: String,
    /// RFC 3339.
    pub applied_at: String,
    /// Settings whose effect is no longer in place.
    pub drift: Vec<String>,
    /// Installed packages a policy denies.
    pub denied_packages: Vec<String>,
}

/// The root settings files are written under.
pub fn settings_root(mode: &Mode) -> PathBuf {
    match mode {
        Mode::Real => PathBuf::from("/"),
        Mode::Sandbox(dir) => dir.join("root"),
    }
}

fn screen_lock_text(seconds: u32) -> String {
    format!(
        "# Written by ward-agent: a policy sets the screen lock.\n\
         [org/gnome/desktop/session]\nidle-delay=uint32 {seconds}\n\n\
         [org/gnome/desktop/screensaver]\nlock-enabled=true\nlock-delay=uint32 0\n"
    )
}

const SCREEN_LOCK_LOCKS_TEXT: &str = "/org/gnome/desktop/session/idle-delay\n/org/gnome/desktop/screensaver/lock-enabled\n/org/gnome/desktop/screensaver/lock-delay\n";

/// Writes (or, with `None`, removes) one managed file.
fn put(root: &Path, relative: &str, text: Option<&str>) -> Result<(), String> {
    let path = root.join(relative);
    match text {
        Some(text) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            let temp = path.with_extension("ward-tmp");
            std::fs::write(&temp, text).map_err(|e| format!("{}: {e}", temp.display()))?;
            std::fs::rename(&temp, &path).map_err(|e| format!("{}: {e}", path.display()))
        }
        None => match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("{}: {err}", path.display()))
            }
            _ => Ok(()),
        },
    }
}

/// Applies `settings`: writes the managed files, runs (or records) the programs, and remembers
/// what was applied in `state_dir`. Returns a summary for the command's result.
pub fn apply(
    mode: &Mode,
    tools: &Tools,
    state_dir: &Path,
    command_id: &str,
    params: &Value,
    now_ms: i64,
) -> Result<String, String> {
    let settings: Settings = serde_json::from_value(params.get("settings").cloned().unwrap_or(Value::Null))
        .map_err(|e| format!("settings: {e}"))?;
    let digest = params
        .get("digest")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let root = settings_root(mode);
    let mut done = Vec::new();
    let mut plan = Plan::default();

    match settings.screen_lock_timeout_seconds {
        Some(seconds) => {
            put(&root, SCREEN_LOCK_FILE, Some(&screen_lock_text(seconds)))?;
            put(&root, SCREEN_LOCK_LOCKS, Some(SCREEN_LOCK_LOCKS_TEXT))?;
            // GNOME-less machines have no dconf: the keyfile is still written for when it arrives.
            if matches!(mode, Mode::Sandbox(_)) || on_path(&tools.dconf) {
                plan.steps.push(Step::new(&tools.dconf, &["update"]));
            }
            done.push(format!("screen lock after {seconds} s"));
        }
        None => {
            put(&root, SCREEN_LOCK_FILE, None)?;
            put(&root, SCREEN_LOCK_LOCKS, None)?;
        }
    }
    if settings.usb_storage_blocked == Some(true) {
        put(&root, USB_BLOCK_FILE, Some(USB_BLOCK_TEXT))?;
        done.push("USB mass storage blocked".into());
    } else {
        put(&root, USB_BLOCK_FILE, None)?;
    }
    if settings.firewall_required == Some(true) {
        plan.steps
            .push(Step::new(&tools.systemctl, &["enable", "--now", "nftables"]));
        done.push("firewall enabled".into());
    }
    if let Some(hours) = settings.offline_lock_hours {
        done.push(format!("offline self-lock after {hours} h"));
    }
    if let Some(seconds) = settings.report_interval_seconds {
        done.push(format!("report every {seconds} s"));
    }
    if !settings.packages.denied.is_empty() {
        done.push(format!(
            "{} denied package(s) watched",
            settings.packages.denied.len()
        ));
    }
    plan.summary = if done.is_empty() {
        "no settings to enforce".into()
    } else {
        done.join("; ")
    };
    crate::actions::perform(mode, command_id, "apply-settings", params, &plan)?;
    let applied = Applied {
        digest,
        settings,
        applied_ms: now_ms,
    };
    let text = serde_json::to_string_pretty(&applied).map_err(|e| e.to_string())?;
    put(state_dir, STATE_FILE, Some(&text))?;
    Ok(plan.summary)
}

/// Whether `program` names an executable (a path, or a name found on `PATH`).
fn on_path(program: &Path) -> bool {
    if program.components().count() > 1 {
        return program.is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The settings last applied, if any.
pub fn applied(state_dir: &Path) -> Option<Applied> {
    let text = std::fs::read_to_string(state_dir.join(STATE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Compares what was applied with what is in place now. `installed` are the names of the
/// installed packages, when known.
pub fn state(mode: &Mode, state_dir: &Path, installed: Option<&[String]>) -> Option<SettingsState> {
    let applied = applied(state_dir)?;
    let root = settings_root(mode);
    let settings = &applied.settings;
    let mut drift = Vec::new();
    let holds = |relative: &str, expected: &str| {
        std::fs::read_to_string(root.join(relative)).is_ok_and(|text| text == expected)
    };
    if let Some(seconds) = settings.screen_lock_timeout_seconds
        && !(holds(SCREEN_LOCK_FILE, &screen_lock_text(seconds))
            && holds(SCREEN_LOCK_LOCKS, SCREEN_LOCK_LOCKS_TEXT))
    {
        drift.push("screen_lock_timeout_seconds".to_owned());
    }
    if settings.usb_storage_blocked == Some(true) && !holds(USB_BLOCK_FILE, USB_BLOCK_TEXT) {
        drift.push("usb_storage_blocked".to_owned());
    }
    let denied_packages = match installed {
        Some(installed) => installed
            .iter()
            .filter(|name| settings.packages.denied.contains(*name))
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    if !denied_packages.is_empty() {
        drift.push("packages.denied".to_owned());
    }
    Some(SettingsState {
        digest: applied.digest,
        applied_at: rfc3339(applied.applied_ms),
        drift,
        denied_packages,
    })
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn applies_reports_and_detects_drift() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = dir.path().join("sandbox");
        let state_dir = dir.path().join("state");
        std::fs::create_dir_all(&sandbox).unwrap();
        std::fs::create_dir_all(&state_dir).unwrap();
        let mode = Mode::Sandbox(sandbox.clone());
        let params = json!({"settings": {"screen_lock_timeout_seconds": 300, "usb_storage_blocked": true,
            "firewall_required": true, "packages": {"denied": ["telnetd"]}}, "digest": "abc"});
        let summary = apply(
            &mode,
            &Tools::default(),
            &state_dir,
            "c1",
            &params,
            1_790_000_000_000,
        )
        .unwrap();
        assert!(
            summary.contains("screen lock after 300 s") && summary.contains("USB"),
            "{summary}"
        );
        let keyfile = std::fs::read_to_string(sandbox.join("root").join(SCREEN_LOCK_FILE)).unwrap();
        assert!(keyfile.contains("idle-delay=uint32 300"));
        // Programs are recorded, not run.
        let record = std::fs::read_to_string(sandbox.join("c1.json")).unwrap();
        assert!(
            record.contains("nftables") && record.contains("update"),
            "{record}"
        );

        let installed = vec!["bash".to_string(), "telnetd".to_string()];
        let state = state(&mode, &state_dir, Some(&installed)).unwrap();
        assert_eq!(state.digest, "abc");
        assert_eq!(state.drift, vec!["packages.denied"]);
        assert_eq!(state.denied_packages, vec!["telnetd"]);

        // Someone removes the USB block and edits the screen lock.
        std::fs::remove_file(sandbox.join("root").join(USB_BLOCK_FILE)).unwrap();
        std::fs::write(sandbox.join("root").join(SCREEN_LOCK_FILE), "idle-delay=uint32 0").unwrap();
        let state = super::state(&mode, &state_dir, None).unwrap();
        assert_eq!(
            state.drift,
            vec!["screen_lock_timeout_seconds", "usb_storage_blocked"]
        );

        // Settings no longer asked for are taken away.
        let params = json!({"settings": {}, "digest": "def"});
        apply(
            &mode,
            &Tools::default(),
            &state_dir,
            "c2",
            &params,
            1_790_000_000_001,
        )
        .unwrap();
        assert!(!sandbox.join("root").join(SCREEN_LOCK_FILE).exists());
        assert_eq!(
            super::state(&mode, &state_dir, None).unwrap().drift,
            Vec::<String>::new()
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mode = Mode::Sandbox(dir.path().to_path_buf());
        for params in [
            json!({"settings": {"screen_lock": 5}}),
            json!({"settings": "all"}),
        ] {
            let err = apply(&mode, &Tools::default(), dir.path(), "c", &params, 0).unwrap_err();
            assert!(err.starts_with("settings:"), "{err}");
        }
        assert!(applied(dir.path()).is_none(), "nothing remembered");
    }
}
