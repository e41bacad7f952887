//! Test kit: starts the real server on an ephemeral loopback port with its own CA and data
//! directory, and a small HTTPS client that trusts only that CA.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use ward_domain::clock::ManualClock;
use ward_server::{Config, Server};

pub const T0: i64 = 1_790_000_000_000;

pub enum Backend {
    Sqlite,
    Postgres(String),
}

/// The backends to run on: SQLite, plus PostgreSQL when its URL is set.
pub fn backends() -> Vec<Backend> {
    let mut list = vec![Backend::Sqlite];
    match std::env::var("WARD_TEST_POSTGRES_URL") {
        Ok(url) => list.push(Backend::Postgres(url)),
        Err(_) => eprintln!("skipping PostgreSQL: WARD_TEST_POSTGRES_URL is not set"),
    }
    list
}

pub struct Kit {
    pub server: Server,
    pub clock: Arc<ManualClock>,
    pub http: reqwest::Client,
    /// Kept so the data directory lives as long as the server.
    pub _dir: tempfile::TempDir,
    pub admin_token: String,
    pub schema: Option<String>,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub set_cookie: Option<String>,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Kit {
    /// A started server whose admin has logged in and changed the one-time password.
    pub async fn start(backend: &Backend) -> Kit {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: &Backend, adjust: impl FnOnce(&mut Config)) -> Kit {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_data_dir(dir.path());
        let mut schema = None;
        if let Backend::Postgres(url) = backend {
            let name = format!("ward_it_{}", uuid::Uuid::new_v4().simple());
            config.database = Some(url.clone());
            config.database_schema = Some(name.clone());
            schema = Some(name);
        }
        adjust(&mut config);
        let clock = Arc::new(ManualClock::new(T0));
        let server = ward_server::start_with_clock(config, clock.clone())
            .await
            .unwrap();
        let http = client_for(&server.ca_cert_pem);
        let mut kit = Kit {
            server,
            clock,
            http,
            _dir: dir,
            admin_token: String::new(),
            schema,
        };
        let (username, password) = kit
            .server
            .initial_admin
            .clone()
            .expect("first start creates an admin");
        assert_eq!(username, "admin");
        let token = kit.cli_login("admin", &password).await;
        // The one-time password must be changed before anything else.
        let blocked = kit.call(Method::GET, "/sites", Some(&token), None).await;
        assert_eq!(
            (blocked.status, blocked.code()),
            (StatusCode::FORBIDDEN, "forbidden")
        );
        let changed = kit
            .call(
                Method::POST,
                "/auth/password",
                Some(&token),
                Some(json!({"current_password": password, "new_password": "admin password 123"})),
            )
            .await;
        assert_eq!(changed.status, StatusCode::NO_CONTENT, "{:?}", changed.body);
        kit.admin_token = token;
        kit
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.server.url())
    }

    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::reply(request.send().await.unwrap()).await
    }

    pub async fn reply(response: reqwest::Response) -> Reply {
        let status = response.status();
        let set_cookie = response
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            body,
            set_cookie,
        }
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call(method, path, Some(&self.admin_token), body).await
    }

    pub async fn cli_login(&self, username: &str, password: &str) -> String {
        let reply = self
            .call(
                Method::POST,
                "/auth/cli-login",
                None,
                Some(json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body["secret"].as_str().unwrap().to_owned()
    }

    /// Creates a user with a known password and returns a token for them.
    pub async fn user(&self, username: &str, role: &str, sites: &[&str]) -> String {
        let reply = self
            .admin(
                Method::POST,
                "/users",
                Some(json!({"username": username, "role": role, "sites": sites, "password": "user password 123"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        self.cli_login(username, "user password 123").await
    }

    /// Audit entries matching an action (prefix ending in '.' allowed).
    pub async fn audit(&self, action: &str) -> Vec<Value> {
        let reply = self
            .admin(Method::GET, &format!("/audit?action={action}&limit=1000"), None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        reply.body["entries"].as_array().unwrap().clone()
    }

    /// A second raw connection to the same database, to play an attacker or break the audit table.
    pub async fn raw_store(&self) -> ward_store_sql::SqlStore {
        let config = &self.server.state.config;
        ward_store_sql::SqlStore::connect(
            &ward_server::database_url(config),
            ward_store_sql::ConnectOptions {
                schema: self.schema.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
    }

    pub async fn finish(self) {
        let schema = self.schema.clone();
        let raw = if schema.is_some() {
            Some(self.raw_store().await)
        } else {
            None
        };
        self.server.shutdown().await;
        if let (Some(raw), Some(schema)) = (raw, schema) {
            raw.execute_unchecked(&format!("DROP SCHEMA {schema} CASCADE"))
                .await
                .unwrap();
        }
    }
}

/// An HTTPS client that trusts only the given CA.
pub fn client_for(ca_pem: &str) -> reqwest::Client {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}
