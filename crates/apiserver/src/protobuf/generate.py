#!/usr/bin/env python3
"""Generates `schema.rs`: the protobuf <-> JSON field table for every message the
API server serves.

Sources (both read from the local cargo registry, no network):
- k8s-pb 0.9.0 (prost bindings): message structs, field idents, field kinds.
- k8s-openapi 0.29.0 (v1_33): the JSON name of every field and whether it is
  required (non-`Option` in k8s-openapi, i.e. no `omitempty` in Go).

Run from anywhere: `python3 crates/apiserver/src/protobuf/generate.py` (`--check`
only verifies that schema.rs is current; a test runs that).
The output is committed; rerun it when k8s-pb or k8s-openapi is upgraded.
"""

import glob
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(HERE))
from cargo_registry import find_crate  # noqa: E402


PB = os.path.join(find_crate("k8s-pb-0.9.0"), "src")
OA_ROOT = os.path.join(find_crate("k8s-openapi-0.29.0"), "src")
# k8s-pb 0.9 follows a newer Kubernetes than the server's v1_33; read every
# version k8s-openapi ships, newest last so that it wins.
OA_VERSIONS = ["v1_33", "v1_34", "v1_35", "v1_36", "v1_37"]

# Root messages: every kind the server serves, its list, and meta types that
# travel in request or response bodies.
ROOTS = [
    "api.core.v1." + n
    for n in [
        "Namespace", "NamespaceList", "Pod", "PodList", "Node", "NodeList",
        "Event", "EventList", "Service", "ServiceList", "Endpoints",
        "EndpointsList", "ConfigMap", "ConfigMapList", "Secret", "SecretList",
        "Binding", "ResourceQuota", "ResourceQuotaList", "ServiceAccount",
        "ServiceAccountList",
    ]
] + [
    "api.coordination.v1.Lease", "api.coordination.v1.LeaseList",
    "api.apps.v1.ReplicaSet", "api.apps.v1.ReplicaSetList",
    "api.apps.v1.Deployment", "api.apps.v1.DeploymentList",
    "api.apps.v1.StatefulSet", "api.apps.v1.StatefulSetList",
    "api.batch.v1.Job", "api.batch.v1.JobList",
    "api.batch.v1.CronJob", "api.batch.v1.CronJobList",
    "api.autoscaling.v1.Scale",
    "api.discovery.v1.EndpointSlice", "api.discovery.v1.EndpointSliceList",
    "api.events.v1.Event", "api.events.v1.EventList",
    "api.policy.v1.PodDisruptionBudget", "api.policy.v1.PodDisruptionBudgetList",
    "api.scheduling.v1.PriorityClass", "api.scheduling.v1.PriorityClassList",
    "api.networking.v1.Ingress", "api.networking.v1.IngressList",
    "api.authentication.v1.TokenRequest",
    "api.authentication.v1.SelfSubjectReview",
] + [
    "api.rbac.v1." + n
    for n in [
        "Role", "RoleList", "ClusterRole", "ClusterRoleList", "RoleBinding",
        "RoleBindingList", "ClusterRoleBinding", "ClusterRoleBindingList",
    ]
] + [
    "api.authorization.v1." + n
    for n in [
        "SelfSubjectAccessReview", "SelfSubjectRulesReview",
        "SubjectAccessReview", "LocalSubjectAccessReview",
    ]
] + [
    "apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "apimachinery.pkg.apis.meta.v1.Status",
]

# Messages whose JSON form is not an object; converted by hand in convert.rs.
SPECIAL = {
    "apimachinery.pkg.apis.meta.v1.Time",
    "apimachinery.pkg.apis.meta.v1.MicroTime",
    "apimachinery.pkg.apis.meta.v1.Duration",
    "apimachinery.pkg.apis.meta.v1.FieldsV1",
    "apimachinery.pkg.util.intstr.IntOrString",
    "apimachinery.pkg.api.resource.Quantity",
    "apimachinery.pkg.runtime.RawExtension",
    "api.authentication.v1.ExtraValue",
    "api.authorization.v1.ExtraValue",
}

# Go pointer scalars (`*int32`, `*bool`, `*string`, ...) in the served kinds: an
# explicit zero on the wire is meaningful and JSON keeps it. Every other optional
# scalar is a non-pointer `omitempty` field that gogo-protobuf always writes, so
# its zero value is dropped, exactly as encoding/json drops it.
POINTERS = {
    "meta.v1.ObjectMeta.deletionGracePeriodSeconds",
    "meta.v1.OwnerReference.controller",
    "meta.v1.OwnerReference.blockOwnerDeletion",
    "meta.v1.ListMeta.remainingItemCount",
    "meta.v1.DeleteOptions.gracePeriodSeconds",
    "meta.v1.DeleteOptions.orphanDependents",
    "meta.v1.DeleteOptions.propagationPolicy",
    "meta.v1.DeleteOptions.ignoreStoreReadErrorWithClusterBreakingPotential",
    "meta.v1.Preconditions.uid",
    "meta.v1.Preconditions.resourceVersion",
    "meta.v1.ManagedFieldsEntry.subresource",
    "core.v1.ServiceAccount.automountServiceAccountToken",
    # Required in Go (no omitempty) up to 1.35, optional in the newer tables read last.
    "policy.v1.PodDisruptionBudgetStatus.currentHealthy",
    "policy.v1.PodDisruptionBudgetStatus.desiredHealthy",
    "policy.v1.PodDisruptionBudgetStatus.disruptionsAllowed",
    "policy.v1.PodDisruptionBudgetStatus.expectedPods",
    "core.v1.PodSpec.terminationGracePeriodSeconds",
    "core.v1.PodSpec.activeDeadlineSeconds",
    "core.v1.PodSpec.automountServiceAccountToken",
    "core.v1.PodSpec.shareProcessNamespace",
    "core.v1.PodSpec.priority",
    "core.v1.PodSpec.enableServiceLinks",
    "core.v1.PodSpec.preemptionPolicy",
    "core.v1.PodSpec.setHostnameAsFQDN",
    "core.v1.PodSpec.hostUsers",
    "core.v1.PodSpec.runtimeClassName",
    "core.v1.PodSecurityContext.runAsUser",
    "core.v1.PodSecurityContext.runAsGroup",
    "core.v1.PodSecurityContext.runAsNonRoot",
    "core.v1.PodSecurityContext.fsGroup",
    "core.v1.PodSecurityContext.fsGroupChangePolicy",
    "core.v1.PodSecurityContext.supplementalGroupsPolicy",
    "core.v1.PodSecurityContext.seLinuxChangePolicy",
    "core.v1.SecurityContext.privileged",
    "core.v1.SecurityContext.runAsUser",
    "core.v1.SecurityContext.runAsGroup",
    "core.v1.SecurityContext.runAsNonRoot",
    "core.v1.SecurityContext.readOnlyRootFilesystem",
    "core.v1.SecurityContext.allowPrivilegeEscalation",
    "core.v1.SecurityContext.procMount",
    "core.v1.WindowsSecurityContextOptions.gmsaCredentialSpecName",
    "core.v1.WindowsSecurityContextOptions.gmsaCredentialSpec",
    "core.v1.WindowsSecurityContextOptions.runAsUserName",
    "core.v1.WindowsSecurityContextOptions.hostProcess",
    "core.v1.SeccompProfile.localhostProfile",
    "core.v1.AppArmorProfile.localhostProfile",
    "core.v1.Container.restartPolicy",
    "core.v1.Probe.terminationGracePeriodSeconds",
    "core.v1.GRPCAction.service",
    "core.v1.SecretVolumeSource.defaultMode",
    "core.v1.SecretVolumeSource.optional",
    "core.v1.ConfigMapVolumeSource.defaultMode",
    "core.v1.ConfigMapVolumeSource.optional",
    "core.v1.ProjectedVolumeSource.defaultMode",
    "core.v1.DownwardAPIVolumeSource.defaultMode",
    "core.v1.DownwardAPIVolumeFile.mode",
    "core.v1.KeyToPath.mode",
    "core.v1.ConfigMapKeySelector.optional",
    "core.v1.SecretKeySelector.optional",
    "core.v1.ConfigMapEnvSource.optional",
    "core.v1.SecretEnvSource.optional",
    "core.v1.ConfigMapProjection.optional",
    "core.v1.SecretProjection.optional",
    "core.v1.ServiceAccountTokenProjection.expirationSeconds",
    "core.v1.HostPathVolumeSource.type",
    "core.v1.CSIVolumeSource.readOnly",
    "core.v1.CSIVolumeSource.fsType",
    "core.v1.Toleration.tolerationSeconds",
    "core.v1.TopologySpreadConstraint.minDomains",
    "core.v1.TopologySpreadConstraint.nodeAffinityPolicy",
    "core.v1.TopologySpreadConstraint.nodeTaintsPolicy",
    "core.v1.PodDNSConfigOption.value",
    "core.v1.ContainerStatus.started",
    "core.v1.ContainerStatus.stopSignal",
    "core.v1.PodStatus.observedGeneration",
    "core.v1.PodCondition.observedGeneration",
    "core.v1.ServiceSpec.allocateLoadBalancerNodePorts",
    "core.v1.ServiceSpec.ipFamilyPolicy",
    "core.v1.ServiceSpec.loadBalancerClass",
    "core.v1.ServiceSpec.internalTrafficPolicy",
    "core.v1.ServiceSpec.trafficDistribution",
    "core.v1.ServicePort.appProtocol",
    "core.v1.ClientIPConfig.timeoutSeconds",
    "core.v1.LoadBalancerIngress.ipMode",
    "core.v1.EndpointPort.appProtocol",
    "core.v1.EndpointAddress.nodeName",
    "core.v1.Secret.immutable",
    "core.v1.ConfigMap.immutable",
    "core.v1.ResourceClaim.request",
    "core.v1.PodResourceClaim.resourceClaimName",
    "core.v1.PodResourceClaim.resourceClaimTemplateName",
    "core.v1.NodeSpec.podCIDR",
    "core.v1.NodeSwapStatus.capacity",
    "core.v1.NodeFeatures.supplementalGroupsPolicy",
    "core.v1.NodeRuntimeHandlerFeatures.recursiveReadOnlyMounts",
    "core.v1.NodeRuntimeHandlerFeatures.userNamespaces",
    "core.v1.VolumeMount.recursiveReadOnly",
    "core.v1.VolumeMountStatus.readOnly",
    "core.v1.VolumeMountStatus.recursiveReadOnly",
    "core.v1.LinuxContainerUser.uid",
    "core.v1.LinuxContainerUser.gid",
    "core.v1.PersistentVolumeClaimSpec.storageClassName",
    "core.v1.PersistentVolumeClaimSpec.volumeMode",
    "core.v1.PersistentVolumeClaimSpec.volumeAttributesClassName",
    "core.v1.TypedLocalObjectReference.apiGroup",
    "core.v1.TypedObjectReference.apiGroup",
    "core.v1.TypedObjectReference.namespace",
    "core.v1.Lifecycle.stopSignal",
    "apps.v1.DeploymentSpec.replicas",
    "apps.v1.DeploymentSpec.revisionHistoryLimit",
    "apps.v1.DeploymentSpec.progressDeadlineSeconds",
    "apps.v1.DeploymentStatus.collisionCount",
    "apps.v1.DeploymentStatus.terminatingReplicas",
    "apps.v1.ReplicaSetSpec.replicas",
    "apps.v1.ReplicaSetStatus.terminatingReplicas",
    "apps.v1.StatefulSetSpec.replicas",
    "apps.v1.StatefulSetSpec.revisionHistoryLimit",
    "apps.v1.StatefulSetStatus.collisionCount",
    "apps.v1.RollingUpdateStatefulSetStrategy.partition",
    # Not a pointer, but `json:"start"` without omitempty although marked +optional.
    "apps.v1.StatefulSetOrdinals.start",
    "discovery.v1.EndpointConditions.ready",
    "discovery.v1.EndpointConditions.serving",
    "discovery.v1.EndpointConditions.terminating",
    "discovery.v1.Endpoint.hostname",
    "discovery.v1.Endpoint.nodeName",
    "discovery.v1.Endpoint.zone",
    "discovery.v1.EndpointPort.name",
    "discovery.v1.EndpointPort.protocol",
    "discovery.v1.EndpointPort.port",
    "discovery.v1.EndpointPort.appProtocol",
    "coordination.v1.LeaseSpec.holderIdentity",
    "coordination.v1.LeaseSpec.leaseDurationSeconds",
    "coordination.v1.LeaseSpec.leaseTransitions",
    "coordination.v1.LeaseSpec.strategy",
    "coordination.v1.LeaseSpec.preferredHolder",
}

ACRONYMS = {"id", "ip", "ips", "uid", "uuid", "cidr", "cidrs", "ipc", "pid", "fqdn",
            "url", "tls", "io", "wwns", "os"}


def camel(ident):
    """Fallback JSON name for fields k8s-openapi does not describe."""
    parts = ident.lstrip("r#").split("_")
    out = parts[0]
    for p in parts[1:]:
        if p in ACRONYMS:
            out += p.upper() if not p.endswith("s") or p == "os" else p[:-1].upper() + "s"
        else:
            out += p[:1].upper() + p[1:]
    return out


# ---------------------------------------------------------------- k8s-pb
FIELD_RE = re.compile(r"^\s*#\[prost\((.*)\)\]\s*$")
PUB_RE = re.compile(r"^\s*pub (r#\w+|\w+):\s+(.*),\s*$")


def parse_pb():
    """Returns {package: {Name: [(ident, kind, label, rust_type)]}} where package is
    the k8s-pb module path joined with dots (e.g. `api.core.v1`)."""
    msgs = {}
    for path in glob.glob(os.path.join(PB, "**", "mod.rs"), recursive=True):
        pkg = os.path.relpath(os.path.dirname(path), PB).replace(os.sep, ".")
        cur = None
        attr = None
        with open(path) as f:
            raw_lines = f.read().split("\n")
        # Join rustfmt-wrapped field declarations (`pub data:` + type on next lines).
        joined = []
        for line in raw_lines:
            prev = joined[-1] if joined else ""
            open_decl = re.match(r"^\s*pub (r#\w+|\w+):", prev) and (
                prev.count("<") > prev.count(">") or not prev.rstrip().endswith(","))
            if open_decl:
                sep = "" if prev.endswith(("<", " ")) else " "
                joined[-1] = prev.rstrip() + sep + line.strip()
            else:
                joined.append(line)
        if True:
            for line in joined:
                m = re.match(r"^pub struct (\w+) \{", line)
                if m:
                    cur = []
                    msgs.setdefault(pkg, {})[m.group(1)] = cur
                    continue
                if line.startswith("}"):
                    cur = None
                    continue
                if cur is None:
                    continue
                m = FIELD_RE.match(line)
                if m:
                    attr = m.group(1)
                    continue
                m = PUB_RE.match(line)
                if m and attr is not None:
                    kind = attr.split(",")[0].split("=")[0].strip()
                    label = "map" if kind == "btree_map" else (
                        "repeated" if "repeated" in attr else "optional")
                    if kind == "btree_map":
                        kind = re.search(r'btree_map = "([^"]*)"', attr).group(1)
                    cur.append((m.group(1), kind, label, m.group(2)))
                    attr = None
    return msgs


def resolve(pkg, rust_type):
    """Message package.Name referenced by a field type, or None for scalars."""
    inner = re.sub(r",\s*>", ">", rust_type).replace(" ", "")
    for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<"):
        if inner.startswith(wrapper):
            inner = inner[len(wrapper):-1]
    if inner.startswith("::prost::alloc::collections::BTreeMap<"):
        inner = inner[len("::prost::alloc::collections::BTreeMap<"):-1]
        inner = inner.split(",", 1)[1]
    if inner.startswith("::") or inner in ("i32", "i64", "bool", "f64"):
        return None
    segs = inner.split("::")
    base = pkg.split(".")
    while segs and segs[0] == "super":
        base = base[:-1]
        segs = segs[1:]
    return ".".join(base + segs[:-1]) + "." + segs[-1]


# ---------------------------------------------------------------- k8s-openapi
def parse_openapi():
    """Returns {definition-lowercase: {ident: (json_name, required)}}."""
    out = {}
    paths = []
    for v in OA_VERSIONS:
        paths += sorted(glob.glob(os.path.join(OA_ROOT, v, "**", "*.rs"), recursive=True))
    for path in paths:
        with open(path) as f:
            text = f.read()
        m = re.match(r"// Generated from definition ([\w.]+)", text)
        if not m:
            continue
        definition = m.group(1)
        name = definition.rsplit(".", 1)[1]
        sm = re.search(r"pub struct " + name + r" \{(.*?)\n\}", text, re.S)
        if not sm:
            continue
        fields = {}
        for fm in re.finditer(r"^\s*pub (r#\w+|\w+): (.*),$", sm.group(1), re.M):
            fields[fm.group(1)] = not fm.group(2).startswith("Option<")
        names = dict(
            (ident, js)
            for js, ident in re.findall(r'^\s*"([^"]+)" => Field::Key_(\w+),', text, re.M)
        )
        table = {}
        for ident, required in fields.items():
            key = ident.removeprefix("r#")
            if key in names:
                table[norm(ident)] = (names[key], required)
        out[definition.lower()] = table
    return out


def norm(ident):
    return ident.removeprefix("r#").replace("_", "").lower()


def main():
    pb = parse_pb()
    oa = parse_openapi()

    def lookup(full):
        pkg, name = full.rsplit(".", 1)
        return pb[pkg][name]

    todo = list(ROOTS)
    seen = set()
    order = []
    while todo:
        full = todo.pop(0)
        if full in seen:
            continue
        seen.add(full)
        if full in SPECIAL:
            continue
        order.append(full)
        pkg = full.rsplit(".", 1)[0]
        for ident, kind, label, rust_type in lookup(full):
            ref = resolve(pkg, rust_type)
            if ref is not None and ref not in seen:
                todo.append(ref)

    warnings = []

    def table_of(full):
        return oa.get(("io.k8s." + full).lower())

    # Go structs embedded with `json:",inline"` are separate protobuf fields whose
    # JSON fields sit in the parent object: a message field missing from the
    # parent's k8s-openapi table whose own fields all are in that table.
    inline = set()
    borrowed = {}
    for full in order:
        table = table_of(full)
        if table is None:
            continue
        pkg = full.rsplit(".", 1)[0]
        for ident, kind, label, rust_type in lookup(full):
            ref = resolve(pkg, rust_type)
            if norm(ident) in table or ref is None or ref in SPECIAL or label != "optional":
                continue
            child = lookup(ref)
            known = [f for f in child if norm(f[0]) in table]
            if len(known) * 2 >= len(child):
                inline.add((full, ident))
                if table_of(ref) is None:
                    borrowed[ref] = table

    lines = [
        "// @generated by generate.py from k8s-pb 0.9.0 and k8s-openapi 0.29.0.",
        "// Do not edit by hand; rerun `python3 crates/apiserver/src/protobuf/generate.py`.",
        "",
        "//! Field tables of every served protobuf message: prost field, JSON name, and",
        "//! `keep` (an explicit zero is kept: required in Go, or a Go pointer) or",
        "//! `inline` (an embedded Go struct whose fields sit in the parent JSON object).",
        "",
        "use super::convert::pb_message;",
        "",
    ]
    used_pointers = set()
    for full in sorted(order):
        pkg, name = full.rsplit(".", 1)
        table = table_of(full) or borrowed.get(full)
        short = ".".join(pkg.split(".")[-2:]) + "." + name
        if table is None and not name.endswith("List"):
            warnings.append(f"no k8s-openapi definition for {full}; camelCase names used")
        entries = []
        for ident, kind, label, rust_type in lookup(full):
            if (full, ident) in inline:
                entries.append(f"    {ident}: inline,")
                continue
            if table is not None and norm(ident) in table:
                js, required = table[norm(ident)]
            else:
                if table is not None:
                    warnings.append(f"{full}.{ident}: not in k8s-openapi; camelCase used")
                js, required = camel(ident), False
            scalar = resolve(pkg, rust_type) is None
            keep = False
            if scalar and label == "optional":
                if f"{short}.{js}" in POINTERS:
                    keep = True
                    used_pointers.add(f"{short}.{js}")
                elif required:
                    keep = True
            entries.append(f'    {ident}: "{js}"{" keep" if keep else ""},')
        rust_path = "k8s_pb::" + pkg.replace(".", "::") + "::" + name
        lines.append(f"pb_message!({rust_path} {{")
        lines.extend(entries)
        lines.append("});")
    for p in sorted(POINTERS - used_pointers):
        pkg_name = p.rsplit(".", 1)[0]
        if any(o.endswith(pkg_name) for o in order):
            warnings.append(f"pointer entry {p} matches no field")
    out = os.path.join(HERE, "schema.rs")
    text = "\n".join(lines) + "\n"
    # Format as `cargo fmt` would (the repository's rustfmt.toml applies from here).
    text = subprocess.run(["rustfmt", "--edition", "2024"], input=text, capture_output=True,
                          text=True, check=True, cwd=HERE).stdout
    if "--check" in sys.argv:
        with open(out) as f:
            if f.read() != text:
                sys.exit(f"{out} is stale: rerun generate.py")
        print(f"{out} is up to date", file=sys.stderr)
        return
    with open(out, "w") as f:
        f.write(text)
    for w in warnings:
        print("warning:", w, file=sys.stderr)
    print(f"wrote {out}: {len(order)} messages", file=sys.stderr)


if __name__ == "__main__":
    main()
