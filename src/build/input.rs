//! What a build reads: its Dockerfile and its context. `CONTEXT` is a directory; `-` is
//! stdin holding either a Dockerfile (no context) or a tar of the context (optionally
//! compressed), as Docker takes them. `-f -` reads the Dockerfile from stdin.

use super::dockerfile::ast::Dockerfile;
use crate::image::unpack::{apply_layer, decompress, UnpackOptions};
use anyhow::{bail, Context, Result};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest Dockerfile berth reads.
const MAX_DOCKERFILE: u64 = 16 << 20;

pub struct Input {
    pub dockerfile: Dockerfile,
    /// The context directory; None for a Dockerfile given on stdin without one.
    pub context: Option<PathBuf>,
}

/// True when `bytes` start a tar archive (the `ustar` magic) or a compressed stream.
fn looks_like_archive(bytes: &[u8]) -> bool {
    let compressed = bytes.starts_with(&[0x1f, 0x8b])
        || bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || bytes.starts_with(b"BZh")
        || bytes.starts_with(&[0xfd, b'7', b'z', b'X', b'Z']);
    compressed || bytes.get(257..262) == Some(b"ustar")
}

fn read_stdin() -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .context("reading stdin")?;
    Ok(buf)
}

fn parse(text: &[u8], name: &str) -> Result<Dockerfile> {
    let text = std::str::from_utf8(text).with_context(|| format!("{name}: not UTF-8 text"))?;
    super::dockerfile::parse(text, name).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The name a Dockerfile's errors use: its file name as given.
fn display_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string())
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    let f = fs::File::open(path).with_context(|| {
        format!(
            "failed to read dockerfile: open {}: no such file or directory",
            path.display()
        )
    })?;
    let mut buf = Vec::new();
    f.take(MAX_DOCKERFILE + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_DOCKERFILE {
        bail!("{}: larger than {MAX_DOCKERFILE} bytes", path.display());
    }
    Ok(buf)
}

/// Reads the Dockerfile and finds (or, from stdin, unpacks into `work/context`) the context.
pub fn read_input(context: &str, file: Option<&str>, work: &Path) -> Result<Input> {
    if context == "-" {
        if file == Some("-") {
            bail!("invalid argument: can't use stdin for both build context and dockerfile");
        }
        let bytes = read_stdin()?;
        if !looks_like_archive(&bytes) {
            if let Some(f) = file {
                bail!("-f {f}: a Dockerfile on stdin is used as it is, without a context");
            }
            return Ok(Input {
                dockerfile: parse(&bytes, "Dockerfile")?,
                context: None,
            });
        }
        let dir = work.join("context");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let (_, mut stream) = decompress(&bytes[..])?;
        let opts = UnpackOptions {
            devices: false,
            ..UnpackOptions::default()
        };
        apply_layer(&dir, &mut stream, opts).context("unpacking the context from stdin")?;
        let name = file.unwrap_or("Dockerfile");
        let text = read_in_context(&dir, name)?;
        return Ok(Input {
            dockerfile: parse(&text, &display_name(name))?,
            context: Some(dir),
        });
    }
    let dir = PathBuf::from(context);
    let meta = fs::metadata(&dir)
        .with_context(|| format!("unable to prepare context: path {context:?} not found"))?;
    if !meta.is_dir() {
        bail!("unable to prepare context: {context:?} is not a directory");
    }
    let dir = dir.canonicalize()?;
    let (text, name) = match file {
        Some("-") => (read_stdin()?, "Dockerfile".to_string()),
        Some(f) => (read_file(Path::new(f))?, display_name(f)),
        None => (
            read_file(&dir.join("Dockerfile"))?,
            "Dockerfile".to_string(),
        ),
    };
    Ok(Input {
        dockerfile: parse(&text, &name)?,
        context: Some(dir),
    })
}

/// A file of an unpacked context, resolved inside it (the archive is not trusted).
fn read_in_context(dir: &Path, name: &str) -> Result<Vec<u8>> {
    use crate::runtime::inroot::{self, Create};
    use std::os::fd::{AsFd, OwnedFd};
    let root: OwnedFd = fs::File::open(dir)?.into();
    let fd = inroot::resolve(root.as_fd(), Path::new(name), Create::Nothing)
        .with_context(|| format!("the context on stdin has no {name}"))?;
    read_file(&inroot::fd_path(&fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_are_told_from_dockerfiles() {
        assert!(!looks_like_archive(b"FROM busybox\nRUN true\n"));
        assert!(looks_like_archive(&[0x1f, 0x8b, 8, 0]));
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert!(looks_like_archive(&tar));
        assert_eq!(display_name("dir/app.Dockerfile"), "app.Dockerfile");
    }
}
