//! Reading /proc files.

use std::io::Read;
use std::path::Path;

/// Reads a /proc file whole. /proc reports a size of 0, so `fs::read_to_string` would start
/// from a tiny buffer and double it read after read (eight reads for a mountinfo); one
/// generous buffer takes it in one or two.
pub fn read_to_string(path: impl AsRef<Path>) -> std::io::Result<String> {
    let mut text = String::with_capacity(16 * 1024);
    std::fs::File::open(path)?.read_to_string(&mut text)?;
    Ok(text)
}
