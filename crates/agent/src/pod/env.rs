//! A container's environment, resolved from the pod as the kubelet's
//! `makeEnvironmentVariables` does it:
//!
//! 1. `envFrom`, in order: every key of the ConfigMap's `data` (or the Secret's `data`), with
//!    the `prefix` prepended; keys that are not valid variable names are skipped and reported
//!    (an `InvalidEnvironmentVariableNames` warning per source);
//! 2. `env`, in order: a non-empty `value` with its `$(VAR)` references expanded against the
//!    variables defined so far (envFrom's and earlier env entries); otherwise `valueFrom`:
//!    `fieldRef` (the downward API), `resourceFieldRef` (a missing limit falls back to the
//!    node's allocatable), `configMapKeyRef`, `secretKeyRef`.
//!
//! A later definition of a name replaces the earlier one. A missing object or key that is not
//! `optional` is an [`EnvError`] whose message is the kubelet's (`configmap "x" not found`,
//! `couldn't find key k in ConfigMap ns/x`, ...); the worker reports it as the container's
//! `CreateContainerConfigError`. `command` and `args` are expanded against the final
//! environment ([`expand_command`]).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use podvisor_api::status::parse_quantity;

use crate::error::AgentError;
use crate::objects::ObjectSource;

/// The reason of the event about skipped `envFrom` keys.
pub const INVALID_ENV_NAMES: &str = "InvalidEnvironmentVariableNames";

/// Why a container's environment cannot be built. The display is the kubelet's message.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A referenced ConfigMap does not exist.
    #[error("configmap {name:?} not found")]
    ConfigMapNotFound {
        /// Its name.
        name: String,
    },
    /// A referenced Secret does not exist.
    #[error("secret {name:?} not found")]
    SecretNotFound {
        /// Its name.
        name: String,
    },
    /// A `configMapKeyRef` key is not in the ConfigMap.
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound {
        /// The pod's namespace.
        namespace: String,
        /// The ConfigMap.
        name: String,
        /// The key.
        key: String,
    },
    /// A `secretKeyRef` key is not in the Secret.
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound {
        /// The pod's namespace.
        namespace: String,
        /// The Secret.
        name: String,
        /// The key.
        key: String,
    },
    /// A `fieldRef` that cannot be resolved.
    #[error("{0}")]
    Field(String),
    /// A `resourceFieldRef` that cannot be resolved.
    #[error("{0}")]
    Resource(String),
    /// Reading an object failed (other than "not found").
    #[error("{0}")]
    Api(#[from] AgentError),
    /// The agent has not listed Services yet (service links cannot be built).
    #[error("services have not yet been read at least once, cannot construct envvars")]
    ServicesNotSynced,
}

/// What the resolution needs besides the container.
pub struct EnvSources<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// The node's IPs (host IPs; podvisor pods use the node's IP as theirs).
    pub host_ips: Vec<String>,
    /// The pod's IPs (the node's IP for now).
    pub pod_ips: Vec<String>,
    /// The node's allocatable resources (limits that are not set default to them).
    pub allocatable: &'a BTreeMap<String, Quantity>,
    /// ConfigMaps and Secrets.
    pub objects: &'a dyn ObjectSource,
}

/// A resolved environment, and the warnings to report as events.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResolvedEnv {
    /// `(name, value)`, each name once, in definition order (a redefinition moves it last).
    pub vars: Vec<(String, String)>,
    /// `InvalidEnvironmentVariableNames` messages, one per `envFrom` source with bad keys.
    pub warnings: Vec<String>,
}

/// Whether `name` is a valid environment variable name (`IsEnvVarName`:
/// `[-._a-zA-Z][-._a-zA-Z0-9]*`, and not `.`, `..` or starting with `..`).
pub fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let ok_first = first.is_ascii_alphabetic() || matches!(first, '-' | '.' | '_');
    let ok_rest = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    ok_first && ok_rest && name != "." && !name.starts_with("..")
}

#[derive(Default)]
struct Env<'s> {
    vars: Vec<(String, String)>,
    index: HashMap<String, String>,
    /// Service-link variables: `$(VAR)` falls back to them.
    services: &'s [(String, String)],
}

impl Env<'_> {
    fn set(&mut self, name: String, value: String) {
        if self.index.insert(name.clone(), value.clone()).is_some() {
            self.vars.retain(|(n, _)| n != &name);
        }
        self.vars.push((name, value));
    }

    fn expand(&self, s: &str) -> String {
        let view: BTreeMap<&str, &str> = self
            .services
            .iter()
            .map(|(k, v)| (k, v))
            .chain(self.index.iter())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        podvisor_api::expand::expand(s, &view)
    }
}

/// Caches objects for one resolution (each object is read once, as the kubelet's maps do).
struct Objects<'a> {
    src: &'a dyn ObjectSource,
    namespace: &'a str,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Objects<'_> {
    async fn config_map(&mut self, name: &str) -> Result<Option<&ConfigMap>, AgentError> {
        if !self.config_maps.contains_key(name) {
            let cm = self.src.config_map(self.namespace, name).await?;
            self.config_maps.insert(name.to_string(), cm);
        }
        Ok(self.config_maps.get(name).and_then(Option::as_ref))
    }

    async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, AgentError> {
        if !self.secrets.contains_key(name) {
            let s = self.src.secret(self.namespace, name).await?;
            self.secrets.insert(name.to_string(), s);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }
}

fn secret_value(v: &k8s_openapi::ByteString) -> String {
    String::from_utf8_lossy(&v.0).into_owned()
}

/// Resolves the environment of container `c` of `src.pod`.
pub async fn resolve(src: &EnvSources<'_>, c: &Container) -> Result<ResolvedEnv, EnvError> {
    resolve_with_services(src, c, &[]).await
}

/// Resolves the environment of container `c` of `src.pod` with the service-link variables
/// `services` ([`super::service_env`]): `$(VAR)` may name them, and those the container does
/// not define itself follow its own variables (the kubelet's order).
pub async fn resolve_with_services(
    src: &EnvSources<'_>,
    c: &Container,
    services: &[(String, String)],
) -> Result<ResolvedEnv, EnvError> {
    let namespace = src.pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut objects = Objects {
        src: src.objects,
        namespace,
        config_maps: HashMap::new(),
        secrets: HashMap::new(),
    };
    let mut env = Env {
        services,
        ..Env::default()
    };
    let mut warnings = Vec::new();
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let mut invalid = Vec::new();
        let mut add = |env: &mut Env, k: &str, v: String| {
            let name = format!("{prefix}{k}");
            if is_env_var_name(&name) {
                env.set(name, v);
            } else {
                invalid.push(name);
            }
        };
        let (kind, name) = if let Some(r) = &from.config_map_ref {
            let optional = r.optional == Some(true);
            match objects.config_map(&r.name).await? {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        add(&mut env, k, v.clone());
                    }
                }
                None if optional => continue,
                None => {
                    return Err(EnvError::ConfigMapNotFound {
                        name: r.name.clone(),
                    });
                }
            }
            ("configMap", &r.name)
        } else if let Some(r) = &from.secret_ref {
            let optional = r.optional == Some(true);
            match objects.secret(&r.name).await? {
                Some(s) => {
                    for (k, v) in s.data.iter().flatten() {
                        add(&mut env, k, secret_value(v));
                    }
                }
                None if optional => continue,
                None => {
                    return Err(EnvError::SecretNotFound {
                        name: r.name.clone(),
                    });
                }
            }
            ("secret", &r.name)
        } else {
            continue;
        };
        if !invalid.is_empty() {
            invalid.sort();
            warnings.push(format!(
                "Keys [{}] from the EnvFrom {kind} {namespace}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            ));
        }
    }
    for e in c.env.iter().flatten() {
        let literal = e.value.as_deref().unwrap_or("");
        let value = if !literal.is_empty() {
            env.expand(literal)
        } else if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                field_value(src, f)?
            } else if let Some(r) = &from.resource_field_ref {
                resource_value(src, c, r)?
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                match objects.config_map(&r.name).await? {
                    Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::ConfigMapKeyNotFound {
                                namespace: namespace.to_string(),
                                name: r.name.clone(),
                                key: r.key.clone(),
                            });
                        }
                    },
                    None if optional => continue,
                    None => {
                        return Err(EnvError::ConfigMapNotFound {
                            name: r.name.clone(),
                        });
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                match objects.secret(&r.name).await? {
                    Some(s) => match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => secret_value(v),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::SecretKeyNotFound {
                                namespace: namespace.to_string(),
                                name: r.name.clone(),
                                key: r.key.clone(),
                            });
                        }
                    },
                    None if optional => continue,
                    None => {
                        return Err(EnvError::SecretNotFound {
                            name: r.name.clone(),
                        });
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(e.name.clone(), value);
    }
    for (name, value) in services {
        if !env.index.contains_key(name) {
            env.vars.push((name.clone(), value.clone()));
        }
    }
    Ok(ResolvedEnv {
        vars: env.vars,
        warnings,
    })
}

/// `command` and `args` of `c` with `$(VAR)` expanded against the final environment
/// (`ExpandContainerCommandAndArgs`).
pub fn expand_command(c: &Container, vars: &[(String, String)]) -> (Vec<String>, Vec<String>) {
    let view: BTreeMap<&str, &str> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let expand = |v: &Option<Vec<String>>| -> Vec<String> {
        v.iter()
            .flatten()
            .map(|a| podvisor_api::expand::expand(a, &view))
            .collect()
    };
    (expand(&c.command), expand(&c.args))
}

/// Splits `metadata.labels['key']` into (`metadata.labels`, `key`).
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let open = inner.find("['")?;
    Some((&inner[..open], &inner[open + 2..]))
}

/// `k="v"` lines of a map, sorted by key, values quoted as Go's `%q` (`fieldpath.FormatMap`).
fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `key` is a qualified name (`[prefix/]name`, the name 1–63 characters of
/// alphanumerics, `-`, `_`, `.` starting and ending alphanumeric; the prefix a DNS subdomain).
fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && l.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && l.ends_with(|c: char| c.is_ascii_alphanumeric())
            })
    });
    name_ok && prefix_ok
}

/// The value of a `fieldRef` (`podFieldSelectorRuntimeValue`, `ExtractFieldPathAsString`).
pub fn field_value(src: &EnvSources<'_>, f: &ObjectFieldSelector) -> Result<String, EnvError> {
    let version = f.api_version.as_deref().unwrap_or("v1");
    if !version.is_empty() && version != "v1" {
        return Err(EnvError::Field(format!(
            "unsupported pod version: {version}"
        )));
    }
    let pod = src.pod;
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let path = f.field_path.as_str();
    if let Some((base, key)) = split_subscript(path) {
        return match base {
            "metadata.annotations" => {
                if !is_qualified_name(&key.to_ascii_lowercase()) {
                    return Err(EnvError::Field(format!(
                        "invalid key subscript in {path}: not a qualified name"
                    )));
                }
                Ok(meta
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(key))
                    .cloned()
                    .unwrap_or_default())
            }
            "metadata.labels" => {
                if !is_qualified_name(key) {
                    return Err(EnvError::Field(format!(
                        "invalid key subscript in {path}: not a qualified name"
                    )));
                }
                Ok(meta
                    .labels
                    .as_ref()
                    .and_then(|a| a.get(key))
                    .cloned()
                    .unwrap_or_default())
            }
            _ => Err(EnvError::Field(format!(
                "fieldPath {base:?} does not support subscript"
            ))),
        };
    }
    let v = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => src.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => src.host_ips.join(","),
        "status.podIP" => src.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => src.pod_ips.join(","),
        other => {
            return Err(EnvError::Field(format!("unsupported fieldPath: {other}")));
        }
    };
    Ok(v)
}

fn nanos_of(q: Option<&Quantity>) -> Result<i128, EnvError> {
    match q {
        None => Ok(0),
        Some(q) => parse_quantity(&q.0).map_err(|e| EnvError::Resource(e.to_string())),
    }
}

/// `ceil(a / b)` for b > 0.
fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && ((a > 0) == (b > 0)) {
        q + 1
    } else {
        q
    }
}

/// The value of a `resourceFieldRef` (`containerResourceRuntimeValue` on the pod whose
/// missing cpu/memory/ephemeral-storage limits are the node's allocatable).
pub fn resource_value(
    src: &EnvSources<'_>,
    c: &Container,
    r: &ResourceFieldSelector,
) -> Result<String, EnvError> {
    let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
        None => c,
        Some(name) => src
            .pod
            .spec
            .as_ref()
            .and_then(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .find(|x| x.name == name)
            })
            .ok_or_else(|| EnvError::Resource(format!("container {name} not found")))?,
    };
    let res = target.resources.as_ref();
    let (kind, resource) = r.resource.split_once('.').ok_or_else(|| {
        EnvError::Resource(format!("unsupported container resource : {}", r.resource))
    })?;
    if !matches!(resource, "cpu" | "memory" | "ephemeral-storage")
        || !matches!(kind, "limits" | "requests")
    {
        return Err(EnvError::Resource(format!(
            "unsupported container resource : {}",
            r.resource
        )));
    }
    let q = if kind == "limits" {
        res.and_then(|x| x.limits.as_ref())
            .and_then(|l| l.get(resource))
            .or_else(|| src.allocatable.get(resource))
    } else {
        res.and_then(|x| x.requests.as_ref())
            .and_then(|l| l.get(resource))
    };
    let value = nanos_of(q)?;
    let divisor = match r.divisor.as_ref().map(|d| parse_quantity(&d.0)) {
        None => 0,
        Some(Ok(d)) => d,
        Some(Err(e)) => return Err(EnvError::Resource(e.to_string())),
    };
    let divisor = if divisor == 0 { 1_000_000_000 } else { divisor };
    // cpu: ceil(milli(value) / milli(divisor)); memory, storage: ceil(value / divisor), each
    // of value and divisor rounded up to whole units first (`Quantity.Value()`).
    let unit: i128 = if resource == "cpu" {
        1_000_000
    } else {
        1_000_000_000
    };
    let v = div_ceil(value, unit);
    let d = div_ceil(divisor, unit);
    if d <= 0 {
        return Err(EnvError::Resource(format!(
            "invalid divisor for {}: {}",
            r.resource,
            r.divisor.as_ref().map(|q| q.0.as_str()).unwrap_or("")
        )));
    }
    Ok(div_ceil(v, d).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::MemoryObjects;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource, PodSpec,
        ResourceRequirements, SecretEnvSource, SecretKeySelector,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-0".into()),
                namespace: Some("shop".into()),
                uid: Some("u-123".into()),
                labels: Some(BTreeMap::from([
                    ("app".into(), "web".into()),
                    ("tier".into(), "front".into()),
                ])),
                annotations: Some(BTreeMap::from([
                    ("example.com/owner".into(), "team \"a\"".into()),
                    ("note".into(), "line1\nline2".into()),
                ])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-1".into()),
                service_account_name: Some("builder".into()),
                containers: vec![Container {
                    name: "side".into(),
                    resources: Some(ResourceRequirements {
                        limits: Some(BTreeMap::from([("memory".into(), Quantity("64Mi".into()))])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn allocatable() -> BTreeMap<String, Quantity> {
        BTreeMap::from([
            ("cpu".into(), Quantity("4".into())),
            ("memory".into(), Quantity("8Gi".into())),
            ("ephemeral-storage".into(), Quantity("100Gi".into())),
        ])
    }

    fn field(name: &str, path: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: Some("v1".into()),
                    field_path: path.into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn lit(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    fn res(name: &str, resource: &str, divisor: Option<&str>, container: Option<&str>) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                resource_field_ref: Some(ResourceFieldSelector {
                    container_name: container.map(String::from),
                    divisor: divisor.map(|d| Quantity(d.into())),
                    resource: resource.into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn cm_key(name: &str, cm: &str, key: &str, optional: Option<bool>) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: cm.into(),
                    key: key.into(),
                    optional,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn secret_key(name: &str, s: &str, key: &str, optional: Option<bool>) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: s.into(),
                    key: key.into(),
                    optional,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn store() -> MemoryObjects {
        let m = MemoryObjects::new();
        m.put_config_map(podvisor_testkit::config_map(
            "shop",
            "cfg",
            &[
                ("MODE", "fast"),
                ("1bad", "x"),
                ("app.properties", "a=b"),
                ("has space", "y"),
                ("SHARED", "from-cm"),
            ],
        ));
        m.put_secret(podvisor_testkit::secret(
            "shop",
            "creds",
            &[
                ("PASSWORD", b"s3cr3t"),
                ("SHARED", b"from-secret"),
                ("9lives", b"z"),
            ],
        ));
        // same name in another namespace: must not be visible
        m.put_config_map(ConfigMap {
            metadata: ObjectMeta {
                name: Some("other".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            ..Default::default()
        });
        m
    }

    async fn run(c: &Container, objects: &MemoryObjects, p: &Pod) -> Result<ResolvedEnv, EnvError> {
        let alloc = allocatable();
        let src = EnvSources {
            pod: p,
            host_ips: vec!["10.0.0.7".into()],
            pod_ips: vec!["10.0.0.7".into()],
            allocatable: &alloc,
            objects,
        };
        resolve(&src, c).await
    }

    fn container(env: Vec<EnvVar>) -> Container {
        Container {
            name: "app".into(),
            env: Some(env),
            ..Default::default()
        }
    }

    fn get<'a>(r: &'a ResolvedEnv, name: &str) -> Option<&'a str> {
        r.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[tokio::test]
    async fn every_field_ref() {
        let c = container(vec![
            field("NAME", "metadata.name"),
            field("NS", "metadata.namespace"),
            field("UID", "metadata.uid"),
            field("APP", "metadata.labels['app']"),
            field("MISSING_LABEL", "metadata.labels['nope']"),
            field("OWNER", "metadata.annotations['example.com/owner']"),
            field("LABELS", "metadata.labels"),
            field("ANNOTATIONS", "metadata.annotations"),
            field("NODE", "spec.nodeName"),
            field("SA", "spec.serviceAccountName"),
            field("HOST_IP", "status.hostIP"),
            field("HOST_IPS", "status.hostIPs"),
            field("POD_IP", "status.podIP"),
            field("POD_IPS", "status.podIPs"),
        ]);
        let r = run(&c, &store(), &pod()).await.unwrap();
        let want = [
            ("NAME", "web-0"),
            ("NS", "shop"),
            ("UID", "u-123"),
            ("APP", "web"),
            ("MISSING_LABEL", ""),
            ("OWNER", "team \"a\""),
            ("LABELS", "app=\"web\"\ntier=\"front\""),
            (
                "ANNOTATIONS",
                "example.com/owner=\"team \\\"a\\\"\"\nnote=\"line1\\nline2\"",
            ),
            ("NODE", "node-1"),
            ("SA", "builder"),
            ("HOST_IP", "10.0.0.7"),
            ("HOST_IPS", "10.0.0.7"),
            ("POD_IP", "10.0.0.7"),
            ("POD_IPS", "10.0.0.7"),
        ];
        let got: Vec<(&str, &str)> = r
            .vars
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, want);
        assert!(r.warnings.is_empty());
    }

    #[tokio::test]
    async fn unsupported_field_refs_are_errors() {
        for (path, msg) in [
            (
                "spec.restartPolicy",
                "unsupported fieldPath: spec.restartPolicy",
            ),
            (
                "metadata.name['x']",
                "fieldPath \"metadata.name\" does not support subscript",
            ),
            (
                "metadata.labels['-bad-']",
                "invalid key subscript in metadata.labels['-bad-']: not a qualified name",
            ),
        ] {
            let c = container(vec![field("X", path)]);
            let e = run(&c, &store(), &pod()).await.unwrap_err();
            assert_eq!(e.to_string(), msg);
        }
        let mut bad = field("X", "metadata.name");
        if let Some(f) = bad.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            f.api_version = Some("v2".into());
        }
        let e = run(&container(vec![bad]), &store(), &pod())
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "unsupported pod version: v2");
    }

    #[tokio::test]
    async fn resource_field_refs_with_divisors_and_allocatable_fallback() {
        let mut c = container(vec![
            res("CPU_LIMIT", "limits.cpu", None, None),
            res("CPU_LIMIT_M", "limits.cpu", Some("1m"), None),
            res("CPU_REQ", "requests.cpu", None, None),
            res("CPU_REQ_M", "requests.cpu", Some("1m"), None),
            res("MEM_LIMIT", "limits.memory", None, None),
            res("MEM_LIMIT_MI", "limits.memory", Some("1Mi"), None),
            res("MEM_LIMIT_M", "limits.memory", Some("1M"), None),
            res("MEM_REQ_KI", "requests.memory", Some("1Ki"), None),
            res(
                "STORAGE_LIMIT_GI",
                "limits.ephemeral-storage",
                Some("1Gi"),
                None,
            ),
            res("STORAGE_REQ", "requests.ephemeral-storage", None, None),
            res("ZERO_DIVISOR", "limits.memory", Some("0"), None),
            res("SIDE_MEM_MI", "limits.memory", Some("1Mi"), Some("side")),
            res("SIDE_CPU", "limits.cpu", None, Some("side")),
        ]);
        c.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([
                ("cpu".into(), Quantity("250m".into())),
                ("memory".into(), Quantity("1500Ki".into())),
            ])),
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity("1500m".into())),
                ("memory".into(), Quantity("1025".into())),
            ])),
            ..Default::default()
        });
        let r = run(&c, &store(), &pod()).await.unwrap();
        let want = [
            ("CPU_LIMIT", "1"), // ceil(0.25)
            ("CPU_LIMIT_M", "250"),
            ("CPU_REQ", "2"), // ceil(1.5)
            ("CPU_REQ_M", "1500"),
            ("MEM_LIMIT", "1536000"),
            ("MEM_LIMIT_MI", "2"),       // ceil(1500Ki / 1Mi)
            ("MEM_LIMIT_M", "2"),        // ceil(1.536)
            ("MEM_REQ_KI", "2"),         // ceil(1025 / 1024)
            ("STORAGE_LIMIT_GI", "100"), // node allocatable
            ("STORAGE_REQ", "0"),
            ("ZERO_DIVISOR", "1536000"),
            ("SIDE_MEM_MI", "64"),
            ("SIDE_CPU", "4"), // node allocatable
        ];
        for (n, v) in want {
            assert_eq!(get(&r, n), Some(v), "{n}");
        }
        let e = run(
            &container(vec![res("X", "limits.gpu", None, None)]),
            &store(),
            &pod(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.to_string(), "unsupported container resource : limits.gpu");
        let e = run(
            &container(vec![res("X", "limits.cpu", None, Some("ghost"))]),
            &store(),
            &pod(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.to_string(), "container ghost not found");
    }

    #[tokio::test]
    async fn env_from_with_prefix_skips_invalid_keys_and_warns() {
        let mut c = container(vec![]);
        c.env_from = Some(vec![
            EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "cfg".into(),
                    optional: None,
                }),
                prefix: Some("CM_".into()),
                ..Default::default()
            },
            EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: "creds".into(),
                    optional: None,
                }),
                ..Default::default()
            },
            EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "absent".into(),
                    optional: Some(true),
                }),
                ..Default::default()
            },
            EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: "absent".into(),
                    optional: Some(true),
                }),
                ..Default::default()
            },
        ]);
        let r = run(&c, &store(), &pod()).await.unwrap();
        let names: Vec<&str> = r.vars.iter().map(|(n, _)| n.as_str()).collect();
        // with the prefix "1bad" becomes valid; "has space" never is
        assert_eq!(
            names,
            [
                "CM_1bad",
                "CM_MODE",
                "CM_SHARED",
                "CM_app.properties",
                "PASSWORD",
                "SHARED"
            ]
        );
        assert_eq!(get(&r, "PASSWORD"), Some("s3cr3t"));
        assert_eq!(
            r.warnings,
            [
                "Keys [CM_has space] from the EnvFrom configMap shop/cfg were skipped since they are considered invalid environment variable names.",
                "Keys [9lives] from the EnvFrom secret shop/creds were skipped since they are considered invalid environment variable names.",
            ]
        );
        // without a prefix, digits first are invalid
        c.env_from = Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: "cfg".into(),
                optional: None,
            }),
            ..Default::default()
        }]);
        let r = run(&c, &store(), &pod()).await.unwrap();
        assert_eq!(
            r.warnings,
            [
                "Keys [1bad, has space] from the EnvFrom configMap shop/cfg were skipped since they are considered invalid environment variable names."
            ]
        );
    }

    #[tokio::test]
    async fn service_links_follow_own_variables_and_expand() {
        let c = container(vec![
            lit(
                "URL",
                "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)",
            ),
            lit("KUBERNETES_SERVICE_PORT", "8443"),
            lit("AFTER", "$(KUBERNETES_SERVICE_PORT)"),
        ]);
        let alloc = allocatable();
        let p = pod();
        let objects = store();
        let src = EnvSources {
            pod: &p,
            host_ips: vec!["10.0.0.7".into()],
            pod_ips: vec!["10.0.0.7".into()],
            allocatable: &alloc,
            objects: &objects,
        };
        let links = vec![
            (
                "KUBERNETES_SERVICE_HOST".to_string(),
                "10.96.0.1".to_string(),
            ),
            ("KUBERNETES_SERVICE_PORT".to_string(), "443".to_string()),
        ];
        let r = resolve_with_services(&src, &c, &links).await.unwrap();
        let got: Vec<(&str, &str)> = r
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("URL", "https://10.96.0.1:443"),
                ("KUBERNETES_SERVICE_PORT", "8443"),
                ("AFTER", "8443"),
                ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ]
        );
    }

    #[tokio::test]
    async fn order_later_wins_and_var_expansion() {
        let mut c = container(vec![
            lit("A", "a"),
            lit("B", "$(A)-$(SHARED)-$(C)-$$(A)-$(UNDEF)"),
            lit("C", "c"),
            cm_key("SHARED", "cfg", "MODE", None),
            lit("A", "again-$(A)"),
            lit("EMPTY", ""),
            lit("D", "$(SHARED)"),
        ]);
        c.env_from = Some(vec![
            EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "cfg".into(),
                    optional: None,
                }),
                ..Default::default()
            },
            EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: "creds".into(),
                    optional: None,
                }),
                ..Default::default()
            },
        ]);
        c.command = Some(vec!["echo".into(), "$(A)".into()]);
        c.args = Some(vec!["$(D)".into(), "$$(D)".into(), "$(NOPE)".into()]);
        let r = run(&c, &store(), &pod()).await.unwrap();
        let got: Vec<(&str, &str)> = r
            .vars
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("MODE", "fast"),
                ("app.properties", "a=b"),
                ("PASSWORD", "s3cr3t"),
                ("B", "a-from-secret-$(C)-$(A)-$(UNDEF)"),
                ("C", "c"),
                ("SHARED", "fast"),
                ("A", "again-a"),
                ("EMPTY", ""),
                ("D", "fast"),
            ]
        );
        let (cmd, args) = expand_command(&c, &r.vars);
        assert_eq!(cmd, ["echo", "again-a"]);
        assert_eq!(args, ["fast", "$(D)", "$(NOPE)"]);
    }

    #[tokio::test]
    async fn missing_objects_and_keys_have_the_kubelet_messages() {
        let cases = [
            (
                cm_key("X", "nope", "k", None),
                Some("configmap \"nope\" not found"),
            ),
            (cm_key("X", "nope", "k", Some(true)), None),
            (
                cm_key("X", "cfg", "k", None),
                Some("couldn't find key k in ConfigMap shop/cfg"),
            ),
            (cm_key("X", "cfg", "k", Some(true)), None),
            (
                secret_key("X", "nope", "k", None),
                Some("secret \"nope\" not found"),
            ),
            (secret_key("X", "nope", "k", Some(true)), None),
            (
                secret_key("X", "creds", "k", None),
                Some("couldn't find key k in Secret shop/creds"),
            ),
            (secret_key("X", "creds", "k", Some(true)), None),
            // another namespace's object is not visible
            (
                cm_key("X", "other", "k", None),
                Some("configmap \"other\" not found"),
            ),
        ];
        for (var, want) in cases {
            let r = run(&container(vec![var.clone()]), &store(), &pod()).await;
            match want {
                Some(msg) => assert_eq!(r.unwrap_err().to_string(), msg, "{var:?}"),
                // an optional miss leaves the variable out entirely
                None => assert_eq!(r.unwrap().vars, vec![], "{var:?}"),
            }
        }
        let mut c = container(vec![]);
        c.env_from = Some(vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: "gone".into(),
                optional: Some(false),
            }),
            ..Default::default()
        }]);
        let e = run(&c, &store(), &pod()).await.unwrap_err();
        assert_eq!(e.to_string(), "secret \"gone\" not found");
    }

    #[test]
    fn env_var_names() {
        for ok in ["A", "a_b", "my.env-name", "MY_ENV.NAME", "_x", "-x", ".x"] {
            assert!(is_env_var_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a b", "a=b", ".", "..", "..a", "é"] {
            assert!(!is_env_var_name(bad), "{bad}");
        }
    }
}
