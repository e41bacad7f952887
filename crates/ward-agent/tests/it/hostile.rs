//! Hostile and broken machines: escapes and HTML in names, huge files, corrupt tables, missing
//! files, FIFOs and package floods. Everything must come out bounded, clean, and without a panic.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use ward_agent::facts::*;

use crate::{collect_fixture, fixture_root};

fn write(root: &Path, rel: &str, contents: impl AsRef<[u8]>) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

fn errors_of<'a>(facts: &'a Facts, collector: &str) -> Vec<&'a str> {
    facts
        .errors
        .iter()
        .filter(|e| e.collector == collector)
        .map(|e| e.error.as_str())
        .collect()
}

#[test]
fn control_characters_and_bidi_overrides_are_stripped_html_is_kept() {
    let facts = collect_fixture(&fixture_root("hostile"));
    let os = facts.os.unwrap();
    assert_eq!(os.id, "evilos");
    assert_eq!(os.name.as_deref(), Some("Evil[2J[31mOS<script>alert(1)</script>"));
    assert_eq!(os.pretty_name.as_deref(), Some("Evil SO"));
    // 200 two-byte "é": cut to 256 bytes, on a char boundary.
    assert_eq!(os.version_id.as_deref(), Some("é".repeat(128).as_str()));
    assert_eq!(facts.hostname.as_deref(), Some("ws<b>01</b>]0;pwned"));
}

#[test]
fn missing_files_fail_their_collector_only() {
    let facts = collect_fixture(&fixture_root("hostile"));
    let failed: Vec<&str> = facts.errors.iter().map(|e| e.collector.as_str()).collect();
    assert_eq!(
        failed,
        [
            "kernel",
            "uptime_seconds",
            "cpu",
            "memory",
            "disks",
            "listening",
            "listening",
            "listening",
            "listening",
            "packages",
            "network",
        ]
    );
    assert_eq!(
        errors_of(&facts, "kernel"),
        ["proc/sys/kernel/osrelease: No such file or directory (os error 2)"]
    );
    assert_eq!(errors_of(&facts, "packages"), ["no dpkg or rpm database"]);
    assert!(facts.kernel.is_none() && facts.cpu.is_none() && facts.memory.is_none());
    // Absent firewall, USB bus, dconf and time services are facts, not errors.
    assert_eq!(
        facts.firewall,
        Some(Firewall {
            active: false,
            backends: vec![]
        })
    );
    assert_eq!(facts.usb_storage, Some(vec![]));
    assert_eq!(facts.screen_lock, None);
    assert_eq!(facts.time_sync, None);
}

#[test]
fn corrupt_proc_net_tcp_lines_are_skipped_and_counted() {
    let facts = collect_fixture(&fixture_root("hostile"));
    assert_eq!(
        facts.listening,
        Some(vec![ListeningSocket {
            proto: "tcp".to_owned(),
            address: "0.0.0.0".to_owned(),
            port: 22
        }])
    );
    let errors = errors_of(&facts, "listening");
    assert_eq!(errors[0], "proc/net/tcp: skipped 3 malformed line(s)");
    assert_eq!(errors[1], "proc/net/tcp6: No such file or directory (os error 2)");
}

#[test]
fn a_one_megabyte_hostname_is_bounded_at_a_char_boundary() {
    let dir = tempfile::tempdir().unwrap();
    // "€" is three bytes: 256 is not a multiple of three, so the cut must back off to 255.
    write(dir.path(), "proc/sys/kernel/hostname", "€".repeat(350_000));
    let facts = collect_fixture(dir.path());
    let hostname = facts.hostname.unwrap();
    assert_eq!(hostname.len(), 255);
    assert_eq!(hostname, "€".repeat(85));
}

#[test]
fn hostname_falls_back_to_etc_hostname() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "proc/sys/kernel/hostname", "\n");
    write(dir.path(), "etc/hostname", "ward-ws02\n");
    assert_eq!(collect_fixture(dir.path()).hostname.as_deref(), Some("ward-ws02"));
}

#[test]
fn os_release_falls_back_to_usr_lib() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "usr/lib/os-release", "ID=fedora\nVERSION_ID=40\n");
    let os = collect_fixture(dir.path()).os.unwrap();
    assert_eq!((os.id.as_str(), os.version_id.as_deref()), ("fedora", Some("40")));
}

#[test]
fn a_fifo_is_refused_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("etc")).unwrap();
    // mkfifo is coreutils: always there, so failing to make the FIFO fails the test.
    let made = std::process::Command::new("mkfifo")
        .arg(dir.path().join("etc/os-release"))
        .status()
        .expect("mkfifo (coreutils) runs");
    assert!(made.success(), "mkfifo failed: {made}");
    let facts = collect_fixture(dir.path());
    assert!(facts.os.is_none());
    assert!(errors_of(&facts, "os")[0].contains("etc/os-release: not a regular file"));
}

#[test]
fn twenty_thousand_packages_are_capped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut status = String::new();
    for index in 0..20_000 {
        write!(status, "Package: pkg{index:05}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.{index}\n\n").unwrap();
    }
    write(dir.path(), "var/lib/dpkg/status", status);

    let packages = collect_fixture(dir.path()).packages.unwrap();
    assert_eq!(packages.manager, "dpkg");
    assert_eq!(packages.n_installed, 20_000);
    assert!(packages.truncated);
    assert_eq!(packages.items.len(), DEFAULT_MAX_PACKAGES);
    assert_eq!(packages.items[0].name, "pkg00000");
    assert_eq!(packages.items[9_999].name, "pkg09999");

    let options = CollectOptions {
        max_packages: 5,
        ..CollectOptions::for_root(dir.path())
    };
    let packages = collect(dir.path(), &options).packages.unwrap();
    assert_eq!((packages.items.len(), packages.truncated), (5, true));
}

#[test]
fn an_address_without_a_connected_route_is_a_soft_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "sys/class/net/eth0/operstate", "up\n");
    write(dir.path(), "proc/net/if_inet6", "");
    write(
        dir.path(),
        "proc/net/fib_trie",
        "Local:\n  |-- 10.9.8.7\n     /32 host LOCAL\n",
    );
    write(
        dir.path(),
        "proc/net/route",
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n",
    );
    let facts = collect_fixture(dir.path());
    let network = facts.network.as_ref().unwrap();
    assert_eq!(network.interfaces.len(), 1);
    assert!(network.interfaces[0].ipv4.is_empty());
    assert_eq!(
        errors_of(&facts, "network"),
        ["no connected route for local address 10.9.8.7"]
    );
}

#[test]
fn an_empty_root_collects_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let facts = collect_fixture(dir.path());
    assert!(facts.os.is_none() && facts.hostname.is_none());
    assert!(facts.errors.len() <= MAX_ERRORS);
    assert!(facts.errors.iter().all(|e| e.error.len() <= MAX_TEXT_BYTES));
}
