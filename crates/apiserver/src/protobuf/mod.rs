//! Kubernetes protobuf (`application/vnd.kubernetes.protobuf`) bodies ⇄ JSON values.
//!
//! client-go's typed clients (so `kubectl create namespace|deployment|configmap|secret`,
//! `kubectl run`, `kubectl expose`, and the DeleteOptions of `kubectl delete`) send
//! protobuf request bodies. This module turns such a body into exactly the
//! [`serde_json::Value`] the JSON decoder would have produced for the same object,
//! and turns a JSON object back into a protobuf body for clients that ask for one.
//!
//! # Wire format
//! A body is the magic `k8s\0` followed by a `runtime.Unknown` message:
//! `typeMeta{apiVersion, kind}`, `raw` (the serialized kind message), `contentEncoding`
//! (must be empty) and `contentType` (empty or protobuf). Messages are decoded and
//! encoded with the `k8s-pb` prost bindings; the prost ⇄ JSON mapping is generic,
//! driven by the generated field table `schema.rs` (see `convert.rs` for the rules:
//! JSON names, omitted defaults, `Time`/`MicroTime`, `IntOrString`, `Quantity`,
//! base64 bytes, maps, inline structs).
//!
//! # API for the request/response path
//! - Request bodies: if [`is_protobuf_content_type`] holds for `Content-Type`, call
//!   [`decode`]; map any [`ProtobufError`] to a 400 BadRequest Status (its `Display`
//!   is the message). The result has `apiVersion` and `kind` set, like a JSON body.
//!   For a content type that is neither JSON, YAML, a patch type nor protobuf, answer
//!   [`unsupported_media_type_status`] (415).
//! - Responses: if [`negotiate`] returns [`ResponseFormat::Protobuf`] for the
//!   `Accept` header and [`is_supported`] holds for the object's apiVersion/kind, send
//!   [`encode`]'s bytes with `Content-Type: application/vnd.kubernetes.protobuf`;
//!   otherwise JSON. If `encode` fails (an object not matching its schema), log it and
//!   fall back to JSON. Tables (`as=Table`) and error Statuses are always JSON.
//! - Watches: clients that also accept JSON (kubectl and client-go always list
//!   `application/json` after protobuf) get the JSON watch stream. Only a client that
//!   accepts protobuf alone ([`negotiate_watch`] returns `Protobuf`) gets protobuf
//!   frames from [`encode_watch_event`], with Content-Type [`PROTOBUF_WATCH`].
//!
//! Where it is wired: `rest::decode_object` (create/update bodies), `rest::delete_options`
//! (DeleteOptions bodies), `Ctx::respond` (protobuf answers for protobuf-first clients;
//! Status answers stay JSON) and the watch `Encoder` in `watch.rs`.
//!
//! The field table is generated: `generate.py` reads the k8s-pb sources (messages,
//! fields) and the k8s-openapi sources (JSON names, required fields) from the cargo
//! registry, plus a short list of Go pointer scalars, and writes `schema.rs`; the test
//! `generated_schema_is_current` keeps the two in step.
//!
//! Nothing here panics on network data: garbage, truncated or hostile bodies yield a
//! [`ProtobufError`].

pub(crate) mod convert;
#[allow(missing_docs)]
mod schema;

use prost::Message as _;
use serde_json::{Map, Value};

pub use convert::ConvertError;
use convert::PbJson;

/// Media type of Kubernetes protobuf bodies.
pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
/// Content-Type of a protobuf watch stream (length-prefixed frames).
pub const PROTOBUF_WATCH: &str = "application/vnd.kubernetes.protobuf;stream=watch";
/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: [u8; 4] = *b"k8s\0";

/// Why a protobuf body could not be decoded, or an object could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error("protobuf body does not start with the Kubernetes magic prefix \"k8s\\x00\"")]
    MissingMagic,
    /// The `runtime.Unknown` envelope is malformed.
    #[error("malformed protobuf envelope: {0}")]
    Envelope(prost::DecodeError),
    /// The envelope names no apiVersion or kind.
    #[error("protobuf envelope does not name an apiVersion and kind")]
    MissingTypeMeta,
    /// The envelope's contentEncoding or contentType is not plain protobuf.
    #[error("unsupported protobuf envelope content {0:?}")]
    UnsupportedContent(String),
    /// No protobuf schema is known for this kind.
    #[error("{kind} in {api_version} cannot be sent as protobuf")]
    UnsupportedKind {
        /// The apiVersion named by the body.
        api_version: String,
        /// The kind named by the body.
        kind: String,
    },
    /// The kind message inside the envelope is malformed.
    #[error("malformed protobuf {kind}: {source}")]
    Message {
        /// The kind being decoded.
        kind: String,
        /// The prost error.
        source: prost::DecodeError,
    },
    /// The object did not fit the kind's schema.
    #[error("cannot convert {kind}: {source}")]
    Convert {
        /// The kind being converted.
        kind: String,
        /// Where and why.
        source: ConvertError,
    },
    /// The JSON object to encode has no string `apiVersion` and `kind`.
    #[error("object to encode has no apiVersion and kind")]
    MissingKind,
}

/// Converts one kind message between its prost bytes and JSON.
struct KindCodec {
    decode: fn(&[u8], &str) -> Result<Value, ProtobufError>,
    encode: fn(&Value, &str) -> Result<Vec<u8>, ProtobufError>,
}

fn decode_as<M: PbJson + prost::Message>(raw: &[u8], kind: &str) -> Result<Value, ProtobufError> {
    let message = M::decode(raw).map_err(|source| ProtobufError::Message {
        kind: kind.to_owned(),
        source,
    })?;
    Ok(message.to_json())
}

fn encode_as<M: PbJson + prost::Message>(
    object: &Value,
    kind: &str,
) -> Result<Vec<u8>, ProtobufError> {
    let message = M::from_json(object).map_err(|source| ProtobufError::Convert {
        kind: kind.to_owned(),
        source,
    })?;
    Ok(message.encode_to_vec())
}

macro_rules! kinds {
    ($($api:literal $kind:literal => $ty:path;)*) => {
        fn codec(api_version: &str, kind: &str) -> Option<KindCodec> {
            match (api_version, kind) {
                $(($api, $kind) => Some(KindCodec {
                    decode: decode_as::<$ty>,
                    encode: encode_as::<$ty>,
                }),)*
                // Options and Status travel under whatever group version the client
                // used (client-go encodes DeleteOptions with the resource's group).
                (_, "DeleteOptions") => Some(KindCodec {
                    decode: decode_as::<meta::DeleteOptions>,
                    encode: encode_as::<meta::DeleteOptions>,
                }),
                (_, "Status") => Some(KindCodec {
                    decode: decode_as::<meta::Status>,
                    encode: encode_as::<meta::Status>,
                }),
                _ => None,
            }
        }

        /// Every (apiVersion, kind) with a protobuf form, besides `DeleteOptions` and
        /// `Status` (accepted under any apiVersion).
        pub const SUPPORTED_KINDS: &[(&str, &str)] = &[$(($api, $kind)),*];
    };
}

use k8s_pb::api::authentication::v1 as authentication;
use k8s_pb::api::events::v1 as events;
use k8s_pb::api::{apps::v1 as apps, coordination::v1 as coordination, core::v1 as core};
use k8s_pb::api::{autoscaling::v1 as autoscaling, batch::v1 as batch, discovery::v1 as discovery};
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;

kinds! {
    "v1" "Namespace" => core::Namespace;
    "v1" "NamespaceList" => core::NamespaceList;
    "v1" "Pod" => core::Pod;
    "v1" "PodList" => core::PodList;
    "v1" "Node" => core::Node;
    "v1" "NodeList" => core::NodeList;
    "v1" "Event" => core::Event;
    "v1" "EventList" => core::EventList;
    "v1" "Service" => core::Service;
    "v1" "ServiceList" => core::ServiceList;
    "v1" "Endpoints" => core::Endpoints;
    "v1" "EndpointsList" => core::EndpointsList;
    "v1" "ConfigMap" => core::ConfigMap;
    "v1" "ConfigMapList" => core::ConfigMapList;
    "v1" "Secret" => core::Secret;
    "v1" "SecretList" => core::SecretList;
    "v1" "Binding" => core::Binding;
    "v1" "ResourceQuota" => core::ResourceQuota;
    "v1" "ResourceQuotaList" => core::ResourceQuotaList;
    "v1" "ServiceAccount" => core::ServiceAccount;
    "v1" "ServiceAccountList" => core::ServiceAccountList;
    "policy/v1" "PodDisruptionBudget" => k8s_pb::api::policy::v1::PodDisruptionBudget;
    "policy/v1" "PodDisruptionBudgetList" => k8s_pb::api::policy::v1::PodDisruptionBudgetList;
    "scheduling.k8s.io/v1" "PriorityClass" => k8s_pb::api::scheduling::v1::PriorityClass;
    "scheduling.k8s.io/v1" "PriorityClassList" => k8s_pb::api::scheduling::v1::PriorityClassList;
    "networking.k8s.io/v1" "Ingress" => k8s_pb::api::networking::v1::Ingress;
    "networking.k8s.io/v1" "IngressList" => k8s_pb::api::networking::v1::IngressList;
    "coordination.k8s.io/v1" "Lease" => coordination::Lease;
    "coordination.k8s.io/v1" "LeaseList" => coordination::LeaseList;
    "apps/v1" "ReplicaSet" => apps::ReplicaSet;
    "apps/v1" "ReplicaSetList" => apps::ReplicaSetList;
    "apps/v1" "Deployment" => apps::Deployment;
    "apps/v1" "DeploymentList" => apps::DeploymentList;
    "apps/v1" "StatefulSet" => apps::StatefulSet;
    "apps/v1" "StatefulSetList" => apps::StatefulSetList;
    "batch/v1" "Job" => batch::Job;
    "batch/v1" "JobList" => batch::JobList;
    "batch/v1" "CronJob" => batch::CronJob;
    "batch/v1" "CronJobList" => batch::CronJobList;
    "autoscaling/v1" "Scale" => autoscaling::Scale;
    "discovery.k8s.io/v1" "EndpointSlice" => discovery::EndpointSlice;
    "discovery.k8s.io/v1" "EndpointSliceList" => discovery::EndpointSliceList;
    "events.k8s.io/v1" "Event" => events::Event;
    "events.k8s.io/v1" "EventList" => events::EventList;
    "rbac.authorization.k8s.io/v1" "Role" => k8s_pb::api::rbac::v1::Role;
    "rbac.authorization.k8s.io/v1" "RoleList" => k8s_pb::api::rbac::v1::RoleList;
    "rbac.authorization.k8s.io/v1" "ClusterRole" => k8s_pb::api::rbac::v1::ClusterRole;
    "rbac.authorization.k8s.io/v1" "ClusterRoleList" => k8s_pb::api::rbac::v1::ClusterRoleList;
    "rbac.authorization.k8s.io/v1" "RoleBinding" => k8s_pb::api::rbac::v1::RoleBinding;
    "rbac.authorization.k8s.io/v1" "RoleBindingList" => k8s_pb::api::rbac::v1::RoleBindingList;
    "rbac.authorization.k8s.io/v1" "ClusterRoleBinding" => k8s_pb::api::rbac::v1::ClusterRoleBinding;
    "rbac.authorization.k8s.io/v1" "ClusterRoleBindingList" => k8s_pb::api::rbac::v1::ClusterRoleBindingList;
    "authorization.k8s.io/v1" "SelfSubjectAccessReview" => k8s_pb::api::authorization::v1::SelfSubjectAccessReview;
    "authorization.k8s.io/v1" "SelfSubjectRulesReview" => k8s_pb::api::authorization::v1::SelfSubjectRulesReview;
    "authorization.k8s.io/v1" "SubjectAccessReview" => k8s_pb::api::authorization::v1::SubjectAccessReview;
    "authorization.k8s.io/v1" "LocalSubjectAccessReview" => k8s_pb::api::authorization::v1::LocalSubjectAccessReview;
    "authentication.k8s.io/v1" "SelfSubjectReview" => k8s_pb::api::authentication::v1::SelfSubjectReview;
    "authentication.k8s.io/v1" "TokenRequest" => authentication::TokenRequest;
}

/// Whether objects of this apiVersion/kind can be encoded as protobuf.
pub fn is_supported(api_version: &str, kind: &str) -> bool {
    codec(api_version, kind).is_some()
}

/// Decodes a protobuf request body (`k8s\0` + `runtime.Unknown`) into the JSON value
/// the JSON decoder would produce, with `apiVersion` and `kind` set.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let unknown = decode_envelope(body)?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    if api_version.is_empty() || kind.is_empty() {
        return Err(ProtobufError::MissingTypeMeta);
    }
    let codec = codec(&api_version, &kind).ok_or_else(|| ProtobufError::UnsupportedKind {
        api_version: api_version.clone(),
        kind: kind.clone(),
    })?;
    let mut value = (codec.decode)(unknown.raw.as_deref().unwrap_or_default(), &kind)?;
    if let Value::Object(map) = &mut value {
        map.insert("apiVersion".to_owned(), Value::String(api_version));
        map.insert("kind".to_owned(), Value::String(kind));
    }
    Ok(value)
}

fn decode_envelope(
    body: &[u8],
) -> Result<k8s_pb::apimachinery::pkg::runtime::Unknown, ProtobufError> {
    let rest = body
        .strip_prefix(&MAGIC)
        .ok_or(ProtobufError::MissingMagic)?;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(rest)
        .map_err(ProtobufError::Envelope)?;
    if let Some(encoding) = unknown
        .content_encoding
        .as_deref()
        .filter(|e| !e.is_empty())
    {
        return Err(ProtobufError::UnsupportedContent(encoding.to_owned()));
    }
    if let Some(ct) = unknown.content_type.as_deref().filter(|c| !c.is_empty())
        && !is_protobuf_content_type(ct)
    {
        return Err(ProtobufError::UnsupportedContent(ct.to_owned()));
    }
    Ok(unknown)
}

/// Encodes a JSON object (with `apiVersion` and `kind`) as a protobuf body.
pub fn encode(object: &Value) -> Result<Vec<u8>, ProtobufError> {
    let (api_version, kind) = type_of(object)?;
    let codec = codec(api_version, kind).ok_or_else(|| ProtobufError::UnsupportedKind {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
    })?;
    let raw = (codec.encode)(object, kind)?;
    Ok(envelope(api_version, kind, raw))
}

fn type_of(object: &Value) -> Result<(&str, &str), ProtobufError> {
    let api_version = object.get("apiVersion").and_then(Value::as_str);
    let kind = object.get("kind").and_then(Value::as_str);
    match (api_version, kind) {
        (Some(a), Some(k)) if !a.is_empty() && !k.is_empty() => Ok((a, k)),
        _ => Err(ProtobufError::MissingKind),
    }
}

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some(api_version.to_owned()),
            kind: Some(kind.to_owned()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&unknown.encode_to_vec());
    out
}

/// Encodes one watch event as a protobuf stream frame: a 4-byte big-endian length,
/// then a `metav1.WatchEvent` (not enveloped) whose `object.raw` is the object's
/// protobuf body (enveloped). `event_type` is `ADDED`, `MODIFIED`, `DELETED`,
/// `BOOKMARK` or `ERROR`.
pub fn encode_watch_event(event_type: &str, object: &Value) -> Result<Vec<u8>, ProtobufError> {
    let event = meta::WatchEvent {
        r#type: Some(event_type.to_owned()),
        object: Some(k8s_pb::apimachinery::pkg::runtime::RawExtension {
            raw: Some(encode(object)?),
        }),
    };
    let body = event.encode_to_vec();
    let len = u32::try_from(body.len()).map_err(|_| ProtobufError::Convert {
        kind: "WatchEvent".to_owned(),
        source: ConvertError::new("event larger than 4 GiB"),
    })?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes one protobuf watch frame made by [`encode_watch_event`] (without the
/// length prefix) into `(type, object)`. Used by tests and by clients of the server.
pub fn decode_watch_event(frame: &[u8]) -> Result<(String, Value), ProtobufError> {
    let event = meta::WatchEvent::decode(frame).map_err(|source| ProtobufError::Message {
        kind: "WatchEvent".to_owned(),
        source,
    })?;
    let raw = event.object.and_then(|o| o.raw).unwrap_or_default();
    Ok((event.r#type.unwrap_or_default(), decode(&raw)?))
}

/// The media type of one `Content-Type`/`Accept` entry, lower-cased, without parameters.
fn essence(media: &str) -> String {
    media
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether a request `Content-Type` names Kubernetes protobuf.
pub fn is_protobuf_content_type(content_type: &str) -> bool {
    essence(content_type) == PROTOBUF
}

/// The body format chosen for a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// `application/json` (also the answer when nothing better is acceptable).
    Json,
    /// `application/vnd.kubernetes.protobuf`.
    Protobuf,
}

/// Picks the response format from an `Accept` header: protobuf when the first entry
/// the server can produce is protobuf (client-go lists its preference first and sends
/// no q-values); JSON otherwise, including when `Accept` is absent. Protobuf entries
/// asking for a transformation (`as=Table`, `as=PartialObjectMetadataList`) are skipped.
pub fn negotiate(accept: Option<&str>) -> ResponseFormat {
    for entry in accept.unwrap_or_default().split(',') {
        let kind = essence(entry);
        if kind == PROTOBUF {
            // `as=Table` / `as=PartialObjectMetadata…` are answered in JSON by the caller.
            let transformed = entry
                .split(';')
                .skip(1)
                .any(|p| p.trim().to_ascii_lowercase().starts_with("as="));
            if transformed {
                continue;
            }
            return ResponseFormat::Protobuf;
        }
        if matches!(
            kind.as_str(),
            "application/json" | "application/yaml" | "application/*" | "*/*"
        ) {
            return ResponseFormat::Json;
        }
    }
    ResponseFormat::Json
}

/// Picks the watch stream format: protobuf frames only for a client that accepts
/// protobuf and no JSON at all; JSON lines otherwise (client-go decodes either).
pub fn negotiate_watch(accept: Option<&str>) -> ResponseFormat {
    let accept = accept.unwrap_or_default();
    let mut protobuf = false;
    for entry in accept.split(',') {
        match essence(entry).as_str() {
            "application/json" | "application/*" | "*/*" | "" => return ResponseFormat::Json,
            PROTOBUF => protobuf = true,
            _ => {}
        }
    }
    if protobuf {
        ResponseFormat::Protobuf
    } else {
        ResponseFormat::Json
    }
}

/// The 415 `Status` for a request body whose content type the server cannot decode
/// (same message as kube-apiserver).
pub fn unsupported_media_type_status(content_type: &str) -> Value {
    let mut status = Map::new();
    status.insert("kind".into(), "Status".into());
    status.insert("apiVersion".into(), "v1".into());
    status.insert("metadata".into(), Value::Object(Map::new()));
    status.insert("status".into(), "Failure".into());
    status.insert(
        "message".into(),
        Value::String(format!(
            "the body of the request was in an unknown format ({content_type}) - accepted media \
             types include: application/json, application/yaml, {PROTOBUF}"
        )),
    );
    status.insert("reason".into(), "UnsupportedMediaType".into());
    status.insert("code".into(), 415.into());
    Value::Object(status)
}
