//! The `ws01` fixture, a Debian laptop with LUKS, ufw and a USB stick: each collector's exact output.

use ward_agent::facts::*;

use crate::{collect_fixture, fixture_root};

fn ws01() -> Facts {
    collect_fixture(&fixture_root("ws01"))
}

fn s(text: &str) -> String {
    text.to_owned()
}

#[test]
fn nothing_fails_on_a_complete_tree() {
    assert_eq!(ws01().errors, []);
}

#[test]
fn os_kernel_hostname_uptime_cpu_memory() {
    let facts = ws01();
    assert_eq!(facts.agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        facts.os,
        Some(OsRelease {
            id: s("debian"),
            name: Some(s("Debian GNU/Linux")),
            version: Some(s("12 (bookworm)")),
            version_id: Some(s("12")),
            pretty_name: Some(s("Debian GNU/Linux 12 (bookworm)")),
        })
    );
    let kernel = facts.kernel.unwrap();
    assert_eq!(kernel.release, "6.1.0-25-amd64");
    assert!(
        kernel
            .version
            .unwrap()
            .starts_with("Linux version 6.1.0-25-amd64 (debian-kernel@")
    );
    // The live name wins over the configured one.
    assert_eq!(facts.hostname.as_deref(), Some("ws01"));
    assert_eq!(facts.uptime_seconds, Some(93784));
    assert_eq!(
        facts.cpu,
        Some(Cpu {
            model: Some(s("Intel(R) Core(TM) i5-8265U CPU @ 1.60GHz")),
            logical_cores: 2
        })
    );
    assert_eq!(
        facts.memory,
        Some(Memory {
            total_bytes: 8041548 * 1024,
            available_bytes: Some(4020774 * 1024)
        })
    );
}

#[test]
fn disks_report_luks_below_lvm_and_an_encrypted_root() {
    let disks = ws01().disks.unwrap();
    assert_eq!(
        disks.devices,
        [
            Disk {
                name: s("sda"),
                size_bytes: Some(500118192 * 512),
                removable: Some(false),
                rotational: Some(false),
                model: Some(s("Samsung SSD 860")),
                encrypted: false,
                partitions: vec![
                    Partition {
                        name: s("sda1"),
                        size_bytes: Some(1048576 * 512),
                        encrypted: false
                    },
                    Partition {
                        name: s("sda2"),
                        size_bytes: Some(499067568 * 512),
                        encrypted: true
                    },
                ],
            },
            Disk {
                name: s("sdb"),
                size_bytes: Some(30031872 * 512),
                removable: Some(true),
                rotational: Some(true),
                model: None,
                encrypted: false,
                partitions: vec![],
            },
        ]
    );
    assert_eq!(
        disks.crypt_mappings,
        [CryptMapping {
            name: s("cryptroot"),
            device: s("dm-0"),
            kind: Some(s("LUKS2")),
            backing_devices: vec![s("sda2")],
        }]
    );
    assert_eq!(
        disks.root_filesystem,
        Some(RootFilesystem {
            device: s("/dev/mapper/vg-root"),
            fs_type: s("ext4"),
            encrypted: Some(true)
        })
    );
}

#[test]
fn firewall_is_active_through_ufw_and_loaded_iptables_tables() {
    assert_eq!(
        ws01().firewall,
        Some(Firewall {
            active: true,
            backends: vec![
                FirewallBackend {
                    name: s("ufw"),
                    active: Some(true),
                    detail: Some(s("etc/ufw/ufw.conf"))
                },
                FirewallBackend {
                    name: s("iptables"),
                    active: Some(true),
                    detail: Some(s("filter nat"))
                },
            ],
        })
    );
}

#[test]
fn listening_keeps_listen_and_unconnected_udp_only_deduplicated_and_sorted() {
    let socket = |proto: &str, address: &str, port| ListeningSocket {
        proto: s(proto),
        address: s(address),
        port,
    };
    assert_eq!(
        ws01().listening.unwrap(),
        [
            socket("tcp", "0.0.0.0", 22),
            socket("tcp", "::", 22),
            socket("udp", "127.0.0.53", 53),
            socket("udp", "0.0.0.0", 68),
            socket("tcp", "127.0.0.1", 631),
            socket("tcp", "::1", 631),
        ]
    );
}

#[test]
fn usb_storage_lists_the_mass_storage_device_only() {
    assert_eq!(
        ws01().usb_storage.unwrap(),
        [UsbStorageDevice {
            bus_id: s("1-1"),
            vendor_id: Some(s("0781")),
            product_id: Some(s("5567")),
            manufacturer: Some(s("SanDisk")),
            product: Some(s("Cruzer Blade")),
            serial: Some(s("4C530001230718115392")),
        }]
    );
}

#[test]
fn packages_are_the_installed_dpkg_ones() {
    let package = |name: &str, version: &str, arch: &str| Package {
        name: s(name),
        version: s(version),
        architecture: Some(s(arch)),
    };
    assert_eq!(
        ws01().packages,
        Some(Packages {
            manager: s("dpkg"),
            n_installed: 4,
            truncated: false,
            items: vec![
                package("bash", "5.2.15-2+b7", "amd64"),
                package("libc6", "2.36-9+deb12u8", "amd64"),
                package("libc6", "2.36-9+deb12u8", "i386"),
                package("openssl", "3.0.14-1~deb12u2", "amd64"),
            ],
        })
    );
}

#[test]
fn network_interfaces_with_addresses_from_proc() {
    let network = ws01().network.unwrap();
    assert_eq!(network.ipv4_source, "proc");
    assert_eq!(
        network.interfaces,
        [
            Interface {
                name: s("eth0"),
                mac_address: Some(s("52:54:00:12:34:56")),
                operstate: Some(s("up")),
                up: Some(true),
                ipv4: vec![s("192.0.2.10/24")],
                ipv6: vec![s("2001:db8::10/64"), s("fe80::5054:ff:fe12:3456/64")],
            },
            Interface {
                name: s("lo"),
                mac_address: Some(s("00:00:00:00:00:00")),
                operstate: Some(s("unknown")),
                up: Some(true),
                ipv4: vec![s("127.0.0.1/8")],
                ipv6: vec![s("::1/128")],
            },
            Interface {
                name: s("wlan0"),
                mac_address: Some(s("a0:b1:c2:d3:e4:f5")),
                operstate: Some(s("down")),
                up: Some(false),
                ipv4: vec![],
                ipv6: vec![],
            },
        ]
    );
}

#[test]
fn screen_lock_from_dconf_with_locked_keys() {
    assert_eq!(
        ws01().screen_lock,
        Some(ScreenLock {
            source: s("gnome-dconf"),
            lock_enabled: Some(true),
            idle_delay_seconds: Some(300),
            lock_delay_seconds: Some(0),
            locked_keys: vec![
                s("/org/gnome/desktop/screensaver/lock-enabled"),
                s("/org/gnome/desktop/session/idle-delay"),
            ],
        })
    );
}

#[test]
fn time_sync_from_the_timesyncd_marker() {
    assert_eq!(
        ws01().time_sync,
        Some(TimeSync {
            synchronized: Some(true),
            services: vec![TimeSyncService {
                name: s("systemd-timesyncd"),
                synchronized: Some(true)
            }],
        })
    );
}

#[test]
fn facts_survive_a_json_round_trip() {
    let facts = ws01();
    let json = serde_json::to_string(&facts).unwrap();
    assert_eq!(serde_json::from_str::<Facts>(&json).unwrap(), facts);
}

/// Every field a complete fact report carries is known to the policy language's schema, with a
/// matching type: otherwise a policy could not name it (or would compare it wrongly).
#[test]
fn every_reported_field_is_in_the_policy_schema() {
    use ward_domain::policy::schema::{FieldType, field_type};
    let mut facts = ws01();
    facts.settings = Some(ward_agent::settings::SettingsState {
        digest: s("abc"),
        applied_at: s("2026-11-28T00:00:00Z"),
        drift: vec![s("usb_storage_blocked")],
        denied_packages: vec![s("telnetd")],
    });
    let value = serde_json::to_value(&facts).unwrap();
    let mut pending = vec![(String::from("facts"), &value)];
    let mut seen = 0;
    while let Some((path, value)) = pending.pop() {
        match value {
            serde_json::Value::Object(map) => {
                pending.extend(map.iter().map(|(key, value)| (format!("{path}.{key}"), value)))
            }
            serde_json::Value::Array(items) => pending.extend(items.iter().map(|item| (path.clone(), item))),
            serde_json::Value::Null => {}
            leaf => {
                seen += 1;
                let kind = field_type(&path).unwrap_or_else(|| panic!("{path} is not in the policy schema"));
                let fits = match leaf {
                    serde_json::Value::Bool(_) => kind == FieldType::Bool,
                    serde_json::Value::Number(_) => kind == FieldType::Number,
                    _ => kind != FieldType::Bool && kind != FieldType::Number,
                };
                assert!(fits, "{path}: schema says {kind:?}, the agent reports {leaf}");
            }
        }
    }
    assert!(seen > 40, "the fixture reports most fields ({seen})");
}
