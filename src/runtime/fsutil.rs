//! Small file-system helpers shared by the runtime and the layers above it.

use anyhow::{Context, Result};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes a file by writing a temporary sibling and renaming it over, so readers never see a
/// half-written one; the temporary is removed if anything fails.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{name}.{}-{seq}.tmp", std::process::id()));
    let result = std::fs::write(&temp, bytes)
        .and_then(|_| std::fs::rename(&temp, path))
        .with_context(|| format!("cannot write {}", path.display()));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}
