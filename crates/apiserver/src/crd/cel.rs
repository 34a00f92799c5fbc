//! CEL validation rules of custom resources (`x-kubernetes-validations`), evaluated with the
//! `cel` crate as upstream's `apiextensions-apiserver/pkg/apiserver/schema/cel` does:
//!
//! - at CRD create/update every rule is compiled; a rule that does not parse, or names a
//!   variable other than `self`/`oldSelf`, makes the CRD invalid (`compilation failed: …`);
//!   a rule calling a function upstream's library offers but the crate lacks (`isURL`,
//!   `quantity`, …) is accepted with a warning naming it, and not enforced;
//! - on create/update of an object, each rule runs with `self` bound to its schema node's
//!   value; transition rules (those using `oldSelf`) run only where an old value
//!   correlates (same property, same list-map key), so never on create;
//! - a false rule is `<path>: Invalid value: "<type>": <message or "failed rule: <rule>">`,
//!   `reason` choosing Forbidden/Required/Duplicate and `fieldPath` extending the path.
//!
//! Cost: the crate has no cost accounting, so each evaluation is priced before it runs by
//! a bound on its work: AST nodes × value size × (longest collection)^(comprehension
//! nesting). A request whose evaluations would together exceed [`BUDGET`] is refused with
//! upstream's "running out of cost budget" error instead of being run. Evaluation runs
//! under `catch_unwind`: a panic in the crate becomes a validation error.

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, LazyLock, Mutex};

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::objects::{Key, Map};
use cel::{Context, Env, ExecutionError, Program};
use podvisor_api::validation::FieldError;
use serde_json::Value;

/// Cost units (priced as above) one request may spend on CEL rules.
pub const BUDGET: u128 = 100_000_000;

/// Compiled rules kept at most (a cache; cleared when full).
const CACHE_MAX: usize = 4096;

/// Identifiers a rule may name besides `self`, `oldSelf` and comprehension variables.
const TYPE_NAMES: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
];

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // upstream's environment has cel-go's strings extension
    let _ = env.add_extension(cel::extensions::strings);
    Arc::new(env)
});

/// One rule, compiled.
struct Compiled {
    program: Program,
    uses_old_self: bool,
    /// AST node count.
    nodes: u128,
    /// Comprehension nesting depth.
    depth: u32,
    /// The first function the crate lacks, if any: the rule is not enforced.
    unsupported: Option<String>,
}

static CACHE: LazyLock<Mutex<HashMap<String, Arc<Compiled>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

static KNOWN_FUNCTIONS: LazyLock<Mutex<HashMap<String, bool>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Whether the crate's environment declares function `name` (global or member).
fn function_known(name: &str) -> bool {
    if let Some(k) = KNOWN_FUNCTIONS
        .lock()
        .ok()
        .and_then(|m| m.get(name).copied())
    {
        return k;
    }
    let probe = |src: String| -> bool {
        let Ok(p) = ENV.compile(&src) else {
            return false;
        };
        let ctx = Context::with_env(ENV.clone());
        let r = catch_unwind(AssertUnwindSafe(|| p.execute(&ctx)));
        !matches!(r, Ok(Err(ExecutionError::UndeclaredReference(ref n))) if n.as_str() == name)
    };
    let known = probe(format!("{name}()")) || probe(format!("''.{name}()"));
    if let Ok(mut m) = KNOWN_FUNCTIONS.lock()
        && m.len() < CACHE_MAX
    {
        m.insert(name.to_string(), known);
    }
    known
}

#[derive(Default)]
struct Walk {
    nodes: u128,
    depth: u32,
    idents: Vec<(String, u64)>,
    bound: HashSet<String>,
    functions: Vec<String>,
}

fn walk(e: &IdedExpr, level: u32, w: &mut Walk) {
    w.nodes += 1;
    match &e.expr {
        Expr::Call(c) => {
            if c.func_name.starts_with(|ch: char| ch.is_ascii_alphabetic()) {
                w.functions.push(c.func_name.clone());
            }
            if let Some(t) = &c.target {
                walk(t, level, w);
            }
            for a in &c.args {
                walk(a, level, w);
            }
        }
        Expr::Comprehension(c) => {
            w.depth = w.depth.max(level + 1);
            w.bound.insert(c.iter_var.clone());
            w.bound.extend(c.iter_var2.clone());
            w.bound.insert(c.accu_var.clone());
            walk(&c.iter_range, level, w);
            walk(&c.accu_init, level, w);
            for x in [&c.loop_cond, &c.loop_step, &c.result] {
                walk(x, level + 1, w);
            }
        }
        Expr::Ident(n) => w.idents.push((n.clone(), e.id)),
        Expr::List(l) => l.elements.iter().for_each(|x| walk(x, level, w)),
        Expr::Map(m) => m.entries.iter().for_each(|x| walk_entry(&x.expr, level, w)),
        Expr::Struct(s) => s.entries.iter().for_each(|x| walk_entry(&x.expr, level, w)),
        Expr::Select(s) => walk(&s.operand, level, w),
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn walk_entry(e: &EntryExpr, level: u32, w: &mut Walk) {
    match e {
        EntryExpr::StructField(f) => walk(&f.value, level, w),
        EntryExpr::MapEntry(m) => {
            walk(&m.key, level, w);
            walk(&m.value, level, w);
        }
    }
}

/// Operators, separators and brackets a rule may hold: the crate's parser and interpreter
/// recurse per operator, so longer chains could exhaust even [`STACK`].
const MAX_OPERATORS: usize = 1000;

/// Stack of the thread rules are compiled and evaluated on: the crate's (ANTLR) parser
/// takes ~40 KiB of stack per nesting level in a debug build, more than a runtime worker
/// has. With [`MAX_OPERATORS`] it stays several times under this.
const STACK: usize = 64 << 20;

/// Runs `f` on a thread with [`STACK`] of stack; None if the thread could not start or
/// `f` panicked.
fn on_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("cel".into())
            .stack_size(STACK)
            .spawn_scoped(s, f)
            .ok()?
            .join()
            .ok()
    })
}

/// Whether `schema` or a schema under it carries rules.
fn has_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(m) => m.contains_key("x-kubernetes-validations") || m.values().any(has_rules),
        Value::Array(a) => a.iter().any(has_rules),
        _ => false,
    }
}

/// Compiles `rule` (cached): Err is upstream's "compilation failed: …" detail.
fn compile(rule: &str) -> Result<Arc<Compiled>, String> {
    if let Some(c) = CACHE.lock().ok().and_then(|m| m.get(rule).cloned()) {
        return Ok(c);
    }
    if rule
        .chars()
        .filter(|c| "+-*/%&|<>=!?:.,([{".contains(*c))
        .count()
        > MAX_OPERATORS
    {
        return Err(format!(
            "compilation failed: ERROR: <input>:1:1: expression recursion limit exceeded: more than {MAX_OPERATORS} operators"
        ));
    }
    let program = catch_unwind(AssertUnwindSafe(|| ENV.compile(rule)))
        .map_err(|_| "compilation failed: the rule could not be parsed".to_string())?
        .map_err(|e| format!("compilation failed: {e}"))?;
    let mut w = Walk::default();
    walk(program.expression(), 0, &mut w);
    for (name, id) in &w.idents {
        if name != "self"
            && name != "oldSelf"
            && !w.bound.contains(name)
            && !TYPE_NAMES.contains(&name.as_str())
        {
            let at = program.source_info().offset_for(*id).map_or(0, |o| o.0) as usize;
            let before: Vec<char> = rule.chars().take(at).collect();
            let line = 1 + before.iter().filter(|c| **c == '\n').count();
            let col = before.iter().rev().take_while(|c| **c != '\n').count() + 1;
            let text = rule.lines().nth(line - 1).unwrap_or_default();
            return Err(format!(
                "compilation failed: ERROR: <input>:{line}:{col}: undeclared reference to '{name}' (in container '')\n | {text}\n | {}^",
                ".".repeat(col - 1)
            ));
        }
    }
    let unsupported = w.functions.iter().find(|f| !function_known(f)).cloned();
    let c = Arc::new(Compiled {
        uses_old_self: w.idents.iter().any(|(n, _)| n == "oldSelf"),
        program,
        nodes: w.nodes,
        depth: w.depth,
        unsupported,
    });
    if let Ok(mut m) = CACHE.lock() {
        if m.len() >= CACHE_MAX {
            m.clear();
        }
        m.insert(rule.to_string(), c.clone());
    }
    Ok(c)
}

fn rules(schema: &Value) -> &[Value] {
    schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Compiles every rule of a CRD version's schema at `path`: compile errors into `errs`,
/// rules the crate cannot run into `warnings`.
pub fn check_schema(
    schema: &Value,
    path: &str,
    errs: &mut Vec<FieldError>,
    warnings: &mut Vec<String>,
) {
    if !has_rules(schema) {
        return;
    }
    let done = on_big_stack(|| {
        let (mut e, mut w) = (Vec::new(), Vec::new());
        check_rules(schema, path, &mut e, &mut w);
        (e, w)
    });
    match done {
        Some((e, w)) => {
            errs.extend(e);
            warnings.extend(w);
        }
        None => errs.push(FieldError::invalid(
            format!("{path}.x-kubernetes-validations"),
            "object",
            "the rules could not be compiled",
        )),
    }
}

fn check_rules(schema: &Value, path: &str, errs: &mut Vec<FieldError>, warnings: &mut Vec<String>) {
    for (i, r) in rules(schema).iter().enumerate() {
        let rule = r.get("rule").and_then(Value::as_str).unwrap_or_default();
        let at = format!("{path}.x-kubernetes-validations[{i}].rule");
        if rule.trim().is_empty() {
            errs.push(FieldError::required(at, ""));
            continue;
        }
        match compile(rule) {
            Err(detail) => errs.push(FieldError::invalid(at, rule, detail)),
            Ok(c) => {
                if let Some(m) = r.get("messageExpression").and_then(Value::as_str)
                    && let Err(detail) = compile(m)
                {
                    errs.push(FieldError::invalid(
                        format!("{path}.x-kubernetes-validations[{i}].messageExpression"),
                        m,
                        detail.replacen(
                            "compilation failed",
                            "messageExpression compilation failed",
                            1,
                        ),
                    ));
                }
                if let Some(f) = &c.unsupported {
                    warnings.push(format!(
                        "{at}: function {f:?} is not supported by this server's CEL library: the rule is stored but not enforced"
                    ));
                }
            }
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, s) in props {
            check_rules(s, &format!("{path}.properties[{k}]"), errs, warnings);
        }
    }
    for (key, sub) in [
        ("items", "items"),
        ("additionalProperties", "additionalProperties"),
    ] {
        if let Some(s) = schema.get(key).filter(|s| s.is_object()) {
            check_rules(s, &format!("{path}.{sub}"), errs, warnings);
        }
    }
}

/// Converts JSON to a CEL value: integers stay `int` (or `uint` past i64), as upstream
/// types schema integers.
fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(m) => cel::Value::Map(Map {
            map: Arc::new(
                m.iter()
                    .map(|(k, v)| (Key::from(k.as_str()), to_cel(v)))
                    .collect(),
            ),
        }),
    }
}

/// Size of a value (nodes plus string bytes) and its longest collection.
fn measure(v: &Value) -> (u128, u128) {
    match v {
        Value::String(s) => (1 + s.len() as u128, 0),
        Value::Array(a) => a
            .iter()
            .map(measure)
            .fold((1, a.len() as u128), |x, y| (x.0 + y.0, x.1.max(y.1))),
        Value::Object(m) => m
            .values()
            .map(measure)
            .fold((1, m.len() as u128), |x, y| (x.0 + y.0, x.1.max(y.1))),
        _ => (1, 0),
    }
}

fn type_of(schema: &Value, v: &Value) -> String {
    match schema.get("type").and_then(Value::as_str) {
        Some(t) => t.to_string(),
        None => match v {
            Value::Object(_) => "object",
            Value::Array(_) => "array",
            Value::String(_) => "string",
            Value::Number(_) => "number",
            Value::Bool(_) => "boolean",
            Value::Null => "null",
        }
        .to_string(),
    }
}

/// Evaluates the rules of an object's schema against it (`old`: the stored object on
/// update), within one request's [`BUDGET`].
pub fn validate_object(schema: &Value, v: &Value, old: Option<&Value>) -> Vec<FieldError> {
    if !has_rules(schema) {
        return Vec::new();
    }
    on_big_stack(|| {
        let mut errs = Vec::new();
        validate(schema, v, old, "", &mut BUDGET.clone(), &mut errs);
        errs
    })
    .unwrap_or_else(|| {
        vec![FieldError::invalid(
            "<nil>",
            "object",
            "the x-kubernetes-validations rules could not be evaluated",
        )]
    })
}

/// Evaluates the rules of `schema` and of its descendants against `v` (and `old`, the
/// previous value at the same place on update), appending errors. `budget` is what the
/// request may still spend; once spent, one error says so and nothing more runs.
fn validate(
    schema: &Value,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    budget: &mut u128,
    errs: &mut Vec<FieldError>,
) {
    if v.is_null() || *budget == 0 {
        return;
    }
    let shown_path = if path.is_empty() { "<nil>" } else { path };
    let ty = type_of(schema, v);
    for r in rules(schema) {
        let rule = r.get("rule").and_then(Value::as_str).unwrap_or_default();
        let Ok(c) = compile(rule) else {
            continue; // refused at CRD create; a stored CRD from before is not enforced
        };
        if c.unsupported.is_some() || (c.uses_old_self && old.is_none()) {
            continue;
        }
        let (size, longest) = measure(v);
        let (osize, olongest) = old.map(measure).unwrap_or_default();
        let longest = longest.max(olongest).max(1);
        let cost = c
            .nodes
            .saturating_mul(size + osize)
            .saturating_mul(longest.saturating_pow(c.depth));
        if cost > *budget {
            *budget = 0;
            errs.push(FieldError::invalid(
                shown_path,
                ty,
                "validation failed due to running out of cost budget, no further validation rules will be run",
            ));
            return;
        }
        *budget -= cost;
        let run = |p: &Program| {
            catch_unwind(AssertUnwindSafe(|| {
                let mut ctx = Context::with_env(ENV.clone());
                ctx.add_variable_from_value("self", to_cel(v));
                if let Some(o) = old {
                    ctx.add_variable_from_value("oldSelf", to_cel(o));
                }
                p.execute(&ctx)
            }))
        };
        let result = run(&c.program);
        let message = r
            .get("message")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|m| !m.is_empty());
        // messageExpression, when it yields a one-line string, replaces message
        let computed = r
            .get("messageExpression")
            .and_then(Value::as_str)
            .filter(|_| matches!(result, Ok(Ok(cel::Value::Bool(false)))))
            .and_then(|m| compile(m).ok())
            .filter(|m| m.unsupported.is_none() && m.nodes.saturating_mul(size + osize) <= *budget)
            .and_then(|m| match run(&m.program) {
                Ok(Ok(cel::Value::String(s))) if !s.trim().is_empty() && !s.contains('\n') => {
                    Some(s.trim().to_string())
                }
                _ => None,
            });
        let rule_str = message.unwrap_or(rule.trim());
        let detail = match result {
            Ok(Ok(cel::Value::Bool(true))) => continue,
            Ok(Ok(cel::Value::Bool(false))) if computed.is_some() => computed.unwrap_or_default(),
            Ok(Ok(cel::Value::Bool(false))) => match message {
                Some(m) => m.to_string(),
                None => format!("failed rule: {}", rule.trim()),
            },
            Ok(Ok(other)) => format!(
                "Unexpected type: got '{}', want 'bool' evaluating rule: {rule_str}",
                other.type_of()
            ),
            Ok(Err(e @ ExecutionError::NoSuchOverload(_))) => format!(
                "'{e}': call arguments did not match a supported operator, function or macro signature for rule: {rule_str}"
            ),
            Ok(Err(e)) => format!("{e} evaluating rule: {rule_str}"),
            Err(_) => format!("internal error evaluating rule: {rule_str}"),
        };
        let at = match r
            .get("fieldPath")
            .and_then(Value::as_str)
            .map(|p| p.trim_start_matches('.'))
            .filter(|p| !p.is_empty())
        {
            Some(p) if path.is_empty() => p.to_string(),
            Some(p) => format!("{path}.{p}"),
            None => shown_path.to_string(),
        };
        errs.push(match r.get("reason").and_then(Value::as_str) {
            Some("FieldValueForbidden") => FieldError::forbidden(at, detail),
            Some("FieldValueRequired") => FieldError::required(at, detail),
            Some("FieldValueDuplicate") => FieldError::duplicate(at, ty.clone()),
            _ => FieldError::invalid(at, ty.clone(), detail),
        });
    }
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, x) in m {
                let Some(s) = props.and_then(|p| p.get(k)).or(extra) else {
                    continue;
                };
                let o = old.and_then(|o| o.get(k));
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                validate(s, x, o, &p, budget, errs);
            }
        }
        Value::Array(a) => {
            let Some(items) = schema.get("items").filter(|i| i.is_object()) else {
                return;
            };
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let is_map = schema.get("x-kubernetes-list-type").and_then(Value::as_str)
                == Some("map")
                && !keys.is_empty();
            for (i, x) in a.iter().enumerate() {
                // items correlate with old ones only in a list-type map, by their keys
                let o = old
                    .and_then(Value::as_array)
                    .filter(|_| is_map)
                    .and_then(|olds| {
                        olds.iter()
                            .find(|o| keys.iter().all(|k| o.get(k) == x.get(k)))
                    });
                validate(items, x, o, &format!("{path}[{i}]"), budget, errs);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(schema: &Value, v: &Value, old: Option<&Value>) -> Vec<String> {
        let mut errs = Vec::new();
        validate(schema, v, old, "", &mut BUDGET.clone(), &mut errs);
        errs.iter().map(ToString::to_string).collect()
    }

    fn spec_schema(rules: Value) -> Value {
        json!({"type": "object", "properties": {"spec": {
            "type": "object",
            "x-kubernetes-validations": rules,
            "properties": {
                "replicas": {"type": "integer"},
                "maxReplicas": {"type": "integer"},
                "mode": {"type": "string", "x-kubernetes-validations": [
                    {"rule": "self == oldSelf", "message": "mode is immutable"}]},
                "items": {"type": "array", "items": {"type": "integer"}},
            }
        }}})
    }

    #[test]
    fn false_rule_reports_message_or_rule() {
        let s = spec_schema(json!([
            {"rule": "self.replicas <= self.maxReplicas", "message": "replicas must be at most maxReplicas"},
            {"rule": "  self.replicas > 0 "},
        ]));
        let ok = json!({"spec": {"replicas": 2, "maxReplicas": 3}});
        assert_eq!(run(&s, &ok, None), Vec::<String>::new());
        let bad = json!({"spec": {"replicas": 0, "maxReplicas": -1}});
        assert_eq!(
            run(&s, &bad, None),
            [
                r#"spec: Invalid value: "object": replicas must be at most maxReplicas"#,
                r#"spec: Invalid value: "object": failed rule: self.replicas > 0"#,
            ]
        );
    }

    #[test]
    fn transition_rules_run_on_update_only() {
        let s = spec_schema(json!([]));
        let v = json!({"spec": {"mode": "a"}});
        assert!(run(&s, &v, None).is_empty());
        assert!(run(&s, &v, Some(&json!({"spec": {"mode": "a"}}))).is_empty());
        assert_eq!(
            run(&s, &v, Some(&json!({"spec": {"mode": "b"}}))),
            [r#"spec.mode: Invalid value: "string": mode is immutable"#]
        );
        // no old value at that place: not run
        assert!(run(&s, &v, Some(&json!({"spec": {}}))).is_empty());
    }

    #[test]
    fn message_expression() {
        let s = spec_schema(json!([
            {"rule": "self.replicas < 3", "message": "static",
             "messageExpression": "'replicas is ' + string(self.replicas)"},
        ]));
        assert_eq!(
            run(&s, &json!({"spec": {"replicas": 4}}), None),
            [r#"spec: Invalid value: "object": replicas is 4"#]
        );
    }

    #[test]
    fn reason_and_field_path() {
        let s = spec_schema(json!([
            {"rule": "has(self.replicas)", "reason": "FieldValueRequired", "fieldPath": ".replicas", "message": "replicas is required"},
            {"rule": "false", "reason": "FieldValueForbidden", "message": "never"},
        ]));
        assert_eq!(
            run(&s, &json!({"spec": {}}), None),
            [
                "spec.replicas: Required value: replicas is required",
                "spec: Forbidden: never",
            ]
        );
    }

    #[test]
    fn evaluation_errors_are_reported() {
        let s = spec_schema(json!([{"rule": "self.maxReplicas > 1"}]));
        let errs = run(&s, &json!({"spec": {"replicas": 1}}), None);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with(r#"spec: Invalid value: "object": "#)
                && errs[0].ends_with("evaluating rule: self.maxReplicas > 1"),
            "{errs:?}"
        );
    }

    #[test]
    fn compile_errors_and_unsupported_functions() {
        let s = spec_schema(json!([
            {"rule": "self.replicas <="},
            {"rule": "self.replicas == foo"},
            {"rule": "self.items.all(x, x > 0) && size(self.items) < 3"},
            {"rule": "isURL(self.mode)"},
        ]));
        let (mut errs, mut warnings) = (Vec::new(), Vec::new());
        check_rules(&s["properties"]["spec"], "p", &mut errs, &mut warnings);
        let errs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with(
                r#"p.x-kubernetes-validations[0].rule: Invalid value: "self.replicas <=": compilation failed: ERROR: <input>:1:"#
            ),
            "{errs:?}"
        );
        assert!(
            errs[1].starts_with(
                "p.x-kubernetes-validations[1].rule: Invalid value: \"self.replicas == foo\": compilation failed: ERROR: <input>:1:18: undeclared reference to 'foo' (in container '')"
            ),
            "{errs:?}"
        );
        assert_eq!(
            warnings,
            [
                r#"p.x-kubernetes-validations[3].rule: function "isURL" is not supported by this server's CEL library: the rule is stored but not enforced"#
            ]
        );
        // the unsupported rule is not enforced
        let v = json!({"spec": {"mode": "not a url", "items": [1]}});
        let mut errs = Vec::new();
        validate(&s, &v, None, "", &mut BUDGET.clone(), &mut Vec::new());
        validate(
            &spec_schema(json!([{"rule": "isURL(self.mode)"}])),
            &v,
            None,
            "",
            &mut BUDGET.clone(),
            &mut errs,
        );
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn deep_rules_neither_overflow_nor_panic() {
        let deep = |rule: String| {
            let s = json!({"type": "object", "x-kubernetes-validations": [{"rule": rule}]});
            let (mut errs, mut warnings) = (Vec::new(), Vec::new());
            check_schema(&s, "p", &mut errs, &mut warnings);
            let run = validate_object(&s, &json!({}), None);
            (errs.len(), run.len())
        };
        // within the limits: compiles and runs
        assert_eq!(
            deep(format!("{}1 > 0", "1+".repeat(MAX_OPERATORS - 2))),
            (0, 0)
        );
        // past them: refused, not crashed
        assert_eq!(
            deep(format!("{}1 > 0", "1+".repeat(MAX_OPERATORS + 1))),
            (1, 0)
        );
        let (errs, _) = deep(format!("{}true{}", "(".repeat(300), ")".repeat(300)));
        assert_eq!(errs, 1);
        // a runtime error is an error, not a panic
        let s = json!({"type": "object", "x-kubernetes-validations": [{"rule": "1 / 0 == 1"}]});
        let errs = validate_object(&s, &json!({}), None);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0]
                .to_string()
                .starts_with("<nil>: Invalid value: \"object\": "),
            "{errs:?}"
        );
    }

    #[test]
    fn cost_is_bounded_before_evaluation() {
        // quadratic over a long list: refused by price, not run
        let s = spec_schema(json!([
            {"rule": "self.items.all(x, self.items.all(y, x + y > -1))"},
        ]));
        let items: Vec<i64> = (0..20_000).collect();
        let v = json!({"spec": {"items": items}});
        assert_eq!(
            run(&s, &v, None),
            [
                r#"spec: Invalid value: "object": validation failed due to running out of cost budget, no further validation rules will be run"#
            ]
        );
        // the same rule over a short list runs
        let v = json!({"spec": {"items": [1, 2, 3]}});
        assert!(run(&s, &v, None).is_empty());
    }
}
