//! The healthcare baseline policies shipped in `policies/baseline/`, compiled into the binary so
//! `ward demo` and the policy benchmark can use them without the source tree.

/// (file name, YAML text) of every baseline policy.
pub const BASELINE: &[(&str, &str)] = &[
    (
        "firewall-on.yaml",
        include_str!("../../../policies/baseline/firewall-on.yaml"),
    ),
    (
        "os-agent-floor.yaml",
        include_str!("../../../policies/baseline/os-agent-floor.yaml"),
    ),
    (
        "phi-disk-encryption.yaml",
        include_str!("../../../policies/baseline/phi-disk-encryption.yaml"),
    ),
    (
        "phi-no-usb-storage.yaml",
        include_str!("../../../policies/baseline/phi-no-usb-storage.yaml"),
    ),
    (
        "time-sync.yaml",
        include_str!("../../../policies/baseline/time-sync.yaml"),
    ),
    (
        "workstation-screen-lock.yaml",
        include_str!("../../../policies/baseline/workstation-screen-lock.yaml"),
    ),
];

/// The baseline as an apply request's files.
pub fn files() -> Vec<ward_proto::PolicyFile> {
    BASELINE
        .iter()
        .map(|(name, text)| ward_proto::PolicyFile {
            path: format!("baseline/{name}"),
            text: (*text).to_owned(),
        })
        .collect()
}
