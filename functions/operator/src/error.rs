//! What an operator command reports when it fails: what went wrong and, where it can, what to do.

use broker::store::StoreError;

/// What went wrong with an operator command.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("{0}")]
    /// Secrets Manager failed.
    Store(#[from] StoreError),
    #[error("the credentials document is not valid: {0}")]
    /// The credentials document does not parse.
    BadCredentials(String),
    #[error("the callers secret {0} is not a JSON array of callers; fix or delete it first")]
    /// The callers secret is not an array of callers.
    BadCallers(String),
    #[error("a caller with id {0:?} already exists; remove it first or pick another id")]
    /// The caller id is taken.
    DuplicateCaller(String),
    #[error("caller ids are 1-64 letters, digits, '-', '_' or '.' (no ':', which Basic auth uses)")]
    /// The caller id has characters Basic auth or logs cannot carry.
    BadCallerId,
    #[error("no random bytes from the OS: {0}")]
    /// The OS random source failed.
    Random(String),
    #[error("{0}")]
    /// A `paths` pattern is not valid.
    BadPaths(String),
    #[error("{0}")]
    /// An argument is not valid.
    BadInput(String),
    #[error("{0}")]
    /// RingCX refused or failed a call.
    RingCx(String),
    #[error("{0}")]
    /// RingCX has no such resource.
    RingCxNotFound(String),
    #[error("{0}")]
    /// SQS refused or failed a call (the hook queue or its dead-letter queue).
    Queue(#[from] broker::hooks::queue::QueueError),
}
