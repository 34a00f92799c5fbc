//! Every patch type over a fixed pod: arbitrary bodies must give a typed error or an object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podvisor_apiserver::patch::{PatchType, apply_patch};
use podvisor_apiserver::registry::{DEPLOYMENTS, PODS};
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let pod = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"a":"1"},"finalizers":["x"]},
        "spec":{"containers":[{"name":"a","image":"x","env":[{"name":"E","value":"1"}],
                               "ports":[{"containerPort":80,"protocol":"TCP"}]},{"name":"b"}],
                "volumes":[{"name":"v","emptyDir":{}}]}});
    let deploy = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},
        "spec":{"replicas":1,"strategy":{"type":"RollingUpdate"},
                "template":{"spec":{"containers":[{"name":"a"}]}}}});
    for t in [
        PatchType::Json,
        PatchType::Merge,
        PatchType::StrategicMerge,
        PatchType::Apply,
    ] {
        for (kind, original) in [(&PODS, &pod), (&DEPLOYMENTS, &deploy)] {
            if let Ok(v) = apply_patch(
                kind,
                t,
                Some(original),
                data,
                "fuzz",
                false,
                "2026-11-25T09:00:00Z",
            ) {
                assert!(v.is_object());
            }
        }
    }
});
