//! The admin commands' flags and subcommands, as clap derives the binary embeds.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand};

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
    EnrollToken(crate::devices::EnrollTokenCommand),
    /// List, show, revoke, retire and export devices; act on them (lock, quarantine, wipe, ...)
    #[command(subcommand, alias = "device")]
    Devices(crate::devices::DevicesCommand),
    /// Follow and cancel remote actions
    #[command(subcommand)]
    Commands(crate::actions::CommandsCommand),
    /// Declare, contain, lift and report breaches
    #[command(subcommand, alias = "incidents")]
    Incident(crate::incidents::IncidentCommand),
    /// Apply, list, show and diff security policies (YAML, versioned)
    #[command(subcommand, alias = "policies")]
    Policy(crate::policies::PolicyCommand),
    /// Compliance summaries and per-device results
    #[command(subcommand)]
    Compliance(crate::policies::ComplianceCommand),
    /// Dynamic groups: named selectors usable anywhere as `groups = "NAME"`
    #[command(subcommand, alias = "groups")]
    Group(crate::policies::GroupCommand),
    /// Provision and list LwM2M endpoints (constrained devices over CoAP)
    #[command(subcommand)]
    Lwm2m(crate::lwm2m::Lwm2mCommand),
}

const LOGIN_EXAMPLES: &str = "\
Examples:
  ward login --server https://ward.example.org:8443 --ca-fingerprint 3F:A1:...:90 --username alice
  printf '%s\\n' \"$PASS\" | ward login --server http://127.0.0.1:8443 --username admin --password-stdin

The password is prompted for on a terminal; scripts pass it in WARD_PASSWORD or with --password-stdin.";

/// `ward login`.
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// Account to log in as (default: $USER)
    #[arg(long, value_name = "NAME")]
    pub username: Option<String>,

    /// Name for the API token the server issues (default: cli)
    #[arg(long, value_name = "NAME")]
    pub token_name: Option<String>,

    /// Days until the token expires (default 30, at most 365)
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=365))]
    pub expires_in_days: Option<u32>,

    /// Read the password as one line from stdin instead of prompting
    #[arg(long)]
    pub password_stdin: bool,

    /// Six-digit code from the authenticator app (prompted for on a terminal when needed)
    #[arg(long, value_name = "CODE", conflicts_with = "recovery_code")]
    pub totp_code: Option<String>,

    /// A one-time recovery code instead of a TOTP code
    #[arg(long, value_name = "CODE")]
    pub recovery_code: Option<String>,
}

/// `ward users ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum UsersCommand {
    /// List accounts
    List,
    /// Show one account
    Show {
        /// Username
        name: String,
    },
    /// Create an account; the server generates its first password unless told otherwise
    Create {
        /// Username
        name: String,
        /// admin, security, operator, helpdesk or auditor
        #[arg(long, value_name = "ROLE")]
        role: String,
        /// Limit the account to this site (repeat for several; none means every site)
        #[arg(long = "site", value_name = "SLUG")]
        sites: Vec<String>,
        /// Full name shown in the console and audit log
        #[arg(long, value_name = "TEXT")]
        display_name: Option<String>,
        /// Emergency account: every use raises an alert in the audit log
        #[arg(long)]
        break_glass: bool,
    },
    /// Change an account's role, sites, name or status
    #[command(group(
        ArgGroup::new("change")
            .required(true)
            .multiple(true)
            .args(["role", "sites", "all_sites", "display_name", "disable", "enable"])
    ))]
    Update {
        /// Username
        name: String,
        /// New role
        #[arg(long, value_name = "ROLE")]
        role: Option<String>,
        /// Replace the account's sites with these (repeat for several)
        #[arg(long = "site", value_name = "SLUG", conflicts_with = "all_sites")]
        sites: Vec<String>,
        /// Let the account act on every site
        #[arg(long)]
        all_sites: bool,
        /// New full name
        #[arg(long, value_name = "TEXT")]
        display_name: Option<String>,
        /// Disable the account (its sessions and tokens stop working)
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        /// Enable a disabled account
        #[arg(long)]
        enable: bool,
    },
    /// Give an account a new server-generated password
    ResetPassword {
        /// Username
        name: String,
    },
    /// Change your own password
    Password {
        /// Read the current and new password as two lines from stdin
        #[arg(long)]
        password_stdin: bool,
    },
    /// Start TOTP enrolment for your account (shows the secret and recovery codes once)
    TotpEnrol,
    /// Finish TOTP enrolment with a code from the authenticator app
    TotpConfirm {
        /// Six-digit code
        code: String,
    },
}

/// `ward tokens ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum TokensCommand {
    /// List your tokens (or everyone's with --all)
    List {
        /// Include every user's tokens (admins only)
        #[arg(long)]
        all: bool,
    },
    /// Create a token; its secret is shown only once
    Create {
        /// A name to recognise it by, e.g. the script that uses it
        name: String,
        /// read (GET only) or write
        #[arg(long, value_parser = ["read", "write"], default_value = "read")]
        scope: String,
        /// Days until it expires (default 90, at most 365)
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=365))]
        expires_in_days: Option<u32>,
    },
    /// Revoke a token
    Revoke {
        /// Token id, as shown by `ward tokens list`
        id: String,
    },
}

/// `ward sites ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum SitesCommand {
    /// List hospitals and wards
    List,
    /// Show one site
    Show {
        /// `hospital` or `hospital/ward`
        slug: String,
    },
    /// Create a hospital (`slug`) or a ward (`hospital/ward`)
    Create {
        /// `hospital` or `hospital/ward`: a-z, 0-9 and -
        slug: String,
        /// Display name
        #[arg(long, value_name = "TEXT")]
        name: String,
    },
    /// Change a site's display name
    Rename {
        /// `hospital` or `hospital/ward`
        slug: String,
        /// New display name
        #[arg(long, value_name = "TEXT")]
        name: String,
    },
    /// Delete a site
    Delete {
        /// `hospital` or `hospital/ward`
        slug: String,
    },
}

/// `ward audit ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum AuditCommand {
    /// List audit entries, oldest first
    List {
        /// Only entries after this sequence number
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        /// At most this many entries (default 100, at most 1000)
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        /// Only entries by this actor
        #[arg(long, value_name = "NAME")]
        actor: Option<String>,
        /// Only this action, or a prefix ending in `.` such as `auth.`
        #[arg(long, value_name = "ACTION")]
        action: Option<String>,
        /// Only entries about this target
        #[arg(long, value_name = "TARGET")]
        target: Option<String>,
    },
    /// Check the log's hash chain and signed checkpoints; exits 4 if it was altered
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify {
        /// Verify this database directly instead of asking the server
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// Verify the SQLite store in this data directory directly instead of asking the server
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Write entries as JSON lines, for archiving or checking elsewhere
    Export {
        /// Only entries after this sequence number
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        /// Write to this file (created 0600) instead of stdout
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// List the signed checkpoints
    Checkpoints,
    /// Show the public key that signs checkpoints
    Key,
}

const VERIFY_EXAMPLES: &str = "\
Examples:
  ward audit verify                              # ask the server to check its log
  ward audit verify --data-dir /var/lib/ward     # check the store directly, without the server
  ward audit verify --database postgres://ward@db/ward

Exit code 4 means the log was altered; the output names the first bad entry.";
