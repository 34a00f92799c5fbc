//! Property tests: the protobuf decoder never panics on garbage, truncated or
//! bit-flipped bodies; it returns a typed error (the server answers 400) or a value.

use podvisor_apiserver::protobuf;
use proptest::prelude::*;
use serde_json::json;

fn valid_bodies() -> Vec<Vec<u8>> {
    let objects = [
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "x", "namespace": "default", "creationTimestamp": "2026-11-25T09:00:00Z",
                            "labels": {"run": "x"}},
               "spec": {"containers": [{"name": "x", "image": "busybox", "args": ["sleep", "100"],
                        "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "1"}},
                        "livenessProbe": {"httpGet": {"port": "http", "path": "/"}}}],
                        "restartPolicy": "Always"},
               "status": {"phase": "Pending"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dg=="}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"replicas": 1, "strategy": {"rollingUpdate": {"maxSurge": "25%"}}}}),
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
               "spec": {"renewTime": "2026-11-25T09:00:00.123456Z"}}),
        json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}),
    ];
    objects
        .iter()
        .map(|o| protobuf::encode(o).expect("encode"))
        .collect()
}

fn check(body: &[u8]) {
    match protobuf::decode(body) {
        Ok(value) => {
            // Whatever decodes must encode again and keep its kind.
            let kind = value["kind"].as_str().map(str::to_owned);
            let again = protobuf::encode(&value).expect("decoded value re-encodes");
            let back = protobuf::decode(&again).expect("re-encoded value decodes");
            assert_eq!(back["kind"].as_str().map(str::to_owned), kind);
        }
        Err(err) => assert!(!err.to_string().is_empty()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&body);
    }

    #[test]
    fn random_bytes_after_magic_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut framed = protobuf::MAGIC.to_vec();
        framed.extend(body);
        check(&framed);
    }

    #[test]
    fn truncated_bodies_never_panic(which in 0usize..5, cut in 0usize..4096) {
        let bodies = valid_bodies();
        let body = &bodies[which % bodies.len()];
        let cut = cut % body.len();
        check(&body[..cut]);
    }

    #[test]
    fn mutated_bodies_never_panic(which in 0usize..5, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let bodies = valid_bodies();
        let mut body = bodies[which % bodies.len()].clone();
        for (at, byte) in flips {
            let at = at % body.len();
            body[at] = byte;
        }
        check(&body);
    }

    #[test]
    fn watch_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = protobuf::decode_watch_event(&frame);
    }
}

#[test]
fn every_truncation_of_a_pod_is_an_error_or_a_prefix_object() {
    for body in valid_bodies() {
        for cut in 0..body.len() {
            check(&body[..cut]);
        }
    }
}
