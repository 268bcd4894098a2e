//! Applying a layer tarball to a snapshot directory, in overlayfs's own format: a whiteout
//! (`.wh.name`) becomes a 0:0 character device, an opaque marker (`.wh..wh..opq`) the
//! `trusted.overlay.opaque=y` xattr on its directory. The snapshot can then be an overlay
//! lowerdir as it is, or be copied over its parents where overlay is missing.
//!
//! The tarball is hostile. Every entry is created relative to a directory fd reached by
//! in-root resolution ([`crate::runtime::inroot`]): symlinks met on the way resolve inside the
//! snapshot, `..` components are refused, the last component is created with `O_EXCL` /
//! `O_NOFOLLOW` after removing whatever was there, and hard links may only point at entries
//! inside the snapshot. So nothing is ever written outside it.

use crate::runtime::inroot::{self, Create};
use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmodat, fstatat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use std::ffi::{CString, OsStr, OsString};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// How a layer blob is compressed, from its first bytes (media types lie in docker archives).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Wraps a blob reader with the decompressor its magic bytes call for.
pub fn decompress<'a>(src: impl Read + 'a) -> Result<(Compression, Box<dyn Read + 'a>)> {
    let mut buffered = BufReader::with_capacity(1 << 16, src);
    let head = buffered.fill_buf().context("reading the layer")?;
    let kind = if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    };
    let reader: Box<dyn Read + 'a> = match kind {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            ruzstd::decoding::StreamingDecoder::new(buffered)
                .map_err(|e| anyhow::anyhow!("invalid zstd stream: {e}"))?,
        ),
        Compression::None => Box::new(buffered),
    };
    Ok((kind, reader))
}

/// What applying a layer may do beyond plain files.
#[derive(Clone, Copy, Debug)]
pub struct UnpackOptions {
    /// Create character and block devices (needs CAP_MKNOD; otherwise they are skipped).
    pub devices: bool,
    /// Set owners from the tarball (as root); otherwise files belong to the caller.
    pub ownership: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        let root = nix::unistd::geteuid().is_root();
        UnpackOptions {
            devices: root,
            ownership: root,
        }
    }
}

/// Applies the uncompressed tar stream `tar` to the directory `root`, which the caller made and
/// nobody else writes to while this runs.
pub fn apply_layer(root: &Path, tar: &mut dyn Read, opts: UnpackOptions) -> Result<()> {
    let root_fd: OwnedFd = std::fs::File::open(root)
        .with_context(|| format!("cannot open {}", root.display()))?
        .into();
    let mut archive = tar::Archive::new(BlockPadded {
        inner: tar,
        read: 0,
        padding: 0,
    });
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    for entry in archive.entries().context("reading the layer tarball")? {
        let mut entry = entry.context("reading the layer tarball")?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        apply_entry(root_fd.as_fd(), &mut entry, opts, &mut dir_times)
            .with_context(|| format!("layer entry {shown:?}"))?;
    }
    // Directory times last: creating their children changed them.
    for (path, mtime) in dir_times.iter().rev() {
        if let Ok(fd) = inroot::resolve(root_fd.as_fd(), path, Create::Nothing) {
            let t = TimeSpec::new(*mtime, 0);
            let _ = utimensat(
                nix::fcntl::AT_FDCWD,
                &inroot::fd_path(&fd),
                &t,
                &t,
                UtimensatFlags::FollowSymlink,
            );
        }
    }
    Ok(())
}

/// Some writers (umoci 0.4's `insert`) end a layer right after the last file's data, without
/// padding it to a whole 512-byte block or writing the end-of-archive blocks; GNU tar and Go's
/// reader accept that, the tar crate fails skipping the padding. This supplies the missing
/// padding as zeros at the end of the stream. The layer's digest is taken underneath, on the
/// bytes as they came.
struct BlockPadded<R> {
    inner: R,
    read: u64,
    padding: usize,
}

impl<R: Read> Read for BlockPadded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.padding == 0 {
            let n = self.inner.read(buf)?;
            self.read += n as u64;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            self.padding = (512 - (self.read % 512) as usize) % 512;
        }
        let n = self.padding.min(buf.len());
        buf[..n].fill(0);
        self.padding -= n;
        self.read += n as u64;
        Ok(n)
    }
}

/// The entry's path as components below the root; `..` anywhere is refused.
fn clean_path(raw: &Path) -> Result<Vec<OsString>> {
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_os_string()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => bail!("path with a `..` component would escape the layer"),
            Component::Prefix(_) => bail!("unsupported path prefix"),
        }
    }
    Ok(parts)
}

/// Owner, mode and times from the header, with PAX records overriding it.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

fn read_meta<R: Read>(entry: &mut tar::Entry<R>) -> Result<Meta> {
    let h = entry.header();
    let mut meta = Meta {
        uid: h.uid().unwrap_or(0) as u32,
        gid: h.gid().unwrap_or(0) as u32,
        mode: h.mode().context("invalid mode")?,
        mtime: h.mtime().unwrap_or(0) as i64,
        xattrs: Vec::new(),
    };
    if let Some(pax) = entry.pax_extensions().context("invalid PAX header")? {
        for ext in pax {
            let ext = ext.context("invalid PAX record")?;
            let Ok(key) = ext.key() else { continue };
            let value = ext.value_bytes();
            let number = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.split('.').next()?.parse::<i64>().ok())
            };
            match key {
                "uid" => meta.uid = number().context("invalid PAX uid")? as u32,
                "gid" => meta.gid = number().context("invalid PAX gid")? as u32,
                "mtime" => meta.mtime = number().context("invalid PAX mtime")?,
                _ => {
                    if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                        meta.xattrs.push((OsString::from(name), value.to_vec()));
                    }
                }
            }
        }
    }
    Ok(meta)
}

fn apply_entry<R: Read>(
    root: BorrowedFd,
    entry: &mut tar::Entry<R>,
    opts: UnpackOptions,
    dir_times: &mut Vec<(PathBuf, i64)>,
) -> Result<()> {
    let kind = entry.header().entry_type();
    if matches!(
        kind,
        tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
    ) {
        return Ok(());
    }
    let raw_path = entry.path().context("invalid path")?.into_owned();
    let parts = clean_path(&raw_path)?;
    let Some((name, parents)) = parts.split_last() else {
        return Ok(()); // The layer's root itself: the snapshot's root stays as made.
    };
    let parent_rel: PathBuf = parents.iter().collect();
    let name_str = name.to_string_lossy();

    if name_str.starts_with(WHITEOUT_PREFIX) {
        let parent = resolve_dir(root, &parent_rel, Create::Dir)?;
        if name_str == OPAQUE_MARKER {
            return set_xattr(&parent, None, OsStr::new(OPAQUE_XATTR), b"y")
                .context("cannot mark the directory opaque");
        }
        let hidden = OsStr::from_bytes(&name.as_bytes()[WHITEOUT_PREFIX.len()..]);
        if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.as_bytes().contains(&b'/')
        {
            bail!("invalid whiteout name {hidden:?}");
        }
        remove_existing(&parent, hidden)?;
        return mknodat(parent.as_fd(), hidden, SFlag::S_IFCHR, Mode::empty(), 0)
            .context("cannot create the whiteout device (overlayfs format; needs CAP_MKNOD)");
    }

    let meta = read_meta(entry)?;
    let parent = resolve_dir(root, &parent_rel, Create::Dir)?;
    let existing = fstatat(
        parent.as_fd(),
        name.as_os_str(),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .ok();
    let existing_is_dir = existing
        .is_some_and(|s| SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR);
    let rel: PathBuf = parts.iter().collect();
    let mode = Mode::from_bits_truncate(0o600);
    match kind {
        tar::EntryType::Directory => {
            if !existing_is_dir {
                remove_existing(&parent, name)?;
                nix::sys::stat::mkdirat(
                    parent.as_fd(),
                    name.as_os_str(),
                    Mode::from_bits_truncate(0o700),
                )
                .context("cannot create the directory")?;
            }
            dir_times.push((rel, meta.mtime));
        }
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            remove_existing(&parent, name)?;
            let mut file = create_new_file(&parent, name).context("cannot create the file")?;
            io::copy(entry, &mut file).context("cannot write the file")?;
        }
        tar::EntryType::Symlink => {
            let target = entry
                .link_name()
                .context("invalid link target")?
                .context("symlink without a target")?;
            remove_existing(&parent, name)?;
            symlinkat(target.as_os_str(), parent.as_fd(), name.as_os_str())
                .context("cannot create the symlink")?;
        }
        tar::EntryType::Link => {
            let target = entry
                .link_name()
                .context("invalid link target")?
                .context("hard link without a target")?;
            let target_parts = clean_path(&target).context("hard link target")?;
            let Some((tname, tparents)) = target_parts.split_last() else {
                bail!("hard link to the layer root");
            };
            let tparent_rel: PathBuf = tparents.iter().collect();
            let tparent = resolve_dir(root, &tparent_rel, Create::Nothing).with_context(|| {
                format!("hard link target {} is not in the layer", target.display())
            })?;
            if tparent_rel == parent_rel && tname == name {
                return Ok(());
            }
            remove_existing(&parent, name)?;
            // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
            linkat(
                tparent.as_fd(),
                tname.as_os_str(),
                parent.as_fd(),
                name.as_os_str(),
                AtFlags::empty(),
            )
            .with_context(|| format!("cannot link to {}", target.display()))?;
            return Ok(()); // The inode, and so its metadata, is shared with the target.
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let (sflag, is_device) = match kind {
                tar::EntryType::Char => (SFlag::S_IFCHR, true),
                tar::EntryType::Block => (SFlag::S_IFBLK, true),
                _ => (SFlag::S_IFIFO, false),
            };
            if is_device && !opts.devices {
                return Ok(());
            }
            let h = entry.header();
            let dev = nix::sys::stat::makedev(
                h.device_major().ok().flatten().unwrap_or(0) as u64,
                h.device_minor().ok().flatten().unwrap_or(0) as u64,
            );
            remove_existing(&parent, name)?;
            mknodat(parent.as_fd(), name.as_os_str(), sflag, mode, dev)
                .context("cannot create the node")?;
        }
        other => bail!("unsupported tar entry type {other:?}"),
    }
    set_meta(&parent, name, kind == tar::EntryType::Symlink, &meta, opts)
}

fn set_meta(
    parent: &OwnedFd,
    name: &OsStr,
    is_symlink: bool,
    meta: &Meta,
    opts: UnpackOptions,
) -> Result<()> {
    if opts.ownership {
        fchownat(
            parent.as_fd(),
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .context("cannot set the owner")?;
    }
    if !is_symlink {
        // After chown, which clears set-id bits. The entry was just made by us and is no
        // symlink, so following is safe.
        fchmodat(
            parent.as_fd(),
            name,
            Mode::from_bits_truncate(meta.mode & 0o7777),
            FchmodatFlags::FollowSymlink,
        )
        .context("cannot set the mode")?;
        for (key, value) in &meta.xattrs {
            set_xattr(parent, Some(name), key, value)
                .with_context(|| format!("cannot set xattr {key:?}"))?;
        }
    }
    let t = TimeSpec::new(meta.mtime, 0);
    utimensat(
        parent.as_fd(),
        name,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .context("cannot set the times")?;
    Ok(())
}

/// Sets an xattr on `dir` itself or on its entry `name`, without following a final symlink.
pub fn set_xattr(dir: &OwnedFd, name: Option<&OsStr>, key: &OsStr, value: &[u8]) -> Result<()> {
    let mut path = inroot::fd_path(dir).into_os_string();
    if let Some(n) = name {
        path.push("/");
        path.push(n);
    }
    let c_path = CString::new(path.as_bytes())?;
    let c_key = CString::new(key.as_bytes())?;
    // SAFETY: both strings are NUL-terminated and the value slice outlives the call. Without a
    // name the path is the /proc magic link to `dir`, which must be followed (setxattr);
    // with one, the final component must not be (lsetxattr).
    let rc = unsafe {
        let set = if name.is_some() {
            libc::lsetxattr
        } else {
            libc::setxattr
        };
        set(
            c_path.as_ptr(),
            c_key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(Errno::last().into());
    }
    Ok(())
}

/// Removes whatever `name` in `parent` is (a directory with all it holds), never following it.
fn remove_existing(parent: &OwnedFd, name: &OsStr) -> Result<()> {
    match unlinkat(parent.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) => {
            // std's remove_dir_all opens each level with O_NOFOLLOW relative to the last.
            let path = inroot::fd_path(parent).join(name);
            std::fs::remove_dir_all(&path).context("cannot replace the directory")
        }
        Err(e) => Err(e).context("cannot replace the existing entry"),
    }
}

/// Creates `name` in `dir` as a new file (mode 0600 until its own is set), never through a
/// symlink.
pub fn create_new_file(dir: &OwnedFd, name: &OsStr) -> Result<std::fs::File> {
    let flags =
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(dir.as_fd(), name, flags, Mode::from_bits_truncate(0o600))?;
    Ok(std::fs::File::from(fd))
}

/// An fd for the directory `rel` inside `root` (the root itself when `rel` is empty).
fn resolve_dir(root: BorrowedFd, rel: &Path, create: Create) -> Result<OwnedFd> {
    if rel.as_os_str().is_empty() {
        return Ok(root.try_clone_to_owned()?);
    }
    inroot::resolve(root, rel, create)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_ending_without_padding_unpacks() {
        let mut builder = tar::Builder::new(Vec::new());
        let data = b"hi\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, "f", &data[..]).unwrap();
        let mut bytes = builder.into_inner().unwrap();
        // Cut after the data: no padding to 512 bytes, no end-of-archive blocks.
        bytes.truncate(512 + data.len());
        let dir = std::env::temp_dir().join(format!("berth-unpad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = apply_layer(&dir, &mut &bytes[..], UnpackOptions::default());
        let content = std::fs::read(dir.join("f"));
        std::fs::remove_dir_all(&dir).unwrap();
        r.unwrap();
        assert_eq!(content.unwrap(), data);
    }
}
