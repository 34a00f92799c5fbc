"""The official Python client (PyPI `kubernetes`) against `podvisor up`.

Run by crates/podvisor/tests/e2e_python.rs with KUBECONFIG naming the cluster. The cases
follow the areas of the client's own end-to-end suite: core objects, pods with exec and
logs, apps, batch, RBAC, API registration, CRDs with custom objects, create_from_yaml,
the dynamic client, server-side apply, watch, discovery and metrics. Pods run host
commands through the `host` RuntimeClass.
"""

import json
import time
import uuid

import pytest
import yaml
from kubernetes import client, config, dynamic, utils, watch
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

WAIT = 60


@pytest.fixture(scope="session")
def api_client():
    config.load_kube_config()
    c = client.ApiClient()
    yield c
    c.close()


@pytest.fixture
def ns(api_client):
    """A fresh namespace per test, deleted afterwards."""
    name = "py-" + uuid.uuid4().hex[:8]
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def wait_for(what, fn, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def host_pod(name, command, labels=None, restart="Never"):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {
            "runtimeClassName": "host",
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "busybox", "command": command}],
        },
    }


# ------------------------------------------------------------------------ core


def test_pod_lifecycle_exec_and_logs(api_client, ns):
    core = client.CoreV1Api(api_client)
    name = "sleeper"
    pod = host_pod(name, ["sh", "-c", "echo hello-from-pod; sleep 600"])
    resp = core.create_namespaced_pod(body=pod, namespace=ns)
    assert resp.metadata.name == name
    assert resp.status.phase == "Pending"

    wait_for("pod running", lambda: core.read_namespaced_pod(name, ns).status.phase == "Running")
    got = core.read_namespaced_pod(name, ns)
    assert any(c.type == "Ready" and c.status == "True" for c in got.status.conditions)
    assert got.status.container_statuses[0].state.running is not None

    wait_for("log line", lambda: "hello-from-pod" in core.read_namespaced_pod_log(name, ns))

    out = stream(
        core.connect_get_namespaced_pod_exec,
        name,
        ns,
        command=["/bin/sh", "-c", "echo -n exec-ok; echo -n err >&2"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    assert "exec-ok" in out

    resp = stream(
        core.connect_get_namespaced_pod_exec,
        name,
        ns,
        command=["/bin/sh"],
        stderr=True,
        stdin=True,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    resp.write_stdin("echo -n interactive\n")
    chunks = ""
    deadline = time.monotonic() + WAIT
    while "interactive" not in chunks and time.monotonic() < deadline:
        resp.update(timeout=1)
        if resp.peek_stdout():
            chunks += resp.read_stdout()
    resp.write_stdin("exit 3\n")
    resp.run_forever(timeout=10)
    assert "interactive" in chunks
    assert resp.returncode == 3
    resp.close()

    pods = core.list_namespaced_pod(ns, label_selector=f"app={name}")
    assert [p.metadata.name for p in pods.items] == [name]
    core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
    wait_for("pod gone", lambda: not core.list_namespaced_pod(ns).items)


def test_service_crud(api_client, ns):
    core = client.CoreV1Api(api_client)
    svc = {
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {"name": "frontend", "labels": {"name": "frontend"}},
        "spec": {
            "ports": [{"name": "port", "port": 80, "targetPort": 80}],
            "selector": {"name": "frontend"},
        },
    }
    resp = core.create_namespaced_service(body=svc, namespace=ns)
    assert resp.metadata.name == "frontend"
    assert resp.spec.type == "ClusterIP"
    svc["spec"]["ports"] = [{"name": "new", "port": 8080, "targetPort": 8080}]
    # A strategic merge patch: ports merge by their key, the new one joins the old one.
    resp = core.patch_namespaced_service(name="frontend", namespace=ns, body=svc)
    assert sorted(p.port for p in resp.spec.ports) == [80, 8080]
    core.delete_namespaced_service(name="frontend", namespace=ns)
    with pytest.raises(ApiException) as e:
        core.read_namespaced_service("frontend", ns)
    assert e.value.status == 404
    assert json.loads(e.value.body)["reason"] == "NotFound"


def test_configmap_and_secret(api_client, ns):
    core = client.CoreV1Api(api_client)
    cm = {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "test-configmap"},
        "data": {"config.json": '{"command":"/usr/bin/mysqld_safe"}', "frontend.cnf": "[mysqld]\nbind-address = 10.0.0.3\n"},
    }
    resp = core.create_namespaced_config_map(body=cm, namespace=ns)
    assert resp.metadata.name == "test-configmap"
    cm["data"]["config.json"] = "{}"
    resp = core.patch_namespaced_config_map(name="test-configmap", namespace=ns, body=cm)
    assert resp.data["config.json"] == "{}"
    resp = core.list_namespaced_config_map(ns, pretty=True, label_selector="")
    assert [c.metadata.name for c in resp.items if c.metadata.name == "test-configmap"]
    core.delete_namespaced_config_map(name="test-configmap", namespace=ns)

    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name="s"), type="Opaque", string_data={"user": "admin"}
    )
    core.create_namespaced_secret(ns, secret)
    got = core.read_namespaced_secret("s", ns)
    assert got.data == {"user": "YWRtaW4="}
    assert got.string_data is None


def test_service_account_and_replication_controller(api_client, ns):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="robot")))
    names = [sa.metadata.name for sa in core.list_namespaced_service_account(ns).items]
    assert "robot" in names

    rc = {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"labels": {"name": "frontend"}, "name": "frontend"},
        "spec": {
            "replicas": 2,
            "selector": {"name": "frontend"},
            "template": {
                "metadata": {"labels": {"name": "frontend"}},
                "spec": {
                    "runtimeClassName": "host",
                    "containers": [{"image": "busybox", "name": "main", "command": ["sleep", "600"]}],
                },
            },
        },
    }
    resp = core.create_namespaced_replication_controller(body=rc, namespace=ns)
    assert resp.metadata.name == "frontend"
    assert resp.spec.replicas == 2
    resp = core.read_namespaced_replication_controller(name="frontend", namespace=ns)
    assert resp.spec.template.metadata.labels == {"name": "frontend"}
    scale = core.read_namespaced_replication_controller_scale("frontend", ns)
    assert scale.spec.replicas == 2
    assert scale.status.selector == "name=frontend"
    core.delete_namespaced_replication_controller(name="frontend", namespace=ns)


def test_node_and_namespace_apis(api_client):
    core = client.CoreV1Api(api_client)
    nodes = core.list_node()
    assert len(nodes.items) >= 1
    node = core.read_node(name=nodes.items[0].metadata.name)
    assert node.status.node_info.kubelet_version
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
    names = [n.metadata.name for n in core.list_namespace().items]
    assert {"default", "kube-system"} <= set(names)


def test_errors_are_status_objects(api_client, ns):
    core = client.CoreV1Api(api_client)
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}})
    assert e.value.status == 422
    status = json.loads(e.value.body)
    assert status["kind"] == "Status"
    assert status["reason"] == "Invalid"
    core.create_namespaced_config_map(ns, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dup"}})
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dup"}})
    assert e.value.status == 409
    assert json.loads(e.value.body)["reason"] == "AlreadyExists"


# ------------------------------------------------------------------------ apps, batch


def test_deployment_rolls_out(api_client, ns):
    apps = client.AppsV1Api(api_client)
    name = "web"
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "runtimeClassName": "host",
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "600"]}],
                },
            },
        },
    }
    resp = apps.create_namespaced_deployment(body=dep, namespace=ns)
    assert resp.metadata.name == name
    wait_for(
        "deployment available",
        lambda: (apps.read_namespaced_deployment_status(name, ns).status.available_replicas or 0) == 2,
    )
    apps.patch_namespaced_deployment_scale(name, ns, {"spec": {"replicas": 1}})
    wait_for("scaled down", lambda: apps.read_namespaced_deployment(name, ns).status.replicas == 1)
    rs = apps.list_namespaced_replica_set(ns, label_selector=f"app={name}")
    assert len(rs.items) == 1
    assert rs.items[0].metadata.owner_references[0].kind == "Deployment"
    apps.delete_namespaced_deployment(name, ns, propagation_policy="Foreground")


def test_daemonset_and_controller_revision_are_served(api_client, ns):
    apps = client.AppsV1Api(api_client)
    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "main", "image": "busybox"}]},
            },
        },
    }
    resp = apps.create_namespaced_daemon_set(ns, ds)
    assert resp.spec.update_strategy.type == "RollingUpdate"
    assert [d.metadata.name for d in apps.list_namespaced_daemon_set(ns).items] == ["agent"]
    apps.list_namespaced_controller_revision(ns)
    apps.delete_namespaced_daemon_set("agent", ns)


def test_job_completes(api_client, ns):
    batch = client.BatchV1Api(api_client)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "pi"},
        "spec": {
            "backoffLimit": 1,
            "template": {
                "spec": {
                    "runtimeClassName": "host",
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "echo 3.14"]}],
                }
            },
        },
    }
    resp = batch.create_namespaced_job(body=job, namespace=ns)
    assert resp.metadata.name == "pi"
    done = wait_for("job complete", lambda: batch.read_namespaced_job_status("pi", ns).status.succeeded == 1)
    assert done
    st = batch.read_namespaced_job_status("pi", ns).status
    assert any(c.type == "Complete" and c.status == "True" for c in st.conditions)
    batch.delete_namespaced_job("pi", ns, propagation_policy="Background")
    cron = client.V1CronJob(
        metadata=client.V1ObjectMeta(name="nightly"),
        spec=client.V1CronJobSpec(
            schedule="0 3 * * *",
            job_template=client.V1JobTemplateSpec(spec=job["spec"]),
        ),
    )
    resp = batch.create_namespaced_cron_job(ns, cron)
    assert resp.spec.concurrency_policy == "Allow"
    assert resp.spec.suspend is False


# ------------------------------------------------------------------------ other groups


def test_rbac_objects(api_client, ns):
    rbac = client.RbacAuthorizationV1Api(api_client)
    role = client.V1Role(
        metadata=client.V1ObjectMeta(name="reader"),
        rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list"])],
    )
    rbac.create_namespaced_role(ns, role)
    binding = client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="read-pods"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="reader"),
        subjects=[client.RbacV1Subject(kind="User", name="jane", api_group="rbac.authorization.k8s.io")],
    )
    rbac.create_namespaced_role_binding(ns, binding)
    assert [r.metadata.name for r in rbac.list_namespaced_role(ns).items] == ["reader"]
    assert rbac.read_namespaced_role_binding("read-pods", ns).role_ref.name == "reader"
    assert rbac.list_cluster_role().items is not None


def test_api_services_list_the_local_groups(api_client):
    reg = client.ApiregistrationV1Api(api_client)
    names = {s.metadata.name for s in reg.list_api_service().items}
    assert {"v1.", "v1.apps", "v1.batch", "v1.rbac.authorization.k8s.io"} <= names
    svc = reg.read_api_service("v1.apps")
    assert svc.spec.service is None
    assert any(c.type == "Available" and c.status == "True" for c in svc.status.conditions)


def test_other_groups_store_their_kinds(api_client, ns):
    policy = client.PolicyV1Api(api_client)
    pdb = client.V1PodDisruptionBudget(
        metadata=client.V1ObjectMeta(name="pdb"),
        spec=client.V1PodDisruptionBudgetSpec(min_available=1, selector=client.V1LabelSelector(match_labels={"a": "b"})),
    )
    policy.create_namespaced_pod_disruption_budget(ns, pdb)
    net = client.NetworkingV1Api(api_client)
    net.create_namespaced_network_policy(
        ns,
        client.V1NetworkPolicy(
            metadata=client.V1ObjectMeta(name="deny"),
            spec=client.V1NetworkPolicySpec(pod_selector=client.V1LabelSelector()),
        ),
    )
    sched = client.SchedulingV1Api(api_client)
    names = {p.metadata.name for p in sched.list_priority_class().items}
    assert {"system-cluster-critical", "system-node-critical"} <= names
    node = client.NodeV1Api(api_client)
    node.create_runtime_class(client.V1RuntimeClass(metadata=client.V1ObjectMeta(name="py-" + ns), handler="runc"))
    assert "py-" + ns in {r.metadata.name for r in node.list_runtime_class().items}
    node.delete_runtime_class("py-" + ns)
    client.StorageV1Api(api_client).list_storage_class()
    client.AutoscalingV2Api(api_client).list_namespaced_horizontal_pod_autoscaler(ns)
    client.CoordinationV1Api(api_client).list_namespaced_lease("kube-node-lease")


# ------------------------------------------------------------------------ CRDs


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "crontabs.stable.example.com"},
    "spec": {
        "group": "stable.example.com",
        "scope": "Namespaced",
        "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "cronSpec": {"type": "string"},
                                    "image": {"type": "string"},
                                    "replicas": {"type": "integer", "default": 1},
                                },
                            },
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            }
        ],
    },
}


def test_custom_resources(api_client, ns):
    ext = client.ApiextensionsV1Api(api_client)
    ext.create_custom_resource_definition(CRD)
    try:
        wait_for(
            "CRD established",
            lambda: any(
                c.type == "Established" and c.status == "True"
                for c in (ext.read_custom_resource_definition(CRD["metadata"]["name"]).status.conditions or [])
            ),
        )
        co = client.CustomObjectsApi(api_client)
        body = {
            "apiVersion": "stable.example.com/v1",
            "kind": "CronTab",
            "metadata": {"name": "nightly"},
            "spec": {"cronSpec": "* * * * */5", "image": "my-awesome-cron-image", "unknown": 1},
        }
        created = co.create_namespaced_custom_object("stable.example.com", "v1", ns, "crontabs", body)
        assert created["spec"]["replicas"] == 1
        assert "unknown" not in created["spec"]
        got = co.get_namespaced_custom_object("stable.example.com", "v1", ns, "crontabs", "nightly")
        assert got["spec"]["image"] == "my-awesome-cron-image"
        co.patch_namespaced_custom_object(
            "stable.example.com", "v1", ns, "crontabs", "nightly", {"spec": {"image": "other"}}
        )
        co.patch_namespaced_custom_object_status(
            "stable.example.com", "v1", ns, "crontabs", "nightly", {"status": {"ran": True}}
        )
        got = co.get_namespaced_custom_object("stable.example.com", "v1", ns, "crontabs", "nightly")
        assert got["spec"]["image"] == "other"
        assert got["status"] == {"ran": True}
        items = co.list_namespaced_custom_object("stable.example.com", "v1", ns, "crontabs")["items"]
        assert [i["metadata"]["name"] for i in items] == ["nightly"]
        with pytest.raises(ApiException) as e:
            co.create_namespaced_custom_object(
                "stable.example.com",
                "v1",
                ns,
                "crontabs",
                {"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "bad"}, "spec": {"replicas": "x"}},
            )
        assert e.value.status == 422
        assert "spec.replicas" in json.loads(e.value.body)["message"]
        co.delete_namespaced_custom_object("stable.example.com", "v1", ns, "crontabs", "nightly")
    finally:
        ext.delete_custom_resource_definition(CRD["metadata"]["name"])


# ------------------------------------------------------------------------ utils, dynamic, apply


MULTI = """
apiVersion: v1
kind: ConfigMap
metadata: {name: first}
data: {a: "1"}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: listed}
  spec:
    ports: [{port: 80}]
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: listed}
  spec:
    replicas: 0
    selector: {matchLabels: {app: listed}}
    template:
      metadata: {labels: {app: listed}}
      spec:
        containers: [{name: main, image: busybox}]
"""


def test_create_from_yaml(api_client, ns, tmp_path):
    f = tmp_path / "multi.yaml"
    f.write_text(MULTI)
    created = utils.create_from_yaml(api_client, str(f), namespace=ns)
    kinds = sorted(o.kind for group in created for o in group)
    assert kinds == ["ConfigMap", "Deployment", "Service"]
    with pytest.raises(utils.FailToCreateError) as e:
        utils.create_from_yaml(api_client, yaml_objects=[yaml.safe_load(MULTI.split("---")[0])], namespace=ns)
    assert e.value.api_exceptions[0].status == 409


def test_dynamic_client_and_server_side_apply(api_client, ns):
    dyn = dynamic.DynamicClient(api_client)
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"k": "v"}}
    resp = cms.server_side_apply(body=body, namespace=ns, field_manager="py-e2e")
    assert resp.data.k == "v"
    managers = [m.manager for m in resp.metadata.managedFields]
    assert managers == ["py-e2e"]
    body["data"] = {"k": "w"}
    resp = cms.server_side_apply(body=body, namespace=ns, field_manager="py-e2e")
    assert resp.data.k == "w"
    got = cms.get(name="applied", namespace=ns)
    assert got.data.k == "w"
    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert deps.namespaced
    assert "scale" in [s for s in deps.subresources]
    cms.delete(name="applied", namespace=ns)
    with pytest.raises(dynamic.exceptions.NotFoundError):
        cms.get(name="applied", namespace=ns)


def test_watch_sees_changes_in_order(api_client, ns):
    core = client.CoreV1Api(api_client)
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"}, "data": {"n": "1"}})
    core.patch_namespaced_config_map("w", ns, {"data": {"n": "2"}})
    core.delete_namespaced_config_map("w", ns)
    w = watch.Watch()
    seen = []
    for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=10):
        if ev["object"].metadata.name == "w":
            seen.append((ev["type"], (ev["object"].data or {}).get("n")))
        if len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", "1"), ("MODIFIED", "2"), ("DELETED", "2")]


def test_discovery_openapi_and_metrics(api_client):
    groups = {g.name for g in client.ApisApi(api_client).get_api_versions().groups}
    for g in ["apps", "batch", "policy", "rbac.authorization.k8s.io", "apiextensions.k8s.io", "apiregistration.k8s.io", "networking.k8s.io", "storage.k8s.io", "node.k8s.io", "scheduling.k8s.io", "autoscaling", "admissionregistration.k8s.io"]:
        assert g in groups, g
    assert client.VersionApi(api_client).get_code().major == "1"
    resources = {r.name for r in client.CoreV1Api(api_client).get_api_resources().resources}
    assert {"pods", "pods/exec", "serviceaccounts", "replicationcontrollers/scale"} <= resources
    data, code, _ = api_client.call_api("/openapi/v2", "GET", auth_settings=["BearerToken"], _preload_content=False)
    assert code == 200
    spec = json.loads(data.data)
    assert "io.k8s.api.core.v1.Pod" in spec["definitions"]
    data, code, _ = api_client.call_api("/metrics", "GET", auth_settings=["BearerToken"], _preload_content=False)
    assert code == 200
    assert "apiserver_request_total{" in data.data.decode()
