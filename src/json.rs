//! A JSON decoder that builds its values through a [`Sink`]: the bindings'
//! sink makes the final Python objects directly (one pass over the bytes,
//! no intermediate tree), so Redis presence records are decoded once, in
//! Rust, instead of through `json.loads` and then copied into records.
//!
//! It accepts what Python's `json.loads` accepts for the JSON that
//! tenantry writes (`json.JSONEncoder(ensure_ascii=False)`): RFC 8259 plus
//! `NaN`, `Infinity` and `-Infinity` (Python writes them for such floats);
//! strings must be valid UTF-8 without raw control characters, and
//! `\u` escapes must pair their surrogates (a lone one cannot be a Rust or
//! UTF-8 string; Python's encoder never writes one to Redis). Duplicate
//! object keys reach the sink in order (a dict keeps the last, as Python).

use std::fmt;

/// Deepest nesting of arrays and objects decoded (Python's decoder stops
/// near its recursion limit, 1,000; metas are small and shallow).
pub const MAX_DEPTH: usize = 512;

/// Builds the decoded values.
pub trait Sink {
    type Value;
    type Object;
    type Array;
    type Error;

    fn null(&mut self) -> Result<Self::Value, Self::Error>;
    fn boolean(&mut self, value: bool) -> Result<Self::Value, Self::Error>;
    fn int(&mut self, value: i64) -> Result<Self::Value, Self::Error>;
    /// An integer outside `i64`: its decimal digits (with a leading `-`).
    fn big_int(&mut self, digits: &str) -> Result<Self::Value, Self::Error>;
    fn float(&mut self, value: f64) -> Result<Self::Value, Self::Error>;
    fn string(&mut self, value: &str) -> Result<Self::Value, Self::Error>;
    fn object(&mut self) -> Result<Self::Object, Self::Error>;
    fn insert(
        &mut self,
        object: &mut Self::Object,
        key: &str,
        value: Self::Value,
    ) -> Result<(), Self::Error>;
    fn end_object(&mut self, object: Self::Object) -> Result<Self::Value, Self::Error>;
    fn array(&mut self) -> Result<Self::Array, Self::Error>;
    fn push(&mut self, array: &mut Self::Array, value: Self::Value) -> Result<(), Self::Error>;
    fn end_array(&mut self, array: Self::Array) -> Result<Self::Value, Self::Error>;
}

/// Why a decode failed: the input (at a byte offset), or the sink.
#[derive(Debug, PartialEq)]
pub enum DecodeError<E> {
    Syntax { offset: usize, what: &'static str },
    Sink(E),
}

impl<E: fmt::Display> fmt::Display for DecodeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Syntax { offset, what } => write!(f, "{what} at byte {offset}"),
            DecodeError::Sink(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for DecodeError<E> {}

/// Decodes one JSON value (surrounding whitespace allowed, nothing else).
pub fn decode<S: Sink>(input: &[u8], sink: &mut S) -> Result<S::Value, DecodeError<S::Error>> {
    let text = std::str::from_utf8(input).map_err(|e| DecodeError::Syntax {
        offset: e.valid_up_to(),
        what: "invalid UTF-8",
    })?;
    let mut parser = Parser {
        text,
        bytes: input,
        pos: 0,
        scratch: String::new(),
    };
    parser.skip_ws();
    let value = parser.value(sink, 0)?;
    parser.skip_ws();
    if parser.pos != input.len() {
        return Err(parser.error("extra data after the value"));
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Reused for strings with escapes.
    scratch: String,
}

impl<'a> Parser<'a> {
    fn error<E>(&self, what: &'static str) -> DecodeError<E> {
        DecodeError::Syntax {
            offset: self.pos,
            what,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn literal<E>(&mut self, word: &'static str) -> Result<(), DecodeError<E>> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("invalid literal"))
        }
    }

    fn value<S: Sink>(
        &mut self,
        sink: &mut S,
        depth: usize,
    ) -> Result<S::Value, DecodeError<S::Error>> {
        let sunk = |r: Result<S::Value, S::Error>| r.map_err(DecodeError::Sink);
        match self.peek() {
            None => Err(self.error("expected a value, found the end")),
            Some(b'{') => self.object(sink, depth + 1),
            Some(b'[') => self.array(sink, depth + 1),
            Some(b'"') => {
                let s = self.string()?;
                sunk(sink.string(s.as_str(&self.scratch)))
            }
            Some(b'n') => {
                self.literal("null")?;
                sunk(sink.null())
            }
            Some(b't') => {
                self.literal("true")?;
                sunk(sink.boolean(true))
            }
            Some(b'f') => {
                self.literal("false")?;
                sunk(sink.boolean(false))
            }
            Some(b'N') => {
                self.literal("NaN")?;
                sunk(sink.float(f64::NAN))
            }
            Some(b'I') => {
                self.literal("Infinity")?;
                sunk(sink.float(f64::INFINITY))
            }
            Some(b'-') if self.text[self.pos..].starts_with("-Infinity") => {
                self.pos += "-Infinity".len();
                sunk(sink.float(f64::NEG_INFINITY))
            }
            Some(b'-' | b'0'..=b'9') => self.number(sink),
            Some(_) => Err(self.error("expected a value")),
        }
    }

    fn object<S: Sink>(
        &mut self,
        sink: &mut S,
        depth: usize,
    ) -> Result<S::Value, DecodeError<S::Error>> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.pos += 1; // {
        let mut object = sink.object().map_err(DecodeError::Sink)?;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return sink.end_object(object).map_err(DecodeError::Sink);
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key"));
            }
            let key = self.string()?;
            // The key may live in the scratch buffer, which the value's own
            // strings reuse: keep an owned copy only then (rare: escapes).
            let owned;
            let key: &str = match key {
                Text::Input(s) => s,
                Text::Scratch => {
                    owned = self.scratch.clone();
                    &owned
                }
            };
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':'"));
            }
            self.pos += 1;
            self.skip_ws();
            let value = self.value(sink, depth)?;
            sink.insert(&mut object, key, value)
                .map_err(DecodeError::Sink)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    return sink.end_object(object).map_err(DecodeError::Sink);
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn array<S: Sink>(
        &mut self,
        sink: &mut S,
        depth: usize,
    ) -> Result<S::Value, DecodeError<S::Error>> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.pos += 1; // [
        let mut array = sink.array().map_err(DecodeError::Sink)?;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return sink.end_array(array).map_err(DecodeError::Sink);
        }
        loop {
            let value = self.value(sink, depth)?;
            sink.push(&mut array, value).map_err(DecodeError::Sink)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b']') => {
                    self.pos += 1;
                    return sink.end_array(array).map_err(DecodeError::Sink);
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    /// A string at `"`: a slice of the input when it has no escapes, else
    /// decoded into the scratch buffer.
    fn string<E>(&mut self) -> Result<Text<'a>, DecodeError<E>> {
        self.pos += 1; // "
        let start = self.pos;
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    let s = &self.text[start..self.pos];
                    self.pos += 1;
                    return Ok(Text::Input(s));
                }
                Some(b'\\') => break,
                Some(0..=0x1f) => return Err(self.error("control character in a string")),
                Some(_) => self.pos += 1,
            }
        }
        self.scratch.clear();
        self.scratch.push_str(&self.text[start..self.pos]);
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Text::Scratch);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let c = self.unicode_escape()?;
                            self.scratch.push(c);
                            continue;
                        }
                        _ => return Err(self.error("invalid escape")),
                    };
                    self.pos += 1;
                    self.scratch.push(c);
                }
                Some(0..=0x1f) => return Err(self.error("control character in a string")),
                Some(_) => {
                    // Copy the run up to the next quote or backslash.
                    let run = self.pos;
                    while let Some(b) = self.peek() {
                        if b == b'"' || b == b'\\' || b < 0x20 {
                            break;
                        }
                        self.pos += 1;
                    }
                    self.scratch.push_str(&self.text[run..self.pos]);
                }
            }
        }
    }

    /// The character of a `\uXXXX` escape (after `\u`), joining a
    /// surrogate pair.
    fn unicode_escape<E>(&mut self) -> Result<char, DecodeError<E>> {
        let high = self.hex4()?;
        let code = match high {
            0xD800..=0xDBFF => {
                if !self.text[self.pos..].starts_with("\\u") {
                    return Err(self.error("unpaired surrogate escape"));
                }
                self.pos += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(self.error("unpaired surrogate escape"));
                }
                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.error("unpaired surrogate escape")),
            c => c,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))
    }

    fn hex4<E>(&mut self) -> Result<u32, DecodeError<E>> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("invalid \\u escape"))?;
        let mut code = 0u32;
        for &d in digits {
            let v = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.error("invalid \\u escape"))?;
            code = code * 16 + v;
        }
        self.pos += 4;
        Ok(code)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number<S: Sink>(&mut self, sink: &mut S) -> Result<S::Value, DecodeError<S::Error>> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("invalid number")),
        }
        let mut float = false;
        if self.peek() == Some(b'.') && matches!(self.bytes.get(self.pos + 1), Some(b'0'..=b'9')) {
            float = true;
            self.pos += 1;
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            let mark = self.pos;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if matches!(self.peek(), Some(b'0'..=b'9')) {
                float = true;
                self.digits();
            } else {
                // Not an exponent after all: "1e" is "1" then extra data.
                self.pos = mark;
            }
        }
        let text = &self.text[start..self.pos];
        let value = if float {
            let v: f64 = text.parse().map_err(|_| self.error("invalid number"))?;
            sink.float(v)
        } else if let Ok(v) = text.parse::<i64>() {
            sink.int(v)
        } else {
            sink.big_int(text)
        };
        value.map_err(DecodeError::Sink)
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }
}

/// Where a decoded string is.
enum Text<'a> {
    Input(&'a str),
    Scratch,
}

impl<'a> Text<'a> {
    fn as_str<'s>(&self, scratch: &'s str) -> &'s str
    where
        'a: 's,
    {
        match self {
            Text::Input(s) => s,
            Text::Scratch => scratch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree, for the tests.
    #[derive(Debug, PartialEq)]
    enum Json {
        Null,
        Bool(bool),
        Int(i64),
        Big(String),
        Float(f64),
        Str(String),
        Array(Vec<Json>),
        Object(Vec<(String, Json)>),
    }

    struct Tree;

    impl Sink for Tree {
        type Value = Json;
        type Object = Vec<(String, Json)>;
        type Array = Vec<Json>;
        type Error = String;

        fn null(&mut self) -> Result<Json, String> {
            Ok(Json::Null)
        }
        fn boolean(&mut self, v: bool) -> Result<Json, String> {
            Ok(Json::Bool(v))
        }
        fn int(&mut self, v: i64) -> Result<Json, String> {
            Ok(Json::Int(v))
        }
        fn big_int(&mut self, d: &str) -> Result<Json, String> {
            Ok(Json::Big(d.to_owned()))
        }
        fn float(&mut self, v: f64) -> Result<Json, String> {
            Ok(Json::Float(v))
        }
        fn string(&mut self, v: &str) -> Result<Json, String> {
            Ok(Json::Str(v.to_owned()))
        }
        fn object(&mut self) -> Result<Self::Object, String> {
            Ok(Vec::new())
        }
        fn insert(&mut self, o: &mut Self::Object, k: &str, v: Json) -> Result<(), String> {
            if k == "refuse" {
                return Err("refused".into());
            }
            o.push((k.to_owned(), v));
            Ok(())
        }
        fn end_object(&mut self, o: Self::Object) -> Result<Json, String> {
            Ok(Json::Object(o))
        }
        fn array(&mut self) -> Result<Self::Array, String> {
            Ok(Vec::new())
        }
        fn push(&mut self, a: &mut Self::Array, v: Json) -> Result<(), String> {
            a.push(v);
            Ok(())
        }
        fn end_array(&mut self, a: Self::Array) -> Result<Json, String> {
            Ok(Json::Array(a))
        }
    }

    fn ok(s: &str) -> Json {
        decode(s.as_bytes(), &mut Tree).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn bad(s: &str) -> String {
        match decode(s.as_bytes(), &mut Tree) {
            Err(DecodeError::Syntax { what, .. }) => what.to_owned(),
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn scalars() {
        assert_eq!(ok(" null "), Json::Null);
        assert_eq!(ok("true"), Json::Bool(true));
        assert_eq!(ok("false"), Json::Bool(false));
        assert_eq!(ok("0"), Json::Int(0));
        assert_eq!(ok("-0"), Json::Int(0));
        assert_eq!(ok("-12"), Json::Int(-12));
        assert_eq!(ok("9223372036854775807"), Json::Int(i64::MAX));
        assert_eq!(ok("-9223372036854775808"), Json::Int(i64::MIN));
        assert_eq!(
            ok("99999999999999999999"),
            Json::Big("99999999999999999999".into())
        );
        assert_eq!(ok("1.5"), Json::Float(1.5));
        assert_eq!(ok("-2.5e3"), Json::Float(-2500.0));
        assert_eq!(ok("1E2"), Json::Float(100.0));
        assert_eq!(ok("1e400"), Json::Float(f64::INFINITY));
        assert_eq!(ok("0.1"), Json::Float(0.1));
        assert_eq!(ok("Infinity"), Json::Float(f64::INFINITY));
        assert_eq!(ok("-Infinity"), Json::Float(f64::NEG_INFINITY));
        assert!(matches!(ok("NaN"), Json::Float(f) if f.is_nan()));
    }

    #[test]
    fn strings() {
        assert_eq!(ok(r#""""#), Json::Str(String::new()));
        assert_eq!(ok(r#""Zoë 🎉""#), Json::Str("Zoë 🎉".into()));
        assert_eq!(
            ok(r#""a\"b\\c\/d\b\f\n\r\te""#),
            Json::Str("a\"b\\c/d\u{8}\u{c}\n\r\te".into())
        );
        assert_eq!(ok(r#""\u00e9\u20AC""#), Json::Str("é€".into()));
        assert_eq!(ok(r#""x\ud83c\udf89y""#), Json::Str("x🎉y".into()));
        assert_eq!(ok(r#""\u0000""#), Json::Str("\0".into()));
    }

    #[test]
    fn containers() {
        assert_eq!(ok("[]"), Json::Array(vec![]));
        assert_eq!(ok("{}"), Json::Object(vec![]));
        assert_eq!(
            ok(r#" { "a" : [1, {"b": null}] , "c\n": "d", "a": 2 } "#),
            Json::Object(vec![
                (
                    "a".into(),
                    Json::Array(vec![
                        Json::Int(1),
                        Json::Object(vec![("b".into(), Json::Null)])
                    ])
                ),
                ("c\n".into(), Json::Str("d".into())),
                ("a".into(), Json::Int(2)),
            ])
        );
        // An escaped key followed by an escaped value: each keeps its text.
        assert_eq!(
            ok(r#"{"k\u00e9": "v\u00e8"}"#),
            Json::Object(vec![("ké".into(), Json::Str("vè".into()))])
        );
        let deep = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(matches!(ok(&deep), Json::Array(_)));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for s in [
            "",
            " ",
            "nul",
            "tru",
            "[",
            "[1,",
            "[1,]",
            "{",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{a:1}"#,
            r#"{"a":1,}"#,
            "01",
            "1.",
            ".5",
            "-",
            "+1",
            "1e",
            "1 2",
            "\"abc",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"a\u{1}b\"",
            "[1]x",
            "Inf",
            "-Inf",
            "nan",
        ] {
            bad(s);
        }
        assert_eq!(bad("\"\\ud800\""), "unpaired surrogate escape");
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(bad(&deep), "nested too deeply");
        assert_eq!(
            decode(b"\"\xff\"", &mut Tree),
            Err(DecodeError::Syntax {
                offset: 1,
                what: "invalid UTF-8"
            })
        );
    }

    #[test]
    fn sink_errors_come_back() {
        assert_eq!(
            decode(br#"{"refuse": 1}"#, &mut Tree),
            Err(DecodeError::Sink("refused".to_owned()))
        );
    }
}
