//! Version order for strings: `"9.10" > "9.9"`, `"22.04" > "20.04.6"`, `"2.0~rc1" < "2.0"`.

use std::cmp::Ordering;

/// Compares two strings as versions, using the order of Debian's `verrevcmp` (the core of
/// `dpkg --compare-versions`, without epoch and revision splitting):
///
/// - The strings alternate between non-digit and digit runs, compared pairwise from the left.
/// - Digit runs compare as numbers of any length (`10 > 9`, `007 = 7`); a missing run counts as 0.
/// - Non-digit runs compare character by character, where `~` sorts before everything, even
///   the end of the string, then the end of the string, then ASCII letters, then everything else.
///   So `2.0~rc1 < 2.0 < 2.0a < 2.0-1 < 2.0.1`.
/// - Strings that are still equal (they differ only in leading zeros, `1.01` and `1.1`) are
///   ordered by their bytes, so the result is a total order and `Equal` means identical.
///
/// Why Debian's rule: hospitals' Linux fleets are mostly Debian/Ubuntu, so package and OS
/// versions compare exactly as the package manager compares them. It gives `-` no special
/// meaning because `5.15.0-91` (a kernel build) is later than `5.15.0`; write pre-releases with
/// `~` to sort them first.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    verrevcmp(a.as_bytes(), b.as_bytes()).then_with(|| a.cmp(b))
}

fn verrevcmp(mut a: &[u8], mut b: &[u8]) -> Ordering {
    while !a.is_empty() || !b.is_empty() {
        loop {
            let left = a.first().copied().filter(|c| !c.is_ascii_digit());
            let right = b.first().copied().filter(|c| !c.is_ascii_digit());
            if left.is_none() && right.is_none() {
                break;
            }
            let order = weight(left).cmp(&weight(right));
            if order != Ordering::Equal {
                return order;
            }
            // Equal weights with at least one side present means both are present.
            a = a.get(1..).unwrap_or_default();
            b = b.get(1..).unwrap_or_default();
        }
        let (left_digits, left_rest) = split_digits(a);
        let (right_digits, right_rest) = split_digits(b);
        let order = numeric_cmp(left_digits, right_digits);
        if order != Ordering::Equal {
            return order;
        }
        a = left_rest;
        b = right_rest;
    }
    Ordering::Equal
}

fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn split_digits(text: &[u8]) -> (&[u8], &[u8]) {
    let end = text
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

/// Compares two digit runs by value without parsing, so runs longer than any integer type work.
fn numeric_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let a = strip_zeros(a);
    let b = strip_zeros(b);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn strip_zeros(digits: &[u8]) -> &[u8] {
    let first = digits.iter().position(|c| *c != b'0').unwrap_or(digits.len());
    &digits[first..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::{Equal, Greater, Less};

    #[test]
    fn examples() {
        let cases = [
            ("9.10", "9.9", Greater),
            ("22.04", "20.04.6", Greater),
            ("22.10", "22.04", Greater),
            ("20.04", "22.04", Less),
            ("22.04", "22.04.1", Less),
            ("2.0~rc1", "2.0", Less),
            ("2.0~rc1", "2.0~rc2", Less),
            ("2.0", "2.0a", Less),
            ("2.0a", "2.0-1", Less),
            ("5.15.0-91", "5.15.0-101", Less),
            ("1.1.1w", "1.1.1n", Greater),
            ("10", "9", Greater),
            ("1.01", "1.1", Less),
            ("1.1", "1.1", Equal),
            ("", "0", Less),
            ("99999999999999999999999", "99999999999999999999998", Greater),
        ];
        for (a, b, expected) in cases {
            assert_eq!(version_cmp(a, b), expected, "{a} vs {b}");
            assert_eq!(version_cmp(b, a), expected.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn is_a_total_order_on_random_strings() {
        // A small deterministic generator over an alphabet rich in the characters that matter.
        let alphabet = b"0019.~-a+Z";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let strings: Vec<String> = (0..150)
            .map(|_| {
                let len = (next() % 7) as usize;
                (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char)
                    .collect()
            })
            .collect();
        for a in &strings {
            for b in &strings {
                let ab = version_cmp(a, b);
                assert_eq!(ab, version_cmp(b, a).reverse(), "{a:?} {b:?}");
                assert_eq!(ab == Equal, a == b, "{a:?} {b:?}");
            }
        }
        let mut sorted = strings.clone();
        sorted.sort_by(|a, b| version_cmp(a, b));
        for (index, a) in sorted.iter().enumerate() {
            for b in &sorted[index..] {
                assert_ne!(version_cmp(a, b), Greater, "not transitive: {a:?} > {b:?}");
            }
        }
    }
}
