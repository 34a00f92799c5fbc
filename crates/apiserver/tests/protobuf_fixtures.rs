//! Real kubectl (v1.32) request bodies, captured with `tests/fixtures/protobuf/capture.py`:
//! each `NAME.pb` is the protobuf body kubectl sent for a generator command and
//! `NAME.json` the JSON it sends for the same object (`--dry-run=client -o json`).
//! Decoding the protobuf must give exactly the JSON. Recapture with e.g.
//! `python3 capture.py service-nodeport -- create service nodeport web --tcp=80:8080 --server=http://127.0.0.1:9`.

use std::path::PathBuf;

use podvisor_apiserver::protobuf;
use serde_json::Value;

fn fixture(name: &str) -> (Vec<u8>, Value) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/protobuf");
    let pb = std::fs::read(dir.join(format!("{name}.pb"))).expect("fixture .pb");
    let json = std::fs::read(dir.join(format!("{name}.json"))).expect("fixture .json");
    (pb, serde_json::from_slice(&json).expect("fixture JSON"))
}

fn check(name: &str) {
    let (pb, json) = fixture(name);
    let decoded = protobuf::decode(&pb).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(decoded, json, "{name}: protobuf and JSON bodies differ");
    // And the server's own encoding of that object decodes to the same value.
    let again = protobuf::encode(&decoded).expect("encode");
    assert_eq!(
        protobuf::decode(&again).expect("decode"),
        json,
        "{name}: re-encoding"
    );
}

#[test]
fn kubectl_create_namespace() {
    check("namespace");
}

#[test]
fn kubectl_create_configmap() {
    check("configmap");
}

#[test]
fn kubectl_create_secret_generic() {
    check("secret");
}

#[test]
fn kubectl_create_deployment() {
    check("deployment");
}

#[test]
fn kubectl_create_service_nodeport() {
    check("service-nodeport");
}

#[test]
fn kubectl_create_service_headless() {
    check("service-headless");
}

#[test]
fn kubectl_create_configmap_from_binary_file() {
    check("configmap-binary");
}

#[test]
fn kubectl_create_secret_docker_registry() {
    check("secret-docker-registry");
}
