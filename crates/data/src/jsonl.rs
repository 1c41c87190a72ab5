//! Loading JSONL datasets with a data root.
//!
//! A malformed row is an error naming the file and line, or (with
//! [`SkipPolicy::Skip`]) a counted skip kept in [`Dataset::skipped`] with its
//! reason. Images are checked at load ([`ImageCheck`]) or on access; either
//! way a missing or corrupt file is a clear error, never a panic.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::error::{DataError, Location, PathError, RowError};
use crate::paths::resolve_in_root;
use crate::row::Row;

/// What to do with a row that fails to parse or validate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SkipPolicy {
    /// Stop at the first bad row with an error naming file and line.
    #[default]
    Error,
    /// Skip it, counting it (and its reason) in [`Dataset::skipped`].
    Skip,
}

/// How much to check media files at load time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ImageCheck {
    /// Only the lexical path check; files are checked when opened.
    None,
    /// Files must exist inside the root (symlinks resolved).
    #[default]
    Exists,
    /// Images must also decode (slow on big datasets, catches corrupt files).
    Decode,
}

/// Options for [`Dataset::load_jsonl`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub skip: SkipPolicy,
    pub image_check: ImageCheck,
    /// Data root for media paths; default: the JSONL file's directory.
    pub root: Option<PathBuf>,
}

impl LoadOptions {
    pub fn skip_bad_rows(mut self) -> Self {
        self.skip = SkipPolicy::Skip;
        self
    }
    pub fn with_image_check(mut self, check: ImageCheck) -> Self {
        self.image_check = check;
        self
    }
    pub fn with_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = Some(root.into());
        self
    }
}

/// A row that was skipped, and why.
#[derive(Debug)]
pub struct SkippedRow {
    pub at: Location,
    pub reason: RowError,
}

/// Rows of one file, with the root their media paths are relative to.
#[derive(Debug)]
pub struct Dataset {
    /// The file the rows came from (empty for in-memory datasets).
    pub path: PathBuf,
    pub root: PathBuf,
    pub rows: Vec<Row>,
    /// Where each row sits in `path` (same length as `rows`).
    pub locations: Vec<Location>,
    pub skipped: Vec<SkippedRow>,
}

/// Parse one JSONL line into a validated row. Blank lines give `Ok(None)`.
/// Never panics, whatever the input.
pub fn parse_row(line: &str) -> Result<Option<Row>, RowError> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let row: Row = serde_json::from_str(trimmed)?;
    row.validate()?;
    Ok(Some(row))
}

/// The directory of `path`; `Path::new("x.jsonl").parent()` is `""`, which
/// cannot be canonicalized, so that case is the current directory.
fn default_root(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_label(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Dataset {
    /// Rows built in memory (e.g. by a generator), with their data root.
    pub fn from_rows(root: impl Into<PathBuf>, rows: Vec<Row>) -> Self {
        let locations = (0..rows.len()).map(Location::Entry).collect();
        Self {
            path: PathBuf::new(),
            root: root.into(),
            rows,
            locations,
            skipped: Vec::new(),
        }
    }

    /// Read a JSONL file. See [`LoadOptions`] for the root, the skip policy
    /// and the image check.
    pub fn load_jsonl(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Self, DataError> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let root = match &opts.root {
            Some(r) => r.clone(),
            None => default_root(path),
        };
        let label = file_label(path);
        let mut ds = Dataset {
            path: path.to_path_buf(),
            root,
            rows: Vec::new(),
            locations: Vec::new(),
            skipped: Vec::new(),
        };
        let reader = BufReader::new(file);
        for (i, bytes) in reader.split(b'\n').enumerate() {
            let line_no = i + 1;
            let bytes = bytes.map_err(|source| DataError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let result = std::str::from_utf8(&bytes)
                .map_err(|_| RowError::NotUtf8)
                .and_then(parse_row)
                .and_then(|row| match row {
                    Some(mut row) => {
                        if row.id.is_empty() {
                            row.id = format!("{label}:{line_no}");
                        }
                        ds.check_media(&row, opts.image_check)?;
                        Ok(Some(row))
                    }
                    None => Ok(None),
                });
            ds.accept(result, Location::Line(line_no), opts.skip)?;
        }
        Ok(ds)
    }

    /// Add a parsed row or apply the skip policy to its error.
    pub(crate) fn accept(
        &mut self,
        result: Result<Option<Row>, RowError>,
        at: Location,
        policy: SkipPolicy,
    ) -> Result<(), DataError> {
        match result {
            Ok(Some(row)) => {
                self.rows.push(row);
                self.locations.push(at);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(reason) => match policy {
                SkipPolicy::Skip => {
                    self.skipped.push(SkippedRow { at, reason });
                    Ok(())
                }
                SkipPolicy::Error => Err(DataError::Row {
                    path: self.path.clone(),
                    at,
                    kind: Box::new(reason),
                }),
            },
        }
    }

    /// Check a row's media files under this dataset's root.
    pub(crate) fn check_media(&self, row: &Row, check: ImageCheck) -> Result<(), RowError> {
        if check == ImageCheck::None {
            return Ok(());
        }
        for path in row.media_paths() {
            let resolved = resolve_media(&self.root, path)?;
            let is_image = row.images.iter().any(|p| p == path);
            if check == ImageCheck::Decode && is_image {
                decode_rgb(&resolved)?;
            }
        }
        Ok(())
    }

    /// Number of rows skipped under [`SkipPolicy::Skip`].
    pub fn skipped_count(&self) -> usize {
        self.skipped.len()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn row(&self, index: usize) -> Result<&Row, DataError> {
        self.rows.get(index).ok_or(DataError::RowIndex {
            index,
            len: self.rows.len(),
        })
    }

    fn row_error(&self, index: usize, kind: RowError) -> DataError {
        DataError::Row {
            path: self.path.clone(),
            at: self
                .locations
                .get(index)
                .copied()
                .unwrap_or(Location::Entry(index)),
            kind: Box::new(kind),
        }
    }

    /// Absolute path of image `image` of row `row`, checked to exist inside
    /// the root.
    pub fn image_path(&self, row: usize, image: usize) -> Result<PathBuf, DataError> {
        let r = self.row(row)?;
        let rel = r.images.get(image).ok_or_else(|| DataError::ImageIndex {
            row: r.id.clone(),
            index: image,
            count: r.images.len(),
        })?;
        resolve_media(&self.root, rel).map_err(|kind| self.row_error(row, kind))
    }

    /// Decode image `image` of row `row` as RGB8. A missing, escaping or
    /// corrupt file is an error naming the JSONL file, line and image path.
    pub fn load_image(&self, row: usize, image: usize) -> Result<RgbImage, DataError> {
        let path = self.image_path(row, image)?;
        decode_rgb(&path).map_err(|kind| self.row_error(row, kind))
    }

    /// All images of row `row`, in order.
    pub fn load_images(&self, row: usize) -> Result<Vec<RgbImage>, DataError> {
        let count = self.row(row)?.images.len();
        (0..count).map(|i| self.load_image(row, i)).collect()
    }
}

fn resolve_media(root: &Path, rel: &str) -> Result<PathBuf, RowError> {
    let resolved = resolve_in_root(root, rel).map_err(|source| RowError::MediaPath {
        path: rel.to_string(),
        source,
    })?;
    if !resolved.is_file() {
        return Err(RowError::MediaPath {
            path: rel.to_string(),
            source: PathError::NotFound(resolved),
        });
    }
    Ok(resolved)
}

/// Decode an image file (format sniffed from the bytes) into RGB8.
pub fn decode_rgb(path: &Path) -> Result<RgbImage, RowError> {
    let corrupt = |source| RowError::CorruptImage {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    let reader = image::ImageReader::open(path)
        .map_err(|e| corrupt(image::ImageError::IoError(e)))?
        .with_guessed_format()
        .map_err(|e| corrupt(image::ImageError::IoError(e)))?;
    Ok(reader.decode().map_err(corrupt)?.to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_root_of_a_bare_file_name_is_the_current_dir() {
        assert_eq!(default_root(Path::new("x.jsonl")), PathBuf::from("."));
        assert_eq!(default_root(Path::new("a/x.jsonl")), PathBuf::from("a"));
        assert_eq!(default_root(Path::new("/x.jsonl")), PathBuf::from("/"));
    }

    #[test]
    fn blank_lines_are_not_rows() {
        assert!(parse_row("   \t").unwrap().is_none());
        assert!(parse_row("{\"problem\": \"q\"}").unwrap().is_some());
    }
}
