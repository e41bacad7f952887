//! The device selector language, e.g. `site within "st-marys" and facts.os.version < "22.04"`.
//!
//! One small language chooses devices everywhere: `GET /api/v1/devices?filter=…`,
//! `ward devices list --filter …`, incident scope, policies and dynamic groups.
//!
//! # Syntax
//!
//! - `or` binds loosest, then `and`, then prefix `not`; parentheses group. Keywords (`and`, `or`,
//!   `not`, `in`, `exists`, `within`, `true`, `false`, `null`) are case-insensitive.
//! - A comparison is `FIELD OP VALUE` with `=`, `!=`, `<`, `<=`, `>`, `>=`; or `FIELD in [V, …]`,
//!   `FIELD not in [V, …]`, `FIELD exists`, `FIELD within "st-marys"`, `FIELD ~ "icu-*"`.
//! - A field is a dotted path of 1 to 8 names `[a-zA-Z_][a-zA-Z0-9_-]*`, case-sensitive
//!   (`facts.os.version`). A bare keyword is not a field name, but later segments may be one.
//! - Values: strings in `"…"` or `'…'` with escapes `\"` `\'` `\\` `\n` `\t` `\u{1F600}` (raw
//!   control characters and NUL are refused); integers and decimals, optionally negative
//!   (`-3`, `0.5`; no exponents); `true`, `false`, `null`. `<`…`>=` take a string or number;
//!   `within` and `~` take a string; `within` refuses `""` and a trailing `/`.
//!
//! # Meaning
//!
//! - **Missing fields.** A field is missing when the device does not report it or reports
//!   `null`. Every comparison on a missing field is *unknown*, and unknown never selects a device,
//!   not even under `not`: `not class = "x"`, `class != "x"` and `class not in ["x"]` all skip
//!   devices without a class. Why: when scoping an incident or a policy, a negation must not
//!   sweep in devices about which nothing is known (a silent infusion pump is not "not
//!   life-support"). Ask for them explicitly: `not class exists`, or equivalently
//!   `class = null`; `class in ["x", null]` means `class = "x" or class = null`.
//! - **Lists.** If a path meets an array (at the end, like `tags`, or on the way, like
//!   `facts.packages.name` over an array of objects), the comparison looks at every element:
//!   `=`, `<`…, `in`, `within` and `~` hold if *any* element does; `!=` and `not in` are their
//!   negations, so `tags != "icu"` means "not tagged icu". An empty array is reported and empty:
//!   `exists` holds, `=` does not, `!=` does.
//! - **Strings.** `=` is exact and case-sensitive. `<`…`>=` between two strings use
//!   [`version_cmp`] (`"9.10" > "9.9"`). `within` is equality or a prefix followed by `/`.
//!   `~` is a case-insensitive glob, `*` any run of characters, `?` one character.
//! - **Numbers** compare numerically. A string that is written like a number (`"16"`, `"-2.5"`)
//!   counts as that number when the other side is a number, in either direction; other mixes
//!   (a boolean with a string, a number with `"22.04.1"`, an object with anything) are simply
//!   unequal and unordered, so such comparisons are false (not unknown).
//! - **Booleans** only with `=` and `!=`, and only with `true`/`false` (no `"true"` coercion).
//!
//! # Limits
//!
//! Input of at most [`MAX_INPUT_BYTES`] bytes, [`MAX_DEPTH`] levels of nesting (each `(` and
//! `not`), [`MAX_LIST_VALUES`] values per list, [`MAX_COMPARISONS`] comparisons,
//! [`MAX_PATH_SEGMENTS`] segments per field. They bound the parser's stack and the cost of
//! evaluating one selector against many devices.
//!
//! # Canonical form
//!
//! `Display` writes the canonical form: lowercase keywords, single spaces, double-quoted strings,
//! parentheses only where needed. `Selector::parse(&s.to_string()) == Ok(s)` for every selector,
//! so selectors can be stored as text; to keep that true, a selector whose canonical form would
//! exceed [`MAX_INPUT_BYTES`] is refused too (only possible for input packed near the limit).

mod error;
mod eval;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;
mod version;

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use error::{SelectorError, caret_line};
pub use eval::Truth;
pub use version::version_cmp;

use error::{Failure, push_escaped};

/// Longest accepted selector text, in bytes.
pub const MAX_INPUT_BYTES: usize = 4096;
/// Deepest nesting of `(` and `not`.
pub const MAX_DEPTH: usize = 32;
/// Most values in one `in` / `not in` list.
pub const MAX_LIST_VALUES: usize = 1000;
/// Most comparisons in one selector.
pub const MAX_COMPARISONS: usize = 256;
/// Most segments in one field path.
pub const MAX_PATH_SEGMENTS: usize = 8;

/// A parsed, validated selector. Built only by [`Selector::parse`] (or `FromStr`/serde, which
/// call it), so every `Selector` respects the limits and round-trips through its `Display`.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    expr: Expr,
}

/// The selector's syntax tree, for code that translates or inspects selectors.
///
/// As produced by the parser, `Or` and `And` have at least two items and an `Or` never directly
/// contains an `Or` (nor an `And` an `And`): parenthesised chains of the same operator are
/// spliced in, which is what makes the canonical form unique.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Compare(Comparison),
}

impl Expr {
    fn is_or(&self) -> bool {
        matches!(self, Expr::Or(_))
    }

    fn is_and(&self) -> bool {
        matches!(self, Expr::And(_))
    }
}

/// One test of one field.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub field: FieldPath,
    pub predicate: Predicate,
}

/// A dotted field path such as `facts.os.version`; 1 to [`MAX_PATH_SEGMENTS`] segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// What a comparison asks of its field.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// `=`, `!=`, `<`, `<=`, `>`, `>=` a value (ordering operators never take a boolean or null).
    Compare(CmpOp, Literal),
    In(Vec<Literal>),
    NotIn(Vec<Literal>),
    Exists,
    /// Hierarchical path match; never empty, never ending in `/`.
    Within(String),
    /// Case-insensitive glob with `*` and `?`.
    Glob(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    /// `<`, `<=`, `>`, `>=`.
    pub fn is_ordering(self) -> bool {
        !matches!(self, CmpOp::Eq | CmpOp::Ne)
    }

    /// Whether `field OP value` holds when `field` compares to `value` as `order`.
    pub fn accepts(self, order: Ordering) -> bool {
        match self {
            CmpOp::Eq => order.is_eq(),
            CmpOp::Ne => order.is_ne(),
            CmpOp::Lt => order.is_lt(),
            CmpOp::Le => order.is_le(),
            CmpOp::Gt => order.is_gt(),
            CmpOp::Ge => order.is_ge(),
        }
    }
}

/// A value written in a selector. `1` is an `Int`, `1.0` a `Float`; they compare equal against
/// a device but are kept apart so the canonical form writes back what was meant.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Int(i64),
    /// Always finite.
    Float(f64),
    Bool(bool),
    Null,
}

impl Selector {
    /// Parses selector text, enforcing the language's limits.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let expr = parser::parse(text).map_err(|failure| failure.into_error(text))?;
        let selector = Selector { expr };
        let canonical_len = selector.to_string().len();
        if canonical_len > MAX_INPUT_BYTES {
            return Err(Failure::new(
                0,
                format!("a selector of at most {MAX_INPUT_BYTES} bytes in canonical form"),
                format!("{canonical_len} bytes"),
            )
            .into_error(text));
        }
        Ok(selector)
    }

    /// Whether the device whose attributes are `subject` (a JSON object) is selected. Unknown
    /// (a comparison on a missing field that the rest does not decide) is not selected.
    pub fn matches(&self, subject: &serde_json::Value) -> bool {
        eval::evaluate(&self.expr, subject) == eval::Truth::True
    }

    /// The three-valued truth of the selector for `subject`: `Unknown` when the fields it needs
    /// are missing and the rest does not decide (a policy check reports that as "unknown", not as
    /// a pass or a failure).
    pub fn evaluate(&self, subject: &serde_json::Value) -> Truth {
        eval::evaluate(&self.expr, subject)
    }

    /// The dotted field paths the selector reads, each once, in order of first use; for
    /// checking them against the known fields.
    pub fn fields(&self) -> Vec<String> {
        let mut fields: Vec<String> = Vec::new();
        let mut pending = vec![&self.expr];
        while let Some(expr) = pending.pop() {
            match expr {
                Expr::Or(items) | Expr::And(items) => pending.extend(items.iter().rev()),
                Expr::Not(inner) => pending.push(inner),
                Expr::Compare(comparison) => {
                    let field = comparison.field.to_string();
                    if !fields.contains(&field) {
                        fields.push(field);
                    }
                }
            }
        }
        fields
    }

    /// The syntax tree.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }
}

impl FromStr for Selector {
    type Err = SelectorError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// Selectors travel and are stored as their canonical text.
impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Selector::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr)
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Or(items) => write_chain(f, items, " or ", Expr::is_or),
            // An `or` inside an `and` needs parentheses to keep its grouping.
            Expr::And(items) => write_chain(f, items, " and ", |item| item.is_and() || item.is_or()),
            Expr::Not(inner) => {
                f.write_str("not ")?;
                write_item(f, inner, inner.is_and() || inner.is_or())
            }
            Expr::Compare(comparison) => write!(f, "{comparison}"),
        }
    }
}

fn write_chain(
    f: &mut fmt::Formatter<'_>,
    items: &[Expr],
    separator: &str,
    needs_parens: fn(&Expr) -> bool,
) -> fmt::Result {
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            f.write_str(separator)?;
        }
        write_item(f, item, needs_parens(item))?;
    }
    Ok(())
}

fn write_item(f: &mut fmt::Formatter<'_>, item: &Expr, parens: bool) -> fmt::Result {
    if parens {
        write!(f, "({item})")
    } else {
        write!(f, "{item}")
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = &self.field;
        match &self.predicate {
            Predicate::Compare(op, value) => write!(f, "{field} {} {value}", op.as_str()),
            Predicate::In(values) => write!(f, "{field} in {}", ListDisplay(values)),
            Predicate::NotIn(values) => write!(f, "{field} not in {}", ListDisplay(values)),
            Predicate::Exists => write!(f, "{field} exists"),
            Predicate::Within(path) => write!(f, "{field} within {}", Literal::Str(path.clone())),
            Predicate::Glob(pattern) => write!(f, "{field} ~ {}", Literal::Str(pattern.clone())),
        }
    }
}

struct ListDisplay<'a>(&'a [Literal]);

impl fmt::Display for ListDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (index, value) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{value}")?;
        }
        f.write_str("]")
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Str(text) => {
                // Escaped so the canonical form is safe to print and re-parses to the same string.
                let mut out = String::with_capacity(text.len() + 2);
                out.push('"');
                for c in text.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        // The lexer has no `\r`; write it (and any other unsafe char) as `\u{…}`.
                        '\r' => out.push_str("\\u{d}"),
                        c => push_escaped(&mut out, c),
                    }
                }
                out.push('"');
                f.write_str(&out)
            }
            Literal::Int(value) => write!(f, "{value}"),
            Literal::Float(value) => {
                // Rust prints the shortest text that parses back to the same f64, without an
                // exponent; keep a `.` so it re-parses as a decimal, not an integer.
                let text = value.to_string();
                if text.contains('.') {
                    f.write_str(&text)
                } else {
                    write!(f, "{text}.0")
                }
            }
            Literal::Bool(value) => write!(f, "{value}"),
            Literal::Null => f.write_str("null"),
        }
    }
}
