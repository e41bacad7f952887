//! Running a helper command (`nft`, `ip`, `rpm`, `chronyc`) with a deadline and a cap on its output.
//!
//! Commands run only on the live system (root `/`), only when a collector cannot get the fact from
//! a file. The program is looked up in fixed system directories, not `$PATH`, and runs with a clean
//! environment (`LC_ALL=C` so its output is parseable), no stdin, and stderr discarded.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::CollectError;

/// Where helper programs are looked for, in order.
const PROGRAM_DIRS: [&str; 4] = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// How often a finished-output child is polled for its exit before the deadline.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The absolute path of `program` in one of the system directories, if installed.
pub fn find_program(program: &str) -> Option<PathBuf> {
    PROGRAM_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.is_file())
}

/// Runs `program args…`, returning its stdout (lossy UTF-8) if it exits successfully within
/// `timeout` and writes at most `max_output` bytes.
///
/// The child is killed when the deadline passes or its output goes over the cap; either is an
/// error rather than partial data, because a truncated package list or ruleset would read as a
/// confident, wrong fact.
pub fn run(program: &str, args: &[&str], timeout: Duration, max_output: u64) -> Result<String, CollectError> {
    let fail = |reason: String| CollectError::Command {
        program: program.to_owned(),
        reason,
    };
    let executable = find_program(program).ok_or_else(|| fail("not installed".to_owned()))?;
    // Instant is monotonic and only measures this command's own deadline; it is not a fact.
    let deadline = Instant::now() + timeout;
    let mut child = Command::new(executable)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| fail(format!("cannot start: {error}")))?;

    // The pipe is read on a thread so the deadline can be enforced while the child writes.
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(fail("no stdout pipe".to_owned()));
    };
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let result = stdout.take(max_output.saturating_add(1)).read_to_end(&mut bytes);
        // The receiver may have given up already; nothing to do then.
        let _ = sender.send(result.map(|_| bytes));
    });

    let remaining = deadline.saturating_duration_since(Instant::now());
    let output = match receiver.recv_timeout(remaining) {
        Ok(Ok(bytes)) if bytes.len() as u64 > max_output => {
            kill(&mut child);
            return Err(fail(format!("output over {max_output} bytes")));
        }
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) => {
            kill(&mut child);
            return Err(fail(format!("reading output: {error}")));
        }
        Err(_) => {
            kill(&mut child);
            return Err(fail(format!("timed out after {} ms", timeout.as_millis())));
        }
    };

    // Output is complete (the pipe closed); the child still has until the deadline to exit.
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => {
                return Ok(String::from_utf8_lossy(&output).into_owned());
            }
            Ok(Some(status)) => return Err(fail(format!("exited with {status}"))),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
            Ok(None) => {
                kill(&mut child);
                return Err(fail(format!("timed out after {} ms", timeout.as_millis())));
            }
            Err(error) => {
                kill(&mut child);
                return Err(fail(format!("waiting: {error}")));
            }
        }
    }
}

/// Kills and reaps the child so no zombie is left behind; errors mean it already exited.
fn kill(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_command_is_killed_at_the_deadline() {
        // sleep is coreutils: always installed, so its absence is a failure, not a skip.
        assert!(
            find_program("sleep").is_some(),
            "sleep is not in the program directories"
        );
        let started = Instant::now();
        let result = run("sleep", &["5"], Duration::from_millis(200), 1024);
        assert!(
            matches!(result, Err(CollectError::Command { ref reason, .. }) if reason.contains("timed out"))
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn output_over_the_cap_is_an_error() {
        // cat is coreutils: always installed, so its absence is a failure, not a skip.
        assert!(
            find_program("cat").is_some(),
            "cat is not in the program directories"
        );
        let result = run("cat", &["/proc/cpuinfo"], Duration::from_secs(2), 8);
        assert!(
            matches!(result, Err(CollectError::Command { ref reason, .. }) if reason.contains("output over"))
        );
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let result = run("ward-no-such-program", &[], Duration::from_secs(1), 8);
        assert!(matches!(result, Err(CollectError::Command { ref reason, .. }) if reason == "not installed"));
    }
}
