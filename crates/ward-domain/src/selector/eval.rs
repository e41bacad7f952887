//! Evaluates a selector against a device's attributes (a JSON object) with three-valued logic.

use std::cmp::Ordering;

use serde_json::Value;

use super::version::version_cmp;
use super::{CmpOp, Comparison, Expr, Literal, Predicate};

/// The truth of a condition: comparisons against a field the device does not report are
/// `Unknown`, `not Unknown` stays `Unknown`, and only `True` selects the device (SQL's rule for
/// NULL). That way a negation never sweeps in devices about which nothing is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Truth {
    False,
    Unknown,
    True,
}

impl Truth {
    fn from_bool(value: bool) -> Self {
        if value { Truth::True } else { Truth::False }
    }

    fn not(self) -> Self {
        match self {
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
            Truth::True => Truth::False,
        }
    }
}

pub(super) fn evaluate(expr: &Expr, subject: &Value) -> Truth {
    match expr {
        Expr::Or(items) => {
            let mut result = Truth::False;
            for item in items {
                match evaluate(item, subject) {
                    Truth::True => return Truth::True,
                    Truth::Unknown => result = Truth::Unknown,
                    Truth::False => {}
                }
            }
            result
        }
        Expr::And(items) => {
            let mut result = Truth::True;
            for item in items {
                match evaluate(item, subject) {
                    Truth::False => return Truth::False,
                    Truth::Unknown => result = Truth::Unknown,
                    Truth::True => {}
                }
            }
            result
        }
        Expr::Not(inner) => evaluate(inner, subject).not(),
        Expr::Compare(comparison) => compare(comparison, subject),
    }
}

/// What a field path resolves to in one device.
struct Resolved<'v> {
    /// The device reports the field: some path reached a non-null value or an array (an empty
    /// array is a reported list with nothing in it, e.g. no installed packages).
    present: bool,
    /// The non-null leaf values, arrays flattened.
    values: Vec<&'v Value>,
}

/// Follows `path` through objects; an array anywhere stands for any of its elements. Iterative,
/// so a deeply nested value built in memory (not bounded by serde_json's parser) cannot overflow
/// the stack.
fn resolve<'v>(subject: &'v Value, path: &[String]) -> Resolved<'v> {
    let mut resolved = Resolved {
        present: false,
        values: Vec::new(),
    };
    let mut pending = vec![(subject, 0)];
    while let Some((value, depth)) = pending.pop() {
        match value {
            Value::Null => {}
            Value::Array(items) if items.is_empty() => resolved.present = true,
            Value::Array(items) => pending.extend(items.iter().rev().map(|item| (item, depth))),
            _ if depth == path.len() => {
                resolved.present = true;
                resolved.values.push(value);
            }
            Value::Object(map) => {
                if let Some(child) = map.get(&path[depth]) {
                    pending.push((child, depth + 1));
                }
            }
            // A scalar where the path continues: the field is not there.
            _ => {}
        }
    }
    resolved
}

fn compare(comparison: &Comparison, subject: &Value) -> Truth {
    let found = resolve(subject, comparison.field.segments());
    let any = |test: &dyn Fn(&Value) -> bool| found.values.iter().any(|value| test(value));
    match &comparison.predicate {
        Predicate::Exists => Truth::from_bool(found.present),
        // `= null` asks whether the field is missing, which is always known.
        Predicate::Compare(CmpOp::Eq, Literal::Null) => Truth::from_bool(!found.present),
        Predicate::Compare(CmpOp::Ne, Literal::Null) => Truth::from_bool(found.present),
        Predicate::In(list) if !found.present => {
            if list.contains(&Literal::Null) {
                Truth::True
            } else {
                Truth::Unknown
            }
        }
        Predicate::NotIn(list) if !found.present => {
            if list.contains(&Literal::Null) {
                Truth::False
            } else {
                Truth::Unknown
            }
        }
        _ if !found.present => Truth::Unknown,
        Predicate::Compare(CmpOp::Eq, literal) => Truth::from_bool(any(&|v| equals(v, literal))),
        // `!=` and `not in` are the negations of `=` and `in`: over a list they hold when no
        // element matches, so `tags != "icu"` means "not tagged icu", as an admin would read it.
        Predicate::Compare(CmpOp::Ne, literal) => Truth::from_bool(!any(&|v| equals(v, literal))),
        Predicate::Compare(op, literal) => Truth::from_bool(any(&|v| {
            ordering(v, literal).is_some_and(|order| op.accepts(order))
        })),
        Predicate::In(list) => Truth::from_bool(any(&|v| list.iter().any(|l| equals(v, l)))),
        Predicate::NotIn(list) => Truth::from_bool(!any(&|v| list.iter().any(|l| equals(v, l)))),
        Predicate::Within(path) => {
            Truth::from_bool(any(&|v| v.as_str().is_some_and(|text| within(text, path))))
        }
        Predicate::Glob(pattern) => {
            Truth::from_bool(any(&|v| v.as_str().is_some_and(|text| glob_match(pattern, text))))
        }
    }
}

/// Equality: strings exactly, booleans with booleans, numbers numerically (a string that is a
/// number counts as one when the other side is a number). Anything else is unequal.
fn equals(value: &Value, literal: &Literal) -> bool {
    match (value, literal) {
        (Value::String(text), Literal::Str(other)) => text == other,
        (Value::Bool(flag), Literal::Bool(other)) => flag == other,
        _ => numeric_cmp(value, literal) == Some(Ordering::Equal),
    }
}

/// Order: two strings in version order, otherwise numerically; `None` when not comparable.
fn ordering(value: &Value, literal: &Literal) -> Option<Ordering> {
    match (value, literal) {
        (Value::String(text), Literal::Str(other)) => Some(version_cmp(text, other)),
        _ => numeric_cmp(value, literal),
    }
}

#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            // Precision loss above 2^53 is accepted: only mixed integer/decimal comparisons get here.
            Num::Int(value) => value as f64,
            Num::Float(value) => value,
        }
    }
}

fn numeric_cmp(value: &Value, literal: &Literal) -> Option<Ordering> {
    let left = match value {
        Value::Number(number) => json_number(number)?,
        Value::String(text) => parse_number(text)?,
        _ => return None,
    };
    let right = match literal {
        Literal::Int(value) => Num::Int(i128::from(*value)),
        Literal::Float(value) => Num::Float(*value),
        Literal::Str(text) => parse_number(text)?,
        Literal::Bool(_) | Literal::Null => return None,
    };
    match (left, right) {
        (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
        (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
    }
}

fn json_number(number: &serde_json::Number) -> Option<Num> {
    if let Some(value) = number.as_i64() {
        Some(Num::Int(i128::from(value)))
    } else if let Some(value) = number.as_u64() {
        Some(Num::Int(i128::from(value)))
    } else {
        number.as_f64().map(Num::Float)
    }
}

/// Parses a string written like a selector number (`-12`, `3.5`; no exponent, no spaces), so
/// `"16"` reported by an agent compares with `16`, but `"22.04.1"` or `" 5"` do not.
fn parse_number(text: &str) -> Option<Num> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (digits, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !fraction.is_none_or(all_digits) {
        return None;
    }
    match fraction {
        None => text.parse::<i128>().ok().map(Num::Int),
        Some(_) => text.parse::<f64>().ok().filter(|v| v.is_finite()).map(Num::Float),
    }
}

/// Hierarchical path match: the path itself or anything beneath it (`st-marys/icu` is within
/// `st-marys`, `st-marys-annex` is not).
fn within(text: &str, path: &str) -> bool {
    text.strip_prefix(path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Case-insensitive glob: `*` matches any run of characters (including none and `/`), `?`
/// exactly one. Greedy with single backtracking, so it is O(pattern × text) at worst, never
/// exponential, whatever the pattern.
pub(super) fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().flat_map(char::to_lowercase).collect();
    let text: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                // Let the last `*` swallow one more character and retry.
                Some((star, start)) => {
                    backtrack = Some((star, start + 1));
                    p = star + 1;
                    t = start + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("icu-*", "ICU-Pump-01"));
        assert!(glob_match("*pump?01", "icu-pump-01"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("a*b*c", "aXbY"));
        assert!(!glob_match("?", ""));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "x"));
        // A pathological pattern finishes quickly.
        let text = "a".repeat(4000);
        assert!(!glob_match(&format!("{}b", "*a".repeat(100)), &text));
    }

    #[test]
    fn numbers_in_strings() {
        assert!(matches!(parse_number("16"), Some(Num::Int(16))));
        assert!(matches!(parse_number("-1.5"), Some(Num::Float(v)) if v == -1.5));
        for text in ["", "-", "1.", ".5", "1e3", " 5", "22.04.1", "1-2"] {
            assert!(parse_number(text).is_none(), "{text}");
        }
    }

    #[test]
    fn within_paths() {
        assert!(within("st-marys", "st-marys"));
        assert!(within("st-marys/icu", "st-marys"));
        assert!(!within("st-marys-annex", "st-marys"));
        assert!(!within("st", "st-marys"));
    }

    #[test]
    fn deeply_nested_arrays_do_not_overflow() {
        let mut value = Value::String("x".into());
        for _ in 0..100_000 {
            value = Value::Array(vec![value]);
        }
        let found = resolve(&value, &[]);
        assert_eq!(found.values.len(), 1);
        // Dropping such a value recursively is serde_json's concern; leak it to keep this
        // test about `resolve` alone.
        std::mem::forget(value);
    }
}
