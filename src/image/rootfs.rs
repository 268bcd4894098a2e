//! A container's root filesystem over an image's snapshots: an overlayfs mount with the
//! snapshots as read-only lowerdirs and the container's own upper and work directories, or,
//! where overlay cannot be mounted, a copy of the snapshots applied in order (whiteouts and
//! opaque directories honoured as overlay would).

use super::unpack::{create_new_file, OPAQUE_XATTR};
use crate::runtime::inroot::{self, Create};
use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{
    fchmodat, fstatat, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How a root filesystem was made.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootfsKind {
    Overlay,
    Copy,
}

/// Mounts an overlay of `lowers` (base first) on `target`, with `upper` and `work` made here.
pub fn mount_overlay(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    if lowers.is_empty() {
        bail!("an overlay needs at least one layer");
    }
    let mut paths: Vec<String> = Vec::new();
    for p in lowers
        .iter()
        .rev()
        .map(|p| p.as_path())
        .chain([upper, work])
    {
        let s = p
            .to_str()
            .with_context(|| format!("{} is not UTF-8", p.display()))?;
        if s.contains([',', ':', '\\']) {
            bail!("overlay cannot take the path {s:?} (it holds ',' ':' or '\\')");
        }
        paths.push(s.to_string());
    }
    let (uppers, lower) = paths.split_at(lowers.len());
    let (upper_s, work_s) = (&lower[0], &lower[1]);
    let data = format!(
        "lowerdir={},upperdir={upper_s},workdir={work_s}",
        uppers.join(":")
    );
    if data.len() >= 4096 {
        bail!(
            "overlay options for {} layers exceed a page; use --copy",
            lowers.len()
        );
    }
    fs::create_dir_all(upper).with_context(|| format!("cannot create {}", upper.display()))?;
    fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    fs::create_dir_all(target).with_context(|| format!("cannot create {}", target.display()))?;
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .with_context(|| format!("cannot mount an overlay on {}", target.display()))
}

/// Unmounts an overlay rootfs; not being mounted is fine.
pub fn unmount(target: &Path) -> Result<()> {
    match umount2(target, MntFlags::empty()) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot unmount {}", target.display())),
    }
}

/// Applies the snapshot directories (base first) onto the empty directory `target`.
pub fn copy_snapshots(lowers: &[PathBuf], target: &Path) -> Result<()> {
    fs::create_dir_all(target).with_context(|| format!("cannot create {}", target.display()))?;
    let dst: OwnedFd = fs::File::open(target)
        .with_context(|| format!("cannot open {}", target.display()))?
        .into();
    for lower in lowers {
        let mut links = HashMap::new();
        copy_dir(lower, &dst, &dst, &mut links, Path::new("")).with_context(|| {
            format!("copying layer {} to {}", lower.display(), target.display())
        })?;
    }
    Ok(())
}

/// Copies the children of `src` into the directory `dst`. `dst` was reached component by
/// component without following symlinks, so a symlink left by a lower layer is never written
/// through. `links` maps a source inode to where it was first copied, to keep hard links.
fn copy_dir(
    src: &Path,
    root: &OwnedFd,
    dst: &OwnedFd,
    links: &mut HashMap<u64, (PathBuf, OsString)>,
    rel: &Path,
) -> Result<()> {
    for entry in fs::read_dir(src).with_context(|| format!("cannot read {}", src.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)?;
        let kind = meta.file_type();
        let existing = fstatat(dst.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).ok();
        let existing_dir = existing.is_some_and(|s| {
            SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
        });
        use std::os::unix::fs::FileTypeExt;
        if kind.is_char_device() && meta.rdev() == 0 {
            remove_entry(dst, &name)?; // A whiteout.
            continue;
        }
        if kind.is_dir() {
            let opaque = get_xattr(&path, OsStr::new(OPAQUE_XATTR))?.is_some_and(|v| v == b"y");
            if !existing_dir || opaque {
                remove_entry(dst, &name)?;
                mkdirat(
                    dst.as_fd(),
                    name.as_os_str(),
                    Mode::from_bits_truncate(0o700),
                )?;
            }
            let child: OwnedFd = openat(
                dst.as_fd(),
                name.as_os_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            copy_dir(&path, root, &child, links, &rel.join(&name))?;
            copy_meta(&path, &meta, dst, &name, false)?;
            continue;
        }
        remove_entry(dst, &name)?;
        if meta.nlink() > 1 && !kind.is_symlink() {
            if let Some((first_rel, first_name)) = links.get(&meta.ino()) {
                // The first copy's directory may since have been replaced; then copy again.
                if link_to_first(root, first_rel, first_name, dst, &name).is_ok() {
                    continue;
                }
            }
            links.insert(meta.ino(), (rel.to_path_buf(), name.clone()));
        }
        if kind.is_symlink() {
            symlinkat(
                fs::read_link(&path)?.as_os_str(),
                dst.as_fd(),
                name.as_os_str(),
            )?;
        } else if kind.is_file() {
            let mut out = create_new_file(dst, &name)?;
            std::io::copy(&mut fs::File::open(&path)?, &mut out)
                .with_context(|| format!("cannot copy {}", path.display()))?;
        } else {
            let sflag = SFlag::from_bits_truncate(meta.mode()) & SFlag::S_IFMT;
            mknodat(
                dst.as_fd(),
                name.as_os_str(),
                sflag,
                Mode::from_bits_truncate(0o600),
                meta.rdev(),
            )?;
        }
        copy_meta(&path, &meta, dst, &name, kind.is_symlink())?;
    }
    Ok(())
}

/// Hard-links `name` in `dst` to the earlier copy `first_name` in `first_rel` (below `root`).
fn link_to_first(
    root: &OwnedFd,
    first_rel: &Path,
    first_name: &OsStr,
    dst: &OwnedFd,
    name: &OsStr,
) -> Result<()> {
    let first_dir = if first_rel.as_os_str().is_empty() {
        root.try_clone()?
    } else {
        inroot::resolve(root.as_fd(), first_rel, Create::Nothing)?
    };
    linkat(
        first_dir.as_fd(),
        first_name,
        dst.as_fd(),
        name,
        AtFlags::empty(),
    )?;
    Ok(())
}

fn copy_meta(
    src: &Path,
    meta: &fs::Metadata,
    dst: &OwnedFd,
    name: &OsStr,
    is_symlink: bool,
) -> Result<()> {
    let root = nix::unistd::geteuid().is_root();
    if root {
        fchownat(
            dst.as_fd(),
            name,
            Some(Uid::from_raw(meta.uid())),
            Some(Gid::from_raw(meta.gid())),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
    }
    if !is_symlink {
        fchmodat(
            dst.as_fd(),
            name,
            Mode::from_bits_truncate(meta.mode() & 0o7777),
            FchmodatFlags::FollowSymlink,
        )?;
        for key in list_xattrs(src)? {
            if key.as_bytes().starts_with(b"trusted.overlay.") {
                continue;
            }
            if let Some(value) = get_xattr(src, &key)? {
                super::unpack::set_xattr(dst, Some(name), &key, &value)
                    .with_context(|| format!("cannot copy xattr {key:?} of {}", src.display()))?;
            }
        }
    }
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(
        dst.as_fd(),
        name,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

fn remove_entry(dir: &OwnedFd, name: &OsStr) -> Result<()> {
    match unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) => fs::remove_dir_all(inroot::fd_path(dir).join(name))
            .with_context(|| format!("cannot remove {name:?}")),
        Err(e) => Err(e).with_context(|| format!("cannot remove {name:?}")),
    }
}

fn list_xattrs(path: &Path) -> Result<Vec<OsString>> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: the path is NUL-terminated and buf is valid for buf.len() bytes.
        let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            break;
        }
        match Errno::last() {
            Errno::ERANGE => buf.resize(buf.len() * 4, 0),
            Errno::ENOTSUP => return Ok(Vec::new()),
            e => {
                return Err(e).with_context(|| format!("cannot list xattrs of {}", path.display()))
            }
        }
    }
    Ok(buf
        .split(|b| *b == 0)
        .filter(|k| !k.is_empty())
        .map(|k| OsStr::from_bytes(k).to_os_string())
        .collect())
}

fn get_xattr(path: &Path, key: &OsStr) -> Result<Option<Vec<u8>>> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    let k = CString::new(key.as_bytes())?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: path and key are NUL-terminated and buf is valid for buf.len() bytes.
        let n =
            unsafe { libc::lgetxattr(c.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(Some(buf));
        }
        match Errno::last() {
            Errno::ERANGE => buf.resize(buf.len() * 16, 0),
            Errno::ENODATA | Errno::ENOTSUP => return Ok(None),
            e => {
                return Err(e)
                    .with_context(|| format!("cannot read xattr {key:?} of {}", path.display()))
            }
        }
    }
}
