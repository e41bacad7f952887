//! Executes each admin command: resolve the server and credentials, call the API, print.

use std::io::{BufRead, BufWriter, IsTerminal, Write};
use std::path::Path;

use anyhow::Context;
use serde_json::json;
use ward_client::{Client, ClientError, Trust};
use ward_proto::{
    AuditQuery, ChangePasswordRequest, CreateSiteRequest, CreateTokenRequest, CreateUserRequest, ErrorCode,
    LoginRequest, SiteView, TokenView, TotpConfirmRequest, UpdateSiteRequest, UpdateUserRequest, UserView,
    VerifyReportView,
};

use crate::OfflineAudit;
use crate::args::{
    AdminCommand, AuditCommand, GlobalArgs, LoginArgs, SitesCommand, TokensCommand, UsersCommand,
};
use crate::config::{self, StoredLogin};
use crate::error::CliError;
use crate::output::{Output, neutralise, or_dash, yes_no};

pub(crate) type Result<T = (), E = CliError> = std::result::Result<T, E>;

pub(crate) async fn execute(
    global: &GlobalArgs,
    command: AdminCommand,
    offline: &dyn OfflineAudit,
) -> Result {
    let out = Output::new(global.json);
    match command {
        AdminCommand::Login(args) => login(global, &args, &out).await,
        AdminCommand::Logout => logout(global, &out).await,
        AdminCommand::Whoami => {
            let whoami = connect(global)?.whoami().await?;
            if out.json {
                return print_json(&out, &whoami);
            }
            let mut fields = user_fields(&whoami.user);
            fields.push(("via", whoami.via.clone()));
            fields.push(("token", or_dash(whoami.token_id.as_deref())));
            fields.push(("scope", whoami.scope.clone()));
            out.fields(&fields);
            Ok(())
        }
        AdminCommand::Users(command) => users(global, command, &out).await,
        AdminCommand::Tokens(command) => tokens(global, command, &out).await,
        AdminCommand::Sites(command) => sites(global, command, &out).await,
        AdminCommand::Audit(command) => audit(global, command, offline, &out).await,
        AdminCommand::EnrollToken(command) => crate::devices::enroll_tokens(global, command, &out).await,
        AdminCommand::Devices(command) => crate::devices::devices(global, command, &out).await,
        AdminCommand::Commands(command) => crate::actions::commands(global, command, &out).await,
        AdminCommand::Incident(command) => crate::incidents::incident(global, command, &out).await,
        AdminCommand::Policy(command) => crate::policies::policy(global, command, &out).await,
        AdminCommand::Compliance(command) => crate::policies::compliance(global, command, &out).await,
        AdminCommand::Group(command) => crate::policies::group(global, command, &out).await,
        AdminCommand::Lwm2m(command) => crate::lwm2m::lwm2m(global, command, &out).await,
    }
}

/// Where to connect and with what, after combining flags, environment and the saved login.
#[derive(Debug, PartialEq)]
struct Target {
    server: String,
    token: Option<String>,
    trust: Trust,
}

/// Flags win over the saved login. The saved token and CA are used only for the saved server:
/// `--server elsewhere` must never receive the token meant for the usual one.
fn resolve(global: &GlobalArgs, stored: Option<&StoredLogin>) -> Result<Target> {
    let server = match (&global.server, stored) {
        (Some(server), _) => server.clone(),
        (None, Some(stored)) => stored.server.clone(),
        (None, None) => {
            return Err(CliError::NotLoggedIn(
                "no server configured: run `ward login` or pass --server".into(),
            ));
        }
    };
    let saved = stored.filter(|stored| same_server(&stored.server, &server));
    let token = global
        .token
        .clone()
        .or_else(|| saved.map(|stored| stored.token.clone()));
    let trust = trust_from_flags(global)?
        .or_else(|| saved.and_then(|stored| stored.ca_pem.clone()).map(Trust::CaPem))
        .unwrap_or(Trust::System);
    Ok(Target { server, token, trust })
}

fn trust_from_flags(global: &GlobalArgs) -> Result<Option<Trust>> {
    if let Some(path) = &global.ca_cert {
        return Ok(Some(Trust::CaPem(read_ca_file(path)?)));
    }
    Ok(global.ca_fingerprint.clone().map(Trust::Fingerprint))
}

fn read_ca_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("reading the CA certificate {}", path.display()))
        .map_err(|error| CliError::local("io", error))
}

fn same_server(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

fn load_stored() -> Result<Option<StoredLogin>> {
    let path = config::config_path().map_err(|error| CliError::local("config", error))?;
    config::load(&path).map_err(|error| CliError::local("config", error))
}

/// An authenticated client for every command except login.
pub(crate) fn connect(global: &GlobalArgs) -> Result<Client> {
    connect_with_trust(global).map(|(client, _)| client)
}

/// [`connect`], also returning how the server is trusted, for commands that pass the CA on
/// (`ward enroll-token create` prints the fingerprint devices should pin).
pub(crate) fn connect_with_trust(global: &GlobalArgs) -> Result<(Client, Trust)> {
    // With both server and token on the command line the saved login only matters for its CA,
    // so a broken saved file should not get in the way.
    let stored = if global.server.is_some() && global.token.is_some() {
        load_stored().ok().flatten()
    } else {
        load_stored()?
    };
    let target = resolve(global, stored.as_ref())?;
    let token = target.token.ok_or_else(|| {
        CliError::NotLoggedIn(format!(
            "not logged in to {}: run `ward login` or pass --token",
            target.server
        ))
    })?;
    let client = Client::new(&target.server, &target.trust)?.with_token(token);
    Ok((client, target.trust))
}

pub(crate) fn print_json<T: serde::Serialize + ?Sized>(out: &Output, value: &T) -> Result {
    out.json(value).map_err(|error| CliError::local("io", error))
}

pub(crate) fn done(out: &Output, message: &str) -> Result {
    if out.json {
        print_json(out, &json!({ "ok": true }))
    } else {
        out.line(&neutralise(message));
        Ok(())
    }
}

async fn login(global: &GlobalArgs, args: &LoginArgs, out: &Output) -> Result {
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

fn prompt_password(prompt: &str) -> Result<String> {
    rpassword::prompt_password(prompt).map_err(|error| CliError::local("io", anyhow::Error::from(error)))
}

fn prompt_line(prompt: &str) -> Result<String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    read_stdin_line("the code")
}

/// One line from stdin without its line ending; other whitespace is kept, as passwords may
/// contain it. Stdin is buffered process-wide, so successive calls read successive lines.
fn read_stdin_line(what: &str) -> Result<String> {
    let mut line = String::new();
    let n_bytes = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|error| CliError::local("io", anyhow::Error::from(error)))?;
    if n_bytes == 0 {
        return Err(CliError::Usage(format!("expected {what} on stdin")));
    }
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

async fn logout(global: &GlobalArgs, out: &Output) -> Result {
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

fn user_fields(user: &UserView) -> Vec<(&'static str, String)> {
    vec![
        ("username", user.username.clone()),
        ("name", user.display_name.clone()),
        ("role", user.role.clone()),
        ("sites", sites_text(&user.sites)),
        ("totp", yes_no(user.totp_enabled)),
        ("break-glass", yes_no(user.break_glass)),
        ("disabled", yes_no(user.disabled)),
        ("must change password", yes_no(user.must_change_password)),
        ("created", user.created_at.clone()),
        ("id", user.id.clone()),
    ]
}

fn sites_text(sites: &[String]) -> String {
    if sites.is_empty() {
        "all".to_owned()
    } else {
        sites.join(", ")
    }
}

fn user_status(user: &UserView) -> String {
    let mut status = Vec::new();
    if user.disabled {
        status.push("disabled");
    }
    if user.break_glass {
        status.push("break-glass");
    }
    if user.must_change_password {
        status.push("must change password");
    }
    if status.is_empty() {
        "active".to_owned()
    } else {
        status.join(", ")
    }
}

async fn users(global: &GlobalArgs, command: UsersCommand, out: &Output) -> Result {
    let client = connect(global)?;
    match command {
        UsersCommand::List => {
            let users = client.list_users().await?;
            if out.json {
                return print_json(out, &users);
            }
            out.table(
                &["username", "name", "role", "sites", "totp", "status", "created"],
                users.iter().map(|user| {
                    vec![
                        user.username.clone(),
                        user.display_name.clone(),
                        user.role.clone(),
                        sites_text(&user.sites),
                        yes_no(user.totp_enabled),
                        user_status(user),
                        user.created_at.clone(),
                    ]
                }),
            );
            Ok(())
        }
        UsersCommand::Show { name } => show_user(out, &client.get_user(&name).await?),
        UsersCommand::Create {
            name,
            role,
            sites,
            display_name,
            break_glass,
        } => {
            let request = CreateUserRequest {
                username: name,
                display_name,
                role,
                sites,
                password: None,
                break_glass,
            };
            let created = client.create_user(&request).await?;
            if out.json {
                return print_json(out, &created);
            }
            out.fields(&user_fields(&created.user));
            if let Some(password) = &created.initial_password {
                out.line(&neutralise(&format!(
                    "initial password (shown once; must be changed at first login): {password}"
                )));
            }
            Ok(())
        }
        UsersCommand::Update {
            name,
            role,
            sites,
            all_sites,
            display_name,
            disable,
            enable,
        } => {
            let sites = if all_sites {
                Some(Vec::new())
            } else if sites.is_empty() {
                None
            } else {
                Some(sites)
            };
            let disabled = if disable {
                Some(true)
            } else if enable {
                Some(false)
            } else {
                None
            };
            let request = UpdateUserRequest {
                display_name,
                role,
                sites,
                disabled,
            };
            show_user(out, &client.update_user(&name, &request).await?)
        }
        UsersCommand::ResetPassword { name } => {
            let generated = client.reset_password(&name).await?;
            if out.json {
                return print_json(out, &generated);
            }
            out.line(&neutralise(&format!(
                "new password for {name} (shown once; must be changed at next login): {}",
                generated.password
            )));
            Ok(())
        }
        UsersCommand::Password { password_stdin } => {
            let request = if password_stdin {
                ChangePasswordRequest {
                    current_password: read_stdin_line("the current password")?,
                    new_password: read_stdin_line("the new password on the second line")?,
                }
            } else if std::io::stdin().is_terminal() {
                let current_password = prompt_password("current password: ")?;
                let new_password = prompt_password("new password: ")?;
                if prompt_password("new password again: ")? != new_password {
                    return Err(CliError::Usage("the new passwords do not match".into()));
                }
                ChangePasswordRequest {
                    current_password,
                    new_password,
                }
            } else {
                return Err(CliError::Usage("not a terminal: pass --password-stdin".into()));
            };
            client.change_password(&request).await?;
            done(out, "password changed")
        }
        UsersCommand::TotpEnrol => {
            let enrolment = client.totp_enrol().await?;
            if out.json {
                return print_json(out, &enrolment);
            }
            out.fields(&[
                ("secret", enrolment.secret.clone()),
                ("otpauth url", enrolment.otpauth_url.clone()),
            ]);
            out.line("recovery codes (shown once; keep them somewhere safe):");
            for code in &enrolment.recovery_codes {
                out.line(&format!("  {}", neutralise(code)));
            }
            out.line("then run `ward users totp-confirm CODE` with a code from the authenticator app");
            Ok(())
        }
        UsersCommand::TotpConfirm { code } => {
            client.totp_confirm(&TotpConfirmRequest { code }).await?;
            done(out, "TOTP enabled: logins now need a code")
        }
    }
}

fn show_user(out: &Output, user: &UserView) -> Result {
    if out.json {
        return print_json(out, user);
    }
    out.fields(&user_fields(user));
    Ok(())
}

fn token_row(token: &TokenView) -> Vec<String> {
    vec![
        token.id.clone(),
        token.name.clone(),
        token.owner.clone(),
        token.scope.clone(),
        token.created_at.clone(),
        token.expires_at.clone(),
        or_dash(token.last_used_at.as_deref()),
        or_dash(token.revoked_at.as_deref()),
    ]
}

const TOKEN_HEADER: [&str; 8] = [
    "id",
    "name",
    "owner",
    "scope",
    "created",
    "expires",
    "last used",
    "revoked",
];

async fn tokens(global: &GlobalArgs, command: TokensCommand, out: &Output) -> Result {
    let client = connect(global)?;
    match command {
        TokensCommand::List { all } => {
            let tokens = client.list_tokens(all).await?;
            if out.json {
                return print_json(out, &tokens);
            }
            out.table(&TOKEN_HEADER, tokens.iter().map(token_row));
            Ok(())
        }
        TokensCommand::Create {
            name,
            scope,
            expires_in_days,
        } => {
            let request = CreateTokenRequest {
                name,
                scope: Some(scope),
                expires_in_days,
            };
            let created = client.create_token(&request).await?;
            if out.json {
                return print_json(out, &created);
            }
            let fields: Vec<(&str, String)> = TOKEN_HEADER
                .iter()
                .copied()
                .zip(token_row(&created.token))
                .collect();
            out.fields(&fields);
            out.line(&neutralise(&format!("secret (shown once): {}", created.secret)));
            Ok(())
        }
        TokensCommand::Revoke { id } => {
            client.revoke_token(&id).await?;
            done(out, &format!("token {id} revoked"))
        }
    }
}

fn show_site(out: &Output, site: &SiteView) -> Result {
    if out.json {
        return print_json(out, site);
    }
    out.fields(&[
        ("slug", site.slug.clone()),
        ("name", site.name.clone()),
        ("kind", site.kind.clone()),
        ("parent", or_dash(site.parent.as_deref())),
        ("created", site.created_at.clone()),
    ]);
    Ok(())
}

async fn sites(global: &GlobalArgs, command: SitesCommand, out: &Output) -> Result {
    let client = connect(global)?;
    match command {
        SitesCommand::List => {
            let sites = client.list_sites().await?;
            if out.json {
                return print_json(out, &sites);
            }
            out.table(
                &["slug", "name", "kind", "parent", "created"],
                sites.iter().map(|site| {
                    vec![
                        site.slug.clone(),
                        site.name.clone(),
                        site.kind.clone(),
                        or_dash(site.parent.as_deref()),
                        site.created_at.clone(),
                    ]
                }),
            );
            Ok(())
        }
        SitesCommand::Show { slug } => show_site(out, &client.get_site(&slug).await?),
        SitesCommand::Create { slug, name } => {
            show_site(out, &client.create_site(&CreateSiteRequest { slug, name }).await?)
        }
        SitesCommand::Rename { slug, name } => show_site(
            out,
            &client.update_site(&slug, &UpdateSiteRequest { name }).await?,
        ),
        SitesCommand::Delete { slug } => {
            client.delete_site(&slug).await?;
            done(out, &format!("site {slug} deleted"))
        }
    }
}

async fn audit(
    global: &GlobalArgs,
    command: AuditCommand,
    offline: &dyn OfflineAudit,
    out: &Output,
) -> Result {
    match command {
        AuditCommand::List {
            after,
            limit,
            actor,
            action,
            target,
        } => {
            let query = AuditQuery {
                after,
                limit,
                actor,
                action,
                target,
            };
            let page = connect(global)?.audit(&query).await?;
            if out.json {
                return print_json(out, &page);
            }
            out.table(
                &["seq", "time", "actor", "action", "target", "outcome"],
                page.entries.iter().map(|entry| {
                    vec![
                        entry.seq.to_string(),
                        entry.time.clone(),
                        entry.actor.clone(),
                        entry.action.clone(),
                        entry.target.clone(),
                        entry.outcome.clone(),
                    ]
                }),
            );
            if let Some(next) = page.next_after {
                eprintln!("more entries: pass --after {next}");
            }
            Ok(())
        }
        AuditCommand::Verify { database, data_dir } => {
            let report = if database.is_some() || data_dir.is_some() {
                offline
                    .verify(database, data_dir)
                    .await
                    .map_err(|error| CliError::local("offline_verify", error))?
            } else {
                connect(global)?.audit_verify().await?
            };
            print_report(out, &report)
        }
        AuditCommand::Export { after, output } => export(global, after, output.as_deref(), out).await,
        AuditCommand::Checkpoints => {
            let checkpoints = connect(global)?.audit_checkpoints().await?;
            if out.json {
                return print_json(out, &checkpoints);
            }
            out.table(
                &["tree size", "time", "root", "head hash"],
                checkpoints.iter().map(|checkpoint| {
                    vec![
                        checkpoint.tree_size.to_string(),
                        checkpoint.time.clone(),
                        checkpoint.root.clone(),
                        checkpoint.head_hash.clone(),
                    ]
                }),
            );
            Ok(())
        }
        AuditCommand::Key => {
            let key = connect(global)?.audit_key().await?;
            if out.json {
                return print_json(out, &key);
            }
            out.fields(&[("public key", key.public_key)]);
            Ok(())
        }
    }
}

/// Prints a verification report the same way whether it came from the server or the store,
/// and fails with exit code 4 when the log was altered.
fn print_report(out: &Output, report: &VerifyReportView) -> Result {
    if out.json {
        print_json(out, report)?;
    } else {
        out.fields(&[
            ("result", if report.ok { "ok" } else { "FAILED" }.to_owned()),
            ("entries checked", report.entries_checked.to_string()),
            ("checkpoints checked", report.checkpoints_checked.to_string()),
            ("root", report.root.clone()),
        ]);
    }
    if let Some(message) = verification_failure(report) {
        return Err(CliError::VerificationFailed(message));
    }
    Ok(())
}

fn verification_failure(report: &VerifyReportView) -> Option<String> {
    if report.ok {
        return None;
    }
    Some(match &report.failure {
        Some(failure) => format!(
            "audit log verification failed at entry {}: {}: {}",
            failure.seq, failure.kind, failure.detail
        ),
        None => "audit log verification failed".to_owned(),
    })
}

/// Streams the export to a file or stdout as JSON lines (in both output modes: JSON lines are
/// the format for streams).
async fn export(global: &GlobalArgs, after: Option<u64>, output: Option<&Path>, out: &Output) -> Result {
    let client = connect(global)?;
    let io_error = |error: std::io::Error| CliError::local("io", anyhow::Error::from(error));
    let sink: Box<dyn Write + Send> = match output {
        // The log names people and devices; keep the archive private to its creator.
        Some(path) => Box::new(
            config::private_file(path)
                .with_context(|| format!("creating {}", path.display()))
                .map_err(|error| CliError::local("io", error))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let mut writer = BufWriter::new(sink);
    let mut export = client.audit_export(after).await?;
    let mut n_entries: u64 = 0;
    while let Some(entry) = export.next_entry().await? {
        serde_json::to_writer(&mut writer, &entry).map_err(|error| CliError::local("io", error))?;
        writer.write_all(b"\n").map_err(io_error)?;
        n_entries += 1;
    }
    writer.flush().map_err(io_error)?;
    if let Some(path) = output
        && !out.json
    {
        eprintln!(
            "exported {n_entries} entries to {}",
            neutralise(&path.display().to_string())
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ward_proto::VerifyFailureView;

    use super::*;

    fn stored(server: &str) -> StoredLogin {
        StoredLogin::new(server.into(), "ward_saved_token".into(), Some("PEM".into()))
    }

    #[test]
    fn saved_login_fills_in_missing_flags() {
        let target = resolve(&GlobalArgs::default(), Some(&stored("https://ward.example:8443"))).unwrap();
        assert_eq!(target.server, "https://ward.example:8443");
        assert_eq!(target.token.as_deref(), Some("ward_saved_token"));
        assert_eq!(target.trust, Trust::CaPem("PEM".into()));
    }

    #[test]
    fn saved_token_is_not_sent_to_another_server() {
        let global = GlobalArgs {
            server: Some("https://evil.example".into()),
            ..GlobalArgs::default()
        };
        let target = resolve(&global, Some(&stored("https://ward.example:8443"))).unwrap();
        assert_eq!(target.token, None);
        assert_eq!(target.trust, Trust::System);

        let global = GlobalArgs {
            server: Some("https://ward.example:8443/".into()),
            ..GlobalArgs::default()
        };
        let target = resolve(&global, Some(&stored("https://ward.example:8443"))).unwrap();
        assert_eq!(target.token.as_deref(), Some("ward_saved_token"));
    }

    #[test]
    fn flags_win_over_saved_login() {
        let global = GlobalArgs {
            token: Some("ward_flag_token".into()),
            ca_fingerprint: Some("ab".repeat(32)),
            ..GlobalArgs::default()
        };
        let target = resolve(&global, Some(&stored("https://ward.example"))).unwrap();
        assert_eq!(target.token.as_deref(), Some("ward_flag_token"));
        assert_eq!(target.trust, Trust::Fingerprint("ab".repeat(32)));
    }

    #[test]
    fn no_server_means_not_logged_in() {
        let error = resolve(&GlobalArgs::default(), None).unwrap_err();
        assert_eq!(error.exit_code(), 3);
        assert!(error.report().contains("ward login"));
    }

    #[test]
    fn failed_verification_names_the_first_bad_entry_and_exits_4() {
        let report = VerifyReportView {
            ok: false,
            entries_checked: 17,
            checkpoints_checked: 1,
            root: "00".into(),
            failure: Some(VerifyFailureView {
                seq: 12,
                kind: "entry_edited".into(),
                detail: "hash differs".into(),
            }),
        };
        let error = print_report(&Output::new(true), &report).unwrap_err();
        assert_eq!(error.exit_code(), 4);
        assert_eq!(
            error.report(),
            "error: audit log verification failed at entry 12: entry_edited: hash differs (verification_failed)"
        );
        let good = VerifyReportView {
            ok: true,
            failure: None,
            ..report
        };
        assert!(print_report(&Output::new(true), &good).is_ok());
    }
}
