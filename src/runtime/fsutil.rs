//! Small file-system helpers shared by the runtime and the layers above it.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes a file by writing a temporary sibling and renaming it over, so readers never see a
/// half-written one; the temporary is removed if anything fails.
/// An flock (`how`) on the file at `path`, made if missing: the stores' (images, volumes,
/// networks) locks.
pub fn lock_file(
    path: &Path,
    how: nix::fcntl::FlockArg,
) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    nix::fcntl::Flock::lock(f, how)
        .map_err(|(_, e)| anyhow::anyhow!("cannot lock {}: {e}", path.display()))
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    StagedFile::write(path, bytes)?.commit()
}

/// A file's new content, written to a temporary sibling and not yet renamed over it: the
/// writing can be done ahead, while something else is still under way, and the file changes
/// in one step later. Dropped uncommitted, the temporary is removed.
pub struct StagedFile {
    temp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl StagedFile {
    pub fn write(path: &Path, bytes: &[u8]) -> Result<StagedFile> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let staged = StagedFile {
            temp: dir.join(format!(".{name}.{}-{seq}.tmp", std::process::id())),
            path: path.to_path_buf(),
            committed: false,
        };
        std::fs::write(&staged.temp, bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(staged)
    }

    pub fn commit(mut self) -> Result<()> {
        std::fs::rename(&self.temp, &self.path)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}
