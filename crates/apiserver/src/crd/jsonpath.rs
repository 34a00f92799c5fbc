//! The JSONPath subset of `additionalPrinterColumns` (upstream's `k8s.io/client-go/util/jsonpath`
//! as CRDs use it): `.a.b`, `.a[0]`, `.a[*].b`, `.a['b.c']` and filters
//! `[?(@.type=="Ready")]`. The first result is the cell.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Filter { path: Vec<String>, value: String },
}

fn parse(path: &str) -> Option<Vec<Step>> {
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(p);
    let mut steps = Vec::new();
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                    j += 1;
                }
                if j > start {
                    steps.push(Step::Field(p[start..j].to_string()));
                }
                i = j;
            }
            b'[' => {
                let end = p[i..].find(']').map(|e| i + e)?;
                let inner = p[i + 1..end].trim();
                // A filter may contain `]` only inside quotes; upstream's CRD paths do not.
                if let Some(f) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                    let (lhs, rhs) = f.split_once("==")?;
                    let lhs = lhs.trim().strip_prefix("@.")?;
                    let rhs = rhs.trim().trim_matches(|c| c == '"' || c == '\'');
                    steps.push(Step::Filter {
                        path: lhs.split('.').map(str::to_string).collect(),
                        value: rhs.to_string(),
                    });
                } else if inner == "*" {
                    steps.push(Step::All);
                } else if let Ok(n) = inner.parse::<i64>() {
                    steps.push(Step::Index(n));
                } else {
                    steps.push(Step::Field(
                        inner.trim_matches(|c| c == '"' || c == '\'').to_string(),
                    ));
                }
                i = end + 1;
            }
            b'@' | b'$' => i += 1,
            _ => return None,
        }
    }
    Some(steps)
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether `path` is in the supported subset.
pub fn is_valid(path: &str) -> bool {
    path.trim().starts_with('.') && parse(path).is_some()
}

/// The first value `path` selects in `v`.
pub fn first<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let steps = parse(path)?;
    let mut cur: Vec<&Value> = vec![v];
    for s in &steps {
        let mut next = Vec::new();
        for c in cur {
            match s {
                Step::Field(f) => next.extend(c.get(f.as_str())),
                Step::Index(n) => {
                    if let Some(a) = c.as_array() {
                        let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                        next.extend(usize::try_from(idx).ok().and_then(|i| a.get(i)));
                    }
                }
                Step::All => match c {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter { path, value } => {
                    for item in c.as_array().into_iter().flatten() {
                        let mut x = Some(item);
                        for seg in path {
                            x = x.and_then(|x| x.get(seg.as_str()));
                        }
                        if x.is_some_and(|x| scalar(x) == *value) {
                            next.push(item);
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_like_upstream() {
        let o = json!({"spec": {"replicas": 3, "list": [{"n": "a"}, {"n": "b"}]},
            "status": {"conditions": [{"type": "Issuing", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(first(&o, ".spec.replicas"), Some(&json!(3)));
        assert_eq!(first(&o, ".spec.list[1].n"), Some(&json!("b")));
        assert_eq!(first(&o, ".spec.list[*].n"), Some(&json!("a")));
        assert_eq!(
            first(&o, r#".status.conditions[?(@.type=="Ready")].status"#),
            Some(&json!("True"))
        );
        assert_eq!(first(&o, ".spec.nope"), None);
        assert!(is_valid(".a.b") && !is_valid("a b"));
    }
}
