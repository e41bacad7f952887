//! The small one-file facts: OS release, kernel, hostname, uptime, CPU and memory.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::CollectError;
use super::read::{self, MAX_NAME_BYTES, MAX_TEXT_BYTES};

/// The distribution, from os-release(5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsRelease {
    /// `ID`, e.g. `debian`; never empty (a file without it is an error).
    pub id: String,
    pub name: Option<String>,
    pub version: Option<String>,
    pub version_id: Option<String>,
    pub pretty_name: Option<String>,
}

/// The running kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kernel {
    /// proc/sys/kernel/osrelease, e.g. `6.1.0-25-amd64`.
    pub release: String,
    /// proc/version, the build banner (cut to 512 bytes).
    pub version: Option<String>,
}

/// The processor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cpu {
    pub model: Option<String>,
    /// Logical cores: the number of `processor` entries in proc/cpuinfo.
    pub logical_cores: u32,
}

/// Memory, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    pub total_bytes: u64,
    /// `MemAvailable` (kernels since 3.14); `None` when the kernel does not report it.
    pub available_bytes: Option<u64>,
}

/// etc/os-release, falling back to usr/lib/os-release as os-release(5) prescribes.
pub fn os_release(root: &Path) -> Result<OsRelease, CollectError> {
    let text = match read::read_file(root, "etc/os-release") {
        Ok(text) => text,
        Err(first) => read::read_file(root, "usr/lib/os-release")
            .map_err(|second| CollectError::Missing(format!("no os-release: {first}; {second}")))?,
    };
    let mut release = OsRelease {
        id: String::new(),
        name: None,
        version: None,
        version_id: None,
        pretty_name: None,
    };
    for line in text.lines() {
        let Some((key, raw_value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = read::clean(&unquote(raw_value), MAX_NAME_BYTES);
        let value = Some(value).filter(|value| !value.is_empty());
        match key.trim() {
            "ID" => release.id = value.unwrap_or_default(),
            "NAME" => release.name = value,
            "VERSION" => release.version = value,
            "VERSION_ID" => release.version_id = value,
            "PRETTY_NAME" => release.pretty_name = value,
            _ => {}
        }
    }
    if release.id.is_empty() {
        return Err(CollectError::Malformed("os-release has no ID".to_owned()));
    }
    Ok(release)
}

/// Undoes os-release's shell-style quoting: `"a \"b\""`, `'a b'` or a bare word.
fn unquote(raw: &str) -> String {
    let raw = raw.trim();
    let quote = match raw.chars().next() {
        Some(quote @ ('"' | '\'')) => quote,
        _ => return raw.to_owned(),
    };
    let mut value = String::new();
    let mut chars = raw[1..].chars();
    while let Some(c) = chars.next() {
        match c {
            c if c == quote => break,
            '\\' if quote == '"' => value.extend(chars.next()),
            c => value.push(c),
        }
    }
    value
}

/// proc/sys/kernel/osrelease and proc/version.
pub fn kernel(root: &Path) -> Result<Kernel, CollectError> {
    let release = read::read_value(root, "proc/sys/kernel/osrelease")?;
    if release.is_empty() {
        return Err(CollectError::Malformed(
            "proc/sys/kernel/osrelease is empty".to_owned(),
        ));
    }
    let version = read::read_capped(root, "proc/version", read::MAX_VALUE_BYTES)
        .ok()
        .map(|capped| read::clean(capped.text.lines().next().unwrap_or(""), MAX_TEXT_BYTES))
        .filter(|version| !version.is_empty());
    Ok(Kernel { release, version })
}

/// proc/sys/kernel/hostname (the live name), falling back to etc/hostname (the configured one).
pub fn hostname(root: &Path) -> Result<String, CollectError> {
    let mut failures = Vec::new();
    for rel in ["proc/sys/kernel/hostname", "etc/hostname"] {
        match read::read_value(root, rel) {
            Ok(name) if !name.is_empty() => return Ok(name),
            Ok(_) => failures.push(format!("{rel}: empty")),
            Err(error) => failures.push(error.to_string()),
        }
    }
    Err(CollectError::Missing(format!(
        "no hostname: {}",
        failures.join("; ")
    )))
}

/// proc/uptime's first field, whole seconds.
pub fn uptime_seconds(root: &Path) -> Result<u64, CollectError> {
    let text = read::read_value(root, "proc/uptime")?;
    let first = text.split_whitespace().next().unwrap_or("");
    let whole = first.split('.').next().unwrap_or("");
    whole
        .parse()
        .map_err(|_| CollectError::Malformed(format!("proc/uptime: not a number: {first:?}")))
}

/// proc/cpuinfo: the model of the first processor and the count of processors.
pub fn cpu(root: &Path) -> Result<Cpu, CollectError> {
    let text = read::read_file(root, "proc/cpuinfo")?;
    let mut model = None;
    let mut logical_cores: u32 = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "processor" => logical_cores = logical_cores.saturating_add(1),
            // x86 says "model name"; some ARM, MIPS and s390 kernels use the others.
            "model name" | "cpu model" | "Processor" | "Model" if model.is_none() => {
                model = Some(read::clean(value, MAX_NAME_BYTES)).filter(|m| !m.is_empty());
            }
            _ => {}
        }
    }
    if logical_cores == 0 {
        return Err(CollectError::Malformed(
            "proc/cpuinfo lists no processor".to_owned(),
        ));
    }
    Ok(Cpu { model, logical_cores })
}

/// proc/meminfo's `MemTotal` and `MemAvailable`, converted from kB (KiB, really) to bytes.
pub fn memory(root: &Path) -> Result<Memory, CollectError> {
    let text = read::read_file(root, "proc/meminfo")?;
    let field = |name: &str| -> Option<u64> {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.split_whitespace().next()?.parse().ok()?;
            kib.checked_mul(1024)
        })
    };
    let total_bytes = field("MemTotal")
        .ok_or_else(|| CollectError::Malformed("proc/meminfo has no MemTotal".to_owned()))?;
    Ok(Memory {
        total_bytes,
        available_bytes: field("MemAvailable"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquote_handles_the_os_release_forms() {
        assert_eq!(unquote(r#""Debian GNU/Linux""#), "Debian GNU/Linux");
        assert_eq!(unquote(r#""say \"hi\"""#), r#"say "hi""#);
        assert_eq!(unquote("'single'"), "single");
        assert_eq!(unquote("bare"), "bare");
        assert_eq!(unquote(r#""unterminated"#), "unterminated");
    }
}
