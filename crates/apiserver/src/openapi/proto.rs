//! `/openapi/v2` as protobuf: gnostic's `openapi.v2.Document`
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`), which client-go's
//! `OpenAPISchema` asks for and kubectl's client-side validation reads. The document
//! carries `swagger`, `info` and every definition; extension values (`x-kubernetes-*`)
//! and `default`/`enum`/`example` travel as gnostic `Any.yaml` text (JSON is YAML).
//! Paths are not encoded: the protobuf readers only look up definitions.

use prost::encoding::encode_varint;
use serde_json::Value;

use super::Definition;

fn key(buf: &mut Vec<u8>, field: u32, wire: u32) {
    encode_varint(u64::from((field << 3) | wire), buf);
}

fn bytes(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    key(buf, field, 2);
    encode_varint(data.len() as u64, buf);
    buf.extend_from_slice(data);
}

fn message(buf: &mut Vec<u8>, field: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    bytes(buf, field, &inner);
}

fn varint(buf: &mut Vec<u8>, field: u32, v: u64) {
    key(buf, field, 0);
    encode_varint(v, buf);
}

fn double(buf: &mut Vec<u8>, field: u32, v: f64) {
    key(buf, field, 1);
    buf.extend_from_slice(&v.to_le_bytes());
}

/// gnostic `Any { yaml = 2 }`.
fn any(buf: &mut Vec<u8>, field: u32, v: &Value) {
    message(buf, field, |b| bytes(b, 2, v.to_string().as_bytes()));
}

fn named_schema(buf: &mut Vec<u8>, field: u32, name: &str, v: &Value) {
    message(buf, field, |b| {
        bytes(b, 1, name.as_bytes());
        message(b, 2, |b| schema(b, v));
    });
}

/// gnostic `Schema`, from its JSON form.
fn schema(buf: &mut Vec<u8>, s: &Value) {
    let Some(m) = s.as_object() else { return };
    let int = |v: &Value| v.as_i64().unwrap_or(0) as u64;
    for (k, v) in m {
        match (k.as_str(), v) {
            ("$ref", Value::String(r)) => bytes(buf, 1, r.as_bytes()),
            ("format", Value::String(x)) => bytes(buf, 2, x.as_bytes()),
            ("title", Value::String(x)) => bytes(buf, 3, x.as_bytes()),
            ("description", Value::String(x)) => bytes(buf, 4, x.as_bytes()),
            ("default", v) => any(buf, 5, v),
            ("multipleOf", v) => double(buf, 6, v.as_f64().unwrap_or(0.0)),
            ("maximum", v) => double(buf, 7, v.as_f64().unwrap_or(0.0)),
            ("exclusiveMaximum", Value::Bool(b)) => varint(buf, 8, u64::from(*b)),
            ("minimum", v) => double(buf, 9, v.as_f64().unwrap_or(0.0)),
            ("exclusiveMinimum", Value::Bool(b)) => varint(buf, 10, u64::from(*b)),
            ("maxLength", v) => varint(buf, 11, int(v)),
            ("minLength", v) => varint(buf, 12, int(v)),
            ("pattern", Value::String(x)) => bytes(buf, 13, x.as_bytes()),
            ("maxItems", v) => varint(buf, 14, int(v)),
            ("minItems", v) => varint(buf, 15, int(v)),
            ("uniqueItems", Value::Bool(b)) => varint(buf, 16, u64::from(*b)),
            ("maxProperties", v) => varint(buf, 17, int(v)),
            ("minProperties", v) => varint(buf, 18, int(v)),
            ("required", Value::Array(a)) => {
                for r in a.iter().filter_map(Value::as_str) {
                    bytes(buf, 19, r.as_bytes());
                }
            }
            ("enum", Value::Array(a)) => {
                for e in a {
                    any(buf, 20, e);
                }
            }
            ("additionalProperties", Value::Bool(b)) => {
                message(buf, 21, |x| varint(x, 2, u64::from(*b)));
            }
            ("additionalProperties", v) => message(buf, 21, |x| message(x, 1, |x| schema(x, v))),
            ("type", Value::String(t)) => message(buf, 22, |x| bytes(x, 1, t.as_bytes())),
            ("type", Value::Array(a)) => message(buf, 22, |x| {
                for t in a.iter().filter_map(Value::as_str) {
                    bytes(x, 1, t.as_bytes());
                }
            }),
            ("items", Value::Array(a)) => message(buf, 23, |x| {
                for i in a {
                    message(x, 1, |x| schema(x, i));
                }
            }),
            ("items", v) => message(buf, 23, |x| message(x, 1, |x| schema(x, v))),
            ("allOf", Value::Array(a)) => {
                for i in a {
                    message(buf, 24, |x| schema(x, i));
                }
            }
            ("properties", Value::Object(p)) => message(buf, 25, |x| {
                for (name, v) in p {
                    named_schema(x, 1, name, v);
                }
            }),
            ("discriminator", Value::String(x)) => bytes(buf, 26, x.as_bytes()),
            ("readOnly", Value::Bool(b)) => varint(buf, 27, u64::from(*b)),
            ("example", v) => any(buf, 30, v),
            (x, v) if x.starts_with("x-") => message(buf, 31, |b| {
                bytes(b, 1, x.as_bytes());
                any(b, 2, v);
            }),
            _ => {}
        }
    }
}

/// The protobuf document holding `defs` (each parsed only while it is encoded).
pub fn document(defs: &[&Definition], extra: &[(String, Value)]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(1 << 20);
    bytes(&mut buf, 1, b"2.0");
    message(&mut buf, 2, |b| {
        bytes(b, 1, b"Kubernetes");
        bytes(b, 2, b"v1.33.1");
    });
    message(&mut buf, 9, |b| {
        for d in defs {
            if let Ok(v) = serde_json::from_str::<Value>(d.schema) {
                named_schema(b, 1, d.name, &v);
            }
        }
        for (name, v) in extra {
            named_schema(b, 1, name, v);
        }
    });
    buf
}
