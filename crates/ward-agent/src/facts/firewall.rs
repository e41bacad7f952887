//! Whether a host firewall is active, and which one.
//!
//! "Active" is per backend and deliberately modest — it says filtering is switched on, not that
//! the rules are any good:
//! - **ufw**: etc/ufw/ufw.conf says `ENABLED=yes` (ufw loads its rules at boot when it does).
//! - **nftables**: `nft list tables` lists at least one table. Only on the live system, where it
//!   is run with the command timeout; on a fixture tree, or when `nft` is missing or refuses
//!   (not root), the backend is reported with `active: None` if etc/nftables.conf exists.
//! - **iptables**: proc/net/ip_tables_names (or ip6_tables_names) names at least one table, i.e.
//!   the legacy iptables kernel tables are loaded. iptables-nft rules show up under nftables.
//! - **firewalld**: etc/firewalld exists (installed); active when its pid file
//!   (run/firewalld.pid or var/run/firewalld.pid) names a process in proc whose command is
//!   firewalld.
//!
//! The firewall as a whole is active when at least one backend is known to be active.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::read::{self, MAX_NAME_BYTES};
use super::{CollectError, Context, command};

/// Largest `nft list tables` output accepted.
const MAX_NFT_OUTPUT: u64 = 1024 * 1024;

/// The host firewall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firewall {
    /// At least one backend is known to be active.
    pub active: bool,
    /// The backends found installed or loaded, in a fixed order: ufw, nftables, iptables, firewalld.
    pub backends: Vec<FirewallBackend>,
}

/// One firewall backend that was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallBackend {
    /// `ufw`, `nftables`, `iptables` or `firewalld`.
    pub name: String,
    /// `None` when the backend is present but its state could not be read.
    pub active: Option<bool>,
    /// What the decision was based on, e.g. the nftables table names.
    pub detail: Option<String>,
}

pub fn firewall(cx: &mut Context<'_>) -> Result<Firewall, CollectError> {
    let root = cx.root;
    let mut backends = Vec::new();

    if let Ok(conf) = read::read_file(root, "etc/ufw/ufw.conf") {
        let enabled = conf.lines().find_map(|line| {
            let value = line.trim().strip_prefix("ENABLED=")?;
            Some(
                value
                    .trim()
                    .trim_matches(|c| c == '"' || c == '\'')
                    .eq_ignore_ascii_case("yes"),
            )
        });
        backends.push(FirewallBackend {
            name: "ufw".to_owned(),
            active: Some(enabled.unwrap_or(false)),
            detail: Some("etc/ufw/ufw.conf".to_owned()),
        });
    }

    let nft = if cx.live && command::find_program("nft").is_some() {
        match command::run(
            "nft",
            &["list", "tables"],
            cx.options.command_timeout,
            MAX_NFT_OUTPUT,
        ) {
            Ok(output) => Some(parse_nft_tables(&output)),
            Err(error) => {
                cx.soft_error("firewall", error.to_string());
                None
            }
        }
    } else {
        None
    };
    match nft {
        Some(tables) => backends.push(FirewallBackend {
            name: "nftables".to_owned(),
            active: Some(!tables.is_empty()),
            detail: Some(read::clean(&tables.join(" "), MAX_NAME_BYTES)),
        }),
        None if read::exists(root, "etc/nftables.conf") => backends.push(FirewallBackend {
            name: "nftables".to_owned(),
            active: None,
            detail: Some("etc/nftables.conf".to_owned()),
        }),
        None => {}
    }

    let mut iptables_present = false;
    let mut iptables_tables = Vec::new();
    for rel in ["proc/net/ip_tables_names", "proc/net/ip6_tables_names"] {
        if let Ok(text) = read::read_file(root, rel) {
            iptables_present = true;
            iptables_tables.extend(text.split_whitespace().map(|t| read::clean(t, MAX_NAME_BYTES)));
        }
    }
    iptables_tables.sort();
    iptables_tables.dedup();
    if iptables_present {
        backends.push(FirewallBackend {
            name: "iptables".to_owned(),
            active: Some(!iptables_tables.is_empty()),
            detail: Some(read::clean(&iptables_tables.join(" "), MAX_NAME_BYTES))
                .filter(|tables| !tables.is_empty()),
        });
    }

    if read::exists(root, "etc/firewalld") {
        let running = ["run/firewalld.pid", "var/run/firewalld.pid"]
            .iter()
            .find_map(|rel| read::read_optional(root, rel))
            .map(|pid| firewalld_is_running(root, &pid));
        backends.push(FirewallBackend {
            name: "firewalld".to_owned(),
            // Installed but no pid file: not running (firewalld removes it on exit).
            active: Some(running.unwrap_or(false)),
            detail: Some("etc/firewalld".to_owned()),
        });
    }

    let active = backends.iter().any(|backend| backend.active == Some(true));
    Ok(Firewall { active, backends })
}

/// A pid file can outlive its process: check the pid is alive and is firewalld.
fn firewalld_is_running(root: &Path, pid: &str) -> bool {
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    read::read_capped(root, &format!("proc/{pid}/cmdline"), read::MAX_VALUE_BYTES)
        .is_ok_and(|cmdline| cmdline.text.contains("firewalld"))
}

/// The table names in `nft list tables` output (`table inet filter` → `inet filter`).
pub fn parse_nft_tables(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| line.trim().strip_prefix("table "))
        .map(|table| read::clean(table, MAX_NAME_BYTES))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_tables_are_parsed() {
        let output = "table inet filter\ntable ip nat\n";
        assert_eq!(parse_nft_tables(output), ["inet filter", "ip nat"]);
        assert!(parse_nft_tables("").is_empty());
    }
}
