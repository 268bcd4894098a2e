//! Resolving paths inside the container's root as if it were `/`.
//!
//! A mount destination comes from config.json but is looked up in a rootfs the image author
//! controls: `/etc/resolv.conf` may be a symlink to `../../host/etc/passwd`. Every lookup here
//! is an openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) from the root's fd: symlinks are
//! resolved inside the root, `..` is clamped there, and a magic link (`/proc/self/cwd`, whose
//! text is no path in the root) fails the lookup. What is missing and must be made is walked
//! one component at a time with `O_PATH|O_NOFOLLOW`, symlinks read and restarted from the
//! root, procfs links refused. The result is an fd, and mounts go onto the fd itself
//! (`move_mount`, or `/proc/self/fd/N`), so a symlink swapped in after the walk cannot
//! redirect them (CVE-2021-30465).

use anyhow::{bail, Context, Result};
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, mkdirat, Mode, SFlag};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

const MAX_SYMLINKS: u32 = 40;

/// What to make when a component is missing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Create {
    /// Fail with ENOENT.
    Nothing,
    /// Make missing directories, the last one included.
    Dir,
    /// Make missing directories, and the last component as an empty file.
    File,
}

/// Resolves `path` inside `root` and returns an `O_PATH` fd to it, creating what is missing.
///
/// A magic link on the way (`/proc/self/cwd`, `/proc/1/root`: a procfs link that jumps to an
/// object rather than naming a path) is refused: inside the root its text means nothing, and
/// following it would leave the root.
pub fn resolve(root: BorrowedFd, path: &Path, create: Create) -> Result<OwnedFd> {
    // Where the path exists, one openat2(RESOLVE_IN_ROOT) does the walk in the kernel
    // (symlinks resolved inside the root, `..` clamped there, magic links refused) in one
    // syscall. The walk below is only for creating what is missing.
    match openat2_in_root(root, path) {
        Ok(fd) => Ok(fd),
        Err(nix::errno::Errno::ENOENT) if create == Create::Nothing => Err(anyhow::anyhow!(
            "{} (inside the rootfs): no such file or directory",
            path.display()
        )),
        Err(nix::errno::Errno::ENOENT) => {
            if let Some(fd) = create_in_existing_parent(root, path, create) {
                return Ok(fd);
            }
            resolve_inner(root, path, create)
                .with_context(|| format!("{} (inside the rootfs)", path.display()))
        }
        Err(e) => Err(resolve_error(e, path)),
    }
}

/// An openat2 failure of `path` inside a root, in words.
pub fn resolve_error(e: nix::errno::Errno, path: &Path) -> anyhow::Error {
    match e {
        nix::errno::Errno::ELOOP => anyhow::anyhow!(
            "{} (inside the rootfs): too many symlinks, or a magic link (such as \
             /proc/self/cwd) on the way, which berth does not follow",
            path.display()
        ),
        nix::errno::Errno::ENOSYS => anyhow::anyhow!(
            "{} (inside the rootfs): openat2 is not supported by this kernel (berth needs \
             Linux 5.6 or later)",
            path.display()
        ),
        e => anyhow::Error::new(e).context(format!("{} (inside the rootfs)", path.display())),
    }
}

/// openat2(2): `path` from `dir` with `flags` (O_CLOEXEC added) and `resolve` (RESOLVE_*),
/// retried when the kernel reports a concurrent rename (EAGAIN).
pub fn openat2(dir: BorrowedFd, path: &Path, flags: i32, resolve: u64) -> nix::Result<OwnedFd> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| nix::errno::Errno::EINVAL)?;
    // SAFETY: open_how is plain data; all-zero is a valid value that we then fill in.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    let mut attempts = 0;
    loop {
        // SAFETY: the path is NUL-terminated and `how` outlives the call with its size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c_path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: openat2 returned a new descriptor that nothing else owns.
            return Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) });
        }
        match nix::errno::Errno::last() {
            nix::errno::Errno::EAGAIN if attempts < 16 => attempts += 1,
            e => return Err(e),
        }
    }
}

fn openat2_in_root(root: BorrowedFd, path: &Path) -> nix::Result<OwnedFd> {
    openat2(
        root,
        path,
        libc::O_PATH,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// True when what `fd` holds is on a procfs.
pub fn on_procfs(fd: BorrowedFd) -> nix::Result<bool> {
    nix::sys::statfs::fstatfs(fd).map(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
}

/// The common case of a missing mount destination: only its last component is missing. The
/// parent is found with one openat2, the destination made in it and opened: a handful of
/// syscalls instead of an open and fstat per component. Anything unusual (a dangling symlink
/// in the way, a missing parent, a race) returns None and the caller walks the general way.
fn create_in_existing_parent(root: BorrowedFd, path: &Path, create: Create) -> Option<OwnedFd> {
    let name = path.file_name()?;
    let parent = openat2_in_root(root, path.parent()?).ok()?;
    let want = if create == Create::File {
        openat(
            &parent,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .ok()?;
        SFlag::S_IFREG
    } else {
        mkdirat(&parent, name, Mode::from_bits_truncate(0o755)).ok()?;
        SFlag::S_IFDIR
    };
    let fd = openat(
        &parent,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let kind = SFlag::from_bits_truncate(fstat(&fd).ok()?.st_mode) & SFlag::S_IFMT;
    (kind == want).then_some(fd)
}

fn resolve_inner(root: BorrowedFd, path: &Path, create: Create) -> Result<OwnedFd> {
    let mut stack: Vec<OwnedFd> = vec![root.try_clone_to_owned()?];
    let mut pending: VecDeque<OsString> = components(path);
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let dir = stack.last().expect("stack holds the root").as_fd();
        match openat(
            dir,
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                let kind = SFlag::from_bits_truncate(fstat(&fd)?.st_mode) & SFlag::S_IFMT;
                if kind == SFlag::S_IFLNK {
                    // procfs links (`self`, `cwd`, `fd/N`, `root`) name the host's view, or
                    // are magic links whose text is no path at all: never follow them here.
                    if on_procfs(fd.as_fd())? {
                        bail!(
                            "{:?} is a symlink on procfs (a magic link, or one naming the \
                             host's view); berth does not follow it",
                            name
                        );
                    }
                    links += 1;
                    if links > MAX_SYMLINKS {
                        bail!("too many levels of symbolic links");
                    }
                    let target = PathBuf::from(readlinkat(&fd, "")?);
                    if target.is_absolute() {
                        stack.truncate(1);
                    }
                    for c in components(&target).into_iter().rev() {
                        pending.push_front(c);
                    }
                } else if kind == SFlag::S_IFDIR {
                    stack.push(fd);
                } else if pending.is_empty() {
                    return Ok(fd);
                } else {
                    bail!("{:?} is not a directory", name);
                }
            }
            Err(nix::errno::Errno::ENOENT) if create != Create::Nothing => {
                let made = if pending.is_empty() && create == Create::File {
                    openat(
                        dir,
                        name.as_os_str(),
                        OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_WRONLY
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    )
                    .map(drop)
                } else {
                    mkdirat(dir, name.as_os_str(), Mode::from_bits_truncate(0o755))
                };
                match made {
                    // EEXIST: raced with another creator; look again.
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => pending.push_front(name),
                    Err(e) => return Err(e).with_context(|| format!("cannot create {:?}", name)),
                }
            }
            Err(e) => return Err(e).with_context(|| format!("cannot open {:?}", name)),
        }
    }
    Ok(stack.pop().expect("stack holds the root"))
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// The `/proc/self/fd/N` path through which the kernel reaches exactly the object `fd` holds.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// True when `fd` refers to a directory.
pub fn is_dir(fd: &OwnedFd) -> bool {
    fstat(fd).is_ok_and(|s| SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

/// Renders a path for messages, lossily.
pub fn show(p: &Path) -> String {
    String::from_utf8_lossy(p.as_os_str().as_bytes()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-inroot-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let base = tempdir("escape");
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        symlink(&outside, root.join("abs")).unwrap();
        symlink("../../../outside", root.join("rel")).unwrap();
        let rootfd: OwnedFd = std::fs::File::open(&root).unwrap().into();
        resolve(rootfd.as_fd(), Path::new("/abs/x"), Create::Dir).unwrap();
        resolve(rootfd.as_fd(), Path::new("rel/y"), Create::File).unwrap();
        // The absolute link resolved to <root>/<outside path>, the relative one to <root>/outside.
        assert!(root
            .join(outside.strip_prefix("/").unwrap())
            .join("x")
            .is_dir());
        assert!(root.join("outside/y").is_file());
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing written outside the root"
        );
        // Existing paths take the openat2 fast path: it must land in the same places.
        let fd = resolve(rootfd.as_fd(), Path::new("/abs/x"), Create::Nothing).unwrap();
        let landed = std::fs::read_link(fd_path(&fd)).unwrap();
        assert_eq!(
            landed,
            root.join(outside.strip_prefix("/").unwrap()).join("x")
        );
        let fd = resolve(
            rootfd.as_fd(),
            Path::new("rel/../../../../rel/y"),
            Create::Nothing,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_link(fd_path(&fd)).unwrap(),
            root.join("outside/y")
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn creating_under_an_existing_parent_stays_inside_the_root() {
        let base = tempdir("parent");
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // The parent exists through a symlink (the one-openat2 path); the last component is a
        // dangling symlink pointing out (the general walk, which follows it inside the root).
        symlink("/real", root.join("link")).unwrap();
        symlink(outside.join("d"), root.join("real/dangling")).unwrap();
        let rootfd: OwnedFd = std::fs::File::open(&root).unwrap().into();
        let dir = resolve(rootfd.as_fd(), Path::new("/link/z"), Create::Dir).unwrap();
        assert_eq!(
            std::fs::read_link(fd_path(&dir)).unwrap(),
            root.join("real/z")
        );
        let file = resolve(rootfd.as_fd(), Path::new("/link/f"), Create::File).unwrap();
        assert!(!is_dir(&file) && root.join("real/f").is_file());
        std::fs::create_dir_all(root.join(outside.strip_prefix("/").unwrap())).unwrap();
        resolve(rootfd.as_fd(), Path::new("/link/dangling"), Create::File).unwrap();
        assert!(root
            .join(outside.strip_prefix("/").unwrap())
            .join("d")
            .is_file());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn missing_without_create_fails() {
        let base = tempdir("missing");
        let rootfd: OwnedFd = std::fs::File::open(&base).unwrap().into();
        assert!(resolve(rootfd.as_fd(), Path::new("/nope"), Create::Nothing).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// An image's `/dev -> /proc/self/cwd` with a procfs mounted in the root: neither the
    /// kernel's walk nor the creating walk may follow the magic link (its text would be read
    /// as a path inside the root, and the host's view leaks in).
    #[test]
    fn magic_links_are_refused() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let result = crate::runtime::testutil::in_child_process(
            module_path!(),
            "magic_links_are_refused",
            || {
                use nix::mount::{mount, MsFlags};
                crate::runtime::testutil::private_mount_namespace()?;
                let base = tempdir("magic");
                std::fs::create_dir_all(base.join("proc"))?;
                mount(
                    Some("proc"),
                    &base.join("proc"),
                    Some("proc"),
                    MsFlags::empty(),
                    None::<&str>,
                )?;
                symlink("/proc/self/cwd", base.join("dev"))?;
                symlink("/missing/../proc/self/cwd/etc", base.join("viadots"))?;
                let rootfd: OwnedFd = std::fs::File::open(&base)?.into();
                let mut report = String::new();
                for (path, create) in [
                    ("/dev/null", Create::Nothing),
                    ("/dev/null", Create::File),
                    ("/dev/pts", Create::Dir),
                    ("/viadots/x", Create::Dir),
                ] {
                    match resolve(rootfd.as_fd(), Path::new(path), create) {
                        Ok(fd) => report.push_str(&format!(
                            "{path} {create:?} resolved to {:?}\n",
                            std::fs::read_link(fd_path(&fd))
                        )),
                        Err(e) => {
                            let e = format!("{e:#}");
                            if !e.contains("magic link") {
                                report.push_str(&format!("{path} {create:?}: {e}\n"));
                            }
                        }
                    }
                }
                nix::mount::umount2(&base.join("proc"), nix::mount::MntFlags::MNT_DETACH)?;
                std::fs::remove_dir_all(&base)?;
                Ok(report)
            },
        );
        assert_eq!(result, Ok(String::new()));
    }
}
