//! What a container changed in its root filesystem, from its overlay upper directory and the
//! image's snapshots beneath it: `docker diff`'s list of added (A), changed (C) and deleted
//! (D) paths, in Docker's order and by Docker's rules:
//! - the upper directory is walked depth first, names sorted bytewise;
//! - a whiteout (a 0/0 character device) is a deletion;
//! - an opaque directory (`trusted.overlay.opaque=y`) that hid one in the image is a
//!   deletion of it (what it now holds shows as added);
//! - anything else is a change when the image had the path, an addition otherwise; a
//!   directory the overlay only copied up (same size, mode and mtime) is not listed;
//! - the directories above an addition or deletion are listed as changed, once, before it.
//!
//! The lowers are looked at as overlayfs merges them (upper layers' whiteouts and opaque
//! directories hide lower content). Both trees are read by fd without following symlinks:
//! the container may change its upper directory while this runs.

use super::unpack::OPAQUE_XATTR;
use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use std::collections::HashSet;
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Modify,
    Add,
    Delete,
}

impl ChangeKind {
    /// Docker's letter (and its API's number: 0 C, 1 A, 2 D).
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Modify => 'C',
            ChangeKind::Add => 'A',
            ChangeKind::Delete => 'D',
        }
    }

    pub fn api_kind(self) -> u8 {
        match self {
            ChangeKind::Modify => 0,
            ChangeKind::Add => 1,
            ChangeKind::Delete => 2,
        }
    }
}

/// One line of `docker diff`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Absolute inside the container (`/etc/motd`).
    pub path: String,
    pub kind: ChangeKind,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.letter(), self.path)
    }
}

/// The changes of the overlay upper directory `upper` over `lowers` (the image's snapshot
/// directories, base first, as [`super::Store::snapshot_dirs`] gives them).
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    changes_hiding(upper, lowers, &[])
}

/// Like [`changes`], leaving out the empty regular files at `hidden` (absolute container
/// paths): mount points the runtime made in the writable layer for files bind-mounted over
/// them (`/etc/hosts`), which Docker keeps in a layer of their own.
pub fn changes_hiding(upper: &Path, lowers: &[PathBuf], hidden: &[String]) -> Result<Vec<Change>> {
    let open_dir = |p: &Path| -> Result<OwnedFd> {
        openat(
            nix::fcntl::AT_FDCWD,
            p,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open {}", p.display()))
    };
    let upper_fd = open_dir(upper)?;
    // Top layer first, as overlayfs looks them up.
    let lower_fds = lowers
        .iter()
        .rev()
        .map(|p| open_dir(p))
        .collect::<Result<Vec<_>>>()?;
    let mut walk = DiffWalk {
        hidden,
        out: Vec::new(),
        changed_dirs: HashSet::new(),
    };
    walk.dir(&upper_fd, "", &lower_fds)
        .with_context(|| format!("reading the changes in {}", upper.display()))?;
    Ok(walk.out)
}

struct DiffWalk<'a> {
    hidden: &'a [String],
    out: Vec<Change>,
    changed_dirs: HashSet<String>,
}

fn kind_of(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

fn is_whiteout(st: &FileStat) -> bool {
    kind_of(st) == SFlag::S_IFCHR && st.st_rdev == 0
}

/// True when the directory `name` in `dir` carries overlayfs's opaque mark.
fn is_opaque(dir: BorrowedFd, name: &OsStr) -> bool {
    let mut path = OsString::from(format!("/proc/self/fd/{}/", dir.as_raw_fd()));
    path.push(name);
    let (Ok(p), Ok(k)) = (CString::new(path.as_bytes()), CString::new(OPAQUE_XATTR)) else {
        return false;
    };
    let mut value = [0u8; 4];
    // SAFETY: path and key are NUL-terminated; the buffer is valid for its length. The `l`
    // variant reads the entry itself, never what a symlink there points at.
    let n = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), value.as_mut_ptr().cast(), 4) };
    n == 1 && value[0] == b'y'
}

fn stat_in(dir: BorrowedFd, name: &OsStr) -> nix::Result<FileStat> {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
}

/// Docker's test for "the same time" across tar round trips: equal, or equal seconds with
/// one side lacking nanoseconds.
fn same_time(a: &FileStat, b: &FileStat) -> bool {
    a.st_mtime == b.st_mtime
        && (a.st_mtime_nsec == b.st_mtime_nsec || a.st_mtime_nsec == 0 || b.st_mtime_nsec == 0)
}

impl DiffWalk<'_> {
    /// `dir` is the upper directory at `rel` ("" for the root, else "/a/b"); `lowers` the
    /// lower directories visible at that path, top first.
    fn dir(&mut self, dir: &OwnedFd, rel: &str, lowers: &[OwnedFd]) -> Result<()> {
        let readable = nix::fcntl::open(
            &crate::runtime::inroot::fd_path(dir),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot read {}", if rel.is_empty() { "/" } else { rel }))?;
        let mut names: Vec<OsString> = nix::dir::Dir::from_fd(readable)?
            .iter()
            .filter_map(|e| e.ok())
            .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
            .filter(|n| n != "." && n != "..")
            .collect();
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let st = match stat_in(dir.as_fd(), &name) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue, // Removed since the directory was read.
                Err(e) => return Err(e).with_context(|| format!("cannot stat {rel}/{name:?}")),
            };
            let path = format!("{rel}/{}", String::from_utf8_lossy(name.as_bytes()));
            if kind_of(&st) == SFlag::S_IFREG && st.st_size == 0 && self.hidden.contains(&path) {
                continue;
            }
            let is_dir = kind_of(&st) == SFlag::S_IFDIR;
            let opaque = is_dir && is_opaque(dir.as_fd(), &name);
            let in_lowers = lookup(lowers, &name)?;
            let kind = if is_whiteout(&st) || (opaque && in_lowers.is_some()) {
                Some(ChangeKind::Delete)
            } else {
                match &in_lowers {
                    None => Some(ChangeKind::Add),
                    Some(lower)
                        if is_dir
                            && kind_of(lower) == SFlag::S_IFDIR
                            && st.st_size == lower.st_size
                            && st.st_mode == lower.st_mode
                            && same_time(&st, lower) =>
                    {
                        None // Only copied up to hold a change below it.
                    }
                    Some(_) => Some(ChangeKind::Modify),
                }
            };
            if let Some(kind) = kind {
                if is_dir {
                    self.changed_dirs.insert(path.clone());
                }
                if kind != ChangeKind::Modify {
                    self.parents_changed(&path);
                }
                self.out.push(Change {
                    path: path.clone(),
                    kind,
                });
            }
            if is_dir {
                let child = match openat(
                    dir.as_fd(),
                    name.as_os_str(),
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    // Replaced by something else since it was looked at.
                    Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => continue,
                    Err(e) => return Err(e).with_context(|| format!("cannot open {path}")),
                };
                // Same object as stat'ed, or the tree changed under us: then read what is
                // there now, still without following anything.
                let _ = fstat(&child)?;
                let child_lowers = if opaque {
                    Vec::new()
                } else {
                    lower_dirs(lowers, &name)?
                };
                self.dir(&child, &path, &child_lowers)?;
            }
        }
        Ok(())
    }

    /// Lists the directories above `path` as changed, outermost first, unless already listed.
    fn parents_changed(&mut self, path: &str) {
        let mut missing = Vec::new();
        let mut p = path;
        while let Some(i) = p.rfind('/') {
            p = &p[..i];
            if p.is_empty() {
                break;
            }
            if self.changed_dirs.insert(p.to_string()) {
                missing.push(p.to_string());
            }
        }
        for parent in missing.into_iter().rev() {
            self.out.push(Change {
                path: parent,
                kind: ChangeKind::Modify,
            });
        }
    }
}

/// The stat of `name` as the merged lower layers show it: the topmost layer holding it
/// decides, a whiteout there meaning it is gone.
fn lookup(lowers: &[OwnedFd], name: &OsStr) -> Result<Option<FileStat>> {
    for layer in lowers {
        match stat_in(layer.as_fd(), name) {
            Ok(st) if is_whiteout(&st) => return Ok(None),
            Ok(st) => return Ok(Some(st)),
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot stat {name:?} in a layer")),
        }
    }
    Ok(None)
}

/// The lower directories visible as `name`: from the top, each layer where it is a
/// directory, down to (and including) one where it is opaque; a layer where it is anything
/// else (a file, a whiteout) hides those below.
fn lower_dirs(lowers: &[OwnedFd], name: &OsStr) -> Result<Vec<OwnedFd>> {
    let mut out = Vec::new();
    for layer in lowers {
        let st = match stat_in(layer.as_fd(), name) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot stat {name:?} in a layer")),
        };
        if kind_of(&st) != SFlag::S_IFDIR {
            break;
        }
        let fd = openat(
            layer.as_fd(),
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open {name:?} in a layer"))?;
        let opaque = is_opaque(layer.as_fd(), name);
        out.push(fd);
        if opaque {
            break;
        }
    }
    Ok(out)
}

/// `docker diff`'s output: one `K /path` line per change.
pub fn format_changes(changes: &[Change]) -> String {
    changes.iter().map(|c| format!("{c}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::unpack::set_xattr;
    use nix::sys::stat::{mknod, utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;

    struct TempDir(PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn whiteout(p: &Path) {
        mknod(p, SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
    }

    fn opaque(p: &Path) {
        let fd: OwnedFd = std::fs::File::open(p).unwrap().into();
        set_xattr(&fd, None, OsStr::new(OPAQUE_XATTR), b"y").unwrap();
    }

    fn same_times(from: &Path, to: &Path) {
        let m = std::fs::metadata(from).unwrap();
        use std::os::unix::fs::MetadataExt;
        let t = TimeSpec::new(m.mtime(), m.mtime_nsec());
        utimensat(
            nix::fcntl::AT_FDCWD,
            to,
            &t,
            &t,
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }

    /// An upper over two layers, with whiteouts and opaque directories on both sides.
    #[test]
    fn changes_follow_dockers_rules() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: whiteouts and trusted xattrs need root");
            return;
        }
        let t = TempDir(std::env::temp_dir().join(format!("berth-changes-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(&t.0);
        let (base, top, upper) = (t.0.join("base"), t.0.join("top"), t.0.join("upper"));
        for d in [
            base.join("etc/sub"),
            base.join("var/lib"),
            base.join("old"),
            base.join("gone"),
            top.join("var"),
            top.join("gone"),
            upper.join("etc/sub"),
            upper.join("var/lib"),
            upper.join("old"),
            upper.join("gone"),
            upper.join("new/deep"),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(base.join("etc/motd"), b"hi").unwrap();
        std::fs::write(base.join("etc/sub/conf"), b"a").unwrap();
        std::fs::write(base.join("old/x"), b"x").unwrap();
        std::fs::write(base.join("gone/y"), b"y").unwrap();
        std::fs::write(base.join("var/lib/db"), b"db").unwrap();
        // The top layer deletes /var/lib (whiteout) and makes /gone opaque and empty.
        whiteout(&top.join("var/lib"));
        opaque(&top.join("gone"));
        // The container: changes /etc/sub/conf (its parents only copied up), removes
        // /etc/motd, re-creates /old (opaque), recreates /var/lib (hidden below: an addition),
        // makes /gone opaque again, adds /new/deep/f.
        std::fs::write(upper.join("etc/sub/conf"), b"b").unwrap();
        same_times(&base.join("etc"), &upper.join("etc"));
        same_times(&base.join("etc/sub"), &upper.join("etc/sub"));
        whiteout(&upper.join("etc/motd"));
        opaque(&upper.join("old"));
        std::fs::write(upper.join("old/z"), b"z").unwrap();
        std::fs::write(upper.join("var/lib/new"), b"n").unwrap();
        opaque(&upper.join("gone"));
        std::fs::write(upper.join("new/deep/f"), b"f").unwrap();
        same_times(&base.join("var"), &upper.join("var"));
        same_times(&top.join("gone"), &upper.join("gone"));

        let got = changes(&upper, &[base.clone(), top.clone()]).unwrap();
        let text = format_changes(&got);
        // /etc and /var kept their times: each is listed only as the parent of a deletion
        // or addition, once, before it; /etc/sub not at all, as only its file changed. An
        // opaque directory the layers below hold is a deletion (Docker does not look whether
        // the one below was empty), and what it holds is added.
        assert_eq!(
            text,
            "C /etc\n\
             D /etc/motd\n\
             C /etc/sub/conf\n\
             D /gone\n\
             A /new\n\
             A /new/deep\n\
             A /new/deep/f\n\
             D /old\n\
             A /old/z\n\
             C /var\n\
             A /var/lib\n\
             A /var/lib/new\n",
            "got:\n{text}"
        );
    }
}
