//! Generic conversion between k8s-pb (prost) messages and their Kubernetes JSON form.
//!
//! Every message gets a [`PbJson`] impl from [`pb_message!`], driven by the generated
//! field table in `schema.rs` (prost field, JSON name, flags). Field values convert
//! through [`Field`] (optional / repeated / map) and [`Elem`] (scalars and
//! messages), so nothing here is written per kind. The messages whose JSON form is
//! not an object (`Time`, `MicroTime`, `IntOrString`, `Quantity`, `FieldsV1`) have
//! hand-written [`PbJson`] impls at the bottom.
//!
//! Omission rules (protobuf → JSON), matching what Go's `encoding/json` writes for
//! the object client-go encoded:
//! - a message field that is present is written, even when empty (`"resources":{}`),
//!   because gogo-protobuf only writes non-nil pointers and always writes structs;
//! - an absent field is omitted;
//! - a scalar holding its zero value (`""`, `0`, `false`) is omitted unless the
//!   table marks it `keep` (no `omitempty` in Go, or a Go pointer), because gogo
//!   writes non-pointer scalars even when zero;
//! - an empty list or map is omitted.
//!
//! JSON → protobuf ignores unknown keys (e.g. `kind`/`apiVersion` of list items) and
//! treats `null` as absent; type mismatches are [`ConvertError`]s with a JSON path.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value};

/// A JSON value did not have the shape the protobuf schema needs (or the reverse).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConvertError {
    /// JSON path of the offending value, e.g. `spec.containers[0].ports[1].containerPort`.
    pub path: String,
    /// What was wrong.
    pub message: String,
}

impl ConvertError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            path: String::new(),
            message: message.into(),
        }
    }

    /// Prefixes the path with a field name.
    pub(crate) fn within(mut self, field: &str) -> Self {
        self.path = if self.path.is_empty() {
            field.to_owned()
        } else if self.path.starts_with('[') {
            format!("{field}{}", self.path)
        } else {
            format!("{field}.{}", self.path)
        };
        self
    }

    fn at_index(mut self, index: usize) -> Self {
        self.path = if self.path.is_empty() {
            format!("[{index}]")
        } else if self.path.starts_with('[') {
            format!("[{index}]{}", self.path)
        } else {
            format!("[{index}].{}", self.path)
        };
        self
    }

    fn at_key(self, key: &str) -> Self {
        self.within(key)
    }
}

fn type_error(expected: &str, got: &Value) -> ConvertError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    ConvertError::new(format!("expected {expected}, got {got}"))
}

/// A protobuf message with a Kubernetes JSON form.
pub(crate) trait PbJson: Sized + Default {
    /// The JSON form of the message.
    fn to_json(&self) -> Value;
    /// Builds the message from its JSON form.
    fn from_json(value: &Value) -> Result<Self, ConvertError>;
    /// The message a JSON `null` stands for: `None` (absent) except for the time
    /// types, whose zero value is written as `null`.
    fn from_null() -> Option<Self> {
        None
    }
    /// Adds this message's fields to `map` (used for Go structs embedded inline).
    fn merge_into(&self, map: &mut Map<String, Value>) {
        if let Value::Object(fields) = self.to_json() {
            map.extend(fields);
        }
    }
}

/// One element: a scalar, bytes, or a message.
pub(crate) trait Elem: Sized {
    fn elem_to_json(&self) -> Value;
    fn elem_from_json(value: &Value) -> Result<Self, ConvertError>;
    /// Whether this is a scalar holding its zero value (omitted unless `keep`).
    fn is_zero_scalar(&self) -> bool;
    /// What a JSON `null` in an optional field stands for (`None`: absent).
    fn elem_from_null() -> Option<Self> {
        None
    }
}

impl<M: PbJson> Elem for M {
    fn elem_to_json(&self) -> Value {
        self.to_json()
    }
    fn elem_from_json(value: &Value) -> Result<Self, ConvertError> {
        M::from_json(value)
    }
    fn is_zero_scalar(&self) -> bool {
        false
    }
    fn elem_from_null() -> Option<Self> {
        M::from_null()
    }
}

impl Elem for String {
    fn elem_to_json(&self) -> Value {
        Value::String(self.clone())
    }
    fn elem_from_json(value: &Value) -> Result<Self, ConvertError> {
        match value {
            Value::String(s) => Ok(s.clone()),
            other => Err(type_error("a string", other)),
        }
    }
    fn is_zero_scalar(&self) -> bool {
        self.is_empty()
    }
}

impl Elem for bool {
    fn elem_to_json(&self) -> Value {
        Value::Bool(*self)
    }
    fn elem_from_json(value: &Value) -> Result<Self, ConvertError> {
        match value {
            Value::Bool(b) => Ok(*b),
            other => Err(type_error("a boolean", other)),
        }
    }
    fn is_zero_scalar(&self) -> bool {
        !*self
    }
}

fn integer(value: &Value) -> Result<i64, ConvertError> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15) {
                // Go accepts 1.0 for an integer field only via yaml; accept exact floats.
                #[allow(clippy::cast_possible_truncation)]
                Ok(f as i64)
            } else {
                Err(ConvertError::new(format!("expected an integer, got {n}")))
            }
        }
        other => Err(type_error("an integer", other)),
    }
}

impl Elem for i32 {
    fn elem_to_json(&self) -> Value {
        Value::from(*self)
    }
    fn elem_from_json(value: &Value) -> Result<Self, ConvertError> {
        let i = integer(value)?;
        i32::try_from(i).map_err(|_| ConvertError::new(format!("{i} does not fit in int32")))
    }
    fn is_zero_scalar(&self) -> bool {
        *self == 0
    }
}

impl Elem for i64 {
    fn elem_to_json(&self) -> Value {
        Value::from(*self)
    }
    fn elem_from_json(value: &Value) -> Result<Self, ConvertError> {
        integer(value)
    }
    fn is_zero_scalar(&self) -> bool {
        *self == 0
    }
}

impl Elem for f64 {
    fn elem_to_json(&self) -> Value {
        serde_json::Number::from_f64(*self).map_or(Value::Null, Value::Number)
    }
    fn elem_from_json(value: &Value) -> Result<Self, ConvertError> {
        match value {
            Value::Number(n) => n
                .as_f64()
                .ok_or_else(|| ConvertError::new("not a finite number")),
            other => Err(type_error("a number", other)),
        }
    }
    fn is_zero_scalar(&self) -> bool {
        *self == 0.0
    }
}

/// `bytes` fields are base64 strings in JSON (Secret `data`, ConfigMap `binaryData`).
impl Elem for Vec<u8> {
    fn elem_to_json(&self) -> Value {
        Value::String(base64::engine::general_purpose::STANDARD.encode(self))
    }
    fn elem_from_json(value: &Value) -> Result<Self, ConvertError> {
        match value {
            Value::String(s) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| ConvertError::new(format!("invalid base64: {e}"))),
            other => Err(type_error("a base64 string", other)),
        }
    }
    fn is_zero_scalar(&self) -> bool {
        self.is_empty()
    }
}

/// A message field: optional, repeated or map.
pub(crate) trait Field: Sized + Default {
    /// `None` omits the field.
    fn field_to_json(&self, keep_zero: bool) -> Option<Value>;
    fn field_from_json(value: &Value) -> Result<Self, ConvertError>;
}

impl<T: Elem> Field for Option<T> {
    fn field_to_json(&self, keep_zero: bool) -> Option<Value> {
        match self {
            Some(v) if keep_zero || !v.is_zero_scalar() => Some(v.elem_to_json()),
            _ => None,
        }
    }
    fn field_from_json(value: &Value) -> Result<Self, ConvertError> {
        match value {
            Value::Null => Ok(T::elem_from_null()),
            _ => T::elem_from_json(value).map(Some),
        }
    }
}

impl<T: Elem> Field for Vec<T> {
    fn field_to_json(&self, _keep_zero: bool) -> Option<Value> {
        if self.is_empty() {
            None
        } else {
            Some(Value::Array(self.iter().map(Elem::elem_to_json).collect()))
        }
    }
    fn field_from_json(value: &Value) -> Result<Self, ConvertError> {
        match value {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| T::elem_from_json(v).map_err(|e| e.at_index(i)))
                .collect(),
            other => Err(type_error("an array", other)),
        }
    }
}

impl<T: Elem> Field for BTreeMap<String, T> {
    fn field_to_json(&self, _keep_zero: bool) -> Option<Value> {
        if self.is_empty() {
            None
        } else {
            Some(Value::Object(
                self.iter()
                    .map(|(k, v)| (k.clone(), v.elem_to_json()))
                    .collect(),
            ))
        }
    }
    fn field_from_json(value: &Value) -> Result<Self, ConvertError> {
        match value {
            Value::Null => Ok(BTreeMap::new()),
            Value::Object(entries) => entries
                .iter()
                .map(|(k, v)| Ok((k.clone(), T::elem_from_json(v).map_err(|e| e.at_key(k))?)))
                .collect(),
            other => Err(type_error("an object", other)),
        }
    }
}

/// Converts an inline (embedded) field's JSON: the parent's whole object.
pub(crate) fn inline_from_json<M: PbJson>(parent: &Value) -> Result<Option<M>, ConvertError> {
    M::from_json(parent).map(Some)
}

pub(crate) fn object_of(value: &Value) -> Result<Option<&Map<String, Value>>, ConvertError> {
    match value {
        Value::Object(map) => Ok(Some(map)),
        Value::Null => Ok(None),
        other => Err(type_error("an object", other)),
    }
}

/// Implements [`PbJson`] for a generated k8s-pb struct from its field table.
///
/// Each entry is `prost_ident: "jsonName"` (optionally followed by `keep`), or
/// `prost_ident: inline`. The struct is destructured without `..`, so a field
/// missing from the table is a compile error.
macro_rules! pb_message {
    (@keep) => { false };
    (@keep keep) => { true };
    (@to $self_:ident $map:ident $field:ident inline) => {
        if let Some(inner) = $field {
            $crate::protobuf::convert::PbJson::merge_into(inner, &mut $map);
        }
    };
    (@to $self_:ident $map:ident $field:ident $json:literal $($keep:ident)?) => {
        if let Some(v) = $crate::protobuf::convert::Field::field_to_json(
            $field,
            $crate::protobuf::convert::pb_message!(@keep $($keep)?),
        ) {
            $map.insert($json.to_owned(), v);
        }
    };
    (@from $value:ident $obj:ident inline) => {
        $crate::protobuf::convert::inline_from_json($value)?
    };
    (@from $value:ident $obj:ident $json:literal $($keep:ident)?) => {
        match $obj.get($json) {
            None => Default::default(),
            Some(v) => $crate::protobuf::convert::Field::field_from_json(v)
                .map_err(|e| e.within($json))?,
        }
    };
    ($ty:path { $($field:ident : $json:tt $($keep:ident)?),* $(,)? }) => {
        impl $crate::protobuf::convert::PbJson for $ty {
            fn to_json(&self) -> serde_json::Value {
                #[allow(unused_mut)]
                let mut map = serde_json::Map::new();
                let Self { $($field),* } = self;
                $( $crate::protobuf::convert::pb_message!(@to self map $field $json $($keep)?); )*
                serde_json::Value::Object(map)
            }

            #[allow(unused_variables)]
            fn from_json(
                value: &serde_json::Value,
            ) -> Result<Self, $crate::protobuf::convert::ConvertError> {
                let Some(obj) = $crate::protobuf::convert::object_of(value)? else {
                    return Ok(Self::default());
                };
                Ok(Self {
                    $( $field: $crate::protobuf::convert::pb_message!(@from value obj $json $($keep)?), )*
                })
            }
        }
    };
}
pub(crate) use pb_message;

use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1::{FieldsV1, MicroTime, Time};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;

fn format_time(seconds: i64, nanos: Option<i32>) -> Result<String, ConvertError> {
    let ts = jiff::Timestamp::from_second(seconds)
        .map_err(|e| ConvertError::new(format!("time out of range: {e}")))?;
    Ok(match nanos {
        None => ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(n) => {
            let micros = n.clamp(0, 999_999_999) / 1000;
            format!("{}.{micros:06}Z", ts.strftime("%Y-%m-%dT%H:%M:%S"))
        }
    })
}

fn parse_time(value: &Value) -> Result<Option<(i64, i32)>, ConvertError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => {
            let ts: jiff::Timestamp = s
                .parse()
                .map_err(|e| ConvertError::new(format!("invalid RFC 3339 time {s:?}: {e}")))?;
            Ok(Some((ts.as_second(), ts.subsec_nanosecond())))
        }
        other => Err(type_error("an RFC 3339 time string", other)),
    }
}

/// `metav1.Time`: RFC 3339 with second precision; the zero time is `null`.
impl PbJson for Time {
    fn to_json(&self) -> Value {
        match (self.seconds.unwrap_or(0), self.nanos.unwrap_or(0)) {
            (0, 0) => Value::Null,
            // An unrepresentable instant has no JSON form; Go would fail too.
            (s, _) => format_time(s, None).map_or(Value::Null, Value::String),
        }
    }
    fn from_json(value: &Value) -> Result<Self, ConvertError> {
        Ok(match parse_time(value)? {
            None => Time::default(),
            // metav1.Time drops sub-second precision on both the JSON and protobuf paths.
            Some((seconds, _)) => Time {
                seconds: Some(seconds),
                nanos: Some(0),
            },
        })
    }
    fn from_null() -> Option<Self> {
        Some(Time::default())
    }
}

/// `metav1.MicroTime`: RFC 3339 with six fractional digits; the zero time is `null`.
impl PbJson for MicroTime {
    fn to_json(&self) -> Value {
        match (self.seconds.unwrap_or(0), self.nanos.unwrap_or(0)) {
            (0, 0) => Value::Null,
            (s, n) => format_time(s, Some(n)).map_or(Value::Null, Value::String),
        }
    }
    fn from_json(value: &Value) -> Result<Self, ConvertError> {
        Ok(match parse_time(value)? {
            None => MicroTime::default(),
            Some((seconds, nanos)) => MicroTime {
                seconds: Some(seconds),
                nanos: Some(nanos / 1000 * 1000),
            },
        })
    }
    fn from_null() -> Option<Self> {
        Some(MicroTime::default())
    }
}

/// `intstr.IntOrString`: a JSON number (type 0) or string (type 1).
impl PbJson for IntOrString {
    fn to_json(&self) -> Value {
        if self.r#type == Some(1) {
            Value::String(self.str_val.clone().unwrap_or_default())
        } else {
            Value::from(self.int_val.unwrap_or(0))
        }
    }
    fn from_json(value: &Value) -> Result<Self, ConvertError> {
        match value {
            Value::String(s) => Ok(IntOrString {
                r#type: Some(1),
                int_val: Some(0),
                str_val: Some(s.clone()),
            }),
            Value::Null => Ok(IntOrString::default()),
            other => Ok(IntOrString {
                r#type: Some(0),
                int_val: Some(i32::elem_from_json(other)?),
                str_val: Some(String::new()),
            }),
        }
    }
}

/// `resource.Quantity`: its canonical string (`"0"` when empty).
impl PbJson for Quantity {
    fn to_json(&self) -> Value {
        match self.string.as_deref() {
            None | Some("") => Value::String("0".to_owned()),
            Some(s) => Value::String(s.to_owned()),
        }
    }
    fn from_json(value: &Value) -> Result<Self, ConvertError> {
        match value {
            Value::String(s) => Ok(Quantity {
                string: Some(s.clone()),
            }),
            // Go accepts bare numbers for quantities and canonicalizes them.
            Value::Number(n) => Ok(Quantity {
                string: Some(n.to_string()),
            }),
            Value::Null => Ok(Quantity::default()),
            other => Err(type_error("a quantity string", other)),
        }
    }
}

/// `metav1.FieldsV1` (managedFields): raw bytes holding a JSON object.
impl PbJson for FieldsV1 {
    fn to_json(&self) -> Value {
        match self.raw.as_deref() {
            None | Some([]) => Value::Object(Map::new()),
            Some(raw) => serde_json::from_slice(raw).unwrap_or(Value::Null),
        }
    }
    fn from_json(value: &Value) -> Result<Self, ConvertError> {
        let raw = serde_json::to_vec(value)
            .map_err(|e| ConvertError::new(format!("cannot serialize fieldsV1: {e}")))?;
        Ok(FieldsV1 { raw: Some(raw) })
    }
}

/// `ExtraValue` (authentication and authorization): a list of strings in JSON.
macro_rules! extra_value {
    ($ty:path) => {
        impl PbJson for $ty {
            fn to_json(&self) -> Value {
                Value::from(self.items.clone())
            }
            fn from_json(value: &Value) -> Result<Self, ConvertError> {
                match value {
                    Value::Array(items) => Ok(Self {
                        items: items
                            .iter()
                            .map(|v| match v {
                                Value::String(s) => Ok(s.clone()),
                                other => Err(type_error("a string", other)),
                            })
                            .collect::<Result<_, _>>()?,
                    }),
                    other => Err(type_error("an array of strings", other)),
                }
            }
        }
    };
}
extra_value!(k8s_pb::api::authorization::v1::ExtraValue);
extra_value!(k8s_pb::api::authentication::v1::ExtraValue);
