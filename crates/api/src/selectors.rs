//! Label and field selectors, parsed from their query-string forms.
//!
//! Label selector grammar (apimachinery `labels.Parse`): comma-separated requirements, each
//! `key`, `!key`, `key=value`, `key==value`, `key!=value`, `key in (a,b)`,
//! `key notin (a,b)`, `key>N` or `key<N`. All requirements must hold.
//!
//! Field selector grammar (`fields.ParseSelector`): comma-separated `field=value`,
//! `field==value` or `field!=value`; `\,`, `\=` and `\\` escape those characters in values.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as MetaLabelSelector;

/// A selector that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SelectorError {
    /// What is wrong, in upstream's words where possible.
    pub message: String,
}

fn err(message: impl Into<String>) -> SelectorError {
    SelectorError {
        message: message.into(),
    }
}

/// One label requirement operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelOp {
    /// The key exists.
    Exists,
    /// The key does not exist.
    DoesNotExist,
    /// The value is one of the values (`=`, `==`, `in`).
    In(Vec<String>),
    /// The key is absent or its value is not one of the values (`!=`, `notin`).
    NotIn(Vec<String>),
    /// The value is an integer greater than this.
    Gt(i64),
    /// The value is an integer less than this.
    Lt(i64),
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequirement {
    /// The label key.
    pub key: String,
    /// The operator and its values.
    pub op: LabelOp,
}

impl LabelRequirement {
    /// Whether `labels` satisfy the requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match &self.op {
            LabelOp::Exists => v.is_some(),
            LabelOp::DoesNotExist => v.is_none(),
            LabelOp::In(vals) => v.is_some_and(|v| vals.contains(v)),
            LabelOp::NotIn(vals) => v.is_none_or(|v| !vals.contains(v)),
            LabelOp::Gt(n) => v
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            LabelOp::Lt(n) => v
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        }
    }
}

/// A parsed label selector. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// The requirements; all must hold.
    pub requirements: Vec<LabelRequirement>,
}

impl LabelSelector {
    /// Parses the string form.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut p = Lexer {
            s: s.as_bytes(),
            i: 0,
        };
        let mut requirements = Vec::new();
        p.skip_ws();
        if p.eof() {
            return Ok(LabelSelector { requirements });
        }
        loop {
            requirements.push(p.requirement()?);
            p.skip_ws();
            if p.eof() {
                break;
            }
            if !p.eat(b',') {
                return Err(err(format!(
                    "unable to parse requirement: found '{}', expected: ','",
                    p.rest()
                )));
            }
        }
        Ok(LabelSelector { requirements })
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the selector has no requirements.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Converts a structured `metav1.LabelSelector`. `None` or an empty selector matches all.
    pub fn from_meta(sel: &MetaLabelSelector) -> Result<LabelSelector, SelectorError> {
        let mut requirements = Vec::new();
        if let Some(ml) = &sel.match_labels {
            for (k, v) in ml {
                validate_label_key(k)?;
                requirements.push(LabelRequirement {
                    key: k.clone(),
                    op: LabelOp::In(vec![v.clone()]),
                });
            }
        }
        for e in sel.match_expressions.iter().flatten() {
            validate_label_key(&e.key)?;
            let values = e.values.clone().unwrap_or_default();
            let op = match e.operator.as_str() {
                "In" => LabelOp::In(values),
                "NotIn" => LabelOp::NotIn(values),
                "Exists" => LabelOp::Exists,
                "DoesNotExist" => LabelOp::DoesNotExist,
                other => {
                    return Err(err(format!(
                        "{other:?} is not a valid label selector operator"
                    )));
                }
            };
            requirements.push(LabelRequirement {
                key: e.key.clone(),
                op,
            });
        }
        Ok(LabelSelector { requirements })
    }
}

impl std::fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match &r.op {
                LabelOp::Exists => r.key.clone(),
                LabelOp::DoesNotExist => format!("!{}", r.key),
                LabelOp::In(v) if v.len() == 1 => format!("{}={}", r.key, v[0]),
                LabelOp::In(v) => format!("{} in ({})", r.key, v.join(",")),
                LabelOp::NotIn(v) if v.len() == 1 => format!("{}!={}", r.key, v[0]),
                LabelOp::NotIn(v) => format!("{} notin ({})", r.key, v.join(",")),
                LabelOp::Gt(n) => format!("{}>{n}", r.key),
                LabelOp::Lt(n) => format!("{}<{n}", r.key),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Formats a structured label selector the way kubectl and `Scale.status.selector` show it
/// (`app=x,tier in (a,b)`); `<none>` for none, `""` for an empty one is rendered as `""`.
pub fn format_label_selector(sel: &MetaLabelSelector) -> String {
    match LabelSelector::from_meta(sel) {
        Ok(s) => s.to_string(),
        Err(_) => "<error>".to_string(),
    }
}

fn validate_label_key(k: &str) -> Result<(), SelectorError> {
    invalid_if_any("key", k, crate::validation::qualified_name_errors(k))
}

fn validate_label_value(v: &str) -> Result<(), SelectorError> {
    invalid_if_any("values[0]", v, crate::validation::label_value_errors(v))
}

/// `<field>: Invalid value: "<value>": <errors>` when there are errors.
fn invalid_if_any(field: &str, value: &str, errs: Vec<String>) -> Result<(), SelectorError> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(err(format!(
            "{field}: Invalid value: {value:?}: {}",
            errs.join("; ")
        )))
    }
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn eof(&self) -> bool {
        self.i >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn rest(&self) -> String {
        String::from_utf8_lossy(&self.s[self.i.min(self.s.len())..]).into_owned()
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn eat_str(&mut self, t: &str) -> bool {
        if self.s[self.i..].starts_with(t.as_bytes()) {
            self.i += t.len();
            true
        } else {
            false
        }
    }
    fn ident(&mut self) -> String {
        let start = self.i;
        while let Some(c) = self.peek() {
            if matches!(
                c,
                b' ' | b'\t' | b',' | b'=' | b'!' | b'(' | b')' | b'<' | b'>' | b'\n' | b'\r'
            ) {
                break;
            }
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }
    fn requirement(&mut self) -> Result<LabelRequirement, SelectorError> {
        self.skip_ws();
        if self.eat(b'!') {
            self.skip_ws();
            let key = self.ident();
            if key.is_empty() {
                return Err(err(
                    "unable to parse requirement: found '', expected: identifier",
                ));
            }
            validate_label_key(&key)?;
            return Ok(LabelRequirement {
                key,
                op: LabelOp::DoesNotExist,
            });
        }
        let key = self.ident();
        if key.is_empty() {
            return Err(err(format!(
                "unable to parse requirement: found '{}', expected: identifier",
                self.rest()
            )));
        }
        validate_label_key(&key)?;
        self.skip_ws();
        if self.eof() || self.peek() == Some(b',') {
            return Ok(LabelRequirement {
                key,
                op: LabelOp::Exists,
            });
        }
        let op = if self.eat_str("==") || self.eat(b'=') {
            Some(false)
        } else if self.eat_str("!=") {
            Some(true)
        } else {
            None
        };
        if let Some(negate) = op {
            self.skip_ws();
            let value = self.ident();
            validate_label_value(&value)?;
            let op = if negate {
                LabelOp::NotIn(vec![value])
            } else {
                LabelOp::In(vec![value])
            };
            return Ok(LabelRequirement { key, op });
        }
        if self.eat(b'>') || self.eat(b'<') {
            let gt = self.s[self.i - 1] == b'>';
            self.skip_ws();
            let value = self.ident();
            let n: i64 = value.parse().map_err(|_| {
                err(format!(
                    "for 'Gt', 'Lt' operators, the value must be an integer: {value:?}"
                ))
            })?;
            let op = if gt { LabelOp::Gt(n) } else { LabelOp::Lt(n) };
            return Ok(LabelRequirement { key, op });
        }
        let word = self.ident();
        let negate = match word.as_str() {
            "in" => false,
            "notin" => true,
            other => {
                return Err(err(format!(
                    "unable to parse requirement: found '{other}', expected: in, notin, =, ==, !=, gt, lt"
                )));
            }
        };
        self.skip_ws();
        if !self.eat(b'(') {
            return Err(err(format!("found '{}', expected: '('", self.rest())));
        }
        let mut values = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(b')') {
                break;
            }
            let v = self.ident();
            validate_label_value(&v)?;
            values.push(v);
            self.skip_ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b')') {
                break;
            }
            return Err(err(format!(
                "found '{}', expected: ',' or ')'",
                self.rest()
            )));
        }
        if values.is_empty() {
            return Err(err(
                "for 'in', 'notin' operators, values set can't be empty",
            ));
        }
        let op = if negate {
            LabelOp::NotIn(values)
        } else {
            LabelOp::In(values)
        };
        Ok(LabelRequirement { key, op })
    }
}

/// One field selector requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field path ("metadata.name").
    pub field: String,
    /// The value compared with.
    pub value: String,
    /// `true` for `!=`.
    pub negate: bool,
}

/// A parsed field selector. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// The requirements; all must hold.
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses the string form.
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let mut requirements = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector { requirements });
        }
        for part in split_unescaped(s, ',') {
            let (field, op_len, negate) = match find_op(&part) {
                Some(x) => x,
                None => {
                    return Err(err(format!(
                        "invalid selector: '{s}'; can't understand '{part}'"
                    )));
                }
            };
            let key = part[..field].trim().to_string();
            let raw = &part[field + op_len..];
            let value = unescape(raw).map_err(|e| err(format!("invalid selector: '{s}'; {e}")))?;
            if key.is_empty() {
                return Err(err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            }
            requirements.push(FieldRequirement {
                field: key,
                value,
                negate,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether the fields satisfy every requirement; `get` returns a field's value
    /// (missing fields compare as the empty string).
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let v = get(&r.field).unwrap_or_default();
            (v == r.value) != r.negate
        })
    }

    /// Whether the selector has no requirements.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value required for `field` by an `=` requirement, if any.
    pub fn exact(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && !r.negate)
            .map(|r| r.value.as_str())
    }
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push('\\');
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if escaped {
        cur.push('\\');
    }
    out.push(cur);
    out
}

/// Finds the first unescaped operator: returns (index, length, negate).
fn find_op(part: &str) -> Option<(usize, usize, bool)> {
    let b = part.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'!' if b.get(i + 1) == Some(&b'=') => return Some((i, 2, true)),
            b'=' if b.get(i + 1) == Some(&b'=') => return Some((i, 2, false)),
            b'=' => return Some((i, 1, false)),
            _ => i += 1,
        }
    }
    None
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => return Err(format!("invalid escape sequence: \\{e}")),
                None => return Err("unterminated escape sequence".to_string()),
            }
        } else if c == ',' || c == '=' {
            return Err(format!("invalid value {s:?}: unescaped {c:?}"));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_operators() {
        let l = labels(&[("app", "web"), ("tier", "v1"), ("n", "5")]);
        for (sel, want) in [
            ("", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("app in (web,db)", true),
            ("app  in  ( db , web )", true),
            ("app notin (web)", false),
            ("missing notin (web)", true),
            ("n>4", true),
            ("n<5", false),
            ("app=web,tier=v2", false),
            ("app=web, tier=v1", true),
            ("example.com/key", false),
        ] {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&l), want, "{sel}");
        }
    }

    #[test]
    fn label_selector_errors() {
        for bad in [
            "app in ()",
            "app in (a",
            "app=web,",
            "=x",
            "app = a b",
            "a%b=c",
            "app=x/y",
            "n>x",
            "app in x",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_selector_round_trips_to_string() {
        let s = LabelSelector::parse("app in (a,b),!x,tier=v1").unwrap();
        assert_eq!(s.to_string(), "app in (a,b),!x,tier=v1");
    }

    #[test]
    fn field_selector_parse_and_match() {
        let s =
            FieldSelector::parse("metadata.name=x,spec.nodeName!=,status.phase==Running").unwrap();
        assert_eq!(s.requirements.len(), 3);
        let ok = |f: &str| match f {
            "metadata.name" => Some("x".to_string()),
            "spec.nodeName" => Some("n1".to_string()),
            "status.phase" => Some("Running".to_string()),
            _ => None,
        };
        assert!(s.matches(ok));
        assert_eq!(s.exact("metadata.name"), Some("x"));
        let esc = FieldSelector::parse(r"involvedObject.name=a\,b").unwrap();
        assert_eq!(esc.requirements[0].value, "a,b");
        assert!(FieldSelector::parse("nofield").is_err());
        assert!(FieldSelector::parse("a=b=c").is_err());
        assert!(FieldSelector::parse("").unwrap().is_empty());
    }
}
