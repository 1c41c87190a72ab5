//! Typed errors of vlrl-qwen. Every variant names the file, field or tensor
//! at fault, so a user loading a checkpoint knows what to fix.

use std::path::PathBuf;

/// One tensor whose shape in the checkpoint is not what the model needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub name: String,
    pub expected: Vec<usize>,
    pub found: Vec<usize>,
}

/// Everything wrong between a checkpoint and the model built from its config,
/// gathered in one pass so the user sees every offending name at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeightProblems {
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    pub mismatched: Vec<ShapeMismatch>,
}

impl WeightProblems {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
}

impl std::fmt::Display for WeightProblems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.missing.is_empty() {
            write!(f, "missing tensors: {}", self.missing.join(", "))?;
        }
        if !self.mismatched.is_empty() {
            if !self.missing.is_empty() {
                write!(f, "; ")?;
            }
            write!(f, "shape mismatches: ")?;
            for (i, m) in self.mismatched.iter().enumerate() {
                if i > 0 {
                    write!(f, ", ")?;
                }
                write!(
                    f,
                    "{} (expected {:?}, found {:?})",
                    m.name, m.expected, m.found
                )?;
            }
        }
        if !self.unexpected.is_empty() {
            if !self.missing.is_empty() || !self.mismatched.is_empty() {
                write!(f, "; ")?;
            }
            write!(f, "unexpected tensors: {}", self.unexpected.join(", "))?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QwenError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid config: {message}")]
    Config { path: PathBuf, message: String },
    /// Writing a safetensors file failed (serialization).
    #[error("{path}: safetensors: {message}")]
    Safetensors { path: PathBuf, message: String },
    /// The checkpoint files themselves: unreadable, corrupt, truncated.
    #[error(transparent)]
    Checkpoint(#[from] vlrl_vision::WeightError),
    #[error("checkpoint {dir} does not fit the model: {problems}")]
    Weights {
        dir: PathBuf,
        problems: WeightProblems,
    },
    #[error("{path}: tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("chat template: {0}")]
    Template(String),
    #[error("invalid input: {0}")]
    Input(String),
}

pub type Result<T> = std::result::Result<T, QwenError>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> QwenError {
    let path = path.into();
    move |source| QwenError::Io { path, source }
}
