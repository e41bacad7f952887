//! `ward login`, `ward logout` and `ward whoami`: getting, dropping and showing the saved login.

use std::io::IsTerminal;

use clap::Args;
use serde_json::json;
use ward_client::{Client, ClientError, Trust};
use ward_proto::{ErrorCode, LoginRequest};

use crate::accounts::user_fields;
use crate::config::{self, StoredLogin};
use crate::connect::{connect, read_ca_file, resolve, same_server};
use crate::error::{CliError, Result};
use crate::global::GlobalArgs;
use crate::output::{Output, print_json};
use crate::prompt::{prompt_line, prompt_password, read_stdin_line};
use crate::text::{neutralise, or_dash};

pub(crate) const LOGIN_EXAMPLES: &str = "\
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

/// `ward whoami`.
pub(crate) async fn whoami(global: &GlobalArgs, out: &Output) -> Result {
    let whoami = connect(global)?.whoami().await?;
    if out.json {
        return print_json(out, &whoami);
    }
    let mut fields = user_fields(&whoami.user);
    fields.push(("via", whoami.via.clone()));
    fields.push(("token", or_dash(whoami.token_id.as_deref())));
    fields.push(("scope", whoami.scope.clone()));
    out.fields(&fields);
    Ok(())
}

/// `ward login`.
pub(crate) async fn login(global: &GlobalArgs, args: &LoginArgs, out: &Output) -> Result {
    let path = config::config_path().map_err(|error| CliError::local("config", error))?;
    // A broken or too-open saved file is about to be replaced, so it must not stop a new login.
    let stored = config::load(&path).ok().flatten();
    let server = global
        .server
        .clone()
        .or_else(|| stored.as_ref().map(|stored| stored.server.clone()))
        .ok_or_else(|| CliError::Usage("no server given: pass --server URL or set WARD_SERVER".into()))?;

    // The CA is stored as PEM so later commands verify the server normally; a fingerprint is
    // only used once, here, to fetch that PEM safely.
    let ca_pem = if let Some(path) = &global.ca_cert {
        Some(read_ca_file(path)?)
    } else if let Some(fingerprint) = &global.ca_fingerprint {
        Some(ward_client::fetch_ca_pem(&server, fingerprint).await?)
    } else {
        stored
            .as_ref()
            .filter(|stored| same_server(&stored.server, &server))
            .and_then(|stored| stored.ca_pem.clone())
    };
    let trust = ca_pem.clone().map(Trust::CaPem).unwrap_or(Trust::System);
    let client = Client::new(&server, &trust)?;

    let username = match &args.username {
        Some(name) => name.clone(),
        None => std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .ok()
            .filter(|name| !name.is_empty())
            .ok_or_else(|| CliError::Usage("no username: pass --username".into()))?,
    };
    let password = login_password(args, &username)?;
    let mut request = LoginRequest {
        username: username.clone(),
        password,
        totp_code: args.totp_code.clone(),
        recovery_code: args.recovery_code.clone(),
        token_name: args.token_name.clone(),
        expires_in_days: args.expires_in_days,
    };
    let created = match client.cli_login(&request).await {
        Err(ClientError::Api {
            code: ErrorCode::MfaRequired,
            ..
        }) if request.totp_code.is_none()
            && request.recovery_code.is_none()
            && std::io::stdin().is_terminal() =>
        {
            request.totp_code = Some(prompt_line("TOTP code: ")?);
            client.cli_login(&request).await
        }
        result => result,
    }
    .map_err(|error| with_trust_hint(error, &trust))?;

    config::save(
        &path,
        &StoredLogin::new(server.clone(), created.secret.clone(), ca_pem),
    )
    .map_err(|error| CliError::local("config", error))?;

    if out.json {
        return print_json(
            out,
            &json!({ "server": server, "username": username, "token": created.token, "config": path }),
        );
    }
    out.line(&neutralise(&format!(
        "logged in to {server} as {username}; token {} expires {}",
        created.token.id, created.token.expires_at
    )));
    out.line(&neutralise(&format!("saved to {}", path.display())));
    Ok(())
}

/// A Ward server normally has its own CA, which the system trust store does not know; say how to
/// trust it instead of leaving the operator with a bare certificate error.
fn with_trust_hint(error: ClientError, trust: &Trust) -> CliError {
    match error {
        ClientError::Connect(message) if *trust == Trust::System && message.contains("certificate") => {
            CliError::Client(ClientError::Connect(format!(
                "{message}; pass --ca-fingerprint (printed by the server at first start) or --ca-cert"
            )))
        }
        error => error.into(),
    }
}

/// The password from `--password-stdin`, `WARD_PASSWORD` or a terminal prompt, in that order.
fn login_password(args: &LoginArgs, username: &str) -> Result<String> {
    if args.password_stdin {
        return read_stdin_line("the password");
    }
    if let Ok(password) = std::env::var("WARD_PASSWORD") {
        return Ok(password);
    }
    if std::io::stdin().is_terminal() {
        return prompt_password(&format!("password for {}: ", neutralise(username)));
    }
    Err(CliError::Usage(
        "no password: run on a terminal, set WARD_PASSWORD or pass --password-stdin".into(),
    ))
}

/// `ward logout`.
pub(crate) async fn logout(global: &GlobalArgs, out: &Output) -> Result {
    let path = config::config_path().map_err(|error| CliError::local("config", error))?;
    let stored = config::load(&path).map_err(|error| CliError::local("config", error))?;
    let target = resolve(global, stored.as_ref())?;
    let token = target
        .token
        .ok_or_else(|| CliError::NotLoggedIn("not logged in".into()))?;
    let revoking_saved = stored.as_ref().is_some_and(|stored| stored.token == token);
    let client = Client::new(&target.server, &target.trust)?.with_token(token);
    let revoked = match client.logout().await {
        Ok(()) => true,
        // Already revoked or expired: nothing left to revoke, but the local copy should still go.
        Err(ClientError::Api { status: 401, .. }) if revoking_saved => false,
        // Otherwise keep the saved token so logout can be retried once the server is reachable.
        Err(error) => return Err(error.into()),
    };
    let removed =
        revoking_saved && config::remove(&path).map_err(|error| CliError::local("config", error))?;
    if out.json {
        return print_json(out, &json!({ "revoked": revoked, "config_removed": removed }));
    }
    out.line(match (revoked, removed) {
        (true, true) => "logged out: token revoked and saved login removed",
        (true, false) => "token revoked",
        (false, _) => "the token was already invalid; saved login removed",
    });
    Ok(())
}
