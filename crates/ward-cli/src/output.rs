//! Printing results: tables for people, JSON for scripts.

use std::io::IsTerminal;

use comfy_table::{Table, presets};
use serde::Serialize;
use serde_json::json;

use crate::error::{CliError, Result};
use crate::text::neutralise;

/// Where and how results are printed.
pub(crate) struct Output {
    /// `--json`: one JSON document per command.
    pub json: bool,
    /// stdout is a terminal, so box-drawing characters are welcome.
    terminal: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Output {
            json,
            terminal: std::io::stdout().is_terminal(),
        }
    }

    /// Prints `value` as pretty JSON.
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(value)?);
        Ok(())
    }

    /// Prints a table; every cell is neutralised first.
    pub fn table(&self, header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
        let mut table = Table::new();
        table.load_style(if self.terminal {
            presets::UTF8_FULL_CONDENSED
        } else {
            presets::ASCII_MARKDOWN
        });
        table.set_header(header.to_vec());
        for row in rows {
            table.add_row(row.iter().map(|cell| neutralise(cell)).collect::<Vec<_>>());
        }
        println!("{table}");
    }

    /// Prints `field: value` pairs, one per line, for a single object.
    pub fn fields(&self, fields: &[(&str, String)]) {
        let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        for (name, value) in fields {
            println!("{name:<width$}  {}", neutralise(value));
        }
    }

    /// Prints a line of human text (already neutralised where it holds server data).
    pub fn line(&self, text: &str) {
        println!("{text}");
    }
}

/// Prints `value` as the command's JSON answer.
pub(crate) fn print_json<T: Serialize + ?Sized>(out: &Output, value: &T) -> Result {
    out.json(value).map_err(|error| CliError::local("io", error))
}

/// Reports a change that has nothing more to show: `{"ok": true}` in JSON, else `message`.
pub(crate) fn done(out: &Output, message: &str) -> Result {
    if out.json {
        print_json(out, &json!({ "ok": true }))
    } else {
        out.line(&neutralise(message));
        Ok(())
    }
}
