//! Property tests: arbitrary bytes and arbitrary (directive-laden) JSON never panic the
//! patch, apply, managed-fields or table code, and every success is an object.

use podvisor_apiserver::patch::{PatchType, apply_patch, record_update};
use podvisor_apiserver::registry::{DEPLOYMENTS, KINDS, PODS};
use podvisor_apiserver::table::table_for;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const NOW: &str = "2026-11-25T09:00:00Z";

const KEYS: &[&str] = &[
    "name",
    "containers",
    "initContainers",
    "spec",
    "metadata",
    "status",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$setElementOrder/env",
    "$deleteFromPrimitiveList/finalizers",
    "finalizers",
    "env",
    "ports",
    "containerPort",
    "protocol",
    "image",
    "labels",
    "conditions",
    "type",
    "value",
    "template",
    "replicas",
    "managedFields",
    "fieldsV1",
    "f:spec",
    "k:{\"name\":\"a\"}",
    "ownerReferences",
    "uid",
    "volumes",
    "state",
    "waiting",
    "terminated",
    "reason",
    "exitCode",
    "creationTimestamp",
    "deletionTimestamp",
    "containerStatuses",
    "podIPs",
    "selector",
];
const STRINGS: &[&str] = &[
    "a",
    "b",
    "replace",
    "delete",
    "merge",
    "TCP",
    "Ready",
    "True",
    "2026-11-25T08:00:00Z",
    "",
    "Always",
    "CrashLoopBackOff",
    "Completed",
    "name",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..100).prop_map(Value::from),
        prop::sample::select(STRINGS).prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

fn live_pod() -> Value {
    json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"a":"1"},"finalizers":["x"]},
           "spec":{"containers":[{"name":"a","image":"x","env":[{"name":"E","value":"1"}],
                                  "ports":[{"containerPort":80,"protocol":"TCP"}]},{"name":"b"}]},
           "status":{"conditions":[{"type":"Ready","status":"True"}]}})
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        for t in [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge, PatchType::Apply] {
            for original in [Some(live_pod()), None] {
                if let Ok(v) = apply_patch(&PODS, t, original.as_ref(), &body, "m", false, NOW) {
                    prop_assert!(v.is_object());
                }
            }
        }
    }

    #[test]
    fn random_json_patches_never_panic(patch in json_value(), original in json_value()) {
        let body = patch.to_string();
        for t in [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge] {
            for o in [&live_pod(), &original] {
                if let Ok(v) = apply_patch(&PODS, t, Some(o), body.as_bytes(), "m", false, NOW) {
                    prop_assert!(v.is_object());
                }
            }
        }
    }

    #[test]
    fn random_apply_configurations_never_panic(spec in json_value(), meta in json_value(), force in any::<bool>()) {
        let config = json!({"apiVersion":"v1","kind":"Pod","metadata":meta,"spec":spec});
        let body = config.to_string();
        let mut live = live_pod();
        record_update(&PODS, None, &mut live, "creator", NOW);
        for original in [Some(&live), None] {
            if let Ok(v) = apply_patch(&PODS, PatchType::Apply, original, body.as_bytes(), "applier", force, NOW) {
                prop_assert!(v.is_object());
                // Reapplying the same configuration over the result never conflicts.
                let again = apply_patch(&PODS, PatchType::Apply, Some(&v), body.as_bytes(), "applier", false, NOW);
                prop_assert!(again.is_ok(), "{:?}", again);
                if original.is_none() {
                    prop_assert_eq!(again.ok(), Some(v));
                }
            }
        }
    }

    #[test]
    fn random_updates_and_tables_never_panic(old in json_value(), new in json_value(), mf in json_value()) {
        let mut new_obj = new.clone();
        if let Some(m) = new_obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("managedFields".into(), mf);
        }
        record_update(&DEPLOYMENTS, Some(&old), &mut new_obj, "m", NOW);
        record_update(&PODS, None, &mut new_obj.clone(), "m", NOW);
        let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        for kind in KINDS {
            let t = table_for(kind, &[old.clone(), new_obj.clone()], true, now);
            prop_assert_eq!(t["rows"].as_array().map(Vec::len), Some(2));
        }
    }
}
