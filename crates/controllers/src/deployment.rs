//! The Deployment controller (not implemented yet: Deployments are observed but not acted on).
use crate::manager::{ControllerError, Ctx, Key};
use std::time::Duration;
pub(crate) async fn reconcile(_ctx: &Ctx, _key: &Key) -> Result<Option<Duration>, ControllerError> {
    Ok(None)
}
