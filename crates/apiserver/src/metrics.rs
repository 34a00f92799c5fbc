//! What the API server records in the process-wide metrics ([`podvisor_kit::metrics`]):
//! every request's count and latency by verb, group, version, resource, subresource, scope
//! and code (labelled as upstream's `apiserver_request_*`), requests in flight, open
//! watches, and the store's latency by operation and resource.
//!
//! The HTTP layer ([`crate::rest`]) fills a [`RequestMetric`] once it knows what a request
//! addresses and calls [`RequestMetric::record`] with the response code; requests that never
//! reach a resource (discovery, OpenAPI, health) are recorded with an empty resource and
//! their path as the subresource, as upstream does for its non-resource URLs.

use podvisor_kit::metrics::{
    APISERVER_CURRENT_INFLIGHT_REQUESTS, APISERVER_LONGRUNNING_REQUESTS,
    APISERVER_REQUEST_DURATION_SECONDS, APISERVER_REQUEST_TOTAL, ETCD_REQUEST_DURATION_SECONDS,
    GaugeGuard,
};

use crate::registry::Subresource;
use crate::request::Target;

/// The labels of one request.
#[derive(Debug, Clone, Default)]
pub struct RequestMetric {
    /// Upstream's reported verb: GET, LIST, WATCH, POST, PUT, PATCH, APPLY, DELETE,
    /// DELETECOLLECTION, CONNECT.
    pub verb: &'static str,
    /// API group.
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Plural resource ("" for non-resource requests).
    pub resource: &'static str,
    /// Subresource, or the path of a non-resource request.
    pub subresource: &'static str,
    /// `resource` (one named object), `namespace` or `cluster` ("" for non-resource).
    pub scope: &'static str,
    /// Whether `dryRun=All` was asked for.
    pub dry_run: bool,
}

/// The paths of non-resource requests that are counted (a fixed set: a client cannot add
/// series by inventing paths).
const NON_RESOURCE: &[&str] = &[
    "/api",
    "/apis",
    "/version",
    "/metrics",
    "/openapi/v2",
    "/openapi/v3",
    "/readyz",
    "/livez",
    "/healthz",
    "/ui",
];

impl RequestMetric {
    /// The labels of a resource request.
    pub fn resource(t: &Target, verb: &str, apply: bool, dry_run: bool) -> RequestMetric {
        let verb = match verb {
            "get" => "GET",
            "list" => "LIST",
            "watch" => "WATCH",
            "create" => "POST",
            "update" => "PUT",
            "patch" if apply => "APPLY",
            "patch" => "PATCH",
            "delete" => "DELETE",
            "deletecollection" => "DELETECOLLECTION",
            _ => "CONNECT",
        };
        let scope = if t.name.is_some() {
            "resource"
        } else if t.namespace.is_some() {
            "namespace"
        } else {
            "cluster"
        };
        RequestMetric {
            verb,
            group: t.kind.group,
            version: t.kind.version,
            resource: t.kind.plural,
            subresource: t.sub.map(Subresource::name).unwrap_or(""),
            scope,
            dry_run,
        }
    }

    /// The labels of a non-resource request, if its path is one that is counted.
    pub fn non_resource(method: &http::Method, path: &str) -> Option<RequestMetric> {
        let path = path.trim_end_matches('/');
        let known = NON_RESOURCE.iter().find(|p| {
            path == **p || (path.starts_with(**p) && path.as_bytes().get(p.len()) == Some(&b'/'))
        })?;
        let verb = match *method {
            http::Method::GET | http::Method::HEAD => "GET",
            http::Method::POST => "POST",
            http::Method::PUT => "PUT",
            http::Method::PATCH => "PATCH",
            http::Method::DELETE => "DELETE",
            _ => "OTHER",
        };
        Some(RequestMetric {
            verb,
            subresource: known,
            ..RequestMetric::default()
        })
    }

    fn dry_run(&self) -> &'static str {
        if self.dry_run { "All" } else { "" }
    }

    /// Counts the request with its response code and latency.
    pub fn record(&self, code: u16, seconds: f64) {
        let code = code.to_string();
        APISERVER_REQUEST_TOTAL.inc(&[
            &code,
            "apiserver",
            self.dry_run(),
            self.group,
            self.resource,
            self.scope,
            self.subresource,
            self.verb,
            self.version,
        ]);
        if self.verb != "WATCH" && self.verb != "CONNECT" {
            APISERVER_REQUEST_DURATION_SECONDS.observe(
                &[
                    "apiserver",
                    self.dry_run(),
                    self.group,
                    self.resource,
                    self.scope,
                    self.subresource,
                    self.verb,
                    self.version,
                ],
                seconds,
            );
        }
    }

    /// Holds `apiserver_longrunning_requests` up while a watch or stream is open.
    pub fn long_running(&self) -> GaugeGuard {
        GaugeGuard::new(
            &APISERVER_LONGRUNNING_REQUESTS,
            &[
                "apiserver",
                self.group,
                self.resource,
                self.scope,
                self.subresource,
                self.verb,
                self.version,
            ],
        )
    }
}

/// Holds `apiserver_current_inflight_requests` up while a request is served.
pub fn in_flight(method: &http::Method) -> GaugeGuard {
    let kind = match *method {
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS => "readOnly",
        _ => "mutating",
    };
    GaugeGuard::new(&APISERVER_CURRENT_INFLIGHT_REQUESTS, &[kind])
}

/// Records one store operation (`ty` is the group-resource, `pods` or `deployments.apps`,
/// as upstream labels it).
pub fn store_op(ty: &str, operation: &str, seconds: f64) {
    ETCD_REQUEST_DURATION_SECONDS.observe(&[operation, ty], seconds);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_non_resource_paths_are_counted() {
        let get = http::Method::GET;
        assert_eq!(
            RequestMetric::non_resource(&get, "/openapi/v3/apis/apps/v1")
                .unwrap()
                .subresource,
            "/openapi/v3"
        );
        assert_eq!(
            RequestMetric::non_resource(&get, "/readyz/etcd")
                .unwrap()
                .subresource,
            "/readyz"
        );
        assert!(RequestMetric::non_resource(&get, "/random/path").is_none());
        assert!(RequestMetric::non_resource(&get, "/apisx").is_none());
    }
}
