//! The container's root filesystem: mounts, devices, pivot_root, masked and read-only paths.
//!
//! Everything before `pivot_root` resolves destinations with [`inroot`], so nothing the rootfs
//! holds can send a mount outside it; after `pivot_root` the container's `/` is the root and
//! plain paths are safe.

use crate::runtime::devices::{self, DevicePlan};
use crate::runtime::inroot::{self, fd_path, Create};
use crate::runtime::mount_options::{
    mount_flags_of_fd, parse_mount_options, MountOptions, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC,
    MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY,
};
use anyhow::{bail, Context, Result};
use nix::fcntl::{openat, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{mkdirat, Mode};
use oci_spec::runtime::Spec;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// One entry of `mounts`, checked and with its options parsed (in the parent).
pub struct MountPlan {
    pub index: usize,
    pub destination: PathBuf,
    pub typ: String,
    pub source: Option<PathBuf>,
    pub options: MountOptions,
}

/// Everything the child needs to build the root filesystem.
pub struct RootfsPlan {
    pub rootfs: PathBuf,
    pub mounts: Vec<MountPlan>,
    /// Propagation applied to `/` recursively before anything is mounted.
    pub root_propagation: MsFlags,
    /// Propagation for `/` after pivot_root, for a shared rootfsPropagation.
    pub propagation_after_pivot: Option<MsFlags>,
    pub readonly_root: bool,
    pub masked_paths: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    pub devices: Vec<DevicePlan>,
    /// False when /dev is bind-mounted from the host: then it already has its devices.
    pub populate_dev: bool,
    /// In a user namespace mknod is not allowed: devices are bind-mounted from the host.
    pub bind_devices: bool,
    pub no_pivot: bool,
    pub cwd: PathBuf,
    /// For a `cgroup` mount: each hierarchy's directory name and the container's cgroup in it.
    pub cgroup_binds: Vec<(String, PathBuf)>,
}

impl RootfsPlan {
    pub fn new(
        spec: &Spec,
        bundle_dir: &Path,
        rootfs: &Path,
        cgroup_binds: Vec<(String, PathBuf)>,
        bind_devices: bool,
        no_pivot: bool,
    ) -> Result<RootfsPlan> {
        let linux = spec.linux().as_ref();
        let mut mounts = Vec::new();
        for (index, m) in spec.mounts().iter().flatten().enumerate() {
            let field = format!("mounts[{index}]");
            let options = parse_mount_options(
                m.options().as_deref().unwrap_or_default(),
                &format!("{field}.options"),
            )?;
            let typ = m.typ().clone().unwrap_or_default();
            let is_bind = options.is_bind || typ == "bind";
            // A relative bind source is a path in the bundle (runc runs in the bundle dir);
            // any other source ("proc", "tmpfs", a device) goes to mount(2) as it is.
            let source = m.source().as_ref().map(|s| {
                if is_bind && s.is_relative() {
                    bundle_dir.join(s)
                } else {
                    s.clone()
                }
            });
            if is_bind {
                let src = source
                    .as_ref()
                    .with_context(|| format!("{field}.source: a bind mount needs a source"))?;
                std::fs::metadata(src)
                    .with_context(|| format!("{field}.source: {}", src.display()))?;
            } else if typ.is_empty() {
                bail!("{field}.type: missing (and the options hold no bind)");
            }
            let mut options = options;
            if is_bind && !options.is_bind {
                options.make_bind();
            }
            if options.idmap || options.idmap_recursive {
                bail!("{field}.options: idmap mounts are not supported by this berth yet");
            }
            mounts.push(MountPlan {
                index,
                destination: m.destination().clone(),
                typ,
                source,
                options,
            });
        }
        let (root_propagation, propagation_after_pivot) =
            match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
                None | Some("") => (MsFlags::MS_SLAVE | MsFlags::MS_REC, None),
                Some("private") => (MsFlags::MS_PRIVATE, None),
                Some("rprivate") => (MsFlags::MS_PRIVATE | MsFlags::MS_REC, None),
                Some("slave") => (MsFlags::MS_SLAVE, None),
                Some("rslave") => (MsFlags::MS_SLAVE | MsFlags::MS_REC, None),
                Some("unbindable") => (MsFlags::MS_UNBINDABLE, None),
                Some("runbindable") => (MsFlags::MS_UNBINDABLE | MsFlags::MS_REC, None),
                // pivot_root refuses a shared parent: share only once the root is pivoted.
                Some("shared") => (
                    MsFlags::MS_SLAVE | MsFlags::MS_REC,
                    Some(MsFlags::MS_SHARED),
                ),
                Some("rshared") => (
                    MsFlags::MS_SLAVE | MsFlags::MS_REC,
                    Some(MsFlags::MS_SHARED | MsFlags::MS_REC),
                ),
                Some(other) => bail!("linux.rootfsPropagation: unknown propagation {other:?}"),
            };
        let populate_dev = !mounts
            .iter()
            .any(|m| m.destination == Path::new("/dev") && m.options.is_bind);
        let devices = if populate_dev {
            devices::plan(linux.and_then(|l| l.devices().as_deref()))?
        } else {
            Vec::new()
        };
        let paths = |v: Option<&Vec<String>>| {
            v.into_iter()
                .flatten()
                .map(PathBuf::from)
                .collect::<Vec<_>>()
        };
        Ok(RootfsPlan {
            rootfs: rootfs.to_path_buf(),
            mounts,
            root_propagation,
            propagation_after_pivot,
            readonly_root: spec
                .root()
                .as_ref()
                .and_then(|r| r.readonly())
                .unwrap_or(false),
            masked_paths: paths(linux.and_then(|l| l.masked_paths().as_ref())),
            readonly_paths: paths(linux.and_then(|l| l.readonly_paths().as_ref())),
            devices,
            populate_dev,
            bind_devices,
            no_pivot,
            cwd: spec
                .process()
                .as_ref()
                .map(|p| p.cwd().clone())
                .unwrap_or_else(|| PathBuf::from("/")),
            cgroup_binds,
        })
    }
}

/// Child, in its new mount namespace: everything up to (not including) pivot_root.
/// Returns an fd of the new root for [`pivot`].
pub fn prepare(plan: &RootfsPlan) -> Result<OwnedFd> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        plan.root_propagation,
        None::<&str>,
    )
    .context("cannot set the propagation of /")?;
    // After a recursive slave, private or unbindable, no mount is shared any more.
    if !plan.root_propagation.contains(MsFlags::MS_REC) {
        make_parent_mount_private(&plan.rootfs)?;
    }
    // pivot_root needs the new root to be a mount point.
    mount(
        Some(&plan.rootfs),
        &plan.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("root.path: cannot bind-mount {}", plan.rootfs.display()))?;
    let root: OwnedFd = std::fs::File::open(&plan.rootfs)
        .with_context(|| format!("root.path: {}", plan.rootfs.display()))?
        .into();
    for m in &plan.mounts {
        mount_entry(&root, m, plan)
            .with_context(|| format!("mounts[{}] ({})", m.index, m.destination.display()))?;
    }
    if plan.populate_dev {
        devices::populate(&root, &plan.devices, plan.bind_devices)?;
    }
    inroot::resolve(root.as_fd(), &plan.cwd, Create::Dir)
        .with_context(|| format!("process.cwd: {}", plan.cwd.display()))?;
    Ok(root)
}

/// pivot_root refuses a new root whose parent mount is shared, which a non-recursive
/// rootfsPropagation (or a bundle on a shared mount) can leave: make just that mount private
/// in our mount namespace.
fn make_parent_mount_private(rootfs: &Path) -> Result<()> {
    let mountinfo = crate::runtime::procfs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo")?;
    let mut best: Option<(&str, bool)> = None;
    for line in mountinfo.lines() {
        let Some((left, _)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        if fields.len() < 6 {
            continue;
        }
        let mount_point = fields[4];
        let shared = fields[6..].iter().any(|f| f.starts_with("shared:"));
        if rootfs.starts_with(mount_point) && best.is_none_or(|(b, _)| mount_point.len() >= b.len())
        {
            best = Some((mount_point, shared));
        }
    }
    if let Some((mount_point, true)) = best {
        mount(
            None::<&str>,
            mount_point,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .with_context(|| format!("cannot make {mount_point} private for pivot_root"))?;
    }
    Ok(())
}

fn mount_entry(root: &OwnedFd, m: &MountPlan, plan: &RootfsPlan) -> Result<()> {
    let o = &m.options;
    if m.typ == "cgroup" && !o.is_bind {
        return mount_cgroup(root, m, plan);
    }
    if o.flags.contains(MsFlags::MS_REMOUNT) {
        // A remount entry changes a mount made earlier in the list.
        let dest = inroot::resolve(root.as_fd(), &m.destination, Create::Nothing)?;
        let data = (!o.data.is_empty()).then_some(o.data.as_str());
        return mount(None::<&str>, &fd_path(&dest), None::<&str>, o.flags, data)
            .context("cannot remount");
    }
    if o.is_bind {
        let src = m.source.as_ref().expect("checked in RootfsPlan::new");
        let create = if std::fs::metadata(src)?.is_dir() {
            Create::Dir
        } else {
            Create::File
        };
        let dest = inroot::resolve(root.as_fd(), &m.destination, create)?;
        let mut flags = MsFlags::MS_BIND;
        if o.recursive {
            flags |= MsFlags::MS_REC;
        }
        mount(
            Some(src),
            &fd_path(&dest),
            None::<&str>,
            flags,
            None::<&str>,
        )
        .with_context(|| format!("cannot bind {}", src.display()))?;
        if o.needs_remount {
            let fd = inroot::resolve(root.as_fd(), &m.destination, Create::Nothing)?;
            let flags = o.remount_flags(mount_flags_of_fd(fd.as_fd())?);
            mount(
                None::<&str>,
                &fd_path(&fd),
                None::<&str>,
                flags,
                None::<&str>,
            )
            .context("cannot remount bind mount")?;
        }
    } else {
        let dest = inroot::resolve(root.as_fd(), &m.destination, Create::Dir)?;
        let source = m.source.as_deref().unwrap_or(Path::new(&m.typ));
        let data = (!o.data.is_empty()).then_some(o.data.as_str());
        mount(
            Some(source),
            &fd_path(&dest),
            Some(m.typ.as_str()),
            o.flags,
            data,
        )
        .with_context(|| format!("cannot mount {} ({})", m.typ, data.unwrap_or("")))?;
    }
    set_propagation(root, &m.destination, &o.propagation)?;
    if !o.recursive_attrs.is_empty() {
        let fd = inroot::resolve(root.as_fd(), &m.destination, Create::Nothing)?;
        mount_setattr_recursive(&fd, o.recursive_attrs.attr_set, o.recursive_attrs.attr_clr)?;
    }
    Ok(())
}

/// runc's recursive options (`rro`, `rnosuid`, ...): mount_setattr(2) with AT_RECURSIVE.
fn mount_setattr_recursive(fd: &OwnedFd, set: u64, clear: u64) -> Result<()> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(fd);
    mount_setattr(
        fd,
        c"",
        libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
        set,
        clear,
    )
    .context("mount_setattr (recursive mount options)")
}

/// Sets `attrs` on the mount at `path` and every mount below it.
fn mount_setattr_at(path: &Path, attrs: u64) -> Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    mount_setattr(libc::AT_FDCWD, &c, libc::AT_RECURSIVE, attrs, 0)
        .with_context(|| format!("mount_setattr {}", path.display()))
}

fn mount_setattr(
    dirfd: libc::c_int,
    path: &std::ffi::CStr,
    flags: libc::c_int,
    set: u64,
    clear: u64,
) -> std::io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is a NUL-terminated string and `attr` a mount_attr; both outlive the
    // call, and the struct's size is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Re-applies flags to a bind mount (the kernel ignores them on the first MS_BIND). Flags the
/// kernel locked on the source (nosuid, nodev, noexec in a user namespace) are kept.
fn remount(root: &OwnedFd, dest: &Path, flags: MsFlags) -> Result<()> {
    let fd = inroot::resolve(root.as_fd(), dest, Create::Nothing)?;
    let base = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    let want = (flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT)) | base;
    match mount(
        None::<&str>,
        &fd_path(&fd),
        None::<&str>,
        want,
        None::<&str>,
    ) {
        Err(nix::errno::Errno::EPERM) => {
            let locked = locked_flags(&fd)?;
            mount(
                None::<&str>,
                &fd_path(&fd),
                None::<&str>,
                want | locked,
                None::<&str>,
            )
            .context("cannot remount bind mount")
        }
        r => r.context("cannot remount bind mount"),
    }
}

fn locked_flags(fd: &OwnedFd) -> Result<MsFlags> {
    let st = nix::sys::statvfs::fstatvfs(fd)?;
    let f = st.flags();
    use nix::sys::statvfs::FsFlags;
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    Ok(out)
}

fn set_propagation(root: &OwnedFd, dest: &Path, propagation: &[MsFlags]) -> Result<()> {
    if propagation.is_empty() {
        return Ok(());
    }
    let fd = inroot::resolve(root.as_fd(), dest, Create::Nothing)?;
    for p in propagation {
        mount(None::<&str>, &fd_path(&fd), None::<&str>, *p, None::<&str>)
            .context("cannot set mount propagation")?;
    }
    Ok(())
}

/// A `cgroup` mount shows the container its own cgroups: on a v2-only host its cgroup2
/// directory; otherwise a tmpfs holding one directory per hierarchy, each a bind of the
/// container's cgroup in that hierarchy. Binds work the same with or without a cgroup
/// namespace and inside a user namespace, where mounting cgroup v1 is not allowed.
fn mount_cgroup(root: &OwnedFd, m: &MountPlan, plan: &RootfsPlan) -> Result<()> {
    let o = &m.options;
    let dest = inroot::resolve(root.as_fd(), &m.destination, Create::Dir)?;
    let bind_flags = MsFlags::MS_BIND | MsFlags::MS_REC;
    if let [(name, dir)] = plan.cgroup_binds.as_slice() {
        if name.is_empty() {
            mount(
                Some(dir),
                &fd_path(&dest),
                None::<&str>,
                bind_flags,
                None::<&str>,
            )
            .context("cannot bind the container's cgroup")?;
            return remount(
                root,
                &m.destination,
                o.flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            );
        }
    }
    let tmpfs_flags = o.flags & !MsFlags::MS_RDONLY;
    mount(
        Some("tmpfs"),
        &fd_path(&dest),
        Some("tmpfs"),
        tmpfs_flags,
        Some("mode=755"),
    )
    .context("cannot mount tmpfs for cgroups")?;
    // The tmpfs is new and ours, so its directories are made and opened directly in it.
    let tmpfs = inroot::resolve(root.as_fd(), &m.destination, Create::Nothing)?;
    for (name, dir) in &plan.cgroup_binds {
        mkdirat(&tmpfs, name.as_str(), Mode::from_bits_truncate(0o755))
            .with_context(|| format!("cannot make {name} in the cgroup tmpfs"))?;
        let subfd = openat(
            &tmpfs,
            name.as_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open {name} in the cgroup tmpfs"))?;
        mount(
            Some(dir),
            &fd_path(&subfd),
            None::<&str>,
            bind_flags,
            None::<&str>,
        )
        .with_context(|| format!("cannot bind {}", dir.display()))?;
    }
    // One recursive mount_setattr gives the tmpfs and every bind their flags; kernels before
    // 5.12 take a remount per bind.
    let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    if o.flags.contains(MsFlags::MS_RDONLY) {
        attrs |= MOUNT_ATTR_RDONLY;
    }
    // `tmpfs` still holds the tmpfs's root: the call covers the binds made below it.
    if mount_setattr_recursive(&tmpfs, attrs, 0).is_ok() {
        return Ok(());
    }
    for (name, _) in &plan.cgroup_binds {
        remount(
            root,
            &m.destination.join(name),
            o.flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        )?;
    }
    if o.flags.contains(MsFlags::MS_RDONLY) {
        let fd = inroot::resolve(root.as_fd(), &m.destination, Create::Nothing)?;
        mount(
            None::<&str>,
            &fd_path(&fd),
            None::<&str>,
            MsFlags::MS_REMOUNT | tmpfs_flags | MsFlags::MS_RDONLY,
            Some("mode=755"),
        )
        .context("cannot make the cgroup tmpfs read-only")?;
    }
    Ok(())
}

/// Makes the prepared root the process's `/`, and lets go of the host's root.
pub fn pivot(root: &OwnedFd, plan: &RootfsPlan) -> Result<()> {
    nix::unistd::fchdir(root).context("cannot enter the rootfs")?;
    if plan.no_pivot {
        return move_root();
    }
    match nix::unistd::pivot_root(".", ".") {
        Ok(()) => {}
        // The host root is an initramfs (ramfs), which cannot be pivoted away from.
        Err(nix::errno::Errno::EINVAL) => return move_root(),
        Err(e) => return Err(e).context("pivot_root failed"),
    }
    // The old root now sits on top of "."; detach it without its unmount reaching the host.
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .context("cannot make the old root a slave")?;
    umount2(".", MntFlags::MNT_DETACH).context("cannot detach the old root")?;
    nix::unistd::chdir("/").context("chdir / in the new root")?;
    if let Some(p) = plan.propagation_after_pivot {
        mount(None::<&str>, "/", None::<&str>, p, None::<&str>)
            .context("linux.rootfsPropagation: cannot share /")?;
    }
    Ok(())
}

/// `--no-pivot`: move the rootfs mount over `/` and chroot into it.
fn move_root() -> Result<()> {
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .context("cannot move the rootfs onto /")?;
    nix::unistd::chroot(".").context("chroot")?;
    nix::unistd::chdir("/").context("chdir / in the new root")?;
    Ok(())
}

/// After pivot_root: read-only paths, masked paths, then the read-only root.
pub fn finish(plan: &RootfsPlan) -> Result<()> {
    for p in &plan.readonly_paths {
        readonly_path(p).with_context(|| format!("linux.readonlyPaths: {}", p.display()))?;
    }
    for p in &plan.masked_paths {
        mask_path(p).with_context(|| format!("linux.maskedPaths: {}", p.display()))?;
    }
    if plan.readonly_root {
        let fd: OwnedFd = std::fs::File::open("/")?.into();
        let flags =
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(&fd)?;
        mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
            .context("root.readonly: cannot remount / read-only")?;
    }
    Ok(())
}

fn readonly_path(p: &Path) -> Result<()> {
    match mount(
        Some(p),
        p,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        r => r.context("cannot bind")?,
    }
    // mount_setattr changes only the read-only flag, on the bind and every mount below it,
    // and keeps the flags the kernel locked; kernels before 5.12 take a remount.
    if mount_setattr_at(p, MOUNT_ATTR_RDONLY).is_ok() {
        return Ok(());
    }
    let fd: OwnedFd = std::fs::File::open(p)?.into();
    let flags = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | MsFlags::MS_REC
        | locked_flags(&fd)?;
    mount(None::<&str>, p, None::<&str>, flags, None::<&str>).context("cannot remount read-only")
}

/// Masks a path: /dev/null over a file, an empty read-only tmpfs over a directory.
fn mask_path(p: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let r = if meta.is_dir() {
        mount(
            Some("tmpfs"),
            p,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        mount(
            Some("/dev/null"),
            p,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    match r {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e).context("cannot mask"),
    }
}
