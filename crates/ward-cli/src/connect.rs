//! Which server to talk to and how: flags, environment and the saved login combined into a client.

use std::path::Path;

use anyhow::Context;
use ward_client::{Client, Trust};

use crate::config::{self, StoredLogin};
use crate::error::{CliError, Result};
use crate::global::GlobalArgs;

/// Where to connect and with what, after combining flags, environment and the saved login.
#[derive(Debug, PartialEq)]
pub(crate) struct Target {
    pub server: String,
    pub token: Option<String>,
    pub trust: Trust,
}

/// Flags win over the saved login. The saved token and CA are used only for the saved server:
/// `--server elsewhere` must never receive the token meant for the usual one.
pub(crate) fn resolve(global: &GlobalArgs, stored: Option<&StoredLogin>) -> Result<Target> {
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

pub(crate) fn read_ca_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("reading the CA certificate {}", path.display()))
        .map_err(|error| CliError::local("io", error))
}

pub(crate) fn same_server(a: &str, b: &str) -> bool {
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

#[cfg(test)]
mod tests {
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
}
