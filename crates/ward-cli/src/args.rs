//! The top of the command tree: one `AdminCommand` variant per noun, holding the subcommands
//! that the noun's module defines and runs.

use clap::Subcommand;

use crate::accounts::{TokensCommand, UsersCommand};
use crate::actions::CommandsCommand;
use crate::audit::AuditCommand;
use crate::devices::{DevicesCommand, EnrollTokenCommand};
use crate::incidents::IncidentCommand;
use crate::lwm2m::Lwm2mCommand;
use crate::policies::{ComplianceCommand, GroupCommand, PolicyCommand};
use crate::session::{LOGIN_EXAMPLES, LoginArgs};
use crate::sites::SitesCommand;

/// The admin commands.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Log in with a password and save an API token for later commands
    #[command(after_help = LOGIN_EXAMPLES)]
    Login(LoginArgs),
    /// Revoke the saved token on the server and forget it
    Logout,
    /// Show who the token belongs to
    Whoami,
    /// Manage admin accounts
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage API tokens
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Manage hospitals and wards
    #[command(subcommand)]
    Sites(SitesCommand),
    /// Read, verify and export the tamper-evident audit log
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Create, list and revoke device enrollment tokens
    #[command(subcommand)]
    EnrollToken(EnrollTokenCommand),
    /// List, show, revoke, retire and export devices; act on them (lock, quarantine, wipe, ...)
    #[command(subcommand, alias = "device")]
    Devices(DevicesCommand),
    /// Follow and cancel remote actions
    #[command(subcommand)]
    Commands(CommandsCommand),
    /// Declare, contain, lift and report breaches
    #[command(subcommand, alias = "incidents")]
    Incident(IncidentCommand),
    /// Apply, list, show and diff security policies (YAML, versioned)
    #[command(subcommand, alias = "policies")]
    Policy(PolicyCommand),
    /// Compliance summaries and per-device results
    #[command(subcommand)]
    Compliance(ComplianceCommand),
    /// Dynamic groups: named selectors usable anywhere as `groups = "NAME"`
    #[command(subcommand, alias = "groups")]
    Group(GroupCommand),
    /// Provision and list LwM2M endpoints (constrained devices over CoAP)
    #[command(subcommand)]
    Lwm2m(Lwm2mCommand),
}
