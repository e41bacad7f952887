//! Printing results: tables for people, JSON for scripts, and neutralising hostile text.

use std::io::IsTerminal;

use comfy_table::{Table, presets};
use serde::Serialize;

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

/// Replaces control characters (and the invisible bidirectional overrides used to make text
/// display differently from what it is) with `\u{..}` escapes. Names, sites and audit details
/// come from users and devices; printed raw, an escape sequence could rewrite the terminal.
pub fn neutralise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || is_bidi_control(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `-` for an absent value, so table columns stay aligned and readable.
pub fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

/// `yes` / `no` for table cells.
pub fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_neutralised() {
        assert_eq!(neutralise("icu\x1b]0;pwned\x07"), "icu\\u{1b}]0;pwned\\u{7}");
        assert_eq!(neutralise("a\nb\tc\r"), "a\\u{a}b\\u{9}c\\u{d}");
        assert_eq!(neutralise("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(neutralise("abc\u{202e}fdp.exe"), "abc\\u{202e}fdp.exe");
        assert_eq!(neutralise("St Mary’s – ICU ü"), "St Mary’s – ICU ü");
        assert!(!neutralise("\x1b[2J").chars().any(char::is_control));
    }
}
