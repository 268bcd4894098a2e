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

/// A procfs instance of berth's own, attached nowhere: nothing an image or a volume mounts or
/// plants (symlinks in the rootfs, a mount over /proc/sys, a /proc that is a link) can stand
/// between berth and the file it means to write (CVE-2025-52881). Files are opened beneath it
/// without following any link or crossing any mount, and checked to be procfs files.
pub struct PrivateProc(std::os::fd::OwnedFd);

impl PrivateProc {
    /// Mounts a fresh procfs (fsopen/fsmount, Linux 5.2) for the caller's pid namespace.
    pub fn new() -> anyhow::Result<PrivateProc> {
        use crate::runtime::mount_options::{
            MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID,
        };
        let attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
        let mnt = crate::runtime::mountfd::new_fs("proc", "proc".as_ref(), &[], attrs)?;
        Ok(PrivateProc(mnt))
    }

    /// Opens `rel` (e.g. `sys/net/ipv4/ip_forward`) for writing, beneath this procfs only: no
    /// symlink, magic link or mount crossing is followed, and the file must be on procfs.
    pub fn open_for_write(&self, rel: &str) -> std::io::Result<std::fs::File> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let path = std::ffi::CString::new(rel)
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: open_how is plain data; all-zero is a valid value that we then fill in.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64;
        how.resolve = libc::RESOLVE_BENEATH
            | libc::RESOLVE_NO_SYMLINKS
            | libc::RESOLVE_NO_MAGICLINKS
            | libc::RESOLVE_NO_XDEV;
        // SAFETY: the path is NUL-terminated and `how` outlives the call with its size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.0.as_raw_fd(),
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: openat2 returned a new descriptor that nothing else owns.
        let file = unsafe { std::fs::File::from_raw_fd(fd as i32) };
        let fs = nix::sys::statfs::fstatfs(&file)?;
        if fs.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
            return Err(std::io::Error::other(format!("{rel} is not a procfs file")));
        }
        Ok(file)
    }

    /// Writes `value` to the sysctl `key` (`net.ipv4.ip_forward` or `net/ipv4/ip_forward`) in
    /// the namespaces of the caller.
    pub fn write_sysctl(&self, key: &str, value: &str) -> std::io::Result<()> {
        use std::io::Write;
        let rel = format!("sys/{}", key.replace('.', "/"));
        self.open_for_write(&rel)?.write_all(value.as_bytes())
    }
}
