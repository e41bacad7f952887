//! Asking the person at the terminal: confirmations before destructive actions, passwords, codes.

use std::io::{BufRead, IsTerminal, Write};

use crate::error::{CliError, Result};
use crate::text::neutralise;

/// Asks before a destructive action on a terminal; elsewhere `--yes` is required.
pub(crate) fn confirm(action: &str, yes: bool) -> Result {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    confirm_with(action, yes, terminal, &mut stdin.lock(), &mut std::io::stderr())
}

/// The decision behind [`confirm`], with the terminal check and streams passed in for tests.
/// A script without `--yes` is a usage error (exit 2): guessing either way would be wrong. A
/// person answering no is a refused action (exit 1).
fn confirm_with(
    action: &str,
    yes: bool,
    terminal: bool,
    input: &mut dyn BufRead,
    prompt: &mut dyn Write,
) -> Result {
    if yes {
        return Ok(());
    }
    if !terminal {
        return Err(CliError::Usage(format!(
            "refusing to {action} without confirmation: standard input is not a terminal; pass --yes"
        )));
    }
    let io = |error: std::io::Error| CliError::local("io", error);
    write!(prompt, "{}? [y/N] ", neutralise(action)).map_err(io)?;
    prompt.flush().map_err(io)?;
    let mut answer = String::new();
    // End of input reads as an empty answer, that is no.
    input.read_line(&mut answer).map_err(io)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(CliError::local(
            "not_confirmed",
            anyhow::anyhow!("did not {action}: not confirmed"),
        ))
    }
}

/// Asks for a password on the terminal without echoing it.
pub(crate) fn prompt_password(prompt: &str) -> Result<String> {
    rpassword::prompt_password(prompt).map_err(|error| CliError::local("io", anyhow::Error::from(error)))
}

/// Prints `prompt` on stderr and reads the answer (a code) as one line.
pub(crate) fn prompt_line(prompt: &str) -> Result<String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    read_stdin_line("the code")
}

/// One line from stdin without its line ending; other whitespace is kept, as passwords may
/// contain it. Stdin is buffered process-wide, so successive calls read successive lines.
pub(crate) fn read_stdin_line(what: &str) -> Result<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(yes: bool, terminal: bool, answer: &str) -> (Result, String) {
        let mut prompt = Vec::new();
        let result = confirm_with(
            "retire device d-1",
            yes,
            terminal,
            &mut answer.as_bytes(),
            &mut prompt,
        );
        (result, String::from_utf8(prompt).unwrap())
    }

    #[test]
    fn without_a_terminal_yes_is_required() {
        let (result, prompt) = ask(false, false, "y\n");
        let error = result.unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.report().contains("pass --yes"), "{}", error.report());
        // Nothing was read or asked: the piped "y" is not taken as consent.
        assert_eq!(prompt, "");
        assert!(ask(true, false, "").0.is_ok());
    }

    #[test]
    fn on_a_terminal_only_yes_confirms() {
        let (result, prompt) = ask(false, true, "y\n");
        assert!(result.is_ok());
        assert_eq!(prompt, "retire device d-1? [y/N] ");
        assert!(ask(false, true, " YES \n").0.is_ok());
        for no in ["\n", "n\n", "", "yess\n", "no\n"] {
            let error = ask(false, true, no).0.unwrap_err();
            assert_eq!(error.exit_code(), 1, "{no:?}");
        }
        assert!(ask(true, true, "n\n").0.is_ok());
    }

    #[test]
    fn prompt_neutralises_the_id() {
        let mut prompt = Vec::new();
        let declined = confirm_with(
            "revoke device \x1b[2J",
            false,
            true,
            &mut "n\n".as_bytes(),
            &mut prompt,
        );
        assert!(declined.is_err(), "\"n\" declines");
        assert!(!String::from_utf8(prompt).unwrap().contains('\x1b'));
    }
}
