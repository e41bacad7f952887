//! End-to-end tests of the real `ward` binary: `ward server` in a child process, and the admin
//! commands against it over HTTPS, as an administrator following the README would run them.

// Test helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const WARD: &str = env!("CARGO_BIN_EXE_ward");

/// A `ward server` child process on an ephemeral loopback port.
struct ServerProcess {
    child: Child,
    url: String,
    fingerprint: String,
    password: String,
}

impl ServerProcess {
    fn start(data_dir: &Path, database: Option<&str>) -> ServerProcess {
        let mut command = Command::new(WARD);
        command
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--agent-listen",
                "127.0.0.1:0",
                "--lwm2m-listen",
                "127.0.0.1:0",
                "--lwm2m-dtls-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .env_remove("WARD_DATABASE");
        if let Some(url) = database {
            command.args(["--database", url]);
        }
        let mut child = command
            .env("WARD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (mut url, mut fingerprint, mut password) = (String::new(), String::new(), String::new());
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("Ward server listening on ") {
                url = rest.trim().to_owned();
            } else if let Some(rest) = line.strip_prefix("CA fingerprint (SHA-256): ") {
                fingerprint = rest.trim().to_owned();
            } else if let Some(rest) = line.trim().strip_prefix("password: ") {
                password = rest.trim().to_owned();
                break;
            }
        }
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        assert!(url.starts_with("https://127.0.0.1:"), "server printed its URL");
        assert_eq!(fingerprint.len(), 64);
        assert_eq!(password.len(), 23, "one-time password printed once");
        ServerProcess {
            child,
            url,
            fingerprint,
            password,
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `ward ARGS` with its CLI config in `config_dir`, feeding `stdin`.
fn ward(config_dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(WARD)
        .args(args)
        .env("WARD_CONFIG_DIR", config_dir)
        .env_remove("WARD_SERVER")
        .env_remove("WARD_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// The database under test: the embedded SQLite file, or a fresh PostgreSQL schema.
enum Backend {
    Sqlite,
    Postgres { url: String, schema: String },
}

impl Backend {
    fn postgres() -> Option<Backend> {
        let Ok(base) = std::env::var("WARD_TEST_POSTGRES_URL") else {
            // Straight to stderr: the harness would hide an eprintln! of a passing test.
            std::io::stderr()
                .write_all(
                    b"skipping an_admin_follows_the_readme_on_postgres: WARD_TEST_POSTGRES_URL is not set\n",
                )
                .unwrap();
            return None;
        };
        let schema = format!("ward_cli_{}", std::process::id());
        // Create the schema (and migrate it), then point the server at it through the URL.
        block_on(async {
            let options = ward_store_sql::ConnectOptions {
                schema: Some(schema.clone()),
                ..Default::default()
            };
            ward_store_sql::SqlStore::connect(&base, options)
                .await
                .unwrap_or_else(|err| {
                    panic!("WARD_TEST_POSTGRES_URL is set but PostgreSQL is not usable: {err}")
                })
                .close()
                .await;
        });
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
        Some(Backend::Postgres { url, schema })
    }

    fn url(&self) -> Option<&str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres { url, .. } => Some(url),
        }
    }

    /// Runs SQL against the database as an attacker with database access would.
    fn tamper(&self, data_dir: &Path, sql: &str) {
        block_on(async {
            let (url, options) = match self {
                Backend::Sqlite => (
                    ward_store_sql::sqlite_url_for(&data_dir.join("ward.db")),
                    Default::default(),
                ),
                Backend::Postgres { url, schema } => (
                    std::env::var("WARD_TEST_POSTGRES_URL").unwrap_or_else(|_| url.clone()),
                    ward_store_sql::ConnectOptions {
                        schema: Some(schema.clone()),
                        ..Default::default()
                    },
                ),
            };
            let store = ward_store_sql::SqlStore::connect(&url, options).await.unwrap();
            store.execute_unchecked(sql).await.unwrap();
            store.close().await;
        });
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

#[test]
fn an_admin_follows_the_readme_on_sqlite() {
    readme_flow(Backend::Sqlite);
}

#[test]
fn an_admin_follows_the_readme_on_postgres() {
    if let Some(backend) = Backend::postgres() {
        readme_flow(backend);
    }
}

fn readme_flow(backend: Backend) {
    let data = tempfile::tempdir().unwrap();
    let cli = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&data.path().join("ward-data"), backend.url());
    let cfg = cli.path();

    // Before logging in, commands say how to.
    let whoami = ward(cfg, &["whoami"], "");
    assert_eq!(code(&whoami), 3, "{}", text(&whoami));
    assert!(text(&whoami).contains("ward login"), "{}", text(&whoami));

    // A failed login with a hostile username: recorded in the audit log, shown later without
    // letting it drive the terminal.
    let wrong = ward(
        cfg,
        &[
            "login",
            "--server",
            &server.url,
            "--ca-fingerprint",
            &server.fingerprint,
            "--username",
            "admin\u{1b}[2J\u{1b}]0;pwned\u{7}",
            "--password-stdin",
        ],
        "not the password\n",
    );
    assert_eq!(code(&wrong), 3, "{}", text(&wrong));
    assert!(text(&wrong).contains("invalid_credentials"), "{}", text(&wrong));

    let login = ward(
        cfg,
        &[
            "login",
            "--server",
            &server.url,
            "--ca-fingerprint",
            &server.fingerprint,
            "--username",
            "admin",
            "--password-stdin",
        ],
        &format!("{}\n", server.password),
    );
    assert_eq!(code(&login), 0, "{}", text(&login));
    let stored = std::fs::metadata(cfg.join("cli.toml")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        stored.permissions().mode() & 0o777,
        0o600,
        "stored login is private"
    );

    let blocked = ward(cfg, &["sites", "list"], "");
    assert_eq!(
        code(&blocked),
        1,
        "one-time password must be changed first: {}",
        text(&blocked)
    );
    let changed = ward(
        cfg,
        &["users", "password", "--password-stdin"],
        &format!("{}\nnew admin password 1\n", server.password),
    );
    assert_eq!(code(&changed), 0, "{}", text(&changed));

    let created = ward(
        cfg,
        &["sites", "create", "st-marys", "--name", "St Mary's Hospital"],
        "",
    );
    assert_eq!(code(&created), 0, "{}", text(&created));

    // An LwM2M device: its key is printed once, never listed.
    let provisioned = ward(
        cfg,
        &[
            "lwm2m",
            "provision",
            "--endpoint",
            "urn:dev:cli-pump",
            "--site",
            "st-marys",
            "--class",
            "medical",
            "--criticality",
            "high",
            "--phi",
            "--json",
        ],
        "",
    );
    assert_eq!(code(&provisioned), 0, "{}", text(&provisioned));
    let provisioned: serde_json::Value = serde_json::from_slice(&provisioned.stdout).unwrap();
    let psk = provisioned["psk"].as_str().unwrap().to_owned();
    assert_eq!(psk.len(), 32);
    let listed = ward(cfg, &["lwm2m", "list"], "");
    assert_eq!(code(&listed), 0, "{}", text(&listed));
    assert!(text(&listed).contains("urn:dev:cli-pump"), "{}", text(&listed));
    assert!(!text(&listed).contains(&psk), "{}", text(&listed));
    // A device's own factory key, from a file: taken as given; a missing file or a bad key is a
    // clear error and provisions nothing.
    let key_file = cli.path().join("pump.key");
    std::fs::write(&key_file, format!("{}\n", "a1".repeat(16))).unwrap();
    let missing = cli.path().join("missing.key");
    let short = cli.path().join("short.key");
    std::fs::write(&short, "00ff").unwrap();
    for (file, endpoint, expected) in [
        (&missing, "urn:dev:cli-nokey", "missing.key"),
        (&short, "urn:dev:cli-short", "2 bytes"),
    ] {
        let refused = ward(
            cfg,
            &[
                "lwm2m",
                "provision",
                "--endpoint",
                endpoint,
                "--site",
                "st-marys",
                "--class",
                "medical",
                "--psk-file",
                file.to_str().unwrap(),
            ],
            "",
        );
        assert_ne!(code(&refused), 0, "{}", text(&refused));
        assert!(text(&refused).contains(expected), "{}", text(&refused));
    }
    let factory = ward(
        cfg,
        &[
            "lwm2m",
            "provision",
            "--endpoint",
            "urn:dev:cli-factory",
            "--site",
            "st-marys",
            "--class",
            "medical",
            "--psk-file",
            key_file.to_str().unwrap(),
            "--json",
        ],
        "",
    );
    assert_eq!(code(&factory), 0, "{}", text(&factory));
    let factory: serde_json::Value = serde_json::from_slice(&factory.stdout).unwrap();
    assert_eq!(factory["psk"], "a1".repeat(16));
    let listed = ward(cfg, &["lwm2m", "list"], "");
    assert!(!text(&listed).contains("urn:dev:cli-nokey") && !text(&listed).contains("urn:dev:cli-short"));
    let ward_site = ward(
        cfg,
        &["sites", "create", "st-marys/icu", "--name", "Intensive care"],
        "",
    );
    assert_eq!(code(&ward_site), 0, "{}", text(&ward_site));
    let control = ward(
        cfg,
        &["sites", "create", "st-marys/er", "--name", "ER \u{1b}[31mred"],
        "",
    );
    assert_eq!(
        code(&control),
        1,
        "control characters in names are refused: {}",
        text(&control)
    );
    let logins = ward(cfg, &["audit", "list", "--action", "auth.login"], "");
    assert_eq!(code(&logins), 0, "{}", text(&logins));
    assert!(text(&logins).contains("admin"), "{}", text(&logins));
    assert!(
        !text(&logins).contains('\u{1b}'),
        "terminal escapes from stored data are neutralised"
    );
    let json = ward(cfg, &["sites", "list", "--json"], "");
    let sites: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(sites[1]["slug"], "st-marys/icu");

    let bad = ward(
        cfg,
        &["sites", "create", "x'; DROP TABLE sites;--", "--name", "x"],
        "",
    );
    assert_eq!(code(&bad), 1, "{}", text(&bad));
    assert!(text(&bad).contains("invalid_input"), "{}", text(&bad));
    let usage = ward(cfg, &["users", "create", "bob"], "");
    assert_eq!(
        code(&usage),
        2,
        "missing --role is a usage error: {}",
        text(&usage)
    );

    let user = ward(
        cfg,
        &[
            "users", "create", "bob", "--role", "operator", "--site", "st-marys", "--json",
        ],
        "",
    );
    assert_eq!(code(&user), 0, "{}", text(&user));
    let created: serde_json::Value = serde_json::from_slice(&user.stdout).unwrap();
    assert!(created["initial_password"].as_str().is_some());

    let token = ward(
        cfg,
        &["tokens", "create", "nightly-report", "--scope", "read", "--json"],
        "",
    );
    assert_eq!(code(&token), 0, "{}", text(&token));

    let enroll = ward(
        cfg,
        &[
            "enroll-token",
            "create",
            "--site",
            "st-marys/icu",
            "--class",
            "workstation",
            "--phi",
            "--uses",
            "2",
            "--json",
        ],
        "",
    );
    assert_eq!(code(&enroll), 0, "{}", text(&enroll));
    let created: serde_json::Value = serde_json::from_slice(&enroll.stdout).unwrap();
    assert!(created["secret"].as_str().unwrap().starts_with("wardenroll_"));
    let human = ward(
        cfg,
        &[
            "enroll-token",
            "create",
            "--site",
            "st-marys",
            "--class",
            "medical",
        ],
        "",
    );
    assert!(
        text(&human).contains("ward-agent enroll --server"),
        "{}",
        text(&human)
    );
    let tokens = ward(cfg, &["enroll-token", "list", "--json"], "");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&tokens.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let devices = ward(
        cfg,
        &[
            "devices",
            "list",
            "--filter",
            "site within \"st-marys\"",
            "--json",
        ],
        "",
    );
    assert_eq!(code(&devices), 0, "{}", text(&devices));
    let bad_filter = ward(cfg, &["devices", "list", "--filter", "site =="], "");
    assert_eq!(code(&bad_filter), 1, "{}", text(&bad_filter));
    assert!(text(&bad_filter).contains("column"), "{}", text(&bad_filter));
    let unconfirmed = ward(cfg, &["device", "revoke", "some-id"], "");
    assert_eq!(
        code(&unconfirmed),
        2,
        "destructive actions need --yes off a terminal: {}",
        text(&unconfirmed)
    );
    let missing = ward(cfg, &["devices", "revoke", "no-such-device", "--yes"], "");
    assert_eq!(code(&missing), 1, "{}", text(&missing));

    let verify = ward(cfg, &["audit", "verify"], "");
    assert_eq!(code(&verify), 0, "{}", text(&verify));
    let audit = ward(cfg, &["audit", "list", "--action", "site.", "--json"], "");
    let page: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(page["entries"].as_array().unwrap().len(), 2, "{page}");
    let export_path = cli.path().join("audit.jsonl");
    let export = ward(
        cfg,
        &["audit", "export", "--output", export_path.to_str().unwrap()],
        "",
    );
    assert_eq!(code(&export), 0, "{}", text(&export));
    assert!(std::fs::read_to_string(&export_path).unwrap().lines().count() >= 5);

    // Offline verification on the data directory, then after tampering with the database.
    drop(server);
    let data_dir = data.path().join("ward-data");
    let mut offline_args = vec!["audit", "verify", "--data-dir", data_dir.to_str().unwrap()];
    if let Some(url) = backend.url() {
        offline_args.extend(["--database", url]);
    }
    let offline = ward(cfg, &offline_args, "");
    assert_eq!(code(&offline), 0, "{}", text(&offline));
    backend.tamper(
        &data_dir,
        "UPDATE audit_entries SET outcome = 'failure' WHERE seq = 3",
    );
    offline_args.push("--json");
    let tampered = ward(cfg, &offline_args, "");
    assert_eq!(code(&tampered), 4, "{}", text(&tampered));
    let report: serde_json::Value = serde_json::from_slice(&tampered.stdout).unwrap();
    assert_eq!(report["failure"]["seq"], 3);
    assert_eq!(report["failure"]["kind"], "entry_edited");
    if let Backend::Postgres { schema, .. } = &backend {
        backend.tamper(&data_dir, &format!("DROP SCHEMA {schema} CASCADE"));
    }
}

#[test]
fn bad_configuration_and_unreachable_servers_exit_with_their_codes() {
    let cli = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let bad = ward(
        cli.path(),
        &[
            "server",
            "--listen",
            "nonsense",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(code(&bad), 2, "{}", text(&bad));
    assert!(
        text(&bad).contains("listen"),
        "the message names the key: {}",
        text(&bad)
    );
    let public_http = ward(
        cli.path(),
        &["server", "--listen", "0.0.0.0:0", "--insecure-http"],
        "",
    );
    assert_eq!(code(&public_http), 2, "{}", text(&public_http));

    let unreachable = ward(
        cli.path(),
        &["whoami", "--server", "https://127.0.0.1:1", "--token", "ward_x_y"],
        "",
    );
    assert_eq!(code(&unreachable), 3, "{}", text(&unreachable));

    let created = ward(
        cli.path(),
        &[
            "admin",
            "create",
            "carol",
            "--role",
            "auditor",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(code(&created), 0, "{}", text(&created));
    assert_eq!(String::from_utf8_lossy(&created.stdout).trim().len(), 23);
    let bad_role = ward(
        cli.path(),
        &[
            "admin",
            "create",
            "dave",
            "--role",
            "root",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(code(&bad_role), 1, "{}", text(&bad_role));
    assert!(text(&bad_role).contains("role"), "{}", text(&bad_role));
    let help = ward(cli.path(), &["--help"], "");
    for word in ["server", "login", "users", "sites", "audit"] {
        assert!(text(&help).contains(word), "--help mentions {word}");
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The README's first command: `ward demo` starts a server and a simulated hospital, prints the
/// URL and a login that works, stops cleanly on Ctrl-C and resumes on the next run.
#[test]
fn ward_demo_runs_a_simulated_hospital_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let (api, agent) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    for run in 0..2 {
        let mut child = Command::new(WARD)
            .args([
                "demo",
                "--devices",
                "20",
                "--listen",
                &api,
                "--agent-listen",
                &agent,
                "--data-dir",
            ])
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (mut url, mut login, mut fingerprint) = (String::new(), String::new(), String::new());
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.trim().strip_prefix("console / API:") {
                url = rest.split_whitespace().next().unwrap().to_owned();
            } else if let Some(rest) = line.trim().strip_prefix("login:") {
                login = rest.trim().to_owned();
            } else if let Some(rest) = line.trim().strip_prefix("CA fingerprint:") {
                fingerprint = rest.trim().to_owned();
            } else if line.starts_with("Ctrl-C stops the demo") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        assert_eq!(url, format!("https://{api}"), "run {run}");
        let password = login.strip_prefix("admin / ").unwrap().to_owned();
        let home = dir.path().join(format!("home{run}"));
        std::fs::create_dir_all(&home).unwrap();
        let cli = |args: &[&str], stdin: &str| {
            let mut child = Command::new(WARD)
                .args(args)
                .env("HOME", &home)
                .env("XDG_CONFIG_HOME", &home)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
            child.wait_with_output().unwrap()
        };
        let logged_in = cli(
            &[
                "login",
                "--server",
                &url,
                "--ca-fingerprint",
                &fingerprint,
                "--username",
                "admin",
                "--password-stdin",
            ],
            &format!("{password}\n"),
        );
        assert!(
            logged_in.status.success(),
            "{}",
            String::from_utf8_lossy(&logged_in.stderr)
        );
        let mut devices = 0;
        for _ in 0..100 {
            let listed = cli(&["devices", "list", "--json"], "");
            let list: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
            devices = list
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["online"] == true)
                .count();
            if devices == 20 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        assert_eq!(devices, 20, "run {run}: the simulated hospital is online");
        let stopped = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(stopped.success());
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "run {run}: Ctrl-C stops the demo cleanly: {status}"
        );
    }
}
