//! Typed errors of the GRPO core. Every variant names what failed and where
//! (file path, step, field), so a recipe can print it as is.

use std::path::PathBuf;

/// Errors raised by `vlrl-grpo`.
#[derive(Debug, thiserror::Error)]
pub enum GrpoError {
    /// A configuration value is out of its valid range.
    #[error("invalid config field `{field}`: {reason}")]
    Config {
        /// Config field name, e.g. `loss.clip_low`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Input shapes or lengths disagree.
    #[error("shape mismatch in {context}: {reason}")]
    Shape {
        /// Where the mismatch was found.
        context: &'static str,
        /// Expected vs. found.
        reason: String,
    },
    /// The policy implementation failed.
    #[error("policy error: {0}")]
    Policy(String),
    /// The reward function failed.
    #[error("reward error: {0}")]
    Reward(String),
    /// A filesystem operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A checkpoint is missing, incomplete or corrupt.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// (De)serialization of a record, a JSON line or a safetensors file failed.
    #[error("serialization of {what}: {reason}")]
    Serialize {
        /// What was being (de)serialized (a path or a record name).
        what: String,
        /// The underlying message.
        reason: String,
    },
    /// Too many consecutive updates had a non-finite loss or gradient.
    #[error(
        "training stopped at step {step}: {streak} consecutive updates had a non-finite loss or \
         gradient (limit {limit}); lower the learning rate or check the rewards"
    )]
    NonFiniteStreak {
        /// Step at which the run stopped.
        step: u64,
        /// Consecutive skipped updates.
        streak: u32,
        /// The configured limit.
        limit: u32,
    },
    /// Dynamic sampling could not fill the batch within its cap.
    #[error(
        "dynamic sampling kept {kept} of {wanted} groups after {batches} generation batches \
         (cap {cap}); every other group had identical rewards"
    )]
    DynamicSamplingExhausted {
        /// Groups kept.
        kept: usize,
        /// Groups wanted.
        wanted: usize,
        /// Generation batches drawn.
        batches: usize,
        /// The configured cap.
        cap: usize,
    },
    /// Reading tensor data back from a device failed.
    #[error("tensor data: {0}")]
    Data(String),
    /// The data set is empty.
    #[error("the prompt data set is empty")]
    EmptyDataset,
}

impl GrpoError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, GrpoError>;
