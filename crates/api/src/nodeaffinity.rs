//! Required node affinity as upstream's `nodeaffinity.GetRequiredNodeAffinity(pod).Match(node)`
//! reads it: the pod's `nodeSelector` (every pair must equal a node label) and its
//! `requiredDuringSchedulingIgnoredDuringExecution` terms (ORed; the expressions and
//! fields of one term ANDed; `matchFields` know only `metadata.name`). Shared by the
//! scheduler's NodeAffinity filter and the DaemonSet controller's node eligibility.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PodSpec};

/// Upstream's `NodeSelectorRequirement` matching against a key/value map (labels, or the
/// field set `{metadata.name: <node>}`). Invalid requirements match nothing.
pub fn requirement_matches(
    r: &NodeSelectorRequirement,
    get: impl Fn(&str) -> Option<String>,
) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    let value = get(&r.key);
    match r.operator.as_str() {
        "In" => !values.is_empty() && value.is_some_and(|v| values.contains(&v)),
        "NotIn" => !values.is_empty() && value.is_none_or(|v| !values.contains(&v)),
        "Exists" => values.is_empty() && value.is_some(),
        "DoesNotExist" => values.is_empty() && value.is_none(),
        "Gt" | "Lt" => {
            if values.len() != 1 {
                return false;
            }
            let (Ok(want), Some(Ok(have))) =
                (values[0].parse::<i64>(), value.map(|v| v.parse::<i64>()))
            else {
                return false;
            };
            if r.operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

/// One node selector term: all expressions and fields ANDed; an empty term matches nothing.
pub fn term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    node_name: &str,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, |k| labels.get(k).cloned()))
        && fields.iter().all(|r| {
            requirement_matches(r, |k| (k == "metadata.name").then(|| node_name.to_owned()))
        })
}

/// The required node affinity terms of a pod spec, if it has any.
pub fn required_terms(spec: &PodSpec) -> Option<&[NodeSelectorTerm]> {
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .map(|s| s.node_selector_terms.as_slice())
}

/// Whether a node with `labels` named `node_name` satisfies the spec's `nodeSelector` and
/// required node affinity.
pub fn required_matches(
    spec: &PodSpec,
    labels: &BTreeMap<String, String>,
    node_name: &str,
) -> bool {
    if let Some(sel) = spec.node_selector.as_ref()
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    required_terms(spec)
        .is_none_or(|terms| terms.iter().any(|t| term_matches(t, labels, node_name)))
}
