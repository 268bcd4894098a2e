//! The container's root filesystem: mounts, devices, pivot_root, masked and read-only paths.
//!
//! Every path inside the rootfs is resolved with [`inroot`] (symlinks kept inside the root,
//! magic links refused) into an fd, and every mount is made detached, given all its attributes
//! and attached onto that fd ([`mountfd`]): no step looks a destination up a second time, so a
//! symlink or a rename in the rootfs cannot send a later step to another place. A destination
//! that lands inside /proc is refused, as runc does.

use crate::runtime::devices::{self, DevicePlan};
use crate::runtime::inroot::{self, fd_path, Create};
use crate::runtime::mount_options::{
    new_mount_attrs, parse_mount_options, plain_attrs_of, superblock_params, MountOptions,
    MOUNT_ATTR_RDONLY,
};
use crate::runtime::mountfd::{self, FsParam};
use crate::runtime::spec;
use anyhow::{bail, Context, Result};
use nix::fcntl::{openat, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstat, fstatat, mkdirat, Mode, SFlag};
use oci_spec::runtime::Spec;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
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
    /// The bundle directory and `root.path` as written: the child opens the rootfs again
    /// with [`spec::open_rootfs`] in its own mount namespace.
    pub bundle_dir: PathBuf,
    pub root_path: PathBuf,
    /// Device and inode of the rootfs the parent checked; the child's must be the same.
    pub rootfs_id: (u64, u64),
    pub mounts: Vec<MountPlan>,
    /// Propagation applied to `/` recursively before anything is mounted.
    pub root_propagation: MsFlags,
    /// Propagation for `/` once everything is mounted: shared (pivot_root refuses a shared
    /// parent) and unbindable (an unbindable mount cannot be bound).
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
    /// No mount namespace of the container's own: nothing may change the host's propagation,
    /// and the root is entered with chroot (pivot_root would move the host's root).
    pub host_mount_ns: bool,
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
        let root_path = spec
            .root()
            .as_ref()
            .context("root: missing")?
            .path()
            .clone();
        let rootfs_id = file_id(&spec::open_rootfs(bundle_dir, &root_path)?)?;
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
                // An unbindable mount cannot be bound, and the rootfs is bound onto itself:
                // unbindable only once the root is pivoted (runc fails here with EINVAL).
                Some("unbindable") => (
                    MsFlags::MS_SLAVE | MsFlags::MS_REC,
                    Some(MsFlags::MS_UNBINDABLE),
                ),
                Some("runbindable") => (
                    MsFlags::MS_SLAVE | MsFlags::MS_REC,
                    Some(MsFlags::MS_UNBINDABLE | MsFlags::MS_REC),
                ),
                // pivot_root refuses a shared parent: shared only once the root is pivoted.
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
            bundle_dir: bundle_dir.to_path_buf(),
            root_path,
            rootfs_id,
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
            host_mount_ns: !linux
                .and_then(|l| l.namespaces().as_ref())
                .is_some_and(|n| {
                    n.iter()
                        .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Mount)
                }),
            cwd: spec
                .process()
                .as_ref()
                .map(|p| p.cwd().clone())
                .unwrap_or_else(|| PathBuf::from("/")),
            cgroup_binds,
        })
    }
}

fn file_id(fd: &OwnedFd) -> Result<(u64, u64)> {
    let st = fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// A fault of the config field named in the text itself (`mounts[3].destination: ...`),
/// passed on without a second name in front.
#[derive(Debug)]
struct FieldError(String);

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FieldError {}

fn field_error(text: String) -> anyhow::Error {
    anyhow::Error::new(FieldError(text))
}

/// Child, in its new mount namespace: everything up to (not including) pivot_root.
/// Returns an fd of the new root for [`pivot`].
///
/// `proc_pidns`: the pid namespace every `proc` mount is for, when it is not the caller's
/// (a joined pid namespace the caller does not enter itself: procfs's `pidns` option).
pub fn prepare(plan: &RootfsPlan, proc_pidns: Option<BorrowedFd>) -> Result<OwnedFd> {
    if !plan.host_mount_ns {
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
    }
    // pivot_root needs the new root to be a mount point: the rootfs is bound onto itself. It is
    // opened again here, in this mount namespace, by the rules the parent checked, and must be
    // the directory the parent saw; the bind is made from and onto that fd, and the new
    // mount's own fd is the root from here on.
    let dir = spec::open_rootfs(&plan.bundle_dir, &plan.root_path)?;
    if file_id(&dir)? != plan.rootfs_id {
        bail!(
            "root.path: {} changed while the container was being created",
            plan.rootfs.display()
        );
    }
    let root = mountfd::clone_fd(dir.as_fd(), true)
        .and_then(|tree| mountfd::attach(tree.as_fd(), dir.as_fd()).map(|()| tree))
        .with_context(|| format!("root.path: cannot bind-mount {}", plan.rootfs.display()))?;
    // Where the kernel shows the root: destinations are checked against the paths it shows
    // for them.
    let root_seen = std::fs::read_link(fd_path(&root)).context("cannot read the rootfs path")?;
    for m in &plan.mounts {
        mount_entry(&root, &root_seen, m, plan, proc_pidns).map_err(|e| {
            if e.is::<FieldError>() {
                e
            } else {
                e.context(format!("mounts[{}] ({})", m.index, m.destination.display()))
            }
        })?;
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

fn mount_entry(
    root: &OwnedFd,
    root_seen: &Path,
    m: &MountPlan,
    plan: &RootfsPlan,
    proc_pidns: Option<BorrowedFd>,
) -> Result<()> {
    let o = &m.options;
    if m.typ == "cgroup" && !o.is_bind {
        let dest = inroot::resolve(root.as_fd(), &m.destination, Create::Dir)?;
        check_destination(root_seen, &dest, m, None)?;
        return mount_cgroup(&dest, m, plan);
    }
    if o.flags.contains(MsFlags::MS_REMOUNT) {
        // A remount entry changes a mount made earlier in the list.
        let dest = inroot::resolve(root.as_fd(), &m.destination, Create::Nothing)?;
        check_destination(root_seen, &dest, m, None)?;
        let data = (!o.data.is_empty()).then_some(o.data.as_str());
        return mount(None::<&str>, &fd_path(&dest), None::<&str>, o.flags, data)
            .context("cannot remount");
    }
    let (mnt, dest) = if o.is_bind {
        let src = m.source.as_ref().expect("checked in RootfsPlan::new");
        let tree = mountfd::clone_tree(None, src, o.recursive)
            .with_context(|| format!("cannot bind {}", src.display()))?;
        let create = if inroot::is_dir(&tree) {
            Create::Dir
        } else {
            Create::File
        };
        let dest = inroot::resolve(root.as_fd(), &m.destination, create)?;
        check_destination(root_seen, &dest, m, Some(&tree))?;
        if o.needs_remount {
            // The kernel ignores per-mount flags on a bind: they are set on the new bind
            // while it is still detached, so nothing ever sees it without them.
            let attrs = o.bind_attrs();
            mountfd::set_attrs(tree.as_fd(), attrs.attr_set, attrs.attr_clr, false)
                .context("cannot set the bind mount's options")?;
        }
        (tree, dest)
    } else {
        let dest = resolve_new_fs_destination(root, m)?;
        check_destination(root_seen, &dest, m, None)?;
        let source = m
            .source
            .as_deref()
            .map_or(m.typ.as_ref(), |s| s.as_os_str());
        let pidns = proc_pidns.filter(|_| m.typ == "proc");
        if o.propagation.is_empty() && o.recursive_attrs.is_empty() && pidns.is_none() {
            // Nothing to do after the mount: mount(2) onto the fd (through the host's
            // /proc, not yet the container's) makes it with every flag in one call.
            let data = (!o.data.is_empty()).then_some(o.data.as_str());
            return mount(
                Some(source),
                &fd_path(&dest),
                Some(m.typ.as_str()),
                o.flags,
                data,
            )
            .with_context(|| format!("cannot mount {} ({})", m.typ, data.unwrap_or("")));
        }
        let mut params: Vec<FsParam> = superblock_params(o.flags)
            .into_iter()
            .map(FsParam::Flag)
            .collect();
        params.extend(mountfd::split_data(&o.data));
        if let Some(pidns) = pidns {
            params.push(FsParam::Fd("pidns", pidns));
        }
        let mnt = mountfd::new_fs(&m.typ, source, &params, new_mount_attrs(o.flags))
            .with_context(|| format!("cannot mount {} ({})", m.typ, o.data))?;
        (mnt, dest)
    };
    if !o.recursive_attrs.is_empty() {
        let a = o.recursive_attrs;
        mountfd::set_attrs(mnt.as_fd(), a.attr_set, a.attr_clr, true)
            .context("recursive mount options")?;
    }
    mountfd::attach(mnt.as_fd(), dest.as_fd())?;
    // Propagation is changed on the attached mount through its own fd.
    for p in &o.propagation {
        mountfd::set_propagation(mnt.as_fd(), *p).context("cannot set mount propagation")?;
    }
    Ok(())
}

/// The destination of a new filesystem. proc and sysfs must go on a directory that is really
/// there, not through a symlink that is the last component (runc: "must be mounted on
/// ordinary directory"): an image could otherwise place them wherever its links point.
fn resolve_new_fs_destination(root: &OwnedFd, m: &MountPlan) -> Result<OwnedFd> {
    let (Some(parent), Some(name), true) = (
        m.destination.parent(),
        m.destination.file_name(),
        matches!(m.typ.as_str(), "proc" | "sysfs"),
    ) else {
        return inroot::resolve(root.as_fd(), &m.destination, Create::Dir);
    };
    let parent = inroot::resolve(root.as_fd(), parent, Create::Dir)?;
    let ordinary = |what: &str| {
        field_error(format!(
            "mounts[{}].destination: filesystem {:?} must be mounted on ordinary directory \
             ({} is {what})",
            m.index,
            m.typ,
            m.destination.display()
        ))
    };
    match fstatat(&parent, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFDIR => {}
            SFlag::S_IFLNK => return Err(ordinary("a symlink")),
            _ => return Err(ordinary("not a directory")),
        },
        Err(nix::errno::Errno::ENOENT) => {
            match mkdirat(&parent, name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot create {}", m.destination.display()))
                }
            }
        }
        Err(e) => return Err(e).with_context(|| m.destination.display().to_string()),
    }
    // O_DIRECTORY with O_NOFOLLOW: a symlink swapped in since fails here.
    openat(
        &parent,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|_| ordinary("not a directory any more"))
}

/// Files under /proc that a bind may cover, for lxcfs (runc's list).
const LXCFS_PROC_FILES: [&str; 10] = [
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// runc's checkProcMount, on where the destination really is (the fd), not on the path as
/// written, which an image symlink can send into /proc: nothing may be mounted inside /proc
/// (a mount there could turn the writes berth or the container makes to /proc files into
/// writes elsewhere), except binds on lxcfs's files; on /proc itself only a new procfs, or a
/// bind of one. A destination on any procfs (one mounted elsewhere) is refused as well.
fn check_destination(
    root_seen: &Path,
    dest: &OwnedFd,
    m: &MountPlan,
    bind_source: Option<&OwnedFd>,
) -> Result<()> {
    let seen = std::fs::read_link(fd_path(dest)).context("cannot read the destination's path")?;
    let inside = seen
        .strip_prefix(root_seen)
        .ok()
        .map(|p| Path::new("/").join(p));
    let on_procfs = inroot::on_procfs(dest.as_fd()).context("cannot stat the destination")?;
    let refuse = |why: String| {
        Err(field_error(format!(
            "mounts[{}].destination: {:?}{} cannot be mounted because {why}",
            m.index,
            m.destination.display(),
            match &inside {
                Some(p) if p != &m.destination => format!(" (which is {})", p.display()),
                _ => String::new(),
            }
        )))
    };
    match &inside {
        Some(p) if p == Path::new("/proc") => {
            let is_proc = match bind_source {
                Some(src) => inroot::on_procfs(src.as_fd()) == Ok(true),
                None => m.typ == "proc" || m.options.flags.contains(MsFlags::MS_REMOUNT),
            };
            if is_proc {
                return Ok(());
            }
            refuse("it is not of type proc".to_string())
        }
        Some(p) if p.starts_with("/proc") => {
            if LXCFS_PROC_FILES.iter().any(|f| p == Path::new(f)) {
                return Ok(());
            }
            refuse("it is inside /proc".to_string())
        }
        _ if on_procfs => refuse(format!("it is inside a procfs ({})", seen.display())),
        _ => Ok(()),
    }
}

/// A `cgroup` mount shows the container its own cgroups: on a v2-only host its cgroup2
/// directory; otherwise a tmpfs holding one directory per hierarchy, each a bind of the
/// container's cgroup in that hierarchy. Binds work the same with or without a cgroup
/// namespace and inside a user namespace, where mounting cgroup v1 is not allowed. Each mount
/// gets its flags (and nosuid, nodev, noexec) before it is attached.
fn mount_cgroup(dest: &OwnedFd, m: &MountPlan, plan: &RootfsPlan) -> Result<()> {
    let o = &m.options;
    if let [(name, dir)] = plan.cgroup_binds.as_slice() {
        if name.is_empty() {
            let attrs = plain_attrs_of(
                o.flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            );
            let tree = mountfd::clone_tree(None, dir, true)
                .context("cannot bind the container's cgroup")?;
            mountfd::set_attrs(tree.as_fd(), attrs, 0, false)
                .context("cannot set the flags of the container's cgroup bind")?;
            return mountfd::attach(tree.as_fd(), dest.as_fd());
        }
    }
    let tmpfs_flags = o.flags & !MsFlags::MS_RDONLY;
    let mut params: Vec<FsParam> = superblock_params(tmpfs_flags)
        .into_iter()
        .map(FsParam::Flag)
        .collect();
    params.push(FsParam::Value("mode", "755"));
    let tmpfs = mountfd::new_fs(
        "tmpfs",
        "tmpfs".as_ref(),
        &params,
        new_mount_attrs(tmpfs_flags),
    )
    .context("cannot mount tmpfs for cgroups")?;
    // The tmpfs is new and ours: its directories are made while it is still detached, and the
    // binds go onto them by fd.
    for (name, _) in &plan.cgroup_binds {
        mkdirat(&tmpfs, name.as_str(), Mode::from_bits_truncate(0o755))
            .with_context(|| format!("cannot make {name} in the cgroup tmpfs"))?;
    }
    mountfd::attach(tmpfs.as_fd(), dest.as_fd())?;
    for (name, dir) in &plan.cgroup_binds {
        let subdir = openat(
            &tmpfs,
            name.as_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open {name} in the cgroup tmpfs"))?;
        mount(
            Some(dir),
            &fd_path(&subdir),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| format!("cannot bind {}", dir.display()))?;
    }
    // One recursive mount_setattr through the tmpfs's own fd gives it and every bind below
    // it their flags.
    let mut attrs = plain_attrs_of(MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    if o.flags.contains(MsFlags::MS_RDONLY) {
        attrs |= MOUNT_ATTR_RDONLY;
    }
    mountfd::set_attrs(tmpfs.as_fd(), attrs, 0, true)
        .context("cannot set the flags of the cgroup mounts")
}

/// Makes the prepared root the process's `/`, and lets go of the host's root.
pub fn pivot(root: &OwnedFd, plan: &RootfsPlan) -> Result<()> {
    nix::unistd::fchdir(root).context("cannot enter the rootfs")?;
    if plan.host_mount_ns {
        nix::unistd::chroot(".").context("chroot into the rootfs")?;
        nix::unistd::chdir("/").context("chdir / in the new root")?;
    } else if plan.no_pivot {
        move_root()?;
    } else {
        match nix::unistd::pivot_root(".", ".") {
            Ok(()) => detach_old_root()?,
            // The host root is an initramfs (ramfs), which cannot be pivoted away from.
            Err(nix::errno::Errno::EINVAL) => move_root()?,
            Err(e) => return Err(e).context("pivot_root failed"),
        }
    }
    Ok(())
}

fn detach_old_root() -> Result<()> {
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
    nix::unistd::chdir("/").context("chdir / in the new root")
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
///
/// Each path is resolved once from the new root (magic links refused) and mounted onto by fd;
/// one that does not exist is skipped, as in runc, but any other failure fails the create: a
/// path silently left unmasked is what an image would aim for.
pub fn finish(plan: &RootfsPlan) -> Result<()> {
    let root = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context("cannot open /")?;
    for p in &plan.readonly_paths {
        readonly_path(&root, p).with_context(|| format!("linux.readonlyPaths: {}", p.display()))?;
    }
    let mut masks = Masks::default();
    for p in &plan.masked_paths {
        mask_path(&root, p, &mut masks)
            .with_context(|| format!("linux.maskedPaths: {}", p.display()))?;
    }
    if plan.readonly_root {
        let fd: OwnedFd = std::fs::File::open("/")?.into();
        let flags =
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(&fd)?;
        mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
            .context("root.readonly: cannot remount / read-only")?;
    }
    // Last: nothing under an unbindable root could be bound any more (the console, the
    // read-only and masked paths are binds).
    if let Some(p) = plan.propagation_after_pivot {
        mount(None::<&str>, "/", None::<&str>, p, None::<&str>)
            .context("linux.rootfsPropagation: cannot apply it to /")?;
    }
    Ok(())
}

/// `p` inside the (pivoted) root, or None if it does not exist.
fn resolve_existing(root: &OwnedFd, p: &Path) -> Result<Option<OwnedFd>> {
    match inroot::openat2(
        root.as_fd(),
        p,
        libc::O_PATH,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(inroot::resolve_error(e, p)),
    }
}

/// The flags of the mount `fd` is on that a remount must repeat: in a user namespace the
/// kernel refuses to drop the ones inherited from a more privileged mount.
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

/// A recursive bind of `p` onto itself, read-only (and every mount below it) before it is
/// attached. Flags the kernel locked stay as they are.
fn readonly_path(root: &OwnedFd, p: &Path) -> Result<()> {
    let Some(target) = resolve_existing(root, p)? else {
        return Ok(());
    };
    let tree = mountfd::clone_fd(target.as_fd(), true).context("cannot bind")?;
    mountfd::set_attrs(tree.as_fd(), MOUNT_ATTR_RDONLY, 0, true)
        .context("cannot make the bind read-only")?;
    mountfd::attach(tree.as_fd(), target.as_fd())
}

/// What masks are made from, each made once when first needed: the container's checked
/// /dev/null, and the empty read-only tmpfs of the first masked directory, whose copies cover
/// the others (copied once attached: kernels before 6.x refuse to copy a detached mount).
#[derive(Default)]
struct Masks {
    dev_null: Option<OwnedFd>,
    empty_dir: Option<OwnedFd>,
}

/// Masks a path: the null device over a file, an empty read-only tmpfs over a directory. After
/// pivot_root the container's /proc is no safe way to reach an fd, so every mount here is
/// made detached and attached by fd.
fn mask_path(root: &OwnedFd, p: &Path, masks: &mut Masks) -> Result<()> {
    let Some(target) = resolve_existing(root, p)? else {
        return Ok(());
    };
    let source = if inroot::is_dir(&target) {
        let Some(empty_dir) = &masks.empty_dir else {
            let tmpfs = mountfd::new_fs(
                "tmpfs",
                "tmpfs".as_ref(),
                &[FsParam::Flag("ro")],
                new_mount_attrs(MsFlags::MS_RDONLY),
            )
            .context("cannot make a tmpfs to mask with")?;
            mountfd::attach(tmpfs.as_fd(), target.as_fd()).context("cannot mask")?;
            masks.empty_dir = Some(tmpfs);
            return Ok(());
        };
        empty_dir
    } else {
        if masks.dev_null.is_none() {
            masks.dev_null = Some(open_dev_null(root)?);
        }
        masks.dev_null.as_ref().expect("opened above")
    };
    let mnt = mountfd::clone_fd(source.as_fd(), false).context("cannot copy the mask")?;
    mountfd::attach(mnt.as_fd(), target.as_fd()).context("cannot mask")
}

/// The container's /dev/null, opened without following any link, and checked to be the null
/// device (character 1:3): the image or a bind of /dev may put anything there, and masking
/// with a file or link it controls would show what it likes, or the very file masked.
fn open_dev_null(root: &OwnedFd) -> Result<OwnedFd> {
    let fd = inroot::openat2(
        root.as_fd(),
        Path::new("/dev/null"),
        libc::O_PATH | libc::O_NOFOLLOW,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| match e {
        nix::errno::Errno::ELOOP => anyhow::anyhow!(
            "/dev/null in the container is reached through a symlink; berth masks only with \
             the null device itself"
        ),
        e => anyhow::Error::new(e).context("cannot open /dev/null in the container to mask with"),
    })?;
    let st = fstat(&fd).context("/dev/null")?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let (major, minor) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
    if kind != SFlag::S_IFCHR || (major, minor) != (1, 3) {
        bail!(
            "/dev/null in the container is not the null device (character device 1:3); \
             berth does not mask with it"
        );
    }
    Ok(fd)
}
