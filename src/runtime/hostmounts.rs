//! A container without a mount namespace of its own (runtime-spec: a namespace not listed is
//! the runtime's): its rootfs is bound onto itself in the host's mount namespace, its mounts
//! are made under that bind, and it is chrooted there. None of it may outlive the container, so
//! the id of the mount that was on top of the rootfs before is recorded first, and deleting the
//! container detaches everything stacked over it since, even after berth was killed mid-create.
use anyhow::{Context, Result};
use nix::fcntl::OFlag;
use nix::mount::{umount2, MntFlags};
use nix::sys::stat::Mode;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// The id of the mount `path` is on (statx's STATX_MNT_ID, Linux 5.8).
pub fn mount_id(path: &Path) -> Result<u64> {
    let fd = open_path(path)?;
    fd_mount_id(&fd).with_context(|| format!("statx {}", path.display()))
}

fn open_path(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open {}", path.display()))
}

fn fd_mount_id(fd: &OwnedFd) -> std::io::Result<u64> {
    // SAFETY: statx writes into the zeroed struct we own; the empty path with AT_EMPTY_PATH
    // makes it describe the fd itself.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(std::io::Error::other(
            "the kernel gives no mount id (Linux 5.8+)",
        ));
    }
    Ok(stx.stx_mnt_id)
}

/// Detaches every mount stacked on `rootfs` above the one whose id was `base`. Each is
/// identified through an fd of the path's top mount, and detached through that fd, so a
/// path changed meanwhile cannot redirect the unmount.
pub fn detach_above(rootfs: &Path, base: u64) -> Result<()> {
    // Each round removes one mount; a container cannot stack more than a few (the bind and
    // whatever its own processes stacked on it).
    for _ in 0..64 {
        let fd = match open_path(rootfs) {
            Ok(fd) => fd,
            // The bundle is gone: so is anything mounted on it.
            Err(_) => return Ok(()),
        };
        let top = fd_mount_id(&fd).with_context(|| format!("statx {}", rootfs.display()))?;
        if top == base {
            return Ok(());
        }
        let via = format!("/proc/self/fd/{}", fd.as_raw_fd());
        umount2(via.as_str(), MntFlags::MNT_DETACH).with_context(|| {
            format!("cannot detach the container's bind of {}", rootfs.display())
        })?;
    }
    anyhow::bail!("{}: still mounted over after 64 detaches", rootfs.display())
}
