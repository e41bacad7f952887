//! The system-wide screen-lock policy, where it is discoverable: GNOME's dconf keyfiles.
//!
//! Administrators set machine-wide GNOME defaults in keyfiles under `etc/dconf/db/<db>.d/` and
//! lock them against user changes by listing the keys in `etc/dconf/db/<db>.d/locks/`. The keys read:
//! `[org/gnome/desktop/screensaver] lock-enabled`, `lock-delay` and
//! `[org/gnome/desktop/session] idle-delay`. Keyfiles are applied in name order (databases, then
//! files), a later value replacing an earlier one; this approximates the profile's precedence
//! without reading it. A user's own dconf database can still override unlocked keys, which is why
//! the locked keys are reported too.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::CollectError;
use super::read::{self, MAX_NAME_BYTES};

/// Most keyfiles read across all databases.
const MAX_KEYFILES: usize = 256;
/// Most locked keys reported.
const MAX_LOCKED_KEYS: usize = 64;

const SCREENSAVER: &str = "org/gnome/desktop/screensaver";
const SESSION: &str = "org/gnome/desktop/session";

/// The screen-lock settings found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenLock {
    /// Where they were found: `gnome-dconf`.
    pub source: String,
    pub lock_enabled: Option<bool>,
    /// Idle time before the screen blanks, in seconds; 0 means never.
    pub idle_delay_seconds: Option<u32>,
    /// Time between blanking and locking, in seconds.
    pub lock_delay_seconds: Option<u32>,
    /// Screen-lock keys users cannot change, e.g. `/org/gnome/desktop/screensaver/lock-enabled`.
    pub locked_keys: Vec<String>,
}

/// `Ok(None)` when no keyfile sets any of the keys: the policy is unknown, not "off".
pub fn screen_lock(root: &Path) -> Result<Option<ScreenLock>, CollectError> {
    let db_dir = "etc/dconf/db";
    if !read::exists(root, db_dir) {
        return Ok(None);
    }
    let mut settings = ScreenLock {
        source: "gnome-dconf".to_owned(),
        lock_enabled: None,
        idle_delay_seconds: None,
        lock_delay_seconds: None,
        locked_keys: Vec::new(),
    };
    let mut n_keyfiles = 0;
    for db in read::list_dir(root, db_dir)?
        .into_iter()
        .filter(|name| name.ends_with(".d"))
    {
        let db_path = format!("{db_dir}/{db}");
        for file in read::list_dir(root, &db_path).unwrap_or_default() {
            if n_keyfiles == MAX_KEYFILES {
                break;
            }
            let rel = format!("{db_path}/{file}");
            // The locks/ directory is not a keyfile; read::read_file refuses directories anyway.
            if let Ok(text) = read::read_file(root, &rel) {
                n_keyfiles += 1;
                apply_keyfile(&text, &mut settings);
            }
        }
        for file in read::list_dir(root, &format!("{db_path}/locks")).unwrap_or_default() {
            let Ok(text) = read::read_file(root, &format!("{db_path}/locks/{file}")) else {
                continue;
            };
            let locked = text.lines().map(str::trim).filter(|key| {
                key.starts_with(&format!("/{SCREENSAVER}/")) || key.starts_with(&format!("/{SESSION}/"))
            });
            for key in locked {
                let key = read::clean(key, MAX_NAME_BYTES);
                if settings.locked_keys.len() < MAX_LOCKED_KEYS && !settings.locked_keys.contains(&key) {
                    settings.locked_keys.push(key);
                }
            }
        }
    }
    settings.locked_keys.sort();
    let found = settings.lock_enabled.is_some()
        || settings.idle_delay_seconds.is_some()
        || settings.lock_delay_seconds.is_some();
    Ok(found.then_some(settings))
}

/// Applies one keyfile's values for the keys we read to `settings`.
fn apply_keyfile(text: &str, settings: &mut ScreenLock) {
    let mut group = "";
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
            group = name.trim().trim_matches('/');
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match (group, key.trim()) {
            (SCREENSAVER, "lock-enabled") => {
                settings.lock_enabled = parse_bool(value).or(settings.lock_enabled);
            }
            (SCREENSAVER, "lock-delay") => {
                settings.lock_delay_seconds = parse_uint32(value).or(settings.lock_delay_seconds);
            }
            (SESSION, "idle-delay") => {
                settings.idle_delay_seconds = parse_uint32(value).or(settings.idle_delay_seconds);
            }
            _ => {}
        }
    }
}

/// GVariant text for a boolean: `true` / `false`.
fn parse_bool(value: &str) -> Option<bool> {
    match value.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// GVariant text for a uint32: `uint32 300` or a bare `300`.
fn parse_uint32(value: &str) -> Option<u32> {
    let value = value.trim();
    value.strip_prefix("uint32").unwrap_or(value).trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gvariant_values_are_parsed() {
        assert_eq!(parse_uint32("uint32 300"), Some(300));
        assert_eq!(parse_uint32(" 60 "), Some(60));
        assert_eq!(parse_uint32("uint32 -1"), None);
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool("'yes'"), None);
    }
}
