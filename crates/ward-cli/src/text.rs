//! Text helpers for whatever is printed: neutralising hostile text, dashes and yes/no for cells.

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
