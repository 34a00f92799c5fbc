//! The built-in kinds: one descriptor each, in the groups a Kubernetes 1.33 API server
//! serves. Adding a kind is one entry here (plus its defaulting and validation in
//! [`crate::strategy`] where upstream has any, and its columns in
//! [`crate::table::columns`]).

use k8s_openapi::api::{
    admissionregistration::v1 as admreg, apps::v1 as apps, autoscaling::v1 as autoscaling,
    autoscaling::v2 as autoscaling2, batch::v1 as batch, coordination::v1 as coord,
    core::v1 as core, discovery::v1 as disc, events::v1 as ev, networking::v1 as net,
    node::v1 as node, policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as sched,
    storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apireg;

use super::{ResourceKind, STATUS, STATUS_SCALE, Strategy, Subresource, typed};
use crate::table::{Printer, columns as col};

const API_EXTENSIONS: &[&str] = &["api-extensions"];

/// core/v1 Pod.
pub static PODS: ResourceKind = ResourceKind::new("", "v1", "Pod", "pods", "pod", true)
    .with_short_names(&["po"])
    .in_all()
    .with_subresources(&[
        Subresource::Attach,
        Subresource::Binding,
        Subresource::EphemeralContainers,
        Subresource::Eviction,
        Subresource::Exec,
        Subresource::Log,
        Subresource::PortForward,
        Subresource::Resize,
        Subresource::Status,
    ])
    .with_strategy(Strategy::Pod)
    .with_round_trip(typed::<core::Pod>)
    .with_printer(Printer::Pod)
    .with_protobuf();

/// core/v1 Namespace.
pub static NAMESPACES: ResourceKind =
    ResourceKind::new("", "v1", "Namespace", "namespaces", "namespace", false)
        .with_short_names(&["ns"])
        .with_subresources(STATUS)
        .with_strategy(Strategy::Namespace)
        .with_round_trip(typed::<core::Namespace>)
        .with_printer(Printer::Namespace)
        .with_protobuf();

/// core/v1 Node.
pub static NODES: ResourceKind = ResourceKind::new("", "v1", "Node", "nodes", "node", false)
    .with_short_names(&["no"])
    .with_subresources(STATUS)
    .with_strategy(Strategy::Node)
    .with_round_trip(typed::<core::Node>)
    .with_printer(Printer::Node)
    .with_protobuf();

/// core/v1 Event.
pub static EVENTS: ResourceKind = ResourceKind::new("", "v1", "Event", "events", "event", true)
    .with_short_names(&["ev"])
    .with_strategy(Strategy::Event)
    .with_round_trip(typed::<core::Event>)
    .with_printer(Printer::Event)
    .with_protobuf();

/// core/v1 Service.
pub static SERVICES: ResourceKind =
    ResourceKind::new("", "v1", "Service", "services", "service", true)
        .with_short_names(&["svc"])
        .in_all()
        .with_subresources(STATUS)
        .with_round_trip(typed::<core::Service>)
        .with_printer(Printer::Service)
        .with_protobuf();

/// core/v1 Endpoints.
pub static ENDPOINTS: ResourceKind =
    ResourceKind::new("", "v1", "Endpoints", "endpoints", "endpoints", true)
        .with_short_names(&["ep"])
        .with_round_trip(typed::<core::Endpoints>)
        .with_printer(Printer::Endpoints)
        .with_protobuf();

/// core/v1 ConfigMap.
pub static CONFIGMAPS: ResourceKind =
    ResourceKind::new("", "v1", "ConfigMap", "configmaps", "configmap", true)
        .with_short_names(&["cm"])
        .with_round_trip(typed::<core::ConfigMap>)
        .with_printer(Printer::ConfigMap)
        .with_protobuf();

/// core/v1 Secret.
pub static SECRETS: ResourceKind = ResourceKind::new("", "v1", "Secret", "secrets", "secret", true)
    .with_round_trip(typed::<core::Secret>)
    .with_printer(Printer::Secret)
    .with_protobuf();

/// core/v1 ServiceAccount.
pub static SERVICEACCOUNTS: ResourceKind = ResourceKind::new(
    "",
    "v1",
    "ServiceAccount",
    "serviceaccounts",
    "serviceaccount",
    true,
)
.with_short_names(&["sa"])
.with_subresources(&[Subresource::Token])
.with_round_trip(typed::<core::ServiceAccount>)
.with_columns(col::SERVICE_ACCOUNT);

/// core/v1 ReplicationController.
pub static REPLICATIONCONTROLLERS: ResourceKind = ResourceKind::new(
    "",
    "v1",
    "ReplicationController",
    "replicationcontrollers",
    "replicationcontroller",
    true,
)
.with_short_names(&["rc"])
.in_all()
.with_subresources(STATUS_SCALE)
.with_strategy(Strategy::WithStatus)
.with_round_trip(typed::<core::ReplicationController>)
.with_columns(col::REPLICATION_CONTROLLER);

/// core/v1 LimitRange.
pub static LIMITRANGES: ResourceKind =
    ResourceKind::new("", "v1", "LimitRange", "limitranges", "limitrange", true)
        .with_short_names(&["limits"])
        .with_round_trip(typed::<core::LimitRange>)
        .with_columns(col::CREATED_AT);

/// core/v1 ResourceQuota.
pub static RESOURCEQUOTAS: ResourceKind = ResourceKind::new(
    "",
    "v1",
    "ResourceQuota",
    "resourcequotas",
    "resourcequota",
    true,
)
.with_short_names(&["quota"])
.with_subresources(STATUS)
.with_strategy(Strategy::WithStatus)
.with_round_trip(typed::<core::ResourceQuota>)
.with_columns(col::RESOURCE_QUOTA);

/// core/v1 PersistentVolume.
pub static PERSISTENTVOLUMES: ResourceKind = ResourceKind::new(
    "",
    "v1",
    "PersistentVolume",
    "persistentvolumes",
    "persistentvolume",
    false,
)
.with_short_names(&["pv"])
.with_subresources(STATUS)
.with_strategy(Strategy::WithStatus)
.with_round_trip(typed::<core::PersistentVolume>)
.with_columns(col::PERSISTENT_VOLUME);

/// core/v1 PersistentVolumeClaim.
pub static PERSISTENTVOLUMECLAIMS: ResourceKind = ResourceKind::new(
    "",
    "v1",
    "PersistentVolumeClaim",
    "persistentvolumeclaims",
    "persistentvolumeclaim",
    true,
)
.with_short_names(&["pvc"])
.with_subresources(STATUS)
.with_strategy(Strategy::WithStatus)
.with_round_trip(typed::<core::PersistentVolumeClaim>)
.with_columns(col::PERSISTENT_VOLUME_CLAIM);

/// core/v1 PodTemplate.
pub static PODTEMPLATES: ResourceKind =
    ResourceKind::new("", "v1", "PodTemplate", "podtemplates", "podtemplate", true)
        .with_round_trip(typed::<core::PodTemplate>)
        .with_columns(col::POD_TEMPLATE);

/// coordination.k8s.io/v1 Lease.
pub static LEASES: ResourceKind = ResourceKind::new(
    "coordination.k8s.io",
    "v1",
    "Lease",
    "leases",
    "lease",
    true,
)
.with_round_trip(typed::<coord::Lease>)
.with_printer(Printer::Lease)
.with_protobuf();

/// apps/v1 ReplicaSet.
pub static REPLICASETS: ResourceKind = ResourceKind::new(
    "apps",
    "v1",
    "ReplicaSet",
    "replicasets",
    "replicaset",
    true,
)
.with_short_names(&["rs"])
.in_all()
.with_subresources(STATUS_SCALE)
.with_strategy(Strategy::Workload)
.with_round_trip(typed::<apps::ReplicaSet>)
.with_printer(Printer::ReplicaSet)
.with_protobuf();

/// apps/v1 Deployment.
pub static DEPLOYMENTS: ResourceKind = ResourceKind::new(
    "apps",
    "v1",
    "Deployment",
    "deployments",
    "deployment",
    true,
)
.with_short_names(&["deploy"])
.in_all()
.with_subresources(STATUS_SCALE)
.with_strategy(Strategy::Workload)
.with_round_trip(typed::<apps::Deployment>)
.with_printer(Printer::Deployment)
.with_protobuf();

/// apps/v1 StatefulSet.
pub static STATEFULSETS: ResourceKind = ResourceKind::new(
    "apps",
    "v1",
    "StatefulSet",
    "statefulsets",
    "statefulset",
    true,
)
.with_short_names(&["sts"])
.in_all()
.with_subresources(STATUS_SCALE)
.with_strategy(Strategy::Workload)
.with_round_trip(typed::<apps::StatefulSet>)
.with_printer(Printer::StatefulSet)
.with_protobuf();

/// apps/v1 DaemonSet.
pub static DAEMONSETS: ResourceKind =
    ResourceKind::new("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true)
        .with_short_names(&["ds"])
        .in_all()
        .with_subresources(STATUS)
        .with_strategy(Strategy::Workload)
        .with_round_trip(typed::<apps::DaemonSet>)
        .with_columns(col::DAEMON_SET);

/// apps/v1 ControllerRevision.
pub static CONTROLLERREVISIONS: ResourceKind = ResourceKind::new(
    "apps",
    "v1",
    "ControllerRevision",
    "controllerrevisions",
    "controllerrevision",
    true,
)
.with_round_trip(typed::<apps::ControllerRevision>)
.with_columns(col::CONTROLLER_REVISION);

/// batch/v1 Job.
pub static JOBS: ResourceKind = ResourceKind::new("batch", "v1", "Job", "jobs", "job", true)
    .in_all()
    .with_subresources(STATUS)
    .with_strategy(Strategy::WithStatus)
    .with_round_trip(typed::<batch::Job>)
    .with_columns(col::JOB)
    .with_protobuf();

/// batch/v1 CronJob.
pub static CRONJOBS: ResourceKind =
    ResourceKind::new("batch", "v1", "CronJob", "cronjobs", "cronjob", true)
        .with_short_names(&["cj"])
        .in_all()
        .with_subresources(STATUS)
        .with_strategy(Strategy::WithStatus)
        .with_round_trip(typed::<batch::CronJob>)
        .with_columns(col::CRON_JOB)
        .with_protobuf();

/// autoscaling/v2 HorizontalPodAutoscaler (the storage version).
pub static HORIZONTALPODAUTOSCALERS: ResourceKind = ResourceKind::new(
    "autoscaling",
    "v2",
    "HorizontalPodAutoscaler",
    "horizontalpodautoscalers",
    "horizontalpodautoscaler",
    true,
)
.with_short_names(&["hpa"])
.in_all()
.with_subresources(STATUS)
.with_strategy(Strategy::WithStatus)
.with_round_trip(typed::<autoscaling2::HorizontalPodAutoscaler>)
.with_columns(col::HORIZONTAL_POD_AUTOSCALER);

/// policy/v1 PodDisruptionBudget.
pub static PODDISRUPTIONBUDGETS: ResourceKind = ResourceKind::new(
    "policy",
    "v1",
    "PodDisruptionBudget",
    "poddisruptionbudgets",
    "poddisruptionbudget",
    true,
)
.with_short_names(&["pdb"])
.with_subresources(STATUS)
.with_strategy(Strategy::WithStatus)
.with_round_trip(typed::<policy::PodDisruptionBudget>)
.with_columns(col::POD_DISRUPTION_BUDGET);

/// discovery.k8s.io/v1 EndpointSlice.
pub static ENDPOINTSLICES: ResourceKind = ResourceKind::new(
    "discovery.k8s.io",
    "v1",
    "EndpointSlice",
    "endpointslices",
    "endpointslice",
    true,
)
.with_round_trip(typed::<disc::EndpointSlice>)
.with_printer(Printer::EndpointSlice)
.with_protobuf();

/// events.k8s.io/v1 Event.
pub static EVENTS_V1: ResourceKind =
    ResourceKind::new("events.k8s.io", "v1", "Event", "events", "event", true)
        .with_short_names(&["ev"])
        .with_strategy(Strategy::Event)
        .with_round_trip(typed::<ev::Event>)
        .with_printer(Printer::EventV1)
        .with_protobuf();

/// networking.k8s.io/v1 Ingress.
pub static INGRESSES: ResourceKind = ResourceKind::new(
    "networking.k8s.io",
    "v1",
    "Ingress",
    "ingresses",
    "ingress",
    true,
)
.with_short_names(&["ing"])
.with_subresources(STATUS)
.with_strategy(Strategy::WithStatus)
.with_round_trip(typed::<net::Ingress>)
.with_columns(col::INGRESS);

/// networking.k8s.io/v1 IngressClass.
pub static INGRESSCLASSES: ResourceKind = ResourceKind::new(
    "networking.k8s.io",
    "v1",
    "IngressClass",
    "ingressclasses",
    "ingressclass",
    false,
)
.with_round_trip(typed::<net::IngressClass>)
.with_columns(col::INGRESS_CLASS);

/// networking.k8s.io/v1 NetworkPolicy.
pub static NETWORKPOLICIES: ResourceKind = ResourceKind::new(
    "networking.k8s.io",
    "v1",
    "NetworkPolicy",
    "networkpolicies",
    "networkpolicy",
    true,
)
.with_short_names(&["netpol"])
.with_round_trip(typed::<net::NetworkPolicy>)
.with_columns(col::NETWORK_POLICY);

/// node.k8s.io/v1 RuntimeClass.
pub static RUNTIMECLASSES: ResourceKind = ResourceKind::new(
    "node.k8s.io",
    "v1",
    "RuntimeClass",
    "runtimeclasses",
    "runtimeclass",
    false,
)
.with_round_trip(typed::<node::RuntimeClass>)
.with_columns(col::RUNTIME_CLASS);

/// scheduling.k8s.io/v1 PriorityClass.
pub static PRIORITYCLASSES: ResourceKind = ResourceKind::new(
    "scheduling.k8s.io",
    "v1",
    "PriorityClass",
    "priorityclasses",
    "priorityclass",
    false,
)
.with_short_names(&["pc"])
.with_round_trip(typed::<sched::PriorityClass>)
.with_columns(col::PRIORITY_CLASS);

/// storage.k8s.io/v1 StorageClass.
pub static STORAGECLASSES: ResourceKind = ResourceKind::new(
    "storage.k8s.io",
    "v1",
    "StorageClass",
    "storageclasses",
    "storageclass",
    false,
)
.with_short_names(&["sc"])
.with_round_trip(typed::<storage::StorageClass>)
.with_columns(col::STORAGE_CLASS);

/// storage.k8s.io/v1 CSIDriver.
pub static CSIDRIVERS: ResourceKind = ResourceKind::new(
    "storage.k8s.io",
    "v1",
    "CSIDriver",
    "csidrivers",
    "csidriver",
    false,
)
.with_round_trip(typed::<storage::CSIDriver>)
.with_columns(col::CSI_DRIVER);

/// storage.k8s.io/v1 CSINode.
pub static CSINODES: ResourceKind = ResourceKind::new(
    "storage.k8s.io",
    "v1",
    "CSINode",
    "csinodes",
    "csinode",
    false,
)
.with_round_trip(typed::<storage::CSINode>)
.with_columns(col::CSI_NODE);

/// storage.k8s.io/v1 VolumeAttachment.
pub static VOLUMEATTACHMENTS: ResourceKind = ResourceKind::new(
    "storage.k8s.io",
    "v1",
    "VolumeAttachment",
    "volumeattachments",
    "volumeattachment",
    false,
)
.with_subresources(STATUS)
.with_strategy(Strategy::WithStatus)
.with_round_trip(typed::<storage::VolumeAttachment>)
.with_columns(col::VOLUME_ATTACHMENT);

/// storage.k8s.io/v1 CSIStorageCapacity.
pub static CSISTORAGECAPACITIES: ResourceKind = ResourceKind::new(
    "storage.k8s.io",
    "v1",
    "CSIStorageCapacity",
    "csistoragecapacities",
    "csistoragecapacity",
    true,
)
.with_round_trip(typed::<storage::CSIStorageCapacity>)
.with_columns(col::CSI_STORAGE_CAPACITY);

/// rbac.authorization.k8s.io/v1 Role.
pub static ROLES: ResourceKind = ResourceKind::new(
    "rbac.authorization.k8s.io",
    "v1",
    "Role",
    "roles",
    "role",
    true,
)
.with_round_trip(typed::<rbac::Role>)
.with_columns(col::CREATED_AT);

/// rbac.authorization.k8s.io/v1 ClusterRole.
pub static CLUSTERROLES: ResourceKind = ResourceKind::new(
    "rbac.authorization.k8s.io",
    "v1",
    "ClusterRole",
    "clusterroles",
    "clusterrole",
    false,
)
.with_round_trip(typed::<rbac::ClusterRole>)
.with_columns(col::CREATED_AT);

/// rbac.authorization.k8s.io/v1 RoleBinding.
pub static ROLEBINDINGS: ResourceKind = ResourceKind::new(
    "rbac.authorization.k8s.io",
    "v1",
    "RoleBinding",
    "rolebindings",
    "rolebinding",
    true,
)
.with_round_trip(typed::<rbac::RoleBinding>)
.with_columns(col::ROLE_BINDING);

/// rbac.authorization.k8s.io/v1 ClusterRoleBinding.
pub static CLUSTERROLEBINDINGS: ResourceKind = ResourceKind::new(
    "rbac.authorization.k8s.io",
    "v1",
    "ClusterRoleBinding",
    "clusterrolebindings",
    "clusterrolebinding",
    false,
)
.with_round_trip(typed::<rbac::ClusterRoleBinding>)
.with_columns(col::ROLE_BINDING);

/// admissionregistration.k8s.io/v1 MutatingWebhookConfiguration (stored, not called).
pub static MUTATINGWEBHOOKCONFIGURATIONS: ResourceKind = ResourceKind::new(
    "admissionregistration.k8s.io",
    "v1",
    "MutatingWebhookConfiguration",
    "mutatingwebhookconfigurations",
    "mutatingwebhookconfiguration",
    false,
)
.with_categories(API_EXTENSIONS)
.with_round_trip(typed::<admreg::MutatingWebhookConfiguration>)
.with_columns(col::WEBHOOK_CONFIGURATION);

/// admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration (stored, not called).
pub static VALIDATINGWEBHOOKCONFIGURATIONS: ResourceKind = ResourceKind::new(
    "admissionregistration.k8s.io",
    "v1",
    "ValidatingWebhookConfiguration",
    "validatingwebhookconfigurations",
    "validatingwebhookconfiguration",
    false,
)
.with_categories(API_EXTENSIONS)
.with_round_trip(typed::<admreg::ValidatingWebhookConfiguration>)
.with_columns(col::WEBHOOK_CONFIGURATION);

/// admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (stored, not evaluated).
pub static VALIDATINGADMISSIONPOLICIES: ResourceKind = ResourceKind::new(
    "admissionregistration.k8s.io",
    "v1",
    "ValidatingAdmissionPolicy",
    "validatingadmissionpolicies",
    "validatingadmissionpolicy",
    false,
)
.with_categories(API_EXTENSIONS)
.with_subresources(STATUS)
.with_strategy(Strategy::WithStatus)
.with_round_trip(typed::<admreg::ValidatingAdmissionPolicy>)
.with_columns(col::VALIDATING_ADMISSION_POLICY);

/// admissionregistration.k8s.io/v1 ValidatingAdmissionPolicyBinding (stored).
pub static VALIDATINGADMISSIONPOLICYBINDINGS: ResourceKind = ResourceKind::new(
    "admissionregistration.k8s.io",
    "v1",
    "ValidatingAdmissionPolicyBinding",
    "validatingadmissionpolicybindings",
    "validatingadmissionpolicybinding",
    false,
)
.with_categories(API_EXTENSIONS)
.with_round_trip(typed::<admreg::ValidatingAdmissionPolicyBinding>)
.with_columns(col::VALIDATING_ADMISSION_POLICY_BINDING);

/// apiextensions.k8s.io/v1 CustomResourceDefinition (see [`crate::crd`]).
pub static CUSTOMRESOURCEDEFINITIONS: ResourceKind = ResourceKind::new(
    "apiextensions.k8s.io",
    "v1",
    "CustomResourceDefinition",
    "customresourcedefinitions",
    "customresourcedefinition",
    false,
)
.with_short_names(&["crd", "crds"])
.with_categories(API_EXTENSIONS)
.with_subresources(STATUS)
.with_strategy(Strategy::WithStatus)
.with_round_trip(typed::<apiext::CustomResourceDefinition>)
.with_columns(col::CREATED_AT);

/// apiregistration.k8s.io/v1 APIService: one per served group-version, made at start.
pub static APISERVICES: ResourceKind = ResourceKind::new(
    "apiregistration.k8s.io",
    "v1",
    "APIService",
    "apiservices",
    "apiservice",
    false,
)
.with_categories(API_EXTENSIONS)
.with_subresources(STATUS)
.with_strategy(Strategy::WithStatus)
.with_round_trip(typed::<apireg::APIService>)
.with_columns(col::API_SERVICE);

/// autoscaling/v1 Scale: not stored, the view served by `*/scale` subresources.
pub static SCALE: ResourceKind =
    ResourceKind::new("autoscaling", "v1", "Scale", "scale", "scale", true)
        .with_round_trip(typed::<autoscaling::Scale>)
        .with_protobuf();

/// core/v1 Binding: not stored, the body of `pods/binding`.
pub static BINDING: ResourceKind =
    ResourceKind::new("", "v1", "Binding", "bindings", "binding", true)
        .with_round_trip(typed::<core::Binding>)
        .with_protobuf();

/// timelines.podvisor.io/v1 Timeline: a pod's lifecycle timeline (`crate::timeline`).
pub static TIMELINES: ResourceKind = ResourceKind::new(
    podvisor_kit::timeline::GROUP,
    podvisor_kit::timeline::VERSION,
    "Timeline",
    "timelines",
    "timeline",
    true,
)
.with_short_names(&["tl"])
.with_subresources(&[Subresource::Entries])
.with_columns(col::TIMELINE)
.read_only();

/// Every served kind, in discovery order (upstream's: core first, then groups by
/// priority).
pub static KINDS: &[&ResourceKind] = &[
    &PODS,
    &NAMESPACES,
    &NODES,
    &EVENTS,
    &SERVICES,
    &ENDPOINTS,
    &CONFIGMAPS,
    &SECRETS,
    &SERVICEACCOUNTS,
    &REPLICATIONCONTROLLERS,
    &LIMITRANGES,
    &RESOURCEQUOTAS,
    &PERSISTENTVOLUMES,
    &PERSISTENTVOLUMECLAIMS,
    &PODTEMPLATES,
    &APISERVICES,
    &REPLICASETS,
    &DEPLOYMENTS,
    &STATEFULSETS,
    &DAEMONSETS,
    &CONTROLLERREVISIONS,
    &EVENTS_V1,
    &HORIZONTALPODAUTOSCALERS,
    &JOBS,
    &CRONJOBS,
    &NETWORKPOLICIES,
    &INGRESSES,
    &INGRESSCLASSES,
    &PODDISRUPTIONBUDGETS,
    &ROLES,
    &CLUSTERROLES,
    &ROLEBINDINGS,
    &CLUSTERROLEBINDINGS,
    &STORAGECLASSES,
    &CSIDRIVERS,
    &CSINODES,
    &VOLUMEATTACHMENTS,
    &CSISTORAGECAPACITIES,
    &MUTATINGWEBHOOKCONFIGURATIONS,
    &VALIDATINGWEBHOOKCONFIGURATIONS,
    &VALIDATINGADMISSIONPOLICIES,
    &VALIDATINGADMISSIONPOLICYBINDINGS,
    &CUSTOMRESOURCEDEFINITIONS,
    &PRIORITYCLASSES,
    &LEASES,
    &RUNTIMECLASSES,
    &ENDPOINTSLICES,
    &TIMELINES,
];
