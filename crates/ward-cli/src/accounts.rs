//! `ward users ...` and `ward tokens ...`: admin accounts and their API tokens.

use std::io::IsTerminal;

use clap::{ArgGroup, Subcommand};
use ward_proto::{
    ChangePasswordRequest, CreateTokenRequest, CreateUserRequest, TokenView, TotpConfirmRequest,
    UpdateUserRequest, UserView,
};

use crate::connect::connect;
use crate::error::{CliError, Result};
use crate::global::GlobalArgs;
use crate::output::{Output, done, print_json};
use crate::prompt::{prompt_password, read_stdin_line};
use crate::text::{neutralise, or_dash, yes_no};

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

pub(crate) fn user_fields(user: &UserView) -> Vec<(&'static str, String)> {
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

pub(crate) async fn users(global: &GlobalArgs, command: UsersCommand, out: &Output) -> Result {
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

pub(crate) async fn tokens(global: &GlobalArgs, command: TokensCommand, out: &Output) -> Result {
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
