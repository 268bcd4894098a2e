//! Device nodes in the container's /dev: the defaults every container gets, `linux.devices`,
//! and the standard /dev symlinks.

use crate::runtime::inroot::{self, fd_path, Create};
use anyhow::{bail, Context, Result};
use nix::fcntl::AtFlags;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fchmodat, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{fchownat, unlinkat, UnlinkatFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

pub struct DevicePlan {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The devices every container has (runtime-spec "Default Devices").
const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

pub fn plan(extra: Option<&[LinuxDevice]>) -> Result<Vec<DevicePlan>> {
    let mut out: Vec<DevicePlan> = DEFAULT_DEVICES
        .iter()
        .map(|(p, major, minor)| DevicePlan {
            path: PathBuf::from(p),
            kind: SFlag::S_IFCHR,
            major: *major,
            minor: *minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect();
    for (i, d) in extra.unwrap_or_default().iter().enumerate() {
        let field = format!("linux.devices[{i}]");
        if !d.path().is_absolute()
            || d.path()
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            bail!(
                "{field}.path: {:?} must be absolute without ..",
                d.path().display()
            );
        }
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => bail!("{field}.type: \"a\" is not a device type (c, b, u or p)"),
        };
        if d.major() < 0 || d.minor() < 0 {
            bail!("{field}: major and minor must not be negative");
        }
        let mode = d.file_mode().unwrap_or(0o666);
        if mode & !0o7777 != 0 {
            bail!("{field}.fileMode: {mode:#o} has bits beyond the permission bits");
        }
        let plan = DevicePlan {
            path: d.path().clone(),
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        };
        // A config device replaces a default one of the same path.
        out.retain(|o| o.path != plan.path);
        out.push(plan);
    }
    Ok(out)
}

/// Creates the devices and symlinks under the (not yet pivoted) root.
///
/// Called with the umask at 0 (the birth clears it before the mounts), so mknod gives a node
/// exactly the spec's permission bits, and by root, whose nodes are root's already: chmod and
/// chown are needed only beyond that.
pub fn populate(root: &OwnedFd, devices: &[DevicePlan], bind_from_host: bool) -> Result<()> {
    let by_root = nix::unistd::geteuid().is_root() && nix::unistd::getegid().as_raw() == 0;
    // The devices are mostly in one directory: it is looked up once.
    let mut last_dir: Option<(&Path, OwnedFd)> = None;
    for d in devices {
        let field = || format!("device {}", d.path.display());
        let (parent, name) = split(&d.path)?;
        if last_dir.as_ref().is_none_or(|(p, _)| *p != parent) {
            let fd = inroot::resolve(root.as_fd(), parent, Create::Dir).with_context(field)?;
            last_dir = Some((parent, fd));
        }
        let dir = &last_dir.as_ref().expect("set above").1;
        if bind_from_host {
            remove_existing(dir, name, &d.path)?;
            // mknod is refused in a user namespace: bind the host's node instead.
            let target =
                inroot::resolve(root.as_fd(), &d.path, Create::File).with_context(field)?;
            mount(
                Some(&d.path),
                &fd_path(&target),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .with_context(|| format!("cannot bind host device {}", d.path.display()))?;
            continue;
        }
        let dev = libc::makedev(d.major as u32, d.minor as u32);
        let mode = Mode::from_bits_truncate(d.mode);
        match mknodat(dir, name, d.kind, mode, dev) {
            // The rootfs's own /dev may hold a node (or anything) there already.
            Err(nix::errno::Errno::EEXIST) => {
                remove_existing(dir, name, &d.path)?;
                mknodat(dir, name, d.kind, mode, dev)
            }
            r => r,
        }
        .with_context(|| format!("cannot mknod {}", d.path.display()))?;
        if d.mode & 0o7000 != 0 {
            // Set-id and sticky bits are not all kept by mknod.
            fchmodat(dir, name, mode, FchmodatFlags::NoFollowSymlink)
                .with_context(|| format!("cannot chmod {}", d.path.display()))?;
        }
        if !(by_root && d.uid == 0 && d.gid == 0) {
            fchownat(
                dir,
                name,
                Some(d.uid.into()),
                Some(d.gid.into()),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .with_context(|| format!("cannot chown {}", d.path.display()))?;
        }
    }
    let dev = inroot::resolve(root.as_fd(), Path::new("/dev"), Create::Dir)?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        match nix::unistd::symlinkat(target, &dev, name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create /dev/{name}")),
        }
    }
    // /dev/ptmx must be the container's own devpts instance, not the host's.
    let _ = unlinkat(&dev, "ptmx", UnlinkatFlags::NoRemoveDir);
    nix::unistd::symlinkat("pts/ptmx", &dev, "ptmx").context("cannot create /dev/ptmx")?;
    Ok(())
}

fn remove_existing(dir: &OwnedFd, name: &std::ffi::OsStr, path: &Path) -> Result<()> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot replace {}", path.display())),
    }
}

fn split(path: &Path) -> Result<(&Path, &std::ffi::OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => Ok((p, n)),
        _ => bail!("{}: not a device path", path.display()),
    }
}
