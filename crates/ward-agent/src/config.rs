//! The agent's settings file (`ward-agent run --config FILE`, TOML). Every key is optional; an
//! unknown key is an error, so a typo never silently changes what a wipe erases.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What the device owner decides locally (the server decides the rest at enrollment).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Directories whose contents `wipe-selective` erases (the directories themselves stay).
    #[serde(default)]
    pub managed_dirs: Vec<PathBuf>,
    /// DNS resolvers still reachable while quarantined; empty = the nameservers in
    /// `/etc/resolv.conf`.
    #[serde(default)]
    pub dns_resolvers: Vec<IpAddr>,
    /// Lock the device after this many hours without reaching the server (1 to 720).
    #[serde(default)]
    pub offline_lock_hours: Option<u32>,
    /// With the offline self-lock, quarantine too.
    #[serde(default)]
    pub offline_quarantine: bool,
    /// The owner's opt-in to `wipe-full` (the enrollment must allow it too).
    #[serde(default)]
    pub allow_full_wipe: bool,
    /// LUKS block devices `wipe-full` crypto-erases.
    #[serde(default)]
    pub full_wipe_devices: Vec<PathBuf>,
    /// Program paths, where they are not the names on `PATH`.
    #[serde(default)]
    pub tools: Tools,
}

/// The programs the executors run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tools {
    pub loginctl: PathBuf,
    pub systemctl: PathBuf,
    pub nft: PathBuf,
    pub wall: PathBuf,
    pub cryptsetup: PathBuf,
    pub journalctl: PathBuf,
    pub dconf: PathBuf,
}

impl Default for Tools {
    fn default() -> Self {
        Self {
            loginctl: "loginctl".into(),
            systemctl: "systemctl".into(),
            nft: "nft".into(),
            wall: "wall".into(),
            cryptsetup: "cryptsetup".into(),
            journalctl: "journalctl".into(),
            dconf: "dconf".into(),
        }
    }
}

impl AgentConfig {
    /// Reads and checks the file at `path`; `None` gives the defaults.
    pub fn load(path: Option<&Path>) -> Result<AgentConfig, String> {
        let Some(path) = path else {
            return Ok(AgentConfig::default());
        };
        let text =
            std::fs::read_to_string(path).map_err(|err| format!("reading {}: {err}", path.display()))?;
        Self::parse(&text).map_err(|err| format!("{}: {err}", path.display()))
    }

    /// Parses and checks settings text.
    pub fn parse(text: &str) -> Result<AgentConfig, String> {
        let config: AgentConfig = toml::from_str(text).map_err(|err| err.to_string())?;
        if let Some(hours) = config.offline_lock_hours
            && !(1..=720).contains(&hours)
        {
            return Err(format!("offline_lock_hours: must be from 1 to 720, not {hours}"));
        }
        if config.offline_quarantine && config.offline_lock_hours.is_none() {
            return Err("offline_quarantine: needs offline_lock_hours".into());
        }
        for dir in &config.managed_dirs {
            if !dir.is_absolute() || dir == Path::new("/") {
                return Err(format!(
                    "managed_dirs: {} must be an absolute path other than /",
                    dir.display()
                ));
            }
        }
        for device in &config.full_wipe_devices {
            if !device.is_absolute() {
                return Err(format!(
                    "full_wipe_devices: {} must be an absolute path",
                    device.display()
                ));
            }
        }
        Ok(config)
    }

    /// The resolvers allowed while quarantined: the configured ones, else those in
    /// `<root>/etc/resolv.conf`.
    pub fn resolvers(&self, root: &Path) -> Vec<IpAddr> {
        if !self.dns_resolvers.is_empty() {
            return self.dns_resolvers.clone();
        }
        std::fs::read_to_string(root.join("etc/resolv.conf"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().strip_prefix("nameserver"))
            .filter_map(|rest| rest.trim().parse().ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_with_defaults_and_refuse_mistakes() {
        assert_eq!(AgentConfig::parse("").unwrap(), AgentConfig::default());
        let config = AgentConfig::parse(
            "managed_dirs = [\"/srv/cache\"]\ndns_resolvers = [\"10.0.0.53\", \"::1\"]\noffline_lock_hours = 24\n\
             offline_quarantine = true\n[tools]\nloginctl = \"/opt/bin/loginctl\"\n",
        )
        .unwrap();
        assert_eq!(config.offline_lock_hours, Some(24));
        assert_eq!(config.tools.loginctl, PathBuf::from("/opt/bin/loginctl"));
        assert_eq!(config.tools.nft, PathBuf::from("nft"));
        for bad in [
            "managed_dir = [\"/x\"]",
            "managed_dirs = [\"relative\"]",
            "managed_dirs = [\"/\"]",
            "dns_resolvers = [\"not an ip\"]",
            "offline_lock_hours = 0",
            "offline_lock_hours = 721",
            "offline_quarantine = true",
            "full_wipe_devices = [\"sda\"]",
            "[tools]\nrm = \"/bin/rm\"",
        ] {
            assert!(AgentConfig::parse(bad).is_err(), "{bad}");
        }
        assert!(AgentConfig::load(Some(Path::new("/nonexistent/agent.toml"))).is_err());
    }

    #[test]
    fn resolvers_fall_back_to_resolv_conf() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/resolv.conf"),
            "# comment\nnameserver 10.1.2.3\nnameserver bogus\nsearch x\n",
        )
        .unwrap();
        let config = AgentConfig::default();
        assert_eq!(
            config.resolvers(dir.path()),
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
    }
}
