//! Server configuration: a TOML file, `WARD_*` environment variables and flags (in rising order of
//! precedence), validated into a typed [`Config`]. A bad value names its key and why.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `ward server` flags. Every flag also reads `WARD_<FLAG>`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerArgs {
    /// TOML config file (keys as in docs/configuration.md).
    #[arg(long, env = "WARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on for the API and console [default: 127.0.0.1:8443].
    #[arg(long, env = "WARD_LISTEN")]
    pub listen: Option<String>,
    /// Address for the agent channel (gRPC over mutual TLS) [default: 127.0.0.1:8444].
    #[arg(long, env = "WARD_AGENT_LISTEN")]
    pub agent_listen: Option<String>,
    /// Directory for keys and the embedded SQLite database [default: ./ward-data].
    #[arg(long, env = "WARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://...) instead of the embedded SQLite database.
    #[arg(long, env = "WARD_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// Operator-provided TLS certificate chain (PEM) instead of one from Ward's own CA.
    #[arg(long, env = "WARD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, env = "WARD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP. Only allowed when listening on a loopback address.
    #[arg(long, env = "WARD_INSECURE_HTTP")]
    pub insecure_http: bool,
    /// Log format: text or json [default: text].
    #[arg(long, env = "WARD_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Minutes without a request before a console session ends [default: 15].
    #[arg(long, env = "WARD_IDLE_TIMEOUT_MINUTES")]
    pub idle_timeout_minutes: Option<u64>,
    /// Seconds between agent heartbeats; a device is offline after three missed ones [default: 30].
    #[arg(long, env = "WARD_HEARTBEAT_SECONDS")]
    pub heartbeat_seconds: Option<u64>,
    /// Do not create the first admin account on first start (use `ward admin create`).
    #[arg(long, env = "WARD_NO_INITIAL_ADMIN")]
    pub no_initial_admin: bool,
    /// UDP address of the LwM2M gateway's plain CoAP (no DTLS), or `off` [default: 127.0.0.1:5683].
    #[arg(long, env = "WARD_LWM2M_LISTEN")]
    pub lwm2m_listen: Option<String>,
    /// UDP address of the LwM2M gateway's CoAP over DTLS with pre-shared keys, or `off`
    /// [default: 127.0.0.1:5684].
    #[arg(long, env = "WARD_LWM2M_DTLS_LISTEN")]
    pub lwm2m_dtls_listen: Option<String>,
}

/// The config file's shape. Unknown keys are errors, so a typo is never silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    version: Option<u32>,
    listen: Option<String>,
    agent_listen: Option<String>,
    data_dir: Option<PathBuf>,
    database: Option<String>,
    /// Read the database URL from this file (it may hold a password); refused if others can read it.
    database_file: Option<PathBuf>,
    insecure_http: Option<bool>,
    log_format: Option<String>,
    initial_admin: Option<bool>,
    heartbeat_seconds: Option<u64>,
    #[serde(default)]
    tls: FileTls,
    #[serde(default)]
    auth: FileAuth,
    #[serde(default)]
    audit: FileAudit,
    #[serde(default)]
    policy: FilePolicy,
    #[serde(default)]
    lwm2m: FileLwm2m,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLwm2m {
    listen: Option<String>,
    dtls_listen: Option<String>,
    allow_plain_udp: Option<bool>,
    auto_create: Option<bool>,
    auto_create_site: Option<String>,
    queue_timeout_seconds: Option<u64>,
    firmware_timeout_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePolicy {
    remediation_check_seconds: Option<u64>,
    #[serde(default)]
    webhooks: Vec<FileWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebhook {
    url: String,
    /// The HMAC key, or (better) `secret_file`.
    secret: Option<String>,
    secret_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    /// Extra DNS names or IPs for the certificate Ward issues itself.
    #[serde(default)]
    names: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    idle_timeout_minutes: Option<u64>,
    session_max_hours: Option<u64>,
    max_failed_logins: Option<u32>,
    max_failed_logins_per_address: Option<u32>,
    lockout_minutes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAudit {
    checkpoint_every: Option<u64>,
    checkpoint_minutes: Option<u64>,
}

/// Where the server's TLS identity comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// A certificate issued by Ward's own CA for these extra names (plus localhost and the listen IP).
    OwnCa { extra_names: Vec<String> },
    /// The operator's certificate chain and key.
    Provided { cert: PathBuf, key: PathBuf },
    /// No TLS (loopback only).
    Plaintext,
}

/// Login and session rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    pub idle_timeout_ms: i64,
    pub session_max_ms: i64,
    pub max_failed_logins: u32,
    pub max_failed_logins_per_address: u32,
    pub lockout_ms: i64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            idle_timeout_ms: 15 * 60_000,
            session_max_ms: 12 * 3_600_000,
            max_failed_logins: 5,
            max_failed_logins_per_address: 20,
            lockout_ms: 15 * 60_000,
        }
    }
}

/// Audit checkpoint cadence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Sign a checkpoint after this many new entries.
    pub checkpoint_every: u64,
    /// ...or after this long with unsigned entries.
    pub checkpoint_interval_ms: i64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            checkpoint_interval_ms: 5 * 60_000,
        }
    }
}

/// Where compliance changes are posted, and the key their HMAC-SHA256 signature uses.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The policy engine's cadence and webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// How often devices past their grace period are looked for.
    pub remediation_interval_ms: i64,
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            remediation_interval_ms: 60_000,
            webhooks: Vec::new(),
        }
    }
}

/// The LwM2M gateway (`docs/lwm2m.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lwm2mConfig {
    /// UDP address for plain CoAP; `None` when off.
    pub listen: Option<SocketAddr>,
    /// UDP address for CoAP over DTLS (PSK); `None` when off.
    pub dtls_listen: Option<SocketAddr>,
    /// Plain UDP (no DTLS) on a non-loopback address was explicitly allowed.
    pub allow_plain_udp: bool,
    /// Unknown endpoints are created (quarantined, in `auto_create_site`) instead of refused.
    pub auto_create: bool,
    /// Where auto-created endpoints go; required when `auto_create` is on.
    pub auto_create_site: Option<ward_domain::site::SiteSlug>,
    /// How long a request for a queue-mode device waits for the device's next Update.
    pub queue_timeout_ms: i64,
    /// How long a queue-mode device listens after a Register or Update (LwM2M: the client's
    /// MAX_TRANSMIT_WAIT, 93 s with RFC 7252 timing).
    pub queue_awake_ms: u64,
    /// CoAP ACK_TIMEOUT (RFC 7252: 2 s); tests shrink it so an unanswered request fails fast.
    pub ack_timeout_ms: u64,
    /// How often registrations are checked for an expired lifetime.
    pub sweep_interval_ms: u64,
    /// Most registrations one source address may attempt per minute.
    pub max_registrations_per_minute: usize,
    /// How long a firmware update (download, then update) may take before its command fails.
    pub firmware_timeout_ms: u64,
}

impl Lwm2mConfig {
    /// Defaults with the given plain address (DTLS off).
    pub fn with_listen(listen: Option<SocketAddr>) -> Self {
        Self {
            listen,
            dtls_listen: None,
            allow_plain_udp: false,
            auto_create: false,
            auto_create_site: None,
            queue_timeout_ms: 3_600_000,
            queue_awake_ms: 93_000,
            ack_timeout_ms: 2000,
            sweep_interval_ms: 1000,
            max_registrations_per_minute: 120,
            firmware_timeout_ms: 1_800_000,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The agent channel's address.
    pub agent_listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `None` means the embedded SQLite database in `data_dir`.
    pub database: Option<String>,
    /// PostgreSQL schema to use (tests give each run its own; not a file or flag option).
    pub database_schema: Option<String>,
    pub tls: TlsMode,
    pub log_format: LogFormat,
    pub initial_admin: bool,
    /// Agent heartbeat interval; a device is offline after three missed heartbeats.
    pub heartbeat_ms: i64,
    pub auth: AuthConfig,
    pub audit: AuditConfig,
    pub policy: PolicyConfig,
    pub lwm2m: Lwm2mConfig,
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

impl Config {
    /// A config for tests and embedding: loopback on an ephemeral port, Ward's own CA.
    pub fn for_data_dir(data_dir: &Path) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            agent_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_owned(),
            database: None,
            database_schema: None,
            tls: TlsMode::OwnCa {
                extra_names: Vec::new(),
            },
            log_format: LogFormat::Text,
            initial_admin: true,
            heartbeat_ms: ward_domain::device::HEARTBEAT_INTERVAL_MS,
            auth: AuthConfig::default(),
            audit: AuditConfig::default(),
            policy: PolicyConfig::default(),
            lwm2m: Lwm2mConfig {
                dtls_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                ..Lwm2mConfig::with_listen(Some(SocketAddr::from(([127, 0, 0, 1], 0))))
            },
        }
    }

    /// Merges file, environment (already folded into `args` by clap) and flags, then validates.
    pub fn load(args: &ServerArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|err| invalid("config", format!("cannot read {}: {err}", path.display())))?;
                parse_file(&text)?
            }
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    fn merge(args: &ServerArgs, file: FileConfig) -> Result<Self, ConfigError> {
        if let Some(version) = file.version
            && version != 1
        {
            return Err(invalid(
                "version",
                format!("this server reads version 1, the file says {version}"),
            ));
        }
        let listen_text = args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8443".into());
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|_| invalid("listen", format!("{listen_text:?} is not an IP:port address")))?;
        let agent_text = args
            .agent_listen
            .clone()
            .or(file.agent_listen)
            .unwrap_or_else(|| "127.0.0.1:8444".into());
        let agent_listen: SocketAddr = agent_text.parse().map_err(|_| {
            invalid(
                "agent_listen",
                format!("{agent_text:?} is not an IP:port address"),
            )
        })?;
        if agent_listen == listen && listen.port() != 0 {
            return Err(invalid("agent_listen", "must differ from listen"));
        }
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./ward-data"));
        if data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        let database = match (args.database.clone().or(file.database), file.database_file) {
            (Some(url), _) => Some(url),
            (None, Some(path)) => Some(read_secret_file("database_file", &path)?),
            (None, None) => None,
        };
        if let Some(url) = &database
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database",
                "must be a postgres:// URL (leave it out for the embedded SQLite database)",
            ));
        }
        let insecure_http = args.insecure_http || file.insecure_http.unwrap_or(false);
        let cert = args.tls_cert.clone().or(file.tls.cert);
        let key = args.tls_key.clone().or(file.tls.key);
        let tls = match (insecure_http, cert, key) {
            (true, None, None) => {
                if !listen.ip().is_loopback() {
                    return Err(invalid(
                        "insecure_http",
                        format!(
                            "plain HTTP is only allowed on a loopback address, not {}",
                            listen.ip()
                        ),
                    ));
                }
                TlsMode::Plaintext
            }
            (true, _, _) => {
                return Err(invalid(
                    "insecure_http",
                    "cannot be combined with tls.cert/tls.key",
                ));
            }
            (false, Some(cert), Some(key)) => TlsMode::Provided { cert, key },
            (false, Some(_), None) => return Err(invalid("tls.key", "tls.cert was given without its key")),
            (false, None, Some(_)) => {
                return Err(invalid("tls.cert", "tls.key was given without its certificate"));
            }
            (false, None, None) => {
                for name in &file.tls.names {
                    if name.is_empty()
                        || name.len() > 253
                        || name.chars().any(|c| c.is_whitespace() || c.is_control())
                    {
                        return Err(invalid(
                            "tls.names",
                            format!("{name:?} is not a DNS name or IP address"),
                        ));
                    }
                }
                TlsMode::OwnCa {
                    extra_names: file.tls.names,
                }
            }
        };
        let log_format = match args.log_format.clone().or(file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid(
                    "log_format",
                    format!("must be text or json, not {other:?}"),
                ));
            }
        };
        let defaults = AuthConfig::default();
        let idle_minutes = args
            .idle_timeout_minutes
            .or(file.auth.idle_timeout_minutes)
            .unwrap_or(15);
        if !(1..=24 * 60).contains(&idle_minutes) {
            return Err(invalid("auth.idle_timeout_minutes", "must be between 1 and 1440"));
        }
        let max_hours = file.auth.session_max_hours.unwrap_or(12);
        if !(1..=7 * 24).contains(&max_hours) {
            return Err(invalid("auth.session_max_hours", "must be between 1 and 168"));
        }
        let max_failed = file.auth.max_failed_logins.unwrap_or(defaults.max_failed_logins);
        let max_failed_addr = file
            .auth
            .max_failed_logins_per_address
            .unwrap_or(defaults.max_failed_logins_per_address);
        if max_failed == 0 || max_failed_addr == 0 {
            return Err(invalid("auth.max_failed_logins", "must be at least 1"));
        }
        let lockout = file.auth.lockout_minutes.unwrap_or(15);
        if !(1..=24 * 60).contains(&lockout) {
            return Err(invalid("auth.lockout_minutes", "must be between 1 and 1440"));
        }
        let heartbeat = args.heartbeat_seconds.or(file.heartbeat_seconds).unwrap_or(30);
        if !(1..=300).contains(&heartbeat) {
            return Err(invalid("heartbeat_seconds", "must be between 1 and 300"));
        }
        let checkpoint_every = file.audit.checkpoint_every.unwrap_or(1000);
        if checkpoint_every == 0 {
            return Err(invalid("audit.checkpoint_every", "must be at least 1"));
        }
        let checkpoint_minutes = file.audit.checkpoint_minutes.unwrap_or(5);
        if !(1..=24 * 60).contains(&checkpoint_minutes) {
            return Err(invalid("audit.checkpoint_minutes", "must be between 1 and 1440"));
        }
        let remediation_seconds = file.policy.remediation_check_seconds.unwrap_or(60);
        if !(1..=3600).contains(&remediation_seconds) {
            return Err(invalid(
                "policy.remediation_check_seconds",
                "must be between 1 and 3600",
            ));
        }
        let mut webhooks = Vec::new();
        for hook in file.policy.webhooks {
            let url = reqwest::Url::parse(&hook.url)
                .map_err(|err| invalid("policy.webhooks.url", format!("{:?}: {err}", hook.url)))?;
            if !matches!(url.scheme(), "https" | "http") {
                return Err(invalid("policy.webhooks.url", "must be an http or https URL"));
            }
            if url.scheme() == "http"
                && !url.host_str().is_some_and(|h| {
                    h == "localhost"
                        || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
                        || h == "[::1]"
                })
            {
                return Err(invalid(
                    "policy.webhooks.url",
                    "plain http is only allowed to a loopback address",
                ));
            }
            let secret = match (hook.secret, hook.secret_file) {
                (Some(secret), None) => secret,
                (None, Some(path)) => read_secret_file("policy.webhooks.secret_file", &path)?,
                _ => {
                    return Err(invalid(
                        "policy.webhooks",
                        "give exactly one of secret and secret_file",
                    ));
                }
            };
            if secret.len() < 16 {
                return Err(invalid(
                    "policy.webhooks.secret",
                    "must be at least 16 characters",
                ));
            }
            webhooks.push(WebhookConfig {
                url: hook.url,
                secret,
            });
        }
        let lwm2m = lwm2m_config(args, file.lwm2m)?;
        Ok(Self {
            listen,
            agent_listen,
            data_dir,
            database,
            database_schema: None,
            tls,
            log_format,
            initial_admin: !args.no_initial_admin && file.initial_admin.unwrap_or(true),
            heartbeat_ms: heartbeat as i64 * 1000,
            auth: AuthConfig {
                idle_timeout_ms: idle_minutes as i64 * 60_000,
                session_max_ms: max_hours as i64 * 3_600_000,
                max_failed_logins: max_failed,
                max_failed_logins_per_address: max_failed_addr,
                lockout_ms: lockout as i64 * 60_000,
            },
            audit: AuditConfig {
                checkpoint_every,
                checkpoint_interval_ms: checkpoint_minutes as i64 * 60_000,
            },
            policy: PolicyConfig {
                remediation_interval_ms: remediation_seconds as i64 * 1000,
                webhooks,
            },
            lwm2m,
        })
    }

    /// The embedded SQLite file used when no database URL is configured.
    pub fn sqlite_path(&self) -> std::path::PathBuf {
        self.data_dir.join("ward.db")
    }
}

/// The `[lwm2m]` section and `--lwm2m-listen`, validated.
fn lwm2m_config(args: &ServerArgs, file: FileLwm2m) -> Result<Lwm2mConfig, ConfigError> {
    let address = |key: &str, text: String| -> Result<Option<SocketAddr>, ConfigError> {
        if text == "off" {
            return Ok(None);
        }
        text.parse::<SocketAddr>()
            .map(Some)
            .map_err(|_| invalid(key, format!("{text:?} is not an IP:port address or \"off\"")))
    };
    let listen = address(
        "lwm2m.listen",
        args.lwm2m_listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:5683".into()),
    )?;
    let dtls_listen = address(
        "lwm2m.dtls_listen",
        args.lwm2m_dtls_listen
            .clone()
            .or(file.dtls_listen)
            .unwrap_or_else(|| "127.0.0.1:5684".into()),
    )?;
    if let (Some(plain), Some(dtls)) = (listen, dtls_listen)
        && plain == dtls
        && plain.port() != 0
    {
        return Err(invalid(
            "lwm2m.dtls_listen",
            format!("{dtls} is also lwm2m.listen; plain CoAP and DTLS need their own ports"),
        ));
    }
    let allow_plain_udp = file.allow_plain_udp.unwrap_or(false);
    // Plain UDP carries no authentication: only a loopback address (or an operator who says the
    // network protects it) may carry it. DTLS is for everything else.
    if let Some(addr) = listen
        && !addr.ip().is_loopback()
        && !allow_plain_udp
    {
        return Err(invalid(
            "lwm2m.allow_plain_udp",
            format!(
                "LwM2M over plain UDP (no DTLS) is only allowed on a loopback address, not {}; \
                 set allow_plain_udp = true only on an isolated device network",
                addr.ip()
            ),
        ));
    }
    let auto_create = file.auto_create.unwrap_or(false);
    let auto_create_site = match file.auto_create_site {
        Some(text) => Some(
            ward_domain::site::SiteSlug::parse(&text)
                .map_err(|err| invalid("lwm2m.auto_create_site", err.reason))?,
        ),
        None => None,
    };
    if auto_create && auto_create_site.is_none() {
        return Err(invalid(
            "lwm2m.auto_create_site",
            "required when auto_create is on (the site unknown endpoints are put in)",
        ));
    }
    let queue_timeout = file.queue_timeout_seconds.unwrap_or(3600);
    if !(10..=7 * 86_400).contains(&queue_timeout) {
        return Err(invalid(
            "lwm2m.queue_timeout_seconds",
            "must be between 10 and 604800",
        ));
    }
    let firmware_timeout = file.firmware_timeout_seconds.unwrap_or(1800);
    if !(10..=86_400).contains(&firmware_timeout) {
        return Err(invalid(
            "lwm2m.firmware_timeout_seconds",
            "must be between 10 and 86400",
        ));
    }
    Ok(Lwm2mConfig {
        allow_plain_udp,
        auto_create,
        auto_create_site,
        queue_timeout_ms: queue_timeout as i64 * 1000,
        firmware_timeout_ms: firmware_timeout * 1000,
        dtls_listen,
        ..Lwm2mConfig::with_listen(listen)
    })
}

fn parse_file(text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|err| {
        // toml's message names the key and line; keep it whole.
        invalid("config", err.to_string().trim().replace('\n', " "))
    })
}

/// Reads a secret from a file, refusing one that group or others can read.
pub fn read_secret_file(key: &str, path: &Path) -> Result<String, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|err| invalid(key, format!("cannot read {}: {err}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(invalid(
            key,
            format!(
                "{} is readable by group or others (mode {mode:o}); run chmod 600 on it",
                path.display()
            ),
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|err| invalid(key, format!("cannot read {}: {err}", path.display())))?;
    Ok(text.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: ServerArgs, file: &str) -> Result<Config, ConfigError> {
        Config::merge(&args, parse_file(file)?)
    }

    #[test]
    fn defaults_need_no_config() {
        let config = load(ServerArgs::default(), "").unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(config.tls, TlsMode::OwnCa { extra_names: vec![] });
        assert!(config.database.is_none());
        assert!(config.sqlite_path().ends_with("ward.db"));
        assert_eq!(config.auth.idle_timeout_ms, 15 * 60_000);
    }

    #[test]
    fn flags_override_file() {
        let args = ServerArgs {
            listen: Some("127.0.0.1:9000".into()),
            ..Default::default()
        };
        let config = load(args, "listen = \"127.0.0.1:7000\"\nversion = 1").unwrap();
        assert_eq!(config.listen.port(), 9000);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (
                ServerArgs {
                    listen: Some("nonsense".into()),
                    ..Default::default()
                },
                "",
                "listen",
            ),
            (ServerArgs::default(), "listne = \"x\"", "config"),
            (ServerArgs::default(), "version = 2", "version"),
            (ServerArgs::default(), "database = \"mysql://x\"", "database"),
            (ServerArgs::default(), "log_format = \"xml\"", "log_format"),
            (
                ServerArgs::default(),
                "[auth]\nidle_timeout_minutes = 0",
                "auth.idle_timeout_minutes",
            ),
            (
                ServerArgs::default(),
                "[audit]\ncheckpoint_every = 0",
                "audit.checkpoint_every",
            ),
            (ServerArgs::default(), "[tls]\ncert = \"a.pem\"", "tls.key"),
            (ServerArgs::default(), "listen = 5", "config"),
            (
                ServerArgs {
                    agent_listen: Some("x".into()),
                    ..Default::default()
                },
                "",
                "agent_listen",
            ),
            (
                ServerArgs::default(),
                "agent_listen = \"127.0.0.1:8443\"",
                "agent_listen",
            ),
            (
                ServerArgs {
                    listen: Some("0.0.0.0:8443".into()),
                    insecure_http: true,
                    ..Default::default()
                },
                "",
                "insecure_http",
            ),
        ];
        for (args, file, key) in cases {
            let err = load(args, file).unwrap_err();
            assert_eq!(err.key, key, "{file:?}: {err}");
        }
    }

    #[test]
    fn webhooks_are_checked() {
        let ok = load(
            ServerArgs::default(),
            "[policy]\nremediation_check_seconds = 5\n[[policy.webhooks]]\nurl = \"https://siem.example/ward\"\nsecret = \"0123456789abcdef\"\n[[policy.webhooks]]\nurl = \"http://127.0.0.1:9000/h\"\nsecret = \"0123456789abcdef\"\n",
        )
        .unwrap();
        assert_eq!(ok.policy.webhooks.len(), 2);
        assert_eq!(ok.policy.remediation_interval_ms, 5000);
        assert!(
            !format!("{:?}", ok.policy).contains("0123456789abcdef"),
            "secrets stay out of logs"
        );
        for (file, key) in [
            (
                "[[policy.webhooks]]\nurl = \"http://siem.example/x\"\nsecret = \"0123456789abcdef\"",
                "policy.webhooks.url",
            ),
            (
                "[[policy.webhooks]]\nurl = \"ftp://x/\"\nsecret = \"0123456789abcdef\"",
                "policy.webhooks.url",
            ),
            (
                "[[policy.webhooks]]\nurl = \"not a url\"\nsecret = \"0123456789abcdef\"",
                "policy.webhooks.url",
            ),
            (
                "[[policy.webhooks]]\nurl = \"https://x/\"\nsecret = \"short\"",
                "policy.webhooks.secret",
            ),
            ("[[policy.webhooks]]\nurl = \"https://x/\"", "policy.webhooks"),
            (
                "[policy]\nremediation_check_seconds = 0",
                "policy.remediation_check_seconds",
            ),
            ("[policy]\nremediate = 1", "config"),
        ] {
            let err = load(ServerArgs::default(), file).unwrap_err();
            assert_eq!(err.key, key, "{file:?}: {err}");
        }
    }

    #[test]
    fn lwm2m_section_is_checked() {
        let defaults = load(ServerArgs::default(), "").unwrap().lwm2m;
        assert_eq!(defaults.listen, Some("127.0.0.1:5683".parse().unwrap()));
        assert_eq!(defaults.dtls_listen, Some("127.0.0.1:5684".parse().unwrap()));
        // DTLS may listen anywhere; plain CoAP only on loopback unless allowed.
        let dtls_only = load(
            ServerArgs::default(),
            "[lwm2m]\nlisten = \"off\"\ndtls_listen = \"0.0.0.0:5684\"",
        )
        .unwrap()
        .lwm2m;
        assert_eq!(
            (dtls_only.listen, dtls_only.dtls_listen),
            (None, Some("0.0.0.0:5684".parse().unwrap()))
        );
        for (file, key) in [
            ("[lwm2m]\ndtls_listen = \"somewhere\"", "lwm2m.dtls_listen"),
            (
                "[lwm2m]\nlisten = \"127.0.0.1:7000\"\ndtls_listen = \"127.0.0.1:7000\"",
                "lwm2m.dtls_listen",
            ),
        ] {
            assert_eq!(load(ServerArgs::default(), file).unwrap_err().key, key, "{file}");
        }
        let flag = ServerArgs {
            lwm2m_dtls_listen: Some("off".into()),
            ..Default::default()
        };
        assert_eq!(load(flag, "").unwrap().lwm2m.dtls_listen, None);
        assert!(!defaults.auto_create && !defaults.allow_plain_udp);
        assert_eq!(defaults.queue_timeout_ms, 3_600_000);
        let off = ServerArgs {
            lwm2m_listen: Some("off".into()),
            ..Default::default()
        };
        assert_eq!(
            load(off, "[lwm2m]\nlisten = \"127.0.0.1:1\"")
                .unwrap()
                .lwm2m
                .listen,
            None,
            "the flag wins"
        );
        let open = load(
            ServerArgs::default(),
            "[lwm2m]\nlisten = \"0.0.0.0:5683\"\nallow_plain_udp = true\nauto_create = true\nauto_create_site = \"st-marys\"\nqueue_timeout_seconds = 60\nfirmware_timeout_seconds = 600",
        )
        .unwrap()
        .lwm2m;
        assert!(open.auto_create && open.allow_plain_udp);
        assert_eq!(
            open.auto_create_site.map(|s| s.to_string()).as_deref(),
            Some("st-marys")
        );
        assert_eq!(open.queue_timeout_ms, 60_000);
        assert_eq!(open.firmware_timeout_ms, 600_000);
        for (file, key) in [
            ("[lwm2m]\nlisten = \"0.0.0.0:5683\"", "lwm2m.allow_plain_udp"),
            ("[lwm2m]\nlisten = \"[::]:5683\"", "lwm2m.allow_plain_udp"),
            ("[lwm2m]\nlisten = \"udp please\"", "lwm2m.listen"),
            ("[lwm2m]\nauto_create = true", "lwm2m.auto_create_site"),
            (
                "[lwm2m]\nauto_create_site = \"Not A Slug\"",
                "lwm2m.auto_create_site",
            ),
            (
                "[lwm2m]\nqueue_timeout_seconds = 0",
                "lwm2m.queue_timeout_seconds",
            ),
            (
                "[lwm2m]\nfirmware_timeout_seconds = 5",
                "lwm2m.firmware_timeout_seconds",
            ),
            ("[lwm2m]\ndtls = true", "config"),
        ] {
            let err = load(ServerArgs::default(), file).unwrap_err();
            assert_eq!(err.key, key, "{file:?}: {err}");
        }
    }

    #[test]
    fn plaintext_on_loopback_is_allowed() {
        let args = ServerArgs {
            listen: Some("127.0.0.1:8080".into()),
            insecure_http: true,
            ..Default::default()
        };
        assert_eq!(load(args, "").unwrap().tls, TlsMode::Plaintext);
    }

    #[test]
    fn world_readable_secret_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-url");
        std::fs::write(&path, "postgres://x\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            read_secret_file("database_file", &path).unwrap_err().key,
            "database_file"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_file("database_file", &path).unwrap(), "postgres://x");
    }
}
