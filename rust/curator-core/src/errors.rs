//! The core's one error enum. The binding maps each variant to a Python exception in one place
//! (`curator-py/src/errors.rs`).

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum CoreError {
    /// A stage spec or scheduler setting is invalid (names the stage and the problem).
    #[error("{0}")]
    Config(String),
    /// A stage asks for resources that no node of the cluster can ever offer.
    #[error("stage '{stage}' needs {need} but the largest node offers {have}")]
    Infeasible {
        stage: String,
        need: String,
        have: String,
    },
    /// An event that does not fit the scheduler's state (unknown batch or actor): a driver bug.
    #[error("protocol error: {0}")]
    Protocol(String),
}

pub type CoreResult<T> = Result<T, CoreError>;
