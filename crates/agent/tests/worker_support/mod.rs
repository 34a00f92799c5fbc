//! One pod worker on the kit's [`WorkerHarness`] for the probe tests that drive the worker
//! (`probe_agent`, `probe_annotations`): node IP 127.0.0.1, the harness's readers through
//! `Deref`, and the worker's agent shut down when the test drops it. Each test file adds the
//! readers of its own on `Harness`. [`builders`] is the agent's unit-test builder set (its
//! one source file, which builds on the dev-only `podvisor_testkit`), so these tests build
//! the same pods as the worker's unit tests.
#![allow(dead_code, missing_docs)]

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use podvisor_agent::WallClock;
use podvisor_agent::testing::{RunningWorker, WorkerHarness};
use podvisor_runtime::ContainerRuntime;
use podvisor_runtime::fake::{FakeRuntime, FakeScript};

#[path = "../../src/testing/builders.rs"]
pub mod builders;

/// The harness and its one running worker.
pub struct Harness {
    pub kit: WorkerHarness,
    pub worker: RunningWorker,
}

impl std::ops::Deref for Harness {
    type Target = WorkerHarness;

    fn deref(&self) -> &WorkerHarness {
        &self.kit
    }
}

impl Harness {
    /// A worker for `pod` on a fresh fake runtime running `script`.
    pub async fn start(pod: Pod, script: FakeScript) -> Harness {
        let kit = WorkerHarness::new().with_node_ip("127.0.0.1");
        kit.rt.script_default(script);
        Self::run(kit, pod).await
    }

    /// A worker for `pod` talking to `runtime` (a wrapper of `fake`) on `clock`.
    pub async fn start_on(
        pod: Pod,
        fake: Arc<FakeRuntime>,
        runtime: Arc<dyn ContainerRuntime>,
        clock: WallClock,
    ) -> Harness {
        Self::run(
            WorkerHarness::on(fake, runtime, clock).with_node_ip("127.0.0.1"),
            pod,
        )
        .await
    }

    async fn run(kit: WorkerHarness, pod: Pod) -> Harness {
        let worker = kit.start(pod).await;
        Harness { kit, worker }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.worker.shutdown.cancel();
    }
}
