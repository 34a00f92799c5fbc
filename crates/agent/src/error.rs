//! The agent's error type (STYLE.md §8).

use podvisor_runtime::RuntimeError;

/// What the agent can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A call to the API server failed.
    #[error("{operation}: {message}")]
    Api {
        /// What was being done.
        operation: String,
        /// The HTTP status code, if the server answered.
        code: Option<u16>,
        /// What went wrong.
        message: String,
    },
    /// The container runtime failed.
    #[error("runtime: {0}")]
    Runtime(#[from] RuntimeError),
    /// A local file operation failed.
    #[error("{operation} {path}: {message}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The path.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl AgentError {
    /// An API error from a kube-rs error.
    pub fn api(operation: impl Into<String>, e: kube::Error) -> AgentError {
        let code = match &e {
            kube::Error::Api(s) => Some(s.code),
            _ => None,
        };
        AgentError::Api {
            operation: operation.into(),
            code,
            message: e.to_string(),
        }
    }

    /// Whether the object was not found (404).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            AgentError::Api {
                code: Some(404),
                ..
            }
        ) || matches!(self, AgentError::Runtime(e) if e.is_not_found())
    }

    /// Whether a precondition or resourceVersion did not match (409).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            AgentError::Api {
                code: Some(409),
                ..
            }
        )
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            AgentError::Api { code, .. } => !matches!(code, Some(400 | 403 | 404 | 409 | 422)),
            AgentError::Runtime(e) => !e.is_not_found(),
            AgentError::Io { .. } => true,
            AgentError::Config(_) => false,
        }
    }
}
