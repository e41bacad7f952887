//! End-to-end tests of the selector language: parsing, canonical form, evaluation and errors.

use serde_json::{Value, json};

use super::*;

fn parse(text: &str) -> Selector {
    match Selector::parse(text) {
        Ok(selector) => selector,
        Err(err) => panic!("{text:?} should parse: {err}\n{}", caret_line(text, &err)),
    }
}

fn error(text: &str) -> SelectorError {
    match Selector::parse(text) {
        Ok(selector) => panic!("{text:?} should not parse, got {selector}"),
        Err(err) => err,
    }
}

/// Asserts the error's 1-based column and its message.
fn assert_error(text: &str, column: usize, expected: &str, found: &str) {
    let err = error(text);
    assert_eq!(
        (err.position + 1, err.expected.as_str(), err.found.as_str()),
        (column, expected, found),
        "for {text:?}"
    );
}

fn canonical(text: &str) -> String {
    parse(text).to_string()
}

fn pump() -> Value {
    json!({
        "hostname": "ICU-Pump-01",
        "site": "st-marys/icu",
        "class": "medical",
        "criticality": 3,
        "phi": true,
        "tags": ["icu", "infusion"],
        "facts": {
            "os": { "name": "ubuntu", "version": "20.04" },
            "disk": { "encrypted": false, "size_gb": "512" },
            "packages": [
                { "name": "openssl", "version": "1.1.1n" },
                { "name": "bash", "version": "5.1" }
            ],
            "serial": null,
            "cpu_load": 0.75
        }
    })
}

fn selects(selector: &str, device: &Value) -> bool {
    parse(selector).matches(device)
}

// ---------------------------------------------------------------- parsing and canonical form

#[test]
fn precedence_or_is_loosest() {
    assert_eq!(canonical("a = 1 or b = 2 and c = 3"), "a = 1 or b = 2 and c = 3");
    assert!(matches!(parse("a = 1 or b = 2 and c = 3").expr(), Expr::Or(items) if items.len() == 2));
    assert_eq!(
        canonical("(a = 1 or b = 2) and c = 3"),
        "(a = 1 or b = 2) and c = 3"
    );
    assert!(matches!(parse("(a = 1 or b = 2) and c = 3").expr(), Expr::And(items) if items.len() == 2));
}

#[test]
fn redundant_parentheses_are_dropped_and_chains_flattened() {
    assert_eq!(canonical("((a = 1))"), "a = 1");
    assert_eq!(canonical("(a = 1 or b = 2) or c = 3"), "a = 1 or b = 2 or c = 3");
    assert_eq!(
        canonical("a = 1 and (b = 2 and c = 3)"),
        "a = 1 and b = 2 and c = 3"
    );
    assert_eq!(
        parse("(a = 1 or b = 2) or c = 3"),
        parse("a = 1 or (b = 2 or c = 3)")
    );
    assert_eq!(
        canonical("(a = 1 and b = 2) or c = 3"),
        "a = 1 and b = 2 or c = 3"
    );
}

#[test]
fn not_binds_tighter_than_and() {
    assert_eq!(canonical("not a = 1 and b = 2"), "not a = 1 and b = 2");
    assert!(matches!(parse("not a = 1 and b = 2").expr(), Expr::And(_)));
    assert_eq!(canonical("not (a = 1 and b = 2)"), "not (a = 1 and b = 2)");
    assert_eq!(canonical("NOT NOT a exists"), "not not a exists");
}

#[test]
fn keywords_are_case_insensitive() {
    assert_eq!(
        canonical("A = TRUE AnD b NOT IN [NULL, False] Or c EXISTS or d WITHIN 'x' or E In [1]"),
        "A = true and b not in [null, false] or c exists or d within \"x\" or E in [1]"
    );
}

#[test]
fn every_operator() {
    let cases = [
        ("a=1", "a = 1"),
        ("a!=1", "a != 1"),
        ("a<1", "a < 1"),
        ("a<=1", "a <= 1"),
        ("a>1", "a > 1"),
        ("a>=-1", "a >= -1"),
        ("a~'x*'", "a ~ \"x*\""),
        ("a in[1,'b',true,null]", "a in [1, \"b\", true, null]"),
        ("a not in []", "a not in []"),
        ("a exists", "a exists"),
        ("site within \"st-marys\"", "site within \"st-marys\""),
        ("facts.os.version<\"22.04\"", "facts.os.version < \"22.04\""),
    ];
    for (text, expected) in cases {
        assert_eq!(canonical(text), expected, "for {text:?}");
    }
}

#[test]
fn string_escapes() {
    let selector = parse(r#"a = "q\"b\\n\n\t\u{1F600}\u{e9}" or b = 'it\'s "x"'"#);
    let Expr::Or(items) = selector.expr() else {
        panic!("{selector:?}")
    };
    let Expr::Compare(Comparison {
        predicate: Predicate::Compare(_, Literal::Str(first)),
        ..
    }) = &items[0]
    else {
        panic!("{selector:?}")
    };
    assert_eq!(first, "q\"b\\n\n\t😀é");
    assert_eq!(
        selector.to_string(),
        r#"a = "q\"b\\n\n\t😀é" or b = "it's \"x\"""#
    );
    // Control characters come out escaped, never raw.
    assert_eq!(
        canonical(r#"a = "\u{1b}[31m\u{7}\u{202e}""#),
        r#"a = "\u{1b}[31m\u{7}\u{202e}""#
    );
}

#[test]
fn numbers() {
    let literal = |text: &str| match parse(&format!("a = {text}")).expr() {
        Expr::Compare(Comparison {
            predicate: Predicate::Compare(_, literal),
            ..
        }) => literal.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(literal("0"), Literal::Int(0));
    assert_eq!(literal("-42"), Literal::Int(-42));
    assert_eq!(literal("007"), Literal::Int(7));
    assert_eq!(literal("9223372036854775807"), Literal::Int(i64::MAX));
    assert_eq!(literal("-9223372036854775808"), Literal::Int(i64::MIN));
    assert_eq!(literal("1.5"), Literal::Float(1.5));
    assert_eq!(literal("-0.25"), Literal::Float(-0.25));
    assert_eq!(canonical("a = 1.0"), "a = 1.0");
    assert_eq!(canonical("a = 1.50"), "a = 1.5");
    // Decimals keep the shortest text that reads back as the same f64.
    assert_eq!(
        canonical("a = 100000000000000000000000.5"),
        "a = 100000000000000010000000.0"
    );
    assert_eq!(canonical("a = 0.1000000000000000055511151231257827"), "a = 0.1");
}

#[test]
fn fields_are_listed_once_in_order() {
    let selector = parse("site within 'x' and (class = 'm' or not facts.os.version < '1') or site = 'y'");
    assert_eq!(selector.fields(), ["site", "class", "facts.os.version"]);
}

#[test]
fn keywords_may_be_later_segments_or_dotted_first_segments() {
    assert_eq!(canonical("facts.in.not = 1"), "facts.in.not = 1");
    assert_eq!(canonical("not.x exists"), "not.x exists");
    assert_eq!(canonical("_a-b.c_d-1 exists"), "_a-b.c_d-1 exists");
}

#[test]
fn serde_uses_the_canonical_text() {
    let selector = parse("SITE within 'a'");
    let json = serde_json::to_string(&selector).unwrap();
    assert_eq!(json, r#""SITE within \"a\"""#);
    let back: Selector = serde_json::from_str(&json).unwrap();
    assert_eq!(back, selector);
    let err = serde_json::from_str::<Selector>(r#""site ==""#).unwrap_err();
    assert!(err.to_string().contains("at column 6"), "{err}");
    assert_eq!("a exists".parse::<Selector>().unwrap(), parse("a exists"));
}

// ---------------------------------------------------------------- evaluation

#[test]
fn site_within() {
    let device = pump();
    assert!(selects(r#"site within "st-marys""#, &device));
    assert!(selects(r#"site within "st-marys/icu""#, &device));
    assert!(!selects(r#"site within "st-marys/ed""#, &device));
    assert!(!selects(r#"site within "st""#, &device));
    assert!(!selects(r#"site within "st-mary""#, &device));
}

#[test]
fn brief_example() {
    let selector = r#"site = "st-marys/icu" and class = "medical" and facts.os.version < "22.04""#;
    assert!(selects(selector, &pump()));
    let mut patched = pump();
    patched["facts"]["os"]["version"] = json!("22.04");
    assert!(!selects(selector, &patched));
}

#[test]
fn version_ordering_of_os_versions() {
    let with_version = |version: &str| json!({ "facts": { "os": { "version": version } } });
    let older = |version| selects(r#"facts.os.version < "22.04""#, &with_version(version));
    assert!(older("20.04"));
    assert!(older("9.10"));
    assert!(older("20.04.6"));
    assert!(!older("22.04"));
    assert!(!older("22.10"));
    assert!(!older("22.04.1"));
    assert!(selects(r#"facts.os.version >= "22.04""#, &with_version("22.04")));
    assert!(selects(r#"facts.os.version > "9.9""#, &with_version("9.10")));
    assert!(selects(r#"facts.os.version <= "2.0""#, &with_version("2.0~rc1")));
}

#[test]
fn equality_is_exact_for_strings() {
    let device = pump();
    assert!(selects(r#"class = "medical""#, &device));
    assert!(!selects(r#"class = "Medical""#, &device));
    assert!(selects(r#"class != "Medical""#, &device));
    assert!(!selects(r#"facts.os.version = "20.4""#, &device));
}

#[test]
fn numbers_and_numeric_strings() {
    let device = pump();
    assert!(selects("criticality = 3", &device));
    assert!(selects("criticality = 3.0", &device));
    assert!(selects("criticality >= 2 and criticality < 4", &device));
    assert!(selects("criticality = \"3\"", &device));
    assert!(selects("criticality > \"2.5\"", &device));
    assert!(!selects("criticality = \"three\"", &device));
    assert!(!selects("criticality < \"three\"", &device));
    assert!(selects("facts.disk.size_gb >= 256", &device));
    assert!(selects("facts.cpu_load < 1", &device));
    assert!(selects("facts.cpu_load > 0.5", &device));
    assert!(!selects("criticality = true", &device));
    assert!(selects(r#"criticality in [1, "3"]"#, &device));
    let big = json!({ "n": u64::MAX });
    assert!(selects("n > 9223372036854775807", &big));
}

#[test]
fn booleans() {
    let device = pump();
    assert!(selects("phi = true", &device));
    assert!(selects("phi != false", &device));
    assert!(selects("facts.disk.encrypted = false", &device));
    assert!(selects("not facts.disk.encrypted = true", &device));
    // No coercion between booleans and strings.
    assert!(!selects("phi = \"true\"", &device));
    assert!(selects("phi != \"true\"", &device));
}

#[test]
fn missing_fields_are_unknown() {
    let device = pump();
    for selector in [
        "owner = \"x\"",
        "owner != \"x\"",
        "owner < 1",
        "owner in [\"x\"]",
        "owner not in [\"x\"]",
        "owner within \"x\"",
        "owner ~ \"*\"",
        "not owner = \"x\"",
        "not owner != \"x\"",
        "not (owner = \"x\" or owner != \"x\")",
        "facts.serial = \"x\"",
        "facts.serial != \"x\"",
        "facts.os.version.major = 1",
        "owner exists",
        "facts.serial exists",
    ] {
        assert!(!selects(selector, &device), "{selector} should not select");
    }
    for selector in [
        "not owner exists",
        "not facts.serial exists",
        "owner = null",
        "facts.serial = null",
        "owner in [\"x\", null]",
        "class != null",
        "class exists",
        // Unknown or true is true; unknown and false is false, so `not` of it is true.
        "owner = \"x\" or class = \"medical\"",
        "not (owner = \"x\" and class = \"other\")",
    ] {
        assert!(selects(selector, &device), "{selector} should select");
    }
    assert!(!selects("owner not in [\"x\", null]", &device));
    assert!(!selects("owner = \"x\" and class = \"medical\"", &device));
}

#[test]
fn arrays_match_any_element() {
    let device = pump();
    assert!(selects("tags = \"icu\"", &device));
    assert!(selects("tags in [\"infusion\", \"ward\"]", &device));
    assert!(!selects("tags != \"icu\"", &device));
    assert!(selects("tags != \"ed\"", &device));
    assert!(!selects("tags not in [\"ed\", \"icu\"]", &device));
    assert!(selects("tags ~ \"INF*\"", &device));
    assert!(selects("facts.packages.name = \"openssl\"", &device));
    assert!(selects(
        "facts.packages.name = \"openssl\" and facts.packages.version < \"1.1.1w\"",
        &device
    ));
    assert!(!selects("facts.packages.name = \"curl\"", &device));
    assert!(selects("facts.packages.name != \"curl\"", &device));
    assert!(!selects("facts.packages.licence exists", &device));

    let empty = json!({ "tags": [], "facts": { "packages": [] } });
    assert!(selects("tags exists", &empty));
    assert!(!selects("tags = \"icu\"", &empty));
    assert!(selects("tags != \"icu\"", &empty));
    assert!(selects("facts.packages.name != \"openssl\"", &empty));

    let nested = json!({ "groups": [[{ "name": "a" }], [{ "name": "b" }, null]] });
    assert!(selects("groups.name = \"b\"", &nested));
}

#[test]
fn glob() {
    let device = pump();
    assert!(selects("hostname ~ \"icu-*\"", &device));
    assert!(selects("hostname ~ \"*PUMP-0?\"", &device));
    assert!(!selects("hostname ~ \"icu-pump-0\"", &device));
    assert!(!selects("criticality ~ \"*\"", &device));
    assert!(selects("site ~ \"st-marys/*\"", &device));
}

#[test]
fn type_mismatches_are_false_not_unknown() {
    let device = pump();
    assert!(!selects("facts.os = \"ubuntu\"", &device));
    assert!(selects("facts.os != \"ubuntu\"", &device));
    assert!(!selects("class < 5", &device));
    assert!(selects("not class < 5", &device));
}

#[test]
fn non_object_subjects_select_nothing_but_negations_of_existence() {
    // (An empty array would count as a reported, empty list; subjects are objects anyway.)
    for subject in [json!(null), json!(3), json!("x")] {
        assert!(!selects("a = 1", &subject));
        assert!(!selects("a != 1", &subject));
    }
    assert!(selects("not a exists", &json!(null)));
}

// ---------------------------------------------------------------- errors

const VALUE: &str = "a value: a quoted string, a number, true, false or null";
const OPERATOR: &str = "an operator: =, !=, <, <=, >, >=, ~, in, not in, exists or within";
const CONDITION: &str = "a field name, `not` or `(`";
const AFTER: &str = "`and`, `or` or end of input";

#[test]
fn error_display_and_caret() {
    let text = "site == \"x\"";
    let err = error(text);
    assert_eq!(
        err.to_string(),
        format!("at column 6: expected {OPERATOR}, found `==`")
    );
    assert_eq!(caret_line(text, &err), "site == \"x\"\n     ^");
}

#[test]
fn unterminated_string() {
    assert_error(
        "site = \"abc",
        12,
        "`\"` to close the string that starts at column 8",
        "end of input",
    );
    assert_error(
        "site = 'abc\"",
        13,
        "`'` to close the string that starts at column 8",
        "end of input",
    );
}

#[test]
fn missing_value() {
    assert_error("site =", 7, VALUE, "end of input");
    assert_error("site = and", 8, VALUE, "`and`");
    assert_error("site = )", 8, VALUE, "`)`");
    assert_error("site in [1,]", 12, VALUE, "`]`");
}

#[test]
fn unknown_operators() {
    assert_error("site == \"x\"", 6, OPERATOR, "`==`");
    assert_error("site => 1", 6, OPERATOR, "`=>`");
    assert_error("site", 5, OPERATOR, "end of input");
    assert_error("site \"x\"", 6, OPERATOR, "`\"x\"`");
    assert_error("site.x like 'y'", 8, OPERATOR, "`like`");
    assert_error(
        "site not exists",
        10,
        "`in` after `not` (to find devices without a field, write `not FIELD exists`)",
        "`exists`",
    );
    assert_error(
        "phi < true",
        7,
        "a string or number after `<` (true, false and null only work with = and !=)",
        "`true`",
    );
    assert_error("site ~ 5", 8, "a quoted glob pattern such as \"icu-*\"", "`5`");
    assert_error("site within st", 13, "a quoted path such as \"st-marys\"", "`st`");
    assert_error(
        "site within 'st-marys/'",
        13,
        "a non-empty path without a trailing `/`, e.g. \"st-marys\"",
        "`'st-marys/'`",
    );
    assert_error(
        "site within ''",
        13,
        "a non-empty path without a trailing `/`, e.g. \"st-marys\"",
        "`''`",
    );
    assert_error("site in 'a'", 9, "`[` to start a list of values", "`'a'`");
}

#[test]
fn trailing_tokens() {
    assert_error("site = \"a\" \"b\"", 12, AFTER, "`\"b\"`");
    assert_error("site = \"a\" && class = \"b\"", 12, AFTER, "`&`");
    assert_error("site = \"a\")", 11, AFTER, "`)`");
}

#[test]
fn unbalanced_parentheses() {
    assert_error(
        "(site = \"a\"",
        12,
        "`and`, `or` or `)` to close the `(` at column 1",
        "end of input",
    );
    assert_error(
        "((a = 1) or (b = 2)",
        20,
        "`and`, `or` or `)` to close the `(` at column 1",
        "end of input",
    );
    assert_error("()", 2, CONDITION, "`)`");
    assert_error(")", 1, CONDITION, "`)`");
    assert_error(
        "a in [1, 2",
        11,
        "`,` or `]` to close the list that starts at column 6",
        "end of input",
    );
}

#[test]
fn empty_input() {
    assert_error("", 1, CONDITION, "end of input");
    assert_error("  \t\n", 5, CONDITION, "end of input");
    assert_error("a = 1 and", 10, CONDITION, "end of input");
    assert_error("not", 4, CONDITION, "end of input");
}

#[test]
fn bad_identifiers_and_literals() {
    assert_error(
        "1site = 'a'",
        1,
        "a number (put other values in quotes, e.g. \"1site\")",
        "`1site`",
    );
    assert_error(
        "facts.os.version < 22.04.1",
        20,
        "a number (put other values in quotes, e.g. \"22.04.1\")",
        "`22.04.1`",
    );
    let after_dot = "a field name after `.` (letters, digits, `_` and `-`, not starting with a digit)";
    assert_error(
        "site. = 1",
        6,
        after_dot,
        "`space`".replace("space", " ").as_str(),
    );
    assert_error("site..x = 1", 6, after_dot, "`.`");
    assert_error("facts.0 = 1", 7, after_dot, "`0`");
    assert_error("site.", 6, after_dot, "end of input");
    assert_error(".site = 1", 1, CONDITION, "`.`");
    assert_error("-site = 1", 1, CONDITION, "`-`");
    assert_error(
        "a.b.c.d.e.f.g.h.i = 1",
        17,
        "at most 8 segments in a field path",
        "`i`",
    );
    assert!(Selector::parse("a.b.c.d.e.f.g.h = 1").is_ok());
    assert_error("and = 1", 1, CONDITION, "`and`");
    assert_error(
        "a = 99999999999999999999",
        5,
        "an integer between -9223372036854775808 and 9223372036854775807",
        "`99999999999999999999`",
    );
    assert_error(
        "a = \"\\q\"",
        6,
        "an escape: \\\", \\', \\\\, \\n, \\t or \\u{hex}",
        "`\\q`",
    );
    let unicode = "\\u{…} with 1 to 6 hex digits naming a Unicode character other than NUL";
    assert_error("a = \"\\u{0}\"", 6, unicode, "`\\u{0}`");
    assert_error("a = \"\\u{d800}\"", 6, unicode, "`\\u{d800}`");
    assert_error("a = \"\\u{1234567}\"", 6, unicode, "`\\u{1234567}`");
    assert_error("a = \"\\u41\"", 6, unicode, "`\\u`");
    assert_error("a = \"\\u{41\"", 6, unicode, "`\\u{41`");
}

#[test]
fn columns_count_characters_not_bytes() {
    assert_error("site = \"é\" and ==", 16, CONDITION, "`==`");
    assert_error("näme = 1", 2, OPERATOR, "`ä`");
}

#[test]
fn limits() {
    // Input length.
    let long = format!("a = \"{}\"", "x".repeat(MAX_INPUT_BYTES - 6));
    assert_eq!(long.len(), MAX_INPUT_BYTES);
    assert!(Selector::parse(&long).is_ok());
    let too_long = format!("a = \"{}\"", "x".repeat(MAX_INPUT_BYTES - 5));
    assert_error(&too_long, 4097, "a selector of at most 4096 bytes", "4097 bytes");

    // Nesting depth: 32 levels of parentheses or `not` are fine, 33 are not.
    let nested = |depth: usize| format!("{}a = 1{}", "(".repeat(depth), ")".repeat(depth));
    assert_eq!(canonical(&nested(MAX_DEPTH)), "a = 1");
    assert_error(
        &nested(MAX_DEPTH + 1),
        33,
        "at most 32 levels of nesting (each `(` and `not` is one)",
        "level 33",
    );
    assert!(Selector::parse(&format!("{}a = 1", "not ".repeat(MAX_DEPTH))).is_ok());
    assert_eq!(
        error(&format!("{}a = 1", "not ".repeat(MAX_DEPTH + 1))).position,
        128
    );
    // Deep but hostile: thousands of `(` stop at the limit without recursing further.
    assert_eq!(error(&"(".repeat(4000)).found, "level 33");

    // List length.
    let list = |n: usize| format!("a in [{}]", vec!["1"; n].join(","));
    assert!(Selector::parse(&list(MAX_LIST_VALUES)).is_ok());
    let err = error(&list(MAX_LIST_VALUES + 1));
    assert_eq!(
        (err.position, err.expected.as_str(), err.found.as_str()),
        (
            6 + 2 * MAX_LIST_VALUES,
            "at most 1000 values in a list",
            "value 1001"
        )
    );

    // Comparisons.
    let chain = |n: usize| vec!["a = 1"; n].join(" or ");
    assert!(Selector::parse(&chain(MAX_COMPARISONS)).is_ok());
    let err = error(&chain(MAX_COMPARISONS + 1));
    assert_eq!(
        (err.position, err.expected.as_str(), err.found.as_str()),
        (9 * MAX_COMPARISONS, "at most 256 comparisons", "comparison 257")
    );
}

#[test]
fn canonical_form_that_would_exceed_the_limit_is_refused() {
    // Canonical spacing adds bytes, which is fine well below the limit...
    let packed = vec!["a=1"; 200].join(" or ");
    assert!(packed.len() <= MAX_INPUT_BYTES);
    assert!(Selector::parse(&packed).is_ok());
    // ...but escaping every `"` of a single-quoted string doubles it past the limit.
    let quotes = format!("a = '{}'", "\"".repeat(MAX_INPUT_BYTES - 6));
    let err = error(&quotes);
    assert_eq!(err.position, 0);
    assert_eq!(err.expected, "a selector of at most 4096 bytes in canonical form");
}

/// Whether printing `text` could inject anything into a terminal or log.
fn has_unsafe_chars(text: &str) -> bool {
    text.chars().any(error::needs_escape)
}

#[test]
fn hostile_input_is_never_echoed_raw() {
    let escape = "site = \u{1b}[2J\u{1b}]0;pwned\u{7}";
    let err = error(escape);
    assert_eq!(err.found, "`\\u{1b}`");
    assert_eq!(err.position, 7);
    let caret = caret_line(escape, &err);
    assert!(!has_unsafe_chars(&caret.replace('\n', "")), "{caret:?}");
    assert_eq!(caret, "site = \\u{1b}[2J\\u{1b}]0;pwned\\u{7}\n       ^");

    // A control character inside a string literal.
    let err = error("a = \"x\u{1b}y\"");
    assert_eq!((err.position, err.found.as_str()), (6, "`\\u{1b}`"));
    let err = error("a = \"x\ny\"");
    assert_eq!(err.found, "`\\n`");

    // Bidirectional overrides outside strings are escaped too.
    let err = error("a = 1 \u{202e}or b = 2");
    assert_eq!(err.found, "`\\u{202e}`");

    // A long hostile token is truncated.
    let err = error(&format!("a = 1 {}", "\u{1b}x".repeat(100)));
    assert!(err.to_string().len() < 200);

    // 1 MB: refused on length before anything else, and the caret line stays short.
    let huge = format!("site = \"{}\"", "\u{1b}".repeat(1 << 20));
    let err = error(&huge);
    assert_eq!((err.position, err.found.as_str()), (4096, "1048585 bytes"));
    let caret = caret_line(&huge, &err);
    assert!(caret.len() < 1000, "{}", caret.len());
    assert!(!has_unsafe_chars(&caret.replace('\n', "")));

    // Tabs and newlines in the input show as spaces so the caret stays aligned.
    let text = "a = 1\n\tand ==";
    let err = error(text);
    assert_eq!(caret_line(text, &err), "a = 1  and ==\n           ^");
}

#[test]
fn caret_line_windows_long_input() {
    let text = format!("{} and ==", vec!["a = 1"; 40].join(" and "));
    let err = error(&text);
    let caret = caret_line(&text, &err);
    let (line, marker) = caret.split_once('\n').unwrap();
    assert!(line.starts_with('…'));
    assert!(line.ends_with("and =="));
    assert_eq!(marker, format!("{}^", " ".repeat(41)));
    assert_eq!(line.chars().nth(marker.len() - 1), Some('='));
}

// ---------------------------------------------------------------- property-style tests

/// A tiny deterministic xorshift generator, so the property tests need no dependency and
/// every failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Writes random valid selector text with varied spacing, keyword case, quoting and
/// redundant parentheses.
struct Generator {
    rng: Rng,
    out: String,
}

impl Generator {
    fn space(&mut self) {
        let space = *self.rng.pick(&[" ", " ", "  ", "\t", "\n "]);
        self.out.push_str(space);
    }

    fn keyword(&mut self, word: &str) {
        let styled = match self.rng.below(3) {
            0 => word.to_owned(),
            1 => word.to_uppercase(),
            _ => word
                .chars()
                .enumerate()
                .map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c })
                .collect(),
        };
        self.out.push_str(&styled);
    }

    fn expr(&mut self, depth: usize) {
        let choice = if depth >= 5 { 0 } else { self.rng.below(6) };
        match choice {
            0 | 1 => self.comparison(),
            2 => {
                self.keyword("not");
                self.space();
                self.expr(depth + 1);
            }
            3 => {
                self.out.push('(');
                self.expr(depth + 1);
                self.out.push(')');
            }
            _ => {
                self.expr(depth + 1);
                self.space();
                let joiner = if choice == 4 { "and" } else { "or" };
                self.keyword(joiner);
                self.space();
                self.expr(depth + 1);
            }
        }
    }

    fn field(&mut self) {
        let field = *self.rng.pick(&[
            "site",
            "class",
            "criticality",
            "phi",
            "tags",
            "hostname",
            "facts.os.version",
            "facts.disk.encrypted",
            "facts.packages.name",
            "owner",
            "facts.in.not",
            "_x-1",
        ]);
        self.out.push_str(field);
    }

    fn comparison(&mut self) {
        self.field();
        match self.rng.below(9) {
            0 => {
                self.space();
                self.keyword("exists");
            }
            1 | 2 => {
                if self.rng.chance(2) {
                    self.space();
                    self.keyword("not");
                }
                self.space();
                self.keyword("in");
                self.space();
                self.out.push('[');
                let n = self.rng.below(4);
                for index in 0..n {
                    if index > 0 {
                        self.out.push(',');
                        if self.rng.chance(2) {
                            self.space();
                        }
                    }
                    self.value(true);
                }
                self.out.push(']');
            }
            3 => {
                self.space();
                self.keyword("within");
                self.space();
                let path = *self.rng.pick(&["'st-marys'", "\"st-marys/icu\"", "\"a/b/c\""]);
                self.out.push_str(path);
            }
            4 => {
                self.out.push_str(" ~ ");
                self.string();
            }
            _ => {
                let op = *self.rng.pick(&["=", "!=", "<", "<=", ">", ">="]);
                if self.rng.chance(2) {
                    self.space();
                }
                self.out.push_str(op);
                if self.rng.chance(2) {
                    self.space();
                }
                self.value(op == "=" || op == "!=");
            }
        }
    }

    fn value(&mut self, any_type: bool) {
        let kinds = if any_type { 6 } else { 3 };
        match self.rng.below(kinds) {
            0 => self.string(),
            1 => {
                let n = self.rng.next() % 100_000;
                if self.rng.chance(3) {
                    self.out.push('-');
                }
                self.out.push_str(&n.to_string());
            }
            2 => {
                let whole = self.rng.next() % 1000;
                let fraction = self.rng.next() % 1000;
                self.out.push_str(&format!("{whole}.{fraction}"));
            }
            3 => self.keyword("true"),
            4 => self.keyword("false"),
            _ => self.keyword("null"),
        }
    }

    fn string(&mut self) {
        let quote = if self.rng.chance(2) { '"' } else { '\'' };
        self.out.push(quote);
        for _ in 0..self.rng.below(8) {
            let piece = match self.rng.below(12) {
                0 => "\\\"".to_owned(),
                1 => "\\'".to_owned(),
                2 => "\\\\".to_owned(),
                3 => "\\n".to_owned(),
                4 => "\\t".to_owned(),
                5 => format!(
                    "\\u{{{:x}}}",
                    self.rng.pick(&[0x1b_u32, 0x7, 0xe9, 0x1f600, 0x202e, 0x0d])
                ),
                6 => "é".to_owned(),
                7 => "*".to_owned(),
                8 => if quote == '"' { "'" } else { "\"" }.to_owned(),
                _ => self
                    .rng
                    .pick(&["22.04", "a", " ", "st-marys", "9.10", "~rc1"])
                    .to_string(),
            };
            self.out.push_str(&piece);
        }
        self.out.push(quote);
    }
}

fn sample_devices() -> Vec<Value> {
    vec![
        pump(),
        json!({}),
        json!({ "site": "st-marys", "class": "it", "criticality": "5", "phi": false, "tags": [],
                "hostname": "é*", "facts": { "os": { "version": "22.04" }, "in": { "not": 1.5 } } }),
        json!({ "site": "a/b/c/d", "owner": null, "tags": ["22.04", 3, true, null], "_x-1": "9.10" }),
    ]
}

#[test]
fn random_selectors_round_trip_through_display() {
    let devices = sample_devices();
    for seed in 1..=1500_u64 {
        let mut generator = Generator {
            rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            out: String::new(),
        };
        generator.expr(0);
        let text = generator.out;
        let selector = parse(&text);
        let canonical = selector.to_string();
        let reparsed = parse(&canonical);
        assert_eq!(reparsed, selector, "seed {seed}: {text:?} -> {canonical:?}");
        assert_eq!(
            reparsed.to_string(),
            canonical,
            "seed {seed}: canonical form is not stable"
        );
        assert!(!has_unsafe_chars(&canonical), "seed {seed}: {canonical:?}");
        assert_eq!(reparsed.fields(), selector.fields());
        // Three-valued logic: a device is never selected by both a selector and its negation.
        let negated = parse(&format!("not ({canonical})"));
        for device in &devices {
            assert!(
                !(selector.matches(device) && negated.matches(device)),
                "seed {seed}: {canonical:?} and its negation both select {device}"
            );
        }
    }
}

#[test]
fn mutated_input_never_panics_and_errors_are_safe() {
    let inserts = [
        "\u{1b}", "\u{0}", "\"", "'", "(", ")", "[", "]", ",", "==", "\\", "\\u{", "é", ".", "-", "not ",
        " and", "\u{202e}", "9",
    ];
    for seed in 1..=3000_u64 {
        let mut generator = Generator {
            rng: Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d)),
            out: String::new(),
        };
        generator.expr(0);
        let mut text: Vec<char> = generator.out.chars().collect();
        for _ in 0..=generator.rng.below(3) {
            let at = generator.rng.below(text.len() + 1);
            if generator.rng.chance(2) && at < text.len() {
                text.remove(at);
            } else {
                let insert = *generator.rng.pick(&inserts);
                for (offset, c) in insert.chars().enumerate() {
                    text.insert(at + offset, c);
                }
            }
        }
        let text: String = text.into_iter().collect();
        match Selector::parse(&text) {
            Ok(selector) => assert_eq!(parse(&selector.to_string()), selector, "{text:?}"),
            Err(err) => {
                assert!(err.position <= text.chars().count(), "{text:?}: {err:?}");
                let message = err.to_string();
                assert!(!has_unsafe_chars(&message), "{text:?}: {message:?}");
                let caret = caret_line(&text, &err);
                assert!(
                    !has_unsafe_chars(&caret.replacen('\n', " ", 1)),
                    "{text:?}: {caret:?}"
                );
                assert!(caret.ends_with('^'));
            }
        }
    }
}
