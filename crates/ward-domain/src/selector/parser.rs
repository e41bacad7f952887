//! Recursive-descent parser from tokens to the selector AST, enforcing the size limits.
//!
//! Grammar (lowest precedence first):
//!
//! ```text
//! or         := and ("or" and)*
//! and        := unary ("and" unary)*
//! unary      := "not" unary | "(" or ")" | comparison
//! comparison := FIELD ( OP value | "in" list | "not" "in" list | "exists"
//!                     | "within" STRING | "~" STRING )
//! list       := "[" (value ("," value)*)? "]"
//! ```
//!
//! Recursion only happens through `(` and `not`, both of which count against `MAX_DEPTH`, so a
//! hostile input cannot overflow the stack; `and`/`or` chains are loops.

use super::error::{Failure, column, quote_source};
use super::lexer::{Keyword, Lexer, Symbol, Token, TokenKind};
use super::{
    CmpOp, Comparison, Expr, FieldPath, Literal, MAX_COMPARISONS, MAX_DEPTH, MAX_INPUT_BYTES,
    MAX_LIST_VALUES, Predicate,
};

const EXPECTED_OPERATOR: &str = "an operator: =, !=, <, <=, >, >=, ~, in, not in, exists or within";
const EXPECTED_VALUE: &str = "a value: a quoted string, a number, true, false or null";
const EXPECTED_CONDITION: &str = "a field name, `not` or `(`";

pub(super) fn parse(text: &str) -> Result<Expr, Failure> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(Failure::new(
            MAX_INPUT_BYTES,
            format!("a selector of at most {MAX_INPUT_BYTES} bytes"),
            format!("{} bytes", text.len()),
        ));
    }
    let mut parser = Parser {
        text,
        lexer: Lexer::new(text),
        peeked: None,
        depth: 0,
        comparisons: 0,
    };
    let expr = parser.or()?;
    let token = parser.bump()?;
    if token.kind != TokenKind::End {
        return Err(parser.unexpected(&token, "`and`, `or` or end of input"));
    }
    Ok(expr)
}

struct Parser<'t> {
    text: &'t str,
    lexer: Lexer<'t>,
    peeked: Option<Token>,
    depth: usize,
    comparisons: usize,
}

impl Parser<'_> {
    fn peek(&mut self) -> Result<&Token, Failure> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next_token()?);
        }
        match &self.peeked {
            Some(token) => Ok(token),
            // Filled just above; kept as an error rather than a panic to honour "no unwrap".
            None => Err(Failure::new(self.text.len(), "a token", "nothing")),
        }
    }

    fn bump(&mut self) -> Result<Token, Failure> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.lexer.next_token(),
        }
    }

    fn peek_is(&mut self, keyword: Keyword) -> Result<bool, Failure> {
        Ok(self.peek()?.kind == TokenKind::Keyword(keyword))
    }

    /// A failure at `token` saying what was expected instead.
    fn unexpected(&self, token: &Token, expected: impl Into<String>) -> Failure {
        let found = match token.kind {
            TokenKind::End => "end of input".to_owned(),
            _ => quote_source(&self.text[token.start..token.end]),
        };
        Failure::new(token.start, expected, found)
    }

    fn enter(&mut self, token: &Token) -> Result<(), Failure> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Failure::new(
                token.start,
                format!("at most {MAX_DEPTH} levels of nesting (each `(` and `not` is one)"),
                format!("level {}", self.depth),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, Failure> {
        let mut items = Vec::new();
        push_flat(&mut items, self.and()?, Expr::is_or);
        while self.peek_is(Keyword::Or)? {
            self.bump()?;
            push_flat(&mut items, self.and()?, Expr::is_or);
        }
        Ok(collapse(items, Expr::Or))
    }

    fn and(&mut self) -> Result<Expr, Failure> {
        let mut items = Vec::new();
        push_flat(&mut items, self.unary()?, Expr::is_and);
        while self.peek_is(Keyword::And)? {
            self.bump()?;
            push_flat(&mut items, self.unary()?, Expr::is_and);
        }
        Ok(collapse(items, Expr::And))
    }

    fn unary(&mut self) -> Result<Expr, Failure> {
        let token = self.bump()?;
        match &token.kind {
            TokenKind::Keyword(Keyword::Not) => {
                self.enter(&token)?;
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(Expr::Not(Box::new(inner)))
            }
            TokenKind::LParen => {
                self.enter(&token)?;
                let inner = self.or()?;
                let close = self.bump()?;
                if close.kind != TokenKind::RParen {
                    let expected = format!(
                        "`and`, `or` or `)` to close the `(` at column {}",
                        column(self.text, token.start) + 1
                    );
                    return Err(self.unexpected(&close, expected));
                }
                self.depth -= 1;
                Ok(inner)
            }
            TokenKind::Field(segments) => {
                let field = FieldPath(segments.clone());
                self.comparison(&token, field).map(Expr::Compare)
            }
            _ => Err(self.unexpected(&token, EXPECTED_CONDITION)),
        }
    }

    fn comparison(&mut self, field_token: &Token, field: FieldPath) -> Result<Comparison, Failure> {
        self.comparisons += 1;
        if self.comparisons > MAX_COMPARISONS {
            return Err(Failure::new(
                field_token.start,
                format!("at most {MAX_COMPARISONS} comparisons"),
                format!("comparison {}", self.comparisons),
            ));
        }
        let token = self.bump()?;
        let predicate = match &token.kind {
            TokenKind::Symbol(Symbol::Tilde) => {
                Predicate::Glob(self.string("a quoted glob pattern such as \"icu-*\"")?)
            }
            TokenKind::Symbol(symbol) => {
                let op = match symbol {
                    Symbol::Eq => CmpOp::Eq,
                    Symbol::Ne => CmpOp::Ne,
                    Symbol::Lt => CmpOp::Lt,
                    Symbol::Le => CmpOp::Le,
                    Symbol::Gt => CmpOp::Gt,
                    Symbol::Ge => CmpOp::Ge,
                    Symbol::Tilde => return Err(self.unexpected(&token, EXPECTED_OPERATOR)),
                };
                let value_token = self.bump()?;
                let value = self.value(&value_token)?;
                if op.is_ordering() && matches!(value, Literal::Bool(_) | Literal::Null) {
                    return Err(self.unexpected(
                        &value_token,
                        format!(
                            "a string or number after `{}` (true, false and null only work with = and !=)",
                            op.as_str()
                        ),
                    ));
                }
                Predicate::Compare(op, value)
            }
            TokenKind::Keyword(Keyword::In) => Predicate::In(self.list()?),
            TokenKind::Keyword(Keyword::Not) => {
                let next = self.bump()?;
                if next.kind != TokenKind::Keyword(Keyword::In) {
                    return Err(self.unexpected(
                        &next,
                        "`in` after `not` (to find devices without a field, write `not FIELD exists`)",
                    ));
                }
                Predicate::NotIn(self.list()?)
            }
            TokenKind::Keyword(Keyword::Exists) => Predicate::Exists,
            TokenKind::Keyword(Keyword::Within) => {
                let path_token = self.bump()?;
                match &path_token.kind {
                    TokenKind::Literal(Literal::Str(path)) if !path.is_empty() && !path.ends_with('/') => {
                        Predicate::Within(path.clone())
                    }
                    TokenKind::Literal(Literal::Str(_)) => {
                        return Err(self.unexpected(
                            &path_token,
                            "a non-empty path without a trailing `/`, e.g. \"st-marys\"",
                        ));
                    }
                    _ => {
                        return Err(self.unexpected(&path_token, "a quoted path such as \"st-marys\""));
                    }
                }
            }
            _ => return Err(self.unexpected(&token, EXPECTED_OPERATOR)),
        };
        Ok(Comparison { field, predicate })
    }

    fn string(&mut self, expected: &str) -> Result<String, Failure> {
        let token = self.bump()?;
        match token.kind {
            TokenKind::Literal(Literal::Str(text)) => Ok(text),
            _ => Err(self.unexpected(&token, expected)),
        }
    }

    fn value(&self, token: &Token) -> Result<Literal, Failure> {
        match &token.kind {
            TokenKind::Literal(literal) => Ok(literal.clone()),
            TokenKind::Keyword(Keyword::True) => Ok(Literal::Bool(true)),
            TokenKind::Keyword(Keyword::False) => Ok(Literal::Bool(false)),
            TokenKind::Keyword(Keyword::Null) => Ok(Literal::Null),
            _ => Err(self.unexpected(token, EXPECTED_VALUE)),
        }
    }

    fn list(&mut self) -> Result<Vec<Literal>, Failure> {
        let open = self.bump()?;
        if open.kind != TokenKind::LBracket {
            return Err(self.unexpected(&open, "`[` to start a list of values"));
        }
        let mut values = Vec::new();
        if self.peek()?.kind == TokenKind::RBracket {
            self.bump()?;
            return Ok(values);
        }
        loop {
            let token = self.bump()?;
            if values.len() == MAX_LIST_VALUES {
                return Err(Failure::new(
                    token.start,
                    format!("at most {MAX_LIST_VALUES} values in a list"),
                    format!("value {}", values.len() + 1),
                ));
            }
            values.push(self.value(&token)?);
            let separator = self.bump()?;
            match separator.kind {
                TokenKind::Comma => {}
                TokenKind::RBracket => return Ok(values),
                _ => {
                    let expected = format!(
                        "`,` or `]` to close the list that starts at column {}",
                        column(self.text, open.start) + 1
                    );
                    return Err(self.unexpected(&separator, expected));
                }
            }
        }
    }
}

/// Adds `item` to an `and`/`or` chain, splicing in a parenthesised chain of the same operator:
/// `(a or b) or c` means `a or b or c`, and one canonical shape keeps `Display` free of
/// redundant parentheses and makes equal selectors compare equal.
fn push_flat(items: &mut Vec<Expr>, item: Expr, same: fn(&Expr) -> bool) {
    if same(&item) {
        match item {
            Expr::Or(inner) | Expr::And(inner) => items.extend(inner),
            other => items.push(other),
        }
    } else {
        items.push(item);
    }
}

fn collapse(mut items: Vec<Expr>, make: fn(Vec<Expr>) -> Expr) -> Expr {
    match items.len() {
        1 => match items.pop() {
            Some(only) => only,
            None => make(items),
        },
        _ => make(items),
    }
}
