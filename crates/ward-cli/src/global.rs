//! The flags every admin command takes: where the server is and how to trust and authenticate to it.

use std::path::PathBuf;

use clap::Args;

/// Flags every admin command accepts: where the server is and how to trust and authenticate to it.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Ward server URL, e.g. https://ward.example.org:8443 (default: the one saved by `ward login`)
    #[arg(long, global = true, env = "WARD_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// API token `ward_<id>_<secret>` (default: the one saved by `ward login`)
    #[arg(
        long,
        global = true,
        env = "WARD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// PEM file of the server's CA certificate, trusted as the only root
    #[arg(long, global = true, env = "WARD_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// SHA-256 of the server's CA certificate, as printed at the server's first start
    #[arg(long, global = true, env = "WARD_CA_FINGERPRINT", value_name = "SHA256")]
    pub ca_fingerprint: Option<String>,

    /// Print JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
}
