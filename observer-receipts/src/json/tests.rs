//! Tests of [`super`].
use super::*;
use serde_json::json;

fn refuse(text: &str) -> JsonError {
    match parse_strict(text.as_bytes()) {
        Ok(value) => panic!("{text:?} was accepted as {value}"),
        Err(e) => e,
    }
}

fn accept(text: &str) -> Value {
    parse_strict(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?} refused: {e}"))
}

#[test]
fn duplicate_member_at_depth_three_is_refused_with_its_name_and_place() {
    let text = "{\"a\": {\"b\": {\"c\": 1,\n \"c\": 2}}}";
    let err = refuse(text);
    assert_eq!(
        err,
        JsonError::DuplicateMember {
            name: "c".into(),
            path: "/a/b/c".into(),
            at: Position {
                offset: text.rfind("\"c\"").unwrap(),
                line: 2,
                column: 2,
            },
        }
    );
    let message = err.to_string();
    assert!(
        message.contains("\"c\"") && message.contains("/a/b/c"),
        "{message}"
    );
}

#[test]
fn duplicates_are_compared_after_escape_decoding() {
    let err = refuse(r#"[0, {"x": [{"é": 1, "\u00e9": 2}]}]"#);
    assert!(
        matches!(&err, JsonError::DuplicateMember { name, path, .. }
            if name == "é" && path == "/1/x/0/é"),
        "{err:?}"
    );
}

#[test]
fn duplicate_pointer_escapes_tilde_and_slash() {
    let err = refuse(r#"{"a/b": {"~": 1, "~": 2}}"#);
    assert!(
        matches!(&err, JsonError::DuplicateMember { path, .. } if path == "/a~1b/~0"),
        "{err:?}"
    );
}

#[test]
fn same_name_in_sibling_objects_is_not_a_duplicate() {
    assert_eq!(
        accept(r#"{"a": {"x": 1}, "b": {"x": 2}}"#),
        json!({"a": {"x": 1}, "b": {"x": 2}})
    );
}

#[test]
fn integers_are_refused_outside_the_safe_range_on_their_digits() {
    assert_eq!(accept("9007199254740991"), json!(9_007_199_254_740_991u64));
    assert_eq!(
        accept("-9007199254740991"),
        json!(-9_007_199_254_740_991i64)
    );
    for text in [
        "9007199254740992",
        "-9007199254740992",
        "9007199254740993",
        "18446744073709551616",
        "100000000000000000000",
        "-123456789012345678901234567890",
    ] {
        assert!(
            matches!(refuse(text), JsonError::UnsafeInteger { ref literal, .. } if literal == text),
            "{text}"
        );
    }
    let err = refuse(r#"{"outer": [1, {"n": 9007199254740992}]}"#);
    assert!(
        matches!(&err, JsonError::UnsafeInteger { path, at, .. }
            if path == "/outer/1/n" && at.offset == 20),
        "{err:?}"
    );
}

#[test]
fn float_literals_are_doubles_and_must_be_finite() {
    assert_eq!(accept("1e20"), json!(1e20));
    assert_eq!(accept("9007199254740993.0"), json!(9_007_199_254_740_992.0));
    assert_eq!(accept("1e-400"), json!(0.0));
    assert_eq!(accept("-0").as_f64(), Some(0.0));
    assert!(accept("-0").as_f64().unwrap().is_sign_negative());
    for text in ["1e400", "-1e400", "[1.7976931348623159e308]"] {
        assert!(
            matches!(refuse(text), JsonError::NonFiniteNumber { .. }),
            "{text}"
        );
    }
    for text in ["NaN", "Infinity", "-Infinity", "+1", ".5"] {
        assert!(
            matches!(
                refuse(text),
                JsonError::Syntax { .. } | JsonError::InvalidNumber { .. }
            ),
            "{text}"
        );
    }
}

#[test]
fn malformed_numbers_are_refused() {
    for text in ["01", "-01", "1.", "1.e5", "1e", "1e+", "-", "-a", "0x10"] {
        let err = refuse(text);
        assert!(
            matches!(
                err,
                JsonError::InvalidNumber { .. } | JsonError::TrailingData { .. }
            ),
            "{text}: {err:?}"
        );
    }
}

/// Floats must be correctly rounded: serde_json's default reader is
/// not (without its `float_roundtrip` feature it reads
/// 333333333.33333329 one ulp off), and a verifier that reads a
/// different double than the signer computes different canonical bytes.
#[test]
fn floats_are_read_correctly_rounded() {
    let mut checked = 0;
    for text in [
        "0.1",
        "1E2",
        "1e-7",
        "4.50",
        "333333333.33333329",
        "1424953923781206.25",
        "2.2250738585072011e-308",
        "1.7976931348623157e308",
        "5e-324",
        "0.30000000000000004",
    ] {
        let expected: f64 = text.parse().unwrap();
        assert_eq!(
            accept(text).as_f64().map(f64::to_bits),
            Some(expected.to_bits()),
            "{text}"
        );
        checked += 1;
    }
    assert_eq!(checked, 10);
    assert_eq!(accept("0"), json!(0));
    assert_eq!(accept("-1"), json!(-1));
    assert!(accept("7").is_u64() && accept("-7").is_i64() && accept("7.0").is_f64());
}

#[test]
fn invalid_utf8_is_refused_with_its_offset() {
    let err = parse_strict(b"{\"a\": \"x\xff\"}").unwrap_err();
    assert!(
        matches!(err, JsonError::InvalidUtf8 { at } if at.offset == 8),
        "{err:?}"
    );
    // An overlong encoding of '/' and an encoded surrogate are not UTF-8.
    assert!(parse_strict(b"\"\xc0\xaf\"").is_err());
    assert!(parse_strict(b"\"\xed\xa0\x80\"").is_err());
}

#[test]
fn lone_surrogates_are_refused_and_pairs_decoded() {
    assert_eq!(accept(r#""\ud83d\ude00""#), json!("😀"));
    assert_eq!(accept(r#""\uD83D\uDE00""#), json!("😀"));
    for text in [
        r#""\ud800""#,
        r#""\udc00""#,
        r#""\ud800x""#,
        r#""\ud800\u0041""#,
        r#""\ude00\ud83d""#,
        r#""\ud800\ud800""#,
    ] {
        assert!(
            matches!(refuse(text), JsonError::LoneSurrogate { at } if at.offset == 1),
            "{text}"
        );
    }
}

#[test]
fn escapes_decode_and_bad_escapes_are_refused() {
    assert_eq!(
        accept(r#""\"\\\/\b\f\n\r\t\u0000\u001F\u00e9""#),
        json!("\"\\/\u{8}\u{c}\n\r\t\u{0}\u{1f}é")
    );
    for text in [r#""\x41""#, r#""\u12""#, r#""\u12G4""#, r#""\'""#] {
        assert!(
            matches!(refuse(text), JsonError::InvalidEscape { .. }),
            "{text}"
        );
    }
}

/// Strings are scanned eight bytes at a time; a quote, backslash or
/// control character must be found at every offset within a word.
#[test]
fn string_run_ends_are_found_at_every_word_offset() {
    let mut checked = 0;
    for prefix in ["", "é😀", "\u{7f}\u{80}"] {
        for len in 0..24 {
            let run: String = prefix
                .chars()
                .chain(std::iter::repeat('a'))
                .take(len)
                .collect();
            let tail = "b".repeat(17);
            assert_eq!(accept(&format!("\"{run}\"")), json!(run));
            assert_eq!(
                accept(&format!("\"{run}\\n{tail}\"")),
                json!(format!("{run}\n{tail}"))
            );
            let err = refuse(&format!("\"{run}\u{1}{tail}\""));
            assert!(
                matches!(err, JsonError::ControlCharacter { at } if at.offset == 1 + run.len()),
                "{run:?}: {err:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 72);
}

#[test]
fn raw_control_characters_in_strings_are_refused() {
    let err = refuse("\"a\tb\"");
    assert!(
        matches!(err, JsonError::ControlCharacter { at } if at.offset == 2),
        "{err:?}"
    );
    assert!(matches!(
        refuse("\"a\nb\""),
        JsonError::ControlCharacter { .. }
    ));
    // DEL and U+2028 are not control characters to JSON.
    assert_eq!(accept("\"\u{7f}\u{2028}\""), json!("\u{7f}\u{2028}"));
}

#[test]
fn trailing_data_is_refused_but_trailing_whitespace_is_not() {
    assert_eq!(accept(" {} \r\n\t"), json!({}));
    for (text, offset) in [("{} {}", 3), ("1 2", 2), ("{}x", 2), ("\"a\"\"b\"", 3)] {
        assert!(
            matches!(refuse(text), JsonError::TrailingData { at } if at.offset == offset),
            "{text}"
        );
    }
}

#[test]
fn syntax_errors_are_refused() {
    for text in [
        "",
        "   ",
        "{",
        "[",
        "[1,]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{a:1}",
        "{'a':1}",
        "[1 2]",
        "tru",
        "nul",
        "\"open",
        "// comment\n{}",
        "\u{feff}{}",
        "{\"a\":1 /* c */}",
    ] {
        let err = refuse(text);
        assert!(
            matches!(
                err,
                JsonError::Syntax { .. }
                    | JsonError::UnexpectedEnd { .. }
                    | JsonError::InvalidNumber { .. }
            ),
            "{text:?}: {err:?}"
        );
    }
}

#[test]
fn errors_carry_line_and_column() {
    let err = refuse("{\n  \"a\": 1,\n  \"b\": tru\n}");
    assert_eq!(
        err,
        JsonError::Syntax {
            expected: "true",
            at: Position {
                offset: 19,
                line: 3,
                column: 8
            }
        }
    );
    assert_eq!(
        err.to_string(),
        "syntax error at line 3, column 8 (byte 19): expected true"
    );
}

#[test]
fn nesting_is_limited() {
    let nested = |depth: usize| "[".repeat(depth) + &"]".repeat(depth);
    assert!(parse_strict(nested(MAX_DEPTH).as_bytes()).is_ok());
    let err = refuse(&nested(MAX_DEPTH + 1));
    assert!(
        matches!(err, JsonError::TooDeep { limit, at } if limit == MAX_DEPTH && at.offset == MAX_DEPTH),
        "{err:?}"
    );
    let objects = "{\"a\":".repeat(MAX_DEPTH + 1) + "1" + &"}".repeat(MAX_DEPTH + 1);
    assert!(matches!(refuse(&objects), JsonError::TooDeep { .. }));
}

#[test]
fn asqav_25_input_texts_are_refused_as_unsafe_integers() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/vectors/receipts/conformance/vectors.json"
    );
    let file = parse_strict(&std::fs::read(path).unwrap()).unwrap();
    let mut refused = Vec::new();
    for vector in file["vectors"].as_array().unwrap() {
        if let Some(text) = vector.get("input_text").and_then(Value::as_str) {
            let err = refuse(text);
            assert!(
                matches!(&err, JsonError::UnsafeInteger { path, .. } if path == "/n"),
                "{}: {err:?}",
                vector["name"]
            );
            assert_eq!(vector["expected"]["refused_at"], "parse");
            refused.push(vector["name"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        refused,
        [
            "asqav-25-number-above-safe-range-rejected",
            "asqav-25-number-above-safe-range-boundary-rejected"
        ]
    );
}
