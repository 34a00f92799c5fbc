//! Resource arithmetic: a pod's effective request and a node's allocatable, in the integer
//! units the filters compare (milli-CPU, bytes, counts).
//!
//! The pod request follows upstream `resourcehelper.PodRequests`: app containers are summed;
//! each regular init container needs its own request plus the sidecars started before it;
//! sidecars (init containers with `restartPolicy: Always`) keep running and so are also added
//! to the sum; the request is the larger of the two, per resource; `spec.overhead` is added.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use podvisor_api::quantity::{parse_milli_value, parse_value};

/// Default CPU request assumed for scoring a container without one (upstream
/// `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Default memory request assumed for scoring a container without one (upstream
/// `DefaultMemoryRequest`, 200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A vector of resource amounts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in thousandths of a core.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Number of pods (only meaningful for allocatable).
    pub pods: i64,
    /// Extended and hugepages resources by name, in whole units.
    pub scalar: BTreeMap<String, i64>,
}

/// Whether `name` is a resource the fit filter checks besides cpu, memory, ephemeral-storage
/// and pods: extended resources (`example.com/gpu`) and hugepages.
pub fn is_scalar_resource(name: &str) -> bool {
    if name.starts_with("hugepages-") || name.starts_with("attachable-volumes-") {
        return true;
    }
    // Extended resources are domain-qualified and outside the kubernetes.io namespace;
    // `requests.` prefixed names are quota names, not resources.
    name.contains('/')
        && !name.starts_with("requests.")
        && !name.starts_with("kubernetes.io/")
        && !name.contains(".kubernetes.io/")
}

impl Resources {
    /// Builds a vector from a `ResourceList` (unparseable quantities count as zero and are
    /// reported through `invalid`).
    pub fn from_list(list: &BTreeMap<String, Quantity>, invalid: &mut Vec<String>) -> Self {
        let mut r = Resources::default();
        r.add_list(list, invalid);
        r
    }

    fn add_list(&mut self, list: &BTreeMap<String, Quantity>, invalid: &mut Vec<String>) {
        for (name, q) in list {
            self.apply(name, q, invalid, |cur, v| cur.saturating_add(v));
        }
    }

    fn apply(
        &mut self,
        name: &str,
        q: &Quantity,
        invalid: &mut Vec<String>,
        op: impl Fn(i64, i64) -> i64,
    ) {
        let parsed = if name == "cpu" {
            parse_milli_value(&q.0)
        } else {
            parse_value(&q.0)
        };
        let v = match parsed {
            Ok(v) => v,
            Err(e) => {
                invalid.push(format!("{name}: {e}"));
                return;
            }
        };
        match name {
            "cpu" => self.milli_cpu = op(self.milli_cpu, v),
            "memory" => self.memory = op(self.memory, v),
            "ephemeral-storage" => self.ephemeral_storage = op(self.ephemeral_storage, v),
            "pods" => self.pods = op(self.pods, v),
            other if is_scalar_resource(other) => {
                let cur = self.scalar.get(other).copied().unwrap_or(0);
                self.scalar.insert(other.to_owned(), op(cur, v));
            }
            _ => {}
        }
    }

    /// Applies `op` to each resource of `self` and `other` (scalars missing in `self` start
    /// at 0).
    fn combine(&mut self, other: &Resources, op: fn(i64, i64) -> i64) {
        self.milli_cpu = op(self.milli_cpu, other.milli_cpu);
        self.memory = op(self.memory, other.memory);
        self.ephemeral_storage = op(self.ephemeral_storage, other.ephemeral_storage);
        self.pods = op(self.pods, other.pods);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = op(*e, *v);
        }
    }

    /// Adds `other` to `self`, per resource, saturating.
    pub fn add(&mut self, other: &Resources) {
        self.combine(other, i64::saturating_add);
    }

    /// Subtracts `other` from `self`, per resource.
    pub fn sub(&mut self, other: &Resources) {
        self.combine(other, i64::saturating_sub);
        self.scalar.retain(|_, v| *v != 0);
    }

    fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }

    /// True when every amount is zero.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

/// Whether the pod's resize was found infeasible (`PodResizePending`, reason `Infeasible`).
fn resize_infeasible(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "PodResizePending" && c.reason.as_deref() == Some("Infeasible"))
        })
}

/// The requests a container holds on its node (upstream `determineContainerReqs` with
/// `UseStatusResources`): once the agent reports its `resources`, the larger of the desired
/// (spec), the actual and the allocated requests, per resource; the desired ones do not count
/// while the resize is infeasible.
fn container_requests(
    pod: &Pod,
    c: &Container,
    non_zero: bool,
    invalid: &mut Vec<String>,
) -> Resources {
    let empty = BTreeMap::new();
    let list = c
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .unwrap_or(&empty);
    let status = pod.status.as_ref().and_then(|s| {
        podvisor_api::status::container_statuses(s)
            .find(|cs| cs.name == c.name && cs.resources.is_some())
    });
    let mut r = match status {
        None => Resources::from_list(list, invalid),
        Some(cs) => {
            let actual = cs
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .unwrap_or(&empty);
            let allocated = cs.allocated_resources.as_ref().unwrap_or(&empty);
            let mut r = Resources::from_list(actual, invalid);
            r.max_with(&Resources::from_list(allocated, invalid));
            if !resize_infeasible(pod) {
                r.max_with(&Resources::from_list(list, invalid));
            }
            r
        }
    };
    if non_zero {
        if !list.contains_key("cpu") {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !list.contains_key("memory") {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

/// The pod's effective request (upstream `PodRequests`). With `non_zero`, containers without
/// a cpu or memory request count the scoring defaults instead (upstream `NonZeroRequested`).
pub fn pod_requests(pod: &Pod, non_zero: bool, invalid: &mut Vec<String>) -> Resources {
    let Some(spec) = pod.spec.as_ref() else {
        return Resources::default();
    };
    let mut reqs = Resources::default();
    for c in &spec.containers {
        reqs.add(&container_requests(pod, c, non_zero, invalid));
    }
    let mut restartable = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let cr = container_requests(pod, c, non_zero, invalid);
        if c.restart_policy.as_deref() == Some("Always") {
            reqs.add(&cr);
            restartable.add(&cr);
            init_max.max_with(&restartable);
        } else {
            let mut tmp = cr;
            tmp.add(&restartable);
            init_max.max_with(&tmp);
        }
    }
    reqs.max_with(&init_max);
    pod_level_requests(pod, &mut reqs, invalid);
    if let Some(overhead) = spec.overhead.as_ref() {
        reqs.add(&Resources::from_list(overhead, invalid));
    }
    reqs
}

/// Pod-level resources (KEP-2837, upstream `PodRequests` with `IsPodLevelRequestsSet`): the
/// pod's own cpu and memory requests (a request left out defaults to the limit, as API
/// defaulting does) replace what its containers add up to. Once the agent reports the pod's
/// `allocatedResources`/`resources` (pod-level in-place resize, KEP-5419), the larger of the
/// desired, allocated and actual requests counts, the desired ones not while the resize is
/// infeasible (as for containers).
fn pod_level_requests(pod: &Pod, reqs: &mut Resources, invalid: &mut Vec<String>) {
    let Some(r) = pod.spec.as_ref().and_then(|s| s.resources.as_ref()) else {
        return;
    };
    let status = pod.status.as_ref();
    for name in ["cpu", "memory"] {
        let pick = |m: Option<&BTreeMap<String, Quantity>>| m.and_then(|m| m.get(name)).cloned();
        let desired = pick(r.requests.as_ref()).or_else(|| pick(r.limits.as_ref()));
        let Some(desired) = desired else {
            continue;
        };
        let one = |q: &Quantity, invalid: &mut Vec<String>| {
            Resources::from_list(&[(name.to_string(), q.clone())].into(), invalid)
        };
        let mut v = Resources::default();
        let allocated = pick(status.and_then(|s| s.allocated_resources.as_ref()));
        let actual = pick(
            status
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref()),
        );
        let reported = allocated.is_some() || actual.is_some();
        for q in [allocated, actual].into_iter().flatten() {
            v.max_with(&one(&q, invalid));
        }
        if !reported || !resize_infeasible(pod) {
            v.max_with(&one(&desired, invalid));
        }
        match name {
            "cpu" => reqs.milli_cpu = v.milli_cpu,
            _ => reqs.memory = v.memory,
        }
    }
}

/// The node's `status.allocatable` (falling back to `status.capacity`, as the kubelet reports
/// allocatable = capacity when nothing is reserved).
pub fn node_allocatable(node: &Node, invalid: &mut Vec<String>) -> Resources {
    let Some(status) = node.status.as_ref() else {
        return Resources::default();
    };
    match status.allocatable.as_ref().or(status.capacity.as_ref()) {
        Some(list) => Resources::from_list(list, invalid),
        None => Resources::default(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};

    pub(crate) fn container(name: &str, cpu: Option<&str>, mem: Option<&str>) -> Container {
        let mut requests = BTreeMap::new();
        if let Some(c) = cpu {
            requests.insert("cpu".to_owned(), Quantity(c.to_owned()));
        }
        if let Some(m) = mem {
            requests.insert("memory".to_owned(), Quantity(m.to_owned()));
        }
        Container {
            name: name.to_owned(),
            resources: Some(ResourceRequirements {
                requests: Some(requests),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                init_containers: Some(init),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn sums_app_containers_and_takes_max_with_init() {
        // The upstream doc example: init 2/1G and 2/3G, app 2/1G and 1/1G → 3 cpu, 3G.
        let p = pod(
            vec![
                container("c1", Some("2"), Some("1G")),
                container("c2", Some("1"), Some("1G")),
            ],
            vec![
                container("i1", Some("2"), Some("1G")),
                container("i2", Some("2"), Some("3G")),
            ],
        );
        let r = pod_requests(&p, false, &mut Vec::new());
        assert_eq!(r.milli_cpu, 3000);
        assert_eq!(r.memory, 3_000_000_000);
    }

    #[test]
    fn sidecars_add_to_the_sum_and_to_later_init_containers() {
        let mut sidecar = container("side", Some("500m"), None);
        sidecar.restart_policy = Some("Always".to_owned());
        let p = pod(
            vec![container("app", Some("1"), None)],
            vec![sidecar, container("late-init", Some("2"), None)],
        );
        let r = pod_requests(&p, false, &mut Vec::new());
        // app + sidecar = 1.5; late init 2 + sidecar 0.5 = 2.5 → max 2.5.
        assert_eq!(r.milli_cpu, 2500);
    }

    #[test]
    fn overhead_is_added() {
        let mut p = pod(vec![container("app", Some("100m"), Some("64Mi"))], vec![]);
        let mut overhead = BTreeMap::new();
        overhead.insert("cpu".to_owned(), Quantity("250m".to_owned()));
        p.spec.as_mut().unwrap().overhead = Some(overhead);
        let r = pod_requests(&p, false, &mut Vec::new());
        assert_eq!(r.milli_cpu, 350);
        assert_eq!(r.memory, 64 << 20);
    }

    #[test]
    fn non_zero_defaults_apply_per_container() {
        let p = pod(
            vec![container("a", None, None), container("b", Some("1"), None)],
            vec![],
        );
        let r = pod_requests(&p, true, &mut Vec::new());
        assert_eq!(r.milli_cpu, 1100);
        assert_eq!(r.memory, 2 * DEFAULT_MEMORY_REQUEST);
        let plain = pod_requests(&p, false, &mut Vec::new());
        assert_eq!(plain.milli_cpu, 1000);
        assert_eq!(plain.memory, 0);
    }

    #[test]
    fn extended_resources_are_scalar() {
        assert!(is_scalar_resource("example.com/gpu"));
        assert!(is_scalar_resource("hugepages-2Mi"));
        assert!(!is_scalar_resource("kubernetes.io/something"));
        assert!(!is_scalar_resource("cpu"));
    }

    #[test]
    fn a_resized_pod_holds_the_larger_of_desired_actual_and_allocated() {
        let mut p = pod(vec![container("app", Some("500m"), Some("64Mi"))], vec![]);
        let mut invalid = Vec::new();
        let list = |cpu: &str| -> BTreeMap<String, Quantity> {
            [("cpu".to_string(), Quantity(cpu.into()))].into()
        };
        p.status = Some(k8s_openapi::api::core::v1::PodStatus {
            container_statuses: Some(vec![k8s_openapi::api::core::v1::ContainerStatus {
                name: "app".into(),
                allocated_resources: Some(list("800m")),
                resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                    requests: Some(list("300m")),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(pod_requests(&p, false, &mut invalid).milli_cpu, 800);
        // shrinking: the allocation still counts until the agent reports the new one
        p.spec.as_mut().unwrap().containers[0] = container("app", Some("1500m"), None);
        assert_eq!(pod_requests(&p, false, &mut invalid).milli_cpu, 1500);
        // an infeasible desire holds nothing
        p.status.as_mut().unwrap().conditions =
            Some(vec![k8s_openapi::api::core::v1::PodCondition {
                type_: "PodResizePending".into(),
                status: "True".into(),
                reason: Some("Infeasible".into()),
                ..Default::default()
            }]);
        assert_eq!(pod_requests(&p, false, &mut invalid).milli_cpu, 800);
        assert!(invalid.is_empty());
    }

    #[test]
    fn pod_level_requests_replace_the_containers_sum() {
        let mut p = pod(
            vec![
                container("a", Some("100m"), Some("64Mi")),
                container("b", None, None),
            ],
            vec![],
        );
        let list = |kv: &[(&str, &str)]| -> BTreeMap<String, Quantity> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect()
        };
        p.spec.as_mut().unwrap().resources = Some(ResourceRequirements {
            requests: Some(list(&[("cpu", "1")])),
            limits: Some(list(&[("cpu", "2"), ("memory", "1Gi")])),
            ..Default::default()
        });
        let r = pod_requests(&p, false, &mut Vec::new());
        // cpu from the pod's request, memory from its limit (the defaulted request)
        assert_eq!(r.milli_cpu, 1000);
        assert_eq!(r.memory, 1 << 30);
        // scoring sees the same pod-level figures, not the per-container defaults
        let r = pod_requests(&p, true, &mut Vec::new());
        assert_eq!((r.milli_cpu, r.memory), (1000, 1 << 30));
        // a pod-level resize reported by the agent: the allocation counts until it shrinks
        p.status = Some(k8s_openapi::api::core::v1::PodStatus {
            allocated_resources: Some(list(&[("cpu", "1500m")])),
            ..Default::default()
        });
        assert_eq!(pod_requests(&p, false, &mut Vec::new()).milli_cpu, 1500);
    }

    #[test]
    fn invalid_quantities_are_reported_not_panicked() {
        let mut invalid = Vec::new();
        let p = pod(vec![container("a", Some("lots"), Some("1Gi"))], vec![]);
        let r = pod_requests(&p, false, &mut invalid);
        assert_eq!(r.milli_cpu, 0);
        assert_eq!(r.memory, 1 << 30);
        assert_eq!(invalid.len(), 1);
    }
}
