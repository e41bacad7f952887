//! The kit itself: the server, its client and the replies it reads; the constants and skip rules
//! every integration test shares.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use ward_domain::clock::ManualClock;
use ward_server::{Config, Server};

/// Where the manual clock starts (2026-09-21T09:46:40Z).
pub const T0: i64 = 1_790_000_000_000;

/// The admin's password once the kit has changed the one-time one.
pub const ADMIN_PASSWORD: &str = "admin password 123";

/// The password [`Kit::user`] gives the users it creates.
pub const USER_PASSWORD: &str = "user password 123";

/// The database a kit's server runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// PostgreSQL at this URL; the kit creates a schema of its own and drops it in [`Kit::finish`].
    Postgres(String),
}

/// The backends to run on: SQLite always, plus PostgreSQL when `WARD_TEST_POSTGRES_URL` is set.
/// Without it, prints that the calling test skips its PostgreSQL run; with it, a PostgreSQL that
/// cannot be used fails the test in [`Kit::start`].
pub fn backends() -> Vec<Backend> {
    let mut list = vec![Backend::Sqlite];
    match std::env::var("WARD_TEST_POSTGRES_URL") {
        Ok(url) => list.push(Backend::Postgres(url)),
        Err(_) => say_skipped(
            &format!("the PostgreSQL run of {}", current_test()),
            "WARD_TEST_POSTGRES_URL is not set",
        ),
    }
    list
}

/// Prints `skipping WHAT: WHY` where it is seen. Written to stderr directly rather than with
/// `eprintln!`, which the test harness captures and shows only when a test fails: a test that
/// skips must say so in every run.
pub fn say_skipped(what: &str, why: &str) {
    use std::io::Write;
    std::io::stderr()
        .write_all(format!("skipping {what}: {why}\n").as_bytes())
        .unwrap();
}

/// The running test's name (libtest names each test's thread after it).
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .unwrap_or("this test")
        .to_owned()
}

/// A started server, its clock, and an HTTPS client with the admin logged in.
pub struct Kit {
    pub server: Server,
    /// The server's clock: it moves only when a test moves it.
    pub clock: Arc<ManualClock>,
    /// An HTTPS client that trusts only the server's CA.
    pub http: reqwest::Client,
    /// A bearer token of the admin, whose one-time password has been changed to [`ADMIN_PASSWORD`].
    pub admin_token: String,
    /// The PostgreSQL schema the server runs in, `None` on SQLite.
    schema: Option<String>,
    /// Kept so the data directory lives as long as the server.
    _dir: tempfile::TempDir,
}

/// An API answer: the status, the body as JSON (a JSON string when it was not JSON) and the
/// `set-cookie` header.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub set_cookie: Option<String>,
}

impl Reply {
    /// The error code of an error answer, `""` otherwise.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// The error message of an error answer, `""` otherwise.
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

impl Kit {
    /// A started server whose admin has logged in and changed the one-time password.
    pub async fn start(backend: &Backend) -> Kit {
        Self::start_with(backend, |_| {}).await
    }

    /// [`Kit::start`] with the configuration adjusted first.
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
        let server = match ward_server::start_with_clock(config, clock.clone()).await {
            Ok(server) => server,
            Err(err) if schema.is_some() => {
                panic!("WARD_TEST_POSTGRES_URL is set but the server cannot use that database: {err:#}")
            }
            Err(err) => panic!("the server did not start: {err:#}"),
        };
        let http = client_for(&server.ca_cert_pem);
        let mut kit = Kit {
            server,
            clock,
            http,
            admin_token: String::new(),
            schema,
            _dir: dir,
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
                Some(json!({"current_password": password, "new_password": ADMIN_PASSWORD})),
            )
            .await;
        assert_eq!(changed.status, StatusCode::NO_CONTENT, "{:?}", changed.body);
        kit.admin_token = token;
        kit
    }

    /// The server's whole HTTP application, to drive in-process with `tower::ServiceExt::oneshot`
    /// (no network): it shares the running server's state, store and clock.
    pub fn app(&self) -> axum::Router {
        ward_http::app(self.server.state.clone())
    }

    /// The URL of an API path (`/sites` → `https://127.0.0.1:PORT/api/v1/sites`).
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.server.url())
    }

    /// Calls the API, with a bearer token when given and a JSON body when given.
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

    /// Reads a response into a [`Reply`].
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

    /// Calls the API as the admin.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call(method, path, Some(&self.admin_token), body).await
    }

    /// Logs in for a CLI token; the login must succeed.
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

    /// Creates a user with the password [`USER_PASSWORD`] and returns a token for them.
    pub async fn user(&self, username: &str, role: &str, sites: &[&str]) -> String {
        let reply = self
            .admin(
                Method::POST,
                "/users",
                Some(json!({"username": username, "role": role, "sites": sites, "password": USER_PASSWORD})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        self.cli_login(username, USER_PASSWORD).await
    }

    /// Creates an API token of the admin with this scope (`read` or `write`); returns its secret.
    pub async fn api_token(&self, scope: &str) -> String {
        let reply = self
            .admin(
                Method::POST,
                "/tokens",
                Some(json!({"name": format!("{scope} token"), "scope": scope})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body["secret"].as_str().unwrap().to_owned()
    }

    /// Audit entries matching an action (a prefix ending in '.' matches a family).
    pub async fn audit(&self, action: &str) -> Vec<Value> {
        let reply = self
            .admin(Method::GET, &format!("/audit?action={action}&limit=1000"), None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        reply.body["entries"].as_array().unwrap().clone()
    }

    /// A second raw connection to the same database, to play an attacker or break a table.
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

    /// Stops the server and drops its PostgreSQL schema.
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
    client_builder_for(ca_pem).build().unwrap()
}

/// A client builder that trusts only the given CA, for clients that need more (no redirects).
pub fn client_builder_for(ca_pem: &str) -> reqwest::ClientBuilder {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder().tls_backend_preconfigured(tls)
}

/// Whether the environment variable that makes a service test required is set (non-empty): CI
/// sets `WARD_TEST_COAP`, `WARD_TEST_NETNS`, `WARD_TEST_BROWSER` so that a missing tool fails the
/// test instead of skipping it.
pub fn required(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|value| !value.is_empty())
}
