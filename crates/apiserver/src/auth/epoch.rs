//! Lease-epoch write fencing (docs/design/0007-node-fencing.md), beside NodeRestriction: a
//! write by a node (`system:node:<name>`) carries the node's lease epoch in
//! [`EPOCH_HEADER`] (absent: 0). A node whose epoch is older than its Lease's
//! `spec.leaseTransitions` was declared dead by the node lifecycle controller after it went
//! silent; every write of it is refused until it has fenced its pods and taken its lease
//! again under the new epoch. Reads are not fenced: the agent reads its Lease to learn the
//! new epoch.
//!
//! The refusal is upstream's **409 Conflict** (`Operation cannot be fulfilled on …`), not
//! 403 Forbidden: the node is allowed the write, but it bases it on a state of the cluster
//! (its lease) that has moved on, which is what a Conflict means for a stale
//! resourceVersion too; a 403 would read as a permission to grant. Clients treat a 409 as
//! "re-read and retry", and the retry succeeds once the node has rejoined.
//!
//! The Lease is read from the store for every node write (linearizable with etcd), not from
//! a cache: a write checked after the controller's bump sees it.

use http::HeaderMap;
use podvisor_api::fencing::EPOCH_HEADER;
use serde_json::Value;

use super::RequestAttributes;
use super::user::UserInfo;
use crate::error::ApiError;
use crate::registry::{LEASES, ResourceKind};
use crate::server::ApiServer;

/// The namespace of node leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The epoch a request claims: its [`EPOCH_HEADER`] (absent: 0). Not a number: 400.
pub(crate) fn claimed_epoch(headers: &HeaderMap) -> Result<u64, ApiError> {
    match headers.get(EPOCH_HEADER) {
        None => Ok(0),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                ApiError::new(
                    400,
                    "BadRequest",
                    format!("the {EPOCH_HEADER} header must be a non-negative integer"),
                )
            }),
    }
}

/// The epoch of a stored node Lease (`spec.leaseTransitions`, absent: 0).
fn stored_epoch(lease: &Value) -> u64 {
    lease
        .pointer("/spec/leaseTransitions")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The refusal of a write by `node` at epoch `claimed` when its Lease is at `current`.
fn stale_epoch(
    kind: &ResourceKind,
    name: &str,
    node: &str,
    claimed: u64,
    current: u64,
) -> ApiError {
    ApiError::conflict(
        kind,
        name,
        &format!(
            "node {node:?} writes with lease epoch {claimed}, but its Lease is at epoch \
             {current}: the node was declared dead and fenced; it must stop its pods and take \
             its lease again"
        ),
    )
}

/// Refuses a write (any verb but get, list and watch) by a node whose epoch is older than
/// its Lease's. Other users and reads pass.
pub(crate) async fn check_node_epoch(
    srv: &ApiServer,
    user: &UserInfo,
    headers: &HeaderMap,
    kind: &ResourceKind,
    attrs: &RequestAttributes,
) -> Result<(), ApiError> {
    let Some(node) = user.node_name() else {
        return Ok(());
    };
    if !attrs.resource_request || matches!(attrs.verb.as_str(), "get" | "list" | "watch") {
        return Ok(());
    }
    let claimed = claimed_epoch(headers)?;
    let current = srv
        .core()
        .storage
        .get(&LEASES, Some(LEASE_NAMESPACE), node)
        .await?
        .map_or(0, |(lease, _)| stored_epoch(&lease));
    if claimed < current {
        tracing::info!(%node, claimed, current, verb = %attrs.verb, resource = %attrs.resource,
            "refused a write of a fenced node (stale lease epoch)");
        return Err(stale_epoch(kind, &attrs.name, node, claimed, current));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::PODS;

    #[test]
    fn the_header_is_the_epoch_and_absent_is_zero() {
        let mut h = HeaderMap::new();
        assert_eq!(claimed_epoch(&h).ok(), Some(0));
        h.insert(EPOCH_HEADER, "7".parse().unwrap());
        assert_eq!(claimed_epoch(&h).ok(), Some(7));
        h.insert(EPOCH_HEADER, "-1".parse().unwrap());
        let e = claimed_epoch(&h).unwrap_err();
        assert_eq!(e.code, 400);
    }

    #[test]
    fn a_stale_epoch_is_a_conflict_naming_the_object() {
        let e = stale_epoch(&PODS, "db-0", "worker-3", 0, 1);
        assert_eq!((e.code, e.reason), (409, "Conflict"));
        assert_eq!(
            e.message,
            "Operation cannot be fulfilled on pods \"db-0\": node \"worker-3\" writes with lease \
             epoch 0, but its Lease is at epoch 1: the node was declared dead and fenced; it \
             must stop its pods and take its lease again"
        );
        assert_eq!(
            stored_epoch(&serde_json::json!({"spec": {"leaseTransitions": 3}})),
            3
        );
        assert_eq!(stored_epoch(&serde_json::json!({"spec": {}})), 0);
    }
}
