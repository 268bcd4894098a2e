//! Directory trees read and written by fd, for trees a container controls (its rootfs, its
//! writable layer) and may change while they are read.
//!
//! [`walk`] reads a tree from an `O_PATH` fd: every child is opened relative to its parent's
//! fd with `O_NOFOLLOW`, a regular file is opened through its own `O_PATH` fd (never by name
//! again, and never a FIFO or device), so a symlink swapped in anywhere is read as a symlink
//! and never followed. [`DirSink`] writes a tree below a directory fd: each entry's parent is
//! found with in-root resolution from that directory ([`crate::runtime::inroot`]), the entry
//! is made with `O_EXCL`/`O_NOFOLLOW` after removing what was there, and its metadata is set
//! on the new object's own fd. Nothing outside the destination is ever written.

use super::tarstream::{Entry, EntryKind, ExactSize, Filter, Sink};
use super::unpack::OPAQUE_MARKER;
use crate::runtime::inroot::{self, Create};
use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, mknodat, FileStat, Mode, SFlag};
use nix::unistd::{linkat, symlinkat, unlinkat, UnlinkatFlags};
use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// overlayfs's own xattrs (opaque, redirect, origin, ...): the kernel's bookkeeping for an
/// upper directory, never content.
pub const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";

/// What [`walk`] reads besides names, data and modes.
#[derive(Clone, Copy, Debug, Default)]
pub struct WalkOptions {
    /// Read extended attributes (overlayfs's own and SELinux labels are always left out).
    pub xattrs: bool,
    /// Write a second name of an inode as a hard link to the first.
    pub hardlinks: bool,
    /// Do not descend into directories on another filesystem than the start (mount points
    /// seen in the tree); the directory itself is still written.
    pub one_filesystem: bool,
    /// The tree is an overlayfs upper directory: whiteouts (0/0 character devices) become
    /// `.wh.NAME` entries and opaque directories get a `.wh..wh..opq` entry, as OCI layers
    /// hold them.
    pub overlay_upper: bool,
}

/// A file-system object held by an `O_PATH` fd, with its stat.
struct Node {
    fd: OwnedFd,
    st: FileStat,
}

fn kind_of(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

/// Opens `name` in `dir` as an `O_PATH` fd without following a symlink.
fn open_node(dir: BorrowedFd, name: &OsStr) -> nix::Result<Node> {
    let fd = openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let st = fstat(&fd)?;
    Ok(Node { fd, st })
}

/// Opens the object an `O_PATH` fd holds for reading: the same inode, whatever its name now
/// points at. Only called for regular files and directories.
fn reopen(fd: &OwnedFd, flags: OFlag) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        &inroot::fd_path(fd),
        flags | OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        Mode::empty(),
    )
}

/// The names in a directory, sorted bytewise (as Docker walks trees).
fn sorted_names(dir: &OwnedFd) -> Result<Vec<OsString>> {
    let fd = reopen(dir, OFlag::O_DIRECTORY)?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut names: Vec<OsString> = d
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Walks the tree at `start` (an fd to it: `O_PATH`, possibly of a symlink, or opened
/// normally) and puts its entries into `sink`. The start itself is written as `name` unless
/// `name` is empty, in which case only its children are (named from the top).
pub fn walk(start: OwnedFd, name: &Path, opts: WalkOptions, sink: &mut dyn Sink) -> Result<()> {
    walk_hiding(start, name, opts, &[], sink)
}

/// Like [`walk`], leaving out the empty regular files at `hidden` (paths as the walk names
/// them): mount points the runtime made for files bind-mounted over them, which are no
/// content of the tree (Docker keeps them in a layer of their own).
pub fn walk_hiding(
    start: OwnedFd,
    name: &Path,
    opts: WalkOptions,
    hidden: &[PathBuf],
    sink: &mut dyn Sink,
) -> Result<()> {
    let st = fstat(&start).context("cannot stat the tree's root")?;
    let mut walker = Walker {
        opts,
        hidden,
        root_dev: st.st_dev,
        links: HashMap::new(),
        sink,
    };
    let node = Node { fd: start, st };
    if name.as_os_str().is_empty() {
        if kind_of(&node.st) != SFlag::S_IFDIR {
            bail!("the tree's root is not a directory");
        }
        walker.children(&node, Path::new(""))
    } else {
        walker.node(node, None, name)
    }
}

struct Walker<'a> {
    opts: WalkOptions,
    hidden: &'a [PathBuf],
    root_dev: u64,
    links: HashMap<(u64, u64), PathBuf>,
    sink: &'a mut dyn Sink,
}

impl Walker<'_> {
    fn children(&mut self, dir: &Node, rel: &Path) -> Result<()> {
        for name in sorted_names(&dir.fd)
            .with_context(|| format!("cannot read the directory {}", show(rel)))?
        {
            let node = match open_node(dir.fd.as_fd(), &name) {
                Ok(n) => n,
                // Removed since the directory was read (a running container).
                Err(Errno::ENOENT) => continue,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot open {}", show(&rel.join(&name))))
                }
            };
            self.node(node, Some((&dir.fd, &name)), &rel.join(&name))?;
        }
        Ok(())
    }

    /// Writes one object (and, for a directory, what it holds). `parent` is its directory
    /// and name there, used to read its xattrs without following it.
    fn node(&mut self, node: Node, parent: Option<(&OwnedFd, &OsStr)>, rel: &Path) -> Result<()> {
        let st = &node.st;
        let kind = kind_of(st);
        if kind == SFlag::S_IFREG && st.st_size == 0 && self.hidden.iter().any(|h| h == rel) {
            return Ok(());
        }
        let mut entry = Entry {
            path: rel.to_path_buf(),
            kind: EntryKind::Dir,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
            xattrs: Vec::new(),
        };
        if self.opts.overlay_upper && kind == SFlag::S_IFCHR && st.st_rdev == 0 {
            let name = rel.file_name().unwrap_or_default();
            let mut wh = OsString::from(super::unpack::WHITEOUT_PREFIX);
            wh.push(name);
            // As Docker writes them: an empty file, 0600, the whiteout's owner and time.
            let whiteout = Entry {
                uid: st.st_uid,
                gid: st.st_gid,
                mtime: st.st_mtime,
                ..Entry::new(rel.with_file_name(wh), EntryKind::File(0), 0o600)
            };
            return self.sink.put(&whiteout, &mut io::empty());
        }
        if self.opts.xattrs && kind != SFlag::S_IFLNK {
            entry.xattrs = read_xattrs(&node.fd, parent)
                .with_context(|| format!("cannot read the xattrs of {}", show(rel)))?;
        }
        let mut opaque = false;
        if self.opts.overlay_upper {
            let all = read_xattrs_raw(&node.fd, parent).unwrap_or_default();
            for (key, value) in &all {
                let key = key.as_bytes();
                if key == b"trusted.overlay.opaque" && value == b"y" && kind == SFlag::S_IFDIR {
                    opaque = true;
                } else if key == b"trusted.overlay.redirect" || key == b"trusted.overlay.metacopy" {
                    bail!(
                        "{}: the upper directory holds an overlayfs {} entry; berth cannot \
                         make a layer of it (mount overlays with redirect_dir=off,metacopy=off)",
                        show(rel),
                        String::from_utf8_lossy(&key[OVERLAY_XATTR_PREFIX.len()..])
                    );
                }
            }
        }
        match kind {
            SFlag::S_IFDIR => {
                match self.sink.filter(&entry) {
                    Filter::Put => {}
                    Filter::Skip => return Ok(()),
                    Filter::DescendOnly => return self.children(&node, rel),
                }
                self.sink.put(&entry, &mut io::empty())?;
                if opaque {
                    // Docker's marker: the directory's permissions and owner, no time.
                    let marker = Entry {
                        uid: entry.uid,
                        gid: entry.gid,
                        ..Entry::new(
                            rel.join(OPAQUE_MARKER),
                            EntryKind::File(0),
                            entry.mode & 0o777,
                        )
                    };
                    self.sink.put(&marker, &mut io::empty())?;
                }
                if !(self.opts.one_filesystem && st.st_dev != self.root_dev) {
                    self.children(&node, rel)?;
                }
                self.sink.leave_dir(&entry)?;
                return Ok(());
            }
            SFlag::S_IFLNK => {
                let target = readlinkat(node.fd.as_fd(), "")
                    .with_context(|| format!("cannot read the symlink {}", show(rel)))?;
                entry.kind = EntryKind::Symlink(PathBuf::from(target));
            }
            SFlag::S_IFCHR => entry.kind = EntryKind::Char(st.st_rdev),
            SFlag::S_IFBLK => entry.kind = EntryKind::Block(st.st_rdev),
            SFlag::S_IFIFO => entry.kind = EntryKind::Fifo,
            SFlag::S_IFREG => entry.kind = EntryKind::File(st.st_size as u64),
            // Sockets (and anything else) cannot be held by tar.
            _ => return Ok(()),
        }
        if self.sink.filter(&entry) != Filter::Put {
            return Ok(());
        }
        if self.opts.hardlinks && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key) {
                entry.kind = EntryKind::HardLink(first.clone());
                return self.sink.put(&entry, &mut io::empty());
            }
            self.links.insert(key, rel.to_path_buf());
        }
        if let EntryKind::File(size) = entry.kind {
            let file = File::from(
                reopen(&node.fd, OFlag::empty())
                    .with_context(|| format!("cannot open {}", show(rel)))?,
            );
            return self.sink.put(&entry, &mut ExactSize::new(file, size));
        }
        self.sink.put(&entry, &mut io::empty())
    }
}

/// The `/proc/self/fd/N[/name]` path of an object: through its parent and name (an `l*`
/// xattr call then acts on the entry itself, a symlink included), or through its own fd.
fn xattr_path(fd: &OwnedFd, parent: Option<(&OwnedFd, &OsStr)>) -> Result<(CString, bool)> {
    Ok(match parent {
        Some((dir, name)) => {
            let mut p = inroot::fd_path(dir).into_os_string();
            p.push("/");
            p.push(name);
            (CString::new(p.as_bytes())?, true)
        }
        None => (
            CString::new(inroot::fd_path(fd).as_os_str().as_bytes())?,
            false,
        ),
    })
}

/// Every xattr of an object, overlayfs's own included.
fn read_xattrs_raw(
    fd: &OwnedFd,
    parent: Option<(&OwnedFd, &OsStr)>,
) -> Result<Vec<(OsString, Vec<u8>)>> {
    let (path, nofollow) = xattr_path(fd, parent)?;
    let mut names = vec![0u8; 1024];
    let len = loop {
        // SAFETY: the path is NUL-terminated and the buffer valid for its length.
        let n = unsafe {
            if nofollow {
                libc::llistxattr(path.as_ptr(), names.as_mut_ptr().cast(), names.len())
            } else {
                libc::listxattr(path.as_ptr(), names.as_mut_ptr().cast(), names.len())
            }
        };
        if n >= 0 {
            break n as usize;
        }
        match Errno::last() {
            Errno::ERANGE => names.resize(names.len() * 4, 0),
            Errno::ENOTSUP | Errno::ENOENT => return Ok(Vec::new()),
            e => return Err(e.into()),
        }
    };
    names.truncate(len);
    let mut out = Vec::new();
    for key in names.split(|b| *b == 0).filter(|k| !k.is_empty()) {
        let ckey = CString::new(key)?;
        let mut value = vec![0u8; 256];
        loop {
            // SAFETY: path and key are NUL-terminated; the buffer is valid for its length.
            let n = unsafe {
                if nofollow {
                    libc::lgetxattr(
                        path.as_ptr(),
                        ckey.as_ptr(),
                        value.as_mut_ptr().cast(),
                        value.len(),
                    )
                } else {
                    libc::getxattr(
                        path.as_ptr(),
                        ckey.as_ptr(),
                        value.as_mut_ptr().cast(),
                        value.len(),
                    )
                }
            };
            if n >= 0 {
                value.truncate(n as usize);
                out.push((OsStr::from_bytes(key).to_os_string(), value));
                break;
            }
            match Errno::last() {
                Errno::ERANGE => value.resize(value.len() * 16, 0),
                // Removed meanwhile.
                Errno::ENODATA => break,
                e => return Err(e.into()),
            }
        }
    }
    Ok(out)
}

/// The xattrs that are content: overlayfs's bookkeeping and SELinux labels (which belong to
/// the host's policy) are left out.
fn read_xattrs(
    fd: &OwnedFd,
    parent: Option<(&OwnedFd, &OsStr)>,
) -> Result<Vec<(OsString, Vec<u8>)>> {
    let mut all = read_xattrs_raw(fd, parent)?;
    all.retain(|(k, _)| {
        let k = k.as_bytes();
        !k.starts_with(OVERLAY_XATTR_PREFIX) && k != b"security.selinux"
    });
    Ok(all)
}

fn show(p: &Path) -> String {
    format!("/{}", p.display())
}

/// Who owns what a [`DirSink`] makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// The entries' own uid and gid (`docker cp -a`).
    Keep,
    /// Everything owned by this uid and gid (Docker gives copies to the destination's root).
    Fixed(u32, u32),
}

/// Writes entries below a destination directory. The destination is the root of every path
/// in it: entry paths and hard-link targets resolve inside it, symlinks met on the way
/// included. Directory times are set when each directory is left (after its children).
pub struct DirSink {
    base: OwnedFd,
    ownership: Ownership,
    /// Make device nodes (needs CAP_MKNOD); otherwise they are skipped.
    devices: bool,
    /// Clear the set-user-ID and set-group-ID bits of what is not a directory.
    strip_setid: bool,
    /// The last parent directory resolved, reused while entries stay in it.
    cached_parent: Option<(PathBuf, OwnedFd)>,
}

impl DirSink {
    /// A sink writing below the directory `base` (any fd to it, `O_PATH` included).
    pub fn new(base: &OwnedFd, ownership: Ownership) -> Result<DirSink> {
        let base = reopen(base, OFlag::O_DIRECTORY).context("the destination directory")?;
        Ok(DirSink {
            base,
            ownership,
            devices: nix::unistd::geteuid().is_root(),
            strip_setid: false,
            cached_parent: None,
        })
    }

    /// Whether to make device nodes (made by default when running as root). A copy out of a
    /// container should not: a node the container chose (the host's disk, mode 0666) would
    /// give whoever can reach the destination the device.
    pub fn make_devices(&mut self, yes: bool) {
        self.devices = yes && nix::unistd::geteuid().is_root();
    }

    /// Whether to clear set-user-ID and set-group-ID bits of files. A copy out of a container
    /// made by root would otherwise plant set-id programs the container chose on the host.
    pub fn strip_setid(&mut self, yes: bool) {
        self.strip_setid = yes;
    }

    fn parent_of(&mut self, rel: &Path) -> Result<OwnedFd> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        if let Some((path, fd)) = &self.cached_parent {
            if path == parent {
                return Ok(fd.try_clone()?);
            }
        }
        let fd = if parent.as_os_str().is_empty() {
            self.base.try_clone()?
        } else {
            // Missing parents are made, as tar(1) and Docker do for archives without them.
            inroot::resolve(self.base.as_fd(), parent, Create::Dir)?
        };
        if !inroot::is_dir(&fd) {
            bail!("{} is not a directory", show(parent));
        }
        self.cached_parent = Some((parent.to_path_buf(), fd.try_clone()?));
        Ok(fd)
    }

    fn owner(&self, e: &Entry) -> (u32, u32) {
        match self.ownership {
            Ownership::Keep => (e.uid, e.gid),
            Ownership::Fixed(u, g) => (u, g),
        }
    }
}

impl Sink for DirSink {
    fn put(&mut self, e: &Entry, data: &mut dyn Read) -> Result<()> {
        let Some(name) = e.path.file_name() else {
            return Ok(()); // The root: the destination stays as it is.
        };
        // An entry replacing a directory on the cached path invalidates it.
        if let Some((cached, _)) = &self.cached_parent {
            if cached.starts_with(&e.path) {
                self.cached_parent = None;
            }
        }
        let parent = self.parent_of(&e.path)?;
        let existing = fstatat(parent.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).ok();
        let existing_dir = existing
            .as_ref()
            .is_some_and(|s| kind_of(s) == SFlag::S_IFDIR);
        let shown = show(&e.path);
        if e.is_dir() {
            if existing.is_some() && !existing_dir {
                bail!("cannot overwrite non-directory {shown:?} with directory {shown:?}");
            }
            if !existing_dir {
                mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o700))
                    .with_context(|| format!("cannot create the directory {shown}"))?;
            }
            let fd = openat(
                parent.as_fd(),
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .with_context(|| format!("cannot open the directory {shown}"))?;
            return self.set_meta(&fd, e, &parent, name);
        }
        if existing_dir {
            bail!("cannot overwrite directory {shown:?} with non-directory {shown:?}");
        }
        if existing.is_some() {
            match unlinkat(parent.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(err) => return Err(err).with_context(|| format!("cannot replace {shown}")),
            }
        }
        match &e.kind {
            EntryKind::File(size) => {
                let fd = openat(
                    parent.as_fd(),
                    name,
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .with_context(|| format!("cannot create {shown}"))?;
                let mut file = File::from(fd);
                let copied = io::copy(&mut data.take(*size), &mut file)
                    .with_context(|| format!("cannot write {shown}"))?;
                if copied != *size {
                    bail!("{shown}: the data ended after {copied} of {size} bytes");
                }
                return self.set_meta(&file.into(), e, &parent, name);
            }
            EntryKind::Symlink(target) => {
                symlinkat(target.as_os_str(), parent.as_fd(), name)
                    .with_context(|| format!("cannot create the symlink {shown}"))?;
            }
            EntryKind::HardLink(target) => {
                let tname = target
                    .file_name()
                    .with_context(|| format!("{shown}: a hard link to the root"))?;
                let tparent = match target.parent() {
                    Some(p) if !p.as_os_str().is_empty() => {
                        inroot::resolve(self.base.as_fd(), p, Create::Nothing)
                    }
                    _ => Ok(self.base.try_clone()?),
                }
                .with_context(|| format!("{shown}: hard link target {}", show(target)))?;
                // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
                linkat(
                    tparent.as_fd(),
                    tname,
                    parent.as_fd(),
                    name,
                    AtFlags::empty(),
                )
                .with_context(|| format!("cannot link {shown} to {}", show(target)))?;
                // The inode, and so its metadata, is the target's.
                return Ok(());
            }
            EntryKind::Char(dev) | EntryKind::Block(dev) => {
                if !self.devices {
                    return Ok(());
                }
                let kind = if matches!(e.kind, EntryKind::Char(_)) {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                mknodat(
                    parent.as_fd(),
                    name,
                    kind,
                    Mode::from_bits_truncate(0o600),
                    *dev,
                )
                .with_context(|| format!("cannot create the device {shown}"))?;
            }
            EntryKind::Fifo => {
                mknodat(
                    parent.as_fd(),
                    name,
                    SFlag::S_IFIFO,
                    Mode::from_bits_truncate(0o600),
                    0,
                )
                .with_context(|| format!("cannot create the FIFO {shown}"))?;
            }
            EntryKind::Dir => unreachable!("handled above"),
        }
        let node = open_node(parent.as_fd(), name)
            .with_context(|| format!("cannot open {shown} after creating it"))?;
        self.set_meta(&node.fd, e, &parent, name)
    }

    fn leave_dir(&mut self, e: &Entry) -> Result<()> {
        if e.path.as_os_str().is_empty() {
            return Ok(());
        }
        // The directory's children changed its times: set them again, on the directory the
        // path leads to inside the destination.
        if let Ok(fd) = inroot::resolve(self.base.as_fd(), &e.path, Create::Nothing) {
            if inroot::is_dir(&fd) {
                set_times(&fd, e)?;
            }
        }
        Ok(())
    }
}

impl DirSink {
    /// Owner, mode, xattrs and times of the object `fd` (which this sink just made as `name`
    /// in `parent`), all through the fd itself: a name swapped meanwhile redirects nothing.
    fn set_meta(&self, fd: &OwnedFd, e: &Entry, parent: &OwnedFd, name: &OsStr) -> Result<()> {
        let shown = show(&e.path);
        let (uid, gid) = self.owner(e);
        // SAFETY: an empty, NUL-terminated path with AT_EMPTY_PATH acts on the fd itself
        // (a symlink's own O_PATH fd included: lchown semantics).
        let rc = unsafe {
            libc::fchownat(
                fd.as_raw_fd(),
                c"".as_ptr(),
                uid,
                gid,
                libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            let err = Errno::last();
            // Only root may give files away; others keep what they make.
            if err != Errno::EPERM || nix::unistd::geteuid().is_root() {
                return Err(err).with_context(|| format!("cannot set the owner of {shown}"));
            }
        }
        if !matches!(e.kind, EntryKind::Symlink(_)) {
            // After chown, which clears the set-id bits. Through /proc the magic link reaches
            // exactly this inode.
            let mode = if self.strip_setid && !e.is_dir() {
                e.mode & 0o1777
            } else {
                e.mode & 0o7777
            };
            nix::sys::stat::fchmodat(
                nix::fcntl::AT_FDCWD,
                &inroot::fd_path(fd),
                Mode::from_bits_truncate(mode),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
            .with_context(|| format!("cannot set the mode of {shown}"))?;
            for (key, value) in &e.xattrs {
                match super::unpack::set_xattr(fd, None, key, value) {
                    Ok(()) => {}
                    // A filesystem without xattrs, or a namespace this process may not
                    // write (trusted.*, security.* unprivileged): the data is still copied.
                    Err(err)
                        if err.downcast_ref::<Errno>().is_some_and(|e| {
                            matches!(*e, Errno::ENOTSUP | Errno::EPERM | Errno::EACCES)
                        }) => {}
                    Err(err) => {
                        return Err(err)
                            .with_context(|| format!("cannot set xattr {key:?} on {shown}"))
                    }
                }
            }
            if !e.is_dir() {
                set_times(fd, e)?;
            }
        } else {
            let t = nix::sys::time::TimeSpec::new(e.mtime, e.mtime_nsec);
            nix::sys::stat::utimensat(
                parent.as_fd(),
                name,
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .with_context(|| format!("cannot set the times of {shown}"))?;
        }
        Ok(())
    }
}

/// Sets access and modification time of a file or directory (not a symlink) to the entry's
/// mtime, through its fd.
fn set_times(fd: &OwnedFd, e: &Entry) -> Result<()> {
    let t = nix::sys::time::TimeSpec::new(e.mtime, e.mtime_nsec);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &inroot::fd_path(fd),
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::FollowSymlink,
    )
    .with_context(|| format!("cannot set the times of {}", show(&e.path)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tarstream::{read_tar, TarSink};
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> TempDir {
            let d =
                std::env::temp_dir().join(format!("berth-fswalk-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            TempDir(d)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn open(p: &Path) -> OwnedFd {
        File::open(p).unwrap().into()
    }

    #[test]
    fn a_tree_copies_through_tar_with_links_modes_and_times() {
        let t = TempDir::new("copy");
        let src = t.0.join("src");
        std::fs::create_dir_all(src.join("d/e")).unwrap();
        std::fs::write(src.join("d/f"), b"data").unwrap();
        std::fs::set_permissions(src.join("d/f"), std::fs::Permissions::from_mode(0o4750)).unwrap();
        std::fs::hard_link(src.join("d/f"), src.join("h")).unwrap();
        symlink("/etc/passwd", src.join("d/abs")).unwrap();
        let old = nix::sys::time::TimeSpec::new(1_000_000, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &src.join("d"),
            &old,
            &old,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        let opts = WalkOptions {
            xattrs: true,
            hardlinks: true,
            ..Default::default()
        };
        let mut tar = TarSink::new(Vec::new());
        walk(open(&src), Path::new("top"), opts, &mut tar).unwrap();
        let bytes = tar.finish().unwrap();

        let dst = t.0.join("dst");
        std::fs::create_dir_all(&dst).unwrap();
        let mut sink = DirSink::new(&open(&dst), Ownership::Keep).unwrap();
        read_tar(&mut &bytes[..], &mut sink).unwrap();
        let top = dst.join("top");
        assert_eq!(std::fs::read(top.join("d/f")).unwrap(), b"data");
        let m = std::fs::metadata(top.join("d/f")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o4750);
        assert_eq!(m.nlink(), 2, "the hard link is kept");
        assert_eq!(m.ino(), std::fs::metadata(top.join("h")).unwrap().ino());
        assert_eq!(
            std::fs::read_link(top.join("d/abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert!(top.join("d/e").is_dir());
        assert_eq!(std::fs::metadata(top.join("d")).unwrap().mtime(), 1_000_000);
    }

    /// A hostile archive: a symlink to the host's /etc, then entries through it and a hard
    /// link to a host file. Everything lands inside the destination.
    #[test]
    fn entries_through_symlinks_stay_in_the_destination() {
        let t = TempDir::new("hostile");
        let outside = t.0.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("canary"), b"host").unwrap();
        let dst = t.0.join("dst");
        std::fs::create_dir_all(&dst).unwrap();
        let mut sink = DirSink::new(&open(&dst), Ownership::Fixed(0, 0)).unwrap();
        let escape = Entry::new("esc", EntryKind::Symlink(outside.clone()), 0o777);
        sink.put(&escape, &mut io::empty()).unwrap();
        let rel_escape = Entry::new("up", EntryKind::Symlink("../../../../..".into()), 0o777);
        sink.put(&rel_escape, &mut io::empty()).unwrap();
        let through = Entry::new("esc/canary", EntryKind::File(4), 0o644);
        sink.put(&through, &mut &b"evil"[..]).unwrap();
        let through_up = Entry::new(
            Path::new("up")
                .join(outside.strip_prefix("/").unwrap())
                .join("x"),
            EntryKind::File(4),
            0o644,
        );
        sink.put(&through_up, &mut &b"evil"[..]).unwrap();
        let link = Entry::new(
            "hl",
            EntryKind::HardLink(Path::new("esc/canary").to_path_buf()),
            0o644,
        );
        sink.put(&link, &mut io::empty()).unwrap();
        assert_eq!(std::fs::read(outside.join("canary")).unwrap(), b"host");
        assert!(!outside.join("x").exists());
        // Both links resolved inside the destination.
        let inside = dst.join(outside.strip_prefix("/").unwrap());
        assert_eq!(std::fs::read(inside.join("canary")).unwrap(), b"evil");
        assert_eq!(std::fs::read(inside.join("x")).unwrap(), b"evil");
        assert_eq!(std::fs::read(dst.join("hl")).unwrap(), b"evil");
    }

    #[test]
    fn a_directory_does_not_replace_a_file_nor_a_file_a_directory() {
        let t = TempDir::new("conflict");
        std::fs::write(t.0.join("f"), b"x").unwrap();
        std::fs::create_dir(t.0.join("d")).unwrap();
        let mut sink = DirSink::new(&open(&t.0), Ownership::Keep).unwrap();
        let e = sink
            .put(&Entry::new("f", EntryKind::Dir, 0o755), &mut io::empty())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot overwrite non-directory \"/f\" with directory \"/f\""
        );
        let e = sink
            .put(
                &Entry::new("d", EntryKind::File(0), 0o644),
                &mut io::empty(),
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot overwrite directory \"/d\" with non-directory \"/d\""
        );
    }
}
