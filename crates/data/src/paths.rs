//! Media paths are relative to a data root and must stay inside it.
//!
//! Two checks: a lexical one on the string (no absolute path, no `..`, no
//! drive prefix), done when a row is parsed, and a filesystem one when the file
//! is opened (canonicalize, then require the result to lie under the
//! canonical root), which also catches symlinks pointing out of the root.

use std::path::{Component, Path, PathBuf};

use crate::error::PathError;

/// Lexical check of a media path: relative, non-empty, no `..`, no root or
/// drive prefix. Returns the path as a `Path` on success.
pub fn check_relative(rel: &str) -> Result<&Path, PathError> {
    if rel.trim().is_empty() {
        return Err(PathError::Empty);
    }
    let path = Path::new(rel);
    // Windows-style roots are refused on every platform: a dataset written on
    // one OS must mean the same on another.
    if rel.starts_with('/') || rel.starts_with('\\') || rel.as_bytes().get(1) == Some(&b':') {
        return Err(PathError::Absolute);
    }
    if rel.split(['/', '\\']).any(|part| part == "..") {
        return Err(PathError::ParentDir);
    }
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(PathError::ParentDir),
            Component::RootDir | Component::Prefix(_) => return Err(PathError::Absolute),
        }
    }
    Ok(path)
}

/// Resolve `rel` under `root` on the filesystem and prove the result is inside
/// the root after following symlinks. Missing files give
/// [`PathError::NotFound`].
pub fn resolve_in_root(root: &Path, rel: &str) -> Result<PathBuf, PathError> {
    let rel_path = check_relative(rel)?;
    let joined = root.join(rel_path);
    let canonical_root = root.canonicalize().map_err(|e| PathError::Io {
        path: root.to_path_buf(),
        reason: e.to_string(),
    })?;
    let resolved = match joined.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PathError::NotFound(joined));
        }
        Err(e) => {
            return Err(PathError::Io {
                path: joined,
                reason: e.to_string(),
            })
        }
    };
    if !resolved.starts_with(&canonical_root) {
        return Err(PathError::OutsideRoot {
            resolved,
            root: canonical_root,
        });
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_rules() {
        assert!(check_relative("images/a.png").is_ok());
        assert!(check_relative("./a.png").is_ok());
        assert_eq!(check_relative(""), Err(PathError::Empty));
        assert_eq!(check_relative("/etc/passwd"), Err(PathError::Absolute));
        assert_eq!(check_relative("C:\\x.png"), Err(PathError::Absolute));
        assert_eq!(check_relative("\\\\server\\x"), Err(PathError::Absolute));
        assert_eq!(check_relative("../x.png"), Err(PathError::ParentDir));
        assert_eq!(check_relative("a/../../x.png"), Err(PathError::ParentDir));
        assert_eq!(check_relative("a\\..\\x.png"), Err(PathError::ParentDir));
        // `..` inside a name is not a parent component.
        assert!(check_relative("a..b/x.png").is_ok());
    }

    #[test]
    fn resolve_reports_missing_and_symlink_escape() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("in.png"), b"x").unwrap();
        std::fs::write(outside.path().join("secret.png"), b"x").unwrap();
        assert!(resolve_in_root(root.path(), "in.png").is_ok());
        assert!(matches!(
            resolve_in_root(root.path(), "nope.png"),
            Err(PathError::NotFound(_))
        ));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(
                outside.path().join("secret.png"),
                root.path().join("link.png"),
            )
            .unwrap();
            assert!(matches!(
                resolve_in_root(root.path(), "link.png"),
                Err(PathError::OutsideRoot { .. })
            ));
        }
    }
}
