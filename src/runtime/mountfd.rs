//! The new mount API (Linux 5.2+, mount_setattr 5.12+), on descriptors.
//!
//! A mount is made detached (`open_tree(OPEN_TREE_CLONE)` for a bind, `fsopen` + `fsmount` for
//! a new filesystem), given its attributes while nothing can see it, then attached with
//! `move_mount` onto a destination the caller holds as an fd. Whatever is done to it later
//! (propagation, attributes) is done through the same mount fd. No step looks a path up again,
//! so nothing in a container's rootfs can redirect a step to another mount between two of them.

use anyhow::{Context, Result};
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

// From linux/mount.h (not in the libc crate).
pub const OPEN_TREE_CLONE: libc::c_uint = 1;
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x0000_0004;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x0000_0040;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_SET_FD: libc::c_uint = 5;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;

/// What a missing syscall means for the user.
fn os_error(call: &str, since: &str) -> anyhow::Error {
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOSYS) {
        anyhow::anyhow!("{call}: not supported by this kernel (berth needs Linux {since} or later)")
    } else {
        anyhow::Error::new(e).context(call.to_string())
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the caller passes a descriptor a syscall has just returned to us; nothing else
    // owns it.
    unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) }
}

/// A detached copy of the mount at `path` (resolved from `dir`, following symlinks like
/// mount(2) does for a bind source), and of every mount below it when `recursive`.
pub fn clone_tree(dir: Option<BorrowedFd>, path: &Path, recursive: bool) -> Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .with_context(|| format!("{}: path holds a NUL byte", path.display()))?;
    let mut flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    open_tree(dirfd, &c, flags)
}

/// A detached copy of the mount (and with `recursive` the mounts below) at what `fd` holds.
pub fn clone_fd(fd: BorrowedFd, recursive: bool) -> Result<OwnedFd> {
    let mut flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    open_tree(fd.as_raw_fd(), c"", flags)
}

fn open_tree(dirfd: libc::c_int, path: &CStr, flags: libc::c_uint) -> Result<OwnedFd> {
    // SAFETY: `path` is NUL-terminated and outlives the call; the flags are plain values.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) };
    if r < 0 {
        return Err(os_error("open_tree", "5.2"));
    }
    Ok(owned(r))
}

/// Attaches the detached mount `mnt` onto exactly what `target` holds.
pub fn attach(mnt: BorrowedFd, target: BorrowedFd) -> Result<()> {
    // SAFETY: both descriptors are open for the call; the paths are empty C strings.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(os_error("move_mount", "5.2"));
    }
    Ok(())
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttrArg {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Sets and clears `MOUNT_ATTR_*` bits on the mount `mnt` is the root of (attached or not),
/// and on every mount below it when `recursive`. Bits not named keep their value, which also
/// keeps the ones the kernel locked in a user namespace.
pub fn set_attrs(mnt: BorrowedFd, set: u64, clear: u64, recursive: bool) -> Result<()> {
    mount_setattr(mnt, set, clear, 0, recursive).context("mount_setattr")
}

/// Changes the propagation of the mount `mnt` is the root of: one of `MS_SHARED`,
/// `MS_SLAVE`, `MS_PRIVATE`, `MS_UNBINDABLE`, optionally with `MS_REC`.
pub fn set_propagation(mnt: BorrowedFd, flags: nix::mount::MsFlags) -> Result<()> {
    use nix::mount::MsFlags;
    let recursive = flags.contains(MsFlags::MS_REC);
    let kind = (flags - MsFlags::MS_REC).bits();
    mount_setattr(mnt, 0, 0, kind, recursive).context("mount_setattr (propagation)")
}

fn mount_setattr(
    mnt: BorrowedFd,
    set: u64,
    clear: u64,
    propagation: u64,
    recursive: bool,
) -> Result<()> {
    let attr = MountAttrArg {
        attr_set: set,
        attr_clr: clear,
        propagation,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: `attr` is a mount_attr that outlives the call, its size passed; the path is an
    // empty C string and the descriptor is open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttrArg,
            std::mem::size_of::<MountAttrArg>(),
        )
    };
    if r < 0 {
        return Err(os_error("mount_setattr", "5.12"));
    }
    Ok(())
}

/// One parameter of a new filesystem: a flag (`newinstance`) or a key with a value
/// (`mode=755`).
pub enum FsParam<'a> {
    Flag(&'a str),
    Value(&'a str, &'a str),
    /// A key whose value is an open file (procfs's `pidns`, Linux 6.15).
    Fd(&'a str, BorrowedFd<'a>),
}

/// A new, detached mount of a new filesystem instance of `fstype` (`fsopen`, `fsconfig`,
/// `fsmount`), with mount attributes `attrs` (`MOUNT_ATTR_*`) set before anyone can see it.
pub fn new_fs(
    fstype: &str,
    source: &std::ffi::OsStr,
    params: &[FsParam],
    attrs: u64,
) -> Result<OwnedFd> {
    let c_type = CString::new(fstype).context("type holds a NUL byte")?;
    // SAFETY: `c_type` is NUL-terminated and outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_fsopen, c_type.as_ptr(), FSOPEN_CLOEXEC) };
    if r < 0 {
        return Err(os_error("fsopen", "5.2").context(format!("filesystem type {fstype:?}")));
    }
    let fs = owned(r);
    let source = source.as_encoded_bytes();
    fsconfig(&fs, FSCONFIG_SET_STRING, Some("source"), Some(source))?;
    for p in params {
        match p {
            FsParam::Flag(k) => fsconfig(&fs, FSCONFIG_SET_FLAG, Some(k), None)?,
            FsParam::Value(k, v) => {
                fsconfig(&fs, FSCONFIG_SET_STRING, Some(k), Some(v.as_bytes()))?
            }
            FsParam::Fd(k, fd) => fsconfig_fd(&fs, k, *fd)
                .map_err(|e| with_fs_log(&fs, anyhow::Error::new(e)))
                .with_context(|| format!("option {k}"))?,
        }
    }
    fsconfig(&fs, FSCONFIG_CMD_CREATE, None, None)?;
    // SAFETY: the descriptor is open; flags and attributes are plain values.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            attrs as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(with_fs_log(&fs, os_error("fsmount", "5.2")));
    }
    Ok(owned(r))
}

fn fsconfig(
    fs: &OwnedFd,
    cmd: libc::c_uint,
    key: Option<&str>,
    value: Option<&[u8]>,
) -> Result<()> {
    let c_key = key.map(CString::new).transpose()?;
    let c_value = value.map(CString::new).transpose()?;
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: the key and value are NUL-terminated (or null where the command takes none) and
    // outlive the call; the descriptor is an open fs context.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            cmd,
            ptr(&c_key),
            ptr(&c_value),
            0 as libc::c_int,
        )
    };
    if r < 0 {
        let what = match (key, value) {
            (Some("source"), Some(v)) => {
                format!("source {:?}", String::from_utf8_lossy(v))
            }
            (Some(k), Some(v)) => format!("option {k}={}", String::from_utf8_lossy(v)),
            (Some(k), None) => format!("option {k}"),
            _ => "creating the filesystem".to_string(),
        };
        return Err(with_fs_log(fs, os_error("fsconfig", "5.2")).context(what));
    }
    Ok(())
}

/// fsconfig(FSCONFIG_SET_FD): `key` takes the open file `fd`.
fn fsconfig_fd(fs: &OwnedFd, key: &str, fd: BorrowedFd) -> std::io::Result<()> {
    let c_key = CString::new(key)?;
    // SAFETY: the key is NUL-terminated and outlives the call; both descriptors are open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_FD,
            c_key.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            fd.as_raw_fd(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether a new procfs can be made for the pid namespace `pidns` is open on, rather than the
/// mounter's (the `pidns` option, Linux 6.15): asked of a filesystem context that is then
/// dropped, before any superblock exists (two syscalls).
pub fn procfs_takes_pidns(pidns: BorrowedFd) -> bool {
    // SAFETY: the type is a NUL-terminated literal.
    let r = unsafe { libc::syscall(libc::SYS_fsopen, c"proc".as_ptr(), FSOPEN_CLOEXEC) };
    if r < 0 {
        return false;
    }
    fsconfig_fd(&owned(r), "pidns", pidns).is_ok()
}

/// Adds what the filesystem said about the failure (the fs context's message log) to `e`.
fn with_fs_log(fs: &OwnedFd, e: anyhow::Error) -> anyhow::Error {
    let mut buf = [0u8; 512];
    let mut said = Vec::new();
    loop {
        match nix::unistd::read(fs, &mut buf) {
            Ok(n) if n > 0 => {
                let line = String::from_utf8_lossy(&buf[..n]);
                // "e tmpfs: Bad value for 'mode'": drop the severity letter.
                said.push(line.get(2..).unwrap_or(&line).trim().to_string());
            }
            _ => break,
        }
    }
    if said.is_empty() {
        e
    } else {
        e.context(said.join("; "))
    }
}

/// Splits mount data (`mode=755,size=65536k,newinstance`) into parameters the way mount(2)
/// hands them to a filesystem, except that a ',' inside double quotes (SELinux labels such
/// as `context="system_u:object_r:t:s0:c1,c2"`) does not split.
pub fn split_data(data: &str) -> Vec<FsParam<'_>> {
    let mut items = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, b) in data.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                items.push(&data[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&data[start..]);
    items
        .into_iter()
        .filter_map(|item| match item.split_once('=') {
            _ if item.is_empty() => None,
            Some(("", _)) => None,
            Some((k, v)) => Some(FsParam::Value(k, v)),
            None => Some(FsParam::Flag(item)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(params: &[FsParam]) -> Vec<String> {
        params
            .iter()
            .map(|p| match p {
                FsParam::Flag(k) => k.to_string(),
                FsParam::Value(k, v) => format!("{k}={v}"),
                FsParam::Fd(k, fd) => format!("{k}=fd:{}", fd.as_raw_fd()),
            })
            .collect()
    }

    #[test]
    fn data_splits_like_the_kernel() {
        assert_eq!(
            show(&split_data("mode=755,size=65536k,newinstance")),
            ["mode=755", "size=65536k", "newinstance"]
        );
        assert!(split_data("").is_empty());
        assert_eq!(show(&split_data(",a,,=b,c=")), ["a", "c="]);
        assert_eq!(
            show(&split_data(r#"context="u:r:t:s0:c1,c2",mode=1777"#)),
            [r#"context="u:r:t:s0:c1,c2""#, "mode=1777"]
        );
    }
}
