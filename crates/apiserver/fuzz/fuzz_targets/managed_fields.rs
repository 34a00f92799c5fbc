//! Arbitrary JSON as old/new objects (with arbitrary managedFields) for update recording
//! and Tables.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podvisor_apiserver::patch::record_update;
use podvisor_apiserver::registry::{KINDS, PODS};
use podvisor_apiserver::table::table_for;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let old = items.first().cloned().unwrap_or(Value::Null);
    let mut new = items.get(1).cloned().unwrap_or(Value::Null);
    record_update(&PODS, Some(&old), &mut new, "fuzz", "2026-11-25T09:00:00Z");
    let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().expect("timestamp");
    for kind in KINDS {
        let t = table_for(kind, &items, true, now);
        assert_eq!(t["rows"].as_array().map(Vec::len), Some(items.len()));
    }
});
