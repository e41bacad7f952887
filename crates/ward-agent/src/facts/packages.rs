//! Installed packages: dpkg's status database, or `rpm -qa` on the live system.
//!
//! dpkg is read from its file (var/lib/dpkg/status, read up to 64 MiB: a desktop's is a few MiB).
//! rpm's database is binary (BerkeleyDB, NDB or SQLite depending on the release), so it is asked
//! through `rpm -qa`, only on the live system, with [`CollectOptions::package_timeout`].
//!
//! [`CollectOptions::package_timeout`]: super::CollectOptions::package_timeout

use serde::{Deserialize, Serialize};

use super::read::{self, MAX_NAME_BYTES};
use super::{CollectError, Context, command};

/// Most bytes of var/lib/dpkg/status read; larger than [`read::MAX_FILE_BYTES`] because the
/// file lists every package's description.
pub const MAX_DPKG_STATUS_BYTES: u64 = 64 * 1024 * 1024;
/// Most bytes of `rpm -qa` output accepted (about 100 bytes a package).
const MAX_RPM_OUTPUT: u64 = 16 * 1024 * 1024;

const RPM_QUERY_FORMAT: &str = "%{NAME}\\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\t%{ARCH}\\n";

/// The installed packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packages {
    /// `dpkg` or `rpm`.
    pub manager: String,
    /// How many installed packages were found, including any not listed.
    pub n_installed: u64,
    /// Fewer packages are listed than are installed: `max_packages` was reached, or the status
    /// file was longer than it is read.
    pub truncated: bool,
    /// Sorted by name then architecture.
    pub items: Vec<Package>,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: Option<String>,
}

pub fn packages(cx: &mut Context<'_>) -> Result<Packages, CollectError> {
    let dpkg_status = "var/lib/dpkg/status";
    if read::exists(cx.root, dpkg_status) {
        let capped = read::read_capped(cx.root, dpkg_status, MAX_DPKG_STATUS_BYTES)?;
        let installed = parse_dpkg_status(&capped.text);
        return Ok(finish(
            "dpkg",
            installed,
            capped.truncated,
            cx.options.max_packages,
        ));
    }
    if read::exists(cx.root, "var/lib/rpm") {
        if !cx.live {
            return Err(CollectError::Missing(
                "var/lib/rpm is only read through rpm, on the live system".to_owned(),
            ));
        }
        let output = command::run(
            "rpm",
            &["-qa", "--qf", RPM_QUERY_FORMAT],
            cx.options.package_timeout,
            MAX_RPM_OUTPUT,
        )?;
        return Ok(finish(
            "rpm",
            parse_rpm_output(&output),
            false,
            cx.options.max_packages,
        ));
    }
    Err(CollectError::Missing("no dpkg or rpm database".to_owned()))
}

fn finish(manager: &str, mut items: Vec<Package>, cut_short: bool, max_packages: usize) -> Packages {
    items.sort();
    items.dedup();
    let n_installed = items.len() as u64;
    let truncated = cut_short || items.len() > max_packages;
    items.truncate(max_packages);
    Packages {
        manager: manager.to_owned(),
        n_installed,
        truncated,
        items,
    }
}

/// The stanzas of a dpkg status file whose `Status` is `install ok installed`. Half-installed,
/// config-files-only and deinstalled packages are not installed.
pub fn parse_dpkg_status(text: &str) -> Vec<Package> {
    let mut packages = Vec::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut version, mut architecture, mut installed) = (None, None, None, false);
        for line in stanza.lines() {
            // Continuation lines (descriptions, conffiles) start with a space.
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key {
                "Package" => name = Some(value),
                "Version" => version = Some(value),
                "Architecture" => architecture = Some(value),
                "Status" => installed = value == "install ok installed",
                _ => {}
            }
        }
        if let (Some(name), Some(version), true) = (name, version, installed) {
            packages.push(Package {
                name: read::clean(name, MAX_NAME_BYTES),
                version: read::clean(version, MAX_NAME_BYTES),
                architecture: architecture.map(|a| read::clean(a, MAX_NAME_BYTES)),
            });
        }
    }
    packages
}

/// Lines of `name \t [epoch:]version-release \t arch`.
pub fn parse_rpm_output(output: &str) -> Vec<Package> {
    output
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let name = read::clean(fields.next()?, MAX_NAME_BYTES);
            let version = read::clean(fields.next()?, MAX_NAME_BYTES);
            let architecture = fields.next().map(|a| read::clean(a, MAX_NAME_BYTES));
            (!name.is_empty()).then_some(Package {
                name,
                version,
                architecture,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpm_output_is_parsed() {
        let output = "bash\t5.1.8-9.el9\tx86_64\nkernel\t1:5.14.0-1.el9\tx86_64\n\n";
        let packages = parse_rpm_output(output);
        assert_eq!(packages.len(), 2);
        assert_eq!(packages[1].version, "1:5.14.0-1.el9");
        assert_eq!(packages[0].architecture.as_deref(), Some("x86_64"));
    }

    #[test]
    fn gpg_pubkey_without_arch_is_kept() {
        let packages = parse_rpm_output("gpg-pubkey\tabc-def\t(none)\n");
        assert_eq!(packages[0].architecture.as_deref(), Some("(none)"));
    }
}
