//! The agent's journal of commands: an append-only file of JSON lines in the state directory, each
//! line fsync'd before the agent acts on it. It is what makes execution exactly-once: a command is
//! journaled as accepted before it is acknowledged, and as finished (with its result) before the
//! result is sent, so a redelivered command is answered from here instead of run again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Rewrite the file once it holds this many lines.
const COMPACT_AT: usize = 10_000;

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Entry {
    Accepted {
        id: String,
        kind: String,
        not_after_ms: i64,
        time_ms: i64,
    },
    Finished {
        id: String,
        status: String,
        detail: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        proof_json: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        proof_signature: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        output: String,
        time_ms: i64,
    },
}

impl Entry {
    fn id(&self) -> &str {
        match self {
            Entry::Accepted { id, .. } | Entry::Finished { id, .. } => id,
        }
    }
}

/// What the journal knows about one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub not_after_ms: i64,
    /// The last `Finished` entry, if any.
    pub finished: Option<Entry>,
}

struct Inner {
    lines: usize,
    commands: HashMap<String, Known>,
}

/// The open journal. Appends are serialised and each is on disk before `append` returns.
pub struct Journal {
    path: PathBuf,
    inner: Mutex<Inner>,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

fn apply(commands: &mut HashMap<String, Known>, entry: Entry) {
    match &entry {
        Entry::Accepted { id, not_after_ms, .. } => {
            commands.entry(id.clone()).or_insert(Known {
                not_after_ms: *not_after_ms,
                finished: None,
            });
        }
        Entry::Finished { id, .. } => {
            let known = commands.entry(id.clone()).or_insert(Known {
                not_after_ms: i64::MAX,
                finished: None,
            });
            known.finished = Some(entry);
        }
    }
}

impl Journal {
    /// Opens (or creates) the journal at `path`. A torn last line (a crash mid-write) is ignored.
    pub fn open(path: &Path) -> std::io::Result<Journal> {
        let mut commands = HashMap::new();
        let mut lines = 0;
        if let Ok(file) = File::open(path) {
            for line in BufReader::new(file).lines() {
                let line = line?;
                lines += 1;
                if let Ok(entry) = serde_json::from_str::<Entry>(&line) {
                    apply(&mut commands, entry);
                }
            }
        }
        let mut file = open_append(path)?;
        // A torn last line (no newline) would swallow the next entry: end it first.
        let torn = std::fs::read(path).is_ok_and(|bytes| bytes.last().is_some_and(|b| *b != b'\n'));
        if torn {
            file.write_all(b"\n")?;
            file.sync_data()?;
        }
        Ok(Journal {
            path: path.to_owned(),
            inner: Mutex::new(Inner { lines, commands }),
        })
    }

    /// What is known about command `id`.
    pub fn get(&self, id: &str) -> Option<Known> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.commands.get(id).cloned()
    }

    /// Appends `entry` and syncs it to disk; compacts when the file has grown large.
    pub fn append(&self, entry: Entry, now_ms: i64) -> std::io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut line = serde_json::to_string(&entry).map_err(std::io::Error::other)?;
        line.push('\n');
        // Opened per entry rather than held: commands are rare, and the simulator runs thousands
        // of agents in one process, where a held file each would exhaust the open-file limit.
        let mut file = open_append(&self.path)?;
        file.write_all(line.as_bytes())?;
        file.sync_data()?;
        inner.lines += 1;
        apply(&mut inner.commands, entry);
        if inner.lines >= COMPACT_AT {
            self.compact(&mut inner, now_ms)?;
        }
        Ok(())
    }

    /// Rewrites the file keeping only commands whose not-after has not passed: an expired command
    /// is refused anyway, so forgetting it cannot cause a second execution.
    fn compact(&self, inner: &mut Inner, now_ms: i64) -> std::io::Result<()> {
        inner.commands.retain(|_, known| known.not_after_ms >= now_ms);
        let temp = self.path.with_extension("compact");
        let _ = std::fs::remove_file(&temp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        let mut lines = 0;
        let mut ids: Vec<&String> = inner.commands.keys().collect();
        ids.sort();
        for id in ids {
            let known = &inner.commands[id];
            let accepted = Entry::Accepted {
                id: id.clone(),
                kind: String::new(),
                not_after_ms: known.not_after_ms,
                time_ms: now_ms,
            };
            for entry in std::iter::once(&accepted).chain(known.finished.iter()) {
                let mut line = serde_json::to_string(entry).map_err(std::io::Error::other)?;
                line.push('\n');
                file.write_all(line.as_bytes())?;
                lines += 1;
            }
        }
        file.sync_all()?;
        std::fs::rename(&temp, &self.path)?;
        inner.lines = lines;
        Ok(())
    }

    /// The last `n` entries' ids and phases, for diagnostics bundles.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
            .map(|e| match &e {
                Entry::Accepted { kind, .. } => format!("{} accepted {kind}", e.id()),
                Entry::Finished { status, .. } => format!("{} {status}", e.id()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(id: &str, not_after_ms: i64) -> Entry {
        Entry::Accepted {
            id: id.into(),
            kind: "lock".into(),
            not_after_ms,
            time_ms: 0,
        }
    }

    fn finished(id: &str) -> Entry {
        Entry::Finished {
            id: id.into(),
            status: "succeeded".into(),
            detail: "done".into(),
            proof_json: String::new(),
            proof_signature: String::new(),
            output: String::new(),
            time_ms: 1,
        }
    }

    #[test]
    fn entries_survive_reopening_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("commands.journal");
        let journal = Journal::open(&path).unwrap();
        journal.append(accepted("a", 100), 0).unwrap();
        journal.append(finished("a"), 0).unwrap();
        journal.append(accepted("b", 100), 0).unwrap();
        drop(journal);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"phase\":\"finished\",\"id\":\"b\",\"sta")
            .unwrap();
        drop(file);
        let journal = Journal::open(&path).unwrap();
        assert_eq!(journal.get("a").unwrap().finished, Some(finished("a")));
        assert_eq!(
            journal.get("b").unwrap().finished,
            None,
            "the torn line is ignored"
        );
        assert!(journal.get("c").is_none());
        journal.append(finished("b"), 0).unwrap();
        let reopened = Journal::open(&path).unwrap();
        assert!(
            reopened.get("b").unwrap().finished.is_some(),
            "appends after a torn line still read"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn compaction_keeps_unexpired_commands() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("commands.journal");
        let journal = Journal::open(&path).unwrap();
        journal.append(accepted("old", 10), 0).unwrap();
        journal.append(finished("old"), 0).unwrap();
        journal.append(accepted("live", 1_000_000), 0).unwrap();
        journal.append(finished("live"), 0).unwrap();
        for i in 0..COMPACT_AT {
            journal.append(accepted(&format!("x{i}"), 5), 500).unwrap();
        }
        assert!(journal.get("old").is_none(), "expired commands are forgotten");
        assert!(journal.get("live").unwrap().finished.is_some());
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines < 10, "the file was rewritten: {lines} lines");
        let reopened = Journal::open(&path).unwrap();
        assert!(reopened.get("live").unwrap().finished.is_some());
    }
}
