//! Selector parse errors: where, what was expected and what was found, always safe to print.
//!
//! Selectors are typed by admins in a shell and arrive in URLs from scripts, so an error must point
//! at the exact column and must never echo raw control characters (a crafted selector could
//! otherwise rewrite the admin's terminal or forge log lines).

/// Why a selector was refused.
///
/// `Display` reads `at column 7: expected a value, found end of input`; [`caret_line`] renders
/// the input with a `^` under the column for CLI output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: expected {expected}, found {found}", column = .position + 1)]
pub struct SelectorError {
    /// 0-based column in characters (not bytes) of the input where the problem starts.
    pub position: usize,
    /// What would have been accepted there, e.g. `` a value (a quoted string, a number, ...) ``.
    pub expected: String,
    /// A short, escaped and truncated description of what was there, e.g. `` `==` `` or
    /// `end of input`.
    pub found: String,
}

/// A failure found while lexing or parsing, positioned in bytes; converted to a character
/// column only once, at the boundary, so the hot path never counts characters.
#[derive(Debug)]
pub(super) struct Failure {
    pub byte: usize,
    pub expected: String,
    pub found: String,
}

impl Failure {
    pub fn new(byte: usize, expected: impl Into<String>, found: impl Into<String>) -> Self {
        Self {
            byte,
            expected: expected.into(),
            found: found.into(),
        }
    }

    pub fn into_error(self, text: &str) -> SelectorError {
        SelectorError {
            position: column(text, self.byte),
            expected: self.expected,
            found: self.found,
        }
    }
}

/// How many characters of offending input an error quotes; enough to recognise a token,
/// short enough that a 1 MB string cannot flood a log line.
const MAX_QUOTED_CHARS: usize = 32;

/// How many characters either side of the error [`caret_line`] shows.
const CARET_CONTEXT_CHARS: usize = 40;

/// The 0-based character column of a byte offset (clamped into the text).
pub(super) fn column(text: &str, byte: usize) -> usize {
    let mut boundary = byte.min(text.len());
    while !text.is_char_boundary(boundary) {
        boundary -= 1;
    }
    text[..boundary].chars().count()
}

/// Characters that must not reach a terminal or log raw: control characters, and the invisible
/// and bidirectional formatting characters used to make text display differently from what it
/// is ("trojan source").
pub(super) fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// Pushes `c` onto `out`, escaped the way selector strings write it if it is unsafe to print.
pub(super) fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        c => out.push(c),
    }
}

/// `text` with unsafe characters escaped, cut after `max_chars` characters with a `…`.
pub(super) fn printable(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (index, c) in text.chars().enumerate() {
        if index == max_chars {
            out.push('…');
            break;
        }
        push_escaped(&mut out, c);
    }
    out
}

/// Offending source text as an error's `found`: escaped, truncated, in backticks.
pub(super) fn quote_source(text: &str) -> String {
    format!("`{}`", printable(text, MAX_QUOTED_CHARS))
}

/// The next character as an error's `found` (`end of input` when there is none).
pub(super) fn describe_next(next: Option<char>) -> String {
    match next {
        Some(c) => quote_source(c.encode_utf8(&mut [0; 4])),
        None => "end of input".to_owned(),
    }
}

/// The input with a `^` under the error's column, for CLI output, e.g.
///
/// ```text
/// site == "x"
///      ^
/// ```
///
/// Long input is cut to a window around the column (marked with `…`); whitespace control
/// characters show as a space and other unsafe characters as their escape, with the caret moved
/// accordingly. Characters that a terminal draws double-width (CJK, emoji) are counted as one
/// column, so the caret may sit left of them; telling them apart needs Unicode width tables,
/// which this dependency-free crate does not carry.
pub fn caret_line(text: &str, err: &SelectorError) -> String {
    let first = err.position.saturating_sub(CARET_CONTEXT_CHARS);
    let mut line = String::new();
    let mut width = 0;
    let mut caret = None;
    if first > 0 {
        line.push('…');
        width += 1;
    }
    for (index, c) in text.chars().enumerate().skip(first) {
        if index == err.position {
            caret = Some(width);
        }
        if index >= err.position + CARET_CONTEXT_CHARS {
            line.push('…');
            break;
        }
        let before = line.len();
        if c.is_whitespace() && c.is_control() {
            // A tab or newline would move everything after it; one space keeps columns aligned.
            line.push(' ');
        } else {
            push_escaped(&mut line, c);
        }
        width += line[before..].chars().count();
    }
    let caret = caret.unwrap_or(width);
    format!("{line}\n{}^", " ".repeat(caret))
}
