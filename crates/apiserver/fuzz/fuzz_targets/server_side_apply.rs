//! Server-side apply of arbitrary configurations: create, then reapply over the result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podvisor_apiserver::patch::{PatchType, apply_patch};
use podvisor_apiserver::registry::PODS;

fuzz_target!(|data: &[u8]| {
    let now = "2026-11-25T09:00:00Z";
    let Ok(created) = apply_patch(&PODS, PatchType::Apply, None, data, "a", false, now) else {
        return;
    };
    assert!(created.is_object());
    // Reapplying the same configuration is idempotent and never conflicts.
    let again = apply_patch(
        &PODS,
        PatchType::Apply,
        Some(&created),
        data,
        "a",
        false,
        now,
    )
    .expect("reapply");
    assert_eq!(again, created);
    // Another manager forcing the same configuration always succeeds.
    apply_patch(
        &PODS,
        PatchType::Apply,
        Some(&created),
        data,
        "b",
        true,
        now,
    )
    .expect("force");
});
