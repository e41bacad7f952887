//! Splits selector text into tokens, reporting malformed literals and field paths at their exact
//! byte position. Tokens are produced on demand so errors are reported in reading order.

use super::error::{Failure, column, describe_next, printable, quote_source};
use super::{Literal, MAX_PATH_SEGMENTS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keyword {
    And,
    Or,
    Not,
    In,
    Exists,
    Within,
    True,
    False,
    Null,
}

impl Keyword {
    /// Keywords are case-insensitive so `AND` and `Not` work as admins type them.
    fn from_word(word: &str) -> Option<Self> {
        const ALL: [(&str, Keyword); 9] = [
            ("and", Keyword::And),
            ("or", Keyword::Or),
            ("not", Keyword::Not),
            ("in", Keyword::In),
            ("exists", Keyword::Exists),
            ("within", Keyword::Within),
            ("true", Keyword::True),
            ("false", Keyword::False),
            ("null", Keyword::Null),
        ];
        ALL.iter()
            .find(|(text, _)| text.eq_ignore_ascii_case(word))
            .map(|(_, keyword)| *keyword)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Symbol {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Tilde,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum TokenKind {
    /// A dotted field path; a single segment that spells a keyword is a `Keyword` instead.
    Field(Vec<String>),
    Keyword(Keyword),
    /// A quoted string or a number.
    Literal(Literal),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Symbol(Symbol),
    /// Something no rule accepts (`==`, `&&`, a stray character); the parser reports it with
    /// what it expected at that point, which is more useful than a lexer-level message.
    Unknown,
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub kind: TokenKind,
    /// Byte offsets of the token's source text.
    pub start: usize,
    pub end: usize,
}

pub(super) struct Lexer<'t> {
    text: &'t str,
    pos: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_continue(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn is_operator_char(c: char) -> bool {
    matches!(c, '=' | '!' | '<' | '>' | '~')
}

impl<'t> Lexer<'t> {
    pub fn new(text: &'t str) -> Self {
        Self { text, pos: 0 }
    }

    fn peek_char(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.text[self.pos..].chars().nth(1)
    }

    /// Consumes characters while `keep` holds.
    fn eat_while(&mut self, keep: impl Fn(char) -> bool) {
        while let Some(c) = self.peek_char()
            && keep(c)
        {
            self.pos += c.len_utf8();
        }
    }

    pub fn next_token(&mut self) -> Result<Token, Failure> {
        self.eat_while(char::is_whitespace);
        let start = self.pos;
        let Some(c) = self.peek_char() else {
            return Ok(Token {
                kind: TokenKind::End,
                start,
                end: start,
            });
        };
        let kind = match c {
            '"' | '\'' => return self.string(c),
            '0'..='9' => return self.number(),
            '-' if self.peek_second().is_some_and(|c| c.is_ascii_digit()) => return self.number(),
            c if is_ident_start(c) => return self.field_or_keyword(),
            '(' | ')' | '[' | ']' | ',' => {
                self.pos += 1;
                match c {
                    '(' => TokenKind::LParen,
                    ')' => TokenKind::RParen,
                    '[' => TokenKind::LBracket,
                    ']' => TokenKind::RBracket,
                    _ => TokenKind::Comma,
                }
            }
            c if is_operator_char(c) => {
                // Operators are read as a whole run so `==` or `=>` is reported as one unknown
                // operator rather than as `=` followed by a puzzling second error.
                self.eat_while(is_operator_char);
                match &self.text[start..self.pos] {
                    "=" => TokenKind::Symbol(Symbol::Eq),
                    "!=" => TokenKind::Symbol(Symbol::Ne),
                    "<" => TokenKind::Symbol(Symbol::Lt),
                    "<=" => TokenKind::Symbol(Symbol::Le),
                    ">" => TokenKind::Symbol(Symbol::Gt),
                    ">=" => TokenKind::Symbol(Symbol::Ge),
                    "~" => TokenKind::Symbol(Symbol::Tilde),
                    _ => TokenKind::Unknown,
                }
            }
            c => {
                self.pos += c.len_utf8();
                TokenKind::Unknown
            }
        };
        Ok(Token {
            kind,
            start,
            end: self.pos,
        })
    }

    fn identifier(&mut self) -> String {
        let start = self.pos;
        self.eat_while(is_ident_continue);
        self.text[start..self.pos].to_owned()
    }

    fn field_or_keyword(&mut self) -> Result<Token, Failure> {
        let start = self.pos;
        let mut segments = vec![self.identifier()];
        while self.peek_char() == Some('.') {
            self.pos += 1;
            let segment_start = self.pos;
            if !self.peek_char().is_some_and(is_ident_start) {
                return Err(Failure::new(
                    segment_start,
                    "a field name after `.` (letters, digits, `_` and `-`, not starting with a digit)",
                    describe_next(self.peek_char()),
                ));
            }
            let segment = self.identifier();
            if segments.len() == MAX_PATH_SEGMENTS {
                return Err(Failure::new(
                    segment_start,
                    format!("at most {MAX_PATH_SEGMENTS} segments in a field path"),
                    quote_source(&segment),
                ));
            }
            segments.push(segment);
        }
        // Only a bare word can be a keyword: `not.x` can only be a field, so later segments
        // (and dotted first segments) may reuse keyword names.
        let kind = match segments.as_slice() {
            [word] => match Keyword::from_word(word) {
                Some(keyword) => TokenKind::Keyword(keyword),
                None => TokenKind::Field(segments),
            },
            _ => TokenKind::Field(segments),
        };
        Ok(Token {
            kind,
            start,
            end: self.pos,
        })
    }

    fn number(&mut self) -> Result<Token, Failure> {
        let start = self.pos;
        if self.peek_char() == Some('-') {
            self.pos += 1;
        }
        self.eat_while(|c| c.is_ascii_digit());
        let mut fractional = false;
        if self.peek_char() == Some('.') && self.peek_second().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
            self.eat_while(|c| c.is_ascii_digit());
            fractional = true;
        }
        if self.peek_char().is_some_and(|c| is_ident_continue(c) || c == '.') {
            // `22.04.1`, `1e3`, `10GB`: almost always a version or name missing its quotes, so
            // say so with the whole run rather than complaining about the second dot.
            self.eat_while(|c| is_ident_continue(c) || c == '.');
            let run = &self.text[start..self.pos];
            return Err(Failure::new(
                start,
                format!(
                    "a number (put other values in quotes, e.g. \"{}\")",
                    printable(run, 32)
                ),
                quote_source(run),
            ));
        }
        let digits = &self.text[start..self.pos];
        let literal = if fractional {
            match digits.parse::<f64>() {
                Ok(value) if value.is_finite() => Literal::Float(value),
                _ => return Err(Failure::new(start, "a finite number", quote_source(digits))),
            }
        } else {
            match digits.parse::<i64>() {
                Ok(value) => Literal::Int(value),
                Err(_) => {
                    return Err(Failure::new(
                        start,
                        format!("an integer between {} and {}", i64::MIN, i64::MAX),
                        quote_source(digits),
                    ));
                }
            }
        };
        Ok(Token {
            kind: TokenKind::Literal(literal),
            start,
            end: self.pos,
        })
    }

    fn string(&mut self, quote: char) -> Result<Token, Failure> {
        let start = self.pos;
        self.pos += quote.len_utf8();
        let mut value = String::new();
        loop {
            let here = self.pos;
            let Some(c) = self.peek_char() else {
                return Err(Failure::new(
                    here,
                    format!(
                        "`{quote}` to close the string that starts at column {}",
                        column(self.text, start) + 1
                    ),
                    "end of input",
                ));
            };
            self.pos += c.len_utf8();
            match c {
                c if c == quote => break,
                '\\' => value.push(self.escape(here)?),
                c if c.is_control() => {
                    return Err(Failure::new(
                        here,
                        "a printable character in the string (write a newline as \\n, a tab as \\t)",
                        describe_next(Some(c)),
                    ));
                }
                c => value.push(c),
            }
        }
        Ok(Token {
            kind: TokenKind::Literal(Literal::Str(value)),
            start,
            end: self.pos,
        })
    }

    /// Reads the escape after a backslash at byte `backslash`.
    fn escape(&mut self, backslash: usize) -> Result<char, Failure> {
        const EXPECTED: &str = "an escape: \\\", \\', \\\\, \\n, \\t or \\u{hex}";
        let Some(c) = self.peek_char() else {
            return Err(Failure::new(self.pos, EXPECTED, "end of input"));
        };
        self.pos += c.len_utf8();
        match c {
            '"' | '\'' | '\\' => Ok(c),
            'n' => Ok('\n'),
            't' => Ok('\t'),
            'u' => self.unicode_escape(backslash),
            _ => Err(Failure::new(
                backslash,
                EXPECTED,
                quote_source(&self.text[backslash..self.pos]),
            )),
        }
    }

    fn unicode_escape(&mut self, backslash: usize) -> Result<char, Failure> {
        let fail = |lexer: &Self| {
            Failure::new(
                backslash,
                "\\u{…} with 1 to 6 hex digits naming a Unicode character other than NUL",
                quote_source(&lexer.text[backslash..lexer.pos]),
            )
        };
        if self.peek_char() != Some('{') {
            return Err(fail(self));
        }
        self.pos += 1;
        let digits_start = self.pos;
        self.eat_while(|c| c.is_ascii_hexdigit());
        let digits = &self.text[digits_start..self.pos];
        let closed = self.peek_char() == Some('}');
        if closed {
            self.pos += 1;
        }
        if !closed || digits.is_empty() || digits.len() > 6 {
            return Err(fail(self));
        }
        // NUL is refused: it never occurs in device attributes and truncates C strings and
        // audit details downstream.
        u32::from_str_radix(digits, 16)
            .ok()
            .and_then(char::from_u32)
            .filter(|c| *c != '\0')
            .ok_or_else(|| fail(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        let mut lexer = Lexer::new(text);
        let mut out = Vec::new();
        loop {
            let token = lexer.next_token().unwrap();
            if token.kind == TokenKind::End {
                return out;
            }
            out.push(token.kind);
        }
    }

    #[test]
    fn operators_are_read_as_whole_runs() {
        assert_eq!(
            kinds("a==b"),
            vec![
                TokenKind::Field(vec!["a".into()]),
                TokenKind::Unknown,
                TokenKind::Field(vec!["b".into()]),
            ]
        );
        assert_eq!(
            kinds("<= >= != ~"),
            vec![
                TokenKind::Symbol(Symbol::Le),
                TokenKind::Symbol(Symbol::Ge),
                TokenKind::Symbol(Symbol::Ne),
                TokenKind::Symbol(Symbol::Tilde),
            ]
        );
    }

    #[test]
    fn keywords_only_as_bare_words() {
        assert_eq!(kinds("AnD"), vec![TokenKind::Keyword(Keyword::And)]);
        assert_eq!(
            kinds("not.in"),
            vec![TokenKind::Field(vec!["not".into(), "in".into()])]
        );
    }

    #[test]
    fn negative_numbers_and_hyphenated_names() {
        assert_eq!(
            kinds("x=-1 a-b"),
            vec![
                TokenKind::Field(vec!["x".into()]),
                TokenKind::Symbol(Symbol::Eq),
                TokenKind::Literal(Literal::Int(-1)),
                TokenKind::Field(vec!["a-b".into()]),
            ]
        );
    }
}
