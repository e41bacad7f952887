//! The Ward server: configuration in, keys and store opened, then the service, the HTTP API and
//! console, the agent channel and the LwM2M gateway wired together and served, with the
//! service's background jobs. `ward server` calls [`run`]; tests and `ward demo` call [`start`]
//! and get a [`Server`] back.

pub mod offline;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use ward_core::config::{LogFormat, TlsMode};
use ward_core::keys::{self, Keys};
use ward_core::state::{AppState, Inner, SystemClock};
use ward_core::{auth, commands, enroll_writer, facts, jobs, policies};
use ward_domain::access::Role;
use ward_domain::clock::Clock;
use ward_store::UserStore;
use ward_store_sql::{ConnectOptions, SqlStore};

pub use ward_core::config::{Config, ServerArgs};
pub use ward_core::jobs::checkpoint_now;
pub use ward_service::accounts::create_admin;

/// Sets up logging once: text or JSON, filtered by `WARD_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only on a terminal: a journal or a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The database URL to open: the configured one, or the embedded SQLite file.
pub fn database_url(config: &Config) -> String {
    match &config.database {
        Some(url) => url.clone(),
        None => ward_store_sql::sqlite_url_for(&config.sqlite_path()),
    }
}

/// Opens the configured database (creating the data directory for SQLite).
pub async fn open_store(config: &Config) -> anyhow::Result<SqlStore> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let options = ConnectOptions {
        schema: config.database_schema.clone(),
        ..Default::default()
    };
    SqlStore::connect(&database_url(config), options)
        .await
        .context("opening the database")
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    /// The agent channel's address.
    pub agent_addr: SocketAddr,
    /// The LwM2M gateway's UDP address (`None` when it is off).
    pub lwm2m_addr: Option<SocketAddr>,
    /// The LwM2M gateway's DTLS address, when it listens for DTLS.
    pub lwm2m_dtls_addr: Option<SocketAddr>,
    /// `https` or `http`.
    pub scheme: &'static str,
    pub ca_fingerprint: String,
    pub ca_cert_pem: String,
    pub state: AppState,
    /// Set on first start: the first admin's username and one-time password.
    pub initial_admin: Option<(String, String)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Stops accepting connections and signs a last checkpoint.
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.state.presence.flush(self.state.store.as_ref()).await;
        let _ = checkpoint_now(&self.state).await;
    }
}

/// Starts the server with the system clock.
pub async fn start(config: Config) -> anyhow::Result<Server> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

/// Starts the server: keys, store, first admin, listener and background tasks.
pub async fn start_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Server> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    ward_http::metrics_handle();
    let keys = Keys::load_or_create(&config.data_dir)?;
    let store = Arc::new(open_store(&config).await?);
    let initial_admin = if config.initial_admin && store.count_users().await? == 0 {
        let (user, password) = create_admin(
            store.as_ref(),
            clock.as_ref(),
            &auth::SystemEntropy,
            "admin",
            Role::Admin,
            false,
            "system",
        )
        .await?;
        Some((user.username, password))
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let agent_listener = tokio::net::TcpListener::bind(config.agent_listen)
        .await
        .with_context(|| format!("listening on {} (agent channel)", config.agent_listen))?;
    let agent_addr = agent_listener.local_addr()?;
    let lwm2m_sockets = ward_lwm2m_gateway::bind(&config.lwm2m).await?;
    let lwm2m_addr = lwm2m_sockets
        .as_ref()
        .map(|s| s.plain_addr())
        .transpose()?
        .flatten();
    let lwm2m_dtls_addr = lwm2m_sockets
        .as_ref()
        .map(|s| s.dtls_addr())
        .transpose()?
        .flatten();
    // The agent channel always uses a certificate from Ward's own CA: that is what agents pin.
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    for ip in [addr.ip(), agent_addr.ip()] {
        if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
            names.push(ip.to_string());
        }
    }
    if let TlsMode::OwnCa { extra_names } = &config.tls {
        names.extend(extra_names.iter().cloned());
    }
    let (own_chain, own_key) = keys.server_certificate(&config.data_dir, &names)?;
    let tls = match &config.tls {
        TlsMode::Plaintext => None,
        TlsMode::OwnCa { .. } => Some(ward_http::serve::tls_config(&own_chain, &own_key)?),
        TlsMode::Provided { cert, key } => {
            let chain =
                std::fs::read_to_string(cert).with_context(|| format!("reading {}", cert.display()))?;
            let key = keys::read_private(key)?;
            Some(ward_http::serve::tls_config(&chain, &key)?)
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (facts_writer, facts_queue) = tokio::sync::mpsc::channel(4096);
    let (command_events, command_queue) = tokio::sync::mpsc::channel(65_536);
    let (enrollments, enroll_queue) = tokio::sync::mpsc::channel(4096);
    let enroll_task = tokio::spawn(enroll_writer::run(store.clone(), enroll_queue));
    let fan_out = Arc::new(tokio::sync::RwLock::new(()));
    let events_task = tokio::spawn(commands::event_writer(
        store.clone(),
        command_queue,
        fan_out.clone(),
    ));
    let (policy_work, policy_queue) = tokio::sync::mpsc::channel(4096);
    let writer_task = tokio::spawn(facts::writer(store.clone(), facts_queue, policy_work.clone()));
    let policy = Arc::new(
        policies::Engine::load(store.as_ref())
            .await
            .context("loading policies")?,
    );
    let ca_fingerprint = keys.ca_fingerprint.clone();
    let ca_cert_pem = keys.ca_cert_pem.clone();
    let state = AppState(Arc::new(Inner {
        store: store.clone(),
        clock,
        entropy: Arc::new(auth::SystemEntropy),
        config: config.clone(),
        keys: Arc::new(keys),
        throttle: Default::default(),
        channels: Arc::new(ward_core::channels::Channels::default()),
        agent_port: agent_addr.port(),
        facts_writer,
        command_events,
        enrollments,
        policy,
        policy_work,
        lwm2m_keys: Default::default(),
        fan_out,
        presence: Default::default(),
    }));
    let app = ward_http::app(state.clone());
    let serve_task = tokio::spawn(ward_http::serve::serve(listener, tls, app));
    let agent_state = state.clone();
    let agent_task = tokio::spawn(async move {
        if let Err(err) = ward_agent_channel::serve(agent_state, agent_listener, own_chain, own_key).await {
            tracing::error!(error = %err, "the agent channel stopped");
        }
    });
    let checkpoint_task = tokio::spawn(jobs::checkpointer(state.clone()));
    let log_task = tokio::spawn(jobs::log_checkpointer(state.clone()));
    let presence_task = tokio::spawn(jobs::presence_writer(state.clone()));
    let expiry_task = tokio::spawn(commands::expirer(state.clone()));
    let policy_task = tokio::spawn(policies::run(state.clone(), policy_queue));
    let lwm2m_task =
        lwm2m_sockets.map(|sockets| tokio::spawn(ward_lwm2m_gateway::run(state.clone(), sockets)));
    let mut tasks = vec![
        serve_task,
        agent_task,
        checkpoint_task,
        log_task,
        writer_task,
        expiry_task,
        events_task,
        enroll_task,
        policy_task,
        presence_task,
    ];
    tasks.extend(lwm2m_task);
    Ok(Server {
        addr,
        agent_addr,
        lwm2m_addr,
        lwm2m_dtls_addr,
        scheme,
        ca_fingerprint,
        ca_cert_pem,
        state,
        initial_admin,
        tasks,
    })
}

/// `ward server`: runs until Ctrl-C or SIGTERM.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = Config::load(&args)?;
    init_logging(config.log_format);
    let server = start(config).await?;
    tracing::info!(url = %server.url(), backend = server.state.store.backend(), "ward server listening");
    eprintln!("Ward server listening on {}", server.url());
    eprintln!("Agent channel (mutual TLS) on {}", server.agent_addr);
    if let Some(addr) = server.lwm2m_dtls_addr {
        eprintln!("LwM2M gateway, CoAP over DTLS with pre-shared keys (coaps://) on {addr}");
    }
    if let Some(addr) = server.lwm2m_addr {
        eprintln!("LwM2M gateway, CoAP over plain UDP (coap://) on {addr}");
    }
    eprintln!("CA fingerprint (SHA-256): {}", server.ca_fingerprint);
    if let Some((username, password)) = &server.initial_admin {
        eprintln!();
        eprintln!("First start: created the admin account. Its one-time password is shown only now:");
        eprintln!("  username: {username}");
        eprintln!("  password: {password}");
        eprintln!(
            "Log in with: ward login --server {} --ca-fingerprint {} --username {username}",
            server.url(),
            server.ca_fingerprint
        );
        eprintln!("and change the password when asked (ward users password).");
    }
    shutdown_signal().await;
    eprintln!("shutting down");
    server.shutdown().await;
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
