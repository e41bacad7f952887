//! Bounded, hostile-input-safe reading of files under the collection root, and string cleaning.
//!
//! Everything a device reports is untrusted: it ends up in a console, in the database and in
//! queries. So every read is capped in bytes, every directory listing in entries, and every string
//! is stripped of control and bidirectional-override characters and cut to a byte limit.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::CollectError;

/// Most bytes read from one ordinary file (proc tables, os-release, keyfiles, ...).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Most bytes read from a file that holds one value (hostname, sysfs attributes).
/// A 1 MB "hostname" is read only this far, then cut to [`MAX_NAME_BYTES`].
pub const MAX_VALUE_BYTES: u64 = 64 * 1024;
/// Longest name, version, identifier or address kept, in bytes (cut at a char boundary).
pub const MAX_NAME_BYTES: usize = 256;
/// Longest free-text value kept (e.g. /proc/version), in bytes.
pub const MAX_TEXT_BYTES: usize = 512;
/// Most entries looked at in one directory listing (sys/block, sys/class/net, ...).
pub const MAX_DIR_ENTRIES: usize = 4096;

/// The text of a file read up to a cap; `truncated` says the file was longer.
pub struct Capped {
    pub text: String,
    pub truncated: bool,
}

/// Files are named relative to the collection root, so errors read the same for a fixture
/// tree and a live machine ("etc/os-release: No such file or directory").
pub fn path(root: &Path, rel: &str) -> PathBuf {
    root.join(rel)
}

/// Reads at most `cap` bytes of `root/rel` as (lossy) UTF-8.
///
/// Only regular files are opened (after following symlinks, as sysfs is made of them): a FIFO or a
/// device planted where a config file should be would otherwise block the agent or read forever.
/// proc and sysfs files report as regular files, so they pass.
pub fn read_capped(root: &Path, rel: &str, cap: u64) -> Result<Capped, CollectError> {
    let full = path(root, rel);
    let io = |source| CollectError::Io {
        path: rel.to_owned(),
        source,
    };
    let metadata = std::fs::metadata(&full).map_err(io)?;
    if !metadata.is_file() {
        return Err(CollectError::NotRegular { path: rel.to_owned() });
    }
    let file = File::open(&full).map_err(io)?;
    let mut bytes = Vec::new();
    // One byte past the cap tells "exactly cap bytes" from "longer than cap".
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let truncated = bytes.len() as u64 > cap;
    if truncated {
        bytes.truncate(usize::try_from(cap).unwrap_or(usize::MAX));
    }
    Ok(Capped {
        text: String::from_utf8_lossy(&bytes).into_owned(),
        truncated,
    })
}

/// Reads an ordinary file up to [`MAX_FILE_BYTES`].
pub fn read_file(root: &Path, rel: &str) -> Result<String, CollectError> {
    read_capped(root, rel, MAX_FILE_BYTES).map(|capped| capped.text)
}

/// Reads a one-value file: its first line, cleaned and cut to [`MAX_NAME_BYTES`].
pub fn read_value(root: &Path, rel: &str) -> Result<String, CollectError> {
    let capped = read_capped(root, rel, MAX_VALUE_BYTES)?;
    let first_line = capped.text.lines().next().unwrap_or("");
    Ok(clean(first_line, MAX_NAME_BYTES))
}

/// Like [`read_value`], but a missing, unreadable or empty file is simply `None`: used for
/// optional sysfs attributes, whose absence is normal (no serial number, no model).
pub fn read_optional(root: &Path, rel: &str) -> Option<String> {
    read_value(root, rel).ok().filter(|value| !value.is_empty())
}

/// Whether `root/rel` exists (following symlinks).
pub fn exists(root: &Path, rel: &str) -> bool {
    path(root, rel).exists()
}

/// The names in directory `root/rel`, sorted, at most [`MAX_DIR_ENTRIES`] of them.
/// Names that are not UTF-8 are skipped: sysfs and proc names always are.
pub fn list_dir(root: &Path, rel: &str) -> Result<Vec<String>, CollectError> {
    let entries = std::fs::read_dir(path(root, rel)).map_err(|source| CollectError::Io {
        path: rel.to_owned(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .take(MAX_DIR_ENTRIES)
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Removes control characters (C0, DEL, C1: terminal escapes, newlines that would forge log
/// lines) and Unicode bidirectional overrides (which make a console show text in a different
/// order than stored), trims whitespace, and cuts the result to `max_bytes` at a char boundary.
///
/// HTML is deliberately left as is: escaping is the console's job at output time, and the stored
/// value should be what the device said.
pub fn clean(raw: &str, max_bytes: usize) -> String {
    let kept: String = raw
        .chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .collect();
    truncate_at_char_boundary(kept.trim(), max_bytes)
        .trim_end()
        .to_owned()
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a char boundary.
pub fn truncate_at_char_boundary(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_strips_controls_and_bidi_and_bounds_length() {
        assert_eq!(clean(" a\u{1b}[31mb\r\n\u{202E}c\u{7f}\u{85} ", 256), "a[31mbc");
        assert_eq!(clean("<b>x</b>", 256), "<b>x</b>");
        // "é" is two bytes: a cut in its middle falls back to the boundary before it.
        assert_eq!(clean("aé", 2), "a");
        assert_eq!(clean(&"x".repeat(1000), 256).len(), 256);
    }
}
