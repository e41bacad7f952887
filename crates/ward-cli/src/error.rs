//! How a failed command is reported: the `error: <message> (<code>)` line and the exit code.

use ward_client::ClientError;
use ward_proto::ErrorCode;

use crate::text::neutralise;

/// What every command returns.
pub(crate) type Result<T = (), E = CliError> = std::result::Result<T, E>;

/// Why a command failed. Each case maps to one exit code from CLI.md.
#[derive(Debug)]
pub(crate) enum CliError {
    /// From the server or the connection to it.
    Client(ClientError),
    /// No server or token to use (exit 3).
    NotLoggedIn(String),
    /// The flags or input make no sense together (exit 2), caught after clap.
    Usage(String),
    /// Something local failed: a file, a prompt, offline verification (exit 1).
    Local {
        code: &'static str,
        error: anyhow::Error,
    },
    /// The audit log was altered (exit 4).
    VerificationFailed(String),
}

impl CliError {
    /// A local failure with a short stable code.
    pub fn local(code: &'static str, error: impl Into<anyhow::Error>) -> Self {
        CliError::Local {
            code,
            error: error.into(),
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Client(error) => error.exit_code(),
            CliError::NotLoggedIn(_) => 3,
            CliError::Usage(_) => 2,
            CliError::Local { .. } => 1,
            CliError::VerificationFailed(_) => 4,
        }
    }

    /// The code in parentheses: the server's stable code when it sent one.
    pub fn code(&self) -> &'static str {
        match self {
            CliError::Client(ClientError::Api { code, .. }) => code.as_str(),
            CliError::Client(ClientError::Connect(_)) => "unreachable",
            CliError::Client(ClientError::Decode(_)) => "bad_response",
            CliError::Client(ClientError::Invalid(_)) => "invalid_input",
            CliError::NotLoggedIn(_) => "not_logged_in",
            CliError::Usage(_) => "usage",
            CliError::Local { code, .. } => code,
            CliError::VerificationFailed(_) => "verification_failed",
        }
    }

    /// The whole stderr line, neutralised because server messages may echo user input.
    pub fn report(&self) -> String {
        let message = match self {
            CliError::Client(ClientError::Api {
                code: ErrorCode::TokenInvalid | ErrorCode::Unauthenticated | ErrorCode::SessionExpired,
                message,
                ..
            }) => {
                format!("{message}; run `ward login`")
            }
            CliError::Client(error) => error.to_string(),
            CliError::NotLoggedIn(message)
            | CliError::Usage(message)
            | CliError::VerificationFailed(message) => message.clone(),
            // `{:#}` prints anyhow's context chain on one line: "writing x: permission denied".
            CliError::Local { error, .. } => format!("{error:#}"),
        };
        let request_id = match self {
            CliError::Client(ClientError::Api {
                request_id: Some(id), ..
            }) => format!(", request {id}"),
            _ => String::new(),
        };
        neutralise(&format!(
            "error: {} ({}{request_id})",
            message.trim_end_matches('.'),
            self.code()
        ))
    }
}

impl From<ClientError> for CliError {
    fn from(error: ClientError) -> Self {
        CliError::Client(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: ErrorCode) -> CliError {
        CliError::Client(ClientError::Api {
            status,
            code,
            message: "nope".into(),
            request_id: Some("req-7".into()),
        })
    }

    #[test]
    fn exit_codes_follow_cli_md() {
        assert_eq!(api(404, ErrorCode::NotFound).exit_code(), 1);
        assert_eq!(api(403, ErrorCode::Forbidden).exit_code(), 1);
        assert_eq!(api(401, ErrorCode::TokenInvalid).exit_code(), 3);
        assert_eq!(
            CliError::Client(ClientError::Connect("refused".into())).exit_code(),
            3
        );
        assert_eq!(CliError::Client(ClientError::Decode("x".into())).exit_code(), 1);
        assert_eq!(CliError::NotLoggedIn("x".into()).exit_code(), 3);
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(CliError::local("io", anyhow::anyhow!("x")).exit_code(), 1);
        assert_eq!(CliError::VerificationFailed("x".into()).exit_code(), 4);
    }

    #[test]
    fn report_line_format() {
        assert_eq!(
            api(404, ErrorCode::NotFound).report(),
            "error: nope (not_found, request req-7)"
        );
        assert_eq!(
            api(401, ErrorCode::TokenInvalid).report(),
            "error: nope; run `ward login` (token_invalid, request req-7)"
        );
        assert_eq!(
            CliError::NotLoggedIn("no server configured".into()).report(),
            "error: no server configured (not_logged_in)"
        );
        let hostile = CliError::Client(ClientError::Api {
            status: 422,
            code: ErrorCode::InvalidInput,
            message: "bad name \x1b[31mred.".into(),
            request_id: None,
        });
        assert_eq!(hostile.report(), "error: bad name \\u{1b}[31mred (invalid_input)");
    }
}
