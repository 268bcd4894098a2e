//! Disk use, as `ps -s`, `inspect -s` and `system df` count it: the bytes of the regular files
//! under a directory (a file with several links counted once), without leaving its filesystem.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The size of the files under `dir`; 0 when it is missing.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != top.dev() {
                continue;
            }
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && (m.nlink() == 1 || seen.insert(m.ino())) {
                total += m.len();
            } else if m.file_type().is_symlink() {
                total += m.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    #[test]
    fn files_are_counted_once_and_dirs_recursed() {
        let dir = std::env::temp_dir().join(format!("berth-size-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/f"), vec![0u8; 1000]).unwrap();
        std::fs::hard_link(dir.join("a/b/f"), dir.join("a/g")).unwrap();
        std::fs::write(dir.join("h"), b"12345").unwrap();
        assert_eq!(super::dir_size(&dir), 1005);
        assert_eq!(super::dir_size(&dir.join("missing")), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
