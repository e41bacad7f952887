//! CoRE Link Format (RFC 6690): `</1/0>,</3/0>;ver=1.1,</5/0>`.
//!
//! Used in Register/Update payloads and Discover responses. Parsing is bounded by
//! [`MAX_INPUT`], [`MAX_LINKS`] and [`MAX_ATTRIBUTES`]; errors carry the byte position.
//! Optional whitespace around `,` `;` and `=` is tolerated (some clients emit it).

use std::fmt;

use thiserror::Error;

use crate::content::Path;

/// Longest link-format document accepted, in bytes.
pub const MAX_INPUT: usize = 16 * 1024;
/// Most links in one document.
pub const MAX_LINKS: usize = 256;
/// Most attributes on one link.
pub const MAX_ATTRIBUTES: usize = 16;

/// One link: a target URI and its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The URI reference between `<` and `>`.
    pub target: String,
    /// Attributes in document order.
    pub attributes: Vec<Attribute>,
}

/// A link attribute: `name` or `name=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Parameter name.
    pub name: String,
    /// Value (quotes removed), if any.
    pub value: Option<String>,
}

impl Link {
    /// A link without attributes.
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            attributes: Vec::new(),
        }
    }

    /// A link to an LwM2M path.
    pub fn to_path(path: &Path) -> Self {
        Self::new(path.to_string())
    }

    /// Adds an attribute (builder style).
    pub fn with(mut self, name: impl Into<String>, value: Option<String>) -> Self {
        self.attributes.push(Attribute {
            name: name.into(),
            value,
        });
        self
    }

    /// The value of the first attribute called `name` (`None` if absent or valueless).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.value.as_deref())
    }

    /// True if an attribute called `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.attributes.iter().any(|a| a.name == name)
    }

    /// The target as an LwM2M path, if it is one.
    pub fn path(&self) -> Option<Path> {
        self.target.parse().ok()
    }
}

/// A link-format parse error and where it happened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("link format, byte {position}: {kind}")]
pub struct LinkError {
    /// Byte offset in the input.
    pub position: usize,
    /// What went wrong.
    pub kind: LinkErrorKind,
}

/// What went wrong while parsing link format.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinkErrorKind {
    /// The input is longer than [`MAX_INPUT`].
    #[error("input longer than {MAX_INPUT} bytes")]
    TooLong,
    /// More than [`MAX_LINKS`] links.
    #[error("more than {MAX_LINKS} links")]
    TooManyLinks,
    /// More than [`MAX_ATTRIBUTES`] attributes on one link.
    #[error("more than {MAX_ATTRIBUTES} attributes on a link")]
    TooManyAttributes,
    /// The input is empty.
    #[error("no links")]
    Empty,
    /// A specific character was expected.
    #[error("expected {0:?}")]
    Expected(char),
    /// `<>` with nothing inside.
    #[error("empty link target")]
    EmptyTarget,
    /// A character not allowed in a target (whitespace, control, `<`).
    #[error("invalid character in link target")]
    BadTarget,
    /// A missing or invalid parameter name.
    #[error("invalid attribute name")]
    BadName,
    /// A missing or invalid attribute value.
    #[error("invalid attribute value")]
    BadValue,
    /// A quoted string without its closing quote.
    #[error("unterminated quoted string")]
    Unterminated,
    /// The input is not UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
}

/// Parses link-format bytes (e.g. a CoAP payload).
pub fn parse_bytes(input: &[u8]) -> Result<Vec<Link>, LinkError> {
    if input.len() > MAX_INPUT {
        return Err(LinkError {
            position: MAX_INPUT,
            kind: LinkErrorKind::TooLong,
        });
    }
    let text = std::str::from_utf8(input).map_err(|e| LinkError {
        position: e.valid_up_to(),
        kind: LinkErrorKind::NotUtf8,
    })?;
    parse(text)
}

/// Parses a link-format document.
pub fn parse(input: &str) -> Result<Vec<Link>, LinkError> {
    if input.len() > MAX_INPUT {
        return Err(LinkError {
            position: MAX_INPUT,
            kind: LinkErrorKind::TooLong,
        });
    }
    let mut p = Parser {
        input: input.as_bytes(),
        pos: 0,
    };
    p.skip_ws();
    if p.at_end() {
        return Err(p.error(LinkErrorKind::Empty));
    }
    let mut links = Vec::new();
    loop {
        if links.len() >= MAX_LINKS {
            return Err(p.error(LinkErrorKind::TooManyLinks));
        }
        links.push(p.link()?);
        p.skip_ws();
        if p.at_end() {
            return Ok(links);
        }
        p.expect(b',')?;
        p.skip_ws();
    }
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, kind: LinkErrorKind) -> LinkError {
        LinkError {
            position: self.pos,
            kind,
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), LinkError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(LinkErrorKind::Expected(char::from(c))))
        }
    }

    fn text(&self, start: usize) -> String {
        String::from_utf8_lossy(&self.input[start..self.pos]).into_owned()
    }

    fn link(&mut self) -> Result<Link, LinkError> {
        self.expect(b'<')?;
        let start = self.pos;
        while let Some(c) = self.peek() {
            match c {
                b'>' => break,
                b'<' | 0..=b' ' | 0x7F => return Err(self.error(LinkErrorKind::BadTarget)),
                _ => self.pos += 1,
            }
        }
        if self.at_end() {
            return Err(self.error(LinkErrorKind::Expected('>')));
        }
        if self.pos == start {
            return Err(self.error(LinkErrorKind::EmptyTarget));
        }
        let target = self.text(start);
        self.pos += 1;
        let mut attributes = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() != Some(b';') {
                return Ok(Link { target, attributes });
            }
            self.pos += 1;
            self.skip_ws();
            if attributes.len() >= MAX_ATTRIBUTES {
                return Err(self.error(LinkErrorKind::TooManyAttributes));
            }
            attributes.push(self.attribute()?);
        }
    }

    fn attribute(&mut self) -> Result<Attribute, LinkError> {
        let start = self.pos;
        while self.peek().is_some_and(is_name_char) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error(LinkErrorKind::BadName));
        }
        let name = self.text(start);
        self.skip_ws();
        if self.peek() != Some(b'=') {
            return Ok(Attribute { name, value: None });
        }
        self.pos += 1;
        self.skip_ws();
        let value = if self.peek() == Some(b'"') {
            self.quoted()?
        } else {
            self.ptoken()?
        };
        Ok(Attribute {
            name,
            value: Some(value),
        })
    }

    fn ptoken(&mut self) -> Result<String, LinkError> {
        let start = self.pos;
        while self.peek().is_some_and(is_ptoken_char) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error(LinkErrorKind::BadValue));
        }
        Ok(self.text(start))
    }

    fn quoted(&mut self) -> Result<String, LinkError> {
        let open = self.pos;
        self.pos += 1;
        let mut bytes = Vec::new();
        loop {
            match self.peek() {
                None => {
                    return Err(LinkError {
                        position: open,
                        kind: LinkErrorKind::Unterminated,
                    });
                }
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escaped = self.peek().ok_or(LinkError {
                        position: open,
                        kind: LinkErrorKind::Unterminated,
                    })?;
                    bytes.push(escaped);
                    self.pos += 1;
                }
                Some(c) if c < b' ' || c == 0x7F => return Err(self.error(LinkErrorKind::BadValue)),
                Some(c) => {
                    bytes.push(c);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(bytes).map_err(|_| LinkError {
            position: open,
            kind: LinkErrorKind::NotUtf8,
        })
    }
}

/// RFC 5987 `parmname` characters.
fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&c)
}

/// RFC 6690 `ptoken` characters.
fn is_ptoken_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'()*+-./:<=>?@[]^_`{|}~".contains(&c)
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        match &self.value {
            None => Ok(()),
            Some(v) if !v.is_empty() && v.bytes().all(is_ptoken_char) => write!(f, "={v}"),
            Some(v) => {
                f.write_str("=\"")?;
                for c in v.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"")
            }
        }
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.target)?;
        for a in &self.attributes {
            write!(f, ";{a}")?;
        }
        Ok(())
    }
}

/// Writes links as a link-format document.
pub fn format(links: &[Link]) -> String {
    links.iter().map(Link::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registration_payload() -> Result<(), LinkError> {
        let links = parse(r#"</>;rt="oma.lwm2m";ct=11542,</1/0>,</3/0>;ver=1.1, </5/0>;obs"#)?;
        assert_eq!(links.len(), 4);
        assert_eq!(links[0].value("rt"), Some("oma.lwm2m"));
        assert_eq!(links[0].value("ct"), Some("11542"));
        assert_eq!(links[2].path(), Some(Path::instance(3, 0)));
        assert_eq!(links[2].value("ver"), Some("1.1"));
        assert!(links[3].has("obs") && links[3].value("obs").is_none());
        Ok(())
    }

    #[test]
    fn round_trips() -> Result<(), LinkError> {
        let links = vec![
            Link::new("/1/0"),
            Link::new("/3/0").with("ver", Some("1.1".into())),
            Link::new("/8")
                .with("title", Some("a \"b\" c".into()))
                .with("obs", None),
        ];
        let text = format(&links);
        assert_eq!(text, r#"</1/0>,</3/0>;ver=1.1,</8>;title="a \"b\" c";obs"#);
        assert_eq!(parse(&text)?, links);
        Ok(())
    }

    fn kind_at(input: &str) -> Option<(usize, LinkErrorKind)> {
        parse(input).err().map(|e| (e.position, e.kind))
    }

    #[test]
    fn errors_have_positions() {
        assert_eq!(kind_at(""), Some((0, LinkErrorKind::Empty)));
        assert_eq!(kind_at("/1/0"), Some((0, LinkErrorKind::Expected('<'))));
        assert_eq!(kind_at("</1/0"), Some((5, LinkErrorKind::Expected('>'))));
        assert_eq!(kind_at("<>"), Some((1, LinkErrorKind::EmptyTarget)));
        assert_eq!(kind_at("</1 0>"), Some((3, LinkErrorKind::BadTarget)));
        assert_eq!(kind_at("</1/0>;"), Some((7, LinkErrorKind::BadName)));
        assert_eq!(kind_at("</1/0>;a="), Some((9, LinkErrorKind::BadValue)));
        assert_eq!(kind_at("</1/0>;a=\"xy"), Some((9, LinkErrorKind::Unterminated)));
        assert_eq!(kind_at("</1/0>,"), Some((7, LinkErrorKind::Expected('<'))));
        assert_eq!(kind_at("</1/0></2/0>"), Some((6, LinkErrorKind::Expected(','))));
        assert_eq!(
            parse_bytes(b"</1/\xff>").err().map(|e| e.kind),
            Some(LinkErrorKind::NotUtf8)
        );
    }

    #[test]
    fn bounded() {
        let many = vec!["</1/0>"; MAX_LINKS + 1].join(",");
        assert_eq!(
            parse(&many).err().map(|e| e.kind),
            Some(LinkErrorKind::TooManyLinks)
        );
        let attrs = format!("</1/0>{}", ";a".repeat(MAX_ATTRIBUTES + 1));
        assert_eq!(
            parse(&attrs).err().map(|e| e.kind),
            Some(LinkErrorKind::TooManyAttributes)
        );
        let long = "x".repeat(MAX_INPUT + 1);
        assert_eq!(parse(&long).err().map(|e| e.kind), Some(LinkErrorKind::TooLong));
    }
}
