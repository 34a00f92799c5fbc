//! Protobuf ⇄ JSON conversion: a JSON → protobuf → JSON round trip for every served
//! kind (realistic objects as Go's encoding/json writes them), and decoding of bodies
//! shaped like client-go's (gogo-protobuf writes every non-pointer field, even zero).

use podvisor_apiserver::protobuf::{self, ProtobufError, ResponseFormat};
use prost::Message as _;
use serde_json::{Value, json};

fn round_trip(object: &Value) {
    let bytes = protobuf::encode(object).expect("encode");
    assert_eq!(&bytes[..4], b"k8s\0");
    let back = protobuf::decode(&bytes).expect("decode");
    assert_eq!(&back, object, "round trip changed the object");
}

fn meta(name: &str) -> Value {
    json!({
        "name": name,
        "namespace": "default",
        "uid": "5f0c7e5a-6a0e-4f59-9d0e-0c1f3b1e2a10",
        "resourceVersion": "1042",
        "generation": 3,
        "creationTimestamp": "2026-11-25T09:00:00Z",
        "labels": {"app": "web", "empty": ""},
        "annotations": {"note": "hello \u{2603}"},
        "finalizers": ["example.com/cleanup"],
        "managedFields": [{
            "manager": "kubectl-create",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2026-11-25T09:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}
        }]
    })
}

fn pod_spec() -> Value {
    json!({
        "containers": [{
            "name": "web",
            "image": "nginx:1.27",
            "command": ["nginx"],
            "args": ["-g", "daemon off;"],
            "workingDir": "/srv",
            "ports": [
                {"name": "http", "containerPort": 80, "protocol": "TCP"},
                {"containerPort": 9090, "hostPort": 19090, "hostIP": "127.0.0.1", "protocol": "UDP"}
            ],
            "env": [
                {"name": "A", "value": "b"},
                {"name": "EMPTY"},
                {"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"containerName": "web", "resource": "limits.cpu", "divisor": "1m"}}},
                {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": false}}}
            ],
            "envFrom": [{"configMapRef": {"name": "c"}, "prefix": "C_"}],
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}},
            "volumeMounts": [{"name": "cfg", "readOnly": true, "mountPath": "/etc/cfg"}],
            "livenessProbe": {
                "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                "initialDelaySeconds": 3, "timeoutSeconds": 1, "periodSeconds": 10,
                "successThreshold": 1, "failureThreshold": 3
            },
            "readinessProbe": {
                "tcpSocket": {"port": 80},
                "timeoutSeconds": 1, "periodSeconds": 5, "successThreshold": 1, "failureThreshold": 3
            },
            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "sleep 1"]}}},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent",
            "securityContext": {"runAsUser": 0, "runAsNonRoot": false, "allowPrivilegeEscalation": false,
                                "capabilities": {"drop": ["ALL"]}},
            "stdin": true,
            "tty": true
        }],
        "initContainers": [{"name": "init", "image": "busybox", "args": ["true"], "resources": {}}],
        "volumes": [
            {"name": "cfg", "configMap": {"name": "c", "items": [{"key": "a", "path": "a.txt", "mode": 384}], "defaultMode": 420}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
            {"name": "sec", "secret": {"secretName": "s", "defaultMode": 256}},
            {"name": "host", "hostPath": {"path": "/var/log", "type": ""}}
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "activeDeadlineSeconds": 0,
        "dnsPolicy": "ClusterFirst",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "serviceAccountName": "default",
        "serviceAccount": "default",
        "nodeName": "node-1",
        "hostNetwork": true,
        "securityContext": {},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}},
        "schedulerName": "default-scheduler",
        "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"operator": "Exists"}
        ],
        "priority": 0,
        "enableServiceLinks": true,
        "preemptionPolicy": "PreemptLowerPriority"
    })
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-1", "generateName": "web-", "namespace": "default",
            "uid": "0b1f", "resourceVersion": "7", "creationTimestamp": "2026-11-25T09:00:00Z",
            "deletionTimestamp": "2026-11-25T09:10:00Z", "deletionGracePeriodSeconds": 0,
            "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-6d4b",
                                 "uid": "9a9a", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": pod_spec(),
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-11-25T09:00:01Z"},
                {"type": "Ready", "status": "False", "lastProbeTime": null, "lastTransitionTime": "2026-11-25T09:00:05Z",
                 "reason": "ContainersNotReady", "message": "containers with unready status: [web]"}
            ],
            "hostIP": "10.0.0.1",
            "hostIPs": [{"ip": "10.0.0.1"}],
            "podIP": "10.244.0.5",
            "podIPs": [{"ip": "10.244.0.5"}],
            "startTime": "2026-11-25T09:00:01Z",
            "initContainerStatuses": [{"name": "init", "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                "startedAt": "2026-11-25T09:00:02Z", "finishedAt": "2026-11-25T09:00:03Z", "containerID": "podvisor://1"}},
                "lastState": {}, "ready": true, "restartCount": 0, "image": "busybox", "imageID": "", "containerID": "podvisor://1",
                "started": false}],
            "containerStatuses": [{"name": "web", "state": {"running": {"startedAt": "2026-11-25T09:00:04Z"}},
                "lastState": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
                "ready": false, "restartCount": 2, "image": "nginx:1.27", "imageID": "docker.io/library/nginx@sha256:ab",
                "containerID": "podvisor://2", "started": true}],
            "qosClass": "Burstable"
        }
    })
}

fn template() -> Value {
    json!({
        "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "busybox", "image": "busybox", "resources": {},
                  "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                  "imagePullPolicy": "Always"}],
                 "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                 "securityContext": {}, "schedulerName": "default-scheduler"}
    })
}

#[test]
fn pod_round_trip() {
    round_trip(&pod());
}

#[test]
fn namespace_round_trip() {
    round_trip(&json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "dev", "uid": "u1", "resourceVersion": "5", "creationTimestamp": "2026-11-25T09:00:00Z",
                     "labels": {"kubernetes.io/metadata.name": "dev"}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}
    }));
}

#[test]
fn node_round_trip() {
    round_trip(&json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-1", "uid": "n1", "resourceVersion": "9", "creationTimestamp": "2026-11-25T08:00:00Z",
                     "labels": {"kubernetes.io/hostname": "node-1"}},
        "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"], "providerID": "podvisor://node-1",
                 "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}], "unschedulable": true},
        "status": {
            "capacity": {"cpu": "4", "memory": "16331908Ki", "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": "3900m", "memory": "15Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-11-25T09:00:00Z",
                            "lastTransitionTime": "2026-11-25T08:00:00Z", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status"}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "node-1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "6.1.0",
                         "osImage": "Debian GNU/Linux 12", "containerRuntimeVersion": "podvisor://0.1.0",
                         "kubeletVersion": "v1.33.0", "kubeProxyVersion": "", "operatingSystem": "linux",
                         "architecture": "amd64"},
            "images": [{"names": ["busybox:latest"], "sizeBytes": 4261550}]
        }
    }));
}

#[test]
fn core_event_round_trip() {
    round_trip(&json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "x.1871a", "namespace": "default", "uid": "e1", "resourceVersion": "11",
                     "creationTimestamp": "2026-11-25T09:00:00Z"},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "x", "uid": "p1", "apiVersion": "v1",
                           "resourceVersion": "10", "fieldPath": "spec.containers{x}"},
        "reason": "Scheduled", "message": "Successfully assigned default/x to node-1",
        "source": {"component": "default-scheduler"},
        "firstTimestamp": null, "lastTimestamp": null,
        "type": "Normal", "count": 2,
        "eventTime": "2026-11-25T09:00:00.123456Z",
        "series": {"count": 2, "lastObservedTime": "2026-11-25T09:00:01.000001Z"},
        "action": "Binding", "reportingComponent": "default-scheduler", "reportingInstance": "default-scheduler-node-1"
    }));
}

#[test]
fn service_round_trip() {
    round_trip(&json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": meta("web"),
        "spec": {
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080},
                      {"name": "metrics", "protocol": "TCP", "appProtocol": "http", "port": 9090, "targetPort": "metrics"}],
            "selector": {"app": "web"},
            "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "type": "NodePort",
            "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
            "externalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster", "allocateLoadBalancerNodePorts": false
        },
        "status": {"loadBalancer": {}}
    }));
}

#[test]
fn endpoints_round_trip() {
    round_trip(&json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": meta("web"),
        "subsets": [{
            "addresses": [{"ip": "10.244.0.5", "nodeName": "node-1",
                           "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-1", "uid": "p1"}}],
            "notReadyAddresses": [{"ip": "10.244.0.6", "hostname": "web-2"}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]
        }]
    }));
}

#[test]
fn configmap_round_trip() {
    round_trip(&json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": meta("c"),
        "data": {"a": "b", "empty": "", "multi": "line1\nline2\n"},
        "binaryData": {"bin": "AAEC/w=="},
        "immutable": false
    }));
}

#[test]
fn secret_round_trip() {
    round_trip(&json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": meta("s"),
        "type": "Opaque",
        "data": {"k": "dg==", "binary": "AP8Q", "empty": ""},
        "immutable": true
    }));
}

#[test]
fn binding_round_trip() {
    round_trip(&json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "x", "namespace": "default", "creationTimestamp": null},
        "target": {"kind": "Node", "name": "node-1"}
    }));
}

#[test]
fn lease_round_trip() {
    round_trip(&json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "node-1", "namespace": "kube-node-lease", "uid": "l1", "resourceVersion": "3",
                     "creationTimestamp": "2026-11-25T08:00:00Z"},
        "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40,
                 "acquireTime": "2026-11-25T08:00:00.000000Z", "renewTime": "2026-11-25T09:00:00.654321Z",
                 "leaseTransitions": 0}
    }));
}

#[test]
fn replicaset_round_trip() {
    round_trip(&json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": meta("web-6d4b"),
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"},
                 "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]},
                 "template": template()},
        "status": {"replicas": 0, "observedGeneration": 2}
    }));
}

#[test]
fn deployment_round_trip() {
    round_trip(&json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": meta("web"),
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template(),
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}},
                 "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600},
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
                   "availableReplicas": 1,
                   "conditions": [{"type": "Available", "status": "True", "lastUpdateTime": "2026-11-25T09:00:00Z",
                                   "lastTransitionTime": "2026-11-25T09:00:00Z", "reason": "MinimumReplicasAvailable",
                                   "message": "Deployment has minimum availability."}]}
    }));
}

#[test]
fn statefulset_round_trip() {
    round_trip(&json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": meta("db"),
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template(),
                 "serviceName": "db", "podManagementPolicy": "OrderedReady",
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                 "revisionHistoryLimit": 10,
                 "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                 "volumeClaimTemplates": [{"metadata": {"name": "data", "creationTimestamp": null},
                     "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                              "volumeMode": "Filesystem"},
                     "status": {}}]},
        "status": {"replicas": 1, "readyReplicas": 1, "currentReplicas": 1, "updatedReplicas": 1,
                   "currentRevision": "db-7c9", "updateRevision": "db-7c9", "collisionCount": 0,
                   "availableReplicas": 1, "observedGeneration": 1}
    }));
}

#[test]
fn scale_round_trip() {
    round_trip(&json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": "web", "namespace": "default", "uid": "d1", "resourceVersion": "12",
                     "creationTimestamp": "2026-11-25T09:00:00Z"},
        "spec": {"replicas": 3},
        "status": {"replicas": 0, "selector": "app=web"}
    }));
}

#[test]
fn endpointslice_round_trip() {
    round_trip(&json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": meta("web-abc12"),
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": true, "serving": true, "terminating": false},
                       "nodeName": "node-1", "zone": "a",
                       "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-1", "uid": "p1"}}],
        "ports": [{"name": "http", "protocol": "TCP", "port": 80}, {"name": "", "port": 0}]
    }));
}

#[test]
fn events_v1_event_round_trip() {
    round_trip(&json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": meta("x.1871b"),
        "eventTime": "2026-11-25T09:00:00.000100Z",
        "reportingController": "podvisor/scheduler", "reportingInstance": "podvisor-node-1",
        "action": "Binding", "reason": "Scheduled",
        "regarding": {"kind": "Pod", "namespace": "default", "name": "x", "uid": "p1", "apiVersion": "v1"},
        "note": "Successfully assigned default/x to node-1", "type": "Normal",
        "deprecatedFirstTimestamp": null, "deprecatedLastTimestamp": null, "deprecatedSource": {}
    }));
}

#[test]
fn delete_options_round_trip() {
    round_trip(&json!({
        "apiVersion": "v1", "kind": "DeleteOptions",
        "gracePeriodSeconds": 0, "propagationPolicy": "Background",
        "preconditions": {"uid": "u1", "resourceVersion": "5"}, "dryRun": ["All"]
    }));
    // DeleteOptions travel under any group version.
    round_trip(
        &json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"}),
    );
}

#[test]
fn lists_and_status_round_trip() {
    let mut item = pod();
    let item_map = item.as_object_mut().expect("object");
    item_map.remove("kind");
    item_map.remove("apiVersion");
    round_trip(&json!({
        "apiVersion": "v1", "kind": "PodList",
        "metadata": {"resourceVersion": "1042", "continue": "abc", "remainingItemCount": 0},
        "items": [item]
    }));
    round_trip(
        &json!({"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {"resourceVersion": "3"}}),
    );
    round_trip(&json!({
        "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
        "message": "pods \"nope\" not found", "reason": "NotFound",
        "details": {"name": "nope", "kind": "pods"}, "code": 404
    }));
}

#[test]
fn every_supported_kind_encodes_its_minimal_object() {
    for (api_version, kind) in protobuf::SUPPORTED_KINDS {
        let object = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}});
        let object = if kind.ends_with("List") {
            json!({"apiVersion": api_version, "kind": kind, "metadata": {}})
        } else {
            object
        };
        round_trip(&object);
    }
}

/// A JSON object may carry the fields of a Go struct embedded inline (VolumeSource,
/// ProbeHandler, LocalObjectReference): they must survive in place.
#[test]
fn inline_structs_stay_flat() {
    let value = pod();
    let bytes = protobuf::encode(&value).expect("encode");
    let decoded = protobuf::decode(&bytes).expect("decode");
    assert_eq!(decoded["spec"]["volumes"][0]["configMap"]["name"], "c");
    assert_eq!(
        decoded["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"],
        "http"
    );
    assert_eq!(
        decoded["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"],
        "c"
    );
}

type Meta = k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// ObjectMeta as gogo-protobuf writes it: every non-pointer field, even when empty.
fn gogo_meta(name: &str, namespace: &str) -> Meta {
    Meta {
        name: Some(name.into()),
        generate_name: Some(String::new()),
        namespace: Some(namespace.into()),
        self_link: Some(String::new()),
        uid: Some(String::new()),
        resource_version: Some(String::new()),
        generation: Some(0),
        creation_timestamp: Some(Default::default()),
        ..Default::default()
    }
}

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

/// `kubectl create namespace dev`: the JSON path stores
/// `{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"dev","creationTimestamp":null},"spec":{},"status":{}}`.
#[test]
fn gogo_namespace_decodes_like_kubectl_json() {
    use k8s_pb::api::core::v1 as core;
    let ns = core::Namespace {
        metadata: Some(gogo_meta("dev", "")),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus {
            phase: Some(String::new()),
            conditions: vec![],
        }),
    };
    let decoded =
        protobuf::decode(&envelope("v1", "Namespace", ns.encode_to_vec())).expect("decode");
    assert_eq!(
        decoded,
        json!({"kind": "Namespace", "apiVersion": "v1",
               "metadata": {"name": "dev", "creationTimestamp": null}, "spec": {}, "status": {}})
    );
}

/// `kubectl run x --image=busybox -- sleep 100` (kubectl-wire §4.15).
#[test]
fn gogo_pod_decodes_like_kubectl_json() {
    use k8s_pb::api::core::v1 as core;
    let container = core::Container {
        name: Some("x".into()),
        image: Some("busybox".into()),
        args: vec!["sleep".into(), "100".into()],
        working_dir: Some(String::new()),
        resources: Some(Default::default()),
        termination_message_path: Some(String::new()),
        image_pull_policy: Some(String::new()),
        stdin: Some(false),
        stdin_once: Some(false),
        tty: Some(false),
        termination_message_policy: Some(String::new()),
        ..Default::default()
    };
    let mut meta = gogo_meta("x", "");
    meta.labels.insert("run".into(), "x".into());
    let pod = core::Pod {
        metadata: Some(meta),
        spec: Some(core::PodSpec {
            containers: vec![container],
            restart_policy: Some("Always".into()),
            dns_policy: Some("ClusterFirst".into()),
            service_account_name: Some(String::new()),
            service_account: Some(String::new()),
            node_name: Some(String::new()),
            host_network: Some(false),
            host_pid: Some(false),
            host_ipc: Some(false),
            hostname: Some(String::new()),
            subdomain: Some(String::new()),
            scheduler_name: Some(String::new()),
            priority_class_name: Some(String::new()),
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            phase: Some(String::new()),
            message: Some(String::new()),
            reason: Some(String::new()),
            host_ip: Some(String::new()),
            pod_ip: Some(String::new()),
            qos_class: Some(String::new()),
            nominated_node_name: Some(String::new()),
            ..Default::default()
        }),
    };
    let decoded = protobuf::decode(&envelope("v1", "Pod", pod.encode_to_vec())).expect("decode");
    assert_eq!(
        decoded,
        json!({"kind": "Pod", "apiVersion": "v1",
               "metadata": {"name": "x", "creationTimestamp": null, "labels": {"run": "x"}},
               "spec": {"containers": [{"name": "x", "image": "busybox", "args": ["sleep", "100"], "resources": {}}],
                        "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"},
               "status": {}})
    );
}

/// `kubectl create deployment web --image=busybox`: replicas is a pointer, an
/// IntOrString travels as type/intVal/strVal.
#[test]
fn gogo_deployment_keeps_pointer_zero_and_int_or_string() {
    use k8s_pb::api::apps::v1 as apps;
    use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
    let deployment = apps::Deployment {
        metadata: Some(gogo_meta("web", "")),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            min_ready_seconds: Some(0),
            paused: Some(false),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: Some("25%".into()),
                    }),
                    max_surge: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(2),
                        str_val: Some(String::new()),
                    }),
                }),
            }),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus {
            replicas: Some(0),
            observed_generation: Some(0),
            ..Default::default()
        }),
    };
    let decoded = protobuf::decode(&envelope(
        "apps/v1",
        "Deployment",
        deployment.encode_to_vec(),
    ))
    .expect("decode");
    assert_eq!(
        decoded,
        json!({"kind": "Deployment", "apiVersion": "apps/v1",
               "metadata": {"name": "web", "creationTimestamp": null},
               "spec": {"replicas": 0,
                        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 2}}},
               "status": {}})
    );
}

/// Secret data is bytes in protobuf and base64 in JSON.
#[test]
fn gogo_secret_bytes_become_base64() {
    use k8s_pb::api::core::v1 as core;
    let mut secret = core::Secret {
        metadata: Some(gogo_meta("s", "default")),
        r#type: Some("Opaque".into()),
        ..Default::default()
    };
    secret.data.insert("k".into(), b"v".to_vec());
    secret.data.insert("raw".into(), vec![0, 255, 16]);
    let decoded =
        protobuf::decode(&envelope("v1", "Secret", secret.encode_to_vec())).expect("decode");
    assert_eq!(
        decoded,
        json!({"kind": "Secret", "apiVersion": "v1",
               "metadata": {"name": "s", "namespace": "default", "creationTimestamp": null},
               "data": {"k": "dg==", "raw": "AP8Q"}, "type": "Opaque"})
    );
}

#[test]
fn envelope_errors_are_typed() {
    assert!(matches!(
        protobuf::decode(b"{\"kind\":\"Pod\"}"),
        Err(ProtobufError::MissingMagic)
    ));
    assert!(matches!(
        protobuf::decode(b"k8s"),
        Err(ProtobufError::MissingMagic)
    ));
    assert!(matches!(
        protobuf::decode(b"k8s\0\x0a\x05ab"),
        Err(ProtobufError::Envelope(_))
    ));
    assert!(matches!(
        protobuf::decode(b"k8s\0"),
        Err(ProtobufError::MissingTypeMeta)
    ));
    let unknown_kind = envelope("v1", "Frobnicator", vec![]);
    assert!(matches!(
        protobuf::decode(&unknown_kind),
        Err(ProtobufError::UnsupportedKind { .. })
    ));
    let bad_raw = envelope("v1", "Pod", vec![0x0a, 0x7f, 0x01]);
    let err = protobuf::decode(&bad_raw).expect_err("truncated Pod");
    assert!(matches!(err, ProtobufError::Message { .. }), "{err:?}");
    assert!(err.to_string().contains("Pod"), "{err}");
}

#[test]
fn encode_errors_name_the_path() {
    let err = protobuf::encode(&json!({"apiVersion": "v1", "kind": "Pod",
        "spec": {"containers": [{"name": "a", "ports": [{"containerPort": "eighty"}]}]}}))
    .expect_err("string port");
    assert_eq!(
        err.to_string(),
        "cannot convert Pod: spec.containers[0].ports[0].containerPort: expected an integer, got a string"
    );
    assert!(matches!(
        protobuf::encode(&json!({"kind": "Pod"})),
        Err(ProtobufError::MissingKind)
    ));
    assert!(matches!(
        protobuf::encode(&json!({"apiVersion": "meta.k8s.io/v1", "kind": "Table"})),
        Err(ProtobufError::UnsupportedKind { .. })
    ));
}

#[test]
fn negotiation_follows_client_go_accept_headers() {
    use protobuf::{negotiate, negotiate_watch};
    let kubectl = "application/vnd.kubernetes.protobuf,application/json";
    assert_eq!(negotiate(Some(kubectl)), ResponseFormat::Protobuf);
    assert_eq!(
        negotiate(Some("application/vnd.kubernetes.protobuf, */*")),
        ResponseFormat::Protobuf
    );
    assert_eq!(
        negotiate(Some("application/json, */*")),
        ResponseFormat::Json
    );
    assert_eq!(
        negotiate(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        )),
        ResponseFormat::Json
    );
    assert_eq!(
        negotiate(Some(
            "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json"
        )),
        ResponseFormat::Json
    );
    assert_eq!(
        negotiate(Some(
            "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
        )),
        ResponseFormat::Json
    );
    assert_eq!(negotiate(None), ResponseFormat::Json);
    assert_eq!(negotiate_watch(Some(kubectl)), ResponseFormat::Json);
    assert_eq!(
        negotiate_watch(Some("application/vnd.kubernetes.protobuf")),
        ResponseFormat::Protobuf
    );
    assert!(protobuf::is_protobuf_content_type(
        "application/vnd.kubernetes.protobuf"
    ));
    assert!(protobuf::is_protobuf_content_type(
        "Application/Vnd.Kubernetes.Protobuf; charset=binary"
    ));
    assert!(!protobuf::is_protobuf_content_type("application/json"));
}

#[test]
fn watch_frames_are_length_prefixed_events() {
    let object = pod();
    let frame = protobuf::encode_watch_event("MODIFIED", &object).expect("frame");
    let len = u32::from_be_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
    assert_eq!(len, frame.len() - 4);
    let (event_type, back) = protobuf::decode_watch_event(&frame[4..]).expect("decode");
    assert_eq!(event_type, "MODIFIED");
    assert_eq!(back, object);
}

#[test]
fn unsupported_media_type_status_is_a_415() {
    let status = protobuf::unsupported_media_type_status("text/plain");
    assert_eq!(status["code"], 415);
    assert_eq!(status["reason"], "UnsupportedMediaType");
    assert_eq!(status["kind"], "Status");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("text/plain"))
    );
}

/// Every kind the registry marks as having a protobuf form (and its list) has one, and
/// the kinds served before the generic registry all do.
#[test]
fn every_registered_kind_has_a_protobuf_form() {
    let marked: Vec<_> = podvisor_apiserver::registry::KINDS
        .iter()
        .filter(|k| k.protobuf)
        .collect();
    assert!(marked.len() >= 14, "{}", marked.len());
    for kind in marked {
        let api_version = kind.api_version();
        assert!(
            protobuf::is_supported(&api_version, kind.kind),
            "{api_version} {} has no protobuf form",
            kind.kind
        );
        if !matches!(kind.kind, "Scale" | "Binding") {
            assert!(
                protobuf::is_supported(&api_version, &kind.list_kind()),
                "{api_version} {} has no protobuf form",
                kind.list_kind()
            );
        }
    }
}

/// `schema.rs` is what `generate.py` makes from the k8s-pb and k8s-openapi sources
/// in the cargo registry (both are dependencies, so their sources are there).
#[test]
fn generated_schema_is_current() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/src/protobuf/generate.py");
    podvisor_testkit::run_ok(std::process::Command::new("python3").args([script, "--check"]));
}

#[test]
fn resource_quota_round_trip() {
    round_trip(&json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": meta("q"),
        "spec": {
            "hard": {"pods": "2", "requests.cpu": "1", "count/configmaps": "1"},
            "scopeSelector": {"matchExpressions": [
                {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}
            ]}
        },
        "status": {"hard": {"pods": "2"}, "used": {"pods": "0"}}
    }));
}

#[test]
fn service_account_round_trip() {
    round_trip(&json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": meta("builder"),
        "secrets": [{"name": "builder-token"}],
        "imagePullSecrets": [{"name": "registry"}],
        "automountServiceAccountToken": false
    }));
}

#[test]
fn pod_disruption_budget_round_trip() {
    round_trip(&json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": meta("web"),
        "spec": {
            "minAvailable": "50%",
            "selector": {"matchLabels": {"app": "web"}},
            "unhealthyPodEvictionPolicy": "AlwaysAllow"
        },
        "status": {
            "currentHealthy": 2, "desiredHealthy": 1, "disruptionsAllowed": 1,
            "expectedPods": 2, "observedGeneration": 3
        }
    }));
    round_trip(&json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": meta("db"),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "db"}}},
        "status": {
            "currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0,
            "expectedPods": 0
        }
    }));
}

#[test]
fn priority_class_and_ingress_round_trip() {
    round_trip(&json!({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "high", "uid": "5f0c7e5a-6a0e-4f59-9d0e-0c1f3b1e2a11",
                     "resourceVersion": "7", "creationTimestamp": "2026-11-25T09:00:00Z"},
        "value": 1000, "description": "urgent",
        "preemptionPolicy": "Never"
    }));
    round_trip(&json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": meta("web"),
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": "web.example", "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}
            }]}}]
        },
        "status": {"loadBalancer": {}}
    }));
}
