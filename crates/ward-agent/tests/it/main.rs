//! ward-agent's integration tests: fact collection over fixture trees and the live machine, the
//! diff/apply round trip, the command runner, and real server + agent processes (including real
//! nftables quarantine in network namespaces).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod actions_e2e;
mod commands;
mod diff;
mod e2e;
mod fixture;
mod hostile;
mod live;
mod quarantine;

use std::path::{Path, PathBuf};

use ward_agent::facts::{CollectOptions, Facts, collect};

/// The path of a checked-in fixture tree.
pub fn fixture_root(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Collects a fixture tree with the default options for it (no commands).
pub fn collect_fixture(root: &Path) -> Facts {
    let options = CollectOptions::for_root(root);
    assert!(!options.run_commands);
    collect(root, &options)
}
