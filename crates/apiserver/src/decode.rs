//! Bounded decoding of request bodies (JSON and YAML) into `serde_json::Value`.
//!
//! A body is at most [`crate::rest::MAX_BODY_BYTES`] long, but its shape can still cost far
//! more than its size: libyaml's scanner is quadratic in the flow nesting depth (a 100k-level
//! `[[[…` costs tens of seconds of CPU), and a few megabytes of `[0,0,0,…]` are a million
//! values. Every body the API server reads goes through [`json`] or [`yaml`], which refuse,
//! as soon as they see it:
//!
//! - a nesting deeper than [`MAX_DEPTH`] (real objects, CRD schemas included, stay far
//!   below);
//! - more than [`MAX_NODES`] values (scalars and containers);
//! - for YAML, before libyaml sees the text: a flow or block nesting deeper than
//!   [`MAX_DEPTH`], or more than [`MAX_ALIASES`] alias references; and while decoding,
//!   more values than the text has bytes (only alias expansion, the "billion laughs", makes
//!   that many).
//!
//! The cost of a refused body is bounded by the limits, not by its size or shape.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The deepest nesting of arrays and objects a body may have.
pub const MAX_DEPTH: usize = 100;
/// The most values (scalars, arrays, objects, keys not counted) a body may hold.
pub const MAX_NODES: usize = 250_000;
/// The most YAML alias references (`*name`) a body may hold.
pub const MAX_ALIASES: usize = 100;

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("the body is nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// More than [`MAX_NODES`] values.
    #[error("the body holds more than {MAX_NODES} values")]
    TooManyNodes,
    /// More than [`MAX_ALIASES`] YAML aliases.
    #[error("the body holds more than {MAX_ALIASES} YAML aliases")]
    TooManyAliases,
    /// Not valid JSON or YAML (the parser's message).
    #[error("{0}")]
    Syntax(String),
}

impl DecodeError {
    /// Whether the body was refused for its shape (a limit), not its syntax.
    pub fn is_limit(&self) -> bool {
        !matches!(self, DecodeError::Syntax(_))
    }
}

/// Counts nodes and depth while building a `Value`; fails at the first limit passed.
struct Budget {
    nodes: usize,
    limit: usize,
    depth: usize,
    hit: Option<DecodeError>,
}

impl Budget {
    fn new(limit: usize) -> Budget {
        Budget {
            nodes: 0,
            limit,
            depth: 0,
            hit: None,
        }
    }

    /// A parse's result: on an error, the limit it hit if it hit one, else the syntax error.
    fn outcome<E: std::fmt::Display>(
        &mut self,
        result: Result<Value, E>,
    ) -> Result<Value, DecodeError> {
        result.map_err(|e| {
            self.hit
                .take()
                .unwrap_or_else(|| DecodeError::Syntax(e.to_string()))
        })
    }

    fn node<E: serde::de::Error>(&mut self) -> Result<(), E> {
        self.nodes += 1;
        if self.nodes > self.limit {
            self.hit = Some(DecodeError::TooManyNodes);
            return Err(E::custom(DecodeError::TooManyNodes));
        }
        Ok(())
    }

    fn enter<E: serde::de::Error>(&mut self) -> Result<(), E> {
        self.node()?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.hit = Some(DecodeError::TooDeep);
            return Err(E::custom(DecodeError::TooDeep));
        }
        Ok(())
    }
}

struct Seed<'b>(&'b mut Budget);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor(self.0))
    }
}

struct ValueVisitor<'b>(&'b mut Budget);

impl<'de> Visitor<'de> for ValueVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.0.node()?;
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.0.node()?;
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.0.node()?;
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.0.node()?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.0.node()?;
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.0.node()?;
        Ok(Value::String(v))
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.0.node()?;
        Ok(Value::Null)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.0.node()?;
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Seed(self.0).deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.enter()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Seed(self.0))? {
            out.push(v);
        }
        self.0.depth -= 1;
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.0.enter()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let v = map.next_value_seed(Seed(self.0))?;
            out.insert(key, v);
        }
        self.0.depth -= 1;
        Ok(Value::Object(out))
    }
}

/// Object keys: strings (YAML keys that are numbers or booleans become their text, as
/// upstream's YAML-to-JSON conversion does).
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map key")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<String, E> {
        Ok("null".to_string())
    }
}

/// Decodes a JSON body within the limits.
pub fn json(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut budget = Budget::new(MAX_NODES);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = Seed(&mut budget).deserialize(&mut de).and_then(|v| {
        de.end()?;
        Ok(v)
    });
    budget.outcome(result)
}

/// Decodes a YAML body (one document; JSON is YAML) within the limits. The text is checked
/// for nesting and aliases before it is parsed.
pub fn yaml(bytes: &[u8]) -> Result<Value, DecodeError> {
    prescan_yaml(bytes)?;
    // Without aliases a document has fewer values than bytes; only alias expansion makes
    // more, so the text's length bounds it too (the "billion laughs" stops here).
    let mut budget = Budget::new(MAX_NODES.min(bytes.len() + 64));
    let de = serde_yaml::Deserializer::from_slice(bytes);
    let result = Seed(&mut budget).deserialize(de);
    budget.outcome(result)
}

/// Decodes JSON, or YAML if the body is not JSON (what the REST layer accepts for
/// `application/yaml` and for options bodies).
pub fn json_or_yaml(bytes: &[u8]) -> Result<Value, DecodeError> {
    match json(bytes) {
        Ok(v) => Ok(v),
        Err(e) if e.is_limit() => Err(e),
        Err(_) => yaml(bytes),
    }
}

/// A linear pass over YAML text that refuses, before libyaml parses it, a flow nesting
/// (`[`, `{`) or a block nesting (indentation steps and compact `- ` / `? ` entries on one
/// line) deeper than [`MAX_DEPTH`], and more than [`MAX_ALIASES`] aliases. Quoted scalars
/// and comments are skipped. It over-approximates (a block scalar's indented text counts as
/// indentation), which only matters for bodies no real object has.
fn prescan_yaml(bytes: &[u8]) -> Result<(), DecodeError> {
    let mut flow = 0usize;
    let mut aliases = 0usize;
    // Indentation columns of the open block levels.
    let mut indents: Vec<usize> = Vec::new();
    let mut i = 0;
    let n = bytes.len();
    while i < n {
        // Start of a line (outside flow context): measure the block nesting.
        let line_start = i;
        let mut col = 0;
        while i < n && bytes[i] == b' ' {
            i += 1;
            col += 1;
        }
        if flow == 0 && i < n && !matches!(bytes[i], b'\n' | b'\r' | b'#') {
            while indents.last().is_some_and(|&c| c >= col) {
                indents.pop();
            }
            indents.push(col);
            // Compact nested entries: `- - - x`, `? - x`.
            let mut j = i;
            let mut compact = 0;
            while j + 1 < n && matches!(bytes[j], b'-' | b'?') && bytes[j + 1] == b' ' {
                compact += 1;
                j += 2;
                while j < n && bytes[j] == b' ' {
                    j += 1;
                }
            }
            if indents.len() + compact > MAX_DEPTH {
                return Err(DecodeError::TooDeep);
            }
        }
        // The rest of the line.
        while i < n && bytes[i] != b'\n' {
            match bytes[i] {
                b'[' | b'{' => {
                    flow += 1;
                    if flow + indents.len() > MAX_DEPTH {
                        return Err(DecodeError::TooDeep);
                    }
                }
                b']' | b'}' => flow = flow.saturating_sub(1),
                b'*' if i == line_start
                    || matches!(
                        bytes[i - 1],
                        b' ' | b'\t' | b'[' | b'{' | b',' | b'-' | b':'
                    ) =>
                {
                    aliases += 1;
                    if aliases > MAX_ALIASES {
                        return Err(DecodeError::TooManyAliases);
                    }
                }
                b'#' if i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'\n') => {
                    while i < n && bytes[i] != b'\n' {
                        i += 1;
                    }
                    break;
                }
                q @ (b'"' | b'\'') => {
                    // A quoted scalar; may span lines.
                    i += 1;
                    while i < n {
                        if bytes[i] == b'\\' && q == b'"' {
                            i += 2;
                            continue;
                        }
                        if bytes[i] == q {
                            if q == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                                i += 2;
                                continue;
                            }
                            break;
                        }
                        i += 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[allow(clippy::disallowed_methods)] // measuring the decoder's own cost
    fn timed<T>(f: impl FnOnce() -> T) -> (T, std::time::Duration) {
        let started = std::time::Instant::now();
        let out = f();
        (out, started.elapsed())
    }

    /// The bound for refusing a hostile body in these tests: generous for debug builds on a
    /// busy machine, and still far below the tens of seconds the unbounded parser took. The
    /// release figure (well under 100 ms) is measured by `podvisor bench --only hostile`.
    const REFUSE_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

    #[test]
    fn ordinary_objects_decode_as_with_serde() {
        let text = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"a":"1"}},
            "spec":{"containers":[{"name":"c","image":"x","args":["a",1,2.5,true,null]}]}}"#;
        let want: Value = serde_json::from_str(text).unwrap();
        assert_eq!(json(text.as_bytes()).unwrap(), want);
        assert_eq!(yaml(text.as_bytes()).unwrap(), want);
        let y = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {a: \"1\"}\n\
                 spec:\n  containers:\n  - name: c\n    image: x\n    args: [a, 1, 2.5, true, null]\n";
        assert_eq!(yaml(y.as_bytes()).unwrap(), want);
        assert!(matches!(json(b"{"), Err(DecodeError::Syntax(_))));
        assert!(matches!(json(b"{} x"), Err(DecodeError::Syntax(_))));
    }

    /// 100k-level nesting, the attack of the report, in every form: refused fast.
    #[test]
    fn deep_nesting_is_refused_fast_in_json_and_yaml() {
        let depth = 100_000;
        let bodies: Vec<(String, Vec<u8>)> = vec![
            ("json array".into(), "[".repeat(depth).into_bytes()),
            ("json object".into(), "{\"a\":".repeat(depth).into_bytes()),
            ("yaml flow".into(), "[".repeat(depth).into_bytes()),
            ("yaml flow map".into(), "{a: ".repeat(depth).into_bytes()),
            ("yaml compact".into(), "- ".repeat(depth).into_bytes()),
            (
                "yaml block".into(),
                (0..2000)
                    .map(|i| format!("{}a:\n", " ".repeat(i)))
                    .collect::<String>()
                    .into_bytes(),
            ),
        ];
        for (what, body) in bodies {
            let decode = if what.starts_with("json") { json } else { yaml };
            let (r, took) = timed(|| decode(&body));
            assert_eq!(r, Err(DecodeError::TooDeep), "{what}");
            assert!(took < REFUSE_WITHIN, "{what}: {took:?}");
        }
    }

    #[test]
    fn too_many_values_are_refused() {
        let body = format!("[{}0]", "0,".repeat(MAX_NODES + 10));
        let (r, took) = timed(|| json(body.as_bytes()));
        assert_eq!(r, Err(DecodeError::TooManyNodes));
        assert!(took < REFUSE_WITHIN * 5, "{took:?}");
        let body = format!("[{}0]", "0,".repeat(MAX_NODES - 10));
        assert!(json(body.as_bytes()).is_ok());
    }

    /// The billion laughs: aliases that expand to more and more copies.
    #[test]
    fn alias_expansion_is_bounded() {
        let mut y = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            y.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let (r, took) = timed(|| yaml(y.as_bytes()));
        assert!(r.is_err(), "expanded {:?}", r.map(|_| ()));
        assert!(took < REFUSE_WITHIN, "{took:?}");
        // Many aliases, each cheap: refused by count before parsing.
        let y = format!("a: &a x\nb: [{}]\n", vec!["*a"; MAX_ALIASES + 1].join(", "));
        assert_eq!(yaml(y.as_bytes()), Err(DecodeError::TooManyAliases));
    }

    #[test]
    fn quoted_brackets_and_comments_do_not_count() {
        let y = format!(
            "a: \"{}\"\nb: '{}'\n# {}\nc: 1\n",
            "[".repeat(500),
            "{".repeat(500),
            "[".repeat(500)
        );
        let v = yaml(y.as_bytes()).unwrap();
        assert_eq!(v["c"], 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any nesting of arrays and objects past the limit, in JSON or YAML flow or block
        /// style, is refused as too deep, within the time bound.
        #[test]
        fn any_deep_body_is_refused_fast(
            shape in proptest::collection::vec(0u8..4, MAX_DEPTH + 1..5_000),
        ) {
            let mut j = String::new();
            let mut y = String::new();
            for s in &shape {
                match s {
                    0 => { j.push('['); y.push('['); }
                    1 => { j.push_str("{\"k\":"); y.push_str("{k: "); }
                    2 => { j.push('['); y.push_str("- "); }
                    _ => { j.push_str("{\"k\":"); y.push_str("[ "); }
                }
            }
            let (r, took) = timed(|| json(j.as_bytes()));
            prop_assert_eq!(r, Err(DecodeError::TooDeep));
            prop_assert!(took < REFUSE_WITHIN, "json {:?}", took);
            let (r, took) = timed(|| yaml(y.as_bytes()));
            prop_assert!(r.is_err(), "{:?}", r);
            prop_assert!(took < REFUSE_WITHIN, "yaml {:?}", took);
        }

        /// Arbitrary bytes never panic and never take long.
        #[test]
        fn arbitrary_bytes_are_decoded_or_refused_quickly(
            body in proptest::collection::vec(any::<u8>(), 0..20_000),
        ) {
            let (_, took) = timed(|| (json(&body), yaml(&body)));
            prop_assert!(took < REFUSE_WITHIN * 2, "{:?}", took);
        }

        /// Arbitrary text built from YAML's structural characters.
        #[test]
        fn yaml_punctuation_soup_is_bounded(
            body in proptest::collection::vec(
                proptest::sample::select(vec![b'[', b']', b'{', b'}', b'-', b' ', b'\n', b':', b'a', b',', b'*', b'&', b'?', b'|', b'>', b'"', b'\'', b'#']),
                0..50_000,
            ),
        ) {
            let (_, took) = timed(|| yaml(&body));
            prop_assert!(took < REFUSE_WITHIN, "{:?}", took);
        }
    }
}
