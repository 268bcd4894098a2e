//! `docker cp`: files and directories between a container's root filesystem and the host, or
//! a tar stream (`-`), with Docker's path rules:
//! - a container path is absolute in the container (`etc/x` is `/etc/x`);
//! - symlinks before the last component are followed (inside the container for its paths);
//!   the last one only with `-L`, or when the path ends in `/` or `/.`;
//! - a directory source is copied into an existing destination directory under its own name,
//!   or only its contents when it ends in `/.`; to a missing destination it is copied under
//!   the destination's name; onto an existing file it is refused;
//! - a file source replaces an existing file, goes into an existing directory under its own
//!   name, or is created under the destination's name (which must not end in `/`);
//! - a destination that is a symlink is followed; its parent directory must exist;
//! - owners: `-a` keeps the source's uid and gid, otherwise copies into a container belong to
//!   its root and copies out to the user running berth;
//! - device nodes are copied into a container, never out of one onto the host (where a node
//!   the container chose would open a host device to whoever reaches the copy), and copies
//!   out lose their set-user-ID and set-group-ID bits unless `-a` (a set-id-root program the
//!   container chose would otherwise land on the host). Docker keeps both.
//!
//! The container's tree is hostile and may be running. Its paths are resolved inside its root
//! (openat2 RESOLVE_IN_ROOT), every object is then read or made by fd, never by path again,
//! so a symlink swapped in during the copy (CVE-2018-15664) can only lead to another place
//! inside the root; nothing on the host outside the destination is read or written.

use crate::image::fswalk::{walk, DirSink, Ownership, WalkOptions};
use crate::image::tarstream::{read_tar, TarSink};
use crate::runtime::inroot;
use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// An error about the container's side of a copy (Docker's daemon reports these, so its CLI
/// prints them after "Error response from daemon: ").
#[derive(Debug)]
pub struct InContainer(pub String);

impl std::fmt::Display for InContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InContainer {}

/// `docker cp`'s flags.
#[derive(Clone, Copy, Debug, Default)]
pub struct CopyOptions {
    /// `-L`: follow a symlink that is the source's last component.
    pub follow_link: bool,
    /// `-a`: keep the source's uid and gid.
    pub archive: bool,
}

/// A container's root filesystem (mounted: the image's layers and its writable one) and the
/// name it was addressed by, for messages.
#[derive(Clone, Copy, Debug)]
pub struct ContainerFs<'a> {
    pub rootfs: &'a Path,
    pub name: &'a str,
}

/// A volume or bind mount of the container (Docker's `Mounts` entry): the host directory or
/// file `source` is seen at `destination` inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// Makes the container's volumes part of its rootfs for this process, as Docker's daemon
/// mounts them for a copy: the process gets a private mount namespace (the mounts vanish
/// with it, and nobody else sees them) and each volume is bind-mounted on its destination,
/// resolved inside the rootfs (outermost first, so nested volumes land inside their parents).
/// For a single-threaded process (the berth command): a mount namespace cannot be unshared
/// by one thread of several.
pub fn mount_volumes(rootfs: &Path, volumes: &[VolumeMount]) -> Result<()> {
    use nix::mount::{mount, MsFlags};
    if volumes.is_empty() {
        return Ok(());
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .and_then(|()| {
            // Private, so that nothing mounted here propagates to the host's namespace.
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
        })
        .context("cannot make a private mount namespace to reach the container's volumes")?;
    let root: OwnedFd = std::fs::File::open(rootfs)
        .with_context(|| format!("cannot open {}", rootfs.display()))?
        .into();
    let mut sorted: Vec<&VolumeMount> = volumes.iter().collect();
    sorted.sort_by_key(|v| clean(&v.destination, Path::new("/")).components().count());
    for v in sorted {
        let dest = clean(&v.destination, Path::new("/"));
        let create = if v.source.is_dir() {
            inroot::Create::Dir
        } else {
            inroot::Create::File
        };
        let at = inroot::resolve(root.as_fd(), &dest, create)
            .with_context(|| format!("volume destination {}", dest.display()))?;
        let target = inroot::fd_path(&at);
        mount(
            Some(&v.source),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| {
            format!(
                "cannot mount the volume {} on {}",
                v.source.display(),
                dest.display()
            )
        })?;
        if v.read_only {
            // A fresh fd: the old one still holds the directory under the new mount.
            let mounted = inroot::resolve(root.as_fd(), &dest, inroot::Create::Nothing)?;
            mount(
                None::<&str>,
                &inroot::fd_path(&mounted),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
                None::<&str>,
            )
            .with_context(|| format!("cannot make the volume on {} read-only", dest.display()))?;
        }
    }
    Ok(())
}

/// Refuses a copy into the container where Docker's daemon does: onto a read-only rootfs
/// (outside a writable volume), or into a read-only volume. `dest` is the container path.
pub fn check_writable(dest: &str, readonly_rootfs: bool, volumes: &[VolumeMount]) -> Result<()> {
    let path = clean(dest, Path::new("/"));
    let volume = volumes
        .iter()
        .filter(|v| path.starts_with(clean(&v.destination, Path::new("/"))))
        .max_by_key(|v| clean(&v.destination, Path::new("/")).components().count());
    match volume {
        Some(v) if v.read_only => Err(anyhow::Error::new(InContainer(
            "mounted volume is marked read-only".into(),
        ))),
        Some(_) => Ok(()),
        None if readonly_rootfs => Err(anyhow::Error::new(InContainer(
            "container rootfs is marked read-only".into(),
        ))),
        None => Ok(()),
    }
}

/// Splits a `docker cp` argument into container and path: `c1:/etc` is a container path; a
/// local path holding a `:` must start with `/` or `.` (`./a:b`), as with Docker.
pub fn split_cp_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.starts_with('.') => (Some(c), p),
        _ => (None, arg),
    }
}

/// True when a path asserts that it is a directory: it ends in `/` or `/.` (or is `.`).
fn asserts_dir(p: &str) -> bool {
    p.ends_with('/') || p == "." || p.ends_with("/.")
}

/// The path cleaned (`.` and empty components dropped, `..` applied textually, as Docker's
/// `filepath.Clean`), made absolute against `base`.
fn clean(p: &str, base: &Path) -> PathBuf {
    let mut out = if p.starts_with('/') {
        PathBuf::from("/")
    } else {
        base.to_path_buf()
    };
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Where paths are looked up: the host (symlinks followed as the kernel does), or a
/// container's root (symlinks resolved inside it).
enum Side {
    Host,
    Container { root: OwnedFd, name: String },
}

impl Side {
    fn container(c: &ContainerFs) -> Result<Side> {
        let root = nix::fcntl::open(
            c.rootfs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open the root filesystem of container {}", c.name))?;
        Ok(Side::Container {
            root,
            name: c.name.to_string(),
        })
    }

    /// An `O_PATH` fd of what `p` (absolute, cleaned) names, every symlink followed.
    fn open(&self, p: &Path) -> nix::Result<OwnedFd> {
        match self {
            Side::Host => nix::fcntl::open(p, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()),
            Side::Container { root, .. } => inroot::openat2(
                root.as_fd(),
                p,
                libc::O_PATH,
                libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
            ),
        }
    }

    /// How a path on this side is shown: `c1:/etc` or `/tmp/x`.
    fn show(&self, p: &str) -> String {
        match self {
            Side::Host => p.to_string(),
            Side::Container { name, .. } => format!("{name}:{p}"),
        }
    }

    /// The error for a path asserting a directory (`x/`) that names something else.
    fn not_a_directory(&self, shown_path: &str) -> anyhow::Error {
        let message = format!("lstat {shown_path}: not a directory");
        match self {
            Side::Host => anyhow::anyhow!(message),
            Side::Container { .. } => anyhow::Error::new(InContainer(message)),
        }
    }

    /// The error for a path that is not there.
    fn not_found(&self, shown_path: &str) -> anyhow::Error {
        match self {
            Side::Host => anyhow::anyhow!("lstat {shown_path}: no such file or directory"),
            Side::Container { name, .. } => anyhow::Error::new(InContainer(format!(
                "Could not find the file {shown_path} in container {name}"
            ))),
        }
    }
}

fn kind_of(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

/// The source of a copy, opened.
struct Source {
    /// `O_PATH` fd of the object (a symlink itself when not followed).
    fd: OwnedFd,
    is_dir: bool,
    /// The name it is copied under (a followed link keeps the link's name).
    name: OsString,
    /// Only its contents are copied (`dir/.`, or the root).
    contents_only: bool,
}

fn open_source(side: &Side, raw: &str, follow_link: bool) -> Result<Source> {
    let base = Path::new("/");
    let path = match side {
        Side::Host => {
            let cwd = std::env::current_dir().context("cannot find the current directory")?;
            clean(raw, &cwd)
        }
        Side::Container { .. } => clean(raw, base),
    };
    let shown = match side {
        Side::Host => path.to_string_lossy().into_owned(),
        Side::Container { .. } => raw.to_string(),
    };
    let is_root = path.parent().is_none();
    let contents_only = is_root || raw == "." || raw.ends_with("/.");
    let follow_last = follow_link || asserts_dir(raw) || is_root;
    let fd = if follow_last {
        side.open(&path)
    } else {
        let parent = path.parent().unwrap_or(base);
        let name = path.file_name().unwrap_or_default();
        side.open(parent).and_then(|dir| {
            openat(
                dir.as_fd(),
                name,
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
        })
    };
    let fd = match fd {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Err(side.not_found(&shown)),
        Err(Errno::ENOTDIR) => return Err(side.not_a_directory(&shown)),
        Err(e) => return Err(inroot::resolve_error(e, Path::new(&side.show(&shown)))),
    };
    let st = fstat(&fd)?;
    let is_dir = kind_of(&st) == SFlag::S_IFDIR;
    if asserts_dir(raw) && !is_dir {
        return Err(side.not_a_directory(&shown));
    }
    // The names Docker's archives use: `/` for the root, `.` for a directory's contents.
    let name = if is_root {
        OsString::from("/")
    } else if contents_only {
        OsString::from(".")
    } else {
        path.file_name().unwrap_or_default().to_os_string()
    };
    Ok(Source {
        fd,
        is_dir,
        name,
        contents_only,
    })
}

/// The destination of a copy: the directory holding it, its name there, and what is there.
struct Dest {
    parent: OwnedFd,
    name: OsString,
    /// What exists under the name (a symlink there already followed): Some(is_dir).
    exists: Option<bool>,
    asserts_dir: bool,
    shown: String,
}

fn open_dest(side: &Side, raw: &str) -> Result<Dest> {
    let mut path = match side {
        Side::Host => clean(
            raw,
            &std::env::current_dir().context("cannot find the current directory")?,
        ),
        Side::Container { .. } => clean(raw, Path::new("/")),
    };
    let shown = side.show(raw);
    // Docker follows a destination that is a symlink, up to 10 times (a dangling one names
    // what is to be made).
    for _ in 0..=10 {
        let (parent_path, name) = match (path.parent(), path.file_name()) {
            (Some(p), Some(n)) => (p.to_path_buf(), n.to_os_string()),
            // The root itself: it exists and is a directory.
            _ => {
                let root = side.open(Path::new("/"))?;
                return Ok(Dest {
                    parent: root,
                    name: OsString::new(),
                    exists: Some(true),
                    asserts_dir: true,
                    shown,
                });
            }
        };
        let parent = match side.open(&parent_path) {
            Ok(fd) if inroot::is_dir(&fd) => fd,
            Ok(_) => bail!(
                "{}: not a directory",
                side.show(&parent_path.to_string_lossy())
            ),
            Err(Errno::ENOENT) => {
                return Err(match side {
                    Side::Host => anyhow::anyhow!(
                        "invalid output path: directory {:?} does not exist",
                        parent_path.display().to_string()
                    ),
                    Side::Container { .. } => side.not_found(&parent_path.to_string_lossy()),
                })
            }
            Err(e) => return Err(inroot::resolve_error(e, &parent_path)),
        };
        match fstatat(
            parent.as_fd(),
            name.as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) if kind_of(&st) == SFlag::S_IFLNK => {
                let target = PathBuf::from(readlinkat(parent.as_fd(), name.as_os_str())?);
                // Relative targets are relative to the link's directory; on a container's
                // side absolute ones are the container's (resolved inside its root).
                path = clean(&target.to_string_lossy(), &parent_path);
                continue;
            }
            Ok(st) => {
                let kind = kind_of(&st);
                if kind != SFlag::S_IFDIR && kind != SFlag::S_IFREG {
                    bail!("destination {shown:?} must be a directory or a regular file");
                }
                return Ok(Dest {
                    parent,
                    name,
                    exists: Some(kind == SFlag::S_IFDIR),
                    asserts_dir: asserts_dir(raw),
                    shown,
                });
            }
            Err(Errno::ENOENT) => {
                return Ok(Dest {
                    parent,
                    name,
                    exists: None,
                    asserts_dir: asserts_dir(raw),
                    shown,
                })
            }
            Err(e) => return Err(e).with_context(|| format!("cannot stat {shown}")),
        }
    }
    bail!("too many symlinks in {shown}")
}

impl Dest {
    /// The existing destination directory itself.
    fn dir(&self) -> Result<OwnedFd> {
        if self.name.is_empty() {
            return Ok(self.parent.try_clone()?);
        }
        openat(
            self.parent.as_fd(),
            self.name.as_os_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open {}", self.shown))
    }
}

const WALK: WalkOptions = WalkOptions {
    xattrs: true,
    hardlinks: true,
    one_filesystem: false,
    overlay_upper: false,
};

/// Copies `src` to the destination by Docker's rules (see the module doc). `to_host`: device
/// nodes are not made and set-id bits are cleared (see [`DirSink::make_devices`] and
/// [`DirSink::strip_setid`]) unless `-a` asked for an archive copy (`archive`).
fn copy_tree(src: Source, dest: &Dest, ownership: Ownership, to_host: bool) -> Result<()> {
    let archive = ownership == Ownership::Keep;
    let prepare = |sink: &mut DirSink| {
        sink.make_devices(!to_host);
        sink.strip_setid(to_host && !archive);
    };
    match dest.exists {
        Some(true) => {
            let mut sink = DirSink::new(&dest.dir()?, ownership)?;
            prepare(&mut sink);
            let name = if src.contents_only && src.is_dir {
                Path::new("")
            } else {
                Path::new(&src.name)
            };
            walk(src.fd, name, WALK, &mut sink)
        }
        Some(false) if src.is_dir => bail!("cannot copy directory"),
        None if !src.is_dir && dest.asserts_dir => bail!("no such directory"),
        _ => {
            // Made (or replaced) under the destination's own name, in its parent.
            let mut sink = DirSink::new(&dest.parent, ownership)?;
            prepare(&mut sink);
            walk(src.fd, Path::new(&dest.name), WALK, &mut sink)
        }
    }
}

/// `docker cp CONTAINER:SRC DEST`: `dest` is a host path, or `-` for a tar stream of the
/// source written to `out`.
pub fn copy_from_container(
    c: &ContainerFs,
    src: &str,
    dest: &str,
    out: &mut dyn Write,
    opts: CopyOptions,
) -> Result<()> {
    let side = Side::container(c)?;
    let source = open_source(&side, src, opts.follow_link)?;
    if dest == "-" {
        // Docker's stream of a followed link names the entry after the link's target.
        let name = if opts.follow_link && !source.contents_only {
            std::fs::read_link(inroot::fd_path(&source.fd))
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_os_string()))
                .unwrap_or(source.name.clone())
        } else {
            source.name.clone()
        };
        let mut tar = TarSink::new(out);
        walk(source.fd, Path::new(&name), WALK, &mut tar)?;
        tar.finish()?;
        return Ok(());
    }
    let dest = open_dest(&Side::Host, dest)?;
    let ownership = if opts.archive {
        Ownership::Keep
    } else {
        Ownership::Fixed(
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    };
    copy_tree(source, &dest, ownership, true)
}

/// `docker cp SRC CONTAINER:DEST`: `src` is a host path, or `-` for a tar stream read from
/// `input` and unpacked into the directory `dest`.
pub fn copy_to_container(
    c: &ContainerFs,
    src: &str,
    input: &mut dyn Read,
    dest: &str,
    opts: CopyOptions,
) -> Result<()> {
    let side = Side::container(c)?;
    // Without -a, what is copied in belongs to the container's root.
    let ownership = if opts.archive {
        Ownership::Keep
    } else {
        Ownership::Fixed(0, 0)
    };
    if src == "-" {
        let dest = open_dest(&side, dest)?;
        if dest.exists != Some(true) {
            bail!("destination {:?} must be a directory", dest.shown);
        }
        let mut sink = DirSink::new(&dest.dir()?, ownership)?;
        return read_tar(input, &mut sink).context("extracting the tar stream");
    }
    let source = open_source(&Side::Host, src, opts.follow_link)?;
    let dest = open_dest(&side, dest)?;
    copy_tree(source, &dest, ownership, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> TempDir {
            let d = std::env::temp_dir().join(format!("berth-cp-{name}-{}", std::process::id()));
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

    /// A small container tree: /etc/hostname, /etc/conf.d/a, /data -> /etc (absolute link),
    /// /up -> ../../.. (climbing link), /link -> /etc/hostname.
    fn rootfs(t: &TempDir) -> PathBuf {
        let root = t.0.join("rootfs");
        std::fs::create_dir_all(root.join("etc/conf.d")).unwrap();
        std::fs::write(root.join("etc/hostname"), b"c1\n").unwrap();
        std::fs::write(root.join("etc/conf.d/a"), b"a").unwrap();
        symlink("/etc", root.join("data")).unwrap();
        symlink("../../..", root.join("up")).unwrap();
        symlink("/etc/hostname", root.join("link")).unwrap();
        root
    }

    fn from(root: &Path, src: &str, dest: &Path, opts: CopyOptions) -> Result<()> {
        let c = ContainerFs {
            rootfs: root,
            name: "c1",
        };
        copy_from_container(&c, src, dest.to_str().unwrap(), &mut std::io::sink(), opts)
    }

    fn to(root: &Path, src: &Path, dest: &str, opts: CopyOptions) -> Result<()> {
        let c = ContainerFs {
            rootfs: root,
            name: "c1",
        };
        copy_to_container(&c, src.to_str().unwrap(), &mut std::io::empty(), dest, opts)
    }

    #[test]
    fn arguments_split_like_dockers() {
        assert_eq!(split_cp_arg("c1:/etc"), (Some("c1"), "/etc"));
        assert_eq!(split_cp_arg("/tmp/a:b"), (None, "/tmp/a:b"));
        assert_eq!(split_cp_arg("./a:b"), (None, "./a:b"));
        assert_eq!(split_cp_arg("file"), (None, "file"));
        assert_eq!(split_cp_arg("-"), (None, "-"));
    }

    #[test]
    fn docker_path_rules_out_of_a_container() {
        let t = TempDir::new("out");
        let root = rootfs(&t);
        let out = t.0.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let o = CopyOptions::default();
        // File into an existing directory, then onto an existing file, then to a new name.
        from(&root, "/etc/hostname", &out, o).unwrap();
        assert_eq!(std::fs::read(out.join("hostname")).unwrap(), b"c1\n");
        std::fs::write(out.join("f"), b"old").unwrap();
        from(&root, "etc/conf.d/a", &out.join("f"), o).unwrap();
        assert_eq!(std::fs::read(out.join("f")).unwrap(), b"a");
        from(&root, "/etc/hostname", &out.join("new"), o).unwrap();
        assert!(out.join("new").is_file());
        // A file to a missing name asserting a directory.
        let e = from(&root, "/etc/hostname", &out.join("nodir/"), o).unwrap_err();
        assert_eq!(e.to_string(), "no such directory");
        // A directory into an existing one, its contents with /., to a new name.
        from(&root, "/etc", &out, o).unwrap();
        assert!(out.join("etc/conf.d/a").is_file());
        let contents = t.0.join("contents");
        std::fs::create_dir_all(&contents).unwrap();
        from(&root, "/etc/.", &contents, o).unwrap();
        assert!(contents.join("conf.d/a").is_file() && !contents.join("etc").exists());
        from(&root, "/etc", &out.join("copy"), o).unwrap();
        assert!(out.join("copy/hostname").is_file());
        // A directory onto a file.
        let e = from(&root, "/etc", &out.join("f"), o).unwrap_err();
        assert_eq!(e.to_string(), "cannot copy directory");
        // Symlinks: the link itself by default, its target with -L under the link's name;
        // through a link in the middle of the path, inside the container.
        from(&root, "/link", &out, o).unwrap();
        assert_eq!(
            std::fs::read_link(out.join("link")).unwrap(),
            Path::new("/etc/hostname")
        );
        std::fs::remove_file(out.join("link")).unwrap();
        let follow = CopyOptions {
            follow_link: true,
            ..o
        };
        from(&root, "/link", &out, follow).unwrap();
        assert_eq!(std::fs::read(out.join("link")).unwrap(), b"c1\n");
        from(&root, "/data/conf.d/a", &out.join("via"), o).unwrap();
        assert_eq!(std::fs::read(out.join("via")).unwrap(), b"a");
        // The climbing link stays at the root: /up/etc/hostname is /etc/hostname.
        from(&root, "/up/etc/hostname", &out.join("up"), o).unwrap();
        assert_eq!(std::fs::read(out.join("up")).unwrap(), b"c1\n");
        // Missing things, in Docker's words.
        let e = from(&root, "/nope", &out, o).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Could not find the file /nope in container c1"
        );
        let e = from(&root, "/etc/hostname", &t.0.join("no/such/dir/x"), o).unwrap_err();
        assert!(
            e.to_string().starts_with("invalid output path: directory"),
            "{e}"
        );
    }

    #[test]
    fn docker_path_rules_into_a_container() {
        let t = TempDir::new("in");
        let root = rootfs(&t);
        let src = t.0.join("src");
        std::fs::create_dir_all(src.join("d/sub")).unwrap();
        std::fs::write(src.join("d/sub/x"), b"x").unwrap();
        std::fs::write(src.join("f"), b"payload").unwrap();
        nix::unistd::chown(
            &src.join("f"),
            Some(nix::unistd::Uid::from_raw(1234)),
            Some(nix::unistd::Gid::from_raw(4321)),
        )
        .ok();
        let o = CopyOptions::default();
        // Into a directory through an absolute symlink: it resolves inside the container.
        to(&root, &src.join("f"), "/data/", o).unwrap();
        assert_eq!(std::fs::read(root.join("etc/f")).unwrap(), b"payload");
        // Onto a symlink to a file: the target is replaced.
        to(&root, &src.join("f"), "/link", o).unwrap();
        assert_eq!(
            std::fs::read(root.join("etc/hostname")).unwrap(),
            b"payload"
        );
        assert!(std::fs::symlink_metadata(root.join("link"))
            .unwrap()
            .file_type()
            .is_symlink());
        // A directory to a new name, and its contents into an existing one.
        to(&root, &src.join("d"), "/newdir", o).unwrap();
        assert!(root.join("newdir/sub/x").is_file());
        to(&root, &src.join("d/."), "/etc", o).unwrap();
        assert!(root.join("etc/sub/x").is_file());
        if nix::unistd::geteuid().is_root() {
            // Owners: the container's root without -a, the source's with it.
            let m = std::fs::metadata(root.join("etc/f")).unwrap();
            assert_eq!((m.uid(), m.gid()), (0, 0));
            let a = CopyOptions { archive: true, ..o };
            to(&root, &src.join("f"), "/kept", a).unwrap();
            let m = std::fs::metadata(root.join("kept")).unwrap();
            assert_eq!((m.uid(), m.gid()), (1234, 4321));
        }
        let e = to(&root, &src.join("f"), "/missing/x", o).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Could not find the file /missing in container c1"
        );
        let e = to(&root, &t.0.join("nope"), "/", o).unwrap_err();
        assert!(
            e.to_string().starts_with("lstat ")
                && e.to_string().ends_with("nope: no such file or directory")
        );
        // The climbing link cannot take a copy out of the root.
        to(&root, &src.join("f"), "/up/escaped", o).unwrap();
        assert!(root.join("escaped").is_file());
        assert!(!t.0.join("escaped").exists());
    }

    #[test]
    fn tar_streams_both_ways() {
        let t = TempDir::new("stream");
        let root = rootfs(&t);
        let c = ContainerFs {
            rootfs: &root,
            name: "c1",
        };
        // Docker's names in the stream: the base name, `.` for contents, `/` for the root,
        // and a followed link's target name.
        let names = |src: &str, follow_link: bool| -> Vec<String> {
            let mut tar = Vec::new();
            let o = CopyOptions {
                follow_link,
                ..Default::default()
            };
            copy_from_container(&c, src, "-", &mut tar, o).unwrap();
            let mut a = tar::Archive::new(&tar[..]);
            a.entries()
                .unwrap()
                .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
                .collect()
        };
        assert_eq!(names("/etc/conf.d", false), ["conf.d/", "conf.d/a"]);
        assert_eq!(names("/etc/conf.d/.", false), ["./", "./a"]);
        assert_eq!(names("/link", false), ["link"]);
        assert_eq!(names("/link", true), ["hostname"]);
        assert_eq!(names("/", false)[..2], ["/", "/data"]);
        let e = copy_from_container(
            &c,
            "/etc/hostname/",
            "-",
            &mut Vec::new(),
            CopyOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "lstat /etc/hostname/: not a directory");
        let mut tar = Vec::new();
        copy_from_container(&c, "/etc", "-", &mut tar, CopyOptions::default()).unwrap();
        let other = t.0.join("other");
        std::fs::create_dir_all(other.join("dst")).unwrap();
        let c2 = ContainerFs {
            rootfs: &other,
            name: "c2",
        };
        copy_to_container(&c2, "-", &mut &tar[..], "/dst", CopyOptions::default()).unwrap();
        assert_eq!(std::fs::read(other.join("dst/etc/conf.d/a")).unwrap(), b"a");
        let e = copy_to_container(
            &c2,
            "-",
            &mut &tar[..],
            "/dst/etc/hostname",
            CopyOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "destination \"c2:/dst/etc/hostname\" must be a directory"
        );
    }

    #[test]
    fn device_nodes_go_into_containers_but_not_out_to_the_host() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mknod needs root");
            return;
        }
        let t = TempDir::new("dev");
        let root = rootfs(&t);
        std::fs::create_dir_all(root.join("devs")).unwrap();
        nix::sys::stat::mknod(
            &root.join("devs/disk"),
            SFlag::S_IFBLK,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(8, 0),
        )
        .unwrap();
        std::fs::write(root.join("devs/file"), b"f").unwrap();
        let out = t.0.join("out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::set_permissions(
            root.join("devs/file"),
            std::os::unix::fs::PermissionsExt::from_mode(0o4755),
        )
        .unwrap();
        from(&root, "/devs", &out, CopyOptions::default()).unwrap();
        assert!(out.join("devs/file").is_file());
        assert!(
            !out.join("devs/disk").exists(),
            "no block device made on the host"
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(
            mode(&out.join("devs/file")),
            0o755,
            "no set-id program planted"
        );
        let a = CopyOptions {
            archive: true,
            ..Default::default()
        };
        from(&root, "/devs/file", &out.join("archived"), a).unwrap();
        assert_eq!(mode(&out.join("archived")), 0o4755, "-a copies it as it is");
        // Into a container (here: a tar of the directory into another root) it is made.
        let c = ContainerFs {
            rootfs: &root,
            name: "c1",
        };
        let mut tar = Vec::new();
        copy_from_container(&c, "/devs", "-", &mut tar, CopyOptions::default()).unwrap();
        let other = t.0.join("other");
        std::fs::create_dir_all(&other).unwrap();
        let c2 = ContainerFs {
            rootfs: &other,
            name: "c2",
        };
        copy_to_container(&c2, "-", &mut &tar[..], "/", CopyOptions::default()).unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::symlink_metadata(other.join("devs/disk"))
            .unwrap()
            .file_type()
            .is_block_device());
    }

    #[test]
    fn read_only_rootfs_and_volumes_refuse_copies_in() {
        let rw = VolumeMount {
            source: "/v".into(),
            destination: "/data".into(),
            read_only: false,
        };
        let ro = VolumeMount {
            source: "/r".into(),
            destination: "/data/ro".into(),
            read_only: true,
        };
        let vols = [rw, ro];
        assert!(check_writable("/data/x", true, &vols).is_ok());
        let e = check_writable("data/ro/../ro/x", false, &vols).unwrap_err();
        assert_eq!(e.to_string(), "mounted volume is marked read-only");
        let e = check_writable("/etc", true, &vols).unwrap_err();
        assert_eq!(e.to_string(), "container rootfs is marked read-only");
        assert!(check_writable("/etc", false, &vols).is_ok());
    }
}
