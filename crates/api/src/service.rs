//! Services without the store: upstream's validation (`ValidateService`,
//! `ValidateServiceUpdate`), the fields an update keeps from the stored object
//! (`patchAllocatedValues`) or drops when the type no longer needs them
//! (`dropTypeDependentFields`), and what a Service needs from the allocators.
//!
//! The API server's allocators (cluster IPs, node ports) own `spec.clusterIP(s)` and
//! `spec.ports[].nodePort`: a client may ask for a value, the allocator decides. Defaulting
//! of the plain fields is [`crate::defaults::default_service`].

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};

use crate::validation::{self as v, FieldError};

/// `spec.clusterIP` of a headless Service.
pub const CLUSTER_IP_NONE: &str = "None";
/// The default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
pub const DEFAULT_CLIENT_IP_TIMEOUT_SECONDS: i32 = 10_800;
/// The largest `sessionAffinityConfig.clientIP.timeoutSeconds` (1 day).
pub const MAX_CLIENT_IP_TIMEOUT_SECONDS: i32 = 86_400;

/// The Service's type (`ClusterIP` when unset).
pub fn service_type(spec: &ServiceSpec) -> &str {
    spec.type_.as_deref().unwrap_or("ClusterIP")
}

/// Whether a Service of this spec has cluster IPs (every type but ExternalName).
pub fn needs_cluster_ip(spec: &ServiceSpec) -> bool {
    service_type(spec) != "ExternalName"
}

/// Whether a Service of this spec has node ports.
pub fn needs_node_ports(spec: &ServiceSpec) -> bool {
    matches!(service_type(spec), "NodePort" | "LoadBalancer")
}

/// Whether the Service is headless (`clusterIP: None`).
pub fn is_headless(spec: &ServiceSpec) -> bool {
    spec.cluster_ip.as_deref() == Some(CLUSTER_IP_NONE)
        || spec
            .cluster_ips
            .as_ref()
            .and_then(|c| c.first())
            .map(String::as_str)
            == Some(CLUSTER_IP_NONE)
}

/// The cluster IPs of a Service as stored (`clusterIPs`, else `clusterIP`), "None" included.
pub fn cluster_ips(spec: &ServiceSpec) -> Vec<String> {
    match (&spec.cluster_ips, &spec.cluster_ip) {
        (Some(ips), _) if !ips.is_empty() => ips.clone(),
        (_, Some(ip)) if !ip.is_empty() => vec![ip.clone()],
        _ => Vec::new(),
    }
}

/// On update, what the client left out that the stored object has: the cluster IPs (when both
/// need them), the IP families, and each port's node port (matched by port and protocol; when
/// both need node ports). Then the fields the new type does not use are dropped if the client
/// did not change them (an IP kept by a Service turned into ExternalName, node ports kept by one
/// turned into ClusterIP). Upstream: `patchAllocatedValues` and `dropTypeDependentFields`.
pub fn carry_allocated(new: &mut Service, old: &Service) {
    let (Some(ns), Some(os)) = (new.spec.as_mut(), old.spec.as_ref()) else {
        return;
    };
    if needs_cluster_ip(os) && needs_cluster_ip(ns) {
        if ns.cluster_ip.as_deref().unwrap_or("").is_empty() {
            ns.cluster_ip.clone_from(&os.cluster_ip);
        }
        if ns.cluster_ips.as_ref().is_none_or(Vec::is_empty) {
            ns.cluster_ips.clone_from(&os.cluster_ips);
        }
        if ns.ip_families.as_ref().is_none_or(Vec::is_empty) {
            ns.ip_families.clone_from(&os.ip_families);
        }
        if ns.ip_family_policy.is_none() {
            ns.ip_family_policy.clone_from(&os.ip_family_policy);
        }
    }
    if needs_node_ports(os) && needs_node_ports(ns) {
        for p in ns.ports.iter_mut().flatten() {
            if p.node_port.unwrap_or(0) != 0 {
                continue;
            }
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            p.node_port = os
                .ports
                .iter()
                .flatten()
                .find(|o| o.port == p.port && o.protocol.as_deref().unwrap_or("TCP") == proto)
                .and_then(|o| o.node_port);
        }
    }
    // dropTypeDependentFields
    if needs_cluster_ip(os) && !needs_cluster_ip(ns) {
        if ns.cluster_ip == os.cluster_ip {
            ns.cluster_ip = None;
        }
        if ns.cluster_ips == os.cluster_ips {
            ns.cluster_ips = None;
        }
        if ns.ip_families == os.ip_families {
            ns.ip_families = None;
        }
        if ns.ip_family_policy == os.ip_family_policy {
            ns.ip_family_policy = None;
        }
    }
    if needs_node_ports(os) && !needs_node_ports(ns) {
        for p in ns.ports.iter_mut().flatten() {
            let old_port = os.ports.iter().flatten().find(|o| o.port == p.port);
            if p.node_port.is_some() && old_port.and_then(|o| o.node_port) == p.node_port {
                p.node_port = None;
            }
        }
    }
}

fn valid_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok_and(|ip| ip.to_string() == s)
}

/// Validates a Service spec (object meta is validated by the caller).
pub fn validate_service(svc: &Service) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = svc.spec.as_ref() else {
        errs.push(FieldError::required("spec.ports", ""));
        return errs;
    };
    let ty = service_type(spec);
    v::check_supported(
        &mut errs,
        "spec.type".into(),
        spec.type_.as_ref(),
        &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
    );
    validate_cluster_ips(&mut errs, spec, ty);
    if ty == "ExternalName" {
        match spec.external_name.as_deref().unwrap_or("") {
            "" => errs.push(FieldError::required("spec.externalName", "")),
            name => {
                for e in v::dns1123_subdomain_errors(name.strip_suffix('.').unwrap_or(name)) {
                    errs.push(FieldError::invalid("spec.externalName", name, e));
                }
            }
        }
    }
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ports.is_empty() && !is_headless(spec) && ty != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let mut names = BTreeSet::new();
    let mut port_protocols = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        validate_port(&mut errs, p, i, ports.len() > 1, &mut names, spec);
        let key = (p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into()));
        if !port_protocols.insert(key) {
            errs.push(FieldError::duplicate(
                format!("spec.ports[{i}]"),
                format!("{}/{}", p.port, p.protocol.as_deref().unwrap_or("TCP")),
            ));
        }
    }
    v::check_supported(
        &mut errs,
        "spec.sessionAffinity".into(),
        spec.session_affinity.as_ref(),
        &["ClientIP", "None"],
    );
    if spec.session_affinity.as_deref() == Some("ClientIP") {
        let t = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds);
        if let Some(t) = t
            && !(1..=MAX_CLIENT_IP_TIMEOUT_SECONDS).contains(&t)
        {
            errs.push(FieldError::invalid(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                t,
                format!("must be greater than 0 and less than {MAX_CLIENT_IP_TIMEOUT_SECONDS}"),
            ));
        }
    } else if spec.session_affinity_config.is_some() {
        errs.push(FieldError::invalid(
            "spec.sessionAffinityConfig",
            serde_json::to_value(&spec.session_affinity_config).unwrap_or_default(),
            format!(
                "must not be set when session affinity is {}",
                spec.session_affinity.as_deref().unwrap_or("None")
            ),
        ));
    }
    v::check_supported(
        &mut errs,
        "spec.internalTrafficPolicy".into(),
        spec.internal_traffic_policy.as_ref(),
        &["Cluster", "Local"],
    );
    if ty == "ExternalName" && spec.internal_traffic_policy.is_some() {
        errs.push(FieldError::forbidden(
            "spec.internalTrafficPolicy",
            "may not be set for ExternalName services",
        ));
    }
    match (&spec.external_traffic_policy, needs_node_ports(spec)) {
        (Some(p), false) => errs.push(FieldError::invalid(
            "spec.externalTrafficPolicy",
            p.as_str(),
            "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
        )),
        (p, true) => v::check_supported(
            &mut errs,
            "spec.externalTrafficPolicy".into(),
            p.as_ref(),
            &["Cluster", "Local"],
        ),
        _ => {}
    }
    v::check_supported(
        &mut errs,
        "spec.ipFamilyPolicy".into(),
        spec.ip_family_policy.as_ref(),
        &["PreferDualStack", "RequireDualStack", "SingleStack"],
    );
    for (i, f) in spec.ip_families.iter().flatten().enumerate() {
        v::check_supported(
            &mut errs,
            format!("spec.ipFamilies[{i}]"),
            Some(f),
            &["IPv4", "IPv6"],
        );
    }
    if ty == "ExternalName" {
        if spec.ip_family_policy.is_some() {
            errs.push(FieldError::forbidden(
                "spec.ipFamilyPolicy",
                "may not be set for ExternalName services",
            ));
        }
        if spec.ip_families.as_ref().is_some_and(|f| !f.is_empty()) {
            errs.push(FieldError::forbidden(
                "spec.ipFamilies",
                "may not be set for ExternalName services",
            ));
        }
    }
    errs.extend(v::validate_labels(spec.selector.as_ref(), "spec.selector"));
    errs
}

fn validate_cluster_ips(errs: &mut Vec<FieldError>, spec: &ServiceSpec, ty: &str) {
    let ips = spec.cluster_ips.as_deref().unwrap_or_default();
    if let (Some(ip), Some(first)) = (spec.cluster_ip.as_deref(), ips.first())
        && !ip.is_empty()
        && ip != first
    {
        errs.push(FieldError::invalid(
            "spec.clusterIPs",
            serde_json::to_value(ips).unwrap_or_default(),
            "element [0] must match clusterIP",
        ));
    }
    if ty == "ExternalName" {
        if !spec.cluster_ip.as_deref().unwrap_or("").is_empty() || !ips.is_empty() {
            errs.push(FieldError::forbidden(
                "spec.clusterIPs",
                "may not be set for ExternalName services",
            ));
        }
        return;
    }
    let all = cluster_ips(spec);
    if all.len() > 2 {
        errs.push(FieldError::invalid(
            "spec.clusterIPs",
            serde_json::to_value(&all).unwrap_or_default(),
            "may only hold up to 2 values",
        ));
    }
    for (i, ip) in all.iter().enumerate() {
        let field = format!("spec.clusterIPs[{i}]");
        if ip == CLUSTER_IP_NONE {
            if i > 0 {
                errs.push(FieldError::invalid(
                    field,
                    ip.as_str(),
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                ));
            } else if ty != "ClusterIP" {
                errs.push(FieldError::invalid(
                    field,
                    ip.as_str(),
                    format!("may not be set to 'None' for {ty} services"),
                ));
            }
        } else if !valid_ip(ip) {
            errs.push(FieldError::invalid(
                field,
                ip.as_str(),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
}

fn validate_port(
    errs: &mut Vec<FieldError>,
    p: &ServicePort,
    i: usize,
    multiple: bool,
    names: &mut BTreeSet<String>,
    spec: &ServiceSpec,
) {
    let path = format!("spec.ports[{i}]");
    match p.name.as_deref().unwrap_or("") {
        "" if multiple => errs.push(FieldError::required(format!("{path}.name"), "")),
        "" => {}
        name => {
            for e in v::dns1123_label_errors(name) {
                errs.push(FieldError::invalid(format!("{path}.name"), name, e));
            }
            if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(format!("{path}.name"), name));
            }
        }
    }
    v::port_range(errs, &format!("{path}.port"), p.port, false);
    match p.protocol.as_deref() {
        None => errs.push(FieldError::required(format!("{path}.protocol"), "")),
        Some(proto) => v::check_supported(
            errs,
            format!("{path}.protocol"),
            Some(&proto.to_string()),
            &["SCTP", "TCP", "UDP"],
        ),
    }
    if let Some(t) = &p.target_port {
        v::validate_int_or_string_port(errs, format!("{path}.targetPort"), t);
    }
    if let Some(np) = p.node_port.filter(|n| *n != 0) {
        if !needs_node_ports(spec) {
            errs.push(FieldError::forbidden(
                format!("{path}.nodePort"),
                format!("may not be used when `type` is '{}'", service_type(spec)),
            ));
        } else {
            v::port_range(errs, &format!("{path}.nodePort"), np, false);
        }
    }
}

/// Validates an update: the first cluster IP may not change once set (both types with IPs).
pub fn validate_service_update(new: &Service, old: &Service) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (Some(ns), Some(os)) = (new.spec.as_ref(), old.spec.as_ref()) else {
        return errs;
    };
    if needs_cluster_ip(ns) && needs_cluster_ip(os) {
        let (n, o) = (cluster_ips(ns), cluster_ips(os));
        if let Some(first) = o.first()
            && n.first() != Some(first)
        {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                serde_json::to_value(&n).unwrap_or_default(),
                "may not change once set",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        let mut s: Service = serde_json::from_value(v).unwrap();
        crate::defaults::default_service(&mut s);
        s
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_plain_service_is_valid_and_ports_are_required() {
        let ok = svc(json!({"spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]}}));
        assert!(
            validate_service(&ok).is_empty(),
            "{:?}",
            validate_service(&ok)
        );
        let none = svc(json!({"spec": {"selector": {"app": "a"}}}));
        assert_eq!(
            messages(&validate_service(&none)),
            ["spec.ports: Required value"]
        );
        let headless = svc(json!({"spec": {"clusterIP": "None"}}));
        assert!(validate_service(&headless).is_empty());
    }

    #[test]
    fn port_names_are_required_and_unique_with_several_ports() {
        let s = svc(json!({"spec": {"ports": [
            {"port": 80, "name": "http"}, {"port": 81}, {"port": 82, "name": "http"}]}}));
        assert_eq!(
            messages(&validate_service(&s)),
            [
                "spec.ports[1].name: Required value",
                "spec.ports[2].name: Duplicate value: \"http\""
            ]
        );
    }

    #[test]
    fn node_ports_only_for_node_port_types_and_none_not_for_them() {
        let s = svc(json!({"spec": {"ports": [{"port": 80, "nodePort": 30080}]}}));
        assert_eq!(
            messages(&validate_service(&s)),
            ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
        );
        let s = svc(
            json!({"spec": {"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]}}),
        );
        assert_eq!(
            messages(&validate_service(&s)),
            [
                "spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"
            ]
        );
    }

    #[test]
    fn external_name_needs_a_name_and_no_ip() {
        let s = svc(json!({"spec": {"type": "ExternalName"}}));
        assert_eq!(
            messages(&validate_service(&s)),
            ["spec.externalName: Required value"]
        );
        let s = svc(json!({"spec": {"type": "ExternalName", "externalName": "example.com."}}));
        assert!(
            validate_service(&s).is_empty(),
            "{:?}",
            validate_service(&s)
        );
    }

    #[test]
    fn affinity_timeout_is_bounded() {
        let s = svc(
            json!({"spec": {"ports": [{"port": 80}], "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}}),
        );
        assert_eq!(
            messages(&validate_service(&s)),
            [
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400"
            ]
        );
    }

    #[test]
    fn the_first_cluster_ip_may_not_change() {
        let old = svc(
            json!({"spec": {"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"], "ports": [{"port": 80}]}}),
        );
        let new = svc(
            json!({"spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 80}]}}),
        );
        assert_eq!(
            messages(&validate_service_update(&new, &old)),
            ["spec.clusterIPs[0]: Invalid value: []string{\"None\"}: may not change once set"]
        );
    }

    #[test]
    fn an_update_keeps_allocated_values_and_drops_unused_ones() {
        let old = svc(
            json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.5",
            "clusterIPs": ["10.96.0.5"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "ports": [{"port": 80, "nodePort": 30080}]}}),
        );
        let mut new = svc(json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}}));
        carry_allocated(&mut new, &old);
        let s = new.spec.as_ref().unwrap();
        assert_eq!(s.cluster_ip.as_deref(), Some("10.96.0.5"));
        assert_eq!(s.ports.as_ref().unwrap()[0].node_port, Some(30080));
        let mut cip = old.clone();
        cip.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
        carry_allocated(&mut cip, &old);
        assert_eq!(
            cip.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port,
            None
        );
        let mut ext = old.clone();
        let es = ext.spec.as_mut().unwrap();
        es.type_ = Some("ExternalName".into());
        es.external_name = Some("example.com".into());
        carry_allocated(&mut ext, &old);
        let es = ext.spec.as_ref().unwrap();
        assert_eq!(
            (es.cluster_ip.as_deref(), es.ip_families.as_ref()),
            (None, None)
        );
    }
}
