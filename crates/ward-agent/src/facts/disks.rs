//! Block devices, their encryption (dm-crypt / LUKS) and the root filesystem, from sysfs and
//! proc/mounts.
//!
//! Encryption is read from the device-mapper graph rather than from on-disk headers: a
//! device-mapper device whose `dm/uuid` starts with `CRYPT-` is a dm-crypt mapping, and its
//! `slaves/` are what it encrypts. Stacks are followed (LUKS on LVM, LVM on LUKS, md in between).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::CollectError;
use super::read::{self, MAX_NAME_BYTES};

/// How deep a device-mapper / md stack is followed; real stacks are two or three deep.
const MAX_STACK_DEPTH: usize = 16;

/// Disks, dm-crypt mappings and the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disks {
    /// Whole disks from sys/block, without loop, ram, zram and device-mapper devices.
    pub devices: Vec<Disk>,
    /// Every dm-crypt mapping, whatever it holds.
    pub crypt_mappings: Vec<CryptMapping>,
    /// The filesystem mounted at `/`, if proc/mounts could be read.
    pub root_filesystem: Option<RootFilesystem>,
}

/// One whole disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    pub name: String,
    /// `size` (in 512-byte sectors, whatever the hardware sector size) × 512.
    pub size_bytes: Option<u64>,
    pub removable: Option<bool>,
    /// `queue/rotational`: spinning disk (true) or flash (false).
    pub rotational: Option<bool>,
    pub model: Option<String>,
    /// A dm-crypt mapping sits directly on the whole disk (or on a stack on top of it).
    pub encrypted: bool,
    pub partitions: Vec<Partition>,
}

/// One partition of a disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub name: String,
    pub size_bytes: Option<u64>,
    /// A dm-crypt mapping sits on this partition, directly or through other layers.
    pub encrypted: bool,
}

/// One dm-crypt mapping (an opened LUKS, plain or TCRYPT volume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CryptMapping {
    /// The mapping's name, as in `/dev/mapper/<name>`.
    pub name: String,
    /// The kernel device, e.g. `dm-0`.
    pub device: String,
    /// The format from the uuid (`CRYPT-LUKS2-…` → `LUKS2`, `CRYPT-PLAIN-…` → `PLAIN`).
    pub kind: Option<String>,
    /// The devices it reads from (its `slaves/`), e.g. `sda2`.
    pub backing_devices: Vec<String>,
}

/// The filesystem mounted at `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFilesystem {
    /// The mount source as proc/mounts says it, e.g. `/dev/mapper/root`.
    pub device: String,
    pub fs_type: String,
    /// Whether every path from the root filesystem's block device down to the disks goes through
    /// a dm-crypt mapping; `None` when the source is not a block device we can resolve (overlay,
    /// tmpfs, `/dev/root`, a network filesystem).
    pub encrypted: Option<bool>,
}

/// A device-mapper device as sysfs describes it.
struct DmDevice {
    name: String,
    uuid: String,
}

impl DmDevice {
    fn is_crypt(&self) -> bool {
        self.uuid.starts_with("CRYPT-")
    }
}

pub fn disks(root: &Path) -> Result<Disks, CollectError> {
    let names = read::list_dir(root, "sys/block")?;
    let mut dm_devices = BTreeMap::new();
    for name in names.iter().filter(|name| name.starts_with("dm-")) {
        let uuid = read::read_optional(root, &format!("sys/block/{name}/dm/uuid")).unwrap_or_default();
        let dm_name =
            read::read_optional(root, &format!("sys/block/{name}/dm/name")).unwrap_or_else(|| name.clone());
        dm_devices.insert(name.clone(), DmDevice { name: dm_name, uuid });
    }
    let slaves = |device: &str| -> Vec<String> {
        read::list_dir(root, &format!("sys/block/{device}/slaves")).unwrap_or_default()
    };

    // Everything below a dm-crypt mapping, however deep, counts as encrypted.
    let mut encrypted_below = BTreeSet::new();
    let mut crypt_mappings = Vec::new();
    for (device, dm) in dm_devices.iter().filter(|(_, dm)| dm.is_crypt()) {
        let backing_devices = slaves(device);
        let mut pending: Vec<(String, usize)> =
            backing_devices.iter().map(|slave| (slave.clone(), 1)).collect();
        while let Some((slave, depth)) = pending.pop() {
            if depth < MAX_STACK_DEPTH && encrypted_below.insert(slave.clone()) {
                pending.extend(slaves(&slave).into_iter().map(|next| (next, depth + 1)));
            }
        }
        crypt_mappings.push(CryptMapping {
            name: read::clean(&dm.name, MAX_NAME_BYTES),
            device: device.clone(),
            kind: dm
                .uuid
                .split('-')
                .nth(1)
                .map(|kind| read::clean(kind, MAX_NAME_BYTES)),
            backing_devices,
        });
    }

    let skipped = |name: &str| ["loop", "ram", "zram", "dm-"].iter().any(|p| name.starts_with(p));
    let mut devices = Vec::new();
    for name in names.iter().filter(|name| !skipped(name)) {
        let base = format!("sys/block/{name}");
        let partitions = read::list_dir(root, &base)
            .unwrap_or_default()
            .into_iter()
            .filter(|child| read::exists(root, &format!("{base}/{child}/partition")))
            .map(|child| Partition {
                size_bytes: size_bytes(root, &format!("{base}/{child}")),
                encrypted: encrypted_below.contains(&child),
                name: child,
            })
            .collect();
        devices.push(Disk {
            name: name.clone(),
            size_bytes: size_bytes(root, &base),
            removable: flag(root, &format!("{base}/removable")),
            rotational: flag(root, &format!("{base}/queue/rotational")),
            model: read::read_optional(root, &format!("{base}/device/model")),
            encrypted: encrypted_below.contains(name),
            partitions,
        });
    }

    let root_filesystem = root_filesystem(root, &names, &devices, &dm_devices, &slaves)?;
    Ok(Disks {
        devices,
        crypt_mappings,
        root_filesystem,
    })
}

/// The last proc/mounts entry for `/` (later mounts hide earlier ones, e.g. `rootfs`), and whether
/// its block device is encrypted.
fn root_filesystem(
    root: &Path,
    block_names: &[String],
    devices: &[Disk],
    dm_devices: &BTreeMap<String, DmDevice>,
    slaves: &dyn Fn(&str) -> Vec<String>,
) -> Result<Option<RootFilesystem>, CollectError> {
    let mounts = read::read_file(root, "proc/mounts")?;
    let Some((source, fs_type)) = mounts.lines().rev().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (source, target, fs_type) = (fields.next()?, fields.next()?, fields.next()?);
        (target == "/").then(|| (unescape_mount_field(source), fs_type.to_owned()))
    }) else {
        return Ok(None);
    };

    // Resolve the mount source to a kernel block device name.
    let device = if let Some(mapper_name) = source.strip_prefix("/dev/mapper/") {
        dm_devices
            .iter()
            .find(|(_, dm)| dm.name == mapper_name)
            .map(|(device, _)| device.clone())
    } else if let Some(name) = source.strip_prefix("/dev/") {
        let is_disk = block_names.iter().any(|block| block == name);
        let is_partition = devices.iter().flat_map(|d| &d.partitions).any(|p| p.name == name);
        (is_disk || is_partition).then(|| name.to_owned())
    } else {
        None
    };
    let encrypted = device.map(|device| sits_on_crypt(&device, dm_devices, slaves, 0));
    Ok(Some(RootFilesystem {
        device: read::clean(&source, MAX_NAME_BYTES),
        fs_type: read::clean(&fs_type, MAX_NAME_BYTES),
        encrypted,
    }))
}

/// True if `device` is a dm-crypt mapping, or is a stacked device all of whose slaves are.
fn sits_on_crypt(
    device: &str,
    dm_devices: &BTreeMap<String, DmDevice>,
    slaves: &dyn Fn(&str) -> Vec<String>,
    depth: usize,
) -> bool {
    if dm_devices.get(device).is_some_and(DmDevice::is_crypt) {
        return true;
    }
    let below = slaves(device);
    depth < MAX_STACK_DEPTH
        && !below.is_empty()
        && below
            .iter()
            .all(|slave| sits_on_crypt(slave, dm_devices, slaves, depth + 1))
}

/// proc/mounts writes space, tab, newline and backslash in paths as octal escapes (`\040`).
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[index], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn size_bytes(root: &Path, device_dir: &str) -> Option<u64> {
    let sectors: u64 = read::read_optional(root, &format!("{device_dir}/size"))?
        .parse()
        .ok()?;
    sectors.checked_mul(512)
}

fn flag(root: &Path, rel: &str) -> Option<bool> {
    match read::read_optional(root, rel)?.as_str() {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_fields_are_unescaped() {
        assert_eq!(unescape_mount_field(r"/dev/disk\040one"), "/dev/disk one");
        assert_eq!(unescape_mount_field(r"trailing\04"), r"trailing\04");
    }
}
