//! Typed errors. Every error about a row names the file and the line (JSONL)
//! or entry (JSON array) it came from, so a bad row in a 100k-line file can be
//! found without a debugger.

use std::fmt;
use std::path::PathBuf;

/// Where a row sits in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// 1-based line of a JSONL file.
    Line(usize),
    /// 0-based index into a JSON array file.
    Entry(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Entry(n) => write!(f, "entry {n}"),
        }
    }
}

/// Why a relative media path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("empty path")]
    Empty,
    #[error("absolute paths are not allowed (paths are relative to the data root)")]
    Absolute,
    #[error("`..` would escape the data root")]
    ParentDir,
    #[error("resolves to {resolved}, outside the data root {root} (symlink pointing out?)")]
    OutsideRoot { resolved: PathBuf, root: PathBuf },
    #[error("file not found under the data root ({0})")]
    NotFound(PathBuf),
    #[error("cannot resolve {path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

/// What is wrong with one row.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    #[error("line is not valid UTF-8")]
    NotUtf8,
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("row has neither `messages` nor `problem`")]
    NoPrompt,
    #[error("field `{field}`: {reason}")]
    Field { field: String, reason: String },
    #[error("media path `{path}`: {source}")]
    MediaPath {
        path: String,
        #[source]
        source: PathError,
    },
    #[error("image `{}` cannot be decoded: {source}", path.display())]
    CorruptImage {
        path: PathBuf,
        #[source]
        source: Box<image::ImageError>,
    },
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a valid JSON file: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A row failed to parse or validate; names the file and the line/entry.
    #[error("{}: {at}: {kind}", path.display())]
    Row {
        path: PathBuf,
        at: Location,
        kind: Box<RowError>,
    },
    #[error("{}: cannot write image: {source}", path.display())]
    ImageWrite {
        path: PathBuf,
        #[source]
        source: Box<image::ImageError>,
    },
    #[error("row index {index} out of range ({len} rows)")]
    RowIndex { index: usize, len: usize },
    #[error("row `{row}` has no image {index} ({count} images)")]
    ImageIndex {
        row: String,
        index: usize,
        count: usize,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl DataError {
    /// The row-level cause, if this error is about one row.
    pub fn row_error(&self) -> Option<&RowError> {
        match self {
            DataError::Row { kind, .. } => Some(kind.as_ref()),
            _ => None,
        }
    }
}
