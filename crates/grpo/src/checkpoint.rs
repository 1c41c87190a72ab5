//! Crash-safe checkpoints.
//!
//! A checkpoint is a folder `step-XXXXXXXX/` of named blobs plus a
//! `manifest.json` listing each blob's length and FNV-1a hash. It is written
//! as `.tmp-step-XXXXXXXX/` — every file written and fsynced, the folder
//! fsynced — then renamed into place and the parent folder fsynced. A crash
//! at any moment leaves either the complete new folder or none (a stale
//! `.tmp-*` folder, ignored and removed later), so the previous checkpoint
//! always stays loadable. Loading verifies lengths and hashes, and falls back
//! to the newest *valid* checkpoint.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{GrpoError, Result};

const MANIFEST: &str = "manifest.json";

/// 64-bit FNV-1a hash (integrity check, not security).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct ManifestEntry {
    name: String,
    len: u64,
    fnv1a64: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Manifest {
    step: u64,
    files: Vec<ManifestEntry>,
}

/// A loaded, verified checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Training step it was taken after.
    pub step: u64,
    /// Its folder.
    pub dir: PathBuf,
    /// Blob contents by name.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Checkpoint {
    /// A blob by name, or a checkpoint error naming it.
    pub fn file(&self, name: &str) -> Result<&[u8]> {
        self.files
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| GrpoError::Checkpoint {
                path: self.dir.clone(),
                reason: format!("missing file `{name}`"),
            })
    }
}

/// Writes, lists, loads and prunes checkpoints under one folder.
#[derive(Debug, Clone)]
pub struct CheckpointManager {
    root: PathBuf,
    keep_last: usize,
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).map_err(|e| GrpoError::io(path, e))?;
    f.write_all(bytes).map_err(|e| GrpoError::io(path, e))?;
    f.sync_all().map_err(|e| GrpoError::io(path, e))
}

fn sync_dir(path: &Path) -> Result<()> {
    // Directory fsync makes renames durable (POSIX); not available everywhere.
    #[cfg(unix)]
    {
        let d = fs::File::open(path).map_err(|e| GrpoError::io(path, e))?;
        d.sync_all().map_err(|e| GrpoError::io(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

fn parse_step(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?.parse().ok()
}

impl CheckpointManager {
    /// Manages `root` (created if missing), keeping the newest `keep_last`
    /// checkpoints (at least 1). Removes stale temporary folders.
    pub fn new(root: impl Into<PathBuf>, keep_last: usize) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| GrpoError::io(&root, e))?;
        let m = Self {
            root,
            keep_last: keep_last.max(1),
        };
        for entry in fs::read_dir(&m.root).map_err(|e| GrpoError::io(&m.root, e))? {
            let entry = entry.map_err(|e| GrpoError::io(&m.root, e))?;
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(m)
    }

    /// The managed folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Steps of the checkpoint folders present (valid or not), ascending.
    pub fn steps(&self) -> Result<Vec<u64>> {
        let mut steps = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(|e| GrpoError::io(&self.root, e))? {
            let entry = entry.map_err(|e| GrpoError::io(&self.root, e))?;
            if let Some(s) = parse_step(&entry.file_name().to_string_lossy()) {
                steps.push(s);
            }
        }
        steps.sort_unstable();
        Ok(steps)
    }

    /// Writes a checkpoint atomically and prunes old ones. Returns its folder.
    pub fn save(&self, step: u64, files: &[(&str, &[u8])]) -> Result<PathBuf> {
        let final_dir = self.root.join(step_dir_name(step));
        let tmp = self.root.join(format!(
            ".tmp-{}-{}",
            step_dir_name(step),
            std::process::id()
        ));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| GrpoError::io(&tmp, e))?;
        }
        fs::create_dir(&tmp).map_err(|e| GrpoError::io(&tmp, e))?;
        let mut entries = Vec::with_capacity(files.len());
        for (name, bytes) in files {
            if name.contains('/') || name.contains('\\') || *name == MANIFEST || name.is_empty() {
                return Err(GrpoError::Checkpoint {
                    path: tmp,
                    reason: format!("invalid blob name `{name}`"),
                });
            }
            write_synced(&tmp.join(name), bytes)?;
            entries.push(ManifestEntry {
                name: name.to_string(),
                len: bytes.len() as u64,
                fnv1a64: format!("{:016x}", fnv1a64(bytes)),
            });
        }
        let manifest = Manifest {
            step,
            files: entries,
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| GrpoError::Serialize {
            what: "checkpoint manifest".into(),
            reason: e.to_string(),
        })?;
        write_synced(&tmp.join(MANIFEST), &json)?;
        sync_dir(&tmp)?;
        if final_dir.exists() {
            // Re-saving a step: move the old folder aside first (a crash here
            // leaves the new data in tmp and the old one in trash; both are
            // cleaned up, the older checkpoints stay valid).
            let trash = self
                .root
                .join(format!(".tmp-trash-{}", step_dir_name(step)));
            let _ = fs::remove_dir_all(&trash);
            fs::rename(&final_dir, &trash).map_err(|e| GrpoError::io(&final_dir, e))?;
            let _ = fs::remove_dir_all(&trash);
        }
        fs::rename(&tmp, &final_dir).map_err(|e| GrpoError::io(&final_dir, e))?;
        sync_dir(&self.root)?;
        self.prune()?;
        Ok(final_dir)
    }

    /// Removes all but the newest `keep_last` checkpoint folders.
    pub fn prune(&self) -> Result<()> {
        let steps = self.steps()?;
        if steps.len() > self.keep_last {
            for s in &steps[..steps.len() - self.keep_last] {
                let dir = self.root.join(step_dir_name(*s));
                fs::remove_dir_all(&dir).map_err(|e| GrpoError::io(&dir, e))?;
            }
        }
        Ok(())
    }

    /// Loads and verifies the checkpoint of `step`.
    pub fn load(&self, step: u64) -> Result<Checkpoint> {
        load_dir(&self.root.join(step_dir_name(step)))
    }

    /// The newest checkpoint that verifies, if any; invalid ones are skipped
    /// with a warning.
    pub fn latest(&self) -> Result<Option<Checkpoint>> {
        for step in self.steps()?.into_iter().rev() {
            match self.load(step) {
                Ok(c) => return Ok(Some(c)),
                Err(e) => tracing::warn!("skipping invalid checkpoint: {e}"),
            }
        }
        Ok(None)
    }
}

/// Loads and verifies one checkpoint folder.
pub fn load_dir(dir: &Path) -> Result<Checkpoint> {
    let bad = |reason: String| GrpoError::Checkpoint {
        path: dir.to_path_buf(),
        reason,
    };
    let mpath = dir.join(MANIFEST);
    let mbytes = fs::read(&mpath).map_err(|e| GrpoError::io(&mpath, e))?;
    let manifest: Manifest =
        serde_json::from_slice(&mbytes).map_err(|e| bad(format!("manifest: {e}")))?;
    let mut files = BTreeMap::new();
    for entry in manifest.files {
        let p = dir.join(&entry.name);
        let bytes = fs::read(&p).map_err(|e| GrpoError::io(&p, e))?;
        if bytes.len() as u64 != entry.len {
            return Err(bad(format!(
                "`{}` has {} bytes, manifest says {}",
                entry.name,
                bytes.len(),
                entry.len
            )));
        }
        let h = format!("{:016x}", fnv1a64(&bytes));
        if h != entry.fnv1a64 {
            return Err(bad(format!("`{}` hash mismatch", entry.name)));
        }
        files.insert(entry.name, bytes);
    }
    Ok(Checkpoint {
        step: manifest.step,
        dir: dir.to_path_buf(),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_prune_and_detect_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let m = CheckpointManager::new(tmp.path(), 2).unwrap();
        for s in 1..=3u64 {
            m.save(s, &[("a.bin", &[s as u8; 10]), ("b.json", b"{}")])
                .unwrap();
        }
        assert_eq!(m.steps().unwrap(), vec![2, 3]);
        let c = m.latest().unwrap().unwrap();
        assert_eq!(c.step, 3);
        assert_eq!(c.file("a.bin").unwrap(), &[3u8; 10]);
        assert!(c.file("zzz").is_err());
        // Corrupt the newest: latest() falls back to step 2.
        fs::write(tmp.path().join("step-00000003/a.bin"), [9u8; 10]).unwrap();
        assert!(m.load(3).is_err());
        assert_eq!(m.latest().unwrap().unwrap().step, 2);
        assert!(m.save(4, &[("../x", b"")]).is_err());
    }
}
