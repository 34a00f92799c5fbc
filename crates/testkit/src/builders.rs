//! Builders of the objects tests create: `pod("web").label("app", "web").container(...)`.
//! Nothing is set that the test did not ask for, apart from one container named `c` with
//! image `busybox:1.36` when a pod is built without containers.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerPort, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec,
    ResourceRequirements, Secret, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

/// Builds a `T`: the methods common to every object here, the kind-specific ones in the
/// `impl Builder<Pod>` (and so on) blocks.
#[derive(Clone, Debug)]
pub struct Builder<T> {
    obj: T,
}

/// Builds a [`Pod`].
pub type PodBuilder = Builder<Pod>;
/// Builds a [`Container`].
pub type ContainerBuilder = Builder<Container>;
/// Builds a [`Node`].
pub type NodeBuilder = Builder<Node>;

impl<T> Builder<T> {
    /// Any other change.
    pub fn with(mut self, f: impl FnOnce(&mut T)) -> Self {
        f(&mut self.obj);
        self
    }
}

impl Builder<Container> {
    /// The container.
    pub fn build(self) -> Container {
        self.obj
    }
}

impl Builder<Node> {
    /// The node.
    pub fn build(self) -> Node {
        self.obj
    }
}

/// An object named `name`, everything else default.
fn named<T: Resource + Default>(name: &str) -> Builder<T> {
    let mut obj = T::default();
    obj.meta_mut().name = Some(name.to_owned());
    Builder { obj }
}

impl<T: Resource> Builder<T> {
    /// A label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.obj
            .meta_mut()
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_owned(), value.to_owned());
        self
    }
}

/// A resource map (`[("cpu", "100m")]`).
pub fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

/// A pod named `name`.
pub fn pod(name: &str) -> PodBuilder {
    named(name).with(|p: &mut Pod| p.spec = Some(PodSpec::default()))
}

impl Builder<Pod> {
    fn spec(&mut self) -> &mut PodSpec {
        self.obj.spec.get_or_insert_with(PodSpec::default)
    }

    /// `metadata.namespace`.
    pub fn namespace(mut self, ns: &str) -> Self {
        self.obj.metadata.namespace = Some(ns.to_owned());
        self
    }

    /// A controlling owner reference.
    pub fn owner(mut self, kind: &str, name: &str, uid: &str) -> Self {
        let api_version = if kind == "ReplicaSet" || kind == "StatefulSet" {
            "apps/v1"
        } else {
            "v1"
        };
        self.obj
            .metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(OwnerReference {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
                name: name.to_owned(),
                uid: uid.to_owned(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            });
        self
    }

    /// A container.
    pub fn container(mut self, c: ContainerBuilder) -> Self {
        self.spec().containers.push(c.build());
        self
    }

    /// An init container.
    pub fn init_container(mut self, c: ContainerBuilder) -> Self {
        self.spec()
            .init_containers
            .get_or_insert_with(Vec::new)
            .push(c.build());
        self
    }

    /// `spec.nodeName`.
    pub fn node_name(mut self, node: &str) -> Self {
        self.spec().node_name = Some(node.to_owned());
        self
    }

    /// `spec.schedulerName`.
    pub fn scheduler_name(mut self, name: &str) -> Self {
        self.spec().scheduler_name = Some(name.to_owned());
        self
    }

    /// `spec.restartPolicy`.
    pub fn restart_policy(mut self, policy: &str) -> Self {
        self.spec().restart_policy = Some(policy.to_owned());
        self
    }

    /// `spec.terminationGracePeriodSeconds`.
    pub fn grace_period(mut self, seconds: i64) -> Self {
        self.spec().termination_grace_period_seconds = Some(seconds);
        self
    }

    /// The pod (with a container `c`, image `busybox:1.36`, if none was added).
    pub fn build(mut self) -> Pod {
        if self.spec().containers.is_empty() {
            self.spec().containers.push(container("c").build());
        }
        self.obj
    }
}

/// A container named `name` with image `busybox:1.36`.
pub fn container(name: &str) -> ContainerBuilder {
    Builder {
        obj: Container {
            name: name.to_owned(),
            image: Some("busybox:1.36".to_owned()),
            ..Default::default()
        },
    }
}

impl Builder<Container> {
    /// The image.
    pub fn image(mut self, image: &str) -> Self {
        self.obj.image = Some(image.to_owned());
        self
    }

    /// The command (`["sh", "-c", script]` for a script).
    pub fn command(mut self, argv: &[&str]) -> Self {
        self.obj.command = Some(argv.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    /// A named TCP port.
    pub fn port(mut self, name: &str, number: i32) -> Self {
        self.obj
            .ports
            .get_or_insert_with(Vec::new)
            .push(ContainerPort {
                name: Some(name.to_owned()),
                container_port: number,
                ..Default::default()
            });
        self
    }

    fn resources(&mut self) -> &mut ResourceRequirements {
        self.obj
            .resources
            .get_or_insert_with(ResourceRequirements::default)
    }

    /// Resource requests.
    pub fn requests(mut self, pairs: &[(&str, &str)]) -> Self {
        self.resources().requests = Some(quantities(pairs));
        self
    }

    /// Resource limits.
    pub fn limits(mut self, pairs: &[(&str, &str)]) -> Self {
        self.resources().limits = Some(quantities(pairs));
        self
    }
}

/// ConfigMap `ns/name` with `data`.
pub fn config_map(ns: &str, name: &str, data: &[(&str, &str)]) -> ConfigMap {
    let data = data.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    ConfigMap {
        metadata: object_meta(ns, name),
        data: Some(data.collect()),
        ..Default::default()
    }
}

fn object_meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(ns.to_owned()),
        ..Default::default()
    }
}

/// Secret `ns/name` with `data` (the decoded bytes).
pub fn secret(ns: &str, name: &str, data: &[(&str, &[u8])]) -> Secret {
    let data = data
        .iter()
        .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())));
    Secret {
        metadata: object_meta(ns, name),
        data: Some(data.collect()),
        ..Default::default()
    }
}

/// A node named `name` (no status until asked for).
pub fn node(name: &str) -> NodeBuilder {
    named(name)
}

impl Builder<Node> {
    fn status(&mut self) -> &mut NodeStatus {
        self.obj.status.get_or_insert_with(NodeStatus::default)
    }

    /// A taint.
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.obj
            .spec
            .get_or_insert_with(NodeSpec::default)
            .taints
            .get_or_insert_with(Vec::new)
            .push(Taint {
                key: key.to_owned(),
                value: (!value.is_empty()).then(|| value.to_owned()),
                effect: effect.to_owned(),
                time_added: None,
            });
        self
    }

    /// `spec.unschedulable`.
    pub fn unschedulable(mut self) -> Self {
        self.obj
            .spec
            .get_or_insert_with(NodeSpec::default)
            .unschedulable = Some(true);
        self
    }

    /// Capacity and allocatable.
    pub fn allocatable(mut self, pairs: &[(&str, &str)]) -> Self {
        let q = quantities(pairs);
        let s = self.status();
        s.capacity = Some(q.clone());
        s.allocatable = Some(q);
        self
    }

    /// A condition (`("Ready", "True")`).
    pub fn condition(mut self, type_: &str, status: &str) -> Self {
        self.status()
            .conditions
            .get_or_insert_with(Vec::new)
            .push(NodeCondition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                ..Default::default()
            });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_gets_a_default_container_only_without_one() {
        let p = pod("web").namespace("default").label("app", "web").build();
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        let spec = p.spec.unwrap();
        assert_eq!(spec.containers.len(), 1);
        assert_eq!(spec.containers[0].name, "c");
        let p = pod("web")
            .container(container("app").image("nginx").requests(&[("cpu", "100m")]))
            .build();
        let c = &p.spec.unwrap().containers[0];
        assert_eq!(
            (c.name.as_str(), c.image.as_deref()),
            ("app", Some("nginx"))
        );
        let req = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(req["cpu"], Quantity("100m".into()));
    }

    #[test]
    fn owners_are_controllers() {
        let p = pod("web").owner("ReplicaSet", "rs", "u1").build();
        let o = &p.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (o.api_version.as_str(), o.controller, o.uid.as_str()),
            ("apps/v1", Some(true), "u1")
        );
    }

    #[test]
    fn nodes_carry_what_was_asked() {
        let n = node("n1")
            .allocatable(&[("cpu", "2"), ("pods", "110")])
            .condition("Ready", "True")
            .taint("k", "", "NoSchedule")
            .build();
        let s = n.status.unwrap();
        assert_eq!(s.allocatable.unwrap()["pods"], Quantity("110".into()));
        assert_eq!(s.conditions.unwrap()[0].type_, "Ready");
        let t = &n.spec.unwrap().taints.unwrap()[0];
        assert_eq!((t.key.as_str(), t.value.as_deref()), ("k", None));
    }
}
