//! The pod wing: everything the agent does for one pod UID.

pub mod deadlines;
pub mod env;
pub mod restart;
pub mod spec;
pub mod state;
pub mod status;
pub mod stop;
pub mod sync;
pub mod volumes;
pub mod worker;

pub use spec::{
    ANNOTATION_HASH, ANNOTATION_RESTART_COUNT, LABEL_CONTAINER_NAME, LABEL_POD_NAME,
    LABEL_POD_NAMESPACE, LABEL_POD_UID, container_config, container_hash, sandbox_config,
};
pub use state::WorkerInput;
pub use worker::{PodWorker, RuntimeNote, WorkerCtx, WorkerHandle};

#[cfg(test)]
mod worker_tests;
